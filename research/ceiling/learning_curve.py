"""A learning curve of the comparison's best model and its errors by data quality (research.ceiling
writes docs/ceiling.md).

The learning curve trains the model on stratified fractions of each fold's training part and
scores it on the fold, so every point is measured on the same curves; :func:`saturation_fit`
extrapolates it to unlimited training data of the same kind.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from research.candidates import gbm_views
from research.folds import FULL, Budget
from trainer.split import part_indices


def stratified_subsample(
    indices: np.ndarray, labels: np.ndarray, frac: float, seed: int, min_per_class: int = 5
) -> np.ndarray:
    """A sorted subset of ``indices`` with ``frac`` of each class (rounded, at least
    ``min_per_class`` or the whole class if smaller), drawn with ``seed``."""
    if not 0.0 < frac <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {frac}")
    rng = np.random.default_rng(seed)
    keep = []
    for k in np.unique(labels[indices]):
        members = indices[labels[indices] == k]
        size = min(members.size, max(round(frac * members.size), min_per_class))
        keep.append(rng.choice(members, size, replace=False))
    return np.sort(np.concatenate(keep))


@dataclass(frozen=True)
class Point:
    """One measured point of the learning curve: a fold scored by a model trained on
    ``fraction`` of its training part (draw ``repeat``)."""

    fraction: float
    repeat: int
    part: str
    n_train: int
    accuracy: float
    macro_f1: float
    recall: tuple[float, ...]  # per class, in the dataset's class order
    test: np.ndarray  # the fold's curves (indices into the dataset) ...
    pred: np.ndarray  # ... and the predicted class of each


_WORKER: dict[str, Any] = {}


def _init_worker(
    x: np.ndarray, labels: np.ndarray, n_classes: int, n_views: int, budget: Budget
) -> None:
    _WORKER.update(x=x, labels=labels, n_classes=n_classes, n_views=n_views, budget=budget)


def _score(job: tuple[float, int, str, np.ndarray, np.ndarray]) -> Point:
    fraction, repeat, part, train, test = job
    labels = _WORKER["labels"]
    fp = gbm_views(_WORKER["x"], _WORKER["n_classes"], _WORKER["n_views"], _WORKER["budget"])
    pred = fp(train, labels[train], test).argmax(axis=1)
    y = labels[test]
    recall = tuple(
        float(np.mean(pred[y == k] == k)) if np.any(y == k) else float("nan")
        for k in range(_WORKER["n_classes"])
    )
    return Point(
        fraction=fraction,
        repeat=repeat,
        part=part,
        n_train=int(train.size),
        accuracy=float(np.mean(pred == y)),
        macro_f1=float(f1_score(y, pred, average="macro")),
        recall=recall,
        test=test,
        pred=pred,
    )


def learning_curve(
    x: np.ndarray,
    labels: np.ndarray,
    folds: np.ndarray,
    n_classes: int,
    n_views: int,
    plan: Sequence[tuple[float, int]],
    parts: Sequence[str],
    jobs: int = 1,
    progress: Callable[[Point], None] | None = None,
    budget: Budget = FULL,
) -> list[Point]:
    """Score :func:`research.candidates.gbm_views` (with ``budget``'s trees) on each of
    ``parts``, trained on stratified fractions of the part's training curves: ``plan`` lists
    (fraction, number of draws). Runs ``jobs`` processes; ``progress`` is called with each point
    as it comes in."""
    work = []
    for fraction, repeats in plan:
        for repeat in range(repeats):
            for part in parts:
                train, test = part_indices(folds, part)
                if fraction < 1.0:
                    train = stratified_subsample(train, labels, fraction, seed=repeat)
                work.append((fraction, repeat, part, train, test))
    points = []
    if jobs <= 1:
        _init_worker(x, labels, n_classes, n_views, budget)
        for job in work:
            points.append(_score(job))
            if progress:
                progress(points[-1])
        return points
    import multiprocessing as mp

    os.environ.setdefault("OMP_NUM_THREADS", "1")  # inherited by the spawned workers
    with ProcessPoolExecutor(
        jobs, mp.get_context("spawn"), _init_worker, (x, labels, n_classes, n_views, budget)
    ) as pool:
        for point in pool.map(_score, work):
            points.append(point)
            if progress:
                progress(point)
    return points


def summarise(points: Sequence[Point]) -> list[dict[str, Any]]:
    """Per fraction: mean training size, and mean and spread (over folds and draws) of accuracy,
    macro-F1 and each class's recall."""
    rows = []
    for fraction in sorted({p.fraction for p in points}):
        ps = [p for p in points if p.fraction == fraction]
        acc = np.array([p.accuracy for p in ps])
        f1 = np.array([p.macro_f1 for p in ps])
        recall = np.nanmean(np.array([p.recall for p in ps]), axis=0)
        rows.append(
            {
                "fraction": fraction,
                "n_train": float(np.mean([p.n_train for p in ps])),
                "measurements": len(ps),
                "accuracy": float(acc.mean()),
                "accuracy_std": float(acc.std()),
                "macro_f1": float(f1.mean()),
                "macro_f1_std": float(f1.std()),
                "recall": [float(r) for r in recall],
            }
        )
    return rows


@dataclass(frozen=True)
class Saturation:
    """``score(n) = asymptote - scale * n ** -exponent`` fitted to a learning curve."""

    asymptote: float
    asymptote_se: float  # standard error from the fit's covariance
    scale: float
    exponent: float

    def __call__(self, n: np.ndarray | float) -> np.ndarray:
        return self.asymptote - self.scale * np.asarray(n, dtype=np.float64) ** -self.exponent

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def saturation_fit(
    n: Sequence[float] | np.ndarray, score: Sequence[float] | np.ndarray
) -> Saturation:
    """Fit an inverse power law with an asymptote (the usual form of learning curves) to
    ``score`` against training size ``n``; needs at least four points."""
    from scipy.optimize import curve_fit

    n_arr = np.asarray(n, dtype=np.float64)
    s_arr = np.asarray(score, dtype=np.float64)
    if n_arr.size < 4:
        raise ValueError("a saturation fit needs at least 4 training sizes")

    def law(m: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
        return a - b * m**-c

    start = (float(s_arr.max()), float((s_arr.max() - s_arr.min()) * n_arr.min() ** 0.5), 0.5)
    params, cov = curve_fit(
        law, n_arr, s_arr, p0=start, bounds=([0.0, 0.0, 0.01], [1.0, np.inf, 3.0]), maxfev=20000
    )
    a, b, c = (float(v) for v in params)
    return Saturation(a, float(np.sqrt(cov[0, 0])), b, c)


def binned_accuracy(
    value: np.ndarray, correct: np.ndarray, labels: np.ndarray, n_classes: int, bins: int = 5
) -> list[dict[str, Any]]:
    """Per quantile bin of ``value`` (``bins`` bins of equal counts up to ties; the last includes
    its upper edge): the number of curves of each class, accuracy, per-class recall, and the
    accuracy at the class mix of all the curves (each class's recall weighted by its share of
    all curves, over the classes present in the bin), which a bin's own class mix cannot sway."""
    edges = np.quantile(value, np.linspace(0.0, 1.0, bins + 1))
    which = np.clip(np.searchsorted(edges, value, side="right") - 1, 0, bins - 1)
    share = np.bincount(labels, minlength=n_classes) / labels.size
    rows = []
    for b in range(bins):
        sel = which == b
        counts = np.bincount(labels[sel], minlength=n_classes)
        recall = [
            float(np.mean(correct[sel & (labels == k)])) if counts[k] else None
            for k in range(n_classes)
        ]
        present = counts > 0
        mix = np.array([r for r in recall if r is not None])
        rows.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "n": int(sel.sum()),
                "counts": counts.tolist(),
                "accuracy": float(np.mean(correct[sel])) if sel.any() else None,
                "mix_adjusted": float(mix @ share[present] / share[present].sum())
                if present.any()
                else None,
                "recall": recall,
            }
        )
    return rows
