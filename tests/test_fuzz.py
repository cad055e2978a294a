"""Hostile messages against the three decoders, beyond tests/test_decode.py's fuzzing.

tests/test_decode.py already fuzzes random bytes and byte-level mutations of real messages
(flip, set, cut, insert) with a time bound. This file adds what a hostile producer can do on
purpose, and checks each message for all of:

- only `DecodeError` (with a known reason) or well-formed alerts come out;
- bounded time and bounded memory (tracemalloc peak) per message, whatever sizes it claims;
- nothing is executed or reached: no exec/compile/subprocess/pickle/socket audit event
  (`sys.addaudithook`) while a decoder runs.

Inputs: huge zig-zag length prefixes spliced anywhere into real messages; ZTF containers whose
embedded writer schema is generated (nested records, arrays, maps, unions, fixed, enums, logical
types, recursive and undefined names) with random data; Rubin frames with any schema id and
bodies; Rubin and lightcurve records re-encoded with extreme values; deflate bombs; messages at
the size cap.
"""

from __future__ import annotations

import json
import math
import struct
import sys
import threading
import time
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.avro import MAX_MESSAGE_BYTES, REASONS, frame, write_body
from broker.decode import DecodedAlert, DecodeError, make_decoder
from broker.encode import encode_record
from broker.tools.testing import rubin_messages, ztf_messages

DECODERS = ("ztf", "rubin", "lightcurve")
MAX_SECONDS = 2.0  # per message, with tracemalloc on (it slows Python down about 2x)
# Peak memory per message: a constant (the deflate cap, a few copies) plus a small multiple of
# the message itself; never what a length prefix claims.
MEMORY_CONSTANT = 3 * MAX_MESSAGE_BYTES
MEMORY_PER_BYTE = 4
# Audit events that would mean a message made the process run or reach something.
FORBIDDEN_EVENTS = (
    "exec",
    "compile",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
    "os.fork",
    "subprocess.Popen",
    "pickle.find_class",
    "marshal.loads",
    "ctypes.",
    "socket.",
    "urllib.Request",
    "http.client.connect",
    "webbrowser.open",
)
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# ---------------------------------------------------------------- the checks


class _Audit:
    """Records the audit events of the thread that is decoding (the hook stays; it is cheap)."""

    installed = False
    local = threading.local()

    def __init__(self) -> None:
        if not _Audit.installed:
            sys.addaudithook(_Audit._hook)
            _Audit.installed = True
        self.events: list[str] = []

    @staticmethod
    def _hook(event: str, args: tuple[Any, ...]) -> None:
        events = getattr(_Audit.local, "events", None)
        if events is not None:
            events.append(event)

    def __enter__(self) -> _Audit:
        _Audit.local.events = self.events
        return self

    def __exit__(self, *exc: object) -> None:
        _Audit.local.events = None


def check_decoder(decoder: Any, data: bytes) -> str | None:
    """Decode hostile bytes under every bound; the DecodeError reason, or None on success."""
    audit = _Audit()
    tracemalloc.start()
    started = time.perf_counter()
    reason = None
    try:
        with audit:
            try:
                alerts = decoder(data)
            except DecodeError as exc:
                reason = str(exc).split(":", 1)[0]
                alerts = []
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert reason is None or reason in REASONS, reason
    assert elapsed < MAX_SECONDS, f"{elapsed:.2f} s for a {len(data)}-byte message"
    budget = MEMORY_CONSTANT + MEMORY_PER_BYTE * len(data)
    assert peak < budget, f"peak {peak} bytes for a {len(data)}-byte message"
    reached = [e for e in audit.events if e.startswith(FORBIDDEN_EVENTS)]
    assert not reached, f"decoding reached {reached}"
    for a in alerts:
        assert isinstance(a, DecodedAlert)
        assert a.n + a.dropped.total() > 0  # every alert accounts for a detection
        assert a.source_id
        assert a.t.shape == a.m.shape == a.err.shape == (a.n,)
        assert np.isfinite(a.t).all()
        assert np.isfinite(a.m).all()
        assert np.isfinite(a.err).all()
        assert (a.err >= 0).all()
        assert (np.diff(a.t) >= 0).all()
        assert math.isfinite(a.alert_time)
    return reason


