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
