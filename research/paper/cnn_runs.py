"""CNN experiments on CRTS: 7 classes (shallow over 5 splits, deep on a fixed small budget), the
21 pairwise binary classifiers of Table II (with the random forest beside them), the bin variants
of Table III."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from sklearn.metrics import f1_score, matthews_corrcoef, recall_score

from dmdt.grids import get_grid
from research.paper.common import (
    Context,
    Store,
    cnn_metrics,
    predict_logits,
    to_batch,
    train_cnn,
)
from research.paper.forest_runs import forest_predict
from trainer import data

BIN_GRIDS = (
    "mahabal2017",
    "mahabal2017-23dt",
    "variant-coarse-dm",
    "variant-fine-dm",
    "variant-log-dt",
)


def seven_class(ctx: Context, store: Store) -> dict[str, Any]:
    """Shallow CNN, 7 classes, one run per seeded stratified 80/20 split (default settings)."""
    b = ctx.budget
    images = ctx.images()

    def run(key: str) -> dict[str, Any]:
        seed = int(key.removeprefix("seed"))
        train, test = ctx.split(seed)
        return cnn_metrics(
            images,
            ctx.labels,
            train,
            test,
            ctx.classes,
            arch="shallow",
            epochs=b.seven_epochs,
            patience=b.seven_patience,
            seed=seed,
        )

    meta = {
        "budget": b.to_dict(),
        "settings": {"epochs": b.seven_epochs, "patience": b.seven_patience},
    }
    return store.run("seven_class", [f"seed{s}" for s in b.seeds], run, meta)


def deep(ctx: Context, store: Store) -> dict[str, Any]:
    """Deep CNN, 7 classes, split seed 0, a fixed small number of epochs (CPU cost)."""
    b = ctx.budget
    images = ctx.images()

    def run(key: str) -> dict[str, Any]:
        train, test = ctx.split(0)
        return cnn_metrics(
            images,
            ctx.labels,
            train,
            test,
            ctx.classes,
            arch="deep",
            epochs=b.deep_epochs,
            patience=0,
            seed=0,
        )

    meta = {"budget": b.to_dict(), "settings": {"epochs": b.deep_epochs, "patience": 0}}
    return store.run("deep", ["seed0"], run, meta)


def pair_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, Any]:
    """Recall of each class, macro recall, macro F1, MCC and accuracy of a binary prediction."""
    recall = recall_score(y_true, y_pred, labels=[0, 1], average=None, zero_division=0)
    return {
        "n": int(y_true.size),
        "accuracy": float(np.mean(y_true == y_pred)),
        "recall": [float(r) for r in recall],
        "macro_recall": float(np.mean(recall)),
        "macro_f1": float(
            f1_score(y_true, y_pred, labels=[0, 1], average="macro", zero_division=0)
        ),
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
    }


def pairwise(ctx: Context, store: Store) -> dict[str, Any]:
    """The 21 binary classifiers: shallow CNN (compact budget) and random forests, split seed 0."""
    b = ctx.budget
    images = ctx.images()
    pairs = list(itertools.combinations(range(len(ctx.classes)), 2))

    def run(key: str) -> dict[str, Any]:
        a, c = (ctx.classes.index(n) for n in key.split("-vs-"))
        idx = np.flatnonzero(np.isin(ctx.labels, (a, c)))
        y = (ctx.labels[idx] == c).astype(np.int64)  # class a -> 0, class c -> 1
        train, test = data.stratified_split(y, 0.2, 0)
        net, fit_run = train_cnn(
            images[idx], y, train, n_classes=2, epochs=b.pair_epochs, patience=b.pair_patience
        )
        pred = predict_logits(net, to_batch(images[idx][test])).argmax(axis=1)
        out: dict[str, Any] = {
            "classes": [ctx.classes[a], ctx.classes[c]],
            "cnn": pair_metrics(y[test], pred),
        }
        out["cnn"].update(fit_run)
        for weighted in (False, True):
            rf = forest_predict(ctx, idx[train], y[train], idx[test], weighted=weighted, seed=0)
            out["rf_weighted" if weighted else "rf"] = pair_metrics(y[test], rf)
        return out

    keys = [f"{ctx.classes[a]}-vs-{ctx.classes[c]}" for a, c in pairs]
    meta = {
        "budget": b.to_dict(),
        "settings": {"epochs": b.pair_epochs, "patience": b.pair_patience},
    }
    return store.run("pairwise", keys, run, meta)


def pad_for_shallow(images: np.ndarray, min_size: int = 14) -> tuple[np.ndarray, int]:
    """Zero-pad the dm axis symmetrically to ``min_size`` bins, the least the shallow net's two
    valid 5x5 convolutions and 2x2 pool accept; returns the images and the columns added."""
    pad = max(0, min_size - images.shape[2])
    if pad == 0:
        return images, 0
    return np.pad(images, ((0, 0), (0, 0), (pad // 2, pad - pad // 2))), pad


def bins(ctx: Context, store: Store) -> dict[str, Any]:
    """Shallow CNN on each grid preset (the fiducial, the 23-dt grid and our three variants)."""
    b = ctx.budget

    def run(name: str) -> dict[str, Any]:
        grid = get_grid(name)
        train, test = ctx.split(0)
        images, pad = pad_for_shallow(ctx.images(grid))
        result = cnn_metrics(
            images,
            ctx.labels,
            train,
            test,
            ctx.classes,
            epochs=b.variant_epochs,
            patience=b.variant_patience,
            seed=0,
        )
        result["grid_shape"] = list(grid.shape)
        result["zero_padding_dm"] = pad
        result["dt_edges"] = [float(x) for x in grid.dt_edges]
        result["dm_edges"] = [float(x) for x in grid.dm_edges]
        return result

    meta = {
        "budget": b.to_dict(),
        "settings": {"epochs": b.variant_epochs, "patience": b.variant_patience},
    }
    return store.run("bins", BIN_GRIDS, run, meta)
