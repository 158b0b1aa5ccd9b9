"""Content in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW...), through boto3.

Objects are stored under ``<prefix>sha1/<sha1>``. An upload never makes anything
visible under that key before all of its bytes have been hashed and checked:

- an object smaller than one part is buffered, checked, then sent in one PUT;
- a larger one is sent as a multipart upload under its final key, part by part while
  it arrives (memory: one part); S3 shows nothing under the key until
  CompleteMultipartUpload, which is sent only after the SHA-1 matched. On a mismatch,
  an abort, or any failure, AbortMultipartUpload discards the parts.

A server killed in the middle of an upload leaves an incomplete multipart upload,
invisible but billed: give the bucket a lifecycle rule that aborts incomplete multipart
uploads after a day (see server/README.md).

Credentials come from the standard AWS places (``AWS_ACCESS_KEY_ID`` and
``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, ``~/.aws/credentials``, an instance role),
never from pairio.json.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

from ...errors import ConfigurationError, ContentNotFoundError, CorruptContentError, StoreUnavailableError
from .base import ContentBackend, Upload

log = logging.getLogger("pairio.server")

_READ_CHUNK = 1 << 20
# S3 parts are 5 MiB at least (but the last) and 10,000 at most: parts grow with the
# object, 8 MiB for the first 1,000 (8 GB), then 64 MiB (to about 580 GB).
_PART_SIZES = ((1000, 8 << 20), (10_000, 64 << 20))
_MISSING_THREADS = 16
# Up to this many objects of one 256th of the bucket are looked up one by one; more, by listing it.
_HEAD_AT_MOST = 8


def _part_size(parts_sent: int) -> int:
    for below, size in _PART_SIZES:
        if parts_sent < below:
            return size
    raise StoreUnavailableError("an upload to S3 passed 10,000 parts (about 580 GB): too large an object")


class S3Content(ContentBackend):
    """Objects in ``bucket`` under ``prefix``; thread-safe (one boto3 client per process)."""

    blocking = True  # each call waits on the network: the server runs it off its event loop

    def __init__(self, bucket: str, *, prefix: str = "", endpoint_url: str | None = None,
                 region: str | None = None) -> None:
        if not isinstance(bucket, str) or not bucket:
            raise ConfigurationError("S3 bucket must be a non-empty name")
        self.bucket = bucket
        self.prefix = prefix
        self.endpoint_url = endpoint_url
        self.region = region
        self._client = None
        self._pid = os.getpid()
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"S3Content({self.bucket!r}, prefix={self.prefix!r}{where})"

    # --- plumbing -----------------------------------------------------------------------

    @property
    def client(self):
        """This process's boto3 S3 client (boto3 clients are thread-safe; a forked child makes its own)."""
        if self._client is None or self._pid != os.getpid():
            with self._lock:
                if self._client is None or self._pid != os.getpid():
                    self._client = self._new_client()
                    self._pid = os.getpid()
        return self._client

    def _new_client(self):
        try:
            import boto3
            from botocore.config import Config
        except ImportError as exc:
            raise ConfigurationError(
                f"the s3 content backend needs the s3 extra ({exc.name} is missing): pip install 'pairio[s3]'"
            ) from None
        session = boto3.session.Session()
        config = Config(max_pool_connections=_MISSING_THREADS + 8, retries={"max_attempts": 5, "mode": "standard"})
        return session.client("s3", endpoint_url=self.endpoint_url, region_name=self.region, config=config)

    def key(self, sha1: str) -> str:
        """The object key of ``sha1``."""
        return f"{self.prefix}sha1/{sha1}"

    def _error(self, exc: Exception, doing: str) -> StoreUnavailableError:
        return StoreUnavailableError(f"S3 bucket {self.bucket!r}: {doing} failed: {exc}")

    @staticmethod
    def _code(exc: Exception) -> str:
        return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))

    def _botocore_errors(self) -> tuple[type[Exception], ...]:
        from botocore.exceptions import BotoCoreError, ClientError

        return (BotoCoreError, ClientError)

    # --- reading -----------------------------------------------------------------------

    def size(self, sha1: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(sha1))
        except self._botocore_errors() as exc:
            if self._code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._error(exc, f"HEAD {sha1}") from None
        return head["ContentLength"]

    def missing(self, sha1s: Iterable[str]) -> list[str]:
        sha1s = list(sha1s)
        if len(sha1s) <= 1:
            return [sha1 for sha1 in sha1s if self.size(sha1) is None]
        # S3 has no batch lookup. Few objects are looked up with one HEAD each; for many, each
        # group of objects sharing their first two hex digits (a 256th of the bucket) is listed
        # instead, when more of them are asked for than a listing page is likely to need.
        groups: dict[str, list[str]] = {}
        for sha1 in dict.fromkeys(sha1s):
            groups.setdefault(sha1[:2], []).append(sha1)
        with ThreadPoolExecutor(min(_MISSING_THREADS, len(groups))) as pool:
            present = set().union(*pool.map(self._present, groups.values()))
        return [sha1 for sha1 in sha1s if sha1 not in present]

    def _present(self, sha1s: list[str]) -> set[str]:
        """Those of ``sha1s`` (sharing their first two digits) that the bucket holds."""
        if len(sha1s) <= _HEAD_AT_MOST:
            return {sha1 for sha1 in sha1s if self.size(sha1) is not None}
        start = len(self.key(""))
        listed = set()
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.key(sha1s[0][:2]))
            for page in pages:
                listed.update(item["Key"][start:] for item in page.get("Contents", ()))
        except self._botocore_errors() as exc:
            raise self._error(exc, "listing objects") from None
        return listed.intersection(sha1s)

    def read(self, sha1: str, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        if stop is not None and stop <= start:
            if self.size(sha1) is None:
                raise ContentNotFoundError(f"no object {sha1} in S3 bucket {self.bucket!r}")
            return iter(())
        options = {}
        if start or stop is not None:
            options["Range"] = f"bytes={start}-{'' if stop is None else stop - 1}"
        try:
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key(sha1), **options)
        except self._botocore_errors() as exc:
            code = self._code(exc)
            if code in ("404", "NoSuchKey", "NotFound"):
                raise ContentNotFoundError(f"no object {sha1} in S3 bucket {self.bucket!r}") from None
            if code in ("416", "InvalidRange"):  # the range starts at or past the end
                return iter(())
            raise self._error(exc, f"GET {sha1}") from None
        return self._stream(answer["Body"], sha1)

    def _stream(self, body, sha1: str) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(_READ_CHUNK)
        except self._botocore_errors() as exc:
            raise self._error(exc, f"reading {sha1}") from None
        finally:
            body.close()

    def usage(self) -> tuple[int, int]:
        """How many objects the bucket holds under the prefix, and their bytes (lists them all)."""
        objects = size = 0
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=f"{self.prefix}sha1/")
            for page in pages:
                for item in page.get("Contents", ()):
                    objects += 1
                    size += item["Size"]
        except self._botocore_errors() as exc:
            raise self._error(exc, "listing the objects") from None
        return objects, size

    # --- writing -----------------------------------------------------------------------

    def upload(self, sha1: str) -> Upload:
        return _S3Upload(self, sha1)


