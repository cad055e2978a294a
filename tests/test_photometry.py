"""What the stream's magnitudes mean on the repository's real survey alerts: ZTF DC magnitudes and
Rubin total fluxes (broker.photometry, docs/surveys.md), one kind of light curve per source kept
in its state, forced photometry, one answer per object, and the upgrade of rows written by the
decoders before 0.2."""

from __future__ import annotations

import io
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import fastavro
import numpy as np
import pytest
from stream_helpers import tiny_model, ztf_night_messages, ztf_night_records

from broker.decode import make_decoder
from broker.decode_ztf import ZtfDecoder
from broker.durable import DurableState
from broker.encode import decode_classification
from broker.kafka import Record
from broker.models import ServedModel
from broker.pipeline import Pipeline
from broker.state import MemoryState
from broker.store import RocksStore, encode_row
from broker.tools.testing import rubin_messages
from dmdt import engine
from dmdt.bands import combine_bands
from dmdt.cnn import Classifier

REPO = Path(__file__).resolve().parent.parent
JD0 = 2400000.5


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> ServedModel:
    path = tmp_path_factory.mktemp("model") / "m"
    tiny_model(path, min_points=5)
    return ServedModel.of(Classifier.from_checkpoint(path, "cpu"))


def pipeline(served: ServedModel, state: Any = None, objects: bool = False) -> Pipeline:
    state = state if state is not None else MemoryState(served.classifier.grid)
    decoders = {"ztf": make_decoder("ztf"), "rubin": make_decoder("rubin"),
                "lc": make_decoder("lightcurve")}  # fmt: skip
    return Pipeline(decoders, state, lambda: served, object_records=objects)


def raw_detections() -> dict[tuple[str, int], dict[float, list[dict[str, Any]]]]:
    """(objectId, fid) -> jd -> the detections at that time as the night's first alert that
    carries the time has them (an exposure can hold two or three detections of one object)."""
    out: dict[tuple[str, int], dict[float, list[dict[str, Any]]]] = defaultdict(dict)
    for oid, _, message in ztf_night_messages():
        (record,) = fastavro.reader(io.BytesIO(message))
        seen: dict[tuple[int, float], list[dict[str, Any]]] = defaultdict(list)
        for p in [record["candidate"], *(record["prv_candidates"] or [])]:  # type: ignore[index, call-overload]
            if p["magpsf"] is not None:
                seen[(p["fid"], p["jd"])].append(p)
        for (fid, jd), copies in seen.items():
            out[(oid, fid)].setdefault(jd, copies)
    return out


@pytest.fixture(scope="module")
def night(served: ServedModel) -> tuple[Pipeline, list[Any]]:
    """The ZTF night through one pipeline, in batches of 50 alerts, with object records."""
    p = pipeline(served, objects=True)
    records = ztf_night_records()
    results = [p.process(records[i : i + 50]) for i in range(0, len(records), 50)]
    return p, results


# ---------------------------------------------------------------- ZTF


def _near(p: dict[str, Any]) -> bool:
    return p["distnr"] is not None and 0 <= p["distnr"] < 1.4 and p["magnr"] is not None


