"""Per-source dmdt state on local disk: the row codec and an embedded RocksDB store (rocksdict).

Why RocksDB (an LSM tree) rather than LMDB (a B-tree): after every batch the broker rewrites the
row of every source the batch touched (small random overwrites, write-heavy) and reads rows back
in batches when an evicted source reappears. An LSM turns the overwrites into sequential WAL and
memtable appends, batches lookups (`multi_get`), compresses blocks (LZ4: the count arrays are
mostly zeros) and keeps a write batch atomic across a `kill -9` (the WAL is replayed on open).
LMDB would copy a B-tree path per overwritten row and needs its map size chosen up front.

Row value, format version 2, little-endian, no pickles::

    header  <4sBBHHIQ   magic b"DMDR", version, flags (bit 0: counts follow; bits 1-2: the
                        light curve's kind, 1 total, 2 difference, broker.photometry), n_dt,
                        n_dm, n_points, grid fingerprint (first 8 bytes of blake2b of the edges)
    t, m, err           float64[n_points] each, sorted by time, distinct times
    counts              int32[n_dt * n_dm], row-major (when flag bit 0 is set)

Points are the truth; counts are a cache of them: a row written under another grid (or without
counts) is decoded by recomputing its counts from the points with `dmdt.engine.counts`. Format 1
(brokers before 0.2, whose ZTF and Rubin decoders kept difference-image magnitudes) had no kind:
its rows read as `LEGACY` (docs/operations.md, upgrading).

Keys: ``b"r" + source_id + b"\\0" + band`` (UTF-8) for rows, the same in changelog records without
the ``r``; ``b"m" + topic + b"\\0" + partition`` for a partition's metadata (the next changelog
offset this store has applied, int64).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import struct
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from pathlib import Path

import numpy as np
from rocksdict import DBCompressionType, Options, Rdict, ReadOptions, WriteBatch, WriteOptions

from broker.photometry import DIFFERENCE, LEGACY, TOTAL
from broker.state import PartitionId, SourceKey
from dmdt.engine import counts as dmdt_counts
from dmdt.grids import Grid

MAGIC = b"DMDR"
VERSION = 2
READABLE_VERSIONS = (1, 2)
HAS_COUNTS = 0x01
_KIND_SHIFT = 1
_KIND_MASK = 0x06
_KIND_CODES = {TOTAL: 1, DIFFERENCE: 2}
_KINDS = {code: kind for kind, code in _KIND_CODES.items()}
_HEADER = struct.Struct("<4sBBHHIQ")
_OFFSET = struct.Struct("<q")
_ROW, _META = b"r", b"m"


class StateStoreError(RuntimeError):
    """The durable store could not be opened, read or written, or holds an unreadable row."""


class StateStoreCorrupted(StateStoreError):
    """RocksDB found the store's files damaged (a block checksum mismatch, a bad CURRENT or
    MANIFEST file): the store must be set aside and rebuilt from the changelog."""


_DAMAGE = ("Corruption", "checksum mismatch", "MANIFEST")
_LOCKED = ("LOCK", "lock hold", "No locks available", "Resource temporarily unavailable")


def _failure(what: str, exc: Exception) -> StateStoreError:
    """A rocksdict error (a plain Exception) as StateStoreCorrupted when RocksDB reports damage."""
    text = str(exc)
    if any(mark in text for mark in _DAMAGE):
        return StateStoreCorrupted(f"{what}: {text}")
    return StateStoreError(f"{what}: {text}")


def set_aside(path: Path) -> Path:
    """Move a damaged store out of the way, to ``<path>.damaged`` (replacing an older one there);
    returns where it went. Kept for inspection; delete it when it is no longer wanted."""
    path = Path(path)
    aside = path.with_name(path.name + ".damaged")
    if aside.exists():
        shutil.rmtree(aside)
    if path.exists():
        os.replace(path, aside)
    return aside


# ---------------------------------------------------------------- codec


@cache
def _fingerprint(grid: Grid) -> int:
    h = hashlib.blake2b(digest_size=8)
    h.update(np.ascontiguousarray(grid.dt_edges, "<f8").tobytes())
    h.update(b"|")
    h.update(np.ascontiguousarray(grid.dm_edges, "<f8").tobytes())
    return int.from_bytes(h.digest(), "little")


def grid_fingerprint(grid: Grid) -> int:
    """A 64-bit identity of a grid's edges (rows remember the grid their counts were made on)."""
    return _fingerprint(grid)


