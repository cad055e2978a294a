"""Survey alert decoders: Kafka message bytes -> one DecodedAlert per band (pure, no Kafka).

Decoders are chosen per topic by name (`make_decoder`):

- ``ztf``: each message is an Avro object container file holding one alert with its writer schema
  embedded (``candidate`` + ``prv_candidates``). Detections are entries with a non-null ``magpsf``;
  non-detections (null or absent ``magpsf``, upper limits) are ignored. Time: MJD = jd - 2400000.5.
  Bands: fid 1 = g, 2 = r, 3 = i.
- ``rubin``: Confluent wire format (byte 0 = 0, bytes 1-4 = big-endian schema id, schemaless Avro).
  The schema comes from a Schema Registry (GET /schemas/ids/{id}) when a URL is given, else from
  the official files in ``schemas/rubin/<major>/<minor>/`` (id = 100 * major + minor, lsst.v10_0 ->
  1000). Detections: ``diaSource`` + ``prvDiaSources`` with psfFlux > 0 [nJy]; mag = 31.4 - 2.5
  log10(psfFlux), magerr = 1.0857 psfFluxErr / psfFlux; time = midpointMjdTai; null, NaN or
  non-positive flux is ignored (no magnitude exists).
- ``lightcurve``: our own ``lightcurve_alert`` schema, schemaless with the Confluent framing and an
  id from ``schemas/registry.json`` (the framing of Rubin and of our outputs: one code path, and
  schema evolution by id); encoded by `broker.encode.encode_lightcurve_alert`.

Bad-input policy: every failure is a `DecodeError` whose ``reason`` is one of `REASONS`; times,
magnitudes and errors must be finite and errors non-negative, or the whole message is rejected
(``invalid_value``). Caps (``too_large``): `MAX_MESSAGE_BYTES` per message, `MAX_DETECTIONS`
detections per message (all bands, history included; ZTF repeats 30 days, Rubin 12 months, both far
below it), and `MAX_CONTAINER_RECORDS` alerts per ZTF container. Writer schemas are parsed once;
schemas that arrive with the data are checked for recursion and zero-size array items first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import fastavro
import numpy as np

from broker.avro import (
    MAX_CONTAINER_RECORDS,
    MAX_MESSAGE_BYTES,
    REASONS,
    SCHEMA_DIR,
    DecodeError,
    SchemaCache,
    check_size,
    read_body,
    read_container,
    unframe,
)
from broker.registry import (
    HttpSchemaRegistry,
    SchemaRegistryUnavailable,
    local_registry,
    rubin_local_schema,
)
from broker.sanity import check_header, check_points

__all__ = [
    "DECODER_NAMES",
    "MAX_CONTAINER_RECORDS",
    "MAX_DETECTIONS",
    "MAX_MESSAGE_BYTES",
    "REASONS",
    "DecodeError",
    "DecodedAlert",
    "Decoder",
    "LightcurveDecoder",
    "RubinDecoder",
    "SchemaRegistryUnavailable",
    "ZtfDecoder",
    "make_decoder",
]

DECODER_NAMES = ("ztf", "rubin", "lightcurve")
MAX_DETECTIONS = 10_000
JD_MINUS_MJD = 2400000.5
ZTF_BANDS = {1: "g", 2: "r", 3: "i"}
RUBIN_BANDS = frozenset("ugrizy")
RUBIN_ZEROPOINT = 31.4  # AB magnitude of 1 nJy
MAGERR_PER_RELATIVE_FLUX = 2.5 / math.log(10)  # 1.0857


@dataclass(frozen=True, eq=False)
class DecodedAlert:
    """One source's light curve in one band, as one alert message carried it."""

    alert_id: int
    source_id: str
    survey: str
    band: str
    ra: float | None
    dec: float | None
    alert_time: float  # MJD of the triggering detection
    t: np.ndarray  # (n,) float64 MJD, ascending (ties kept)
    m: np.ndarray  # (n,) float64 magnitude
    err: np.ndarray  # (n,) float64 1-sigma magnitude error, >= 0
    label: str | None = None

    @property
    def n(self) -> int:
        """Number of detections."""
        return int(self.t.size)


class Decoder(Protocol):
    """Turns one message value into its alerts (one per band) or raises DecodeError."""

    name: str

    def __call__(self, data: bytes) -> list[DecodedAlert]: ...


