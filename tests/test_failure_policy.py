"""The system's faults stop the consumer cleanly: a clear one-line message, the fault counted, the
batch's offsets not stored; and a restart recovers by itself once the cause is gone. (The input's
faults are dead-lettered instead: tests/test_dead_letters.py, test_sanity.py, test_source_cap.py,
test_keying.py.)

Before, a full disk ended in "Writer has previous error" raised by the store's close, which hid
the real error behind a raw traceback; a producer refusing a message and a store read error
escaped the loop as raw exceptions, uncounted."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from stream_helpers import crts_curves, tiny_model

from broker.app import App, DeliveryFailed
from broker.kafka import AlertConsumer, AlertProducer
from broker.settings import BrokerSettings
from broker.store import RocksStore, StateStoreError, decode_row, store_path
from broker.tools.replay import (
    ReplaySource,
    load_source,
    read_stream,
    replay_to_file,
    replay_to_topic,
)
from broker.tools.testing import TEST_CONSUMER_OVERRIDES, unique_name
from dmdt.grids import get_grid
from dmdt.reference import numpy_counts

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def committed(settings: BrokerSettings, topic: str, partitions: int = 1) -> int:
    probe = AlertConsumer(settings, overrides=TEST_CONSUMER_OVERRIDES)
    try:
        got = probe.committed([(topic, p) for p in range(partitions)], timeout_s=10)
    finally:
        probe.close()
    return sum(max(o, 0) for o in got.values())


def settings_for(kafka_settings: BrokerSettings, make_topic: Any, model: Path, **extra: Any):
    lc, out, dlq = make_topic(1), make_topic(1), make_topic(1)
    return BrokerSettings(
        bootstrap_servers=kafka_settings.bootstrap_servers, group_id=unique_name("group"),
        input_topics={lc: "lightcurve"}, output_topic=out, dead_letter_topic=dlq,
        batch_size=50, batch_wait_ms=20, metrics_port=0, device="cpu", model=str(model),
        min_points=2, **extra,
    )  # fmt: skip


def test_a_refused_produce_stops_cleanly_and_stores_no_offset(
    kafka_settings, make_topic, tmp_path
) -> None:
    """An operator's message.max.bytes below a dead letter's size: the produce is refused."""
    model = tiny_model(tmp_path / "model").path
    s = settings_for(kafka_settings, make_topic, model, state_store="memory",
                     kafka_extra={"message.max.bytes": "3000"})  # fmt: skip
    (lc,) = s.input_topics
    plain = settings_for(kafka_settings, make_topic, model)
    summary = replay_to_topic(plain, load_source("crts"), lc, limit_sources=1)
    with AlertProducer(plain) as producer:
        producer.produce(lc, b"\x01" * 2900, key=b"junk")  # its dead letter is over 3000 bytes
    registry = CollectorRegistry()
    app = App(s, registry=registry, consumer_overrides=TEST_CONSUMER_OVERRIDES)
    with pytest.raises(DeliveryFailed, match=f"MSG_SIZE_TOO_LARGE.*{s.dead_letter_topic}|"
                       f"{s.dead_letter_topic}.*MSG_SIZE_TOO_LARGE"):  # fmt: skip
        app.run(serve_metrics=False)
    get = registry.get_sample_value
    assert get("dmdt_publish_failures_total", {"topic": s.dead_letter_topic}) == 1
    assert committed(s, lc) <= summary.alerts  # the junk message's offset was not stored
    # the cause gone (the limit back to its default), a new consumer takes the rest
    fixed = s.model_copy(update={"kafka_extra": {}})
    again = App(fixed, consumer_overrides=TEST_CONSUMER_OVERRIDES)
    from broker.app import run_in_thread

    thread, outcome = run_in_thread(again)
    deadline = time.monotonic() + 60
    while committed(s, lc) < summary.alerts + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    again.stop()
    thread.join(60)
    assert not isinstance(outcome[0], BaseException), outcome[0]
    assert committed(s, lc) == summary.alerts + 1
    assert again.stats.dead_lettered == 1


class UnreadableStore(RocksStore):
    """A fake: a store whose reads fail as a failing disk's would (an I/O error we cannot cause
    on this machine's disk); writes work."""

    def get_many(self, keys):  # type: ignore[no-untyped-def]
        if keys:
            raise StateStoreError("state store read failed: IO error: Input/output error")
        return []


