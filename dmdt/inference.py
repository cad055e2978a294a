"""The torch side of inference, shared by the torch model kinds (`dmdt.cnn`, `dmdt.branchnet`).

Preprocessing is the paper's: the uint8 image ``int(255 * count / p + 0.99999)`` with
p = n(n-1)/2 (`dmdt.engine.normalize`), then float32 / 255, shaped ``(batch, 1, n_dt, n_dm)``.
On CPU the nets run channels-last, in chunks that stay in cache: 2-3x faster than NCHW for the
shallow net (docs/streaming.md). Every chunk has the same size (the last one is padded with
zeros), so every image goes through the same kernels whatever batch it came in: the broker's
small batches and `dmdt-train predict`'s large ones give bit-identical probabilities.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch

CPU_CHUNK = 64
GPU_CHUNK = 4096


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else CPU; anything else is passed to torch."""
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def layout(device: torch.device) -> tuple[torch.memory_format, int]:
    """The memory format and chunk size a net runs with on ``device`` (see the module doc)."""
    if device.type == "cpu":
        return torch.channels_last, CPU_CHUNK
    return torch.contiguous_format, GPU_CHUNK


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


def padded_chunks(
    tensors: Sequence[torch.Tensor], size: int
) -> Iterator[tuple[list[torch.Tensor], int]]:
    """Chunks of ``size`` rows of tensors that share their first axis, the last one padded with
    zeros to ``size``: ``(chunk of each tensor, rows that are real)``."""
    n_rows = tensors[0].shape[0]
    for start in range(0, n_rows, size):
        chunk = [x[start : start + size] for x in tensors]
        n = chunk[0].shape[0]
        if n < size:
            chunk = [torch.cat([x, x.new_zeros((size - n, *x.shape[1:]))]) for x in chunk]
        yield chunk, n
