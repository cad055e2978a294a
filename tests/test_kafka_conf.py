"""Client configs per role: the shared passthrough (kafka_extra) carries consumer and producer
keys; each client gets only the keys librdkafka knows for its role (no CONFWARN in the logs)."""

from __future__ import annotations

import io
import logging

from confluent_kafka import Producer

from broker.kafka_conf import consumer_config, producer_config, property_scopes
from broker.settings import BrokerSettings

EXTRA = {"session.timeout.ms": "6000", "fetch.wait.max.ms": "10", "linger.ms": "5",
         "socket.keepalive.enable": "true"}  # fmt: skip


def confwarns(conf: dict[str, object]) -> str:
    """The CONFWARN lines librdkafka logs for a producer made from ``conf``."""
    buf = io.StringIO()
    logger = logging.getLogger(f"test-kafka-conf-{id(conf)}")
    logger.addHandler(logging.StreamHandler(buf))
    logger.setLevel(logging.DEBUG)
    producer = Producer({**conf, "bootstrap.servers": "127.0.0.1:1", "logger": logger})
    producer.poll(0.2)
    return "\n".join(line for line in buf.getvalue().splitlines() if "CONFWARN" in line)


def test_scopes_come_from_the_bundled_librdkafka() -> None:
    scopes = property_scopes()
    assert scopes["session.timeout.ms"] == "C"
    assert scopes["linger.ms"] == "P"
    assert scopes["acks"] == "P"  # a topic-level property
    assert scopes["client.id"] == "*"


def test_each_role_gets_its_own_keys() -> None:
    settings = BrokerSettings(kafka_extra=EXTRA)
    consumer = consumer_config(settings, group_id="g")
    producer = producer_config(settings)
    assert consumer["session.timeout.ms"] == "6000"
    assert "linger.ms" not in consumer
    assert producer["linger.ms"] == "5"
    assert "session.timeout.ms" not in producer
    assert "fetch.wait.max.ms" not in producer
    for conf in (consumer, producer):
        assert conf["socket.keepalive.enable"] == "true"
    assert producer["enable.idempotence"] is True  # invariants still apply


def test_a_producer_from_the_shared_passthrough_logs_no_confwarn() -> None:
    settings = BrokerSettings(kafka_extra=EXTRA)
    assert "session.timeout.ms" in confwarns({**settings.kafka_config()})  # what was filtered
    assert confwarns(producer_config(settings)) == ""
