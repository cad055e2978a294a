"""librdkafka configuration for the broker's Kafka clients (consumer, producer, admin).

Every librdkafka key is rendered from `BrokerSettings` (`kafka_config()`), then role defaults,
then the settings' passthrough, then caller overrides; the keys the delivery guarantee rests on
cannot be overridden. Each client gets only the keys librdkafka knows for its role.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import confluent_kafka

from broker.settings import BrokerSettings

log = logging.getLogger(__name__)

CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": True,  # commits only what was stored, every auto.commit.interval.ms
    "auto.commit.interval.ms": 5000,
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
    "enable.partition.eof": False,
}
# Offsets are stored by the app after a batch's outputs are delivered (at-least-once).
CONSUMER_INVARIANTS: dict[str, Any] = {"enable.auto.offset.store": False}
PRODUCER_DEFAULTS: dict[str, Any] = {"linger.ms": 20, "compression.type": "zstd"}
PRODUCER_INVARIANTS: dict[str, Any] = {"enable.idempotence": True, "acks": "all"}


def _norm(value: Any) -> str:
    text = str(value).lower()
    return {"-1": "all", "1": "true", "0": "false"}.get(text, text)


@functools.cache
def property_scopes() -> dict[str, str]:
    """librdkafka's own table of configuration properties: name -> "C" (consumer only), "P"
    (producer only) or "*", read from the library bundled with confluent-kafka
    (``rd_kafka_conf_properties_show``), so it matches the version in use. Empty if the library
    cannot be reached this way (nothing is filtered then)."""
    try:
        folder = Path(confluent_kafka.__file__).parent
        libs = sorted((folder.parent / "confluent_kafka.libs").glob("librdkafka*"))
        lib = ctypes.CDLL(str(libs[0]) if libs else "librdkafka.so.1")
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.fopen.restype = ctypes.c_void_p
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "properties.md")
            fp = libc.fopen(path.encode(), b"w")
            lib.rd_kafka_conf_properties_show(ctypes.c_void_p(fp))
            libc.fclose(ctypes.c_void_p(fp))
            text = Path(path).read_text()
    except (OSError, IndexError, AttributeError) as exc:
        log.debug("librdkafka property scopes unavailable: %s", exc)
        return {}
    scopes: dict[str, str] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 2 and cells[1] in ("C", "P", "*") and cells[0]:
            scopes.setdefault(cells[0], cells[1])
    return scopes


def _for_role(conf: dict[str, Any], role: str) -> dict[str, Any]:
    """Drop the properties librdkafka only knows for the other role (the passthrough setting is
    shared by consumers, producers and admin clients; librdkafka would warn and ignore them)."""
    other = "P" if role == "consumer" else "C"
    scopes = property_scopes()
    return {k: v for k, v in conf.items() if scopes.get(k) != other}


def _render(
    settings: BrokerSettings,
    defaults: Mapping[str, Any],
    invariants: Mapping[str, Any],
    overrides: Mapping[str, Any] | None,
    role: str,
) -> dict[str, Any]:
    merged = {**defaults, **settings.kafka_config(), **(overrides or {})}
    conf: dict[str, Any] = _for_role(merged, role)
    for key, required in invariants.items():
        if key in conf and _norm(conf[key]) != _norm(required):
            raise ValueError(f"{key}={conf[key]!r} is not allowed: the broker needs {required!r}")
        conf[key] = required
    return conf


def consumer_config(
    settings: BrokerSettings,
    *,
    group_id: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """librdkafka consumer config: manual offset store, auto-commit of stored offsets."""
    conf = _render(settings, CONSUMER_DEFAULTS, CONSUMER_INVARIANTS, overrides, "consumer")
    conf["group.id"] = group_id or conf.get("group.id") or settings.group_id
    return conf


def producer_config(
    settings: BrokerSettings, *, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """librdkafka producer config: idempotent, acks=all."""
    return _render(settings, PRODUCER_DEFAULTS, PRODUCER_INVARIANTS, overrides, "producer")
