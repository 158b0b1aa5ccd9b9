"""Signing, the nonce cache, the rate limiter and pairio.json validation, without a server."""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
import time

import pytest
from server_process import default_settings

from pairio.errors import ConfigurationError
from pairio.server.ratelimit import RateLimiter, retry_after_header
from pairio.server.settings import MAX_PER_MINUTE, load_settings, parse_settings
from pairio.signing import (
    NonceCache,
    NonceCacheFull,
    SignatureError,
    canonical_query,
    legacy_signature,
    sign_request,
    verify_legacy,
    verify_request,
)

PASSWORDS = {"lab": "secret-password"}


def lower(headers):
    return {k.lower(): v for k, v in headers.items()}


def verify(headers, method="POST", path="/api/v1/set", query="", body=b"{}", nonces=None, now=None):
    return verify_request(lower(headers), PASSWORDS, method, path, query, body,
                          (NonceCache() if nonces is None else nonces).add, now)


# --- signatures ---------------------------------------------------------------------------


def test_a_signed_request_verifies_to_its_channel():
    headers = sign_request("lab", "secret-password", "POST", "/api/v1/set", b"{}")
    assert verify(headers) == "lab"
    assert "secret-password" not in json.dumps(headers)


@pytest.mark.parametrize("change", [
    {"method": "GET"}, {"path": "/api/v1/delete"}, {"query": "a=1"}, {"body": b"{ }"},
])
def test_changing_any_signed_part_fails(change):
    headers = sign_request("lab", "secret-password", "POST", "/api/v1/set", b"{}")
    with pytest.raises(SignatureError):
        verify(headers, **change)


def test_query_order_does_not_matter():
    assert canonical_query("b=2&a=1&a=0") == canonical_query("a=0&a=1&b=2") == "a=0&a=1&b=2"
    headers = sign_request("lab", "secret-password", "GET", "/x", b"", "b=2&a=1")
    assert verify(headers, method="GET", path="/x", query="a=1&b=2", body=b"") == "lab"


def test_the_channel_is_signed():
    passwords = {"lab": "same-password", "other": "same-password"}
    headers = lower(sign_request("lab", "same-password", "POST", "/p", b""))
    headers["x-pairio-channel"] = "other"
    with pytest.raises(SignatureError):
        verify_request(headers, passwords, "POST", "/p", "", b"", NonceCache().add)


def test_unknown_channel_fails_like_a_wrong_password():
    wrong = sign_request("lab", "wrong-password", "POST", "/api/v1/set", b"{}")
    unknown = sign_request("ghost", "secret-password", "POST", "/api/v1/set", b"{}")
    messages = []
    for headers in (wrong, unknown):
        with pytest.raises(SignatureError) as info:
            verify(headers)
        messages.append(str(info.value))
    assert messages[0] == messages[1]


def test_replay_and_stale_timestamps_fail():
    nonces = NonceCache()
    headers = sign_request("lab", "secret-password", "POST", "/api/v1/set", b"{}")
    verify(headers, nonces=nonces)
    with pytest.raises(SignatureError, match="already used"):
        verify(headers, nonces=nonces)
    old = sign_request("lab", "secret-password", "POST", "/api/v1/set", b"{}", timestamp=int(time.time()) - 301)
    with pytest.raises(SignatureError, match="300 seconds"):
        verify(old)


@pytest.mark.parametrize("name, value", [
    ("x-pairio-timestamp", "12.5"), ("x-pairio-nonce", "short"), ("x-pairio-nonce", "a" * 65),
    ("x-pairio-signature", "f" * 63), ("x-pairio-channel", ""),
])
def test_malformed_headers_fail(name, value):
    headers = lower(sign_request("lab", "secret-password", "POST", "/api/v1/set", b"{}"))
    headers[name] = value
    with pytest.raises(SignatureError):
        verify(headers)


def test_nonce_cache_forgets_expired_nonces_and_is_bounded():
    cache = NonceCache(max_size=2)
    assert cache.add("c", "n1", expires_at=10, now=0)
    assert not cache.add("c", "n1", expires_at=10, now=5)
    assert cache.add("other-channel", "n1", expires_at=10, now=5)
    with pytest.raises(NonceCacheFull):
        cache.add("c", "n2", expires_at=10, now=5)
    assert cache.add("c", "n2", expires_at=30, now=11)  # n1s expired
    assert len(cache) == 1


