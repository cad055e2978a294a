"""Hybrid models in the stream: the per-source feature cache (broker.features), its refresh
policy and budget, stream = offline, partition release and model hot reload.

`FakeHybrid` is a test double of `dmdt.hybrid.HybridClassifier` (same methods, features that cost
nothing); the last test runs a real, tiny HybridClassifier when dmdt.hybrid is importable.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from stream_helpers import CLASSES, crts_curves, crts_records, tiny_model

from broker import models as models_module
from broker.app import App
from broker.decode import make_decoder
from broker.encode import Classification, decode_classification
from broker.features import FeatureCache
from broker.kafka import Record
from broker.models import ModelSource, ServedModel
from broker.pipeline import Pipeline
from broker.settings import BrokerSettings
from broker.state import MemoryState
from dmdt import engine
from dmdt.grids import get_grid
from dmdt.registry import CURRENT_FILE, publish

N_SOURCES = 5


class FakeHybrid:
    """A HybridClassifier double: four cheap features, a fixed linear map to probabilities."""

    kind = "hybrid"
    path = None

    def __init__(self, version: str = "fake-1", features_version: int = 1, grid: str = "") -> None:
        self.name = "fake-hybrid"
        self.version = version
        self.content_hash = hashlib.sha256(version.encode()).hexdigest()  # a loader computes it
        self.classes = list(CLASSES)
        self.grid = get_grid(grid or None)
        self.min_points = 20
        self.feature_names = ["mean", "std", "n", "span"]
        self.features_version = features_version
        self.calls: list[int] = []  # points of each features() call
        rng = np.random.default_rng(abs(hash(version)) % 2**32)
        self._w = rng.normal(size=(len(self.feature_names) + 1, len(CLASSES)))

    def features(self, t: np.ndarray, m: np.ndarray, err: np.ndarray) -> np.ndarray:
        self.calls.append(t.size)
        return np.array([m.mean(), m.std(), float(t.size), t[-1] - t[0]])

    def features_many(self, curves) -> np.ndarray:
        return np.array([self.features(*c) for c in curves]).reshape(len(curves), -1)

    def classify(self, counts: np.ndarray, n_points, features: np.ndarray) -> np.ndarray:
        n = np.asarray(n_points, dtype=np.float64)
        spread = (counts.reshape(len(n), -1).argmax(axis=1) / counts[0:1].size)[:, None]
        x = np.concatenate([np.nan_to_num(features, nan=0.0) / [20, 1, 1000, 3000], spread], 1)
        z = (x[:, :, None] * self._w[None]).sum(axis=1)  # row by row: batch-independent
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    @classmethod
    def load(cls, path) -> FakeHybrid:
        config = json.loads((Path(path) / "model.json").read_text())
        return cls(config["version"], config["features_version"], config.get("grid", ""))


def write_fake(path: Path, version: str, features_version: int = 1, grid: str = "") -> Path:
    path.mkdir(parents=True)
    config = {"kind": "hybrid", "version": version, "features_version": features_version}
    (path / "model.json").write_text(json.dumps({**config, "grid": grid}))
    return path


@pytest.fixture
def fake_module(monkeypatch: pytest.MonkeyPatch) -> None:
    """ModelSource loads FakeHybrid for directories with a model.json of kind hybrid."""
    real = models_module.load_model

    def load_model(path, device="auto"):
        config = Path(path) / "model.json"
        if config.is_file() and json.loads(config.read_text()).get("kind") == "hybrid":
            return FakeHybrid.load(path)
        return real(path, device)

    monkeypatch.setattr(models_module, "load_model", load_model)


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[Record]:
    return crts_records(tmp_path_factory.mktemp("replay"), N_SOURCES)


def hybrid_pipeline(model: FakeHybrid, cache: FeatureCache) -> tuple[Pipeline, MemoryState]:
    served = ServedModel.of(model)
    state = MemoryState(model.grid)
    p = Pipeline({"lc": make_decoder("lightcurve")}, state, lambda: served, features=cache)
    return p, state


def run(p: Pipeline, records: list[Record], size: int) -> tuple[list[Classification], dict]:
    out, totals = [], defaultdict(int)
    for start in range(0, len(records), size):
        r = p.process(records[start : start + size])
        out += [decode_classification(v) for _, v in r.outputs]
        for name in ("features_refreshed", "features_deferred", "stale_outputs"):
            totals[name] += getattr(r, name)
        totals["missing_outputs"] += r.missing_outputs
    return out, totals


def offline(model: FakeHybrid, t: np.ndarray, m: np.ndarray, err: np.ndarray) -> np.ndarray:
    """HybridClassifier.classify on the whole curve, as an offline run computes it."""
    counts = engine.counts(t, m, model.grid)[None]
    return model.classify(counts, np.array([t.size]), model.features(t, m, err)[None])[0]


def probs_of(c: Classification) -> np.ndarray:
    return np.array([c.probabilities[k] for k in CLASSES])


# ---------------------------------------------------------------- policy and budget


def test_refresh_policy() -> None:
    cache = FeatureCache(refresh_fraction=0.10)
    assert cache.due(0, 20)  # no features yet
    assert not cache.due(20, 20)
    assert not cache.due(20, 21)
    assert cache.due(20, 22)
    assert cache.due(200, 220)
    assert not cache.due(200, 219)
    points = FeatureCache(refresh_fraction=0.25, refresh_points=5)
    assert points.due(200, 205)
    assert not points.due(200, 204)
    assert points.due(20, 25)
    always = FeatureCache(always=True)
    assert always.due(200, 201)
    assert not always.due(200, 200)

    model = FakeHybrid()
    t, m, e = np.arange(100.0), np.sin(np.arange(100.0)), np.full(100, 0.1)
    key, part = ("s", "V"), ("lc", 0)
    history = lambda _key: (t[:n], m[:n], e[:n])  # noqa: E731
    seen = []
    for n in range(20, 101):
        got = cache.lookup(model, [key], [part], np.array([n]), history)
        k = int(got.points[0])  # the features are those of the first k points
        seen.append(k)
        np.testing.assert_array_equal(got.vectors[0], model.features(t[:k], m[:k], e[:k]))
        model.calls.pop()  # the call just above
    # refreshed at 20, 22, 25, 28, 31, ... (each >= 10 % more than the last)
    refreshed = sorted(set(seen))
    assert refreshed[:4] == [20, 22, 25, 28]
    assert all(b >= a * 1.1 for a, b in itertools.pairwise(refreshed))
    assert len(model.calls) == len(refreshed) == 16  # 81 alerts, 16 period searches
    assert len(cache) == 1


def test_budget_defers_refreshes_and_missing_ones_go_first() -> None:
    now = [0.0]
    model = FakeHybrid()
    cost = 0.05  # every features() call "takes" 50 ms of the fake clock

    def history(key):
        now[0] += cost
        n = int(key[0])
        return np.arange(float(n)), np.cos(np.arange(float(n))), np.full(n, 0.1)

    cache = FeatureCache(budget_s=0.12, clock=lambda: now[0])
    keys = [(str(n), "V") for n in range(20, 30)]
    parts = [("lc", 0)] * len(keys)
    n_points = np.arange(20, 30)
    first = cache.lookup(model, keys, parts, n_points, history)
    assert first.refreshed == 3
    assert first.deferred == 7
    assert np.isnan(first.vectors).all(axis=1).sum() == 7  # missing: NaN, classified anyway
    assert (first.points > 0).sum() == 3
    # next batch: the 7 missing ones come before a source that only grew
    grown = n_points.copy()
    grown[first.points > 0] += 10
    second = cache.lookup(model, keys, parts, grown, history)
    assert second.refreshed == 3
    assert (second.points[first.points == 0] > 0).sum() == 3  # three of the missing ones
    assert all(
        p == q
        for p, q in zip(
            second.points[first.points > 0], first.points[first.points > 0], strict=True
        )
    )
    # with no budget everything due is refreshed
    unlimited = FeatureCache(budget_s=0.0, clock=lambda: now[0])
    assert unlimited.lookup(model, keys, parts, n_points, history).refreshed == len(keys)


def test_a_batchs_due_refreshes_go_in_one_call() -> None:
    class Batched(FakeHybrid):
        def __init__(self) -> None:
            super().__init__()
            self.batches: list[int] = []

        def features_many(self, curves):
            self.batches.append(len(curves))
            return np.array([FakeHybrid.features(self, *c) for c in curves])

    model = Batched()
    history = lambda key: (np.arange(float(key[0])), np.cos(np.arange(float(key[0]))),  # noqa: E731
                           np.full(int(key[0]), 0.1))  # fmt: skip
    keys = [(str(n), "V") for n in range(20, 32)]
    parts = [("lc", 0)] * len(keys)
    cache = FeatureCache(budget_s=0.0)  # no budget: every due source in one call
    got = cache.lookup(model, keys, parts, np.arange(20, 32), history)
    assert model.batches == [12]
    assert got.refreshed == 12
    np.testing.assert_array_equal(got.vectors[3], model.features(*history(keys[3])))
    budgeted = FeatureCache(budget_s=10.0)  # a budget: one source first (its cost unknown), then
    budgeted.lookup(model, keys, parts, np.arange(20, 32), history)  # the rest in one call
    assert model.batches[1:] == [1, 11]
    threaded = FeatureCache(budget_s=0.0, threads=2)
    again = threaded.lookup(model, keys, parts, np.arange(20, 32), history)
    np.testing.assert_array_equal(again.vectors, got.vectors)  # split over threads, same rows
    threaded.close()


def test_release_and_size_bound() -> None:
    model = FakeHybrid()
    cache = FeatureCache(max_entries=6)
    history = lambda key: (np.arange(30.0), np.ones(30), np.ones(30))  # noqa: E731
    keys = [(f"s{i}", "V") for i in range(8)]
    parts = [("lc", i % 2) for i in range(8)]
    cache.lookup(model, keys[:4], parts[:4], np.full(4, 30), history)
    assert cache.release([("lc", 1)]) == 2
    assert len(cache) == 2
    cache.lookup(model, keys, parts, np.full(8, 30), history)
    assert len(cache) == 6  # least recently used dropped beyond max_entries
    # another model computing other features: the cache starts over
    other = FakeHybrid("fake-2", features_version=2)
    got = cache.lookup(other, keys[:1], parts[:1], np.array([30]), history)
    assert got.refreshed == 1
    assert len(cache) == 1


# ---------------------------------------------------------------- stream = offline


@pytest.mark.parametrize("batch", [41, 997])
def test_refresh_always_equals_offline(records, batch) -> None:
    model = FakeHybrid()
    p, state = hybrid_pipeline(model, FeatureCache(always=True, budget_s=0.001))
    outputs, totals = run(p, records, batch)
    assert totals["stale_outputs"] == totals["missing_outputs"] == totals["features_deferred"] == 0
    last = {c.source_id: c for c in outputs}
    curves = {lc.source_id: lc for lc in crts_curves(N_SOURCES)}
    assert set(last) == set(curves)
    for sid, lc in curves.items():
        assert last[sid].n_points == last[sid].features_n_points == len(lc)
        np.testing.assert_array_equal(state.history((sid, "V"))[0], lc.t)
        expected = offline(model, lc.t, lc.m, lc.err)
        np.testing.assert_array_equal(probs_of(last[sid]), expected)  # bit for bit
    assert {c.classifier_name for c in outputs} == {"fake-hybrid"}
    assert all(c.features_n_points == c.n_points for c in outputs)


def test_amortised_refresh_is_cheaper_and_exact_when_fresh(records) -> None:
    model = FakeHybrid()
    p, state = hybrid_pipeline(model, FeatureCache(refresh_fraction=0.25))
    outputs, totals = run(p, records, 41)
    curves = {lc.source_id: lc for lc in crts_curves(N_SOURCES)}
    batches_touching = len(outputs)  # an upper bound of refresh-always's work
    assert totals["features_refreshed"] == len(model.calls) < batches_touching / 10
    assert totals["stale_outputs"] > 0
    older = [c for c in outputs if c.features_n_points < c.n_points]
    assert len(older) == totals["stale_outputs"]
    assert all(c.features_n_points >= c.n_points / 1.25 for c in outputs)
    assert totals["missing_outputs"] == 0
    # every output's features were computed on at least n / 1.25 of its points: check one
    # source's last record against the features of the points they were refreshed at
    cache = p.features
    for sid, lc in curves.items():
        entry = cache._entries[(sid, "V")]
        n = entry.n_points
        assert len(lc) / 1.25 <= n <= len(lc)
        np.testing.assert_array_equal(entry.vector, model.features(lc.t[:n], lc.m[:n], lc.err[:n]))
        last = [c for c in outputs if c.source_id == sid][-1]
        assert last.features_n_points == n  # the record says how old its features are
        if n == len(lc):
            np.testing.assert_array_equal(probs_of(last), offline(model, lc.t, lc.m, lc.err))
        counts = state.counts(state.table.rows([(sid, "V")]))
        stale = model.classify(counts, [len(lc)], entry.vector[None])[0]
        np.testing.assert_array_equal(probs_of(last), stale)  # current counts, cached features


# ---------------------------------------------------------------- app and models


def test_revoke_and_lost_drop_feature_entries(tmp_path, fake_module) -> None:
    models = ModelSource(write_fake(tmp_path / "h", "fake-1"), "cpu")
    settings = BrokerSettings(
        state_store="memory", metrics_port=0, input_topics={"lc": "lightcurve"}
    )
    app = App(settings, registry=CollectorRegistry(), models=models)
    assert models.current.kind == "hybrid"
    assert app.features.budget_s == 0.5
    history = lambda key: (np.arange(30.0), np.ones(30), np.ones(30))  # noqa: E731
    keys = [(f"s{i}", "V") for i in range(6)]
    app.features.lookup(models.current.classifier, keys, [("lc", i % 3) for i in range(6)],
                        np.full(6, 30), history)  # fmt: skip
    app.ownership.revoke([("lc", 0)])
    assert len(app.features) == 4
    app.ownership.lose([("lc", 1)])
    assert len(app.features) == 2
    assert app.registry.get_sample_value("dmdt_feature_cache_size") == 2


def test_hot_reload_cnn_to_hybrid_to_hybrid(tmp_path, fake_module, records) -> None:
    registry = tmp_path / "registry"
    cnn = publish(tiny_model(tmp_path / "cnn").path, registry)
    source = ModelSource(registry, "cpu", check_interval_s=3600)
    assert source.current.kind == "cnn"
    cache = FeatureCache(always=True)
    state = MemoryState(source.current.grid)
    p = Pipeline({"lc": make_decoder("lightcurve")}, state, lambda: source.current, features=cache)
    half = len(records) // 2

    def switch(version: str, features_version: int = 1, grid: str = "") -> bool:
        write_fake(registry / version, version, features_version, grid)
        (registry / CURRENT_FILE).write_text(version + "\n")
        os.utime(registry / CURRENT_FILE, ns=(len(version), len(version)))
        return source.maybe_reload(force=True)

    first = p.process(records[:half])
    assert {decode_classification(v).model_hash for _, v in first.outputs} == {cnn.content_hash}
    assert {decode_classification(v).features_n_points for _, v in first.outputs} == {None}
    assert switch("hyb-a")
    assert source.current.kind == "hybrid"
    assert source.current.version == "hyb-a"
    second = p.process(records[half:])
    assert {decode_classification(v).classifier_version for _, v in second.outputs} == {"hyb-a"}
    assert second.features_refreshed == len(cache) == N_SOURCES  # every source's first vector
    # same features: the cache is kept across the reload
    assert switch("hyb-b")
    again = p.process(records[-N_SOURCES * 3 :])  # redelivered: no new point, nothing to refresh
    assert again.features_refreshed == 0
    assert again.outputs
    assert {decode_classification(v).classifier_version for _, v in again.outputs} == {"hyb-b"}
    # other features: recomputed
    assert switch("hyb-c", features_version=2)
    assert p.process(records[-N_SOURCES * 3 :]).features_refreshed > 0
    # a hybrid on another grid is refused, the old model stays
    assert not switch("hyb-d", grid="mahabal2017-23dt")
    assert source.current.version == "hyb-c"
    # and back to the CNN
    publish(cnn.path, registry)
    os.utime(registry / CURRENT_FILE, ns=(9, 9))
    assert source.maybe_reload(force=True)
    assert source.current.kind == "cnn"


def test_real_hybrid_stream_equals_offline(tmp_path, records) -> None:
    """A real, tiny HybridClassifier (LightGBM on the real periodic features) in the stream."""
    hybrid = pytest.importorskip("dmdt.hybrid")
    lgb = pytest.importorskip("lightgbm")
    from dmdt import periodic

    curves = crts_curves(N_SOURCES)
    x, _ = periodic.features(curves)
    y = np.arange(len(curves)) % 3
    params = {"objective": "multiclass", "num_class": 3, "min_data_in_leaf": 1, "verbose": -1}
    booster = lgb.train(params, lgb.Dataset(np.repeat(x, 4, 0), np.repeat(y, 4)), 3)
    model = hybrid.HybridClassifier("tiny-hybrid", ["EW", "RRab", "LPV"], get_grid(), [booster])
    model.save(tmp_path / "h")
    served = ModelSource(tmp_path / "h", "cpu").current
    assert served.kind == "hybrid"
    assert served.version.startswith("tiny-hybrid-")
    state = MemoryState(served.grid)
    cache = FeatureCache(always=True)
    p = Pipeline({"lc": make_decoder("lightcurve")}, state, lambda: served, features=cache)
    outputs = [decode_classification(v) for i in range(0, len(records), 600)
               for _, v in p.process(records[i : i + 600]).outputs]  # fmt: skip
    last = {c.source_id: c for c in outputs}
    clf = served.classifier
    for lc in curves:
        counts = engine.counts(lc.t, lc.m, clf.grid)[None]
        expected = clf.classify(counts, [len(lc)], clf.features(lc.t, lc.m, lc.err)[None])[0]
        got = np.array([last[lc.source_id].probabilities[k] for k in clf.classes])
        np.testing.assert_array_equal(got, expected)
