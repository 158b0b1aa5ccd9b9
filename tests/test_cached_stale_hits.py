"""No stale hits from what the static walk cannot see: argument types' libraries, dynamic lookups,
file names passed as str, and functions without readable source."""

from __future__ import annotations

import dataclasses
import importlib
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pairio as pa
from pairio.memo import dependencies as deps


def fresh(func, **options):
    """A new cached wrapper (its code part computed afresh), as a new process would make."""
    from pairio.memo import code

    code._descriptions.pop(func, None)
    return pa.cached(**options)(func)


# --- 1. the libraries that define the arguments' types ----------------------------------


def frame_sum(df):
    return df.sum()


def mean(a):
    return a.mean()


def first(x):
    return x


@dataclasses.dataclass
class Holder:
    values: object


CALLS = [
    (frame_sum, lambda: pd.DataFrame({"a": [1.0, 2.0]}), {"pandas", "numpy"}),
    (frame_sum, lambda: pd.Series([1, 2]), {"pandas", "numpy"}),
    (mean, lambda: np.arange(4.0), {"numpy"}),
    (mean, lambda: np.float32(2.5), {"numpy"}),
    (first, lambda: [np.arange(2)], {"numpy"}),
    (first, lambda: {"frame": pd.DataFrame({"a": [1]})}, {"pandas", "numpy"}),
    (first, lambda: Holder(values=(1, np.int64(3))), {"numpy"}),
]


@pytest.mark.parametrize("func,make,libraries", CALLS)
def test_the_library_defining_an_argument_type_counts_by_version(func, make, libraries, installed):
    f = fresh(func)
    value = make()
    assert set(f.explain(value)["dependencies"]) == libraries
    before = f.key(value)
    for library in libraries:
        installed[library] = "99.0"
        deps.clear_caches()
        f = fresh(func)
        assert f.explain(value)["dependencies"][library] == "99.0"
        after = f.key(value)
        assert after != before, f"an upgrade of {library} must change the key"
        assert f.explain(value)["key"] == after
        before = after


class MyFrame(pd.DataFrame):
    pass


def test_a_subclass_of_a_library_type_counts_its_library(installed):
    f = fresh(frame_sum)
    frame = MyFrame({"a": [1.0]})
    assert {"pandas", "numpy"} <= set(f.explain(frame)["dependencies"])
    before = f.key(frame)
    installed["pandas"] = "99.0"
    deps.clear_caches()
    assert fresh(frame_sum).key(frame) != before


def test_plain_arguments_bring_no_dependencies():
    f = fresh(first)
    assert f.explain([1, "a", {"b": 2.0}])["dependencies"] == {}


def test_a_stale_hit_after_an_upgrade_is_a_miss(installed):
    calls = []

    def total(a):
        calls.append(1)
        return float(a.sum())

    f = fresh(total)
    assert f(np.arange(3.0)) == 3.0
    assert f(np.arange(3.0)) == 3.0
    installed["numpy"] = "99.0"
    deps.clear_caches()
    f = fresh(total)
    assert f(np.arange(3.0)) == 3.0
    assert len(calls) == 2


# --- 2. lookups the walk cannot follow ----------------------------------------------------


