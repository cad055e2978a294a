"""Datasets: the bundled data (class counts, exact round trips), folders, compact files, alerts."""

from __future__ import annotations

import hashlib
import io
import types
from collections import Counter
from pathlib import Path

import fastavro
import numpy as np
import pytest

from dmdt.datasets import (
    DATA_ENV,
    bundled_path,
    data_dir,
    export_csv,
    iter_folder,
    load_labelled,
    read_compact,
    save_compact,
)
from dmdt.lightcurves import CleanSummary, LightCurve, LightCurveFormatError, read_crts_csv

CRTS_FIXTURES = Path(__file__).parent / "data" / "crts"
CRTS_COUNTS = {
    "EA": 996,
    "EW": 994,
    "RRab": 994,
    "RRc": 994,
    "RS_CVn": 757,
    "LPV": 256,
    "RRd": 250,
    "beta_lyrae": 139,
    "HADS": 121,
    "ELL": 71,
    "Cep_II": 62,
    "PCEB": 42,
    "Blazhko": 36,
    "ACEP": 30,
    "Hump": 12,
    "LADS": 3,
}


@pytest.fixture(scope="module")
def crts_raw() -> list[LightCurve]:
    return load_labelled("crts", clean=False)


def assert_same(a: LightCurve, b: LightCurve) -> None:
    assert (a.source_id, a.label, a.band, a.ra, a.dec) == (
        b.source_id,
        b.label,
        b.band,
        b.ra,
        b.dec,
    )
    for name in ("t", "m", "err"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


# ---------------------------------------------------------------------------- bundled CRTS


def test_bundled_crts_class_counts_match_the_provenance(crts_raw):
    counts = Counter(lc.label for lc in crts_raw)
    assert counts == CRTS_COUNTS
    assert sum(counts.values()) == 5757
    assert len({lc.source_id for lc in crts_raw}) == 5757


def test_bundled_crts_equals_the_original_csv_files(crts_raw):
    by_id = {lc.source_id: lc for lc in crts_raw}
    for path in sorted(CRTS_FIXTURES.glob("*.csv")):
        original = read_crts_csv(path)
        assert_same(by_id[original.source_id], original)


def test_bundled_crts_is_raw_and_cleans_to_the_documented_numbers(crts_raw):
    reports = []
    kept = load_labelled("crts", reports=reports)
    summary = CleanSummary.of(reports)
    assert summary.points_in == sum(map(len, crts_raw)) == 1_654_339
    assert (summary.curves_out, summary.too_short) == (5757, 0)
    assert (summary.placeholder_time, summary.duplicate_rows, summary.merged_same_time) == (
        4,
        413,
        2135,
    )
    assert summary.non_finite == 0
    assert summary.points_out == 1_651_787
    assert all(np.all(np.diff(lc.t) > 0) for lc in kept)


def test_load_labelled_selects_classes():
    lcs = load_labelled("crts", classes=["RRd", "LADS"], clean=False)
    assert Counter(lc.label for lc in lcs) == {"RRd": 250, "LADS": 3}
    with pytest.raises(ValueError, match="no light curves of class"):
        load_labelled("crts", classes=["RR_Lyr"])


def test_load_labelled_eros1_bands():
    both = load_labelled("eros1", clean=False)
    r_only = load_labelled("eros1-r", clean=False)
    assert len(both) == 2 * len(r_only) == 2 * 3641
    assert {lc.band for lc in r_only} == {"R"}
    cleaned = load_labelled("eros1-r")  # times are not MJD: the placeholder rule must not fire
    assert len(cleaned) > 3600


def test_unknown_source_is_refused():
    with pytest.raises(FileNotFoundError, match="bundled dataset"):
        load_labelled("no-such-dataset")


def test_data_dir_defaults_to_the_repository_and_follows_the_env(monkeypatch, tmp_path):
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert data_dir() == Path(__file__).resolve().parents[1] / "data"
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    (tmp_path / "crts").mkdir()
    save_compact(
        [read_crts_csv(p) for p in CRTS_FIXTURES.glob("*.csv")],
        tmp_path / "crts" / "crts_drake2014.npz",
    )
    assert bundled_path("crts").parent.parent == tmp_path
    assert len(load_labelled("crts", clean=False)) == 6
    with pytest.raises(FileNotFoundError, match="eros1"):
        bundled_path("eros1")


# ------------------------------------------------------------------------------ compact npz


def test_compact_round_trip_of_arbitrary_floats_is_exact(tmp_path):
    rng = np.random.default_rng(1)
    lcs = [
        LightCurve(
            "a",
            rng.uniform(50000, 51000, 50),
            rng.normal(15, 1, 50),
            rng.random(50),
            label="EW",
            band="g",
            ra=1.25,
            dec=-3.5,
        ),
        LightCurve("b", [53000.125, 53001.5], [np.nan, 12.0], [0.1, np.inf]),
        LightCurve("c", [], [], []),
    ]
    back = read_compact(save_compact(lcs, tmp_path / "x.npz"))
    for a, b in zip(lcs, back, strict=True):
        assert_same(a, b)


def test_compact_stores_decimal_columns_as_scaled_integers(tmp_path):
    lc = read_crts_csv(CRTS_FIXTURES / "1009027044598-RRab.csv")  # includes MJD -2409998.5
    path = save_compact([lc], tmp_path / "x.npz")
    with np.load(path) as z:
        assert "t" not in z
        assert int(z["t_scale"]) == 10
        assert int(z["m_scale"]) <= 7
    assert_same(read_compact(path)[0], lc)


def test_read_compact_refuses_other_files(tmp_path):
    path = tmp_path / "other.npz"
    np.savez(path, x=np.arange(3))
    with pytest.raises(LightCurveFormatError, match="expected 'dmdt-lightcurves/1'"):
        read_compact(path)


# ---------------------------------------------------------------------------------- folders


def test_export_then_load_a_folder_round_trips(tmp_path, crts_raw):
    picked = [lc for lc in crts_raw if lc.label in ("LADS", "Hump")]
    paths = export_csv(picked, tmp_path / "out")
    assert len(paths) == 15
    back = load_labelled(tmp_path / "out", clean=False)
    by_id = {lc.source_id: lc for lc in back}
    for lc in picked:
        assert_same(by_id[lc.source_id], lc)
    assert Counter(lc.label for lc in load_labelled(tmp_path / "out", classes=["LADS"])) == {
        "LADS": 3,
    }


def test_export_refuses_two_light_curves_with_one_file_name(tmp_path):
    twins = [LightCurve("1", [1.0], [1.0], [1.0], label="EW", band=b) for b in "BR"]
    with pytest.raises(ValueError, match="select one band"):
        export_csv(twins, tmp_path)


def test_iter_folder_is_lazy(tmp_path):
    it = iter_folder(CRTS_FIXTURES, progress=False)
    assert isinstance(it, types.GeneratorType)
    assert next(it).source_id == "1001004003261"


def write_bad_folder(folder: Path) -> Path:
    folder.mkdir()
    for path in sorted(CRTS_FIXTURES.glob("*.csv"))[:2]:
        (folder / path.name).write_bytes(path.read_bytes())
    bad = folder / "5-EW.csv"
    bad.write_text(
        '"ID","MJD","mag","magerr","RA","Dec"\n5,53000.1,15.0,0.1,1,2\n5,53000.2,,0.1,1,2\n'
    )
    return bad


def test_a_bad_file_in_a_folder_raises_with_file_and_line(tmp_path):
    bad = write_bad_folder(tmp_path / "lcs")
    with pytest.raises(LightCurveFormatError) as info:
        load_labelled(tmp_path / "lcs")
    assert str(info.value) == f"{bad}, line 3: column 'mag': '' is not a number"


def test_bad_files_can_be_skipped_and_counted(tmp_path):
    write_bad_folder(tmp_path / "lcs")
    bad_files: list[LightCurveFormatError] = []
    lcs = load_labelled(tmp_path / "lcs", bad_files=bad_files)
    assert len(lcs) == 2
    assert [(Path(e.path).name, e.line) for e in bad_files] == [("5-EW.csv", 3)]


# ------------------------------------------------------------------------- ZTF / Rubin data


def test_ztf_alerts_match_their_manifest_and_keep_every_light_curve():
    base = data_dir() / "ztf" / "ztfss18_public_20180713"
    rows = [line.split("\t") for line in (base / "MANIFEST.tsv").read_text().splitlines()[1:]]
    assert len(rows) == 418
    assert Counter(r[1] for r in rows) == {"with_cutouts": 40, "no_cutouts": 378}
    for name, kind, orig_size, orig_sha, size, sha in rows:
        data = (base / kind / name).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (int(size), sha)
        if kind == "with_cutouts":
            assert (orig_size, orig_sha) == (size, sha)
    for name, kind, *_ in rows[:: 418 // 20]:  # decode a sample: photometry kept, cutouts gone
        (alert,) = fastavro.reader(io.BytesIO((base / kind / name).read_bytes()))
        assert alert["candidate"]["magpsf"] > 0
        has_cutouts = alert["cutoutScience"] is not None
        assert has_cutouts == (kind == "with_cutouts")
    assert len(list(base.rglob("*.avro"))) == 418


def test_other_alert_samples_are_present():
    root = data_dir()
    assert len(list((root / "ztf" / "schema_v4.02").glob("*.avsc"))) == 5
    assert len(list((root / "ztf" / "ztf-avro-alert_samples").glob("*.avro"))) == 3
    assert len(list((root / "ztf" / "fink_client_samples").glob("*.avro"))) == 4
    with (root / "rubin" / "part-2-918301.avro").open("rb") as fh:
        assert len(list(fastavro.reader(fh))) == 7
