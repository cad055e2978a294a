"""The trainer on a small real subset: fit -> artifact -> evaluate / predict / publish."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from dmdt.cnn import Classifier, read_model
from dmdt.datasets import export_csv, load_labelled
from dmdt.registry import current_model
from research.paper.features import FEATURE_NAMES, features, pair_slope_trend
from trainer import data
from trainer.cli import main
from trainer.predict import predict, read_input

CLASSES = ("RRab", "LPV")
PER_CLASS = 40


@pytest.fixture(scope="session")
def subset_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 classes x 40 real CRTS light curves as a folder of <id>-<class>.csv files (raw)."""
    lcs = load_labelled("crts", classes=CLASSES, clean=False)
    picked = [lc for c in CLASSES for lc in [x for x in lcs if x.label == c][:PER_CLASS]]
    folder = tmp_path_factory.mktemp("subset")
    export_csv(picked, folder)
    return folder


@pytest.fixture(scope="session")
def model_dir(subset_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("models") / "m"
    args = ["fit", str(subset_dir), "--out", str(out), "--epochs", "2", "--seed", "0"]
    assert main([*args, "--classes", ",".join(CLASSES), "--quiet"]) == 0
    return out


def test_fit_writes_a_verified_artifact(model_dir: Path, subset_dir: Path) -> None:
    model = read_model(model_dir)
    assert model.classes == CLASSES
    assert model.net_config.arch == "shallow"
    training = model.config["training"]
    split = training["split"]
    assert split["n_test"] == 16  # 20 % of 40 per class
    assert split["n_train"] + split["n_val"] + split["n_test"] == 2 * PER_CLASS
    assert training["epochs_run"] == 2
    assert training["data_hash"] == data.data_hash(data.load(str(subset_dir), CLASSES))
    assert model.config["metrics"]["n"] == 16
    assert 0.0 <= model.config["metrics"]["accuracy"] <= 1.0


def test_fit_is_repeatable(subset_dir: Path, model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    args = ["fit", str(subset_dir), "--out", str(out), "--epochs", "2", "--seed", "0"]
    assert main([*args, "--classes", ",".join(CLASSES), "--quiet"]) == 0
    a, b = read_model(model_dir), read_model(out)
    for key, value in a.net.state_dict().items():
        assert np.array_equal(value.numpy(), b.net.state_dict()[key].numpy()), key
    assert a.config["training"]["split"] == b.config["training"]["split"]


def test_evaluate_json_and_png(model_dir: Path, subset_dir: Path, tmp_path: Path) -> None:
    out, png = tmp_path / "metrics.json", tmp_path / "cm.png"
    assert main(["evaluate", str(model_dir), str(subset_dir), "--json", str(out),
                 "--png", str(png)]) == 0  # fmt: skip
    result = json.loads(out.read_text())
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "per_class_recall",
                "confusion_matrix", "classes", "n", "n_skipped_unknown_class"):  # fmt: skip
        assert key in result
    assert result["classes"] == list(CLASSES)
    assert result["n"] == 16  # same data: the held-out test ids only
    assert "held-out" in result["evaluated_on"]
    assert np.array(result["confusion_matrix"]).sum() == 16
    assert result["accuracy"] == pytest.approx(read_model(model_dir).config["metrics"]["accuracy"])
    assert png.stat().st_size > 1000


def test_evaluate_skips_unknown_classes(model_dir: Path, tmp_path: Path) -> None:
    lcs = load_labelled("crts", classes=("RRab", "EW"), clean=False)
    picked = [x for x in lcs if x.label == "RRab"][:5] + [x for x in lcs if x.label == "EW"][:3]
    folder = tmp_path / "mixed"
    export_csv(picked, folder)
    out = tmp_path / "metrics.json"
    assert main(["evaluate", str(model_dir), str(folder), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["n_skipped_unknown_class"] == 3
    assert result["n"] == 5  # new data: every curve of a known class
    assert result["per_class_recall"]["LPV"] is None


def test_predict_equals_classifier(model_dir: Path, subset_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pred.csv"
    assert main(["predict", str(model_dir), str(subset_dir), "--out", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 2 * PER_CLASS
    clf = Classifier.from_checkpoint(model_dir, device="cpu")
    lcs = data.load(str(subset_dir), CLASSES)
    preds = clf.classify_lightcurves(lcs)
    by_id = {r["source_id"]: r for r in rows}
    for sid, label, probs in zip(preds.source_ids, preds.labels, preds.probabilities, strict=True):
        row = by_id[sid]
        assert row["predicted"] == label
        for c, p in zip(clf.classes, probs, strict=True):
            assert float(row[f"p_{c}"]) == pytest.approx(float(p), abs=1e-6)
    records = predict(clf, read_input(subset_dir))
    assert [r["predicted"] for r in records if r["source_id"] in by_id] == [
        by_id[r["source_id"]]["predicted"] for r in records
    ]


def test_predict_json_and_short_curves(model_dir: Path, subset_dir: Path, tmp_path: Path) -> None:
    one = sorted(subset_dir.glob("*.csv"))[0]
    short = tmp_path / "short.csv"
    short.write_text("\n".join(one.read_text().splitlines()[:6]) + "\n")  # 5 points
    out = tmp_path / "pred.json"
    assert main(["predict", str(model_dir), str(short), "--out", str(out)]) == 0
    (record,) = json.loads(out.read_text())
    assert record["predicted"] is None
    assert record["skipped"] == "too_short"


def test_publish_cli(model_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = tmp_path / "registry"
    assert main(["publish", str(model_dir), "--registry", str(registry)]) == 0
    record = json.loads(capsys.readouterr().out)
    assert current_model(registry) == registry / record["version"]
    assert record["content_hash"] == read_model(model_dir).content_hash


def test_cli_reports_a_corrupted_model(
    model_dir: Path, subset_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in model_dir.iterdir():
        (broken / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((broken / "config.json").read_text())
    cfg["classes"] = ["LPV", "RRab"]  # a swapped label order would silently mislabel everything
    (broken / "config.json").write_text(json.dumps(cfg))
    assert main(["predict", str(broken), str(subset_dir)]) == 2
    assert "does not match MANIFEST.json" in capsys.readouterr().err


def test_images_cli(subset_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "images.npz"
    assert main(["images", str(subset_dir), "--out", str(out)]) == 0
    with np.load(out) as z:
        assert z["images"].shape == (2 * PER_CLASS, 24, 22)
        assert z["images"].dtype == np.uint8
        assert sorted(set(z["label"].tolist())) == sorted(CLASSES)
        assert json.loads(str(z["grid"]))["name"] == "mahabal2017"


def test_stratified_split() -> None:
    labels = np.array(["a"] * 50 + ["b"] * 10 + ["c"] * 2)
    rest, held = data.stratified_split(labels, 0.2, seed=3)
    assert sorted(np.concatenate([rest, held]).tolist()) == list(range(62))
    assert [int((labels[held] == c).sum()) for c in "abc"] == [10, 2, 1]
    again = data.stratified_split(labels, 0.2, seed=3)
    assert np.array_equal(held, again[1])


def _stetson_j_loop(t: np.ndarray, m: np.ndarray, e: np.ndarray) -> float:
    """Stetson J as the authors' statistics.py loops it (Zhang et al. 2003 weights)."""
    n = len(m)
    delta = np.sqrt(n / (n - 1)) * (m - m.mean()) / e
    mean_dt = sum(t[i + 1] - t[i] for i in range(n - 1)) / (n - 1)
    total = w_total = 0.0
    for i in range(n - 1):
        w = np.exp(-(t[i + 1] - t[i]) / mean_dt)
        p = delta[i] * delta[i + 1]
        total += w * np.sign(p) * np.sqrt(abs(p))
        w_total += w
    return float(total / w_total)


def test_features_against_numpy() -> None:
    lcs = data.load("crts", ("RRc",))[:5]
    x = features(lcs)
    assert x.shape == (5, 18)
    assert len(FEATURE_NAMES) == 18
    assert np.isfinite(x).all()
    col = {n: x[:, i] for i, n in enumerate(FEATURE_NAMES)}
    for i, lc in enumerate(lcs):
        flux = 10 ** (-0.4 * lc.m)
        q = np.quantile(flux, [0.05, 0.25, 0.75, 0.95])
        assert col["amplitude"][i] == pytest.approx(0.5 * np.ptp(lc.m))
        assert col["std"][i] == pytest.approx(np.std(lc.m, ddof=1))
        assert col["linear_trend"][i] == pytest.approx(np.polyfit(lc.t, lc.m, 1)[0], rel=1e-6)
        ratio = (q[2] - q[1]) / (q[3] - q[0])
        assert col["flux_percentile_ratio_mid50"][i] == pytest.approx(ratio, rel=0.05)
        assert col["stetson_j"][i] == pytest.approx(_stetson_j_loop(lc.t, lc.m, lc.err))
    # pair slope trend: 3 rising then 1 falling pair among 5 points -> (3 - 1) / 4
    t = np.arange(5.0)
    assert pair_slope_trend(t, np.array([0.0, 1, 2, 3, 2])) == pytest.approx(0.5)


def test_parse_classes_names_paper_and_all() -> None:
    from trainer.data import PAPER_CLASSES, parse_classes

    assert parse_classes("EW, EA") == ("EW", "EA")
    assert parse_classes("paper") == PAPER_CLASSES
    assert parse_classes("all") is None
    assert parse_classes(None) is None
    with pytest.raises(ValueError, match="duplicate"):
        parse_classes("EW,EW")


def test_fit_with_cadence_copies(subset_dir: Path, tmp_path: Path) -> None:
    """``fit --cadences``: each training and validation curve also as one point per night; the
    held-out test curves stay as they are."""
    out = tmp_path / "cad"
    args = ["fit", str(subset_dir), "--out", str(out), "--epochs", "1", "--seed", "0"]
    assert main([*args, "--classes", ",".join(CLASSES), "--cadences", "nightly", "--quiet"]) == 0
    split = read_model(out).config["training"]["split"]
    assert split["n_test"] == 16
    # a nightly copy of every one of the 64 training and validation curves with 20+ nights
    assert 0 < split["n_cadence_copies"] <= split["n_train"] + split["n_val"]
    assert read_model(out).config["training"]["options"]["cadences"] == ["nightly"]