@pytest.fixture(scope="module")
def decoders() -> dict[str, Any]:
    """One decoder per name, warmed up (schemas parsed, lazy imports done) on a real message."""
    return {name: make_decoder(name) for name in DECODERS}


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _container(schema: Any, block: bytes, count: int = 1, codec: bytes = b"null") -> bytes:
    """A hand-made Avro container file: any schema text, any block bytes, any count."""
    text = schema if isinstance(schema, bytes) else json.dumps(schema).encode()
    entries = [(b"avro.schema", text), (b"avro.codec", codec)]
    header = b"Obj\x01" + _zigzag(len(entries))
    for key, value in entries:
        header += _zigzag(len(key)) + key + _zigzag(len(value)) + value
    sync = b"0123456789abcdef"
    return header + b"\x00" + sync + _zigzag(count) + _zigzag(len(block)) + block + sync


# ---------------------------------------------------------------- real messages to start from


@pytest.fixture(scope="module")
def rubin_alert(rubin_file: Path) -> tuple[dict[str, Any], Any, bytes]:
    """(record, parsed writer schema, framed message) of the smallest real Rubin alert."""
    alert, message = min(rubin_messages(rubin_file), key=lambda am: len(am[1]))
    from broker.registry import rubin_local_schema

    return alert, rubin_local_schema(1000), message


LIGHTCURVE = {
    "alert_id": 7,
    "source_id": "CSS_1101014036588",
    "survey": "crts",
    "band": "V",
    "ra": 37.0,
    "dec": 1.8,
    "alert_time": 53715.0,
    "detections": [{"mjd": 53710.0 + i, "mag": 16.0, "magerr": 0.07} for i in range(6)],
    "label": "RRc",
}


@pytest.fixture(scope="module")
def seeds(
    ztf_files: list[Path], rubin_alert: tuple[dict[str, Any], Any, bytes], decoders: dict[str, Any]
) -> dict[str, bytes]:
    """One real message per decoder (decoded once, which also warms the decoders up)."""
    small = min(ztf_files, key=lambda p: p.stat().st_size)
    out = {
        "ztf": next(ztf_messages(small)),
        "rubin": rubin_alert[2],
        "lightcurve": encode_record("lightcurve_alert", LIGHTCURVE),
    }
    for name, message in out.items():
        assert check_decoder(decoders[name], message) is None, name
    return out


# ---------------------------------------------------------------- huge length prefixes

HUGE = st.one_of(
    st.sampled_from(
        [2**31 - 1, 2**31, 2**32, 2**53, 2**62, 2**63 - 1, -1, -(2**31), -(2**63), 10**9]
    ),
    st.integers(-(2**63), 2**63 - 1),
)


@pytest.mark.parametrize("name", DECODERS)
@FUZZ
@given(
    splices=st.lists(st.tuples(st.integers(0, 2**31), HUGE, st.booleans()), min_size=1, max_size=3)
)
def test_huge_length_prefixes_spliced_into_real_messages(
    name: str, splices: list[tuple[int, int, bool]], seeds: dict[str, bytes], decoders: Any
) -> None:
    """A varint claiming 2**63 bytes or items, inserted or overwriting, anywhere in a message."""
    data = bytearray(seeds[name])
    for position, value, overwrite in splices:
        i = position % (len(data) + 1)
        varint = _zigzag(value)
        data[i : i + (len(varint) if overwrite else 0)] = varint
    check_decoder(decoders[name], bytes(data))


# ---------------------------------------------------------------- hostile embedded schemas

NAMES = st.sampled_from(["a", "b", "node", "alert", "ztf.alert.candidate", "x.y.z"])
PRIMITIVES = st.sampled_from(
    ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
)
LOGICAL = st.sampled_from(
    [
        {"type": "bytes", "logicalType": "decimal", "precision": 4000, "scale": 2},
        {"type": "fixed", "name": "dec", "size": 16, "logicalType": "decimal", "precision": 38},
        {"type": "int", "logicalType": "date"},
        {"type": "long", "logicalType": "timestamp-micros"},
        {"type": "long", "logicalType": "timestamp-millis"},
        {"type": "int", "logicalType": "time-millis"},
        {"type": "string", "logicalType": "uuid"},
    ]
)


