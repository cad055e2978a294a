"""Arguments the ``dmdt-broker`` subcommands share: the Kafka flags and the settings they make,
number parsers, and the topic a replay or a send writes to."""

from __future__ import annotations

import argparse
from typing import Any


def settings_from(args: argparse.Namespace) -> Any:
    """BrokerSettings from the environment, with the flags given on the command line."""
    from broker.settings import BrokerSettings

    flags = {"bootstrap_servers": getattr(args, "bootstrap_servers", None)}
    return BrokerSettings(**{k: v for k, v in flags.items() if v is not None})


def add_kafka_args(p: argparse.ArgumentParser) -> None:
    """``--bootstrap-servers`` (the rest of the Kafka settings come from DMDT_* variables)."""
    p.add_argument(
        "--bootstrap-servers",
        default=None,
        metavar="HOST:PORT",
        help="Kafka bootstrap servers (default: $DMDT_BOOTSTRAP_SERVERS, else $KAFKA_BOOTSTRAP, "
        "else 127.0.0.1:9092); security settings come from DMDT_* variables",
    )


def positive(text: str) -> float:
    """An argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def non_negative(text: str) -> float:
    """An argparse type: a number >= 0 ('inf' is accepted)."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def replay_topic(args: argparse.Namespace, settings: Any, payload: str) -> str:
    """``--topic``, else the input topic of DMDT_INPUT_TOPICS whose decoder reads ``payload``."""
    if args.topic:
        return str(args.topic)
    for topic, decoder in settings.input_topics.items():
        if decoder == payload:
            return str(topic)
    raise ValueError(
        f"no --topic given and no DMDT_INPUT_TOPICS topic has decoder {payload!r}; "
        f"configured: {settings.input_topics}"
    )
