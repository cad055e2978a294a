"""Issue 7, calibration: are the classifier's probabilities ones a user can threshold?

Metrics (top-label and classwise expected calibration error, multiclass Brier score, log loss),
the reliability diagram, and two post-hoc calibrators fitted on out-of-fold predictions:
temperature scaling (one scalar; tree models pass log-probabilities or raw scores as logits,
which give the same softmax) and one-vs-rest isotonic regression (renormalised). Everything
takes arrays ``probs (n, k)`` / ``logits (n, k)`` and integer ``labels (n,)``, so any model's
saved probabilities can be scored.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


def classwise_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> float:
    """Mean over classes of the ECE of p_k against 1[y == k] (every prediction, every class)."""
    p, y = _check(probs, labels)
    return float(np.mean([_ece_of(p[:, k], y == k, n_bins) for k in range(p.shape[1])]))


def reliability(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> dict[str, Any]:
    """The reliability table of the top label: per bin count, mean confidence, accuracy."""
    p, y = _check(probs, labels)
    b = _binned(p.max(axis=1), p.argmax(axis=1) == y, n_bins)
    return {
        "edges": np.linspace(0.0, 1.0, n_bins + 1).tolist(),
        **{k: [None if np.isnan(v) else float(v) for v in arr] for k, arr in b.items()},
    }


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multiclass Brier score: mean over sources of sum_k (p_k - 1[y == k])^2 (0 best, 2 worst)."""
    p, y = _check(probs, labels)
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def log_loss(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (probabilities clipped at 1e-12)."""
    p, y = _check(probs, labels)
    return float(-np.mean(np.log(np.clip(p[np.arange(y.size), y], EPS, None))))


def metrics(probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS) -> dict[str, float]:
    """Accuracy, top-label and classwise ECE, Brier and log loss of one set of predictions."""
    p, y = _check(probs, labels)
    return {
        "n": int(y.size),
        "accuracy": float(np.mean(p.argmax(axis=1) == y)),
        "mean_confidence": float(np.mean(p.max(axis=1))),
        "ece": ece(p, y, n_bins),
        "classwise_ece": classwise_ece(p, y, n_bins),
        "brier": brier(p, y),
        "log_loss": log_loss(p, y),
    }


# ---------------------------------------------------------------------- temperature scaling


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


# ------------------------------------------------------------------ one-vs-rest isotonic


class IsotonicOvR:
    """One isotonic map per class from p_k to P(y == k), then renormalised rows: a flexible
    calibrator (monotone per class, may change the argmax) for when one temperature is too few."""

    def __init__(self) -> None:
        self.maps: list[Any] = []

    def fit(self, probs: np.ndarray, labels: np.ndarray) -> IsotonicOvR:
        """Fit on out-of-fold probabilities and their labels."""
        from sklearn.isotonic import IsotonicRegression

        p, y = _check(probs, labels)
        self.maps = [
            IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p[:, k], y == k)
            for k in range(p.shape[1])
        ]
        return self

    def transform(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (rows sum to one; a row mapped to all zeros stays as given)."""
        p = np.asarray(probs, dtype=np.float64)
        q = np.stack([m.predict(p[:, k]) for k, m in enumerate(self.maps)], axis=1)
        s = q.sum(axis=1, keepdims=True)
        return np.where(s > 0, q / np.where(s > 0, s, 1.0), p)


# --------------------------------------------------------------------------- the figure


def reliability_diagram(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray]],
    path: Path,
    title: str = "",
    n_bins: int = N_BINS,
) -> Path:
    """A png of top-label reliability (accuracy vs confidence per bin) for each named
    ``(probs, labels)``, with their ECE in the legend, and the bin counts underneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hx) = plt.subplots(
        2, 1, figsize=(5.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect")
    width = 1.0 / n_bins / max(len(curves), 1)
    for i, (name, (p, y)) in enumerate(curves.items()):
        r = reliability(p, y, n_bins)
        conf = np.array([np.nan if v is None else v for v in r["confidence"]])
        acc = np.array([np.nan if v is None else v for v in r["accuracy"]])
        ok = np.isfinite(conf)
        ax.plot(conf[ok], acc[ok], marker="o", ms=3, label=f"{name} (ECE {ece(p, y, n_bins):.3f})")
        left = np.array(r["edges"][:-1]) + i * width
        hx.bar(left, r["count"], width=width, align="edge", label=name)
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title, fontsize=9)
    hx.set_xlabel("confidence (top-label probability)")
    hx.set_ylabel("sources")
    hx.set_yscale("log")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
