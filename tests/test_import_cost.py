"""``import pairio`` loads none of the heavy libraries it uses only in some calls."""

from __future__ import annotations

import json
import subprocess
import sys

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
