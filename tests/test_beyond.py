"""Issue 7's baseline: the periodic feature extractor on synthetic and real curves, the fixed
split, and scripts/beyond_paper.py in --quick mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from script_helpers import load_script

from dmdt import periodic, periodogram
from dmdt.lightcurves import LightCurve, clean, read_crts_csv
from trainer import beyond, data, periodic_v3

REPO = Path(__file__).resolve().parents[1]


def synthetic(period: float, seed: int = 1, shape: str = "sine") -> LightCurve:
    """A CRTS-like curve: ~300 points over 8 years, seasonal gaps, 0.05 mag noise."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(53500.0, 56500.0, 420))
    t = t[np.mod(t, 365.25) < 240.0]  # observing seasons
    phase = np.mod(t / period, 1.0)
    if shape == "sine":
        signal = 0.3 * np.sin(2 * np.pi * phase)
    else:  # RRab-like sawtooth: fast rise, slow decline
        signal = np.where(phase < 0.15, 0.8 * (1 - phase / 0.15), 0.8 * (phase - 0.15) / 0.85)
    m = 15.0 + signal + rng.normal(0.0, 0.05, t.size)
    return LightCurve("synthetic", t, m, np.full(t.size, 0.05))


@pytest.mark.parametrize(("period", "shape"), [(0.61734, "sine"), (0.3127, "saw"), (87.3, "sine")])
def test_period_recovered_with_noise_and_gaps(period: float, shape: str) -> None:
    x, _ = periodic.features([synthetic(period, shape=shape)])
    row = dict(zip(periodic.FEATURE_NAMES, x[0], strict=True))
    # ~3,000-day baseline: 1e-4 relative is ~0.4 cycle of phase drift at 0.3 d, fine for folding
    assert row["period"] == pytest.approx(period, rel=1e-4 if period < 10 else 1e-3)
    assert row["log10_fap"] < -10
    assert row["string_length_P"] < 0.3 < row["string_length_half_P"]
    if shape == "sine":
        assert row["R21"] < 0.1  # a pure sinusoid has no harmonics
    else:
        assert row["R21"] > 0.3


def test_feature_count_and_no_nan_on_real_curves() -> None:
    assert len(periodic.FEATURE_NAMES) == len(set(periodic.FEATURE_NAMES)) >= 70
    lcs = [clean(read_crts_csv(p))[0] for p in sorted((REPO / "tests/data/crts").glob("*.csv"))]
    lcs = [lc for lc in lcs if lc is not None]
    assert len(lcs) >= 3
    x, timing = periodic.features(lcs)
    assert x.shape == (len(lcs), len(periodic.FEATURE_NAMES))
    assert np.isfinite(x).all()
    assert timing["total"] > 0
    assert periodic.features([])[0].shape == (0, len(periodic.FEATURE_NAMES))


def test_gls_power_matches_scipy_lombscargle() -> None:
    from scipy.signal import lombscargle

    lc = synthetic(0.61734)
    y = lc.m - lc.m.mean()
    freqs = np.linspace(0.5, 3.0, 200)
    ours = periodogram.gls_power(lc.t - lc.t[0], lc.m, np.ones(lc.t.size), freqs)
    ref = lombscargle(lc.t - lc.t[0], y, 2 * np.pi * freqs, floating_mean=True, normalize=True)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_version_3_features_kept_for_the_old_rows() -> None:
    lc = synthetic(0.61734)
    x3, _ = periodic_v3.features([lc])
    assert x3.shape == (1, len(periodic_v3.FEATURE_NAMES)) == (1, 112)
    assert periodic_v3.FEATURE_NAMES[: len(periodic_v3.V2_NAMES)] == periodic_v3.V2_NAMES
    i = periodic_v3.FEATURE_NAMES.index("period")
    x5, _ = periodic.features([lc])
    assert x3[0, i] == pytest.approx(x5[0, periodic.FEATURE_NAMES.index("period")], rel=1e-5)


def test_fold_ids_fixed_stratified_and_held_out_as_fit() -> None:
    labels = np.repeat(np.arange(3), [50, 30, 12])
    folds = beyond.fold_ids(labels)
    np.testing.assert_array_equal(folds, beyond.fold_ids(labels))
    _, held = data.stratified_split(labels, 0.2, 0)  # dmdt-train fit --seed 0's test part
    np.testing.assert_array_equal(np.flatnonzero(folds == beyond.HELD_OUT), held)
    for i in range(beyond.N_FOLDS):
        train, test = beyond.part_indices(folds, f"fold{i}")
        assert not set(train) & set(test)
        assert np.bincount(labels[test], minlength=3).min() >= 1
    train, test = beyond.part_indices(folds, "held_out")
    assert train.size + test.size == labels.size


