"""The decoder of our own ``lightcurve_alert`` schema, schemaless with the Confluent framing and an
id from ``schemas/registry.json`` (the framing of Rubin and of our outputs: one code path, and
schema evolution by id); encoded by `broker.encode.encode_lightcurve_alert`. Its magnitudes are
taken as sent, of the kind its ``photometry`` field says (1.1; total in 1.0). See broker.decode.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from broker import photometry as ph
from broker.avro import MAX_MESSAGE_BYTES, SCHEMA_DIR, DecodeError, check_size
from broker.decode import MAX_DETECTIONS, DecodedAlert, alerts_of, check_error, check_finite
from broker.registry import local_registry


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
        check_finite(band, time=t, magnitude=m, error=err)
        check_error(band, err)
        points = ph.sorted_points(kind, t, m, err)
        return alerts_of(
            {band: (points, None)},
            record["alert_id"],
            record["source_id"],
            record["survey"],
            record["ra"],
            record["dec"],
            record["alert_time"],
            record["label"],
        )
