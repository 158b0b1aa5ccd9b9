"""When the key of a cached function changes, and when it must not: code, helpers, constants, versions, arguments.

Each test writes user modules into a temporary directory, imports them fresh,
and compares the keys of two versions of the code. Every version goes into its
own directory (same module names, new files), so no stale ``.pyc`` or
``linecache`` entry can stand in for the edited source.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest

import pairio as pa
from pairio.memo import dependencies as deps


class Modules:
    """Writes versions of user modules and imports each version afresh."""

    def __init__(self, root):
        self.root = root
        self.versions = 0
        self.names: set[str] = set()

    def load(self, files: dict[str, str], main: str = "pipe_main", *, newline: str = "\n"):
        """Write ``{module name: source}`` into a new directory and import ``main`` from it."""
        self.versions += 1
        directory = self.root / f"version{self.versions}"
        directory.mkdir()
        for name, source in files.items():
            text = textwrap.dedent(source).lstrip("\n").replace("\n", newline)
            (directory / f"{name}.py").write_bytes(text.encode())
        self.names.update(files)
        self.forget()
        sys.path.insert(0, str(directory))
        importlib.invalidate_caches()
        try:
            return importlib.import_module(main)
        finally:
            sys.path.remove(str(directory))

    def forget(self):
        for name in self.names:
            sys.modules.pop(name, None)

    def cached(self, files, function="main", main="pipe_main", **options):
        """The function ``function`` of a fresh import, wrapped in ``@pairio.cached(**options)``."""
        return pa.cached(**options)(getattr(self.load(files, main), function))

    def key(self, files, *args, function="main", options=None, **kwargs):
        """The key of ``function(*args, **kwargs)`` in a fresh import of ``files``.

        Taken at once: a class's source is found through ``sys.modules``, which the next version replaces.
        """
        return self.cached(files, function, **(options or {})).key(*args, **kwargs)


@pytest.fixture
def modules(tmp_path):
    m = Modules(tmp_path / "modules")
    m.root.mkdir()
    yield m
    m.forget()


def edit(files, module, old, new):
    """A copy of ``files`` with ``old`` replaced by ``new`` in ``module``'s source (which must contain it)."""
    assert old in files[module], old
    return {**files, module: files[module].replace(old, new)}


# --- the function's own code ----------------------------------------------------------

SIMPLE = {"pipe_main": '''
    def main(x, y=2):
        """Scale and shift."""
        z = x * 3  # scale
        return z + y
    '''}


@pytest.mark.parametrize("old,new", [
    ('"""Scale and shift."""', '"""Multiply by three, then add y.\n\n    More words.\n    """'),
    ("# scale", "# times three"),
    ("z = x * 3", "z = x*3"),
    ("        return z + y", "\n\n        return z + \\\n            y"),
    ('    def main(x, y=2):', '    def main(\n        x,\n        y=2,\n    ):'),
], ids=["docstring", "comment", "spacing", "continuation line", "wrapped signature"])
def test_an_edit_that_changes_nothing_keeps_the_key(modules, old, new):
    assert modules.key(edit(SIMPLE, "pipe_main", old, new), 1) == modules.key(SIMPLE, 1)


@pytest.mark.parametrize("old,new", [
    ("x * 3", "x * 4"),
    ("z + y", "z - y"),
    ("y=2", "y=3"),
    ("return z + y", "z += 1\n        return z + y"),
], ids=["constant", "operator", "default", "statement"])
def test_an_edit_to_the_code_changes_the_key(modules, old, new):
    assert modules.key(edit(SIMPLE, "pipe_main", old, new), 1) != modules.key(SIMPLE, 1)


def test_reloading_the_same_source_gives_the_same_key(modules):
    assert modules.key(SIMPLE, 1) == modules.key(SIMPLE, 1)


def test_windows_line_endings_give_the_same_key(modules):
    first = modules.key(SIMPLE, 1)
    crlf = modules.load(SIMPLE, newline="\r\n")
    assert pa.cached(crlf.main).key(1) == first


def test_the_module_and_name_of_the_function_are_part_of_the_key(modules):
    first = modules.key(SIMPLE, 1)
    other = pa.cached(modules.load({"pipe_other": SIMPLE["pipe_main"]}, main="pipe_other").main).key(1)
    assert other != first
    renamed = edit(SIMPLE, "pipe_main", "def main(", "def main2(")
    assert modules.key(renamed, 1, function="main2") != first


