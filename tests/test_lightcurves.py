"""LightCurve, the readers (CRTS CSV, Catalina, PTF IPAC, EROS-1), the writer and cleaning."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from dmdt.datasets import bundled_path
from dmdt.lightcurves import (
    CleanSummary,
    LightCurve,
    LightCurveFormatError,
    clean,
    read_catalina,
    read_crts_csv,
    read_eros1,
    read_ptf_ipac,
    split_name,
    write_crts_csv,
)

DATA = Path(__file__).parent / "data"
CRTS = DATA / "crts"


def lc_of(t, m, err=None, **kw) -> LightCurve:
    err = np.full(len(t), 0.1) if err is None else err
    return LightCurve("s1", t, m, err, **kw)


# ------------------------------------------------------------------------------ LightCurve


def test_light_curve_holds_read_only_float64_copies():
    t = [50000, 50001, 50002]
    lc = lc_of(t, np.array([1, 2, 3], dtype=np.float32))
    assert lc.t.dtype == lc.m.dtype == lc.err.dtype == np.float64
    assert len(lc) == 3
    with pytest.raises(ValueError, match="read-only"):
        lc.m[0] = 5.0


def test_light_curve_rejects_mismatched_or_2d_arrays():
    with pytest.raises(ValueError, match="differ in length"):
        lc_of([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="one-dimensional"):
        lc_of(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2)))


@pytest.mark.parametrize(
    ("stem", "expected"),
    [
        ("1001007044030-RS_CVn", ("1001007044030", "RS_CVn")),
        ("1001004003261-beta_lyrae", ("1001004003261", "beta_lyrae")),
        ("1001072040259-Cep_II", ("1001072040259", "Cep_II")),
        ("42-a-b", ("42", "a-b")),
        ("42", ("42", None)),
    ],
)
def test_split_name_splits_on_the_first_dash(stem, expected):
    assert split_name(stem) == expected


# -------------------------------------------------------------------------------- CRTS CSV


@pytest.mark.parametrize("path", sorted(CRTS.glob("*.csv")), ids=lambda p: p.stem)
def test_read_crts_csv_matches_an_independent_parse(path):
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["ID", "MJD", "mag", "magerr", "RA", "Dec"]
    ref = np.array([[float(v) for v in r[1:]] for r in rows[1:]])
    lc = read_crts_csv(path)
    source_id, label = path.stem.split("-", 1)
    assert (lc.source_id, lc.label) == (source_id, label)
    np.testing.assert_array_equal(lc.t, ref[:, 0])
    np.testing.assert_array_equal(lc.m, ref[:, 1])
    np.testing.assert_array_equal(lc.err, ref[:, 2])
    assert lc.ra == np.median(ref[:, 3])
    assert lc.dec == np.median(ref[:, 4])


def test_write_crts_csv_round_trips_bit_for_bit(tmp_path):
    lc = read_crts_csv(CRTS / "1001072040259-Cep_II.csv")
    path = write_crts_csv(lc, tmp_path)
    assert path.name == "1001072040259-Cep_II.csv"
    back = read_crts_csv(path)
    for name in ("t", "m", "err"):
        np.testing.assert_array_equal(getattr(back, name), getattr(lc, name))
    assert (back.source_id, back.label, back.ra, back.dec) == (
        lc.source_id,
        lc.label,
        lc.ra,
        lc.dec,
    )


def test_write_crts_csv_keeps_missing_position_and_label(tmp_path):
    lc = LightCurve("7", [50000.1, 50000.2], [1.0, 2.0], [0.1, 0.1])
    back = read_crts_csv(write_crts_csv(lc, tmp_path))
    assert (back.source_id, back.label, back.ra, back.dec) == ("7", None, None, None)


def test_write_crts_csv_refuses_ids_that_break_the_file_name(tmp_path):
    with pytest.raises(ValueError, match="source id"):
        write_crts_csv(LightCurve("a-b", [1.0], [1.0], [1.0]), tmp_path)


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('"ID","MJD","mag","RA","Dec"\n1,53000.1,15.0,1.0,2.0\n', 1, "missing column.*magerr"),
        ("1,53000.1,15.0,0.1,1.0,2.0\n", 1, "missing column"),
        (
            '"ID","MJD","mag","magerr","RA","Dec"\n1,53000.1,15.0,0.1,1,2\n1,53000.2,abc,0.1,1,2\n',
            3,
            "column 'mag': 'abc' is not a number",
        ),
        (
            '"ID","MJD","mag","magerr","RA","Dec"\n1,53000.1,15.0,0.1,1,2\n\n1,53000.2,15.1,0.1\n',
            4,
            "4 fields where the header has 6",
        ),
        ("", 1, "empty file"),
    ],
)
def test_bad_crts_files_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "99-EW.csv"
    path.write_text(text)
    with pytest.raises(LightCurveFormatError, match=message) as info:
        read_crts_csv(path)
    assert info.value.path == str(path)
    assert info.value.line == line
    assert str(info.value).startswith(f"{path}, line {line}: ")


# -------------------------------------------------------------------------------- Catalina


def test_read_catalina_groups_rows_by_master_id():
    lcs = read_catalina(DATA / "catalina" / "css_release_cone.csv")
    assert [(lc.source_id, len(lc)) for lc in lcs] == [
        ("1001007044030", 24),
        ("1001004003261", 22),
        ("1001072040259", 5),
    ]
    first = lcs[0]
    assert first.t[0] == 53710.10320
    assert (first.m[0], first.err[0]) == (14.42, 0.06)
    assert first.ra == pytest.approx(18.6477, abs=1e-3)
    assert first.label is None


def test_read_catalina_accepts_rows_of_one_source_anywhere(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text(
        "MasterID,Mag,Magerr,RA,Dec,MJD,Blend\n"
        "1,15.0,0.1,10.0,1.0,53000.1,0\n2,16.0,0.1,11.0,2.0,53000.1,0\n1,15.2,0.1,10.0,1.0,53001.1,1\n"
    )
    one, two = read_catalina(path)
    np.testing.assert_array_equal(one.m, [15.0, 15.2])
    assert (two.source_id, len(two)) == ("2", 1)


def test_read_catalina_missing_column(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("ID,Mag,Magerr,RA,Dec,MJD\n1,15,0.1,1,1,53000\n")
    with pytest.raises(LightCurveFormatError, match=r"line 1: missing column\(s\) MasterID"):
        read_catalina(path)


# -------------------------------------------------------------------------------- PTF IPAC


def test_read_ptf_ipac_one_light_curve_per_object_and_filter():
    lcs = read_ptf_ipac(DATA / "ptf" / "ptf_lightcurves_cone.tbl")
    assert [(lc.source_id, lc.band, len(lc)) for lc in lcs] == [
        ("22682050001234", "R", 22),
        ("22681020005678", "g", 21),
    ]
    r_band = lcs[0]
    assert r_band.t[0] == 55003.685713  # obsmjd, not hmjd
    assert (r_band.m[0], r_band.err[0]) == (17.2156, 0.0304)
    assert np.isnan(r_band.m[3])
    assert np.isnan(r_band.err[3])
    assert r_band.ra == pytest.approx(203.71022, abs=1e-4)
    cleaned, report = clean(r_band)
    assert report.non_finite == 1
    assert len(cleaned) == 21


IPAC_HEAD = "\\fixlen = T\n|   oid|     mjd|   mag| magerr|\n|  long|  double|double| double|\n"


def test_read_ptf_ipac_accepts_the_short_column_names(tmp_path):
    path = tmp_path / "t.tbl"
    path.write_text(
        IPAC_HEAD + "      7 55000.5  17.10   0.020 \n      7 55001.5  17.20   0.030 \n"
    )
    (lc,) = read_ptf_ipac(path)
    assert (lc.source_id, lc.band, lc.ra) == ("7", None, None)
    np.testing.assert_array_equal(lc.m, [17.1, 17.2])


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        (
            IPAC_HEAD + "      7 55000.5  seven   0.020 \n",
            4,
            "column 'mag': 'seven' is not a number",
        ),
        (
            IPAC_HEAD + "      7 55000.5  17.10   0.020 \n      7 55000.55517.10   0.020 \n",
            5,
            "overlaps a '|' column boundary",
        ),
        (
            "\\fixlen = T\n|   oid|     mjd|  flux| magerr|\n      7 55000.5  17.10   0.020 \n",
            2,
            "no column named mag_autocorr or mag",
        ),
        ("\\fixlen = T\n      7 55000.5  17.10   0.020 \n", 2, "expected an IPAC"),
        (
            "|   oid|     mjd|   mag| magerr|\n|  long|  double| double| double|\n",
            2,
            "'|' positions",
        ),
    ],
)
def test_bad_ipac_files_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "bad.tbl"
    path.write_text(text)
    with pytest.raises(LightCurveFormatError, match=message) as info:
        read_ptf_ipac(path)
    assert info.value.line == line
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------------- EROS-1


def test_read_eros1_reads_magnitudes():
    path = bundled_path("eros1")
    lcs = read_eros1(path)
    assert len(lcs) == 2 * 3641
    assert {lc.band for lc in lcs} == {"B", "R"}
    labels = [lc.label for lc in lcs if lc.band == "R"]
    assert {k: labels.count(k) for k in set(labels)} == {
        "EB": 439,
        "Cepheid": 736,
        "RRLyrae": 2231,
        "Mira": 235,
    }
    with np.load(path) as z:
        i = int(np.flatnonzero(z["id"] == "135_9613")[0])
        s = slice(z["r_offsets"][i], z["r_offsets"][i + 1])
        mag, err, time = z["r_flux"][s] / 100, z["r_error"][s] / 100, z["r_time"][s] / 100
        catalogue_b = z["static_magnitude_b"][i] if "static_magnitude_b" in z else None
    lc = next(x for x in lcs if x.source_id == "135_9613" and x.band == "R")
    assert lc.label == "RRLyrae"
    assert lc.t[0] == 290.34  # days since the EROS epoch, as in the source file
    np.testing.assert_array_equal(lc.t, time)
    np.testing.assert_array_equal(lc.m, mag)
    np.testing.assert_array_equal(lc.err, err)
    assert 10 < np.median(lc.m) < 25  # magnitudes, not fluxes
    b = next(x for x in lcs if x.source_id == "135_9613" and x.band == "B")
    if catalogue_b is not None:
        assert abs(np.median(b.m) - catalogue_b) < 0.2
    assert lc.ra == pytest.approx(15 * (5 + 40 / 60 + 51.37 / 3600))
    assert lc.dec == pytest.approx(-(70 + 13 / 60 + 58.78 / 3600))


def test_read_eros1_drops_non_positive_values(tmp_path):
    from dmdt.datasets import write_npz

    arrays = {
        "format": np.array("dmdt-eros1/1"),
        "scale": np.array(100),
        "id": np.array(["1_1"]),
        "label": np.array(["Mira"]),
        "ra": np.array([80.0]),
        "dec": np.array([-69.0]),
        "r_offsets": np.array([0, 3]),
        "r_time": np.array([100, 200, 300]),
        "r_flux": np.array([1000, 0, -50]),
        "r_error": np.array([10, 10, 10]),
    }
    (lc,) = read_eros1(write_npz(tmp_path / "e.npz", arrays), bands=("R",))
    np.testing.assert_array_equal(lc.t, [1.0])
    assert lc.m[0] == pytest.approx(10.0)


# -------------------------------------------------------------------------------- cleaning


def test_clean_drops_non_finite_values():
    lc = lc_of([50000, 50001, np.nan, 50003], [1, np.inf, 3, 4], [0.1, 0.1, 0.1, np.nan])
    out, report = clean(lc, min_points=1)
    np.testing.assert_array_equal(out.t, [50000])
    assert (report.non_finite, report.n_out) == (3, 1)


def test_clean_drops_placeholder_times():
    lc = lc_of([-2409998.5, 53000.0, 39999.0, 53001.0], [1, 2, 3, 4])
    out, report = clean(lc, min_points=1)
    np.testing.assert_array_equal(out.t, [53000.0, 53001.0])
    assert report.placeholder_time == 2


def test_clean_placeholder_rule_can_be_switched_off():
    out, report = clean(lc_of([290.3, 291.35], [1, 2]), min_points=1, min_time=None)
    assert len(out) == 2
    assert report.placeholder_time == 0


def test_clean_sorts_stably_and_reports_it():
    lc = lc_of([50003, 50001, 50002], [3, 1, 2])
    out, report = clean(lc, min_points=1)
    np.testing.assert_array_equal(out.t, [50001, 50002, 50003])
    np.testing.assert_array_equal(out.m, [1, 2, 3])
    assert report.was_unsorted
    assert not clean(out, min_points=1)[1].was_unsorted


def test_clean_drops_exact_duplicate_rows():
    lc = lc_of([50001, 50002, 50001, 50001], [1, 2, 1, 1], [0.1, 0.2, 0.1, 0.1])
    out, report = clean(lc, min_points=1)
    np.testing.assert_array_equal(out.t, [50001, 50002])
    np.testing.assert_array_equal(out.m, [1, 2])
    assert (report.duplicate_rows, report.merged_same_time) == (2, 0)


def test_clean_averages_points_that_share_a_time():
    lc = lc_of(
        [50002, 50001, 50002, 50002, 50003], [2.0, 1.0, 2.6, 2.0, 3.0], [0.3, 0.1, 0.4, 0.3, 0.1]
    )
    out, report = clean(lc, min_points=1)
    np.testing.assert_array_equal(out.t, [50001, 50002, 50003])
    # (50002, 2.0, 0.3) twice is one duplicate; the two distinct rows left are averaged
    assert out.m[1] == pytest.approx(2.3)
    assert out.err[1] == pytest.approx(np.sqrt((0.3**2 + 0.4**2) / 2))
    assert (out.m[0], out.m[2]) == (1.0, 3.0)
    assert (report.duplicate_rows, report.merged_same_time, report.n_out) == (1, 1, 3)


def test_clean_returns_none_for_too_short_light_curves():
    t = 50000.0 + np.arange(20)
    out, report = clean(lc_of(t, np.ones(20)))
    assert out is not None
    assert report.reason is None
    out, report = clean(lc_of(t[:19], np.ones(19)))
    assert out is None
    assert (report.reason, report.n_out) == ("too_short", 19)


def test_clean_keeps_metadata_and_leaves_input_alone():
    lc = lc_of([50002, 50001], [2, 1], label="EW", band="V", ra=1.5, dec=-2.5)
    out, _ = clean(lc, min_points=1)
    assert (out.source_id, out.label, out.band, out.ra, out.dec) == ("s1", "EW", "V", 1.5, -2.5)
    np.testing.assert_array_equal(lc.t, [50002, 50001])


def test_clean_on_a_real_crts_file_with_a_placeholder():
    lc = read_crts_csv(CRTS / "1009027044598-RRab.csv")
    out, report = clean(lc)
    assert (report.n_in, report.placeholder_time, report.merged_same_time) == (188, 1, 1)
    assert report.n_out == len(out) == 186
    assert np.all(np.diff(out.t) > 0)
    assert out.t[0] > 40000


def test_clean_summary_adds_reports():
    reports = [clean(read_crts_csv(p))[1] for p in sorted(CRTS.glob("*.csv"))]
    summary = CleanSummary.of(reports)
    assert summary.curves_in == summary.curves_out == 6
    assert summary.points_in == sum(r.n_in for r in reports)
    assert summary.points_in - summary.points_out == (
        summary.non_finite
        + summary.placeholder_time
        + summary.duplicate_rows
        + summary.merged_same_time
    )


def test_head_keeps_the_first_points_and_the_curves_identity() -> None:
    t = np.array([1.0, 2.0, 3.0, 4.0])
    lc = LightCurve("s", t, 10 + t, t / 100, label="EW", band="g", ra=1.5, dec=-2.0)
    cut = lc.head(3)
    assert np.array_equal(cut.t, t[:3])
    assert np.array_equal(cut.m, 10 + t[:3])
    assert np.array_equal(cut.err, t[:3] / 100)
    assert (cut.source_id, cut.label, cut.band, cut.ra, cut.dec) == ("s", "EW", "g", 1.5, -2.0)
    assert len(lc.head(10)) == 4
