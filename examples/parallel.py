"""The pipeline of pipeline.py over many recordings, in a process pool that shares one cache.

Every worker process reads and writes the same pairio store: a step computed by
one worker is a hit for the others, and two workers that reach the same step at
once compute it once (the other waits for the result). Run it twice: the second
run is all hits.

    python examples/parallel.py [--recordings 8] [--workers 2] [--channels 8] [--seconds 20]
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import pipeline  # examples/pipeline.py: the cached steps

import pairio


def process_recording(seed: int, num_channels: int, seconds: float) -> tuple[int, int, int, float, dict]:
    """Run every step for one recording; returns (seed, hits, misses, seconds, summary)."""
    pairio.reset_stats()
    started = time.perf_counter()
    recording = pipeline.synthesize_recording(num_channels, seconds, seed)
    filtered = pipeline.bandpass(recording)
    spikes = pipeline.detect_spikes(filtered)
    features = pipeline.waveform_features(filtered, spikes)
    summary = pipeline.cluster_summary(features, spikes, seed=seed)
    elapsed = time.perf_counter() - started
    counts = pairio.stats().values()
    return (seed, sum(c["hits"] for c in counts), sum(c["misses"] for c in counts), elapsed, summary)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=int, default=8, help="number of recordings (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--channels", type=int, default=8, help="channels per recording (default 8)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per recording (default 20)")
    args = parser.parse_args()
    print(f"pairio store: {pairio.get_config().database_dir}\n")

    # Recording 0 is listed twice: the two workers meet on it and compute it only once.
    seeds = [0, *range(args.recordings)]
    started = time.perf_counter()
    context = multiprocessing.get_context("spawn")  # the same on every OS
    with ProcessPoolExecutor(args.workers, mp_context=context) as pool:
        results = list(pool.map(process_recording, seeds, [args.channels] * len(seeds),
                                [args.seconds] * len(seeds)))
    wall = time.perf_counter() - started

    print(f"{'recording':>9} {'hits':>5} {'misses':>6} {'seconds':>8}  clusters (spikes)")
    for seed, hits, misses, elapsed, summary in results:
        sizes = ", ".join(str(row["spikes"]) for row in summary.values())
        print(f"{seed:>9} {hits:>5} {misses:>6} {elapsed:>8.3f}  {sizes}")
    print(f"\n{len(seeds)} pipelines on {args.workers} workers in {wall:.2f} s; "
          f"{sum(r[1] for r in results)} hits, {sum(r[2] for r in results)} misses")


if __name__ == "__main__":
    main()
