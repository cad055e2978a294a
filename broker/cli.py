"""dmdt-broker: the streaming classifier's command line.

Each subcommand is one ``add_<name>_parser(subparsers)`` that registers its options and its
handler (``cmd_<name>(args) -> exit code``); `main` only dispatches. ``run`` (the service) is
here; the tools' subcommands (replay, demo, local-kafka, send, read) are broker.tools'
(`broker.tools.cli_replay`, `broker.tools.cli_local`). Kafka settings come from
the environment (``DMDT_*``, ``KAFKA_BOOTSTRAP``; see broker/settings.py) and a few flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from broker.cli_args import add_kafka_args
from broker.tools.cli_local import add_local_kafka_parser, add_read_parser, add_send_parser
from broker.tools.cli_replay import add_demo_parser, add_replay_parser

# ---------------------------------------------------------------- run

RUN_EPILOG = """examples:
  dmdt-broker run --input ztf-alerts:ztf --output dmdt-classifications
  dmdt-broker run --input lc-alerts:lightcurve --model /srv/dmdt-registry   # hot reload
  DMDT_INPUT_TOPICS=ztf-alerts:ztf,rubin-alerts:rubin dmdt-broker run

Every flag has a DMDT_* environment variable (see broker/settings.py); flags win. SIGTERM and
Ctrl-C finish the batch in hand, commit its offsets and leave the group (exit 0).

