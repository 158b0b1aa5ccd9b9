"""Content through a pairio server on loopback: the pairio client beside curl, in one run.

One ``pairio serve`` process; the same 1 GB file goes up and down through the same routes:

- upload: ``RemoteContent.upload`` (streamed from disk, signed with the SHA-1) vs
  ``curl -T FILE`` with the signed headers computed beforehand; the server hashes, writes,
  fsyncs and renames in both cases, and the object is removed from the server between runs;
- download: ``RemoteContent.download`` (into a fresh local content store: hashed while it
  streams, renamed once verified) vs ``curl -o FILE`` of the same GET (no hash);
- the pairio client's peak RSS (each transfer runs in its own child process, which reports
  its ``ru_maxrss``; interpreter and imports included). Target: under 100 MB.

For what bounds them, the same run also times ``sha1sum`` of the file (the hash the
server pays on every upload, and the pairio client on every download, which curl does not)
and ``cp`` of it (the disk), and the client's CPU seconds per transfer. Each measurement is repeated
(--runs, default 3); medians and ratios are printed. Targets: pairio within 1.3x of curl
both ways. The temporary directory (on disk, not tmpfs; --dir to choose) is deleted at the end.
Run: python benchmarks/content_remote.py [--runs N] [--size-mb N] [--dir PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import default_dir, timed

PASSWORD = "bench-password-0123456789"


def make_file(path: Path, size_mb: int) -> None:
    chunk = os.urandom(16 << 20)
    with open(path, "wb") as f:
        for i in range(0, size_mb, 16):
            f.write(i.to_bytes(8, "little") + chunk[8:])


def child(action: str, url: str, sha1: str, path: str) -> None:
    """In a child process: one transfer, then its seconds and peak RSS as JSON on stdout."""
    from pairio.content.remote import RemoteContent
    from pairio.content.store import ContentStore
    from pairio.kv.remote import RemoteStore

    remote = RemoteContent(RemoteStore(url, "bench", PASSWORD, timeout=600), ContentStore(path))
    start = time.perf_counter()
    if action == "upload":
        remote.upload(sha1, remote.store.path(sha1) or path)
    else:
        remote.download(sha1)
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({"seconds": seconds, "rss_mb": usage.ru_maxrss / 1024,
                      "cpu": usage.ru_utime + usage.ru_stime}))


def run_child(action: str, url: str, sha1: str, path: Path) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", action, url, sha1, str(path)],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def curl(args: list[str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(["curl", "-sS", "--fail-with-body", *args], capture_output=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"curl failed: {result.stderr!r} {result.stdout[:300]!r}")
    return seconds


def signed_headers(method: str, path: str, sha1: str | None) -> list[str]:
    from pairio.signing import sign_request

    headers = sign_request("bench", PASSWORD, method, path, body_hash=sha1)
    return [arg for k, v in headers.items() for arg in ("-H", f"{k}: {v}")]


def median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size-mb", type=int, default=1024)
    parser.add_argument("--dir", default=None, help="where to put the temporary files (not tmpfs)")
    parser.add_argument("--child", nargs=4, metavar=("ACTION", "URL", "SHA1", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    from pairio.content.store import ContentStore
    from pairio.hashing import sha1_of_stream
    from pairio.server.process import ServerProcess

    work = Path(tempfile.mkdtemp(prefix="pairio-bench-remote-", dir=args.dir or default_dir()))
    settings = {"channels": [{"name": "bench", "password": PASSWORD, "collections": [],
                              "readContent": True, "writeContent": True,
                              "maxObjectBytes": 1 << 40, "maxUploadBytesPerDay": 1 << 50}]}
    try:
        src = work / "data.bin"
        make_file(src, args.size_mb)
        with open(src, "rb") as f:
            sha1, size = sha1_of_stream(f)
        client_store = ContentStore(work / "client")
        client_store.put_file(src)
        mb = size / 1e6
        print(f"{mb:,.0f} MB file in {work}; {args.runs} runs each, medians; one pairio serve process")
        results: dict[str, list[float]] = {k: [] for k in (
            "pairio upload", "curl upload", "pairio download", "curl download", "sha1sum", "cp")}
        rss: list[float] = []
        cpu: dict[str, list[float]] = {"upload": [], "download": []}
        with ServerProcess(work / "server", settings) as server:
            server_objects = ContentStore(server.directory / "content")
            path = f"/api/v1/content/sha1/{sha1}"
            url = server.url + path
            for i in range(args.runs):
                # Alternate who goes first, and let the disk settle before each measurement, so
                # the write-back of one transfer does not slow the next one down.
                order = ("pairio", "curl") if i % 2 == 0 else ("curl", "pairio")
                for who in order:  # upload: the server lacks the object each time
                    server_objects.remove(sha1)
                    os.sync()
                    if who == "pairio":
                        r = run_child("upload", server.url, sha1, work / "client")
                        results["pairio upload"].append(r["seconds"])
                        rss.append(r["rss_mb"])
                        cpu["upload"].append(r["cpu"])
                    else:
                        headers = signed_headers("PUT", path, sha1)
                        results["curl upload"].append(curl([
                            "-o", "/dev/null", "-X", "PUT", "-T", str(src), "-H", "Expect:",
                            "-H", "Content-Type: application/octet-stream", *headers, url]))
                    assert server_objects.has(sha1)
                for who in order:  # download: into a fresh local store (or a fresh file) each time
                    os.sync()
                    if who == "pairio":
                        fresh = work / f"down{i}"
                        r = run_child("download", server.url, sha1, fresh)
                        results["pairio download"].append(r["seconds"])
                        rss.append(r["rss_mb"])
                        cpu["download"].append(r["cpu"])
                        assert ContentStore(fresh).has(sha1)
                        shutil.rmtree(fresh)
                    else:
                        dest = work / "curl.bin"
                        results["curl download"].append(curl([*signed_headers("GET", path, None),
                                                              "-o", str(dest), url]))
                        assert dest.stat().st_size == size
                        dest.unlink()
                os.sync()
                results["sha1sum"].append(timed(lambda: subprocess.run(["sha1sum", str(src)], check=True,
                                                                       capture_output=True)))
                os.sync()
                results["cp"].append(timed(lambda: subprocess.run(["cp", str(src), str(work / "copy.bin")],
                                                                  check=True)))
                (work / "copy.bin").unlink()

        print(f"{'':16} {'seconds':>8} {'MB/s':>8}")
        for name, times in results.items():
            print(f"{name:16} {median(times):8.2f} {mb / median(times):8,.0f}")
        up = median(results["pairio upload"]) / median(results["curl upload"])
        down = median(results["pairio download"]) / median(results["curl download"])
        print(f"upload   pairio/curl = {up:.2f}x (target <= 1.3x)")
        print(f"download pairio/curl = {down:.2f}x (target <= 1.3x)")
        print(f"client peak RSS: max {max(rss):.0f} MB over {len(rss)} transfers (target < 100 MB)")
        print(f"client CPU seconds (process, imports included): upload {median(cpu['upload']):.2f}, "
              f"download {median(cpu['download']):.2f}")
        print(f"each run's raw seconds: {json.dumps({k: [round(t, 2) for t in v] for k, v in results.items()})}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
