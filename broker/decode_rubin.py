"""The Rubin decoder: Confluent wire format (byte 0 = 0, bytes 1-4 = big-endian schema id,
schemaless Avro); see broker.decode.

The schema comes from a Schema Registry (GET /schemas/ids/{id}) when a URL is given, else from the
official files in ``schemas/rubin/<major>/<minor>/`` (id = 100 * major + minor, lsst.v10_0 ->
1000). Points are always total: ``scienceFlux`` [nJy] (fallback ``templateFlux + psfFlux``) of
``diaSource`` + ``prvDiaSources`` (+ ``prvDiaForcedSources`` with ``forced``), whatever the sign
of the difference flux; m = 31.4 - 2.5 log10(flux), magerr = 1.0857 fluxErr / flux; time =
midpointMjdTai.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import fastavro
import numpy as np

from broker import photometry as ph
from broker.avro import MAX_MESSAGE_BYTES, SCHEMA_DIR, DecodeError, check_size, read_body, unframe
from broker.decode import (
    MAX_DETECTIONS,
    Bands,
    DecodedAlert,
    alerts_of,
    check_finite,
    nan_or,
    reader_record,
)
from broker.photometry import TOTAL, Points
from broker.registry import HttpSchemaRegistry, rubin_local_schema

RUBIN_BANDS = frozenset("ugrizy")

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
_RUBIN_READER = reader_record(
    "alert",
    "lsst.v10_0",
    diaSourceId="long",
    diaSource=reader_record("diaSource", "lsst.v10_0", **_RUBIN_SOURCE),
    prvDiaSources=({"type": "array", "items": "lsst.v10_0.diaSource"},),
    prvDiaForcedSources=(
        {"type": "array", "items": reader_record("diaForcedSource", "lsst.v10_0", **_RUBIN_FLUXES)},
    ),
    diaObject=(reader_record("diaObject", "lsst.v10_0", diaObjectId="long"),),
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
        bands = Bands(self.max_detections)
        for i, point in enumerate([source, *history]):
            bands.add(
                self._band(point, f"diaSource {i}"), point["midpointMjdTai"],
                nan_or(point["scienceFlux"]), nan_or(point["scienceFluxErr"]),
                nan_or(point["templateFlux"]), nan_or(point["templateFluxErr"]),
                nan_or(point["psfFlux"]), nan_or(point["psfFluxErr"]),
                float(bool(point["forced_PsfFlux_flag"])),
            )  # fmt: skip
        forced = Bands(self.max_detections - bands.count)
        for i, point in enumerate((record["prvDiaForcedSources"] or []) if self.forced else []):
            forced.add(
                self._band(point, f"diaForcedSource {i}"), point["midpointMjdTai"],
                nan_or(point["scienceFlux"]), nan_or(point["scienceFluxErr"]),
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
        return alerts_of(
            choices, record["diaSourceId"], source_id, "rubin", source["ra"], source["dec"],
            source["midpointMjdTai"],
        )  # fmt: skip


def _check_inputs(band: str, columns: np.ndarray) -> None:
    """Rubin columns (time, then flux and error pairs; detections end with their flag):
    finite times; fluxes and errors finite where present (NaN marks a null), errors
    non-negative."""
    check_finite(band, time=columns[0])
    values = columns[1:7] if columns.shape[0] == 8 else columns[1:]
    if np.isinf(values).any():
        raise DecodeError("invalid_value", f"infinite flux or error in band {band}")
    with np.errstate(invalid="ignore"):
        if (values[1::2] < 0).any():
            raise DecodeError("invalid_value", f"negative flux error in band {band}")
