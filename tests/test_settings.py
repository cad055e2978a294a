"""BrokerSettings: environment parsing, librdkafka rendering, secrets kept out of reprs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from broker.settings import BrokerSettings


def test_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv(
        "DMDT_INPUT_TOPICS", "ztf-alerts:ztf, rubin-alerts:rubin,lc-alerts:lightcurve"
    )
    monkeypatch.setenv("DMDT_BATCH_SIZE", "512")
    monkeypatch.setenv("DMDT_DEVICE", "cpu")
    monkeypatch.setenv("DMDT_KAFKA_EXTRA", "socket.keepalive.enable=true, linger.ms=50")
    s = BrokerSettings()
    assert s.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert s.input_topics == {
        "ztf-alerts": "ztf",
        "rubin-alerts": "rubin",
        "lc-alerts": "lightcurve",
    }
    assert (s.batch_size, s.device, s.metrics_host) == (512, "cpu", "127.0.0.1")
    assert s.kafka_config()["linger.ms"] == "50"
    monkeypatch.setenv("DMDT_BOOTSTRAP_SERVERS", "mine:1")
    assert BrokerSettings().bootstrap_servers == "mine:1"  # our own name wins
    monkeypatch.setenv("DMDT_KAFKA_EXTRA", '{"fetch.wait.max.ms": 10}')
    assert BrokerSettings().kafka_extra == {"fetch.wait.max.ms": "10"}


def test_kafka_config_and_secrets() -> None:
    s = BrokerSettings(
        bootstrap_servers="b:9096",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="alice",
        sasl_password="hunter2",
        ssl_ca_location="/etc/ca.pem",
        kafka_extra={"sasl.oauthbearer.client.secret": "s3cr3t"},
    )
    conf = s.kafka_config()
    assert conf == {
        "bootstrap.servers": "b:9096",
        "security.protocol": "SASL_SSL",
        "client.id": "dmdt-broker",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "alice",
        "sasl.password": "hunter2",
        "ssl.ca.location": "/etc/ca.pem",
        "sasl.oauthbearer.client.secret": "s3cr3t",
    }
    redacted = s.kafka_config(redact=True)
    for text in (repr(s), str(s), str(redacted)):
        assert "hunter2" not in text
        assert "s3cr3t" not in text
    assert redacted["sasl.username"] == "alice"


def test_invalid_settings() -> None:
    with pytest.raises(ValidationError, match="unknown decoder"):
        BrokerSettings(input_topics="alerts:ptf")
    with pytest.raises(ValidationError, match="KEY:VALUE"):
        BrokerSettings(input_topics="alerts")
    with pytest.raises(ValidationError, match="sasl_mechanism"):
        BrokerSettings(security_protocol="SASL_SSL")
    with pytest.raises(ValidationError, match="http"):
        BrokerSettings(schema_registry_url="registry:8081")
    with pytest.raises(ValidationError):
        BrokerSettings(batch_size=0)
    s = BrokerSettings()
    with pytest.raises(ValidationError):
        s.group_id = "other"  # type: ignore[misc]


def test_min_probability(monkeypatch: pytest.MonkeyPatch) -> None:
    assert BrokerSettings().min_probability == 0.5
    monkeypatch.setenv("DMDT_MIN_PROBABILITY", "0")
    assert BrokerSettings().min_probability == 0.0
    for bad in (-0.1, 1.01):
        with pytest.raises(ValidationError):
            BrokerSettings(min_probability=bad)
