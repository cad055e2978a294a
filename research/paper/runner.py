"""Run the paper's experiments in order (cheap first), caching each as JSON, then write the doc."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from research.paper import cnn_runs, forest_runs, image_runs, report, transfer
from research.paper.common import FULL, QUICK, Context, Store
from research.paper.options import ORDER, add_arguments

EXPERIMENTS: dict[str, Callable[[Context, Store], dict[str, Any]]] = {
    "forest": forest_runs.forest,
    "composites": image_runs.composites,
    "transfer": transfer.transfer,
    "bins": cnn_runs.bins,
    "pairwise": cnn_runs.pairwise,
    "rpca": image_runs.rpca_backgrounds,
    "seven_class": cnn_runs.seven_class,
    "deep": cnn_runs.deep,
}
if tuple(EXPERIMENTS) != ORDER:  # the --help text lists ORDER
    raise RuntimeError("research.paper.options.ORDER is out of date")
REPO = Path(__file__).resolve().parents[2]


def run(args: argparse.Namespace) -> int:
    """Run the selected experiments and write the document."""
    budget = QUICK if args.quick else FULL
    default_dir = REPO / ("build/results-quick" if args.quick else "docs/results")
    folder = Path(args.results_dir) if args.results_dir else default_dir
    doc = (
        Path(args.doc)
        if args.doc
        else (folder / "results.md" if args.quick else REPO / "docs/results.md")
    )
    names = (
        list(EXPERIMENTS)
        if not args.only
        else [n.strip() for n in args.only.split(",") if n.strip()]
    )
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        raise ValueError(f"unknown experiment(s) {unknown}; choose from {list(EXPERIMENTS)}")
    store = Store(folder, force=args.force)
    ctx = Context(budget)
    if not args.report_only:
        for name in names:
            t0 = time.perf_counter()
            print(f"{name} ({budget.name} budget)", flush=True)
            EXPERIMENTS[name](ctx, store)
            print(f"{name}: done in {time.perf_counter() - t0:.0f} s", flush=True)
            report.write(store, doc, budget)
    report.write(store, doc, budget)
    print(f"wrote {doc}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m research.paper``."""
    p = argparse.ArgumentParser(prog="python -m research.paper", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))
