"""Numba kernels for dmdt histograms: arrays in, arrays out.

Callers (``dmdt.engine``) validate and sort; these functions trust their inputs:
``t`` ascending float64 (distinct where stated), ``m`` float64 of the same length, ``out`` int32
``(n_dt, n_dm)`` accumulated in place, and ``g``, the grid as one tuple ``(dt_edges, dm_edges,
table, lo, inv_h, cell_bin, cell_lo, cell_inv_h, fold_starts)`` built by
``dmdt.engine.kernel_grid`` (edges, the dm lookup table, the dm lattice and its bins' cells).

Every pair is binned along one "row": a point p and a run of points whose |dt| from p grows
along the run (later points walking forward, earlier points walking backward), so

- the dt bin is a pointer walked forward, and the row stops at the first dt past the grid;
- on grids whose dm edges share a uniform lattice (all presets; ``Grid.dm_lattice``), the dm cell
  of a whole row is computed first in one branch-free, vectorised loop, and the pairs are counted
  on lattice cells that are folded into dm bins at the end. A dm within 1e-9 cell of a lattice
  point is flagged and binned by an exact search instead, so results equal a plain search;
- other grids use a lookup table checked against the edges (``Grid.dm_table``), also exact.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_EPS = 1e-9  # in lattice cells; far above the rounding error of the cell arithmetic
_PAD = 8  # the vectorised loop runs in whole blocks of this many points (buffers are padded)
_SPLIT_DT = 0.5  # days: pairs closer than this (same night) walk their dt bin; see counts_sorted


@njit(cache=True, inline="always")
def _search(x, edges):  # type: ignore[no-untyped-def]
    """Bin of x in ``[edges[0], edges[-1])`` (checked by the caller) by bisection."""
    a = 0
    b = edges.size - 1
    while b - a > 1:
        mid = (a + b) >> 1
        if x >= edges[mid]:
            a = mid
        else:
            b = mid
    return a


@njit(cache=True, fastmath=True, boundscheck=False)
def _cells(m, a, z, mi, sign, lo, inv_h, upper, cell, flag):  # type: ignore[no-untyped-def]
    """Lattice cell (+1; 0 and C+1 are out of range) of dm = sign * (m[q] - mi), q in [a, z).

    fastmath is safe here: the cell is only trusted when it is ``_EPS`` away from a boundary.
    """
    ms, cs, fs = m[a:z], cell[a:z], flag[a:z]  # 0-based: no negative-index wraparound code
    for q in range(z - a):
        x = (sign * (ms[q] - mi) - lo) * inv_h + 1.0
        x = min(max(x, 0.5), upper)
        c = np.int32(x)
        f = x - c
        b = np.int32((f < _EPS) | (f > 1.0 - _EPS))
        fs[q] = b
        cs[q] = c * (1 - b)


@njit(cache=True, nogil=True)
def _row_lattice(ti, mi, t, m, mpad, first, last, sign, g, out, cell, flag):  # type: ignore[no-untyped-def]
    """Pairs of (ti, mi) with points first, first+sign, ..., last (inclusive) along a row,
    added straight into ``out`` (the incremental path: one short row per new point)."""
    dt_edges, dm_edges, _, _, _, cell_bin, cell_lo, inv_h, _ = g
    if sign > 0:
        a, z = first, last + 1
    else:
        a, z = last, first + 1
    if z <= a:
        return
    n_cells = cell_bin.size
    _cells(
        mpad,
        a,
        a + ((z - a + _PAD - 1) // _PAD) * _PAD,
        mi,
        sign,
        cell_lo,
        inv_h,
        n_cells + 1.5,
        cell,
        flag,
    )
    dt_lo = dt_edges[0]
    k = 0
    n_flag = 0
    # along the row, 0-based (no wraparound code): q-th point is a + q forward, z - 1 - q back
    ts, cs, fs = t[a:z], cell[a:z], flag[a:z]
    size = z - a
    for q in range(size):
        r = np.uint64(q if sign > 0 else size - 1 - q)
        dt = sign * (ts[r] - ti)
        if dt >= dt_lo:
            while dt >= dt_edges[k + 1]:
                k += 1
            c = cs[r]
            if 0 < c <= n_cells:
                out[k, cell_bin[c - 1]] += 1
            n_flag += fs[r]
    if n_flag > 0:
        dm_lo = dm_edges[0]
        dm_hi = dm_edges[-1]
        for j in range(a, z):
            if flag[j]:
                dt = sign * (t[j] - ti)
                dm = sign * (m[j] - mi)
                if dt >= dt_lo and dm >= dm_lo and dm < dm_hi:
                    out[_search(dt, dt_edges), _search(dm, dm_edges)] += 1


@njit(cache=True, inline="always")
def _dm_bin(dm, dm_edges, table, lo, inv_h):  # type: ignore[no-untyped-def]
    """Bin of dm (in range, checked by the caller) from the lookup table, fixed by the edges."""
    c = int((dm - lo) * inv_h)
    if c >= table.size:
        c = table.size - 1
    k = table[c]
    last = dm_edges.size - 2
    while k < last and dm >= dm_edges[k + 1]:
        k += 1
    while dm < dm_edges[k]:
        k -= 1
    return k


@njit(cache=True, nogil=True)
def _row_table(ti, mi, t, m, first, last, sign, g, out):  # type: ignore[no-untyped-def]
    """Generic-grid version of :func:`_row_lattice`."""
    dt_edges, dm_edges, table, lo, inv_h, _, _, _, _ = g
    dt_lo = dt_edges[0]
    dm_lo = dm_edges[0]
    dm_hi = dm_edges[-1]
    k = 0
    j = first
    stop = last + sign
    while j != stop:
        dt = sign * (t[j] - ti)
        if dt >= dt_lo:
            while dt >= dt_edges[k + 1]:
                k += 1
            dm = sign * (m[j] - mi)
            if dm >= dm_lo and dm < dm_hi:
                out[k, _dm_bin(dm, dm_edges, table, lo, inv_h)] += 1
        j += sign


@njit(cache=True, nogil=True)
def _row_end(ti, t, start, sign, dt_hi):  # type: ignore[no-untyped-def]
    """Last index of the row from ``start`` (stepping by sign) whose |dt| is below dt_hi; the
    caller checked ``start`` itself. Bisection on the predicate as the kernels evaluate it
    (``sign * (t[j] - ti) < dt_hi``, monotone along the row), so the row is the walk's row."""
    if sign > 0:
        lo, hi = start, t.size  # t[lo] in the row; t[hi] not (or past the end)
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            if t[mid] - ti < dt_hi:
                lo = mid
            else:
                hi = mid
        return lo
    lo, hi = -1, start  # t[hi] in the row; t[lo] not (or before the start)
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if ti - t[mid] < dt_hi:
            hi = mid
        else:
            lo = mid
    return hi


