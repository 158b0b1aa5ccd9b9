"""Issue 24: records on the server. A miss through the server sends its record with its pair (the
``records`` field of set/set_many), the server counts hits per entry (batched) and per hour, and
``POST /api/v1/records`` and ``/counts`` read them back within the channel's rights; the counts are
exact after a server restart. Every test runs a real server (embedded store and PostgreSQL)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
import warnings

import pytest
import requests
from server_process import (
    RO_PASSWORD,
    RW_PASSWORD,
    WO_PASSWORD,
    ServerProcess,
    default_settings,
    free_port,
    server_store,
)
from server_process import signed_request as signed

import pairio as pa
from pairio.memo import outbox, remote

KEY = "a" * 40
VALUE = "b" * 40
NOW = time.time()


def a_record(**fields) -> dict:
    return {"function": "steps.clean", "code": "c" * 40, "dependencies": {"numpy": "2.0.1"},
            "arguments": {"x": "int 3"}, "size": 1234, "seconds": 2.5, "host": "lab-1", "created": NOW, **fields}


@pytest.fixture(params=["embedded", "postgresql"])
def server(request, tmp_path):
    """A server of its own store (embedded, or a fresh PostgreSQL schema) on a fixed port (it can be
    stopped and started again at the same URL)."""
    backend = {} if request.param == "embedded" else {
        "database": request.getfixturevalue("postgres_databases").schema_url()}
    s = ServerProcess(tmp_path / "server", default_settings(**backend), port=free_port())
    s.start()
    yield s
    s.stop()


def post(server, path: str, obj: dict, channel: str = "lab-rw", password: str = RW_PASSWORD):
    return signed(server.url, channel, password, f"/api/v1/{path}", obj)


def listed(server, channel: str = "lab-rw", password: str = RW_PASSWORD, **body) -> list[dict]:
    answer = post(server, "records", body, channel, password)
    assert answer.status_code == 200, answer.text
    return answer.json()["records"]


def counted(server, channel: str = "lab-rw", password: str = RW_PASSWORD, **body) -> dict:
    answer = post(server, "counts", {"since": NOW - 3600, **body}, channel, password)
    assert answer.status_code == 200, answer.text
    return answer.json()


# --- the records field -------------------------------------------------------------------------


def test_a_record_sent_with_its_pair_is_kept_with_every_field(server):
    answer = post(server, "set_many", {"collection": "spikes", "pairs": {KEY: VALUE}, "records": {KEY: a_record()}})
    assert answer.status_code == 200, answer.text
    (got,) = listed(server)
    assert got == {"collection": "spikes", "key": KEY, "channel": "lab-rw", "hits": 0, "last_used": 0.0,
                   "inputs": [], **a_record()}
    answer = post(server, "set", {"collection": "spikes", "key": "d" * 40, "value": VALUE,
                                  "records": {"d" * 40: a_record(function="steps.fit")}})
    assert answer.status_code == 200, answer.text
    assert {r["function"] for r in listed(server)} == {"steps.clean", "steps.fit"}


def test_a_set_without_records_still_works(server):
    assert post(server, "set_many", {"collection": "spikes", "pairs": {KEY: VALUE}}).status_code == 200
    assert post(server, "set", {"collection": "spikes", "key": KEY, "value": VALUE}).status_code == 200
    assert listed(server) == []


@pytest.mark.parametrize("path", ["set", "set_many"])
def test_a_set_whose_record_cannot_be_written_fails_and_leaves_no_pair(server, path):
    """The pair, its record and its miss are one transaction: a record that cannot be written (its
    table is gone) fails the set as a whole, and the pair is not left without its record."""
    assert post(server, "set", {"collection": "spikes", "key": KEY, "value": VALUE,
                                "records": {KEY: a_record()}}).status_code == 200
    store = server_store(server)
    try:
        if hasattr(store, "transaction"):  # the embedded store
            with store.transaction(immediate=True) as connection:
                connection.execute("DROP TABLE server_records")
        else:
            store.database.run(lambda c: c.execute("DROP TABLE pairio_records"))
    finally:
        store.close()
    other = "e" * 40
    body = ({"key": other, "value": VALUE} if path == "set" else {"pairs": {other: VALUE}})
    answer = post(server, path, {"collection": "spikes", **body, "records": {other: a_record()}})
    assert answer.status_code == 503, answer.text
    assert post(server, "get", {"collection": "spikes", "key": other}).json() == {"value": None}
    assert post(server, "set", {"collection": "spikes", "key": other, "value": VALUE}).status_code == 200


@pytest.mark.parametrize(("records", "message"), [
    ([], "field records must be an object mapping keys set to their records"),
    ({"e" * 40: a_record()}, "a record goes only with a pair the request sets"),
    ({KEY: "steps.clean"}, "must be an object with function, code"),
    ({KEY: a_record(colour="red")}, "unknown field(s) 'colour'"),
    ({KEY: {"function": "f"}}, "missing 'size', 'seconds', 'created'"),
    ({KEY: a_record(function="")}, ".function must be a non-empty string"),
    ({KEY: a_record(function="f" * 1001)}, ".function has 1001 characters; the limit is 1000"),
    ({KEY: a_record(size=-1)}, ".size must be a whole number from 0"),
    ({KEY: a_record(size=1.5)}, ".size must be a whole number from 0"),
    ({KEY: a_record(seconds="2")}, ".seconds must be a number from 0"),
    ({KEY: a_record(created=True)}, ".created must be a number from 0"),
    ({KEY: a_record(host=3)}, ".host must be a string"),
    ({KEY: a_record(dependencies=["numpy"])}, ".dependencies must be an object mapping names to strings"),
    ({KEY: a_record(arguments={"x": 3})}, ".arguments['x'] must be a string"),
    ({KEY: a_record(arguments={f"a{i}": "1" for i in range(201)})}, ".arguments has 201 entries; the limit is 200"),
    ({KEY: a_record(code="x\u0000")}, ".code may not contain a NUL character"),
    ({KEY: a_record(host="x\ud800")}, ".host is not valid Unicode"),
    ({KEY: a_record(inputs={"x": KEY})}, ".inputs must be a list of links"),
    ({KEY: a_record(inputs=[{"argument": "x", "key": KEY}])}, ".inputs[0] must be an object of exactly argument"),
    ({KEY: a_record(inputs=[{"argument": "x", "uri": "http://x"}])}, ".inputs[0].uri must be a sha1://"),
    ({KEY: a_record(inputs=[{"argument": "", "uri": "sha1://" + KEY}])}, ".inputs[0].argument must be a non-empty"),
    ({KEY: a_record(inputs=[{"argument": "x", "collection": "spikes", "key": "k" * 1001}])},
     ".inputs[0].key has 1001 characters; the limit is 1000"),
    ({KEY: a_record(inputs=[{"argument": "x", "uri": "sha1://" + KEY}] * 201)}, ".inputs has 201 entries; the limit is 200"),
])
def test_a_bad_record_is_refused_naming_its_field_and_nothing_is_set(server, records, message):
    answer = post(server, "set_many", {"collection": "spikes", "pairs": {KEY: VALUE}, "records": records})
    assert answer.status_code == 400
    assert message in answer.json()["error"]
    assert post(server, "get", {"collection": "spikes", "key": KEY}).json() == {"value": None}


def test_a_channel_that_may_not_set_cannot_send_records(server):
    answer = post(server, "set_many", {"collection": "spikes", "pairs": {KEY: VALUE}, "records": {KEY: a_record()}},
                  "public-ro", RO_PASSWORD)
    assert answer.status_code == 403
    assert listed(server) == []


# --- hits and counts ---------------------------------------------------------------------------


def test_gets_of_a_key_with_a_record_count_hits_on_it_and_in_the_hour(server):
    post(server, "set_many", {"collection": "spikes", "pairs": {KEY: VALUE, "f" * 40: VALUE},
                              "records": {KEY: a_record(seconds=2.0)}})
    for _ in range(3):
        assert post(server, "get", {"collection": "spikes", "key": KEY}).json() == {"value": VALUE}
    post(server, "get_many", {"collection": "spikes", "keys": [KEY, "f" * 40, "0" * 40]})
    post(server, "get", {"collection": "spikes", "key": "f" * 40})  # no record: no hit counted
    (got,) = listed(server)
    assert got["hits"] == 4 and got["last_used"] >= NOW
    answer = counted(server)
    (row,) = answer["counts"]
    assert (row["function"], row["hits"], row["misses"]) == ("steps.clean", 4, 1)
    assert row["seconds_saved"] == pytest.approx(8.0) and row["seconds_computed"] == pytest.approx(2.0)
    assert answer["totals"]["hit_rate"] == pytest.approx(0.8)
    assert answer["groups"][0]["function"] == "steps.clean"


def test_records_are_listed_by_sort_limit_and_function(server):
    post(server, "set_many", {"collection": "spikes", "pairs": {"1" * 40: VALUE, "2" * 40: VALUE, "3" * 40: VALUE},
                              "records": {"1" * 40: a_record(size=10, seconds=9.0, function="steps.fit"),
                                          "2" * 40: a_record(size=30, seconds=1.0),
                                          "3" * 40: a_record(size=20, seconds=5.0)}})
    assert [r["key"][0] for r in listed(server, sort="size")] == ["2", "3", "1"]
    assert [r["key"][0] for r in listed(server, sort="seconds", limit=2)] == ["1", "3"]
    assert [r["key"][0] for r in listed(server, function="fit")] == ["1"]
    for body, message in [({"sort": "colour"}, "field 'sort' must be one of created, size, seconds, hits"),
                          ({"limit": 0}, "field 'limit' must be a whole number from 1 to 1000"),
                          ({"function": 3}, "field 'function' must be a non-empty string")]:
        answer = post(server, "records", body)
        assert answer.status_code == 400 and message in answer.json()["error"]
    for body, message in [({"since": "yesterday"}, "field 'since' must be a time in Unix seconds"),
                          ({"by": "host"}, "field 'by' must be one of function, collection or null")]:
        answer = post(server, "counts", body)
        assert answer.status_code == 400 and message in answer.json()["error"]


def test_a_channel_sees_only_the_records_and_counts_of_collections_it_may_read(server):
    post(server, "set_many", {"collection": "spikes", "pairs": {KEY: VALUE}, "records": {KEY: a_record()}})
    post(server, "set_many", {"collection": "other", "pairs": {KEY: VALUE},
                              "records": {KEY: a_record(function="secret.step")}})
    assert {r["collection"] for r in listed(server)} == {"spikes", "other"}
    # public-ro may read spikes only; drop-box may read nothing.
    assert [r["collection"] for r in listed(server, "public-ro", RO_PASSWORD)] == ["spikes"]
    assert listed(server, "drop-box", WO_PASSWORD) == []
    by_collection = counted(server, "public-ro", RO_PASSWORD, by="collection")
    assert [r["collection"] for r in by_collection["counts"]] == ["spikes"]
    assert "secret.step" not in json.dumps(counted(server, "public-ro", RO_PASSWORD))
    assert counted(server, "drop-box", WO_PASSWORD)["counts"] == []
    for path in ("records", "counts"):
        answer = post(server, path, {"collection": "other"}, "public-ro", RO_PASSWORD)
        assert answer.status_code == 403 and "may not read collection 'other'" in answer.json()["error"]
    unsigned = __import__("requests").post(f"{server.url}/api/v1/records", json={}, timeout=10)
    assert unsigned.status_code == 401


def test_counts_are_exact_after_a_server_restart(server):
    post(server, "set_many", {"collection": "spikes", "pairs": {KEY: VALUE}, "records": {KEY: a_record()}})
    for _ in range(20):
        post(server, "get_many", {"collection": "spikes", "keys": [KEY]})
    server.stop()  # within the second the hits wait in memory: written as the server stops
    server.start()
    (row,) = counted(server)["counts"]
    assert (row["hits"], row["misses"]) == (20, 1)
    for _ in range(5):
        post(server, "get", {"collection": "spikes", "key": KEY})
    server.stop()
    server.start()
    assert listed(server)[0]["hits"] == 25
    assert counted(server)["totals"]["hits"] == 25


# --- the client ----------------------------------------------------------------------------------


@pa.cached
def step(tag: str, x: int) -> list[int]:
    time.sleep(0.02)
    return [x] * 100


def shared(server, **fields):
    return pa.config(url=server.url, channel="lab-rw", password=RW_PASSWORD, collection="spikes",
                     get_from="local_then_remote", set_to="local_and_remote", **fields)


def test_a_miss_through_the_server_sends_its_record_with_its_pair(server, tmp_path):
    tag = uuid.uuid4().hex
    with shared(server):
        step(tag, 1)
        key = step.key(tag, 1)
    (got,) = listed(server)
    assert got["key"] == key and got["function"].endswith("step") and got["channel"] == "lab-rw"
    assert got["code"] == pa.entries()[0].code["digest"]
    assert got["arguments"] == {"tag": repr(tag), "x": "1"} or set(got["arguments"]) == {"tag", "x"}
    assert got["seconds"] >= 0.02 and got["size"] > 0 and got["host"] and abs(got["created"] - time.time()) < 60
    # A teammate's hit through the server counts on the server's record.
    with shared(server, database_path=str(tmp_path / "teammate")):
        assert step(tag, 1) == [1] * 100
    deadline = time.monotonic() + 10
    while listed(server)[0]["hits"] < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert listed(server)[0]["hits"] >= 1


def test_a_result_made_during_an_outage_reaches_the_server_with_its_record(server):
    tag = uuid.uuid4().hex
    with shared(server):
        server.stop()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            step(tag, 2)
        (waiting,) = outbox.waiting(pa.get_config())
        assert waiting.records[waiting.key]["function"].endswith("step")
        server.start()
        remote.forget_health()
        report = pa.sync()
        assert report.pushed == 1
    (got,) = listed(server)
    assert got["key"] == step.key(tag, 2) and got["function"].endswith("step") and got["seconds"] >= 0.02


def test_sync_sends_the_records_of_recorded_entries(server):
    tag = uuid.uuid4().hex
    with pa.config(collection="spikes"):
        step(tag, 3)  # local only
    with shared(server):
        assert pa.sync().pushed == 1
    (got,) = listed(server)
    assert got["key"] == step.key(tag, 3) and got["function"].endswith("step")


def _cli(server, *args: str, env_home) -> dict:
    env = {"PAIRIO_URL": server.url, "PAIRIO_CHANNEL": "lab-rw", "PAIRIO_PASSWORD": RW_PASSWORD,
           "PAIRIO_DB_PATH": str(env_home), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "pairio", *args, "--json"], capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_ls_and_stats_against_the_server(server, tmp_path):
    post(server, "set_many", {"collection": "spikes", "pairs": {"1" * 40: VALUE, "2" * 40: VALUE},
                              "records": {"1" * 40: a_record(size=10), "2" * 40: a_record(size=99)}})
    post(server, "get", {"collection": "spikes", "key": "1" * 40})
    post(server, "get", {"collection": "spikes", "key": "1" * 40})
    ls = _cli(server, "ls", "--server", "--sort", "size", env_home=tmp_path / "cli")
    assert [e["size"] for e in ls["entries"]] == [99, 10] and ls["totals"]["count"] == 2
    ls = _cli(server, "ls", "--server", "--sort", "hits", "--limit", "1", env_home=tmp_path / "cli")
    assert [(e["key"][0], e["hits"]) for e in ls["entries"]] == [("1", 2)]
    stats = _cli(server, "stats", "--server", "--by", "collection", "--since", "90m", env_home=tmp_path / "cli")
    assert stats["by"] == "collection"
    assert [(g["collection"], g["hits"], g["misses"]) for g in stats["groups"]] == [("spikes", 2, 2)]
    assert stats["totals"]["seconds_saved"] == pytest.approx(5.0)


def test_content_moved_is_counted_in_bytes_up_and_down_of_the_channels_collection(server):
    import hashlib

    data = b"x" * 5000
    sha1 = hashlib.sha1(data).hexdigest()
    path = f"/api/v1/content/sha1/{sha1}"
    put = signed(server.url, "lab-rw", RW_PASSWORD, path, method="PUT", body=data, body_hash=sha1,
                 headers={"Content-Type": "application/octet-stream"})
    assert put.status_code == 200, put.text
    for _ in range(2):
        got = signed(server.url, "public-ro", RO_PASSWORD, path, method="GET")
        assert got.content == data
    # lab-rw's first collection is spikes, as is public-ro's: the bytes count there, as content (function "").
    rows = {r["collection"]: r for r in counted(server, by="collection")["counts"]}
    assert (rows["spikes"]["bytes_up"], rows["spikes"]["bytes_down"]) == (5000, 10000)
    (row,) = counted(server)["counts"]
    assert row["function"] == "" and row["hits"] == 0


def test_counts_are_exact_after_a_restart_of_two_worker_processes(tmp_path, postgres_databases):
    settings = default_settings(database=postgres_databases.schema_url())
    s = ServerProcess(tmp_path / "server", settings, port=free_port(), args=("--workers", "2"))
    s.start()
    try:
        post(s, "set_many", {"collection": "spikes", "pairs": {KEY: VALUE}, "records": {KEY: a_record()}})
        for _ in range(30):  # spread over both workers, each holding its own in memory
            post(s, "get", {"collection": "spikes", "key": KEY})
        s.stop()
        s.start()
        assert counted(s)["totals"]["hits"] == 30, s.log()
        assert listed(s)[0]["hits"] == 30
    finally:
        s.stop()


def test_a_hit_is_queued_not_written_until_the_writer_runs(tmp_path):
    from pairio.kv.embedded import EmbeddedStore
    from pairio.server.backends.records import EmbeddedRecords, ServerRecord
    from pairio.server.records import Recorder

    backend = EmbeddedRecords(EmbeddedStore(tmp_path / "store"))
    recorder = Recorder(backend, interval_s=60.0)
    recorder.put([ServerRecord(collection="c", key=KEY, function="f", code="", dependencies={}, arguments={},
                               size=1, seconds=1.0, host="h", created=NOW)])
    assert backend.get("c", KEY).hits == 0  # written with its pair's request
    recorder.hit("c", [KEY, KEY])
    assert backend.get("c", KEY).hits == 0  # the get's hit: a dictionary update, no write
    recorder.flush()
    assert backend.get("c", KEY).hits == 2


def test_a_sets_record_is_written_with_its_pair_and_its_miss_queued_with_the_hits(tmp_path):
    from pairio.kv.embedded import EmbeddedStore
    from pairio.server.backends.records import EmbeddedRecords, ServerRecord
    from pairio.server.records import Recorder

    store = EmbeddedStore(tmp_path / "store")
    backend = EmbeddedRecords(store)
    recorder = Recorder(backend, interval_s=60.0)
    made = [ServerRecord(collection="c", key=k, function="f", code="", dependencies={}, arguments={}, size=1,
                         seconds=2.5, host="h", created=NOW) for k in (KEY, "e" * 40)]
    recorder.set_with_records(store, "c", {KEY: "v1", "e" * 40: "v2"}, made)
    assert store.get("c", KEY) == "v1" and backend.get("c", KEY) == made[0]  # in the request's one commit
    assert backend.counts(["c"], time.time() - 10) == []  # the misses wait in memory, as hits do
    recorder.flush()  # within a second, when the server stops, before a read of the counts
    (row,) = backend.counts(["c"], time.time() - 10)
    assert (row["function"], row["misses"], row["seconds_computed"]) == ("f", 2, 5.0)


# --- provenance from the record store ------------------------------------------------------------


def entry_view(server, collection: str, key: str, channel: str = "lab-rw", password: str = RW_PASSWORD) -> dict:
    from pairio.signing import sign_request

    path, query = "/api/v1/status/entry", f"collection={collection}&key={key}"
    answer = requests.get(f"{server.url}{path}?{query}", timeout=10,
                                        headers=sign_request(channel, password, "GET", path, b"", query))
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_an_entrys_provenance_tree_is_built_from_the_records_inputs_within_the_viewers_rights(server):
    clean, other, fit = "1" * 40, "2" * 40, "3" * 40
    uri = "sha1://" + "4" * 40 + "/raw.bin"
    assert post(server, "set_many", {"collection": "other", "pairs": {other: VALUE},
                                     "records": {other: a_record(function="secret.prepare")}}).status_code == 200
    inputs = [{"argument": "data", "collection": "spikes", "key": clean},
              {"argument": "params", "collection": "other", "key": other},
              {"argument": "path", "uri": uri}]
    answer = post(server, "set_many", {"collection": "spikes", "pairs": {clean: VALUE, fit: VALUE},
                                       "records": {clean: a_record(), fit: a_record(function="steps.fit", inputs=inputs)}})
    assert answer.status_code == 200, answer.text
    assert listed(server, function="steps.fit")[0]["inputs"] == inputs

    tree = entry_view(server, "spikes", fit)["lineage"]
    assert tree["function"] == "steps.fit" and [i["argument"] for i in tree["inputs"]] == ["data", "params", "path"]
    data, params, path = tree["inputs"]
    assert data["function"] == "steps.clean" and data["key"] == clean and data["inputs"] == []
    assert tree["uri"] == data["uri"] == "sha1://" + VALUE  # each step's result, from its pair
    assert params["function"] == "secret.prepare" and params["collection"] == "other"
    assert path == {"argument": "path", "uri": uri, "note": "content"}

    # public-ro may read spikes only: the input in "other" is there, hidden, never its key or record.
    shown = entry_view(server, "spikes", fit, "public-ro", RO_PASSWORD)
    hidden = shown["lineage"]["inputs"][1]
    assert hidden == {"argument": "params", "note": "in a collection you may not read"}
    assert other not in json.dumps(shown) and "secret.prepare" not in json.dumps(shown)


def test_the_servers_provenance_tree_is_bounded_in_depth_and_survives_a_cycle(server):
    from pairio.server.status import MAX_LINEAGE_DEPTH

    keys = [f"{i:040x}" for i in range(1, MAX_LINEAGE_DEPTH + 5)]
    records = {k: a_record(function=f"steps.s{i}",
                           inputs=[{"argument": "x", "collection": "spikes", "key": keys[(i + 1) % len(keys)]}])
               for i, k in enumerate(keys)}  # a chain whose last step points back at the first
    assert post(server, "set_many", {"collection": "spikes", "pairs": {k: VALUE for k in keys},
                                     "records": records}).status_code == 200
    node, depth = entry_view(server, "spikes", keys[0])["lineage"], 1
    while "function" in node["inputs"][0]:
        node, depth = node["inputs"][0], depth + 1
    assert depth == MAX_LINEAGE_DEPTH and node["inputs"][0]["note"] == "not shown (the tree is cut here)"
    a, b = "a1" * 20, "b1" * 20
    loop = {a: a_record(function="steps.a", inputs=[{"argument": "x", "collection": "spikes", "key": b}]),
            b: a_record(function="steps.b", inputs=[{"argument": "y", "collection": "spikes", "key": a}])}
    assert post(server, "set_many", {"collection": "spikes", "pairs": {a: VALUE, b: VALUE},
                                     "records": loop}).status_code == 200
    tree = entry_view(server, "spikes", a)["lineage"]
    assert tree["inputs"][0]["function"] == "steps.b"
    assert tree["inputs"][0]["inputs"][0] == {"argument": "y", "key": a, "collection": "spikes", "note": "cycle"}


@pa.cached
def loaded(tag: str, n: int):
    import numpy as np

    return np.arange(n)


@pa.cached
def summed(tag: str, values) -> int:
    return int(values.sum())


def test_a_miss_through_the_server_sends_its_inputs_and_the_page_shows_the_tree(server):
    tag = uuid.uuid4().hex
    with shared(server):
        assert summed(tag, loaded(tag, 5)) == 10
        first, second = loaded.key(tag, 5), summed.entries()[0].key
    (got,) = listed(server, function="summed")
    assert got["key"] == second
    assert got["inputs"] == [{"argument": "values", "collection": "spikes", "key": first}]
    tree = entry_view(server, "spikes", second)["lineage"]
    assert tree["inputs"][0]["function"].endswith("loaded") and tree["inputs"][0]["key"] == first


def test_a_step_two_inputs_share_is_shown_once_in_the_servers_tree(server):
    raw, left, right, top = "e1" * 20, "e2" * 20, "e3" * 20, "e4" * 20

    def link(argument, key):
        return {"argument": argument, "collection": "spikes", "key": key}

    records = {raw: a_record(function="steps.load"),
               left: a_record(function="steps.left", inputs=[link("x", raw)]),
               right: a_record(function="steps.right", inputs=[link("x", raw)]),
               top: a_record(function="steps.join", inputs=[link("a", left), link("b", right)])}
    assert post(server, "set_many", {"collection": "spikes", "pairs": {k: VALUE for k in records},
                                     "records": records}).status_code == 200
    a, b = entry_view(server, "spikes", top)["lineage"]["inputs"]
    assert a["inputs"][0]["function"] == "steps.load"
    assert b["inputs"][0] == {"argument": "x", "key": raw, "collection": "spikes", "note": "shown above"}


# --- parsing a record: the quick path for plain records, field by field for the rest ------------


@pytest.mark.parametrize("fields", [
    {},
    {"created": 1_800_000_000, "seconds": 0, "size": 0},  # whole numbers for seconds and times
    {"function": "\u00e9tapes.nettoyer", "host": "h\u00f4te", "dependencies": {"caf\u00e9": "1\u20132"}},
    {"dependencies": {}, "arguments": {}, "inputs": []},
    {"inputs": [{"argument": "x", "collection": "spikes", "key": KEY}, {"argument": "raw", "uri": "sha1://" + KEY}]},
])
def test_a_valid_record_is_parsed_alike_on_either_path(fields):
    from pairio.server.records import parse_record, parse_records

    obj = a_record(**fields)
    (quick,) = parse_records({KEY: obj}, {KEY: VALUE}, "spikes", "lab-rw")
    checked = parse_record(obj, "spikes", KEY, "lab-rw", "records")  # always field by field
    assert quick == checked
    assert (type(quick.seconds), type(quick.created), quick.channel, quick.hits) == (float, float, "lab-rw", 0)


@pytest.mark.parametrize(("fields", "message"), [
    ({"seconds": float("nan")}, ".seconds must be a number from 0"),
    ({"seconds": float("inf")}, ".seconds must be a number from 0"),
    ({"created": 2e11}, ".created must be a number from 0"),
    ({"size": True}, ".size must be a whole number from 0"),
    ({"dependencies": {"numpy\u0000": "2"}}, ".dependencies name may not contain a NUL character"),
    ({"dependencies": {"n" * 201: "2"}}, ".dependencies name has 201 characters; the limit is 200"),
    ({"dependencies": {"numpy": "2" * 201}}, ".dependencies['numpy'] has 201 characters; the limit is 200"),
    ({"arguments": {"x": "a" * 1001}}, ".arguments['x'] has 1001 characters; the limit is 1000"),
    ({"arguments": {"x": "\ud800"}}, ".arguments['x'] is not valid Unicode"),
    ({"arguments": None}, ".arguments must be an object mapping names to strings"),
    ({"code": "c" * 201}, ".code has 201 characters; the limit is 200"),
    ({"host": "h" * 256}, ".host has 256 characters; the limit is 255"),
    ({"inputs": [{"argument": "x"}]}, "field records['" + KEY + "'].inputs[0] must be an object of exactly"),
])
def test_a_record_off_the_quick_path_is_refused_naming_its_field(fields, message):
    from pairio.server.auth import ApiError
    from pairio.server.records import parse_records

    with pytest.raises(ApiError) as caught:
        parse_records({KEY: a_record(**fields)}, {KEY: VALUE}, "spikes", "lab-rw")
    assert caught.value.status == 400
    assert message in caught.value.message


def test_hits_and_misses_queued_by_threads_while_the_writer_writes_are_all_counted(tmp_path):
    import threading

    from pairio.kv.embedded import EmbeddedStore
    from pairio.server.backends.records import EmbeddedRecords, ServerRecord
    from pairio.server.records import Recorder

    store = EmbeddedStore(tmp_path / "store")
    backend = EmbeddedRecords(store)
    recorder = Recorder(backend, interval_s=60.0)
    made = ServerRecord(collection="c", key=KEY, function="f", code="", dependencies={}, arguments={}, size=1,
                        seconds=1.0, host="h", created=NOW)
    recorder.set_with_records(store, "c", {KEY: "v"}, [made])
    done = threading.Event()

    def flushing() -> None:
        while not done.is_set():
            recorder.flush()

    def queueing() -> None:
        for _ in range(2000):
            recorder.hit("c", [KEY])
            recorder.missed([made])

    writer = threading.Thread(target=flushing)
    writer.start()
    threads = [threading.Thread(target=queueing) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    writer.join()
    recorder.flush()
    assert backend.get("c", KEY).hits == 8000
    (row,) = backend.counts(["c"], time.time() - 10)
    assert (row["hits"], row["misses"]) == (8000, 8001)