def test_a_store_read_error_stops_cleanly_and_is_counted(
    kafka_settings, make_topic, tmp_path
) -> None:
    from broker.durable import DurableState
    from broker.models import ModelSource

    model = tiny_model(tmp_path / "model").path
    s = settings_for(kafka_settings, make_topic, model, state_changelog=False,
                     state_dir=tmp_path / "state")  # fmt: skip
    (lc,) = s.input_topics
    replay_to_topic(s, load_source("crts"), lc, limit_sources=1)
    models = ModelSource(model, "cpu")
    store = UnreadableStore(store_path(s.state_dir, s.group_id))
    registry = CollectorRegistry()
    app = App(s, registry=registry, models=models, state=DurableState(models.current.grid, store),
              consumer_overrides=TEST_CONSUMER_OVERRIDES)  # fmt: skip
    with pytest.raises(DeliveryFailed, match="Input/output error"):
        app.run(serve_metrics=False)
    assert registry.get_sample_value("dmdt_state_store_errors_total") == 1
    assert committed(s, lc) == 0


def test_a_full_disk_stops_cleanly_and_a_restart_recovers(kafka_settings, make_topic, tmp_path):
    """`dmdt-broker run` with a file size limit (RLIMIT_FSIZE: writes past it fail with EFBIG, as
    on a full disk) stops with exit 1 and one clear line; run again without the limit, it takes
    up where the stored offsets are and every source's histogram comes out exact."""
    model = tiny_model(tmp_path / "model").path
    s = settings_for(kafka_settings, make_topic, model, state_dir=tmp_path / "state")
    (lc,) = s.input_topics
    curves = crts_curves(6)
    stream_file = tmp_path / "stream.bin"
    replay_to_file(ReplaySource("crts", "crts", tuple(curves), "lightcurve"), stream_file)
    stream = list(read_stream(stream_file))
    with AlertProducer(s) as producer:
        for r in stream:
            producer.produce(lc, r.value, key=r.key)
    conf = {**TEST_CONSUMER_OVERRIDES, "auto.commit.interval.ms": 200}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DMDT_", "KAFKA_"))},
        "DMDT_BOOTSTRAP_SERVERS": s.bootstrap_servers,
        "DMDT_KAFKA_EXTRA": ",".join(f"{k}={v}" for k, v in conf.items()),
        "DMDT_METRICS_PORT": "0", "DMDT_DEVICE": "cpu", "DMDT_TORCH_THREADS": "1",
        "DMDT_STATE_DIR": str(s.state_dir), "PYTHONUNBUFFERED": "1",
    }  # fmt: skip
    cmd = [
        sys.executable, "-m", "broker.cli", "run", "--input", f"{lc}:lightcurve",
        "--output", s.output_topic, "--dead-letter", s.dead_letter_topic, "--group", s.group_id,
        "--model", str(model), "--batch-size", "20", "--batch-wait-ms", "10", "--min-points", "2",
    ]  # fmt: skip

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal, as ENOSPC
        resource.setrlimit(resource.RLIMIT_FSIZE, (600_000, 600_000))

    full = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300,
                          preexec_fn=small_disk, check=False)  # fmt: skip
    assert full.returncode == 1, full.stderr[-3000:]
    assert "Traceback" not in full.stderr, full.stderr[-3000:]
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("dmdt-broker run: stopped:"), full.stderr[-3000:]
    assert "state not persisted" in last
    assert "offsets not stored" in last
    stopped_at = committed(s, lc)
    assert stopped_at < len(stream)

    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while committed(s, lc) < len(stream):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the restarted consumer did not catch up"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    with RocksStore(store_path(s.state_dir, s.group_id)) as store:
        rows = {k: decode_row(v, get_grid()) for k, v in store.rows()}
    assert set(rows) == {(lc.source_id, "V") for lc in curves}
    for curve in curves:
        row = rows[(curve.source_id, "V")]
        assert row["t"].tolist() == curve.t.tolist()
        assert (row["counts"] == numpy_counts(curve.t, curve.m, get_grid())).all()


def test_a_schema_registry_outage_is_retried_then_stops(tmp_path, monkeypatch, rubin_file) -> None:
    """A Rubin batch while the Schema Registry does not answer (nothing listens on its port): the
    batch is retried with back-off, then the consumer stops with one line; no dead letter."""
    from broker import app as app_module
    from broker.kafka import Record
    from broker.models import ModelSource
    from broker.state import MemoryState
    from broker.tools.testing import free_port, rubin_messages

    monkeypatch.setattr(app_module, "OUTAGE_GIVE_UP_S", 3.0)  # tries at 0, 0.5 and 1.5 s
    model = tiny_model(tmp_path / "model").path
    s = BrokerSettings(input_topics={"rubin": "rubin"}, model=str(model), device="cpu",
                       schema_registry_url=f"http://127.0.0.1:{free_port()}")  # fmt: skip
    models = ModelSource(model, "cpu")
    app = App(s, models=models, state=MemoryState(models.current.grid))
    _, message = next(iter(rubin_messages(rubin_file)))
    started = time.monotonic()
    with pytest.raises(DeliveryFailed, match="schema registry unavailable"):
        app._process([Record("rubin", 0, 0, b"1", message, None)])
    assert time.monotonic() - started >= 1.0  # retried, not given up at once
