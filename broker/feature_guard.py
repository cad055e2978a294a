"""A guard around a model's feature computation: one source's history never stops a batch.

A model's ``features`` (`dmdt.model.Model`: a hybrid model, a branch net) runs a period search
(light-curve's Rust code and numpy) on a source's whole history. The decoders refuse absurd times
(broker.sanity), but a history may hold them all the same (a store written by an older version
keeps its points for good), and a bug or a corner case of a feature library must not stop the
stream. `GuardedFeatures` wraps the
model the pipeline hands to `broker.features.FeatureCache`:

- a history spanning more than `MAX_BASELINE_DAYS` is not searched at all (reason
  ``baseline``): the search's cost grows with the baseline (one point at MJD 1e8 cost 5.5 s and
  3.6 GB; 1e9 and more ran out of memory), and no survey spans more than 80,000 days;
- an exception, or light-curve's Rust panic (``PanicException``, a BaseException), is caught
  (reason ``failed``).

Either way the source gets a vector of NaN, as before its first refresh (LightGBM reads missing
values; the dmdt counts still speak) and its alert its classification; nothing is dead-lettered
(the alert is valid, its source's history is not), and the pipeline counts the reason
(``dmdt_feature_failures_total``). The cache keeps the NaN vector, so the source is tried again
only when its points grow by the refresh policy's step.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from dmdt.model import Model

log = logging.getLogger(__name__)

MAX_BASELINE_DAYS = 100_000.0  # broker.sanity's widest time window is 80,000 days


def _is_panic(exc: BaseException) -> bool:
    """pyo3's PanicException (not importable by name; a BaseException subclass)."""
    return type(exc).__name__ == "PanicException"


class GuardedFeatures:
    """A model whose ``features`` never raises and never searches an absurd baseline;
    ``failures`` counts what it refused or caught, by reason (thread-safe)."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.failures: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)  # name, classes, grid, feature_names, ...

    def _failed(self, reason: str, what: str) -> np.ndarray:
        with self._lock:
            self.failures[reason] += 1
        log.warning("features of a source not computed (%s): %s", reason, what)
        return np.full(len(self.model.feature_names), np.nan)

    def _refused(self, t: np.ndarray) -> bool:
        """True (counted) for a history whose baseline no period search can take."""
        span = float(np.max(t) - np.min(t)) if t.size > 1 else 0.0
        if span <= MAX_BASELINE_DAYS:  # False for NaN too
            return False
        self._failed("baseline", f"history spans {span:g} days")
        return True

    def features(self, t: np.ndarray, m: np.ndarray, err: np.ndarray) -> np.ndarray:
        """The model's feature vector, or NaN (counted) when refused or failed."""
        if self._refused(t):
            return np.full(len(self.model.feature_names), np.nan)
        return self._guarded(t, m, err)

    def _guarded(self, t: np.ndarray, m: np.ndarray, err: np.ndarray) -> np.ndarray:
        """The model's feature vector, or NaN (counted) when its code fails or panics."""
        try:
            return self.model.features(t, m, err)
        except Exception as exc:
            return self._failed("failed", f"{type(exc).__name__}: {str(exc)[:200]}")
        except BaseException as exc:
            if not _is_panic(exc):
                raise  # KeyboardInterrupt, SystemExit
            return self._failed("failed", f"{type(exc).__name__}: {str(exc)[:200]}")

    def features_many(
        self, curves: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]
    ) -> np.ndarray:
        """The vectors of many curves ``(n, F)`` in one batched call of the model, with the same
        guard as `features`: absurd baselines are refused before the call, and a failing call is
        redone source by source so that only the source that fails is left without features."""
        width = len(self.model.feature_names)
        out = np.full((len(curves), width), np.nan)
        fine = [i for i, curve in enumerate(curves) if not self._refused(curve[0])]
        if not fine:
            return out
        try:
            rows = np.asarray(self.model.features_many([curves[i] for i in fine]), np.float64)
            out[fine] = rows.reshape(len(fine), width)
            return out
        except Exception:  # one bad source must not cost the others their features
            log.warning("batched features failed: computing them source by source")
        except BaseException as exc:
            if not _is_panic(exc):
                raise
            log.warning("batched features panicked: computing them source by source")
        for i in fine:
            out[i] = self._guarded(*curves[i])
        return out

    def classify(
        self, counts: np.ndarray, n_points: np.ndarray, features: np.ndarray
    ) -> np.ndarray:
        """The model's own classification."""
        return self.model.classify(counts, n_points, features)
