"""The scale-out acceptance scenario (tests/test_acceptance.py): no alert lost, no point counted
twice, through kill -9 and scale-out; tests/test_restart.py and tests/test_faults.py reuse its
checks.

Everything runs on this machine: a Kafka-protocol broker (the suite's Tansu, or
``KAFKA_BOOTSTRAP``), `dmdt-broker run` consumers as subprocesses in one group, each with its own
state dir (durable RocksDB store and the changelog topic, the defaults). The stream is the replay
of the first ``points`` detections of ``sources`` real CRTS light curves (one alert per
detection, no history, global time order, keyed by source id), written by `replay_to_file` and
appended to a topic of ``partitions`` partitions in four slices:

1. slice 1; consumers A, B, C start and join;
2. slice 2, in 20 chunks over about 5 s; B is killed with SIGKILL after the 8th, while the
   stream flows, then started again on the same state dir (its partitions wait for the session
   timeout, then move);
3. slice 3; consumer D joins (an empty state dir: its partitions are restored from the changelog);
4. slice 4; wait until every source's full classification is out. The four consumers stay up
   (on Tansu, members leaving a cooperative-sticky group can leave their partitions unassigned,
   and a group that every member left is not joined again: measured, see docs/state.md).

Checks: for every source the last published classification has n_points equal to its distinct
point count and probabilities equal to offline `Classifier.classify_lightcurves` of the whole
(truncated) curve (what `dmdt-train predict` does); every alert but a source's first (one point:
nothing to classify) has an output record; no dead letter; the state rebuilt from the changelog
into an empty store equals the plain numpy dmdt counts (`dmdt.reference`) of every curve. Then
the same replay is appended again and the same four consumers run it: no changelog row is written
(no histogram changed) and every output of the second run carries the full point count. Then all
four get SIGTERM and exit 0, and the group has committed every input offset of both runs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from broker.changelog import MARKER_KEY, Changelog, ensure_changelogs
from broker.durable import DurableState
from broker.encode import Classification, decode_classification
from broker.kafka import AlertConsumer, AlertProducer, Record
from broker.kafka_admin import PartitionReader, create_topics, wait_for_topics
from broker.settings import BrokerSettings
from broker.store import RocksStore, decode_row
from broker.tools.replay import ReplaySource, load_source, read_stream, replay_to_file
from broker.tools.replay_plan import select_sources
from broker.tools.testing import TEST_CONSUMER_OVERRIDES, TansuBroker, unique_name
from dmdt.cnn import Classifier
from dmdt.grids import get_grid
from dmdt.lightcurves import LightCurve
from dmdt.reference import numpy_counts

MIN_POINTS = 2  # classify from the second point on, so (almost) every alert has an output


@dataclass
class Figures:
    """What one acceptance run did and found."""

    sources: int = 0
    points_per_source: int = 0
    alerts: int = 0
    partitions: int = 0
    outputs: int = 0
    duplicate_outputs: int = 0  # alerts published more than once (redelivered batches)
    alerts_without_output: int = 0
    wrong_n_points: int = 0
    wrong_probabilities: int = 0
    max_probability_error: float = 0.0
    wrong_histograms: int = 0  # rebuilt from the changelog after the first run
    wrong_histograms_second_run: int = 0
    dead_letters: int = 0
    changelog_rows_first_run: int = 0
    changelog_rows_second_run: int = 0
    second_run_outputs: int = 0
    second_run_partial: int = 0  # second-run outputs with fewer points than the source has
    outputs_at_kill: int = 0  # alerts with an output when B was killed
    committed: int = 0  # input offsets committed by the group at the end (2 x alerts)
    exit_codes: list[int] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every check passed."""
        return (
            self.alerts_without_output == 0
            and self.wrong_n_points == 0
            and self.wrong_probabilities == 0
            and self.wrong_histograms == 0
            and self.wrong_histograms_second_run == 0
            and self.dead_letters == 0
            and self.changelog_rows_second_run == 0
            and self.second_run_partial == 0
            and self.second_run_outputs > 0
            and self.committed == 2 * self.alerts
            and all(code == 0 for code in self.exit_codes)
        )


