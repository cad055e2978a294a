"""Every candidate on the fixed split: the split itself, the candidates, and
``python -m research.comparison`` in --quick mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dmdt import periodic
from dmdt.lightcurves import LightCurve
from research import folds
from research.comparison import runner
from trainer import data, split
from trainer.split import HELD_OUT, N_FOLDS, PARTS

REPO = Path(__file__).resolve().parents[1]


def synthetic(period: float, seed: int = 1) -> LightCurve:
    """A CRTS-like sinusoid: ~300 points over 8 years, seasonal gaps, 0.05 mag noise."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(53500.0, 56500.0, 420))
    t = t[np.mod(t, 365.25) < 240.0]  # observing seasons
    m = 15.0 + 0.3 * np.sin(2 * np.pi * t / period) + rng.normal(0.0, 0.05, t.size)
    return LightCurve("synthetic", t, m, np.full(t.size, 0.05))


def test_fold_ids_fixed_stratified_and_held_out_as_fit() -> None:
    labels = np.repeat(np.arange(3), [50, 30, 12])
    folds = split.fold_ids(labels)
    np.testing.assert_array_equal(folds, split.fold_ids(labels))
    _, held = data.stratified_split(labels, 0.2, 0)  # dmdt-train fit --seed 0's test part
    np.testing.assert_array_equal(np.flatnonzero(folds == HELD_OUT), held)
    for i in range(N_FOLDS):
        train, test = split.part_indices(folds, f"fold{i}")
        assert not set(train) & set(test)
        assert np.bincount(labels[test], minlength=3).min() >= 1
    train, test = split.part_indices(folds, "held_out")
    assert train.size + test.size == labels.size


@pytest.mark.slow
def test_harness_quick_runs_resumes_and_writes_the_table(tmp_path: Path) -> None:
    pytest.importorskip("lightgbm")
    args = ["--quick", "--out", str(tmp_path / "out"), "--cache", str(tmp_path / "cache")]
    assert runner.main(args) == 0
    out = tmp_path / "out"
    names = [s.name for s in runner.SPECS if s.name not in runner.ARCHIVED]
    for name in names:
        doc = json.loads((out / f"{name}.json").read_text())
        assert set(doc["parts"]) == set(PARTS)
        assert doc["summary"]["n_folds"] == N_FOLDS
    for name in names:  # every model saves its class probabilities per part
        with np.load(out / "probs" / f"{name}.npz") as z:
            doc = json.loads((out / f"{name}.json").read_text())
            assert set(z["part"]) == set(PARTS)
            assert z["probs"].shape == (z["ids"].size, len(doc["classes"]))
            np.testing.assert_allclose(z["probs"].astype(float).sum(axis=1), 1.0, atol=0.01)
            held = z["part"] == "held_out"
            pred = z["probs"][held].astype(float).argmax(axis=1)
            acc = np.mean(np.array(doc["classes"])[pred] == z["labels"][held])
            assert acc == pytest.approx(doc["parts"]["held_out"]["accuracy"], abs=0.02)
            # the predicted classes, kept beside the probabilities, give the scores exactly
            saved = np.array(doc["classes"])[z["pred"][held]]
            assert np.mean(saved == z["labels"][held]) == doc["parts"]["held_out"]["accuracy"]
    folds7 = json.loads((out / "folds_7.json").read_text())
    assert set(folds7["fold"].values()) == {-1, 0, 1, 2, 3, 4}
    text = (out / "beyond.md").read_text()
    assert all(f"`{n}`" in text for n in names)
    summary = text.split("## Summary (seven classes)")[1].split("\n\n")[1]  # the table
    assert all(
        f"| `{n}` |" in summary for n, _ in runner.report.SUMMARY_ROWS if n not in runner.ARCHIVED
    )
    assert "accuracy, folds: best " in text
    # a second run finds every part stored and changes nothing
    before = {p.name: p.read_bytes() for p in out.glob("*.json")}
    assert runner.main([*args, "--models", names[0]]) == 0
    assert (out / f"{names[0]}.json").read_bytes() == before[f"{names[0]}.json"]


