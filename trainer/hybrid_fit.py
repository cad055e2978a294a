"""``dmdt-train fit-hybrid``: train the hybrid classifier (dmdt/hybrid.py) on all labelled curves
but the fixed held-out part, score that part, write the model directory.

The held-out part is the fixed split's (trainer/split.py): 20% of each class, stratified, seed 0,
the same curves as ``dmdt-train fit --seed 0`` holds out. Periodic features (version 4) cost ~12 ms
per curve; give ``cache`` (build/beyond-cache) to reuse the harness's feature matrices, which are
keyed by the features' version and the hash of every labelled curve of the data (all classes).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from dmdt import periodic
from dmdt.hybrid import HybridClassifier, default_grid
from dmdt.lightcurves import LightCurve
from dmdt.views import VIEWS
from trainer import data
from trainer.evaluate import classification_metrics
from trainer.feature_cache import cached_matrix
from trainer.split import HELD_OUT, fold_ids
from trainer.training_rows import Augmentation, build_rows, periodic_rows

OTHER = "other"  # the class of every curve outside ``classes`` when ``other`` is set


@dataclass(frozen=True)
class HybridOptions:
    """What ``fit-hybrid`` trains; saved in model.json's training record."""

    classes: tuple[str, ...] | None = data.PAPER_CLASSES
    image_mode: str = "none"  # "flat" measured no better (docs/beyond.md): features only
    views: tuple[str, ...] = ("curve",)  # dmdt.views names; boosters per view, averaged
    other: bool = False  # curves of every other class train one more class, OTHER
    seeds: tuple[int, ...] = (0,)
    trees: int = 400
    learning_rate: float = 0.05
    num_leaves: int = 7  # small trees: as accurate here as 31 leaves (docs/beyond.md), 4x smaller
    min_child_samples: int = 10
    colsample_bytree: float = 0.3
    reg_lambda: float = 5.0
    balanced: bool = True
    min_points: int = 20
    test_frac: float = 0.2
    calibrate: bool = True  # temperature fitted on out-of-fold probabilities of the 5 folds
    # train also on each training curve's first k points for each k here (shorter than the
    # curve), as the stream sees a young source; those rows weigh history_weight each
    # (models/hybrid-7-stream: STREAM_CUTS)
    history_cuts: tuple[int, ...] = ()
    history_weight: float = 0.3
    # train also on each training curve's copy in each of these cadences (trainer.cadence:
    # nightly, ztf, rubin), weight 1 each; with cadences, the history cuts are made as
    # trainer.training_rows makes them (one feature cache for every training part)
    cadences: tuple[str, ...] = ()
    cadence_seed: int = 1

    def augmentation(self) -> Augmentation:
        """The extra rows of :mod:`trainer.training_rows` these options ask for."""
        return Augmentation(
            cadences=self.cadences, seed=self.cadence_seed, history_cuts=self.history_cuts,
            history_weight=self.history_weight, min_points=self.min_points,
        )  # fmt: skip


STREAM_CUTS = (20, 30, 50, 75, 100, 150, 200, 300)  # models/hybrid-7-stream's history cuts

# cache names of each view's features (research.comparison uses the same)
CACHE_NAMES = {
    "curve": f"periodic_v{periodic.FEATURES_VERSION}",
    "intravisit": f"periodic_v{periodic.FEATURES_VERSION}_intravisit",
    "visit_medians": f"periodic_v{periodic.FEATURES_VERSION}_visitmed",
}


def features_of(
    lcs: Sequence[LightCurve], cache: Path | None, views: Sequence[str] = ("curve",)
) -> tuple[np.ndarray, float]:
    """Periodic features of each of ``views`` (dmdt.views) of ``lcs``, side by side (each cached
    under ``cache`` by view, version and data hash: trainer.feature_cache.cached_matrix), and
    their cost in ms per curve."""
    data_hash = data.data_hash(lcs)
    blocks = [
        cached_matrix(lcs, data_hash, CACHE_NAMES[view], partial(view_features, view=view), cache)
        for view in views
    ]
    return np.concatenate([x for x, _ in blocks], axis=1), sum(ms for _, ms in blocks)


