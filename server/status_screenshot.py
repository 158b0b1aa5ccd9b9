"""Make docs/status-page.png, the README's screenshot of the status page, from a real server.

    .venv/bin/python server/status_screenshot.py [OUT.png]

Starts ``pairio serve`` on a temporary directory, gives it a week of hourly counts (written to its
record store before it starts) and a few records, hits and a lease through the API, signs in with
the system Chromium (Playwright) and saves the overview.
"""

from __future__ import annotations

import math
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pairio.kv import EmbeddedStore
from pairio.server.backends.records import CountRow, EmbeddedRecords
from pairio.server.process import ServerProcess, signed_request

PASSWORD = "screenshot-password-0123456789"
SETTINGS = {"channels": [{"name": "lab", "password": PASSWORD, "readContent": True, "writeContent": True,
                          "collections": [{"name": "spikes", "maxNumGetsPerMinute": 100000,
                                           "maxNumSetsPerMinute": 100000}]}]}
STEPS = [("pipeline.load_recording", 2.1e8, 41.0), ("pipeline.bandpass", 2.0e8, 95.0),
         ("pipeline.detect_spikes", 1.2e7, 310.0), ("pipeline.sort_units", 4.0e6, 1820.0),
         ("pipeline.quality_metrics", 2.0e5, 65.0)]


def week_of_counts(now: float) -> list[CountRow]:
    """Hourly hits and misses of the last 7 days: busy in working hours, quiet at night."""
    rng = random.Random(7)
    rows = []
    start = int(now // 3600) * 3600 - 7 * 24 * 3600
    for hour in range(start, start + 7 * 24 * 3600, 3600):
        day = math.sin(math.pi * ((hour // 3600) % 24 - 6) / 14) if 6 <= (hour // 3600) % 24 <= 20 else 0.0
        for function, _, seconds in STEPS:
            hits = int(rng.uniform(0.5, 1.5) * 12 * day)
            misses = int(rng.uniform(0, 1) * 3 * day)
            rows.append(CountRow(hour, "spikes", function, hits=hits, misses=misses,
                                 seconds_saved=hits * seconds, seconds_computed=misses * seconds))
    return rows


def main(out: str) -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "server", SETTINGS)
        now = time.time()
        store = EmbeddedStore(server.directory / "store", server.directory / "content")
        EmbeddedRecords(store).add_counts(week_of_counts(now))
        store.close()
        with server:
            for i, (function, size, seconds) in enumerate(STEPS):
                for j, argument in enumerate(("'rec_014'", "'rec_015'")):
                    key = f"{i:02d}{j:02d}" + "ab" * 18
                    record = {"function": function, "code": f"{i:040x}", "dependencies": {"numpy": "2.1.3"},
                              "arguments": {"recording": argument, "threshold": str(5 + j)},
                              "size": int(size), "seconds": seconds, "host": "lab-gpu-1",
                              "created": now - 3600 * (10 - 2 * i - j)}
                    signed_request(server.url, "lab", PASSWORD, "/api/v1/set",
                                   {"collection": "spikes", "key": key, "value": f"{i * 2 + j + 1:040x}",
                                    "records": {key: record}}).raise_for_status()
                    for _ in range(3 - j):
                        signed_request(server.url, "lab", PASSWORD, "/api/v1/get",
                                       {"collection": "spikes", "key": key}).raise_for_status()
            signed_request(server.url, "lab", PASSWORD, "/api/v1/lease/acquire", {
                "collection": "spikes", "key": "f" * 40, "owner": "o" * 20, "ttl": 600,
                "info": {"host": "lab-gpu-2", "pid": 4121, "function": "pipeline.sort_units"}}).raise_for_status()
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
                page = browser.new_page(viewport={"width": 1100, "height": 760})
                page.goto(server.url + "/")
                page.fill("#channel", "lab")
                page.fill("#password", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_selector("#chart")
                page.screenshot(path=out, full_page=True)
                browser.close()
    print(f"wrote {out}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).resolve().parent.parent / "docs" / "status-page.png"))
