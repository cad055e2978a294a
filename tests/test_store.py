"""The durable state without Kafka: the row codec, the RocksDB store (atomic batches, lock,
reopen after kill -9), and DurableState's cache (eviction, reloads, idempotent updates) against
`MemoryState` and a plain numpy reference on real CRTS light curves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from stream_helpers import crts_curves

from broker.durable import DurableState
from broker.state import MemoryState
from broker.store import (
    HAS_COUNTS,
    RocksStore,
    StateStoreError,
    decode_key,
    decode_row,
    encode_key,
    encode_row,
    grid_fingerprint,
    row_photometry,
    row_points,
    row_rank,
)
from dmdt import engine
from dmdt.grids import PRESETS, get_grid
from dmdt.reference import numpy_counts
from dmdt.table import HistogramTable

GRID = get_grid()
PART = ("lc", 0)


def row_of(lc, n: int | None = None) -> dict[str, np.ndarray]:
    t, m, err = lc.t[:n], lc.m[:n], lc.err[:n]
    return {"t": t, "m": m, "err": err, "counts": engine.counts(t, m, GRID)}


def alerts(curves, start: int, stop: int):
    """One alert per point of each curve in [start, stop), curves interleaved (a batch)."""
    keys, parts, ts, ms, es = [], [], [], [], []
    for i in range(start, stop):
        for lc in curves:
            if i < len(lc):
                keys.append((lc.source_id, "V"))
                parts.append(PART)
                ts.append(lc.t[i : i + 1])
                ms.append(lc.m[i : i + 1])
                es.append(lc.err[i : i + 1])
    offsets = np.arange(len(keys) + 1, dtype=np.int64)
    return keys, parts, np.concatenate(ts), np.concatenate(ms), np.concatenate(es), offsets


# ---------------------------------------------------------------- codec


def test_row_round_trip_is_exact_and_little_endian() -> None:
    (lc,) = crts_curves(1)
    row = row_of(lc)
    data = encode_row(row, GRID)
    n = len(lc)
    assert len(data) == 22 + 24 * n + 4 * GRID.shape[0] * GRID.shape[1]
    assert (data[:4], data[4], data[5]) == (b"DMDR", 2, HAS_COUNTS | 1 << 1)  # format 2, total
    assert row_points(data) == n
    assert row_photometry(data) == "total"
    back = decode_row(data, GRID)
    for name in ("t", "m", "err", "counts"):
        np.testing.assert_array_equal(back[name], row[name])
        assert back[name].flags.writeable  # a copy, not a view of the bytes
    np.testing.assert_array_equal(np.frombuffer(data, "<f8", n, 22), lc.t)


def test_rows_record_their_kind_and_format_1_rows_read_as_legacy() -> None:
    """Format 2 keeps the light curve's kind in the header's flags (bits 1-2); a row written by
    a broker before 0.2 (format 1, flags 1: no kind) still decodes, as LEGACY, and any recorded
    version of a row outranks it whatever their sizes (the upgrade replaces it)."""
    (lc,) = crts_curves(1)
    difference = encode_row(row_of(lc, 30), GRID, photometry="difference")
    assert difference[5] == HAS_COUNTS | 2 << 1
    assert row_photometry(difference) == "difference"
    old = bytearray(encode_row(row_of(lc), GRID))
    old[4], old[5] = 1, HAS_COUNTS  # exactly what format 1 wrote
    assert row_photometry(bytes(old)) == "legacy"
    np.testing.assert_array_equal(decode_row(bytes(old), GRID)["m"], lc.m)
    assert row_rank(difference) > row_rank(bytes(old))  # 30 points beat a longer legacy row
    assert row_rank(encode_row(row_of(lc, 31), GRID)) > row_rank(encode_row(row_of(lc, 30), GRID))
    with pytest.raises(StateStoreError, match="kind"):
        row_photometry(difference[:5] + bytes([HAS_COUNTS | 3 << 1]) + difference[6:])


def test_counts_are_recomputed_on_another_grid_or_when_absent() -> None:
    (lc,) = crts_curves(1)
    other = next(g for g in PRESETS.values() if g != GRID)
    points_only = encode_row(row_of(lc), GRID, with_counts=False)
    np.testing.assert_array_equal(decode_row(points_only, GRID)["counts"], row_of(lc)["counts"])
    assert grid_fingerprint(other) != grid_fingerprint(GRID)
    back = decode_row(encode_row(row_of(lc), GRID), other)
    np.testing.assert_array_equal(back["counts"], engine.counts(lc.t, lc.m, other))


def test_bad_rows_and_keys_are_refused() -> None:
    (lc,) = crts_curves(1)
    data = encode_row(row_of(lc, 30), GRID)
    with pytest.raises(StateStoreError, match="magic"):
        decode_row(b"XXXX" + data[4:], GRID)
    with pytest.raises(StateStoreError, match="version 9"):
        decode_row(data[:4] + b"\x09" + data[5:], GRID)
    with pytest.raises(StateStoreError, match="header says"):
        decode_row(data[:-4], GRID)
    with pytest.raises(StateStoreError, match="shorter"):
        decode_row(data[:10], GRID)
    assert decode_key(encode_key(("CRTS 1", "V"))) == ("CRTS 1", "V")
    with pytest.raises(ValueError, match="NUL"):
        encode_key(("a\0b", "V"))


# ---------------------------------------------------------------- the store


def test_store_batches_rows_with_applied_offsets_and_locks(tmp_path: Path) -> None:
    curves = crts_curves(3)
    path = tmp_path / "db"
    with RocksStore(path) as store:
        with pytest.raises(StateStoreError, match="own DMDT_STATE_DIR"):
            RocksStore(path)  # a second process (or consumer) on the same dir
        rows = [((lc.source_id, "V"), encode_row(row_of(lc), GRID)) for lc in curves]
        assert store.write(rows, {PART: 42}) == sum(len(v) for _, v in rows)
        got = store.get_many([(curves[1].source_id, "V"), ("nope", "V")])
        assert got == [rows[1][1], None]
        assert store.applied(PART) == 42
        assert store.applied(("lc", 1)) is None
    with RocksStore(path) as store:  # reopened: everything is there
        assert dict(store.rows()) == dict(rows)
        assert store.applied(PART) == 42


WRITER = textwrap.dedent(
    """
    import sys
    from broker.store import RocksStore
    store = RocksStore(sys.argv[1])
    i = 0
    while True:  # each batch: 50 rows of batch number i, and applied offset i
        store.write([((f"s{k}", "V"), i.to_bytes(8, "little") * 64) for k in range(50)],
                    {("lc", 0): i})
        if i == 200:
            print("ready", flush=True)
        i += 1
    """
)


def test_a_kill_9_leaves_whole_batches(tmp_path: Path) -> None:
    path = tmp_path / "db"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    with RocksStore(path) as store:
        last = store.applied(("lc", 0))
        assert last is not None
        assert last >= 200
        values = {v for _, v in store.rows()}
        assert values == {last.to_bytes(8, "little") * 64}  # the batch and its offset, together


# ---------------------------------------------------------------- DurableState


def test_durable_state_matches_memory_state_through_evictions(tmp_path: Path) -> None:
    curves = crts_curves(12)
    memory = MemoryState(GRID)
    durable = DurableState(GRID, RocksStore(tmp_path / "db"), cache_rows=5)
    events: dict[str, int] = {}
    durable.on_event = lambda name, n: events.__setitem__(name, events.get(name, 0) + n)
    step = 40
    for start in range(0, max(len(lc) for lc in curves), step):
        batch = alerts(curves, start, start + step)
        keys = batch[0]
        np.testing.assert_array_equal(durable.held(keys), memory.held(keys))
        rows_d = durable.update(*batch)
        rows_m = memory.update(*batch)
        np.testing.assert_array_equal(durable.n_points(rows_d), memory.n_points(rows_m))
        np.testing.assert_array_equal(durable.counts(rows_d), memory.counts(rows_m))
        durable.flush([PART])
        assert len(durable) <= 5  # bounded: the rest is in the store
    assert events["evicted"] > 0
    assert events["loaded"] > 0
    for lc in curves:
        t, _, _ = durable.history((lc.source_id, "V"))
        np.testing.assert_array_equal(t, lc.t)
    store = durable.store
    for key, value in store.rows():
        lc = next(c for c in curves if c.source_id == key[0])
        expected = numpy_counts(lc.t, lc.m, GRID)
        np.testing.assert_array_equal(decode_row(value, GRID)["counts"], expected)
    durable.close()


def test_redelivery_changes_nothing_and_release_drops_unflushed_rows(tmp_path: Path) -> None:
    curves = crts_curves(3)
    durable = DurableState(GRID, RocksStore(tmp_path / "db"))
    first = alerts(curves, 0, 30)
    durable.update(*first)
    durable.flush([PART])
    persisted = dict(durable.store.rows())
    rows = durable.update(*first)  # the same batch again
    assert durable.n_points(rows).tolist() == [30] * len(rows)
    assert not durable._dirty  # nothing to write
    durable.update(*alerts(curves, 30, 40))  # then a batch that is never flushed...
    assert durable.release([PART]) == 3  # ...because the partition is lost
    assert len(durable) == 0
    assert dict(durable.store.rows()) == persisted
    rows = durable.update(*alerts(curves, 30, 40))  # redelivered to the next owner
    assert durable.n_points(rows).tolist() == [40] * len(rows)
    durable.close()


def test_a_failed_flush_keeps_rows_dirty(tmp_path: Path) -> None:
    curves = crts_curves(2)
    durable = DurableState(GRID, RocksStore(tmp_path / "db"))
    durable.update(*alerts(curves, 0, 25))

    class Broken:
        def write(self, records):
            raise RuntimeError("changelog down")

    durable.changelog = Broken()  # type: ignore[assignment]
    with pytest.raises(RuntimeError, match="changelog down"):
        durable.flush([PART])
    assert list(durable.store.rows()) == []  # the store never gets ahead of the changelog
    durable.changelog = None
    durable.flush([PART])  # written on the next flush
    assert len(list(durable.store.rows())) == 2
    durable.close()


def test_table_rows_survive_the_codec(tmp_path: Path) -> None:
    curves = crts_curves(2)
    table = HistogramTable(GRID)
    table.update(*[alerts(curves, 0, 50)[i] for i in (0, 2, 3, 4, 5)])
    for lc in curves:
        key = (lc.source_id, "V")
        back = decode_row(encode_row(table.export(key), GRID), GRID)
        copy = HistogramTable(GRID)
        copy.load(key, back)
        for a, b in zip(copy.export(key).values(), table.export(key).values(), strict=True):
            np.testing.assert_array_equal(a, b)