def view_features(lcs: Sequence[LightCurve], view: str) -> np.ndarray:
    """The periodic features of ``view`` (dmdt.views) of each of ``lcs``, ``(n, F)``."""
    return periodic.features([VIEWS[view](lc) for lc in lcs])[0]


def train_views(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    opts: HybridOptions,
    weight: np.ndarray | None = None,
) -> list[Any]:
    """:func:`train_boosters` on each view's block of columns of ``x``, view by view (with one
    view, on all of ``x``: features and any image columns)."""
    width = x.shape[1] // len(opts.views)
    return [
        booster
        for v in range(len(opts.views))
        for booster in train_boosters(x[:, v * width : (v + 1) * width], y, n_classes, opts, weight)
    ]


def train_boosters(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    opts: HybridOptions,
    weight: np.ndarray | None = None,
) -> list[Any]:
    """One LightGBM booster per seed on ``(x, y)`` (rows weighted by ``weight`` if given, on top
    of the balanced class weights), one thread each."""
    import lightgbm as lgb

    boosters = []
    for seed in opts.seeds:
        model = lgb.LGBMClassifier(
            n_estimators=opts.trees,
            learning_rate=opts.learning_rate,
            num_leaves=opts.num_leaves,
            min_child_samples=opts.min_child_samples,
            subsample=0.8,
            subsample_freq=1,
            colsample_bytree=opts.colsample_bytree,
            reg_lambda=opts.reg_lambda,
            class_weight="balanced" if opts.balanced else None,
            objective="multiclass",
            num_class=n_classes,
            random_state=seed,
            deterministic=True,
            force_row_wise=True,
            n_jobs=1,
            verbose=-1,
        )
        boosters.append(model.fit(x, y, sample_weight=weight).booster_)
    return boosters


