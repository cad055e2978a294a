"""The network over the dmdt image and the periodic features (dmdt/branchnet.py): its feature
scaler, the model directory, batched inference, fit-net, and serving it in the stream (feature
cache, hot reload, stream = offline)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from stream_helpers import crts_curves, crts_records, tiny_model

from broker.decode import make_decoder
from broker.encode import decode_classification
from broker.features import FeatureCache
from broker.models import ModelSource
from broker.pipeline import Pipeline
from broker.state import MemoryState
from dmdt import periodic
from dmdt.branchnet import (
    BranchNet,
    BranchNetClassifier,
    BranchNetConfig,
    fit_quantiles,
    quantile_normal,
    scaled_features,
)
from dmdt.grids import get_grid
from dmdt.lightcurves import LightCurve
from dmdt.manifest import ArtifactError
from dmdt.model import lightcurve_counts, model_kind
from dmdt.registry import CURRENT_FILE, announcement, publish

CLASSES = ["EW", "RRab", "LPV"]
N_SOURCES = 5


def test_quantile_normal_matches_scikit_learn() -> None:
    from sklearn.preprocessing import QuantileTransformer

    rng = np.random.default_rng(0)
    x = np.column_stack([
        rng.lognormal(size=500), rng.integers(0, 4, 500).astype(float), rng.normal(size=500),
    ])  # fmt: skip
    qt = QuantileTransformer(n_quantiles=50, output_distribution="normal").fit(x)
    quantiles = fit_quantiles(x, 50)
    np.testing.assert_allclose(quantiles, qt.quantiles_, rtol=0, atol=1e-12)
    probe = np.concatenate([x[:100], rng.normal(0, 10, (20, 3))])  # inside and beyond the range
    np.testing.assert_allclose(quantile_normal(probe, quantiles), qt.transform(probe), atol=1e-9)
    # missing values: NaN scores, 0 in the net's input beside a 1 in the missing column's flag
    bad = probe[:3].copy()
    bad[0, 1] = np.nan
    z = quantile_normal(bad, quantiles)
    assert np.isnan(z[0, 1])
    assert np.isfinite(z[1:]).all()
    net_in = scaled_features(bad, quantiles, missing=[1])
    assert net_in.shape == (3, 4)
    assert net_in.dtype == np.float32
    assert net_in[0, 1] == 0.0
    assert net_in[:, 3].tolist() == [1.0, 0.0, 0.0]


def tiny_branchnet(seed: int = 0, members: int = 2, name: str = "tiny-net") -> BranchNetClassifier:
    """A branch net with seeded random weights and the quantiles of a few real CRTS curves."""
    torch.manual_seed(seed)
    grid = get_grid()
    x, _ = periodic.features(crts_curves(N_SOURCES))
    missing = tuple(int(j) for j in np.flatnonzero(~np.isfinite(x).all(axis=0)))
    cfg = BranchNetConfig(n_features=x.shape[1], missing=missing or (0,), n_classes=len(CLASSES),
                          image_shape=grid.shape, members=members, n_quantiles=5)  # fmt: skip
    net = BranchNet(cfg)
    net.quantiles.copy_(torch.from_numpy(fit_quantiles(x, 5)))
    return BranchNetClassifier(name, list(CLASSES), grid, cfg, net, device="cpu")


def inputs(model: BranchNetClassifier, lcs: list[LightCurve]) -> tuple[np.ndarray, ...]:
    counts, n_points = lightcurve_counts(lcs, model.grid)
    feats = np.array([model.features(lc.t, lc.m, lc.err) for lc in lcs])
    return counts, n_points, feats


def test_save_load_round_trip_and_a_changed_file_is_refused(tmp_path: Path) -> None:
    model = tiny_branchnet()
    model.save(tmp_path / "m")
    assert model_kind(tmp_path / "m") == "branchnet"
    assert model_kind(tmp_path) not in ("hybrid", "branchnet")  # no model.json: not a feature model
    loaded = BranchNetClassifier.load(tmp_path / "m", "cpu")
    assert loaded.version == model.version != "unsaved"
    assert loaded.classes == CLASSES
    args = inputs(loaded, crts_curves(N_SOURCES))
    probs = loaded.classify(*args)
    np.testing.assert_array_equal(probs, model.classify(*args))
    assert probs.dtype == np.float32
    assert probs.shape == (N_SOURCES, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-6)
    config = tmp_path / "m" / "model.json"
    config.write_text(config.read_text().replace('"temperature": 1.0', '"temperature": 2.0'))
    with pytest.raises(ArtifactError, match="does not match"):  # the one manifest's error
        BranchNetClassifier.load(tmp_path / "m", "cpu")


def test_probabilities_do_not_depend_on_the_batch() -> None:
    model = tiny_branchnet()
    lcs = crts_curves(N_SOURCES)
    counts, n_points, feats = inputs(model, lcs)
    # 150 rows: three chunks of 64, the last padded; and the same rows one at a time
    rows = np.arange(150) % N_SOURCES
    feats = feats.copy()
    feats[rows[:7], 3] = np.nan  # some missing values
    whole = model.classify(counts[rows], n_points[rows], feats[rows])
    for i in (0, 63, 64, 149):
        r = rows[i : i + 1]
        one = model.classify(counts[r], n_points[r], feats[r])
        np.testing.assert_array_equal(one[0], whole[i])
    with pytest.raises(ValueError, match="features must be"):
        model.classify(counts, n_points, feats[:, :5])
    with pytest.raises(ValueError, match="counts must be"):
        model.classify(counts[:, :3], n_points, feats[:N_SOURCES])


def test_features_are_the_periodic_features_of_the_cleaned_points() -> None:
    model = tiny_branchnet()
    lc = crts_curves(1)[0]
    x = model.features(lc.t[::-1], lc.m[::-1], lc.err[::-1])  # any order
    np.testing.assert_array_equal(x, periodic.features([lc])[0][0])
    assert np.isnan(model.features(lc.t[:5], lc.m[:5], lc.err[:5])).all()


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list:
    return crts_records(tmp_path_factory.mktemp("replay"), N_SOURCES)


def test_stream_equals_offline_through_the_feature_path(tmp_path: Path, records: list) -> None:
    """Served by ModelSource from its directory, batch after batch, features refreshed on every
    batch: each source's last record equals the offline classification of its whole curve."""
    tiny_branchnet().save(tmp_path / "net")
    served = ModelSource(tmp_path / "net", "cpu").current
    assert served.kind == "branchnet"
    assert served.reads_features
    assert served.version.startswith("tiny-net-")
    state = MemoryState(served.grid)
    cache = FeatureCache(always=True)
    p = Pipeline({"lc": make_decoder("lightcurve")}, state, lambda: served, features=cache)
    outputs = [decode_classification(v) for i in range(0, len(records), 700)
               for _, v in p.process(records[i : i + 700]).outputs]  # fmt: skip
    last = {c.source_id: c for c in outputs}
    offline = BranchNetClassifier.load(tmp_path / "net", "cpu")
    lcs = crts_curves(N_SOURCES)
    expected = offline.classify(*inputs(offline, lcs))
    for lc, row in zip(lcs, expected, strict=True):
        got = np.array([last[lc.source_id].probabilities[k] for k in CLASSES], dtype=np.float32)
        assert last[lc.source_id].features_n_points == len(lc)
        np.testing.assert_array_equal(got, row)


