"""The broker's run loop against a real Kafka-protocol broker (Tansu on loopback): replayed CRTS,
ZTF and Rubin alerts through to classifications, dead letters, at-least-once on a failed
delivery, model hot reload between batches, metrics, and SIGTERM draining a `dmdt-broker run`
subprocess. Each test has its own topics and consumer group."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from stream_helpers import CLASSES, crts_curves, tiny_model

from broker import checkpoint as checkpoint_module
from broker.app import App, DeliveryFailed, run_in_thread
from broker.decode_ztf import ZtfDecoder
from broker.encode import Classification, decode_classification, decode_dead_letter
from broker.kafka import AlertConsumer, AlertProducer, Record
from broker.models import ModelSource
from broker.settings import BrokerSettings
from broker.state import MemoryState
from broker.tools.replay import ReplaySource, load_source, replay_to_topic
from broker.tools.testing import TEST_CONSUMER_OVERRIDES, rubin_messages, unique_name, ztf_messages
from dmdt.cnn import Classifier
from dmdt.reference import numpy_counts
from dmdt.registry import CURRENT_FILE, publish

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

N_SOURCES = 4


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m"
    tiny_model(path)
    return path


@pytest.fixture(scope="module")
def crts_source() -> ReplaySource:
    return load_source("crts")


def settings_for(base: BrokerSettings, inputs: dict[str, str], **extra: Any) -> BrokerSettings:
    fields: dict[str, Any] = {
        "bootstrap_servers": base.bootstrap_servers,
        "group_id": unique_name("group"),
        "input_topics": inputs,
        "batch_size": 400,
        "batch_wait_ms": 20,
        "metrics_port": 0,
        "device": "cpu",
        **extra,
    }
    return BrokerSettings(**fields)


def wait_for(condition: Callable[[], bool], timeout_s: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.05)


def read_topic(
    settings: BrokerSettings, topic: str, count: int, timeout_s: float = 60
) -> list[Record]:
    """`count` records of a topic from the start (fails if fewer arrive), plus any stragglers."""
    consumer = AlertConsumer(
        settings, group_id=unique_name("reader"), overrides=TEST_CONSUMER_OVERRIDES
    )
    consumer.subscribe([topic])
    out: list[Record] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < count and time.monotonic() < deadline:
            out += consumer.poll_batch(5000, 0.2)
        out += consumer.poll_batch(5000, 0.5)
    finally:
        consumer.close()
    assert len(out) >= count, f"{len(out)} of {count} records on {topic}"
    return out


_RUNNING: list[tuple[App, Any]] = []


@pytest.fixture(autouse=True)
def _stop_apps_left_running():
    """A failing test must not leave a consumer thread behind (it would outlive the broker)."""
    yield
    while _RUNNING:
        app, thread = _RUNNING.pop()
        app.stop()
        thread.join(60)


def start(settings: BrokerSettings, **kwargs: Any) -> tuple[App, Any, list[Any]]:
    app = App(settings, consumer_overrides=TEST_CONSUMER_OVERRIDES, **kwargs)
    thread, outcome = run_in_thread(app)
    _RUNNING.append((app, thread))
    return app, thread, outcome


def stop(app: App, thread: Any, outcome: list[Any]) -> Any:
    app.stop()
    thread.join(60)
    assert not thread.is_alive()
    assert outcome, "the app thread ended without a result"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


def last_per_source(records: list[Record]) -> dict[str, Classification]:
    out: dict[str, Classification] = {}
    for r in records:
        c = decode_classification(r.value)  # type: ignore[arg-type]
        assert r.key == c.source_id.encode()
        out[c.source_id] = c
    return out


def test_replayed_crts_to_classifications(kafka_settings, make_topic, model_dir, crts_source):
    lc_topic, out_topic, dlq = make_topic(2), make_topic(2), make_topic(1)
    s = settings_for(kafka_settings, {lc_topic: "lightcurve"}, output_topic=out_topic,
                     dead_letter_topic=dlq, model=str(model_dir))  # fmt: skip
    registry = CollectorRegistry()
    app, thread, outcome = start(s, registry=registry)
    summary = replay_to_topic(s, crts_source, lc_topic, limit_sources=N_SOURCES)
    wait_for(lambda: app.stats.consumed >= summary.alerts, what="all alerts consumed")
    stats = stop(app, thread, outcome)
    assert (stats.consumed, stats.alerts, stats.dead_lettered) == (summary.alerts,) * 2 + (0,)
    outputs = read_topic(s, out_topic, stats.classified)
    assert len(outputs) == stats.classified  # one per classified alert, nothing twice
    last = last_per_source(outputs)
    curves = crts_curves(N_SOURCES)
    offline = Classifier.from_checkpoint(model_dir, "cpu").classify_lightcurves(curves)
    for lc, probs in zip(curves, offline.probabilities, strict=True):
        c = last[lc.source_id]
        assert (c.survey, c.band, c.n_points) == ("crts", "V", len(lc))
        stream = np.array([c.probabilities[k] for k in CLASSES], dtype=np.float32)
        np.testing.assert_allclose(stream, probs, rtol=0, atol=1e-6)
        assert c.predicted_class == CLASSES[int(np.argmax(probs))]
        assert c.ingest_timestamp <= c.publish_timestamp
        assert c.alert_timestamp is not None
        assert c.alert_timestamp <= c.ingest_timestamp
    # offsets committed up to the end of both partitions
    probe = AlertConsumer(s, overrides=TEST_CONSUMER_OVERRIDES)
    try:
        committed = probe.committed([(lc_topic, 0), (lc_topic, 1)])
    finally:
        probe.close()
    assert sum(committed.values()) == summary.alerts
    get = registry.get_sample_value
    assert get("dmdt_messages_consumed_total", {"topic": lc_topic}) == summary.alerts
    assert get("dmdt_source_bands_classified_total", {"topic": lc_topic}) == stats.classified
    assert (
        get("dmdt_source_bands_unclassified_total", {"topic": lc_topic}) or 0
    ) == summary.alerts - stats.classified  # no sample when every alert was classified
    # one band per lightcurve_alert: as many source-bands decoded as messages consumed
    assert get("dmdt_source_bands_decoded_total", {"topic": lc_topic}) == summary.alerts
    assert get("dmdt_end_to_end_seconds_count") == stats.classified
    assert get("dmdt_batch_size_count") == stats.batches
    assert get("dmdt_inference_seconds_count") == stats.batches
    assert get("dmdt_sources_held") == 0  # partitions revoked on close: their state dropped
    served = app.models.current
    info = {"name": served.name, "version": served.version, "hash": served.content_hash}
    assert get("dmdt_model_info", info) == 1


def test_ztf_and_rubin_alerts(kafka_settings, make_topic, model_dir, ztf_files, rubin_file):
    ztf_topic, rubin_topic, out_topic, dlq = (
        make_topic(1),
        make_topic(1),
        make_topic(1),
        make_topic(1),
    )
    s = settings_for(
        kafka_settings, {ztf_topic: "ztf", rubin_topic: "rubin"}, output_topic=out_topic,
        dead_letter_topic=dlq, model=str(model_dir), min_points=2, strict=True,
    )  # fmt: skip
    ztf = [m for path in ztf_files for m in ztf_messages(path)]
    rubin = [m for _, m in rubin_messages(rubin_file)]
    with AlertProducer(s) as producer:
        for m in ztf:
            producer.produce(ztf_topic, m, key=b"ztf")
        for m in rubin:
            producer.produce(rubin_topic, m, key=b"rubin")
    app, thread, outcome = start(s)
    wait_for(lambda: app.stats.consumed >= len(ztf) + len(rubin), what="all alerts consumed")
    stats = stop(app, thread, outcome)
    assert stats.dead_lettered == 0
    outputs = [decode_classification(r.value) for r in read_topic(s, out_topic, stats.classified)]
    by_survey: dict[str, list[Classification]] = {}
    for c in outputs:
        by_survey.setdefault(c.survey, []).append(c)
    assert set(by_survey) == {"ztf", "rubin"}
    # every ZTF alert band with at least 2 distinct detections has its classification
    decoder = ZtfDecoder()
    expected = {
        (a.source_id, a.alert_id, a.band)
        for m in ztf
        for a in decoder(m)
        if np.unique(a.t).size >= 2
    }
    got = {(c.source_id, c.alert_id, c.band) for c in by_survey["ztf"]}
    assert expected <= got
    assert all(c.n_points >= 2 and c.band in "gri" for c in by_survey["ztf"])
    assert all(c.band in "ugrizy" for c in by_survey["rubin"])


def test_malformed_message_goes_to_the_dead_letter_topic(
    kafka_settings, make_topic, model_dir, crts_source
):
    lc_topic, out_topic, dlq = make_topic(1), make_topic(1), make_topic(1)
    s = settings_for(kafka_settings, {lc_topic: "lightcurve"}, output_topic=out_topic,
                     dead_letter_topic=dlq, model=str(model_dir))  # fmt: skip
    summary = replay_to_topic(s, crts_source, lc_topic, limit_sources=2)
    with AlertProducer(s) as producer:
        producer.produce(lc_topic, b"\x00\x00\x00\x00\x01garbage", key=b"bad")
        producer.produce(lc_topic, b"plain text", key=b"worse")
    more = replay_to_topic(s, crts_source, lc_topic, limit_sources=2, seed=1)
    registry = CollectorRegistry()
    app, thread, outcome = start(s, registry=registry)
    total = summary.alerts + more.alerts + 2
    wait_for(lambda: app.stats.consumed >= total, what="all messages consumed")
    stats = stop(app, thread, outcome)
    assert stats.dead_lettered == 2
    letters = [decode_dead_letter(r.value) for r in read_topic(s, dlq, 2)]
    assert [(d.raw, d.key, d.topic, d.partition, d.offset, d.reason) for d in letters] == [
        (b"\x00\x00\x00\x00\x01garbage", b"bad", lc_topic, 0, summary.alerts, "unknown_schema"),
        (b"plain text", b"worse", lc_topic, 0, summary.alerts + 1, "bad_magic"),
    ]
    get = registry.get_sample_value
    for reason in ("bad_magic", "unknown_schema"):
        labels = {"topic": lc_topic, "reason": reason}
        assert get("dmdt_messages_dead_lettered_total", labels) == 1
    outputs = read_topic(s, out_topic, stats.classified)
    assert len({decode_classification(r.value).source_id for r in outputs}) >= 2  # the rest flowed


def test_failed_delivery_stores_nothing_and_redelivery_is_exact(
    kafka_settings, make_topic, model_dir, crts_source, monkeypatch
):
    lc_topic, out_topic, dlq = make_topic(2), make_topic(1), make_topic(1)
    s = settings_for(kafka_settings, {lc_topic: "lightcurve"}, output_topic=out_topic,
                     dead_letter_topic=dlq, model=str(model_dir), batch_size=300)  # fmt: skip
    summary = replay_to_topic(s, crts_source, lc_topic, limit_sources=N_SOURCES)
    real = checkpoint_module.deliver_then_store
    calls = {"n": 0}

    def flaky(producer, consumer, records, timeout_s=30.0):  # the 4th batch is never acked
        calls["n"] += 1
        if calls["n"] == 4:
            producer.flush(timeout_s)
            return False
        return real(producer, consumer, records, timeout_s)

    monkeypatch.setattr(checkpoint_module, "deliver_then_store", flaky)
    models = ModelSource(model_dir, "cpu")
    state = MemoryState(models.current.classifier.grid)  # stands for the durable store
    # keep the rows when partitions go: the next consumer "restores" them from this store
    monkeypatch.setattr(state, "release", lambda partitions: 0)
    first = App(s, models=models, state=state, consumer_overrides=TEST_CONSUMER_OVERRIDES)
    with pytest.raises(DeliveryFailed):
        first.run(serve_metrics=False)
    assert first.stats.consumed == 3 * 300  # three batches stored, the fourth not
    monkeypatch.setattr(checkpoint_module, "deliver_then_store", real)
    second, thread, outcome = start(s, models=models, state=state)
    wait_for(lambda: second.stats.consumed >= summary.alerts - 900, what="the rest consumed")
    stats = stop(second, thread, outcome)
    assert stats.consumed == summary.alerts - 900  # resumed after the last stored batch
    outputs = [
        decode_classification(r.value)
        for r in read_topic(s, out_topic, first.stats.classified + stats.classified)
    ]
    curves = crts_curves(N_SOURCES)
    for lc in curves:
        rows = state.table.rows([(lc.source_id, "V")])
        assert state.n_points(rows)[0] == len(lc)  # the redelivered batch added nothing twice
        np.testing.assert_array_equal(state.counts(rows)[0], numpy_counts(lc.t, lc.m, state.grid))
    # every alert of a source that reached min_points has at least one classification
    ids = {c.alert_id for c in outputs}
    n_ready = sum(len(lc) - 19 for lc in curves)
    assert len(ids) >= n_ready
    assert len(outputs) > len(ids)  # the batch whose delivery failed was classified twice


def test_model_hot_reload_between_batches(
    kafka_settings, make_topic, model_dir, crts_source, tmp_path
):
    lc_topic, out_topic, dlq = make_topic(1), make_topic(1), make_topic(1)
    reg = tmp_path / "registry"
    a = publish(model_dir, reg)
    s = settings_for(kafka_settings, {lc_topic: "lightcurve"}, output_topic=out_topic,
                     dead_letter_topic=dlq, model=str(reg), model_check_s=0.05)  # fmt: skip
    registry = CollectorRegistry()
    app, thread, outcome = start(s, registry=registry)
    first = replay_to_topic(s, crts_source, lc_topic, limit_sources=2)
    wait_for(lambda: app.stats.consumed >= first.alerts, what="first half")
    b = publish(tiny_model(tmp_path / "b", seed=7).path, reg)
    wait_for(lambda: app.models.current.content_hash == b.content_hash, what="reload")
    (reg / CURRENT_FILE).write_text("no-such-version\n")  # a broken publish: keep model b
    wait_for(lambda: (registry.get_sample_value("dmdt_model_load_failures_total") or 0) >= 1)
    second = replay_to_topic(s, crts_source, lc_topic, limit_sources=2, seed=3)
    wait_for(lambda: app.stats.consumed >= first.alerts + second.alerts, what="second half")
    stats = stop(app, thread, outcome)
    outputs = [decode_classification(r.value) for r in read_topic(s, out_topic, stats.classified)]
    hashes = [c.model_hash for c in outputs]
    switch = hashes.index(b.content_hash)
    assert set(hashes[:switch]) == {a.content_hash}
    assert set(hashes[switch:]) == {b.content_hash}  # one switch, between batches, never back
    assert {c.classifier_version for c in outputs[switch:]} == {b.version}
    assert app.models.current.content_hash == b.content_hash
    info = {"name": app.models.current.name, "version": b.version, "hash": b.content_hash}
    assert registry.get_sample_value("dmdt_model_info", info) == 1


def test_sigterm_drains_and_commits(kafka_settings, make_topic, model_dir, crts_source):
    lc_topic, out_topic, dlq = make_topic(1), make_topic(1), make_topic(1)
    group = unique_name("group")
    replayed: list[Any] = []
    # about 30 s of wall time for the 8.6 years of these sources: SIGTERM lands mid-stream even
    # when a loaded machine makes the consumer slow to start (12 s was seen to be too short)
    pacer = threading.Thread(
        target=lambda: replayed.append(
            replay_to_topic(kafka_settings, crts_source, lc_topic, limit_sources=N_SOURCES,
                            speedup=3200 * 86_400 / 30)
        )
    )  # fmt: skip
    extra = ",".join(f"{k}={v}" for k, v in TEST_CONSUMER_OVERRIDES.items())
    env = {
        **os.environ,
        "DMDT_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "DMDT_KAFKA_EXTRA": extra,
        "DMDT_METRICS_PORT": "0",
        "DMDT_DEVICE": "cpu",
    }
    cmd = [
        sys.executable, "-m", "broker.cli", "run", "--input", f"{lc_topic}:lightcurve",
        "--output", out_topic, "--dead-letter", dlq, "--group", group, "--model", str(model_dir),
        "--batch-size", "50", "--batch-wait-ms", "20",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    pacer.start()
    try:
        # a few batches in: outputs appear; then SIGTERM in the middle of the stream
        read_topic(kafka_settings, out_topic, 100, timeout_s=90)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "SIGTERM: draining" in err
    assert "stopped cleanly" in err
    probe = AlertConsumer(kafka_settings, group_id=group, overrides=TEST_CONSUMER_OVERRIDES)
    try:
        committed = probe.committed([(lc_topic, 0)])[(lc_topic, 0)]
    finally:
        probe.close()
    pacer.join(60)
    (summary,) = replayed
    assert 100 <= committed < summary.alerts  # stopped mid-stream, with its work committed
    # every input before the committed offset has its classification (once it had 20 points)
    outputs = [decode_classification(r.value) for r in read_topic(kafka_settings, out_topic, 100)]
    inputs = read_topic(kafka_settings, lc_topic, committed)[:committed]
    from broker.decode_lightcurve import LightcurveDecoder

    decoder = LightcurveDecoder()
    have = {c.alert_id for c in outputs}
    seen: dict[str, int] = {}
    for r in inputs:
        (a,) = decoder(r.value)  # type: ignore[arg-type]
        seen[a.source_id] = seen.get(a.source_id, 0) + 1
        if seen[a.source_id] >= 20:
            assert a.alert_id in have
