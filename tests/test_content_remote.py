"""The content client (pairio.content.remote) against a real server on loopback."""

from __future__ import annotations

import hashlib
import io
import os

import pytest
from server_process import (
    RO_PASSWORD,
    RW_PASSWORD,
    WO_PASSWORD,
    ServerObjects,
    ServerProcess,
    default_settings,
)

from pairio.content.remote import RemoteContent
from pairio.content.store import ContentStore
from pairio.errors import (
    BadRequestError,
    ContentNotFoundError,
    CorruptContentError,
    PermissionDeniedError,
    ServerUnavailableError,
)
from pairio.kv.remote import RemoteStore


@pytest.fixture(scope="module")
def server(tmp_path_factory, content_backend):
    with ServerProcess(tmp_path_factory.mktemp("content-client"), default_settings(**content_backend)) as s:
        yield s


def overwrite_on_server(server, sha1: str, data: bytes) -> None:
    """Replace the server's copy of ``sha1`` behind pairio's back (bit rot)."""
    objects = ServerObjects(server)
    if objects.store is not None:
        path = objects.store.path(sha1)
        path.chmod(0o644)
        path.write_bytes(data)
    else:
        backend = objects.backend
        backend.client.put_object(Bucket=backend.bucket, Key=backend.key(sha1), Body=data)


def client(server, directory, channel="lab-rw", password=RW_PASSWORD, **options) -> RemoteContent:
    return RemoteContent(RemoteStore(server.url, channel, password, **options), ContentStore(directory))


def random_object(store: ContentStore, n: int = 200_000) -> tuple[bytes, str]:
    data = os.urandom(n)
    return data, store.put_bytes(data)


def test_an_upload_from_one_store_downloads_into_another(server, tmp_path):
    a, b = client(server, tmp_path / "a"), client(server, tmp_path / "b")
    data, sha1 = random_object(a.store)
    assert a.missing([sha1]) == [sha1]
    assert a.upload(sha1) == len(data)
    assert a.missing([sha1]) == [] and b.size(sha1) == len(data)
    path = b.download(sha1)
    assert path == b.store.path(sha1) and path.read_bytes() == data
    assert not (b.store.partial_dir / sha1).exists()


def test_missing_asks_once_per_10000_and_keeps_order(server, tmp_path):
    a = client(server, tmp_path / "a")
    _, present = random_object(a.store, 10)
    a.upload(present)
    absent = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(10_001)]
    assert a.missing([absent[0], present, *absent[1:], absent[0]]) == absent
    assert a.missing([]) == []


@pytest.mark.parametrize("kind", ["bytes", "path", "seekable", "pipe"])
def test_uploads_come_from_bytes_paths_and_streams(server, tmp_path, kind):
    a, b = client(server, tmp_path / "a"), client(server, tmp_path / "b")
    data = os.urandom(150_000)
    sha1 = hashlib.sha1(data).hexdigest()
    file = tmp_path / "f.bin"
    file.write_bytes(data)
    if kind == "bytes":
        source = data
    elif kind == "path":
        source = file
    elif kind == "seekable":
        source = io.BytesIO(b"skipped" + data)
        source.seek(7)
    else:
        r, w = os.pipe()
        os.write(w, data[:60_000])  # fits in the pipe's buffer
        os.close(w)
        data, sha1 = data[:60_000], hashlib.sha1(data[:60_000]).hexdigest()
        source = os.fdopen(r, "rb")
    seen = []
    assert a.upload(sha1, source, progress=seen.append) == len(data)
    assert seen[-1] == len(data)
    assert b.download(sha1).read_bytes() == data


def test_an_upload_with_the_wrong_hash_stores_nothing(server, tmp_path):
    a = client(server, tmp_path / "a")
    wrong = hashlib.sha1(b"something else").hexdigest()
    with pytest.raises(BadRequestError, match="does not hash to"):
        a.upload(wrong, b"these bytes")
    assert a.missing([wrong]) == [wrong]