@njit(cache=True, nogil=True)
def _fold(acc, starts, out):  # type: ignore[no-untyped-def]
    """Add lattice-cell counts into bins: ``acc`` holds one run of n_dt counts per cell (cell c
    at ``(c + 1) * n_dt``; the first and last runs are out of range), and the cells of dm bin b
    are ``starts[b]:starts[b + 1]``. Whole runs are added: vectorised."""
    n_dt, n_dm = out.shape
    total = np.zeros(n_dt, dtype=np.int32)
    for b in range(n_dm):
        total[:] = 0
        for c in range(starts[b], starts[b + 1]):
            run = acc[(c + 1) * n_dt : (c + 2) * n_dt]
            for k in range(n_dt):
                total[k] += run[k]
        for k in range(n_dt):
            out[k, b] += total[k]


@njit(cache=True, nogil=True)
def _padded(m):  # type: ignore[no-untyped-def]
    mpad = np.zeros(m.size + _PAD)
    mpad[: m.size] = m
    return mpad


@njit(cache=True, nogil=True)
def counts_sorted(t, m, g, out):  # type: ignore[no-untyped-def]
    """Accumulate every pair i < j of a time-sorted light curve into ``out``.

    A thin entry point: called from compiled code the body below is inlined and optimised with
    the grid's arrays as plain values, which measured 30% faster than compiling it as the entry.
    """
    _counts_sorted(t, m, g, out)


@njit(cache=True, nogil=True)
def counts_checked(t, m, g, out):  # type: ignore[no-untyped-def]
    """:func:`scan`, then :func:`counts_sorted` if the curve is sorted and finite (one call from
    Python instead of two: at n = 100 the dispatch is a tenth of the work). Returns scan's
    ``(status, index)``; ``out`` is untouched unless status is 0."""
    status, index = scan(t, m)
    if status == 0:
        _counts_sorted(t, m, g, out)
    return status, index