def curves_for(n_sources: int, points: int, seed: int) -> list[LightCurve]:
    """The first `points` detections of n_sources CRTS light curves drawn with the seed."""
    items = select_sources(load_source("crts").items, limit_sources=n_sources, seed=seed)
    out = []
    for lc in items:
        assert isinstance(lc, LightCurve)
        out.append(
            LightCurve(lc.source_id, lc.t[:points], lc.m[:points], lc.err[:points], lc.label,
                       lc.band, lc.ra, lc.dec)
        )  # fmt: skip
    return out


class Consumer:
    """One `dmdt-broker run` subprocess with its own state dir."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.state_dir = workdir / f"state-{name}"
        self.log = workdir / f"{name}.log"
        self.argv, self.env = argv, env
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        env = {**self.env, "DMDT_STATE_DIR": str(self.state_dir)}
        self.starts += 1
        with self.log.open("a") as log:
            log.write(f"--- start {self.starts}\n")
            log.flush()
            self.proc = subprocess.Popen(
                self.argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.state_dir.parent
            )

    def kill9(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(30)

    def terminate(self, timeout_s: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            return -9

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def owns_partitions(self) -> bool:
        """True once this start of the consumer was assigned a partition (its -v log says so)."""
        text = self.log.read_text(errors="replace")
        return "INFO broker.app: assigned [(" in text.rsplit(f"--- start {self.starts}", 1)[-1]


class Run:
    """Topics, stream and consumers of one acceptance run."""

    def __init__(self, bootstrap: str, workdir: Path, model: str, partitions: int,
                 batch_size: int, assignment: str) -> None:  # fmt: skip
        self.workdir = workdir
        self.input, self.output, self.dlq = (unique_name(p) for p in ("lc", "out", "dlq"))
        self.group = unique_name("accept")
        self.settings = BrokerSettings(
            bootstrap_servers=bootstrap, group_id=self.group,
            input_topics={self.input: "lightcurve"},
        )  # fmt: skip
        create_topics(self.settings, {self.input: partitions, self.output: partitions,
                                      self.dlq: 1})  # fmt: skip
        wait_for_topics(self.settings, [self.input, self.output, self.dlq])
        # commit stored offsets every second (librdkafka's default is 5 s): progress shows sooner
        conf = {**TEST_CONSUMER_OVERRIDES, "auto.commit.interval.ms": 1000,
                "partition.assignment.strategy": assignment}  # fmt: skip
        extra = ",".join(f"{k}={v}" for k, v in conf.items())
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DMDT_", "KAFKA_"))},
            "DMDT_BOOTSTRAP_SERVERS": bootstrap, "DMDT_KAFKA_EXTRA": extra,
            "DMDT_METRICS_PORT": "0", "DMDT_DEVICE": "cpu", "DMDT_TORCH_THREADS": "1",
            "PYTHONFAULTHANDLER": "1",
        }  # fmt: skip
        self.argv = [
            sys.executable, "-m", "broker.cli", "-v", "run", "--input", f"{self.input}:lightcurve",
            "--output", self.output, "--dead-letter", self.dlq, "--group", self.group,
            "--model", model, "--batch-size", str(batch_size), "--batch-wait-ms", "50",
            "--min-points", str(MIN_POINTS),
        ]  # fmt: skip
        self.consumers: dict[str, Consumer] = {}
        self.producer = AlertProducer(self.settings)

    def consumer(self, name: str) -> Consumer:
        if name not in self.consumers:
            self.consumers[name] = Consumer(name, self.argv, self.env, self.workdir)
        return self.consumers[name]

    def append(self, records: Sequence[Any]) -> None:
        for r in records:
            self.producer.produce(self.input, r.value, key=r.key)
        if self.producer.flush(60) or self.producer.take_failures():
            raise RuntimeError("the replay was not acknowledged")

    def committed(self) -> int:
        """Input offsets the group has committed. Only once every consumer has left for good:
        on Tansu an OffsetFetch from outside the group stops the group's later joins."""
        probe = AlertConsumer(self.settings, overrides=TEST_CONSUMER_OVERRIDES)
        try:
            n = wait_for_topics(self.settings, [self.input])[self.input]
            got = probe.committed([(self.input, p) for p in range(n)])
        finally:
            probe.close()
        return sum(max(o, 0) for o in got.values())

    def read(self, topic: str, idle_s: float = 0.3) -> list[Record]:
        """Every record of a topic, partition by partition in offset order (no group: each
        partition is read from 0 until nothing new arrives for idle_s)."""
        reader = PartitionReader(self.settings, overrides=TEST_CONSUMER_OVERRIDES)
        out: list[Record] = []
        try:
            for p in range(wait_for_topics(self.settings, [topic])[topic]):
                reader.seek(topic, p, 0)
                last = time.monotonic()
                while time.monotonic() - last < idle_s:
                    got = reader.read(5000, 0.1)
                    if got:
                        out += got
                        last = time.monotonic()
        finally:
            reader.close()
        return out

    def close(self) -> None:
        for c in self.consumers.values():
            if c.alive():
                c.kill9()
        self.producer.close()


