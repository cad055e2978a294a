"""No secret in logs, probes or metrics; the metrics/health server binds where it is told.

A SASL password (and passthrough secrets) set in the environment must never show in the settings'
repr/str, in log lines, in /metrics, /healthz or /readyz, nor in what a running `dmdt-broker run`
prints, even with librdkafka's configuration dump switched on (debug=conf).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from stream_helpers import tiny_model

from broker.health import Health, serve
from broker.metrics import BrokerMetrics
from broker.settings import BrokerSettings
from broker.tools.testing import free_port

PASSWORD = "Hunter2-sasl-pw-7f3a"
KEY_PASSWORD = "tls-key-pw-91c2"
CLIENT_SECRET = "oidc-client-secret-5d8e"
SECRETS = (PASSWORD, KEY_PASSWORD, CLIENT_SECRET)


def assert_no_secret(text: str, where: str) -> None:
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked into {where}"


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "DMDT_SECURITY_PROTOCOL": "SASL_SSL",
        "DMDT_SASL_MECHANISM": "SCRAM-SHA-512",
        "DMDT_SASL_USERNAME": "dmdt-broker",
        "DMDT_SASL_PASSWORD": PASSWORD,
        "DMDT_KAFKA_EXTRA": json.dumps(
            {"ssl.key.password": KEY_PASSWORD, "sasl.oauthbearer.client.secret": CLIENT_SECRET}
        ),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


def test_settings_repr_str_and_logged_config_hide_secrets(
    secret_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    s = BrokerSettings()
    assert s.kafka_config()["sasl.password"] == PASSWORD  # what librdkafka gets
    redacted = s.kafka_config(redact=True)
    for text, where in (
        (repr(s), "repr"),
        (str(s), "str"),
        (f"{s}", "format"),
        (json.dumps(redacted), "kafka_config(redact=True)"),
        (repr(s.sasl_password), "the SecretStr"),
    ):
        assert_no_secret(text, where)
    assert redacted["sasl.username"] == "dmdt-broker"
    log = logging.getLogger("dmdt.test")
    with caplog.at_level(logging.DEBUG):
        log.info("settings %s", s)
        log.info("settings %r", s)
        log.info("kafka %s", redacted)
        log.info("password field %s", s.sasl_password)
    assert caplog.records
    assert_no_secret(caplog.text, "log lines")


def test_metrics_and_probes_hide_secrets(secret_env: dict[str, str]) -> None:
    s = BrokerSettings()
    registry = CollectorRegistry()
    metrics = BrokerMetrics(registry)
    metrics.set_model("dmdt-shallow", "v1", "sha256:ab")
    metrics.messages_consumed.labels(topic="ztf-alerts").inc()
    health = Health()
    health.set_model("v1")
    health.fail(f"KafkaFatalError: {s!r}")  # even a failure message that quotes the settings
    server = serve(health, registry, "127.0.0.1", 0)
    try:
        for path in ("/metrics", "/healthz", "/readyz"):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}") as r:
                    body = r.read().decode()
            except urllib.error.HTTPError as exc:
                body = exc.read().decode()
            assert body
            assert_no_secret(body, path)
    finally:
        server.close()
    assert_no_secret(generate_latest(registry).decode(), "the registry")


def _get(url: str) -> tuple[int, str] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError):
        return None


@pytest.mark.slow
def test_running_consumer_prints_and_serves_no_secret(tmp_path: Path) -> None:
    """`dmdt-broker -v run` with librdkafka's config dump on, against an unreachable cluster."""
    model = tiny_model(tmp_path / "model")
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DMDT_", "KAFKA_"))},
        "DMDT_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nothing listens: errors logged
        "DMDT_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "DMDT_SASL_MECHANISM": "PLAIN",
        "DMDT_SASL_USERNAME": "dmdt-broker",
        "DMDT_SASL_PASSWORD": PASSWORD,
        "DMDT_KAFKA_EXTRA": json.dumps({"debug": "conf,security,broker"}),
        "DMDT_MODEL": str(model.path),
        "DMDT_DEVICE": "cpu",
        "DMDT_METRICS_PORT": str(port),
        "DMDT_STATE_DIR": str(tmp_path / "state"),
    }
    out = tmp_path / "out.txt"
    with out.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "broker.cli", "-v", "run"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
        try:
            deadline = time.monotonic() + 90
            while _get(f"http://127.0.0.1:{port}/healthz") is None:
                assert process.poll() is None, out.read_text()
                assert time.monotonic() < deadline, "the consumer never served /healthz"
                time.sleep(0.2)
            time.sleep(1.0)  # a few connection attempts, each logged
            answers = {p: _get(f"http://127.0.0.1:{port}{p}") for p in ("/metrics", "/readyz")}
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
    printed = out.read_text()
    assert "sasl.password = [redacted]" in printed  # librdkafka did dump its configuration
    assert "dmdt-broker run:" in printed
    assert_no_secret(printed, "the process output")
    metrics = answers["/metrics"]
    assert metrics is not None
    assert metrics[0] == 200
    assert "dmdt_model_info" in metrics[1]
    assert_no_secret(metrics[1], "/metrics")
    ready = answers["/readyz"]
    assert ready is not None
    assert ready[0] == 503  # no partition: the cluster is unreachable
    assert_no_secret(ready[1], "/readyz")