def test_the_cached_decorator_line_is_not_code(modules):
    plain = {"pipe_main": "import pairio\n\n\n" + textwrap.dedent(SIMPLE["pipe_main"])}
    decorated = edit(plain, "pipe_main", "def main(", "@pairio.cached()\ndef main(")
    bare = edit(plain, "pipe_main", "def main(", "@pairio.cached\ndef main(")
    keys = {modules.load(files).main.key(1) for files in (decorated, bare)}
    keys.add(modules.key(plain, 1))
    assert len(keys) == 1


# --- helpers ---------------------------------------------------------------------------

CHAIN = {"pipe_main": '''
    def leaf(x):
        return x + 1


    def middle(x):
        return leaf(x) * 2


    def unrelated(x):
        return x - 1


    def main(x):
        return middle(x)
    '''}


def test_an_edited_helper_two_calls_down_changes_the_key(modules):
    assert modules.key(edit(CHAIN, "pipe_main", "x + 1", "x + 2"), 1) != modules.key(CHAIN, 1)


def test_a_comment_in_a_helper_keeps_the_key(modules):
    commented = edit(CHAIN, "pipe_main", "return x + 1", "# the next integer\n        return x + 1  # +1")
    assert modules.key(commented, 1) == modules.key(CHAIN, 1)


def test_an_edit_to_a_function_the_code_does_not_reach_keeps_the_key(modules):
    assert modules.key(edit(CHAIN, "pipe_main", "x - 1", "x - 2"), 1) == modules.key(CHAIN, 1)


def test_explain_lists_the_helpers_and_their_digests(modules):
    explained = modules.cached(CHAIN).explain(1)
    assert sorted(explained["code"]["helpers"]) == ["pipe_main.leaf", "pipe_main.middle"]
    edited = modules.cached(edit(CHAIN, "pipe_main", "x + 1", "x + 2")).explain(1)
    assert edited["code"]["helpers"]["pipe_main.middle"] == explained["code"]["helpers"]["pipe_main.middle"]
    assert edited["code"]["helpers"]["pipe_main.leaf"] != explained["code"]["helpers"]["pipe_main.leaf"]
    assert edited["code"]["source"] == explained["code"]["source"]


PACKAGE = {
    "pipe_main": '''
        import pipe_helpers
        from pipe_helpers import imported


        def via_module(x):
            return pipe_helpers.second(x)


        def main(x):
            return pipe_helpers.first(x) + via_module(x) + imported(x)
        ''',
    "pipe_helpers": '''
        def first(x):
            return x + 1


        def second(x):
            return x * 2


        def imported(x):
            return -x


        def unused(x):
            return x
        ''',
}


@pytest.mark.parametrize("old,new", [("x + 1", "x + 10"), ("x * 2", "x * 20"), ("-x", "-2 * x")])
def test_an_edited_helper_in_another_user_module_changes_the_key(modules, old, new):
    # pipe_helpers is looked into for main's names and again for via_module's: all three count.
    assert modules.key(edit(PACKAGE, "pipe_helpers", old, new), 1) != modules.key(PACKAGE, 1)


def test_an_unused_function_of_a_helper_module_does_not_count(modules):
    assert modules.key(edit(PACKAGE, "pipe_helpers", "return x\n", "return x + 5\n"), 1) == modules.key(PACKAGE, 1)


CLASSES = {"pipe_main": '''
    class Base:
        def offset(self):
            return 1


    class Scaler(Base):
        factor = 3

        def apply(self, x):
            return x * self.factor + self.offset()


    def main(x):
        return Scaler().apply(x)
    '''}


@pytest.mark.parametrize("old,new", [
    ("x * self.factor", "x / self.factor"),
    ("factor = 3", "factor = 4"),
    ("return 1", "return 2"),
])
def test_an_edited_class_used_by_the_function_changes_the_key(modules, old, new):
    assert modules.key(edit(CLASSES, "pipe_main", old, new), 1) != modules.key(CLASSES, 1)


def test_a_docstring_added_to_a_class_keeps_the_key(modules):
    documented = edit(CLASSES, "pipe_main", "class Scaler(Base):\n", 'class Scaler(Base):\n        """Scales."""\n\n')
    assert modules.key(documented, 1) == modules.key(CLASSES, 1)


def test_a_helper_called_from_a_method_counts(modules):
    files = {"pipe_main": '''
        def shift(x):
            return x + 1


        class Step:
            def run(self, x):
                return shift(x)


        def main(x):
            return Step().run(x)
        '''}
    assert modules.key(edit(files, "pipe_main", "x + 1", "x + 2"), 1) != modules.key(files, 1)


