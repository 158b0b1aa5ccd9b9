"""Issue 18, variants beyond its examples: more ways a live session (or an edit between
processes) changes what a step reads, each tried in fresh processes as a user would.

A live variant calls ``step(1)`` (10), changes something, then ``step(2)`` and ``step(1)``
(40 and 20: no stale hit); a fresh process with the original code then gets 20 and 10 (no
poisoned key). A cross-process variant runs two versions of a program: the second must not hit
the first's result.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

# name: (prelude, change). The prelude defines @pairio.cached step(x) returning x * 10; after
# the change it returns x * 20.
LIVE = {
    "a helper's default tuple rebound": ("""
        def helper(x, k=10):
            return x * k

        @pairio.cached
        def step(x):
            return helper(x)
        """, "helper.__defaults__ = (20,)"),
    "a helper's mutable default mutated": ("""
        def helper(x, opts={"s": 10}):
            return x * opts["s"]

        @pairio.cached
        def step(x):
            return helper(x)
        """, 'helper.__defaults__[0]["s"] = 20'),
    "the step's own default tuple rebound": ("""
        @pairio.cached
        def step(x, k=10):
            return x * k
        """, "step.__wrapped__.__defaults__ = (20,)"),
    "the step's own keyword-only default rebound": ("""
        @pairio.cached
        def step(x, *, k=10):
            return x * k
        """, 'step.__wrapped__.__kwdefaults__ = {"k": 20}'),
    "an environment variable named by a global": ("""
        os.environ["SCALE"] = "10"
        NAME = "SCALE"

        @pairio.cached
        def step(x):
            return x * int(os.environ[NAME])
        """, 'os.environ["SCALE"] = "20"'),
    "an environment variable got by a name in a global": ("""
        os.environ["SCALE"] = "10"
        NAME = "SCALE"

        @pairio.cached
        def step(x):
            return x * int(os.environ.get(NAME, "1"))
        """, 'os.environ["SCALE"] = "20"'),
    "a helper's keyword-only default rebound": ("""
        def helper(x, *, k=10):
            return x * k

        @pairio.cached
        def step(x):
            return helper(x)
        """, 'helper.__kwdefaults__ = {"k": 20}'),
    "a frame's attrs set": ("""
        import pandas as pd
        FRAME = pd.DataFrame({"a": [1]})
        FRAME.attrs["k"] = 10

        @pairio.cached
        def step(x):
            return x * FRAME.attrs["k"]
        """, 'FRAME.attrs["k"] = 20'),
    "an enum redefined further down the file": ("""
        import enum

        class E(enum.Enum):
            A = 10

        @pairio.cached
        def step(x):
            return x * E.A.value
        """, "class E(enum.Enum):\n    A = 20"),
    "an argument's class with __pairio_hash__ edited": ("""
        class Model:
            def __pairio_hash__(self):
                return "model"

            def k(self):
                return 10

        @pairio.cached
        def score(m, x):
            return x * m.k()

        def step(x):
            return score(Model(), x)
        """, "Model.k = lambda self: 20"),
    "an OrderedDict mutated": ("""
        import collections
        D = collections.OrderedDict(k=10)

        @pairio.cached
        def step(x):
            return x * D["k"]
        """, 'D["k"] = 20'),
    "a defaultdict mutated": ("""
        import collections
        D = collections.defaultdict(int, k=10)

        @pairio.cached
        def step(x):
            return x * D["k"]
        """, 'D["k"] = 20'),
    "a Counter mutated": ("""
        import collections
        D = collections.Counter(k=10)

        @pairio.cached
        def step(x):
            return x * D["k"]
        """, 'D["k"] = 20'),
    "a deque mutated": ("""
        import collections
        D = collections.deque([10])

        @pairio.cached
        def step(x):
            return x * D[0]
        """, "D[0] = 20"),
    "a bytearray mutated": ("""
        B = bytearray([10])

        @pairio.cached
        def step(x):
            return x * B[0]
        """, "B[0] = 20"),
    "an array.array mutated": ("""
        import array
        A = array.array("i", [10])

        @pairio.cached
        def step(x):
            return x * A[0]
        """, "A[0] = 20"),
    "a SimpleNamespace's attribute set": ("""
        import types
        NS = types.SimpleNamespace(k=10)

        @pairio.cached
        def step(x):
            return x * NS.k
        """, "NS.k = 20"),
    "a singledispatch implementation registered again": ("""
        import functools

        @functools.singledispatch
        def scale(x):
            return 0

        @scale.register(int)
        def _(x):
            return x * 10

        @pairio.cached
        def step(x):
            return scale(x)
        """, "@scale.register(int)\ndef _(x):\n    return x * 20"),
    "a global read by a cached_property": ("""
        import functools
        K = 10

        class Settings:
            @functools.cached_property
            def k(self):
                return K

        @pairio.cached
        def step(x):
            return x * Settings().k
        """, "K = 20"),
    "a nested class's attribute set": ("""
        class Outer:
            class Inner:
                K = 10

        @pairio.cached
        def step(x):
            return x * Outer.Inner.K
        """, "Outer.Inner.K = 20"),
    "an environment variable set": ("""
        import os
        os.environ["SCALE"] = "10"

        @pairio.cached
        def step(x):
            return x * int(os.environ["SCALE"])
        """, 'os.environ["SCALE"] = "20"'),
    "a numpy dtype rebound": ("""
        import numpy as np
        DTYPE = np.dtype("int8")

        @pairio.cached
        def step(x):
            return x * 10 * DTYPE.itemsize
        """, 'DTYPE = np.dtype("int16")'),
    "a numpy random Generator drawn from": ("""
        import numpy as np
        RNG = np.random.default_rng(0)
        START = RNG.bit_generator.state

        @pairio.cached
        def step(x):
            return x * (10 if RNG.bit_generator.state == START else 20)
        """, "RNG.integers(5)"),
    "a pandas Categorical written in place": ("""
        import pandas as pd
        CODES = pd.Categorical([10, 20], categories=[10, 20])

        @pairio.cached
        def step(x):
            return int(x * CODES[0])
        """, "CODES[0] = 20"),
    "a scipy sparse matrix written in place": ("""
        import scipy.sparse
        M = scipy.sparse.lil_matrix((1, 1))
        M[0, 0] = 10

        @pairio.cached
        def step(x):
            return int(x * M[0, 0])
        """, "M[0, 0] = 20"),
}

# name: (first, second, program): the program with the first change returns 10 from step(1), with the
# second 20 (a change replaces <CHANGE>, else stands as the program's first line).
CROSS = {
    "a helper's default taken from a constant": ("K = 10", "K = 20", """
        def helper(x, k=K):
            return x * k

        @pairio.cached
        def step(x):
            return helper(x)
        """),
    "an OrderedDict global": ("D = collections.OrderedDict(k=10)", "D = collections.OrderedDict(k=20)", """
        @pairio.cached
        def step(x):
            return x * D["k"]
        """),
    "a Decimal global": ("D = decimal.Decimal(10)", "D = decimal.Decimal(20)", """
        @pairio.cached
        def step(x):
            return int(x * D)
        """),
    "a compiled pattern global": ('PAT = re.compile("a{10}")', 'PAT = re.compile("a{20}")', """
        @pairio.cached
        def step(x):
            return x * int(PAT.pattern[2:4])
        """),
    "two lambdas of one table, on lines of their own": ("x * 10", "x * 20", """
        OPS = {
            "a": lambda x: <CHANGE>,
            "b": lambda x: x * 2,
        }

        @pairio.cached
        def step(x):
            return OPS["a"](x)
        """),
    "two closures one factory made": ("K = 10", "K = 20", """
        def make(k):
            def h(x):
                return x * k
            return h

        A = make(K)
        B = make(2)

        @pairio.cached
        def step(x):
            return A(x) + B(0)
        """),
    "two singledispatch implementations both named _": ("K = 10", "K = 20", """
        import functools

        @functools.singledispatch
        def scale(x):
            return 0

        @scale.register(int)
        def _(x):
            return x * K

        @scale.register(str)
        def _(x):
            return 1

        @pairio.cached
        def step(x):
            return scale(x)
        """),
    "a numpy dtype global": ('DTYPE = np.dtype("int8")', 'DTYPE = np.dtype("int16")', """
        @pairio.cached
        def step(x):
            return x * 10 * DTYPE.itemsize
        """),
    "an environment variable read by os.getenv": ('os.environ["SCALE"] = "10"', 'os.environ["SCALE"] = "20"', """
        @pairio.cached
        def step(x):
            return x * int(os.getenv("SCALE"))
        """),
}


def _program(prelude: str, body: str) -> str:
    head = "import array\nimport collections\nimport decimal\nimport json\nimport os\nimport re\nimport numpy as np\nimport pairio\n"
    return head + textwrap.dedent(prelude) + "\n" + body + "\n"


def _run(directory, source: str) -> list:
    (directory / "program.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": str(directory), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "program.py"], cwd=directory, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("scenario", sorted(LIVE))
def test_a_change_while_the_process_runs_counts_and_poisons_no_key(tmp_path, scenario):
    prelude, change = LIVE[scenario]
    if "scipy" in prelude:
        pytest.importorskip("scipy")
    live = _program(prelude, f"first = step(1)\n{change}\nsecond = step(2)\nthird = step(1)\n"
                             "print(json.dumps([first, second, third]))")
    assert _run(tmp_path, live) == [10, 40, 20]  # after the change: no stale hit
    original = _program(prelude, "print(json.dumps([step(2), step(1)]))")
    assert _run(tmp_path, original) == [20, 10]  # the original code: no poisoned key


@pytest.mark.parametrize("scenario", sorted(CROSS))
def test_an_edit_between_processes_changes_the_key(tmp_path, scenario):
    first, second, body = CROSS[scenario]
    program = _program("\n" + body, "print(json.dumps([step(1)]))")

    def version(change: str) -> str:  # the change in place of <CHANGE>, else as a first line
        return program.replace("<CHANGE>", change) if "<CHANGE>" in program else program.replace(
            "\n\n", f"\n{change}\n\n", 1)

    assert _run(tmp_path, version(first)) == [10]
    assert _run(tmp_path, version(second)) == [20]


def test_library_objects_too_large_or_not_hashable_are_named(tmp_path):
    pytest.importorskip("scipy")
    prelude = """
        import threading
        import warnings
        import scipy.sparse
        BIG = scipy.sparse.random(2000, 2000, density=0.1, format="csr", random_state=0)
        LOCK = threading.Lock()

        @pairio.cached
        def step(x):
            with LOCK:
                return x * BIG.shape[0]
        """
    body = """
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    step(1)
    step(2)