class OutputTail:
    """Reads the output topic as it grows, without a consumer group (one reader a partition)."""

    def __init__(self, run: Run) -> None:
        n = wait_for_topics(run.settings, [run.output])[run.output]
        self.readers = []
        for p in range(n):
            reader = PartitionReader(run.settings, overrides=TEST_CONSUMER_OVERRIDES)
            reader.seek(run.output, p, 0)
            self.readers.append(reader)
        self.records: list[tuple[int, int, Classification]] = []  # (partition, offset, record)

    def poll(self) -> list[tuple[int, int, Classification]]:
        new = []
        for reader in self.readers:
            for r in reader.read(5000, 0.05):
                new.append((r.partition, r.offset, decode_classification(r.value)))  # type: ignore[arg-type]
        self.records += new
        return new

    def wait(self, done: Callable[[], bool], check: Callable[[], None], timeout_s: float) -> None:
        """Poll until done() holds, then until nothing new arrives for 1 s."""
        deadline = time.monotonic() + timeout_s
        while not done():
            check()
            if time.monotonic() > deadline:
                raise TimeoutError("the outputs did not complete")
            if not self.poll():
                time.sleep(0.2)
        quiet = time.monotonic()
        while time.monotonic() - quiet < 1.0:
            if self.poll():
                quiet = time.monotonic()

    def close(self) -> None:
        for reader in self.readers:
            reader.close()


def changelog_rows(run: Run) -> int:
    """Row records (markers left out) in the changelog topic."""
    topics = ensure_changelogs(run.settings)
    return sum(1 for r in run.read(topics[run.input]) if r.key != MARKER_KEY)


def rebuilt_state(run: Run, partitions: int, path: Path) -> dict[tuple[str, str], Any]:
    """Every partition restored from the changelog into an empty store: {key: row}."""
    producer = AlertProducer(run.settings)
    reader = PartitionReader(run.settings)
    changelog = Changelog(ensure_changelogs(run.settings), producer, reader)
    store = RocksStore(path)
    state = DurableState(get_grid(), store, changelog)
    try:
        parts = [(run.input, p) for p in range(partitions)]
        state.assign(parts)
        deadline = time.monotonic() + 120
        while state.restoring():
            if time.monotonic() > deadline:
                raise TimeoutError("restore from the changelog did not finish")
            state.restore_step(1.0)
        return {k: decode_row(v, state.grid) for k, v in store.rows()}
    finally:
        state.close()
        reader.close()
        producer.close()


def alert_ids(stream: list[Any]) -> list[tuple[int, str]]:
    """(alert id, source id) of every message of the stream, in order."""
    from broker.decode_lightcurve import LightcurveDecoder

    decode = LightcurveDecoder()
    return [(a.alert_id, a.source_id) for r in stream for a in decode(r.value)]


def first_alerts(stream: list[Any]) -> set[int]:
    """Alert ids of each source's first detection (one point: nothing to classify yet)."""
    seen: set[str] = set()
    firsts = set()
    for alert_id, source in alert_ids(stream):
        if source not in seen:
            firsts.add(alert_id)
            seen.add(source)
    return firsts