def test_a_helper_called_from_a_nested_function_counts(modules):
    files = {"pipe_main": '''
        def shift(x):
            return x + 1


        def main(xs):
            def each(x):
                return shift(x)
            return [each(x) for x in xs]
        '''}
    assert modules.key(edit(files, "pipe_main", "x + 1", "x + 2"), [1]) != modules.key(files, [1])


def test_a_helper_given_as_a_default_argument_counts(modules):
    files = {"pipe_main": '''
        def shift(x):
            return x + 1


        def main(x, op=shift):
            return op(x)
        '''}
    assert modules.key(edit(files, "pipe_main", "x + 1", "x + 2"), 1) != modules.key(files, 1)


CYCLE = {"pipe_main": '''
    def is_even(n):
        return True if n == 0 else is_odd(n - 1)


    def is_odd(n):
        return False if n == 0 else is_even(n - 1)


    def main(n):
        return is_even(n) and main is not None
    '''}


def test_helpers_that_call_each_other_are_walked_once(modules):
    explained = modules.cached(CYCLE).explain(4)
    assert sorted(explained["code"]["helpers"]) == ["pipe_main.is_even", "pipe_main.is_odd"]
    assert modules.key(edit(CYCLE, "pipe_main", "False if", "bool(0) if"), 4) != explained["key"]
    assert modules.key(CYCLE, 4) == explained["key"]


def test_modules_that_import_each_other_are_walked(modules):
    files = {
        "pipe_main": '''
            import pipe_helpers


            def twice(x):
                return 2 * x


            def main(x):
                return pipe_helpers.shift(x)
            ''',
        "pipe_helpers": '''
            import pipe_main


            def shift(x):
                return pipe_main.twice(x) + 1
            ''',
    }
    explained = modules.cached(files).explain(1)
    assert sorted(explained["code"]["helpers"]) == ["pipe_helpers.shift", "pipe_main.twice"]
    assert modules.key(edit(files, "pipe_main", "2 * x", "3 * x"), 1) != explained["key"]


# --- constants and closures ------------------------------------------------------------

CONSTANTS = {
    "pipe_main": '''
        import enum

        import pipe_settings

        SCALE = 3
        NAMES = ("a", "b")
        LIMITS = {"low": 0, "high": 10}
        UNUSED = 1


        class Mode(enum.Enum):
            FAST = 1


        DEFAULT_MODE = Mode.FAST


        def main(x):
            return x * SCALE, NAMES, LIMITS["high"], DEFAULT_MODE, pipe_settings.THRESHOLD
        ''',
    "pipe_settings": '''
        THRESHOLD = 0.5
        ''',
}


@pytest.mark.parametrize("module,old,new", [
    ("pipe_main", "SCALE = 3", "SCALE = 4"),
    ("pipe_main", "SCALE = 3", "SCALE = 3.0"),
    ("pipe_main", '("a", "b")', '("a", "c")'),
    ("pipe_main", '"high": 10', '"high": 11'),
    ("pipe_main", "DEFAULT_MODE = Mode.FAST", "DEFAULT_MODE = None"),
    ("pipe_settings", "0.5", "0.25"),
])
def test_an_edited_constant_changes_the_key(modules, module, old, new):
    assert modules.key(edit(CONSTANTS, module, old, new), 1) != modules.key(CONSTANTS, 1)


@pytest.mark.parametrize("module,old,new", [
    ("pipe_main", "UNUSED = 1", "UNUSED = 2"),
    ("pipe_main", "SCALE = 3", "SCALE = 0x3  # hex"),
    ("pipe_main", '{"low": 0, "high": 10}', '{"high": 10, "low": 0}'),
    ("pipe_settings", "THRESHOLD = 0.5", "# tuned by hand\nTHRESHOLD = 0.50"),
])
def test_a_constant_written_differently_or_unused_keeps_the_key(modules, module, old, new):
    assert modules.key(edit(CONSTANTS, module, old, new), 1) == modules.key(CONSTANTS, 1)


def test_explain_lists_the_constants(modules):
    constants = modules.cached(CONSTANTS).explain(1)["code"]["constants"]
    assert sorted(constants) == ["pipe_main.DEFAULT_MODE", "pipe_main.LIMITS", "pipe_main.NAMES",
                                 "pipe_main.SCALE", "pipe_settings.THRESHOLD"]