def test_rights_are_named_in_the_errors(server, tmp_path):
    ro = client(server, tmp_path / "ro", "public-ro", RO_PASSWORD)
    wo = client(server, tmp_path / "wo", "drop-box", WO_PASSWORD)
    data, sha1 = random_object(wo.store, 100)
    with pytest.raises(PermissionDeniedError, match="writeContent"):
        ro.upload(sha1, data)
    wo.upload(sha1)
    with pytest.raises(PermissionDeniedError, match="readContent"):
        wo.download(hashlib.sha1(b"absent").hexdigest())
    assert ro.download(sha1).read_bytes() == data


def test_downloading_an_absent_object_is_content_not_found(server, tmp_path):
    b = client(server, tmp_path / "b")
    sha1 = hashlib.sha1(b"never uploaded").hexdigest()
    with pytest.raises(ContentNotFoundError, match=sha1):
        b.download(sha1)
    assert not b.store.has(sha1)


def test_a_download_that_does_not_hash_to_its_name_is_not_kept(server, tmp_path):
    a, b = client(server, tmp_path / "a"), client(server, tmp_path / "b")
    data, sha1 = random_object(a.store, 5000)
    a.upload(sha1)
    overwrite_on_server(server, sha1, b"X" + data[1:])  # bit rot on the server
    with pytest.raises(CorruptContentError, match=sha1):
        b.download(sha1)
    assert not b.store.has(sha1) and not (b.store.partial_dir / sha1).exists()
    overwrite_on_server(server, sha1, data)


def test_a_kept_partial_download_is_continued_with_a_range(server, tmp_path):
    a, b = client(server, tmp_path / "a"), client(server, tmp_path / "b")
    data, sha1 = random_object(a.store, 3_000_000)
    a.upload(sha1)
    b.store.partial_dir.mkdir(parents=True)
    (b.store.partial_dir / sha1).write_bytes(data[:2_000_000])
    seen = []
    assert b.download(sha1, progress=seen.append).read_bytes() == data
    # The first report already counts the kept bytes plus at most one chunk received.
    assert 2_000_000 < seen[0] <= 3_000_000


def test_a_finished_partial_download_is_verified_and_kept(server, tmp_path):
    a, b = client(server, tmp_path / "a"), client(server, tmp_path / "b")
    data, sha1 = random_object(a.store, 5000)
    a.upload(sha1)
    b.store.partial_dir.mkdir(parents=True)
    (b.store.partial_dir / sha1).write_bytes(data)  # killed after the last byte, before the rename
    assert b.download(sha1).read_bytes() == data


# --- the server killed in the middle of a download ------------------------------------------

SIZE = 24 << 20  # more than loopback socket buffers hold, so the kill lands mid-body


def test_a_download_cut_by_a_dead_server_keeps_its_bytes_and_resumes_later(tmp_path):
    with ServerProcess(tmp_path / "srv", default_settings()) as server:
        a = client(server, tmp_path / "a")
        b = client(server, tmp_path / "b", retries=1, backoff=0.01)
        data, sha1 = random_object(a.store, SIZE)
        a.upload(sha1)

        def kill(done: int) -> None:
            if server.process.poll() is None:
                server.process.kill()
                server.process.wait()

        with pytest.raises(ServerUnavailableError, match="they are kept") as failure:
            b.download(sha1, progress=kill)
        assert server.url in str(failure.value)
        assert not b.store.has(sha1)  # never a torn object
        kept = b.store.partial_size(sha1)
        assert 0 < kept < SIZE
        server.stop()
        server.start()
        seen = []
        assert b.download(sha1, progress=seen.append).read_bytes() == data
        assert seen[0] > kept  # continued, not started again
        assert b.store.verify(sha1) and b.store.partial_size(sha1) == 0


def test_a_download_resumes_against_a_restarted_server_in_the_same_call(tmp_path):
    with ServerProcess(tmp_path / "srv", default_settings()) as server:
        a = client(server, tmp_path / "a")
        b = client(server, tmp_path / "b", retries=3, backoff=0.01)
        data, sha1 = random_object(a.store, SIZE)
        a.upload(sha1)
        restarts = []

        def restart(done: int) -> None:
            if not restarts:
                restarts.append(done)
                server.process.kill()
                server.process.wait()
                server.stop()
                server.start()

        assert b.download(sha1, progress=restart).read_bytes() == data
        assert restarts and b.store.verify(sha1)
