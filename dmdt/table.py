"""HistogramTable: the histories and dmdt counts of many sources in flat arrays, updated in batches.

This is the streaming path. Each row (one source in one band) owns a slot of one float64 arena
(times, magnitudes, errors, sorted by time, distinct times) and a ``(n_dt, n_dm)`` block of the
counts array. A batch of alerts is applied with one parallel kernel call that adds only the new
pairs and merges the new points into the slots in place; slots grow by doubling, so a source that
gains one point per alert is moved O(log n) times over its life. Nothing is copied per update.

Keys are any hashable (the broker uses ``(source_id, band)``). Rows can be dropped (evicted) and
exported/imported as plain arrays, which is how a durable store persists them.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

import numpy as np

from dmdt import incremental
from dmdt.engine import MAX_POINTS, _threads, kernel_grid
from dmdt.grids import Grid, get_grid
from dmdt.kernels import _PAD

_MIN_SLOT = 8


class HistogramTable:
    """Per-source dmdt histograms for a stream; see the module docstring."""

    def __init__(self, grid: str | Grid | None = None, rows: int = 1024, points: int = 1 << 16):
        self.grid = get_grid(grid)
        self._kgrid = kernel_grid(self.grid)
        self._index: dict[Hashable, int] = {}
        self._keys: list[Hashable | None] = []
        self._free: list[int] = []
        self._off = np.zeros(rows, dtype=np.int64)
        self._len = np.zeros(rows, dtype=np.int64)
        self._cap = np.zeros(rows, dtype=np.int64)
        self._counts = np.zeros((rows, *self.grid.shape), dtype=np.int32)
        # the arena: zero-filled, so the _PAD values read past any slot are finite
        self._t = np.zeros(points + _PAD)
        self._m = np.zeros(points + _PAD)
        self._e = np.zeros(points + _PAD)
        self._used = 0  # arena positions handed out (live slots and garbage)
        self._live = 0  # capacity of live slots

    # ---- rows ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._index

    def keys(self) -> list[Hashable]:
        """Keys of the rows held."""
        return list(self._index)

    def rows(self, keys: Iterable[Hashable], create: bool = True) -> np.ndarray:
        """Row numbers of keys (new empty rows for unknown keys when ``create``, else -1)."""
        out = []
        for key in keys:
            r = self._index.get(key)
            if r is None:
                r = self._new_row(key) if create else -1
            out.append(r)
        return np.asarray(out, dtype=np.int64)

    def _new_row(self, key: Hashable) -> int:
        if self._free:
            r = self._free.pop()
            self._keys[r] = key
        else:
            r = len(self._keys)
            self._keys.append(key)
            if r >= self._off.size:
                grow = self._off.size
                self._off = np.concatenate([self._off, np.zeros(grow, np.int64)])
                self._len = np.concatenate([self._len, np.zeros(grow, np.int64)])
                self._cap = np.concatenate([self._cap, np.zeros(grow, np.int64)])
                self._counts = np.concatenate([self._counts, np.zeros_like(self._counts)])
        self._index[key] = r
        self._off[r] = self._len[r] = self._cap[r] = 0
        self._counts[r] = 0
        return r

    def drop(self, key: Hashable) -> None:
        """Forget a row (its slot becomes garbage, reclaimed by :meth:`compact`)."""
        r = self._index.pop(key)
        self._live -= int(self._cap[r])
        self._keys[r] = None
        self._len[r] = self._cap[r] = 0
        self._free.append(r)

    # ---- reading ------------------------------------------------------------------------------
    def n_points(self, rows: np.ndarray) -> np.ndarray:
        """Distinct points held per row."""
        return self._len[rows].copy()

    def counts(self, rows: np.ndarray) -> np.ndarray:
        """int32 ``(len(rows), n_dt, n_dm)`` copies of the counts."""
        return self._counts[rows]

    def history(self, key: Hashable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Copies of a row's times, magnitudes and errors (sorted by time)."""
        r = self._index[key]
        o, n = int(self._off[r]), int(self._len[r])
        return self._t[o : o + n].copy(), self._m[o : o + n].copy(), self._e[o : o + n].copy()

    def export(self, key: Hashable) -> dict[str, np.ndarray]:
        """A row as plain arrays (for a durable store)."""
        t, m, e = self.history(key)
        return {"t": t, "m": m, "err": e, "counts": self._counts[self._index[key]].copy()}

    def load(self, key: Hashable, row: dict[str, np.ndarray]) -> None:
        """Restore a row saved by :meth:`export` (replacing any row of that key)."""
        if key in self._index:
            self.drop(key)
        r = self._new_row(key)
        n = int(row["t"].size)
        self._reserve(np.array([r]), np.array([n]))
        o = int(self._off[r])
        self._t[o : o + n], self._m[o : o + n], self._e[o : o + n] = row["t"], row["m"], row["err"]
        self._len[r] = n
        self._counts[r] = row["counts"]

    @property
    def nbytes(self) -> int:
        """Memory held by the arrays."""
        return sum(
            a.nbytes
            for a in (self._t, self._m, self._e, self._counts, self._off, self._len, self._cap)
        )

    # ---- updating -----------------------------------------------------------------------------
    def update(
        self,
        keys: Sequence[Hashable],
        t: np.ndarray,
        m: np.ndarray,
        err: np.ndarray,
        offsets: np.ndarray,
        n_threads: int | None = None,
    ) -> np.ndarray:
        """Add alert i's points ``t[offsets[i]:offsets[i+1]]`` to the row of ``keys[i]``.

        Any order; a key may repeat within the batch. Returns the points added per alert (0 for
        points already held). Inputs are validated before any row changes.
        """
        t = np.ascontiguousarray(t, dtype=np.float64)
        m = np.ascontiguousarray(m, dtype=np.float64)
        err = np.ascontiguousarray(err, dtype=np.float64)
        offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        if not (t.size == m.size == err.size) or offsets.size != len(keys) + 1:
            raise ValueError(
                "t, m, err must have equal lengths and offsets one more entry than keys"
            )
        if offsets[0] != 0 or offsets[-1] != t.size or np.any(np.diff(offsets) < 0):
            raise ValueError("offsets must rise from 0 to len(t)")
        if not (np.all(np.isfinite(t)) and np.all(np.isfinite(m))):
            raise ValueError("t and m must be finite")
        rows = self.rows(keys)
        sizes = np.diff(offsets)
        uniq, _first, inverse = np.unique(rows, return_index=True, return_inverse=True)
        if uniq.size < rows.size:  # a source appears twice: gather its points, arrival order
            order = np.argsort(inverse, kind="stable")
            idx = np.concatenate([np.arange(offsets[i], offsets[i + 1]) for i in order])
            t, m, err = t[idx], m[idx], err[idx]
            sizes_u = np.bincount(inverse, weights=sizes, minlength=uniq.size).astype(np.int64)
        else:
            uniq, sizes_u, order = rows, sizes, None
        if np.any(self._len[uniq] + sizes_u > MAX_POINTS):
            raise ValueError(f"a source would exceed {MAX_POINTS} points")
        self._reserve(uniq, self._len[uniq] + sizes_u)
        noff = np.zeros(uniq.size + 1, dtype=np.int64)
        np.cumsum(sizes_u, out=noff[1:])
        with _threads(n_threads):
            added_u = incremental.update_slots(
                self._t, self._m, self._e, self._off, self._len, uniq, t, m, err, noff,
                self._kgrid, self._counts,
            )  # fmt: skip
        if order is None:
            return added_u
        # report per alert: attribute a row's additions to its alerts in arrival order
        added = np.zeros(rows.size, dtype=np.int64)
        left = dict(zip(uniq.tolist(), added_u.tolist(), strict=True))
        for i, r in enumerate(rows.tolist()):
            take = min(int(sizes[i]), left[r])
            added[i] = take
            left[r] -= take
        return added

    def _reserve(self, rows: np.ndarray, need: np.ndarray) -> None:
        """Make sure each row's slot holds ``need`` points, moving rows that are too small."""
        small = need > self._cap[rows]
        if not np.any(small):
            return
        rows, need = rows[small], need[small]
        new_cap = np.maximum(np.maximum(need, 2 * self._cap[rows]), _MIN_SLOT)
        total = int(new_cap.sum())
        if self._used + total + _PAD > self._t.size:
            if 2 * (self._live + total) < self._used + total:
                self.compact(extra=total)
            if self._used + total + _PAD > self._t.size:
                self._grow(self._used + total)
        starts = self._used + np.concatenate([[0], np.cumsum(new_cap)[:-1]])
        for r, s in zip(rows.tolist(), starts.tolist(), strict=True):
            o, n = int(self._off[r]), int(self._len[r])
            for a in (self._t, self._m, self._e):
                a[s : s + n] = a[o : o + n]
        self._live += int(total - self._cap[rows].sum())
        self._off[rows] = starts
        self._cap[rows] = new_cap
        self._used += total

    def _grow(self, at_least: int) -> None:
        size = max(2 * (self._t.size - _PAD), at_least) + _PAD
        for name in ("_t", "_m", "_e"):
            old = getattr(self, name)
            new = np.zeros(size)
            new[: self._used] = old[: self._used]
            setattr(self, name, new)

    def compact(self, extra: int = 0) -> None:
        """Pack live slots to the front of the arena, dropping garbage from moved/dropped rows."""
        live = np.array([r for r in range(len(self._keys)) if self._keys[r] is not None], np.int64)
        caps = self._cap[live]
        starts = (np.cumsum(caps) - caps).astype(np.int64)  # also right with no live row
        size = max(int(caps.sum()) + extra, 1) + _PAD
        size = max(size, self._t.size)
        for name in ("_t", "_m", "_e"):
            old = getattr(self, name)
            new = np.zeros(size)
            for r, s in zip(live.tolist(), starts.tolist(), strict=True):
                o, n = int(self._off[r]), int(self._len[r])
                new[s : s + n] = old[o : o + n]
            setattr(self, name, new)
        self._off[live] = starts
        self._used = int(caps.sum())
        self._live = self._used
