"""Numba kernels for incremental dmdt updates: a new point adds only its pairs with the points held.

A source's history is sorted by time with distinct times. New points arrive in any order; a point
whose time is already held (or came earlier in the same batch) is skipped, so redelivered alerts
and the history that every ZTF alert repeats never count twice. The counts after any sequence of
updates equal :func:`dmdt.kernels.counts_sorted` of the distinct points held (tested).

- :func:`update_slots`: sources stored as slots of one flat arena (``HistogramTable``), updated
  in place; the caller guarantees each slot's capacity.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from dmdt.kernels import _PAD, _row_end, _row_lattice, _row_table, counts_sorted


@njit(cache=True, nogil=True)
def _accept(ht, nt, nm, ne):  # type: ignore[no-untyped-def]
    """New points not yet held, sorted by time and distinct: ``(at, am, ae, n_accepted)``."""
    q = nt.size
    n = ht.size
    order = np.argsort(nt, kind="mergesort")  # stable: the first arrival of a time wins
    at = np.empty(q)
    am = np.empty(q)
    ae = np.empty(q)
    na = 0
    for r in range(q):
        p = order[r]
        tp = nt[p]
        if na > 0 and at[na - 1] == tp:
            continue
        s = np.searchsorted(ht, tp)
        if s < n and ht[s] == tp:
            continue
        at[na] = tp
        am[na] = nm[p]
        ae[na] = ne[p]
        na += 1
    return at, am, ae, na


@njit(cache=True, nogil=True)
def _add_pairs(ht, hm, hm_pad, at, am, na, g, counts):  # type: ignore[no-untyped-def]
    """Add the pairs of each accepted point with the history, and among the accepted points.

    ``hm_pad`` is ``hm`` followed by at least ``_PAD`` finite values (read, never used).
    """
    n = ht.size
    dt_hi = g[0][-1]
    n_cells = g[5].size
    if n_cells > 0 and n > 0 and na > 0:
        cell = np.empty(n + _PAD, dtype=np.int32)
        flag = np.empty(n + _PAD, dtype=np.int32)
    for r in range(na):
        tp = at[r]
        mp = am[r]
        s = np.searchsorted(ht, tp)
        # earlier points walking back (|dt| grows), later points walking forward
        for first, sign in ((s - 1, -1), (s, 1)):
            if 0 <= first < n and sign * (ht[first] - tp) < dt_hi:
                last = _row_end(tp, ht, first, sign, dt_hi)
                if n_cells > 0:
                    _row_lattice(tp, mp, ht, hm, hm_pad, first, last, sign, g, counts, cell, flag)
                else:
                    _row_table(tp, mp, ht, hm, first, last, sign, g, counts)
    if na > 1:  # pairs among the accepted points
        counts_sorted(at[:na], am[:na], g, counts)


@njit(cache=True, nogil=True)
def _merge_back(ot, om, oe, n, at, am, ae, na):  # type: ignore[no-untyped-def]
    """Merge the accepted run into ``o*[:n]`` (sorted), in place from the back."""
    i = n - 1
    j = na - 1
    k = n + na - 1
    while j >= 0:
        if i >= 0 and ot[i] > at[j]:
            ot[k] = ot[i]
            om[k] = om[i]
            oe[k] = oe[i]
            i -= 1
        else:
            ot[k] = at[j]
            om[k] = am[j]
            oe[k] = ae[j]
            j -= 1
        k -= 1


@njit(cache=True, nogil=True, parallel=True)
def update_slots(t, m, e, off, length, rows, nt, nm, ne, noff, g, counts):  # type: ignore[no-untyped-def]
    """Arena layout: row r holds ``t[off[r] : off[r] + length[r]]`` with room for the new points
    and ``_PAD`` readable values after its capacity. Batch entry i updates row ``rows[i]``
    (distinct rows) with new points ``noff[i]:noff[i+1]``. Returns points added per entry."""
    added = np.zeros(rows.size, dtype=np.int64)
    for i in prange(rows.size):
        r = rows[i]
        o = off[r]
        n = length[r]
        c, d = noff[i], noff[i + 1]
        at, am, ae, na = _accept(t[o : o + n], nt[c:d], nm[c:d], ne[c:d])
        if na == 0:
            continue
        _add_pairs(t[o : o + n], m[o : o + n], m[o : o + n + _PAD], at, am, na, g, counts[r])
        _merge_back(t[o:], m[o:], e[o:], n, at, am, ae, na)
        length[r] = n + na
        added[i] = na
    return added