def fit_hybrid(
    source: str,
    out: str | Path,
    opts: HybridOptions,
    name: str = "hybrid",
    cache: Path | None = None,
) -> tuple[HybridClassifier, dict[str, Any]]:
    """Train on every curve of ``source`` outside the held-out part, score the held-out part,
    save the model to ``out``; returns the model and the held-out metrics."""
    every = data.load(source, None, opts.min_points)
    x_all, ms = features_of(every, cache, opts.views)
    classes = data.class_names(every, opts.classes)
    if opts.other:
        if opts.classes is None or OTHER in classes:
            raise ValueError(f"'{OTHER}' needs a list of classes without it: the rest become it")
        rest = sorted({str(lc.label) for lc in every} - set(classes))
        if not rest:
            raise ValueError(f"no light curves outside {list(classes)} to train '{OTHER}' on")
        classes = (*classes, OTHER)  # last: the known classes' held-out part stays the same
    keep = np.array([opts.other or lc.label in classes for lc in every])
    lcs = [lc for lc, k in zip(every, keep, strict=True) if k]
    x_feat = x_all[keep]
    y = np.array([classes.index(str(lc.label)) if lc.label in classes else len(classes) - 1
                  for lc in lcs], dtype=np.int64)  # fmt: skip
    counts, n_points = _counts(lcs)
    folds = fold_ids(y, held_out_frac=opts.test_frac)
    train, test = np.flatnonzero(folds != HELD_OUT), np.flatnonzero(folds == HELD_OUT)
    grid = default_grid()

    def model_for(boosters: list[Any]) -> HybridClassifier:
        return HybridClassifier(name=name, classes=list(classes), grid=grid, boosters=boosters,
                                min_points=opts.min_points, image_mode=opts.image_mode,
                                views=list(opts.views))  # fmt: skip

    probe = model_for([None] * len(opts.views))  # the design only needs the grid and the mode
    x = probe.design(counts, n_points, x_feat)
    if opts.cadences:
        training_set = _augmented_set(lcs, x_feat, y, opts, probe, cache)
        n_extra = training_set(train)[0].shape[0] - train.size
    else:
        x_cut, owner = history_rows([lcs[i] for i in train], opts, probe, cache)
        owner = train[owner]  # row of each cut's curve in lcs
        n_extra = x_cut.shape[0]

        def training_set(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
            """The curves ``rows`` and the history cuts of those curves, with their weights."""
            if not opts.history_cuts:
                return x[rows], y[rows], None
            cut = np.isin(owner, rows)
            return (
                np.concatenate([x[rows], x_cut[cut]]),
                np.concatenate([y[rows], y[owner[cut]]]),
                np.concatenate([np.ones(rows.size),
                                np.full(int(cut.sum()), opts.history_weight)]),
            )  # fmt: skip

    t0 = time.perf_counter()
    x_train, y_train, w_train = training_set(train)
    model = model_for(train_views(x_train, y_train, len(classes), opts, w_train))
    calibration: dict[str, Any] = {}
    if opts.calibrate:
        model.temperature, calibration = _temperature(
            x, y, folds, len(classes), opts, model_for, training_set
        )
    metrics: dict[str, Any] = {}
    if test.size:
        probs = model.classify(counts[test], n_points[test], x_feat[test])
        metrics = classification_metrics(y[test], probs.argmax(axis=1), classes)
        metrics["evaluated_on"] = "held-out part (20% per class, stratified, seed 0)"
        if opts.other:
            metrics["open_set"] = _open_set(y[test], probs.argmax(axis=1), classes, lcs, test)
        if opts.calibrate:
            from trainer.calibration import ece

            raw = calibrated_inverse(probs, model.temperature)
            calibration["held_out_ece_before"] = round(ece(raw, y[test]), 4)
            calibration["held_out_ece_after"] = round(ece(probs, y[test]), 4)
            metrics["calibration"] = calibration
    model.training = {
        "data": source,
        "data_hash": data.data_hash(lcs),
        "n_train": int(train.size),
        "n_held_out": int(test.size),
        "held_out_ids": [lcs[i].source_id for i in test],
        "options": asdict(opts),
        "features_ms_per_curve": round(ms, 1),
        "n_history_rows" if not opts.cadences else "n_extra_rows": int(n_extra),
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    model.metrics = {k: v for k, v in metrics.items() if k != "classes"}
    model.save(out)
    return model, metrics


def _open_set(
    y: np.ndarray, pred: np.ndarray, classes: Sequence[str], lcs: Sequence[LightCurve],
    test: np.ndarray,
) -> dict[str, Any]:  # fmt: skip
    """What a model with an OTHER class does on the held-out part: accuracy on the known classes
    (``other`` counts as wrong), how many known curves it calls other, how many curves of the
    other types it calls other (per type)."""
    other = len(classes) - 1
    known = y != other
    types = np.array([str(lcs[i].label) for i in test])
    return {
        "known_accuracy": round(float(np.mean(pred[known] == y[known])), 4),
        "known_called_other": round(float(np.mean(pred[known] == other)), 4),
        "other_flagged": round(float(np.mean(pred[~known] == other)), 4),
        "n_other": int((~known).sum()),
        "other_flagged_by_type": {
            t: [int(np.sum(pred[types == t] == other)), int(np.sum(types == t))]
            for t in sorted(set(types[~known].tolist()))
        },
    }


def _temperature(
    x: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    n_classes: int,
    opts: HybridOptions,
    model_for: Any,
    training_set: Any,
) -> tuple[float, dict[str, Any]]:
    """The temperature that minimises the log loss of out-of-fold probabilities of whole
    curves: boosters trained on four of the five folds (``training_set``: their curves and
    history cuts) score the fifth (the held-out part is never used)."""
    from trainer.calibration import as_logits, ece, fit_temperature

    oof = np.zeros((y.size, n_classes))
    parts = sorted(set(folds.tolist()) - {HELD_OUT})
    for f in parts:
        fit, score = np.flatnonzero((folds != HELD_OUT) & (folds != f)), np.flatnonzero(folds == f)
        x_fit, y_fit, w_fit = training_set(fit)
        boosters = train_views(x_fit, y_fit, n_classes, opts, w_fit)
        oof[score] = model_for(boosters).booster_probs(x[score])
    inside = folds != HELD_OUT
    temperature = fit_temperature(as_logits(oof[inside]), y[inside])
    from dmdt.hybrid import calibrated

    return temperature, {
        "method": "temperature scaling on out-of-fold probabilities (5 folds)",
        "temperature": round(temperature, 4),
        "out_of_fold_ece_before": round(ece(oof[inside], y[inside]), 4),
        "out_of_fold_ece_after": round(ece(calibrated(oof[inside], temperature), y[inside]), 4),
    }


def history_rows(
    lcs: Sequence[LightCurve],
    opts: HybridOptions,
    probe: HybridClassifier,
    cache: Path | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Design rows of the first k points of each of ``lcs`` for each k of
    ``opts.history_cuts`` shorter than the curve (features as the stream computes them:
    :meth:`HybridClassifier.features` of those points), and the index in ``lcs`` of each row's
    curve. Cached under ``cache`` by views, cuts and data hash."""
    from tqdm import tqdm

    from dmdt.model import lightcurve_counts

    def cuts_of(curves: Sequence[LightCurve]) -> list[tuple[int, int]]:
        return [(i, k) for i, lc in enumerate(curves) for k in opts.history_cuts if len(lc) > k]

    pairs = cuts_of(lcs)
    owner = np.array([i for i, _ in pairs], dtype=np.int64)
    if not pairs:
        return np.zeros((0, len(probe.feature_names))), owner

    def compute(curves: Sequence[LightCurve]) -> np.ndarray:
        todo = [(curves[i].t[:k], curves[i].m[:k], curves[i].err[:k]) for i, k in cuts_of(curves)]
        if not todo:
            return np.zeros((0, len(probe.feature_names)))
        rows = [
            probe.features_many(todo[a : a + 256])  # one period search per 256 cuts
            for a in tqdm(range(0, len(todo), 256), desc="history cuts", leave=False)
        ]
        return np.concatenate(rows).reshape(len(todo), len(probe.feature_names))

    views = "+".join(CACHE_NAMES[v] for v in opts.views)
    name = f"{views}_cuts_{'-'.join(map(str, opts.history_cuts))}"
    feats, _ = cached_matrix(lcs, data.data_hash(lcs), name, compute, cache)
    counts, n_points = lightcurve_counts([lcs[i].head(k) for i, k in pairs], probe.grid)
    return probe.design(counts, n_points, feats), owner


def _augmented_set(
    lcs: Sequence[LightCurve],
    x_feat: np.ndarray,
    y: np.ndarray,
    opts: HybridOptions,
    probe: HybridClassifier,
    cache: Path | None,
) -> Any:
    """``training_set(curves) -> (x, y, weight)`` of the curves and their extra rows
    (trainer.training_rows: copies in ``opts.cadences``, history cuts), curve view only."""
    if tuple(opts.views) != ("curve",):
        raise ValueError("--cadences trains the curve view only; leave --views as curve")
    grid = probe.grid if opts.image_mode != "none" else None
    rows = build_rows(lcs, x_feat, y, opts.augmentation(), CACHE_NAMES["curve"], periodic_rows,
                      cache, grid)  # fmt: skip
    if grid is not None:
        assert rows.counts is not None
        design = probe.design(rows.counts, rows.n_points, rows.features)
    else:
        design = rows.features

    def training_set(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        part = rows.part(curves)
        return design[part], rows.labels[part], rows.weight[part]

    return training_set


def calibrated_inverse(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Undo :func:`dmdt.hybrid.calibrated` (p ** T renormalised): the uncalibrated output."""
    from dmdt.hybrid import calibrated

    return calibrated(probs, 1.0 / temperature)


def _counts(lcs: Sequence[LightCurve]) -> tuple[np.ndarray, np.ndarray]:
    from dmdt.model import lightcurve_counts

    return lightcurve_counts(lcs, default_grid())
