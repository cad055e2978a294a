"""Metrics on a fresh registry, and the /metrics HTTP endpoint on loopback."""

from __future__ import annotations

import urllib.request

from prometheus_client import CollectorRegistry

from broker.metrics import BrokerMetrics, start_metrics_server


def test_metrics_on_a_fresh_registry() -> None:
    registry = CollectorRegistry()
    m = BrokerMetrics(registry)
    m.alerts_consumed.labels(topic="ztf").inc(3)
    m.alerts_dead_lettered.labels(topic="ztf", reason="not_avro").inc()
    m.batch_size.observe(200)
    m.inference_seconds.observe(0.004)
    m.set_lag({("ztf", 0): 12, ("ztf", 1): 0})
    m.set_model("dmdt-cnn", "1.0.0", "sha256:ab")
    get = registry.get_sample_value
    assert get("dmdt_alerts_consumed_total", {"topic": "ztf"}) == 3
    assert get("dmdt_alerts_dead_lettered_total", {"topic": "ztf", "reason": "not_avro"}) == 1
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
