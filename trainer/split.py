"""The fixed split that the shipped models are trained on and every model is measured on.

Hold out 20% of each class first (stratified, seed 0: for the paper's seven classes this is the
held-out test set of ``dmdt-train fit --seed 0`` and of models/paper-cnn), then 5 stratified folds
(seed 0) of the rest. ``fit-hybrid`` and ``fit-net`` train on the five folds and report the
held-out part; the research package scores every candidate on each fold and on the held-out part.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.model_selection import StratifiedKFold

from trainer import data

HELD_OUT = -1
N_FOLDS = 5
PARTS = (*(f"fold{i}" for i in range(N_FOLDS)), "held_out")


def fold_ids(labels: np.ndarray, seed: int = 0, held_out_frac: float = 0.2) -> np.ndarray:
    """Per curve: -1 for the held-out part, else its fold 0..4 (stratified, seeded)."""
    rest, _ = data.stratified_split(labels, held_out_frac, seed)
    folds = np.full(labels.size, HELD_OUT, dtype=np.int64)
    skf = StratifiedKFold(n_splits=N_FOLDS, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # LADS has 2 curves left after the hold-out: it cannot be in all 5 folds
        warnings.filterwarnings("ignore", message="The least populated class")
        for i, (_, test) in enumerate(skf.split(np.zeros(rest.size), labels[rest])):
            folds[rest[test]] = i
    return folds


def part_indices(folds: np.ndarray, part: str) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of ``part``: ``fold<i>`` (train on the other folds) or
    ``held_out`` (train on all folds)."""
    if part == "held_out":
        return np.flatnonzero(folds != HELD_OUT), np.flatnonzero(folds == HELD_OUT)
    i = int(part.removeprefix("fold"))
    return np.flatnonzero((folds != HELD_OUT) & (folds != i)), np.flatnonzero(folds == i)
