"""Model kind ``cnn`` (format ``dmdt-model/1``): the paper's dmdt-image CNNs, in torch.

A model directory holds three files, and nothing else is needed to rebuild the model::

    model.pt        the network's state_dict (tensors only; loaded with ``weights_only=True``)
    config.json     net config, grid edges, class names, preprocessing, training record, metrics
    MANIFEST.json   sha256 of each file and the content hash over both (the model's identity)

`read_model` recomputes the hashes and refuses an artifact whose files do not match its
manifest (`ArtifactError`, `dmdt.manifest`'s rules, the same for every kind), so a truncated copy
or a hand-edited config never serves alerts. :class:`Classifier` is the kind's `dmdt.model.Model`:
counts in, probabilities out (`dmdt.inference`: preprocessing, fixed-size chunks); it reads no
per-source features.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dmdt import __version__
from dmdt.engine import normalize
from dmdt.grids import Grid
from dmdt.inference import deterministic, images_to_batch, layout, padded_chunks, resolve_device
from dmdt.manifest import (
    MANIFEST_FILE,
    ArtifactError,
    json_bytes,
    read_manifest,
    write_atomic,
    write_manifest,
)
from dmdt.nets import NetConfig, build_net

if TYPE_CHECKING:
    from dmdt.lightcurves import LightCurve
    from dmdt.model import Curve, Predictions

KIND = "cnn"
FORMAT = "dmdt-model/1"
MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
HASHED_FILES = (MODEL_FILE, CONFIG_FILE)  # the files a model is made of (dmdt.manifest.FORMATS)
DEFAULT_MIN_POINTS = 20  # for artifacts that do not record it (dmdt.datasets' default)


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A verified model directory: everything needed to rebuild and run the network."""

    path: Path
    net_config: NetConfig
    grid: Grid
    classes: tuple[str, ...]
    net: torch.nn.Module  # weights loaded, eval mode, CPU
    config: Mapping[str, Any]
    content_hash: str

    @property
    def version(self) -> str:
        """Registry version name: creation time and the first 12 hex digits of the hash."""
        created = str(self.config.get("created", "")).replace("-", "").replace(":", "")
        return f"{created or 'undated'}-{self.content_hash[:12]}"

    @property
    def min_points(self) -> int:
        """The fewest cleaned points a training light curve had (the serving threshold too)."""
        return int(self.config.get("preprocessing", {}).get("min_points", DEFAULT_MIN_POINTS))


