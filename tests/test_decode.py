"""Decoders on real ZTF and Rubin alerts, our own schema, and hostile input."""

from __future__ import annotations

import io
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import fastavro
import numpy as np
import pytest
from fastavro.schema import to_parsing_canonical_form
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.avro import MAX_MESSAGE_BYTES, frame, write_body
from broker.decode import (
    MAX_DETECTIONS,
    REASONS,
    DecodedAlert,
    DecodeError,
    SchemaRegistryUnavailable,
    make_decoder,
)
from broker.decode_lightcurve import LightcurveDecoder
from broker.decode_rubin import RubinDecoder
from broker.decode_ztf import ZtfDecoder
from broker.encode import decode_lightcurve_alert, encode_lightcurve_alert, encode_record
from broker.registry import rubin_local_schema
from broker.tools.testing import free_port, rubin_messages, ztf_messages

ZTF_FID = {"g": 1, "r": 2, "i": 3}


def _reason(decoder: Any, data: bytes) -> str:
    with pytest.raises(DecodeError) as info:
        decoder(data)
    assert info.value.reason in REASONS
    return info.value.reason


def _container(schema: dict[str, Any], records: list[dict[str, Any]]) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), records, codec="null")
    return out.getvalue()


@pytest.fixture(scope="module")
def ztf_alert(ztf_files: list[Path]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(writer schema, record) of a real ZTF alert with history in more than one band."""
    for path in ztf_files:
        with path.open("rb") as fh:
            reader = fastavro.reader(fh)
            for record in reader:
                fids = {p["fid"] for p in record["prv_candidates"] or [] if p.get("magpsf")}
                if len(fids | {record["candidate"]["fid"]}) > 1:
                    return reader.writer_schema, record  # type: ignore[return-value]
    pytest.skip("no multi-band ZTF alert")


# ---------------------------------------------------------------- ZTF


def test_ztf_every_real_alert(ztf_files: list[Path]) -> None:
    decoder = ZtfDecoder()
    n_alerts = 0
    for path in ztf_files:
        with path.open("rb") as fh:
            records = list(fastavro.reader(fh))
        for message, record in zip(ztf_messages(path), records, strict=True):
            alerts = decoder(message)
            n_alerts += 1
            points = [record["candidate"], *(record["prv_candidates"] or [])]
            expected = Counter(p["fid"] for p in points if p.get("magpsf") is not None)
            # every detection is a point of each kind, or counted with the reason it is not
            for a in alerts:
                assert a.other is not None
                for kind in (a.photometry, a.other.kind):
                    got = a.points(kind)
                    assert got is not None
                    assert got.n + sum(got.dropped.values()) == expected[ZTF_FID[a.band]]
            assert {ZTF_FID[a.band] for a in alerts} == set(expected), path.name
            cand = record["candidate"]
            for a in alerts:
                assert (a.alert_id, a.source_id, a.survey) == (
                    record["candid"],
                    record["objectId"],
                    "ztf",
                )
                assert a.alert_time == cand["jd"] - 2400000.5
                assert (a.ra, a.dec) == (cand["ra"], cand["dec"])
                assert a.t.dtype == a.m.dtype == a.err.dtype == np.float64
                assert (np.diff(a.t) >= 0).all()
            assert alerts[0].band == {1: "g", 2: "r", 3: "i"}[cand["fid"]]  # trigger band first
    assert n_alerts >= 425  # 418 alerts of 2018-07-13 + 3 official + 4 Fink samples


def test_ztf_values_match_the_record(ztf_alert: tuple[dict[str, Any], dict[str, Any]]) -> None:
    """Total points are DC magnitudes computed by hand, point by point, from the record's
    magnr, magpsf, isdiffpos; difference points are magpsf of the positive differences."""
    schema, record = ztf_alert
    alerts = ZtfDecoder()(_container(schema, [record]))
    assert len(alerts) > 1
    for a in alerts:
        dets = [p for p in [record["candidate"], *record["prv_candidates"]]
                if p.get("magpsf") is not None and p["fid"] == ZTF_FID[a.band]]  # fmt: skip
        total = []
        for p in dets:
            if p["distnr"] is None or not 0 <= p["distnr"] < 1.4:
                continue
            sign = 1.0 if p["isdiffpos"] in ("t", "1") else -1.0
            flux = 10 ** (-0.4 * p["magnr"]) + sign * 10 ** (-0.4 * p["magpsf"])
            err = 10 ** (-0.4 * p["magpsf"]) * p["sigmapsf"] / flux
            total.append((p["jd"] - 2400000.5, -2.5 * math.log10(flux), err))
        difference = sorted((p["jd"] - 2400000.5, p["magpsf"], p["sigmapsf"])
                            for p in dets if p["isdiffpos"] in ("t", "1"))  # fmt: skip
        for kind, want in (("total", sorted(total)), ("difference", difference)):
            got = a.points(kind)
            assert got is not None
            assert len(want) == got.n
            np.testing.assert_array_equal(got.t, [w[0] for w in want])
            np.testing.assert_allclose(got.m, [w[1] for w in want], rtol=1e-12)
            np.testing.assert_allclose(got.err, [w[2] for w in want], rtol=1e-12)


def test_ztf_bad_values(ztf_alert: tuple[dict[str, Any], dict[str, Any]]) -> None:
    schema, record = ztf_alert
    decoder = ZtfDecoder()

    def with_candidate(**changes: Any) -> bytes:
        return _container(schema, [{**record, "candidate": {**record["candidate"], **changes}}])

    assert _reason(decoder, with_candidate(magpsf=math.nan)) == "invalid_value"
    assert _reason(decoder, with_candidate(jd=math.inf)) == "invalid_value"
    assert _reason(decoder, with_candidate(sigmapsf=-0.1)) == "invalid_value"
    assert _reason(decoder, with_candidate(fid=7)) == "invalid_value"
    no_history = {
        **record,
        "prv_candidates": [{**p, "magpsf": None} for p in record["prv_candidates"]],
    }
    assert len(decoder(_container(schema, [no_history]))) == 1  # the candidate alone
    first = record["prv_candidates"][0]
    bad_sigma = {**record, "prv_candidates": [{**first, "magpsf": 18.0, "sigmapsf": None}]}
    assert _reason(decoder, _container(schema, [bad_sigma])) == "missing_field"


def test_ztf_schema_checks(ztf_alert: tuple[dict[str, Any], dict[str, Any]]) -> None:
    schema, record = ztf_alert
    decoder = ZtfDecoder()
    # A valid container of some other schema.
    other = {"type": "record", "name": "x", "fields": [{"name": "a", "type": "int"}]}
    assert _reason(decoder, _container(other, [{"a": 1}])) == "schema_mismatch"
    # A nullable objectId that is null.
    loose = json.loads(json.dumps(schema))
    for field in loose["fields"]:
        if field["name"] == "objectId":
            field["type"] = ["null", "string"]
    assert _reason(decoder, _container(loose, [{**record, "objectId": None}])) == "missing_field"
    # An empty container.
    assert _reason(decoder, _container(schema, [])) == "empty_lightcurve"
    # Too many alerts in one container.
    assert _reason(decoder, _container(schema, [record] * 17)) == "too_large"


def _zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _raw_container(schema: Any, block: bytes, count: int = 1) -> bytes:
    """A hand-made container file: any schema text, any block bytes."""
    text = schema if isinstance(schema, bytes) else json.dumps(schema).encode()
    sync = b"0123456789abcdef"
    header = b"Obj\x01" + _zigzag(1) + _zigzag(11) + b"avro.schema" + _zigzag(len(text)) + text
    return header + b"\x00" + sync + _zigzag(count) + _zigzag(len(block)) + block + sync


def test_ztf_hostile_containers() -> None:
    decoder = ZtfDecoder()
    nulls = {
        "type": "record",
        "name": "x",
        "fields": [{"name": "a", "type": {"type": "array", "items": "null"}}],
    }
    started = time.monotonic()
    # 2**60 zero-size items in 9 bytes: refused before reading.
    assert _reason(decoder, _raw_container(nulls, _zigzag(2**60))) == "schema_mismatch"
    linked = {
        "type": "record",
        "name": "node",
        "fields": [{"name": "next", "type": ["null", "node"]}],
    }
    assert _reason(decoder, _raw_container(linked, b"\x02" * 100_000)) == "schema_mismatch"
    # A ZTF-shaped alert whose prv_candidates claims 2**60 entries: fails fast at the data's end.
    point = [
        {"name": n, "type": t}
        for n, t in (("jd", "double"), ("fid", "int"), ("magpsf", "float"), ("sigmapsf", "float"))
    ]
    tiny = {
        "type": "record",
        "name": "alert",
        "namespace": "ztf",
        "fields": [
            {"name": "objectId", "type": "string"},
            {"name": "candid", "type": "long"},
            {"name": "candidate", "type": {"type": "record", "name": "candidate", "fields": point}},
            {
                "name": "prv_candidates",
                "type": [
                    "null",
                    {
                        "type": "array",
                        "items": {"type": "record", "name": "prv_candidate", "fields": point},
                    },
                ],
            },
        ],
    }
    record = {
        "objectId": "ZTF18aaaaaaa",
        "candid": 1,
        "prv_candidates": [],
        "candidate": {"jd": 2458312.5, "fid": 1, "magpsf": 18.0, "sigmapsf": 0.1},
    }
    assert len(decoder(_container(tiny, [record]))) == 1
    body = write_body(fastavro.parse_schema(tiny), record)[:-1] + _zigzag(2**60) + b"\0" * 64
    assert _reason(decoder, _raw_container(tiny, body)) == "not_avro"
    deep = b'{"type":"array","items":' * 2000 + b'"int"' + b"}" * 2000
    assert _reason(decoder, _raw_container(deep, b"\0")) == "schema_mismatch"
    assert _reason(decoder, _raw_container(b"{not json", b"\0")) == "schema_mismatch"
    huge_schema = json.dumps({"type": "record", "name": "x", "doc": "x" * 600_000, "fields": []})
    assert _reason(decoder, _raw_container(huge_schema.encode(), b"")) == "too_large"
    assert time.monotonic() - started < 5


def test_ztf_malformed_bytes(ztf_files: list[Path]) -> None:
    decoder = ZtfDecoder()
    message = next(ztf_messages(ztf_files[0]))
    for cut in (0, 3, 10, 100, len(message) // 2, len(message) - 1):
        assert _reason(decoder, message[:cut]) == "not_avro"
    assert _reason(decoder, b"\x00\x00\x00\x03\xe8" + message[5:]) == "not_avro"
    assert _reason(decoder, message + b"trailing") == "not_avro"
    assert _reason(decoder, b"x" * (MAX_MESSAGE_BYTES + 1)) == "too_large"


# ---------------------------------------------------------------- Rubin


def _check_rubin(decoder: RubinDecoder, alerts_and_messages: list[tuple[dict, bytes]]) -> None:
    """Points are the total flux (scienceFlux) of every detection and of every forced epoch
    without a detection, whatever the sign of psfFlux, as AB magnitudes."""
    for alert, message in alerts_and_messages:
        decoded = decoder(message)
        points = [alert["diaSource"], *(alert["prvDiaSources"] or [])]
        detected = {p["midpointMjdTai"] for p in points}
        forced = [p for p in alert["prvDiaForcedSources"] or []
                  if decoder.forced and p["midpointMjdTai"] not in detected]  # fmt: skip
        # a detection whose forced fit on the science image failed: templateFlux + psfFlux
        points = [{**p, "scienceFlux": p["templateFlux"] + p["psfFlux"],
                   "scienceFluxErr": math.hypot(p["templateFluxErr"], p["psfFluxErr"])}
                  if p["forced_PsfFlux_flag"] else p for p in points]  # fmt: skip
        good = [p for p in points + forced if p["scienceFlux"] > 0]
        assert {a.band: a.n for a in decoded} == Counter(p["band"] for p in good)
        assert all(a.photometry == "total" and a.other is None for a in decoded)
        source = alert["diaSource"]
        for a in decoded:
            assert a.alert_id == alert["diaSourceId"]
            assert a.alert_time == source["midpointMjdTai"]
            expected_id = (
                str(source["diaObjectId"])
                if source["diaObjectId"]
                else f"sso:{source['ssObjectId']}"
            )
            assert a.source_id == expected_id
            band = sorted(
                (p["midpointMjdTai"], p["scienceFlux"], p["scienceFluxErr"])
                for p in good
                if p["band"] == a.band
            )
            t, flux, flux_err = (np.array(c) for c in zip(*band, strict=True))
            assert (np.diff(a.t) >= 0).all()
            order = np.lexsort((-a.m, a.t))  # ties in time (one visit, two detectors): by flux
            np.testing.assert_array_equal(a.t[order], t)
            np.testing.assert_allclose(a.m[order], 31.4 - 2.5 * np.log10(flux), rtol=1e-12)
            np.testing.assert_allclose(a.err[order], 1.0857 * flux_err / flux, rtol=1e-4)


def test_rubin_wire_format_with_local_schemas(rubin_file: Path) -> None:
    messages = list(rubin_messages(rubin_file))
    assert len(messages) == 7
    assert all(m[:5] == b"\x00\x00\x00\x03\xe8" for _, m in messages)  # magic 0, id 1000
    _check_rubin(RubinDecoder(), messages)
    _check_rubin(RubinDecoder(forced=False), messages)
    sso = [a for a, _ in messages if not a["diaSource"]["diaObjectId"]]
    assert len(sso) == 2  # two solar-system objects, keyed by ssObjectId


class _Registry(BaseHTTPRequestHandler):
    schemas: ClassVar[dict[int, str]] = {}
    hits: ClassVar[Counter[int]] = Counter()

    def do_GET(self) -> None:
        schema_id = int(self.path.rsplit("/", 1)[-1])
        type(self).hits[schema_id] += 1
        if self.path.startswith("/schemas/ids/") and schema_id in self.schemas:
            body = json.dumps({"schema": self.schemas[schema_id]}).encode()
            self.send_response(200)
        else:
            body = b'{"error_code": 40403, "message": "Schema not found"}'
            self.send_response(404)
        self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def fake_schema_registry() -> Iterator[str]:
    """A fake Confluent Schema Registry on loopback (no real one can run here), serving id 1000."""
    _Registry.schemas = {1000: to_parsing_canonical_form(rubin_local_schema(1000))}
    _Registry.hits = Counter()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Registry)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_rubin_wire_format_with_schema_registry(
    rubin_file: Path, fake_schema_registry: str
) -> None:
    decoder = make_decoder("rubin", schema_registry_url=fake_schema_registry)
    assert isinstance(decoder, RubinDecoder)
    messages = list(rubin_messages(rubin_file))
    _check_rubin(decoder, messages)
    _check_rubin(decoder, messages)
    assert _Registry.hits == {1000: 1}  # fetched once, then cached
    unknown = frame(1001, messages[0][1][5:])
    assert _reason(decoder, unknown) == "unknown_schema"
    assert _reason(decoder, unknown) == "unknown_schema"
    assert _Registry.hits[1001] == 1  # a 404 is remembered for a while


def test_rubin_registry_outage_is_not_a_bad_message(rubin_file: Path) -> None:
    _, message = next(rubin_messages(rubin_file))
    decoder = RubinDecoder(f"http://127.0.0.1:{free_port()}", registry_timeout_s=1)
    with pytest.raises(SchemaRegistryUnavailable):
        decoder(message)


def test_rubin_bad_messages(rubin_file: Path) -> None:
    decoder = RubinDecoder()
    alert, message = next(rubin_messages(rubin_file))
    schema = rubin_local_schema(1000)
    assert _reason(decoder, b"\x01" + message[1:]) == "bad_magic"
    assert _reason(decoder, message[:4]) == "bad_magic"
    assert _reason(decoder, frame(999, message[5:])) == "unknown_schema"
    assert _reason(decoder, message[:-3]) == "not_avro"

    def encoded(**source_changes: Any) -> bytes:
        changed = {
            **alert,
            "diaSource": {**alert["diaSource"], **source_changes},
            "prvDiaSources": None,
        }
        return frame(1000, write_body(schema, changed))

    decoder = RubinDecoder(forced=False)
    (faint,) = decoder(encoded(scienceFlux=-5.0))  # a measurement, but no magnitude exists
    assert faint.n == 0
    assert faint.dropped == {"nonpositive_total_flux": 1}
    (flagged,) = decoder(encoded(forced_PsfFlux_flag=True, templateFlux=60.0, psfFlux=40.0,
                                 templateFluxErr=0.6, psfFluxErr=0.8))  # fmt: skip
    assert flagged.m[0] == pytest.approx(31.4 - 5.0)  # templateFlux + psfFlux, counted
    assert flagged.err[0] == pytest.approx(0.010857, rel=1e-4)  # hypot(0.6, 0.8) = 1 nJy
    assert flagged.fallbacks == {"fallback_template_plus_difference": 1}
    (lost,) = decoder(encoded(scienceFlux=None, templateFlux=None))
    assert (lost.n, lost.dropped) == (0, {"flux_missing": 1})
    assert _reason(decoder, encoded(midpointMjdTai=math.nan)) == "invalid_value"
    assert _reason(decoder, encoded(scienceFlux=math.inf)) == "invalid_value"
    assert _reason(decoder, encoded(psfFlux=math.inf)) == "invalid_value"
    assert _reason(decoder, encoded(scienceFluxErr=-1.0)) == "invalid_value"
    assert _reason(decoder, encoded(band="q")) == "invalid_value"
    assert _reason(decoder, encoded(band=None)) == "missing_field"
    (one,) = decoder(encoded(scienceFlux=100.0, scienceFluxErr=1.0, psfFlux=-40.0))
    assert one.m[0] == pytest.approx(31.4 - 5.0)
    assert one.err[0] == pytest.approx(0.010857, rel=1e-4)


# ---------------------------------------------------------------- our lightcurve_alert


def _alert(n: int = 5, **changes: Any) -> DecodedAlert:
    base: dict[str, Any] = dict(
        alert_id=7,
        source_id="CSS_1101014036588",
        survey="crts",
        band="V",
        ra=37.0,
        dec=1.8,
        alert_time=53710.0 + n,
        t=53710.0 + np.arange(n, dtype=float),
        m=np.full(n, 16.0),
        err=np.full(n, 0.07),
        label="RRc",
    )
    base.update(changes)
    return DecodedAlert(**base)


def test_lightcurve_round_trip_of_real_alerts(ztf_files: list[Path]) -> None:
    decoder = ZtfDecoder()
    for path in ztf_files[:50]:
        for alert in decoder(next(ztf_messages(path))):
            back = decode_lightcurve_alert(encode_lightcurve_alert(alert))
            for name in (
                "alert_id",
                "source_id",
                "survey",
                "band",
                "ra",
                "dec",
                "alert_time",
                "label",
            ):
                assert getattr(back, name) == getattr(alert, name)
            for name in ("t", "m", "err"):
                np.testing.assert_array_equal(getattr(back, name), getattr(alert, name))


def test_lightcurve_bad_messages() -> None:
    decoder = LightcurveDecoder()
    good = encode_lightcurve_alert(_alert())
    assert decoder(good)[0].label == "RRc"
    assert _reason(decoder, b"\x01" + good[1:]) == "bad_magic"
    assert _reason(decoder, frame(10200, good[5:])) == "unknown_schema"  # a classification id
    assert _reason(decoder, good[:-2]) == "not_avro"
    assert _reason(decoder, good + b"\0") == "not_avro"
    m = np.full(5, 16.0)
    m[2] = math.nan
    assert _reason(decoder, encode_lightcurve_alert(_alert(m=m))) == "invalid_value"
    t = 53710.0 + np.arange(5.0)
    t[0] = -math.inf
    assert _reason(decoder, encode_lightcurve_alert(_alert(t=t))) == "invalid_value"
    assert _reason(decoder, encode_lightcurve_alert(_alert(n=0))) == "empty_lightcurve"
    assert _reason(decoder, encode_lightcurve_alert(_alert(source_id=""))) == "missing_field"
    huge = _alert(n=MAX_DETECTIONS + 1)
    assert _reason(decoder, encode_lightcurve_alert(huge)) == "too_large"
    assert len(decoder(encode_lightcurve_alert(_alert(n=MAX_DETECTIONS)))[0].t) == MAX_DETECTIONS
    # An array that claims 2**60 detections in a few bytes fails fast, allocating nothing.
    record = {
        "alert_id": 1,
        "source_id": "s",
        "survey": "x",
        "band": "g",
        "ra": None,
        "dec": None,
        "alert_time": 1.0,
        "detections": [],
        "label": None,
    }
    body = bytearray(encode_record("lightcurve_alert", record))
    head = body[: body.index(b"\x00", 5 + 12)]  # up to the empty detections array
    assert _reason(decoder, bytes(head) + _zigzag(2**60) + b"\0" * 40) == "not_avro"


def test_make_decoder_names() -> None:
    assert make_decoder("ztf").name == "ztf"
    assert make_decoder("rubin").name == "rubin"
    assert make_decoder("lightcurve").name == "lightcurve"
    with pytest.raises(ValueError, match="unknown decoder"):
        make_decoder("ptf")


# ---------------------------------------------------------------- fuzzing


@pytest.fixture(scope="module")
def seeds(ztf_files: list[Path], rubin_file: Path) -> dict[str, bytes]:
    """One small real message per decoder, to mutate."""
    small = min(ztf_files, key=lambda p: p.stat().st_size)
    rubin = min((m for _, m in rubin_messages(rubin_file)), key=len)
    return {
        "ztf": next(ztf_messages(small)),
        "rubin": rubin,
        "lightcurve": encode_lightcurve_alert(_alert()),
    }


def _only_decode_errors(decoder: Any, data: bytes) -> None:
    started = time.monotonic()
    try:
        alerts = decoder(data)
    except DecodeError:  # whose constructor accepts only a reason of REASONS
        alerts = []
    assert all(isinstance(a, DecodedAlert) and a.n > 0 for a in alerts)
    for a in alerts:
        assert np.isfinite(a.t).all()
        assert np.isfinite(a.m).all()
    assert time.monotonic() - started < 1.0


FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.mark.parametrize("name", ["ztf", "rubin", "lightcurve"])
@FUZZ
@given(data=st.binary(max_size=2048))
def test_fuzz_random_bytes(name: str, data: bytes) -> None:
    _only_decode_errors(make_decoder(name), data)


@pytest.mark.parametrize("name", ["ztf", "rubin", "lightcurve"])
@FUZZ
@given(
    edits=st.lists(
        st.tuples(
            st.integers(0, 2**31),
            st.integers(0, 255),
            st.sampled_from(["flip", "set", "cut", "insert"]),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_fuzz_mutated_real_messages(
    name: str, edits: list[tuple[int, int, str]], seeds: dict[str, bytes]
) -> None:
    data = bytearray(seeds[name])
    for position, value, kind in edits:
        i = position % max(len(data), 1)
        if kind == "flip" and data:
            data[i] ^= 1 << (value % 8)
        elif kind == "set" and data:
            data[i] = value
        elif kind == "cut":
            del data[i:]
        else:
            data[i:i] = bytes([value])
    _only_decode_errors(make_decoder(name), bytes(data))
