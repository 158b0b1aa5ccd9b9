"""Issue 18, more variants: callables of libraries, bound methods of builtin objects, weak
references, metaclasses, builtins, subclasses of builtin containers, ``sys.argv``; and what cannot
be counted (global random state, clocks, global library settings, IPython's history) is named.

As in tests/test_cached_live_variants.py: a live variant calls ``step(1)`` (10), changes something,
then ``step(2)`` and ``step(1)`` (40 and 20: no stale hit); a fresh process with the original code
then gets 20 and 10 (no poisoned key).
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
    "a partial of a ufunc rebound": ("""
        F = functools.partial(np.multiply, 10)

        @pairio.cached
        def step(x):
            return int(F(x))
        """, "F = functools.partial(np.multiply, 20)"),
    "a ufunc global rebound": ("""
        OP = np.maximum

        @pairio.cached
        def step(x):
            return x * int(OP(10, 10))
        """, "OP = np.add"),
    "a builtin function global rebound": ("""
        PICK = max

        @pairio.cached
        def step(x):
            return x * PICK(10, 0, -10)
        """, "PICK = lambda *v: 20"),
    "an np.vectorize of a lambda rebound": ("""
        V = np.vectorize(lambda v: v * 10)

        @pairio.cached
        def step(x):
            return int(V(x))
        """, "V = np.vectorize(lambda v: v * 20)"),
    "an operator.itemgetter rebound": ("""
        D = {"a": 10, "b": 20}
        GET = operator.itemgetter("a")

        @pairio.cached
        def step(x):
            return x * GET(D)
        """, 'GET = operator.itemgetter("b")'),
    "an operator.methodcaller rebound": ("""
        CALL = operator.methodcaller("count", "a")

        @pairio.cached
        def step(x):
            return x * CALL("a" * 10 + "b" * 20)
        """, 'CALL = operator.methodcaller("count", "b")'),
    "a numpy poly1d changed in place": ("""
        P = np.poly1d([10, 0])

        @pairio.cached
        def step(x):
            return int(P(x))
        """, "P.coeffs[0] = 20"),
    "a dict's bound get, the dict mutated": ("""
        CONFIG = {"k": 10}
        LOOKUP = CONFIG.get

        @pairio.cached
        def step(x):
            return x * LOOKUP("k")
        """, 'CONFIG["k"] = 20'),
    "a list's bound method, the list mutated": ("""
        ITEMS = [10]
        FIRST = ITEMS.__getitem__

        @pairio.cached
        def step(x):
            return x * FIRST(0)
        """, "ITEMS[0] = 20"),
    "a user instance's bound method, the instance changed": ("""
        class Scaler:
            def __init__(self, k):
                self.k = k

            def scale(self, x):
                return x * self.k

        SCALE = Scaler(10).scale

        @pairio.cached
        def step(x):
            return SCALE(x)
        """, "SCALE.__self__.k = 20"),
    "a weakref.ref's referent changed": ("""
        import weakref

        class Box:
            k = 10

        BOX = Box()
        REF = weakref.ref(BOX)

        @pairio.cached
        def step(x):
            return x * REF().k
        """, "BOX.k = 20"),
    "a WeakValueDictionary's object changed": ("""
        import weakref

        class Box:
            def __init__(self, k):
                self.k = k

        BOX = Box(10)
        REG = weakref.WeakValueDictionary(k=BOX)

        @pairio.cached
        def step(x):
            return x * REG["k"].k
        """, "BOX.k = 20"),
    "a WeakValueDictionary's item replaced": ("""
        import weakref

        class Box:
            def __init__(self, k):
                self.k = k

        BOXES = [Box(10), Box(20)]
        REG = weakref.WeakValueDictionary(k=BOXES[0])

        @pairio.cached
        def step(x):
            return x * REG["k"].k
        """, 'REG["k"] = BOXES[1]'),
    "a WeakSet added to": ("""
        import weakref

        class Box:
            def __init__(self, k):
                self.k = k

        BOXES = [Box(10), Box(20)]
        KEEP = weakref.WeakSet([BOXES[0]])

        @pairio.cached
        def step(x):
            return x * max(b.k for b in KEEP)
        """, "KEEP.add(BOXES[1])"),
    "a metaclass's __call__ replaced": ("""
        class Meta(type):
            def __call__(cls, *args):
                return 10

        class Model(metaclass=Meta):
            pass

        @pairio.cached
        def step(x):
            return x * Model()
        """, "Meta.__call__ = lambda cls: 20"),
    "a metaclass's __getattr__ changed": ("""
        class Meta(type):
            def __getattr__(cls, name):
                return 10

        class Model(metaclass=Meta):
            pass

        @pairio.cached
        def step(x):
            return x * Model.SCALE
        """, "def _getattr(cls, name):\n    return 20\nMeta.__getattr__ = _getattr"),
    "a name set on builtins rebound": ("""
        import builtins
        builtins.SCALE = 10

        @pairio.cached
        def step(x):
            return x * SCALE
        """, "builtins.SCALE = 20"),
    "a builtin shadowed by a module global": ("""
        @pairio.cached
        def step(x):
            return x * len("0123456789")
        """, "def len(s):\n    return 20"),
    "a builtin replaced on builtins": ("""
        import builtins
        _ABS = builtins.abs

        @pairio.cached
        def step(x):
            return x * abs(-10)
        """, "builtins.abs = lambda v: 20"),
    "a dict subclass mutated": ("""
        class Params(dict):
            pass

        P = Params(k=10)

        @pairio.cached
        def step(x):
            return x * P["k"]
        """, 'P["k"] = 20'),
    "a dict subclass's attribute set": ("""
        class Params(dict):
            pass

        P = Params()
        P.k = 10

        @pairio.cached
        def step(x):
            return x * P.k
        """, "P.k = 20"),
    "a dict subclass's method replaced": ("""
        class Params(dict):
            def scale(self):
                return 10

        P = Params()

        @pairio.cached
        def step(x):
            return x * P.scale()
        """, "Params.scale = lambda self: 20"),
    "a list subclass appended to": ("""
        class Values(list):
            pass

        V = Values([10])

        @pairio.cached
        def step(x):
            return x * max(V)
        """, "V.append(20)"),
    "a set subclass added to": ("""
        class Keep(set):
            pass

        K = Keep({10})

        @pairio.cached
        def step(x):
            return x * max(K)
        """, "K.add(20)"),
    "a module global shadowing a builtin deleted": ("""
        def len(s):
            return 10

        @pairio.cached
        def step(x):
            return x * len("01234567890123456789")
        """, "del len"),
    "a weakref.WeakMethod's object changed": ("""
        import weakref

        class Scaler:
            k = 10

            def scale(self, x):
                return x * self.k

        SCALER = Scaler()
        METHOD = weakref.WeakMethod(SCALER.scale)

        @pairio.cached
        def step(x):
            return METHOD()(x)
        """, "SCALER.k = 20"),
    "a weakref.ref pointed at another object": ("""
        import weakref

        class Box:
            def __init__(self, k):
                self.k = k

        BOXES = [Box(10), Box(20)]
        REF = weakref.ref(BOXES[0])

        @pairio.cached
        def step(x):
            return x * REF().k
        """, "REF = weakref.ref(BOXES[1])"),
    "an OrderedDict subclass's attribute set": ("""
        import collections

        class Params(collections.OrderedDict):
            pass

        P = Params(a=1)
        P.k = 10

        @pairio.cached
        def step(x):
            return x * P.k
        """, "P.k = 20"),
    "a defaultdict's default_factory replaced": ("""
        import collections
        D = collections.defaultdict(lambda: 10)

        @pairio.cached
        def step(x):
            return x * D.copy()["k"]
        """, "D.default_factory = lambda: 20"),
    "a dict subclass's defaultdict factory replaced": ("""
        import collections

        class Params(collections.defaultdict):
            pass

        P = Params(lambda: 10)

        @pairio.cached
        def step(x):
            return x * P.copy()["k"]
        """, "P.default_factory = lambda: 20"),
    "sys.argv rebound": ("""
        import sys
        sys.argv = ["program.py", "10"]

        @pairio.cached
        def step(x):
            return x * int(sys.argv[1])
        """, 'sys.argv = ["program.py", "20"]'),
    "sys.argv changed in place": ("""
        import sys
        sys.argv[1:] = ["10"]

        @pairio.cached
        def step(x):
            return x * int(sys.argv[1])
        """, 'sys.argv[1] = "20"'),
}


def _program(prelude: str, body: str) -> str:
    head = "import functools\nimport json\nimport operator\nimport os\nimport numpy as np\nimport pairio\n"
    return head + textwrap.dedent(prelude) + "\n" + body + "\n"


def _run(directory, source: str, *args: str) -> list:
    (directory / "program.py").write_text(source)
    env = {**os.environ, "PYTHONPATH": str(directory), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run([sys.executable, "program.py", *args], cwd=directory, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("scenario", sorted(LIVE))
def test_a_change_while_the_process_runs_counts_and_poisons_no_key(tmp_path, scenario):
    prelude, change = LIVE[scenario]
    live = _program(prelude, f"first = step(1)\n{change}\nsecond = step(2)\nthird = step(1)\n"
                             "print(json.dumps([first, second, third]))")
    assert _run(tmp_path, live) == [10, 40, 20]  # after the change: no stale hit
    original = _program(prelude, "print(json.dumps([step(2), step(1)]))")
    assert _run(tmp_path, original) == [20, 10]  # the original code: no poisoned key


# name: (first, second, program): the program with the first change returns 10 from step(1), with the
# second 20 (the change stands as the program's first line, or replaces <CHANGE>).
CROSS = {
    "a metaclass's code edited": ("10", "20", """
        class Meta(type):
            def __call__(cls, *args):
                return <CHANGE>

        class Model(metaclass=Meta):
            pass

        @pairio.cached
        def step(x):
            return x * Model()
        """),
    "a dict subclass's method edited": ("10", "20", """
        class Params(dict):
            def scale(self):
                return <CHANGE>

        P = Params(a=1)

        @pairio.cached
        def step(x):
            return x * P.scale()
        """),
    "a defaultdict's factory edited": ("10", "20", """
        import collections

        def default():
            return <CHANGE>

        D = collections.defaultdict(default)

        @pairio.cached
        def step(x):
            return x * D.copy()["k"]
        """),
    "a ufunc global edited": ("np.maximum", "np.add", """
        OP = <CHANGE>

        @pairio.cached
        def step(x):
            return x * int(OP(10, 10))
        """),
    "a vectorized helper edited": ("10", "20", """
        def scale(v):
            return v * <CHANGE>

        V = np.vectorize(scale)

        @pairio.cached
        def step(x):
            return int(V(x))
        """),
}


@pytest.mark.parametrize("scenario", sorted(CROSS))
def test_an_edit_between_processes_changes_the_key(tmp_path, scenario):
    first, second, body = CROSS[scenario]
    program = _program(body, "print(json.dumps([step(1)]))")
    assert _run(tmp_path, program.replace("<CHANGE>", first)) == [10]
    assert _run(tmp_path, program.replace("<CHANGE>", second)) == [20]


def test_a_scripts_arguments_count(tmp_path):
    program = _program("""
        import sys

        @pairio.cached
        def step(x):
            return x * int(sys.argv[1])
        """, "print(json.dumps([step(1), step.explain(1)['code']['constants']['sys.argv']]))")
    ten, key_ten = _run(tmp_path, program, "10")
    twenty, key_twenty = _run(tmp_path, program, "20")
    assert (ten, twenty) == (10, 20) and key_ten != key_twenty
    assert _run(tmp_path, program, "10")[0] == 10


@pytest.mark.parametrize("where", ["in the step", "in a global"])
def test_a_scripts_arguments_read_by_argparse_count(tmp_path, where):
    made = "argparse.ArgumentParser()" if where == "in the step" else "PARSER"
    program = _program(f"""
        import argparse
        PARSER = argparse.ArgumentParser()
        PARSER.add_argument("k")

        @pairio.cached
        def step(x):
            parser = {made}
            if parser is not PARSER:
                parser.add_argument("k")
            return x * int(parser.parse_args().k)
        """, "print(json.dumps([step(1)]))")
    assert _run(tmp_path, program, "10") == [10]
    assert _run(tmp_path, program, "20") == [20]


def test_only_the_library_data_the_step_reads_counts(tmp_path):
    # sys.path differs between machines and directories: a step that reads sys.stderr and
    # os.path (a name "path") does not count it, or no key would be shared; sys.argv read in a local
    # import counts.
    program = _program("""
        import sys

        @pairio.cached
        def step(x):
            import sys as local
            sys.stderr.write(os.path.join("a", "b") + "\\n")
            return x * len(local.argv)
        """, "print(json.dumps(sorted(step.explain(1)['code']['constants'])))")
    assert _run(tmp_path, program, "10") == ["sys.argv"]


def test_a_bound_append_is_the_codes_own_record(tmp_path):
    # ITEMS.append in a global: the step adds to ITEMS, which is its own log, not an input (as
    # ITEMS.append(x) in the step's code is): named, and a call is a hit whatever ITEMS holds.
    body = """