def test_each_source_holds_exactly_the_points_of_its_kind(
    night: tuple[Pipeline, list[Any]],
) -> None:
    """An independent reading of the rules on the raw night: a source's kind is decided by the
    earliest detection of its band in the first alert that carries the band (a counterpart
    within 1.4": total, else difference); it then holds every distinct detection usable in that
    kind (total: near with a positive total flux; difference: a positive difference) of every
    later alert, and nothing else."""
    p, _ = night
    first_alert: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for oid, _, message in ztf_night_messages():
        (record,) = fastavro.reader(io.BytesIO(message))
        dets = [d for d in [record["candidate"], *(record["prv_candidates"] or [])]  # type: ignore[index, call-overload]
                if d["magpsf"] is not None]  # fmt: skip
        for fid in {d["fid"] for d in dets}:
            first_alert.setdefault((oid, fid), [d for d in dets if d["fid"] == fid])
    kinds = {"total": 0, "difference": 0}
    band = {1: "g", 2: "r", 3: "i"}
    for (oid, fid), detections in raw_detections().items():
        earliest = min(first_alert[(oid, fid)], key=lambda d: d["jd"])
        kind = "total" if _near(earliest) else "difference"
        want = set()
        for jd, copies in detections.items():
            for d in copies:  # a time is held if any of its detections is usable
                sign = 1 if d["isdiffpos"] in ("t", "1") else -1
                if kind == "total":
                    flux = 10 ** (-0.4 * d["magnr"]) + sign * 10 ** (-0.4 * d["magpsf"])
                    if _near(d) and flux > 0:
                        want.add(jd - JD0)
                elif sign > 0:
                    want.add(jd - JD0)
        key = (oid, band[fid])
        (stored,) = p.state.photometry([key])
        if not want:
            assert stored is None, key  # no usable point: no row either
            continue
        assert stored == kind, key
        kinds[kind] += 1
        t, _, _ = p.state.history(key)
        assert set(t.tolist()) == want, key
    assert kinds["total"] > 400  # 96 % of detections are near
    assert kinds["difference"] > 30


def test_g_and_r_move_together_in_total_magnitudes_not_in_magpsf(
    night: tuple[Pipeline, list[Any]],
) -> None:
    """A variable star's g and r light curves rise and fall together. In DC magnitudes the
    near-simultaneous (< 0.1 d) g and r points of the night's objects with both signs of
    difference correlate; in magpsf (the difference's magnitude, which folds the light curve
    about the reference flux) they mostly do not."""
    p, _ = night
    raw = raw_detections()
    total_r, magpsf_r = [], []
    for oid in sorted({k[0] for k in raw}):
        g, r = raw.get((oid, 1)), raw.get((oid, 2))
        if not g or not r:
            continue
        signs = {d[0]["isdiffpos"] for d in [*g.values(), *r.values()]}
        if len(signs) < 2 or p.state.photometry([(oid, "g"), (oid, "r")]) != ["total", "total"]:
            continue
        tg, mg, _ = p.state.history((oid, "g"))
        tr, mr, _ = p.state.history((oid, "r"))
        pairs = [(i, int(np.argmin(np.abs(tr - t)))) for i, t in enumerate(tg)]
        pairs = [(i, j) for i, j in pairs if abs(tr[j] - tg[i]) < 0.1]
        if len(pairs) < 6:
            continue
        gi, rj = np.array(pairs).T
        psf_g = np.array([g[t + JD0][0]["magpsf"] for t in tg[gi]])
        psf_r = np.array([r[t + JD0][0]["magpsf"] for t in tr[rj]])
        total_r.append(np.corrcoef(mg[gi], mr[rj])[0, 1])
        magpsf_r.append(np.corrcoef(psf_g, psf_r)[0, 1])
    total, magpsf = np.array(total_r), np.array(magpsf_r)
    assert total.size >= 10
    assert np.median(total) >= 0.65, total  # measured 0.75 on 15 objects
    assert np.median(magpsf) <= 0.5, magpsf  # measured 0.36
    assert np.mean(total > magpsf) >= 0.7


