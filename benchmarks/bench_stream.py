"""Streaming speed on this machine: sustained alerts/s and latency from append to published
classification, replayed CRTS alerts through `dmdt-broker run`'s App, shallow CNN on CPU.

    python benchmarks/bench_stream.py                    # backlog + 2,000 and 5,000 alerts/s
    python benchmarks/bench_stream.py --quick            # fewer sources, shorter paced runs

Everything runs here: a Tansu broker on 127.0.0.1, the consumer (App) in this process, and for
the paced runs a producer in a child process that appends the pre-encoded replay at a fixed
rate. Rows:

- backlog: the whole replay is in the input topic before the consumer starts; alerts/s is the
  consumer's sustained rate from its first batch to the last classification acknowledged.
- paced R/s: the producer appends R alerts/s for --seconds while the consumer runs; latency is,
  per classification, acknowledgement time of the output minus the input's Kafka timestamp
  (CreateTime, stamped by the producer when it appends). The first 2 s are a warm-up.
- ztf decode: ZTF alerts with cutouts decoded per core (benchmarks/bench_decode.py's messages).

Targets (issue 4): at least 5,000 alerts/s; p99 under 1 s at 2,000 alerts/s; ZTF decode at least
2,000 alerts/s per core. Not a test: the machine is shared, figures move by 10-20%.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_decode import best_rate, messages_with_cutouts

from broker.app import App, run_in_thread
from broker.decode_ztf import ZtfDecoder
from broker.kafka import AlertProducer
from broker.kafka_admin import create_topics, wait_for_topics
from broker.models import ModelSource
from broker.pipeline import BatchResult
from broker.settings import BrokerSettings
from broker.tools.replay import read_stream, replay_to_file
from broker.tools.testing import TEST_CONSUMER_OVERRIDES, TansuBroker, unique_name
from dmdt.registry import PAPER_CNN_DIR

WARMUP_S = 2.0


def settings_for(bootstrap: str, topic: str, args: argparse.Namespace) -> BrokerSettings:
    """Consumer settings of one run: its own topics and group."""
    fields: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "input_topics": {topic: "lightcurve"},
        "output_topic": f"{topic}-out",
        "dead_letter_topic": f"{topic}-dlq",
        "group_id": unique_name("bench"),
        "batch_size": args.batch_size,
        "batch_wait_ms": args.batch_wait_ms,
        "metrics_port": 0,
        "device": "cpu",
        "torch_threads": args.torch_threads,
        "state_store": args.state,
        "state_dir": args.state_dir,
    }
    return BrokerSettings(**fields)


def make_topics(settings: BrokerSettings, topic: str, partitions: int = 2) -> None:
    """Input and output (2 partitions), dead letters (1)."""
    create_topics(
        settings,
        {topic: partitions, settings.output_topic: partitions, settings.dead_letter_topic: 1},
    )
    wait_for_topics(settings, [topic, settings.output_topic, settings.dead_letter_topic])


class Collector:
    """App batch hook: latencies and per-stage times."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.first: float | None = None
        self.last = 0.0
        self.latency: list[tuple[float, np.ndarray]] = []  # (wall time, ms per output)
        self.stages = {"decode": 0.0, "update": 0.0, "inference": 0.0, "encode": 0.0}
        self.alerts = 0
        self.first_alerts = 0  # alerts of the first batch, done before `first`
        self.images = 0

    def __call__(self, r: BatchResult, delivered_ms: int) -> None:
        now = time.monotonic()
        ts = np.array([t for t in r.output_alert_ts if t is not None], dtype=np.int64)
        with self.lock:
            if self.first is None:
                self.first, self.first_alerts = now, r.alerts
            self.last = now
            self.latency.append((now, delivered_ms - ts))
            self.stages["decode"] += r.decode_s
            self.stages["update"] += r.update_s
            self.stages["inference"] += r.inference_s
            self.stages["encode"] += r.encode_s
            self.alerts += r.alerts
            self.images += r.sources_classified

    def rate(self) -> float:
        """Alerts/s from the first batch's end to the last's (the first batch's own time falls
        before ``first``, so its alerts are not counted); NaN when everything came in one batch."""
        with self.lock:
            if self.first is None or self.last <= self.first:
                return float("nan")
            return (self.alerts - self.first_alerts) / (self.last - self.first)

    def latencies(self, after: float) -> np.ndarray:
        with self.lock:
            kept = [ms for t, ms in self.latency if t >= after]
        return np.concatenate(kept) if kept else np.zeros(0, np.int64)


