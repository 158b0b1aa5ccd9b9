"""The OpenAPI 3.0 document of the API, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

from ..hashing import MAX_KEY_LENGTH, MAX_VALUE_LENGTH
from ..signing import HEADER_CHANNEL, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, MAX_CLOCK_SKEW
from .settings import MAX_PAIRS_PER_REQUEST

_SHA1 = {"type": "string", "pattern": "^[0-9a-f]{40}$"}
_SECURITY = [{"channel": [], "timestamp": [], "nonce": [], "signature": []}]
_BYTES = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}

_KEY = {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH}
_VALUE = {"type": "string", "maxLength": MAX_VALUE_LENGTH}
_COLLECTION = {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH}
_ERROR = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_OK = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}

_SIGNED_ERRORS = {
    "400": ("malformed request: the message names the field", _ERROR),
    "401": ("missing, wrong, stale or replayed signature", _ERROR),
    "403": ("the channel may not do this on this collection", _ERROR),
    "404": ("the collection is not available to the channel", _ERROR),
    "413": ("request body too large", _ERROR),
    "429": ("rate limit exceeded; see Retry-After", _ERROR),
    "503": ("the store failed, or too many requests in the replay window (with Retry-After)", _ERROR),
}
_RETRY_AFTER = {"Retry-After": {"description": "whole seconds to wait before retrying",
                                "schema": {"type": "integer", "minimum": 1}}}


def _responses(ok: dict, errors: dict = _SIGNED_ERRORS) -> dict:
    out = {"200": {"description": "success", "content": {"application/json": {"schema": ok}}}}
    for status, (description, schema) in errors.items():
        out[status] = {"description": description, "content": {"application/json": {"schema": schema}}}
        if status == "429":
            out[status]["headers"] = _RETRY_AFTER
    return out


def _post(summary: str, request: dict, ok: dict, operation_id: str) -> dict:
    return {
        "post": {
            "operationId": operation_id,
            "summary": summary,
            "security": [{"channel": [], "timestamp": [], "nonce": [], "signature": []}],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": request}},
            },
            "responses": _responses(ok),
        }
    }


def _object(required: list[str], **properties: Any) -> dict:
    return {"type": "object", "properties": properties, "required": required}


def _lease_paths() -> dict:
    from .leases import MAX_OWNER_LENGTH, MAX_TTL_S, MIN_TTL_S

    owner = {"type": "string", "pattern": f"^[A-Za-z0-9]{{16,{MAX_OWNER_LENGTH}}}$",
             "description": "a random token unique to one computation; never shown to others"}
    ttl = {"type": "number", "minimum": MIN_TTL_S, "maximum": MAX_TTL_S}
    info = {"type": "object", "description": "who holds it, for people: host, pid, function",
            "additionalProperties": {"oneOf": [{"type": "string"}, {"type": "number"}]}}
    lease = _object(["collection", "key", "channel", "info", "acquired_at", "expires_at"],
                    collection=_COLLECTION, key=_KEY, channel={"type": "string"}, info={"type": "object"},
                    acquired_at={"type": "number"}, expires_at={"type": "number"}, age={"type": "number"})
    named = {"collection": _COLLECTION, "key": _KEY, "owner": owner}
    return {
        "/api/v1/lease/acquire": _post(
            "take the lease on a key for ttl seconds, unless the key has a value (then the value) "
            "or another owner holds it (then its holder); needs set rights",
            _object(["collection", "key", "owner", "ttl"], **named, ttl=ttl, info=info),
            _object(["held", "value", "lease"], held={"type": "boolean"},
                    value={**_VALUE, "nullable": True}, lease={**lease, "nullable": True}),
            "lease_acquire"),
        "/api/v1/lease/renew": _post(
            "extend the caller's lease to ttl seconds from now; held is false if it was lost",
            _object(["collection", "key", "owner", "ttl"], **named, ttl=ttl),
            _object(["held", "expires_at"], held={"type": "boolean"},
                    expires_at={"type": "number", "nullable": True}),
            "lease_renew"),
        "/api/v1/lease/release": _post(
            "give up the caller's lease", _object(["collection", "key", "owner"], **named),
            _object(["released"], released={"type": "boolean"}), "lease_release"),
        "/api/v1/leases": {
            "get": {
                "operationId": "leases",
                "summary": "the leases held in the collections the caller may read",
                "security": [{"channel": [], "timestamp": [], "nonce": [], "signature": []}],
                "responses": _responses(_object(["now", "leases"], now={"type": "number"},
                                                leases={"type": "array", "items": lease})),
            }
        },
    }


def _record_schema() -> dict:
    """A record as a client sends it with its pair."""
    from . import records as r

    def text(limit: int) -> dict:
        return {"type": "string", "maxLength": limit}

    def names(count: int, chars: int) -> dict:
        return {"type": "object", "maxProperties": count, "additionalProperties": text(chars)}

    return {**_object(["function", "size", "seconds", "created"],
                      function={**text(r.MAX_FUNCTION_CHARS), "minLength": 1}, code=text(r.MAX_CODE_CHARS),
                      dependencies=names(r.MAX_DEPENDENCIES, r.MAX_NAME_CHARS),
                      arguments=names(r.MAX_ARGUMENTS, r.MAX_TEXT_CHARS),
                      size={"type": "integer", "minimum": 0}, seconds={"type": "number", "minimum": 0,
                                                                        "maximum": r.MAX_SECONDS},
                      host=text(r.MAX_HOST_CHARS), created={"type": "number", "minimum": 0},
                      inputs={"type": "array", "maxItems": r.MAX_INPUTS, "description": "the cached results "
                              "({argument, collection, key}) and content ({argument, uri}) it was made from",
                              "items": {"type": "object", "additionalProperties": False, "required": ["argument"],
                                        "properties": {"argument": {**text(r.MAX_NAME_CHARS), "minLength": 1},
                                                       "collection": text(r.MAX_NAME_CHARS),
                                                       "key": text(r.MAX_KEY_CHARS),
                                                       "uri": text(r.MAX_URI_CHARS)}}}),
            "additionalProperties": False}


def _records_field() -> dict:
    return {"type": "object", "additionalProperties": _record_schema(),
            "description": "key -> the record of the result its pair names: what computed it and its cost "
                           "(function, code digest, dependency versions, argument summaries, size, seconds, "
                           "host, created, inputs); optional"}


def _record_paths() -> dict:
    from ..lifecycle.counts import FIELDS, GROUPS
    from .backends.records import SORTS
    from .records import MAX_LIST_LIMIT

    stored = {**_record_schema(), "additionalProperties": True}
    stored["properties"] = {**stored["properties"], "collection": _COLLECTION, "key": _KEY,
                            "channel": {"type": "string"}, "hits": {"type": "integer"},
                            "last_used": {"type": "number"}}
    numbers = {f: {"type": "number"} for f in FIELDS}
    count = {"type": "object", "properties": {"hour": {"type": "integer"}, "function": {"type": "string"},
                                              "collection": {"type": "string"}, **numbers}}
    totals = {"type": "object", "properties": {**numbers, "hit_rate": {"type": "number", "nullable": True}}}
    collection = {**_COLLECTION, "description": "only this collection (default: every one the channel may read)"}
    return {
        "/api/v1/records": _post(
            "the records of results in the collections the caller may read, most first by sort",
            _object([], collection=collection, sort={"type": "string", "enum": list(SORTS), "default": "created"},
                    limit={"type": "integer", "minimum": 1, "maximum": MAX_LIST_LIMIT, "default": 100},
                    function={"type": "string", "description": "a qualified name, its dotted tail or a glob"}),
            _object(["records"], records={"type": "array", "items": stored}), "records"),
        "/api/v1/counts": _post(
            "hourly counts (hits, misses, seconds saved and computed, bytes up and down, kept 90 days) "
            "in the collections the caller may read, per hour and function or collection",
            _object([], collection=collection,
                    since={"type": "number", "description": "Unix seconds (default: 7 days ago)"},
                    until={"type": "number", "nullable": True, "description": "Unix seconds (default: now)"},
                    by={"type": "string", "enum": list(GROUPS), "nullable": True, "default": "function"}),
            _object(["since", "by", "counts", "totals"], since={"type": "integer"},
                    until={"type": "number", "nullable": True}, by={"type": "string", "nullable": True},
                    counts={"type": "array", "items": count}, totals=totals,
                    groups={"type": "array", "items": {"type": "object"}}),
            "counts"),
    }


def openapi_document(version: str) -> dict:
    """The OpenAPI document for server ``version``."""
    single = _object(["collection", "key"], collection=_COLLECTION, key=_KEY)
    nullable_value = {**_VALUE, "nullable": True}
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "pairio server",
            "version": version,
            "description": (
                "Shared key/value cache. Every route but /health is signed: the headers "
                f"{HEADER_CHANNEL}, {HEADER_TIMESTAMP} (seconds since the epoch, within {MAX_CLOCK_SKEW} s of "
                f"the server's clock), {HEADER_NONCE} (16 to 64 of [A-Za-z0-9_-], never reused) "
                f"and {HEADER_SIGNATURE}, the HMAC-SHA256 hex under the channel's password of "
                "channel, METHOD, path, sorted query, SHA-256 hex of the body, timestamp and "
                "nonce, joined by newlines (see pairio/signing.py)."
            ),
        },
        "paths": {
            "/api/v1/health": {
                "get": {
                    "operationId": "health",
                    "summary": "liveness probe (unsigned)",
                    "responses": _responses(_object(["status"], status={"type": "string"}), {}),
                }
            },
            "/api/v1/probe": {
                "get": {
                    "operationId": "probe",
                    "summary": "the caller's channel and what it may do with each collection",
                    "security": [{"channel": [], "timestamp": [], "nonce": [], "signature": []}],
                    "responses": _responses(_object(["channel", "collections"], channel={"type": "string"},
                                                    collections={"type": "object"})),
                }
            },
            "/api/v1/get": _post("the value under a key (null if absent)", single,
                                 _object(["value"], value=nullable_value), "get"),
            "/api/v1/set": _post(
                "store a value under a key (with records, the record of the result it names)",
                _object(["collection", "key", "value"], collection=_COLLECTION, key=_KEY, value=_VALUE,
                        records=_records_field()),
                _OK, "set"),
            "/api/v1/delete": _post("remove a key", single, _OK, "delete"),
            "/api/v1/get_many": _post(
                "the stored pairs among keys, in one transaction; with inline=N (and the right to read "
                "content), also the content (base64) of values that are SHA-1s of objects of at most N bytes",
                _object(["collection", "keys"], collection=_COLLECTION,
                        keys={"type": "array", "items": _KEY, "maxItems": MAX_PAIRS_PER_REQUEST},
                        inline={"type": "integer", "minimum": 0, "maximum": 64 << 10}),
                _object(["values"], values={"type": "object", "additionalProperties": _VALUE},
                        content={"type": "object", "additionalProperties": {"type": "string", "format": "byte"}}),
                "get_many"),
            "/api/v1/set_many": _post(
                "store pairs in one transaction; a null value deletes its key; records: the records of "
                "the results keys name (each key among the pairs set)",
                _object(["collection", "pairs"], collection=_COLLECTION,
                        pairs={"type": "object", "additionalProperties": nullable_value,
                               "maxProperties": MAX_PAIRS_PER_REQUEST},
                        records=_records_field()),
                _OK, "set_many"),
            **_lease_paths(),
            **_record_paths(),
            **_content_paths(),
            **_status_paths(),
        },
        "components": {
            "securitySchemes": {
                "channel": {"type": "apiKey", "in": "header", "name": HEADER_CHANNEL},
                "timestamp": {"type": "apiKey", "in": "header", "name": HEADER_TIMESTAMP},
                "nonce": {"type": "apiKey", "in": "header", "name": HEADER_NONCE},
                "signature": {"type": "apiKey", "in": "header", "name": HEADER_SIGNATURE},
                "session": {"type": "apiKey", "in": "cookie", "name": "pairio_session",
                            "description": "the cookie of a signed POST /api/v1/status/session"},
            }
        },
    }


def _content_paths() -> dict:
    sha1_param = {"name": "sha1", "in": "path", "required": True, "schema": _SHA1}
    range_param = {"name": "Range", "in": "header", "required": False,
                   "description": "one byte range, e.g. bytes=100- (206); others are ignored",
                   "schema": {"type": "string"}}
    read_errors = {s: e for s, e in _SIGNED_ERRORS.items() if s not in ("404", "429")}
    read_errors["404"] = ("the server lacks the object", _ERROR)
    read_errors["416"] = ("the range is outside the object (Content-Range: bytes */size)", _ERROR)
    got = {"description": "the object's bytes", "content": _BYTES}
    download = {
        "parameters": [sha1_param, range_param],
        "security": _SECURITY,
        "responses": {**_responses({}, read_errors), "200": got,
                      "206": {"description": "the bytes of the range", "content": _BYTES}},
    }
    write_errors = {s: e for s, e in _SIGNED_ERRORS.items() if s != "404"}
    write_errors["400"] = ("malformed request, or the body does not hash to the SHA-1 (nothing stored)", _ERROR)
    write_errors["413"] = ("the object is over the channel's maxObjectBytes", _ERROR)
    write_errors["429"] = ("over the channel's maxUploadBytesPerDay; see Retry-After", _ERROR)
    return {
        "/api/v1/content/missing": {"post": {
            "operationId": "content_missing",
            "summary": "those of the SHA-1s the server lacks, in their order (needs readContent or writeContent)",
            "security": _SECURITY,
            "requestBody": {"required": True, "content": {"application/json": {"schema": _object(
                ["sha1s"], sha1s={"type": "array", "items": _SHA1, "maxItems": MAX_PAIRS_PER_REQUEST})}}},
            "responses": _responses(_object(["missing"], missing={"type": "array", "items": _SHA1})),
        }},
        "/api/v1/content/sha1/{sha1}": {
            "get": {"operationId": "content_get", "summary": "one object (needs readContent)", **download},
            "head": {"operationId": "content_head", "summary": "the size of one object, no body", **download},
            "put": {
                "operationId": "content_put",
                "summary": ("store one object (needs writeContent); signed with the SHA-1 as the "
                            "body's digest, refused unless the body hashes to it"),
                "parameters": [sha1_param],
                "security": _SECURITY,
                "requestBody": {"required": True, "content": _BYTES},
                "responses": _responses(_object(["sha1", "size"], sha1=_SHA1, size={"type": "integer"}),
                                        write_errors),
            },
        },
    }


def _status_paths() -> dict:
    """The status page's JSON: signed, or with the session cookie of a signed sign-in."""
    signed_or_session = [{"channel": [], "timestamp": [], "nonce": [], "signature": []}, {"session": []}]
    counts = _object(["hits", "misses", "seconds_saved", "hit_rate"], hits={"type": "integer"},
                     misses={"type": "integer"}, seconds_saved={"type": "number"},
                     seconds_computed={"type": "number"}, bytes_up={"type": "integer"},
                     bytes_down={"type": "integer"}, hit_rate={"type": "number", "nullable": True})
    record = {"type": "object", "description": "a record: collection, key, function, code, dependencies, "
                                               "arguments, size, seconds, host, created, last_used, hits, inputs"}
    views = {
        "overview": ("entries, bytes against the limit, hit rate and time saved today and in 7 days, calls "
                     "per hour for 7 days",
                     _object(["entries", "bytes", "today", "week", "chart"], entries={"type": "integer"},
                             bytes={"type": "integer"}, limit={"type": "integer", "nullable": True},
                             today=counts, week=counts, chart={"type": "array", "items": {"type": "object"}}), []),
        "steps": ("one row per function, most first by time saved, compute spent or size",
                  _object(["by", "steps"], by={"type": "string"}, steps={"type": "array", "items": {"type": "object"}}),
                  [{"name": "by", "in": "query", "schema": {"type": "string", "enum": ["saved", "computed", "size"]}}]),
        "misses": ("the newest entries, each with why it missed (what differs from the closest older entry)",
                   _object(["misses"], misses={"type": "array", "items": {"type": "object"}}), []),
        "entry": ("an entry's record, its provenance tree and the command that fetches it",
                  _object(["record", "lineage", "fetch"], record=record, lineage={"type": "object"},
                          fetch={"type": "string"}),
                  [{"name": "collection", "in": "query", "required": True, "schema": _COLLECTION},
                   {"name": "key", "in": "query", "required": True, "schema": _KEY}]),
        "leases": ("the leases held in the collections the caller may read: who computes what, for how long",
                   _object(["now", "leases"], now={"type": "number"}, leases={"type": "array", "items": {"type": "object"}}),
                   []),
        "health": ("the version and whether every backend can be used",
                   _object(["status", "version"], status={"type": "string"}, version={"type": "string"},
                           causes={"type": "array", "items": {"type": "string"}}), []),
    }
    status_errors = {**_SIGNED_ERRORS, "429": ("past the channel's maxStatusViewsPerMinute, or too many failed "
                                               "sign-ins from this address; see Retry-After", _ERROR)}
    out: dict = {}
    for name, (summary, schema, parameters) in views.items():
        out[f"/api/v1/status/{name}"] = {"get": {"operationId": f"status_{name}", "summary": summary,
                                                 "security": signed_or_session, "parameters": parameters,
                                                 "responses": _responses(schema, status_errors)}}
    out["/api/v1/status/session"] = _post(
        "sign in: a signed request answered with a session cookie (HttpOnly, SameSite=Strict) for the status views",
        {"type": "object"}, _object(["channel", "seconds"], channel={"type": "string"}, seconds={"type": "integer"}),
        "status_session")
    out["/api/v1/status/signout"] = {"post": {"operationId": "status_signout", "summary": "clear the session cookie",
                                              "security": signed_or_session, "responses": _responses(_OK)}}
    return out
