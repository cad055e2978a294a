"""Temperature scaling, the calibration ``dmdt-train fit-hybrid`` fits and ships: one scalar T
fitted on out-of-fold predictions so that softmax(logits / T) has the lowest log loss, and the
top-label expected calibration error it reports. Tree models pass log-probabilities or raw
scores as logits, which give the same softmax. Everything takes arrays ``probs (n, k)`` /
``logits (n, k)`` and integer ``labels (n,)``. The calibration study (reliability diagrams,
isotonic maps, the open set) is research: research/calibration/.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax

EPS = 1e-12
N_BINS = 15


def _check(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if p.ndim != 2 or y.ndim != 1 or p.shape[0] != y.shape[0]:
        raise ValueError(f"probs must be (n, k) and labels (n,), got {p.shape} and {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must be in 0..{p.shape[1] - 1}")
    return p, y


def as_logits(probs: np.ndarray) -> np.ndarray:
    """Log-probabilities, the logits of a model that only gives probabilities (trees)."""
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), EPS, None))


def _binned(conf: np.ndarray, hit: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    """Per equal-width confidence bin on [0, 1]: count, mean confidence, mean outcome."""
    idx = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(idx, minlength=n_bins).astype(np.float64)
    sum_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    sum_hit = np.bincount(idx, weights=hit.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "count": count,
            "confidence": np.where(count > 0, sum_conf / count, np.nan),
            "accuracy": np.where(count > 0, sum_hit / count, np.nan),
        }


def _ece_of(conf: np.ndarray, hit: np.ndarray, n_bins: int) -> float:
    b = _binned(conf, hit, n_bins)
    ok = b["count"] > 0
    gap = np.abs(b["confidence"][ok] - b["accuracy"][ok])
    return float(np.sum(b["count"][ok] * gap) / max(conf.size, 1))


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """Top-label expected calibration error: |accuracy - confidence| of the top class, weighted
    over ``n_bins`` equal-width confidence bins."""
    p, y = _check(probs, labels)
    return _ece_of(p.max(axis=1), p.argmax(axis=1) == y, n_bins)


def apply_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities softmax(logits / T); T > 1 softens, T < 1 sharpens, argmax unchanged."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return np.asarray(softmax(np.asarray(logits, dtype=np.float64) / temperature, axis=1))


def fit_temperature(
    logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)
) -> float:
    """The temperature T minimising the log loss of softmax(logits / T) on held-aside data
    (out-of-fold predictions: fitting on the training part would learn over-confidence)."""
    z, y = _check(logits, labels)
    rows = np.arange(y.size)

    def nll(log_t: float) -> float:
        return float(-np.mean(log_softmax(z / np.exp(log_t), axis=1)[rows, y]))

    res = minimize_scalar(
        nll, bounds=(np.log(bounds[0]), np.log(bounds[1])), method="bounded",
        options={"xatol": 1e-5},
    )  # fmt: skip
    return float(np.exp(res.x))
