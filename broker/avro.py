"""Avro plumbing shared by decode and encode: errors, framing, bodies, container files, and the
safety checks for schemas that arrive with data.

Pure: no Kafka import. Every fastavro, struct, zlib or JSON error raised on message bytes is
re-raised as `DecodeError(reason, message) from exc`. Where schemas come from: `broker.registry`.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

import fastavro
import fastavro.schema

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schemas"

# The fixed set of reasons a message is rejected for; dead letters are counted by these.
REASONS = (
    "not_avro",  # not decodable: truncated, garbage, bad container header, unsupported codec
    "bad_magic",  # Confluent framing expected, first byte not 0 or shorter than 5 bytes
    "unknown_schema",  # framing schema id unknown to the registry (local files or HTTP)
    "schema_mismatch",  # valid Avro, but not a shape this decoder reads (or an unsafe schema)
    "missing_field",  # a required value is null or absent
    "invalid_value",  # NaN / inf / negative error, unknown band, ...
    "empty_lightcurve",  # no usable detection at all
    "too_large",  # over a documented size cap
)

# Caps on hostile input (documented in README of schemas/ and in decode.py).
MAX_MESSAGE_BYTES = 8 * 1024 * 1024  # a ZTF alert is ~60 kB, a Rubin alert ~300 kB
MAX_SCHEMA_BYTES = 512 * 1024  # the ZTF writer schema embedded in each message is ~20 kB
MAX_CONTAINER_RECORDS = 16  # ZTF sends one alert per container file
_MAX_HEADER_ENTRIES = 64
_SCHEMA_CACHE_SIZE = 32

_FRAME = struct.Struct(">bI")
_AVRO_MAGIC = b"Obj\x01"
_SYNC_SIZE = 16


class DecodeError(ValueError):
    """A message that cannot be turned into alerts; `reason` is one of REASONS."""

    def __init__(self, reason: str, message: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown DecodeError reason {reason!r}")
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


# Errors fastavro and the standard library raise on bad bytes (fuzzed in tests/test_decode.py).
BAD_BYTES_ERRORS: tuple[type[BaseException], ...] = (
    EOFError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    OverflowError,
    RecursionError,
    struct.error,
    zlib.error,
    AttributeError,
)
SCHEMA_ERRORS: tuple[type[BaseException], ...] = (
    *BAD_BYTES_ERRORS,
    fastavro.schema.SchemaParseException,
)


def frame(schema_id: int, body: bytes) -> bytes:
    """Prefix an Avro body with the Confluent wire-format header (magic 0, big-endian id)."""
    return _FRAME.pack(0, schema_id) + body


def unframe(data: bytes) -> tuple[int, memoryview]:
    """Split a Confluent-framed message into (schema id, Avro body)."""
    if len(data) < _FRAME.size or data[0] != 0:
        raise DecodeError(
            "bad_magic",
            f"not Confluent-framed (length {len(data)}, first byte {data[0] if data else None})",
        )
    _, schema_id = _FRAME.unpack_from(data)
    return schema_id, memoryview(data)[_FRAME.size :]


def check_size(data: bytes, limit: int = MAX_MESSAGE_BYTES) -> None:
    """Reject a message over the size cap before any parsing."""
    if len(data) > limit:
        raise DecodeError("too_large", f"message of {len(data)} bytes exceeds {limit}")


def _padded(data: bytes | memoryview) -> io.BytesIO:
    """A stream over data plus one guard byte.

    fastavro skips the fields a reader schema leaves out with reads that stop silently at the end
    of the stream, so a truncated message could look complete; with the guard byte such a record
    ends past len(data), and a complete one ends exactly at it.
    """
    return io.BytesIO(b"".join((data, b"\0")))


def read_body(body: bytes | memoryview, writer: Any, reader: Any = None) -> Any:
    """Decode one schemaless Avro body that must be consumed exactly."""
    buf = _padded(body)
    try:
        record = fastavro.schemaless_reader(buf, writer, reader)
    except fastavro.read.SchemaResolutionError as exc:
        raise DecodeError("schema_mismatch", str(exc)) from exc
    except BAD_BYTES_ERRORS as exc:
        raise DecodeError("not_avro", f"{type(exc).__name__}: {exc}") from exc
    if buf.tell() != len(body):
        raise DecodeError("not_avro", f"the record ends at byte {buf.tell()} of {len(body)}")
    return record


def write_body(schema: Any, record: Any) -> bytes:
    """Encode one record as a schemaless Avro body."""
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema, record)
    return buf.getvalue()


# ---------------------------------------------------------------- schemas that arrive with data


_ZERO, _FIXED, _OTHER = "zero", "fixed", "other"  # how a type encodes: 0 bytes, fixed width, else
_FIXED_WIDTH = frozenset({"float", "double", "boolean"})


def check_schema_safe(schema: Any) -> None:
    """Reject schemas that let a few bytes cost unbounded time: recursive types, and arrays or
    maps whose items are zero-size or fixed-width.

    An array whose items encode in zero bytes (null, empty record, fixed of size 0) can declare
    2**62 items in 10 bytes; a recursive record can nest until the C stack overflows. Items of
    fixed width only (float, double, boolean, fixed, records of those) are skipped by fastavro with
    seeks that never notice the end of the data, so a field the reader does not read can claim
    2**62 of them and hang the consumer. No ZTF or Rubin schema has such a collection; a message
    whose schema does is rejected (``schema_mismatch``) rather than decoded.
    """
    named: dict[str, str] = {}  # full name -> _ZERO / _FIXED / _OTHER

    def walk(node: Any, namespace: str, stack: tuple[str, ...], depth: int) -> str:
        if depth > 64:
            raise DecodeError("schema_mismatch", "schema nested deeper than 64 levels")
        if isinstance(node, str):
            full = node if "." in node or not namespace else f"{namespace}.{node}"
            if node in stack or full in stack:
                raise DecodeError("schema_mismatch", f"recursive type {node}")
            if full in named:
                return named[full]
            if node in named:
                return named[node]
            if node == "null":
                return _ZERO
            return _FIXED if node in _FIXED_WIDTH else _OTHER  # unknown names fail in parsing
        if isinstance(node, list):
            for branch in node:
                walk(branch, namespace, stack, depth + 1)
            return _OTHER  # a union always writes its branch index (a varint)
        if not isinstance(node, dict):
            raise DecodeError("schema_mismatch", f"bad schema node {type(node).__name__}")
        kind = node.get("type")
        if kind in ("record", "error", "enum", "fixed"):
            name = str(node.get("name", ""))
            ns = str(node.get("namespace", namespace))
            full = name if "." in name or not ns else f"{ns}.{name}"
            if kind == "enum":
                named[full] = _OTHER
            elif kind == "fixed":
                named[full] = _ZERO if node.get("size") == 0 else _FIXED
            else:
                fields = node.get("fields", [])
                if not isinstance(fields, list):
                    raise DecodeError("schema_mismatch", "record fields is not a list")
                inner = (*stack, full, name)
                kinds = {
                    walk(f.get("type") if isinstance(f, dict) else None, ns, inner, depth + 1)
                    for f in fields
                }
                named[full] = _OTHER if _OTHER in kinds else _FIXED if _FIXED in kinds else _ZERO
            return named[full]
        if kind in ("array", "map"):
            items = walk(
                node.get("items" if kind == "array" else "values"), namespace, stack, depth + 1
            )
            if items == _ZERO and kind == "array":
                raise DecodeError("schema_mismatch", "array of zero-size items")
            if items == _FIXED:
                raise DecodeError(
                    "schema_mismatch", f"{kind} of fixed-width items (unbounded skip)"
                )
            return _OTHER
        return walk(kind, namespace, stack, depth + 1)

    walk(schema, "", (), 0)


def parse_untrusted_schema(text: bytes | str) -> Any:
    """Parse a schema that came with a message or from a registry, after the safety checks."""
    if len(text) > MAX_SCHEMA_BYTES:
        raise DecodeError("too_large", f"schema of {len(text)} bytes exceeds {MAX_SCHEMA_BYTES}")
    try:
        raw = json.loads(text)
        check_schema_safe(raw)
        return fastavro.parse_schema(raw)
    except DecodeError:
        raise
    except SCHEMA_ERRORS as exc:
        raise DecodeError("schema_mismatch", f"unreadable schema: {exc}") from exc


# ---------------------------------------------------------------- object container files


def _read_long(buf: bytes, pos: int) -> tuple[int, int]:
    """Read one zig-zag varint long at pos; returns (value, new pos)."""
    shift = 0
    value = 0
    while True:
        if pos >= len(buf):
            raise DecodeError("not_avro", "truncated varint in container header")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), pos
        shift += 7
        if shift > 63:
            raise DecodeError("not_avro", "varint longer than 10 bytes")


def _read_sized(buf: bytes, pos: int, what: str) -> tuple[bytes, int]:
    size, pos = _read_long(buf, pos)
    if size < 0 or pos + size > len(buf):
        raise DecodeError("not_avro", f"bad {what} length {size}")
    return buf[pos : pos + size], pos + size


class SchemaCache:
    """Writer schemas embedded in container files, parsed once per distinct schema text (LRU)."""

    def __init__(self, size: int = _SCHEMA_CACHE_SIZE) -> None:
        self.size = size
        self._parsed: OrderedDict[bytes, Any] = OrderedDict()

    def get(self, text: bytes) -> Any:
        """Parsed schema of a schema text, parsing (and checking) it on first sight only."""
        parsed = self._parsed.get(text)
        if parsed is None:
            parsed = parse_untrusted_schema(text)
            self._parsed[text] = parsed
            if len(self._parsed) > self.size:
                self._parsed.popitem(last=False)
        return parsed


def read_container(
    data: bytes, cache: SchemaCache, reader: Any = None, max_records: int = MAX_CONTAINER_RECORDS
) -> list[Any]:
    """Records of an Avro object container file (codec null or deflate), read with `reader`."""
    if data[:4] != _AVRO_MAGIC:
        raise DecodeError("not_avro", "not an Avro container file (no 'Obj\\x01' magic)")
    pos = 4
    meta: dict[bytes, bytes] = {}
    while True:
        count, pos = _read_long(data, pos)
        if count == 0:
            break
        if count < 0:
            count = -count
            _, pos = _read_long(data, pos)
        if len(meta) + count > _MAX_HEADER_ENTRIES:
            raise DecodeError(
                "not_avro", f"container header with over {_MAX_HEADER_ENTRIES} entries"
            )
        for _ in range(count):
            key, pos = _read_sized(data, pos, "header key")
            meta[key], pos = _read_sized(data, pos, "header value")
    sync = data[pos : pos + _SYNC_SIZE]
    pos += _SYNC_SIZE
    if len(sync) != _SYNC_SIZE:
        raise DecodeError("not_avro", "truncated container header")
    codec = meta.get(b"avro.codec", b"null")
    if codec not in (b"null", b"deflate"):
        raise DecodeError("not_avro", f"unsupported container codec {codec!r}")
    text = meta.get(b"avro.schema")
    if text is None:
        raise DecodeError("not_avro", "container header has no avro.schema")
    writer = cache.get(text)
    records: list[Any] = []
    while pos < len(data):
        count, pos = _read_long(data, pos)
        block, pos = _read_sized(data, pos, "block")
        if data[pos : pos + _SYNC_SIZE] != sync:
            raise DecodeError("not_avro", "container block not followed by the sync marker")
        pos += _SYNC_SIZE
        if count < 0 or len(records) + count > max_records:
            raise DecodeError("too_large", f"container with over {max_records} records")
        if codec == b"deflate":
            block = _inflate(block)
        buf = _padded(block)
        for _ in range(count):
            try:
                records.append(fastavro.schemaless_reader(buf, writer, reader))
            except fastavro.read.SchemaResolutionError as exc:
                raise DecodeError("schema_mismatch", str(exc)) from exc
            except BAD_BYTES_ERRORS as exc:
                raise DecodeError("not_avro", f"{type(exc).__name__}: {exc}") from exc
        if buf.tell() != len(block):
            raise DecodeError(
                "not_avro", f"records end at byte {buf.tell()} of a {len(block)}-byte block"
            )
    return records


def _inflate(block: bytes) -> bytes:
    inflater = zlib.decompressobj(-15)
    try:
        out = inflater.decompress(block, MAX_MESSAGE_BYTES)
    except zlib.error as exc:
        raise DecodeError("not_avro", f"bad deflate block: {exc}") from exc
    if inflater.unconsumed_tail:
        raise DecodeError("too_large", f"deflate block inflates beyond {MAX_MESSAGE_BYTES} bytes")
    return out
