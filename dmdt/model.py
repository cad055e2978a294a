"""What a model is to its callers, and the one loader of every model kind.

A model classifies a batch of sources from their dmdt pair counts (the state keeps them exact
and incremental) and, for the kinds that read them, a per-source feature vector (periods,
harmonics, shape: `dmdt.periodic`) that is a pure function of a source's points and costs tens
of milliseconds, so that the stream refreshes it only now and then. The kinds:

======== =================== ================================================== ==========
kind     format              what it is                                          needs
======== =================== ================================================== ==========
cnn      dmdt-model/1        the paper's dmdt-image CNN (`dmdt.cnn`)            torch
hybrid   dmdt-hybrid/1       LightGBM on periodic features (`dmdt.hybrid`)      lightgbm
branchnet dmdt-branchnet/1   a net over the image and the features              torch
                             (`dmdt.branchnet`)
======== =================== ================================================== ==========

`load_model` recognises the kind by the format its MANIFEST.json names (`dmdt.manifest`) and
imports that kind's module only: serving a hybrid model never imports torch, nor a CNN LightGBM.
Callers never ask which kind they hold: a model that reads no features has no
``feature_names`` and takes a ``(n, 0)`` features matrix.
"""

from __future__ import annotations

import importlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from dmdt.engine import counts_many
from dmdt.grids import Grid
from dmdt.manifest import ArtifactError, recorded_format
from dmdt.registry import resolve_model_dir

if TYPE_CHECKING:
    from dmdt.lightcurves import LightCurve

Curve = tuple[np.ndarray, np.ndarray, np.ndarray]  # (t, m, err) of one source

# model format -> (kind, module, class with ``load(path, device)``)
KINDS: dict[str, tuple[str, str, str]] = {
    "dmdt-model/1": ("cnn", "dmdt.cnn", "Classifier"),
    "dmdt-hybrid/1": ("hybrid", "dmdt.hybrid", "HybridClassifier"),
    "dmdt-branchnet/1": ("branchnet", "dmdt.branchnet", "BranchNetClassifier"),
}
CONFIG_KIND_FILE = "model.json"  # a feature model's config names its kind (a CNN has none)
FEATURE_CHUNK = 256  # sources per features_many call (memory of one batched period search)


class Model(Protocol):
    """What the broker, the trainer's evaluate / predict and the tools use of a loaded model."""

    @property
    def kind(self) -> str:
        """cnn, hybrid or branchnet."""
        ...

    @property
    def name(self) -> str:
        """classifier_name in every output."""
        ...

    @property
    def version(self) -> str:
        """classifier_version: its name or creation time, and its content hash's prefix."""
        ...

    @property
    def content_hash(self) -> str:
        """model_hash: the sha256 identity computed from its files (dmdt.manifest)."""
        ...

    @property
    def grid(self) -> Grid:
        """The dmdt grid its counts are binned on."""
        ...

    @property
    def min_points(self) -> int:
        """The fewest cleaned points of a training curve (the serving threshold)."""
        ...

    @property
    def features_version(self) -> int | None:
        """The version of the periodic features it reads (None: it reads none)."""
        ...

    @property
    def classes(self) -> Sequence[str]:
        """Class names in the order of the probabilities."""
        ...

    @property
    def feature_names(self) -> Sequence[str]:
        """The per-source features it reads; empty: it reads the counts only."""
        ...

    @property
    def path(self) -> Path | None:
        """The model directory it was loaded from (None: not saved)."""
        ...

    @property
    def training(self) -> Mapping[str, Any]:
        """The training record: held-out ids, training-data hash, options."""
        ...

    @property
    def metrics(self) -> Mapping[str, Any]:
        """Held-out metrics recorded at training."""
        ...

    def features(self, t: np.ndarray, m: np.ndarray, err: np.ndarray) -> np.ndarray:
        """One source's feature vector ``(F,)`` float64 (expensive; NaN where undefined)."""
        ...

    def features_many(self, curves: Sequence[Curve]) -> np.ndarray:
        """The vectors of many sources ``(n, F)`` in one call (rows equal `features`)."""
        ...

    def classify(
        self, counts: np.ndarray, n_points: np.ndarray, features: np.ndarray
    ) -> np.ndarray:
        """Counts ``(n, n_dt, n_dm)``, point numbers ``(n,)``, features ``(n, F)`` ->
        probabilities ``(n, n_classes)``, rows summing to 1."""
        ...


