"""Survey alert decoders: Kafka message bytes -> one DecodedAlert per band (pure, no Kafka).

Decoders are chosen per topic by name (`make_decoder`). What a magnitude means is the survey's
(broker.photometry, docs/surveys.md): each alert carries, per band, the points of the kind of
light curve it proposes for a new source (``photometry``: total or difference) and, where the
survey offers both, the other kind too (``other``); the pipeline uses the kind its state already
decided for the source, so one source never mixes the two.

- ``ztf``: each message is an Avro object container file holding one alert with its writer schema
  embedded (``candidate`` + ``prv_candidates`` [+ ``fp_hists``, schema 4.x]). Detections are
  entries with a non-null ``magpsf``; non-detections (upper limits) are ignored. Total points are
  DC magnitudes from ``magnr`` / ``magpsf`` / ``isdiffpos`` for detections whose reference
  counterpart is within 1.4" (``distnr``), difference points are ``magpsf`` of positive
  differences. An alert proposes total when its earliest detection in the band has a counterpart.
  With ``forced`` the forced photometry (``fp_hists``) adds total points. Time: MJD = jd -
  2400000.5. Bands: fid 1 = g, 2 = r, 3 = i.
- ``rubin``: Confluent wire format (byte 0 = 0, bytes 1-4 = big-endian schema id, schemaless Avro).
  The schema comes from a Schema Registry (GET /schemas/ids/{id}) when a URL is given, else from
  the official files in ``schemas/rubin/<major>/<minor>/`` (id = 100 * major + minor, lsst.v10_0 ->
  1000). Points are always total: ``scienceFlux`` [nJy] (fallback ``templateFlux + psfFlux``) of
  ``diaSource`` + ``prvDiaSources`` (+ ``prvDiaForcedSources`` with ``forced``), whatever the sign
  of the difference flux; m = 31.4 - 2.5 log10(flux), magerr = 1.0857 fluxErr / flux; time =
  midpointMjdTai.
- ``lightcurve``: our own ``lightcurve_alert`` schema, schemaless with the Confluent framing and an
  id from ``schemas/registry.json`` (the framing of Rubin and of our outputs: one code path, and
  schema evolution by id); encoded by `broker.encode.encode_lightcurve_alert`. Its magnitudes are
  taken as sent, of the kind its ``photometry`` field says (1.1; total in 1.0).

Bad-input policy: every failure is a `DecodeError` whose ``reason`` is one of `REASONS`; times,
magnitudes, fluxes and errors must be finite and errors non-negative, or the whole message is
rejected (``invalid_value``); a message without any detection is ``empty_lightcurve``.
Detections that make no point of a kind are counted by reason (`Points.dropped`): an alert can
carry no point at all (a ZTF transient's negative difference), which is no fault of the input. Caps
(``too_large``): `MAX_MESSAGE_BYTES` per message, `MAX_DETECTIONS` detections per message (all
bands, history and forced photometry included; ZTF repeats 30 days, Rubin 12 months, both far
below it), and `MAX_CONTAINER_RECORDS` alerts per ZTF container. Writer schemas are parsed once;
schemas that arrive with the data are checked for recursion and zero-size array items first.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import fastavro
import numpy as np

from broker import photometry as ph
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
from broker.photometry import DIFFERENCE, TOTAL, Points
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


@dataclass(frozen=True, eq=False)
class DecodedAlert:
    """One source's light curve in one band, as one alert message carried it.

    ``t``, ``m``, ``err`` are the points of the kind ``photometry`` this alert proposes for a new
    source; ``other`` holds the points of the other kind where the survey offers both (ZTF)."""

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
    photometry: str = TOTAL  # broker.photometry.TOTAL or DIFFERENCE
    dropped: Counter[str] = field(default_factory=Counter)  # detections with no point, by reason
    fallbacks: Counter[str] = field(default_factory=Counter)  # documented fallbacks used
    other: Points | None = None  # the other kind's points (ZTF), else None

    @property
    def n(self) -> int:
        """Number of points."""
        return int(self.t.size)

    def points(self, kind: str) -> Points | None:
        """This alert's points of one kind (None where the survey offers no such points)."""
        if kind == self.photometry:
            return Points(kind, self.t, self.m, self.err, self.dropped, self.fallbacks)
        if self.other is not None and self.other.kind == kind:
            return self.other
        return None


class Decoder(Protocol):
    """Turns one message value into its alerts (one per band) or raises DecodeError."""

    name: str

    def __call__(self, data: bytes) -> list[DecodedAlert]: ...


