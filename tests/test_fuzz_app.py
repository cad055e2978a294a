"""Hostile messages through the whole consumer, not the decoders alone: decode, keys, state (the
durable store and its changelog), a hybrid model's features, and produce, against the real test
broker.

The corpus: real alerts (ZTF alerts of data/ztf, the Rubin alerts of data/rubin, CRTS light
curves of data/crts replayed as lightcurve alerts with history), plus, from a seeded generator,
byte mutations of them, re-encoded records with absurd values (NaN, 1e300, jd 0, a magnitude of
3e38, NUL and 100,000-character ids, negative errors), oversized messages (1.2 MB of garbage, a
3.9 MB ZTF alert), tombstones, empty values, unknown schema ids, redelivered alerts, and valid
alerts keyed by something else than their source on a topic of two partitions.

One consumer runs through all of it; then

- it never stopped, and every input offset is committed;
- every message the decoder refuses is a dead letter with the decoder's reason (and every bad key
  with ``bad_key``), and no other message is;
- every source's stored row equals a plain numpy reference (tests/dmdt_reference.py) on the
  distinct points of the messages that were accepted, in their arrival order: not the engine;
- the last classification of every source says its distinct points and gives the model's
  probabilities on the reference counts and on features computed from the reference points.
"""

from __future__ import annotations

import io
import random
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from stream_helpers import crts_curves

from broker.app import App, run_in_thread
from broker.avro import frame, write_body
from broker.decode import DecodeError, make_decoder
from broker.encode import (
    MAX_DEAD_LETTER_RAW,
    decode_classification,
    decode_dead_letter,
    encode_record,
)
from broker.kafka import AlertConsumer, AlertProducer, Record
from broker.kafka_admin import PartitionReader
from broker.models import ModelSource
from broker.registry import rubin_local_schema
from broker.settings import BrokerSettings
from broker.store import RocksStore, decode_row, store_path
from broker.tools.replay import ReplaySource, read_stream, replay_to_file
from broker.tools.testing import TEST_CONSUMER_OVERRIDES, rubin_messages, unique_name, ztf_messages
from dmdt.reference import distinct, numpy_counts

pytestmark = [pytest.mark.kafka, pytest.mark.slow]
lgb = pytest.importorskip("lightgbm")

SEED = 20240614
PARTITIONS = {"ztf": 2, "rubin": 1, "lightcurve": 2}


# ---------------------------------------------------------------- the corpus


