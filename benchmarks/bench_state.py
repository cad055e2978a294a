"""The durable state's costs on this machine, for docs/scaling.md: bytes per source (encoded, on
disk), memory per cached row, rows persisted / reloaded / restored per second, the start-up check.

    python benchmarks/bench_state.py            # every CRTS light curve (5,757 sources)
    python benchmarks/bench_state.py --quick    # 1,000 sources, no changelog restore

Steps: the whole curves of N CRTS sources go through `DurableState.update` in batches of 500
sources with 20 points each (a stream with history), flushed to a RocksDB store after every batch
(no changelog: the local store's cost alone); then every row is evicted and read back; then (not
with --quick) every row is written to a changelog partition on a local Tansu broker and restored
into an empty store. Not a test: the machine is shared, figures move by 10-20%.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from broker.durable import DurableState
from broker.store import RocksStore, encode_row
from broker.tools.replay import load_source
from broker.tools.replay_plan import select_sources
from dmdt.grids import get_grid

PART = ("lc", 0)


def batches(curves, per_batch: int = 500, step: int = 20):
    """(keys, partitions, t, m, err, offsets): 500 sources a batch, 20 new points each."""
    longest = max(len(lc) for lc in curves)
    for start in range(0, longest, step):
        for lo in range(0, len(curves), per_batch):
            group = [lc for lc in curves[lo : lo + per_batch] if len(lc) > start]
            if not group:
                continue
            keys = [(lc.source_id, "V") for lc in group]
            sl = [slice(start, start + step) for _ in group]
            t = np.concatenate([lc.t[s] for lc, s in zip(group, sl, strict=True)])
            m = np.concatenate([lc.m[s] for lc, s in zip(group, sl, strict=True)])
            e = np.concatenate([lc.err[s] for lc, s in zip(group, sl, strict=True)])
            sizes = [len(lc.t[s]) for lc, s in zip(group, sl, strict=True)]
            offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
            yield keys, [PART] * len(keys), t, m, e, offsets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=None, help="CRTS sources (default all)")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 1000 if args.quick and args.sources is None else args.sources
    curves = select_sources(load_source("crts").items, limit_sources=n, seed=0)
    grid = get_grid()
    points = sum(len(lc) for lc in curves)
    print(
        f"{len(curves):,} CRTS sources, {points:,} points ({points / len(curves):.0f} per source)"
    )

    with tempfile.TemporaryDirectory() as tmp:
        store = RocksStore(Path(tmp) / "db")
        state = DurableState(grid, store, cache_rows=len(curves))
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        t_update = t_flush = 0.0
        rows_written = 0
        for batch in batches(curves):
            t0 = time.perf_counter()
            state.update(*batch)
            t1 = time.perf_counter()
            state.flush([PART])
            t_flush += time.perf_counter() - t1
            t_update += t1 - t0
            rows_written += len(batch[0])
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        encoded = [len(encode_row(state.table.export((lc.source_id, "V")), grid)) for lc in curves]
        store.flush()
        store._db.compact_range(None, None)
        disk = store.disk_bytes()
        print(
            f"encoded row: mean {np.mean(encoded):,.0f} B, median {np.median(encoded):,.0f} B "
            f"(22 header + 24 per point + {4 * grid.shape[0] * grid.shape[1]:,} of counts)"
        )
        print(f"RocksDB on disk after compaction (LZ4): {disk / len(curves):,.0f} B per source "
              f"({disk / 1e6:,.1f} MB)")  # fmt: skip
        print(f"memory held by the cache: {held / len(curves):,.0f} B per row "
              f"(arrays {state.table.nbytes / len(curves):,.0f} B)")  # fmt: skip
        print(f"update: {rows_written / t_update:,.0f} rows/s; persist to RocksDB: "
              f"{rows_written / t_flush:,.0f} rows/s ({t_flush / rows_written * 1e6:,.0f} us per "
              f"row of {np.mean(encoded) / 1e3:,.1f} kB)")  # fmt: skip
        keys = [(lc.source_id, "V") for lc in curves]
        state.cache_rows = 0
        state._evict()
        t0 = time.perf_counter()
        for lo in range(0, len(keys), 500):
            state._load(keys[lo : lo + 500])
        dt = time.perf_counter() - t0
        print(f"reload evicted rows from the store: {len(keys) / dt:,.0f} rows/s")
        rows = list(store.rows())
        state.close()
        with RocksStore(
            Path(tmp) / "db"
        ) as reopened:  # what every start costs: every block read, checked
            t0 = time.perf_counter()
            checked = reopened.check()
            dt = time.perf_counter() - t0
        print(f"start-up check of the store (every block read and checksummed): {dt:.2f} s for "
              f"{checked:,} keys, {disk / 1e6 / dt:,.0f} MB/s")  # fmt: skip

    if args.quick:
        return
    from broker.changelog import Changelog, ensure_changelogs
    from broker.kafka import AlertProducer
    from broker.kafka_admin import PartitionReader, create_topics
    from broker.settings import BrokerSettings
    from broker.store import encode_key
    from broker.tools.testing import TansuBroker

    with TansuBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        settings = BrokerSettings(bootstrap_servers=broker.bootstrap, group_id="bench",
                                  input_topics={"lc": "lightcurve"})  # fmt: skip
        create_topics(settings, {"lc": 1})
        producer, reader = AlertProducer(settings), PartitionReader(settings)
        changelog = Changelog(ensure_changelogs(settings), producer, reader)
        t0 = time.perf_counter()
        for lo in range(0, len(rows), 500):
            changelog.write([(PART, encode_key(k), v) for k, v in rows[lo : lo + 500]])
        dt_write = time.perf_counter() - t0
        fresh = DurableState(grid, RocksStore(Path(tmp) / "db"), changelog)
        fresh.assign([PART])
        t0 = time.perf_counter()
        while fresh.restoring():
            fresh.restore_step(5.0)
        dt_restore = time.perf_counter() - t0
        mb = sum(len(v) for _, v in rows) / 1e6
        print(f"changelog write (acknowledged, zstd): {len(rows) / dt_write:,.0f} rows/s "
              f"({mb / dt_write:,.0f} MB/s of rows)")  # fmt: skip
        print(f"restore into an empty store: {len(rows) / dt_restore:,.0f} rows/s "
              f"({mb / dt_restore:,.0f} MB/s of rows)")  # fmt: skip
        fresh.close()
        reader.close()
        producer.close()


if __name__ == "__main__":
    main()
