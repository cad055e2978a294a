"""Broker faults on librdkafka's mock cluster, where Tansu cannot be made to fail: brokers down and
back, injected request errors, a slow network, the group coordinator lost for longer than the
session timeout, and a model slower than max.poll.interval.ms. The consumer (App, durable state
with its changelog) must be delayed, never wrong: every histogram equals the offline dmdt counts,
every alert has its classification, the last one per source carries the whole light curve, the
group commits every input; duplicates only where partitions were lost (at-least-once)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import acceptance_helpers as acceptance
import pytest
from prometheus_client import CollectorRegistry
from stream_helpers import crts_curves, tiny_model

from broker.app import App, run_in_thread
from broker.changelog import changelog_topic
from broker.encode import decode_classification
from broker.kafka import AlertConsumer, Record
from broker.kafka_admin import PartitionReader
from broker.settings import BrokerSettings
from broker.store import RocksStore, decode_row, store_path
from broker.tools.replay import load_source, replay_to_topic
from broker.tools.testing import TEST_CONSUMER_OVERRIDES, MockCluster, unique_name

pytestmark = pytest.mark.slow

N_SOURCES = 4
PARTITIONS = 2
OVERRIDES = {**TEST_CONSUMER_OVERRIDES, "auto.commit.interval.ms": 500}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m"
    tiny_model(path)
    return path


def read_all(settings: BrokerSettings, topic: str, partitions: int) -> list[Record]:
    """Every record of a topic, in offset order per partition (no consumer group)."""
    reader = PartitionReader(settings)
    out: list[Record] = []
    try:
        for p in range(partitions):
            reader.seek(topic, p, 0)
            last = time.monotonic()
            while time.monotonic() - last < 1.0:
                got = reader.read(5000, 0.1)
                if got:
                    out += got
                    last = time.monotonic()
    finally:
        reader.close()
    return out


class Scenario:
    """A mock cluster with the stream's topics, a replay in them, and one consumer running."""

    def __init__(self, cluster: MockCluster, model_dir: Path, state_dir: Path) -> None:
        self.cluster = cluster
        self.group = unique_name("group")
        names = [unique_name(p) for p in ("lc", "out", "dlq")]
        self.input, self.output, self.dlq = names
        for name in (self.input, self.output):
            cluster.create_topic(name, PARTITIONS, 3)
        cluster.create_topic(self.dlq, 1, 3)
        cluster.create_topic(changelog_topic(self.group, self.input), PARTITIONS, 3)
        self.settings = BrokerSettings(
            bootstrap_servers=cluster.bootstrap, group_id=self.group,
            input_topics={self.input: "lightcurve"}, output_topic=self.output,
            dead_letter_topic=self.dlq, batch_size=100, batch_wait_ms=20, metrics_port=0,
            device="cpu", min_points=2, model=str(model_dir), state_dir=state_dir,
        )  # fmt: skip
        self.summary = replay_to_topic(self.settings, load_source("crts"), self.input,
                                       limit_sources=N_SOURCES)  # fmt: skip
        self.registry = CollectorRegistry()
        self.lost: list[Any] = []
        self.app = App(self.settings, registry=self.registry, consumer_overrides=OVERRIDES)
        lost = self.app.ownership.lose

        def record_lost(partitions: Any) -> None:
            self.lost.append(partitions)
            lost(partitions)

        self.app.ownership.lose = record_lost  # type: ignore[method-assign]

    def run(self, fault: Callable[[Scenario], None]) -> None:
        """Start the consumer, inject the fault, wait until every input is committed, stop."""
        thread, outcome = run_in_thread(self.app)
        try:
            fault(self)
            self.wait(lambda: self.committed() >= self.summary.alerts, 120, "all inputs committed")
        finally:
            self.app.stop()
            thread.join(60)
        assert outcome, "the app thread did not finish"
        assert not isinstance(outcome[0], BaseException), outcome[0]

    def wait(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.1)

    def after_batches(self, n: int) -> None:
        self.wait(lambda: self.app.stats.batches >= n, 60, f"{n} batches")

    def committed(self) -> int:
        probe = AlertConsumer(self.settings, overrides=OVERRIDES)
        try:
            got = probe.committed([(self.input, p) for p in range(PARTITIONS)], timeout_s=5)
        except Exception:  # the coordinator may be down
            return 0
        finally:
            probe.close()
        return sum(max(o, 0) for o in got.values())

    def check(self, model_dir: Path) -> acceptance.Figures:
        """The acceptance test's checks on this run's topics and store."""
        curves = crts_curves(N_SOURCES)
        stream = read_all(self.settings, self.input, PARTITIONS)
        outputs = [
            decode_classification(r.value)  # type: ignore[arg-type]
            for r in read_all(self.settings, self.output, PARTITIONS)
        ]
        figures = acceptance.Figures(sources=len(curves), alerts=len(stream))
        acceptance.check_outputs(figures, outputs, stream, curves, str(model_dir))
        figures.dead_letters = len(read_all(self.settings, self.dlq, 1))
        with RocksStore(store_path(self.settings.state_dir, self.group)) as store:
            rows = {k: decode_row(v, self.app.state.grid) for k, v in store.rows()}
        figures.wrong_histograms = acceptance.wrong_histograms(rows, curves)
        figures.committed = self.committed()
        return figures


