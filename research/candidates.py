"""The candidate models compared on the fixed folds (research.folds): gradient boosting on the
periodic features, the random forest on the paper's 18 features, and the shallow dmdt CNN (as
``dmdt-train fit`` trains it)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dmdt.grids import get_grid
from dmdt.lightcurves import LightCurve
from research.folds import Budget, FitPredict
from research.paper.forest import make_forest
from trainer import data


def make_gbm(n_classes: int, trees: int, balanced: bool, seed: int = 0) -> Any:
    """A seeded LightGBM classifier on one thread (lightgbm is imported here: optional)."""
    import lightgbm as lgb

    return lgb.LGBMClassifier(
        n_estimators=trees,
        learning_rate=0.05,
        num_leaves=31,
        min_child_samples=10,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.5,
        reg_lambda=1.0,
        class_weight="balanced" if balanced else None,
        objective="multiclass" if n_classes > 2 else "binary",
        random_state=seed,
        deterministic=True,
        force_row_wise=True,
        n_jobs=1,
        verbose=-1,
    )


def gbm_small(
    x: np.ndarray,
    n_classes: int,
    budget: Budget,
    balanced: bool = True,
    weight: np.ndarray | None = None,
) -> FitPredict:
    """The shipped hybrid's boosting (trainer.hybrid_fit: 400 rounds of 7-leaf trees, balanced
    class weights unless told, 30% of columns per tree) on ``x``; ``weight``: one per row of
    ``x``, on top of the class weights."""
    from trainer.hybrid_fit import HybridOptions, train_boosters

    opts = HybridOptions(trees=min(budget.gbm_trees, HybridOptions.trees), balanced=balanced)

    def fit_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
        present = np.unique(y)
        index = np.searchsorted(present, y)  # LightGBM wants labels 0..k-1
        w = None if weight is None else weight[train]
        (booster,) = train_boosters(x[train], index, present.size, opts, w)
        probs = booster.predict(x[test]).reshape(test.size, present.size)
        return _full_probs(probs, present, n_classes)

    return fit_predict


def per_view(x: np.ndarray, n_views: int, model: Callable[[np.ndarray], FitPredict]) -> FitPredict:
    """``model`` of each block of ``x.shape[1] // n_views`` columns (one view's), probabilities
    averaged."""
    width = x.shape[1] // n_views
    return blend(
        [(model(x[:, k * width : (k + 1) * width]), 1.0 / n_views) for k in range(n_views)]
    )


def gbm_views(x: np.ndarray, n_classes: int, n_views: int, budget: Budget) -> FitPredict:
    """The harness's ``gbm_views`` rows (models/hybrid-views-7): :func:`gbm_small` per view."""
    return per_view(x, n_views, lambda block: gbm_small(block, n_classes, budget))


def small_settings(budget: Budget, balanced: bool = True) -> dict[str, object]:
    """The settings of :func:`gbm_small` for the JSON record."""
    from dataclasses import asdict

    from trainer.hybrid_fit import HybridOptions

    opts = asdict(
        HybridOptions(trees=min(budget.gbm_trees, HybridOptions.trees), balanced=balanced)
    )
    return {k: opts[k] for k in ("trees", "learning_rate", "num_leaves", "min_child_samples",
                                 "colsample_bytree", "reg_lambda", "balanced")}  # fmt: skip


def _full_probs(probs: np.ndarray, seen: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over all ``n_classes`` (a class absent from a training part gets 0)."""
    out = np.zeros((probs.shape[0], n_classes))
    out[:, np.asarray(seen, dtype=np.int64)] = probs
    return out


def forest(x: np.ndarray, n_classes: int, budget: Budget, weighted: bool) -> FitPredict:
    """The paper-baseline random forest (research.paper.forest) on feature matrix ``x``."""
    x = np.nan_to_num(x)

    def fit_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
        model = make_forest(weighted, 0, budget.rf_trees).fit(x[train], y)
        return _full_probs(model.predict_proba(x[test]), model.classes_, n_classes)

    return fit_predict


def cnn_images(lcs: Sequence[LightCurve]) -> np.ndarray:
    """The paper's uint8 dmdt images on the default grid, flattened to ``(n, 24 * 22)`` so that
    they cache like a feature matrix."""
    grid = get_grid("mahabal2017")
    return data.images(lcs, grid).reshape(len(lcs), -1)


def shallow_cnn(flat_images: np.ndarray, n_classes: int, budget: Budget) -> FitPredict:
    """The shallow CNN trained as ``dmdt-train fit`` trains it (10% of the training part for early
    stopping, split seed 1; Adam 2e-4, batch 32, one thread; research.paper.common)."""
    from research.paper.common import predict_logits, to_batch, train_cnn

    images = flat_images.reshape(-1, *get_grid("mahabal2017").shape)

    def fit_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
        labels = np.zeros(images.shape[0], dtype=np.int64)
        labels[train] = y
        net, _ = train_cnn(
            images,
            labels,
            train,
            n_classes=n_classes,
            arch="shallow",
            epochs=budget.cnn_epochs,
            patience=budget.cnn_patience,
            seed=0,
        )
        logits = predict_logits(net, to_batch(images[test]))
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return fit_predict


def blend(parts: list[tuple[FitPredict, float]]) -> FitPredict:
    """Weighted average of the probabilities of several models."""

    def fit_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
        return np.sum([w * fp(train, y, test) for fp, w in parts], axis=0)

    return fit_predict


def label_cleaned(fp: FitPredict, n_classes: int, inner_folds: int = 4) -> FitPredict:
    """``fp`` trained without the training labels that confident learning flags
    (trainer.label_audit.find_issues) on out-of-fold probabilities of ``fp`` itself, computed
    inside the training part only (``inner_folds`` stratified folds): the scored part's labels
    never decide what is dropped."""
    from sklearn.model_selection import StratifiedKFold

    from trainer.label_audit import find_issues

    def fit_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
        oof = np.zeros((train.size, n_classes))
        split = StratifiedKFold(inner_folds, shuffle=True, random_state=0).split(train, y)
        for fit, score in split:
            oof[score] = fp(train[fit], y[fit], train[score])
        flagged = np.zeros(train.size, dtype=bool)
        flagged[find_issues(y, oof)] = True
        return fp(train[~flagged], y[~flagged], test)

    return fit_predict


def gbm_history(
    x: np.ndarray, n_features: int, n_classes: int, budget: Budget, weight: float
) -> FitPredict:
    """:func:`gbm_small` trained on each training curve's features and those of its first k
    points for each history cut (``x`` = the curve's ``n_features`` columns, then each cut's,
    side by side; NaN where the curve is no longer than the cut, and then left out), the cuts'
    rows weighing ``weight``; scored on the test curves' own features
    (models/hybrid-7-stream's design, ``fit-hybrid --history-cuts``)."""
    cuts = x.shape[1] // n_features - 1
    rows = x.reshape(x.shape[0], cuts + 1, n_features)

    def fit_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
        n = rows.shape[0]
        blocks, index, labels = [rows[:, 0]], [train], [y]
        for k in range(1, cuts + 1):
            kept = ~np.all(np.isnan(rows[train, k]), axis=1)
            blocks.append(rows[train[kept], k])
            index.append(n + np.arange(int(kept.sum())))
            labels.append(y[kept])
            n += int(kept.sum())
        stacked = np.concatenate(blocks)
        weights = np.full(stacked.shape[0], weight)
        weights[: rows.shape[0]] = 1.0
        fp = gbm_small(stacked, n_classes, budget, weight=weights)
        return fp(np.concatenate(index), np.concatenate(labels), test)

    return fit_predict
