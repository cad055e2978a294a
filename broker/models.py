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

Every model kind is served the same way (`dmdt.model.load_model` recognises it; a hybrid model
never imports torch), hot reload included, and a reload may switch from one kind to another on
the same grid.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmdt.engine import counts
from dmdt.grids import Grid
from dmdt.manifest import ArtifactError
from dmdt.model import Model, load_model
from dmdt.registry import CURRENT_FILE, current_model, is_registry, resolve_model_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedModel:
    """A loaded model and the threshold it is served with; its identity goes in every output."""

    classifier: Model
    min_points: int  # sources with fewer distinct points are not classified

    @classmethod
    def of(cls, model: Model, min_points: int | None = None) -> ServedModel:
        """Serve ``model``; min_points defaults to the one the model was trained with."""
        trained = model.min_points  # the cleaning threshold recorded at training
        return cls(model, max(2, int(trained if min_points is None else min_points)))

    @property
    def name(self) -> str:
        """classifier_name: e.g. ``dmdt-shallow-paper`` (a CNN) or the model's own name."""
        return self.classifier.name

    @property
    def version(self) -> str:
        """classifier_version: the model's version (its content hash's prefix in it)."""
        return self.classifier.version

    @property
    def content_hash(self) -> str:
        """model_hash: computed from the files the model was loaded from."""
        return self.classifier.content_hash

    @property
    def kind(self) -> str:
        """cnn, hybrid or branchnet (for the logs and the announcement; callers do not fork)."""
        return self.classifier.kind

    @property
    def grid(self) -> Grid:
        """The dmdt grid the model reads counts on (the state's grid)."""
        return self.classifier.grid

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names in the order of the probabilities."""
        return tuple(self.classifier.classes)

    @property
    def reads_features(self) -> bool:
        """True when the model reads per-source features (broker.features keeps them)."""
        return bool(self.classifier.feature_names)


def warm_up(served: ServedModel) -> None:
    """One tiny classification, features included, so that the first batch does not pay for
    initialisation (torch's kernels, LightGBM, the period search)."""
    n = min(max(served.min_points, 20), 1000)  # a noisy sinusoid of min_points points (capped)
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0.0, 400.0, n))
    m = 15.0 + 0.3 * np.sin(2 * np.pi * t / 0.61) + rng.normal(0.0, 0.02, n)
    err = np.full(n, 0.02)
    model = served.classifier
    features = np.asarray(model.features_many([(t, m, err)]), dtype=np.float64)  # (1, F)
    model.classify(counts(t, m, served.grid)[None], np.array([n]), features)


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
        # verified against its manifest, the hash computed from its files
        served = ServedModel.of(load_model(path, self.device), self.min_points)
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
