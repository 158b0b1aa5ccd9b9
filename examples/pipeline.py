"""A spike-sorting style pipeline whose every step is cached with @pairio.cached.

    synthesize recording -> bandpass filter -> detect spikes -> waveform features -> cluster summary

The first run computes every step; a second run (here, or on any machine sharing
the store) is all hits. Edit a step, or a helper it calls, and only that step and
the ones after it are recomputed. Needs numpy (``pip install -e '.[examples]'``).

    python examples/pipeline.py [--channels 16] [--seconds 60] [--seed 0]
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np

import pairio

SAMPLING_HZ = 30_000
SNIPPET = (-30, 45)  # samples around each spike's trough: 1 ms before, 1.5 ms after


@pairio.cached
def synthesize_recording(num_channels: int, seconds: float, seed: int) -> np.ndarray:
    """A float32 (samples, channels) recording: pink-ish noise, a slow drift, and three units firing."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SAMPLING_HZ)
    noise = rng.normal(0.0, 10.0, size=(n, num_channels)).astype(np.float32)
    t = np.arange(n, dtype=np.float32) / SAMPLING_HZ
    noise += (40.0 * np.sin(2 * np.pi * 0.5 * t))[:, None]  # drift the bandpass must remove
    template_t = np.arange(SNIPPET[1] - SNIPPET[0]) - (-SNIPPET[0])
    for unit, (rate_hz, amplitude) in enumerate([(8.0, 120.0), (5.0, 80.0), (12.0, 60.0)]):
        shape = -amplitude * np.exp(-(template_t / 6.0) ** 2) + 0.3 * amplitude * np.exp(-((template_t - 15) / 10.0) ** 2)
        footprint = np.exp(-((np.arange(num_channels) - (unit * num_channels) / 3) ** 2) / 8.0)
        times = np.sort(rng.choice(np.arange(-SNIPPET[0], n - SNIPPET[1]), int(rate_hz * seconds), replace=False))
        for channel in np.flatnonzero(footprint > 0.05):
            for start in times + SNIPPET[0]:
                noise[start:start + len(shape), channel] += (shape * footprint[channel]).astype(np.float32)
    return noise


def _frequency_gain(n: int, low: float, high: float) -> np.ndarray:
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLING_HZ)
    # A smooth (raised-cosine) edge of 50 Hz avoids ringing around each spike.
    rise = np.clip((freqs - (low - 50)) / 100, 0, 1)
    fall = np.clip(((high + 50) - freqs) / 100, 0, 1)
    return (np.sin(np.pi / 2 * rise) * np.sin(np.pi / 2 * fall)) ** 2


@pairio.cached
def bandpass(recording: np.ndarray, low: float = 300.0, high: float = 6000.0) -> np.ndarray:
    """Zero-phase band-pass filter in the frequency domain, channel by channel."""
    gain = _frequency_gain(recording.shape[0], low, high)
    out = np.empty_like(recording)
    for channel in range(recording.shape[1]):
        spectrum = np.fft.rfft(recording[:, channel])
        out[:, channel] = np.fft.irfft(spectrum * gain, n=recording.shape[0])
    return out


def _noise_level(filtered: np.ndarray) -> np.ndarray:
    """Per-channel noise: the median absolute deviation, scaled to a standard deviation."""
    return np.median(np.abs(filtered), axis=0) / 0.6745


@pairio.cached(version="2", ignore=["verbose"])
def detect_spikes(filtered: np.ndarray, threshold: float = 5.0, verbose: bool = False) -> np.ndarray:
    """Spike times and channels: troughs below -threshold x noise, 1 ms refractory per channel."""
    below = filtered < -threshold * _noise_level(filtered)
    found = []
    refractory = SAMPLING_HZ // 1000
    for channel in range(filtered.shape[1]):
        crossings = np.flatnonzero(below[1:, channel] & ~below[:-1, channel]) + 1
        last = -refractory
        for start in crossings:
            if start - last < refractory or start + SNIPPET[1] >= filtered.shape[0] or start + SNIPPET[0] < 0:
                continue
            window = filtered[start:start + refractory, channel]
            trough = start + int(np.argmin(window))
            if trough + SNIPPET[1] < filtered.shape[0]:
                found.append((trough, channel))
                last = start
    spikes = np.array(found, dtype=np.int64).reshape(-1, 2)
    spikes = _strongest_per_event(filtered, spikes[np.argsort(spikes[:, 0], kind="stable")], refractory)
    if verbose:
        print(f"detect_spikes: {len(spikes)} events")
    return spikes


def _strongest_per_event(filtered: np.ndarray, spikes: np.ndarray, window: int) -> np.ndarray:
    """One row per event: of the channels that saw it within ``window`` samples, the deepest trough."""
    depth = filtered[spikes[:, 0], spikes[:, 1]]
    keep = []
    start = 0
    while start < len(spikes):
        end = start + 1
        while end < len(spikes) and spikes[end, 0] - spikes[start, 0] < window:
            end += 1
        keep.append(start + int(np.argmin(depth[start:end])))
        start = end
    return spikes[keep]


