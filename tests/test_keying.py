"""The producer contract: on an input topic with more than one partition, every message is keyed
by its source id (the UTF-8 of the id the decoder derives), so that all alerts of a source land on
one partition, owned by one consumer. A message whose key is null or anything else is
dead-lettered as `bad_key`, counted and logged: processing it could split its source's history
over two consumers, each publishing its own contradictory class. A single-partition topic needs
no key.

Before, a source whose alerts arrived on two partitions got two diverging histories on two
consumers (n_points 2..5 instead of 10), and nothing detected it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from stream_helpers import crts_records, tiny_model

from broker.app import App, run_in_thread
from broker.decode import make_decoder
from broker.encode import decode_classification, decode_dead_letter, encode_record
from broker.kafka import AlertProducer, Record
from broker.kafka_admin import PartitionReader
from broker.models import ServedModel
from broker.pipeline import Pipeline
from broker.settings import BrokerSettings
from broker.state import MemoryState
from broker.tools.testing import TEST_CONSUMER_OVERRIDES, unique_name
from dmdt.cnn import Classifier


def alert(source: str, k: int) -> bytes:
    return encode_record("lightcurve_alert", {
        "alert_id": k, "source_id": source, "survey": "sim", "band": "V", "ra": None,
        "dec": None, "alert_time": 55_000.0 + k, "label": None,
        "detections": [{"mjd": 55_000.0 + k, "mag": 15.0 + 0.3 * np.sin(k), "magerr": 0.05}],
    })  # fmt: skip


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> ServedModel:
    path = tmp_path_factory.mktemp("model") / "m"
    tiny_model(path)
    return ServedModel.of(Classifier.from_checkpoint(path, "cpu"), 2)


def test_keys_are_checked_on_topics_with_several_partitions(served, tmp_path: Path) -> None:
    p = Pipeline({"lc": make_decoder("lightcurve"), "one": make_decoder("lightcurve")},
                 MemoryState(served.grid), lambda: served)  # fmt: skip
    p.partitions.update({"lc": 4, "one": 1})
    good = crts_records(tmp_path, 2)[:40]  # keyed by source id
    batch = [
        *good,
        Record("lc", 1, 900, None, alert("loose-1", 1), None),
        Record("lc", 2, 901, b"558190213315015002", alert("loose-1", 2), None),  # an alert id
        Record("one", 0, 902, None, alert("loose-2", 3), None),  # one partition: any key
        Record("one", 0, 903, b"whatever", alert("loose-2", 4), None),
    ]
    result = p.process(batch)
    letters = [decode_dead_letter(v) for _, v in result.dead_letters]
    assert [(d.offset, d.reason) for d in letters] == [(900, "bad_key"), (901, "bad_key")]
    assert "loose-1" in letters[0].error
    assert result.dead_reasons[("lc", "bad_key")] == 2
    assert result.alerts == 42
    unknown = Pipeline({"new": make_decoder("lightcurve")}, MemoryState(served.grid),
                       lambda: served)  # fmt: skip
    (letter,) = unknown.process([Record("new", 0, 1, None, alert("x-1", 1), None)]).dead_letters
    assert decode_dead_letter(letter[1]).reason == "bad_key"  # partitions unknown: checked


def read(settings: BrokerSettings, topic: str, partitions: int) -> list[Record]:
    """Every record of a topic (no consumer group)."""
    reader = PartitionReader(settings)
    out: list[Record] = []
    try:
        for p in range(partitions):
            reader.seek(topic, p, 0)
            quiet = time.monotonic() + 2
            while time.monotonic() < quiet:
                got = reader.read(5000, 0.2)
                if got:
                    out += got
                    quiet = time.monotonic() + 2
    finally:
        reader.close()
    return out


@pytest.mark.kafka
@pytest.mark.slow
def test_a_source_on_two_partitions_is_dead_lettered_not_split(
    kafka_settings, make_topic, tmp_path
) -> None:
    """Two consumers share a 2-partition topic; one source is keyed right, one is not."""
    lc, out, dlq = make_topic(2), make_topic(2), make_topic(1)
    model = tiny_model(tmp_path / "model")
    s = BrokerSettings(
        bootstrap_servers=kafka_settings.bootstrap_servers, group_id=unique_name("group"),
        input_topics={lc: "lightcurve"}, output_topic=out, dead_letter_topic=dlq,
        batch_size=50, batch_wait_ms=20, metrics_port=0, device="cpu", model=str(model.path),
        min_points=2, state_store="memory",
    )  # fmt: skip
    registries = [CollectorRegistry(), CollectorRegistry()]
    apps: list[tuple[App, Any, list[Any]]] = []
    for registry in registries:
        app = App(s, registry=registry, consumer_overrides=TEST_CONSUMER_OVERRIDES)
        apps.append((app, *run_in_thread(app)))
    try:
        deadline = time.monotonic() + 90
        while sorted(len(a.owned) for a, _, _ in apps) != [1, 1]:
            assert time.monotonic() < deadline, "the two consumers did not split the partitions"
            time.sleep(0.2)
        with AlertProducer(s) as producer:
            for k in range(10):
                producer.produce(lc, alert("keyed-1", k), key=b"keyed-1")
                producer.produce(lc, alert("split-1", k), key=None, partition=k % 2)
        deadline = time.monotonic() + 90
        while sum(a.stats.consumed for a, _, _ in apps) < 20:
            assert time.monotonic() < deadline, "not every message was consumed"
            time.sleep(0.2)
    finally:
        for app, thread, _ in apps:
            app.stop()
            thread.join(60)
    for _, _, outcome in apps:
        assert not isinstance(outcome[0], BaseException), outcome[0]
    outputs = [decode_classification(r.value) for r in read(s, out, 2)]  # type: ignore[arg-type]
    assert {c.source_id for c in outputs} == {"keyed-1"}  # no contradictory split-1 classes
    assert outputs[-1].n_points == 10  # one history, every alert of it
    assert len(outputs) >= 9
    letters = [decode_dead_letter(r.value) for r in read(s, dlq, 1)]  # type: ignore[arg-type]
    assert len(letters) == 10
    assert {d.reason for d in letters} == {"bad_key"}
    assert {d.partition for d in letters} == {0, 1}
    counted = sum(
        r.get_sample_value("dmdt_messages_dead_lettered_total", {"topic": lc, "reason": "bad_key"})
        or 0
        for r in registries
    )
    assert counted == 10
