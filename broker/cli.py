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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
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
        "progress": not args.quiet,
    }
    if to_kafka:
        from broker.kafka import KafkaFatalError

        settings = _settings(args)
        topic = _replay_topic(args, settings, source.payload)
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dmdt-broker``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from pydantic import ValidationError

    try:
        return int(args.handler(args))
    except (ValueError, FileNotFoundError, ValidationError) as exc:
        print(f"dmdt-broker {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dmdt-broker {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