def test_harness_with_another_out_folder_leaves_docs_alone(tmp_path: Path) -> None:
    committed = (REPO / "docs/beyond.md").read_bytes()
    assert runner.main(["--out", str(tmp_path), "--report-only"]) == 0
    assert (tmp_path / "beyond.md").exists()  # the table of that folder's results, beside them
    assert (REPO / "docs/beyond.md").read_bytes() == committed


def test_the_committed_page_is_the_report_of_the_committed_results(tmp_path: Path) -> None:
    """docs/beyond.md regenerated from docs/beyond/*.json alone is the committed page, byte for
    byte, and a report run writes no result."""
    before = {p: p.read_bytes() for p in (REPO / "docs/beyond").rglob("*") if p.is_file()}
    assert runner.main(["--report-only", "--doc", str(tmp_path / "beyond.md")]) == 0
    assert (tmp_path / "beyond.md").read_bytes() == (REPO / "docs/beyond.md").read_bytes()
    after = {p: p.read_bytes() for p in (REPO / "docs/beyond").rglob("*") if p.is_file()}
    assert after == before


def test_gbm_history_trains_on_the_cuts_with_their_weight() -> None:
    """The cut rows (NaN blocks left out) join the training set with their weight: when the
    cuts carry the opposite signal to the whole curves, a small weight follows the curves and
    a large one the cuts."""
    pytest.importorskip("lightgbm")
    from research.candidates import gbm_history

    rng = np.random.default_rng(0)
    n = 120
    y = np.arange(n) % 3
    whole = np.c_[y + rng.normal(0, 0.1, n), rng.normal(size=n)]
    flipped = np.c_[(y + 1) % 3 + rng.normal(0, 0.1, n), rng.normal(size=n)]  # another class
    x = np.concatenate([whole, flipped, flipped], axis=1)  # two cuts
    x[::3, 4:] = np.nan  # the second cut: too long for a third of the curves
    train, test = np.arange(0, n, 2), np.arange(1, n, 2)
    budget = folds.Budget(gbm_trees=30)
    follow_curves = gbm_history(x, 2, 3, budget, weight=0.01)(train, y[train], test)
    follow_cuts = gbm_history(x, 2, 3, budget, weight=100.0)(train, y[train], test)
    assert np.mean(follow_curves.argmax(axis=1) == y[test]) > 0.9
    assert np.mean(follow_cuts.argmax(axis=1) == y[test]) < 0.1


def test_cut_features_are_the_features_of_each_curves_first_points() -> None:
    lc = synthetic(0.5)
    short = LightCurve("short", lc.t[:40], lc.m[:40], lc.err[:40])
    x = runner.cut_features([lc, short], (20, 50))
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

    rng = np.random.default_rng(3)
    nights = 53500.0 + np.sort(rng.choice(3000, 40, replace=False)).astype(float)
    t = (nights[:, None] + np.arange(4) * 0.007).ravel()
    m = 15 + 0.3 * np.sin(2 * np.pi * t / 0.6) + rng.normal(0, 0.03, t.size)
    lc = LightCurve("visits", t, m, np.full(t.size, 0.03))
    x = runner.cut_features([lc], (20, 60), view="visit_medians")
    width = len(periodic.FEATURE_NAMES)
    assert 20 // 4 < MIN_VIEW_POINTS <= 60 // 4
    assert np.all(np.isnan(x[0, :width]))
    assert not np.any(np.isnan(x[0, width:]))


def test_the_committed_predictions_give_the_committed_scores() -> None:
    """Each row's per-curve predicted classes (probs/<model>.npz) give, part by part, the
    accuracy and confusion matrix its JSON records."""
    for path in sorted((REPO / "docs/beyond").glob("*.json")):
        if path.stem.startswith("folds") or path.stem == "feature_cost":
            continue
        doc = json.loads(path.read_text())
        with np.load(REPO / "docs/beyond/probs" / f"{path.stem}.npz") as z:
            index = {c: i for i, c in enumerate(doc["classes"])}
            for part, r in doc["parts"].items():
                rows = z["part"] == part
                truth = np.array([index[c] for c in z["labels"][rows]])
                cm = np.zeros((len(index), len(index)), dtype=int)
                np.add.at(cm, (truth, z["pred"][rows]), 1)
                assert cm.tolist() == r["confusion_matrix"], (path.stem, part)
                assert np.mean(z["pred"][rows] == truth) == r["accuracy"], (path.stem, part)
