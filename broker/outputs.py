"""Classification records for the output topic, encoded on the hot path (pure, no Kafka).

`broker.encode.encode_classification` builds a dict and runs fastavro's generic writer per record
(about 25 us). In a batch most of a record is constant (broker, classifier, model hash) or shared
by the alerts of one source (the probabilities), so `ClassificationWriter` writes those bytes once
and each record is a join of a few pieces. The bytes are the same as fastavro's: the writer checks
at construction that the registered schema is the one it was written for (field names and types,
in order) and `tests/test_pipeline.py` compares both encoders byte for byte.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from broker import __version__
from broker.avro import SCHEMA_DIR, frame
from broker.encode import BROKER_NAME
from broker.registry import local_registry

# The classification schema this writer encodes: (field name, Avro type as written in the .avsc).
_LAYOUT: tuple[tuple[str, str], ...] = (
    ("broker_name", "string"),
    ("broker_version", "string"),
    ("classifier_name", "string"),
    ("classifier_version", "string"),
    ("model_hash", "string"),
    ("survey", "string"),
    ("source_id", "string"),
    ("alert_id", "long"),
    ("band", "string"),
    ("n_points", "int"),
    ("classifications", "array<class_probability{class_name:string,probability:double}>"),
    ("predicted_class", "string"),
    ("alert_time", "double"),
    ("alert_timestamp", "null|timestamp-millis"),
    ("ingest_timestamp", "timestamp-millis"),
    ("publish_timestamp", "timestamp-millis"),
    ("features_n_points", "null|int"),  # classification 1.1: hybrid models only
    ("thresholded_class", "null|string"),  # classification 1.1: predicted_class or "unknown"
    ("photometry", "null|string"),  # classification 1.2: total or difference; null for objects
    ("scope", "string"),  # classification 1.2: band or object
    (
        "bands",
        "array<band_classification{band:string,n_points:int,photometry:string,"
        "predicted_class:string,probability:double}>",
    ),  # classification 1.2: an object record's bands
)
BAND, OBJECT = "band", "object"  # the two scopes of a record
_DOUBLE = struct.Struct("<d")


def _type_name(t: object) -> str:
    """A compact spelling of a parsed fastavro type, to compare with `_LAYOUT`."""
    if isinstance(t, str):
        return t
    if isinstance(t, list):
        return "|".join(_type_name(x) for x in t)
    if isinstance(t, dict):
        if t.get("logicalType"):
            return str(t["logicalType"])
        if t["type"] == "array":
            return f"array<{_type_name(t['items'])}>"
        if t["type"] == "record":
            fields = ",".join(f"{f['name']}:{_type_name(f['type'])}" for f in t["fields"])
            return f"{t['name'].rsplit('.', 1)[-1]}{{{fields}}}"
        return str(t["type"])
    raise TypeError(f"unexpected schema node {t!r}")


def zigzag(n: int) -> bytes:
    """Avro int/long: zig-zag, then base-128 varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@lru_cache(maxsize=1 << 16)
def _small(n: int) -> bytes:
    return zigzag(n)


def _string(s: str) -> bytes:
    b = s.encode()
    return _small(len(b)) + b


@lru_cache(maxsize=1 << 14)
def _cached_string(s: str) -> bytes:
    return _string(s)


@lru_cache(maxsize=1 << 10)
def _optional_string(s: str | None) -> bytes:
    """Avro ["null", "string"]: branch 0 for null, branch 1 then the string."""
    return b"\0" if s is None else b"\2" + _string(s)


