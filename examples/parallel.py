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


def _positive(kind: type) -> object:
    def parse(text: str) -> int | float:
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
        return value
    return parse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", type=_positive(int), default=8, help="number of recordings (default 8)")
    parser.add_argument("--workers", type=_positive(int), default=2, help="worker processes (default 2)")
    parser.add_argument("--channels", type=_positive(int), default=8, help="channels per recording (default 8)")
    parser.add_argument("--seconds", type=_positive(float), default=20.0,
                        help="seconds per recording (default 20)")
    args = parser.parse_args()
    print(f"pairio store: {pairio.get_config().database_dir}\n")

    # With two workers or more, recording 0 is queued twice: two workers meet on it and compute
    # it only once (the other waits and counts hits).
    seeds = list(range(args.recordings))
    if args.workers > 1:
        seeds.insert(0, 0)
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
    twice = " (recording 0 twice)" if len(seeds) > args.recordings else ""
    print(f"\n{args.recordings} recording{'s' * (args.recordings != 1)} as {len(seeds)} pipeline run{'s' * (len(seeds) != 1)}{twice} "
          f"on {args.workers} worker{'s' * (args.workers != 1)} in {wall:.2f} s; "
          f"{sum(r[1] for r in results)} hits, {sum(r[2] for r in results)} misses")


if __name__ == "__main__":
    main()
