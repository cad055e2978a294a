"""The ZTF decoder: one alert per message, an Avro object container file with its writer schema
embedded (``candidate`` + ``prv_candidates`` [+ ``fp_hists``, schema 4.x]); see broker.decode.

Detections are entries with a non-null ``magpsf``; non-detections (upper limits) are ignored.
Total points are DC magnitudes from ``magnr`` / ``magpsf`` / ``isdiffpos`` for detections whose
reference counterpart is within 1.4" (``distnr``), difference points are ``magpsf`` of positive
differences (broker.photometry, docs/surveys.md). An alert proposes total when its earliest
detection in the band has a counterpart. With ``forced`` the forced photometry (``fp_hists``)
adds total points. Time: MJD = jd - 2400000.5. Bands: fid 1 = g, 2 = r, 3 = i.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import fastavro
import numpy as np

from broker import photometry as ph
from broker.avro import MAX_MESSAGE_BYTES, DecodeError, SchemaCache, check_size, read_container
from broker.decode import (
    MAX_DETECTIONS,
    Bands,
    DecodedAlert,
    alerts_of,
    check_error,
    check_finite,
    nan_or,
    reader_record,
    required,
)
from broker.photometry import DIFFERENCE, TOTAL, Points
from broker.sanity import check_points

JD_MINUS_MJD = 2400000.5
ZTF_BANDS = {1: "g", 2: "r", 3: "i"}


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
_ZTF_READER = reader_record(
    "alert",
    "ztf",
    objectId=("string",),
    candid=("long",),
    candidate=reader_record(
        "candidate", "ztf.alert", **_ZTF_POINT, ra=("double",), dec=("double",)
    ),
    prv_candidates=(
        {"type": "array", "items": reader_record("prv_candidate", "ztf.alert", **_ZTF_POINT)},
    ),
    fp_hists=({"type": "array", "items": reader_record("fp_hist", "ztf.alert", **_ZTF_FORCED)},),
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
        object_id = required(record, "objectId", "alert")
        candid = required(record, "candid", "alert")
        candidate = record["candidate"]
        history = record["prv_candidates"] or []
        bands = Bands(self.max_detections)
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
                nan_or(point["magnr"]), nan_or(point["sigmagnr"]), nan_or(point["distnr"]),
            )  # fmt: skip
        forced = Bands(self.max_detections - bands.count)
        for point in (record["fp_hists"] or []) if self.forced else []:
            band = ZTF_BANDS.get(point["fid"])
            if band is None:
                raise DecodeError("invalid_value", f"unknown ZTF fid {point['fid']} in fp_hists")
            status = point["procstatus"]
            forced.add(
                band, point["jd"], nan_or(point["forcediffimflux"]),
                nan_or(point["forcediffimfluxunc"]), nan_or(point["magzpsci"]),
                nan_or(point["magnr"]), nan_or(point["sigmagnr"]), nan_or(point["distnr"]),
                float(status in (None, "0")),
            )  # fmt: skip
        forced_columns = forced.columns()
        choices: dict[str, tuple[Points, Points | None]] = {}
        for band, columns in bands.columns().items():
            check_finite(band, time=columns[0], magnitude=columns[1], error=columns[2])
            check_error(band, columns[2])
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
                check_finite(band, time=columns[0])
                total, _ = ztf_points(np.zeros((7, 0)), columns)
                if total.n:
                    choices[band] = (total, None)
        return alerts_of(
            choices, candid, object_id, "ztf", candidate["ra"], candidate["dec"],
            candidate["jd"] - JD_MINUS_MJD,
        )  # fmt: skip
