"""Encoders for our own schemas: classifications, lightcurve alerts, dead letters (pure, no Kafka).

Every message is schemaless Avro behind the Confluent framing (byte 0 = 0, bytes 1-4 = the
big-endian schema id of ``schemas/registry.json``); the decoders here read them back for tests and
the demo's comparison. Timestamps are integer milliseconds since the Unix epoch.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from broker import __version__
from broker.avro import SCHEMA_DIR
from broker.decode import DecodedAlert
from broker.decode_lightcurve import LightcurveDecoder
from broker.registry import local_registry

BROKER_NAME = "dmdt-broker"
MAX_ERROR_CHARS = 2000
# A dead letter keeps at most this much of the message value and key (their sizes are recorded),
# so that with the error text (at most 8 kB) it always fits under librdkafka's default
# message.max.bytes (1,000,000), whatever arrived: tests/test_dead_letters.py.
MAX_DEAD_LETTER_RAW = 512 * 1024
MAX_DEAD_LETTER_KEY = 1024
UNKNOWN = "unknown"  # thresholded_class of a record whose top probability is below min_probability
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MS = dt.timedelta(milliseconds=1)


def now_ms() -> int:
    """Current wall-clock time in epoch milliseconds, the unit of every timestamp we write."""
    return (dt.datetime.now(dt.UTC) - _EPOCH) // _MS


def _ms(value: dt.datetime | int | None) -> int | None:
    """fastavro returns timestamp-millis as datetimes; we keep epoch milliseconds."""
    if value is None or isinstance(value, int):
        return value
    return (value - _EPOCH) // _MS


def encode_record(name: str, record: dict[str, Any], schema_dir: Path = SCHEMA_DIR) -> bytes:
    """Frame and encode a record with the newest registered version of schema `name`."""
    return local_registry(schema_dir).encode(name, record)


def decode_record(data: bytes, name: str, schema_dir: Path = SCHEMA_DIR) -> dict[str, Any]:
    """Decode a framed record of schema `name` (any registered version, read as the newest)."""
    return local_registry(schema_dir).decode(data, name)


@dataclass(frozen=True)
class Classification:
    """One classification record (schema classification); probabilities keep the model's order."""

    classifier_name: str
    classifier_version: str
    model_hash: str
    survey: str
    source_id: str
    alert_id: int
    band: str
    n_points: int
    probabilities: dict[str, float]
    alert_time: float  # MJD of the triggering detection
    ingest_timestamp: int  # epoch ms, when the input was consumed
    publish_timestamp: int  # epoch ms, when this record was produced
    alert_timestamp: int | None = None  # epoch ms, Kafka timestamp of the input message
    features_n_points: int | None = None  # hybrid models: points the features were computed on
    # predicted_class, or UNKNOWN when its probability is below the broker's min_probability;
    # None in records written before classification 1.1 had the field
    thresholded_class: str | None = None
    # classification 1.2: total or difference (band records); None in object records and in
    # records written before 1.2
    photometry: str | None = None
    scope: str = "band"  # "band", or "object": the object's bands combined (bands below)
    # object records: (band, n_points, photometry, predicted_class, probability) per band
    bands: tuple[tuple[str, int, str, str, float], ...] = ()
    broker_name: str = BROKER_NAME
    broker_version: str = __version__

    @property
    def predicted_class(self) -> str:
        """The most probable class (the first one on ties); never UNKNOWN."""
        return max(self.probabilities, key=self.probabilities.__getitem__)


def threshold_class(predicted: str, top_probability: float, min_probability: float) -> str:
    """The answer a record publishes: ``predicted``, or UNKNOWN when ``top_probability`` is below
    ``min_probability`` (the first is its probability). ``min_probability`` 0 disables UNKNOWN;
    above 0, a NaN top probability is UNKNOWN too."""
    if min_probability <= 0.0 or top_probability >= min_probability:
        return predicted
    return UNKNOWN


def encode_classification(c: Classification, schema_dir: Path = SCHEMA_DIR) -> bytes:
    """Encode a classification for the output topic (key it by c.source_id)."""
    record = {
        "broker_name": c.broker_name,
        "broker_version": c.broker_version,
        "classifier_name": c.classifier_name,
        "classifier_version": c.classifier_version,
        "model_hash": c.model_hash,
        "survey": c.survey,
        "source_id": c.source_id,
        "alert_id": c.alert_id,
        "band": c.band,
        "n_points": c.n_points,
        "classifications": [
            {"class_name": k, "probability": float(v)} for k, v in c.probabilities.items()
        ],
        "predicted_class": c.predicted_class,
        "alert_time": c.alert_time,
        "alert_timestamp": c.alert_timestamp,
        "ingest_timestamp": c.ingest_timestamp,
        "publish_timestamp": c.publish_timestamp,
        "features_n_points": c.features_n_points,
        "thresholded_class": c.thresholded_class,
        "photometry": c.photometry,
        "scope": c.scope,
        "bands": [
            {"band": b, "n_points": n, "photometry": k, "predicted_class": best, "probability": p}
            for b, n, k, best, p in c.bands
        ],
    }
    return encode_record("classification", record, schema_dir)