class _Bands:
    """A message's detections collected per band in arrival order, as rows of survey columns."""

    def __init__(self, max_detections: int) -> None:
        self.max_detections = max_detections
        self.count = 0
        self.rows: dict[str, list[tuple[float, ...]]] = {}

    def add(self, band: str, *values: float) -> None:
        self.count += 1
        if self.count > self.max_detections:
            raise DecodeError("too_large", f"over {self.max_detections} detections in one message")
        self.rows.setdefault(band, []).append(values)

    def columns(self) -> dict[str, np.ndarray]:
        """Per band a float64 ``(n_columns, n)`` array, rows in arrival order."""
        return {band: np.array(rows, dtype=np.float64).T for band, rows in self.rows.items()}


def _check_finite(band: str, **arrays: np.ndarray) -> None:
    for name, a in arrays.items():
        if not np.isfinite(a).all():
            raise DecodeError("invalid_value", f"non-finite {name} in band {band}")


def _check_error(band: str, err: np.ndarray) -> None:
    if err.size and err.min() < 0:
        raise DecodeError("invalid_value", f"negative magnitude error in band {band}")


def _alerts(
    choices: dict[str, tuple[Points, Points | None]],
    alert_id: int,
    source_id: str,
    survey: str,
    ra: float | None,
    dec: float | None,
    alert_time: float,
    label: str | None = None,
) -> list[DecodedAlert]:
    """DecodedAlerts of a message from each band's (proposed points, other kind's points)."""
    if not math.isfinite(alert_time):
        raise DecodeError("invalid_value", f"alert time {alert_time}")
    for name, coord in (("ra", ra), ("dec", dec)):
        if coord is not None and not math.isfinite(coord):
            raise DecodeError("invalid_value", f"{name} {coord}")
    if not any(p.n or p.dropped.total() for p, _ in choices.values()):
        raise DecodeError("empty_lightcurve", f"no detection in alert {alert_id}")
    check_header(survey, source_id, alert_time, ra, dec)  # ids, time window (broker.sanity)
    out = []
    for band, (p, other) in choices.items():
        for points in (p, other):
            if points is not None:  # physical ranges per survey (broker.sanity)
                check_points(survey, band, np.stack([points.t, points.m, points.err]))
        alert = DecodedAlert(
            alert_id, source_id, survey, band, ra, dec, alert_time, p.t, p.m, p.err, label,
            p.kind, p.dropped, p.fallbacks, other,
        )  # fmt: skip
        out.append(alert)
    return out


def _required(record: dict[str, Any], key: str, where: str) -> Any:
    value = record.get(key)
    if value is None:
        raise DecodeError("missing_field", f"{where}.{key} is null or absent")
    return value


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


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


# Reader schemas: only what the broker uses; fastavro skips the rest (cutouts included). Fields a
# writer lacks (fp_hists before schema 4) read as their default, null.
_ZTF_POINT = {
    "jd": "double",
    "fid": "int",
    "magpsf": ("double",),
    "sigmapsf": ("double",),
    "isdiffpos": ("string",),
    "magnr": ("double",),
    "sigmagnr": ("double",),
    "distnr": ("double",),
}
_ZTF_FORCED = {
    "jd": "double",
    "fid": "int",
    "forcediffimflux": ("double",),
    "forcediffimfluxunc": ("double",),
    "procstatus": ("string",),
    "magzpsci": ("double",),
    "magnr": ("double",),
    "sigmagnr": ("double",),
    "distnr": ("double",),
}
_ZTF_READER = _record(
    "alert",
    "ztf",
    objectId=("string",),
    candid=("long",),
    candidate=_record("candidate", "ztf.alert", **_ZTF_POINT, ra=("double",), dec=("double",)),
    prv_candidates=(
        {"type": "array", "items": _record("prv_candidate", "ztf.alert", **_ZTF_POINT)},
    ),
    fp_hists=({"type": "array", "items": _record("fp_hist", "ztf.alert", **_ZTF_FORCED)},),
)