@pytest.fixture
def helper_module(tmp_path, monkeypatch):
    (tmp_path / "stale_hits_helpers.py").write_text("def double(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("stale_hits_helpers")
    yield module
    sys.modules.pop("stale_hits_helpers", None)


DYNAMIC = {
    "getattr": ("def run(name, x):\n    return getattr(stale_hits_helpers, name)(x)\n", "getattr("),
    "import_module": ("def run(name, x):\n    return importlib.import_module('stale_hits_helpers').double(x)\n",
                      "importlib.import_module"),
    "from_import_module": ("from importlib import import_module\n"
                           "def run(name, x):\n    return import_module('stale_hits_helpers').double(x)\n",
                           "import_module"),
    "globals": ("def run(name, x):\n    return globals()[name](x)\n", "globals()"),
    "eval": ("def run(name, x):\n    return eval(name)(x)\n", "eval()"),
    "exec": ("def run(name, x):\n    scope = {}\n    exec('y = ' + name, scope)\n    return scope['y']\n", "exec()"),
    "sys.modules": ("def run(name, x):\n    return getattr(sys.modules['stale_hits_helpers'], name)(x)\n",
                    "sys.modules"),
    "in_a_helper": ("def inner(name, x):\n    return getattr(stale_hits_helpers, name)(x)\n"
                    "def run(name, x):\n    return inner(name, x)\n", "getattr("),
    "nested": ("def run(name, x):\n    def go():\n        return eval(name)\n    return go()(x)\n", "eval()"),
    "local_import": ("def run(name, x):\n    import stale_hits_helpers as h\n    return getattr(h, name)(x)\n",
                     "getattr(h, ...)"),
    "module_dict": ("def run(name, x):\n    return stale_hits_helpers.__dict__[name](x)\n", "__dict__"),
    "vars": ("def run(name, x):\n    return vars(stale_hits_helpers)[name](x)\n", "vars("),
}


def load_run(tmp_path, source):
    namespace_file = tmp_path / "stale_hits_dynamic.py"
    namespace_file.write_text("import importlib\nimport sys\nimport stale_hits_helpers\nfrom stale_hits_helpers "
                              "import double\n\n" + source)
    sys.modules.pop("stale_hits_dynamic", None)
    module = importlib.import_module("stale_hits_dynamic")
    sys.modules.pop("stale_hits_dynamic", None)
    return module.run


@pytest.mark.parametrize("case", sorted(DYNAMIC))
def test_a_dynamic_lookup_is_named_and_warned_about_once(case, tmp_path, helper_module):
    source, shown = DYNAMIC[case]
    f = pa.cached(load_run(tmp_path, source))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lookups = f.explain("double", 2)["not_counted"]["dynamic_lookups"]
        f.key("double", 3)
        f.key("double", 4)
    assert len(lookups) == 1 and shown in lookups[0], lookups
    messages = [str(w.message) for w in caught if "computed at run time" in str(w.message)]
    assert len(messages) == 1, messages
    assert "version=" in messages[0] and "dependencies=" in messages[0] and "directly" in messages[0]
    assert caught[0].filename == __file__  # the warning points at the user's line


def test_a_getattr_with_a_literal_name_is_followed(tmp_path, helper_module):
    f = pa.cached(load_run(tmp_path, "def run(name, x):\n    return getattr(stale_hits_helpers, 'double')(x)\n"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        explained = f.explain("double", 2)
    assert explained["not_counted"]["dynamic_lookups"] == []
    assert "stale_hits_helpers.double" in explained["code"]["helpers"]


def test_direct_references_are_not_dynamic(tmp_path, helper_module):
    f = pa.cached(load_run(tmp_path, "def run(name, x):\n    return getattr(x, name, None) or double(x)\n"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert f.explain("real", 2)["not_counted"]["dynamic_lookups"] == []


def test_a_module_imported_inside_the_function_counts(tmp_path, helper_module):
    f = pa.cached(load_run(tmp_path, "def run(name, x):\n    import stale_hits_helpers\n"
                                     "    from email import utils\n    import numpy\n"
                                     "    return stale_hits_helpers.double(x)\n"))
    explained = f.explain("double", 2)
    assert "stale_hits_helpers.double" in explained["code"]["helpers"]
    assert "numpy" in explained["dependencies"] and "email" in explained["not_counted"]["stdlib_modules (not versioned)"]
    before = f.key("double", 2)
    (tmp_path / "stale_hits_helpers.py").write_text("def double(x):\n    return x + x\n")
    sys.modules.pop("stale_hits_helpers", None)
    importlib.import_module("stale_hits_helpers")
    assert pa.cached(load_run(tmp_path, "def run(name, x):\n    import stale_hits_helpers\n"
                                        "    from email import utils\n    import numpy\n"
                                        "    return stale_hits_helpers.double(x)\n")).key("double", 2) != before


# --- 3. a str argument that names a file ----------------------------------------------------


def read_lines(path, mode="r"):
    return len(Path(path).read_text().splitlines())


@pytest.mark.parametrize("make_argument", [
    lambda p: ((str(p),), {}),
    lambda p: ((), {"path": str(p)}),
    lambda p: (([str(p)],), {}),
    lambda p: (({"input": str(p)},), {}),
])
def test_a_str_naming_a_file_is_warned_about_once_per_argument(make_argument, tmp_path):
    data = tmp_path / "input.csv"
    data.write_text("a\nb\n")
    args, kwargs = make_argument(data)
    f = pa.cached(read_lines)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f.key(*args, **kwargs)
        f.key(*args, **kwargs)
        f.explain(*args, **kwargs)
    messages = [w for w in caught if "names an existing file" in str(w.message)]
    assert len(messages) == 1
    assert "pathlib.Path" in str(messages[0].message) and "'path'" in str(messages[0].message)
    assert messages[0].filename == __file__


def test_each_argument_naming_a_file_is_warned_about(tmp_path):
    def join(a, b):
        return a + b

    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    f = pa.cached(join)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        f.key(str(tmp_path / "a.txt"), str(tmp_path / "b.txt"))
    assert sorted(str(w.message).split("'")[1] for w in caught if "existing file" in str(w.message)) == ["a", "b"]


@pytest.mark.parametrize("value", ["not a file name", "", str(Path(__file__).parent), "x\0y", "a" * 10000])
def test_a_str_that_names_no_file_is_not_warned_about(value):
    f = pa.cached(read_lines)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f.key(value)
        f.key(Path(__file__))


# --- 4. a function without readable source ---------------------------------------------------

PROGRAM = textwrap.dedent("""\
    import pairio

    @pairio.cached
    def scale(x, factor=3):
        return x * factor

    print(scale.key(2))
    print(scale.explain(2)["not_counted"]["notes"][0])
    """)


def run_python(args, stdin=None, cwd=None):
    done = subprocess.run([sys.executable, *args], input=stdin, capture_output=True, text=True, timeout=120,
                          cwd=cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_code_without_source_is_keyed_by_what_it_does_not_where_it_stands(tmp_path):
    from_c = run_python(["-c", PROGRAM], cwd=tmp_path)
    from_stdin = run_python(["-"], stdin=PROGRAM, cwd=tmp_path)
    moved = run_python(["-c", "\n\n\n# a comment\n" + PROGRAM.replace("import pairio\n", "import pairio\nX = 1\n")],
                       cwd=tmp_path)
    assert from_c[0] == from_stdin[0] == moved[0]
    changed = run_python(["-c", PROGRAM.replace("x * factor", "x + factor")], cwd=tmp_path)
    assert changed[0] != from_c[0]
    note = from_c[1]
    assert "__main__.scale" in note and "source" in note and "code object" not in note
    assert f"Python {sys.version_info[0]}.{sys.version_info[1]}" in note


CLASS_PROGRAM = textwrap.dedent("""\
    import pairio

    class Scaler:
        factor = 3

        def apply(self, x):
            return x * self.factor

    @pairio.cached
    def scale(x):
        return Scaler().apply(x)

    print(scale.key(2))
    """)


def test_a_class_without_source_is_keyed_by_what_it_does(tmp_path):
    same = run_python(["-c", CLASS_PROGRAM], cwd=tmp_path)[0]
    assert run_python(["-"], stdin=CLASS_PROGRAM, cwd=tmp_path)[0] == same
    assert run_python(["-c", CLASS_PROGRAM.replace("x * self.factor", "x + self.factor")], cwd=tmp_path)[0] != same
    assert run_python(["-c", CLASS_PROGRAM.replace("factor = 3", "factor = 4")], cwd=tmp_path)[0] != same
