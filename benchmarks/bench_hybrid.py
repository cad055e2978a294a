"""Hybrid model (dmdt counts + periodic features) vs the shallow CNN in the stream: alerts/s of
the same replay through `dmdt-broker run`'s App, in one process, per feature refresh policy.

    python benchmarks/bench_hybrid.py                      # models/hybrid-7 vs models/paper-cnn
    python benchmarks/bench_hybrid.py --sources 20 --policies 0.1,0.25

A Tansu broker on 127.0.0.1, the App in this process (memory state, CPU, one torch thread).
The replay is CRTS sources' whole light curves in round-robin order (every source's k-th alert,
then every source's (k+1)-th: one alert per source per batch, batch = --sources), the case that
costs a hybrid model most: every alert grows its source, as a night of a live survey does. The
whole replay is queued first (backlog); alerts/s is the consumer's rate from its first batch to
the last. Policies: `always` (refresh every batch that adds a point: exact), and refresh on
10 % / 25 % growth, with no per-batch budget (`--budget-ms` to set one), so that the rate
measures the policy's cost. Each row runs once per round, rounds interleaved (CNN, hybrid
policies, CNN, ...; `--rounds`), and keeps its best rate: the ratios compare runs seconds apart.
Not a test: the machine is shared, figures move by 10-20 %.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_stream import Collector, drain, make_topics, produce_all, round_robin

from broker.models import ModelSource
from broker.pipeline import BatchResult
from broker.settings import BrokerSettings
from broker.tools.replay import read_stream, replay_to_file
from broker.tools.testing import TansuBroker, unique_name
from dmdt.registry import PAPER_CNN_DIR


class HybridCollector(Collector):
    """Collector plus the feature refreshes of each batch."""

    def __init__(self) -> None:
        super().__init__()
        self.refreshes = 0
        self.refresh_s = 0.0
        self.stale = 0
        self.missing = 0
        self.outputs = 0

    def __call__(self, r: BatchResult, delivered_ms: int) -> None:
        super().__call__(r, delivered_ms)
        with self.lock:
            self.refreshes += r.features_refreshed
            self.refresh_s += r.features_s
            self.stale += r.stale_outputs
            self.missing += r.missing_outputs
            self.outputs += len(r.outputs)


def run(
    bootstrap: str,
    messages: list[tuple[bytes, bytes]],
    models: ModelSource,
    args: argparse.Namespace,
    policy: str,
) -> dict[str, Any]:
    """One backlog run of `models` with a refresh policy (`always` or a growth fraction)."""
    topic = unique_name("hybrid")
    fields: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "input_topics": {topic: "lightcurve"},
        "output_topic": f"{topic}-out",
        "dead_letter_topic": f"{topic}-dlq",
        "group_id": unique_name("bench"),
        "batch_size": args.sources,
        "batch_wait_ms": args.batch_wait_ms,
        "metrics_port": 0,
        "device": "cpu",
        "torch_threads": 1,
        "state_store": "memory",
        "feature_refresh_always": policy == "always",
        "feature_refresh_fraction": 0.1 if policy == "always" else float(policy),
        "feature_budget_ms": args.budget_ms,
    }
    settings = BrokerSettings(**fields)
    make_topics(settings, topic, partitions=1)
    produce_all(settings, topic, messages)
    hook = HybridCollector()
    drain(settings, models, hook, len(messages), 3600)
    rate = hook.rate()
    return {
        "rate": rate,
        "classified": hook.outputs,
        "refreshes": hook.refreshes,
        "refresh_ms": 1e3 * hook.refresh_s / max(hook.refreshes, 1),
        "stale": hook.stale / max(hook.outputs, 1),
        "missing": hook.missing / max(hook.outputs, 1),
        "us_per_alert": {k: 1e6 * v / max(hook.alerts, 1) for k, v in hook.stages.items()},
        "refresh_us_per_alert": 1e6 * hook.refresh_s / max(hook.alerts, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hybrid", default="models/hybrid-7", help="the hybrid model")
    parser.add_argument("--cnn", default=str(PAPER_CNN_DIR), help="the CNN to compare with")
    parser.add_argument("--sources", type=int, default=10, help="CRTS sources replayed")
    parser.add_argument("--policies", default="always,0.1,0.25", help="refresh policies")
    parser.add_argument("--budget-ms", type=int, default=0, help="per-batch budget (0: none)")
    parser.add_argument("--batch-wait-ms", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (best of)")
    args = parser.parse_args()

    cnn = ModelSource(args.cnn, "cpu")
    hybrid = ModelSource(args.hybrid, "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        stream = str(Path(tmp) / "crts.bin")
        summary = replay_to_file("crts", stream, limit_sources=args.sources)
        messages = round_robin([(r.key, r.value) for r in read_stream(stream)])
        print(
            f"{summary.alerts:,} alerts of {summary.sources} CRTS sources, round robin, batch "
            f"{args.sources}; CNN {cnn.current.name} {cnn.current.version}; hybrid "
            f"{hybrid.current.name} {hybrid.current.version}; budget {args.budget_ms} ms",
            flush=True,
        )
        policies = [p.strip() for p in args.policies.split(",") if p.strip()]
        runs: dict[str, list[dict[str, Any]]] = {"cnn": [], **{p: [] for p in policies}}
        with TansuBroker() as broker:
            for r in range(args.rounds):  # interleaved: every row once per round
                for row in runs:
                    t0 = time.monotonic()
                    served, policy = (cnn, "always") if row == "cnn" else (hybrid, row)
                    runs[row].append(run(broker.bootstrap, messages, served, args, policy))
                    print(f"round {r + 1} {row}: {runs[row][-1]['rate']:,.0f} alerts/s"
                          f" ({time.monotonic() - t0:.0f} s)", flush=True)  # fmt: skip
    best = {row: max(rs, key=lambda x: x["rate"]) for row, rs in runs.items()}
    base = best["cnn"]
    rows = [(p, best[p]) for p in policies]

    print()
    print("| model, refresh policy | alerts/s | vs CNN | refreshes per classified alert | "
          "ms per refresh | stale outputs |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
    print(f"| shallow CNN | **{base['rate']:,.0f}** | 1 | | | |")
    for policy, r in rows:
        name = "every alert (exact)" if policy == "always" else f"{float(policy):.0%} growth"
        print(
            f"| hybrid, {name} | **{r['rate']:,.1f}** | {r['rate'] / base['rate']:.4f} | "
            f"{r['refreshes'] / max(r['classified'], 1):.3f} | {r['refresh_ms']:.1f} | "
            f"{r['stale']:.0%} |"
        )


if __name__ == "__main__":
    main()
