"""Inference: turn dmdt counts into a tensor batch (`preprocess`), and a batch into class
probabilities (`predict`).

The broker and ``dmdt-train predict`` both go through :class:`Classifier`, so a source gets the
same numbers whichever path classified it. Preprocessing is the paper's: the uint8 image
``int(255 * count / p + 0.99999)`` with p = n(n-1)/2 (:func:`dmdt.engine.normalize`), then
float32 / 255, shaped ``(batch, 1, n_dt, n_dm)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from dmdt.artifact import LoadedModel, load_model
from dmdt.engine import counts_many, normalize
from dmdt.grids import Grid

if TYPE_CHECKING:
    from dmdt.lightcurves import LightCurve


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; anything else is passed to torch."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@contextmanager
def deterministic() -> Iterator[None]:
    """Deterministic kernels for the duration (restores the caller's setting after)."""
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    # cuBLAS needs this to be deterministic; set only if the user has not chosen a value.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def images_to_batch(images: np.ndarray) -> torch.Tensor:
    """uint8 images ``(n, n_dt, n_dm)`` -> float32 tensor ``(n, 1, n_dt, n_dm)`` in [0, 1]."""
    imgs = np.asarray(images)
    if imgs.dtype != np.uint8 or imgs.ndim != 3:
        raise ValueError(f"expected uint8 images (n, n_dt, n_dm), got {imgs.dtype} {imgs.shape}")
    return torch.from_numpy(imgs.astype(np.float32) / np.float32(255.0)).unsqueeze(1)


def lightcurve_counts(lcs: Sequence[LightCurve], grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Pair counts ``(n, n_dt, n_dm)`` and point numbers ``(n,)`` of cleaned light curves."""
    counts = counts_many([(lc.t, lc.m) for lc in lcs], grid)
    n_points = np.array([len(lc.t) for lc in lcs], dtype=np.int64)
    return counts, n_points


@dataclass(frozen=True)
class Predictions:
    """Per-source class probabilities from one classifier."""

    source_ids: tuple[str, ...]
    classes: tuple[str, ...]
    probabilities: np.ndarray  # (n, n_classes) float32, rows sum to 1

    @property
    def labels(self) -> list[str]:
        """The most probable class of each source."""
        return [self.classes[i] for i in self.probabilities.argmax(axis=1)]


# On CPU the nets run channels-last, in chunks that stay in cache: 2-3x faster than NCHW for the
# shallow net (docs/streaming.md). Every chunk has the same size (the last one is padded with
# empty images), so every image goes through the same kernels whatever batch it came in: the
# broker's small batches and `dmdt-train predict`'s large ones give bit-identical probabilities.
CPU_CHUNK = 64
GPU_CHUNK = 4096


class Classifier:
    """A loaded model plus its grid and class names: counts in, probabilities out."""

    def __init__(self, model: LoadedModel, device: str | torch.device = "auto") -> None:
        self.model = model
        self.grid: Grid = model.grid
        self.classes: tuple[str, ...] = model.classes
        self.device = resolve_device(device)
        cpu = self.device.type == "cpu"
        self._layout = torch.channels_last if cpu else torch.contiguous_format
        self._chunk = CPU_CHUNK if cpu else GPU_CHUNK
        net = model.net.to(self.device)
        self.net = net.to(memory_format=self._layout).eval()  # type: ignore[call-overload]

    @classmethod
    def from_checkpoint(
        cls, path_or_default: str | os.PathLike[str] = "default", device: str = "auto"
    ) -> Classifier:
        """Load and verify a model directory (``default`` is the shipped model)."""
        return cls(load_model(path_or_default), device=device)

    @property
    def version(self) -> str:
        """The loaded model's registry version (time and content hash)."""
        return self.model.version

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
        size = batch_size or self._chunk
        out = []
        with deterministic(), torch.inference_mode():
            for start in range(0, batch.shape[0], size):
                chunk = batch[start : start + size]  # (b, 1, n_dt, n_dm)
                n = chunk.shape[0]
                if n < size:  # (size, 1, n_dt, n_dm): padded, see CPU_CHUNK
                    chunk = torch.cat([chunk, chunk.new_zeros((size - n, *chunk.shape[1:]))])
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

    def classify_lightcurves(self, lcs: Sequence[LightCurve]) -> Predictions:
        """Probabilities for cleaned light curves, on this model's grid."""
        counts, n_points = lightcurve_counts(lcs, self.grid)
        probs = self.classify_counts(counts, n_points)
        return Predictions(tuple(lc.source_id for lc in lcs), self.classes, probs)