def _record(name: str, fields: list[tuple[str, Any]]) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": [{"name": n, "type": t} for n, t in fields]}


SCHEMAS = st.recursive(
    PRIMITIVES | NAMES | LOGICAL,
    lambda inner: st.one_of(
        st.builds(lambda t: {"type": "array", "items": t}, inner),
        st.builds(lambda t: {"type": "map", "values": t}, inner),
        st.lists(inner, min_size=1, max_size=4),  # unions, valid or not
        st.builds(
            _record,
            NAMES,
            st.lists(st.tuples(st.sampled_from(["f", "g", "next", "jd"]), inner), max_size=4),
        ),
        st.builds(lambda n, s: {"type": "fixed", "name": n, "size": s}, NAMES, st.integers(0, 9)),
        st.builds(
            lambda n, s: {"type": "enum", "name": n, "symbols": s},
            NAMES,
            st.lists(st.sampled_from(["A", "B", "C"]), max_size=3),
        ),
    ),
    max_leaves=12,
)

POINT = [
    {"name": n, "type": t}
    for n, t in (("jd", "double"), ("fid", "int"), ("magpsf", "float"), ("sigmapsf", "float"))
]
ZTF_LIKE = {
    "type": "record",
    "name": "alert",
    "namespace": "ztf",
    "fields": [
        {"name": "objectId", "type": "string"},
        {"name": "candid", "type": "long"},
        {"name": "candidate", "type": {"type": "record", "name": "candidate", "fields": POINT}},
        {
            "name": "prv_candidates",
            "type": [
                "null",
                {
                    "type": "array",
                    "items": {"type": "record", "name": "prv_candidate", "fields": POINT},
                },
            ],
        },
    ],
}
ZTF_RECORD = {
    "objectId": "ZTF18abcdefg",
    "candid": 1,
    "prv_candidates": [{"jd": 2458311.5, "fid": 2, "magpsf": 18.5, "sigmapsf": 0.1}],
    "candidate": {"jd": 2458312.5, "fid": 1, "magpsf": 18.0, "sigmapsf": 0.1},
}


# ---- Formerly known decoder issues, found by this file and fixed in broker/avro.py and
# broker/decode.py; the regression tests below keep them fixed.
_EOF_UNCHECKED = {"float", "double", "boolean"}


