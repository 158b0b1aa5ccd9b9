"""Benchmark the pairio server on loopback, beside redis-benchmark GET as the ceiling.

    .venv/bin/python benchmarks/server.py [--clients 4] [--seconds 5] [--rounds 3] [--content-mb 1024]
    .venv/bin/python benchmarks/server.py --quick      # embedded store only, short phases

Starts ``pairio serve`` on free 127.0.0.1 ports with a pairio.json of high limits,
preloads pairs, then runs N client processes for a fixed time, for three set-ups: one
replica on the embedded store, one on PostgreSQL, two on PostgreSQL (the clients split
between them):

1. single gets by lean clients: each client process holds one keep-alive HTTP/1.1
   connection and signs every request with :func:`pairio.signing.sign_request`, as
   pairio's client does, but spends little else (as redis-benchmark's C client): what
   the server can answer. gets/s over all clients, the median of ``--rounds`` rounds,
   p50/p99 latency, and the server's CPU time per get (from /proc: the figure least
   moved by other work on the machine);
2. single gets by pairio's client (RemoteStore, over its keep-alive connections), one round:
   gets/s beside the lean clients', and the client's own CPU time per get (user and system);
3. single sets by lean clients, without records and with one (the ``records`` field of a
   set, when the server takes it: ``--records auto`` asks it), and their ratio; each set stores a
   new value, as a miss does (a set of the value already stored writes nothing: a no-op beside
   a set whose record is written);
4. get_many of 1,000 keys by RemoteStore clients: keys/s over all clients, and the client's
   CPU time per get_many;

then ``redis-benchmark -t get -c <clients>`` against 127.0.0.1:6379 if it runs, beside
the single gets; then one object of ``--content-mb`` MB uploaded and downloaded by a
client process through a replica whose content is a directory, and through one whose
content is in moto's S3 server (a protocol double: its speed is not S3's), with the
client's peak memory; then a profile (pyinstrument, if installed) of the server answering
single gets, in process.

PostgreSQL: a database of its own, created on ``PAIRIO_BENCH_POSTGRES`` (default
postgresql://postgres@127.0.0.1:5432/test) and dropped at the end. Every loop is
bounded in time; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import requests
from common import default_dir

from pairio.kv.remote import RemoteStore
from pairio.server.process import ServerProcess, free_port
from pairio.signing import sign_request

PASSWORD = "benchmark-password-0123456789"
CHANNEL = "bench"
COLLECTION = "bench"
NUM_KEYS = 10_000
BATCH = 1_000
ROUND_GAP_S = 0.5  # between two timed rounds of the same clients
SETTINGS = {"channels": [{"name": CHANNEL, "password": PASSWORD, "collections": [
    {"name": COLLECTION, "maxNumGetsPerMinute": 1_000_000_000, "maxNumSetsPerMinute": 1_000_000_000}]}]}


def keys() -> list[str]:
    return [hashlib.sha1(str(i).encode()).hexdigest() for i in range(NUM_KEYS)]


class LeanClient:
    """One keep-alive HTTP/1.1 connection to the server; each request signed as pairio's client
    signs it (:func:`pairio.signing.sign_request`), and little else spent."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.host = f"Host: {parts.hostname}:{parts.port}\r\nContent-Type: application/json\r\n"
        self.buffer = b""

    def post(self, path: str, obj: object) -> tuple[int, object]:
        """POST ``obj`` as JSON to ``path``: the status and the decoded JSON answer."""
        body = json.dumps(obj, separators=(",", ":")).encode()
        signed = sign_request(CHANNEL, PASSWORD, "POST", path, body)
        head = (f"POST {path} HTTP/1.1\r\n{self.host}Content-Length: {len(body)}\r\n"
                + "".join(f"{k}: {v}\r\n" for k, v in signed.items()) + "\r\n")
        self.sock.sendall(head.encode() + body)
        while b"\r\n\r\n" not in self.buffer:
            self._read()
        head_bytes, _, rest = self.buffer.partition(b"\r\n\r\n")
        lines = head_bytes.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(int(line.split(b":", 1)[1]) for line in lines[1:]
                      if line.lower().startswith(b"content-length:"))
        self.buffer = rest
        while len(self.buffer) < length:
            self._read()
        answer, self.buffer = self.buffer[:length], self.buffer[length:]
        return status, json.loads(answer)

    def _read(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data


def record_for(key: str) -> dict[str, object]:
    """A record as a miss sends it with its pair (function, code, versions, arguments, size, time)."""
    return {"function": "pipeline.steps.fit_model", "code": key[:16],
            "dependencies": {"numpy": "2.1.0", "pandas": "2.2.3", "scikit-learn": "1.5.2"},
            "arguments": {"data": "DataFrame(10000x12) 3f2a9c", "alpha": "0.5"},
            "size": 20, "seconds": 12.5, "host": "worker-3", "created": 1.7e9}


def lean_requests(url: str, what: str, seconds: float, start_at: float, rounds: int, queue) -> None:
    """``rounds`` timed rounds of single ``what`` requests ('get', 'set', 'set+record') on one
    connection: per round, the latency of each request."""
    client = LeanClient(url)
    ks = keys()
    client.post("/api/v1/get", {"collection": COLLECTION, "key": ks[0]})  # connected before the clock starts
    i = os.getpid()
    out = []
    for r in range(rounds):
        begin = start_at + r * (seconds + ROUND_GAP_S)
        while time.time() < begin:
            time.sleep(0.001)
        end = time.perf_counter() + seconds
        latencies = []
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                break
            key = ks[i % NUM_KEYS]
            if what == "get":
                status, answer = client.post("/api/v1/get", {"collection": COLLECTION, "key": key})
                assert status == 200 and answer["value"] is not None, (status, answer)
            else:
                # A new value each time, as a miss stores: the value already there is written by nothing.
                value = hashlib.sha1(f"{key} {i} {r}".encode()).hexdigest()
                obj = {"collection": COLLECTION, "key": key, "value": value}
                if what == "set+record":
                    obj["records"] = {key: record_for(key)}
                status, answer = client.post("/api/v1/set", obj)
                assert status == 200, (status, answer)
            latencies.append(time.perf_counter() - t0)
            i += 1
        out.append(latencies)
    queue.put(out)


def client_cpu_seconds() -> float:
    """User and system CPU seconds this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def single_gets(url: str, seconds: float, start_at: float, rounds: int, queue) -> None:
    """Single gets by pairio's client for ``seconds``: the latency of each, then (as a second
    list) the CPU seconds the client spent on them."""
    store = RemoteStore(url, CHANNEL, PASSWORD)
    ks = keys()
    store.get(COLLECTION, ks[0])  # open the connection before the clock starts
    latencies = []
    while time.time() < start_at:
        time.sleep(0.001)
    end = time.perf_counter() + seconds
    i = os.getpid()
    cpu = client_cpu_seconds()
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        value = store.get(COLLECTION, ks[i % NUM_KEYS])
        latencies.append(time.perf_counter() - t0)
        assert value is not None
        i += 1
    queue.put([latencies, [client_cpu_seconds() - cpu]])


def batch_gets(url: str, seconds: float, start_at: float, rounds: int, queue) -> None:
    """get_many of BATCH keys by pairio's client for ``seconds``: the latency of each, then (as a
    second list) the CPU seconds the client spent on them."""
    store = RemoteStore(url, CHANNEL, PASSWORD)
    ks = keys()
    batches = [ks[i : i + BATCH] for i in range(0, NUM_KEYS, BATCH)]
    store.get_many(COLLECTION, batches[0])
    while time.time() < start_at:
        time.sleep(0.001)
    end = time.perf_counter() + seconds
    done = 0
    latencies = []
    cpu = client_cpu_seconds()
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        found = store.get_many(COLLECTION, batches[done % len(batches)])
        latencies.append(time.perf_counter() - t0)
        assert len(found) == BATCH
        done += 1
    queue.put([latencies, [client_cpu_seconds() - cpu]])


def run_clients(target, urls: list[str], clients: int, seconds: float, *args,
                rounds: int = 1) -> list[list[float]]:
    """Run ``clients`` processes of ``target``, client i on ``urls[i % len(urls)]``: the latencies of
    every request of each round (a list per round, all clients together)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 2.0  # time for every client to start and connect
    processes = [ctx.Process(target=target, args=(urls[i % len(urls)], *args, seconds, start_at, rounds, queue))
                 for i in range(clients)]
    for p in processes:
        p.start()
    results = [queue.get(timeout=rounds * (seconds + ROUND_GAP_S) + 60) for _ in processes]
    for p in processes:
        p.join(30)
    return [[x for client in results for x in client[r]] for r in range(len(results[0]))]


