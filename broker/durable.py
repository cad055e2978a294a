"""`DurableState`: the `SourceState` that survives the process and follows its partitions.

Three layers, each the truth for the one above it:

1. the changelog (broker.changelog): every persisted row, on the Kafka cluster, per partition;
2. the local store (broker.store, RocksDB in the state dir): rows whose changelog records were
   acknowledged, plus per partition the changelog offset it reflects;
3. a bounded cache in memory (a `HistogramTable`): the rows of recently active sources. A row is
   dirty from the update that changed it until `flush` has written it to (1) then (2); clean rows
   are evicted least recently used first and read back from (2) in one multi-get per batch.

What makes it exact: an update is a set union (points already held are skipped), so applying a
redelivered alert, or restoring a row that already holds some of a batch's points, changes
nothing. The app stores a batch's input offsets only after `flush` returned, so the durable rows
always hold at least every point of every committed input; everything after the committed offset
is redelivered and merged idempotently.

Restores: when partitions are assigned, each is restored from its changelog, from the offset the
local store reflects (0 on a new machine) up to an end marker produced for the occasion
(broker.changelog explains why not the high watermark), in bounded steps between polls while the
partition stays paused. Rows only grow, so of two versions of a row the one with more points is
the newer; a restore keeps it (a late write of a former owner cannot shrink a row).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from broker.photometry import TOTAL
from broker.state import MemoryState, PartitionId, SourceKey, SourcePartitions, SourceState
from broker.store import (
    RocksStore,
    StateStoreCorrupted,
    StateStoreError,
    decode_key,
    decode_row,
    encode_key,
    encode_row,
    row_photometry,
    row_points,
    row_rank,
    set_aside,
    store_path,
)
from dmdt.engine import MAX_POINTS
from dmdt.grids import Grid
from dmdt.table import HistogramTable

if TYPE_CHECKING:
    from broker.changelog import Changelog
    from broker.settings import BrokerSettings

log = logging.getLogger(__name__)

RESTORE_CHUNK = 2000  # changelog records per read while restoring


MAX_KEY_BYTES = 256  # a row's changelog key: source id (<= 128) + NUL + band (<= 16), broker.sanity
RECORD_MARGIN = 1024  # below the producer's limit, for what the codec may add later
DEFAULT_RECORD_BYTES = 1_000_000  # librdkafka's default message.max.bytes


def max_row_points(grid: Grid, record_bytes: int = DEFAULT_RECORD_BYTES) -> int:
    """Most points a row may hold so that its changelog record (row and key) fits under the
    producer's ``record_bytes`` (message.max.bytes); at most the kernels' MAX_POINTS. Read off the
    row codec itself: the size of an empty row plus the bytes of one point."""

    def size(n: int) -> int:
        t = np.arange(n, dtype=np.float64)
        counts = np.zeros(grid.shape, np.int32)
        row: dict[str, np.ndarray] = {"t": t, "m": t, "err": t, "counts": counts}
        return len(encode_row(row, grid))

    empty, per_point = size(0), size(1) - size(0)
    room = record_bytes - MAX_KEY_BYTES - RECORD_MARGIN - empty
    return max(0, min(MAX_POINTS, room // per_point))


class DurableState:
    """Rows in a bounded memory cache over a RocksDB store and a changelog; see the module doc."""

    def __init__(
        self,
        grid: Grid,
        store: RocksStore,
        changelog: Changelog | None = None,
        *,
        cache_rows: int = 100_000,
        on_event: Callable[[str, int], None] | None = None,
        record_bytes: int = DEFAULT_RECORD_BYTES,
    ) -> None:
        # the per-source cap: a row must fit in one changelog record (the pipeline dead-letters
        # alerts that would take a source past it, as source_full)
        self.max_points = max_row_points(grid, record_bytes)
        self.grid = grid
        self.store = store
        self.changelog = changelog
        self.cache_rows = cache_rows
        self.on_event = on_event  # ("loaded" | "evicted" | "restored" | "persisted", n): metrics
        self.table = HistogramTable(grid, rows=min(cache_rows, 4096) + 64, points=1 << 20)
        self._kind: dict[SourceKey, str] = {}  # light-curve kind of rows in memory, if not TOTAL
        self._sources = SourcePartitions()  # held rows and their partitions, in order of use
        self._dirty: dict[PartitionId, set[SourceKey]] = {}
        self._prefetched: dict[SourceKey, bytes] = {}  # rows `held` read, for the next update
        self._restoring: dict[PartitionId, tuple[int, int] | None] = {}  # (end marker, next)
        self._reading: PartitionId | None = None

    def _event(self, name: str, n: int) -> None:
        if self.on_event is not None and n:
            self.on_event(name, n)

    def __len__(self) -> int:
        return len(self.table)

    # ---------------------------------------------------------------- reading and updating

    def _load(self, keys: Iterable[SourceKey]) -> None:
        """Bring rows into memory from the store (one multi-get); unknown keys stay absent."""
        missing = [k for k in dict.fromkeys(keys) if k not in self.table]
        need = [k for k in missing if k not in self._prefetched]
        found = dict(zip(need, self.store.get_many(need), strict=True))
        loaded = 0
        for key in missing:
            value = self._prefetched.get(key) if key in self._prefetched else found[key]
            if value is not None:
                self.table.load(key, decode_row(value, self.grid))
                self._set_kind(key, row_photometry(value))
                loaded += 1
        self._prefetched.clear()
        self._event("loaded", loaded)

    def update(
        self,
        keys: Sequence[SourceKey],
        partitions: Sequence[PartitionId],
        t: np.ndarray,
        m: np.ndarray,
        err: np.ndarray,
        offsets: np.ndarray,
    ) -> np.ndarray:
        """Load missing rows, one batched `HistogramTable.update`; returns each alert's row."""
        self._load(keys)
        added = self.table.update(keys, t, m, err, offsets)
        for key, part, n in zip(keys, partitions, added.tolist(), strict=True):
            self._sources.note(key, part)
            if n:
                self._dirty.setdefault(part, set()).add(key)
        return self.table.rows(keys, create=False)

    def _set_kind(self, key: SourceKey, kind: str) -> None:
        if kind == TOTAL:
            self._kind.pop(key, None)
        else:
            self._kind[key] = kind

    def photometry(self, keys: Sequence[SourceKey]) -> list[str | None]:
        """Each key's light-curve kind, from memory or the store (rows `held` read are reused);
        None for a key without a row."""
        out: list[str | None] = [None] * len(keys)
        cold: list[SourceKey] = []
        for i, key in enumerate(keys):
            if key in self.table:
                out[i] = self._kind.get(key, TOTAL)
            elif key not in self._prefetched:
                cold.append(key)
        cold = list(dict.fromkeys(cold))
        self._prefetched.update(
            (k, v) for k, v in zip(cold, self.store.get_many(cold), strict=True) if v is not None
        )
        for i, key in enumerate(keys):
            if out[i] is None and key in self._prefetched:
                out[i] = row_photometry(self._prefetched[key])
        return out

    def decide(self, kinds: dict[SourceKey, str], reset: Sequence[SourceKey] = ()) -> None:
        """Record new rows' kinds; ``reset`` rows lose their points (written at the next flush,
        where the row's new version replaces the old one: `row_rank`)."""
        empty: dict[str, np.ndarray] = {"t": np.zeros(0), "m": np.zeros(0), "err": np.zeros(0),
                                        "counts": np.zeros(self.grid.shape, np.int32)}  # fmt: skip
        for key in reset:
            self._prefetched.pop(key, None)
            self.table.load(key, empty)  # shadows the stored row
        self._load(kinds)  # stored rows first, so that the decision is not read over
        for key, kind in kinds.items():
            self._set_kind(key, kind)

    def n_points(self, rows: np.ndarray) -> np.ndarray:
        """Distinct points held per row."""
        return self.table.n_points(rows)

    def counts(self, rows: np.ndarray) -> np.ndarray:
        """int32 ``(len(rows), n_dt, n_dm)`` counts."""
        return self.table.counts(rows)

    def held(self, keys: Sequence[SourceKey]) -> np.ndarray:
        """Points held per key, in memory or in the store (0 for unknown keys)."""
        rows = self.table.rows(keys, create=False)
        out = np.zeros(rows.size, dtype=np.int64)
        known = rows >= 0
        out[known] = self.table.n_points(rows[known])
        cold = [k for k, r in zip(keys, rows.tolist(), strict=True) if r < 0]
        cold = list(dict.fromkeys(cold))
        values = dict(zip(cold, self.store.get_many(cold), strict=True))
        self._prefetched = {k: v for k, v in values.items() if v is not None}
        for i, key in enumerate(keys):
            if rows[i] < 0 and key in self._prefetched:
                out[i] = row_points(self._prefetched[key])
        return out

    def history(self, key: SourceKey) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A source's times, magnitudes and errors, from memory or the store (copies)."""
        if key in self.table:
            return self.table.history(key)
        (value,) = self.store.get_many([key])
        if value is None:
            raise KeyError(key)
        row = decode_row(value, self.grid)
        return row["t"], row["m"], row["err"]

    # ---------------------------------------------------------------- durability

    def flush(self, partitions: Iterable[PartitionId]) -> None:
        """Write these partitions' dirty rows to the changelog (acknowledged), then the store.

        Raises (ChangelogError, StateStoreError) with the rows still dirty: the caller must
        then not store the batch's offsets.
        """
        taken = {p: self._dirty.pop(p) for p in set(partitions) if self._dirty.get(p)}
        if not taken:
            return
        try:
            records = [
                (
                    part,
                    encode_key(key),
                    encode_row(
                        self.table.export(key), self.grid, photometry=self._kind.get(key, TOTAL)
                    ),
                )
                for part, keys in taken.items()
                for key in keys
                if key in self.table
            ]
            applied = self.changelog.write(records) if self.changelog is not None else {}
            self.store.write(((decode_key(k), v) for _, k, v in records), applied)
        except BaseException:
            for part, keys in taken.items():
                self._dirty.setdefault(part, set()).update(keys)
            raise
        self._event("persisted", len(records))
        self._evict()

    def _evict(self) -> None:
        """Drop the least recently used clean rows beyond the cache size (they are in the store)."""
        excess = len(self.table) - self.cache_rows
        if excess <= 0:
            return
        dirty = set().union(*self._dirty.values()) if self._dirty else set()
        victims: list[SourceKey] = []
        for key, _ in self._sources.oldest():
            if len(victims) >= excess:
                break
            if key not in dirty:
                victims.append(key)
        for key in victims:
            self._sources.forget(key)
            self._kind.pop(key, None)
            self.table.drop(key)
        self._event("evicted", len(victims))

    def release(self, partitions: Iterable[PartitionId]) -> int:
        """Forget partitions no longer owned: their rows leave memory (dirty ones are dropped
        unwritten: lost partitions are not committed), and any restore of them stops."""
        dropped = 0
        for part in partitions:
            self._restoring.pop(part, None)
            if self._reading == part:
                self._reading = None
            self._dirty.pop(part, None)
            for key in self._sources.release(part):
                self._kind.pop(key, None)
                if key in self.table:
                    self.table.drop(key)
                    dropped += 1
        return dropped

    # ---------------------------------------------------------------- restores

    def assign(self, partitions: Iterable[PartitionId]) -> None:
        """Partitions now owned: with a changelog, each must be restored before it is processed."""
        if self.changelog is not None:
            for part in partitions:
                self._restoring.setdefault(part, None)

    def restoring(self) -> set[PartitionId]:
        """Partitions waiting for (or in) a restore: keep them paused."""
        return set(self._restoring)

    def restore_step(self, budget_s: float = 0.5) -> list[PartitionId]:
        """Restore for up to about budget_s; returns the partitions whose restore completed."""
        done: list[PartitionId] = []
        deadline = time.monotonic() + budget_s
        from broker.changelog import ChangelogError

        for part in list(self._restoring):
            if time.monotonic() > deadline:
                break
            try:
                finished = self._restore_some(part, deadline)
            except ChangelogError as exc:  # the cluster is away: the partition stays paused
                log.warning("restore of %s delayed: %s", part, exc)
                break
            if finished:
                del self._restoring[part]
                done.append(part)
        return done

    def _restore_some(self, part: PartitionId, deadline: float) -> bool:
        assert self.changelog is not None
        span = self._restoring[part]
        if span is None:  # start: where the store is, and where the log ends now
            end = self.changelog.end_marker(part)
            start = self.store.applied(part) or 0
            if start > end:  # the log is younger than the store (topic recreated)
                log.warning("changelog of %s restarts below the store (%d > %d)", part, start, end)
                start = 0
            span = self._restoring[part] = (end, start)
            log.info("restoring %s from changelog offsets %d..%d", part, start, end)
        end, pos = span
        if self._reading != part:
            self.changelog.seek(part, pos)
            self._reading = part
        from broker.changelog import rows_of

        while time.monotonic() <= deadline:
            records = self.changelog.read(RESTORE_CHUNK, 0.2)
            if not records:
                continue
            rows, reached = rows_of(records, end)
            pos = end + 1 if reached else records[-1].offset + 1
            self._merge(rows, part, pos)
            self._restoring[part] = (end, pos)
            if reached:
                self._reading = None
                return True
        return False

    def _merge(self, rows: list[tuple[bytes, bytes]], part: PartitionId, applied: int) -> None:
        """Write restored rows to the store, keeping the newer version of each (`row_rank`)."""
        latest: dict[SourceKey, bytes] = {}
        for k, v in rows:
            key = decode_key(k)
            if key not in latest or row_rank(v) >= row_rank(latest[key]):
                latest[key] = v
        keys = list(latest)
        for key, have in zip(keys, self.store.get_many(keys), strict=True):
            if have is not None and row_rank(have) > row_rank(latest[key]):
                del latest[key]
        self.store.write(latest.items(), {part: applied})
        self._event("restored", len(latest))

    def rebuild(self, partitions: Iterable[PartitionId]) -> Path:
        """The store is damaged (found on a read or a write): set it aside, start an empty one
        and restore these partitions (the owned ones) from the changelog; their rows in memory
        are dropped, dirty ones too (the caller fetches the batch in hand again). Returns where
        the damaged store went. StateStoreError without a changelog: nothing to rebuild from."""
        parts = list(partitions)
        if self.changelog is None:
            raise StateStoreError(f"the state store {self.store.path} is damaged and there is no "
                                  "changelog to rebuild it from")  # fmt: skip
        self.release(parts)
        self._prefetched.clear()
        path, sync = self.store.path, self.store.sync
        try:
            self.store.close()
        except StateStoreError as exc:
            log.warning("closing the damaged store: %s", exc)
        aside = set_aside(path)
        self.store = RocksStore(path, sync=sync)
        self.assign(parts)
        log.error("state store %s damaged: moved to %s; restoring %d partitions from the "
                  "changelog", path, aside, len(parts))  # fmt: skip
        return aside

    def close(self) -> None:
        """Close the store (rows in memory are all flushed by then, or redelivered)."""
        self.store.close()


