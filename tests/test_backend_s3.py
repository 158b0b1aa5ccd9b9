"""What only the S3 content backend does: multipart uploads invisible until checked, aborted
on any failure; run against moto's S3 server (a protocol double, not a durability test)."""

from __future__ import annotations

import hashlib

import pytest

import pairio as pa
from pairio.server.backends.s3 import S3Content

BIG = bytes(range(256)) * (40 * 1024 + 7)  # about 10 MiB: one full 8 MiB part and a last one
BIG_SHA1 = hashlib.sha1(BIG).hexdigest()


@pytest.fixture
def backend(moto_server, s3_bucket) -> S3Content:
    return S3Content(s3_bucket, prefix="pairio/", endpoint_url=moto_server.url, region="us-east-1")


def uploads_in_progress(backend: S3Content) -> list:
    return backend.client.list_multipart_uploads(Bucket=backend.bucket).get("Uploads", [])


def test_a_large_object_is_invisible_until_its_hash_is_checked(backend):
    upload = backend.upload(BIG_SHA1)
    upload.write(BIG[: 9 << 20])
    assert len(uploads_in_progress(backend)) == 1  # a part is already in the bucket...
    assert backend.size(BIG_SHA1) is None  # ...but nothing is under the key
    upload.write(BIG[9 << 20 :])
    assert upload.commit() == len(BIG)
    assert backend.size(BIG_SHA1) == len(BIG)
    assert uploads_in_progress(backend) == []
    assert b"".join(backend.read(BIG_SHA1, 8 << 20, (8 << 20) + 10)) == BIG[8 << 20 : (8 << 20) + 10]


def test_a_large_object_with_wrong_bytes_is_aborted_and_never_visible(backend):
    with pytest.raises(pa.CorruptContentError), backend.upload(BIG_SHA1) as upload:
        upload.write(BIG[:-1] + b"x")
        upload.commit()
    assert backend.size(BIG_SHA1) is None
    assert uploads_in_progress(backend) == []


def test_an_upload_abandoned_midway_is_aborted(backend):
    with backend.upload(BIG_SHA1) as upload:
        upload.write(BIG[: 9 << 20])
    assert uploads_in_progress(backend) == []
    assert backend.size(BIG_SHA1) is None


def test_objects_live_under_the_prefix(backend):
    data = b"hello"
    sha1 = hashlib.sha1(data).hexdigest()
    with backend.upload(sha1) as upload:
        upload.write(data)
        upload.commit()
    keys = [item["Key"] for item in backend.client.list_objects_v2(Bucket=backend.bucket)["Contents"]]
    assert keys == [f"pairio/sha1/{sha1}"]
    assert backend.usage() == (1, 5)


def test_an_absent_bucket_is_a_clear_error(moto_server):
    backend = S3Content("no-such-bucket-here", endpoint_url=moto_server.url, region="us-east-1")
    with pytest.raises(pa.StoreUnavailableError, match="S3 bucket 'no-such-bucket-here'"):
        with backend.upload(hashlib.sha1(b"x").hexdigest()) as upload:
            upload.write(b"x")
            upload.commit()