@dataclass(frozen=True)
class Predictions:
    """Per-source class probabilities from one model."""

    source_ids: tuple[str, ...]
    classes: tuple[str, ...]
    probabilities: np.ndarray  # (n, n_classes), rows sum to 1

    @property
    def labels(self) -> list[str]:
        """The most probable class of each source."""
        return [self.classes[i] for i in self.probabilities.argmax(axis=1)]


def model_format(path: str | os.PathLike[str]) -> str:
    """The format of a model directory: the one its manifest names, else (no readable manifest)
    the one its config names, so that the kind's loader says what is wrong with it."""
    recorded = recorded_format(path)
    if recorded in KINDS:
        return recorded
    try:
        kind = json.loads((Path(path) / CONFIG_KIND_FILE).read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        kind = None
    for fmt, (name, _, _) in KINDS.items():
        if name == kind:
            return fmt
    return "dmdt-model/1"  # a CNN directory has no model.json


def model_kind(path: str | os.PathLike[str]) -> str:
    """``cnn``, ``hybrid`` or ``branchnet``: the kind of a model directory (or ``default``, or
    a registry's CURRENT)."""
    return KINDS[model_format(resolve_model_dir(path))][0]


def load_model(path_or_name: str | os.PathLike[str] = "default", device: str = "cpu") -> Model:
    """Load and verify a model of any kind: ``default`` (the shipped model, or
    ``$DMDT_MODEL_DIR``), a model directory, or a registry (its CURRENT version); ``device``
    is where a torch model runs (``auto``: CUDA when present). ArtifactError when it is not a
    valid model directory."""
    path = resolve_model_dir(path_or_name)
    if not path.is_dir():
        raise ArtifactError(f"model directory {path} does not exist")
    _, module, name = KINDS[model_format(path)]
    kind = getattr(importlib.import_module(module), name)
    model: Model = kind.load(path, device)
    return model


def lightcurve_counts(lcs: Sequence[LightCurve], grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Pair counts ``(n, n_dt, n_dm)`` and point numbers ``(n,)`` of cleaned light curves."""
    counts = counts_many([(lc.t, lc.m) for lc in lcs], grid)
    n_points = np.array([len(lc.t) for lc in lcs], dtype=np.int64)
    return counts, n_points


def classify_lightcurves(
    model: Model, lcs: Sequence[LightCurve], feature_points: Mapping[str, int] | None = None
) -> Predictions:
    """Probabilities of cleaned light curves, through the calls the broker makes: counts of the
    whole curves, and features of each curve's first ``feature_points[source_id]`` points (all
    of them by default; 0: none yet, a row of NaN, as the stream before a source's first
    refresh)."""
    counts, n_points = lightcurve_counts(lcs, model.grid)
    width = len(model.feature_names)
    features = np.full((len(lcs), width), np.nan)
    if width:
        cut = [len(lc) if feature_points is None else feature_points.get(lc.source_id, 0)
               for lc in lcs]  # fmt: skip
        todo = [i for i, k in enumerate(cut) if k > 0]
        for start in range(0, len(todo), FEATURE_CHUNK):
            rows = todo[start : start + FEATURE_CHUNK]
            curves = [(lcs[i].t[: cut[i]], lcs[i].m[: cut[i]], lcs[i].err[: cut[i]]) for i in rows]
            features[rows] = model.features_many(curves)
    probs = model.classify(counts, n_points, features)
    return Predictions(tuple(lc.source_id for lc in lcs), tuple(model.classes), probs)


def held_out_ids(model: Model) -> frozenset[str]:
    """Source ids a model held out of its training, as its training record lists them (a CNN
    under ``split.test_ids``, a feature model under ``held_out_ids``); empty when none."""
    training = model.training
    ids = training.get("held_out_ids") or training.get("split", {}).get("test_ids", [])
    return frozenset(str(i) for i in ids)
