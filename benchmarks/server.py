"""Benchmark the pairio server on loopback, beside redis-benchmark GET as the ceiling.

    .venv/bin/python benchmarks/server.py [--clients 4] [--seconds 5] [--content-mb 1024]

Starts ``pairio serve`` on free 127.0.0.1 ports with a pairio.json of high limits,
preloads pairs, then runs N client processes (each a RemoteStore: signed requests
over a pooled session) for a fixed time, for three set-ups: one replica on the
embedded store, one on PostgreSQL, two on PostgreSQL (the clients split between them):

1. single gets: gets/s over all clients, and p50/p99 latency of one get;
2. get_many of 1,000 keys: keys/s over all clients;

then ``redis-benchmark -t get -n 100000 -q`` against 127.0.0.1:6379 if it runs; then
one object of ``--content-mb`` MB uploaded and downloaded by a client process through a
replica whose content is a directory, and through one whose content is in moto's S3
server (a protocol double: its speed is not S3's), with the client's peak memory; then
a profile (pyinstrument) of the server answering single gets, in process.

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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import requests
from common import default_dir

from pairio.kv.remote import RemoteStore
from pairio.server.process import ServerProcess, free_port

PASSWORD = "benchmark-password-0123456789"
CHANNEL = "bench"
COLLECTION = "bench"
NUM_KEYS = 10_000
BATCH = 1_000
SETTINGS = {"channels": [{"name": CHANNEL, "password": PASSWORD, "collections": [
    {"name": COLLECTION, "maxNumGetsPerMinute": 1_000_000_000, "maxNumSetsPerMinute": 1_000_000_000}]}]}


def keys() -> list[str]:
    return [hashlib.sha1(str(i).encode()).hexdigest() for i in range(NUM_KEYS)]


def single_gets(url: str, seconds: float, start_at: float, queue) -> None:
    store = RemoteStore(url, CHANNEL, PASSWORD)
    ks = keys()
    store.get(COLLECTION, ks[0])  # open the connection before the clock starts
    latencies = []
    while time.time() < start_at:
        time.sleep(0.001)
    end = time.perf_counter() + seconds
    i = os.getpid()
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        value = store.get(COLLECTION, ks[i % NUM_KEYS])
        latencies.append(time.perf_counter() - t0)
        assert value is not None
        i += 1
    queue.put(latencies)


def batch_gets(url: str, seconds: float, start_at: float, queue) -> None:
    store = RemoteStore(url, CHANNEL, PASSWORD)
    ks = keys()
    batches = [ks[i : i + BATCH] for i in range(0, NUM_KEYS, BATCH)]
    store.get_many(COLLECTION, batches[0])
    while time.time() < start_at:
        time.sleep(0.001)
    end = time.perf_counter() + seconds
    done = 0
    latencies = []
    while True:
        t0 = time.perf_counter()
        if t0 >= end:
            break
        found = store.get_many(COLLECTION, batches[done % len(batches)])
        latencies.append(time.perf_counter() - t0)
        assert len(found) == BATCH
        done += 1
    queue.put(latencies)


def run_clients(target, urls: list[str], clients: int, seconds: float) -> list[list[float]]:
    """Run ``clients`` processes of ``target``, client i on ``urls[i % len(urls)]``."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    start_at = time.time() + 2.0  # time for every client to start and connect
    processes = [ctx.Process(target=target, args=(urls[i % len(urls)], seconds, start_at, queue))
                 for i in range(clients)]
    for p in processes:
        p.start()
    results = [queue.get(timeout=seconds + 60) for _ in processes]
    for p in processes:
        p.join(30)
    return results


def percentile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def redis_get_ceiling() -> float | None:
    """redis-benchmark GET requests/s on 127.0.0.1:6379, or None if redis is not there."""
    if shutil.which("redis-benchmark") is None:
        return None
    try:
        out = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", "6379", "-t", "get",
                              "-n", "100000", "-q"], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return None
    match = re.search(r"GET: ([0-9.]+) requests per second", out.stdout.replace("\r", "\n"))
    return float(match.group(1)) if match else None


POSTGRES = os.environ.get("PAIRIO_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def measure(urls: list[str], clients: int, seconds: float) -> dict[str, float]:
    """Single gets and get_many through ``urls`` (preloaded through the first)."""
    RemoteStore(urls[0], CHANNEL, PASSWORD).set_many(COLLECTION, {k: k[:20] for k in keys()})
    out = {}
    latencies = [x for r in run_clients(single_gets, urls, clients, seconds) for x in r]
    out["single_gets_per_s"] = len(latencies) / seconds
    out["single_get_p50_ms"] = 1000 * statistics.median(latencies)
    out["single_get_p99_ms"] = 1000 * percentile(latencies, 99)
    latencies = [x for r in run_clients(batch_gets, urls, clients, seconds) for x in r]
    out["get_many_keys_per_s"] = len(latencies) * BATCH / seconds
    out["get_many_p50_ms"] = 1000 * statistics.median(latencies)
    out["get_many_p99_ms"] = 1000 * percentile(latencies, 99)
    return out


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
        setups["embedded, 1 replica"] = measure([server.url], args.clients, args.seconds)
    with postgres_database() as database:
        if database is not None:
            settings = {**SETTINGS, "database": database}
            with ServerProcess(root / "pg-a", settings) as a:
                setups["postgresql, 1 replica"] = measure([a.url], args.clients, args.seconds)
                with ServerProcess(root / "pg-b", settings) as b:
                    setups["postgresql, 2 replicas"] = measure([a.url, b.url], args.clients, args.seconds)
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
    parser.add_argument("--content-mb", type=int, default=1000, help="size of the content object (default 1000)")
    parser.add_argument("--skip", nargs="*", default=(), choices=("pairs", "content", "profile"),
                        help="phases to leave out")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    args = parser.parse_args(argv)

    root = Path(tempfile.mkdtemp(prefix="pairio-bench-", dir=default_dir()))
    figures: dict[str, object] = {"clients": args.clients, "seconds": args.seconds, "cpus": os.cpu_count()}
    print(f"pairio server on loopback, {args.clients} client processes, {args.seconds:g} s a phase, "
          f"{os.cpu_count()} CPUs")
    try:
        if "pairs" not in args.skip:
            setups = figures["pairs"] = pair_figures(args, root)
            for name, f in setups.items():
                print(f"  {name:<24} single get {f['single_gets_per_s']:>8,.0f} gets/s "
                      f"(p50 {f['single_get_p50_ms']:.2f} ms, p99 {f['single_get_p99_ms']:.2f} ms)   "
                      f"get_many of {BATCH} {f['get_many_keys_per_s']:>9,.0f} keys/s "
                      f"(p50 {f['get_many_p50_ms']:.2f} ms)")
            embedded = setups["embedded, 1 replica"]
            redis = figures["redis_benchmark_get_per_s"] = redis_get_ceiling()
            if redis is None:
                print("  redis-benchmark GET: not available (no redis at 127.0.0.1:6379)")
            else:
                print(f"  redis-benchmark GET: {redis:>9,.0f} requests/s (ceiling); embedded single gets are "
                      f"{embedded['single_gets_per_s'] / redis:.1%} of it")
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
            text = profile_single_get(root)
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
