"""research.history_accuracy: the shipped models on the first k points of curves, against a plain
loop over the same curves, the --quick run and its report, and the committed page as the report
of the committed results."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dmdt.hybrid import HybridClassifier
from dmdt.model import lightcurve_counts
from research import folds
from research.history_accuracy import measure as history
from research.history_accuracy import runner

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def curves(tmp_path_factory: pytest.TempPathFactory) -> list:  # type: ignore[type-arg]
    ds = folds.Dataset("7", folds.QUICK, tmp_path_factory.mktemp("folds"))
    return ds.lcs[::4]  # 21 curves, every class


@pytest.mark.slow
def test_evaluate_agrees_with_a_plain_loop(curves: list) -> None:  # type: ignore[type-arg]
    pytest.importorskip("lightgbm")
    path = str(REPO / "models/hybrid-7")
    doc = history.evaluate(path, curves, [20, 60], jobs=1)
    clf = HybridClassifier.load(path)
    classes = list(clf.classes)

    def right(lc, k_counts: int, k_features: int) -> bool:  # type: ignore[no-untyped-def]
        counts, n = lightcurve_counts([lc.head(k_counts)], clf.grid)
        x = clf.features(lc.t[:k_features], lc.m[:k_features], lc.err[:k_features])[None, :]
        return bool(clf.classify(counts, n, x).argmax() == classes.index(lc.label))

    whole = [right(lc, len(lc), len(lc)) for lc in curves]
    assert doc["whole_accuracy"] == pytest.approx(np.mean(whole))
    for level in doc["levels"]:
        k = level["k"]
        kept = [lc for lc in curves if len(lc) >= k]
        assert level["curves"] == len(kept)
        assert level["accuracy"] == pytest.approx(np.mean([right(lc, k, k) for lc in kept]))
        assert level["whole_accuracy"] == pytest.approx(
            np.mean([w for w, lc in zip(whole, curves, strict=True) if len(lc) >= k])
        )
    stale = [right(lc, len(lc), max(int(len(lc) / 1.1), 20)) for lc in curves]
    assert doc["refresh"]["accuracy"] == pytest.approx(np.mean(stale))
    assert doc["refresh"]["changed"] == sum(a != b for a, b in zip(stale, whole, strict=True))


@pytest.mark.slow
def test_quick_report_is_written_and_the_docs_left_alone(tmp_path: Path) -> None:
    pytest.importorskip("lightgbm")
    committed = REPO / "docs/history.md"
    before = committed.read_bytes() if committed.exists() else None
    out = tmp_path / "out"
    assert runner.main(["--quick", "--out", str(out), "--jobs", "2"]) == 0
    doc = json.loads((out / "history.json").read_text())
    (model,) = doc["models"]
    assert [lv["k"] for lv in model["levels"]] == list(runner.QUICK_LEVELS)
    assert all(lv["curves"] <= doc["n_curves"] for lv in model["levels"])
    assert 0.0 <= model["refresh"]["accuracy"] <= 1.0
    text = (out / "history.md").read_text()
    assert "a smoke test" in text
    assert "| 20 |" in text
    assert (out / "history.png").stat().st_size > 10_000
    assert (committed.read_bytes() if committed.exists() else None) == before
    (out / "history.md").unlink()
    assert runner.main(["--quick", "--out", str(out), "--report-only"]) == 0
    assert (out / "history.md").read_text() == text


def test_the_committed_page_is_the_report_of_the_committed_results(tmp_path: Path) -> None:
    """docs/history.md and its figure regenerated from docs/history/history.json alone are the
    committed ones, byte for byte."""
    out = tmp_path / "history"
    out.mkdir()
    (out / "history.json").write_bytes((REPO / "docs/history/history.json").read_bytes())
    assert runner.main(["--out", str(out), "--report-only"]) == 0
    text = (out / "history.md").read_text().replace("](history.png)", "](history/history.png)")
    assert text == (REPO / "docs/history.md").read_text()
    assert (out / "history.png").read_bytes() == (REPO / "docs/history/history.png").read_bytes()
