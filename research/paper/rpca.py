"""Robust PCA by principal component pursuit, and the dmdt backgrounds built with it.

``pcp`` splits a matrix into low rank + sparse, M = L + S, by minimising ||L||_* + lam ||S||_1
(Candes, Li, Ma & Wright 2011) with the inexact augmented Lagrange multiplier method (Lin, Chen &
Ma 2010). The authors' notebook used alternating projections with rank 1 instead
(docs/paper.md, section 3.4); PCP needs no rank, and its L is the "background" all the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits


@dataclass(frozen=True)
class PCPResult:
    """``low_rank + sparse`` approximates the input; ``rank`` of ``low_rank``; ALM iterations."""

    low_rank: np.ndarray
    sparse: np.ndarray
    rank: int
    iterations: int
    converged: bool


def _shrink(x: np.ndarray, tau: float) -> np.ndarray:
    return np.sign(x) * np.maximum(np.abs(x) - tau, 0.0)


def pcp(
    m: np.ndarray, lam: float | None = None, tol: float = 1e-7, max_iter: int = 500
) -> PCPResult:
    """Principal component pursuit of a 2-D ``m`` (inexact ALM); ``lam``: 1/sqrt(max dim)."""
    # One BLAS thread: on the shared 2-core machine a threaded SVD of a 528 x 140 matrix ran
    # 35x slower than a single-threaded one (thread contention), and it keeps to one core.
    with threadpool_limits(limits=1, user_api="blas"):
        return _pcp(m, lam, tol, max_iter)


def _pcp(m: np.ndarray, lam: float | None, tol: float, max_iter: int) -> PCPResult:
    d = np.asarray(m, dtype=np.float64)
    if d.ndim != 2 or d.size == 0:
        raise ValueError(f"pcp needs a non-empty 2-D matrix, got shape {d.shape}")
    lam = float(1.0 / np.sqrt(max(d.shape))) if lam is None else float(lam)
    norm_fro = np.linalg.norm(d)
    if norm_fro == 0.0:
        return PCPResult(np.zeros_like(d), np.zeros_like(d), 0, 0, True)
    norm_two = np.linalg.norm(d, 2)
    y = d / max(norm_two, np.abs(d).max() / lam)  # dual variable, scaled as in Lin et al.
    mu, rho = 1.25 / norm_two, 1.5
    mu_max = mu * 1e7
    low, sparse = np.zeros_like(d), np.zeros_like(d)
    rank, converged, it = 0, False, 0
    for it in range(1, max_iter + 1):  # noqa: B007 (reported)
        sparse = _shrink(d - low + y / mu, float(lam / mu))
        u, s, vt = np.linalg.svd(d - sparse + y / mu, full_matrices=False)
        s = np.maximum(s - 1.0 / mu, 0.0)
        rank = int(np.count_nonzero(s))
        low = (u[:, :rank] * s[:rank]) @ vt[:rank]
        residual = d - low - sparse
        y += mu * residual
        mu = min(mu * rho, mu_max)
        if np.linalg.norm(residual) / norm_fro < tol:
            converged = True
            break
    return PCPResult(low, sparse, rank, it, converged)


def max_background(low_rank: np.ndarray) -> np.ndarray:
    """The column of a (pixels, images) low-rank matrix with the largest sum (authors' code)."""
    return low_rank[:, int(np.argmax(low_rank.sum(axis=0)))]


def class_background(images: np.ndarray, lam: float | None = None) -> tuple[np.ndarray, PCPResult]:
    """Max background ``(n_dt, n_dm)`` of images ``(n, n_dt, n_dm)``, and the PCP result."""
    stack = np.asarray(images, dtype=np.float64)
    result = pcp(stack.reshape(stack.shape[0], -1).T, lam=lam)  # (pixels, images)
    return max_background(result.low_rank).reshape(stack.shape[1:]), result


def subtract(images: np.ndarray, background: np.ndarray) -> np.ndarray:
    """Images minus a background, clipped at 0 (``(X - back).clip(min=0)`` in the authors' code)."""
    return np.clip(np.asarray(images, dtype=np.float32) - background.astype(np.float32), 0, None)


def eliminate_rows(images: np.ndarray, dm_edges: np.ndarray, half_width: float = 0.1) -> np.ndarray:
    """Zero the central dm bins: [-0.1, 0) and [0, 0.1) on the fiducial grid (``X[:, 10:12]``)."""
    edges = np.asarray(dm_edges)
    lo, hi = edges[:-1], edges[1:]
    central = (lo >= -half_width - 1e-12) & (hi <= half_width + 1e-12)
    out = np.array(images, dtype=np.float32, copy=True)
    out[:, :, central] = 0.0  # images are (n, n_dt, n_dm)
    return out
