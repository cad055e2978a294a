"""The cadence measurement (research/cadence/measure.py) and its report (research.cadence,
docs/cadence.md)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from research.cadence import measure as cadence_eval
from research.cadence import report
from trainer import cadence
from trainer.split import HELD_OUT

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "cadence"


@pytest.fixture(scope="module")
def curves() -> cadence_eval.Curves:
    return cadence_eval.Curves(cache=None)


@pytest.mark.slow
def test_measuring_the_paper_cnn_reproduces_its_recorded_held_out_score(curves) -> None:
    """The held-out part as it is gives the accuracy models/paper-cnn recorded when trained;
    the thinned parts score the same 1,048 curves; EROS-1 counts every labelled star."""
    path = REPO / "models" / "paper-cnn"
    result = cadence_eval.measure_model(path, curves)
    recorded = json.loads((path / "config.json").read_text())["metrics"]
    held = result["held_out"]
    # the same weights on the same curves: equal here, within a few curves on other hardware
    assert held["crts"]["accuracy"] == pytest.approx(recorded["accuracy"], abs=0.005)
    for name in cadence.CADENCES:
        right = held[name]["right"]
        assert len(right) == 1048
        assert right.count("-") == held[name]["too_short"]
        assert held[name]["n"] == 1048 - held[name]["too_short"]
        assert held[name]["accuracy"] == pytest.approx(right.count("1") / held[name]["n"])
    assert held["nightly"]["median_points"] < held["crts"]["median_points"] / 3
    counts = {"RRLyrae": 2231, "EB": 439, "Mira": 235, "Cepheid": 736}
    for band in cadence_eval.EROS_BANDS:
        for label, entry in result["eros1"][band]["classes"].items():
            assert abs(entry["n"] - counts[label]) <= 4  # 4 R curves are too short
            assert sum(entry["called"].values()) == pytest.approx(1.0, abs=1e-3)
    # the committed measurement is this one (to a few curves on other hardware)
    committed = json.loads((DOC / "cadence.json").read_text())["candidates"]["paper-cnn"]
    for name in cadence.CADENCES:
        assert committed["held_out"][name]["accuracy"] == pytest.approx(
            held[name]["accuracy"], abs=0.005
        )
    # the CRTS cadence is what it learned: one point per night costs it a third of its accuracy
    assert held["nightly"]["accuracy"] < held["crts"]["accuracy"] - 0.2


@pytest.mark.slow
def test_the_default_survives_one_point_per_night(curves) -> None:
    """The held-out curves thinned to one point per night: the default keeps most of its
    accuracy, the paper's CNN loses a third of its (0.85 and 0.40 measured)."""
    from dmdt.model import lightcurve_counts

    test = np.flatnonzero(curves.folds == HELD_OUT)
    nightly = [curves.curves("nightly")[i] for i in test]
    keep = [i for i, lc in enumerate(nightly) if len(lc) >= 20]
    lcs = [nightly[i] for i in keep]
    y = curves.labels[test][keep]
    default = cadence_eval.load("default")
    counts, n_points = lightcurve_counts(lcs, default.grid)
    feats = np.array([default.features(lc.t, lc.m, lc.err) for lc in lcs])
    ours = np.mean(default.classify(counts, n_points, feats).argmax(axis=1) == y)
    paper = cadence_eval.load(REPO / "models/paper-cnn")
    theirs = np.mean(paper.classify_counts(counts, n_points).argmax(axis=1) == y)
    assert ours > 0.8
    assert theirs < 0.5


def test_held_out_is_the_harness_part(curves) -> None:
    test = np.flatnonzero(curves.folds == HELD_OUT)
    assert test.size == 1048
    ids = set(json.loads((REPO / "models/paper-cnn/config.json").read_text())["training"]["split"]
              ["test_ids"])  # fmt: skip
    assert {curves.crts[i].source_id for i in test} == ids


def test_paired_bootstrap_by_hand() -> None:
    a = {c: {"right": "1101-"} for c in cadence.CADENCES}
    b = {c: {"right": "10011"} for c in cadence.CADENCES}
    boot = cadence_eval.paired_bootstrap(a, b, draws=500)
    # the four curves both classified: a right 3, b right 2 -> +1/4 on every cadence
    assert boot["difference"] == pytest.approx(0.25)
    assert 0.05 < boot["standard_error"] < 0.5
    same = cadence_eval.paired_bootstrap(a, a, draws=50)
    assert same == {"difference": 0.0, "standard_error": 0.0}


def test_committed_page_is_generated_from_the_committed_json(tmp_path: Path) -> None:
    doc = json.loads((DOC / "cadence.json").read_text())
    md = tmp_path / "cadence.md"
    report.write_report(doc, tmp_path, md)
    assert md.read_text() == (REPO / "docs" / "cadence.md").read_text()
    assert (tmp_path / "cadence.png").stat().st_size > 10_000
    # the default is one of the measured candidates, and the page says which
    manifest = json.loads((REPO / "models/default/MANIFEST.json").read_text())
    names = [n for n, c in doc["candidates"].items()
             if c["content_hash"] == manifest["content_hash"]]  # fmt: skip
    assert len(names) == 1
    assert f"`models/default` is `{names[0]}`" in md.read_text()
    # docs/surveys.md's summary of the old and the new default comes from this JSON too
    assert report.default_name(doc) == names[0]
    block = report.surveys_block(doc["candidates"], names[0])
    old = doc["candidates"]["paper-cnn"]["held_out"]
    crts, nightly = old["crts"]["accuracy"], old["nightly"]["accuracy"]
    row = f"| `paper-cnn` (old default) | {crts:.3f} | {nightly:.3f} |"
    assert row in block
    assert block.startswith(report.SURVEYS_BEGIN)
    assert block.endswith(report.SURVEYS_END)
    # and docs/surveys.md holds it
    assert block in (REPO / "docs" / "surveys.md").read_text()


def test_shipped_default_is_the_cadence_trained_trees() -> None:
    """models/default is the boosted trees trained on the cadence copies and first points, on
    this code's periodic features, and its card quotes its version and held-out accuracy."""
    from broker.models import ModelSource
    from dmdt import periodic
    from dmdt.hybrid import HybridClassifier

    model = ModelSource("default", "cpu").current.classifier
    assert isinstance(model, HybridClassifier)
    assert model.classes == ["EW", "EA", "RRab", "RRc", "RRd", "RS_CVn", "LPV"]
    options = json.loads((REPO / "models/default/model.json").read_text())["training"]["options"]
    assert options["cadences"] == ["nightly", "ztf", "rubin"]
    assert options["history_cuts"] == [20, 30, 50, 75, 100, 150, 200, 300]
    assert model.features_version == periodic.FEATURES_VERSION
    card = (REPO / "models/default/README.md").read_text()
    assert model.version in card
    assert f"{model.metrics['accuracy']:.3f}" in card
