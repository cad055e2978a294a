"""Where the broker's model comes from, and hot reload between batches (pure, no Kafka).

The model setting names one of:

- ``default``: the shipped model (``models/default/``, or ``$DMDT_MODEL_DIR``);
- a model directory written by ``dmdt-train fit``;
- a registry directory written by ``dmdt-train publish MODEL_DIR --registry DIR``: the model its
  ``CURRENT`` file names is served, and ``CURRENT`` is watched.

Watching costs one ``stat`` of ``CURRENT`` per check, at most every ``check_interval_s``; the app
checks between batches, so a batch is classified by exactly one model. A new version is loaded and
verified (content hash) before it replaces the old one; a load that fails keeps the old model,
counts ``dmdt_model_load_failures_total`` and is retried only when ``CURRENT`` changes again.
A model whose grid differs from the state's grid is refused the same way (the stored histograms
are binned on the old grid; switching grids needs a restart with fresh state).

A model directory is either a dmdt CNN (`dmdt.classify.Classifier`) or a feature model (the
dmdt counts plus per-source periodic features, see broker.features): a hybrid model
(`dmdt.hybrid.HybridClassifier`, LightGBM) or a branch net (`dmdt.branchnet.BranchNetClassifier`,
torch on the model's device), told apart by their model.json's kind; all are served the same
way, hot reload included, and a reload may switch from one kind to another on the same grid.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Literal

import numpy as np

from broker.features import FeatureModel
from dmdt.artifact import CURRENT_FILE, ArtifactError, current_model, resolve_model_dir
from dmdt.classify import Classifier
from dmdt.feature_models import feature_model_kind
from dmdt.grids import Grid

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """A loaded classifier and the identity every output record carries."""

    classifier: Classifier | FeatureModel
    name: str  # classifier_name: architecture and grid, e.g. "dmdt-shallow-paper"
    version: str  # classifier_version: the registry version (creation time and hash prefix)
    content_hash: str  # model_hash
    min_points: int  # sources with fewer distinct points are not classified
    kind: Literal["cnn", "hybrid"] = "cnn"

    @property
    def grid(self) -> Grid:
        """The dmdt grid the model reads counts on (the state's grid)."""
        return self.classifier.grid

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in the order of the probabilities."""
        return tuple(self.classifier.classes)

    @classmethod
    def of(cls, classifier: Classifier, min_points: int | None = None) -> ServedModel:
        """Identity of a classifier; min_points defaults to the one the model was trained with."""
        model = classifier.model
        trained = model.min_points  # the cleaning threshold recorded at training
        return cls(
            classifier=classifier,
            name=f"dmdt-{model.net_config.arch}-{model.grid.name}",
            version=model.version,
            content_hash=model.content_hash,
            min_points=max(2, int(trained if min_points is None else min_points)),
        )

    @classmethod
    def of_hybrid(
        cls, model: FeatureModel, content_hash: str, min_points: int | None = None
    ) -> ServedModel:
        """Identity of a hybrid model (its name and version; the content hash of its files)."""
        trained = model.min_points
        return cls(
            classifier=model,
            name=model.name,
            version=model.version,
            content_hash=content_hash,
            min_points=max(2, int(trained if min_points is None else min_points)),
            kind="hybrid",
        )


def hybrid_module() -> ModuleType:
    """`dmdt.hybrid`, imported on first use (LightGBM and light-curve are only needed there)."""
    from dmdt import hybrid

    return hybrid


def is_hybrid_dir(path: str | os.PathLike[str]) -> bool:
    """True when a model directory holds a feature model, served through the feature cache: a
    hybrid model or a branch net (a CNN directory has no model.json)."""
    if not (Path(path) / "model.json").is_file():
        return False
    return is_branchnet_dir(path) or bool(hybrid_module().is_hybrid_model(path))


def is_branchnet_dir(path: str | os.PathLike[str]) -> bool:
    """True when a model directory holds a branch net (dmdt/branchnet.py)."""
    return feature_model_kind(path) == "branchnet"


def warm_up(served: ServedModel) -> None:
    """One tiny classification, so that the first batch does not pay for initialisation."""
    zeros = np.zeros((1, *served.grid.shape), dtype=np.int32)
    clf = served.classifier
    if isinstance(clf, Classifier):
        clf.classify_counts(zeros, [2])
        return
    # a noisy sinusoid of min_points points: LightGBM, light-curve and torch all run once
    n = max(served.min_points, 20)
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0.0, 400.0, n))
    m = 15.0 + 0.3 * np.sin(2 * np.pi * t / 0.61) + rng.normal(0.0, 0.02, n)
    err = np.full(n, 0.02)
    vector = np.asarray(clf.features(t, m, err), dtype=np.float64)[None]  # (1, F)
    clf.classify(zeros, np.array([n]), vector)


def is_registry(path: str | os.PathLike[str]) -> bool:
    """True when the path is a model registry (a folder with a CURRENT file)."""
    return (Path(path) / CURRENT_FILE).is_file()


class ModelSource:
    """The model to serve now; `maybe_reload()` between batches picks up a newly published one."""

    def __init__(
        self,
        spec: str | os.PathLike[str] = "default",
        device: str = "auto",
        *,
        min_points: int | None = None,
        check_interval_s: float = 1.0,
        on_load: Callable[[ServedModel], None] | None = None,
        on_failure: Callable[[Exception], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = str(spec)
        self.device = device
        self.min_points = min_points
        self.check_interval_s = check_interval_s
        self.on_load = on_load
        self.on_failure = on_failure
        self._clock = clock
        path = Path(self.spec)
        self.registry: Path | None = path if self.spec != "default" and is_registry(path) else None
        self._stamp = self._current_stamp()
        self._next_check = self._clock() + check_interval_s
        # The first load must succeed: a broker without a model cannot classify anything.
        target = current_model(self.registry) if self.registry else resolve_model_dir(self.spec)
        if target is None:
            raise ArtifactError(f"registry {self.registry} has no published model yet")
        self.current = self._load(target)
        self._path = target
        if self.on_load is not None:
            self.on_load(self.current)

    def _load(self, path: Path) -> ServedModel:
        if is_hybrid_dir(path):
            if is_branchnet_dir(path):
                from dmdt.branchnet import BranchNetClassifier  # torch and light-curve

                model = BranchNetClassifier.load(path, self.device)
            else:
                model = hybrid_module().HybridClassifier.load(path)
            # verified against its manifest, the hash computed from its files
            served = ServedModel.of_hybrid(model, model.content_hash, self.min_points)
        else:
            clf = Classifier.from_checkpoint(path, self.device)
            served = ServedModel.of(clf, self.min_points)
        # torch initialises its CPU kernels on the first call (over a second here): do it now,
        # not in the first batch, so that neither a start nor a reload stalls the stream
        warm_up(served)
        return served

    def _current_stamp(self) -> tuple[int, int, int] | None:
        if self.registry is None:
            return None
        try:
            st = (self.registry / CURRENT_FILE).stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def maybe_reload(self, force: bool = False) -> bool:
        """Load the registry's new CURRENT model if it changed; True when the model switched."""
        if self.registry is None:
            return False
        now = self._clock()
        if not force and now < self._next_check:
            return False
        self._next_check = now + self.check_interval_s
        stamp = self._current_stamp()
        if stamp == self._stamp and not force:
            return False
        self._stamp = stamp
        try:
            target = current_model(self.registry)
            if target is None or target == self._path:
                return False
            served = self._load(target)
            old_grid = self.current.grid
            if served.grid != old_grid:
                raise ArtifactError(
                    f"model {served.version} uses grid {served.grid.name!r}, the "
                    f"state holds histograms on {old_grid.name!r}: restart to switch grids"
                )
        except Exception as exc:  # keep serving the old model, whatever went wrong
            log.error("model reload from %s failed, keeping %s: %s", self.registry,
                      self.current.version, exc)  # fmt: skip
            if self.on_failure is not None:
                self.on_failure(exc)
            return False
        log.info("model %s -> %s", self.current.version, served.version)
        self.current, self._path = served, target
        if self.on_load is not None:
            self.on_load(served)
        return True
