"""The random-forest baseline on the 18 features, weighted (balanced classes) or not.

It uses the CNN's split: the same stratified held-out test set for the same data, classes and
seed (:func:`trainer.data.stratified_split`), or the test ids recorded in a model artifact.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
from sklearn.ensemble import RandomForestClassifier

from dmdt.lightcurves import LightCurve
from research.paper.features import FEATURE_NAMES, features
from trainer import data
from trainer.evaluate import classification_metrics


def make_forest(
    weighted: bool, seed: int = 0, n_estimators: int = 500, n_jobs: int = 1
) -> RandomForestClassifier:
    """A random forest; ``weighted`` gives classes weights inverse to their frequency."""
    return RandomForestClassifier(
        n_estimators=n_estimators,
        class_weight="balanced" if weighted else None,
        random_state=seed,
        n_jobs=n_jobs,
    )


def fit_evaluate(
    lcs: Sequence[LightCurve],
    classes: Sequence[str],
    *,
    weighted: bool,
    seed: int = 0,
    test_frac: float = 0.2,
    test_ids: Collection[str] | None = None,
    n_estimators: int = 500,
    n_jobs: int = 1,
) -> dict[str, Any]:
    """Train on the training part, score the held-out part; metrics as ``evaluate`` writes them.

    ``test_ids`` (e.g. a model's recorded held-out ids) override the stratified split.
    """
    lcs = [lc for lc in lcs if lc.label in classes]
    index = {c: i for i, c in enumerate(classes)}
    y = np.array([index[str(lc.label)] for lc in lcs])
    if test_ids is None:
        train, test = data.stratified_split(y, test_frac, seed)
    else:
        ids = set(test_ids)
        is_test = np.array([lc.source_id in ids for lc in lcs])
        train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    x = features(lcs, n_jobs=n_jobs)
    model = make_forest(weighted, seed, n_estimators, n_jobs).fit(x[train], y[train])
    result = classification_metrics(y[test], model.predict(x[test]), classes)
    order = np.argsort(model.feature_importances_)[::-1]
    result.update(
        model="random_forest_weighted" if weighted else "random_forest",
        n_train=int(train.size),
        n_estimators=n_estimators,
        feature_importances={FEATURE_NAMES[i]: float(model.feature_importances_[i])
                             for i in order},
    )  # fmt: skip
    return result
