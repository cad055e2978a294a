"""How a model's answers survive other cadences (research.cadence writes docs/cadence.md).

Two measurements of any model directory (dmdt CNN, hybrid or branchnet):

- the held-out CRTS part (20% of each of the seven classes, stratified, seed 0: no model here
  trained on it) as it is and thinned by trainer.cadence (one point per night, ZTF-like,
  Rubin-like; seed :data:`EVAL_SEED`, not the training copies' seed): accuracy, macro-F1,
  per-class recall; curves left with fewer than the model's ``min_points`` are counted, not
  classified (a broker would not classify them either);
- EROS-1 (LMC, 1990s, one point per night, B and R bands each a source, as a broker keeps them):
  what the model calls each EROS-1 class, and the share called right under :data:`EROS_RIGHT`.

Features are computed once per set of curves and cached (trainer.feature_cache.cached_matrix).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from dmdt.lightcurves import LightCurve
from dmdt.model import lightcurve_counts
from trainer import cadence, data
from trainer.evaluate import classification_metrics
from trainer.split import HELD_OUT, fold_ids

EVAL_SEED = 2  # the measurement's thinning (training copies: trainer.training_rows, seed 1)
# an EROS-1 class -> the CRTS classes that count as calling it right (Cepheids have none)
EROS_RIGHT: dict[str, tuple[str, ...]] = {
    "RRLyrae": ("RRab", "RRc", "RRd"),
    "EB": ("EW", "EA"),
    "Mira": ("LPV",),
    "Cepheid": (),
}
EROS_BANDS = ("B", "R")


def model_kind(path: str | Path) -> str:
    """``cnn``, ``hybrid`` or ``branchnet``: what kind of model directory ``path`` (or
    ``default``) holds."""
    from dmdt.model import model_kind

    return model_kind(path)


def load(path: str | Path) -> Any:
    """A model directory (or ``default``) of any kind on CPU (`dmdt.model.load_model`)."""
    from dmdt.model import load_model

    return load_model(path, "cpu")


@dataclass
class Curves:
    """The curves a measurement scores, by set: ``crts`` (every cleaned CRTS curve of the seven
    classes), its thinned copies (``nightly``, ``ztf``, ``rubin``), ``eros1`` (both bands)."""

    cache: Path | None
    classes: tuple[str, ...] = data.PAPER_CLASSES
    _sets: dict[str, list[LightCurve]] = field(default_factory=dict)
    _features: dict[tuple[str, tuple[str, ...]], np.ndarray] = field(default_factory=dict)

    @cached_property
    def crts(self) -> list[LightCurve]:
        """Every cleaned CRTS curve of the seven classes (sorted by id, as the trainers)."""
        return data.load("crts", classes=self.classes)

    @cached_property
    def labels(self) -> np.ndarray:
        """Class index of each :attr:`crts` curve."""
        return np.array([self.classes.index(str(lc.label)) for lc in self.crts], dtype=np.int64)

    @cached_property
    def folds(self) -> np.ndarray:
        """-1 for the held-out part, else the fold 0..4 (trainer.split.fold_ids)."""
        return fold_ids(self.labels)

    def curves(self, name: str) -> list[LightCurve]:
        """The curves of set ``name``: a cadence of :mod:`trainer.cadence` (CRTS curves, thinned
        with seed :data:`EVAL_SEED`) or ``eros1``."""
        if name not in self._sets:
            if name == "eros1":
                self._sets[name] = data.load("eros1")  # days since the EROS epoch: no MJD rule
            elif name == "crts":
                self._sets[name] = self.crts
            else:
                self._sets[name] = cadence.thinned(self.crts, name, EVAL_SEED)
        return self._sets[name]

    def features(self, name: str, views: Sequence[str]) -> np.ndarray:
        """Periodic features of ``views`` of every curve of set ``name``, side by side (cached
        by view and the curves' hash, as fit-hybrid caches them)."""
        from trainer.hybrid_fit import features_of

        key = (name, tuple(views))
        if key not in self._features:
            self._features[key] = features_of(self.curves(name), self.cache, tuple(views))[0]
        return self._features[key]


def probabilities(model: Any, curves: Curves, name: str, idx: np.ndarray) -> np.ndarray:
    """Class probabilities ``(len(idx), n_classes)`` by ``model`` (as :func:`load` gives, or a
    feature model in memory) of the curves ``idx`` of set ``name``, through the calls the broker
    makes (features from the cache)."""
    from dmdt.cnn import Classifier

    lcs = curves.curves(name)
    part = [lcs[i] for i in idx]
    if not part:
        return np.zeros((0, len(model.classes)))
    if isinstance(model, Classifier):
        return np.asarray(model.classify_lightcurves(part).probabilities, dtype=np.float64)
    counts, n_points = lightcurve_counts(part, model.grid)
    x = curves.features(name, getattr(model, "views", ["curve"]))[idx]
    return np.asarray(model.classify(counts, n_points, x), dtype=np.float64)


def min_points_of(model: Any) -> int:
    """The fewest points the model classifies (its training threshold)."""
    inner = getattr(model, "model", model)  # a Classifier's LoadedModel, else the model
    return int(getattr(inner, "min_points", 20))


def score_crts(model: Any, curves: Curves, test: np.ndarray) -> dict[str, Any]:
    """Per cadence, the metrics of ``model`` on the CRTS curves ``test`` thinned to it (those
    left with fewer than the model's ``min_points`` counted apart, not classified)."""
    out: dict[str, Any] = {}
    classes = list(model.classes)
    y = curves.labels[test]
    for name in cadence.CADENCES:
        lcs = curves.curves(name)
        sizes = np.array([len(lcs[i]) for i in test])
        ok = sizes >= min_points_of(model)
        probs = probabilities(model, curves, name, test[ok])
        result = classification_metrics(y[ok], probs.argmax(axis=1), classes)
        result.pop("classes")
        result["too_short"] = int((~ok).sum())
        result["median_points"] = float(np.median(sizes))
        hit = np.full(test.size, "-")  # per test curve: 1 right, 0 wrong, - too short
        hit[ok] = np.where(probs.argmax(axis=1) == y[ok], "1", "0")
        result["right"] = "".join(hit.tolist())
        out[name] = result
    return out


def score_eros(model: Any, curves: Curves) -> dict[str, Any]:
    """Per band and EROS-1 class: how many curves, the share called each model class, the share
    called right (:data:`EROS_RIGHT`); and the mean of that share over the three classes that
    have a CRTS counterpart."""
    classes = list(model.classes)
    lcs = curves.curves("eros1")
    every = np.arange(len(lcs))
    pred = probabilities(model, curves, "eros1", every).argmax(axis=1)
    bands = np.array([str(lc.band) for lc in lcs])
    truth = np.array([str(lc.label) for lc in lcs])
    out: dict[str, Any] = {}
    for band in EROS_BANDS:
        per_class: dict[str, Any] = {}
        for label, right in EROS_RIGHT.items():
            mask = (bands == band) & (truth == label)
            called = np.bincount(pred[mask], minlength=len(classes)) / max(int(mask.sum()), 1)
            per_class[label] = {
                "n": int(mask.sum()),
                "called": {c: round(float(v), 4) for c, v in zip(classes, called, strict=True)},
                "right": round(float(sum(called[classes.index(c)] for c in right)), 4)
                if right
                else None,
            }
        shares = [v["right"] for v in per_class.values() if v["right"] is not None]
        out[band] = {"classes": per_class, "mean_right": round(float(np.mean(shares)), 4)}
    return out


def measure_model(path: str | Path, curves: Curves) -> dict[str, Any]:
    """:func:`score_crts` on the held-out part and :func:`score_eros` of a model directory."""
    import time

    model = load(path)
    if tuple(model.classes) != curves.classes:
        raise ValueError(f"{path}: classes {list(model.classes)}, measured: {curves.classes}")
    t0 = time.perf_counter()
    test = np.flatnonzero(curves.folds == HELD_OUT)
    return {
        "path": str(path),
        "kind": model_kind(path),
        "version": str(getattr(model, "version", "")),
        "held_out": score_crts(model, curves, test),
        "eros1": score_eros(model, curves),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def cadence_mean(scores: dict[str, Any], key: str = "accuracy") -> float:
    """The mean of ``key`` over the cadences of one part's :func:`score_crts`."""
    return float(np.mean([scores[c][key] for c in cadence.CADENCES]))


def paired_bootstrap(a: dict[str, Any], b: dict[str, Any], draws: int = 2000) -> dict[str, float]:
    """The difference a - b of the accuracy averaged over the cadences, on the same curves
    (:func:`score_crts`'s ``right`` strings; curves too short for either left out), and its
    standard error over ``draws`` bootstrap resamples of the curves (seed 0)."""
    names = list(cadence.CADENCES)
    ra = np.array([list(a[c]["right"]) for c in names])  # (cadences, curves)
    rb = np.array([list(b[c]["right"]) for c in names])
    ok = (ra != "-") & (rb != "-")
    diff = np.where(ok, (ra == "1").astype(float) - (rb == "1").astype(float), 0.0)
    weight = ok.astype(float)

    def mean_of(idx: np.ndarray) -> float:
        return float(np.mean(diff[:, idx].sum(axis=1) / weight[:, idx].sum(axis=1)))

    rng = np.random.default_rng(0)
    n = ra.shape[1]
    boot = [mean_of(np.asarray(rng.integers(0, n, n))) for _ in range(draws)]
    return {"difference": mean_of(np.arange(n)), "standard_error": float(np.std(boot))}
