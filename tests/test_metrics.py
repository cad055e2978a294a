"""Metrics on a fresh registry, and the /metrics HTTP endpoint on loopback."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client import CollectorRegistry, Counter

from broker.metrics import DEPRECATED_NAMES, BrokerMetrics, start_metrics_server


def test_metrics_on_a_fresh_registry() -> None:
    registry = CollectorRegistry()
    m = BrokerMetrics(registry)
    m.messages_consumed.labels(topic="ztf").inc(3)
    m.messages_dead_lettered.labels(topic="ztf", reason="not_avro").inc()
    m.batch_size.observe(200)
    m.inference_seconds.observe(0.004)
    m.set_lag({("ztf", 0): 12, ("ztf", 1): 0})
    m.set_model("dmdt-cnn", "1.0.0", "sha256:ab")
    get = registry.get_sample_value
    assert get("dmdt_messages_consumed_total", {"topic": "ztf"}) == 3
    assert get("dmdt_messages_dead_lettered_total", {"topic": "ztf", "reason": "not_avro"}) == 1
    assert get("dmdt_batch_size_count") == 1
    assert get("dmdt_batch_size_bucket", {"le": "256.0"}) == 1
    assert get("dmdt_inference_seconds_bucket", {"le": "0.005"}) == 1
    assert get("dmdt_consumer_lag", {"topic": "ztf", "partition": "0"}) == 12
    assert (
        get("dmdt_model_info", {"name": "dmdt-cnn", "version": "1.0.0", "hash": "sha256:ab"}) == 1
    )
    m.forget_partitions([("ztf", 0), ("ztf", 7)])
    assert get("dmdt_consumer_lag", {"topic": "ztf", "partition": "0"}) is None
    BrokerMetrics(CollectorRegistry())  # a second instance on its own registry does not clash


def test_metrics_server_binds_loopback() -> None:
    registry = CollectorRegistry()
    BrokerMetrics(registry).sources_held.set(42)
    server = start_metrics_server(registry, "127.0.0.1", 0)
    try:
        assert server.host == "127.0.0.1"
        assert server.port > 0
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as r:
            body = r.read().decode()
        assert "dmdt_sources_held 42.0" in body
    finally:
        server.close()


def test_deprecated_names_mirror_the_renamed_counters() -> None:
    """The names before the message / source-band split stay exposed, with the same values and
    labels, and say which name replaces them."""
    registry = CollectorRegistry()
    m = BrokerMetrics(registry)
    m.messages_consumed.labels(topic="ztf").inc(417)
    m.source_bands_unclassified.labels(topic="ztf").inc(518)
    m.source_bands_classified.labels(topic="ztf").inc(20)
    m.source_bands_unknown.labels(topic="ztf").inc(2)
    m.messages_dead_lettered.labels(topic="ztf", reason="not_avro").inc(5)
    get = registry.get_sample_value
    for old, attr in DEPRECATED_NAMES.items():
        (family,) = getattr(m, attr).collect()
        (sample,) = [s for s in family.samples if s.name.endswith("_total")]
        assert get(f"dmdt_{old}_total", sample.labels) == sample.value > 0
    assert get("dmdt_alerts_unclassified_total", {"topic": "ztf"}) == 518
    m.messages_consumed.labels(topic="ztf").inc()  # read at scrape time, not copied once
    assert get("dmdt_alerts_consumed_total", {"topic": "ztf"}) == 418
    docs = {f.name: f.documentation for f in registry.collect()}
    assert docs["dmdt_alerts_consumed"].startswith("DEPRECATED, use dmdt_messages_consumed_total")
    with pytest.raises(ValueError, match="Duplicated"):  # the old names stay reserved
        Counter("alerts_consumed", "x", namespace="dmdt", registry=registry)
