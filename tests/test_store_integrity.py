"""A damaged state store heals itself: RocksDB corruption (a garbled SST file, a bad CURRENT file)
is detected when the store is opened (every block is read and its checksum verified) and when a
read hits it while running; the damaged folder is set aside, an empty store takes its place and
the owned partitions are restored from the changelog (the batch in hand is fetched again), and
`dmdt_state_store_rebuilds_total{when}` counts it. Without a changelog there is nothing to
rebuild from: the consumer refuses to start with a message that says so.

Before, a garbled SST was not noticed at start, and the consumer crashed on every restart with
"block checksum mismatch" as soon as an alert touched an unreadable row, although the changelog
held a good copy; a bad CURRENT file was reported as "each consumer needs its own
DMDT_STATE_DIR". The files are really corrupted here: bytes of the SST overwritten on disk."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from stream_helpers import crts_curves, tiny_model

from broker.app import App, run_in_thread
from broker.durable import open_state
from broker.kafka import AlertConsumer, AlertProducer
from broker.settings import BrokerSettings
from broker.store import (
    RocksStore,
    StateStoreCorrupted,
    StateStoreError,
    decode_row,
    encode_row,
    store_path,
)
from broker.tools.replay import ReplaySource, read_stream, replay_to_file
from broker.tools.testing import TEST_CONSUMER_OVERRIDES, unique_name
from dmdt import engine
from dmdt.grids import get_grid
from dmdt.reference import numpy_counts

GRID = get_grid()


def fill(path: Path, n: int = 3000) -> None:
    """A store of n rows, flushed to an SST file."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        t = np.sort(rng.uniform(53_000, 56_000, 40))
        m = rng.normal(15, 1, 40)
        row = {"t": t, "m": m, "err": np.full(40, 0.1), "counts": engine.counts(t, m, GRID)}
        rows.append(((f"src{i}", "V"), encode_row(row, GRID)))
    with RocksStore(path) as store:
        store.write(rows, {("lc", 0): n})
        store.flush()