first = step(1)
again = step(1)
print(json.dumps([first, again, ITEMS, sorted(step.explain(1)["not_counted"]["written_only_globals"])]))
"""
    prelude = """
        ITEMS = []
        APPEND = ITEMS.append

        @pairio.cached
        def step(x):
            APPEND(x)
            return x * 10
        """
    assert _run(tmp_path, _program(prelude, body)) == [10, 10, [1], ["program.APPEND"]]


STATE = {
    "random.random()": "import random\ndef read(): return random.random()",
    "a global bound to random.random": "from random import random as draw\ndef read(): return draw()",
    "np.random.rand()": "def read(): return float(np.random.rand())",
    "a local import of random": "def read():\n    import random\n    return random.randint(0, 9)",
    "decimal.getcontext()": "import decimal\ndef read(): return decimal.getcontext().prec",
    "np.get_printoptions()": "def read(): return np.get_printoptions()['precision']",
    "pd.options": "import pandas as pd\ndef read(): return pd.options.display.precision",
    "pd.get_option()": "import pandas as pd\ndef read(): return pd.get_option('display.precision')",
    "time.time()": "import time\ndef read(): return time.time()",
    "from time import time": "from time import time\ndef read(): return time()",
    "datetime.datetime.now()": "import datetime\ndef read(): return datetime.datetime.now().year",
    "a datetime class's today()": "from datetime import date\ndef read(): return date.today().year",
    "np.random.default_rng() without a seed": "def read(): return np.random.default_rng().integers(9)",
    "random.Random() without a seed": "import random\ndef read(): return random.Random().random()",
    "a global default_rng called without a seed":
        "from numpy.random import default_rng\ndef read(): return default_rng().integers(9)",
    "pd.Timestamp.now()": "import pandas as pd\ndef read(): return pd.Timestamp.now().year",
}


@pytest.mark.parametrize("scenario", sorted(STATE))
def test_global_state_no_key_can_hold_is_named_and_warned_about_once(tmp_path, scenario):
    # The global random state, the clock, a library's global settings: no key holds them, so they
    # are named in explain (and warned about once), even read by a helper.
    prelude = STATE[scenario] + "\n\n@pairio.cached\ndef step(x):\n    read()\n    return x\n"
    body = """
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    step(1)
    step(2)
    step(1)