def _real_alert(kind: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(writer schema, record) of a night alert with 10+ detections of one band that proposes
    ``kind`` (checked through the decoder)."""
    decoder = ZtfDecoder()
    for _, _, message in ztf_night_messages():
        reader = fastavro.reader(io.BytesIO(message))
        (record,) = reader
        alerts = decoder(message)
        if len(alerts) == 1 and alerts[0].photometry == kind and alerts[0].n >= 10:
            return reader.writer_schema, record  # type: ignore[return-value]
    raise AssertionError(f"no night alert proposes {kind}")


def _message(schema: dict[str, Any], record: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    fastavro.writer(out, fastavro.parse_schema(schema), [record], codec="null")
    return out.getvalue()


def test_a_source_keeps_the_kind_it_started_with(served: ServedModel) -> None:
    """A later alert that proposes the other kind (its detections now far from any reference
    counterpart) does not switch the source: its points are taken in the source's kind, and the
    detections that have none are counted; the record publishes the kind."""
    schema, record = _real_alert("total")
    far = {
        **record,
        "candid": record["candid"] + 1,
        "candidate": {**record["candidate"], "distnr": 5.0},
        "prv_candidates": [{**d, "distnr": 5.0} for d in record["prv_candidates"]],
    }
    first, second = _message(schema, record), _message(schema, far)
    (alert,) = ZtfDecoder()(second)
    assert alert.photometry == "difference"
    key = (record["objectId"], alert.band)

    oid = record["objectId"].encode()  # messages keyed by their source id (the contract)
    p = pipeline(served)
    r1 = p.process([Record("ztf", 0, 0, oid, first, None)])
    held = p.state.n_points(p.state.table.rows([key], create=False))[0]
    r2 = p.process([Record("ztf", 0, 1, oid, second, None)])
    assert p.state.photometry([key]) == ["total"]
    assert p.state.n_points(p.state.table.rows([key], create=False))[0] == held  # all far
    n_detections = alert.n + alert.dropped.total()  # every detection of the band: all far
    assert r2.dropped_detections[("ztf", "reference_far")] == n_detections
    assert {decode_classification(v).photometry for _, v in r1.outputs + r2.outputs} == {"total"}

    p = pipeline(served)  # the other order: the source starts as a transient and stays one
    p.process([Record("ztf", 0, 0, oid, second, None)])
    p.process([Record("ztf", 0, 1, oid, first, None)])
    assert p.state.photometry([key]) == ["difference"]
    t, _, _ = p.state.history(key)
    positive = {d["jd"] - JD0 for d in [record["candidate"], *record["prv_candidates"]]
                if d["magpsf"] is not None and d["isdiffpos"] == "t"}  # fmt: skip
    assert set(t.tolist()) == positive


def _fp_hist_schema() -> dict[str, Any]:
    return json.loads((REPO / "data/ztf/schema_v4.02/fp_hist.avsc").read_text())


def test_ztf_forced_photometry_adds_total_points(served: ServedModel) -> None:
    """fp_hists (schema 4.x) with the official fp_hist record: each clean epoch without a
    detection adds the DC magnitude magzpsci - 2.5 log10(10^(0.4 (magzpsci - magnr)) +
    forcediffimflux), error 1.0857 forcediffimfluxunc / that flux; flagged, missing (-99999) and
    undetected-band epochs are handled as documented; ``forced=False`` ignores them."""
    schema, record = _real_alert("total")
    fp = _fp_hist_schema()
    writer = json.loads(json.dumps(schema))
    writer["fields"].append({"name": "fp_hists", "type": ["null", {"type": "array", "items": fp}],
                             "default": None})  # fmt: skip
    cand = record["candidate"]
    base = {f["name"]: None for f in fp["fields"]}
    base.update(field=cand["field"], rcid=cand["rcid"], fid=cand["fid"], pid=1, rfid=2,
                programid=1, ranr=cand["ra"], decnr=cand["dec"], magnr=cand["magnr"],
                sigmagnr=cand["sigmagnr"], distnr=cand["distnr"], magzpsci=26.3,
                procstatus="0")  # fmt: skip
    epochs = [
        dict(jd=cand["jd"] - 40.25, forcediffimflux=-1500.0, forcediffimfluxunc=40.0),
        dict(jd=cand["jd"] - 41.25, forcediffimflux=2500.0, forcediffimfluxunc=45.0),
        dict(jd=cand["jd"] - 42.25, forcediffimflux=100.0, forcediffimfluxunc=30.0,
             procstatus="56"),  # a processing warning
        dict(jd=cand["jd"] - 43.25, forcediffimflux=-99999.0, forcediffimfluxunc=-99999.0),
        dict(jd=cand["jd"], forcediffimflux=123.0, forcediffimfluxunc=9.0),  # a detected epoch
    ]  # fmt: skip
    fp_hists = [{**base, **e} for e in epochs]
    message = _message(writer, {**record, "fp_hists": fp_hists})

    (with_fp,) = ZtfDecoder()(message)
    (without,) = ZtfDecoder(forced=False)(message)
    (plain,) = ZtfDecoder()(_message(schema, record))
    np.testing.assert_array_equal(without.t, plain.t)
    assert with_fp.n == plain.n + 2
    ref = 10 ** (0.4 * (26.3 - cand["magnr"]))
    for e in epochs[:2]:
        flux = ref + e["forcediffimflux"]
        i = int(np.flatnonzero(with_fp.t == e["jd"] - JD0)[0])
        assert with_fp.m[i] == pytest.approx(26.3 - 2.5 * math.log10(flux), rel=1e-6)
        assert with_fp.err[i] == pytest.approx(1.0857362 * e["forcediffimfluxunc"] / flux, 1e-6)
    assert with_fp.dropped["forced_flagged"] == 2  # the warning and the missing flux
    assert with_fp.points("difference").t.tolist() == plain.points("difference").t.tolist()
    # a band with forced photometry only: total points, no difference alternative
    other_band = {**base, **epochs[0], "fid": 3 - cand["fid"] if cand["fid"] < 3 else 1}
    alerts = ZtfDecoder()(_message(writer, {**record, "fp_hists": [other_band]}))
    assert len(alerts) == 2
    assert (alerts[1].n, alerts[1].other) == (1, None)


# ---------------------------------------------------------------- Rubin


def test_rubin_negative_differences_are_measurements(rubin_file: Path, served: ServedModel) -> None:
    """The sample's source with most negative difference fluxes keeps every detection: its
    light curve is scienceFlux, and the state holds each detection's time."""
    p = pipeline(served)
    messages = list(rubin_messages(rubin_file))

    def negatives(alert: dict[str, Any]) -> int:
        return sum((d["psfFlux"] or 0) < 0 for d in [alert["diaSource"], *alert["prvDiaSources"]])

    alert, message = max(messages, key=lambda x: negatives(x[0]) if x[0]["prvDiaSources"] else 0)
    detections = [alert["diaSource"], *alert["prvDiaSources"]]
    negative = [d for d in detections if d["psfFlux"] < 0]
    assert len(negative) >= 250  # 251 of 346 in lsst.v10_0 sample of March 2026
    source = str(alert["diaSource"]["diaObjectId"])
    p.process([Record("rubin", 0, 0, source.encode(), message, None)])
    for band in {d["band"] for d in detections}:
        assert p.state.photometry([(source, band)]) == ["total"]
        t, _, _ = p.state.history((source, band))
        times = {d["midpointMjdTai"] for d in detections if d["band"] == band}
        assert times <= set(t.tolist())


# ---------------------------------------------------------------- one answer per object


def test_one_object_record_per_object_and_batch(night: tuple[Pipeline, list[Any]]) -> None:
    """Each batch publishes one object record per object it classified, combining exactly the
    bands whose band records it published (the mean of their probabilities)."""
    _, results = night
    n_objects = 0
    for result in results:
        bands: dict[str, dict[str, Any]] = defaultdict(dict)
        for _, v in result.outputs:
            c = decode_classification(v)
            assert c.scope == "band"
            assert c.photometry in ("total", "difference")
            bands[c.source_id][c.band] = c  # the last record of a band in the batch
        objects = [decode_classification(v) for _, v in result.objects]
        assert sorted(o.source_id for o in objects) == sorted(bands)  # one each
        for o in objects:
            mine = bands[o.source_id]
            assert (o.scope, o.photometry) == ("object", None)
            assert [b[0] for b in o.bands] == sorted(mine)
            assert o.band == ",".join(sorted(mine))
            assert o.n_points == sum(c.n_points for c in mine.values())
            for name, n, kind, best, prob in o.bands:
                assert (n, kind, best) == (mine[name].n_points, mine[name].photometry,
                                           mine[name].predicted_class)  # fmt: skip
                assert prob == max(mine[name].probabilities.values())
            probs = np.array([list(mine[b].probabilities.values()) for b in sorted(mine)])
            expect = combine_bands(probs, np.array([mine[b].n_points for b in sorted(mine)]))
            np.testing.assert_allclose(list(o.probabilities.values()), expect, rtol=1e-12)
        n_objects += len(objects)
    assert n_objects >= 150  # 157 object records over the night's 9 batches (min_points 5)


# ---------------------------------------------------------------- upgrade


def test_rows_of_the_old_decoders_are_replaced_once(tmp_path: Path, served: ServedModel) -> None:
    """A ZTF source's format-1 row (difference magnitudes) is replaced by the new alert's points
    (counted), after which it grows as usual; a lightcurve source's format-1 row (magnitudes
    as sent, unchanged in meaning) is kept and extended."""
    from dmdt.grids import get_grid

    grid = get_grid()
    schema, record = _real_alert("total")
    message = _message(schema, record)
    (alert,) = ZtfDecoder()(message)
    ztf_key = (record["objectId"], alert.band)
    old_t = np.array([50000.0, 50001.0, 50002.0])
    old = {"t": old_t, "m": np.full(3, 18.0), "err": np.full(3, 0.1)}
    store = RocksStore(tmp_path / "rocksdb")
    rows = []
    for key in (ztf_key, ("crts-1", "V")):
        data = bytearray(encode_row({**old, "counts": engine.counts(old_t, old["m"], grid)}, grid))
        data[4], data[5] = 1, data[5] & 0x01
        rows.append((key, bytes(data)))
    store.write(rows)
    state = DurableState(grid, store)
    assert state.photometry([ztf_key, ("crts-1", "V")]) == ["legacy", "legacy"]
    p = pipeline(served, state)
    from broker.decode import DecodedAlert
    from broker.encode import encode_lightcurve_alert

    lc = encode_lightcurve_alert(DecodedAlert(
        1, "crts-1", "crts", "V", None, None, 50003.0, np.array([50003.0]), np.array([18.1]),
        np.array([0.1])))  # fmt: skip
    oid = record["objectId"].encode()  # messages keyed by their source id (the contract)
    both = [Record("ztf", 0, 0, oid, message, None), Record("lc", 0, 1, b"crts-1", lc, None)]
    result = p.process(both)
    assert result.rows_reset == 1
    t, m, _ = state.history(ztf_key)
    times, first = np.unique(alert.t, return_index=True)  # an exposure's repeated detection
    np.testing.assert_array_equal(t, times)  # the old points are gone
    np.testing.assert_array_equal(m, alert.m[first])
    assert state.history(("crts-1", "V"))[0].tolist() == [*old_t.tolist(), 50003.0]
    assert state.photometry([ztf_key, ("crts-1", "V")]) == ["total", "total"]
    state.flush([("ztf", 0), ("lc", 0)])
    again = p.process([Record("ztf", 0, 2, oid, message, None)])  # redelivered
    assert again.rows_reset == 0
    state.close()
    reopened = DurableState(grid, RocksStore(tmp_path / "rocksdb"))
    assert reopened.photometry([ztf_key, ("crts-1", "V")]) == ["total", "total"]
    np.testing.assert_array_equal(reopened.history(ztf_key)[0], times)
    reopened.close()


def test_the_surveys_page_shows_what_the_measurement_gives_now() -> None:
    """docs/surveys.md's photometry section is what research.survey_photometry generates from
    the repository's alerts with today's code (rerun it after changing a decoder)."""
    from research.pages import replace_block
    from research.survey_photometry import report, runner

    result, _, _ = runner.measure()
    text = (REPO / "docs" / "surveys.md").read_text()
    block = report.markdown(result)
    assert replace_block(text, block, report.BEGIN, report.END) == text, (
        "docs/surveys.md is stale: run python -m research.survey_photometry"
    )
    z = result["ztf"]
    assert z["references"]["alerce_mag_corr_max_abs_diff"] < 1e-9  # ALeRCE's mag_corr
    assert z["band_agreement"]["median_total"] > z["band_agreement"]["median_magpsf"]
