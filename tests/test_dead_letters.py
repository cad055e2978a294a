"""A dead letter always fits under the producer's message limit: it holds a bounded prefix of the
payload and key with their sizes, plus topic, partition and offset. Messages of 1 MB and more
(garbage, or a 3.9 MB ZTF alert with 10,500 history points) once made the dead-letter produce raise
MSG_SIZE_TOO_LARGE, which stopped the consumer on every restart; now they are dead-lettered and
the stream goes on (against the real test broker)."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import fastavro
import pytest
from prometheus_client import CollectorRegistry
from stream_helpers import tiny_model

from broker.app import App, run_in_thread
from broker.encode import (
    MAX_DEAD_LETTER_KEY,
    MAX_DEAD_LETTER_RAW,
    DeadLetter,
    decode_classification,
    decode_dead_letter,
    encode_dead_letter,
)
from broker.kafka import AlertConsumer, AlertProducer, Record
from broker.pipeline import Pipeline
from broker.settings import BrokerSettings
from broker.state import MemoryState
from broker.tools.replay import load_source, replay_to_topic
from broker.tools.testing import TEST_CONSUMER_OVERRIDES, unique_name

PRODUCER_LIMIT = 1_000_000  # librdkafka's default message.max.bytes (value + key + headers)


def test_a_dead_letter_always_fits_under_the_producer_limit() -> None:
    worst = DeadLetter(
        raw=b"\xff" * (9 << 20),
        key=b"k" * (2 << 20),
        topic="t" * 249,  # Kafka's longest topic name
        partition=2**31 - 1,
        offset=2**63 - 1,
        decoder="lightcurve",
        reason="processing_error",
        error="\U0001f4a5" * 100_000,  # 4 bytes each in UTF-8
        timestamp=4_102_444_800_000,  # 2100-01-01
        message_timestamp=4_102_444_800_000,
    )
    value = encode_dead_letter(worst)
    assert len(value) + MAX_DEAD_LETTER_KEY < PRODUCER_LIMIT
    back = decode_dead_letter(value)
    assert back.raw == worst.raw[:MAX_DEAD_LETTER_RAW]
    assert back.key == worst.key[:MAX_DEAD_LETTER_KEY]  # type: ignore[index]
    assert (back.raw_size, back.key_size) == (9 << 20, 2 << 20)
    assert (back.topic, back.partition, back.offset) == (worst.topic, worst.partition, worst.offset)
    small = decode_dead_letter(encode_dead_letter(DeadLetter(
        raw=b"abc", key=None, topic="t", partition=0, offset=1, decoder="ztf", reason="not_avro",
        error="e", timestamp=1,
    )))  # fmt: skip
    assert (small.raw, small.raw_size, small.key, small.key_size) == (b"abc", 3, None, None)


def test_the_pipeline_bounds_the_dead_letter_key() -> None:
    from broker.decode import make_decoder
    from dmdt.grids import get_grid

    p = Pipeline({"lc": make_decoder("lightcurve")}, MemoryState(get_grid()), lambda: None)  # type: ignore[arg-type,return-value]
    huge_key = b"x" * 100_000
    result = p.process([Record("lc", 0, 5, huge_key, b"\x00junk", None)])
    ((key, value),) = result.dead_letters
    assert key == huge_key[:MAX_DEAD_LETTER_KEY]
    assert decode_dead_letter(value).key_size == len(huge_key)


def _big_ztf_alert(ztf_files: list[Path], history: int) -> bytes:
    """A real ZTF alert whose history is one of its detections repeated ``history`` times."""
    with ztf_files[0].open("rb") as fh:
        reader = fastavro.reader(fh)
        record: dict[str, Any] = next(iter(reader))  # type: ignore[assignment]
        schema = reader.writer_schema
    point = next(p for p in record["prv_candidates"] if p["magpsf"] is not None)
    out = io.BytesIO()
    fastavro.writer(out, schema, [{**record, "prv_candidates": [point] * history}])
    return out.getvalue()


@pytest.mark.kafka
@pytest.mark.slow
def test_oversized_messages_are_dead_lettered_and_the_stream_goes_on(
    kafka_settings, make_topic, ztf_files, tmp_path
) -> None:
    lc, ztf, out, dlq = make_topic(1), make_topic(1), make_topic(1), make_topic(1)
    model = tiny_model(tmp_path / "model")
    s = BrokerSettings(
        bootstrap_servers=kafka_settings.bootstrap_servers, group_id=unique_name("group"),
        input_topics={lc: "lightcurve", ztf: "ztf"}, output_topic=out, dead_letter_topic=dlq,
        batch_size=200, batch_wait_ms=20, metrics_port=0, device="cpu", model=str(model.path),
        min_points=2, state_store="memory",
    )  # fmt: skip
    big_ztf = _big_ztf_alert(ztf_files, 10_500)  # over MAX_DETECTIONS (10,000)
    assert len(big_ztf) > 3_000_000
    huge = [b"\x01" * 999_990, b"\x02" * 2_000_000]
    before = replay_to_topic(s, load_source("crts"), lc, limit_sources=2)
    with AlertProducer(s, overrides={"message.max.bytes": 10_000_000}) as producer:
        for value in huge:
            producer.produce(lc, value, key=b"k")
        producer.produce(ztf, big_ztf, key=b"ZTF18aawdnqe")
    after = replay_to_topic(s, load_source("crts"), lc, limit_sources=2, seed=1)
    registry = CollectorRegistry()
    app = App(s, registry=registry, consumer_overrides=TEST_CONSUMER_OVERRIDES)
    thread, outcome = run_in_thread(app)
    total = before.alerts + after.alerts + 3
    deadline = time.monotonic() + 120
    while app.stats.consumed < total and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.1)
    app.stop()
    thread.join(60)
    assert outcome
    assert not isinstance(outcome[0], BaseException), outcome[0]
    assert app.stats.consumed == total
    assert app.stats.dead_lettered == 3
    letters = [decode_dead_letter(r.value) for r in _read(s, dlq, 3)]  # type: ignore[arg-type]
    by_size = {d.raw_size: d for d in letters}
    assert set(by_size) == {999_990, 2_000_000, len(big_ztf)}
    for size, d in by_size.items():
        assert len(d.raw) == MAX_DEAD_LETTER_RAW  # type: ignore[arg-type]
        assert d.reason == "too_large" if size == len(big_ztf) else d.reason == "bad_magic"
    assert by_size[999_990].raw == huge[0][:MAX_DEAD_LETTER_RAW]
    assert by_size[999_990].offset == before.alerts
    classified = [decode_classification(r.value) for r in _read(s, out, app.stats.classified)]  # type: ignore[arg-type]
    assert len({c.source_id for c in classified}) >= 2  # the rest flowed
    get = registry.get_sample_value
    assert get("dmdt_messages_dead_lettered_total", {"topic": lc, "reason": "bad_magic"}) == 2
    assert get("dmdt_messages_dead_lettered_total", {"topic": ztf, "reason": "too_large"}) == 1


def _read(settings: BrokerSettings, topic: str, count: int) -> list[Record]:
    consumer = AlertConsumer(
        settings, group_id=unique_name("reader"), overrides=TEST_CONSUMER_OVERRIDES
    )
    consumer.subscribe([topic])
    out: list[Record] = []
    deadline = time.monotonic() + 60
    try:
        while len(out) < count and time.monotonic() < deadline:
            out += consumer.poll_batch(5000, 0.2)
    finally:
        consumer.close()
    assert len(out) >= count, f"{len(out)} of {count} records on {topic}"
    return out