def check_outputs(
    figures: Figures, outputs: list[Classification], stream: list[Any], curves: list[LightCurve],
    model: str,
) -> None:  # fmt: skip
    """Last classification per source against offline; an output for every alert but firsts."""
    by_alert: dict[int, int] = {}
    last: dict[str, Classification] = {}
    for c in outputs:  # in offset order per partition: a source's records are in order
        by_alert[c.alert_id] = by_alert.get(c.alert_id, 0) + 1
        last[c.source_id] = c
    figures.outputs = len(outputs)
    figures.duplicate_outputs = sum(n - 1 for n in by_alert.values())
    firsts = first_alerts(stream)
    figures.alerts_without_output = sum(
        1
        for alert_id, _ in alert_ids(stream)
        if alert_id not in firsts and alert_id not in by_alert
    )
    offline = Classifier.from_checkpoint(model, "cpu").classify_lightcurves(curves)
    classes = offline.classes
    for lc, probs in zip(curves, offline.probabilities, strict=True):
        c = last.get(lc.source_id)
        if c is None or c.n_points != len(lc):
            figures.wrong_n_points += 1
            continue
        stream_probs = np.array([c.probabilities[k] for k in classes], dtype=np.float32)
        err = float(np.max(np.abs(stream_probs - probs)))
        figures.max_probability_error = max(figures.max_probability_error, err)
        if err > 1e-6:
            figures.wrong_probabilities += 1


def wrong_histograms(rows: dict[Any, Any], curves: list[LightCurve]) -> int:
    """Rebuilt rows that differ from the dmdt counts of their source's distinct points, computed
    by the plain numpy reference (`dmdt.reference`, not the engine); a missing row, or a row of
    anything else, counts too."""
    wrong = abs(len(rows) - len(curves))
    for lc in curves:
        row = rows.get((lc.source_id, "V"))
        if (
            row is None
            or not np.array_equal(row["t"], lc.t)
            or not np.array_equal(row["counts"], numpy_counts(lc.t, lc.m, get_grid()))
        ):
            wrong += 1
    return wrong


