"""Fuzz the live server from its own OpenAPI document (schemathesis): no input gives a 5xx.

Cases come from the document the server serves, in schemathesis' positive mode
(valid by the schema; the collection pinned to one the channel may use, so the
cases reach the store) and negative mode (violating it). Every case is signed
with a valid channel, so it gets past authentication, and sent once more
unsigned. Bounded and derandomised: the same few hundred requests each run.
"""

from __future__ import annotations

import urllib.parse

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from server_process import RW_PASSWORD, ServerProcess, default_settings

from pairio.server.openapi import openapi_document
from pairio.signing import sign_request

schemathesis = pytest.importorskip("schemathesis")


@pytest.fixture(scope="module")
def server(tmp_path_factory, pair_backend):
    # Once per pairs backend: PostgreSQL refuses some text (a NUL) that SQLite takes, and bad
    # input must be a 4xx there too, never a 503 that looks like an outage.
    with ServerProcess(tmp_path_factory.mktemp("fuzz"), default_settings(maxBodyBytes=65536, **pair_backend)) as s:
        yield s


HUGE_NUMBER = "9" * 5000  # more digits than Python's int() converts


def _hostile(body):
    """``body`` with a NUL put in every string it holds (keys of objects too), the collection aside."""
    if isinstance(body, dict):
        return {k if k == "collection" else _hostile(k): v if k == "collection" else _hostile(v)
                for k, v in body.items()}
    if isinstance(body, list):
        return [_hostile(v) for v in body]
    if isinstance(body, str):
        return body + "\0" + body
    return body


def _send(session: requests.Session, base_url: str, case, pin_collection: bool) -> list[int]:
    if pin_collection and isinstance(case.body, dict) and "collection" in case.body:
        case.body["collection"] = "spikes"
    kwargs = case.as_transport_kwargs(base_url=base_url)
    kwargs.pop("timeout", None)
    kwargs.pop("allow_redirects", None)
    statuses = []
    variants = [(True, {}, None), (False, {}, None), (True, {"Range": f"bytes=0-{HUGE_NUMBER}"}, None)]
    if isinstance(case.body, dict):
        variants.append((True, {}, _hostile(case.body)))
    for signed, extra_headers, hostile_body in variants:
        request_kwargs = {**kwargs, "headers": {**(kwargs.get("headers") or {}), **extra_headers}}
        if hostile_body is not None:
            request_kwargs.pop("data", None)
            request_kwargs["json"] = hostile_body
        prepared = requests.Request(**request_kwargs).prepare()
        body = prepared.body or b""
        body = body.encode() if isinstance(body, str) else body
        if signed:
            url = urllib.parse.urlsplit(prepared.url)
            path = urllib.parse.unquote(url.path)  # the server checks the path it routes: decoded
            # A content upload is signed with the path's SHA-1 as the body's digest.
            digest = path.rsplit("/", 1)[-1] if prepared.method == "PUT" else None
            prepared.headers.update(
                sign_request("lab-rw", RW_PASSWORD, prepared.method, path, body, url.query, body_hash=digest)
            )
        response = session.send(prepared, timeout=10)
        assert response.status_code < 500, (case.method, prepared.url, body[:300], response.text)
        statuses.append(response.status_code)
    return statuses


@pytest.mark.parametrize("mode", ["positive", "negative"])
def test_no_input_gives_a_server_error(server, mode):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    documented = openapi_document("x")["paths"]
    assert len(operations) == sum(len(methods) for methods in documented.values()) >= 15
    session = requests.Session()
    seen: set[int] = set()
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode(mode)))
        @settings(max_examples=50, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case):
            signed, unsigned, *_ = _send(session, server.url, case, pin_collection=mode == "positive")
            seen.add(signed)
            assert signed != 401
            if case.operation.path != "/api/v1/health":
                assert unsigned in (401, 413)  # the size is checked before the signature

        try:
            check()
        except Unsatisfiable:  # nothing in a parameterless route can be made invalid
            assert mode == "negative" and operation.path.endswith(("/health", "/probe", "/leases", "/overview", "/misses", "/signout"))
    assert (200 in seen) if mode == "positive" else (400 in seen)
