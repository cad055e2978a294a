"""One answer per object: class probabilities of an object's bands combined into one vector.

The shipped models classify one band's light curve; an object seen in several bands gets one
probability vector per band. `combine_bands` pools them. The rules compared (docs/surveys.md,
measured on EROS-1's two bands with the shipped models and with models trained per band):

- ``mean``: the average of the bands' vectors (a linear opinion pool);
- ``weighted``: the average weighted by each band's number of points;
- ``product``: the normalised product (a log-linear pool: each band is independent evidence, the
  models being trained on balanced classes, so no prior is divided out);
- ``confident``: the vector of the band whose top probability is highest.

``DEFAULT_RULE`` is the one the broker publishes.
"""

from __future__ import annotations

import numpy as np

RULES = ("mean", "weighted", "product", "confident")
DEFAULT_RULE = "mean"
_FLOOR = 1e-12  # a band's zero probability must not veto a class in the product


def combine_bands(probs: np.ndarray, n_points: np.ndarray, rule: str = DEFAULT_RULE) -> np.ndarray:
    """Probabilities ``(k, n_classes)`` of one object's k bands (k >= 1) and their point counts
    ``(k,)`` -> one probability vector ``(n_classes,)`` that sums to 1."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] < 1:
        raise ValueError(f"probabilities shaped {probs.shape}: expected (bands >= 1, classes)")
    n = np.asarray(n_points, dtype=np.float64)
    if n.shape != (probs.shape[0],):
        raise ValueError(f"{n.shape} point counts for {probs.shape[0]} bands")
    if rule == "mean":
        out = probs.mean(axis=0)
    elif rule == "weighted":
        out = (n[:, None] * probs).sum(axis=0) / n.sum() if n.sum() > 0 else probs.mean(axis=0)
    elif rule == "product":
        log = np.log(np.maximum(probs, _FLOOR)).sum(axis=0)
        out = np.exp(log - log.max())
    elif rule == "confident":
        out = probs[int(np.argmax(probs.max(axis=1)))].copy()
    else:
        raise ValueError(f"unknown rule {rule!r}; expected one of {', '.join(RULES)}")
    return out / out.sum()