class _Bands:
    """Detections collected per band in arrival order, then validated into DecodedAlerts."""

    def __init__(self, max_detections: int) -> None:
        self.max_detections = max_detections
        self.count = 0
        self.points: dict[str, tuple[list[float], list[float], list[float]]] = {}

    def add(self, band: str, t: float, m: float, err: float) -> None:
        self.count += 1
        if self.count > self.max_detections:
            raise DecodeError("too_large", f"over {self.max_detections} detections in one message")
        ts, ms, es = self.points.setdefault(band, ([], [], []))
        ts.append(t)
        ms.append(m)
        es.append(err)

    def alerts(
        self,
        alert_id: int,
        source_id: str,
        survey: str,
        ra: float | None,
        dec: float | None,
        alert_time: float,
        label: str | None = None,
    ) -> list[DecodedAlert]:
        if not self.points:
            raise DecodeError("empty_lightcurve", f"no detection in alert {alert_id}")
        if not math.isfinite(alert_time):
            raise DecodeError("invalid_value", f"alert time {alert_time}")
        for name, coord in (("ra", ra), ("dec", dec)):
            if coord is not None and not math.isfinite(coord):
                raise DecodeError("invalid_value", f"{name} {coord}")
        check_header(survey, source_id, alert_time, ra, dec)  # ids, time window (broker.sanity)
        out = []
        for band, points in self.points.items():
            # one (3, n) array per band: few numpy calls, as most alerts carry a few points
            tme = np.array(points, dtype=np.float64)
            if not np.isfinite(tme).all():
                what = ("time", "magnitude", "error")[int(np.argmin(np.isfinite(tme).all(1)))]
                raise DecodeError("invalid_value", f"non-finite {what} in band {band}")
            if tme[2].min() < 0:
                raise DecodeError("invalid_value", f"negative magnitude error in band {band}")
            check_points(survey, band, tme)  # physical ranges per survey (broker.sanity)
            if tme.shape[1] > 1 and (tme[0, 1:] < tme[0, :-1]).any():
                tme = tme[:, np.argsort(tme[0], kind="stable")]
            t, m, err = tme
            out.append(
                DecodedAlert(
                    alert_id, source_id, survey, band, ra, dec, alert_time, t, m, err, label
                )
            )
        return out


def _required(record: dict[str, Any], key: str, where: str) -> Any:
    value = record.get(key)
    if value is None:
        raise DecodeError("missing_field", f"{where}.{key} is null or absent")
    return value


# ---------------------------------------------------------------- ZTF


def _record(name: str, namespace: str, **fields: Any) -> dict[str, Any]:
    """A reader record schema; a field type written as a 1-tuple is nullable with default null."""
    return {
        "type": "record",
        "name": name,
        "namespace": namespace,
        "fields": [
            {"name": k, "type": ["null", t[0]], "default": None}
            if isinstance(t, tuple)
            else {"name": k, "type": t}
            for k, t in fields.items()
        ],
    }


# Reader schemas: only what the broker uses; fastavro skips the rest (cutouts included).
_ZTF_POINT = {"jd": "double", "fid": "int", "magpsf": ("double",), "sigmapsf": ("double",)}
_ZTF_READER = _record(
    "alert",
    "ztf",
    objectId=("string",),
    candid=("long",),
    candidate=_record("candidate", "ztf.alert", **_ZTF_POINT, ra=("double",), dec=("double",)),
    prv_candidates=(
        {"type": "array", "items": _record("prv_candidate", "ztf.alert", **_ZTF_POINT)},
    ),
)


class ZtfDecoder:
    """ZTF alerts: one Avro container file per message, writer schema embedded."""

    name = "ztf"

    def __init__(
        self, max_bytes: int = MAX_MESSAGE_BYTES, max_detections: int = MAX_DETECTIONS
    ) -> None:
        self.max_bytes = max_bytes
        self.max_detections = max_detections
        self._schemas = SchemaCache()
        self._reader = fastavro.parse_schema(_ZTF_READER)

    def __call__(self, data: bytes) -> list[DecodedAlert]:
        check_size(data, self.max_bytes)
        records = read_container(data, self._schemas, self._reader)
        if not records:
            raise DecodeError("empty_lightcurve", "container file holds no alert")
        out: list[DecodedAlert] = []
        for record in records:
            if not isinstance(record, dict):  # e.g. a writer schema that is a fixed named alert
                raise DecodeError("schema_mismatch", f"alert is a {type(record).__name__}")
            out.extend(self._alert(record))
        return out

    def _alert(self, record: dict[str, Any]) -> list[DecodedAlert]:
        object_id = _required(record, "objectId", "alert")
        candid = _required(record, "candid", "alert")
        candidate = record["candidate"]
        history = record["prv_candidates"] or []
        bands = _Bands(self.max_detections)
        for i, point in enumerate([candidate, *history]):
            mag = point["magpsf"]
            if mag is None:
                continue  # a non-detection (upper limit)
            band = ZTF_BANDS.get(point["fid"])
            if band is None:
                raise DecodeError("invalid_value", f"unknown ZTF fid {point['fid']}")
            sigma = point["sigmapsf"]
            if sigma is None:
                raise DecodeError("missing_field", f"detection {i} has magpsf but no sigmapsf")
            bands.add(band, point["jd"] - JD_MINUS_MJD, mag, sigma)
        return bands.alerts(
            candid,
            object_id,
            "ztf",
            candidate["ra"],
            candidate["dec"],
            candidate["jd"] - JD_MINUS_MJD,
        )


# ---------------------------------------------------------------- Rubin