print(json.dumps([step.explain(1)["not_counted"]["global_state"], [str(w.message) for w in caught]]))
"""
    named, warned = _run(tmp_path, _program(prelude, body))
    assert len(named) == 1, named
    assert len(warned) == 1 and "global state" in warned[0] and named[0] in warned[0]


def test_a_step_reading_none_of_it_names_no_global_state(tmp_path):
    prelude = """
        import random
        import time
        RNG = np.random.default_rng(0)
        SEEDED = random.Random(7)

        @pairio.cached
        def step(x):
            seeded = np.random.default_rng(3).integers(9) + random.Random(4).random() + SEEDED.random() * 0
            return x * len(str(RNG.integers(10))) + int(time.timezone * 0) + int(seeded * 0)
        """
    body = 'print(json.dumps(step.explain(1)["not_counted"]["global_state"]))'
    assert _run(tmp_path, _program(prelude, body)) == []


_PROXY = """
        import warnings
        import weakref

        class Box:
            k = 10

        BOX = Box()
        PROXY = weakref.proxy(BOX)

        @pairio.cached
        def step(x):
            return x * PROXY.k
        """
# np.frompyfunc's ufunc is named "<lambda> (vectorized)" whatever it runs, and cannot be pickled:
# its name would be a stale key, so it is not counted, and named.
_RUN_TIME_UFUNC = """
        import warnings
        OP = np.frompyfunc(lambda v: v * 10, 1, 1)

        @pairio.cached
        def step(x):
            return int(OP(x))
        """


@pytest.mark.parametrize(("prelude", "label", "said"), [
    (_PROXY, "program.PROXY", "weakref.proxy"),
    (_RUN_TIME_UFUNC, "program.OP", "program.OP"),
], ids=["a weakref.proxy", "a ufunc made at run time"])
def test_a_global_that_cannot_be_counted_is_named_and_warned_about_once(tmp_path, prelude, label, said):
    body = """
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    step(1)
    step(2)