def test_legacy_signature_is_the_documented_formula():
    text = '{"collection":"c","key":"k","name":"set","password":"pw","value":"v"}'
    assert legacy_signature("pw", "set", "c", "k", "v") == hashlib.sha1(text.encode()).hexdigest()
    assert verify_legacy("pw", legacy_signature("pw", "get", "c", "k"), "get", "c", "k")
    assert not verify_legacy("pw", legacy_signature("pw", "get", "c", "k"), "set", "c", "k", "v")
    assert not verify_legacy(None, legacy_signature("pw", "get", "c", "k"), "get", "c", "k")
    assert not verify_legacy("pw", "\u00e9" * 40, "get", "c", "k")


# --- rate limits --------------------------------------------------------------------------------


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_bucket_allows_a_minutes_worth_then_refills():
    clock = Clock()
    limiter = RateLimiter(clock)
    key = ("c", "spikes", "get")
    assert all(limiter.acquire(key, 60) == 0.0 for _ in range(60))
    wait = limiter.acquire(key, 60)
    assert 0.9 < wait <= 1.0
    clock.now += 1.0
    assert limiter.acquire(key, 60) == 0.0


def test_every_key_of_a_batch_counts():
    limiter = RateLimiter(Clock())
    assert limiter.acquire(("c", "s", "get"), 100, count=80) == 0.0
    assert limiter.acquire(("c", "s", "get"), 100, count=30) > 0
    assert limiter.acquire(("c", "s", "get"), 100, count=20) == 0.0


def test_a_batch_bigger_than_a_minute_passes_on_a_full_bucket_and_leaves_debt():
    clock = Clock()
    limiter = RateLimiter(clock)
    assert limiter.acquire(("c", "s", "set"), 60, count=120) == 0.0
    assert limiter.acquire(("c", "s", "set"), 60) > 60
    clock.now += 61
    assert limiter.acquire(("c", "s", "set"), 60) == 0.0


def test_retry_after_is_whole_seconds_at_least_one():
    assert retry_after_header(0.01) == "1" and retry_after_header(19.2) == "20"


def test_gets_and_sets_are_counted_separately():
    limiter = RateLimiter(Clock())
    assert limiter.acquire(("c", "s", "get"), 1) == 0.0
    assert limiter.acquire(("c", "s", "set"), 1) == 0.0
    assert limiter.acquire(("c", "s", "get"), 1) > 0


# --- pairio.json ----------------------------------------------------------------------------------


def test_valid_settings_load(tmp_path):
    (tmp_path / "pairio.json").write_text(json.dumps(default_settings()))
    settings = load_settings(tmp_path)
    assert set(settings.channels) == {"lab-rw", "public-ro", "drop-box"}
    assert settings.channels["public-ro"].collections["spikes"].max_sets_per_minute == 0
    assert settings.store.backend == "embedded" and not settings.legacy
    assert "rw-password" not in repr(settings)


@pytest.mark.parametrize("name", ["example_pairio.json", "example_pairio.postgresql.json",
                                  "example_pairio.s3.json"])
def test_example_pairio_json_is_valid(name):
    from pathlib import Path

    example = Path(__file__).parent.parent / "server" / name
    assert parse_settings(json.loads(example.read_text()), example.parent).channels


def test_a_database_url_is_kept_out_of_repr_and_excludes_store(tmp_path):
    url = "postgresql://pairio:db-secret@db/pairio"
    settings = parse_settings(default_settings(database=url), tmp_path)
    assert settings.database == url and settings.shared
    assert "db-secret" not in repr(settings)
    with pytest.raises(ConfigurationError, match="store cannot be given with database"):
        parse_settings(default_settings(database=url, store={"path": "store"}), tmp_path)


def _broken(path, value):
    obj = copy.deepcopy(default_settings())
    target = obj
    for part in path[:-1]:
        target = target[part]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return obj