def run_acceptance(
    *,
    bootstrap: str | None = None,
    sources: int = 1000,
    points: int = 30,
    partitions: int = 6,
    seed: int = 0,
    model: str | None = None,
    batch_size: int = 500,
    assignment: str = "cooperative-sticky",
    workdir: Path | None = None,
    log: Callable[[str], None] = print,
) -> Figures:
    """The whole scenario; see the module docstring. Returns the figures (check `.ok`)."""
    figures = Figures(points_per_source=points, partitions=partitions)
    t0 = time.monotonic()
    timings = figures.timings_s

    def say(message: str) -> None:
        log(f"[{time.monotonic() - t0:6.1f} s] {message}")

    with tempfile.TemporaryDirectory(prefix="dmdt-accept-") as tmp:
        work = Path(workdir or tmp)
        work.mkdir(parents=True, exist_ok=True)
        if model is None:
            from stream_helpers import tiny_model

            model = str(tiny_model(work / "model").path)
        curves = curves_for(sources, points, seed)
        figures.sources = len(curves)
        stream_file = work / "stream.bin"
        replay_to_file(ReplaySource("crts", "crts", tuple(curves), "lightcurve"), stream_file,
                       seed=seed, min_points=MIN_POINTS)  # fmt: skip
        stream = list(read_stream(stream_file))
        figures.alerts = len(stream)
        say(f"{len(curves)} CRTS sources x {points} points: {len(stream):,} alerts")
        broker = None if bootstrap else TansuBroker().start()
        run = Run(bootstrap or broker.bootstrap, work, model, partitions, batch_size, assignment)  # type: ignore[union-attr]
        try:
            q = len(stream) // 4
            slices = [stream[:q], stream[q : 2 * q], stream[2 * q : 3 * q], stream[3 * q :]]
            firsts = first_alerts(stream)
            all_ids = {alert_id for alert_id, _ in alert_ids(stream)}
            full = {lc.source_id: len(lc) for lc in curves}
            tail = OutputTail(run)

            def check() -> None:
                for c in run.consumers.values():
                    if c.proc is not None and c.proc.poll() not in (None, 0):
                        raise RuntimeError(f"consumer {c.name} exited: {c.log.read_text()[-3000:]}")

            def outputs_at_least(n: int) -> Callable[[], bool]:
                return lambda: len({c.alert_id for _, _, c in tail.records}) >= n

            def joined(name: str) -> Callable[[], bool]:
                return run.consumer(name).owns_partitions

            def first_run_done() -> bool:
                ids = {c.alert_id for _, _, c in tail.records}
                done = {c.source_id for _, _, c in tail.records if c.n_points == full[c.source_id]}
                return len(done) == len(full) and all_ids - firsts <= ids

            run.append(slices[0])
            for name in "ABC":
                run.consumer(name).start()
            say("slice 1 appended; consumers A, B, C started")
            tail.wait(outputs_at_least(q // 2), check, 120)
            timings["first_outputs"] = time.monotonic() - t0
            # slice 2 arrives in 20 chunks over about 5 s; B dies after the 8th
            chunks = [slices[1][len(slices[1]) * i // 20 : len(slices[1]) * (i + 1) // 20]
                      for i in range(20)]  # fmt: skip
            for i, chunk in enumerate(chunks):
                run.append(chunk)
                tail.poll()
                if i == 7:
                    run.consumer("B").kill9()
                    figures.outputs_at_kill = len({c.alert_id for _, _, c in tail.records})
                    timings["kill"] = time.monotonic() - t0
                    say(f"B killed with SIGKILL while slice 2 streams in, at "
                        f"{figures.outputs_at_kill:,} alerts with an output")  # fmt: skip
                time.sleep(0.25)
            run.consumer("B").start()
            run.append(slices[2])
            tail.wait(joined("B"), check, 120)
            say("slice 2 appended; B restarted on its state dir; slice 3 appended; B owns "
                "partitions again")  # fmt: skip
            run.consumer("D").start()
            tail.wait(joined("D"), check, 120)
            run.append(slices[3])
            say("D started (empty state dir) and owns partitions; slice 4 appended")
            tail.wait(first_run_done, check, 600)
            timings["first_run"] = time.monotonic() - t0
            say("every source has its full classification")
            # every consumer stays up for the second run: no rebalance (see the docstring)
            first = [c for _, _, c in tail.records]
            ends = {}
            for part, offset, _ in tail.records:
                ends[part] = max(ends.get(part, -1), offset)
            figures.dead_letters = len(run.read(run.dlq))
            check_outputs(figures, first, stream, curves, model)
            figures.changelog_rows_first_run = changelog_rows(run)
            rows = rebuilt_state(run, partitions, work / "rebuilt-1")
            figures.wrong_histograms = wrong_histograms(rows, curves)
            timings["first_checks"] = time.monotonic() - t0
            say(f"first run checked: {json.dumps(_brief(figures))}")

            # the same replay again: nothing may change
            run.append(stream)
            say("the same replay appended again; A, B, C and D still running")

            def second() -> list[Classification]:
                return [c for p, o, c in tail.records if o > ends.get(p, -1)]

            tail.wait(lambda: {c.alert_id for c in second()} >= all_ids, check, 600)
            timings["second_run"] = time.monotonic() - t0
            say("second run: every alert has an output")
            for name in "ABCD":
                figures.exit_codes.append(run.consumer(name).terminate())
            tail.poll()
            again = second()
            figures.second_run_outputs = len(again)
            figures.second_run_partial = sum(1 for c in again if c.n_points != full[c.source_id])
            figures.changelog_rows_second_run = (
                changelog_rows(run) - figures.changelog_rows_first_run
            )
            rows = rebuilt_state(run, partitions, work / "rebuilt-2")
            figures.wrong_histograms_second_run = wrong_histograms(rows, curves)
            figures.committed = run.committed()  # every consumer has left: safe on Tansu
            tail.close()
            timings["total"] = time.monotonic() - t0
        finally:
            run.close()
            if broker is not None:
                broker.stop()
    return figures


def _brief(f: Figures) -> dict[str, Any]:
    d = asdict(f)
    d.pop("timings_s")
    return d