@pairio.cached
def waveform_features(filtered: np.ndarray, spikes: np.ndarray, num_components: int = 3) -> np.ndarray:
    """Each spike's snippet on its channel, projected on the snippets' first principal components,
    with its trough depth and its channel (where on the probe it was seen best)."""
    offsets = np.arange(SNIPPET[0], SNIPPET[1])
    snippets = filtered[spikes[:, 0:1] + offsets, spikes[:, 1:2]]
    centred = snippets - snippets.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    features = centred @ vt[:num_components].T
    return np.hstack([features, snippets.min(axis=1, keepdims=True), spikes[:, 1:2].astype(features.dtype)])


def _spread_out_centres(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++: each next centre drawn with probability growing with its distance to the others."""
    centres = [points[rng.integers(len(points))]]
    for _ in range(k - 1):
        nearest = np.min([((points - c) ** 2).sum(axis=1) for c in centres], axis=0)
        centres.append(points[rng.choice(len(points), p=nearest / nearest.sum())])
    return np.array(centres)


def _kmeans(points: np.ndarray, k: int, seed: int, iterations: int = 50, restarts: int = 10) -> np.ndarray:
    """Labels of the best (least within-cluster spread) of ``restarts`` k-means runs."""
    rng = np.random.default_rng(seed)
    best, best_spread = None, np.inf
    for _ in range(restarts):
        centres = _spread_out_centres(points, k, rng)
        for _ in range(iterations):
            distances = ((points[:, None, :] - centres[None]) ** 2).sum(axis=2)
            labels = np.argmin(distances, axis=1)
            centres = np.array([points[labels == j].mean(axis=0) if np.any(labels == j) else centres[j]
                                for j in range(k)])
        spread = distances[np.arange(len(points)), labels].sum()
        if spread < best_spread:
            best, best_spread = labels, spread
    return best


@pairio.cached
def cluster_summary(features: np.ndarray, spikes: np.ndarray, num_clusters: int = 3, seed: int = 0) -> dict:
    """k-means on the features; per cluster: spike count, mean trough amplitude, main channel."""
    # Standardised, with where a spike was seen weighing as much as its shape and depth together:
    # a unit's waveform changes from channel to channel, its place does not.
    weights = np.ones(features.shape[1])
    weights[-1] = features.shape[1] - 1
    labels = _kmeans(features / (features.std(axis=0) + 1e-9) * weights, num_clusters, seed)
    summary = {}
    for j in range(num_clusters):
        members = labels == j
        channels = np.bincount(spikes[members, 1]) if members.any() else np.zeros(1, dtype=int)
        summary[f"cluster {j}"] = {
            "spikes": int(members.sum()),
            "mean trough": float(features[members, -2].mean()) if members.any() else 0.0,
            "main channel": int(np.argmax(channels)),
        }
    return summary


def run(num_channels: int, seconds: float, seed: int) -> dict:
    """Run every step, printing a table of hit/miss and time per step; returns the summary."""
    rows = []

    def step(name: str, func: pairio.CachedFunction, *args: object, **kwargs: object) -> object:
        before = pairio.stats().get(func.name, {}).get("hits", 0)
        started = time.perf_counter()
        result = func(*args, **kwargs)
        elapsed = time.perf_counter() - started
        hit = pairio.stats().get(func.name, {}).get("hits", 0) > before
        rows.append((name, "hit" if hit else "miss", elapsed))
        return result

    recording = step("synthesize_recording", synthesize_recording, num_channels, seconds, seed)
    filtered = step("bandpass", bandpass, recording)
    spikes = step("detect_spikes", detect_spikes, filtered, threshold=5.0)
    features = step("waveform_features", waveform_features, filtered, spikes)
    summary = step("cluster_summary", cluster_summary, features, spikes, seed=seed)

    print(f"{'step':<22} {'cache':<5} {'seconds':>8}")
    for name, outcome, elapsed in rows:
        print(f"{name:<22} {outcome:<5} {elapsed:>8.3f}")
    print(f"{'total':<22} {'':<5} {sum(r[2] for r in rows):>8.3f}")
    print()
    for name, row in summary.items():
        print(f"{name}: {row['spikes']} spikes, mean trough {row['mean trough']:.1f}, main channel {row['main channel']}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", type=int, default=16, help="number of channels (default 16)")
    parser.add_argument("--seconds", type=float, default=60.0, help="recording length in seconds (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the synthetic recording")
    parser.add_argument("--log", action="store_true", help="show pairio's log line for every call")
    args = parser.parse_args()
    if args.log:
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    print(f"pairio store: {pairio.get_config().database_dir}\n")
    run(args.channels, args.seconds, args.seed)


if __name__ == "__main__":
    main()