def test_globals_that_are_neither_code_nor_constants_are_listed_as_not_counted(modules):
    files = {"pipe_main": '''
        import logging
        import threading

        LOCK = threading.Lock()
        LOG = logging.getLogger("pipe")


        class Registry:
            pass


        REGISTRY = Registry()


        def main(x):
            with LOCK:
                LOG.info("%s", REGISTRY)
            return x
        '''}
    explained = modules.cached(files).explain(1)
    # An instance of a user class counts by its state and its class's code (issue 18).
    assert "pipe_main.REGISTRY" in explained["code"]["constants"]
    assert "pipe_main.Registry" in explained["code"]["helpers"]  # its class's code counts
    assert "logging" in explained["not_counted"]["stdlib_modules (not versioned)"]


CLOSURES = {"pipe_main": '''
    import pairio


    def shift(x):
        return x + 1


    def make(factor, op=shift):
        @pairio.cached
        def step(x):
            return op(x) * factor
        return step
    '''}


def test_closure_values_count_by_value(modules):
    module = modules.load(CLOSURES)
    assert module.make(2).key(1) == module.make(2).key(1)
    assert module.make(2).key(1) != module.make(3).key(1)
    assert module.make(2).key(1) != module.make(2.0).key(1)
    explained = module.make([1, 2]).explain(1)
    assert sorted(explained["code"]["closure"]) == ["pipe_main.make.<locals>.step.<closure factor>"]
    assert "pipe_main.shift" in explained["code"]["helpers"]


def test_a_function_in_a_closure_counts_by_its_code(modules):
    first = modules.load(CLOSURES).make(2).key(1)
    edited = modules.load(edit(CLOSURES, "pipe_main", "x + 1", "x + 2")).make(2).key(1)
    assert edited != first


def test_an_unhashable_closure_value_is_listed_as_not_counted(modules):
    files = {"pipe_main": '''
        import threading


        def make():
            lock = threading.Lock()

            def step(x):
                with lock:
                    return x
            return step
        '''}
    step = pa.cached(modules.load(files).make())
    explained = step.explain(1)
    assert "pipe_main.make.<locals>.step.<closure lock>" in explained["not_counted"]["globals"]


# --- library versions -------------------------------------------------------------------

LIBRARIES = {"pipe_main": '''
    import json
    import math

    import numpy as np
    import yaml


    def uses_numpy(x):
        return float(np.sum(x))


    def uses_yaml(x):
        return yaml.safe_dump(x)


    def stdlib_only(x):
        return json.dumps(math.floor(x))


    def via_helper(x):
        return uses_numpy(x) + 1
    '''}

NEEDS_NUMPY_AND_YAML = pytest.mark.skipif(
    importlib.util.find_spec("numpy") is None or importlib.util.find_spec("yaml") is None,
    reason="needs numpy and PyYAML installed")


@NEEDS_NUMPY_AND_YAML
def test_library_versions_are_found_automatically(modules):
    import numpy

    explained = modules.cached(LIBRARIES, "uses_numpy").explain(1)
    assert explained["dependencies"] == {"numpy": numpy.__version__}
    assert "pipe_main.np" not in explained["code"]["helpers"]


@NEEDS_NUMPY_AND_YAML
def test_a_stdlib_only_function_has_no_dependencies(modules):
    explained = modules.cached(LIBRARIES, "stdlib_only").explain(1)
    assert explained["dependencies"] == {}
    assert explained["code"]["helpers"] == {}
    assert explained["not_counted"]["stdlib_modules (not versioned)"] == ["json", "math"]


@NEEDS_NUMPY_AND_YAML
def test_upgrading_numpy_changes_the_keys_of_functions_that_use_it_and_only_those(modules, installed):
    names = ["uses_numpy", "via_helper", "uses_yaml", "stdlib_only"]
    before = {name: modules.key(LIBRARIES, 1, function=name) for name in names}
    installed["numpy"] = "99.0"
    deps.clear_caches()
    after = {name: modules.key(LIBRARIES, 1, function=name) for name in names}
    changed = sorted(name for name in names if before[name] != after[name])
    assert changed == ["uses_numpy", "via_helper"]
    assert modules.cached(LIBRARIES, "via_helper").explain(1)["dependencies"] == {"numpy": "99.0"}