not_counted = step.explain(1)["not_counted"]
print(json.dumps([sorted(not_counted["large_mutable_globals"]), sorted(not_counted["globals"]),
                  [str(w.message) for w in caught]]))
"""
    large, ignored, warned = _run(tmp_path, _program(prelude, body))
    assert large == ["program.BIG"]  # too large to check at every call: named, and warned about once
    assert ignored == ["program.LOCK"]  # a lock is machinery, not data: named, not warned about
    assert len(warned) == 1 and "program.BIG" in warned[0]


@pytest.mark.parametrize(("prelude", "change", "expected"), [
    ('OPTIONS = {"s": 10}\nstep = pairio.cached(lambda x: x * OPTIONS["s"])', 'OPTIONS["s"] = 10.0', ["10", "10.0"]),
    ("FLAGS = [1]\nstep = pairio.cached(lambda x: FLAGS[0] is True)", "FLAGS[0] = True", ["False", "True"]),
    ('OPS = {"f": abs, "k": 10}\nstep = pairio.cached(lambda x: OPS["f"](x) * OPS["k"])', 'OPS["k"] = 10.0',
     ["10", "10.0"]),
    ("BIG = [1] * 300\nstep = pairio.cached(lambda x: type(BIG[-1]).__name__)", "BIG[:] = [1.0] * 300",
     ["'int'", "'float'"]),
    ("BIG = {i: 1 for i in range(300)}\nstep = pairio.cached(lambda x: type(BIG[299]).__name__)", "BIG[299] = 1.0",
     ["'int'", "'float'"]),
    ("ROWS = [[1]] * 300\nstep = pairio.cached(lambda x: type(ROWS[0][0]).__name__)", "ROWS[0][0] = True",
     ["'int'", "'bool'"]),
    ("S = {1, 2}\nstep = pairio.cached(lambda x: sorted(type(v).__name__ for v in S))", "S.discard(1); S.add(1.0)",
     ["['int', 'int']", "['float', 'int']"]),
], ids=["an int made a float", "an int made a bool", "in a table", "in a list of 300", "in a dict of 300",
        "in a nested list of 300", "in a set"])
def test_an_item_changed_to_an_equal_value_of_another_type_counts(tmp_path, prelude, change, expected):
    # 1 == 1.0 == True, but they hash apart and a step may tell them apart: no stale hit.
    body = f"first = step(1)\n{change}\nprint(json.dumps([repr(first), repr(step(1))]))"
    assert _run(tmp_path, _program(prelude, body)) == expected


def test_a_global_standing_for_files_it_does_not_count_is_named_and_warned_about_once(tmp_path):
    # A str naming a file counts by its text, a Path to a directory by its text: what the step reads
    # through them is not in the key, so they are named (as a str argument naming a file is warned about).
    prelude = """
        import pathlib
        import warnings
        pathlib.Path("data").mkdir(exist_ok=True)
        pathlib.Path("data/scale.txt").write_text("10")
        NAME = "data/scale.txt"
        FOLDER = pathlib.Path("data")
        LABEL = "scale"

        @pairio.cached
        def step(x):
            return x * int(pathlib.Path(NAME).read_text()) + len((FOLDER / "scale.txt").read_text()) * len(LABEL)
        """
    body = """
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    step(1)
    step(2)