@pytest.mark.parametrize("path, value, field", [
    (["channels"], [], "channels"),
    (["channels", 0, "name"], "", "channels[0].name"),
    (["channels", 1, "password"], KeyError, "channels[1].password"),
    (["channels", 1, "password"], "short", "channels[1].password"),
    (["channels", 0, "collections", 1, "maxNumGetsPerMinute"], -1, "channels[0].collections[1].maxNumGetsPerMinute"),
    (["channels", 1, "collections", 0, "maxNumSetsPerMinute"], "10", "channels[1].collections[0].maxNumSetsPerMinute"),
    (["channels", 0, "collections", 0, "name"], "x" * 81, "channels[0].collections[0].name"),
    (["channels", 2, "name"], "lab-rw", "channels[2].name"),
    (["legacy"], "yes", "legacy"),
    (["store"], {"backend": "redis"}, "store.backend"),
    (["database"], "mysql://db/pairio", "database"),
    (["content"], {"backend": "s3"}, "content.bucket"),
    (["content"], {"backend": "s3", "bucket": "Bad_Bucket"}, "content.bucket"),
    (["content"], {"backend": "s3", "bucket": "lab", "endpoint": "minio:9000"}, "content.endpoint"),
    (["content"], {"backend": "s3", "bucket": "lab", "prefix": "/abs"}, "content.prefix"),
    (["content"], {"backend": "s3", "bucket": "lab", "path": "content"}, "content.path"),
    (["content"], {"backend": "directory", "bucket": "lab"}, "content.bucket"),
    (["database"], 5432, "database"),
    (["maxBodyBytes"], 10, "maxBodyBytes"),
    (["colections"], [], "colections"),
    # a channel name is sent in a header: printable ASCII, no space at either end
    (["channels", 0, "name"], "caf\u00e9", "channels[0].name"),
    (["channels", 0, "name"], "lab ", "channels[0].name"),
    (["channels", 0, "name"], "\ud800", "channels[0].name"),
    # lone surrogates cannot be signed with or sent; unbounded limits could overflow the limiter
    (["channels", 1, "password"], "\ud800" * 8, "channels[1].password"),
    (["channels", 0, "collections", 0, "name"], "\udc00", "channels[0].collections[0].name"),
    (["channels", 0, "collections", 0, "maxNumGetsPerMinute"], MAX_PER_MINUTE + 1,
     "channels[0].collections[0].maxNumGetsPerMinute"),
])
def test_invalid_settings_name_the_field(tmp_path, path, value, field):
    with pytest.raises(ConfigurationError) as info:
        parse_settings(_broken(path, value), tmp_path)
    assert field in str(info.value)
    assert "password-0123456789" not in str(info.value)


def test_invalid_json_names_the_line(tmp_path):
    (tmp_path / "pairio.json").write_text('{"channels": [\n  {"name": }]}')
    with pytest.raises(ConfigurationError, match="line 2"):
        load_settings(tmp_path)


def _serve(*args):
    return subprocess.run([sys.executable, "-m", "pairio", "serve", *map(str, args)],
                          capture_output=True, text=True, timeout=60)


def test_serve_check_validates_without_serving(tmp_path):
    (tmp_path / "pairio.json").write_text(json.dumps(default_settings()))
    result = _serve("--check", tmp_path)
    assert result.returncode == 0 and "is valid" in result.stdout


def test_bad_pairio_json_stops_start_up_naming_the_field(tmp_path):
    (tmp_path / "pairio.json").write_text(json.dumps(_broken(["channels", 0, "collections"], "all")))
    for args in (("--check", tmp_path), (tmp_path, "--port", "1")):
        result = _serve(*args)
        assert result.returncode == 2
        assert "channels[0].collections" in result.stderr
        assert "rw-password" not in result.stderr


def test_check_refuses_an_unprintable_channel_name_without_a_traceback(tmp_path):
    (tmp_path / "pairio.json").write_text(json.dumps(_broken(["channels", 0, "name"], "\ud800")))
    result = _serve("--check", tmp_path)
    assert result.returncode == 2 and "channels[0].name" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_refuses_a_port_out_of_range(tmp_path):
    (tmp_path / "pairio.json").write_text(json.dumps(default_settings()))
    for port in ("70000", "-1", "0"):
        result = _serve(tmp_path, "--port", port)
        assert result.returncode == 2 and "65535" in result.stderr


def test_missing_pairio_json_is_reported(tmp_path):
    result = _serve("--check", tmp_path)
    assert result.returncode == 2 and "pairio.json" in result.stderr
