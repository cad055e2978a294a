"""Refreshed sources per second with the period search's grid stage on a GPU, and the CPU beside
it: the one script to run where a GPU is lent (none was, when it was written).

    python benchmarks/bench_periods_gpu.py                       # cuda, 20,000 sources
    python benchmarks/bench_periods_gpu.py --device torch-cpu --sources 200 --rounds 1   # smoke

Sources: the repository's CRTS curves, whole and as the stream refreshes them (their first 20,
22, 25, ... points: the broker's 10 % policy), repeated to ``--sources``. Rows, interleaved
round by round (best of ``--rounds``):

- grid stage: :func:`dmdt.periodogram_torch.grid_peaks_torch` on the device, against
  :func:`dmdt.periodogram.grid_peaks` (numba and scipy) on one CPU core;
- refreshed sources: the whole feature vector (:func:`dmdt.periodic.features`), its grid stage on
  the device and the rest (peak refinement, candidates, fits: numba) on ``--threads`` CPU threads,
  against the CPU path on the same threads and on one.

Then the agreement of the device's results with the CPU's on every source: the share of
identical grid peaks and periods, the largest relative difference of the powers, and (with a
hybrid model, ``--model``) the share of identical classes. The issue's target on a GPU:
>= 50,000 refreshed sources per second.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dmdt import periodic, periodogram, periods  # noqa: E402
from dmdt.lightcurves import LightCurve  # noqa: E402
from dmdt.periodogram_torch import grid_peaks_torch  # noqa: E402
from trainer import data  # noqa: E402


def sources(n: int) -> list[LightCurve]:
    """``n`` curves: CRTS curves whole and cut where the 10 % refresh policy cuts them."""
    pool: list[LightCurve] = []
    for lc in data.load("crts")[::7]:
        k = 20
        while k < len(lc):
            pool.append(lc.head(k))
            k += max(1, math.ceil(0.1 * k))
        pool.append(lc)
    rng = np.random.default_rng(0)
    return [pool[i] for i in rng.choice(len(pool), n, replace=n > len(pool))]


def features_threads(lcs: list[LightCurve], device: str, threads: int) -> np.ndarray:
    """:func:`dmdt.periodic.features` of ``lcs`` with the grid stage on ``device``: split over
    ``threads`` threads (numba releases the GIL)."""
    os.environ[periods.DEVICE_ENV] = device
    if threads <= 1:
        return periodic.features(lcs)[0]
    parts = [lcs[k::threads] for k in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        done = list(pool.map(lambda p: periodic.features(p)[0], parts))
    out = np.empty((len(lcs), done[0].shape[1]))
    for k, rows in enumerate(done):
        out[k::threads] = rows
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="torch device of the grid stage")
    parser.add_argument("--sources", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--model", default="models/hybrid-7-stream", help="'' for none")
    args = parser.parse_args()
    import torch

    lcs = sources(args.sources)
    packed = periodogram.pack([(lc.t, lc.m, lc.err) for lc in lcs])
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    dev = "cuda" if args.device.startswith("cuda") else args.device
    rows: dict[str, Callable[[], object]] = {
        "grid stage, device": lambda: (
            grid_peaks_torch(packed, 16, n_sum_peaks=3, device=dev.replace("torch-", "")),
            sync(),
        ),
        "grid stage, 1 CPU core": lambda: periodogram.grid_peaks(packed, 16, n_sum_peaks=3),
        f"refreshed sources, device + {args.threads} CPU threads": lambda: features_threads(
            lcs, args.device, args.threads
        ),
        f"refreshed sources, {args.threads} CPU threads": lambda: features_threads(
            lcs, "cpu", args.threads
        ),
        "refreshed sources, 1 CPU core": lambda: features_threads(lcs[: len(lcs) // 10], "cpu", 1),
    }
    counts = {k: (len(lcs) // 10 if k.endswith("1 CPU core") and "refreshed" in k else len(lcs))
              for k in rows}  # fmt: skip
    for fn in rows.values():
        fn()
    best = dict.fromkeys(rows, math.inf)
    for r in range(args.rounds):
        for name, fn in rows.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
        print(f"round {r + 1}/{args.rounds}", file=sys.stderr, flush=True)
    rate = {k: counts[k] / best[k] for k in rows}
    names = list(rows)
    gpu_name = torch.cuda.get_device_name() if dev == "cuda" else "no GPU"
    median = np.median([len(lc) for lc in lcs])
    print(f"{len(lcs):,} sources (median {median:.0f} points); device {args.device} ({gpu_name})")
    print("| row | sources per second | against 1 CPU core |")
    print("|---|---:|---:|")
    base = {"grid": rate[names[1]], "refreshed": rate[names[4]]}
    for name in names:
        kind = "grid" if name.startswith("grid") else "refreshed"
        print(f"| {name} | {rate[name]:,.0f} | {rate[name] / base[kind]:.1f}x |")
    # agreement of the device path with the CPU path
    a = periodogram.grid_peaks(packed, 16, n_sum_peaks=3)
    b = grid_peaks_torch(packed, 16, n_sum_peaks=3, device=dev.replace("torch-", ""))
    same_peaks = np.all((a.freq == b.freq) | (np.isnan(a.freq) & np.isnan(b.freq)), axis=1)
    rel = np.nanmax(np.abs(np.where(np.isfinite(a.power), b.power - a.power, 0.0))
                    / np.maximum(np.abs(np.nan_to_num(a.power, neginf=1.0)), 1e-12))  # fmt: skip
    cpu = periods.search(packed, device="cpu")
    gpu = periods.search(packed, device=args.device)
    same_period = (cpu.period == gpu.period) | (np.isnan(cpu.period) & np.isnan(gpu.period))
    print(f"\nagreement: identical grid peaks {same_peaks.mean():.4%}, identical periods"
          f" {same_period.mean():.4%}, grid power max relative difference {rel:.1e}")  # fmt: skip
    if args.model:
        from dmdt.hybrid import HybridClassifier
        from dmdt.model import lightcurve_counts

        model = HybridClassifier.load(ROOT / args.model)
        sample = lcs[:2000]
        counts_, n_points = lightcurve_counts(sample, model.grid)
        curves = [(lc.t, lc.m, lc.err) for lc in sample]
        os.environ[periods.DEVICE_ENV] = "cpu"
        x_cpu = model.features_many(curves)
        os.environ[periods.DEVICE_ENV] = args.device
        x_dev = model.features_many(curves)
        same = (model.classify(counts_, n_points, x_cpu).argmax(1)
                == model.classify(counts_, n_points, x_dev).argmax(1))  # fmt: skip
        print(f"{model.name}: identical class on {same.mean():.4%} of {len(sample):,} sources")


if __name__ == "__main__":
    main()