def test_published_to_a_registry_and_hot_reloaded(tmp_path: Path, records: list) -> None:
    registry = tmp_path / "registry"
    cnn = publish(tiny_model(tmp_path / "cnn").path, registry)
    source = ModelSource(registry, "cpu", check_interval_s=3600)
    assert source.current.kind == "cnn"
    state = MemoryState(source.current.grid)
    p = Pipeline({"lc": make_decoder("lightcurve")}, state, lambda: source.current,
                 features=FeatureCache(always=True))  # fmt: skip
    half = len(records) // 2
    first = p.process(records[:half])
    assert {decode_classification(v).model_hash for _, v in first.outputs} == {cnn.content_hash}
    tiny_branchnet(seed=1).save(tmp_path / "net")
    record = announcement(publish(tmp_path / "net", registry))
    assert record["kind"] == "branchnet"
    assert (registry / CURRENT_FILE).read_text().strip() == record["version"]
    os.utime(registry / CURRENT_FILE, ns=(7, 7))
    assert source.maybe_reload(force=True)
    assert source.current.kind == "branchnet"
    assert source.current.reads_features
    second = p.process(records[half:])
    got = {decode_classification(v).model_hash for _, v in second.outputs}
    assert got == {record["content_hash"]}
    # publishing the same content again is a no-op copy; a changed copy in place is refused
    assert str(publish(tmp_path / "net", registry).path) == record["path"]
    manifest = json.loads((Path(record["path"]) / "MANIFEST.json").read_text())
    assert manifest["content_hash"] == record["content_hash"]


