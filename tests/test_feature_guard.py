"""A source whose history no period search can take leaves the stream going: its feature refresh
is refused (a baseline over `MAX_BASELINE_DAYS`) or its failure caught (light-curve's Rust panic,
any exception), counted by reason, and the source is classified without features (missing values,
as before its first refresh). Nothing is dead-lettered: the alert is fine, its source's history
is not.

Decoding now refuses such times (tests/test_sanity.py), but a store written before keeps them
"for good". Before, one point at jd 1e300 in a history of 40 made light-curve panic inside
FeatureCache (PanicException, a BaseException) and the batch published nothing, on every
restart; one point at MJD 1e8 cost 5.5 s per refresh, outside any budget."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from stream_helpers import crts_curves, crts_records

from broker import feature_guard
from broker.app import App
from broker.decode import make_decoder
from broker.encode import decode_classification
from broker.features import FeatureCache
from broker.models import ModelSource
from broker.pipeline import Pipeline
from broker.state import MemoryState
from dmdt.grids import get_grid

hybrid = pytest.importorskip("dmdt.hybrid")
lgb = pytest.importorskip("lightgbm")

N_SOURCES = 3


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory):
    """A tiny real hybrid model (LightGBM on the real periodic features of 3 CRTS curves)."""
    from dmdt import periodic

    curves = crts_curves(N_SOURCES)
    x, _ = periodic.features(curves)
    y = np.arange(len(curves)) % 2
    params = {"objective": "multiclass", "num_class": 2, "min_data_in_leaf": 1, "verbose": -1,
              "num_threads": 1}  # fmt: skip
    booster = lgb.train(params, lgb.Dataset(np.repeat(x, 4, 0), np.repeat(y, 4)), 3)
    path = tmp_path_factory.mktemp("model") / "h"
    hybrid.HybridClassifier("tiny-hybrid", ["EW", "RRab"], get_grid(), [booster]).save(path)
    return path


@pytest.fixture(scope="module")
def served(model_path):
    return ModelSource(model_path, "cpu", min_points=2).current


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory):
    return crts_records(tmp_path_factory.mktemp("replay"), N_SOURCES)


def poisoned(state: MemoryState, source_id: str, bad_time: float) -> None:
    """40 real points of a source plus one at ``bad_time``, as an older store may hold them."""
    lc = crts_curves(N_SOURCES)[0]
    t = np.append(lc.t[:40], bad_time)
    m = np.append(lc.m[:40], 15.0)
    err = np.append(lc.err[:40], 0.1)
    state.update([(source_id, "V")], [("lc", 0)], t, m, err, np.array([0, t.size]))


@pytest.mark.parametrize(
    ("bad_time", "limit", "reason"),
    [
        (1e300, feature_guard.MAX_BASELINE_DAYS, "baseline"),
        (1e8, feature_guard.MAX_BASELINE_DAYS, "baseline"),  # once 5.5 s per refresh
        (1e300, np.inf, "failed"),  # no baseline bound: the feature code panics
    ],
)
def test_a_poisoned_history_is_counted_and_left_without_features(
    served, records, monkeypatch, bad_time: float, limit: float, reason: str
) -> None:
    monkeypatch.setattr(feature_guard, "MAX_BASELINE_DAYS", limit)
    if reason == "failed":  # the feature code panics on the poisoned history, as light-curve's
        # Rust code did on it (features version 4); version 5's search bounds its grid and no
        # longer does, so the panic is injected: a BaseException named PanicException, as pyo3's
        PanicException = type("PanicException", (BaseException,), {})
        clf = served.classifier
        single, many = clf.features, clf.features_many

        def features(t, m, err):
            if t.max() > 1e200:
                raise PanicException("attempt to multiply with overflow")
            return single(t, m, err)

        def features_many(curves):
            if any(c[0].max() > 1e200 for c in curves):
                raise PanicException("attempt to multiply with overflow")
            return many(curves)

        monkeypatch.setattr(clf, "features", features)
        monkeypatch.setattr(clf, "features_many", features_many)
    victim = records[0].key.decode()  # type: ignore[union-attr]
    state = MemoryState(served.grid)
    poisoned(state, victim, bad_time)
    cache = FeatureCache(always=True)
    p = Pipeline({"lc": make_decoder("lightcurve")}, state, lambda: served, features=cache)
    result = p.process(records[:300])
    assert result.feature_failures == {reason: 1}
    outputs = [decode_classification(v) for _, v in result.outputs]
    assert {c.source_id for c in outputs} == {r.key.decode() for r in records[:300]}  # type: ignore[union-attr]
    mine = [c for c in outputs if c.source_id == victim]
    assert mine
    clf = served.classifier  # classified without features: a vector of missing values
    rows = state.table.rows([(victim, "V")], create=False)
    missing = np.full((1, len(clf.feature_names)), np.nan)
    expected = clf.classify(state.counts(rows), state.n_points(rows), missing)[0]
    np.testing.assert_array_equal([mine[-1].probabilities[k] for k in clf.classes], expected)
    others = [c for c in outputs if c.source_id != victim and c.n_points >= 20]
    assert others
    assert all(c.features_n_points == c.n_points for c in others)


@pytest.mark.kafka
@pytest.mark.slow
def test_the_consumer_counts_refused_refreshes(
    model_path, served, records, kafka_settings, make_topic
) -> None:
    """Through the real loop: the poisoned source is counted in dmdt_feature_failures_total."""
    from broker.app import run_in_thread
    from broker.kafka import AlertProducer
    from broker.settings import BrokerSettings
    from broker.tools.testing import TEST_CONSUMER_OVERRIDES, unique_name

    lc, out, dlq = make_topic(1), make_topic(1), make_topic(1)
    s = BrokerSettings(
        bootstrap_servers=kafka_settings.bootstrap_servers, group_id=unique_name("group"),
        input_topics={lc: "lightcurve"}, output_topic=out, dead_letter_topic=dlq,
        batch_size=500, batch_wait_ms=20, metrics_port=0, state_store="memory",
        feature_refresh_always=True,
    )  # fmt: skip
    with AlertProducer(s) as producer:
        for r in records[:300]:
            producer.produce(lc, r.value, key=r.key)
    state = MemoryState(served.grid)
    poisoned(state, records[0].key.decode(), 1e300)  # type: ignore[union-attr]
    models = ModelSource(model_path, "cpu", min_points=2)
    registry = CollectorRegistry()
    app = App(s, registry=registry, state=state, models=models,
              consumer_overrides=TEST_CONSUMER_OVERRIDES)  # fmt: skip
    thread, outcome = run_in_thread(app)
    try:
        import time

        deadline = time.monotonic() + 90
        while app.stats.consumed < 300 and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        app.stop()
        thread.join(60)
    assert not isinstance(outcome[0], BaseException), outcome[0]
    assert app.stats.consumed == 300
    assert app.stats.dead_lettered == 0
    assert registry.get_sample_value("dmdt_feature_failures_total", {"reason": "baseline"}) == 1
