"""The dmdt engine's checked boundary: validate once, then hand plain arrays to the kernels.

- :func:`counts` / :func:`counts_many`: the pair histogram of whole light curves.
- :func:`normalize`: the paper's image, ``int(255 * count / p + 0.99999)`` with p = n(n-1)/2.

Counts are int32: a light curve may hold up to ``MAX_POINTS`` points (its pair count fits).
"""

from __future__ import annotations

from collections.abc import Sequence

import numba
import numpy as np

from dmdt import kernels
from dmdt.grids import Grid, get_grid

MAX_POINTS = 65_535  # n(n-1)/2 < 2**31

ArrayLike = np.ndarray | Sequence[float]


def _vector(name: str, values: ArrayLike) -> np.ndarray:
    arr = np.ascontiguousarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise ValueError(f"{name} has a non-finite value at index {bad}")
    return arr


def _arrays(t: ArrayLike, m: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """t and m as contiguous float64 vectors of one length (copies only where needed)."""
    t = np.ascontiguousarray(t, dtype=np.float64)
    m = np.ascontiguousarray(m, dtype=np.float64)
    if t.ndim != 1 or m.ndim != 1:
        raise ValueError(f"t and m must be one-dimensional, got shapes {t.shape} and {m.shape}")
    if t.size != m.size:
        raise ValueError(f"t and m differ in length: {t.size} != {m.size}")
    if t.size > MAX_POINTS:
        raise ValueError(f"light curve has {t.size} points; at most {MAX_POINTS} are supported")
    return t, m


def _sorted(t: np.ndarray, m: np.ndarray, status: int, index: int) -> tuple[np.ndarray, ...]:
    """Act on :func:`dmdt.kernels.scan`'s verdict: raise on a non-finite value, sort (stable)."""
    if status >= 2:
        raise ValueError(f"{'t' if status == 2 else 'm'} has a non-finite value at index {index}")
    if status == 1:
        order = np.argsort(t, kind="stable")
        t, m = t[order], m[order]
    return t, m


def _light_curve(t: ArrayLike, m: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated, time-sorted (stable) t and m (copies only where needed)."""
    t, m = _arrays(t, m)
    return _sorted(t, m, *kernels.scan(t, m))  # type: ignore[return-value]


def kernel_grid(grid: Grid) -> tuple[object, ...]:
    """The grid as the kernels take it, one tuple: edges, dm lookup table, dm lattice, and the
    first lattice cell of each dm bin (``fold_starts``). Built once per grid and kept on it."""
    cached = grid.__dict__.get("_kernel_grid")
    if cached is None:
        cell_bin = grid.dm_lattice[0]
        starts = np.searchsorted(cell_bin, np.arange(grid.dm_edges.size)).astype(np.int64)
        cached = (grid.dt_edges, grid.dm_edges, *grid.dm_table, *grid.dm_lattice, starts)
        object.__setattr__(grid, "_kernel_grid", cached)  # Grid is frozen; this is a cache
    return cached


def counts(t: ArrayLike, m: ArrayLike, grid: str | Grid | None = None) -> np.ndarray:
    """Pair counts of one light curve: int32 ``(n_dt, n_dm)``; input need not be sorted."""
    g = get_grid(grid)
    t, m = _arrays(t, m)
    out = np.zeros(g.shape, dtype=np.int32)
    kg = kernel_grid(g)
    status, index = kernels.counts_checked(t, m, kg, out)  # counts at once if sorted and finite
    if status != 0:
        t, m = _sorted(t, m, status, index)
        kernels.counts_sorted(t, m, kg, out)
    return out


def counts_many(
    lcs: Sequence[tuple[ArrayLike, ArrayLike]],
    grid: str | Grid | None = None,
    n_threads: int | None = None,
) -> np.ndarray:
    """Pair counts of many light curves in parallel: int32 ``(n, n_dt, n_dm)``."""
    g = get_grid(grid)
    pairs = [_light_curve(t, m) for t, m in lcs]
    offsets = np.zeros(len(pairs) + 1, dtype=np.int64)
    np.cumsum([p[0].size for p in pairs], out=offsets[1:])
    t_all = np.concatenate([p[0] for p in pairs]) if pairs else np.empty(0)
    m_all = np.concatenate([p[1] for p in pairs]) if pairs else np.empty(0)
    out = np.zeros((len(pairs), *g.shape), dtype=np.int32)
    with _threads(n_threads):
        kernels.counts_batch(t_all, m_all, offsets, kernel_grid(g), out)
    return out


class _threads:
    """Temporarily set numba's thread count (None: leave it)."""

    def __init__(self, n: int | None) -> None:
        self.n = n
        self.old = numba.get_num_threads()

    def __enter__(self) -> None:
        if self.n is not None:
            numba.set_num_threads(max(1, min(self.n, numba.config.NUMBA_NUM_THREADS)))

    def __exit__(self, *exc: object) -> None:
        numba.set_num_threads(self.old)


def normalize(counts: np.ndarray, n_points: int | np.ndarray) -> np.ndarray:
    """The paper's uint8 image: ``int(255 * count / p + 0.99999)``, p = n(n-1)/2 pairs.

    ``counts`` is ``(..., n_dt, n_dm)``; ``n_points`` a scalar or one per leading index. A light
    curve of fewer than 2 points has no pairs and an all-zero image.
    """
    c = np.asarray(counts, dtype=np.float64)
    n = np.asarray(n_points, dtype=np.float64)
    p = (n * (n - 1.0) / 2.0).reshape((*n.shape, 1, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        img = np.where(p > 0, np.floor(255.0 * c / np.where(p > 0, p, 1.0) + 0.99999), 0.0)
    return img.astype(np.uint8)


def image(t: ArrayLike, m: ArrayLike, grid: str | Grid | None = None) -> np.ndarray:
    """The paper's uint8 dmdt image of one light curve."""
    return normalize(counts(t, m, grid), np.size(t))
