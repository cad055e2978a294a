"""Per-source dmdt state behind a small interface, owned per input partition (pure, no Kafka).

The broker keeps, for each (source_id, band), the distinct points seen so far and their dmdt
counts (`dmdt.table.HistogramTable`). Which partition a source arrived on decides who owns it: the
app drops the sources of a partition when the partition is revoked or lost, so this consumer holds
exactly the state of the partitions it owns and memory stays bounded by them.

`MemoryState` keeps everything in memory: nothing survives a restart, and a partition that comes
back starts empty (tests, `DMDT_STATE_STORE=memory`). `broker.durable.DurableState` (the default)
keeps rows in an embedded store and a changelog topic behind the same protocol: `update` /
`counts` / `n_points` read and write rows, `flush` makes a partition's rows durable before its
offsets are committed, `release` forgets partitions, `assign` / `restoring` / `restore_step`
bring newly owned partitions' state up to date before they are processed.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Sequence
from typing import Protocol

import numpy as np

from broker.photometry import TOTAL
from dmdt.engine import MAX_POINTS
from dmdt.grids import Grid
from dmdt.table import HistogramTable

PartitionId = tuple[str, int]  # (topic, partition); the same shape broker.kafka uses
SourceKey = tuple[str, str]  # (source_id, band)


class SourcePartitions:
    """Which partition each held source arrived on, and each partition's sources: the per-source
    bookkeeping of everything kept per partition (`MemoryState`, `broker.durable.DurableState`,
    `broker.features.FeatureCache`), so that dropping a partition costs its own sources only.
    Sources are kept in order of use, least recently used first."""

    def __init__(self) -> None:
        self._of: dict[SourceKey, PartitionId] = {}
        self._keys: dict[PartitionId, set[SourceKey]] = {}

    def __len__(self) -> int:
        return len(self._of)

    def __contains__(self, key: object) -> bool:
        return key in self._of

    def note(self, key: SourceKey, partition: PartitionId) -> None:
        """``key`` was just used, arriving on ``partition`` (it moves there if it was elsewhere)."""
        old = self._of.pop(key, None)
        self._of[key] = partition
        if old != partition:
            if old is not None:
                self._keys[old].discard(key)
            self._keys.setdefault(partition, set()).add(key)

    def forget(self, key: SourceKey) -> None:
        """Forget one source (evicted)."""
        part = self._of.pop(key, None)
        if part is not None:
            self._keys[part].discard(key)

    def release(self, partition: PartitionId) -> set[SourceKey]:
        """Forget a partition; returns the sources it held."""
        keys = self._keys.pop(partition, set())
        for key in keys:
            del self._of[key]
        return keys

    def oldest(self) -> Iterator[tuple[SourceKey, PartitionId]]:
        """Sources and their partitions, least recently used first (do not change it while
        iterating: collect, then `forget`)."""
        return iter(self._of.items())

    def partitions(self) -> list[PartitionId]:
        """Partitions that hold at least one source."""
        return [p for p, keys in self._keys.items() if keys]


class SourceState(Protocol):
    """What the pipeline needs from a state store."""

    grid: Grid
    max_points: int  # most distinct points a source may hold (the pipeline's per-source cap)

    def __len__(self) -> int: ...

    def update(
        self,
        keys: Sequence[SourceKey],
        partitions: Sequence[PartitionId],
        t: np.ndarray,
        m: np.ndarray,
        err: np.ndarray,
        offsets: np.ndarray,
    ) -> np.ndarray:
        """Apply alert i's points to keys[i]; returns each alert's row."""
        ...

    def n_points(self, rows: np.ndarray) -> np.ndarray: ...

    def counts(self, rows: np.ndarray) -> np.ndarray: ...

    def held(self, keys: Sequence[SourceKey]) -> np.ndarray:
        """Points held per key (0 for unknown keys), without creating rows."""
        ...

    def photometry(self, keys: Sequence[SourceKey]) -> list[str | None]:
        """Each key's light-curve kind (broker.photometry: total, difference, or LEGACY for a
        row written before rows recorded it; total for a row nobody decided, as `update`
        alone makes); None for a key without a row."""
        ...

    def decide(self, kinds: dict[SourceKey, str], reset: Sequence[SourceKey] = ()) -> None:
        """Record the kind of new rows (before the `update` that creates them); ``reset`` keys'
        rows (LEGACY ones) first lose their points."""
        ...

    def history(self, key: SourceKey) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A source's times (sorted, distinct), magnitudes and errors: copies. The sources an
        `update` touched are in memory until the next `flush` (hybrid models read them)."""
        ...

    def flush(self, partitions: Iterable[PartitionId]) -> None:
        """Make these partitions' rows durable (before their offsets are committed)."""
        ...

    def release(self, partitions: Iterable[PartitionId]) -> int:
        """Forget the sources of partitions no longer owned; returns how many were dropped."""
        ...

    def assign(self, partitions: Iterable[PartitionId]) -> None:
        """Partitions now owned (their state may need a restore before they are processed)."""
        ...

    def restoring(self) -> set[PartitionId]:
        """Owned partitions not to be fetched yet: their state is being restored."""
        ...

    def restore_step(self, budget_s: float) -> list[PartitionId]:
        """Restore for about budget_s; returns the partitions now ready."""
        ...

    def close(self) -> None:
        """Release what the state holds open (files, locks)."""
        ...