class ClassificationWriter:
    """Encodes classification records of one model, byte-identical to fastavro's writer."""

    def __init__(
        self,
        classifier_name: str,
        classifier_version: str,
        model_hash: str,
        classes: Sequence[str],
        schema_dir: Path = SCHEMA_DIR,
        broker_name: str = BROKER_NAME,
        broker_version: str = __version__,
    ) -> None:
        registry = local_registry(schema_dir)
        schema_id = registry.latest_id("classification")
        schema = registry.schema(schema_id)
        layout = tuple((f["name"], _type_name(f["type"])) for f in schema["fields"])
        if layout != _LAYOUT:
            raise RuntimeError(
                f"schema classification (id {schema_id}) changed; update broker.outputs: "
                f"{layout} != {_LAYOUT}"
            )
        self.classes = tuple(classes)
        self._head = frame(
            schema_id,
            b"".join(
                _string(s)
                for s in (
                    broker_name,
                    broker_version,
                    classifier_name,
                    classifier_version,
                    model_hash,
                )
            ),
        )
        self._class_names = [_string(c) for c in self.classes]
        self._array_head = _small(len(self.classes))

    def probabilities(self, probs: np.ndarray) -> tuple[bytes, str]:
        """The encoded classifications array and the predicted class of one source's row."""
        values = probs.astype(np.float64).tolist()
        body = b"".join(
            name + _DOUBLE.pack(p) for name, p in zip(self._class_names, values, strict=True)
        )
        best = max(range(len(values)), key=values.__getitem__)  # the first one on ties
        array = self._array_head + body + b"\0" if values else b"\0"
        return array + _cached_string(self.classes[best]), self.classes[best]

    def batch(self, ingest_timestamp: int, publish_timestamp: int) -> Callable[..., bytes]:
        """`encode` with the batch's timestamps bound (and Kafka timestamps cached): a band
        record."""
        head = self._head
        tail = zigzag(ingest_timestamp) + zigzag(publish_timestamp)
        stamps: dict[int | None, bytes] = {None: b"\0"}
        pack = _DOUBLE.pack
        band_scope = _cached_string(BAND) + b"\0"  # scope "band", no bands

        def encode(
            survey: str,
            source_id: str,
            alert_id: int,
            band: str,
            n_points: int,
            probabilities: bytes,
            alert_time: float,
            alert_timestamp: int | None,
            features_n_points: int | None = None,
            thresholded_class: str | None = None,
            photometry: str | None = None,
        ) -> bytes:
            stamp = stamps.get(alert_timestamp)
            if stamp is None:
                stamp = stamps[alert_timestamp] = b"\2" + zigzag(alert_timestamp)  # type: ignore[arg-type]
            return b"".join(
                (
                    head,
                    _cached_string(survey),
                    _string(source_id),
                    zigzag(alert_id),
                    _cached_string(band),
                    _small(n_points),
                    probabilities,
                    pack(alert_time),
                    stamp,
                    tail,
                    b"\0" if features_n_points is None else b"\2" + _small(features_n_points),
                    _optional_string(thresholded_class),
                    _optional_string(photometry),
                    band_scope,
                )
            )

        return encode

    def object_record(
        self,
        survey: str,
        source_id: str,
        alert_id: int,
        bands: Sequence[tuple[str, int, str, str, float]],
        probabilities: bytes,
        alert_time: float,
        alert_timestamp: int | None,
        ingest_timestamp: int,
        publish_timestamp: int,
        thresholded_class: str | None = None,
    ) -> bytes:
        """One object record: ``bands`` holds (band, n_points, photometry, predicted_class,
        probability) per band combined; ``probabilities`` comes from :meth:`probabilities`."""
        entries = b"".join(
            _cached_string(band) + _small(n) + _cached_string(kind) + _cached_string(best)
            + _DOUBLE.pack(p)
            for band, n, kind, best, p in bands
        )  # fmt: skip
        return b"".join(
            (
                self._head,
                _cached_string(survey),
                _string(source_id),
                zigzag(alert_id),
                _string(",".join(b[0] for b in bands)),
                _small(sum(b[1] for b in bands)),
                probabilities,
                _DOUBLE.pack(alert_time),
                b"\0" if alert_timestamp is None else b"\2" + zigzag(alert_timestamp),
                zigzag(ingest_timestamp),
                zigzag(publish_timestamp),
                b"\0",  # features_n_points: null
                _optional_string(thresholded_class),
                b"\0",  # photometry: null (per band in bands)
                _cached_string(OBJECT),
                (_small(len(bands)) + entries + b"\0") if bands else b"\0",
            )
        )

    def encode(
        self,
        survey: str,
        source_id: str,
        alert_id: int,
        band: str,
        n_points: int,
        probabilities: bytes,
        alert_time: float,
        alert_timestamp: int | None,
        ingest_timestamp: int,
        publish_timestamp: int,
        features_n_points: int | None = None,
        thresholded_class: str | None = None,
        photometry: str | None = None,
    ) -> bytes:
        """One framed band record; ``probabilities`` comes from :meth:`probabilities`."""
        return b"".join(
            (
                self._head,
                _cached_string(survey),
                _string(source_id),
                zigzag(alert_id),
                _cached_string(band),
                _small(n_points),
                probabilities,
                _DOUBLE.pack(alert_time),
                b"\0" if alert_timestamp is None else b"\2" + zigzag(alert_timestamp),
                zigzag(ingest_timestamp),
                zigzag(publish_timestamp),
                b"\0" if features_n_points is None else b"\2" + _small(features_n_points),
                _optional_string(thresholded_class),
                _optional_string(photometry),
                _cached_string(BAND),
                b"\0",  # bands: none
            )
        )