def test_model_dump_masks_passthrough_secrets():
    from broker.settings import BrokerSettings

    s = BrokerSettings(kafka_extra={"ssl.key.password": "hunter2-key", "linger.ms": "5"})
    assert "hunter2-key" not in str(s.model_dump())
    assert "hunter2-key" not in s.model_dump_json()
    assert s.model_dump()["kafka_extra"]["linger.ms"] == "5"
    assert s.kafka_config()["ssl.key.password"] == "hunter2-key"  # the one place it is rendered


PLANTED = "Planted-pw-4b9e1c"
BAD_CONFIGURATIONS = {
    "SASL without a mechanism": {
        "DMDT_SECURITY_PROTOCOL": "SASL_SSL",
        "DMDT_SASL_PASSWORD": PLANTED,
    },
    "passthrough entry without '='": {"DMDT_KAFKA_EXTRA": f"linger.ms=5,sasl.password:{PLANTED}"},
    "passthrough JSON cut short": {"DMDT_KAFKA_EXTRA": f'{{"sasl.password": "{PLANTED}"'},
    "another setting invalid": {"DMDT_SASL_PASSWORD": PLANTED, "DMDT_BATCH_SIZE": "0"},
    "a guarantee key overridden": {
        "DMDT_KAFKA_EXTRA": f"sasl.password={PLANTED},enable.idempotence=false,acks=1"
    },
    "an unknown librdkafka key": {
        "DMDT_KAFKA_EXTRA": f"sasl.password={PLANTED},no.such.property=1",
        "DMDT_SASL_PASSWORD": PLANTED,
    },
    "registry URL with credentials, wrong scheme": {
        "DMDT_SCHEMA_REGISTRY_URL": f"ftp://user:{PLANTED}@registry.example.org"
    },
    "unknown security protocol": {
        "DMDT_SECURITY_PROTOCOL": "SASL_SSLX",
        "DMDT_SASL_PASSWORD": PLANTED,
        "DMDT_SASL_MECHANISM": "PLAIN",
    },
}


@pytest.mark.slow
@pytest.mark.parametrize("command", ["run", "replay"])
def test_bad_configurations_never_print_the_password(command: str, tmp_path: Path) -> None:
    """`dmdt-broker run` and `replay` (to Kafka: it builds the settings) with each bad
    configuration above: they fail, and nothing they print holds the planted password."""
    model = tiny_model(tmp_path / "model")
    base = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DMDT_", "KAFKA_"))},
        "DMDT_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}",  # nothing listens
        "DMDT_MODEL": str(model.path),
        "DMDT_DEVICE": "cpu",
        "DMDT_METRICS_PORT": "0",
        "DMDT_STATE_DIR": str(tmp_path / "state"),
    }
    args = {
        "run": ["-v", "run"],
        "replay": ["-v", "replay", "tests/data/crts", "--topic", "t", "--as-fast-as-possible"],
    }[command]
    repo = Path(__file__).resolve().parent.parent
    for name, env in BAD_CONFIGURATIONS.items():
        done = subprocess.run(
            [sys.executable, "-m", "broker.cli", *args], env={**base, **env}, cwd=repo,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        printed = done.stdout + done.stderr
        assert done.returncode != 0, f"{command} with {name} did not fail:\n{printed[-2000:]}"
        assert PLANTED not in printed, f"{command} with {name} printed the password"
        assert "dmdt-broker" in printed, printed[-2000:]  # it said something