def mutate(data: bytes, rng: random.Random) -> bytes:
    """1-4 byte edits: flip a bit, set a byte, cut the tail, insert a byte."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(max(len(out), 1))
        kind = rng.choice(["flip", "set", "cut", "insert"])
        if kind == "flip" and out:
            out[i] ^= 1 << rng.randrange(8)
        elif kind == "set" and out:
            out[i] = rng.randrange(256)
        elif kind == "cut":
            del out[i:]
        else:
            out[i:i] = bytes([rng.randrange(256)])
    return bytes(out)


def ztf_record(path: Path) -> tuple[Any, dict[str, Any]]:
    with path.open("rb") as fh:
        reader = fastavro.reader(fh)
        record = next(iter(reader))
        return reader.writer_schema, record  # type: ignore[return-value]


def container(schema: Any, records: list[dict[str, Any]]) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, schema, records)
    return out.getvalue()


LC = {"alert_id": 1, "source_id": "fuzz-1", "survey": "sim", "band": "V", "ra": 10.0,
      "dec": -5.0, "alert_time": 55_000.0, "label": None,
      "detections": [{"mjd": 55_000.0, "mag": 16.0, "magerr": 0.05}]}  # fmt: skip


def lightcurve(**changes: Any) -> bytes:
    return encode_record("lightcurve_alert", {**LC, **changes})


def corpus(ztf_files: list[Path], rubin_file: Path, tmp_path: Path) -> list[tuple[str, Any, Any]]:
    """(decoder, key, value) in the order they are produced."""
    rng = random.Random(SEED)
    out: list[tuple[str, Any, Any]] = []
    # real alerts
    ztf = [m for p in ztf_files[:40] for m in ztf_messages(p)][:40]
    for m in ztf:
        out.append(("ztf", make_decoder("ztf")(m)[0].source_id.encode(), m))
    rubin = [m for _, m in rubin_messages(rubin_file)]
    for m in rubin:
        out.append(("rubin", make_decoder("rubin")(m)[0].source_id.encode(), m))
    stream = tmp_path / "crts.bin"
    curves = crts_curves(4)
    replay_to_file(ReplaySource("crts", "crts", tuple(curves), "lightcurve"), stream,
                   history_days=30.0)  # fmt: skip
    crts = list(read_stream(stream))
    out += [("lightcurve", r.key, r.value) for r in crts]
    # byte mutations of real messages, keyed like their seed
    seeds = [x for x in out if x[2] is not None]
    for _ in range(250):
        name, key, value = rng.choice(seeds)
        out.append((name, key, mutate(value, rng)))
    # absurd values, re-encoded
    schema, record = ztf_record(ztf_files[0])
    cand = record["candidate"]
    for changes in ({"jd": 0.0}, {"jd": 1e300}, {"magpsf": 3e38}, {"fid": 7},
                    {"sigmapsf": -1.0}, {"magpsf": float("nan")}):  # fmt: skip
        out.append(("ztf", record["objectId"].encode(),
                    container(schema, [{**record, "candidate": {**cand, **changes}}])))  # fmt: skip
    for object_id in ("ZTF18ab\0cdefg", "", "ZTF18" + "a" * 100_000):
        out.append(("ztf", b"k", container(schema, [{**record, "objectId": object_id}])))
    point = next(p for p in record["prv_candidates"] if p["magpsf"] is not None)
    out.append(("ztf", record["objectId"].encode(),
                container(schema, [{**record, "prv_candidates": [point] * 10_500}])))  # fmt: skip
    other = ztf_record(ztf_files[1])[1]
    out.append(("ztf", record["objectId"].encode(), container(schema, [record, other])))
    alert, _ = next(iter(rubin_messages(rubin_file)))
    rubin_schema = rubin_local_schema(1000)
    for changes in ({"psfFlux": 1e-30}, {"midpointMjdTai": 0.0}, {"diaObjectId": -5},
                    {"psfFlux": None}, {"band": "q"}):  # fmt: skip
        body = write_body(rubin_schema, {**alert, "diaSource": {**alert["diaSource"], **changes}})
        out.append(("rubin", b"x", frame(1000, body)))
    out.append(("rubin", b"x", frame(999, b"\0" * 30)))  # unknown schema id
    point = LC["detections"][0]
    for changes in ({"alert_time": 1e300}, {"source_id": "NUL\0id"}, {"source_id": "x" * 200},
                    {"source_id": "é"}, {"band": ""}, {"survey": "s" * 40},
                    {"detections": []},
                    {"detections": [{**point, "mjd": float("inf")}]},
                    {"detections": [{**point, "magerr": -0.1}]},
                    {"detections": [{**point, "mjd": 55_000.0 + i, "mag": 16.0, "magerr": 0.1}
                                    for i in range(10_001)]}):  # fmt: skip
        out.append(("lightcurve", b"fuzz-1", lightcurve(**changes)))
    for name in PARTITIONS:
        out.append((name, None, None))  # tombstone
        out.append((name, b"e", b""))
    out.append(("lightcurve", b"big", bytes(rng.randrange(256) for _ in range(1_200_000))))
    # keys: valid alerts on a 2-partition topic keyed by anything else
    out.append(("lightcurve", None, lightcurve(source_id="loose-1")))
    out.append(("lightcurve", b"558190213315015002", lightcurve(source_id="loose-1")))
    # valid new sources and redeliveries
    for k in range(30):
        t = 55_000.0 + k * 1.7
        out.append(("lightcurve", b"fuzz-1", lightcurve(alert_id=k, detections=[
            {"mjd": t, "mag": 16.0 + 0.4 * np.sin(k), "magerr": 0.05}])))  # fmt: skip
    out += [x for x in out[-30:-20]]  # redelivered
    out += [("lightcurve", r.key, r.value) for r in crts[:100]]  # redelivered history
    return out


# ---------------------------------------------------------------- the offline expectation


def expectation(messages: list[Record], names: dict[str, str]) -> dict[tuple[str, int, int], Any]:
    """Per (topic, partition, offset): the dead-letter reason, or the decoded alerts."""
    decoders = {name: make_decoder(name) for name in set(names.values())}
    out: dict[tuple[str, int, int], Any] = {}
    for r in messages:
        where = (r.topic, r.partition, r.offset)
        if r.value is None:
            out[where] = "not_avro"
            continue
        try:
            alerts = decoders[names[r.topic]](r.value)
        except DecodeError as exc:
            out[where] = exc.reason
            continue
        keyed = all(r.key == a.source_id.encode() for a in alerts)
        out[where] = alerts if keyed or PARTITIONS[names[r.topic]] == 1 else "bad_key"
    return out


def read(settings: BrokerSettings, topic: str, partitions: int) -> list[Record]:
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


@pytest.fixture
def hybrid_model(tmp_path: Path) -> Path:
    """A tiny real hybrid model: LightGBM on the real periodic features of CRTS curves."""
    from dmdt import periodic
    from dmdt.grids import get_grid
    from dmdt.hybrid import HybridClassifier

    curves = crts_curves(6)
    x, _ = periodic.features(curves)
    y = np.arange(len(curves)) % 3
    params = {"objective": "multiclass", "num_class": 3, "min_data_in_leaf": 1, "verbose": -1,
              "num_threads": 1}  # fmt: skip
    booster = lgb.train(params, lgb.Dataset(np.repeat(x, 4, 0), np.repeat(y, 4)), 3)
    path = tmp_path / "hybrid"
    HybridClassifier("fuzz-hybrid", ["EW", "RRab", "LPV"], get_grid(), [booster],
                     min_points=5).save(path)  # fmt: skip
    return path


def test_hostile_messages_through_the_whole_consumer(
    kafka_settings, make_topic, ztf_files, rubin_file, hybrid_model, tmp_path
) -> None:
    topics = {name: make_topic(n) for name, n in PARTITIONS.items()}
    names = {topic: name for name, topic in topics.items()}
    out_topic, dlq = make_topic(2), make_topic(1)
    s = BrokerSettings(
        bootstrap_servers=kafka_settings.bootstrap_servers, group_id=unique_name("group"),
        input_topics=names, output_topic=out_topic, dead_letter_topic=dlq, batch_size=200,
        batch_wait_ms=20, metrics_port=0, model=str(hybrid_model), min_points=2,
        state_dir=tmp_path / "state", feature_refresh_always=True,
    )  # fmt: skip
    messages = corpus(ztf_files, rubin_file, tmp_path)
    with AlertProducer(s, overrides={"message.max.bytes": 10_000_000}) as producer:
        for name, key, value in messages:
            producer.produce(topics[name], value, key=key)
    consumed = [r for name in PARTITIONS for r in read(s, topics[name], PARTITIONS[name])]
    assert len(consumed) == len(messages)
    expected = expectation(consumed, names)
    reasons = {v for v in expected.values() if isinstance(v, str)}
    assert reasons >= {"not_avro", "bad_magic", "unknown_schema", "invalid_value",
                       "empty_lightcurve", "too_large", "bad_key"}  # fmt: skip

    registry = CollectorRegistry()
    overrides = {**TEST_CONSUMER_OVERRIDES, "auto.commit.interval.ms": 200}
    app = App(s, registry=registry, consumer_overrides=overrides)
    thread, outcome = run_in_thread(app)
    probe = AlertConsumer(s, overrides=TEST_CONSUMER_OVERRIDES)
    parts = [(topics[n], p) for n in PARTITIONS for p in range(PARTITIONS[n])]
    try:
        deadline = time.monotonic() + 300
        while sum(max(o, 0) for o in probe.committed(parts).values()) < len(messages):
            assert thread.is_alive(), outcome
            assert time.monotonic() < deadline, "not every input offset was committed"
            time.sleep(0.5)
    finally:
        probe.close()
        app.stop()
        thread.join(60)
    assert not isinstance(outcome[0], BaseException), outcome[0]  # it never stopped
    assert app.stats.consumed == len(messages)

    # dead letters: exactly the refused messages, with the decoder's reason and a bounded copy
    letters = {(d.topic, d.partition, d.offset): d
               for d in (decode_dead_letter(r.value) for r in read(s, dlq, 1))}  # type: ignore[arg-type]  # fmt: skip
    refused = {where: reason for where, reason in expected.items() if isinstance(reason, str)}
    assert {where: d.reason for where, d in letters.items()} == refused
    by_where = {(r.topic, r.partition, r.offset): r for r in consumed}
    for where, d in letters.items():
        raw = by_where[where].value
        assert d.raw == (None if raw is None else raw[:MAX_DEAD_LETTER_RAW])
        assert d.raw_size == (None if raw is None else len(raw))

    # the state: a plain numpy reference on the distinct points, in arrival order
    points: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    for r in sorted(consumed, key=lambda r: (r.topic, r.partition, r.offset)):
        got = expected[(r.topic, r.partition, r.offset)]
        if not isinstance(got, str):
            for a in got:
                points[(a.source_id, a.band)].append(np.stack([a.t, a.m, a.err]))
    reference = {key: distinct(*np.concatenate(chunks, axis=1)) for key, chunks in points.items()}
    with RocksStore(store_path(s.state_dir, s.group_id)) as store:
        rows = {k: decode_row(v, app.state.grid) for k, v in store.rows()}
    assert set(rows) == set(reference)
    grid = app.state.grid
    for key, (t, m, err) in reference.items():
        row = rows[key]
        np.testing.assert_array_equal(row["t"], t, err_msg=str(key))
        np.testing.assert_array_equal(row["m"], m, err_msg=str(key))
        np.testing.assert_array_equal(row["err"], err, err_msg=str(key))
        np.testing.assert_array_equal(row["counts"], numpy_counts(t, m, grid), err_msg=str(key))

    # outputs: the last classification of every source, from the reference
    outputs = [decode_classification(r.value) for r in read(s, out_topic, 2)]  # type: ignore[arg-type]
    accepted = {a.alert_id for v in expected.values() if not isinstance(v, str) for a in v}
    assert {c.alert_id for c in outputs} <= accepted
    last = {(c.source_id, c.band): c for c in outputs}
    assert {k for k, (t, _, _) in reference.items() if t.size >= 2} == set(last)
    clf = ModelSource(hybrid_model, "cpu").current.classifier
    for key, c in last.items():
        t, m, err = reference[key]
        assert c.n_points == c.features_n_points == t.size
        features = clf.features(t, m, err)[None]
        counts = numpy_counts(t, m, grid)[None].astype(np.int32)
        expected_p = clf.classify(counts, [t.size], features)[0]
        got = [c.probabilities[k] for k in clf.classes]
        np.testing.assert_allclose(got, expected_p, rtol=0, atol=1e-12, err_msg=str(key))
    get = registry.get_sample_value
    for reason in reasons:
        counted = sum(get("dmdt_messages_dead_lettered_total", {"topic": t, "reason": reason}) or 0
                      for t in topics.values())  # fmt: skip
        assert counted == sum(1 for v in refused.values() if v == reason), reason
