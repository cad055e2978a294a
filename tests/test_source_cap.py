"""The per-source cap on points: a source's row must fit in one changelog record, so the durable
state holds at most `DurableState.max_points` points per source (about 41,500 on the default
grid under librdkafka's 1,000,000-byte message limit; the kernels' 65,535 when the limit is
raised). An alert that would take its source past the cap is dead-lettered (`source_full`),
counted, and the stream goes on; the source keeps the exact histogram of the points it holds.
Before, five valid alerts of 9,999 detections each grew a row past 1 MB, the changelog produce
raised MSG_SIZE_TOO_LARGE outside any handler and the consumer stopped on every restart."""

from __future__ import annotations

import time
from pathlib import Path

import light_curve
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from stream_helpers import tiny_model

from broker.app import App, run_in_thread
from broker.changelog import Changelog, ChangelogError, changelog_topic, ensure_changelogs
from broker.durable import DurableState, max_row_points
from broker.encode import decode_dead_letter, encode_record
from broker.kafka import AlertProducer
from broker.kafka_admin import PartitionReader
from broker.settings import BrokerSettings
from broker.state import MemoryState
from broker.store import RocksStore, decode_row, encode_key, encode_row, store_path
from broker.tools.testing import TEST_CONSUMER_OVERRIDES, unique_name
from dmdt.engine import MAX_POINTS
from dmdt.grids import get_grid

GRID = get_grid()
LIMIT = 1_000_000  # librdkafka's default message.max.bytes
PER_ALERT = 9_999


def _row(n: int) -> dict[str, np.ndarray]:
    t = np.arange(n, dtype=np.float64)
    return {"t": t, "m": np.zeros(n), "err": np.zeros(n), "counts": np.zeros(GRID.shape, "i4")}


def test_the_cap_keeps_every_row_under_the_record_limit(tmp_path: Path) -> None:
    cap = max_row_points(GRID, LIMIT)
    assert 41_000 < cap < MAX_POINTS
    longest_key = encode_key(("x" * 128, "b" * 16))
    assert len(encode_row(_row(cap), GRID)) + len(longest_key) < LIMIT
    assert len(encode_row(_row(cap + 50), GRID)) + len(longest_key) > LIMIT - 1024
    assert max_row_points(GRID, 3_000_000) == MAX_POINTS  # a raised limit: the kernels' cap
    state = DurableState(GRID, RocksStore(tmp_path / "db"), record_bytes=LIMIT)
    assert state.max_points == cap
    assert MemoryState(GRID).max_points == MAX_POINTS
    state.close()


def _alert(k: int) -> bytes:
    """The k-th alert of one source: 9,999 new detections (valid values, distinct times)."""
    t = 55_000.0 + k * PER_ALERT * 0.01 + np.arange(PER_ALERT) * 0.01
    m = 15.0 + 0.5 * np.sin(t)
    return encode_record("lightcurve_alert", {
        "alert_id": k, "source_id": "crowded-1", "survey": "sim", "band": "V", "ra": None,
        "dec": None, "alert_time": float(t[-1]), "label": None,
        "detections": [{"mjd": a, "mag": b, "magerr": 0.05}
                       for a, b in zip(t.tolist(), m.tolist(), strict=True)],
    })  # fmt: skip


def _small(k: int) -> bytes:
    return encode_record("lightcurve_alert", {
        "alert_id": 100 + k, "source_id": "ordinary-1", "survey": "sim", "band": "V", "ra": None,
        "dec": None, "alert_time": 55_000.0 + k, "label": None,
        "detections": [{"mjd": 55_000.0 + k, "mag": 15.0 + 0.1 * k, "magerr": 0.05}],
    })  # fmt: skip


@pytest.mark.kafka
@pytest.mark.slow
def test_a_source_past_the_cap_is_dead_lettered_and_the_stream_goes_on(
    kafka_settings, make_topic, tmp_path
) -> None:
    lc, out, dlq = make_topic(1), make_topic(1), make_topic(1)
    model = tiny_model(tmp_path / "model")
    s = BrokerSettings(
        bootstrap_servers=kafka_settings.bootstrap_servers, group_id=unique_name("group"),
        input_topics={lc: "lightcurve"}, output_topic=out, dead_letter_topic=dlq, batch_size=1,
        batch_wait_ms=20, metrics_port=0, device="cpu", model=str(model.path), min_points=2,
        state_dir=tmp_path / "state",
    )  # fmt: skip
    with AlertProducer(s) as producer:
        for k in range(5):
            producer.produce(lc, _alert(k), key=b"crowded-1")
            producer.produce(lc, _small(k), key=b"ordinary-1")
    registry = CollectorRegistry()
    app = App(s, registry=registry, consumer_overrides=TEST_CONSUMER_OVERRIDES)
    thread, outcome = run_in_thread(app)
    deadline = time.monotonic() + 180
    while app.stats.consumed < 10 and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    app.stop()
    thread.join(60)
    assert outcome
    assert not isinstance(outcome[0], BaseException), outcome[0]
    assert app.stats.consumed == 10
    assert app.stats.dead_lettered == 1
    get = registry.get_sample_value
    assert get("dmdt_messages_dead_lettered_total", {"topic": lc, "reason": "source_full"}) == 1
    reader = PartitionReader(s)
    reader.seek(dlq, 0, 0)
    (letter,) = [decode_dead_letter(r.value) for r in reader.read(10, 5.0)]  # type: ignore[arg-type]
    assert (letter.offset, letter.reason) == (8, "source_full")
    changelog = changelog_topic(s.group_id, lc)
    reader.seek(changelog, 0, 0)
    rows = {r.key: r.value for r in reader.read(100, 5.0) if r.value is not None}
    reader.close()
    held = decode_row(rows[encode_key(("crowded-1", "V"))], GRID)
    assert held["t"].size == 4 * PER_ALERT  # the four alerts that fit, exactly
    # the reference for a 39,996-point row: light-curve's DmDt (Rust, independent of dmdt.engine;
    # tests/test_engine.py holds it to the plain numpy one), as numpy takes minutes on 8e8 pairs
    dmdt = light_curve.DmDt(dt=GRID.dt_edges, dm=GRID.dm_edges, dt_type="asis", dm_type="asis")
    np.testing.assert_array_equal(held["counts"], dmdt.points(held["t"], held["m"]))
    assert decode_row(rows[encode_key(("ordinary-1", "V"))], GRID)["t"].size == 5
    with RocksStore(store_path(s.state_dir, s.group_id)) as store:
        assert {k: v for k, v in store.rows()}[("crowded-1", "V")] == rows[
            encode_key(("crowded-1", "V"))
        ]


@pytest.mark.kafka
def test_an_oversized_changelog_record_is_a_changelog_error(kafka_settings, make_topic) -> None:
    """The changelog produce's own errors are ChangelogError (counted, the batch's offsets not
    stored), never a raw KafkaException."""
    lc = make_topic(1)
    s = BrokerSettings(bootstrap_servers=kafka_settings.bootstrap_servers,
                       group_id=unique_name("group"), input_topics={lc: "lightcurve"})  # fmt: skip
    topics = ensure_changelogs(s)
    with AlertProducer(s) as producer:
        changelog = Changelog(topics, producer, PartitionReader(s))
        with pytest.raises(ChangelogError, match="MSG_SIZE_TOO_LARGE"):
            changelog.write([((lc, 0), b"key", b"\0" * 2_000_000)])
        changelog.reader.close()