def ztf_points(detections: np.ndarray, forced: np.ndarray | None = None) -> tuple[Points, Points]:
    """A band's (total, difference) points from its detections' columns (jd, magpsf, sigmapsf,
    sign, magnr, sigmagnr, distnr; arrival order) and forced photometry (jd, flux, flux_err,
    magzpsci, magnr, sigmagnr, distnr, procstatus ok as 1/0), see broker.photometry."""
    jd, magpsf, sigmapsf, sign, magnr, sigmagnr, distnr = detections
    t = jd - JD_MINUS_MJD
    signed = sign != 0
    near = ph.ztf_near(distnr, magnr, sigmagnr) & signed
    m_tot, e_tot, positive = ph.ztf_dc_magnitudes(magpsf, sigmapsf, sign, magnr)
    total_ok = near & positive
    with np.errstate(invalid="ignore"):
        far = ~np.isnan(distnr) & (distnr >= ph.ZTF_NEAR_ARCSEC)
    dropped_total = Counter(
        {
            ph.SIGN_MISSING: int((~signed).sum()),
            ph.REFERENCE_FAR: int((signed & far & ~near).sum()),
            ph.REFERENCE_MISSING: int((signed & ~far & ~near).sum()),
            ph.NONPOSITIVE_FLUX: int((near & ~positive).sum()),
        }
    )
    t_tot, m_tot, e_tot = t[total_ok], m_tot[total_ok], e_tot[total_ok]
    if forced is not None and forced.shape[1]:
        f_jd, flux, flux_err, zp, f_magnr, f_sigmagnr, f_distnr, status_ok = forced
        valid = (status_ok == 1) & np.isfinite(flux) & (flux != ph.ZTF_MISSING)
        valid &= np.isfinite(flux_err) & (flux_err > 0) & np.isfinite(zp)
        f_near = ph.ztf_near(f_distnr, f_magnr, f_sigmagnr)
        f_m, f_e, f_pos = ph.ztf_forced_dc_magnitudes(
            np.where(valid, flux, 0.0), np.where(valid, flux_err, 0.0), np.where(valid, zp, 0.0),
            np.where(f_near, f_magnr, 0.0),
        )  # fmt: skip
        f_t = f_jd - JD_MINUS_MJD
        new_epoch = ~np.isin(f_t, t)  # a detected epoch keeps its detection
        dropped_total[ph.FORCED_FLAGGED] += int((~valid & new_epoch).sum())
        dropped_total[ph.REFERENCE_MISSING] += int((valid & ~f_near & new_epoch).sum())
        dropped_total[ph.NONPOSITIVE_FLUX] += int((valid & f_near & ~f_pos & new_epoch).sum())
        use = valid & f_near & f_pos & new_epoch
        t_tot = np.concatenate([t_tot, f_t[use]])
        m_tot = np.concatenate([m_tot, f_m[use]])
        e_tot = np.concatenate([e_tot, f_e[use]])
    positive_diff = sign > 0
    dropped_diff = Counter(
        {
            ph.SIGN_MISSING: int((~signed).sum()),
            ph.NEGATIVE_DIFFERENCE: int((sign < 0).sum()),
        }
    )
    total = ph.sorted_points(TOTAL, t_tot, m_tot, e_tot, +dropped_total)
    difference = ph.sorted_points(
        DIFFERENCE, t[positive_diff], magpsf[positive_diff], sigmapsf[positive_diff], +dropped_diff
    )
    return total, difference


def ztf_proposal(detections: np.ndarray) -> str:
    """The kind a band's alert proposes: total if its earliest detection has a reference
    counterpart (ALeRCE's rule for the first detection of an object in a band), else
    difference."""
    jd, _, _, _, magnr, sigmagnr, distnr = detections
    first = int(np.argmin(jd))  # the first of equal times
    near = ph.ztf_near(distnr[first : first + 1], magnr[first : first + 1],
                       sigmagnr[first : first + 1])  # fmt: skip
    return TOTAL if bool(near[0]) else DIFFERENCE