def garble(path: Path, seed: int = 1) -> Path:
    """Overwrite the middle of the store's largest SST file (data blocks; the index and footer at
    its end stay readable, so the store still opens)."""
    sst = max(path.glob("*.sst"), key=lambda p: p.stat().st_size)
    size = sst.stat().st_size
    noise = np.random.default_rng(seed).integers(0, 256, size // 3, dtype=np.uint8).tobytes()
    with sst.open("r+b") as fh:
        fh.seek(size // 4)
        fh.write(noise)
        fh.flush()
        os.fsync(fh.fileno())
    return sst


def settings(tmp_path: Path, changelog: bool = True) -> BrokerSettings:
    return BrokerSettings(state_dir=tmp_path / "state", group_id="g", state_changelog=changelog)


# ---------------------------------------------------------------- at start, no Kafka


def test_a_garbled_sst_is_found_at_start_and_set_aside(tmp_path: Path) -> None:
    s = settings(tmp_path)
    path = store_path(s.state_dir, s.group_id)
    fill(path)
    garble(path)
    with RocksStore(path) as store:  # opens: the damage is in the data blocks
        with pytest.raises(StateStoreCorrupted, match="checksum"):
            store.check()
    rebuilds: list[str] = []
    state = open_state(s, GRID, on_rebuild=rebuilds.append)
    assert rebuilds == ["start"]
    assert list(state.store.rows()) == []  # type: ignore[attr-defined]  # empty: to be restored
    assert state.store.applied(("lc", 0)) is None  # type: ignore[attr-defined]  # from offset 0
    aside = path.with_name(path.name + ".damaged")
    assert any(aside.glob("*.sst"))  # kept for inspection
    state.close()
    fill(path, 10)  # a healthy store passes the check and is kept
    state = open_state(s, GRID, on_rebuild=rebuilds.append)
    assert rebuilds == ["start"]
    assert len(list(state.store.rows())) == 10  # type: ignore[attr-defined]
    state.close()


def test_without_a_changelog_a_damaged_store_refuses_to_start(tmp_path: Path) -> None:
    s = settings(tmp_path, changelog=False)
    path = store_path(s.state_dir, s.group_id)
    fill(path)
    garble(path)
    with pytest.raises(StateStoreCorrupted, match="DMDT_STATE_CHANGELOG"):
        open_state(s, GRID)
    assert not path.with_name(path.name + ".damaged").exists()  # left as it was


def test_a_bad_current_file_is_damage_not_a_shared_state_dir(tmp_path: Path) -> None:
    s = settings(tmp_path)
    path = store_path(s.state_dir, s.group_id)
    fill(path, 10)
    with RocksStore(path):
        with pytest.raises(StateStoreError, match="DMDT_STATE_DIR") as locked:
            RocksStore(path)  # the lock: the hint is right here
        assert not isinstance(locked.value, StateStoreCorrupted)
    (path / "CURRENT").write_text("garbage\n")
    with pytest.raises(StateStoreCorrupted) as bad:
        RocksStore(path)
    assert "DMDT_STATE_DIR" not in str(bad.value)
    assert "damaged" in str(bad.value)
    rebuilds: list[str] = []
    state = open_state(s, GRID, on_rebuild=rebuilds.append)
    assert rebuilds == ["start"]
    state.close()


# ---------------------------------------------------------------- the consumer, on Tansu


class Stream:
    """Two halves of a CRTS replay on a 2-partition topic, and a consumer group to run on it."""

    def __init__(self, kafka_settings: BrokerSettings, make_topic: Any, tmp_path: Path) -> None:
        self.curves = crts_curves(6)
        out = tmp_path / "stream.bin"
        replay_to_file(ReplaySource("crts", "crts", tuple(self.curves), "lightcurve"), out)
        self.records = list(read_stream(out))
        self.model = tiny_model(tmp_path / "model").path
        lc, dest, dlq = make_topic(2), make_topic(2), make_topic(1)
        self.settings = BrokerSettings(
            bootstrap_servers=kafka_settings.bootstrap_servers, group_id=unique_name("group"),
            input_topics={lc: "lightcurve"}, output_topic=dest, dead_letter_topic=dlq,
            batch_size=100, batch_wait_ms=20, metrics_port=0, device="cpu", model=str(self.model),
            min_points=2, state_dir=tmp_path / "state", state_cache_rows=1,
        )  # fmt: skip
        self.topic = lc
        self.sent = 0

    @property
    def path(self) -> Path:
        return store_path(self.settings.state_dir, self.settings.group_id)

    def send(self, fraction: float) -> None:
        stop = int(len(self.records) * fraction)
        with AlertProducer(self.settings) as producer:
            for r in self.records[self.sent : stop]:
                producer.produce(self.topic, r.value, key=r.key)
        self.sent = stop

    def committed(self) -> int:
        probe = AlertConsumer(self.settings, overrides=TEST_CONSUMER_OVERRIDES)
        try:
            got = probe.committed([(self.topic, 0), (self.topic, 1)], timeout_s=10)
        finally:
            probe.close()
        return sum(max(o, 0) for o in got.values())

    def start(self, registry: CollectorRegistry) -> tuple[App, Any, list[Any]]:
        overrides = {**TEST_CONSUMER_OVERRIDES, "auto.commit.interval.ms": 200}
        app = App(self.settings, registry=registry, consumer_overrides=overrides)
        thread, outcome = run_in_thread(app)
        return app, thread, outcome

    def run_until_committed(self, app: App, thread: Any, outcome: list[Any]) -> None:
        try:
            deadline = time.monotonic() + 180
            while self.committed() < self.sent:
                assert thread.is_alive(), outcome
                assert time.monotonic() < deadline, "timed out waiting for the commits"
                time.sleep(0.3)
        finally:
            app.stop()
            thread.join(60)
        assert outcome
        assert not isinstance(outcome[0], BaseException), outcome[0]

    def assert_exact(self) -> None:
        with RocksStore(self.path) as store:
            rows = {k: decode_row(v, GRID) for k, v in store.rows()}
        assert set(rows) == {(lc.source_id, "V") for lc in self.curves}
        for lc in self.curves:
            row = rows[(lc.source_id, "V")]
            assert row["t"].tolist() == lc.t.tolist()
            assert (row["counts"] == numpy_counts(lc.t, lc.m, GRID)).all()


@pytest.mark.kafka
@pytest.mark.slow
def test_a_store_damaged_while_stopped_is_rebuilt_at_start(kafka_settings, make_topic, tmp_path):
    stream = Stream(kafka_settings, make_topic, tmp_path)
    stream.send(0.5)
    stream.run_until_committed(*stream.start(CollectorRegistry()))
    with RocksStore(stream.path) as store:
        store.flush()  # the rows into an SST file
    garble(stream.path)
    stream.send(1.0)
    registry = CollectorRegistry()
    stream.run_until_committed(*stream.start(registry))
    assert registry.get_sample_value("dmdt_state_store_rebuilds_total", {"when": "start"}) == 1
    stream.assert_exact()


@pytest.mark.kafka
@pytest.mark.slow
def test_a_store_damaged_while_running_is_rebuilt_and_the_batch_redone(
    kafka_settings, make_topic, tmp_path
):
    stream = Stream(kafka_settings, make_topic, tmp_path)
    stream.send(0.5)
    stream.run_until_committed(*stream.start(CollectorRegistry()))
    with RocksStore(stream.path) as store:
        store.flush()
    registry = CollectorRegistry()
    app, thread, outcome = stream.start(registry)
    deadline = time.monotonic() + 60
    while len(app.owned) < 2 or app.state.restoring():
        assert time.monotonic() < deadline, "the consumer did not get its partitions"
        time.sleep(0.1)
    garble(stream.path)  # under the running consumer: its next cold read hits the damage
    stream.send(1.0)
    stream.run_until_committed(app, thread, outcome)
    assert registry.get_sample_value("dmdt_state_store_rebuilds_total", {"when": "running"}) >= 1
    assert registry.get_sample_value("dmdt_state_store_rebuilds_total", {"when": "start"}) == 0
    stream.assert_exact()
