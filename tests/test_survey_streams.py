"""The repository's real survey nights through `dmdt-broker run` (a subprocess, the shipped default
model) on the real test broker: the ZTF public alerts of 2018-07-13 replayed with `dmdt-broker
replay`, and the Rubin sample produced as Rubin's stream sends it. One answer per object, one kind
of light curve per source, nothing dead-lettered, a clean stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from stream_helpers import ztf_night_messages

from broker.encode import Classification, decode_classification
from broker.kafka import AlertConsumer, AlertProducer, Record
from broker.settings import BrokerSettings
from broker.tools.replay import load_source, replay_to_topic
from broker.tools.testing import TEST_CONSUMER_OVERRIDES, rubin_messages, unique_name

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
MIN_POINTS = 5  # the night's histories are short: classify from 5 points


def drain(settings: BrokerSettings, topics: list[str], quiet_s: float = 3.0) -> list[Record]:
    """Every record of ``topics`` from the start: read, once the reader owns its partitions,
    until none arrives for ``quiet_s``."""
    consumer = AlertConsumer(settings, group_id=unique_name("reader"),
                             overrides=TEST_CONSUMER_OVERRIDES)  # fmt: skip
    consumer.subscribe(topics)
    out: list[Record] = []
    try:
        joined = time.monotonic() + 60
        while not consumer.assignment() and time.monotonic() < joined:
            out += consumer.poll_batch(5000, 0.2)
        assert consumer.assignment(), f"no partition of {topics} assigned"
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            got = consumer.poll_batch(5000, 0.5)
            if got:
                out += got
                last = time.monotonic()
    finally:
        consumer.close()
    return out


def run_broker(
    settings: BrokerSettings, inputs: str, topics: dict[str, str], n_messages: int
) -> str:
    """`dmdt-broker run` in a subprocess until its group has committed all ``n_messages`` of the
    input topic (2 partitions), then SIGTERM; its stderr."""
    group = unique_name("group")
    env = {
        **os.environ,
        "DMDT_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "DMDT_KAFKA_EXTRA": ",".join(f"{k}={v}" for k, v in TEST_CONSUMER_OVERRIDES.items()),
        "DMDT_METRICS_PORT": "0",
        "DMDT_DEVICE": "cpu",
        "DMDT_OBJECT_TOPIC": topics["objects"],
    }
    cmd = [
        sys.executable, "-m", "broker.cli", "run", "--input", inputs, "--output",
        topics["output"], "--dead-letter", topics["dead"], "--group", group,
        "--model", "default", "--min-points", str(MIN_POINTS), "--batch-size", "64",
        "--batch-wait-ms", "50",
    ]  # fmt: skip
    probe = AlertConsumer(settings, group_id=group, overrides=TEST_CONSUMER_OVERRIDES)
    parts = [(topics["input"], 0), (topics["input"], 1)]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1]  # no crash
            if sum(max(o, 0) for o in probe.committed(parts).values()) >= n_messages:
                break
            time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        probe.close()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopped cleanly" in err
    return err


def check_outputs(band: list[Classification], objects: list[Classification]) -> None:
    """One kind per source; object records one per object and batch, consistent with the band
    records of the same objects."""
    kinds: dict[tuple[str, str], set[str | None]] = defaultdict(set)
    bands: dict[str, set[str]] = defaultdict(set)
    for c in band:
        assert c.scope == "band"
        kinds[(c.source_id, c.band)].add(c.photometry)
        bands[c.source_id].add(c.band)
    assert all(len(k) == 1 and k <= {"total", "difference"} for k in kinds.values()), kinds
    seen: dict[str, set[int]] = defaultdict(set)
    for o in objects:
        assert o.scope == "object"
        assert o.alert_id not in seen[o.source_id]  # one object record per batch
        seen[o.source_id].add(o.alert_id)
        assert {b[0] for b in o.bands} <= bands[o.source_id]
        for name, _, kind, _, _ in o.bands:
            assert kinds[(o.source_id, name)] == {kind}
    assert set(seen) == set(bands)  # every classified object has its answer


@pytest.fixture
def topics(make_topic: Callable[..., str]) -> dict[str, str]:
    return {name: make_topic(2 if name == "input" else 1)
            for name in ("input", "output", "objects", "dead")}  # fmt: skip


def test_the_ztf_night_through_dmdt_broker_run(
    kafka_settings: BrokerSettings, topics: dict[str, str]
) -> None:
    night = REPO / "data" / "ztf" / "ztfss18_public_20180713"
    summary = replay_to_topic(kafka_settings, load_source(night), topics["input"])
    assert summary.alerts == 418
    run_broker(kafka_settings, f"{topics['input']}:ztf", topics, summary.alerts)
    band = [decode_classification(r.value) for r in drain(kafka_settings, [topics["output"]])]  # type: ignore[arg-type]
    objects = [decode_classification(r.value) for r in drain(kafka_settings, [topics["objects"]])]  # type: ignore[arg-type]
    assert drain(kafka_settings, [topics["dead"]], quiet_s=2.0) == []  # every real alert is fine
    check_outputs(band, objects)
    # the kind of each source is the one its first alert proposed (the decoder's reading of it)
    from broker.decode_ztf import ZtfDecoder

    first: dict[tuple[str, str], str] = {}
    decoder = ZtfDecoder()
    for _, _, message in ztf_night_messages():
        for a in decoder(message):
            first.setdefault((a.source_id, a.band), a.photometry)
    published = {(c.source_id, c.band): c.photometry for c in band}
    assert published == {k: first[k] for k in published}
    assert set(published.values()) == {"total", "difference"}
    two_bands = [o for o in objects if len(o.bands) == 2]
    assert len({o.source_id for o in two_bands}) >= 20  # one answer over g and r


def test_the_rubin_sample_through_dmdt_broker_run(
    kafka_settings: BrokerSettings, topics: dict[str, str], rubin_file: Path
) -> None:
    producer = AlertProducer(kafka_settings)
    sent: dict[str, dict[str, Any]] = {}
    try:
        for alert, message in rubin_messages(rubin_file):
            source = alert["diaSource"]
            key = str(source["diaObjectId"] or f"sso:{source['ssObjectId']}")
            sent[key] = alert
            producer.produce(topics["input"], message, key=key.encode())
        assert producer.flush(30) == 0
    finally:
        producer.close()
    multi = {k for k, a in sent.items() if len(a["prvDiaSources"] or []) >= MIN_POINTS}
    run_broker(kafka_settings, f"{topics['input']}:rubin", topics, len(sent))
    band = [decode_classification(r.value) for r in drain(kafka_settings, [topics["output"]])]  # type: ignore[arg-type]
    objects = [decode_classification(r.value) for r in drain(kafka_settings, [topics["objects"]])]  # type: ignore[arg-type]
    assert drain(kafka_settings, [topics["dead"]], quiet_s=2.0) == []
    check_outputs(band, objects)
    assert {c.photometry for c in band} == {"total"}
    assert {o.source_id for o in objects} == multi
    for o in objects:  # every band of the object's history answered together
        alert = sent[o.source_id]
        history = {d["band"] for d in [alert["diaSource"], *alert["prvDiaSources"]]}
        assert {b[0] for b in o.bands} == history
        # every detection counts, negative difference fluxes included (251 of 346 for one source)
        times = {d["midpointMjdTai"] for d in [alert["diaSource"], *alert["prvDiaSources"]]}
        assert o.n_points >= len(times)