@pytest.mark.slow
def test_fit_net_cli_trains_scores_and_loads(tmp_path: Path) -> None:
    """``dmdt-train fit-net`` on 40 synthetic curves a class (sinusoids and sawtooths), with
    nightly copies; then ``evaluate`` and ``predict`` take the model like any other."""
    from dmdt.datasets import export_csv
    from trainer.cli import main

    rng = np.random.default_rng(0)
    lcs = []
    for seed in range(80):
        label = "AB"[seed % 2]
        t = np.sort(rng.choice(np.arange(53500, 56500), 40, replace=False)) + 0.3
        t = (t[:, None] + np.arange(3)[None, :] * 0.007).reshape(-1)
        phase = np.mod(t / rng.uniform(0.3, 0.7), 1.0)
        signal = 0.3 * np.sin(2 * np.pi * phase) if label == "A" else 0.6 * (phase - 0.5)
        m = 15.0 + signal + rng.normal(0, 0.05, t.size)
        lcs.append(LightCurve(f"s{seed}", t, m, np.full(t.size, 0.05), label=label))
    folder = tmp_path / "curves"
    export_csv(lcs, folder)
    out = tmp_path / "net"
    argv = ["fit-net", str(folder), "--classes", "A,B", "--out", str(out), "--name", "ab",
            "--members", "0", "--epochs", "4", "--cadences", "nightly", "--quiet"]  # fmt: skip
    assert main(argv) == 0
    config = json.loads((out / "model.json").read_text())
    assert config["kind"] == "branchnet"
    assert config["classes"] == ["A", "B"]
    training = config["training"]
    assert training["n_held_out"] == 16
    assert len(training["held_out_ids"]) == 16
    assert training["options"]["augmentation"]["cadences"] == ["nightly"]
    assert training["n_fit_rows"] + training["n_val_rows"] == 2 * 64  # each curve and its copy
    assert config["metrics"]["accuracy"] >= 0.75  # sinusoid vs sawtooth: easy
    assert main(["evaluate", str(out), str(folder), "--json", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["evaluated_on"].startswith("the model's held-out test ids")
    assert result["accuracy"] == pytest.approx(config["metrics"]["accuracy"])
    assert main(["predict", str(out), str(folder), "--out", str(tmp_path / "p.csv")]) == 0
    assert (tmp_path / "p.csv").read_text().count("\n") == 81
    registry = tmp_path / "registry"
    assert main(["publish", str(out), "--registry", str(registry)]) == 0
    assert (registry / CURRENT_FILE).read_text().strip() == BranchNetClassifier.load(out).version
    # the same command gives the same weights
    assert main([*argv[:5], str(tmp_path / "again"), *argv[6:]]) == 0
    first = json.loads((out / "MANIFEST.json").read_text())["files"]["weights.pt"]
    assert json.loads((tmp_path / "again" / "MANIFEST.json").read_text())["files"]["weights.pt"] \
        == first  # fmt: skip


REPO = Path(__file__).resolve().parents[1]


def test_shipped_branch_net_is_the_cadence_trained_one() -> None:
    served = ModelSource(REPO / "models/branchnet-7-cadence", "cpu").current
    assert served.kind == "branchnet"
    assert served.reads_features
    model = served.classifier
    assert isinstance(model, BranchNetClassifier)
    assert model.classes == ["EW", "EA", "RRab", "RRc", "RRd", "RS_CVn", "LPV"]
    options = model.training["options"]
    assert options["augmentation"]["cadences"] == ["nightly", "ztf", "rubin"]
    assert options["augmentation"]["history_cuts"] == [20, 30, 50, 75, 100, 150, 200, 300]
    assert model.features_version == periodic.FEATURES_VERSION
    card = (REPO / "models/branchnet-7-cadence/README.md").read_text()
    assert model.version in card
    assert f"{model.metrics['accuracy']:.3f}" in card


@pytest.mark.slow
def test_evaluate_reproduces_the_branch_nets_held_out_record(tmp_path: Path) -> None:
    """``dmdt-train evaluate models/branchnet-7-cadence crts`` scores the held-out ids the model
    records (features computed afresh) and gets the accuracy saved at training."""
    from trainer.cli import main

    folder = str(REPO / "models/branchnet-7-cadence")
    assert main(["evaluate", folder, "crts", "--json", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    recorded = json.loads((REPO / "models/branchnet-7-cadence/model.json").read_text())["metrics"]
    assert result["n"] == 1048
    # equal here; other hardware may compute a borderline feature or weight a little apart
    assert result["accuracy"] == pytest.approx(recorded["accuracy"], abs=0.005)
