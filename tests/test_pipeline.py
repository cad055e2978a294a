"""The pure per-batch pipeline (no Kafka): replayed CRTS alerts give the offline classification,
bad input is dead-lettered without touching the state, redelivery changes nothing, the output
writer matches fastavro byte for byte, and the model source reloads published models."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from prometheus_client import CollectorRegistry
from stream_helpers import CLASSES, crts_curves, crts_records, tiny_model

from broker import pipeline as pipeline_module
from broker.decode import DecodedAlert, make_decoder
from broker.encode import (
    UNKNOWN,
    Classification,
    decode_classification,
    decode_dead_letter,
    encode_classification,
    encode_lightcurve_alert,
)
from broker.kafka import Record
from broker.metrics import BrokerMetrics
from broker.models import ModelSource, ServedModel
from broker.outputs import ClassificationWriter
from broker.pipeline import BatchResult, Pipeline, StrictModeError
from broker.state import MemoryState
from dmdt.cnn import Classifier, save_model
from dmdt.grids import get_grid
from dmdt.nets import NetConfig, build_net
from dmdt.reference import numpy_counts
from dmdt.registry import CURRENT_FILE, publish

N_SOURCES = 6


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m"
    tiny_model(path)
    return path


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    return crts_records(tmp_path_factory.mktemp("replay"), N_SOURCES)


def make_pipeline(
    model_dir: Path,
    strict: bool = False,
    min_points: int | None = None,
    min_probability: float = 0.5,
):
    served = ServedModel.of(Classifier.from_checkpoint(model_dir, "cpu"), min_points)
    state = MemoryState(served.classifier.grid)
    decoders = {"lc": make_decoder("lightcurve"), "ztf": make_decoder("ztf")}
    p = Pipeline(decoders, state, lambda: served, strict=strict, min_probability=min_probability)
    return p, state, served


def run_batches(p: Pipeline, records: list[Record], size: int) -> list[Classification]:
    out = []
    for start in range(0, len(records), size):
        result = p.process(records[start : start + size])
        out += [decode_classification(v) for _, v in result.outputs]
    return out


def test_writer_matches_fastavro() -> None:
    rng = np.random.default_rng(0)
    w = ClassificationWriter("dmdt-shallow-mahabal2017", "20250101T000000Z-abc", "f" * 64, CLASSES)
    for i, (source, stamp) in enumerate(
        [("CSS_1", 1_700_000_000_123), ("ZTF18abcdefg", None), ("ŝource-ü", 0), ("x" * 300, 1)]
    ):
        probs = rng.dirichlet(np.ones(len(CLASSES))).astype(np.float32)
        block, predicted = w.probabilities(probs)
        c = Classification(
            "dmdt-shallow-mahabal2017", "20250101T000000Z-abc", "f" * 64, "crts", source,
            (1 << 62) + i, "V", 20 + 1000 * i, dict(zip(CLASSES, probs.tolist(), strict=True)),
            53_000.25 + i, 1_700_000_000_000, 1_700_000_000_999, stamp,
        )  # fmt: skip
        expected = encode_classification(c)
        assert predicted == c.predicted_class
        args = ("crts", source, c.alert_id, "V", c.n_points, block, c.alert_time, stamp)
        assert w.encode(*args, c.ingest_timestamp, c.publish_timestamp) == expected
        assert w.batch(c.ingest_timestamp, c.publish_timestamp)(*args) == expected
        for answer in (predicted, UNKNOWN):  # thresholded_class, both ways
            expected = encode_classification(replace(c, thresholded_class=answer))
            stamps = (c.ingest_timestamp, c.publish_timestamp)
            assert w.encode(*args, *stamps, None, answer) == expected
            assert w.batch(*stamps)(*args, None, answer) == expected


@pytest.mark.parametrize("batch", [41, 5000])
def test_replayed_crts_equals_offline_classification(model_dir, records, batch) -> None:
    p, state, served = make_pipeline(model_dir)
    outputs = run_batches(p, records, batch)
    curves = {lc.source_id: lc for lc in crts_curves(N_SOURCES)}
    last: dict[str, Classification] = {}
    seen: dict[str, list[int]] = defaultdict(list)
    for c in outputs:
        last[c.source_id] = c
        seen[c.source_id].append(c.n_points)
        assert (c.model_hash, c.classifier_version) == (served.content_hash, served.version)
    assert set(last) == set(curves)
    # a record per alert once the source holds min_points; n_points never decreases
    for sid, lc in curves.items():
        assert min(seen[sid]) >= served.min_points
        assert len(lc) - served.min_points + 1 <= len(seen[sid]) <= len(lc)
        assert seen[sid] == sorted(seen[sid])
        assert seen[sid][-1] == len(lc)
        np.testing.assert_array_equal(
            state.counts(state.table.rows([(sid, "V")]))[0], numpy_counts(lc.t, lc.m, state.grid)
        )
    offline = served.classifier.classify_lightcurves(list(curves.values()))
    for sid, probs in zip(offline.source_ids, offline.probabilities, strict=True):
        stream = np.array([last[sid].probabilities[k] for k in CLASSES], dtype=np.float32)
        np.testing.assert_array_equal(stream, probs)  # float32 -> double -> float32: exact
        assert last[sid].predicted_class == CLASSES[int(np.argmax(probs))]


def test_history_repeats_do_not_count_twice(model_dir, tmp_path) -> None:
    repeated = crts_records(tmp_path, 3, history_days=30.0)
    p, state, _ = make_pipeline(model_dir)
    run_batches(p, repeated, 97)
    for lc in crts_curves(3):
        rows = state.table.rows([(lc.source_id, "V")])
        assert state.n_points(rows)[0] == len(lc)
        np.testing.assert_array_equal(state.counts(rows)[0], numpy_counts(lc.t, lc.m, state.grid))


def _bad_messages() -> list[tuple[bytes | None, str]]:
    nan_alert = DecodedAlert(
        7, "CSS_bad", "crts", "V", None, None, 53_000.0,
        np.array([53_000.0]), np.array([np.nan]), np.array([0.1]),
    )  # fmt: skip
    return [
        (b"\x00garbage", "unknown_schema"),
        (b"not even framed", "bad_magic"),
        (None, "not_avro"),
        (encode_lightcurve_alert(nan_alert), "invalid_value"),
        (encode_lightcurve_alert(nan_alert)[:-3], "not_avro"),
    ]


def test_bad_messages_are_dead_lettered_and_the_rest_flows(model_dir, records) -> None:
    clean_p, clean_state, _ = make_pipeline(model_dir)
    reference = run_batches(clean_p, records[:800], 800)

    bad = _bad_messages()
    batch = list(records[:800])
    for i, (value, _) in enumerate(bad):
        batch.insert(100 * i + 50, Record("lc", 3, 10_000 + i, b"k", value, 123))
    batch.append(Record("nowhere", 0, 5, None, b"\x00\x00\x00\x27\x74", None))
    p, state, _ = make_pipeline(model_dir)
    result = p.process(batch)
    got = [decode_classification(v) for _, v in result.outputs]
    assert [(c.source_id, c.n_points, c.probabilities) for c in got] == [
        (c.source_id, c.n_points, c.probabilities) for c in reference
    ]
    letters = [decode_dead_letter(v) for _, v in result.dead_letters]
    assert [d.reason for d in letters] == [r for _, r in bad] + ["processing_error"]
    for d, (value, _) in zip(letters, bad, strict=False):
        assert (d.raw, d.key, d.topic, d.partition, d.message_timestamp) == (
            value, b"k", "lc", 3, 123,
        )  # fmt: skip
    assert [d.offset for d in letters[: len(bad)]] == [10_000 + i for i in range(len(bad))]
    assert result.dead_reasons[("lc", "not_avro")] == 2
    assert result.dead_reasons[("nowhere", "processing_error")] == 1
    for key in clean_state.table.keys():
        rows = state.table.rows([key], create=False)
        np.testing.assert_array_equal(
            state.counts(rows), clean_state.counts(clean_state.table.rows([key]))
        )
    assert ("CSS_bad", "V") not in state.table


def test_strict_mode_raises(model_dir, records) -> None:
    p, state, _ = make_pipeline(model_dir, strict=True)
    batch = [*records[:10], Record("lc", 0, 99, None, b"junk", None)]
    with pytest.raises(StrictModeError, match=r"lc\[0\]@99"):
        p.process(batch)
    assert len(state) == 0  # decoding fails before the state is touched


def test_redelivered_batch_changes_nothing(model_dir, records) -> None:
    p, state, _ = make_pipeline(model_dir)
    first = p.process(records[:1500])
    before = state.counts(np.arange(len(state))).copy()
    again = p.process(records[:1500])
    np.testing.assert_array_equal(state.counts(np.arange(len(state))), before)
    strip = [decode_classification(v) for _, v in first.outputs]
    strip2 = [decode_classification(v) for _, v in again.outputs]
    assert [(c.alert_id, c.n_points, c.probabilities) for c in strip] == [
        (c.alert_id, c.n_points, c.probabilities) for c in strip2
    ]


def test_min_points_and_capacity(model_dir, records, monkeypatch) -> None:
    p, _, served = make_pipeline(model_dir)
    result = p.process(records[:300])
    assert served.min_points == 20
    assert result.alerts == 300
    assert sum(result.unclassified.values()) == 300 - len(result.outputs) > 0
    monkeypatch.setattr(pipeline_module, "MAX_POINTS", 25)
    result = p.process(records[300:2000])
    letters = [decode_dead_letter(v) for _, v in result.dead_letters]
    assert letters
    assert {d.reason for d in letters} == {"source_full"}
    assert all(c.n_points <= 25 for c in map(decode_classification, (v for _, v in result.outputs)))


# ---------------------------------------------------------------- model source


def _other_grid_model(path: Path) -> None:
    grid = get_grid("mahabal2017-23dt")
    config = NetConfig("shallow", grid.shape, len(CLASSES))
    save_model(path, build_net(config), config, grid, CLASSES)


def test_model_source_reloads_published_models(tmp_path) -> None:
    registry = tmp_path / "registry"
    a = publish(tiny_model(tmp_path / "a", seed=1).path, registry)
    failures: list[Exception] = []
    loads: list[str] = []
    source = ModelSource(
        registry,
        "cpu",
        check_interval_s=3600,
        on_load=lambda s: loads.append(s.version),
        on_failure=failures.append,
    )
    assert source.current.content_hash == a.content_hash
    assert not source.maybe_reload()  # the interval has not passed
    b = publish(tiny_model(tmp_path / "b", seed=2).path, registry)
    assert source.maybe_reload(force=True)
    assert source.current.content_hash == b.content_hash
    assert not source.maybe_reload(force=True)  # nothing new

    # a CURRENT naming a missing version: the old model stays, the failure is reported
    (registry / CURRENT_FILE).write_text("19990101T000000Z-000000000000\n")
    assert not source.maybe_reload(force=True)
    assert source.current.content_hash == b.content_hash
    assert len(failures) == 1

    # a model on another grid is refused too
    _other_grid_model(tmp_path / "g")
    publish(tmp_path / "g", registry)
    assert not source.maybe_reload(force=True)
    assert "grid" in str(failures[-1])
    assert source.current.content_hash == b.content_hash

    # rolling back to a by re-publishing it
    publish(a.path, registry)
    os.utime(registry / CURRENT_FILE, ns=(1, 1))  # a stat change even within one clock tick
    assert source.maybe_reload(force=True)
    assert source.current.content_hash == a.content_hash
    assert len(loads) == 3


def test_inference_does_not_depend_on_batching(model_dir) -> None:
    """The stream classifies a source in whatever batch it arrives; offline in one big batch."""
    clf = Classifier.from_checkpoint(model_dir, "cpu")
    x = torch.rand(700, 1, *clf.grid.shape)
    full = clf.predict(x)
    for start, size in [(0, 1), (5, 37), (100, 256), (300, 400), (699, 1), (17, 300)]:
        np.testing.assert_array_equal(
            clf.predict(x[start : start + size]), full[start : start + size]
        )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_gpu_gives_the_cpu_classes(model_dir, records) -> None:
    cpu, _, _ = make_pipeline(model_dir)
    served = ServedModel.of(Classifier.from_checkpoint(model_dir, "cuda"))
    gpu = Pipeline(
        {"lc": make_decoder("lightcurve")}, MemoryState(served.classifier.grid), lambda: served
    )
    a, b = run_batches(cpu, records, 997), run_batches(gpu, records, 997)
    assert [c.predicted_class for c in a] == [c.predicted_class for c in b]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_allclose(
            list(x.probabilities.values()), list(y.probabilities.values()), atol=1e-5
        )


def _top(c: Classification) -> float:
    return max(c.probabilities.values())


def test_unknown_below_min_probability(model_dir, records) -> None:
    """thresholded_class is predicted_class when its probability is >= min_probability, else
    unknown; predicted_class and the probabilities do not depend on the setting."""
    base = run_batches(make_pipeline(model_dir, min_probability=0.0)[0], records, 97)
    tops = sorted({_top(c) for c in base})
    assert len(tops) > 2
    tau = tops[len(tops) // 2]  # exactly some records' top probability: they keep their class
    p, _, _ = make_pipeline(model_dir, min_probability=tau)
    outputs, unknown = [], Counter()
    for start in range(0, len(records), 97):
        result = p.process(records[start : start + 97])
        outputs += [decode_classification(v) for _, v in result.outputs]
        unknown.update(result.unknown)
    assert [
        replace(c, thresholded_class=None, publish_timestamp=0, ingest_timestamp=0) for c in outputs
    ] == [replace(c, thresholded_class=None, publish_timestamp=0, ingest_timestamp=0) for c in base]
    below = [c for c in outputs if _top(c) < tau]
    above = [c for c in outputs if _top(c) >= tau]
    assert below
    assert above
    assert any(_top(c) == tau for c in above)
    assert all(c.thresholded_class == UNKNOWN for c in below)
    assert all(c.thresholded_class == c.predicted_class != UNKNOWN for c in above)
    assert unknown == {"lc": len(below)}  # counted per input topic


def test_min_probability_zero_never_unknown(model_dir, records) -> None:
    p, _, _ = make_pipeline(model_dir, min_probability=0.0)
    result = p.process(records)
    outputs = [decode_classification(v) for _, v in result.outputs]
    assert outputs
    assert all(c.thresholded_class == c.predicted_class for c in outputs)
    assert not result.unknown
    # and 1.0: everything below certainty is unknown
    p, _, _ = make_pipeline(model_dir, min_probability=1.0)
    result = p.process(records)
    assert sum(result.unknown.values()) == sum(
        _top(decode_classification(v)) < 1.0 for _, v in result.outputs
    )
    with pytest.raises(ValueError, match="min_probability"):
        make_pipeline(model_dir, min_probability=1.5)


def test_unknown_answers_are_counted_per_topic() -> None:
    """A batch's unknown answers become dmdt_source_bands_unknown_total{topic}
    (BrokerMetrics.observe_batch, which App calls for every delivered batch)."""
    registry = CollectorRegistry()
    metrics = BrokerMetrics(registry)
    result = BatchResult(output_topics=["lc", "lc", "ztf"], unknown=Counter({"lc": 2}))
    metrics.observe_batch(result, 0, 3)
    metrics.observe_batch(BatchResult(unknown=Counter({"ztf": 1})), 0, 1)
    get = registry.get_sample_value
    assert get("dmdt_source_bands_unknown_total", {"topic": "lc"}) == 2
    assert get("dmdt_source_bands_unknown_total", {"topic": "ztf"}) == 1
    assert get("dmdt_source_bands_classified_total", {"topic": "lc"}) == 2
