"""Every schema version round-trips its samples; ids and the on-disk layout stay consistent."""

from __future__ import annotations

import datetime as dt
import io
import json
import math
from dataclasses import replace
from pathlib import Path

import fastavro
import pytest

from broker.avro import (
    SCHEMA_DIR,
    DecodeError,
    frame,
    read_body,
    unframe,
    write_body,
)
from broker.decode_rubin import RubinDecoder
from broker.encode import (
    Classification,
    DeadLetter,
    decode_classification,
    decode_dead_letter,
    decode_lightcurve_alert,
    decode_record,
    encode_classification,
    encode_dead_letter,
    encode_lightcurve_alert,
    encode_record,
)
from broker.registry import load_schema_file, local_registry, rubin_local_schema

REGISTRY = json.loads((SCHEMA_DIR / "registry.json").read_text())["schemas"]
VERSIONS = sorted(p.parent for p in SCHEMA_DIR.glob("*/*/*/*.avsc") if p.parts[-4] != "rubin")


def _samples(version_dir: Path) -> list[dict]:
    schema = load_schema_file(next(version_dir.glob("*.avsc")))
    with (version_dir / "sample_data" / "samples.json").open() as fh:
        return list(fastavro.json_reader(fh, schema))


def test_every_version_is_registered_once() -> None:
    ids = [e["id"] for e in REGISTRY]
    assert len(ids) == len(set(ids))
    registered = {(SCHEMA_DIR / e["path"]).parent for e in REGISTRY}
    assert registered == set(VERSIONS)
    for e in REGISTRY:
        major, minor = e["version"].split(".")
        assert e["path"] == f"{e['name']}/{major}/{minor}/{e['name']}.avsc"


@pytest.mark.parametrize("version_dir", VERSIONS, ids=lambda p: "/".join(p.parts[-3:]))
def test_samples_round_trip(version_dir: Path) -> None:
    name = version_dir.parts[-3]
    schema = load_schema_file(next(version_dir.glob("*.avsc")))
    records = _samples(version_dir)
    assert len(records) >= 2
    # The committed container file holds the same records (guards against silent schema edits).
    with (version_dir / "sample_data" / "samples.avro").open("rb") as fh:
        stored = list(fastavro.reader(fh, reader_schema=schema))
    assert stored == records
    newest = local_registry().schema(local_registry().latest_id(name))
    # an older version's record, written with the newest schema, reads back with its defaults
    defaults = {f["name"]: f.get("default") for f in newest["fields"]}
    for record in records:
        data = encode_record(name, record)
        schema_id, body = unframe(data)
        assert schema_id == local_registry().latest_id(name)
        assert read_body(body, newest, schema) == record  # read as this version
        assert decode_record(data, name) == {**defaults, **record}


def test_lightcurve_samples_through_the_broker_codec() -> None:
    for record in _samples(SCHEMA_DIR / "lightcurve_alert" / "1" / "0"):
        alert = decode_lightcurve_alert(encode_record("lightcurve_alert", record))
        assert alert.source_id == record["source_id"]
        assert alert.label == record["label"]
        assert alert.n == len(record["detections"])
        assert list(alert.t) == sorted(d["mjd"] for d in record["detections"])
        again = decode_lightcurve_alert(encode_lightcurve_alert(alert))
        assert (again.t == alert.t).all()
        assert (again.m == alert.m).all()
        assert (again.err == alert.err).all()
        assert (again.alert_id, again.band, again.ra, again.dec, again.alert_time) == (
            alert.alert_id,
            alert.band,
            alert.ra,
            alert.dec,
            alert.alert_time,
        )


def test_classification_samples_through_the_dataclass() -> None:
    for record in _samples(SCHEMA_DIR / "classification" / "1" / "0"):
        c = decode_classification(encode_record("classification", record))
        assert c.predicted_class == record["predicted_class"]
        assert c.thresholded_class is None  # not in 1.0: read as its default
        assert math.isclose(sum(c.probabilities.values()), 1.0, abs_tol=1e-9)
        assert decode_classification(encode_classification(c)) == c
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        assert record["ingest_timestamp"] == epoch + dt.timedelta(milliseconds=c.ingest_timestamp)


