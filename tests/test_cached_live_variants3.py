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