print(json.dumps([sorted(step.explain(1)["not_counted"]["globals"]), [str(w.message) for w in caught]]))
"""
    named, warned = _run(tmp_path, _program(prelude, body))
    assert named == [label]
    assert len(warned) == 1 and said in warned[0]


def test_ipython_history_is_named_not_counted(tmp_path):
    pytest.importorskip("IPython")
    cells = [
        "import json, warnings, pairio",
        "@pairio.cached\ndef step(x):\n    return x * len(In) * 0 + x * 10 + len(str(Out)) * 0",
        "warnings.simplefilter('always')",
        "with warnings.catch_warnings(record=True) as caught:\n    r = [step(1), step(1)]",
        "1 + 1",
        "r.append(step.explain(1)['miss'] is None)",
        "print(json.dumps([r, step.explain(1)['not_counted']['global_state'], [str(w.message) for w in caught]]))",
    ]
    program = ("import json\nfrom IPython.core.interactiveshell import InteractiveShell\n"
               f"shell = InteractiveShell.instance()\nfor cell in {cells!r}:\n"
               "    assert shell.run_cell(cell).success, cell\n")
    result, named, warned = _run(tmp_path, program)
    assert result == [10, 10, True]  # a hit after other cells ran: In and Out do not count
    assert sorted(n.split(":")[0] for n in named) == ["__main__.In", "__main__.Out"]
    assert len(warned) == 1 and "IPython's input/output history" in warned[0]
