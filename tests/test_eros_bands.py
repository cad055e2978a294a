"""EROS-1's two bands (research.eros_bands): the cross-band features on a synthetic two-band star,
the class mapping of the transfer, the run in --quick mode, and the committed page as the report
of the committed results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dmdt.lightcurves import LightCurve
from research.eros_bands import features as mb
from research.eros_bands import runner

REPO = Path(__file__).resolve().parents[1]


def two_band_star(period: float, colour: float, amp_b: float, amp_r: float) -> mb.Eros:
    """One EROS-like object: ~120 points per band over 900 days, B fainter by ``colour``."""
    rng = np.random.default_rng(3)
    bands = {}
    for band, amp, base in (("B", amp_b, 15.0 + colour), ("R", amp_r, 15.0)):
        t = np.sort(rng.uniform(0.0, 900.0, 120))
        m = base + amp * np.sin(2 * np.pi * t / period) + rng.normal(0, 0.01, t.size)
        bands[band] = [LightCurve("s1", t, m, np.full(t.size, 0.01), label="RRLyrae", band=band)]
    return mb.Eros(["s1"], np.array([2]), np.array([True]), bands)


def test_colour_features_of_a_synthetic_star() -> None:
    eros = two_band_star(0.5731, colour=0.5, amp_b=0.4, amp_r=0.2)
    fb = mb.current_features(eros.bands["B"])  # type: ignore[arg-type]
    fr = mb.current_features(eros.bands["R"])  # type: ignore[arg-type]
    assert fb.shape == (1, len(mb.FEATURE_NAMES))
    col = dict(zip(mb.COLOUR_NAMES, mb.colour_features(eros, fb, fr)[0], strict=True))
    assert col["median_b_minus_r"] == pytest.approx(0.5, abs=0.05)
    assert col["log_amplitude_ratio_b_r"] == pytest.approx(np.log10(2.0), abs=0.05)
    assert col["period_agree_b_r"] == 1.0
    assert col["log_period_mean"] == pytest.approx(np.log10(0.5731), abs=1e-3)


def test_missing_band_gives_nan_colours() -> None:
    eros = two_band_star(0.5731, 0.5, 0.4, 0.2)
    fb = mb.current_features(eros.bands["B"])  # type: ignore[arg-type]
    fr = np.full_like(fb, np.nan)
    col = mb.colour_features(eros, fb, fr)
    assert np.isnan(col[0, mb.COLOUR_NAMES.index("period_agree_b_r")])
    assert np.isnan(col[0, mb.COLOUR_NAMES.index("mean_b_minus_r")])


def test_crts_classes_map_to_eros_groups() -> None:
    classes = ("EW", "EA", "RRab", "RRc", "RRd", "RS_CVn", "LPV")
    got = mb.map_predictions(classes, np.arange(7))
    assert got.tolist() == ["EB", "EB", "RRLyrae", "RRLyrae", "RRLyrae", "RS_CVn", "Mira"]
    kept = [mb.FEATURE_NAMES[i] for i in mb.survey_invariant_columns()]
    assert "mean" not in kept
    assert "period" in kept


@pytest.mark.slow
def test_multiband_quick(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert runner.main(["--quick", "--per-class", "8", "--out", str(out)]) == 0
    doc = json.loads((out / "multiband.json").read_text())
    assert doc["data"]["objects"] == 8 * len(mb.EROS_CLASSES)
    assert set(doc["eros"]) >= {"B", "R", "B+R", "B+R+colour"}
    n_joint = 2 * len(mb.FEATURE_NAMES) + len(mb.COLOUR_NAMES)
    assert doc["eros"]["B+R+colour"]["n_features"] == n_joint
    for r in doc["eros"].values():
        assert sum(map(sum, r["confusion_matrix"])) == doc["data"]["test"]
    for r in doc["transfer"].values():
        # every object lands in one predicted group: EB, RRLyrae, Mira or RS_CVn
        assert sum(map(sum, r["confusion"])) == r["n"]
    text = (out / "multiband.md").read_text()
    assert "python -m research.eros_bands --quick" in text


def test_the_committed_page_is_the_report_of_the_committed_results(tmp_path: Path) -> None:
    """docs/multiband.md regenerated from docs/multiband/multiband.json alone is the committed
    page, byte for byte."""
    out = tmp_path / "multiband"
    out.mkdir()
    (out / "multiband.json").write_bytes((REPO / "docs/multiband/multiband.json").read_bytes())
    doc = tmp_path / "multiband.md"
    assert runner.main(["--out", str(out), "--doc", str(doc), "--report-only"]) == 0
    text = doc.read_text().replace(f"`{out}/", "`docs/multiband/")
    assert text == (REPO / "docs/multiband.md").read_text()