def open_store(
    path: Path, *, sync: bool, rebuildable: bool, on_rebuild: Callable[[str], None] | None = None
) -> RocksStore:
    """Open a consumer's store and read it all once, verifying every block (corruption found now
    costs a rebuild before the first batch, not a crash at the first unlucky read). A damaged
    store is set aside and replaced by an empty one when ``rebuildable`` (a changelog holds every
    row: the restores that follow each assignment refill it from offset 0), else refused."""
    try:
        store = RocksStore(path, sync=sync)
        try:
            store.check()
        except StateStoreCorrupted:
            store.close()
            raise
        return store
    except StateStoreCorrupted as exc:
        if not rebuildable:
            raise StateStoreCorrupted(
                f"{exc}; with DMDT_STATE_CHANGELOG=false there is no changelog to rebuild it "
                f"from: move {path} aside to start with an empty state (its sources' histograms "
                "start again) or restore it from a backup"
            ) from exc
        aside = set_aside(path)
        log.error("state store damaged (%s): moved to %s; the partitions will be restored from "
                  "the changelog", exc, aside)  # fmt: skip
        if on_rebuild is not None:
            on_rebuild("start")
        return RocksStore(path, sync=sync)


def open_state(
    settings: BrokerSettings, grid: Grid, on_rebuild: Callable[[str], None] | None = None
) -> SourceState:
    """The state the settings ask for: `DurableState` in the state dir (checked; a damaged store
    is rebuilt when there is a changelog, ``on_rebuild("start")`` is called), or `MemoryState`."""
    if settings.state_store == "memory":
        return MemoryState(grid)
    store = open_store(
        store_path(settings.state_dir, settings.group_id), sync=settings.state_sync,
        rebuildable=settings.state_changelog, on_rebuild=on_rebuild,
    )  # fmt: skip
    limit = int(settings.kafka_config().get("message.max.bytes", DEFAULT_RECORD_BYTES))
    return DurableState(grid, store, cache_rows=settings.state_cache_rows, record_bytes=limit)
