"""How good is a source's classification while its history is still short? The shipped models on
the first k points of each held-out CRTS curve, as the stream classifies a source after its k-th
alert, and the accuracy cost of the stream's amortised feature refresh.

    python -m research.history_accuracy              # the four shipped models; ~10 min
    python -m research.history_accuracy --report-only
    python -m research.history_accuracy --quick      # 12 curves per class, hybrid-7 only (tests)

The curves are the held-out 20% of the seven classes (docs/beyond/folds_7.json), which none of
the shipped models saw in training. At each k, the curves with at least k points are cut to
their first k (in time) and classified as the stream would classify that source after its k-th
alert with fresh features; the same curves whole give the reference. A hybrid model's features
are refreshed when a source's points grew by ``feature_refresh_fraction`` (10%): the last row
classifies every whole curve with the dmdt counts of all its points and the features of its
first n / 1.1 points, the oldest features that policy serves. Writes ``<out>/history.json``,
``<out>/history.png`` and the markdown (docs/history.md for the committed folder,
docs/history) from it (research.history_accuracy.report).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from research import folds as harness
from research.cache import write_json
from research.history_accuracy.measure import evaluate
from research.history_accuracy.report import figure, markdown
from research.pages import markdown_path
from trainer.split import HELD_OUT

ROOT = Path(__file__).resolve().parents[2]

MODELS = ("models/paper-cnn", "models/hybrid-7", "models/hybrid-views-7", "models/hybrid-7-stream")

LEVELS = (20, 30, 50, 75, 100, 150, 200, 300)

QUICK_LEVELS = (20, 40, 80)


def main(argv: list[str] | None = None) -> int:
    """Measure (unless --report-only), then write the figure and the page from the JSON."""
    p = argparse.ArgumentParser(
        prog="python -m research.history_accuracy",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="12 curves per class, hybrid-7 (tests)")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated model paths")
    p.add_argument("--out", type=Path, help="output folder (docs/history; quick: build/history)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes")
    p.add_argument("--report-only", action="store_true", help="rewrite markdown and figure")
    args = p.parse_args(argv)
    out = args.out or ROOT / ("build/history" if args.quick else "docs/history")
    doc_path = markdown_path(out, ROOT, "history")
    json_path = out / "history.json"
    if args.report_only:
        if not json_path.exists():
            p.error(f"{json_path} does not exist: run without --report-only first")
        doc = json.loads(json_path.read_text())
    else:
        budget = harness.QUICK if args.quick else harness.FULL
        ds = harness.Dataset("7", budget, out if args.quick else ROOT / "docs/beyond")
        curves = [ds.lcs[i] for i in np.flatnonzero(ds.folds == HELD_OUT)]
        levels = QUICK_LEVELS if args.quick else LEVELS
        names = ["models/hybrid-7"] if args.quick else [m for m in args.models.split(",") if m]
        paths = [str(ROOT / m) if (ROOT / m).exists() else m for m in names]
        t0 = time.perf_counter()
        results = [evaluate(path, curves, levels, args.jobs) for path in paths]
        doc = {
            "description": "shipped models on the first k points of held-out curves "
            "(research.history_accuracy)",
            "data_hash": ds.data_hash,
            "n_curves": len(curves),
            "quick": args.quick,
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "models": results,
        }
        write_json(json_path, doc)
    figure(doc, out / "history.png")
    fig_ref = os.path.relpath(out / "history.png", doc_path.parent)
    command = "python -m research.history_accuracy" + (" --quick" if args.quick else "")
    doc_path.write_text(markdown(doc, fig_ref, command))
    print(f"wrote {json_path}, {out / 'history.png'} and {doc_path}")
    return 0