def encode_row(
    row: Mapping[str, np.ndarray], grid: Grid, *, photometry: str = TOTAL, with_counts: bool = True
) -> bytes:
    """One row (`HistogramTable.export`: t, m, err, counts) of a light curve of kind
    ``photometry`` (broker.photometry.TOTAL or DIFFERENCE) as bytes; see the module docstring."""
    n = int(row["t"].size)
    n_dt, n_dm = grid.shape
    flags = (HAS_COUNTS if with_counts else 0) | _KIND_CODES[photometry] << _KIND_SHIFT
    parts = [
        _HEADER.pack(MAGIC, VERSION, flags, n_dt, n_dm, n, _fingerprint(grid)),
        np.ascontiguousarray(row["t"], "<f8").tobytes(),
        np.ascontiguousarray(row["m"], "<f8").tobytes(),
        np.ascontiguousarray(row["err"], "<f8").tobytes(),
    ]  # fmt: skip
    if with_counts:
        counts = np.ascontiguousarray(row["counts"], "<i4")
        if counts.shape != grid.shape:
            raise ValueError(f"counts shaped {counts.shape}, grid {grid.shape}")
        parts.append(counts.tobytes())
    return b"".join(parts)


def row_points(data: bytes) -> int:
    """Points of an encoded row, read from its header only."""
    return int(_header(data)[5])


def row_photometry(data: bytes) -> str:
    """The kind of an encoded row's light curve (`LEGACY` for format 1), from its header."""
    code = (_header(data)[2] & _KIND_MASK) >> _KIND_SHIFT
    if code == 0:
        return LEGACY
    kind = _KINDS.get(code)
    if kind is None:
        raise StateStoreError(f"row of unknown light-curve kind {code}")
    return kind


def row_rank(data: bytes) -> tuple[bool, int]:
    """Which of two versions of a row is the newer: a row that records its kind beats a format-1
    row (the upgrade replaces those), then the one with more points (rows only grow)."""
    return row_photometry(data) != LEGACY, row_points(data)


def _header(data: bytes) -> tuple[bytes, int, int, int, int, int, int]:
    if len(data) < _HEADER.size:
        raise StateStoreError(f"row of {len(data)} bytes is shorter than its header")
    head = _HEADER.unpack_from(data)
    if head[0] != MAGIC:
        raise StateStoreError(f"not a dmdt row (magic {head[0]!r})")
    if head[1] not in READABLE_VERSIONS:
        raise StateStoreError(
            f"row format version {head[1]} (this broker reads {READABLE_VERSIONS})"
        )
    return head


def decode_row(data: bytes, grid: Grid) -> dict[str, np.ndarray]:
    """Bytes from `encode_row` -> t, m, err, counts on ``grid`` (recomputed if not stored on it)."""
    _, _, flags, n_dt, n_dm, n, fp = _header(data)
    cells = n_dt * n_dm if flags & HAS_COUNTS else 0
    expected = _HEADER.size + 24 * n + 4 * cells
    if len(data) != expected:
        raise StateStoreError(f"row of {len(data)} bytes, its header says {expected}")
    pos = _HEADER.size
    arrays: dict[str, np.ndarray] = {}
    for name in ("t", "m", "err"):
        arrays[name] = np.frombuffer(data, "<f8", n, pos).astype(np.float64)
        pos += 8 * n
    if cells and fp == _fingerprint(grid) and (n_dt, n_dm) == grid.shape:
        counts = np.frombuffer(data, "<i4", cells, pos).astype(np.int32).reshape(n_dt, n_dm)
    else:  # another grid, or points only: the counts follow from the points
        counts = dmdt_counts(arrays["t"], arrays["m"], grid) if n else np.zeros(grid.shape, "i4")
    arrays["counts"] = counts
    return arrays


def encode_key(key: SourceKey) -> bytes:
    """``source_id\\0band`` in UTF-8 (the changelog record key; NUL is not allowed in either)."""
    source, band = key
    if "\0" in source or "\0" in band:
        raise ValueError(f"NUL in a source id or band: {key!r}")
    return f"{source}\0{band}".encode()


def decode_key(data: bytes) -> SourceKey:
    """Inverse of `encode_key`."""
    source, sep, band = data.decode().partition("\0")
    if not sep:
        raise StateStoreError(f"bad state key {data!r}")
    return source, band


# ---------------------------------------------------------------- the store