class _S3Upload(Upload):
    """One object on its way into the bucket; see the module's docstring."""

    def __init__(self, backend: S3Content, sha1: str) -> None:
        self._backend = backend
        self._sha1 = sha1
        self._key = backend.key(sha1)
        self._hash = hashlib.sha1()
        self._buffer = bytearray()
        self._size = 0
        self._upload_id: str | None = None
        self._parts: list[dict] = []
        self._open = True

    def write(self, data: bytes) -> None:
        if not self._open:
            raise RuntimeError(f"the upload of {self._sha1} has already ended")
        self._hash.update(data)
        self._size += len(data)
        self._buffer += data
        part = _part_size(len(self._parts))
        while len(self._buffer) >= part:
            self._send_part(bytes(self._buffer[:part]))
            del self._buffer[:part]
            part = _part_size(len(self._parts))

    def _send_part(self, data: bytes) -> None:
        backend = self._backend
        try:
            if self._upload_id is None:
                self._upload_id = backend.client.create_multipart_upload(
                    Bucket=backend.bucket, Key=self._key)["UploadId"]
            number = len(self._parts) + 1
            answer = backend.client.upload_part(Bucket=backend.bucket, Key=self._key, UploadId=self._upload_id,
                                                PartNumber=number, Body=data)
        except backend._botocore_errors() as exc:
            self.abort()
            raise backend._error(exc, f"uploading {self._sha1}") from None
        self._parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def commit(self) -> int:
        if not self._open:
            raise RuntimeError(f"the upload of {self._sha1} has already ended")
        actual = self._hash.hexdigest()
        if actual != self._sha1:
            self.abort()
            raise CorruptContentError(
                f"the bytes received hash to {actual}, not {self._sha1}: nothing was stored")
        backend = self._backend
        try:
            if self._upload_id is None:  # smaller than a part: one PUT, atomic on its own
                backend.client.put_object(Bucket=backend.bucket, Key=self._key, Body=bytes(self._buffer))
            else:
                if self._buffer:
                    self._send_part(bytes(self._buffer))
                backend.client.complete_multipart_upload(
                    Bucket=backend.bucket, Key=self._key, UploadId=self._upload_id,
                    MultipartUpload={"Parts": self._parts})
        except backend._botocore_errors() as exc:
            self.abort()
            raise backend._error(exc, f"storing {self._sha1}") from None
        self._open = False
        self._buffer = bytearray()
        return self._size

    def abort(self) -> None:
        self._open = False
        self._buffer = bytearray()
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            backend = self._backend
            try:
                backend.client.abort_multipart_upload(Bucket=backend.bucket, Key=self._key, UploadId=upload_id)
            except backend._botocore_errors() as exc:
                # Nothing became visible: the parts stay, unseen, until the bucket's lifecycle rule
                # removes them. The error that led here matters more than this one.
                log.warning("S3 bucket %r: aborting the upload of %s failed: %s", backend.bucket, self._sha1, exc)
