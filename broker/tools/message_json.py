"""Any message of the broker's topics as one JSON object, for `dmdt-broker read`.

What a message is comes from its bytes, not from the topic:

- Confluent framing (byte 0 = 0, bytes 1-4 the schema id) with an id of ``schemas/registry.json``:
  our own records (classification, dead_letter, lightcurve_alert, and any version or schema
  registered later), read with the schema they were written with; ``format`` is
  ``<name>/<version>``.
- Confluent framing with another id: a Rubin alert, its schema from the official files in
  ``schemas/rubin/`` (or a Schema Registry); ``format`` is ``rubin/<major>.<minor>``.
- An Avro object container file: ZTF alerts (``format`` ``ztf``, one object per alert).

Values become JSON as they are, except: bytes as ``{"bytes": n, "base64": ...}`` (the first
``bytes_limit`` of them, with ``"truncated": true`` when cut; a dead letter's ``raw`` message, a
ZTF cutout), timestamps as ISO 8601 UTC strings, NaN and infinities as the strings ``"NaN"``,
``"Infinity"``, ``"-Infinity"``. A message none of these reads is printed with ``format`` null,
the reason, and its bytes.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broker.avro import SCHEMA_DIR, DecodeError, SchemaCache, read_body, read_container, unframe
from broker.decode import SchemaRegistryUnavailable
from broker.decode_rubin import RubinDecoder
from broker.registry import local_registry

if TYPE_CHECKING:
    from broker.kafka import Record

DEFAULT_BYTES_LIMIT = 64


def _bytes(value: bytes, limit: int) -> dict[str, Any]:
    shown = value if limit < 0 else value[:limit]
    out: dict[str, Any] = {"bytes": len(value), "base64": base64.b64encode(shown).decode()}
    if len(shown) < len(value):
        out["truncated"] = True
    return out


def jsonable(value: Any, bytes_limit: int = DEFAULT_BYTES_LIMIT) -> Any:
    """A decoded Avro value in JSON's types (see the module docstring)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v, bytes_limit) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, bytes_limit) for v in value]
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytes(bytes(value), bytes_limit)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return value


class MessageReader:
    """Decodes message values of any kind the broker reads or writes (one instance per run)."""

    def __init__(
        self,
        schema_dir: Path = SCHEMA_DIR,
        schema_registry_url: str | None = None,
        bytes_limit: int = DEFAULT_BYTES_LIMIT,
    ) -> None:
        self.registry = local_registry(schema_dir)
        self.rubin = RubinDecoder(schema_registry_url, schema_dir)
        self.bytes_limit = bytes_limit

    def decode(self, value: bytes | None) -> tuple[str | None, Any]:
        """(format, decoded value); format None (and the reason as the value) when unreadable."""
        if value is None:
            return "tombstone", None
        try:
            if value[:4] == b"Obj\x01":
                return self._container(value)
            schema_id, body = unframe(value)
            entry = self.registry.entry(schema_id)
            if entry is not None:
                record = read_body(body, self.registry.schema(schema_id))
                return f"{entry['name']}/{entry['version']}", record
            major, minor = divmod(schema_id, 100)
            record = read_body(body, self.rubin.writer_schema(schema_id))
            return f"rubin/{major}.{minor}", record
        except (DecodeError, SchemaRegistryUnavailable) as exc:
            return None, f"{exc} (neither a record of schemas/registry.json, a Rubin alert nor "\
                "an Avro container file)"  # fmt: skip

    def _container(self, value: bytes) -> tuple[str, Any]:
        records = read_container(value, SchemaCache())
        alerts = [r for r in records if isinstance(r, dict)]
        fmt = "ztf" if alerts and {"objectId", "candid"} <= set(alerts[0]) else "avro-container"
        return fmt, records[0] if len(records) == 1 else records

    def to_json(self, record: Record, fields: Sequence[str] | None = None) -> dict[str, Any]:
        """One consumed message as a JSON-ready object: where it was, its key, its value."""
        fmt, value = self.decode(record.value)
        out: dict[str, Any] = {
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "timestamp": None
            if record.timestamp_ms is None
            else jsonable(dt.datetime.fromtimestamp(record.timestamp_ms / 1000, dt.UTC)),
            "key": _key(record.key, self.bytes_limit),
            "format": fmt,
        }
        if fmt is None:
            out["error"] = value
            out["value"] = None if record.value is None else _bytes(record.value, self.bytes_limit)
            return out
        if fields and isinstance(value, dict):
            value = {k: value[k] for k in fields if k in value}
        out["value"] = jsonable(value, self.bytes_limit)
        return out

    def json_line(self, record: Record, fields: Sequence[str] | None = None) -> str:
        """`to_json` as one line of JSON."""
        return json.dumps(self.to_json(record, fields), separators=(",", ":"), allow_nan=False)


def _key(key: bytes | None, limit: int) -> Any:
    if key is None:
        return None
    try:
        return key.decode()
    except UnicodeDecodeError:
        return _bytes(key, limit)
