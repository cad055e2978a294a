"""Where the accuracy stops (research.ceiling): stratified fractions, the learning-curve fit,
quality bins, the learning curve itself (in one process and in two), the run in --quick mode, and
the committed page as the report of the committed results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from research.ceiling import learning_curve as ceiling
from research.ceiling import report, runner
from trainer.split import HELD_OUT, N_FOLDS, fold_ids, part_indices

REPO = Path(__file__).resolve().parents[1]


def test_stratified_subsample_keeps_each_class_share() -> None:
    labels = np.repeat([0, 1, 2], [100, 40, 8])
    indices = np.arange(labels.size)[::2]  # a "training part": 50, 20 and 4 curves
    sub = ceiling.stratified_subsample(indices, labels, 0.5, seed=3)
    assert set(sub) <= set(indices)
    assert np.all(np.diff(sub) > 0)
    assert np.bincount(labels[sub]).tolist() == [25, 10, 4]  # class 2: all 4 (< min_per_class)
    assert np.array_equal(sub, ceiling.stratified_subsample(indices, labels, 0.5, seed=3))
    assert not np.array_equal(sub, ceiling.stratified_subsample(indices, labels, 0.5, seed=4))
    assert np.array_equal(ceiling.stratified_subsample(indices, labels, 1.0, seed=0), indices)
    with pytest.raises(ValueError, match="fraction"):
        ceiling.stratified_subsample(indices, labels, 0.0, seed=0)


def test_saturation_fit_recovers_a_known_power_law() -> None:
    n = np.array([400.0, 800, 1600, 2400, 3200])
    truth = ceiling.Saturation(asymptote=0.91, asymptote_se=0.0, scale=2.5, exponent=0.7)
    fit = ceiling.saturation_fit(n, truth(n))
    assert fit.asymptote == pytest.approx(0.91, abs=1e-4)
    assert fit.exponent == pytest.approx(0.7, abs=1e-2)
    noisy = truth(n) + np.array([1, -1, 1, -1, 1]) * 5e-4
    assert ceiling.saturation_fit(n, noisy).asymptote == pytest.approx(0.91, abs=0.01)
    with pytest.raises(ValueError, match="4 training sizes"):
        ceiling.saturation_fit(n[:3], truth(n[:3]))


def test_binned_accuracy_uses_quantile_bins() -> None:
    value = np.arange(100.0)
    correct = value < 50
    labels = np.arange(100) % 2
    bins = ceiling.binned_accuracy(value, correct, labels, n_classes=3)
    assert [b["n"] for b in bins] == [20] * 5
    assert [b["accuracy"] for b in bins] == [1.0, 1.0, 0.5, 0.0, 0.0]
    assert bins[2]["recall"][:2] == [0.5, 0.5]  # 40-59: 40-49 right, 50-59 wrong, both classes
    assert bins[0]["recall"][2] is None  # class 2 has no curves
    assert bins[0]["low"] == 0.0
    assert bins[-1]["high"] == 99.0
    assert bins[0]["counts"] == [10, 10, 0]
    assert [b["mix_adjusted"] for b in bins] == [b["accuracy"] for b in bins]  # same mix


def test_mix_adjusted_accuracy_is_not_swayed_by_a_bins_class_mix() -> None:
    # class 0 is always right, class 1 right half the time; the low bin is nearly all class 0
    labels = np.array([0] * 9 + [1] + [1] * 9 + [0])
    correct = np.array([True] * 10 + [True, False] * 4 + [False, True])  # class 1: 4 of 9
    value = np.arange(20.0)
    low, high = ceiling.binned_accuracy(value, correct, labels, n_classes=2, bins=2)
    assert low["accuracy"] == pytest.approx(1.0)
    assert high["accuracy"] == pytest.approx(0.5)
    assert low["mix_adjusted"] == pytest.approx(0.5 * 1.0 + 0.5 * 1.0)  # class 1: 1 of 1 right
    assert high["mix_adjusted"] == pytest.approx(0.5 * 1.0 + 0.5 * 4 / 9)


def _separable(n_per_class: int = 40) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), n_per_class)
    centres = np.eye(3)[labels] * 3.0
    views = [centres + rng.normal(size=centres.shape) for _ in range(2)]  # two "views"
    return np.concatenate(views, axis=1), labels


@pytest.mark.slow
def test_learning_curve_is_the_same_in_one_process_and_in_two() -> None:
    pytest.importorskip("lightgbm")
    x, labels = _separable()
    folds = fold_ids(labels)
    plan = [(0.5, 2), (1.0, 1)]
    parts = ["fold0", "fold1"]
    one = ceiling.learning_curve(x, labels, folds, 3, 2, plan, parts, jobs=1)
    seen: list[ceiling.Point] = []
    two = ceiling.learning_curve(x, labels, folds, 3, 2, plan, parts, jobs=2, progress=seen.append)
    assert len(one) == len(two) == len(seen) == 6
    for a, b in zip(one, two, strict=True):
        assert (a.fraction, a.repeat, a.part, a.n_train) == (
            b.fraction,
            b.repeat,
            b.part,
            b.n_train,
        )
        assert a.accuracy == b.accuracy
        assert np.array_equal(a.pred, b.pred)
    full = [p for p in one if p.fraction == 1.0]
    half = [p for p in one if p.fraction == 0.5]
    train, test = part_indices(folds, "fold0")
    assert full[0].n_train == train.size
    assert half[0].n_train == pytest.approx(train.size / 2, abs=3)
    assert np.array_equal(full[0].test, test)
    assert all(p.accuracy > 0.9 for p in full)  # well-separated classes
    rows = ceiling.summarise(one)
    assert [r["fraction"] for r in rows] == [0.5, 1.0]
    assert [r["measurements"] for r in rows] == [4, 2]
    assert rows[1]["accuracy"] == pytest.approx(np.mean([p.accuracy for p in full]))


@pytest.mark.slow
def test_ceiling_script_quick_writes_its_report_and_leaves_the_docs_alone(tmp_path: Path) -> None:
    pytest.importorskip("lightgbm")
    committed = REPO / "docs/ceiling.md"
    before = committed.read_bytes() if committed.exists() else None
    out = tmp_path / "out"
    args = ["--quick", "--out", str(out), "--cache", str(tmp_path / "cache"), "--jobs", "1"]
    assert runner.main(args) == 0
    doc = json.loads((out / "ceiling.json").read_text())
    assert len(doc["points"]) == sum(r for _, r in runner.QUICK_PLAN) * N_FOLDS
    assert [r["fraction"] for r in doc["learning_curve"]] == [f for f, _ in runner.QUICK_PLAN]
    assert set(doc["saturation"]) == set(report.TARGETS)
    assert set(doc["quality_bins"]) == set(report.QUALITY)
    folds = json.loads((out / "folds_7.json").read_text())["fold"]
    in_folds = sum(f != HELD_OUT for f in folds.values())
    for bins in doc["quality_bins"].values():  # every fold curve once, no held-out curve
        assert sum(b["n"] for b in bins) == in_folds
    assert (out / "ceiling.png").stat().st_size > 10_000
    text = (out / "ceiling.md").read_text()
    assert "| fraction | training curves |" in text
    assert "](ceiling.png)" in text
    assert (committed.read_bytes() if committed.exists() else None) == before
    (out / "ceiling.md").unlink()
    assert runner.main([*args, "--report-only"]) == 0  # from the JSON alone
    assert (out / "ceiling.md").read_text() == text


def test_the_committed_page_is_the_report_of_the_committed_results(tmp_path: Path) -> None:
    """docs/ceiling.md and its figure regenerated from docs/ceiling/ceiling.json alone are the
    committed ones, byte for byte."""
    out = tmp_path / "ceiling"
    out.mkdir()
    (out / "ceiling.json").write_bytes((REPO / "docs/ceiling/ceiling.json").read_bytes())
    assert runner.main(["--out", str(out), "--report-only"]) == 0
    text = (out / "ceiling.md").read_text().replace("](ceiling.png)", "](ceiling/ceiling.png)")
    assert text == (REPO / "docs/ceiling.md").read_text()
    assert (out / "ceiling.png").read_bytes() == (REPO / "docs/ceiling/ceiling.png").read_bytes()
