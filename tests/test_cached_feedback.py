"""Issue 18, item 6: feedback where people work. A script stays quiet unless asked; ``explain``
says whether a call is a hit and, on a miss, what changed in this process since the closest entry.

(The kernel's short lines are tested in tests/test_cached_notebook.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

import pairio as pa

SCRIPT = textwrap.dedent("""
    import pairio

    @pairio.cached
    def clean(x):
        return x * 2

    clean(1)
    clean(1)
    """)


def _stderr_of_script(directory, env: dict[str, str]) -> str:
    (directory / "script.py").write_text(SCRIPT)
    done = subprocess.run([sys.executable, "script.py"], cwd=directory, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_a_script_is_quiet_by_default(tmp_path):
    assert _stderr_of_script(tmp_path, {}) == ""


def test_a_script_shows_the_short_lines_when_asked(tmp_path):
    lines = _stderr_of_script(tmp_path, {"PAIRIO_VERBOSE": "1"}).splitlines()
    assert [line.split()[:3] for line in lines] == [["pairio:", "miss", "script.clean"],
                                                    ["pairio:", "hit", "script.clean"]]


def test_verbose_of_the_decorator_overrides_the_config(capsys):
    @pa.cached(verbose=True)
    def loud(x):
        return x

    @pa.cached(verbose=False)
    def quiet(x):
        return x

    with pa.config(verbose=True):
        quiet(1)
    loud(1)
    loud(1)
    err = capsys.readouterr().err.splitlines()
    assert [line.split()[1] for line in err] == ["miss", "hit"] and all(loud.name in line for line in err)


def test_verbose_takes_only_true_false_or_none():
    with pytest.raises(TypeError, match="verbose"):
        pa.cached(verbose="yes")(lambda x: x)
    with pytest.raises(pa.PairioError, match="verbose"):
        pa.Config(verbose="yes")


T = 10


def _helper(x):
    return x + 1


@pa.cached
def step(x):
    return _helper(x) * T


def test_explain_of_a_hit_says_it_is_a_hit():
    step(1)
    info = step.explain(1)
    assert info["hit"] is True and "miss" in info and info["miss"] is None
    assert info["result_sha1"] == pa.get(step.key(1))


def test_explain_of_a_miss_names_a_global_rebound_and_a_helper_redefined_in_this_process(monkeypatch):
    step(1)
    monkeypatch.setattr(sys.modules[__name__], "T", 20)
    info = step.explain(1)
    assert info["hit"] is False
    assert "constant" in info["miss"] and f"{__name__}.T changed" in info["miss"]
    assert info["closest"] is not None and info["differences"] == [d for d in info["differences"] if "T changed" in d]
    step(1)  # stored under T = 20

    def _redefined(x):
        return x + 2

    _redefined.__qualname__ = _redefined.__name__ = "_helper"
    monkeypatch.setattr(sys.modules[__name__], "_helper", _redefined)
    info = step.explain(1)
    assert info["hit"] is False and len(info["differences"]) == 1
    assert info["differences"][0].startswith(f"helper {__name__}._helper changed")