@NEEDS_NUMPY_AND_YAML
def test_a_dependency_named_in_the_decorator_counts_by_version(modules, installed):
    options = {"dependencies": ["numpy"]}
    plain = modules.key(LIBRARIES, 1, function="stdlib_only")
    named = modules.key(LIBRARIES, 1, function="stdlib_only", options=options)
    assert named != plain
    installed["numpy"] = "99.0"
    deps.clear_caches()
    assert modules.key(LIBRARIES, 1, function="stdlib_only", options=options) != named
    assert modules.key(LIBRARIES, 1, function="stdlib_only") == plain
    explained = modules.cached(LIBRARIES, "stdlib_only", **options).explain(1)
    assert explained["dependencies"] == {"numpy": "99.0"}


def test_a_named_dependency_that_is_not_installed_counts_as_such(modules):
    explained = modules.cached(SIMPLE, dependencies=["surely-not-an-installed-distribution"]).explain(1)
    assert explained["dependencies"] == {"surely-not-an-installed-distribution": "not installed"}


# --- decorator options -----------------------------------------------------------------


def test_version_changes_the_key(modules):
    keys = [modules.key(SIMPLE, 1, options={"version": v}) for v in (None, "1", "2", "1")]
    assert len(set(keys[:3])) == 3
    assert keys[1] == keys[3]


def test_ignored_arguments_do_not_count(modules):
    files = {"pipe_main": '''
        def main(x, verbose=False, log=None):
            return x
        '''}
    step = modules.cached(files, ignore=["verbose", "log"])
    assert step.key(1, verbose=True, log=[1]) == step.key(1) == step.key(1, True)
    assert step.key(1) != step.key(2)
    explained = step.explain(1)
    assert list(explained["arguments"]) == ["x"]
    assert explained["not_counted"]["ignored_arguments"] == ["log", "verbose"]
    counted = modules.cached(files)
    assert counted.key(1, verbose=True) != counted.key(1)


def test_ignoring_a_name_that_is_not_a_parameter_is_an_error(modules):
    with pytest.raises(ValueError, match="verbos"):
        modules.cached(SIMPLE, ignore=["verbos"])


# --- arguments bound to the signature ---------------------------------------------------

SIGNATURES = {"pipe_main": '''
    def main(a, b=2, *, c=3):
        return a + b + c


    def variadic(a, *args, **kwargs):
        return a, args, kwargs


    def positional(a, /, b=1):
        return a + b
    '''}


def test_keyword_order_and_defaults_do_not_change_the_key(modules):
    step = modules.cached(SIGNATURES)
    expected = step.key(1)
    assert step.key(a=1) == expected
    assert step.key(1, 2) == expected
    assert step.key(1, b=2, c=3) == expected
    assert step.key(c=3, b=2, a=1) == expected
    assert step.key(1, c=4) != expected
    assert step.key(1.0) != expected


def test_variadic_keywords_are_order_free_and_variadic_positions_are_not(modules):
    step = modules.cached(SIGNATURES, "variadic")
    assert step.key(1, x=1, y=2) == step.key(1, y=2, x=1)
    assert step.key(1, 2, 3) != step.key(1, 3, 2)
    assert step.key(1) == step.key(a=1)
    assert step.key(1, 2) != step.key(1, b=2)


def test_positional_only_parameters_bind_like_python(modules):
    step = modules.cached(SIGNATURES, "positional")
    assert step.key(1) == step.key(1, 1) == step.key(1, b=1)
    with pytest.raises(TypeError):
        step.key(a=1)


@pytest.mark.parametrize("args,kwargs", [((), {}), ((1, 2, 3), {}), ((1,), {"d": 4}), ((1,), {"a": 1})])
def test_a_call_python_would_refuse_raises_type_error(modules, args, kwargs):
    with pytest.raises(TypeError):
        modules.cached(SIGNATURES).key(*args, **kwargs)


def test_explain_shows_each_argument_hash_in_signature_order(modules):
    from pairio.memo.arguments import hash_value

    explained = modules.cached(SIGNATURES).explain(c=5, a=1)
    assert list(explained["arguments"]) == ["a", "b", "c"]
    assert explained["arguments"] == {"a": hash_value(1), "b": hash_value(2), "c": hash_value(5)}
    assert explained["key_format"] == pa.KEY_FORMAT


# --- globals holding code or settings in other forms: a partial, a dispatch table, a record ---