def store_path(state_dir: Path, group_id: str) -> Path:
    """Where a consumer group's store lives under the state dir (one store per group)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", group_id) or "_"
    return Path(state_dir) / safe / "rocksdb"


def _meta_key(part: PartitionId) -> bytes:
    return _META + f"{part[0]}\0{part[1]}".encode()


class RocksStore:
    """Rows by source key plus per-partition metadata, in one RocksDB on local disk.

    One process opens a store at a time (RocksDB's LOCK file): two consumers on one machine need
    two state dirs. `write` is one atomic write batch: rows and applied offsets land together or
    not at all, also across a `kill -9`. ``sync=True`` also fsyncs the WAL (survives a machine
    crash without the changelog; with the changelog, a store that lost its last writes is
    repaired by the restore that follows every assignment).
    """

    def __init__(self, path: Path, *, sync: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        opts = Options(raw_mode=True)
        opts.create_if_missing(True)
        opts.set_compression_type(DBCompressionType.lz4())
        opts.set_write_buffer_size(32 << 20)
        opts.set_max_write_buffer_number(2)
        opts.set_keep_log_file_num(2)
        self.sync = sync
        try:
            self._rdict: Rdict | None = Rdict(str(self.path), opts)
        except Exception as exc:  # rocksdict raises plain Exception
            text = str(exc)
            if any(mark in text for mark in _LOCKED):
                raise StateStoreError(
                    f"cannot open the state store {self.path}: it is locked by another process "
                    f"({text}); each consumer needs its own DMDT_STATE_DIR"
                ) from exc
            failure = _failure(f"cannot open the state store {self.path}", exc)
            if isinstance(failure, StateStoreCorrupted):
                raise StateStoreCorrupted(
                    f"the state store {self.path} is damaged: {text}"
                ) from exc
            raise StateStoreError(
                f"{failure} (is DMDT_STATE_DIR writable, its disk not full?)"
            ) from exc
        self._wopts = WriteOptions()
        self._wopts.sync = sync

    @property
    def _db(self) -> Rdict:
        if self._rdict is None:
            raise StateStoreError(f"the state store {self.path} is closed")
        return self._rdict

    def get_many(self, keys: Sequence[SourceKey]) -> list[bytes | None]:
        """Encoded rows of keys (None where absent), one multi-get."""
        if not keys:
            return []
        try:
            return list(self._db.get([_ROW + encode_key(k) for k in keys]))  # type: ignore[arg-type]
        except Exception as exc:
            raise _failure("state store read failed", exc) from exc

    def write(
        self,
        rows: Iterable[tuple[SourceKey, bytes]],
        applied: Mapping[PartitionId, int] | None = None,
    ) -> int:
        """Write rows and applied changelog offsets in one atomic batch; returns bytes written."""
        batch = WriteBatch(raw_mode=True)
        size = 0
        for key, value in rows:
            batch.put(_ROW + encode_key(key), value)
            size += len(value)
        for part, offset in (applied or {}).items():
            batch.put(_meta_key(part), _OFFSET.pack(offset))
        if batch.is_empty():
            return 0
        try:
            self._db.write(batch, self._wopts)
        except Exception as exc:
            raise _failure("state store write failed", exc) from exc
        return size

    def check(self) -> int:
        """Read every block of the store and verify its checksum (done when a consumer opens its
        store); returns the number of keys. Raises StateStoreCorrupted."""
        opts = ReadOptions()
        opts.set_verify_checksums(True)
        opts.fill_cache(False)  # type: ignore[call-arg]  # a bulk scan: keep the cache for the stream
        it = self._db.iter(opts)
        n, error = 0, None
        try:
            it.seek_to_first()
            while it.valid():
                n += 1
                it.next()
            it.status()  # raises when the scan stopped on an unreadable block
        except Exception as exc:
            error = exc
        finally:
            del it  # a live iterator keeps the database (and its lock) open after close()
        if error is not None:
            raise _failure(f"state store {self.path} check failed after {n} keys", error)
        return n

    def applied(self, part: PartitionId) -> int | None:
        """The next changelog offset of this partition the store reflects (None: never restored)."""
        try:
            value = self._db.get(_meta_key(part))
        except Exception as exc:
            raise _failure("state store read failed", exc) from exc
        return None if value is None else int(_OFFSET.unpack(value)[0])

    def rows(self) -> Iterable[tuple[SourceKey, bytes]]:
        """Every stored row (tools and tests; a full scan)."""
        it = self._db.iter()
        it.seek(_ROW)
        while it.valid():
            key = it.key()
            if not key.startswith(_ROW):
                return
            yield decode_key(key[1:]), it.value()
            it.next()
        try:
            it.status()  # a scan that stopped on an unreadable block is not the end
        except Exception as exc:
            raise _failure("state store scan failed", exc) from exc

    def disk_bytes(self) -> int:
        """Bytes of the store's files on disk (SST, WAL, manifest)."""
        return sum(p.stat().st_size for p in self.path.iterdir() if p.is_file())

    def flush(self) -> None:
        """Write memtables to SST files (measurements; RocksDB does this by itself)."""
        self._db.flush()

    def close(self) -> None:
        """Release the store (and its lock); StateStoreError if RocksDB reports a failure (a write
        that failed before, e.g. on a full disk), the store released all the same."""
        if self._rdict is not None:
            rdict, self._rdict = self._rdict, None
            try:
                rdict.close()
            except Exception as exc:  # rocksdict raises plain Exception
                raise StateStoreError(f"closing the state store {self.path}: {exc}") from exc

    def __enter__(self) -> RocksStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
