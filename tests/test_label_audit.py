"""dmdt-train audit-labels (trainer/label_audit.py): out-of-fold probabilities, confident
learning, the report folder."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from dmdt.datasets import export_csv
from dmdt.lightcurves import LightCurve
from trainer.cli import main
from trainer.label_audit import audit, find_issues

pytest.importorskip("lightgbm")
pytest.importorskip("cleanlab")

FLIPPED = {3, 10, 41, 52}  # curves written with the other class's label


def _curve(i: int, shape: str, label: str) -> LightCurve:
    """A CRTS-like curve (seasons over 8 years): a sinusoid or a sawtooth at 0.3-0.7 d."""
    rng = np.random.default_rng(i)
    t = np.sort(rng.uniform(53500.0, 56500.0, 220))
    t = t[np.mod(t, 365.25) < 240.0]
    phase = np.mod(t / rng.uniform(0.3, 0.7), 1.0)
    signal = 0.3 * np.sin(2 * np.pi * phase) if shape == "A" else 0.6 * (phase - 0.5)
    m = 15.0 + signal + rng.normal(0.0, 0.05, t.size)
    return LightCurve(f"s{i}", t, m, np.full(t.size, 0.05), label=label)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 curves, 30 of each shape, four of them labelled with the other shape's class."""
    lcs = []
    for i in range(60):
        shape = "A" if i % 2 == 0 else "B"
        label = ({"A": "B", "B": "A"}[shape]) if i in FLIPPED else shape
        lcs.append(_curve(i, shape, label))
    out = tmp_path_factory.mktemp("audit-curves")
    export_csv(lcs, out)
    return out


def test_flags_the_flipped_labels_and_few_others(folder: Path) -> None:
    result, lcs = audit(str(folder), classes=("A", "B"))
    assert [lc.source_id for lc in lcs] == list(result.ids)
    flagged = {int(result.ids[i][1:]) for i in result.flagged}
    assert len(flagged & FLIPPED) >= 3
    assert len(flagged - FLIPPED) <= 2
    # the most suspect come first: their given label has the lowest probability
    p_given = result.probs[result.flagged, result.labels[result.flagged]]
    assert np.all(np.diff(p_given) >= -1e-12)
    pairs = result.pair_counts()
    assert sum(pairs.values()) == result.flagged.size
    assert set(pairs) <= {"A -> B", "B -> A"}


def test_find_issues_flags_only_confident_contradictions() -> None:
    labels = np.array([0] * 20 + [1] * 20)
    probs = np.where(labels[:, None] == np.arange(2), 0.9, 0.1)
    probs[[2, 25]] = probs[[2, 25]][:, ::-1]  # the model is sure these two are the other class
    assert sorted(find_issues(labels, probs).tolist()) == [2, 25]


def test_cli_writes_the_report(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "audit"
    assert (
        main(["audit-labels", str(folder), "--classes", "A,B", "--out", str(out), "--top", "6"])
        == 0
    )
    doc = json.loads((out / "summary.json").read_text())
    assert doc["n"] == 60
    assert doc["classes"] == ["A", "B"]
    with open(out / "label_issues.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == doc["n_flagged"] >= 3
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    assert all(r["label"] != r["suggested"] for r in rows)
    assert (out / "gallery.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"{doc['n_flagged']} of 60 labels flagged" in capsys.readouterr().out


def test_cli_rejects_bad_views_and_too_few_curves(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["audit-labels", str(folder), "--classes", "A,B", "--out", str(tmp_path / "x")]
    assert main([*args, "--views", "curve,nope"]) == 2
    assert "--views" in capsys.readouterr().err
    few = tmp_path / "few"
    export_csv([_curve(i, "A", "A") for i in range(8)] + [_curve(9, "B", "B")], few)
    assert main(["audit-labels", str(few), "--classes", "A,B", "--out", str(tmp_path / "y")]) == 2
    assert main(["audit-labels", str(few), "--classes", "all", "--out", str(tmp_path / "y")]) == 2
    assert "at least 5 curves for 5 folds: B (1)" in capsys.readouterr().err


def test_label_cleaned_drops_flagged_training_labels_only() -> None:
    from research.candidates import label_cleaned

    rng = np.random.default_rng(0)
    truth = np.repeat([0, 1], 40)
    x = truth + rng.normal(0.0, 0.1, truth.size)  # one feature that separates the classes
    labels = truth.copy()
    labels[[5, 50]] = 1 - labels[[5, 50]]  # two wrong labels
    seen: list[np.ndarray] = []

    def centroid(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
        seen.append(train)
        mid = (np.median(x[train][y == 0]) + np.median(x[train][y == 1])) / 2
        p1 = np.clip(0.5 + 4 * (x[test] - mid), 0.02, 0.98)
        return np.stack([1 - p1, p1], axis=1)

    train, test = np.arange(70), np.arange(70, 80)
    probs = label_cleaned(centroid, 2)(train, labels[train], test)
    assert len(seen) == 5  # four inner folds, then the final fit
    assert sorted(set(train) - set(seen[-1])) == [5, 50]
    assert np.all(np.concatenate(seen[:4]) < 70)  # the scored part never takes part
    np.testing.assert_array_equal(probs.argmax(axis=1), truth[test])


def test_cli_says_how_to_install_cleanlab_when_missing(
    folder: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(sys.modules, "cleanlab", None)  # import cleanlab raises ImportError
    assert main(["audit-labels", str(folder), "--classes", "A,B", "--out", str(tmp_path)]) == 2
    assert "pip install 'dmdt-broker[audit]'" in capsys.readouterr().err
    assert not (tmp_path / "summary.json").exists()