class ZtfDecoder:
    """ZTF alerts: one Avro container file per message, writer schema embedded."""

    name = "ztf"

    def __init__(
        self,
        max_bytes: int = MAX_MESSAGE_BYTES,
        max_detections: int = MAX_DETECTIONS,
        forced: bool = True,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_detections = max_detections
        self.forced = forced  # use fp_hists (forced photometry) for total light curves
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
            bands.add(
                band, point["jd"], mag, sigma, ph.ztf_sign(point["isdiffpos"]),
                _nan(point["magnr"]), _nan(point["sigmagnr"]), _nan(point["distnr"]),
            )  # fmt: skip
        forced = _Bands(self.max_detections - bands.count)
        for point in (record["fp_hists"] or []) if self.forced else []:
            band = ZTF_BANDS.get(point["fid"])
            if band is None:
                raise DecodeError("invalid_value", f"unknown ZTF fid {point['fid']} in fp_hists")
            status = point["procstatus"]
            forced.add(
                band, point["jd"], _nan(point["forcediffimflux"]),
                _nan(point["forcediffimfluxunc"]), _nan(point["magzpsci"]), _nan(point["magnr"]),
                _nan(point["sigmagnr"]), _nan(point["distnr"]), float(status in (None, "0")),
            )  # fmt: skip
        forced_columns = forced.columns()
        choices: dict[str, tuple[Points, Points | None]] = {}
        for band, columns in bands.columns().items():
            _check_finite(band, time=columns[0], magnitude=columns[1], error=columns[2])
            _check_error(band, columns[2])
            # magpsf itself too: a negative difference of absurd magnitude would otherwise
            # vanish into its reference's flux
            check_points("ztf", band, np.stack([columns[0] - JD_MINUS_MJD, *columns[1:3]]))
            total, difference = ztf_points(columns, forced_columns.get(band))
            if ztf_proposal(columns) == TOTAL:
                choices[band] = (total, difference)
            else:
                choices[band] = (difference, total)
        for band, columns in forced_columns.items():  # forced photometry of undetected bands
            if band not in choices:
                _check_finite(band, time=columns[0])
                total, _ = ztf_points(np.zeros((7, 0)), columns)
                if total.n:
                    choices[band] = (total, None)
        return _alerts(
            choices, candid, object_id, "ztf", candidate["ra"], candidate["dec"],
            candidate["jd"] - JD_MINUS_MJD,
        )  # fmt: skip


# ---------------------------------------------------------------- Rubin


_RUBIN_FLUXES = {
    "midpointMjdTai": "double",
    "psfFlux": ("double",),
    "psfFluxErr": ("double",),
    "scienceFlux": ("double",),
    "scienceFluxErr": ("double",),
    "band": ("string",),
}
_RUBIN_SOURCE = {
    "diaSourceId": "long",
    "diaObjectId": ("long",),
    "ssObjectId": ("long",),
    "ra": "double",
    "dec": "double",
    **_RUBIN_FLUXES,
    "templateFlux": ("double",),
    "templateFluxErr": ("double",),
    "forced_PsfFlux_flag": ("boolean",),  # the forced PSF fit on the science image failed
}
_RUBIN_READER = _record(
    "alert",
    "lsst.v10_0",
    diaSourceId="long",
    diaSource=_record("diaSource", "lsst.v10_0", **_RUBIN_SOURCE),
    prvDiaSources=({"type": "array", "items": "lsst.v10_0.diaSource"},),
    prvDiaForcedSources=(
        {"type": "array", "items": _record("diaForcedSource", "lsst.v10_0", **_RUBIN_FLUXES)},
    ),
    diaObject=(_record("diaObject", "lsst.v10_0", diaObjectId="long"),),
)


def rubin_points(detections: np.ndarray, forced: np.ndarray | None = None) -> Points:
    """A band's total points from its detections' columns (time, scienceFlux, scienceFluxErr,
    templateFlux, templateFluxErr, psfFlux, psfFluxErr, forced_PsfFlux_flag as 1/0; NaN for
    null) and forced photometry (time, scienceFlux, scienceFluxErr): scienceFlux unless null or
    flagged, else templateFlux + psfFlux (a counted fallback), as AB magnitudes; a negative
    difference flux is a measurement like any other."""
    t, sci, sci_err, tmpl, tmpl_err, diff, diff_err, flagged = detections
    has_sci = ~np.isnan(sci) & ~np.isnan(sci_err) & (flagged != 1)
    fallback = ~has_sci & ~np.isnan(tmpl) & ~np.isnan(diff) & ~np.isnan(tmpl_err)
    fallback &= ~np.isnan(diff_err)
    flux = np.where(has_sci, sci, tmpl + diff)
    flux_err = np.where(has_sci, sci_err, np.hypot(tmpl_err, diff_err))
    usable = has_sci | fallback
    m, e, positive = ph.flux_magnitudes(np.where(usable, flux, 0.0),
                                        np.where(usable, flux_err, 0.0))  # fmt: skip
    dropped = Counter(
        {
            ph.FLUX_MISSING: int((~usable).sum()),
            ph.NONPOSITIVE_FLUX: int((usable & ~positive).sum()),
        }
    )
    keep = usable & positive
    fallbacks = Counter({ph.TEMPLATE_PLUS_DIFFERENCE: int((fallback & positive).sum())})
    t_out, m_out, e_out = t[keep], m[keep], e[keep]
    if forced is not None and forced.shape[1]:
        f_t, f_flux, f_err = forced
        new_epoch = ~np.isin(f_t, t)  # a detected epoch keeps its detection
        f_usable = ~np.isnan(f_flux) & ~np.isnan(f_err)
        f_m, f_e, f_pos = ph.flux_magnitudes(np.where(f_usable, f_flux, 0.0),
                                             np.where(f_usable, f_err, 0.0))  # fmt: skip
        dropped[ph.FORCED_FLAGGED] += int((~f_usable & new_epoch).sum())
        dropped[ph.NONPOSITIVE_FLUX] += int((f_usable & ~f_pos & new_epoch).sum())
        use = f_usable & f_pos & new_epoch
        t_out = np.concatenate([t_out, f_t[use]])
        m_out = np.concatenate([m_out, f_m[use]])
        e_out = np.concatenate([e_out, f_e[use]])
    return ph.sorted_points(TOTAL, t_out, m_out, e_out, +dropped, +fallbacks)


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
        forced: bool = True,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_detections = max_detections
        self.schema_dir = schema_dir
        self.forced = forced  # use prvDiaForcedSources (forced photometry)
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

    @staticmethod
    def _band(point: dict[str, Any], where: str) -> str:
        band = point["band"]
        if band is None:
            raise DecodeError("missing_field", f"{where} has no band")
        if band not in RUBIN_BANDS:
            raise DecodeError("invalid_value", f"unknown Rubin band {band!r}")
        return str(band)

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
            bands.add(
                self._band(point, f"diaSource {i}"), point["midpointMjdTai"],
                _nan(point["scienceFlux"]), _nan(point["scienceFluxErr"]),
                _nan(point["templateFlux"]), _nan(point["templateFluxErr"]),
                _nan(point["psfFlux"]), _nan(point["psfFluxErr"]),
                float(bool(point["forced_PsfFlux_flag"])),
            )  # fmt: skip
        forced = _Bands(self.max_detections - bands.count)
        for i, point in enumerate((record["prvDiaForcedSources"] or []) if self.forced else []):
            forced.add(
                self._band(point, f"diaForcedSource {i}"), point["midpointMjdTai"],
                _nan(point["scienceFlux"]), _nan(point["scienceFluxErr"]),
            )  # fmt: skip
        forced_columns = forced.columns()
        choices: dict[str, tuple[Points, Points | None]] = {}
        for band, columns in bands.columns().items():
            _check_inputs(band, columns)
            choices[band] = (rubin_points(columns, forced_columns.get(band)), None)
        for band, columns in forced_columns.items():  # forced photometry of undetected bands
            if band not in choices:
                _check_inputs(band, columns)
                points = rubin_points(np.zeros((8, 0)), columns)
                if points.n:
                    choices[band] = (points, None)
        return _alerts(
            choices, record["diaSourceId"], source_id, "rubin", source["ra"], source["dec"],
            source["midpointMjdTai"],
        )  # fmt: skip


def _check_inputs(band: str, columns: np.ndarray) -> None:
    """Rubin columns (time, then flux and error pairs; detections end with their flag):
    finite times; fluxes and errors finite where present (NaN marks a null), errors
    non-negative."""
    _check_finite(band, time=columns[0])
    values = columns[1:7] if columns.shape[0] == 8 else columns[1:]
    if np.isinf(values).any():
        raise DecodeError("invalid_value", f"infinite flux or error in band {band}")
    with np.errstate(invalid="ignore"):
        if (values[1::2] < 0).any():
            raise DecodeError("invalid_value", f"negative flux error in band {band}")


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
        band = record["band"]
        kind = record["photometry"]
        if kind not in ph.KINDS:
            raise DecodeError("invalid_value", f"photometry {kind!r}: expected one of {ph.KINDS}")
        tme = np.array([(p["mjd"], p["mag"], p["magerr"]) for p in detections], np.float64)
        t, m, err = tme.T.reshape(3, -1)
        _check_finite(band, time=t, magnitude=m, error=err)
        _check_error(band, err)
        points = ph.sorted_points(kind, t, m, err)
        return _alerts(
            {band: (points, None)},
            record["alert_id"],
            record["source_id"],
            record["survey"],
            record["ra"],
            record["dec"],
            record["alert_time"],
            record["label"],
        )


def make_decoder(
    name: str,
    *,
    schema_registry_url: str | None = None,
    schema_dir: Path = SCHEMA_DIR,
    forced_photometry: bool = True,
) -> Decoder:
    """The decoder configured for a topic, by name: ztf, rubin or lightcurve."""
    if name == "ztf":
        return ZtfDecoder(forced=forced_photometry)
    if name == "rubin":
        return RubinDecoder(schema_registry_url, schema_dir, forced=forced_photometry)
    if name == "lightcurve":
        return LightcurveDecoder(schema_dir)
    raise ValueError(f"unknown decoder {name!r}; expected one of {', '.join(DECODER_NAMES)}")