def test_classification_keeps_class_order_and_timestamps() -> None:
    c = Classification(
        classifier_name="dmdt-cnn",
        classifier_version="1",
        model_hash="sha256:00",
        survey="ztf",
        source_id="ZTF18aawdnqe",
        alert_id=558190213315015002,
        band="r",
        n_points=5,
        probabilities={"LPV": 0.1, "EW": 0.7, "EA": 0.2},
        alert_time=58312.19,
        ingest_timestamp=1795488000123,
        publish_timestamp=1795488000241,
    )
    back = decode_classification(encode_classification(c))
    assert back == c
    assert list(back.probabilities) == ["LPV", "EW", "EA"]
    assert back.predicted_class == "EW"
    assert back.alert_timestamp is None


def test_dead_letter_samples_and_truncation() -> None:
    for version in ("0", "1"):
        for record in _samples(SCHEMA_DIR / "dead_letter" / "1" / version):
            d = decode_dead_letter(encode_record("dead_letter", record))
            assert d.raw == record["raw"]
            sized = replace(d, raw_size=len(d.raw), key_size=len(d.key))  # type: ignore[arg-type]
            assert decode_dead_letter(encode_dead_letter(d)) == sized
    long = DeadLetter(
        raw=None,
        key=None,
        topic="t",
        partition=0,
        offset=1,
        decoder="ztf",
        reason="not_avro",
        error="x" * 10_000,
        timestamp=1,
    )
    assert len(decode_dead_letter(encode_dead_letter(long)).error) == 2000


def test_decoding_under_the_wrong_name_is_refused() -> None:
    data = encode_record("dead_letter", _samples(SCHEMA_DIR / "dead_letter" / "1" / "0")[0])
    with pytest.raises(DecodeError) as info:
        decode_record(data, "classification")
    assert info.value.reason == "unknown_schema"


def test_rubin_official_sample_round_trips_and_decodes() -> None:
    schema = rubin_local_schema(1000)
    assert schema["name"] == "lsst.v10_0.alert"
    with (SCHEMA_DIR / "rubin" / "10" / "0" / "sample_data" / "fakeAlert.avro").open("rb") as fh:
        (alert,) = list(fastavro.reader(fh))
    body = write_body(schema, alert)
    assert fastavro.schemaless_reader(io.BytesIO(body), schema) == alert
    (decoded,) = RubinDecoder()(frame(1000, body))
    assert decoded.source_id == "281323062375219201"  # from diaObject: diaSource has none
    assert decoded.band == "r"
    # the synthetic sample fills psfFlux only: no total flux, so three detections are counted
    # and none makes a point (the broker never takes a magnitude from a difference flux)
    assert (decoded.n, decoded.dropped) == (0, {"flux_missing": 3})


def test_classification_1_2_band_and_object_records() -> None:
    """1.2 samples (real outputs of the ZTF night): band records say their photometry, object
    records their bands; 1.1 records read back as band records of unknown photometry."""
    scopes = {}
    for record in _samples(SCHEMA_DIR / "classification" / "1" / "2"):
        c = decode_classification(encode_record("classification", record))
        assert decode_classification(encode_classification(c)) == c
        scopes[c.scope] = c
        if c.scope == "band":
            assert c.photometry in ("total", "difference")
            assert c.bands == ()
        else:
            assert c.photometry is None
            assert c.band == ",".join(b[0] for b in c.bands)
            assert c.n_points == sum(b[1] for b in c.bands)
    assert set(scopes) == {"band", "object"}
    v11 = load_schema_file(SCHEMA_DIR / "classification" / "1" / "1" / "classification.avsc")
    for record in _samples(SCHEMA_DIR / "classification" / "1" / "1"):
        old = decode_classification(frame(10201, write_body(v11, record)))
        assert (old.scope, old.photometry, old.bands) == ("band", None, ())


def test_old_classification_records_decode_without_thresholded_class() -> None:
    """Records written with classification 1.0 (id 10200) decode with thresholded_class None;
    1.1 samples carry it."""
    v10 = load_schema_file(SCHEMA_DIR / "classification" / "1" / "0" / "classification.avsc")
    for record in _samples(SCHEMA_DIR / "classification" / "1" / "0"):
        old = decode_classification(frame(10200, write_body(v10, record)))
        assert old.thresholded_class is None
        assert old.features_n_points is None
        assert old.predicted_class == record["predicted_class"]
    for record in _samples(SCHEMA_DIR / "classification" / "1" / "1"):
        c = decode_classification(encode_record("classification", record))
        assert c.thresholded_class == record["thresholded_class"] == c.predicted_class
