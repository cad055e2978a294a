"""broker.health: liveness/readiness rules, and the probes and /metrics served on loopback."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request

import pytest
from prometheus_client import CollectorRegistry

from broker.health import Health, main, probe, serve
from broker.metrics import BrokerMetrics


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_readiness_needs_partitions_and_a_model() -> None:
    clock = Clock()
    health = Health(stall_after_s=60, clock=clock)
    assert health.liveness().ok
    assert not health.readiness().ok
    health.set_model("20260101T000000Z-abcdef123456")
    assert not health.readiness().ok  # no partition yet
    health.set_assigned(3)
    ready = health.readiness()
    assert ready.ok
    assert ready.detail["assigned_partitions"] == 3
    assert ready.detail["model"] == "20260101T000000Z-abcdef123456"
    health.set_assigned(0)  # all revoked: alive, not ready
    assert health.liveness().ok
    assert not health.readiness().ok
    health.set_assigned(1)
    health.set_model(None)
    assert not health.readiness().ok
    with pytest.raises(ValueError, match=">= 0"):
        health.set_assigned(-1)


def test_liveness_fails_when_the_loop_stalls_or_fails() -> None:
    clock = Clock()
    health = Health(stall_after_s=60, clock=clock)
    health.set_model("v1")
    health.set_assigned(1)
    clock.now += 59
    assert health.liveness().ok  # counted from construction before the first beat
    clock.now += 2
    assert not health.liveness().ok
    assert not health.readiness().ok
    health.beat()
    assert health.readiness().ok
    health.fail("KafkaFatalError: fenced")
    live = health.liveness()
    assert not live.ok
    assert live.detail["failure"] == "KafkaFatalError: fenced"
    with pytest.raises(ValueError, match="positive"):
        Health(stall_after_s=0)


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_server_answers_probes_and_metrics_on_loopback() -> None:
    registry = CollectorRegistry()
    BrokerMetrics(registry).sources_held.set(7)
    health = Health()
    server = serve(health, registry, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.port}"
    try:
        assert server.host == "127.0.0.1"
        assert server._server.socket.getsockname()[0] == "127.0.0.1"
        code, ctype, body = _get(f"{base}/metrics")
        assert code == 200
        assert ctype.startswith("text/plain")
        assert "dmdt_sources_held 7.0" in body
        code, ctype, body = _get(f"{base}/healthz")
        assert (code, ctype, json.loads(body)["ok"]) == (200, "application/json", True)
        code, _, body = _get(f"{base}/readyz")
        assert code == 503
        assert json.loads(body)["assigned_partitions"] == 0
        health.set_model("v1")
        health.set_assigned(2)
        assert _get(f"{base}/readyz/")[0] == 200
        assert _get(f"{base}/livez")[0] == 200
        assert _get(f"{base}/other")[0] == 404
        assert probe(f"{base}/readyz")
        assert main([f"{base}/healthz"]) == 0
        health.fail("stopped")
        assert not probe(f"{base}/healthz")
        assert main([f"{base}/healthz"]) == 1
    finally:
        server.close()
    assert not probe(f"{base}/healthz", timeout_s=1)  # closed: refused, not raised
    with pytest.raises(ValueError, match="http"):
        probe("file:///etc/passwd")


def test_server_binds_the_configured_address_only() -> None:
    """Bound to 127.0.0.1 it is not reachable on another local address of the machine."""
    server = serve(Health(), CollectorRegistry(), "127.0.0.1", 0)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=2):
            pass
        with (
            pytest.raises(OSError),
            socket.create_connection(("127.0.0.2", server.port), timeout=2),
        ):
            pass
    finally:
        server.close()
