"""Changelog restores on a real Kafka-protocol broker (Tansu): a partition's state moves to another
owner's empty store, comes back to the first owner as a delta, survives a late stale write, and a
store newer than its (recreated) changelog is restored from the start. Reads stop at an end
marker, never at Tansu's (wrong) high watermark."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from stream_helpers import crts_curves
from test_store import GRID, alerts

from broker.changelog import MARKER_KEY, Changelog, changelog_topic, ensure_changelogs
from broker.durable import DurableState
from broker.kafka import AlertProducer
from broker.kafka_admin import PartitionReader
from broker.settings import BrokerSettings
from broker.store import RocksStore, decode_row, encode_key, encode_row, row_points
from dmdt import engine
from dmdt.reference import numpy_counts

pytestmark = pytest.mark.kafka


@pytest.fixture
def changelog_settings(kafka_settings: BrokerSettings, make_topic) -> BrokerSettings:
    topic = make_topic(2)
    return kafka_settings.model_copy(update={"input_topics": {topic: "lightcurve"}})


class Owner:
    """One consumer's durable state with its own store and clients."""

    def __init__(self, settings: BrokerSettings, path: Path) -> None:
        self.producer = AlertProducer(settings)
        self.reader = PartitionReader(settings)
        topics = ensure_changelogs(settings)
        self.events: dict[str, int] = {}
        self.state = DurableState(
            GRID, RocksStore(path), Changelog(topics, self.producer, self.reader)
        )
        self.state.on_event = lambda e, n: self.events.__setitem__(e, self.events.get(e, 0) + n)

    def restore(self, parts) -> None:
        self.state.assign(parts)
        assert self.state.restoring() == set(parts)
        deadline = time.monotonic() + 30
        while self.state.restoring():
            assert time.monotonic() < deadline, "restore did not finish"
            self.state.restore_step(0.5)

    def rows(self) -> dict:
        return {k: decode_row(v, GRID) for k, v in self.state.store.rows()}

    def close(self) -> None:
        self.state.close()
        self.reader.close()
        self.producer.close()


def assert_same_rows(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for key in a:
        for name in ("t", "m", "err", "counts"):
            np.testing.assert_array_equal(a[key][name], b[key][name])


def test_state_moves_between_owners_through_the_changelog(changelog_settings, tmp_path):
    s = changelog_settings
    (topic,) = s.input_topics
    part = (topic, 1)
    curves = crts_curves(6)

    def batch(start, stop):
        keys, _, t, m, e, off = alerts(curves, start, stop)
        return keys, [part] * len(keys), t, m, e, off

    a = Owner(s, tmp_path / "a")
    b = Owner(s, tmp_path / "b")
    c = Owner(s, tmp_path / "c")
    try:
        a.restore([part])  # empty changelog: nothing restored
        assert a.events.get("restored", 0) == 0
        for start in range(0, 40, 10):
            a.state.update(*batch(start, start + 10))
            a.state.flush([part])
        a.state.release([part])  # revoked: a's rows stay in its store

        b.restore([part])  # a new machine: everything comes from the changelog
        assert b.events["restored"] == len(curves)
        assert_same_rows(b.rows(), a.rows())
        b.state.update(*batch(40, 60))
        b.state.flush([part])
        b.state.release([part])

        a.restore([part])  # back to the first owner: only b's rows after a's offset
        assert a.events["restored"] == len(curves)
        assert_same_rows(a.rows(), b.rows())
        for lc in curves:
            row = a.rows()[(lc.source_id, "V")]
            assert row["t"].size == 60
            np.testing.assert_array_equal(row["counts"], numpy_counts(lc.t[:60], lc.m[:60], GRID))

        # a former owner's late write of an old version cannot shrink a row
        lc = curves[0]
        key = (lc.source_id, "V")
        old = {"t": lc.t[:5], "m": lc.m[:5], "err": lc.err[:5],
               "counts": engine.counts(lc.t[:5], lc.m[:5])}  # fmt: skip
        a.state.changelog.write([(part, encode_key(key), encode_row(old, GRID))])
        c.restore([part])
        assert_same_rows(c.rows(), b.rows())

        # the other partition was never written: its changelog holds only end markers
        other = (topic, 0)
        c.restore([other])
        assert c.state.store.applied(other) == 1  # the marker at 0, then the next one
    finally:
        for owner in (a, b, c):
            owner.close()


def test_a_store_newer_than_its_changelog_restores_from_the_start(changelog_settings, tmp_path):
    s = changelog_settings
    (topic,) = s.input_topics
    part = (topic, 0)
    (lc,) = crts_curves(1)
    row = {"t": lc.t, "m": lc.m, "err": lc.err, "counts": engine.counts(lc.t, lc.m)}
    owner = Owner(s, tmp_path / "a")
    try:
        owner.state.changelog.write(
            [(part, encode_key((lc.source_id, "V")), encode_row(row, GRID))]
        )
        # the store says it applied offset 10**6: the topic was recreated (e.g. Tansu restarted)
        owner.state.store.write([], {part: 10**6})
        owner.restore([part])
        ((key, value),) = owner.state.store.rows()
        assert key == (lc.source_id, "V")
        assert row_points(value) == len(lc)
        assert owner.state.store.applied(part) == 2  # record 0, marker 1
    finally:
        owner.close()


def test_changelog_names_and_marker_key():
    assert changelog_topic("g", "lc-alerts") == "g-lc-alerts-changelog"
    assert MARKER_KEY.startswith(b"\0")  # no source key starts with NUL