@pytest.mark.slow
def test_harness_quick_runs_resumes_and_writes_the_table(tmp_path: Path) -> None:
    pytest.importorskip("lightgbm")
    script = load_script("beyond_paper")
    args = ["--quick", "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]
    assert script.main(args) == 0
    out = tmp_path / "out"
    names = [s.name for s in script.SPECS if s.name not in script.ARCHIVED]
    for name in names:
        doc = json.loads((out / f"{name}.json").read_text())
        assert set(doc["parts"]) == set(beyond.PARTS)
        assert doc["summary"]["n_folds"] == beyond.N_FOLDS
    for name in names:  # every model saves its class probabilities per part
        with np.load(out / "probs" / f"{name}.npz") as z:
            doc = json.loads((out / f"{name}.json").read_text())
            assert set(z["part"]) == set(beyond.PARTS)
            assert z["probs"].shape == (z["ids"].size, len(doc["classes"]))
            np.testing.assert_allclose(z["probs"].astype(float).sum(axis=1), 1.0, atol=0.01)
            held = z["part"] == "held_out"
            pred = z["probs"][held].astype(float).argmax(axis=1)
            acc = np.mean(np.array(doc["classes"])[pred] == z["labels"][held])
            assert acc == pytest.approx(doc["parts"]["held_out"]["accuracy"], abs=0.02)
    folds7 = json.loads((out / "folds_7.json").read_text())
    assert set(folds7["fold"].values()) == {-1, 0, 1, 2, 3, 4}
    text = (out / "beyond.md").read_text()
    assert all(f"`{n}`" in text for n in names)
    summary = text.split("## Summary (seven classes)")[1].split("\n\n")[1]  # the table
    assert all(f"| `{n}` |" in summary for n, _ in script.SUMMARY_ROWS if n not in script.ARCHIVED)
    assert "accuracy, folds: best " in text
    # a second run finds every part stored and changes nothing
    before = {p.name: p.read_bytes() for p in out.glob("*.json")}
    assert script.main([*args, "--models", names[0]]) == 0
    assert (out / f"{names[0]}.json").read_bytes() == before[f"{names[0]}.json"]


def test_harness_with_another_out_folder_leaves_docs_alone(tmp_path: Path) -> None:
    script = load_script("beyond_paper")
    committed = (REPO / "docs/beyond.md").read_bytes()
    assert script.main(["--out", str(tmp_path), "--doc-only"]) == 0
    assert (tmp_path / "beyond.md").exists()  # the table of that folder's results, beside them
    assert (REPO / "docs/beyond.md").read_bytes() == committed


def test_gbm_history_trains_on_the_cuts_with_their_weight() -> None:
    """The cut rows (NaN blocks left out) join the training set with their weight: when the
    cuts carry the opposite signal to the whole curves, a small weight follows the curves and
    a large one the cuts."""
    pytest.importorskip("lightgbm")
    from trainer.beyond_models import gbm_history

    rng = np.random.default_rng(0)
    n = 120
    y = np.arange(n) % 3
    whole = np.c_[y + rng.normal(0, 0.1, n), rng.normal(size=n)]
    flipped = np.c_[(y + 1) % 3 + rng.normal(0, 0.1, n), rng.normal(size=n)]  # another class
    x = np.concatenate([whole, flipped, flipped], axis=1)  # two cuts
    x[::3, 4:] = np.nan  # the second cut: too long for a third of the curves
    train, test = np.arange(0, n, 2), np.arange(1, n, 2)
    budget = beyond.Budget(gbm_trees=30)
    follow_curves = gbm_history(x, 2, 3, budget, weight=0.01)(train, y[train], test)
    follow_cuts = gbm_history(x, 2, 3, budget, weight=100.0)(train, y[train], test)
    assert np.mean(follow_curves.argmax(axis=1) == y[test]) > 0.9
    assert np.mean(follow_cuts.argmax(axis=1) == y[test]) < 0.1


def test_cut_features_are_the_features_of_each_curves_first_points() -> None:
    script = load_script("beyond_paper")
    lc = synthetic(0.5)
    short = LightCurve("short", lc.t[:40], lc.m[:40], lc.err[:40])
    x = script.cut_features([lc, short], (20, 50))
    width = len(periodic.FEATURE_NAMES)
    assert x.shape == (2, 2 * width)
    head = LightCurve("h", lc.t[:50], lc.m[:50], lc.err[:50])
    np.testing.assert_array_equal(x[0, width:], periodic.features([head])[0][0])
    assert np.all(np.isnan(x[1, width:]))  # 40 points: no 50-point cut
    assert not np.any(np.isnan(x[1, :width]))


def test_cut_features_of_a_view_leave_too_short_views_missing() -> None:
    """Visits of four exposures: the first 20 points are 5 visit medians, fewer than a view
    needs (dmdt.hybrid.MIN_VIEW_POINTS), so that cut is NaN; the first 60 are 15 and are not."""
    from dmdt.hybrid import MIN_VIEW_POINTS

    script = load_script("beyond_paper")
    rng = np.random.default_rng(3)
    nights = 53500.0 + np.sort(rng.choice(3000, 40, replace=False)).astype(float)
    t = (nights[:, None] + np.arange(4) * 0.007).ravel()
    m = 15 + 0.3 * np.sin(2 * np.pi * t / 0.6) + rng.normal(0, 0.03, t.size)
    lc = LightCurve("visits", t, m, np.full(t.size, 0.03))
    x = script.cut_features([lc], (20, 60), view="visit_medians")
    width = len(periodic.FEATURE_NAMES)
    assert 20 // 4 < MIN_VIEW_POINTS <= 60 // 4
    assert np.all(np.isnan(x[0, :width]))
    assert not np.any(np.isnan(x[0, width:]))
