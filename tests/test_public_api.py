"""pairio's public API is what ``pairio.__all__`` names: pinned here, so adding or dropping a
name is a decision (and a line in this file), never an accident of a refactor."""

from __future__ import annotations

import subprocess
import sys

import pairio

PUBLIC = [
    "AuthenticationError",
    "BadRequestError",
    "BoundCachedMethod",
    "CachedFunction",
    "Config",
    "ConfigurationError",
    "ContentFormatError",
    "ContentNotFoundError",
    "ContentURI",
    "CorruptContentError",
    "Entry",
    "InvalidInputError",
    "InvalidKeyError",
    "InvalidManifestError",
    "InvalidPathError",
    "InvalidURIError",
    "InvalidValueError",
    "KEY_FORMAT",
    "PairioError",
    "PermissionDeniedError",
    "RateLimitedError",
    "Ref",
    "RemoteError",
    "ServerUnavailableError",
    "StoreNotWritableError",
    "StoreUnavailableError",
    "SyncReport",
    "UnhashableArgumentError",
    "UnstorableResultError",
    "UntrustedContentError",
    "__version__",
    "add_safe_globals",
    "cached",
    "config",
    "content_store",
    "delete",
    "entries",
    "get",
    "get_config",
    "get_file_hash",
    "get_many",
    "key_string",
    "load_bytes",
    "load_dir",
    "load_file",
    "load_object",
    "load_pickle",
    "load_text",
    "parse_uri",
    "read_dir",
    "reset_config",
    "reset_stats",
    "set",
    "set_config",
    "set_many",
    "stats",
    "store_bytes",
    "store_dir",
    "store_file",
    "store_object",
    "store_pickle",
    "store_text",
    "sync",
    "why",
]


def test_all_names_exactly_the_public_api():
    assert sorted(pairio.__all__) == PUBLIC
    assert len(set(pairio.__all__)) == len(pairio.__all__), "a name is listed twice in pairio.__all__"


def test_every_public_name_resolves():
    missing = [name for name in PUBLIC if not hasattr(pairio, name)]
    assert not missing, f"named in pairio.__all__ but not there: {missing}"


def test_star_import_gives_the_public_names_in_a_fresh_interpreter():
    code = "from pairio import *; import pairio; print(all(n in globals() for n in pairio.__all__))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_an_unknown_name_is_a_clear_attribute_error():
    try:
        pairio.no_such_thing  # noqa: B018
    except AttributeError as e:
        assert "no_such_thing" in str(e)
    else:
        raise AssertionError("pairio.no_such_thing resolved")
