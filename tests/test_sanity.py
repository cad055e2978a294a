"""Physical sanity checks at decode time (broker.sanity): absurd times, magnitudes, errors,
coordinates and ids are rejected as `invalid_value` by all three decoders, every real alert of
data/ passes them, and a NUL in a source id is dead-lettered instead of stopping the stream."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest
from stream_helpers import crts_records, tiny_model

from broker.avro import frame, write_body
from broker.decode import DecodeError, make_decoder
from broker.decode_lightcurve import LightcurveDecoder
from broker.decode_rubin import RubinDecoder
from broker.decode_ztf import ZtfDecoder
from broker.durable import DurableState
from broker.encode import decode_dead_letter, encode_record
from broker.kafka import Record
from broker.models import ServedModel
from broker.pipeline import Pipeline
from broker.registry import rubin_local_schema
from broker.sanity import RULES, SurveyRules, rules_for
from broker.store import RocksStore
from broker.tools.replay import load_source
from broker.tools.testing import rubin_messages, ztf_messages
from dmdt.cnn import Classifier

JD_MINUS_MJD = 2400000.5


def _reason(decoder: Any, data: bytes) -> str | None:
    try:
        decoder(data)
    except DecodeError as exc:
        return exc.reason
    return None


@pytest.fixture(scope="module")
def ztf_alert(ztf_files: list[Path]) -> tuple[Any, dict[str, Any]]:
    """(writer schema, record) of a real ZTF alert with some history."""
    for path in ztf_files:
        with path.open("rb") as fh:
            reader = fastavro.reader(fh)
            for record in reader:
                if len(record["prv_candidates"] or []) > 3:  # type: ignore[index]
                    return reader.writer_schema, record  # type: ignore[return-value]
    pytest.skip("no ZTF alert with history")


def ztf_message(schema: Any, record: dict[str, Any], **changes: Any) -> bytes:
    """A ZTF container of the record with top-level or candidate fields changed."""
    candidate = {**record["candidate"], **changes.pop("candidate", {})}
    out = io.BytesIO()
    fastavro.writer(out, schema, [{**record, **changes, "candidate": candidate}])
    return out.getvalue()


LIGHTCURVE = {
    "alert_id": 7,
    "source_id": "1101014036588",
    "survey": "crts",
    "band": "V",
    "ra": 37.0,
    "dec": 1.8,
    "alert_time": 53715.0,
    "detections": [{"mjd": 53710.0 + i, "mag": 16.0, "magerr": 0.07} for i in range(6)],
    "label": None,
}


def lightcurve(**changes: Any) -> bytes:
    return encode_record("lightcurve_alert", {**LIGHTCURVE, **changes})


# ---------------------------------------------------------------- the decoders


def test_absurd_ztf_values_are_invalid(ztf_alert) -> None:
    schema, record = ztf_alert
    decoder = ZtfDecoder()
    assert _reason(decoder, ztf_message(schema, record)) is None
    for changes in (
        {"candidate": {"jd": 0.0}},  # MJD -2,399,999.5
        {"candidate": {"jd": 1e300}},
        {"candidate": {"jd": JD_MINUS_MJD + 80_000.0}},  # 2077: after the window
        {"candidate": {"magpsf": 3e38}},
        {"candidate": {"magpsf": -40.0}},
        {"candidate": {"sigmapsf": 1e30}},
        {"candidate": {"ra": 361.0}},
        {"candidate": {"dec": -90.5}},
        {"objectId": ""},
        {"objectId": "ZTF18" + "a" * 100_000},
        {"objectId": "ZTF18ab\0cdefg"},
        {"objectId": "ZTF18abcdef g"},
        {"objectId": "not-a-ztf-id"},
    ):
        assert _reason(decoder, ztf_message(schema, record, **changes)) == "invalid_value", changes
    history = [dict(p) for p in record["prv_candidates"]]
    detected = next(p for p in history if p["magpsf"] is not None)
    detected["jd"] = 1e300  # an absurd time in the history, not the candidate
    assert _reason(decoder, ztf_message(schema, record, prv_candidates=history)) == "invalid_value"


def test_absurd_rubin_values_are_invalid(rubin_file: Path) -> None:
    alert, _ = next(iter(rubin_messages(rubin_file)))
    schema = rubin_local_schema(1000)
    decoder = RubinDecoder()

    def encoded(record_changes: dict[str, Any], **source_changes: Any) -> bytes:
        source = {**alert["diaSource"], **source_changes}
        return frame(1000, write_body(schema, {**alert, **record_changes, "diaSource": source}))

    assert _reason(decoder, encoded({})) is None
    for changes in (
        {"midpointMjdTai": 0.0},
        {"midpointMjdTai": 1e300},
        {"midpointMjdTai": 50_000.0},  # 1995: before Rubin
        {"scienceFlux": 1e-30},  # magnitude 106 (scienceFlux is a float32)
        {"scienceFlux": 1e30},  # magnitude -44
        {"scienceFlux": 100.0, "scienceFluxErr": 1e30},
        {"ra": -1.0},
    ):
        assert _reason(decoder, encoded({}, **changes)) == "invalid_value", changes
    assert _reason(decoder, encoded({}, diaObjectId=-5)) == "invalid_value"  # ids are positive


def test_absurd_lightcurve_values_are_invalid() -> None:
    decoder = LightcurveDecoder()
    assert _reason(decoder, lightcurve()) is None
    point = LIGHTCURVE["detections"][0]
    for changes in (
        {"alert_time": -2_399_999.5},
        {"alert_time": 1e300},
        {"detections": [{**point, "mjd": 1e8}]},
        {"detections": [{**point, "mjd": -1.0}]},
        {"detections": [{**point, "mag": 3e38}]},
        {"detections": [{**point, "magerr": 1e300}]},
        {"source_id": "a" * 100_000},
        {"source_id": "CSS\0_1"},
        {"source_id": "with space"},
        {"source_id": "é"},
        {"band": "V\0"},
        {"band": "b" * 17},
        {"survey": ""},
        {"survey": "s" * 33},
        {"ra": math.inf},
        {"dec": 91.0},
    ):
        assert _reason(decoder, lightcurve(**changes)) == "invalid_value", changes


def test_the_rules_are_written_per_survey() -> None:
    assert set(RULES) == {"ztf", "rubin"}
    assert rules_for("crts") == rules_for("anything else")
    for rules in (*RULES.values(), rules_for("crts")):
        assert isinstance(rules, SurveyRules)
        assert rules.first_mjd < rules.last_mjd
    ztf = rules_for("ztf")
    assert ztf.source_id.fullmatch("ZTF18aawdnqe")
    assert not ztf.source_id.fullmatch("ZTF18x")
    rubin = rules_for("rubin")
    assert rubin.source_id.fullmatch("313897383979122767")
    assert rubin.source_id.fullmatch("sso:42")
    assert not rubin.source_id.fullmatch("0")


# ---------------------------------------------------------------- real data passes


def test_every_real_alert_passes(ztf_files: list[Path], rubin_file: Path) -> None:
    """The checks reject nothing real: 425 ZTF alerts, 7 Rubin alerts, every bundled light curve
    (CRTS, EROS-1, and the test folders) as replayed lightcurve_alert messages."""
    ztf = ZtfDecoder()
    n = sum(len(ztf(m)) for p in ztf_files for m in ztf_messages(p))
    assert n >= 425
    rubin = RubinDecoder()
    assert sum(len(rubin(m)) for _, m in rubin_messages(rubin_file)) >= 7
    from broker.sanity import check_header, check_points

    for name in ("crts", "eros1", "tests/data/catalina", "tests/data/ptf", "tests/data/crts"):
        source = load_source(name)
        for lc in source.items:
            check_header(source.survey, lc.source_id, float(lc.t[-1]), None, None)
            check_points(source.survey, "V", np.stack([lc.t, lc.m, lc.err]))


# ---------------------------------------------------------------- through the pipeline


def test_a_nul_in_a_source_id_is_dead_lettered_not_a_crash(ztf_alert, tmp_path: Path) -> None:
    """A NUL in a ZTF objectId (or an own-schema source_id) once reached the durable store's key
    codec and raised StateStoreError outside any handler: the batch crashed on every restart."""
    schema, record = ztf_alert
    model = tiny_model(tmp_path / "model")
    served = ServedModel.of(Classifier.from_checkpoint(model.path, "cpu"), 2)
    state = DurableState(served.grid, RocksStore(tmp_path / "db"))
    decoders = {"ztf": make_decoder("ztf"), "lc": make_decoder("lightcurve")}
    pipeline = Pipeline(decoders, state, lambda: served)
    good = crts_records(tmp_path, 2)[:50]
    nul_id = "ZTF18ab\0cdefg"
    batch = [
        Record("ztf", 0, 0, nul_id.encode(), ztf_message(schema, record, objectId=nul_id), None),
        Record("lc", 0, 1000, b"CSS\0_1", lightcurve(source_id="CSS\0_1"), None),
        *good,
    ]
    result = pipeline.process(batch)
    letters = [decode_dead_letter(v) for _, v in result.dead_letters]
    assert [(d.topic, d.offset, d.reason) for d in letters] == [
        ("ztf", 0, "invalid_value"),
        ("lc", 1000, "invalid_value"),
    ]
    assert result.alerts == 50  # the rest of the batch went on
    state.flush([("lc", 0)])
    assert sorted(k[0] for k, _ in state.store.rows()) == sorted({r.key.decode() for r in good})
    state.close()
