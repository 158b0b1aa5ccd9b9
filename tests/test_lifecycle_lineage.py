"""Where a result came from (why, provenance) and why a call missed (explain, diff, the log line)."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import pairio as pa
from pairio.cli import main
from pairio.lifecycle.provenance import depth, format_tree

PIPELINE = """
    import sys
    import numpy as np
    import pairio

    @pairio.cached
    def load(n):
        return np.arange(n, dtype=float)

    @pairio.cached
    def scale(x, k=2.0):
        return x * k

    @pairio.cached
    def total(x):
        return {"sum": float(x.sum())}

    a = load(10)
    b = scale(a, k=3.0)
    if sys.argv[1] == "3":
        total(b)
        print(total.key(b))
"""


def _run(script_dir, steps):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in [os.getcwd(), os.environ.get("PYTHONPATH")] if p)}
    out = subprocess.run([sys.executable, str(script_dir / "pipeline.py"), steps], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_a_three_step_pipeline_across_two_processes_shows_three_levels(tmp_path, capsys):
    (tmp_path / "pipeline.py").write_text(textwrap.dedent(PIPELINE))
    _run(tmp_path, "2")  # the first process computes load and scale
    key = _run(tmp_path, "3")  # the second hits both and computes total
    tree = pa.why(key)
    assert depth(tree) == 3
    assert tree["function"] == "pipeline.total"
    [scaled] = tree["inputs"]
    assert scaled["function"] == "pipeline.scale" and scaled["argument"] == "x"
    assert scaled["arguments"] == {"x": "ndarray float64 (10,)", "k": "3.0"}
    [loaded] = scaled["inputs"]
    assert loaded["function"] == "pipeline.load" and loaded["arguments"] == {"n": "10"}
    assert loaded["dependencies"]["numpy"] == np.__version__ and loaded["inputs"] == []
    assert main(["why", key[:12]]) == 0
    text = capsys.readouterr().out
    assert text.index("pipeline.total") < text.index("x <- pipeline.scale") < text.index("x <- pipeline.load")
    assert main(["why", tree["uri"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == tree


def test_provenance_follows_returned_elements_paths_and_uris(tmp_path):
    source = tmp_path / "raw.txt"
    source.write_text("raw data")

    @pa.cached
    def split(n):
        return np.ones(n), np.zeros(n)

    @pa.cached
    def write(x):
        out = tmp_path / f"out{len(x)}.bin"
        out.write_bytes(x.tobytes())
        return out

    @pa.cached
    def combine(path, uri, extra):
        return path.stat().st_size, uri, extra

    ones, _ = split(3)
    write(ones)
    stored_path = write(ones)  # a hit: a Path inside the content store
    uri = pa.store_file(source)
    combine(stored_path, uri, [ones, 7])
    tree = combine.provenance(stored_path, uri, [ones, 7])
    by_argument = {child["argument"]: child for child in tree["inputs"]}
    assert by_argument["path"]["function"] == write.name
    assert by_argument["path"]["inputs"][0]["function"] == split.name
    assert by_argument["uri"] == {"argument": "uri", "uri": uri, "note": "raw input"}
    assert by_argument["extra[0]"]["function"] == split.name
    assert "extra[1]" not in by_argument
    assert format_tree(tree).count(split.name) == 2


MODULE_V1 = {
    "helpers": "def scale(x):\n    return x * 2\n",
    "steps": "import pairio\nimport helpers\n\n@pairio.cached\ndef run(x, width=5):\n    return helpers.scale(x) + width\n",
}


def _load_steps(root, version, helper_body):
    directory = root / f"v{version}"
    directory.mkdir()
    (directory / "helpers.py").write_text(f"def scale(x):\n    return {helper_body}\n")
    (directory / "steps.py").write_text(MODULE_V1["steps"])
    for name in ("helpers", "steps"):
        sys.modules.pop(name, None)
    sys.path.insert(0, str(directory))
    try:
        import steps
        return steps.run
    finally:
        sys.path.remove(str(directory))
        for name in ("helpers", "steps"):
            sys.modules.pop(name, None)


def test_a_miss_says_which_helper_changed_and_which_argument_differs(tmp_path, caplog, capsys):
    run1 = _load_steps(tmp_path, 1, "x * 2")
    run1(1, width=5)
    old_helper = run1.explain(1)["code"]["helpers"]["helpers.scale"]
    run2 = _load_steps(tmp_path, 2, "x * 3")
    new_helper = run2.explain(1)["code"]["helpers"]["helpers.scale"]
    explained = run2.explain(1, width=7)
    assert explained["result_sha1"] is None
    assert explained["closest"] == run1.key(1, width=5)
    assert explained["differences"] == [
        f"helper helpers.scale changed (digest {old_helper[:4]}.. -> {new_helper[:4]}..)",
        "argument `width` differs (5 -> 7)",
    ]
    assert explained["miss"].startswith("missed because helper helpers.scale changed")
    with caplog.at_level(logging.INFO, logger="pairio"):
        run2(1, width=7)
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("miss")]
    assert "helper helpers.scale changed" in line and "argument `width` differs (5 -> 7)" in line
    assert main(["diff", run1.key(1, width=5), run2.key(1, width=7)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out == explained["differences"]


def test_explain_of_a_cached_call_says_hit_with_no_miss_reason():
    @pa.cached
    def f(x):
        return x

    f(1)
    assert f.explain(1)["hit"] is True and f.explain(1)["miss"] is None
    assert f.explain(2)["hit"] is False
    assert f.explain(2)["differences"] == ["argument `x` differs (1 -> 2)"]


class Box:
    def __init__(self, values):
        self.values = values


def _mutations():
    import pandas as pd

    return {
        "a numpy array": (lambda n: np.arange(n, dtype=float), lambda x: x.__setitem__(0, 1000.0)),
        "a pandas frame": (lambda n: pd.DataFrame({"a": range(n)}), lambda x: x.__setitem__("a", x["a"] * 2)),
        "a user object": (lambda n: Box(list(range(n))), lambda x: x.values.append(1000)),
        "an array in a returned tuple": (lambda n: (np.arange(n), n), lambda x: x.__setitem__(0, 1000)),
        "an array in a returned dict": (lambda n: {"a": np.arange(n)}, lambda x: x.__setitem__(0, 1000)),
    }


@pytest.mark.parametrize("kind", ["a numpy array", "a pandas frame", "a user object",
                                  "an array in a returned tuple", "an array in a returned dict"])
def test_lineage_is_not_claimed_for_a_result_changed_in_place(kind):
    make, mutate = _mutations()[kind]
    unwrap = (lambda r: r[0]) if "tuple" in kind else (lambda r: r["a"]) if "dict" in kind else (lambda r: r)

    @pa.cached
    def load(n):
        return make(n)

    @pa.cached
    def use(x, run):
        return repr(x)

    for run in ("the result of a miss", "the result of a hit"):
        assert load.is_cached(5) == (run == "the result of a hit")
        x = unwrap(load(5))
        use(x, run)
        assert [i["function"] for i in use.provenance(x, run)["inputs"]] == [load.name]  # unchanged: linked
        mutate(x)
        use(x, run)
        assert use.provenance(x, run)["inputs"] == []  # changed in place: not load's result any more