def server_cpu_seconds(pids: list[int]) -> float:
    """User and system CPU seconds the processes ``pids`` have used (Linux /proc; 0.0 elsewhere)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def redis_get_ceiling(clients: int, requests_: int = 20_000) -> float | None:
    """redis-benchmark GET requests/s on 127.0.0.1:6379 with ``clients`` connections (as many as the
    server's clients), or None if redis is not there."""
    if shutil.which("redis-benchmark") is None:
        return None
    try:
        out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", "6379", "-t", "get", "-c", str(clients),
                              "-n", str(requests_), "-q"], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None
    match = re.search(r"GET: ([0-9.]+) requests per second", out.stdout.replace("\r", "\n"))
    return float(match.group(1)) if match else None


POSTGRES = os.environ.get("PAIRIO_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def measure(urls: list[str], pids: list[int], args) -> dict[str, float]:
    """Single gets and sets, and get_many, through ``urls`` (served by the processes ``pids``,
    preloaded through the first)."""
    RemoteStore(urls[0], CHANNEL, PASSWORD).set_many(COLLECTION, {k: k[:20] for k in keys()})
    clients, seconds, rounds = args.clients, args.seconds, args.rounds
    out: dict[str, float] = {}

    def lean(what: str) -> tuple[float, list[float], float]:
        """Requests/s (median of the rounds), every latency, and the servers' CPU us per request."""
        cpu = server_cpu_seconds(pids)
        per_round = run_clients(lean_requests, urls, clients, seconds, what, rounds=rounds)
        cpu = server_cpu_seconds(pids) - cpu
        done = sum(len(r) for r in per_round)
        return (statistics.median(len(r) / seconds for r in per_round), [x for r in per_round for x in r],
                1e6 * cpu / done if done else 0.0)

    rate, latencies, cpu = lean("get")
    out["single_gets_per_s"] = rate
    out["single_gets_per_s_rounds"] = len(latencies) / seconds / rounds
    out["single_get_p50_ms"] = 1000 * statistics.median(latencies)
    out["single_get_p99_ms"] = 1000 * percentile(latencies, 99)
    out["server_cpu_us_per_get"] = cpu
    latencies, cpus = run_clients(single_gets, urls, clients, seconds)
    out["remote_store_gets_per_s"] = len(latencies) / seconds
    out["remote_store_get_p50_ms"] = 1000 * statistics.median(latencies)
    out["remote_store_client_cpu_us_per_get"] = 1e6 * sum(cpus) / len(latencies)
    out["single_sets_per_s"], latencies, out["server_cpu_us_per_set"] = lean("set")
    out["single_set_p50_ms"] = 1000 * statistics.median(latencies)
    if args.records_on:
        out["single_sets_with_record_per_s"], latencies, out["server_cpu_us_per_set_with_record"] = lean("set+record")
        out["single_set_with_record_p50_ms"] = 1000 * statistics.median(latencies)
    latencies, cpus = run_clients(batch_gets, urls, clients, seconds)
    out["get_many_keys_per_s"] = len(latencies) * BATCH / seconds
    out["get_many_client_cpu_ms"] = 1000 * sum(cpus) / len(latencies)
    out["get_many_p50_ms"] = 1000 * statistics.median(latencies)
    out["get_many_p99_ms"] = 1000 * percentile(latencies, 99)
    return out


def takes_records(url: str) -> bool:
    """Whether the server keeps the records sent with sets: it answers its records endpoint (a
    server without one answers Starlette's plain-text 404)."""
    from pairio.server.process import signed_request

    response = signed_request(url, CHANNEL, PASSWORD, "/api/v1/records", {})
    return response.headers.get("content-type", "").startswith("application/json")


@contextlib.contextmanager
def postgres_database():
    """The URL of a new database (dropped on leaving), or None if PostgreSQL is not reachable."""
    import psycopg

    try:
        admin = psycopg.connect(POSTGRES, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        print(f"  (PostgreSQL at {POSTGRES} unreachable, its figures skipped: {exc})")
        yield None
        return
    name = f"pairio_bench_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{POSTGRES.rsplit('/', 1)[0]}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def pair_figures(args, root: Path) -> dict[str, dict[str, float]]:
    setups: dict[str, dict[str, float]] = {}
    with ServerProcess(root / "embedded", SETTINGS) as server:
        if args.records == "auto":
            args.records_on = takes_records(server.url)
            if not args.records_on:
                print("  (this server does not keep records: sets with records not measured)")
        setups["embedded, 1 replica"] = measure([server.url], [server.process.pid], args)
    if args.quick or args.embedded_only:
        return setups
    with postgres_database() as database:
        if database is not None:
            settings = {**SETTINGS, "database": database}
            with ServerProcess(root / "pg-a", settings) as a:
                setups["postgresql, 1 replica"] = measure([a.url], [a.process.pid], args)
                with ServerProcess(root / "pg-b", settings) as b:
                    setups["postgresql, 2 replicas"] = measure([a.url, b.url], [a.process.pid, b.process.pid], args)
    return setups


# --- content: one large object up and down ------------------------------------------------


def transfer(url: str, source_dir: str, sha1: str, target_dir: str, queue) -> None:
    """In a client process of its own: upload ``sha1`` from one store, download it into another."""
    import resource

    from pairio.content.remote import RemoteContent
    from pairio.content.store import ContentStore

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    uploader = RemoteContent(RemoteStore(url, CHANNEL, PASSWORD, timeout=600), ContentStore(source_dir))
    t0 = time.perf_counter()
    uploader.upload(sha1)
    up = time.perf_counter() - t0
    downloader = RemoteContent(RemoteStore(url, CHANNEL, PASSWORD, timeout=600), ContentStore(target_dir))
    t0 = time.perf_counter()
    downloader.download(sha1)
    down = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    queue.put((up, down, before / 1024, peak / 1024))


def content_figures(args, root: Path) -> dict[str, dict[str, float]]:
    from pairio.content.store import ContentStore

    size = args.content_mb * 1_000_000
    source = ContentStore(root / "client-source")
    with source.writer() as w:
        block = os.urandom(1 << 20)
        for i in range(0, size, len(block)):
            w.write(block[: min(len(block), size - i)])
            block = block[1:] + block[:1]  # no two blocks alike
    sha1 = w.hexdigest
    content_settings = {**SETTINGS, "channels": [{**SETTINGS["channels"][0], "readContent": True,
                                                   "writeContent": True, "maxObjectBytes": 1 << 40,
                                                   "maxUploadBytesPerDay": 1 << 45}]}
    out = {}
    ctx = multiprocessing.get_context("spawn")
    for name in ("directory", "s3 (moto)"):
        with contextlib.ExitStack() as stack:
            settings = content_settings
            if name.startswith("s3"):
                endpoint = stack.enter_context(moto_server(root))
                os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                                  AWS_DEFAULT_REGION="us-east-1")
                import boto3

                boto3.session.Session().client("s3", endpoint_url=endpoint).create_bucket(Bucket="bench")
                settings = {**settings, "content": {"backend": "s3", "bucket": "bench", "endpoint": endpoint,
                                                    "region": "us-east-1"}}
            server = stack.enter_context(ServerProcess(root / f"content-{name[:2]}", settings))
            queue = ctx.Queue()
            target = root / f"client-target-{name[:2]}"
            p = ctx.Process(target=transfer, args=(server.url, str(source.directory), sha1, str(target), queue))
            p.start()
            up, down, base_mb, peak_mb = queue.get(timeout=3600)
            p.join(60)
            shutil.rmtree(target, ignore_errors=True)
            out[name] = {"upload_MB_per_s": size / 1e6 / up, "download_MB_per_s": size / 1e6 / down,
                         "upload_s": up, "download_s": down, "client_base_rss_mb": base_mb,
                         "client_peak_rss_mb": peak_mb}
    return out


@contextlib.contextmanager
def moto_server(root: Path):
    port = free_port()
    with open(root / "moto.log", "wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                   stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    requests.get(url, timeout=1)
                    break
                except requests.ConnectionError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("moto's S3 server did not start") from None
                    time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            process.wait(30)


# --- where one get's time goes ----------------------------------------------------------


def profile_single_get(root: Path, n: int = 3000) -> str:
    """pyinstrument's view of the server answering ``n`` single gets in process (no HTTP
    parsing: the ASGI app called directly with signed requests made beforehand)."""
    import asyncio

    from pyinstrument import Profiler

    from pairio.server.app import create_app
    from pairio.server.settings import parse_settings
    from pairio.signing import sign_request

    app = create_app(parse_settings(SETTINGS, root / "profiled"))
    app.state.store.set(COLLECTION, "k", "v")
    body = json.dumps({"collection": COLLECTION, "key": "k"}).encode()
    requests_ = []
    for _ in range(n):
        headers = sign_request(CHANNEL, PASSWORD, "POST", "/api/v1/get", body)
        requests_.append([(b"content-length", str(len(body)).encode()), (b"content-type", b"application/json")]
                         + [(k.lower().encode(), v.encode()) for k, v in headers.items()])

    async def run() -> None:
        for headers in requests_:
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                     "scheme": "http", "path": "/api/v1/get", "raw_path": b"/api/v1/get", "root_path": "",
                     "query_string": b"", "headers": headers, "client": ("127.0.0.1", 1),
                     "server": ("127.0.0.1", 8080)}
            sent = []

            async def receive():
                return {"type": "http.request", "body": body, "more_body": False}

            async def send(message, sent=sent):
                sent.append(message)

            await app(scope, receive, send)
            assert sent[0]["status"] == 200, sent

    profiler = Profiler(interval=0.0001)
    profiler.start()
    t0 = time.perf_counter()
    asyncio.run(run())
    seconds = time.perf_counter() - t0
    profiler.stop()
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    return f"{n} gets in {seconds:.2f} s in process ({1e6 * seconds / n:.0f} us each)\n{text}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=4, help="client processes (default 4)")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase (default 5)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of the lean single gets and sets, whose median is given (default 3)")
    parser.add_argument("--content-mb", type=int, default=1000, help="size of the content object (default 1000)")
    parser.add_argument("--records", choices=("auto", "on", "off"), default="auto",
                        help="measure sets with a record too (auto: if the server keeps records)")
    parser.add_argument("--skip", nargs="*", default=(), choices=("pairs", "content", "profile"),
                        help="phases to leave out")
    parser.add_argument("--embedded-only", action="store_true", help="leave out the PostgreSQL set-ups")
    parser.add_argument("--quick", action="store_true",
                        help="a short run: the embedded store only, 1 s phases, one round, no content or profile")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = parser.parse_args(argv)
    if args.quick:
        args.seconds, args.rounds, args.clients = 1.0, 1, min(args.clients, 2)
        args.skip = (*args.skip, "content", "profile")
    args.records_on = args.records == "on"

    root = Path(tempfile.mkdtemp(prefix="pairio-bench-", dir=default_dir()))
    figures: dict[str, object] = {"clients": args.clients, "seconds": args.seconds, "rounds": args.rounds,
                                  "cpus": os.cpu_count()}
    print(f"pairio server on loopback, {args.clients} client processes, {args.seconds:g} s a phase, "
          f"{args.rounds} rounds of single requests, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    try:
        if "pairs" not in args.skip:
            setups = figures["pairs"] = pair_figures(args, root)
            for name, f in setups.items():
                print(f"  {name:<24} single get {f['single_gets_per_s']:>8,.0f} gets/s "
                      f"(p50 {f['single_get_p50_ms']:.2f} ms, p99 {f['single_get_p99_ms']:.2f} ms; "
                      f"server CPU {f['server_cpu_us_per_get']:.0f} us a get)")
                print(f"  {'':<24} by pairio's client {f['remote_store_gets_per_s']:>8,.0f} gets/s "
                      f"(p50 {f['remote_store_get_p50_ms']:.2f} ms; client CPU "
                      f"{f['remote_store_client_cpu_us_per_get']:.0f} us a get; lean clients "
                      f"{f['single_gets_per_s']:,.0f} gets/s)")
                line = (f"  {'':<24} single set {f['single_sets_per_s']:>8,.0f} sets/s "
                        f"(p50 {f['single_set_p50_ms']:.2f} ms, server CPU {f['server_cpu_us_per_set']:.0f} us)")
                if "single_sets_with_record_per_s" in f:
                    ratio = f["single_set_with_record_p50_ms"] / f["single_set_p50_ms"]
                    f["set_with_record_time_ratio"] = ratio
                    line += (f"; with a record {f['single_sets_with_record_per_s']:>8,.0f} sets/s (p50 "
                             f"{f['single_set_with_record_p50_ms']:.2f} ms, server CPU "
                             f"{f['server_cpu_us_per_set_with_record']:.0f} us): {ratio:.2f}x the time "
                             f"(target <= 1.3x: {'met' if ratio <= 1.3 else 'NOT met'})")
                print(line)
                print(f"  {'':<24} get_many of {BATCH} {f['get_many_keys_per_s']:>9,.0f} keys/s "
                      f"(p50 {f['get_many_p50_ms']:.2f} ms; client CPU {f['get_many_client_cpu_ms']:.2f} ms "
                      "a get_many, by pairio's client)")
            embedded = setups["embedded, 1 replica"]
            redis = figures["redis_benchmark_get_per_s"] = redis_get_ceiling(args.clients)
            if redis is None:
                print("  redis-benchmark GET: not available (no redis at 127.0.0.1:6379)")
            else:
                print(f"  redis-benchmark GET, {args.clients} clients: {redis:>9,.0f} requests/s (ceiling); embedded "
                      f"single gets are {embedded['single_gets_per_s'] / redis:.1%} of it "
                      f"(1/{redis / embedded['single_gets_per_s']:.1f})")
            targets = (embedded["single_gets_per_s"] >= 3000, embedded["get_many_keys_per_s"] >= 150_000,
                       embedded["single_get_p99_ms"] < 20)
            print(f"  embedded targets (>=3,000 gets/s, >=150,000 keys/s, p99 < 20 ms): "
                  f"{'met' if all(targets) else 'NOT met'} {targets}")
            if "postgresql, 1 replica" in setups:
                one, two = setups["postgresql, 1 replica"], setups["postgresql, 2 replicas"]
                ratio = embedded["get_many_keys_per_s"] / one["get_many_keys_per_s"]
                print(f"  get_many: embedded / postgresql = {ratio:.2f}x (target <= 2x: "
                      f"{'met' if ratio <= 2 else 'NOT met'})")
                for what in ("single_gets_per_s", "get_many_keys_per_s"):
                    r = two[what] / one[what]
                    print(f"  {what}: 2 replicas / 1 replica = {r:.2f}x (target >= 1: {'met' if r >= 1 else 'NOT met'})")
        if "content" not in args.skip:
            content = figures["content"] = content_figures(args, root)
            for name, f in content.items():
                print(f"  {args.content_mb} MB object via {name:<10} upload {f['upload_MB_per_s']:>6.0f} MB/s "
                      f"({f['upload_s']:.1f} s), download {f['download_MB_per_s']:>6.0f} MB/s "
                      f"({f['download_s']:.1f} s); client peak RSS {f['client_peak_rss_mb']:.0f} MB "
                      f"({f['client_base_rss_mb']:.0f} MB before the transfers)")
            d, s3 = content["directory"], content["s3 (moto)"]
            print(f"  s3 double / directory time: upload {s3['upload_s'] / d['upload_s']:.2f}x, "
                  f"download {s3['download_s'] / d['download_s']:.2f}x")
        if "profile" not in args.skip:
            try:
                text = profile_single_get(root)
            except ImportError:
                print("  profile skipped: pip install pyinstrument")
            else:
                figures["profile"] = text
                print("  profile of single gets on the server (in process, pyinstrument):")
                print("\n".join("    " + line for line in text.splitlines()[:60]))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