def _named(schema: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("record", "fixed", "enum") and "name" in node:
                out.setdefault(str(node["name"]), node)
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(schema)
    return out


def unbounded_skip(schema: Any) -> bool:
    """Whether the schema has an array or map whose items fastavro skips without an end check.

    Skipping items made only of float/double/boolean/fixed seeks past the end of the data
    without noticing, so a block count of 2**62 in a few bytes costs 2**62 seeks (a hang).
    """
    named = _named(schema)

    def unchecked(node: Any, seen: tuple[str, ...]) -> bool:
        if isinstance(node, str):
            if node in _EOF_UNCHECKED:
                return True
            short = node.rsplit(".", 1)[-1]
            for key in (node, short):
                if key in named and key not in seen:
                    return unchecked(named[key], (*seen, key))
            return False
        if isinstance(node, dict):
            kind = node.get("type")
            if kind == "fixed":
                return bool(node.get("size", 0))
            if kind == "record":
                fields = node.get("fields", [])
                return bool(fields) and all(unchecked(f["type"], seen) for f in fields)
            if kind in ("array", "map", "enum"):
                return False
            return unchecked(kind, seen)
        return False

    def walk(node: Any) -> bool:
        if isinstance(node, list):
            return any(walk(x) for x in node)
        if not isinstance(node, dict):
            return False
        kind = node.get("type")
        if kind in ("array", "map"):
            items = node.get("items" if kind == "array" else "values")
            return unchecked(items, ()) or walk(items)
        if kind == "record":
            return any(walk(f["type"]) for f in node.get("fields", []))
        return walk(kind)

    return walk(schema)


@FUZZ
@given(
    schema=SCHEMAS,
    block=st.binary(max_size=512),
    count=st.one_of(st.integers(0, 20), st.sampled_from([2**31, 2**62])),
)
def test_ztf_containers_with_generated_writer_schemas(
    schema: Any, block: bytes, count: int, decoders: Any
) -> None:
    """Any writer schema the producer embeds, with any data: DecodeError or alerts, bounded."""
    check_decoder(decoders["ztf"], _container(schema, block, count))


@FUZZ
@given(extra=SCHEMAS, tail=st.binary(max_size=256), count=st.integers(1, 3))
def test_ztf_alerts_with_a_hostile_extra_field(
    extra: Any, tail: bytes, count: int, decoders: Any
) -> None:
    """A real-shaped alert plus a field of a generated type the reader skips, with any bytes."""
    writer = json.loads(json.dumps(ZTF_LIKE))
    writer["fields"].append({"name": "extra", "type": extra})
    body = write_body(fastavro.parse_schema(ZTF_LIKE), ZTF_RECORD) + tail
    check_decoder(decoders["ztf"], _container(writer, body * count, count))


def test_generated_schemas_do_reach_the_decoder(decoders: Any) -> None:
    """The extra-field path does decode when the bytes fit: the fuzzing is not all rejections."""
    writer = json.loads(json.dumps(ZTF_LIKE))
    writer["fields"].append({"name": "extra", "type": {"type": "map", "values": "long"}})
    body = write_body(fastavro.parse_schema(ZTF_LIKE), ZTF_RECORD) + _zigzag(1)
    body += _zigzag(1) + b"k" + _zigzag(2**40) + b"\x00"
    assert check_decoder(decoders["ztf"], _container(writer, body)) is None


def test_skipped_array_of_doubles_is_refused_not_skipped(decoders: Any) -> None:
    writer = json.loads(json.dumps(ZTF_LIKE))
    writer["fields"].append({"name": "extra", "type": {"type": "array", "items": "double"}})
    assert unbounded_skip(writer)
    body = write_body(fastavro.parse_schema(ZTF_LIKE), ZTF_RECORD)
    small = _container(writer, body + _zigzag(1000))
    large = _container(writer, body + _zigzag(10_000_000))  # 2**62 would never return
    started = time.perf_counter()
    assert check_decoder(decoders["ztf"], small) is not None
    small_s = time.perf_counter() - started
    started = time.perf_counter()
    assert check_decoder(decoders["ztf"], large) is not None
    large_s = time.perf_counter() - started
    assert large_s < small_s + 0.05, f"{large_s:.2f} s for a claim of 10**7 items"


def test_top_level_fixed_writer_schema_is_a_decode_error(decoders: Any) -> None:
    message = _container({"type": "fixed", "name": "alert", "size": 2}, b"ab")
    assert check_decoder(decoders["ztf"], message) is not None


# ---------------------------------------------------------------- Rubin and lightcurve records

FLOATS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0.0, -0.0, 1e-300, -1.0, 5e-324, 1e308]),
)
# Mostly plausible values, so that many records get past validation into the arrays.
PLAUSIBLE = st.one_of(st.floats(1e-3, 1e7), st.floats(1e-3, 1e7), FLOATS)


@FUZZ
@given(
    schema_id=st.one_of(
        st.just(1000), st.sampled_from([0, 999, 1001, 100, 2**32 - 1]), st.integers(0, 2**32 - 1)
    ),
    body=st.binary(max_size=1024),
)
def test_rubin_frames_with_any_schema_id_and_body(
    schema_id: int, body: bytes, decoders: Any
) -> None:
    check_decoder(decoders["rubin"], frame(schema_id, body))


@FUZZ
@given(
    flux=st.none() | PLAUSIBLE,
    flux_err=st.none() | PLAUSIBLE,
    mjd=PLAUSIBLE,
    band=st.sampled_from(list("ugrizy")) | st.none() | st.text(max_size=3),
    copies=st.integers(0, 40),
    object_id=st.none() | st.integers(-(2**63), 2**63 - 1),
)
def test_rubin_records_with_extreme_values(
    flux: float | None,
    flux_err: float | None,
    mjd: float,
    band: str | None,
    copies: int,
    object_id: int | None,
    rubin_alert: tuple[dict[str, Any], Any, bytes],
    decoders: Any,
) -> None:
    """A real Rubin alert re-encoded with extreme fluxes, times, bands and history lengths."""
    alert, schema, _ = rubin_alert
    record = dict(alert)
    source = dict(alert["diaSource"])
    source.update(psfFlux=flux, psfFluxErr=flux_err, midpointMjdTai=mjd, band=band)
    source["diaObjectId"] = object_id
    record["diaSource"] = source
    record["prvDiaSources"] = [source] * copies
    check_decoder(decoders["rubin"], frame(1000, write_body(schema, record)))