_RUBIN_SOURCE = {
    "diaSourceId": "long",
    "diaObjectId": ("long",),
    "ssObjectId": ("long",),
    "midpointMjdTai": "double",
    "ra": "double",
    "dec": "double",
    "psfFlux": ("double",),
    "psfFluxErr": ("double",),
    "band": ("string",),
}
_RUBIN_READER = _record(
    "alert",
    "lsst.v10_0",
    diaSourceId="long",
    diaSource=_record("diaSource", "lsst.v10_0", **_RUBIN_SOURCE),
    prvDiaSources=({"type": "array", "items": "lsst.v10_0.diaSource"},),
    diaObject=(_record("diaObject", "lsst.v10_0", diaObjectId="long"),),
)


class RubinDecoder:
    """Rubin alerts: Confluent wire format, schema from a registry URL or local official files."""

    name = "rubin"

    def __init__(
        self,
        schema_registry_url: str | None = None,
        schema_dir: Path = SCHEMA_DIR,
        max_bytes: int = MAX_MESSAGE_BYTES,
        max_detections: int = MAX_DETECTIONS,
        registry_timeout_s: float = 5.0,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_detections = max_detections
        self.schema_dir = schema_dir
        self._http = (
            HttpSchemaRegistry(schema_registry_url, registry_timeout_s)
            if schema_registry_url
            else None
        )
        self._reader = fastavro.parse_schema(_RUBIN_READER)

    def writer_schema(self, schema_id: int) -> Any:
        """Parsed writer schema of a Confluent id (registry or local files); cached."""
        if self._http is not None:
            return self._http.schema(schema_id)
        return rubin_local_schema(schema_id, self.schema_dir)

    def __call__(self, data: bytes) -> list[DecodedAlert]:
        check_size(data, self.max_bytes)
        schema_id, body = unframe(data)
        record = read_body(body, self.writer_schema(schema_id), self._reader)
        source = record["diaSource"]
        history = record["prvDiaSources"] or []
        object_id = source["diaObjectId"] or (record["diaObject"] or {}).get("diaObjectId")
        if object_id:
            source_id = str(object_id)
        elif source["ssObjectId"]:
            source_id = f"sso:{source['ssObjectId']}"  # a solar-system object, no diaObject
        else:
            raise DecodeError("missing_field", "diaSource has neither diaObjectId nor ssObjectId")
        bands = _Bands(self.max_detections)
        for i, point in enumerate([source, *history]):
            flux = point["psfFlux"]
            if flux is None or not flux > 0:
                continue  # no magnitude for null, NaN or non-positive difference flux
            band = point["band"]
            if band is None:
                raise DecodeError("missing_field", f"diaSource {i} has no band")
            if band not in RUBIN_BANDS:
                raise DecodeError("invalid_value", f"unknown Rubin band {band!r}")
            flux_err = point["psfFluxErr"]
            if flux_err is None:
                raise DecodeError("missing_field", f"diaSource {i} has psfFlux but no psfFluxErr")
            bands.add(
                band,
                point["midpointMjdTai"],
                RUBIN_ZEROPOINT - 2.5 * math.log10(flux),
                MAGERR_PER_RELATIVE_FLUX * flux_err / flux,
            )
        return bands.alerts(
            record["diaSourceId"],
            source_id,
            "rubin",
            source["ra"],
            source["dec"],
            source["midpointMjdTai"],
        )


# ---------------------------------------------------------------- our own lightcurve_alert


class LightcurveDecoder:
    """Our lightcurve_alert schema, Confluent-framed with an id from schemas/registry.json."""

    name = "lightcurve"
    schema_name = "lightcurve_alert"

    def __init__(
        self,
        schema_dir: Path = SCHEMA_DIR,
        max_bytes: int = MAX_MESSAGE_BYTES,
        max_detections: int = MAX_DETECTIONS,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_detections = max_detections
        self._registry = local_registry(schema_dir)

    def __call__(self, data: bytes) -> list[DecodedAlert]:
        check_size(data, self.max_bytes)
        record = self._registry.decode(data, self.schema_name)
        detections = record["detections"]
        if len(detections) > self.max_detections:
            raise DecodeError("too_large", f"{len(detections)} detections")
        if not record["source_id"]:
            raise DecodeError("missing_field", "empty source_id")
        if not record["band"]:
            raise DecodeError("missing_field", "empty band")
        bands = _Bands(self.max_detections)
        for point in detections:
            bands.add(record["band"], point["mjd"], point["mag"], point["magerr"])
        return bands.alerts(
            record["alert_id"],
            record["source_id"],
            record["survey"],
            record["ra"],
            record["dec"],
            record["alert_time"],
            record["label"],
        )


def make_decoder(
    name: str, *, schema_registry_url: str | None = None, schema_dir: Path = SCHEMA_DIR
) -> Decoder:
    """The decoder configured for a topic, by name: ztf, rubin or lightcurve."""
    if name == "ztf":
        return ZtfDecoder()
    if name == "rubin":
        return RubinDecoder(schema_registry_url, schema_dir)
    if name == "lightcurve":
        return LightcurveDecoder(schema_dir)
    raise ValueError(f"unknown decoder {name!r}; expected one of {', '.join(DECODER_NAMES)}")