def decode_classification(data: bytes, schema_dir: Path = SCHEMA_DIR) -> Classification:
    """Read a classification message back (tests, demo comparison)."""
    r = decode_record(data, "classification", schema_dir)
    return Classification(
        classifier_name=r["classifier_name"],
        classifier_version=r["classifier_version"],
        model_hash=r["model_hash"],
        survey=r["survey"],
        source_id=r["source_id"],
        alert_id=r["alert_id"],
        band=r["band"],
        n_points=r["n_points"],
        probabilities={e["class_name"]: e["probability"] for e in r["classifications"]},
        alert_time=r["alert_time"],
        ingest_timestamp=_ms(r["ingest_timestamp"]),  # type: ignore[arg-type]
        publish_timestamp=_ms(r["publish_timestamp"]),  # type: ignore[arg-type]
        alert_timestamp=_ms(r["alert_timestamp"]),
        features_n_points=r["features_n_points"],
        thresholded_class=r["thresholded_class"],
        photometry=r["photometry"],
        scope=r["scope"],
        bands=tuple(
            (e["band"], e["n_points"], e["photometry"], e["predicted_class"], e["probability"])
            for e in r["bands"]
        ),
        broker_name=r["broker_name"],
        broker_version=r["broker_version"],
    )


def lightcurve_record(alert: DecodedAlert) -> dict[str, Any]:
    """The lightcurve_alert record of a decoded alert: detections newest first."""
    order = np.argsort(-alert.t, kind="stable")
    return {
        "alert_id": alert.alert_id,
        "source_id": alert.source_id,
        "survey": alert.survey,
        "band": alert.band,
        "ra": alert.ra,
        "dec": alert.dec,
        "alert_time": alert.alert_time,
        "detections": [
            {"mjd": float(t), "mag": float(m), "magerr": float(e)}
            for t, m, e in zip(alert.t[order], alert.m[order], alert.err[order], strict=True)
        ],
        "label": alert.label,
        "photometry": alert.photometry,
    }


def encode_lightcurve_alert(alert: DecodedAlert, schema_dir: Path = SCHEMA_DIR) -> bytes:
    """Encode one band of a light curve as a lightcurve_alert message (the replay format)."""
    return encode_record("lightcurve_alert", lightcurve_record(alert), schema_dir)


def decode_lightcurve_alert(data: bytes, schema_dir: Path = SCHEMA_DIR) -> DecodedAlert:
    """Read a lightcurve_alert message back, through the same decoder the broker runs."""
    (alert,) = LightcurveDecoder(schema_dir)(data)
    return alert


@dataclass(frozen=True)
class DeadLetter:
    """A message the broker could not process, with its origin and reason (schema dead_letter)."""

    raw: bytes | None
    key: bytes | None
    topic: str
    partition: int
    offset: int
    decoder: str
    reason: str
    error: str
    timestamp: int  # epoch ms, when dead-lettered
    message_timestamp: int | None = None  # epoch ms, Kafka timestamp of the original
    broker_version: str = __version__
    raw_size: int | None = None  # bytes of the original value (raw may be its prefix); read only
    key_size: int | None = None  # bytes of the original key (key may be its prefix); read only


def dead_letter_key(key: bytes | None) -> bytes | None:
    """The Kafka key of a message's dead letter: its own key, at most MAX_DEAD_LETTER_KEY bytes."""
    return None if key is None else key[:MAX_DEAD_LETTER_KEY]


def encode_dead_letter(d: DeadLetter, schema_dir: Path = SCHEMA_DIR) -> bytes:
    """Encode a dead letter (key it with `dead_letter_key`): raw and key are cut to their first
    MAX_DEAD_LETTER_RAW / MAX_DEAD_LETTER_KEY bytes (their sizes recorded), the error to
    MAX_ERROR_CHARS characters, so that the record always fits under the producer's limit."""
    record = {
        "raw": None if d.raw is None else d.raw[:MAX_DEAD_LETTER_RAW],
        "raw_size": None if d.raw is None else len(d.raw),
        "key": dead_letter_key(d.key),
        "key_size": None if d.key is None else len(d.key),
        "topic": d.topic,
        "partition": d.partition,
        "offset": d.offset,
        "message_timestamp": d.message_timestamp,
        "decoder": d.decoder,
        "reason": d.reason,
        "error": d.error[:MAX_ERROR_CHARS],
        "broker_version": d.broker_version,
        "timestamp": d.timestamp,
    }
    return encode_record("dead_letter", record, schema_dir)


def decode_dead_letter(data: bytes, schema_dir: Path = SCHEMA_DIR) -> DeadLetter:
    """Read a dead letter back (tests, tooling that replays dead letters)."""
    r = decode_record(data, "dead_letter", schema_dir)
    return DeadLetter(
        raw=r["raw"],
        key=r["key"],
        topic=r["topic"],
        partition=r["partition"],
        offset=r["offset"],
        decoder=r["decoder"],
        reason=r["reason"],
        error=r["error"],
        timestamp=_ms(r["timestamp"]),  # type: ignore[arg-type]
        message_timestamp=_ms(r["message_timestamp"]),
        broker_version=r["broker_version"],
        raw_size=r["raw_size"],
        key_size=r["key_size"],
    )
