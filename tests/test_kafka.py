"""The Kafka adapter against real Kafka-protocol brokers: Tansu on loopback, librdkafka's mock."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from broker.decode import DecodedAlert
from broker.decode_lightcurve import LightcurveDecoder
from broker.decode_ztf import ZtfDecoder
from broker.encode import encode_lightcurve_alert
from broker.kafka import (
    AlertConsumer,
    AlertProducer,
    Delivery,
    PartitionId,
    RebalanceHooks,
    Record,
    deliver_then_store,
)
from broker.kafka_admin import create_topics, wait_for_topics
from broker.kafka_conf import consumer_config, producer_config
from broker.settings import BrokerSettings
from broker.tools.testing import TEST_CONSUMER_OVERRIDES, MockCluster, unique_name, ztf_messages


def _poll_until(consumer: AlertConsumer, count: int, timeout_s: float = 30.0) -> list[Record]:
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < count and time.monotonic() < deadline:
        records += consumer.poll_batch(500, 0.2)
    return records


def _poll_after_join(consumer: AlertConsumer, partitions: int, seconds: float) -> list[Record]:
    """Records polled until the consumer owns `partitions` partitions, then for `seconds` more."""
    records: list[Record] = []
    deadline = time.monotonic() + 30
    while len(consumer.assignment()) < partitions and time.monotonic() < deadline:
        records += consumer.poll_batch(500, 0.2)
    assert len(consumer.assignment()) == partitions, "the consumer never joined"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        records += consumer.poll_batch(500, 0.2)
    return records


@pytest.fixture(scope="module")
def real_alerts(ztf_files: list[Path]) -> list[DecodedAlert]:
    """Per-band light curves of 30 real ZTF alerts."""
    decoder = ZtfDecoder()
    return [a for path in ztf_files[:30] for a in decoder(next(ztf_messages(path)))]


# ---------------------------------------------------------------- configuration


def test_consumer_and_producer_config_keep_the_guarantees() -> None:
    settings = BrokerSettings(bootstrap_servers="127.0.0.1:1", kafka_extra={"linger.ms": "5"})
    conf = consumer_config(settings, group_id="g")
    assert conf["enable.auto.offset.store"] is False
    assert conf["group.id"] == "g"
    assert conf["bootstrap.servers"] == "127.0.0.1:1"
    produce = producer_config(settings)
    assert produce["enable.idempotence"] is True
    assert produce["acks"] == "all"
    assert produce["linger.ms"] == "5"  # passthrough wins over our defaults
    assert producer_config(settings, overrides={"acks": "-1"})["acks"] == "all"
    unsafe = BrokerSettings(kafka_extra={"enable.auto.offset.store": "true"})
    with pytest.raises(ValueError, match=r"enable\.auto\.offset\.store"):
        consumer_config(unsafe)
    with pytest.raises(ValueError, match="acks"):
        producer_config(settings, overrides={"acks": "1"})


# ---------------------------------------------------------------- Tansu


@pytest.mark.kafka
def test_round_trip_commit_and_restart_without_redelivery(
    kafka_settings: BrokerSettings,
    make_topic: Callable[..., str],
    consumer_overrides: dict[str, Any],
    real_alerts: list[DecodedAlert],
) -> None:
    alerts_topic, out_topic = make_topic(partitions=3), make_topic(partitions=1)
    producer = AlertProducer(kafka_settings)
    for alert in real_alerts:
        producer.produce(alerts_topic, encode_lightcurve_alert(alert), key=alert.source_id)
    assert producer.flush(10) == 0
    assert producer.take_failures() == []

    decoder = LightcurveDecoder()
    with AlertConsumer(kafka_settings, overrides=consumer_overrides) as consumer:
        consumer.subscribe([alerts_topic])
        records = _poll_until(consumer, len(real_alerts))
        assert len(records) == len(real_alerts)
        partition_of: dict[str, int] = {}
        for record in records:
            (alert,) = decoder(record.value or b"")
            assert record.key == alert.source_id.encode()
            assert partition_of.setdefault(alert.source_id, record.partition) == record.partition
        decoded = sorted((a.alert_id, a.band, a.n) for r in records for a in decoder(r.value))
        assert decoded == sorted((a.alert_id, a.band, a.n) for a in real_alerts)
        # Outputs first, then the inputs' offsets: at-least-once.
        reports: list[Delivery] = []
        for record in records:
            producer.produce(
                out_topic, b"classification", key=record.key, on_delivery=reports.append
            )
        assert deliver_then_store(producer, consumer, records)
        assert len(reports) == len(records)
        assert all(r.error is None and r.offset >= 0 for r in reports)
        assert consumer.commit()
        committed = consumer.committed([(alerts_topic, p) for p in range(3)])
        high = {}
        for r in records:
            high[r.partition] = max(high.get(r.partition, -1), r.offset + 1)
        assert {p: committed[(alerts_topic, p)] for p in high} == high

    with AlertConsumer(kafka_settings, overrides=consumer_overrides) as consumer:
        consumer.subscribe([alerts_topic])
        assert _poll_after_join(consumer, 3, 2.0) == []  # nothing redelivered after the restart
        producer.produce(
            alerts_topic, encode_lightcurve_alert(real_alerts[0]), key=real_alerts[0].source_id
        )
        assert producer.flush(10) == 0
        (new,) = _poll_until(consumer, 1)
        assert new.value == encode_lightcurve_alert(real_alerts[0])


@pytest.mark.kafka
def test_unstored_records_are_redelivered(
    kafka_settings: BrokerSettings,
    make_topic: Callable[..., str],
    consumer_overrides: dict[str, Any],
) -> None:
    topic = make_topic(partitions=1)
    producer = AlertProducer(kafka_settings)
    for i in range(10):
        producer.produce(topic, f"v{i}".encode(), key=b"k")
    assert producer.flush(10) == 0
    with AlertConsumer(kafka_settings, overrides=consumer_overrides) as consumer:
        consumer.subscribe([topic])
        first = _poll_until(consumer, 10)
        consumer.store(first[:4])  # only the first four are done
        assert consumer.commit()
    with AlertConsumer(kafka_settings, overrides=consumer_overrides) as consumer:
        consumer.subscribe([topic])
        again = _poll_until(consumer, 6)
    assert [r.value for r in again] == [f"v{i}".encode() for i in range(4, 10)]


@pytest.mark.kafka
def test_rebalance_hooks_and_second_member(
    kafka_settings: BrokerSettings,
    make_topic: Callable[..., str],
    consumer_overrides: dict[str, Any],
) -> None:
    topic = make_topic(partitions=4)
    events: list[tuple[str, list[PartitionId]]] = []
    hooks = RebalanceHooks(
        on_assign=lambda ps: events.append(("assign", ps)),
        on_revoke=lambda ps: events.append(("revoke", ps)),
        on_lost=lambda ps: events.append(("lost", ps)),
    )
    with AlertConsumer(kafka_settings, hooks=hooks, overrides=consumer_overrides) as first:
        first.subscribe([topic])
        deadline = time.monotonic() + 30
        while len(first.assignment()) < 4 and time.monotonic() < deadline:
            first.poll_batch(10, 0.2)
        assert sorted(first.assignment()) == [(topic, p) for p in range(4)]
        assert events[0][0] == "assign"
        assert sorted(events[0][1]) == [(topic, p) for p in range(4)]
        with AlertConsumer(kafka_settings, overrides=consumer_overrides) as second:
            second.subscribe([topic])
            deadline = time.monotonic() + 30
            while (len(first.assignment()) == 4 or not second.assignment()) and (
                time.monotonic() < deadline
            ):
                first.poll_batch(10, 0.1)
                second.poll_batch(10, 0.1)
            assert sorted(first.assignment() + second.assignment()) == [
                (topic, p) for p in range(4)
            ]
        assert any(kind == "revoke" for kind, _ in events)  # cooperative: gave some away
    assert not any(kind == "lost" for kind, _ in events)


@pytest.mark.kafka
def test_admin_helpers(kafka_settings: BrokerSettings) -> None:
    name = unique_name("admin")
    create_topics(kafka_settings, {name: 2})
    create_topics(kafka_settings, {name: 2})  # already there: fine
    assert wait_for_topics(kafka_settings, [name]) == {name: 2}
    with pytest.raises(TimeoutError, match="not ready"):
        wait_for_topics(kafka_settings, [unique_name("absent")], timeout_s=1)


# ---------------------------------------------------------------- librdkafka mock cluster


def test_mock_cluster_smoke_and_injected_produce_errors() -> None:
    with MockCluster(brokers=3) as cluster:
        topic = unique_name("mock")
        cluster.create_topic(topic, partitions=2, replication_factor=3)
        settings = BrokerSettings(bootstrap_servers=cluster.bootstrap)
        assert wait_for_topics(settings, [topic]) == {topic: 2}
        producer = AlertProducer(settings)
        cluster.push_request_errors("Produce", 7, 7, 6)  # timeouts, then NOT_LEADER: retriable
        for i in range(100):
            producer.produce(topic, f"{i}".encode(), key=f"{i % 7}".encode())
        assert producer.flush(20) == 0
        assert producer.take_failures() == []
        with AlertConsumer(
            settings, group_id=unique_name("group"), overrides=TEST_CONSUMER_OVERRIDES
        ) as consumer:
            consumer.subscribe([topic])
            records = _poll_until(consumer, 100)
            # The idempotent producer retried silently: every message exactly once.
            assert sorted(int(r.value or b"") for r in records) == list(range(100))
            consumer.store(records[:60])
            consumer.store([Record("not-ours", 0, 5, None, b"", None)])  # dropped, no error
            lag = consumer.lag()
            assert set(lag) == {(topic, 0), (topic, 1)}
            assert sum(lag.values()) == 0  # consumed up to the high watermark
            assert consumer.commit()
        producer.close()


def test_mock_cluster_broker_down_and_back() -> None:
    with MockCluster(brokers=1) as cluster:
        topic = unique_name("mock")
        cluster.create_topic(topic)
        settings = BrokerSettings(bootstrap_servers=cluster.bootstrap)
        producer = AlertProducer(settings)
        producer.produce(topic, b"before")
        assert producer.flush(10) == 0
        cluster.broker_down(1)
        producer.produce(topic, b"while down")
        assert producer.flush(1) == 1  # held, not lost
        cluster.broker_up(1)
        assert producer.flush(20) == 0
        assert producer.take_failures() == []
        producer.close()


def test_producer_close_gives_up_after_its_timeout_on_an_unreachable_cluster():
    """librdkafka's own close waits up to message.timeout.ms (5 min) for undelivered messages."""
    import time

    from broker.kafka import AlertProducer
    from broker.settings import BrokerSettings

    producer = AlertProducer(BrokerSettings(bootstrap_servers="127.0.0.1:1"))
    producer.produce("nowhere", b"value", key=b"key")
    t0 = time.monotonic()
    assert producer.close(timeout_s=0.5) == 1
    assert time.monotonic() - t0 < 5.0
