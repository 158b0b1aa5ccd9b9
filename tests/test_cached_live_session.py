"""Issue 18: a key follows code and data as they are at each call, in one live process.

Each program below runs in a fresh process: it calls a step, then rebinds, mutates, redefines,
replaces or reloads something the step reads, and calls it again (a stale hit is the bug). Then
a fresh process with the original code computes the call the changed code made: it must get the
original code's result (a poisoned key is the other bug: a result stored under the key of code
that did not compute it).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import pairio as pa

HELPERS_MODULE = "def scale(x):\n    return x * 10\n\n\nFACTOR = 10\n"

# name: (prelude, change). The prelude defines @pairio.cached step(x), which returns x * 10;
# after the change it returns x * 20.
SCENARIOS = {
    "a constant rebound": ("""
        T = 10

        @pairio.cached
        def step(x):
            return x * T
        """, "T = 20"),
    "a dict mutated in place": ("""
        OPTIONS = {"scale": 10}

        @pairio.cached
        def step(x):
            return x * OPTIONS["scale"]
        """, 'OPTIONS["scale"] = 20'),
    "a list inside a dict mutated in place": ("""
        CONFIG = {"weights": [10, 1]}

        @pairio.cached
        def step(x):
            return x * CONFIG["weights"][0]
        """, 'CONFIG["weights"][0] = 20'),
    "a set added to": ("""
        KEEP = {10}

        @pairio.cached
        def step(x):
            return x * max(KEEP)
        """, "KEEP.add(20)"),
    "a numpy array written in place": ("""
        import numpy as np
        W = np.array([10, 1])

        @pairio.cached
        def step(x):
            return int(x * W[0])
        """, "W[0] = 20"),
    "a pandas DataFrame written in place": ("""
        import pandas as pd
        FRAME = pd.DataFrame({"a": [10, 1]})

        @pairio.cached
        def step(x):
            return int(x * FRAME["a"].iloc[0])
        """, 'FRAME.loc[0, "a"] = 20'),
    "a helper redefined (a cell run again)": ("""
        def helper(x):
            return x * 10

        @pairio.cached
        def step(x):
            return helper(x)
        """, "def helper(x):\n    return x * 20"),
    "a helper redefined by exec": ("""
        def helper(x):
            return x * 10

        @pairio.cached
        def step(x):
            return helper(x)
        """, 'exec("def helper(x):\\n    return x * 20", globals())'),
    "a helper two calls down redefined": ("""
        def inner(x):
            return x * 10

        def helper(x):
            return inner(x)

        @pairio.cached
        def step(x):
            return helper(x)
        """, "def inner(x):\n    return x * 20"),
    "a module's helper replaced": ("""
        import live_helpers

        @pairio.cached
        def step(x):
            return live_helpers.scale(x)
        """, "live_helpers.scale = lambda x: x * 20"),
    "a module's constant rebound": ("""
        import live_helpers

        @pairio.cached
        def step(x):
            return x * live_helpers.FACTOR
        """, "live_helpers.FACTOR = 20"),
    "a module reloaded after an edit": ("""
        import importlib
        import live_helpers

        @pairio.cached
        def step(x):
            return live_helpers.scale(x)
        """, "_edit('live_helpers.py', 'x * 10', 'x * 20 + 0')\n"
             "importlib.reload(live_helpers)"),
    "a helper imported by name, its module reloaded": ("""
        import importlib
        import live_helpers
        from live_helpers import scale

        @pairio.cached
        def step(x):
            return scale(x)
        """, "_edit('live_helpers.py', 'x * 10', 'x * 20 + 0')\n"
             "importlib.reload(live_helpers)\n"
             "from live_helpers import scale"),
    "a method of a class replaced": ("""
        class Scaler:
            def factor(self):
                return 10

        @pairio.cached
        def step(x):
            return x * Scaler().factor()
        """, "Scaler.factor = lambda self: 20"),
    "a class redefined": ("""
        class Scaler:
            def factor(self):
                return 10

        @pairio.cached
        def step(x):
            return x * Scaler().factor()
        """, "class Scaler:\n    def factor(self):\n        return 20"),
    "a class attribute set": ("""
        class Scaler:
            SCALE = 10

            def factor(self):
                return self.SCALE

        @pairio.cached
        def step(x):
            return x * Scaler().factor()
        """, "Scaler.SCALE = 20"),
    "an instance's attribute set": ("""
        class Settings:
            def __init__(self):
                self.scale = 10

        SETTINGS = Settings()

        @pairio.cached
        def step(x):
            return x * SETTINGS.scale
        """, "SETTINGS.scale = 20"),
    "a dataclass instance's field set": ("""
        import dataclasses

        @dataclasses.dataclass
        class Params:
            scale: int = 10

        PARAMS = Params()

        @pairio.cached
        def step(x):
            return x * PARAMS.scale
        """, "PARAMS.scale = 20"),
    "a Path's file rewritten": ("""
        import pathlib
        DATA = pathlib.Path("scale.txt")
        DATA.write_text("10")

        @pairio.cached
        def step(x):
            return x * int(DATA.read_text())
        """, 'DATA.write_text("20")'),
    "a date rebound": ("""
        import datetime
        START = datetime.date(2020, 1, 10)

        @pairio.cached
        def step(x):
            return x * START.day
        """, "START = datetime.date(2020, 1, 20)"),
    "a closure's list mutated": ("""
        def make():
            weights = [10]

            @pairio.cached
            def step(x):
                return x * weights[0]
            return step, weights

        step, weights = make()
        """, "weights[0] = 20"),
}


def _program(prelude: str, body: str) -> str:
    edit = ("import pathlib\n\n\ndef _edit(name, old, new):\n    path = pathlib.Path(name)\n"
            "    path.write_text(path.read_text().replace(old, new))\n")
    return "import json\nimport pairio\n" + edit + textwrap.dedent(prelude) + "\n" + body + "\n"


def _run(directory, source: str) -> list:
    (directory / "program.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": str(directory), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "program.py"], cwd=directory, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_a_change_while_the_process_runs_counts_and_poisons_no_key(tmp_path, scenario):
    prelude, change = SCENARIOS[scenario]
    (tmp_path / "live_helpers.py").write_text(HELPERS_MODULE)
    live = _program(prelude, f"first = step(1)\n{change}\nsecond = step(2)\nthird = step(1)\n"
                             "print(json.dumps([first, second, third]))")
    assert _run(tmp_path, live) == [10, 40, 20]  # after the change: no stale hit
    (tmp_path / "live_helpers.py").write_text(HELPERS_MODULE)
    original = _program(prelude, "print(json.dumps([step(2), step(1)]))")
    assert _run(tmp_path, original) == [20, 10]  # the original code: no poisoned key


def test_a_step_mutating_a_parameter_dict_in_a_loop(tmp_path):
    prelude = """
        OPTIONS = {"scale": 0, "name": "run"}

        @pairio.cached
        def step(x):
            return x * OPTIONS["scale"]
        """
    body = "out = []\nfor t in [1, 2, 3]:\n    OPTIONS['scale'] = t\n    out.append(step(10))\nprint(json.dumps(out))"
    assert _run(tmp_path, _program(prelude, body)) == [10, 20, 30]
    assert _run(tmp_path, _program(prelude, body)) == [10, 20, 30]  # hits, in a fresh process


def test_a_miss_after_a_change_stores_under_the_key_of_what_computed_it(tmp_path):
    prelude = """
        T = 1

        @pairio.cached
        def step(x):
            return x * T
        """
    body = "before = step.key(5)\nT = 2\nafter = step.key(5)\nstep(5)\nprint(json.dumps([before, after]))"
    before, after = _run(tmp_path, _program(prelude, body))
    assert before != after
    assert pa.get(before) is None and pa.get(after) is not None


def test_a_container_the_step_only_appends_to_is_not_counted_and_named(tmp_path):
    prelude = """
        CALLS = []

        @pairio.cached
        def step(x):
            CALLS.append(x)
            return x * 2
        """
    body = ("out = [step(1), step(1), step(1)]\n"
            "print(json.dumps([out, len(CALLS), step.explain(1)['not_counted']['written_only_globals']]))")
    out, calls, written = _run(tmp_path, _program(prelude, body))
    assert out == [2, 2, 2] and calls == 1
    assert list(written) == ["program.CALLS"]


def test_a_mutable_global_too_large_to_check_is_named_and_warned_about_once(tmp_path):
    prelude = """
        import warnings
        warnings.simplefilter("always")
        BIG = list(range(20_000))

        @pairio.cached
        def step(x):
            return x + BIG[0]
        """
    body = ("import io, contextlib\n"
            "with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    step(1); step(2); T = 3; step(3)\n"
            "named = step.explain(1)['not_counted']['large_mutable_globals']\n"
            "print(json.dumps([[str(w.message) for w in caught if 'BIG' in str(w.message)], list(named)]))")
    messages, named = _run(tmp_path, _program(prelude, body))
    assert named == ["program.BIG"]
    assert len(messages) == 1 and "pass it as an argument" in messages[0]


def test_an_unhashable_global_is_named_and_warned_about_once(tmp_path):
    prelude = """
        import threading
        import warnings
        GUARDS = [threading.Lock()]

        @pairio.cached
        def step(x):
            return x + len(GUARDS)
        """
    body = ("with warnings.catch_warnings(record=True) as caught:\n"
            "    warnings.simplefilter('always')\n"
            "    step(1); step(2)\n"
            "ignored = step.explain(1)['not_counted']['globals']\n"
            "print(json.dumps([[str(w.message) for w in caught if 'GUARDS' in str(w.message)], list(ignored)]))")
    messages, ignored = _run(tmp_path, _program(prelude, body))
    assert ignored == ["program.GUARDS"]
    assert len(messages) == 1


def test_globals_of_common_types_count_by_value(tmp_path):
    prelude = """
        import dataclasses
        import datetime
        import enum
        import pathlib
        import pandas as pd

        class Mode(enum.Enum):
            FAST = 1

        @dataclasses.dataclass(frozen=True)
        class Window:
            days: int = 3

        FRAME = pd.DataFrame({"a": [1, 2]})
        SERIES = pd.Series([1.5, 2.5])
        INDEX = pd.Index(["x", "y"])
        WHEN = datetime.datetime(2024, 5, 1, 12, 0)
        DAY = datetime.date(2024, 5, 1)
        SPAN = datetime.timedelta(days=2)
        MODE = Mode.FAST
        WINDOW = Window()
        DATES = (datetime.date(2024, 1, 1), datetime.date(2024, 2, 1))
        KINDS = frozenset({Mode.FAST})
        FILE = pathlib.Path("input.txt")
        FILE.write_text("hello")

        @pairio.cached
        def step(x):
            return (len(FRAME), len(SERIES), len(INDEX), WHEN, DAY, SPAN, MODE, WINDOW, DATES, KINDS,
                    FILE.read_text(), x)
        """
    body = "print(json.dumps(sorted(step.explain(1)['code']['constants'])))"
    counted = _run(tmp_path, _program(prelude, body))
    for name in ("FRAME", "SERIES", "INDEX", "WHEN", "DAY", "SPAN", "MODE", "WINDOW", "DATES", "KINDS", "FILE"):
        assert f"program.{name}" in counted, name
    # Changed between processes, each changes the key.
    keys = {_run(tmp_path, _program(prelude, "print(json.dumps(step.key(1)))"))}
    for old, new in [('"a": [1, 2]', '"a": [1, 3]'), ("[1.5, 2.5]", "[1.5, 2.0]"), ('["x", "y"]', '["x", "z"]'),
                     ("12, 0)", "13, 0)"), ("days=2", "days=3"), ('write_text("hello")', 'write_text("world")'),
                     ("datetime.date(2024, 2, 1)", "datetime.date(2024, 3, 1)")]:
        assert old in prelude
        keys.add(_run(tmp_path, _program(prelude.replace(old, new), "print(json.dumps(step.key(1)))")))
    assert len(keys) == 8


# --- methods: self counts by its state and its class's code ------------------------------------------


class Analyzer:
    def __init__(self, factor):
        self.factor = factor

    @property
    def scale(self):
        return self.factor * 10

    @pa.cached
    def run(self, x):
        return x * self.scale

    @classmethod
    @pa.cached
    def make(cls, x):
        return cls.__name__, x


class Tagged:
    def __init__(self, tag, scratch=None):
        self.tag, self.scratch = tag, scratch

    def __pairio_hash__(self):
        return self.tag

    @pa.cached
    def run(self, x):
        return (self.tag, x)


class Locked:
    def __init__(self):
        import threading

        self.lock = threading.Lock()

    @pa.cached
    def run(self, x):
        return x

    @pa.cached(ignore=["self"])
    def plain(self, x):
        return x + 1


def test_a_method_counts_self_by_its_state():
    assert Analyzer(2).run(1) == 20
    assert Analyzer(3).run(1) == 30  # not 20: another instance's state
    assert Analyzer(2).run.key(1) != Analyzer(3).run.key(1)
    assert Analyzer(2).run.key(1) == Analyzer(2).run.key(1)
    a = Analyzer(2)
    a.run(1)
    a.factor = 4
    assert a.run(1) == 40  # the same instance, changed
    assert "self" in a.run.explain(1)["arguments"]


def test_a_method_counts_self_through_pairio_hash_when_defined():
    assert Tagged("a", scratch=1).run.key(1) == Tagged("a", scratch=2).run.key(1) != Tagged("b").run.key(1)


def test_an_unhashable_self_raises_naming_it_unless_ignored():
    with pytest.raises(pa.UnhashableArgumentError, match="'self'"):
        Locked().run(1)
    assert Locked().plain(1) == 2 and Locked().plain.key(1) == Locked().plain.key(1)


def test_a_classmethod_counts_its_class():
    class Sub(Analyzer):
        pass

    assert Analyzer.make(1) == ("Analyzer", 1)
    assert Sub.make(1) == ("Sub", 1)
    before = Sub.make.key(1)
    Sub.extra = lambda self: 1  # the class's code changed while the process runs
    try:
        assert Sub.make.key(1) != before
    finally:
        del Sub.extra
    assert Sub.make.key(1) == before


def test_a_method_edited_between_processes_and_self_of_an_edited_class(tmp_path):
    module = '''
import pairio


class Model:
    def __init__(self, weight):
        self.weight = weight

    def predict(self, x):
        return x * self.weight


@pairio.cached
def score(model, x):
    return model.predict(x)
'''
    (tmp_path / "live_models.py").write_text(module)
    body = "import live_models\nprint(json.dumps([live_models.score(live_models.Model(10), 1)]))"
    assert _run(tmp_path, _program("", body)) == [10]
    assert _run(tmp_path, _program("", body)) == [10]  # a hit
    (tmp_path / "live_models.py").write_text(module.replace("return x * self.weight", "return x * self.weight * 2"))
    assert _run(tmp_path, _program("", body)) == [20]  # the argument's class was edited: a miss
    # In one process: the class's method replaced while it runs.
    (tmp_path / "live_models.py").write_text(module)
    body = ("import live_models\nm = live_models.Model(10)\nfirst = live_models.score(m, 1)\n"
            "live_models.Model.predict = lambda self, x: x * self.weight * 3\n"
            "print(json.dumps([first, live_models.score(m, 1), live_models.score([m][0], 1)]))")
    assert _run(tmp_path, _program("", body)) == [10, 30, 30]


def test_instances_of_user_classes_in_containers_count_by_state_and_class_code(tmp_path):
    module = '''
import pairio


class Box:
    def __init__(self, v):
        self.v = v

    def get(self):
        return self.v


@pairio.cached
def total(boxes):
    return sum(b.get() for b in boxes["items"])
'''
    (tmp_path / "live_boxes.py").write_text(module)
    body = ("import live_boxes as lb\n"
            "print(json.dumps([lb.total({'items': [lb.Box(1), lb.Box(2)]}), lb.total({'items': [lb.Box(1), lb.Box(5)]})]))")
    assert _run(tmp_path, _program("", body)) == [3, 6]
    (tmp_path / "live_boxes.py").write_text(module.replace("return self.v", "return self.v * 10"))
    assert _run(tmp_path, _program("", body)) == [30, 60]


def test_an_instance_holding_too_much_to_check_is_named(tmp_path):
    prelude = """
        class Store:
            def __init__(self):
                self.rows = list(range(20_000))

        STORE = Store()

        @pairio.cached
        def step(x):
            return x + STORE.rows[0]
        """
    body = "print(json.dumps(list(step.explain(1)['not_counted']['large_mutable_globals'])))"
    assert _run(tmp_path, _program(prelude, body)) == ["program.STORE"]


def test_a_counter_the_step_keeps_is_its_own_record_not_an_input(tmp_path):
    prelude = """
        RUNS = {}
        TOTAL = 0

        @pairio.cached
        def step(x):
            global TOTAL
            RUNS[x] = RUNS.get(x, 0) + 1
            TOTAL += 1
            return x * 2
        """
    body = ("out = [step(1), step(1), step(2), step(2)]\n"
            "print(json.dumps([out, RUNS, sorted(step.explain(1)['not_counted']['written_only_globals'])]))")
    out, runs, written = _run(tmp_path, _program(prelude, body))
    assert out == [2, 2, 4, 4] and runs == {"1": 1, "2": 1}
    assert written == ["program.RUNS", "program.TOTAL"]
