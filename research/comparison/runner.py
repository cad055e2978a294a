"""Every candidate model on the same held-out part and 5 folds of the CRTS data (research.folds):
the table of docs/beyond.md.

    python -m research.comparison                 # every current row: docs/beyond/*.json, the page
    python -m research.comparison --quick         # 12 curves per class, tiny models
    python -m research.comparison --models gbm_v5_7 --parts fold0,held_out
    python -m research.comparison --report-only   # the page from the JSON alone

Each model's parts are saved to ``<out>/<model>.json`` as they finish (its per-curve
probabilities to ``<out>/probs/<model>.npz``), so an interrupted run resumes where it stopped;
feature matrices are cached under ``--cache`` by the features' version and the data hash. The
page is written from whatever JSON is there (research.comparison.report), with the number of
folds each row rests on. Rows measured on feature versions whose code is gone (2, 3 and 4) are
archived: their JSON stays in the table, they are not run again.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dmdt import periodic
from dmdt.lightcurves import LightCurve
from research import candidates, folds
from research.cache import write_json
from research.comparison import report
from research.pages import markdown_path
from research.paper import features as paper_features
from trainer import hybrid_fit
from trainer.split import PARTS

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Spec:
    """One row of the table: a model on a class set with a feature matrix."""

    name: str
    class_set: str
    features: str  # feature sets joined by "+": "periodic", "paper18", "dmdt", ...
    kind: str  # "gbm_small", "views", "gbm_history", "rf", "rf_weighted", "cnn"; archived: others
    label: str


N = len(periodic.FEATURE_NAMES)  # the current version's
N2, N3 = 76, 112  # features of versions 2 and 3 (and 4), the archived rows'
N_SEASON, N_DOUBLE_MODE = 7, 6  # the archived season and double-mode candidates' features
SMALL = "400 rounds of 7-leaf trees, balanced"
SPECS = (
    Spec("gbm_v5_7", "7", "periodic", "gbm_small",
         f"LightGBM, {N} periodic features (v5: alias-proof periods, second mode), {SMALL}"
         " (models/hybrid-7)"),
    Spec("gbm_v5_views_7", "7", "periodic+periodic_iv+periodic_vm", "views",
         "mean of three LightGBMs, one per view, on v5 features of the curve, of the clipped"
         " curve, of the visit medians (models/hybrid-views-7)"),
    Spec("gbm_v5_history_7", "7", "periodic+periodic_cuts", "gbm_history",
         f"LightGBM, {N} periodic features (v5), trained also on each training curve's first"
         " 20-300 points (weight 0.3; models/hybrid-7-stream), " + SMALL),
    Spec("gbm_v5_16", "16", "periodic", "gbm_small",
         f"LightGBM, {N} periodic features (v5), {SMALL}"),
    Spec("gbm_periodic_balanced_7", "7", "periodic76", "gbm_balanced",
         f"LightGBM, {N2} periodic features (v2), balanced"),
    Spec("gbm_periodic_7", "7", "periodic76", "gbm", f"LightGBM, {N2} periodic features (v2)"),
    Spec("gbm_v4_7", "7", "periodic", "gbm_small",
         f"LightGBM, {N3} periodic features (v4: cheaper period search), {SMALL}"
         " (models/hybrid-7 until v5)"),
    Spec("gbm_v3_7", "7", "periodic_v3", "gbm_small",
         f"LightGBM, {N3} periodic features (v3), {SMALL}"),
    Spec("gbm_v3_dmdt_7", "7", "periodic_v3+dmdt", "gbm_small",
         f"LightGBM, {N3} periodic features + 528 dmdt pixels, {SMALL}"),
    Spec("cnn_shallow_7", "7", "dmdt", "cnn", "shallow dmdt CNN (models/paper-cnn setup)"),
    Spec("stack_v3_dmdt_cnn_7", "7", "periodic_v3+dmdt+cnn", "gbm_small",
         f"LightGBM, {N3} periodic features + dmdt pixels + dmdt CNN probabilities (stacked)"),
    Spec("mlp_v3_7", "7", "periodic_v3", "mlp", f"MLP (torch), {N3} periodic features, 3 seeds"),
    Spec("twobranch_v4_7", "7", "periodic+dmdt", "twobranch",
         f"two-branch torch net: shallow dmdt CNN + MLP on {N3} periodic features (v4), trained"
         " jointly, balanced, 3 seeds"),
    Spec("threebranch_v4_7", "7", "periodic+dmdt", "threebranch",
         "three-branch torch net: the two-branch net + a 1-D CNN on the folded curve's 20 bins,"
         " 3 seeds"),
    Spec("featbranch_v4_7", "7", "periodic+dmdt", "featbranch",
         "control: the two-branch net without its dmdt CNN branch (features only), 3 seeds"),
    Spec("blend_gbm_mlp_7", "7", "periodic_v3+dmdt", "blend",
         "0.7 x LightGBM (features + dmdt pixels) + 0.3 x MLP (features)"),
    Spec("gbm_v4_intravisit_7", "7", "periodic_iv", "gbm_small",
         f"LightGBM, {N3} periodic features (v4) of the curve without points that stray from their"
         f" visit, {SMALL}"),
    Spec("gbm_v4_visitmed_7", "7", "periodic_vm", "gbm_small",
         f"LightGBM, {N3} periodic features (v4) of the visit medians, {SMALL}"),
    Spec("gbm_views_7", "7", "periodic+periodic_iv+periodic_vm", "views",
         "mean of three LightGBMs, one per view: v4 features of the curve, of the clipped curve,"
         " of the visit medians (models/hybrid-views-7)"),
    Spec("gbm_views_clean_7", "7", "periodic+periodic_iv+periodic_vm", "views_clean",
         "the three views' LightGBMs trained without the training labels that confident learning"
         " flags (4 inner folds of the training part; dmdt-train audit-labels)"),
    Spec("gbm_v4_aug_7", "7", "periodic+periodic_aug2", "gbm_aug",
         f"LightGBM, {N3} periodic features (v4), trained with 2 thinned, re-noised copies of each"
         f" training curve, {SMALL}"),
    Spec("gbm_v4_history_7", "7", "periodic+periodic_cuts", "gbm_history",
         f"LightGBM, {N3} periodic features (v4), trained also on each training curve's first"
         " 20, 30, 50, 75, 100, 150, 200 and 300 points (weight 0.3; models/hybrid-7-stream),"
         f" {SMALL}"),
    Spec("gbm_views_history_7", "7",
         "periodic+periodic_cuts+periodic_iv+periodic_iv_cuts+periodic_vm+periodic_vm_cuts",
         "views_history",
         "mean of three LightGBMs, one per view (as `gbm_views_7`), each trained also on the"
         " view of each training curve's first 20-300 points (weight 0.3)"),
    Spec("gbm_v4_season_7", "7", "periodic+season", "gbm_small",
         f"LightGBM, {N3} periodic features (v4) + {N_SEASON} season-to-season"
         f" shape changes, {SMALL}"),
    Spec("gbm_v4_double_mode_7", "7", "periodic+double_mode", "gbm_small",
         f"LightGBM, {N3} periodic features (v4) + {N_DOUBLE_MODE} double-mode"
         f" features (alias windows, joint fit), {SMALL}"),
    Spec("rf_paper18_7", "7", "paper18", "rf", "random forest, paper's 18 features"),
    Spec("rf_paper18_weighted_7", "7", "paper18", "rf_weighted",
         "random forest, paper's 18 features, balanced"),
    Spec("gbm_periodic_balanced_16", "16", "periodic76", "gbm_balanced",
         f"LightGBM, {N2} periodic features (v2), balanced"),
    Spec("gbm_v3_16", "16", "periodic_v3", "gbm_small",
         f"LightGBM, {N3} periodic features (v3), {SMALL}"),
    Spec("gbm_v4_16", "16", "periodic", "gbm_small",
         f"LightGBM, {N3} periodic features (v4), {SMALL}"),
    Spec("gbm_views_16", "16", "periodic+periodic_iv+periodic_vm", "views",
         "mean of three LightGBMs (v4 of the curve, of the clipped curve, of the visit medians)"),
    Spec("gbm_v3_unbalanced_16", "16", "periodic_v3", "gbm_small_unbalanced",
         f"LightGBM, {N3} periodic features (v3), 400 rounds of 7-leaf trees, unweighted"),
    Spec("gbm_v3_dmdt_16", "16", "periodic_v3+dmdt", "gbm_small",
         f"LightGBM, {N3} periodic features + 528 dmdt pixels, {SMALL}"),
    Spec("rf_paper18_16", "16", "paper18", "rf", "random forest, paper's 18 features"),
)  # fmt: skip


FEATURES: dict[str, Callable[[Sequence[LightCurve]], np.ndarray]] = {
    "periodic": lambda lcs: periodic.features(lcs)[0],
    "periodic_iv": lambda lcs: hybrid_fit.view_features(lcs, "intravisit"),
    "periodic_vm": lambda lcs: hybrid_fit.view_features(lcs, "visit_medians"),
    "periodic_cuts": lambda lcs: cut_features(lcs, hybrid_fit.STREAM_CUTS),
    "paper18": lambda lcs: paper_features.features(lcs),
    "dmdt": candidates.cnn_images,
}

# cache file names: a change in the periodic features' definitions invalidates cache and results
FEATURE_IDS = {
    "periodic": f"periodic_v{periodic.FEATURES_VERSION}",
    "paper18": "paper18",
    "dmdt": "dmdt_mahabal2017",
    "periodic_iv": hybrid_fit.CACHE_NAMES["intravisit"],  # shared with fit-hybrid --views
    "periodic_vm": hybrid_fit.CACHE_NAMES["visit_medians"],
    "periodic_cuts": f"periodic_v{periodic.FEATURES_VERSION}_cuts_"
    + "-".join(map(str, hybrid_fit.STREAM_CUTS)),
}
TRAINING_ONLY = {"periodic_cuts"}  # features of training copies: no cost when serving


def cut_features(lcs: Sequence[LightCurve], cuts: Sequence[int], view: str = "curve") -> np.ndarray:
    """Current features of ``view`` (dmdt.views) of each curve's first k points for each k of
    ``cuts``, side by side: ``(len(lcs), len(cuts) * n_features)``; NaN where the curve has no
    more than k points, or the view of its first k fewer than dmdt.hybrid.MIN_VIEW_POINTS (as
    HybridClassifier.features leaves them)."""
    from tqdm import tqdm

    from dmdt.hybrid import MIN_VIEW_POINTS
    from dmdt.views import VIEWS

    out = np.full((len(lcs), len(cuts), len(periodic.FEATURE_NAMES)), np.nan)
    for i, lc in enumerate(tqdm(lcs, desc=f"history cuts ({view})", unit="curve", leave=False)):
        heads = [VIEWS[view](lc.head(k)) for k in cuts if len(lc) > k]
        ok = [j for j, h in enumerate(heads) if view == "curve" or len(h) >= MIN_VIEW_POINTS]
        if ok:
            out[i, ok] = periodic.features([heads[j] for j in ok])[0]
    return out.reshape(len(lcs), -1)


# the rows a run measures; the others were measured on feature versions whose code is gone (2 and
# 3, removed; 4, replaced by version 5): their JSON stays in the table, they are not run again
CURRENT = (
    "gbm_v5_7", "gbm_v5_views_7", "gbm_v5_history_7", "gbm_v5_16", "cnn_shallow_7",
    "rf_paper18_7", "rf_paper18_weighted_7", "rf_paper18_16",
)  # fmt: skip
ARCHIVED = frozenset(s.name for s in SPECS) - set(CURRENT)


class Runner:
    """Datasets and feature matrices, built once; the 7-class rows reuse the 16-type features."""

    def __init__(self, budget: folds.Budget, out: Path, cache: Path) -> None:
        self.budget, self.out, self.cache = budget, out, cache
        self._ds: dict[str, folds.Dataset] = {}
        self.cost_ms: dict[str, float] = {}

    def dataset(self, class_set: str) -> folds.Dataset:
        if class_set not in self._ds:
            self._ds[class_set] = folds.Dataset(class_set, self.budget, self.out)
        return self._ds[class_set]

    def features(self, ds: folds.Dataset, name: str) -> np.ndarray:
        """The matrix of feature set ``name`` (``a+b`` joins sets; ``dmdt`` pixels scaled to
        [0, 1] beside others)."""
        if "+" in name:
            names = name.split("+")
            parts = [self.features(ds, n) / (255.0 if n == "dmdt" else 1.0) for n in names]
            self.cost_ms[name] = sum(self.cost_ms[n] for n in names)
            return np.concatenate(parts, axis=1)
        full = self.dataset("16")
        x, ms = folds.cached_features(full, FEATURE_IDS[name], FEATURES[name], self.cache)
        self.cost_ms[name] = 0.0 if name in TRAINING_ONLY else ms
        if ds is full:
            return x
        row = {(lc.source_id, lc.label): i for i, lc in enumerate(full.lcs)}
        return x[[row[(lc.source_id, lc.label)] for lc in ds.lcs]]

    def run(self, spec: Spec, parts: Sequence[str]) -> dict[str, Any]:
        ds = self.dataset(spec.class_set)
        x = self.features(ds, spec.features)
        n_classes = len(ds.classes)
        b = self.budget
        settings: dict[str, Any]
        if spec.kind == "gbm_small":
            fp = candidates.gbm_small(x, n_classes, b)
            settings = candidates.small_settings(b)
        elif spec.kind == "views":  # a boosting per block of N columns, averaged
            blocks = x.shape[1] // N
            fp = candidates.gbm_views(x, n_classes, blocks, b)
            settings = {"models": blocks, "weights": "equal", **candidates.small_settings(b)}
        elif spec.kind == "gbm_history":
            weight = hybrid_fit.HybridOptions.history_weight
            fp = candidates.gbm_history(x, N, n_classes, b, weight=weight)
            settings = {
                "history_cuts": list(hybrid_fit.STREAM_CUTS),
                "history_weight": weight,
                **candidates.small_settings(b),
            }
        elif spec.kind in ("rf", "rf_weighted"):
            weighted = spec.kind == "rf_weighted"
            fp = candidates.forest(x, n_classes, b, weighted)
            settings = {"trees": b.rf_trees, "weighted": weighted}
        elif spec.kind == "cnn":
            fp = candidates.shallow_cnn(x, n_classes, b)
            settings = {"epochs": b.cnn_epochs, "patience": b.cnn_patience, "val_frac": 0.1}
        else:
            raise ValueError(f"{spec.name}: no runner for kind {spec.kind!r}")
        meta = {
            "label": spec.label,
            "features": spec.features,
            "features_id": "+".join(FEATURE_IDS[n] for n in spec.features.split("+")),
            "feature_ms_per_curve": round(self.cost_ms[spec.features], 3),
            "n_features": int(x.shape[1]),
            "settings": settings,
            "budget": folds.budget_dict(b),
            "outputs": "probs",
        }
        return folds.run_model(spec.name, ds, fp, self.out, meta, parts)


def feature_cost(runner: Runner, out: Path, every: int = 10) -> dict[str, Any]:
    """Per-part wall ms per light curve of the periodic features on every ``every``-th curve
    (saved to ``<out>/feature_cost.json`` once per features version)."""
    path = out / "feature_cost.json"
    if path.exists():
        doc = dict(json.loads(path.read_text()))
        if doc.get("version", 4) == periodic.FEATURES_VERSION:
            return doc
    lcs = runner.dataset("16").lcs[::every]
    periodic.features(lcs[:2])  # warm-up (numba compilation) outside the timing
    _, timing = periodic.features(lcs)
    doc = {
        "version": periodic.FEATURES_VERSION,
        "n_curves": len(lcs),
        "median_points": float(np.median([lc.t.size for lc in lcs])),
        "ms_per_curve": {k: round(v * 1e3 / len(lcs), 2) for k, v in timing.items()},
        "note": "one thread, wall clock, on a 2-core machine shared with other jobs",
    }
    write_json(path, doc)
    return doc


def main(argv: Sequence[str] | None = None) -> int:
    """Run the models named (every current one by default) on the parts named, then the page."""
    p = argparse.ArgumentParser(
        prog="python -m research.comparison",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="12 curves per class, tiny models")
    p.add_argument("--out", type=Path, help="JSON folder (docs/beyond; quick: build/beyond-quick)")
    p.add_argument("--cache", type=Path, help="feature cache (build/beyond-cache[-quick])")
    p.add_argument(
        "--doc",
        type=Path,
        help="markdown (docs/beyond.md; with --quick or another --out: <out>/beyond.md)",
    )
    p.add_argument("--models", default="", help="comma-separated names (default: all)")
    p.add_argument("--parts", default="", help="comma-separated parts (default: all 6)")
    p.add_argument("--report-only", action="store_true", help="only rewrite the page")
    args = p.parse_args(argv)
    budget = folds.QUICK if args.quick else folds.FULL
    out = args.out or (ROOT / ("build/beyond-quick" if args.quick else "docs/beyond"))
    cache = args.cache or (
        ROOT / ("build/beyond-cache-quick" if args.quick else "build/beyond-cache")
    )
    doc = args.doc or markdown_path(out, ROOT, "beyond")
    command = "python -m research.comparison" + (" --quick" if args.quick else "")
    names = [n for n in args.models.split(",") if n] or [
        s.name for s in SPECS if s.name not in ARCHIVED
    ]
    unknown = set(names) - {s.name for s in SPECS}
    if unknown:
        p.error(f"unknown model(s) {sorted(unknown)}; known: {[s.name for s in SPECS]}")
    if set(names) & ARCHIVED:
        p.error(
            f"{sorted(set(names) & ARCHIVED)} were measured on feature versions whose code is"
            " gone: their JSON stays in the table; the gbm_v5_* rows are the current ones"
        )
    parts = [x for x in args.parts.split(",") if x] or list(PARTS)
    if not args.report_only:
        runner = Runner(budget, out, cache)
        for spec in SPECS:
            if spec.name in names:
                t0 = time.perf_counter()
                print(f"{spec.name}:", flush=True)
                runner.run(spec, parts)
                print(f"{spec.name}: {time.perf_counter() - t0:.0f} s", flush=True)
        if any("periodic" in s.features for s in SPECS if s.name in names):
            feature_cost(runner, out)
    report.write_doc(SPECS, out, doc, command)
    print(f"wrote {doc}")
    return 0
