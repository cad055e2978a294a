"""The dmdt counts written plainly in numpy: the independent reference of the exactness tests.

Slow on purpose (every pair computed, a block of rows at a time) and sharing no code with
`dmdt.engine` or its kernels, so that the streaming state, the store, the changelog and the
acceptance runs are checked against a definition, not against the engine that produced them.
`numpy_counts` bins every pair i<j of a time-sorted curve with searchsorted (an edge belongs to
the bin above it; pairs outside the grid are dropped); `distinct` keeps the first arrival of each
time, which is what a source's state must hold after any number of alerts and redeliveries.
"""

from __future__ import annotations

import numpy as np

from dmdt.grids import Grid


def numpy_counts(t: np.ndarray, m: np.ndarray, grid: Grid, block: int = 256) -> np.ndarray:
    """Reference: every pair i<j of the time-sorted curve, binned by searchsorted; the pairs of
    ``block`` earlier points at a time, so memory stays O(block * n)."""
    order = np.argsort(t, kind="stable")
    t, m = np.asarray(t, dtype=np.float64)[order], np.asarray(m, dtype=np.float64)[order]
    out = np.zeros(grid.shape, dtype=np.int64)
    n_dm = grid.shape[1]
    for lo in range(0, t.size, block):
        hi = min(lo + block, t.size)
        dt = t[None, lo:] - t[lo:hi, None]  # (rows, later points): pairs (i, j) with j >= lo
        dm = m[None, lo:] - m[lo:hi, None]
        later = np.arange(lo, t.size)[None, :] > np.arange(lo, hi)[:, None]  # j > i only
        ok = later & (dt >= grid.dt_edges[0]) & (dt < grid.dt_edges[-1])
        ok &= (dm >= grid.dm_edges[0]) & (dm < grid.dm_edges[-1])
        kt = np.searchsorted(grid.dt_edges, dt[ok], side="right") - 1
        km = np.searchsorted(grid.dm_edges, dm[ok], side="right") - 1
        out += np.bincount(kt * n_dm + km, minlength=out.size).reshape(grid.shape)
    return out


def distinct(
    t: np.ndarray, m: np.ndarray, err: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points in arrival order -> the first arrival of each time, sorted by time."""
    t, m, err = (np.asarray(a, dtype=np.float64) for a in (t, m, err))
    _, first = np.unique(t, return_index=True)  # sorted times; index of each one's first arrival
    return t[first], m[first], err[first]
