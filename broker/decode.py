"""Survey alert decoders: Kafka message bytes -> one DecodedAlert per band (pure, no Kafka).

Decoders are chosen per topic by name (`make_decoder`). What a magnitude means is the survey's
(broker.photometry, docs/surveys.md): each alert carries, per band, the points of the kind of
light curve it proposes for a new source (``photometry``: total or difference) and, where the
survey offers both, the other kind too (``other``); the pipeline uses the kind its state already
decided for the source, so one source never mixes the two.

- ``ztf`` (`broker.decode_ztf`): an Avro object container file per message, writer schema
  embedded; total points are DC magnitudes, difference points ``magpsf`` of positive differences;
- ``rubin`` (`broker.decode_rubin`): Confluent wire format, the schema from a Schema Registry or
  the official files; points are always total, from ``scienceFlux``;
- ``lightcurve`` (`broker.decode_lightcurve`): our own ``lightcurve_alert`` schema, the magnitudes
  taken as sent, of the kind its ``photometry`` field says.

This module holds what they share: `DecodedAlert`, the `Decoder` protocol, the checks every
decoder applies, and `make_decoder`.

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

import numpy as np

from broker.avro import (
    MAX_CONTAINER_RECORDS,
    MAX_MESSAGE_BYTES,
    REASONS,
    SCHEMA_DIR,
    DecodeError,
)
from broker.photometry import TOTAL, Points
from broker.registry import SchemaRegistryUnavailable
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
    "SchemaRegistryUnavailable",
    "make_decoder",
]

DECODER_NAMES = ("ztf", "rubin", "lightcurve")
MAX_DETECTIONS = 10_000


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


class Bands:
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


def check_finite(band: str, **arrays: np.ndarray) -> None:
    """DecodeError (invalid_value) unless every value of the named arrays is finite."""
    for name, a in arrays.items():
        if not np.isfinite(a).all():
            raise DecodeError("invalid_value", f"non-finite {name} in band {band}")


def check_error(band: str, err: np.ndarray) -> None:
    """DecodeError (invalid_value) for a negative magnitude error."""
    if err.size and err.min() < 0:
        raise DecodeError("invalid_value", f"negative magnitude error in band {band}")


def alerts_of(
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


def required(record: dict[str, Any], key: str, where: str) -> Any:
    """A record's value, DecodeError (missing_field) when null or absent."""
    value = record.get(key)
    if value is None:
        raise DecodeError("missing_field", f"{where}.{key} is null or absent")
    return value


def nan_or(value: float | None) -> float:
    """A nullable Avro double as a float, NaN for null."""
    return math.nan if value is None else value


def reader_record(name: str, namespace: str, **fields: Any) -> dict[str, Any]:
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


def make_decoder(
    name: str,
    *,
    schema_registry_url: str | None = None,
    schema_dir: Path = SCHEMA_DIR,
    forced_photometry: bool = True,
) -> Decoder:
    """The decoder configured for a topic, by name: ztf (`broker.decode_ztf`), rubin
    (`broker.decode_rubin`) or lightcurve (`broker.decode_lightcurve`)."""
    if name == "ztf":
        from broker.decode_ztf import ZtfDecoder

        return ZtfDecoder(forced=forced_photometry)
    if name == "rubin":
        from broker.decode_rubin import RubinDecoder

        return RubinDecoder(schema_registry_url, schema_dir, forced=forced_photometry)
    if name == "lightcurve":
        from broker.decode_lightcurve import LightcurveDecoder

        return LightcurveDecoder(schema_dir)
    raise ValueError(f"unknown decoder {name!r}; expected one of {', '.join(DECODER_NAMES)}")
