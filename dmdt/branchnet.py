"""Model kind ``branchnet`` (format ``dmdt-branchnet/1``): a network over the dmdt image and the
periodic features (torch).

The dmdt image says how the magnitude differences of a source's pairs of points spread over time
lags; it does not hold the period, the light curve folded at it, the amplitude in magnitudes or
the noise level. This net reads both: the paper's shallow CNN on the image (conv 16@5x5, maxpool
2, conv 64@5x5 -> dense 64) beside an MLP on the periodic features of dmdt/periodic.py
(quantile-normalised; a missing value is 0 beside an indicator), the two embeddings concatenated
-> dense 64 -> classes; several members (seeds) trained apart, their probabilities averaged.

It is a `dmdt.model.Model` that reads features, as a hybrid model (``features(t, m, err)`` per
source, refreshed now and then by the stream; ``classify(counts, n_points, features)`` per batch)
and classifies a batch as the CNN does (`dmdt.inference`): torch on the GPU when there is one,
else the CPU, in chunks of one fixed size (the last padded), so that a source's probabilities
never depend on the batch it came in.

A model directory holds ``model.json`` (kind ``branchnet``: classes, grid, feature names and
version, the net's config, temperature, training record, metrics), ``weights.pt`` (the state dict:
every member's weights and the feature scaler's quantiles; loaded with ``weights_only=True``) and
``MANIFEST.json`` (sha256 of both; checked on load).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from scipy.special import ndtri
from torch import nn

from dmdt import periodic
from dmdt.engine import normalize
from dmdt.grids import Grid
from dmdt.inference import deterministic, images_to_batch, layout, padded_chunks, resolve_device
from dmdt.lightcurves import LightCurve, clean
from dmdt.manifest import (
    MANIFEST_FILE,
    ArtifactError,
    json_bytes,
    read_manifest,
    write_atomic,
    write_manifest,
)

if TYPE_CHECKING:
    from dmdt.model import Predictions

KIND = "branchnet"
FORMAT = "dmdt-branchnet/1"
CONFIG_FILE = "model.json"
WEIGHTS_FILE = "weights.pt"
QUANTILE_CLIP = 1e-7  # as scikit-learn's QuantileTransformer: normal scores within +-5.2


@dataclass(frozen=True)
class BranchNetConfig:
    """What rebuilds the net (saved in model.json as ``net``)."""

    n_features: int  # periodic features in
    missing: tuple[int, ...]  # feature columns that get a missing-value indicator
    n_classes: int
    image_shape: tuple[int, int] = (24, 22)  # (n_dt, n_dm)
    members: int = 3
    n_quantiles: int = 200
    hidden: int = 128
    embedding: int = 64
    dropout: float = 0.3

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        d = asdict(self)
        d["missing"], d["image_shape"] = list(self.missing), list(self.image_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BranchNetConfig:
        """Rebuild a config saved by :meth:`to_dict` (unknown keys are an error)."""
        d = dict(d)
        d["missing"] = tuple(int(i) for i in d["missing"])
        d["image_shape"] = tuple(int(s) for s in d["image_shape"])
        return cls(**d)


class BranchMember(nn.Module):
    """One member: shallow dmdt CNN -> 64 and feature MLP -> 64, concatenated -> classes."""

    def __init__(self, cfg: BranchNetConfig) -> None:
        super().__init__()
        h, w = cfg.image_shape
        h, w = (h - 4) // 2 - 4, (w - 4) // 2 - 4  # conv 5, pool 2, conv 5: 24x22 -> 6x5
        if h < 1 or w < 1:
            raise ValueError(f"image {cfg.image_shape} too small for two 5x5 convolutions")
        self.image = nn.Sequential(
            nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),  # (b, 16, 10, 9)
            nn.Conv2d(16, 64, 5), nn.ReLU(), nn.Flatten(),  # (b, 64 * 6 * 5)
            nn.Dropout(cfg.dropout), nn.Linear(64 * h * w, cfg.embedding), nn.ReLU(),
        )  # fmt: skip
        self.features = nn.Sequential(
            nn.Linear(cfg.n_features + len(cfg.missing), cfg.hidden), nn.GELU(),
            nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, cfg.embedding), nn.GELU(),
        )  # fmt: skip
        self.head = nn.Sequential(
            nn.Dropout(cfg.dropout), nn.Linear(2 * cfg.embedding, cfg.embedding), nn.GELU(),
            nn.Linear(cfg.embedding, cfg.n_classes),
        )  # fmt: skip

    def forward(self, image: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """(b, 1, n_dt, n_dm) images, (b, F + M) scaled features -> (b, n_classes) logits."""
        return self.head(torch.cat([self.image(image), self.features(feats)], dim=1))


class BranchNet(nn.Module):
    """The members and the feature scaler's quantiles (buffers: saved with the weights)."""

    quantiles: torch.Tensor  # (n_quantiles, n_features) float64

    def __init__(self, cfg: BranchNetConfig) -> None:
        super().__init__()
        self.members = nn.ModuleList(BranchMember(cfg) for _ in range(cfg.members))
        self.register_buffer(
            "quantiles", torch.zeros(cfg.n_quantiles, cfg.n_features, dtype=torch.float64)
        )

    def forward(self, image: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """Every member's logits ``(members, b, n_classes)``."""
        return torch.stack([m(image, feats) for m in self.members])


# --- the feature scaler (numpy, row by row: a row's values never depend on its batch) ---------


def fit_quantiles(x: np.ndarray, n_quantiles: int) -> np.ndarray:
    """Per column, ``n_quantiles`` evenly spaced quantiles of its finite values ``(Q, F)``
    (a column without any: zeros)."""
    out = np.zeros((n_quantiles, x.shape[1]))
    levels = np.linspace(0.0, 1.0, n_quantiles)
    for j in range(x.shape[1]):
        col = x[:, j][np.isfinite(x[:, j])]
        if col.size:
            out[:, j] = np.quantile(col, levels)
    return out


def quantile_normal(x: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """Normal scores of ``x`` ``(n, F)`` through each column's quantiles, by scikit-learn's
    QuantileTransformer(output_distribution="normal") rule (interpolated both ways for ties; at
    or beyond the first or last quantile, the extreme score +-5.2); NaN where ``x`` is not
    finite."""
    levels = np.linspace(0.0, 1.0, quantiles.shape[0])
    bound = QUANTILE_CLIP - np.spacing(1)
    z_min, z_max = ndtri(bound), ndtri(1.0 - bound)
    z = np.full(x.shape, np.nan)
    for j in range(x.shape[1]):
        q, col = quantiles[:, j], x[:, j]
        ok = np.isfinite(col)
        v = col[ok]
        u = 0.5 * (np.interp(v, q, levels) - np.interp(-v, -q[::-1], -levels[::-1]))
        u[v + QUANTILE_CLIP > q[-1]] = 1.0
        u[v - QUANTILE_CLIP < q[0]] = 0.0
        z[ok, j] = np.clip(ndtri(u), z_min, z_max)
    return z


def scaled_features(x: np.ndarray, quantiles: np.ndarray, missing: Sequence[int]) -> np.ndarray:
    """The net's feature input ``(n, F + M)`` float32: normal scores (missing: 0), then 1.0 where
    a ``missing`` column has no finite value."""
    z = quantile_normal(x, quantiles)
    flags = ~np.isfinite(x[:, list(missing)])
    return np.concatenate([np.nan_to_num(z, nan=0.0), flags], axis=1).astype(np.float32)


@dataclass
class BranchNetClassifier:
    """A trained :class:`BranchNet` with its classes, grid and features (a `dmdt.model.Model`)."""

    kind = KIND
    name: str
    classes: list[str]
    grid: Grid
    config: BranchNetConfig
    net: BranchNet
    min_points: int = 20
    feature_names: list[str] = field(default_factory=lambda: list(periodic.FEATURE_NAMES))
    features_version: int = periodic.FEATURES_VERSION
    temperature: float = 1.0  # probabilities: mean over members of softmax(logits / T)
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    version: str = "unsaved"
    content_hash: str = ""  # sha256 over the files (dmdt.manifest), set by save and load
    device: str | torch.device = "cpu"
    views: list[str] = field(default_factory=lambda: ["curve"])
    path: Path | None = None  # the model directory, set by save and load

    def __post_init__(self) -> None:
        if len(self.classes) != self.config.n_classes:
            raise ValueError(f"{len(self.classes)} classes for a net of {self.config.n_classes}")
        if len(self.feature_names) != self.config.n_features:
            raise ValueError(f"{len(self.feature_names)} feature names for a net of "
                             f"{self.config.n_features}")  # fmt: skip
        if tuple(self.grid.shape) != tuple(self.config.image_shape):
            raise ValueError(f"grid {self.grid.shape} != net image {self.config.image_shape}")
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        self.device = resolve_device(self.device)
        self._layout, self._chunk = layout(self.device)
        self._quantiles = self.net.quantiles.detach().cpu().numpy().astype(np.float64)
        net = self.net.to(self.device)
        self.net = net.to(memory_format=self._layout).eval()  # type: ignore[call-overload]

    # --- the per-source features (expensive, refreshed now and then by the stream) -------------

    def features(self, t: np.ndarray, m: np.ndarray, err: np.ndarray) -> np.ndarray:
        """The periodic feature vector ``(F,)`` float64 of one source's points (any order; bad
        points dropped, same times merged as in training); all NaN below ``min_points``."""
        return self.features_many([(t, m, err)])[0]

    def features_many(
        self, curves: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]
    ) -> np.ndarray:
        """:meth:`features` of many sources ``(t, m, err)`` in one period search ``(n, F)``
        (each row equals :meth:`features` of its source alone)."""
        if self.features_version != periodic.FEATURES_VERSION:
            raise ValueError(
                f"model {self.name} wants periodic features version {self.features_version}, "
                f"this code computes version {periodic.FEATURES_VERSION}"
            )
        out = np.full((len(curves), len(self.feature_names)), np.nan)
        where: list[int] = []
        seen: list[LightCurve] = []
        for i, (t, m, err) in enumerate(curves):
            lc, _ = clean(LightCurve("source", t, m, err), self.min_points, min_time=None)
            if lc is not None:
                where.append(i)
                seen.append(lc)
        if seen:
            out[where] = np.asarray(periodic.features(seen)[0], dtype=np.float64)
        return out

    # --- batched classification (cheap, every alert) ------------------------------------------

    def inputs(
        self, counts: np.ndarray, n_points: Sequence[int] | np.ndarray, features: np.ndarray
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The net's inputs: images float32 ``(n, 1, n_dt, n_dm)`` (the paper's uint8 image /
        255) and scaled features float32 ``(n, F + M)``."""
        c = np.asarray(counts)
        x = np.asarray(features, dtype=np.float64)
        n = np.asarray(n_points, dtype=np.int64).reshape(-1)
        if c.ndim != 3 or tuple(c.shape[1:]) != self.grid.shape:
            raise ValueError(f"counts must be (n, {self.grid.shape[0]}, {self.grid.shape[1]}), "
                             f"got {c.shape}")  # fmt: skip
        if x.shape != (c.shape[0], len(self.feature_names)):
            raise ValueError(f"features must be ({c.shape[0]}, {len(self.feature_names)}), "
                             f"got {x.shape}")  # fmt: skip
        if n.shape != (c.shape[0],):
            raise ValueError(f"n_points must have {c.shape[0]} entries, got {n.shape}")
        images = images_to_batch(normalize(c, n))  # (n, 1, n_dt, n_dm)
        feats = torch.from_numpy(scaled_features(x, self._quantiles, self.config.missing))
        return images, feats

    def predict(self, images: torch.Tensor, feats: torch.Tensor) -> np.ndarray:
        """Probabilities ``(n, n_classes)`` float32 of the net's inputs, in fixed-size chunks."""
        out = []
        with deterministic(), torch.inference_mode():
            # (size, 1, n_dt, n_dm) images and (size, F + M) features, the last chunk padded
            for (img, ft), n in padded_chunks([images, feats], self._chunk):
                img = img.to(self.device).contiguous(memory_format=self._layout)
                logits = self.net(img, ft.to(self.device))[:, :n]  # (members, b, n_classes)
                probs = torch.softmax(logits.float() / self.temperature, dim=2).mean(dim=0)
                out.append(probs.cpu().numpy())
        if not out:
            return np.zeros((0, len(self.classes)), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def classify(
        self, counts: np.ndarray, n_points: Sequence[int] | np.ndarray, features: np.ndarray
    ) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` float32 from dmdt pair ``counts`` ``(n, n_dt,
        n_dm)`` on :attr:`grid`, the curves' point numbers and their :meth:`features` rows
        ``(n, F)`` (NaN allowed)."""
        return self.predict(*self.inputs(counts, n_points, features))

    def classify_lightcurves(self, lcs: Sequence[LightCurve]) -> Predictions:
        """Probabilities of cleaned light curves (their features computed)."""
        from dmdt.model import classify_lightcurves

        return classify_lightcurves(self, lcs)

    # --- the model directory ------------------------------------------------------------------

    def to_config(self) -> dict[str, Any]:
        """model.json's content."""
        return {
            "kind": KIND,
            "format": FORMAT,
            "name": self.name,
            "classes": list(self.classes),
            "grid": self.grid.to_dict(),
            "min_points": self.min_points,
            "views": list(self.views),
            "feature_names": list(self.feature_names),
            "features_version": self.features_version,
            "net": self.config.to_dict(),
            "temperature": self.temperature,
            "weights": WEIGHTS_FILE,
            "training": self.training,
            "metrics": self.metrics,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model directory (weights, model.json, MANIFEST.json last, dmdt.manifest);
        other files there (README.md) are left alone. Sets :attr:`version` and
        :attr:`content_hash` from the files."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        (out / MANIFEST_FILE).unlink(missing_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        write_atomic(out / WEIGHTS_FILE, lambda fh: torch.save(state, fh))
        write_atomic(out / CONFIG_FILE, lambda fh: fh.write(json_bytes(self.to_config())))
        manifest = write_manifest(out, FORMAT, (WEIGHTS_FILE, CONFIG_FILE))
        self.content_hash, self.path = manifest.content_hash, out
        self.version = f"{self.name}-{manifest.content_hash[:12]}"

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], device: str | torch.device = "auto"
    ) -> BranchNetClassifier:
        """Read and verify a model directory written by :meth:`save`."""
        folder = Path(path)
        manifest = read_manifest(folder, FORMAT)  # every file listed and hashed, nothing else
        manifest.require([WEIGHTS_FILE, CONFIG_FILE])
        config = json.loads(manifest.path(CONFIG_FILE).read_text())
        if config.get("format") != FORMAT:
            raise ArtifactError(f"{folder}: format {config.get('format')!r}, expected {FORMAT!r}")
        net_config = BranchNetConfig.from_dict(config["net"])
        net = BranchNet(net_config)
        state = torch.load(manifest.path(WEIGHTS_FILE), map_location="cpu", weights_only=True)
        net.load_state_dict(state)
        model = cls(
            name=config["name"],
            classes=[str(c) for c in config["classes"]],
            grid=Grid.from_dict(config["grid"]),
            config=net_config,
            net=net,
            min_points=int(config["min_points"]),
            feature_names=list(config["feature_names"]),
            features_version=int(config["features_version"]),
            temperature=float(config["temperature"]),
            training=config.get("training", {}),
            metrics=config.get("metrics", {}),
            device=device,
        )
        model.content_hash = manifest.content_hash  # computed from the files, never declared
        model.version = f"{model.name}-{manifest.content_hash[:12]}"
        model.path = folder
        return model