print(json.dumps([sorted(step.explain(1)["not_counted"]["globals"]), sorted(str(w.message) for w in caught)]))
"""
    named, warned = _run(tmp_path, _program(prelude, body))
    assert named == ["program.FOLDER", "program.NAME"]
    assert len(warned) == 2 and "directory 'data'" in warned[0] and "pathlib.Path" in warned[1]


@pytest.mark.parametrize("helper", [
    "def scale(x):\n    return x * 10\n",
    "class Scaler:\n    def scale(self, x):\n        return x * 10\n\n\ndef scale(x):\n    return Scaler().scale(x)\n",
], ids=["a function", "a class's method"])
def test_a_helper_file_edited_without_a_reload_poisons_no_key(tmp_path, helper):
    # The process runs the code it loaded; the key must be that code's, not the edited file's, or a
    # fresh process with the edited file would get the old code's result.
    (tmp_path / "edited_helpers.py").write_text(helper)
    prelude = """
        import pathlib
        import edited_helpers

        @pairio.cached
        def step(x):
            return edited_helpers.scale(x)
        """
    edit = ("path = pathlib.Path('edited_helpers.py')\npath.write_text(path.read_text().replace('x * 10', 'x * 20'))\n"
            "print(json.dumps([step(1), step.explain(1)['not_counted']['notes']]))")
    result, notes = _run(tmp_path, _program(prelude, edit))
    assert result == 10 and any("was changed since it was loaded" in note for note in notes)
    assert _run(tmp_path, _program(prelude, "print(json.dumps([step(1)]))")) == [20]  # the edited code's own


LAZY_MODULE = "_VALUES = {'SCALE': 10}\n\n\ndef __getattr__(name):\n    return _VALUES[name]\n"


@pytest.mark.parametrize("change", ["lazy_helpers._VALUES['SCALE'] = 20", "lazy_helpers.SCALE = 20"],
                         ids=["what its __getattr__ reads", "a name set on the module"])
def test_a_name_a_module_gives_through_its_getattr_counts(tmp_path, change):
    (tmp_path / "lazy_helpers.py").write_text(LAZY_MODULE)
    prelude = """
        import lazy_helpers

        @pairio.cached
        def step(x):
            return x * lazy_helpers.SCALE
        """
    live = f"first = step(1)\n{change}\nprint(json.dumps([first, step(2), step(1)]))"
    assert _run(tmp_path, _program(prelude, live)) == [10, 40, 20]
    assert _run(tmp_path, _program(prelude, "print(json.dumps([step(2), step(1)]))")) == [20, 10]
    (tmp_path / "lazy_helpers.py").write_text(LAZY_MODULE.replace("10", "30"))  # __getattr__'s module edited
    assert _run(tmp_path, _program(prelude, "print(json.dumps([step(1)]))")) == [30]


def test_an_object_whose_getattr_raises_key_error_is_walked(tmp_path):
    # hasattr() lets anything but AttributeError through: a __getattr__ raising KeyError must not
    # break the call, and the object still counts.
    prelude = """
        class Lazy:
            def __init__(self):
                self.d = {"k": 10}

            def __getattr__(self, name):
                return self.__dict__["d"][name]

            def __call__(self, x):
                return x * self.d["k"]

        SCALER = Lazy()

        @pairio.cached
        def step(x):
            return SCALER(x)
        """
    live = 'first = step(1)\nSCALER.d["k"] = 20\nprint(json.dumps([first, step(2), step(1)]))'
    assert _run(tmp_path, _program(prelude, live)) == [10, 40, 20]


def test_the_example_pipelines_steps_imported_are_not_taken_for_edited_files(tmp_path):
    """The check that a helper's file still holds the code that runs compares compiled code by
    bytes that depend on its value only (marshal's back-references depend on which equal objects
    a process happens to share): imported as a module, the example's steps are keyed by source."""
    examples = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import pipeline as p; "
            "print(json.dumps({n: getattr(p, n).explain(*a)['not_counted']['notes'] for n, a in "
            "[('synthesize_recording', (4, 2.0, 0))]}))")
    env = {**os.environ, "PAIRIO_DB_PATH": str(tmp_path / "db")}
    out = subprocess.run([sys.executable, "-c", code, examples], env=env, check=True, capture_output=True, text=True)
    assert json.loads(out.stdout) == {"synthesize_recording": []}


def test_the_environment_read_by_a_computed_name_is_named_and_a_write_is_not(tmp_path):
    prelude = """
        import warnings
        os.environ["SCALE_A"] = "10"

        @pairio.cached
        def by_argument(x, name="SCALE_A"):
            return x * int(os.getenv(name))

        @pairio.cached
        def by_format(x, k="A"):
            return x * int(os.environ[f"SCALE_{k}"])

        @pairio.cached
        def whole(x):
            return x * len(dict(os.environ))

        @pairio.cached
        def writes(x):
            os.environ["WRITTEN"] = "1"
            return x
        """
    body = """
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    found = [f.explain(1)["not_counted"]["dynamic_lookups"] for f in (by_argument, by_format, whole, writes)]
    by_argument(1)
print(json.dumps([found, [str(w.message) for w in caught]]))
"""
    found, warned = _run(tmp_path, _program(prelude, body))
    for lookups in found[:3]:  # not counted, so named: pass the value as an argument
        assert len(lookups) == 1 and "os.environ read by a name computed at the call" in lookups[0]
    assert found[3] == []  # a write reads nothing
    assert any("environment variable" in w and "by_argument" in w for w in warned)