class MemoryState:
    """`SourceState` in process memory: a HistogramTable plus which partition owns each row."""

    def __init__(self, grid: Grid, rows: int = 4096, points: int = 1 << 20) -> None:
        self.grid = grid
        self.max_points = MAX_POINTS
        self.table = HistogramTable(grid, rows=rows, points=points)
        self._kind: dict[Hashable, str] = {}
        self._sources = SourcePartitions()

    def __len__(self) -> int:
        return len(self.table)

    def update(
        self,
        keys: Sequence[SourceKey],
        partitions: Sequence[PartitionId],
        t: np.ndarray,
        m: np.ndarray,
        err: np.ndarray,
        offsets: np.ndarray,
    ) -> np.ndarray:
        """One batched `HistogramTable.update`; returns the row of each alert."""
        self.table.update(keys, t, m, err, offsets)
        for key, part in zip(keys, partitions, strict=True):
            self._sources.note(key, part)
        return self.table.rows(keys, create=False)

    def n_points(self, rows: np.ndarray) -> np.ndarray:
        """Distinct points held per row."""
        return self.table.n_points(rows)

    def counts(self, rows: np.ndarray) -> np.ndarray:
        """int32 ``(len(rows), n_dt, n_dm)`` counts."""
        return self.table.counts(rows)

    def held(self, keys: Sequence[SourceKey]) -> np.ndarray:
        """Points held per key (0 for unknown keys)."""
        rows = self.table.rows(keys, create=False)
        out = np.zeros(rows.size, dtype=np.int64)
        known = rows >= 0
        out[known] = self.table.n_points(rows[known])
        return out

    def photometry(self, keys: Sequence[SourceKey]) -> list[str | None]:
        """Each key's light-curve kind; None for a key without a row."""
        return [self._kind.get(k, TOTAL) if k in self.table else None for k in keys]

    def decide(self, kinds: dict[SourceKey, str], reset: Sequence[SourceKey] = ()) -> None:
        """Record new rows' kinds; ``reset`` rows lose their points first."""
        for key in reset:
            if key in self.table:
                self.table.drop(key)
        self._kind.update(kinds)

    def flush(self, partitions: Iterable[PartitionId]) -> None:
        """Nothing to make durable in memory."""

    def release(self, partitions: Iterable[PartitionId]) -> int:
        """Drop the rows of these partitions (the table reclaims their slots when it needs room)."""
        dropped = 0
        for part in partitions:
            for key in self._sources.release(part):
                self._kind.pop(key, None)
                self.table.drop(key)
                dropped += 1
        return dropped

    def assign(self, partitions: Iterable[PartitionId]) -> None:
        """Nothing to restore: a partition starts empty."""

    def restoring(self) -> set[PartitionId]:
        """Never restoring."""
        return set()

    def restore_step(self, budget_s: float) -> list[PartitionId]:
        """Nothing to restore."""
        return []

    def close(self) -> None:
        """Nothing to close."""

    def partitions(self) -> list[PartitionId]:
        """Partitions that own at least one row."""
        return self._sources.partitions()

    def history(self, key: SourceKey) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A source's stored times, magnitudes and errors (copies)."""
        return self.table.history(key)


def warm_up(grid: Grid) -> None:
    """Run the histogram kernels once on a throwaway table, so that the first batch does not
    pay for them: numba compiles them on the first call after an install (tens of seconds on
    two cores) and loads them from its cache after that."""
    n = 3
    t = np.array([50000.0, 50001.0, 50003.5])
    table = HistogramTable(grid, rows=4, points=64)
    table.update([("warm-up", "x")], t, np.full(n, 15.0), np.full(n, 0.1), np.array([0, n]))
    table.counts(table.rows([("warm-up", "x")], create=False))