def produce_all(settings: BrokerSettings, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Append every message; returns the producer's rate (alerts/s)."""
    t0 = time.perf_counter()
    with AlertProducer(settings, overrides={"linger.ms": 20}) as producer:
        for i, (key, value) in enumerate(messages):
            producer.produce(topic, value, key=key)
            if i % 1000 == 0:
                producer.poll(0)
    return len(messages) / (time.perf_counter() - t0)


def _pacer(bootstrap: str, topic: str, stream: str, rate: float, seconds: float, out: Any) -> None:
    """Child process: append the stream's messages at `rate` per second for `seconds`."""
    fields: dict[str, Any] = {"bootstrap_servers": bootstrap}
    settings = BrokerSettings(**fields)
    messages = [(r.key, r.value) for r in read_stream(stream)]
    n_total = min(len(messages), int(rate * seconds))
    out.put("ready")
    sent = 0
    with AlertProducer(settings, overrides={"linger.ms": 2}) as producer:
        start = time.monotonic()
        while sent < n_total:
            due = min(n_total, int((time.monotonic() - start) * rate) + 1)
            while sent < due:
                key, value = messages[sent]
                producer.produce(topic, value, key=key)
                sent += 1
            producer.poll(0)
            time.sleep(0.002)
        elapsed = time.monotonic() - start
    out.put((sent, elapsed))


def start_app(
    settings: BrokerSettings, models: ModelSource, hook: Collector
) -> tuple[App, Any, Any]:
    app = App(settings, models=models, consumer_overrides=TEST_CONSUMER_OVERRIDES, on_batch=hook)
    thread, outcome = run_in_thread(app)
    return app, thread, outcome


def stop_app(app: App, thread: Any, outcome: list[Any]) -> None:
    app.stop()
    thread.join(120)
    if outcome and isinstance(outcome[0], BaseException):
        raise outcome[0]


def drain(
    settings: BrokerSettings, models: ModelSource, hook: Collector, n_messages: int,
    timeout_s: float,
) -> App:  # fmt: skip
    """Run an App until it has consumed ``n_messages`` queued alerts (or failed), then stop it;
    the stopped App (for its stats)."""
    app, thread, outcome = start_app(settings, models, hook)
    try:
        wait(lambda: app.stats.consumed >= n_messages or bool(outcome), timeout_s, "backlog")
    finally:
        stop_app(app, thread, outcome)
    assert hook.first is not None
    return app


def wait(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def round_robin(messages: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The same alerts, reordered: every source's k-th alert, then every source's (k+1)-th, ...
    (each source's alerts stay in time order): consecutive alerts are of different sources."""
    per_source: dict[bytes, list[tuple[bytes, bytes]]] = {}
    for m in messages:
        per_source.setdefault(m[0], []).append(m)
    queues = list(per_source.values())
    out = []
    for k in range(max(map(len, queues))):
        out += [q[k] for q in queues if k < len(q)]
    return out


def run_backlog(
    bootstrap: str,
    messages: list[tuple[bytes, bytes]],
    models: ModelSource,
    args: argparse.Namespace,
    batch_size: int | None = None,
    partitions: int = 2,
) -> dict[str, Any]:
    topic = unique_name("backlog")
    settings = settings_for(bootstrap, topic, args)
    if batch_size is not None:
        settings = settings.model_copy(update={"batch_size": batch_size})
    make_topics(settings, topic, partitions)
    produce_rate = produce_all(settings, topic, messages)
    hook = Collector()
    app = drain(settings, models, hook, len(messages), 1800)
    rate = hook.rate()
    if np.isnan(rate):
        print(
            f"warning: all {len(messages)} alerts came in one batch, so no rate: queue more"
            " sources or lower --batch-size",
            flush=True,
        )
    per_alert = {k: 1e6 * v / hook.alerts for k, v in hook.stages.items()}
    return {
        "alerts": len(messages),
        "rate": rate,
        "produce_rate": produce_rate,
        "classified": app.stats.classified,
        "images_per_alert": hook.images / max(hook.alerts, 1),
        "us_per_alert": per_alert,
    }


def run_paced(bootstrap: str, stream: str, rate: float, models: ModelSource,
              args: argparse.Namespace) -> dict[str, Any]:  # fmt: skip
    topic = unique_name(f"paced{int(rate)}")
    settings = settings_for(bootstrap, topic, args)
    make_topics(settings, topic)
    hook = Collector()
    app, thread, outcome = start_app(settings, models, hook)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_pacer, args=(bootstrap, topic, stream, rate, args.seconds, queue))
    try:
        wait(lambda: len(app.owned) == 2, 60, "partitions assigned")  # both input partitions
        child.start()
        assert queue.get(timeout=120) == "ready"
        t_start = time.monotonic()
        sent, elapsed = queue.get(timeout=args.seconds * 3 + 60)
        wait(lambda: app.stats.consumed >= sent or bool(outcome), 300, "paced run drained")
    finally:
        stop_app(app, thread, outcome)
        child.join(30)
    lat = hook.latencies(after=t_start + WARMUP_S)
    p50, p99 = np.percentile(lat, [50, 99]) if lat.size else (float("nan"), float("nan"))
    return {
        "rate_in": sent / elapsed,
        "alerts": sent,
        "classified": app.stats.classified,
        "batches": app.stats.batches,
        "p50_ms": float(p50),
        "p99_ms": float(p99),
        "max_ms": float(lat.max()) if lat.size else float("nan"),
        "measured": int(lat.size),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default=str(PAPER_CNN_DIR), help="model to serve (default: models/paper-cnn)"
    )
    parser.add_argument("--sources", type=int, default=1000, help="CRTS sources replayed")
    parser.add_argument("--rates", default="2000,5000", help="paced input rates, alerts/s")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each paced run")
    parser.add_argument("--batch-size", type=int, default=5000)
    parser.add_argument("--batch-wait-ms", type=int, default=100)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument(
        "--state", choices=("rocksdb", "memory"), default="rocksdb",
        help="the consumer's state store (default: rocksdb + changelog, as `run`)",
    )  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="300 sources, 15 s paced runs")
    args = parser.parse_args()
    if args.quick:
        args.sources, args.seconds = min(args.sources, 300), min(args.seconds, 15.0)
    rates = [float(r) for r in args.rates.split(",") if r.strip()]

    models = ModelSource(args.model, "cpu")
    served = models.current
    with tempfile.TemporaryDirectory() as tmp:
        args.state_dir = Path(tmp) / "state"
        stream = str(Path(tmp) / "crts.bin")
        summary = replay_to_file("crts", stream, limit_sources=args.sources)
        messages = [(r.key, r.value) for r in read_stream(stream)]
        print(
            f"{summary.alerts:,} replayed alerts of {summary.sources:,} CRTS sources; model "
            f"{served.name} {served.version}; batch {args.batch_size}, wait "
            f"{args.batch_wait_ms} ms, torch threads {args.torch_threads}",
            flush=True,
        )
        with TansuBroker() as broker:
            backlog = run_backlog(broker.bootstrap, messages, models, args)
            print(f"backlog: {backlog}", flush=True)
            # worst case for inference: no two alerts of a batch share a source
            distinct = run_backlog(broker.bootstrap, round_robin(messages), models, args,
                                   batch_size=summary.sources, partitions=1)  # fmt: skip
            print(f"backlog, distinct sources: {distinct}", flush=True)
            paced = []
            for rate in rates:
                paced.append(run_paced(broker.bootstrap, stream, rate, models, args))
                print(f"paced {rate:,.0f}/s: {paced[-1]}", flush=True)
    ztf = messages_with_cutouts()
    ztf_rate = best_rate(ZtfDecoder(), ztf, 5)

    print()
    print("| run | input alerts/s | sustained alerts/s | p50 latency | p99 latency | max |")
    print("|---|---:|---:|---:|---:|---:|")
    print(
        f"| backlog ({backlog['alerts']:,} alerts queued) | {backlog['produce_rate']:,.0f} "
        f"(producer) | **{backlog['rate']:,.0f}** | (queueing) | (queueing) | |"
    )
    print(
        f"| backlog, every alert of a batch a different source (batch {summary.sources}) | | "
        f"**{distinct['rate']:,.0f}** | (queueing) | (queueing) | |"
    )
    for r in paced:
        print(
            f"| paced {r['rate_in']:,.0f}/s for {args.seconds:.0f} s | {r['rate_in']:,.0f} | "
            f"{r['rate_in']:,.0f} | {r['p50_ms']:,.0f} ms | **{r['p99_ms']:,.0f} ms** | "
            f"{r['max_ms']:,.0f} ms |"
        )
    print(f"| ZTF decode, alerts with cutouts, one core | | **{ztf_rate:,.0f}** | | | |")
    for name, run in (("backlog", backlog), ("distinct sources", distinct)):
        us = run["us_per_alert"]
        print(
            f"\nper alert, {name} (us): decode {us['decode']:.1f}, state update "
            f"{us['update']:.1f}, inference {us['inference']:.1f} "
            f"({run['images_per_alert']:.2f} images per alert), encode {us['encode']:.1f}"
        )


if __name__ == "__main__":
    main()