def assert_exact(figures: acceptance.Figures, alerts: int) -> None:
    assert figures.alerts == alerts
    assert figures.alerts_without_output == 0
    assert figures.wrong_n_points == 0
    assert figures.wrong_probabilities == 0
    assert figures.wrong_histograms == 0
    assert figures.dead_letters == 0
    assert figures.committed == alerts


def test_brokers_down_request_errors_and_a_slow_network(model_dir, tmp_path):
    def faults(s: Scenario) -> None:
        c = s.cluster
        s.after_batches(2)
        c.broker_down(-1)  # every broker: nothing can be produced, fetched or committed
        time.sleep(3)
        c.broker_up(-1)
        s.after_batches(4)
        c.push_request_errors("Produce", 7, 6, 7)  # timeouts, not leader: retried
        c.push_request_errors("Fetch", 6, 6)
        c.push_request_errors("OffsetCommit", 15, 15)  # coordinator unavailable: next commit
        s.after_batches(6)
        c.set_rtt(-1, 300)  # every response 300 ms late
        time.sleep(3)
        c.set_rtt(-1, 0)

    with MockCluster(brokers=3) as cluster:
        s = Scenario(cluster, model_dir, tmp_path / "state")
        s.run(faults)
        figures = s.check(model_dir)
    assert_exact(figures, s.summary.alerts)
    assert s.lost == []
    assert figures.duplicate_outputs == 0  # nothing was redelivered: no partition changed hands


def test_coordinator_lost_longer_than_the_session(model_dir, tmp_path):
    def faults(s: Scenario) -> None:
        c = s.cluster
        s.after_batches(3)
        c.broker_down(3)  # the coordinator; the partitions' leaders are 1 and 2
        s.wait(lambda: bool(s.lost), 30, "partitions lost")
        time.sleep(1)
        c.broker_up(3)

    with MockCluster(brokers=3) as cluster:
        s = Scenario(cluster, model_dir, tmp_path / "state")
        cluster.set_coordinator(s.group, 3)
        for topic in (s.input, s.output, changelog_topic(s.group, s.input)):
            for p in range(PARTITIONS):
                cluster.set_leader(topic, p, 1 + p % 2)
        cluster.set_leader(s.dlq, 0, 1)
        s.run(faults)
        figures = s.check(model_dir)
    assert_exact(figures, s.summary.alerts)
    assert s.lost  # the partitions were lost (dropped unflushed, not committed) and came back
    # the rows dropped with the lost partitions were read back from the store afterwards
    loaded = s.registry.get_sample_value("dmdt_state_rows_total", {"event": "loaded"})
    assert loaded is not None
    assert loaded > 0


def test_a_model_slower_than_max_poll_interval_pauses_fetching(model_dir, tmp_path, monkeypatch):
    slow = threading.Event()

    def faults(s: Scenario) -> None:
        classifier = s.app.models.current.classifier
        real = classifier.classify_counts

        def classify(counts: Any, n_points: Any) -> Any:
            if slow.is_set():
                slow.clear()
                time.sleep(9)  # longer than max.poll.interval.ms below
            return real(counts, n_points)

        monkeypatch.setattr(classifier, "classify_counts", classify)
        s.after_batches(2)
        slow.set()

    monkeypatch.setitem(OVERRIDES, "max.poll.interval.ms", 7000)
    with MockCluster(brokers=1) as cluster:
        s = Scenario(cluster, model_dir, tmp_path / "state")
        s.run(faults)
        figures = s.check(model_dir)
    assert not slow.is_set()  # the slow batch happened
    assert_exact(figures, s.summary.alerts)
    assert s.lost == []  # stayed in the group throughout
    assert figures.duplicate_outputs == 0
    assert s.registry.get_sample_value("dmdt_fetch_pauses_total") >= 1
