"""Model artifacts: round trip, hash verification, `default` lookup, registry publishing."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from dmdt import cnn
from dmdt import registry as model_registry
from dmdt.cnn import Classifier, save_model
from dmdt.grids import get_grid
from dmdt.manifest import ArtifactError
from dmdt.model import load_model
from dmdt.nets import NetConfig, build_net
from dmdt.registry import current_model, publish

CLASSES = ("EW", "RRab", "LPV")


def _save(path: Path, seed: int = 0) -> cnn.LoadedModel:
    torch.manual_seed(seed)
    grid = get_grid()
    config = NetConfig("shallow", grid.shape, len(CLASSES))
    return save_model(
        path,
        build_net(config),
        config,
        grid,
        CLASSES,
        training={"seed": seed},
        metrics={"accuracy": 0.5},
    )


def test_round_trip(tmp_path: Path) -> None:
    saved = _save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "MANIFEST.json",
        "config.json",
        "model.pt",
    ]
    loaded = cnn.read_model(tmp_path / "m")
    assert loaded.content_hash == saved.content_hash
    assert loaded.classes == CLASSES
    assert loaded.grid == get_grid()
    assert loaded.net_config == NetConfig("shallow", (24, 22), 3)
    x = torch.rand(4, 1, 24, 22)
    with torch.no_grad():
        assert torch.equal(saved.net(x), loaded.net(x))
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    for key in (
        "net",
        "grid",
        "classes",
        "preprocessing",
        "training",
        "metrics",
        "created",
        "trainer_version",
    ):
        assert key in config


def test_files_follow_the_umask(tmp_path: Path) -> None:
    # A broker running as another user must be able to read published models.
    old = os.umask(0o022)
    try:
        model = publish(_save(tmp_path / "m").path, tmp_path / "registry")
    finally:
        os.umask(old)
    for path in (tmp_path / "m", model.path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o755
        for f in path.iterdir():
            assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
    assert stat.S_IMODE((tmp_path / "registry" / "CURRENT").stat().st_mode) == 0o644


def test_weights_only_state_dict(tmp_path: Path) -> None:
    _save(tmp_path / "m")
    state = torch.load(tmp_path / "m" / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())


@pytest.mark.parametrize("name", ["model.pt", "config.json"])
def test_modified_file_is_refused(tmp_path: Path, name: str) -> None:
    _save(tmp_path / "m")
    path = tmp_path / "m" / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match=rf"{name} does not match MANIFEST\.json"):
        cnn.read_model(tmp_path / "m")


def test_swapped_weights_are_refused(tmp_path: Path) -> None:
    _save(tmp_path / "a", seed=0)
    _save(tmp_path / "b", seed=1)
    shutil.copy(tmp_path / "b" / "model.pt", tmp_path / "a" / "model.pt")
    with pytest.raises(ArtifactError, match="modified or corrupted"):
        cnn.read_model(tmp_path / "a")


def test_missing_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        cnn.read_model(tmp_path / "nothing")
    _save(tmp_path / "m")
    (tmp_path / "m" / "MANIFEST.json").unlink()
    with pytest.raises(ArtifactError, match=r"has no MANIFEST\.json"):
        cnn.read_model(tmp_path / "m")


def test_default_follows_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    saved = _save(tmp_path / "m")
    monkeypatch.setenv("DMDT_MODEL_DIR", str(tmp_path / "m"))
    assert load_model("default").content_hash == saved.content_hash
    monkeypatch.delenv("DMDT_MODEL_DIR")
    shipped = model_registry.REPO_ROOT / "models" / "default"
    assert model_registry.resolve_model_dir("default") == shipped


def test_publish_flips_current(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    assert current_model(registry) is None
    a = publish(_save(tmp_path / "a", seed=0).path, registry)
    assert current_model(registry) == registry / a.version
    b = publish(_save(tmp_path / "b", seed=1).path, registry)
    assert (registry / "CURRENT").read_text().strip() == b.version
    assert load_model(registry).content_hash == b.content_hash  # a registry resolves to CURRENT
    again = publish(tmp_path / "a", registry)  # republishing an old version rolls back
    assert again.version == a.version
    assert current_model(registry) == registry / a.version
    assert sorted(p.name for p in registry.iterdir()) == sorted(["CURRENT", a.version, b.version])
    record = model_registry.announcement(load_model(registry))
    assert record["version"] == a.version
    assert record["content_hash"] == a.content_hash
    assert record["classes"] == list(CLASSES)
    assert record["metrics"] == {"accuracy": 0.5}
    json.dumps(record)


def test_failed_publish_leaves_current_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = tmp_path / "registry"
    a = publish(_save(tmp_path / "a", seed=0).path, registry)
    b = _save(tmp_path / "b", seed=1)
    calls = {"n": 0}
    real_copy = shutil.copy2

    def flaky_copy(src: object, dst: object) -> object:
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full")
        return real_copy(src, dst)

    monkeypatch.setattr(model_registry.shutil, "copy2", flaky_copy)
    with pytest.raises(OSError, match="disk full"):
        publish(b.path, registry)
    assert current_model(registry) == registry / a.version
    assert sorted(p.name for p in registry.iterdir()) == sorted(["CURRENT", a.version])


def test_current_pointing_nowhere_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "CURRENT").write_text("20990101T000000Z-deadbeef\n")
    with pytest.raises(ArtifactError, match="does not exist"):
        current_model(tmp_path)


def test_classifier_preprocess_and_predict(tmp_path: Path) -> None:
    clf = Classifier(_save(tmp_path / "m"), device="cpu")
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 50, size=(6, 24, 22)).astype(np.int32)
    n_points = np.full(6, 60)
    batch = clf.preprocess(counts, n_points)
    assert batch.shape == (6, 1, 24, 22)
    assert batch.dtype == torch.float32
    assert float(batch.max()) <= 1.0
    probs = clf.predict(batch)
    assert probs.shape == (6, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    one_by_one = np.concatenate([clf.predict(batch[i : i + 1]) for i in range(6)])
    np.testing.assert_allclose(one_by_one, probs, rtol=1e-5, atol=1e-7)
    assert np.array_equal(clf.predict(batch), probs)
    with pytest.raises(ValueError, match="grid"):
        clf.preprocess(counts[:, :23], n_points)
