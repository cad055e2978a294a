"""Where the accuracy of the best model stops, and why.

    python -m research.ceiling                  # the seven classes, about 4 min on 2 cores
    python -m research.ceiling --report-only    # rewrite the markdown and figure from JSON
    python -m research.ceiling --quick          # 12 curves per class (tests)

The comparison's best row, ``gbm_views_7`` (three LightGBMs, one per view of the curve: the
shipped models/hybrid-views-7), is trained on stratified fractions of each of the five folds'
training parts (docs/beyond/folds_7.json) and scored on the fold: a learning curve, fitted with
an inverse power law to extrapolate to unlimited training data of the same kind. Its
out-of-fold predictions with all the training data are then binned by the curves' number of
points, median magnitude and amplitude signal-to-noise. Writes ``<out>/ceiling.json`` (with the
data hash), then ``<out>/ceiling.png`` and the markdown (docs/ceiling.md for the committed
folder, docs/ceiling) from it (research.ceiling.report).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from research import folds as harness
from research.cache import write_json
from research.ceiling import learning_curve as ceiling
from research.ceiling.report import VIEWS, figure, markdown
from research.pages import markdown_path
from trainer import hybrid_fit
from trainer.split import PARTS

ROOT = Path(__file__).resolve().parents[2]

PLAN = ((0.125, 3), (0.25, 3), (0.5, 2), (0.75, 2), (1.0, 1))  # (fraction, draws)

QUICK_PLAN = ((0.5, 1), (0.7, 1), (0.85, 1), (1.0, 1))


def quality(ds: harness.Dataset) -> dict[str, np.ndarray]:
    """Per curve: number of points, median magnitude and amplitude signal-to-noise."""
    half_range = np.array([np.subtract(*np.percentile(lc.m, [95, 5])) / 2 for lc in ds.lcs])
    return {
        "points": np.array([lc.t.size for lc in ds.lcs], dtype=np.float64),
        "magnitude": np.array([np.median(lc.m) for lc in ds.lcs]),
        "snr": half_range / np.array([np.median(lc.err) for lc in ds.lcs]),
    }


def view_features(
    ds: harness.Dataset, budget: harness.Budget, cache: Path, folds: Path
) -> tuple[np.ndarray, float]:
    """The three views' features of ``ds``'s curves, side by side, and their cost in ms per
    curve: computed, as research.comparison does, on all 16 types (so both share a cache),
    then the rows of ``ds``."""
    full = harness.Dataset("16", budget, folds)
    blocks = [
        harness.cached_features(
            full, hybrid_fit.CACHE_NAMES[v], partial(hybrid_fit.view_features, view=v), cache
        )
        for v in VIEWS
    ]
    row = {(lc.source_id, lc.label): i for i, lc in enumerate(full.lcs)}
    rows = [row[(lc.source_id, lc.label)] for lc in ds.lcs]
    return np.concatenate([x[rows] for x, _ in blocks], axis=1), sum(ms for _, ms in blocks)


def run(
    ds: harness.Dataset, cache: Path, folds: Path, plan: Any, jobs: int, budget: harness.Budget
) -> dict[str, Any]:
    from tqdm import tqdm

    x, ms = view_features(ds, budget, cache, folds)
    parts = [p for p in PARTS if p != "held_out"]
    total = sum(r for _, r in plan) * len(parts)
    bar = tqdm(total=total, desc="learning curve", unit="fit")

    def tick(p: ceiling.Point) -> None:
        bar.set_postfix(fraction=p.fraction, part=p.part, accuracy=f"{p.accuracy:.3f}")
        bar.update()

    t0 = time.perf_counter()
    points = ceiling.learning_curve(
        x, ds.labels, ds.folds, len(ds.classes), len(VIEWS), plan, parts, jobs, tick, budget
    )
    bar.close()
    rows = ceiling.summarise(points)
    n = [r["n_train"] for r in rows]
    rrd = ds.classes.index("RRd")
    fits = {
        "accuracy": ceiling.saturation_fit(n, [r["accuracy"] for r in rows]).as_dict(),
        "macro_f1": ceiling.saturation_fit(n, [r["macro_f1"] for r in rows]).as_dict(),
        "RRd recall": ceiling.saturation_fit(n, [r["recall"][rrd] for r in rows]).as_dict(),
    }
    # out-of-fold predictions of the model trained on all of each fold's training part
    pred = np.full(ds.labels.size, -1)
    for p in points:
        if p.fraction == 1.0 and p.repeat == 0:
            pred[p.test] = p.pred
    scored = pred >= 0
    correct = pred[scored] == ds.labels[scored]
    bins = {
        name: ceiling.binned_accuracy(v[scored], correct, ds.labels[scored], len(ds.classes))
        for name, v in quality(ds).items()
    }
    return {
        "description": "learning curve of gbm_views_7 on the harness's five folds, and its "
        "out-of-fold accuracy by data quality (research.ceiling)",
        "classes": list(ds.classes),
        "data_hash": ds.data_hash,
        "n_curves": int(ds.labels.size),
        "views": list(VIEWS),
        "features_ms_per_curve": ms,
        "plan": [list(p) for p in plan],
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "points": [
            {k: v for k, v in p.__dict__.items() if k not in ("test", "pred")} for p in points
        ],
        "learning_curve": rows,
        "saturation": fits,
        "out_of_fold_accuracy": float(np.mean(correct)),
        "quality_bins": bins,
    }


def main(argv: list[str] | None = None) -> int:
    """Measure (unless --report-only), then write the figure and the page from the JSON."""
    p = argparse.ArgumentParser(
        prog="python -m research.ceiling",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="12 curves per class (tests)")
    p.add_argument("--out", type=Path, help="output folder (docs/ceiling; quick: build/ceiling)")
    p.add_argument("--cache", type=Path, help="feature cache (build/beyond-cache[-quick])")
    p.add_argument(
        "--folds", type=Path, help="folder of folds_7.json (docs/beyond; quick: the output folder)"
    )
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--report-only", action="store_true", help="rewrite markdown and figure")
    args = p.parse_args(argv)
    budget = harness.QUICK if args.quick else harness.FULL
    out = args.out or ROOT / ("build/ceiling" if args.quick else "docs/ceiling")
    cache = args.cache or ROOT / (
        "build/beyond-cache-quick" if args.quick else "build/beyond-cache"
    )
    doc_path = markdown_path(out, ROOT, "ceiling")
    json_path = out / "ceiling.json"
    if args.report_only:
        if not json_path.exists():
            p.error(f"{json_path} does not exist: run without --report-only first")
        doc = json.loads(json_path.read_text())
    else:
        folds = args.folds or (out if args.quick else ROOT / "docs/beyond")
        ds = harness.Dataset("7", budget, folds)
        doc = run(ds, cache, folds, QUICK_PLAN if args.quick else PLAN, args.jobs, budget)
        write_json(json_path, doc)
    figure(doc, out / "ceiling.png")
    fig_ref = os.path.relpath(out / "ceiling.png", doc_path.parent)
    command = "python -m research.ceiling" + (" --quick" if args.quick else "")
    doc_path.write_text(markdown(doc, fig_ref, command))
    print(f"wrote {json_path}, {out / 'ceiling.png'} and {doc_path}")
    return 0