@FUZZ
@given(
    source_id=st.text(max_size=64),
    band=st.text(max_size=4),
    coords=st.tuples(st.none() | PLAUSIBLE, st.none() | PLAUSIBLE),
    alert_time=PLAUSIBLE,
    points=st.lists(st.tuples(PLAUSIBLE, PLAUSIBLE, PLAUSIBLE), max_size=40),
    alert_id=st.integers(-(2**63), 2**63 - 1),
)
def test_lightcurve_records_with_extreme_values(
    source_id: str,
    band: str,
    coords: tuple[float | None, float | None],
    alert_time: float,
    points: list[tuple[float, float, float]],
    alert_id: int,
    decoders: Any,
) -> None:
    record = {
        **LIGHTCURVE,
        "alert_id": alert_id,
        "source_id": source_id,
        "band": band,
        "ra": coords[0],
        "dec": coords[1],
        "alert_time": alert_time,
        "detections": [{"mjd": t, "mag": m, "magerr": e} for t, m, e in points],
    }
    check_decoder(decoders["lightcurve"], encode_record("lightcurve_alert", record))


# ---------------------------------------------------------------- bombs and caps


def _deflate_chunks(total: int, chunk: bytes = b"\0" * (1 << 20)) -> Iterator[bytes]:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    for _ in range(total // len(chunk)):
        yield compressor.compress(chunk)
    yield compressor.flush()


def test_deflate_bomb_is_capped(decoders: Any) -> None:
    """A 1 GiB-of-zeros deflate block (about 1 MB on the wire) stops at the inflate cap."""
    block = b"".join(_deflate_chunks(1 << 30))
    assert len(block) < MAX_MESSAGE_BYTES
    message = _container(ZTF_LIKE, block, 1, codec=b"deflate")
    assert check_decoder(decoders["ztf"], message) == "too_large"


def test_messages_at_and_over_the_size_cap(seeds: dict[str, bytes], decoders: Any) -> None:
    for name, seed in seeds.items():
        padded = seed + b"\x01" * (MAX_MESSAGE_BYTES - len(seed))
        assert len(padded) == MAX_MESSAGE_BYTES
        assert check_decoder(decoders[name], padded) is not None  # trailing bytes: rejected
        assert check_decoder(decoders[name], padded + b"\x01") == "too_large"


def test_many_detections_stop_at_the_cap(decoders: Any) -> None:
    from broker.decode import MAX_DETECTIONS

    record = {
        **LIGHTCURVE,
        "detections": [
            {"mjd": 50000.0 + i, "mag": 16.0, "magerr": 0.1} for i in range(MAX_DETECTIONS + 1)
        ],
    }
    assert check_decoder(decoders["lightcurve"], encode_record("lightcurve_alert", record)) == (
        "too_large"
    )


def test_the_checks_catch_what_they_claim() -> None:
    """The bounds are live: a decoder that allocates, stalls or executes is caught."""

    def hog(data: bytes) -> list[DecodedAlert]:
        _ = bytearray(MEMORY_CONSTANT + 1)
        raise DecodeError("too_large", "hog")

    def runs(data: bytes) -> list[DecodedAlert]:
        exec("x = 1")
        raise DecodeError("not_avro", "runs")

    def crashes(data: bytes) -> list[DecodedAlert]:
        return [struct.unpack(">I", data)]  # type: ignore[list-item]

    with pytest.raises(AssertionError, match="peak"):
        check_decoder(hog, b"")
    with pytest.raises(AssertionError, match="reached"):
        check_decoder(runs, b"")
    with pytest.raises(struct.error):
        check_decoder(crashes, b"")