At start the cluster must answer within DMDT_CONNECT_TIMEOUT_S (30 s) and hold the input, output
and dead-letter topics. Exit status: 0 stopped cleanly; 1 stopped on an error (a delivery or the
state failed: restart it, the batch is redone); 2 bad settings; 3 could not start (Kafka not
answering, credentials refused, a topic missing, the metrics port taken), with one line that
names the setting to change.
"""


def _topic_decoder(text: str) -> tuple[str, str]:
    topic, sep, decoder = text.partition(":")
    if not sep or not topic or not decoder:
        raise argparse.ArgumentTypeError(f"expected TOPIC:DECODER, got {text!r}")
    return topic, decoder


def add_run_parser(sub: Any) -> None:
    """``run``: the long-running consumer."""
    p = sub.add_parser(
        "run",
        help="consume alerts, classify them, publish classifications (the streaming broker)",
        description="Consume alert topics in a consumer group, keep a dmdt histogram per source "
        "and band, classify updated sources in batches and publish one classification per "
        "alert; bad messages go to the dead-letter topic. Metrics, /healthz and /readyz are "
        "served on --metrics-host:--metrics-port.",
        epilog=RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_kafka_args(p)
    p.add_argument(
        "--input",
        action="append",
        type=_topic_decoder,
        metavar="TOPIC:DECODER",
        help="an input topic and its decoder (ztf, rubin, lightcurve); repeat for several "
        "(default: $DMDT_INPUT_TOPICS, else lc-alerts:lightcurve)",
    )
    p.add_argument("--output", dest="output_topic", help="classification topic")
    p.add_argument("--dead-letter", dest="dead_letter_topic", help="dead-letter topic")
    p.add_argument("--group", dest="group_id", help="consumer group id")
    p.add_argument(
        "--model",
        help="'default' (the shipped model), a model directory, or a registry directory "
        "(dmdt-train publish --registry): its CURRENT model is served and watched",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"))
    p.add_argument("--batch-size", type=int, help="messages per batch at most")
    p.add_argument("--batch-wait-ms", type=int, help="longest wait for a batch to fill")
    p.add_argument("--min-points", type=int, help="classify sources with at least N points")
    p.add_argument(
        "--min-probability",
        type=float,
        metavar="P",
        help="publish thresholded_class 'unknown' when a record's top class probability is "
        "below P (default 0.5; 0: never); see docs/calibration.md",
    )
    p.add_argument(
        "--feature-refresh-fraction",
        type=float,
        metavar="F",
        help="hybrid models: recompute a source's features when its points grew by this "
        "fraction since the last refresh (default 0.1)",
    )
    p.add_argument(
        "--feature-refresh-points",
        type=int,
        metavar="K",
        help="hybrid models: also recompute them after K new points (default 0: off)",
    )
    p.add_argument(
        "--feature-refresh-always",
        action="store_true",
        default=None,
        help="hybrid models: recompute them on every batch that adds a point, no budget (exact)",
    )
    p.add_argument(
        "--feature-budget-ms",
        type=int,
        metavar="MS",
        help="hybrid models: most refresh time per batch; sources over it keep older features "
        "(default 500; 0: no limit)",
    )
    p.add_argument(
        "--feature-threads", type=int, metavar="N", help="hybrid models: refresh threads"
    )
    p.add_argument("--metrics-host", help="address of /metrics, /healthz, /readyz")
    p.add_argument(
        "--metrics-port", type=int, help="port of /metrics, /healthz, /readyz (0: any free port)"
    )
    p.add_argument("--schema-registry-url", help="Confluent Schema Registry (Rubin alerts)")
    p.add_argument(
        "--strict", action="store_true", default=None, help="stop on a bad message (tests)"
    )
    p.set_defaults(handler=cmd_run)


def _run_settings(args: argparse.Namespace) -> Any:
    from broker.settings import BrokerSettings

    names = (
        "bootstrap_servers", "output_topic", "dead_letter_topic", "group_id", "model", "device",
        "batch_size", "batch_wait_ms", "min_points", "metrics_host", "metrics_port",
        "schema_registry_url", "strict", "feature_refresh_fraction", "feature_refresh_points",
        "feature_refresh_always", "feature_budget_ms", "feature_threads", "min_probability",
    )  # fmt: skip
    flags = {k: getattr(args, k) for k in names if getattr(args, k, None) is not None}
    if args.input:
        flags["input_topics"] = dict(args.input)
    return BrokerSettings(**flags)


def cmd_run(args: argparse.Namespace) -> int:
    """``run``: consume until SIGTERM / Ctrl-C; 1 when the loop stopped on an error."""
    import signal

    from broker.app import App, DeliveryFailed
    from broker.health import MetricsAddressError
    from broker.kafka import KafkaFatalError
    from broker.startup import StartupError, check_kafka, run_topics
    from broker.store import StateStoreError

    settings = _run_settings(args)
    if sys.stderr.isatty():
        print("dmdt-broker run: loading the model and the dmdt kernels (the first run after an "
              "install compiles the kernels: up to a minute)", file=sys.stderr)  # fmt: skip
    try:
        app = App(settings)  # the model loads (or fails with the artifact's own message)
    except StateStoreError as exc:  # locked by another consumer, unreadable, damaged
        print(f"dmdt-broker run: cannot start: {exc}", file=sys.stderr)
        return 1
    try:
        app.serve_metrics()
    except MetricsAddressError as exc:
        app.close()
        raise StartupError(str(exc)) from None
    served = app.models.current
    inputs = ", ".join(f"{t}:{d}" for t, d in settings.input_topics.items())
    print(
        f"dmdt-broker run: {inputs} -> {settings.output_topic} (dead letters: "
        f"{settings.dead_letter_topic}), group {settings.group_id}, model {served.name} "
        f"{served.version}, metrics on http://{settings.metrics_host}:{app.metrics_port}/metrics",
        file=sys.stderr,
    )
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)  # as Ctrl-C, for now
    try:  # /healthz answers meanwhile: live, not ready
        check_kafka(settings, run_topics(settings))
    except (StartupError, KeyboardInterrupt):
        app.close()
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)

    def stop(signum: int, _frame: Any) -> None:
        print(f"dmdt-broker run: {signal.Signals(signum).name}: draining", file=sys.stderr)
        app.stop()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C interrupts

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        stats = app.run()
    except (DeliveryFailed, KafkaFatalError) as exc:
        print(f"dmdt-broker run: stopped: {exc}", file=sys.stderr)
        return 1
    print(
        f"dmdt-broker run: stopped cleanly: {stats.consumed:,} messages, {stats.classified:,} "
        f"classifications, {stats.dead_lettered:,} dead letters",
        file=sys.stderr,
    )
    return 0


# ---------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="dmdt-broker",
        description=__doc__.splitlines()[0] if __doc__ else None,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_replay_parser(sub)
    add_run_parser(sub)
    add_demo_parser(sub)
    add_local_kafka_parser(sub)
    add_send_parser(sub)
    add_read_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dmdt-broker``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from pydantic import ValidationError

    from broker.startup import EXIT_STARTUP, StartupError

    try:
        return int(args.handler(args))
    except StartupError as exc:
        print(f"dmdt-broker {args.command}: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    except (ValueError, FileNotFoundError, ValidationError) as exc:
        print(f"dmdt-broker {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dmdt-broker {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
