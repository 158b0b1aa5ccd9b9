"""The content backend contract, run against every implementation.

A new backend is added to BACKENDS (name -> factory of a fresh, empty backend, given
the test's fixture request) and is done when this suite passes. S3 runs against moto's
S3 server (a protocol double, not a durability test).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pairio.errors import ContentNotFoundError, CorruptContentError
from pairio.server.backends import ContentBackend, DirectoryContent


def _s3(request: pytest.FixtureRequest) -> ContentBackend:
    from pairio.server.backends.s3 import S3Content

    endpoint = request.getfixturevalue("moto_server").url
    return S3Content(request.getfixturevalue("s3_bucket"), prefix="p/", endpoint_url=endpoint, region="us-east-1")


BACKENDS: dict[str, Callable[[pytest.FixtureRequest], ContentBackend]] = {
    "directory": lambda request: DirectoryContent(request.getfixturevalue("tmp_path") / "content"),
    "s3": _s3,
}

DATA = bytes(range(256)) * 9000 + b"tail"  # a little over 2 MiB: several chunks
SHA1 = hashlib.sha1(DATA).hexdigest()


@pytest.fixture(params=sorted(BACKENDS))
def backend(request) -> ContentBackend:
    b = BACKENDS[request.param](request)
    yield b
    b.close()


def put(backend: ContentBackend, data: bytes, sha1: str | None = None) -> int:
    with backend.upload(sha1 or hashlib.sha1(data).hexdigest()) as upload:
        for start in range(0, len(data), 100_000):
            upload.write(data[start:start + 100_000])
        return upload.commit()


def test_an_absent_object_has_no_size_and_cannot_be_read(backend):
    assert backend.size(SHA1) is None
    with pytest.raises(ContentNotFoundError):
        backend.read(SHA1)  # before anything is yielded


def test_a_committed_object_is_read_back_whole(backend):
    assert put(backend, DATA) == len(DATA)
    assert backend.size(SHA1) == len(DATA)
    chunks = list(backend.read(SHA1))
    assert b"".join(chunks) == DATA
    assert max(len(c) for c in chunks) <= 8 << 20  # bounded chunks, not one read of everything


def test_an_empty_object_is_an_object(backend):
    empty = hashlib.sha1(b"").hexdigest()
    assert put(backend, b"") == 0
    assert backend.size(empty) == 0
    assert b"".join(backend.read(empty)) == b""


def test_bytes_that_do_not_match_the_hash_are_not_kept(backend):
    with pytest.raises(CorruptContentError), backend.upload(SHA1) as upload:
        upload.write(DATA[:-1])
        upload.commit()
    assert backend.size(SHA1) is None


def test_an_aborted_upload_leaves_nothing(backend):
    upload = backend.upload(SHA1)
    upload.write(DATA)
    upload.abort()
    upload.abort()  # twice is safe
    assert backend.size(SHA1) is None


def test_leaving_the_block_without_commit_aborts(backend):
    with backend.upload(SHA1) as upload:
        upload.write(DATA)
    assert backend.size(SHA1) is None


def test_uploading_a_present_object_again_succeeds(backend):
    put(backend, DATA)
    assert put(backend, DATA) == len(DATA)
    assert b"".join(backend.read(SHA1)) == DATA


def test_missing_keeps_the_order_of_the_question(backend):
    present = [hashlib.sha1(bytes([i])).hexdigest() for i in range(3)]
    for i in range(3):
        put(backend, bytes([i]))
    absent = [hashlib.sha1(f"absent {i}".encode()).hexdigest() for i in range(3)]
    mixed = [absent[0], present[0], absent[1], present[1], present[2], absent[2]]
    assert backend.missing(mixed) == absent
    assert backend.missing([]) == []


@given(start=st.integers(0, len(DATA) + 10), length=st.one_of(st.none(), st.integers(0, 3 << 20)))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_range_reads_the_same_bytes_as_a_slice(backend, start, length):
    if backend.size(SHA1) is None:
        put(backend, DATA)
    stop = None if length is None else start + length
    assert b"".join(backend.read(SHA1, start, stop)) == DATA[start:stop]


def test_usage_counts_the_objects_and_their_bytes(backend):
    assert backend.usage() == (0, 0)
    put(backend, b"one")
    put(backend, DATA)
    put(backend, DATA)
    assert backend.usage() == (2, 3 + len(DATA))


def test_missing_answers_for_many_objects_of_one_prefix(backend):
    # Many names sharing their first digits (S3 lists that part of the bucket instead of
    # asking for each): two present among them, in the same order as asked.
    blobs = [b for b in (str(i).encode() for i in range(5000)) if hashlib.sha1(b).hexdigest()[:2] == "00"][:2]
    present = [hashlib.sha1(b).hexdigest() for b in blobs]
    for blob in blobs:
        put(backend, blob)
    absent = [f"00{i:038x}" for i in range(30)]
    asked = [absent[0], present[0], *absent[1:15], present[1], *absent[15:]]
    assert backend.missing(asked) == absent