GAPS = {"pipe_main": '''
    import collections
    import dataclasses
    import functools


    def scale(x, factor):
        return x * factor


    def shift(x):
        return x + 1


    Params = collections.namedtuple("Params", "k")

    TRIPLE = functools.partial(scale, factor=3)
    STEPS = {"shift": shift, "scale": scale}
    PARAMS = Params(k=3)
    ORDER = [shift, scale]


    @dataclasses.dataclass(frozen=True)
    class Settings:
        gain: float = 2.0


    SETTINGS = Settings(gain=2.0)


    def via_partial(x):
        return TRIPLE(x)


    def via_table(x):
        return STEPS["shift"](x)


    def via_namedtuple(x):
        return x * PARAMS.k


    def via_dataclass(x):
        return x * SETTINGS.gain


    def via_list(x):
        return ORDER[0](x)
    '''}


def test_the_arguments_of_a_partial_global_count(modules):
    edited = edit(GAPS, "pipe_main", "factor=3", "factor=4")
    assert modules.key(edited, 1, function="via_partial") != modules.key(GAPS, 1, function="via_partial")


def test_a_function_in_a_global_dict_counts(modules):
    edited = edit(GAPS, "pipe_main", "x + 1", "x + 2")
    assert modules.key(edited, 1, function="via_table") != modules.key(GAPS, 1, function="via_table")


def test_which_name_a_table_maps_to_which_function_counts(modules):
    edited = edit(GAPS, "pipe_main", '{"shift": shift, "scale": scale}', '{"shift": scale, "scale": shift}')
    assert modules.key(edited, 1, function="via_table") != modules.key(GAPS, 1, function="via_table")


def test_the_order_of_functions_in_a_global_list_counts(modules):
    edited = edit(GAPS, "pipe_main", "ORDER = [shift, scale]", "ORDER = [scale, shift]")
    assert modules.key(edited, 1, function="via_list") != modules.key(GAPS, 1, function="via_list")


def test_a_dataclass_constant_counts_by_value(modules):
    edited = edit(GAPS, "pipe_main", "SETTINGS = Settings(gain=2.0)", "SETTINGS = Settings(gain=3.0)")
    assert modules.key(edited, 1, function="via_dataclass") != modules.key(GAPS, 1, function="via_dataclass")


def test_a_namedtuple_constant_counts_by_value(modules):
    edited = edit(GAPS, "pipe_main", "k=3", "k=4")
    assert modules.key(edited, 1, function="via_namedtuple") != modules.key(GAPS, 1, function="via_namedtuple")


# --- end to end: a stale result is never returned ---------------------------------------

TRACKED = {
    "pipe_main": '''
        def leaf(x):
            return x + 1


        def middle(x):
            return leaf(x) * 10


        def main(x, calls):
            calls.append(x)
            return middle(x)
        ''',
}


def test_an_edited_helper_is_recomputed_and_a_comment_edit_is_a_hit(modules):
    calls = []
    assert modules.cached(TRACKED, ignore=["calls"])(1, calls) == 20
    assert modules.cached(TRACKED, ignore=["calls"])(1, calls) == 20
    assert calls == [1]
    commented = edit(TRACKED, "pipe_main", "return x + 1", "return x + 1  # next")
    assert modules.cached(commented, ignore=["calls"])(1, calls) == 20
    assert calls == [1]
    edited = edit(TRACKED, "pipe_main", "x + 1", "x + 2")
    assert modules.cached(edited, ignore=["calls"])(1, calls) == 30
    assert calls == [1, 1]


# --- a program's main module is named as it is imported ----------------------------------


STEPS_SCRIPT = '''
import pairio


@pairio.cached
def step(x):
    return x + 1


if __name__ == "__main__":
    print(step.name, step.key(1))
'''


def _run_python(cwd, *args):
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    done = subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_a_script_run_directly_with_dash_m_or_imported_has_one_key(tmp_path):
    (tmp_path / "steps.py").write_text(STEPS_SCRIPT)
    as_script = _run_python(tmp_path, "steps.py")
    as_module = _run_python(tmp_path, "-m", "steps")
    imported = _run_python(tmp_path, "-c", "import steps; print(steps.step.name, steps.step.key(1))")
    assert as_script == as_module == imported
    assert as_script[0] == "steps.step"


def test_code_typed_at_an_interactive_prompt_keeps_the_name_main(tmp_path):
    out = _run_python(tmp_path, "-c", "import pairio\nf = pairio.cached(lambda x: x)\nprint(f.name)")
    assert out == ["__main__.<lambda>"]
