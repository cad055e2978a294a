"""Calibration metrics beyond what the product reports: classwise ECE, the reliability table,
multiclass Brier score, log loss, a one-vs-rest isotonic calibrator, and the reliability diagram
(drawn from saved reliability tables, so a report needs no predictions)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from trainer.calibration import EPS, N_BINS, _binned, _check, _ece_of, ece


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


def reliability_diagram(
    curves: Mapping[str, tuple[dict[str, Any], float]],
    path: Path,
    title: str = "",
) -> Path:
    """A png of top-label reliability (accuracy vs confidence per bin) for each named
    ``(reliability table, ECE)`` (:func:`reliability`), the ECE in the legend, and the bin counts
    underneath."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hx) = plt.subplots(
        2, 1, figsize=(5.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect")
    n_bins = max((len(r["count"]) for r, _ in curves.values()), default=N_BINS)
    width = 1.0 / n_bins / max(len(curves), 1)
    for i, (name, (r, ece_value)) in enumerate(curves.items()):
        conf = np.array([np.nan if v is None else v for v in r["confidence"]])
        acc = np.array([np.nan if v is None else v for v in r["accuracy"]])
        ok = np.isfinite(conf)
        ax.plot(conf[ok], acc[ok], marker="o", ms=3, label=f"{name} (ECE {ece_value:.3f})")
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
