"""Model kind ``hybrid`` (format ``dmdt-hybrid/1``): gradient boosting on periodic features and
the dmdt image (LightGBM; no torch).

A `dmdt.model.Model` of two parts. :meth:`HybridClassifier.features` is the expensive per-source
part (period search, harmonic fits, the folded curve: ~50-65 ms for a few hundred points); it is
a pure function of the points, so the stream may refresh it only every so often and keep the last
vector. :meth:`HybridClassifier.classify` is cheap and batched: it takes the dmdt pair counts the
stream keeps up to date on every alert, plus the stored feature vectors.

A model may average boosters trained on several views of the curve (:mod:`dmdt.views`: the curve,
the curve without points that stray from their visit, the visit medians): its feature vector is
then each view's periodic features side by side, and each view's boosters see their own block.

A model directory holds ``model.json`` (kind ``hybrid``: classes, grid, views, feature names and
version, the design, training record and metrics) and LightGBM boosters as text (``gbm_<i>.txt``,
view by view). ``MANIFEST.json`` records their sha256 (`dmdt.manifest`, the same rules as every
kind's): :meth:`HybridClassifier.load` reads only files it lists, refuses a directory whose files
do not match it or whose booster names leave the folder, and computes the content hash (the
model's identity) from the files.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from dmdt import periodic
from dmdt.engine import normalize
from dmdt.grids import Grid, get_grid
from dmdt.lightcurves import LightCurve, clean
from dmdt.manifest import (
    MANIFEST_FILE,
    ArtifactError,
    json_bytes,
    read_manifest,
    write_atomic,
    write_manifest,
)
from dmdt.views import VIEWS

if TYPE_CHECKING:
    from dmdt.model import Predictions

KIND = "hybrid"
FORMAT = "dmdt-hybrid/1"
CONFIG_FILE = "model.json"
IMAGE_MODES = ("none", "flat")  # what of the dmdt image goes into the boosters, beside features
MIN_VIEW_POINTS = 10  # a view (other than the curve) with fewer points gets NaN features


def view_feature_names(views: Sequence[str]) -> list[str]:
    """The feature names of ``views``: the periodic names, prefixed ``<view>:`` but for the
    curve itself."""
    return [
        name if view == "curve" else f"{view}:{name}"
        for view in views
        for name in periodic.FEATURE_NAMES
    ]


@dataclass
class HybridClassifier:
    """Boosters over ``[features, image columns]``; probabilities averaged over the boosters
    (with several views: over each view's boosters on its block of features, then over views).
    A `dmdt.model.Model`."""

    kind = KIND
    name: str
    classes: list[str]
    grid: Grid
    boosters: list[Any]  # lightgbm.Booster, one per seed (and view, view by view)
    min_points: int = 20
    image_mode: str = "none"
    views: list[str] = field(default_factory=lambda: ["curve"])
    feature_names: list[str] = field(default_factory=list)  # default: view_feature_names(views)
    features_version: int = periodic.FEATURES_VERSION
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    temperature: float = 1.0  # probabilities ~ p ** (1 / T): fitted out-of-fold (calibration)
    version: str = "unsaved"
    content_hash: str = ""  # sha256 identity of the model directory, set by save and load
    path: Path | None = None  # the model directory, set by save and load

    def __post_init__(self) -> None:
        if self.image_mode not in IMAGE_MODES:
            raise ValueError(f"image_mode {self.image_mode!r} not in {IMAGE_MODES}")
        if not self.boosters:
            raise ValueError("a hybrid model needs at least one booster")
        unknown = [v for v in self.views if v not in VIEWS]
        if not self.views or unknown or len(set(self.views)) != len(self.views):
            raise ValueError(f"views {self.views}: want distinct names among {sorted(VIEWS)}")
        if len(self.boosters) % len(self.views):
            raise ValueError(f"{len(self.boosters)} boosters for {len(self.views)} views")
        if len(self.views) > 1 and self.image_mode != "none":
            raise ValueError("a model with several views takes no image columns")
        if not self.feature_names:
            self.feature_names = view_feature_names(self.views)
        if not (np.isfinite(self.temperature) and self.temperature > 0):
            raise ValueError(f"temperature must be positive, got {self.temperature}")

    # --- the per-source features (expensive, refreshed now and then by the stream) -------------

    def features(self, t: np.ndarray, m: np.ndarray, err: np.ndarray) -> np.ndarray:
        """The periodic feature vector ``(F,)`` float64 of one source's points (any order; bad
        points dropped, same times merged as in training), each view's block after the other;
        all NaN below ``min_points``, a view's block NaN below :data:`MIN_VIEW_POINTS`."""
        return self.features_many([(t, m, err)])[0]

    def features_many(
        self, curves: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]
    ) -> np.ndarray:
        """:meth:`features` of many sources ``(t, m, err)`` in one call ``(n, F)``: one period
        search for all their views (each row equals :meth:`features` of its source alone)."""
        if self.features_version != periodic.FEATURES_VERSION:
            raise ValueError(
                f"model {self.name} wants periodic features version {self.features_version}, "
                f"this code computes version {periodic.FEATURES_VERSION}"
            )
        width = len(periodic.FEATURE_NAMES)
        out = np.full((len(curves), len(self.views), width), np.nan)
        where: list[tuple[int, int]] = []  # (source, view) of each curve searched
        seen: list[LightCurve] = []
        for i, (t, m, err) in enumerate(curves):
            lc, _ = clean(LightCurve("source", t, m, err), self.min_points, min_time=None)
            if lc is None:
                continue
            for j, name in enumerate(self.views):
                view = VIEWS[name](lc)
                if name == "curve" or len(view) >= MIN_VIEW_POINTS:
                    where.append((i, j))
                    seen.append(view)
        if seen:
            x, _ = periodic.features(seen)
            rows, cols = np.array(where).T
            out[rows, cols] = x
        return out.reshape(len(curves), len(self.views) * width)

    # --- batched classification (cheap, every alert) ------------------------------------------

    def design(
        self, counts: np.ndarray, n_points: Sequence[int] | np.ndarray, features: np.ndarray
    ) -> np.ndarray:
        """The boosters' input ``(n, F [+ n_dt * n_dm])``: features, then the image if used."""
        c = np.asarray(counts)
        x = np.asarray(features, dtype=np.float64)
        n = np.asarray(n_points, dtype=np.int64)
        if c.ndim != 3 or tuple(c.shape[1:]) != self.grid.shape:
            raise ValueError(f"counts must be (n, {self.grid.shape[0]}, {self.grid.shape[1]}), "
                             f"got {c.shape}")  # fmt: skip
        if x.ndim != 2 or x.shape != (c.shape[0], len(self.feature_names)):
            raise ValueError(f"features must be ({c.shape[0]}, {len(self.feature_names)}), "
                             f"got {x.shape}")  # fmt: skip
        if n.shape != (c.shape[0],):
            raise ValueError(f"n_points must have {c.shape[0]} entries, got {n.shape}")
        if self.image_mode == "flat":
            images = (
                normalize(c, n).reshape(c.shape[0], c.shape[1] * c.shape[2]).astype(np.float64)
                / 255.0
            )
            x = np.concatenate([x, images], axis=1)
        return x

    def classify(
        self, counts: np.ndarray, n_points: Sequence[int] | np.ndarray, features: np.ndarray
    ) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` float64, rows summing to 1, from dmdt pair
        ``counts`` int32 ``(n, n_dt, n_dm)`` on :attr:`grid`, the curves' point numbers and
        their :meth:`features` rows ``(n, F)`` (NaN allowed)."""
        x = self.design(counts, n_points, features)
        if x.shape[0] == 0:
            return np.zeros((0, len(self.classes)))
        return calibrated(self.booster_probs(x), self.temperature)

    def classify_lightcurves(self, lcs: Sequence[LightCurve]) -> Predictions:
        """Probabilities of cleaned light curves (their features computed: ~12 ms each)."""
        from dmdt.model import classify_lightcurves

        return classify_lightcurves(self, lcs)

    def booster_probs(self, x: np.ndarray) -> np.ndarray:
        """Uncalibrated probabilities ``(n, n_classes)`` of a :meth:`design` matrix: the mean
        over each view's boosters on that view's columns, then over the views."""
        n_views = len(self.views)
        per_view = len(self.boosters) // n_views
        width = x.shape[1] // n_views
        probs = np.mean(
            [
                np.mean(
                    [b.predict(x[:, v * width : (v + 1) * width])
                     for b in self.boosters[v * per_view : (v + 1) * per_view]],
                    axis=0,
                ).reshape(x.shape[0], len(self.classes))
                for v in range(n_views)
            ],
            axis=0,
        )  # fmt: skip
        probs = np.asarray(probs, dtype=np.float64)
        return probs / probs.sum(axis=1, keepdims=True)

    # --- the model directory ------------------------------------------------------------------

    def config(self) -> dict[str, Any]:
        """model.json's content (without file hashes)."""
        return {
            "kind": KIND,
            "format": FORMAT,
            "name": self.name,
            "classes": list(self.classes),
            "grid": self.grid.to_dict(),
            "min_points": self.min_points,
            "image_mode": self.image_mode,
            "views": list(self.views),
            "feature_names": list(self.feature_names),
            "features_version": self.features_version,
            "boosters": [f"gbm_{i}.txt" for i in range(len(self.boosters))],
            "training": self.training,
            "metrics": self.metrics,
            "temperature": self.temperature,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the model directory (boosters as LightGBM text, model.json, MANIFEST.json last);
        other files there (README.md) are left alone. Sets :attr:`version` to the content hash."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        (out / MANIFEST_FILE).unlink(missing_ok=True)
        config = self.config()
        for name, booster in zip(config["boosters"], self.boosters, strict=True):
            write_atomic(out / name, partial(_write_text, booster.model_to_string()))
        write_atomic(out / CONFIG_FILE, lambda fh: fh.write(json_bytes(config)))
        manifest = write_manifest(out, FORMAT, (*config["boosters"], CONFIG_FILE))
        self.content_hash, self.path = manifest.content_hash, out
        self.version = f"{self.name}-{manifest.content_hash[:12]}"

    @classmethod
    def load(cls, path: str | os.PathLike[str], device: str = "cpu") -> HybridClassifier:
        """Read and verify a model directory written by :meth:`save` (LightGBM runs on the
        CPU: ``device`` is not used)."""
        import lightgbm as lgb

        folder = Path(path)
        manifest = read_manifest(folder, FORMAT)
        config = json.loads(manifest.path(CONFIG_FILE).read_text())
        if config.get("format") != FORMAT:
            raise ArtifactError(f"{folder}: format {config.get('format')!r}, expected {FORMAT!r}")
        names = config.get("boosters")
        if not isinstance(names, list):
            raise ArtifactError(f"{folder / CONFIG_FILE}: boosters is not a list of file names")
        paths = [manifest.path(n) for n in names]  # listed, inside the folder
        manifest.require([CONFIG_FILE, *names])
        boosters = [lgb.Booster(model_str=p.read_text()) for p in paths]
        model = cls(
            name=config["name"],
            classes=[str(c) for c in config["classes"]],
            grid=Grid.from_dict(config["grid"]),
            boosters=boosters,
            min_points=int(config["min_points"]),
            image_mode=config["image_mode"],
            views=list(config.get("views", ["curve"])),
            feature_names=list(config["feature_names"]),
            features_version=int(config["features_version"]),
            training=config.get("training", {}),
            metrics=config.get("metrics", {}),
            temperature=float(config.get("temperature", 1.0)),
        )
        model.content_hash = manifest.content_hash  # computed from the files, never declared
        model.version = f"{model.name}-{manifest.content_hash[:12]}"
        model.path = folder
        return model


def _write_text(text: str, fh: BinaryIO) -> None:
    fh.write(text.encode())


def calibrated(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling of probabilities: softmax(log p / T), i.e. p ** (1 / T) renormalised
    (the argmax never changes; T > 1 softens over-confident boosters). T = 1 returns ``probs``."""
    if temperature == 1.0:
        return probs
    logp = np.log(np.clip(probs, 1e-12, None)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    q = np.exp(logp)
    return np.asarray(q / q.sum(axis=1, keepdims=True), dtype=np.float64)


def default_grid() -> Grid:
    """The grid hybrid models are trained on (the paper's, as models/paper-cnn)."""
    return get_grid("mahabal2017")
