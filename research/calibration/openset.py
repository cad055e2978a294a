"""The open set: an "unknown" answer for sources outside the trained classes.

Scores are oriented so that higher means *more likely unknown*: one minus the top probability,
the entropy, the energy (-logsumexp of the logits; needs real logits, e.g. LightGBM raw scores:
for log-probabilities it is always 0), one minus the top-two margin, and the mean distance to
the k nearest training sources in a standardised feature space. A threshold is picked on known
sources held aside (out-of-fold) so that a chosen fraction of them is kept; the same threshold
then flags sources of types never seen in training.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import logsumexp

from trainer.calibration import EPS


def max_prob_score(probs: np.ndarray) -> np.ndarray:
    """1 - max_k p_k."""
    return 1.0 - np.asarray(probs, dtype=np.float64).max(axis=1)


def entropy_score(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy of the class probabilities (nats)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), EPS, 1.0)
    return np.asarray(-np.sum(p * np.log(p), axis=1))


def margin_score(probs: np.ndarray) -> np.ndarray:
    """1 - (p_top - p_second)."""
    s = np.sort(np.asarray(probs, dtype=np.float64), axis=1)
    return np.asarray(1.0 - (s[:, -1] - s[:, -2]))


def energy_score(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Energy -T logsumexp(z / T) (Liu et al. 2020): high where no class has a large logit."""
    z = np.asarray(logits, dtype=np.float64)
    return np.asarray(-temperature * logsumexp(z / temperature, axis=1))


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """Area under the ROC curve of telling unknown (positive) from known by a higher score."""
    from sklearn.metrics import roc_auc_score

    k, u = np.asarray(known, dtype=np.float64), np.asarray(unknown, dtype=np.float64)
    y = np.r_[np.zeros(k.size), np.ones(u.size)]
    return float(roc_auc_score(y, np.r_[k, u]))


def threshold_keeping(known_scores: np.ndarray, keep: float = 0.95) -> float:
    """The score below or at which a fraction ``keep`` of the known sources lie."""
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    return float(np.quantile(np.asarray(known_scores, dtype=np.float64), keep, method="higher"))


def rejection(
    threshold: float,
    known_scores: np.ndarray,
    known_correct: np.ndarray,
    unknown_scores: np.ndarray,
) -> dict[str, float]:
    """At ``threshold`` (score > threshold: "unknown"): the fraction of known sources kept,
    their accuracy before and after rejection, and the fraction of unknown sources flagged."""
    ks, kc = np.asarray(known_scores), np.asarray(known_correct, dtype=bool)
    kept = ks <= threshold
    return {
        "threshold": float(threshold),
        "known_kept": float(kept.mean()),
        "known_accuracy_all": float(kc.mean()),
        "known_accuracy_kept": float(kc[kept].mean()) if kept.any() else float("nan"),
        "unknown_flagged": float(np.mean(np.asarray(unknown_scores) > threshold)),
    }


class KnnDistance:
    """Mean distance to the k nearest training sources after a quantile-normal transform of each
    feature (robust to the heavy tails of periods and amplitudes; NaN -> the feature's median)."""

    def __init__(self, k: int = 10) -> None:
        self.k = k
        self._fitted: dict[str, Any] = {}

    def _prep(self, x: np.ndarray) -> np.ndarray:
        x = np.where(np.isfinite(x), x, self._fitted["median"])
        return np.asarray(self._fitted["qt"].transform(x))

    def fit(self, x: np.ndarray) -> KnnDistance:
        """Remember the training sources."""
        from sklearn.neighbors import NearestNeighbors
        from sklearn.preprocessing import QuantileTransformer

        x = np.asarray(x, dtype=np.float64)
        med = np.nanmedian(np.where(np.isfinite(x), x, np.nan), axis=0)
        self._fitted["median"] = np.nan_to_num(med)
        n_q = min(1000, x.shape[0])
        qt = QuantileTransformer(n_quantiles=n_q, output_distribution="normal", random_state=0)
        self._fitted["qt"] = qt.fit(np.where(np.isfinite(x), x, self._fitted["median"]))
        self._fitted["nn"] = NearestNeighbors(n_neighbors=self.k).fit(self._prep(x))
        return self

    def score(self, x: np.ndarray) -> np.ndarray:
        """Mean distance to the k nearest training sources (higher: further from the classes)."""
        d, _ = self._fitted["nn"].kneighbors(self._prep(np.asarray(x, dtype=np.float64)))
        return np.asarray(d.mean(axis=1))


def scores(probs: np.ndarray, logits: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Every probability-based score (and the energy when real logits are given)."""
    out = {
        "max_prob": max_prob_score(probs),
        "entropy": entropy_score(probs),
        "margin": margin_score(probs),
    }
    if logits is not None:
        out["energy"] = energy_score(logits)
    return out
