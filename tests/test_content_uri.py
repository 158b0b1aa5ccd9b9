"""sha1:// and sha1dir:// URIs: what parses, what is rejected, and how they print."""

from __future__ import annotations

import pytest

import pairio as pa
from pairio.content.uri import dir_uri, file_uri

H = "a09fd13fd92800aeafe475e9113efe216788d934"


def test_sha1_uri_with_and_without_a_name_names_the_same_hash():
    assert pa.parse_uri(f"sha1://{H}").sha1 == H
    parsed = pa.parse_uri(f"sha1://{H}/file.txt")
    assert (parsed.scheme, parsed.sha1, parsed.name) == ("sha1", H, "file.txt")
    assert not parsed.is_dir


def test_uppercase_hex_is_normalised_to_lowercase():
    assert pa.parse_uri(f"sha1://{H.upper()}/x").sha1 == H


def test_sha1dir_uri_carries_name_and_path():
    parsed = pa.parse_uri(f"sha1dir://{H}.results/sub/file.txt")
    assert (parsed.scheme, parsed.sha1, parsed.name, parsed.path) == ("sha1dir", H, "results", ("sub", "file.txt"))
    assert parsed.is_dir
    assert pa.parse_uri(f"sha1dir://{H}").path == ()


@pytest.mark.parametrize("uri", [
    "", "sha1://", f"sha1://{H[:-1]}", f"sha1://{H}0", f"sha1://{H[:-1]}g", "http://example.com/x",
    f"sha1:/{H}", f"sha1dir://{H}.d/../etc", H,
])
def test_malformed_uris_raise_invalid_uri_error_naming_the_uri(uri):
    with pytest.raises(pa.InvalidURIError) as info:
        pa.parse_uri(uri)
    assert repr(uri) in str(info.value)


def test_non_string_uri_is_rejected():
    with pytest.raises(pa.InvalidURIError):
        pa.parse_uri(b"sha1://" + H.encode())  # type: ignore[arg-type]


def test_uris_print_back_to_their_canonical_form():
    assert file_uri(H, "a.txt") == f"sha1://{H}/a.txt"
    assert file_uri(H) == f"sha1://{H}"
    assert dir_uri(H, "d", "x/y") == f"sha1dir://{H}.d/x/y"
    for uri in (f"sha1://{H}/a.txt", f"sha1dir://{H}.d/x/y", f"sha1dir://{H}"):
        assert str(pa.parse_uri(uri)) == uri


@pytest.mark.parametrize(("uri", "expected"), [
    (f"sha1://{H}x", "expected sha1://<40 hex digits>[/name]"),
    (f"sha1://{H}\n", "expected sha1://<40 hex digits>[/name]"),
    (f"sha1dir://{H}x/a", "expected sha1dir://<40 hex digits>[.name][/path]"),
])
def test_malformed_uri_message_shows_the_expected_form(uri, expected):
    # These have 40 hex digits after the scheme; the message must not claim otherwise.
    with pytest.raises(pa.InvalidURIError) as info:
        pa.parse_uri(uri)
    assert expected in str(info.value) and repr(uri) in str(info.value)
