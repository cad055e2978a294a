"""Period search speed: ms per refreshed source of today's features against the features before
version 5 and against light-curve's periodogram, interleaved in one process, one core.

    python benchmarks/bench_periods.py                 # 200 CRTS curves, 5 rounds
    python benchmarks/bench_periods.py --sources 60 --rounds 3

Two workloads, both on the repository's real CRTS curves (cleaned):

- ``stream``: the refreshes the broker's default policy (a source's features recomputed when it
  has grown 10 % since they were computed, from its 20th point) makes while ``--sources`` curves
  are replayed round robin, one alert per source per batch; each batch's due refreshes are one
  call of the batched features (as broker/features.py makes it), and one call per source for
  version 4 (as the broker called it before);
- ``whole``: every curve whole (the longest baselines, ~3,000 days), in one call.

Rows, each timed once per round, rounds interleaved (best of the rounds): version 4's features
(``dmdt/periodic.py`` of the commit before version 5, read from git: today's implementation when
this benchmark was written) one source per call, and all in one call; version 5's features
(``HybridClassifier.features_many``' path: clean, then ``periodic.features`` of the batch); and the
grid stage alone against light-curve's ``Periodogram`` (FFT, 16 peaks, one source per call) on a
grid of the same highest frequency and at least as fine a step. The machine is shared: only the
ratios, measured seconds apart, mean anything.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import light_curve as lcf
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dmdt import periodic, periodogram  # noqa: E402
from dmdt.lightcurves import LightCurve, clean  # noqa: E402
from trainer import data  # noqa: E402

BEFORE_COMMIT = "e4e97bd"  # the last commit with features version 4 (dmdt/periodic.py)
MIN_POINTS = 20
REFRESH_FRACTION = 0.1


def load_version_4() -> object | None:
    """Version 4's dmdt/periodic.py as a module, from git (None when git cannot give it)."""
    try:
        text = subprocess.run(
            ["git", "show", f"{BEFORE_COMMIT}:dmdt/periodic.py"],
            cwd=ROOT, capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "periodic_v4.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("periodic_v4", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def refresh_batches(lcs: list[LightCurve]) -> list[list[tuple[LightCurve, int]]]:
    """Per batch of a round-robin replay (one alert per source per batch): the (curve, points)
    the 10 % policy refreshes."""
    have = [0] * len(lcs)
    batches = []
    for k in range(1, max(len(lc) for lc in lcs) + 1):
        due = []
        for i, lc in enumerate(lcs):
            if k > len(lc) or k < MIN_POINTS:
                continue
            if have[i] == 0 or k - have[i] >= max(1, math.ceil(REFRESH_FRACTION * have[i])):
                due.append((lc, k))
                have[i] = k
        if due:
            batches.append(due)
    return batches


def cleaned(lc: LightCurve, k: int) -> LightCurve:
    out, _ = clean(LightCurve("s", lc.t[:k], lc.m[:k], lc.err[:k]), MIN_POINTS, min_time=None)
    assert out is not None
    return out


def lc_periodogram(n_freq: int) -> lcf.Periodogram:
    """light-curve's FFT periodogram up to MAX_FREQ with 2^k + 1 >= n_freq + 1 frequencies."""
    size = 2 ** math.ceil(math.log2(max(n_freq, 2)))
    freqs = np.linspace(0.0, 2.0 * np.pi * periodogram.MAX_FREQ, size + 1)
    return lcf.Periodogram(peaks=16, freqs=freqs, fast=True, normalization="standard")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=200, help="CRTS curves")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (best of)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    lcs = data.load("crts")
    lcs = lcs[:: max(1, len(lcs) // args.sources)][: args.sources]
    stream = refresh_batches(lcs[: max(10, args.sources // 10)])
    v4 = load_version_4()
    grids: dict[int, lcf.Periodogram] = {}
    packed_whole = periodogram.pack([(lc.t, lc.m, lc.err) for lc in lcs])
    _, lengths = periodogram.grid_steps(packed_whole)
    for n in {int(x) for x in periodogram.n_freqs(lengths)}:
        grids[n] = lc_periodogram(n)
    lc_grid = [grids[int(n)] for n in periodogram.n_freqs(lengths)]

    def v5_stream() -> None:
        for batch in stream:
            periodic.features([cleaned(lc, k) for lc, k in batch])

    def v4_stream() -> None:
        for batch in stream:
            for lc, k in batch:
                v4.features([cleaned(lc, k)])  # type: ignore[attr-defined]

    rows: dict[str, Callable[[], object]] = {
        "stream: features v5, one call per batch": v5_stream,
        "whole: features v5, one call": lambda: periodic.features(lcs),
        "whole: grid stage v5 (ours), one call": lambda: periodogram.grid_peaks(
            packed_whole, 16, n_sum_peaks=3
        ),
        "whole: light-curve Periodogram, same grid, one per source": lambda: [
            g(lc.t, lc.m, lc.err, sorted=True) for g, lc in zip(lc_grid, lcs, strict=True)
        ],
    }
    if v4 is not None:
        rows["stream: features v4, one call per source"] = v4_stream
        rows["whole: features v4, one call per source"] = lambda: [
            v4.features([lc])  # type: ignore[attr-defined]
            for lc in lcs
        ]
        rows["whole: features v4, one call"] = lambda: v4.features(lcs)  # type: ignore[attr-defined]
    n_stream = sum(len(b) for b in stream)
    counts = {name: n_stream if name.startswith("stream") else len(lcs) for name in rows}
    for fn in rows.values():  # warm-up: numba compilation, caches
        fn()
    best = dict.fromkeys(rows, math.inf)
    for r in range(args.rounds):
        for name, fn in rows.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
    ms = {name: 1e3 * best[name] / counts[name] for name in rows}
    setting = (
        f"{len(lcs)} CRTS curves (median {np.median([len(lc) for lc in lcs]):.0f} points); stream:"
        f" {n_stream} refreshes of {len(stream[0]) if stream else 0}+ sources in {len(stream)}"
        f" batches; best of {args.rounds} interleaved rounds, one thread"
    )
    print(setting)
    print("| row | ms per refreshed source |")
    print("|---|---:|")
    for name in rows:
        print(f"| {name} | {ms[name]:.2f} |")
    ratios = {}
    pairs = [
        ("stream: features v4, one call per source", "stream: features v5, one call per batch"),
        ("whole: features v4, one call per source", "whole: features v5, one call"),
        ("whole: features v4, one call", "whole: features v5, one call"),
        ("whole: light-curve Periodogram, same grid, one per source",
         "whole: grid stage v5 (ours), one call"),
    ]  # fmt: skip
    print()
    for ref, ours in pairs:
        if ref in ms:
            ratios[f"{ref} / {ours}"] = ms[ref] / ms[ours]
            print(f"{ref} / {ours}: {ms[ref] / ms[ours]:.2f}x")
    if args.json:
        doc = {"setting": setting, "ms": ms, "ratios": ratios}
        args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
