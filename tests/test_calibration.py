"""Calibration (trainer/calibration.py, research/calibration/) and the open set: the metrics on
synthetic cases whose answer is known, the run in --quick mode, and the committed page as the
report of the committed results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax

from research.calibration import metrics as rel
from research.calibration import openset, runner
from trainer import calibration as cal

REPO = Path(__file__).resolve().parents[1]


def calibrated_sample(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random probabilities and labels drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(k, 0.5), size=n)
    labels = np.array([rng.choice(k, p=p) for p in probs])
    return probs, labels


def overconfident_sample(n: int, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits three times too large: labels drawn from softmax(z), reported softmax(3 z)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.5, size=(n, k))
    labels = np.array([rng.choice(k, p=p) for p in softmax(z, axis=1)])
    return 3.0 * z, labels


def test_ece_near_zero_when_calibrated() -> None:
    probs, labels = calibrated_sample(20_000, 5)
    assert cal.ece(probs, labels) < 0.015
    assert rel.classwise_ece(probs, labels) < 0.01


def test_ece_of_constant_overconfidence() -> None:
    # always 90% sure of class 0, right half the time: ECE is the 0.4 gap
    probs = np.tile([0.9, 0.05, 0.05], (1000, 1))
    labels = np.r_[np.zeros(500, int), np.ones(500, int)]
    assert cal.ece(probs, labels) == pytest.approx(0.4)
    r = rel.reliability(probs, labels)
    assert sum(r["count"]) == 1000
    assert r["accuracy"][13] == pytest.approx(0.5)  # 0.9 falls in bin [0.867, 0.933)


def test_brier_and_log_loss_bounds() -> None:
    labels = np.array([0, 1, 2])
    perfect = np.eye(3)
    assert rel.brier(perfect, labels) == 0.0
    assert rel.log_loss(perfect, labels) == pytest.approx(0.0, abs=1e-9)
    wrong = np.eye(3)[[1, 2, 0]]
    assert rel.brier(wrong, labels) == pytest.approx(2.0)
    uniform = np.full((3, 3), 1 / 3)
    assert rel.log_loss(uniform, labels) == pytest.approx(np.log(3))


def test_temperature_scaling_fixes_overconfidence() -> None:
    logits, labels = overconfident_sample(5000, 4)
    t = cal.fit_temperature(logits, labels)
    assert t == pytest.approx(3.0, rel=0.15)
    before, after = softmax(logits, axis=1), cal.apply_temperature(logits, t)
    assert rel.log_loss(after, labels) < rel.log_loss(before, labels) - 0.1
    assert cal.ece(after, labels) < cal.ece(before, labels) / 2
    np.testing.assert_array_equal(after.argmax(1), before.argmax(1))  # accuracy unchanged
    # log-probabilities as logits (tree models) give the same temperature
    assert cal.fit_temperature(cal.as_logits(before), labels) == pytest.approx(t, rel=1e-3)


def test_temperature_is_one_when_calibrated() -> None:
    logits, labels = overconfident_sample(5000, 4, seed=1)
    assert cal.fit_temperature(logits / 3.0, labels) == pytest.approx(1.0, abs=0.15)


def test_isotonic_reduces_ece_out_of_sample() -> None:
    logits, labels = overconfident_sample(6000, 3, seed=2)
    probs = softmax(logits, axis=1)
    iso = rel.IsotonicOvR().fit(probs[:3000], labels[:3000])
    out = iso.transform(probs[3000:])
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    assert cal.ece(out, labels[3000:]) < cal.ece(probs[3000:], labels[3000:]) / 2


def test_reliability_diagram_writes_png(tmp_path) -> None:
    probs, labels = calibrated_sample(500, 3)
    table = (rel.reliability(probs, labels), cal.ece(probs, labels))
    path = rel.reliability_diagram({"model": table}, tmp_path / "r.png", "test")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_shapes_rejected() -> None:
    with pytest.raises(ValueError, match="labels must be in"):
        cal.ece(np.eye(3), np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="temperature must be positive"):
        cal.apply_temperature(np.eye(3), 0.0)


# ------------------------------------------------------------------------------ open set


def test_open_set_auroc_separable() -> None:
    rng = np.random.default_rng(0)
    known = softmax(np.c_[rng.normal(6, 0.5, 200), rng.normal(0, 0.5, (200, 3))], axis=1)
    unknown = softmax(rng.normal(0, 0.3, (100, 4)), axis=1)
    for name in ("max_prob", "entropy", "margin"):
        sk, su = openset.scores(known)[name], openset.scores(unknown)[name]
        assert openset.auroc(sk, su) == 1.0, name
    logits_k, logits_u = np.log(known) + 5, np.log(unknown)
    assert openset.auroc(openset.energy_score(logits_k), openset.energy_score(logits_u)) == 1.0


def test_threshold_keeps_requested_fraction() -> None:
    rng = np.random.default_rng(1)
    known, unknown = rng.normal(0, 1, 10_000), rng.normal(3, 1, 5000)
    thr = openset.threshold_keeping(known, 0.95)
    r = openset.rejection(thr, known, known < 1.0, unknown)
    assert r["known_kept"] == pytest.approx(0.95, abs=0.002)
    assert r["unknown_flagged"] == pytest.approx(0.912, abs=0.01)  # P(N(3, 1) > 1.645)
    assert r["known_accuracy_kept"] > r["known_accuracy_all"]


def test_knn_distance_flags_far_points() -> None:
    rng = np.random.default_rng(2)
    train = rng.normal(0, 1, (500, 5))
    near, far = rng.normal(0, 1, (100, 5)), rng.normal(0, 1, (100, 5)) + 6
    far[0, 0] = np.nan  # missing values take the median
    knn = openset.KnnDistance(k=5).fit(train)
    assert openset.auroc(knn.score(near), knn.score(far)) > 0.99


# ------------------------------------------------------------------------- the report script


@pytest.mark.slow
def test_calibration_report_quick_and_probs_file(tmp_path: Path) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["--quick", "--per-class", "8", "--out", str(out), "--cache", str(cache)]
    assert runner.main(args) == 0
    c = json.loads((out / "calibration.json").read_text())
    assert c["temperature"] > 0
    assert set(c["held_out"]) == {"uncalibrated", "temperature", "isotonic"}
    acc = {m["accuracy"] for k, m in c["held_out"].items() if k != "isotonic"}
    assert len(acc) == 1  # temperature scaling never changes the argmax
    o = json.loads((out / "openset.json").read_text())
    assert len(o["n_other"]) == 9  # every other CRTS type scored
    for r in o["scores"].values():
        assert 0.0 <= r["auroc_held_out"] <= 1.0
    oc = json.loads((out / "other_class.json").read_text())
    assert set(oc["per_type"]) == set(o["n_other"])
    assert (out / "reliability_held_out.png").stat().st_size > 1000
    assert "python -m research.calibration --quick" in (out / "calibration.md").read_text()

    # the same predictions as a saved-probabilities file (string parts, another class order,
    # labels as names, no logits) give the same calibration
    budget = runner.harness.Budget(name="quick", per_class=8, gbm_trees=20)
    d = runner.load_data(budget, out / "folds", cache)  # the one main() built
    work = out / "work" / f"{runner.FEATURES}-{d.ds7.data_hash[:12]}" / "gbm_balanced_7"
    p = runner.own_predictions(d, 20, work)
    order = np.arange(len(d.classes))[::-1]
    parts = np.array(["held_out" if f < 0 else f"fold{f}" for f in p["part"]])
    path = tmp_path / "probs.npz"
    np.savez(
        path, ids=p["ids"], labels=np.array(d.classes)[p["labels"]], part=parts,
        classes=np.array(d.classes)[order], probs=p["probs"][:, order],
        other_ids=p["other_ids"], other_labels=p["other_labels"],
        other_probs=p["other_probs"][:, order],
    )  # fmt: skip
    q = runner.read_probs(path, d)
    np.testing.assert_allclose(q["probs"], p["probs"])
    c2 = runner.calibration_part(q, "file")
    assert c2["temperature"] == pytest.approx(c["temperature"], rel=1e-3)
    assert c2["held_out"]["temperature"]["log_loss"] == pytest.approx(
        c["held_out"]["temperature"]["log_loss"], rel=1e-3
    )


def test_the_committed_page_is_the_report_of_the_committed_results(tmp_path: Path) -> None:
    """docs/calibration.md and the held-out reliability figure regenerated from
    docs/calibration/*.json alone are the committed ones, byte for byte."""
    out = tmp_path / "calibration"
    out.mkdir()
    for name in ("calibration.json", "openset.json", "other_class.json"):
        (out / name).write_bytes((REPO / "docs/calibration" / name).read_bytes())
    doc = tmp_path / "calibration.md"
    assert runner.main(["--out", str(out), "--doc", str(doc), "--report-only"]) == 0
    committed = (REPO / "docs/calibration.md").read_text()
    assert doc.read_text().replace(f"`{out}/`", "`docs/calibration/`") == committed
    figure = "reliability_held_out.png"
    assert (out / figure).read_bytes() == (REPO / "docs/calibration" / figure).read_bytes()
