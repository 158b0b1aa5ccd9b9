"""``import pairio`` loads none of the heavy libraries it uses only in some calls."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# Each is imported inside the functions that need it.
LOADED_ON_USE = ("requests", "urllib3", "cloudpickle", "numpy", "pandas", "starlette", "uvicorn", "joblib",
                 "psycopg", "boto3", "filelock", "sqlite3", "datetime", "decimal")


def test_import_pairio_loads_no_library_it_needs_only_on_use():
    code = f"import json, sys; import pairio; print(json.dumps([m for m in {LOADED_ON_USE!r} if m in sys.modules]))"
    found = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert json.loads(found.stdout) == []


def test_every_public_name_resolves_after_a_plain_import():
    code = "import pairio; missing = [n for n in pairio.__all__ if not hasattr(pairio, n)]; print(missing)"
    found = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert found.stdout.strip() == "[]"


def test_import_pairio_makes_few_dataclasses():
    # Each costs the import the code it generates (about half a millisecond): the hit and miss
    # machinery's own records (key parts, a missed call, a stored result, an object's info) are
    # plain classes.
    code = ("import dataclasses, json; made = []; real = dataclasses._process_class\n"
            "def watched(cls, *a, **k):\n    made.append(cls.__qualname__); return real(cls, *a, **k)\n"
            "dataclasses._process_class = watched\nimport pairio\nprint(json.dumps(made))")
    found = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    made = json.loads(found.stdout)
    assert not {"KeyParts", "MissedCall", "StoredResult", "ObjectInfo"} & set(made) and len(made) <= 6, made


def _fresh(code: str, **env: str) -> object:
    """What ``code`` prints (as JSON), run in a fresh interpreter."""
    import os

    found = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                           env={**os.environ, **env})
    return json.loads(found.stdout)


# What ``import pairio`` leaves for the first use of a name: the layers under the public API, and
# the standard library they need (sqlite3 for the stores, inspect and dataclasses for keys and config).
LOADED_ON_FIRST_USE = ("pairio.config", "pairio.content", "pairio.kv", "pairio.key_value", "pairio.lifecycle",
                       "pairio.memo", "pairio.server", "pairio.hashing", "sqlite3", "inspect", "dataclasses",
                       "logging", "typing", "hashlib", "json", "pickle")


def test_import_pairio_alone_loads_only_the_version_and_the_errors():
    code = ("import json, sys; before = set(sys.modules); import pairio\n"
            "print(json.dumps(sorted(set(sys.modules) - before)))")
    loaded = _fresh(code)
    assert loaded == ["pairio", "pairio._version", "pairio.errors"], loaded


def test_decorating_a_function_loads_no_store_until_its_first_call(tmp_path):
    code = ("import json, sys\nimport pairio\n@pairio.cached\ndef double(x):\n    return 2 * x\n"
            f"watched = {LOADED_ON_FIRST_USE[1:5] + ('pairio.memo.remote', 'pairio.memo.values', 'sqlite3')!r}\n"
            "decorated = [m for m in watched if m in sys.modules]\n"
            "from pairio.memo import decorator\n"
            "result = double(21), double(21)\n"
            "left = [n for n, v in vars(decorator).items() if type(v) is decorator._ForCalls]\n"
            "print(json.dumps([decorated, result, left, pairio.stats()['__main__.double']['hits']]))")
    decorated, result, left, hits = _fresh(code, PAIRIO_DB_PATH=str(tmp_path / "store"))
    assert decorated == [], f"loaded when a function is decorated: {decorated}"
    assert result == [42, 42] and hits == 1
    assert left == [], f"names still standing in for their imports after a call: {left}"


def test_every_public_name_is_its_submodule_own_whichever_is_used_first():
    # Each name resolved first in its own interpreter would take a minute; in one, each name is
    # resolved before the later ones' submodules load (and a name its submodule shares, config, too).
    code = ("import importlib, json, pairio\n"
            "wrong = [n for n in reversed(pairio.__all__) if getattr(pairio, n) is not "
            "getattr(importlib.import_module('pairio.' + pairio._SUBMODULES.get(n, 'errors')), n, None) "
            "and n != '__version__']\n"
            "from pairio import *\n"
            "print(json.dumps([wrong, sorted(dir(pairio)) == sorted(pairio.__all__)]))")
    wrong, listed = _fresh(code)
    assert wrong == [] and listed


def test_pairio_config_is_the_function_after_its_submodule_loads_first():
    # Importing a submodule sets it as an attribute of its package: pairio.config, the submodule,
    # would hide pairio.config, the function, once anything imported it before the name was used.
    code = ("import json, sys\nimport pairio.kv\nimport pairio.config\nimport pairio\n"
            "from pairio import config as imported\n"
            "print(json.dumps([callable(pairio.config), pairio.config is imported, "
            "pairio.config is sys.modules['pairio.config'].config]))")
    assert _fresh(code) == [True, True, True]


STORES = ("pairio.content", "pairio.kv", "pairio.key_value", "pairio.lifecycle.records", "pairio.memo",
          "pairio.server", "pairio.identity", "sqlite3", "socket")


def test_the_command_line_help_loads_no_store():
    # The commands' modules are imported to build the parser: each imports what its handlers use
    # in the handlers, so `pairio --help` (and a typo's usage message) is quick.
    code = ("import contextlib, io, json, sys\nfrom pairio.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(['--help'])\n    except SystemExit as exit:\n        code = exit.code\n"
            f"print(json.dumps([code, [m for m in {STORES!r} "
            "if m in sys.modules]]))")
    assert _fresh(code) == [0, []]


@pytest.mark.parametrize("made_by", ["import pairio as pa\npa.set('k', 'v')",
                                     "from pairio.cli import main\nmain(['set', 'k', 'v'])"])
def test_a_store_made_through_the_public_api_has_every_family_of_tables(tmp_path, made_by):
    # As when `import pairio` loaded everything: a database made by pa.set alone (or `pairio set`)
    # has lifecycle's tables too (made later, they would need a writable store: a read-only mount
    # could not be read).
    code = (f"import json, sqlite3\n{made_by}\nimport pairio as pa\n"
            "db = sqlite3.connect(str(pa.get_config().database_dir / 'kv.sqlite3'))\n"
            "print(json.dumps(sorted(r[0] for r in db.execute(\"SELECT name FROM sqlite_master WHERE type = 'table'\"))))")
    tables = _fresh(code, PAIRIO_DB_PATH=str(tmp_path / "store"))
    assert {"pairs", "entries", "entry_totals", "counts"} <= set(tables), tables


def test_content_loaded_as_data_rebuilds_a_results_files_whichever_name_is_used_first():
    # memo's helper for a cached result's files, in content loaded as data only (untrusted), is
    # known to the safe unpickler once the content store's names are, as with `import pairio` before.
    code = ("import json\nimport pairio\npairio.load_object\nfrom pairio.content import safe_pickle\n"
            "print(json.dumps(('pairio.memo.values', 'stored_file') in safe_pickle._SAFE_REPLACEMENTS))")
    assert _fresh(code) is True