def save_model(
    out_dir: str | os.PathLike[str],
    net: torch.nn.Module,
    net_config: NetConfig,
    grid: Grid,
    classes: Sequence[str],
    *,
    preprocessing: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> LoadedModel:
    """Write a model directory (weights, config, manifest last) and return it verified.

    Other files in ``out_dir`` (a README) are left alone. The manifest is written last, so a run
    that dies half-way leaves an artifact that `read_model` refuses rather than a wrong one.
    """
    if len(classes) != net_config.n_classes:
        raise ValueError(f"{len(classes)} class names for a net with {net_config.n_classes}")
    if tuple(grid.shape) != tuple(net_config.input_shape):
        raise ValueError(f"grid shape {grid.shape} != net input shape {net_config.input_shape}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_FILE).unlink(missing_ok=True)
    config = {
        "format": FORMAT,
        "net": net_config.to_dict(),
        "grid": grid.to_dict(),
        "classes": list(classes),
        "preprocessing": dict(preprocessing or {}),
        "training": dict(training or {}),
        "metrics": dict(metrics or {}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "trainer_version": __version__,
    }
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    write_atomic(out / MODEL_FILE, lambda fh: torch.save(state, fh))
    write_atomic(out / CONFIG_FILE, lambda fh: fh.write(json_bytes(config)))
    write_manifest(out, FORMAT, HASHED_FILES)
    return read_model(out)


def read_model(path: str | os.PathLike[str]) -> LoadedModel:
    """Read and verify a CNN model directory."""
    path = Path(path)
    manifest = read_manifest(path, FORMAT)
    manifest.require(HASHED_FILES)
    try:
        config = json.loads(manifest.path(CONFIG_FILE).read_text())
        if config.get("format") != FORMAT:
            raise ArtifactError(f"{path}: format {config.get('format')!r}, expected {FORMAT!r}")
        net_config = NetConfig.from_dict(config["net"])
        grid = Grid.from_dict(config["grid"])
        classes = tuple(str(c) for c in config["classes"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path / CONFIG_FILE} is not a valid model config: {exc!r}") from exc
    if len(classes) != net_config.n_classes or grid.shape != tuple(net_config.input_shape):
        raise ArtifactError(f"{path / CONFIG_FILE}: classes or grid disagree with the net config")
    try:
        state = torch.load(manifest.path(MODEL_FILE), map_location="cpu", weights_only=True)
        net = build_net(net_config)
        net.load_state_dict(state)
    except Exception as exc:  # pickle, zip and shape errors all mean the same thing here
        raise ArtifactError(f"{path / MODEL_FILE} does not load into {net_config}: {exc}") from exc
    return LoadedModel(path, net_config, grid, classes, net.eval(), config, manifest.content_hash)


class Classifier:
    """A loaded CNN on a device: counts in, probabilities out (a `dmdt.model.Model`)."""

    kind = KIND
    feature_names: tuple[str, ...] = ()  # it reads the dmdt counts only
    features_version = None

    def __init__(self, model: LoadedModel, device: str | torch.device = "auto") -> None:
        self.model = model
        self.grid: Grid = model.grid
        self.classes: tuple[str, ...] = model.classes
        self.device = resolve_device(device)
        self._layout, self._chunk = layout(self.device)
        net = model.net.to(self.device)
        self.net = net.to(memory_format=self._layout).eval()  # type: ignore[call-overload]

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "auto") -> Classifier:
        """Read and verify a model directory onto ``device``."""
        return cls(read_model(path), device=device)

    @classmethod
    def from_checkpoint(
        cls, path_or_default: str | os.PathLike[str] = "default", device: str = "auto"
    ) -> Classifier:
        """Load and verify a model directory (``default`` is the shipped model)."""
        from dmdt.registry import resolve_model_dir

        return cls.load(resolve_model_dir(path_or_default), device)

    # --- identity ------------------------------------------------------------------------------

    @property
    def name(self) -> str:
        """Architecture and grid, e.g. ``dmdt-shallow-paper`` (``classifier_name``)."""
        return f"dmdt-{self.model.net_config.arch}-{self.grid.name}"

    @property
    def version(self) -> str:
        """The loaded model's registry version (time and content hash)."""
        return self.model.version

    @property
    def content_hash(self) -> str:
        """sha256 identity of the model directory (computed from its files)."""
        return self.model.content_hash

    @property
    def min_points(self) -> int:
        """The cleaning threshold recorded at training."""
        return self.model.min_points

    @property
    def path(self) -> Path:
        """The model directory."""
        return self.model.path

    @property
    def config(self) -> Mapping[str, Any]:
        """config.json's content."""
        return self.model.config

    @property
    def training(self) -> Mapping[str, Any]:
        """The training record (its held-out ids under ``split.test_ids``)."""
        return dict(self.model.config.get("training", {}))

    @property
    def metrics(self) -> Mapping[str, Any]:
        """The held-out metrics recorded at training."""
        return dict(self.model.config.get("metrics", {}))

    # --- features: none ------------------------------------------------------------------------

    def features(self, t: np.ndarray, m: np.ndarray, err: np.ndarray) -> np.ndarray:
        """No per-source features: an empty vector."""
        return np.zeros(0)

    def features_many(self, curves: Sequence[Curve]) -> np.ndarray:
        """No per-source features: ``(n, 0)``."""
        return np.zeros((len(curves), 0))

    # --- inference -----------------------------------------------------------------------------

    def preprocess(
        self, counts: Sequence[np.ndarray] | np.ndarray, n_points: Sequence[int] | np.ndarray
    ) -> torch.Tensor:
        """Counts of n sources and their point numbers -> float32 ``(n, 1, n_dt, n_dm)``."""
        arr = np.asarray(counts)
        if arr.ndim == 2:
            arr = arr[None]
        if arr.shape[1:] != self.grid.shape:
            raise ValueError(
                f"counts shaped {arr.shape[1:]}, but model {self.version} uses grid "
                f"{self.grid.name!r} of shape {self.grid.shape}"
            )
        n = np.asarray(n_points, dtype=np.int64).reshape(-1)
        if n.size != arr.shape[0]:
            raise ValueError(f"{arr.shape[0]} count arrays but {n.size} point numbers")
        return images_to_batch(normalize(arr, n))  # (batch, 1, n_dt, n_dm)

    def predict(self, batch: torch.Tensor, batch_size: int | None = None) -> np.ndarray:
        """Class probabilities ``(batch, n_classes)`` float32 of a preprocessed batch."""
        if batch.ndim != 4 or tuple(batch.shape[1:]) != (1, *self.grid.shape):
            raise ValueError(f"expected (batch, 1, {self.grid.shape}), got {tuple(batch.shape)}")
        out = []
        with deterministic(), torch.inference_mode():
            for (chunk,), n in padded_chunks([batch], batch_size or self._chunk):
                chunk = chunk.to(self.device).contiguous(memory_format=self._layout)
                logits = self.net(chunk)[:n]  # (b, n_classes)
                out.append(torch.softmax(logits.float(), dim=1).cpu().numpy())
        if not out:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def classify_counts(
        self, counts: Sequence[np.ndarray] | np.ndarray, n_points: Sequence[int] | np.ndarray
    ) -> np.ndarray:
        """``predict(preprocess(counts, n_points))``."""
        return self.predict(self.preprocess(counts, n_points))

    def classify(
        self,
        counts: np.ndarray,
        n_points: Sequence[int] | np.ndarray,
        features: np.ndarray | None = None,
    ) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` float32 from dmdt pair ``counts`` ``(n, n_dt,
        n_dm)`` and the curves' point numbers (``features`` has no column: unused)."""
        return self.classify_counts(counts, n_points)

    def classify_lightcurves(self, lcs: Sequence[LightCurve]) -> Predictions:
        """Probabilities for cleaned light curves, on this model's grid."""
        from dmdt.model import classify_lightcurves

        return classify_lightcurves(self, lcs)
