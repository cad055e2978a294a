"""The 18 features of the context's curves (computed once) and the random-forest experiment."""

from __future__ import annotations

from typing import Any

import numpy as np

from research.paper.common import Context, Store
from research.paper.features import FEATURE_NAMES, features
from research.paper.forest import make_forest
from trainer.evaluate import classification_metrics

_CACHE: dict[int, np.ndarray] = {}


def context_features(ctx: Context) -> np.ndarray:
    """float64 ``(n, 18)`` features of ``ctx.lcs`` (cached per context)."""
    if id(ctx) not in _CACHE:
        _CACHE[id(ctx)] = np.nan_to_num(features(ctx.lcs))
    return _CACHE[id(ctx)]


def forest_predict(
    ctx: Context,
    train: np.ndarray,
    y_train: np.ndarray,
    test: np.ndarray,
    *,
    weighted: bool,
    seed: int,
) -> np.ndarray:
    """Fit a forest on the features of curves ``train`` and predict curves ``test``."""
    x = context_features(ctx)
    model = make_forest(weighted, seed, ctx.budget.trees).fit(x[train], y_train)
    return model.predict(x[test])


def forest(ctx: Context, store: Store) -> dict[str, Any]:
    """Random forest on the 18 features, unweighted and class-weighted, on the CNN's splits."""
    b = ctx.budget

    def run(key: str) -> dict[str, Any]:
        kind, seed_text = key.split("/")
        seed = int(seed_text.removeprefix("seed"))
        train, test = ctx.split(seed)
        x = context_features(ctx)
        model = make_forest(kind == "weighted", seed, b.trees).fit(x[train], ctx.labels[train])
        result = classification_metrics(ctx.labels[test], model.predict(x[test]), ctx.classes)
        order = np.argsort(model.feature_importances_)[::-1][:5]
        result["top_features"] = {
            FEATURE_NAMES[i]: round(float(model.feature_importances_[i]), 4) for i in order
        }
        result["n_train"] = int(train.size)
        return result

    keys = [f"{kind}/seed{s}" for s in b.seeds for kind in ("unweighted", "weighted")]
    meta = {
        "budget": b.to_dict(),
        "settings": {"n_estimators": b.trees, "features": list(FEATURE_NAMES)},
    }
    return store.run("forest", keys, run, meta)