@njit(cache=True, nogil=True)
def _counts_sorted(t, m, g, out):  # type: ignore[no-untyped-def]
    dt_edges, dm_edges, _, _, _, cell_bin, cell_lo, cell_inv_h, fold_starts = g
    n = t.size
    if n < 2:
        return
    dt_hi = dt_edges[-1]
    n_cells = cell_bin.size
    if n_cells == 0:
        for i in range(n - 1):
            if t[i + 1] - t[i] < dt_hi:
                last = _row_end(t[i], t, i + 1, 1, dt_hi)
                _row_table(t[i], m[i], t, m, i + 1, last, 1, g, out)
        return
    # The forward rows of the lattice path, written out: the hot loop of the whole package.
    # Pairs shorter than dt_edges[split] (same-night pairs) walk the dt bin with a branch; for
    # longer pairs each row's bin boundaries are pointers (monotone in i, so they move rarely)
    # marked in `mark` and summed along the row, with no branch per pair.
    # Counts go to acc[cell * n_dt + dt_bin] (cell-major: the fold adds whole runs), so the
    # vectorised loop stores cell * n_dt and the counting loops add the dt bin.
    n_dt = dt_edges.size - 1
    acc = np.zeros(n_dt * (n_cells + 2), dtype=np.int32)
    mpad = _padded(m)
    cell = np.empty(n + _PAD, dtype=np.int32)
    flag = np.empty(n + _PAD, dtype=np.int32)
    mark = np.zeros(n + 1, dtype=np.int32)
    ptr = np.zeros(n_dt + 1, dtype=np.int64)
    split = min(np.searchsorted(dt_edges, _SPLIT_DT), n_dt)
    mark[0] = max(n_dt - split - 1, 0)  # every pointer starts at 0
    upper = n_cells + 1.5
    dt_lo = dt_edges[0]
    dm_lo = dm_edges[0]
    dm_hi = dm_edges[-1]
    for i in range(n - 1):
        ti = t[i]
        mi = m[i]
        a = i + 1
        # ptr[e]: first j > i with t[j] - ti >= dt_edges[e]; mark[j] counts the inner edges
        # (split < e < n_dt) whose pointer is j, kept up to date as pointers move (rarely)
        for e in range(split, n_dt + 1):
            p0 = ptr[e]
            p = max(p0, a)
            edge = dt_edges[e]
            while p < n and t[p] - ti < edge:
                p += 1
            if p != p0 and split < e < n_dt:
                mark[p0] -= 1
                mark[p] += 1
            ptr[e] = p
        z = ptr[n_dt]
        if z <= a:
            continue
        # dm lattice cells of the row, vectorised (see _cells). The loops below run over slices
        # from index 0: with a signed start numba emits negative-index wraparound code for every
        # access, which blocks vectorisation (measured 30-45% slower at n = 100 to 1,000).
        off = 1.0 - cell_lo * cell_inv_h - mi * cell_inv_h
        size = ((z - a + _PAD - 1) // _PAD) * _PAD
        ms, cs, fs = mpad[a : a + size], cell[a : a + size], flag[a : a + size]
        for q in range(size):
            x = min(max(ms[q] * cell_inv_h + off, 0.5), upper)
            c = np.int32(x)
            f = x - c
            bad = np.int32((f < _EPS) | (f > 1.0 - _EPS))
            fs[q] = bad
            cs[q] = c * (1 - bad) * n_dt
        n_flag = 0
        mid = ptr[split]
        k = 0
        for j in range(a, mid):
            dt = t[j] - ti
            if dt >= dt_lo:
                while dt >= dt_edges[k + 1]:
                    k += 1
                acc[k + cell[j]] += 1
                n_flag += flag[j]
        base = split
        mk, cs, fs = mark[mid:z], cell[mid:z], flag[mid:z]
        for j in range(z - mid):
            base += mk[j]
            acc[np.uint64(base + cs[j])] += 1
            n_flag += fs[j]
        if n_flag > 0:
            for j in range(a, z):
                if flag[j]:
                    dt = t[j] - ti
                    dm = m[j] - mi
                    if dt >= dt_lo and dm >= dm_lo and dm < dm_hi:
                        out[_search(dt, dt_edges), _search(dm, dm_edges)] += 1
    _fold(acc, fold_starts, out)


@njit(cache=True, nogil=True, parallel=True)
def counts_batch(t, m, offsets, g, out):  # type: ignore[no-untyped-def]
    """Light curve i is ``t[offsets[i]:offsets[i+1]]``; accumulates into ``out[i]``."""
    for i in prange(offsets.size - 1):
        a = offsets[i]
        b = offsets[i + 1]
        _counts_sorted(t[a:b], m[a:b], g, out[i])


@njit(cache=True, nogil=True)
def scan(t, m):  # type: ignore[no-untyped-def]
    """One pass over a light curve: ``(status, index)``; status 0 sorted, 1 unsorted,
    2 non-finite t at index, 3 non-finite m at index."""
    unsorted = False
    for i in range(t.size):
        if not np.isfinite(t[i]):
            return 2, i
        if not np.isfinite(m[i]):
            return 3, i
        if i > 0 and t[i] < t[i - 1]:
            unsorted = True
    return (1 if unsorted else 0), -1
