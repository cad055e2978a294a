"""One strict manifest for both model kinds (dmdt.manifest): every file a model is made of is
listed and hashed, names stay inside the model folder, the content hash (`model_hash` in every
output) is computed from the files and never taken from the manifest, and a directory breaking
any rule is refused with ArtifactError, the same way for a CNN (dmdt.cnn) and a hybrid model
(dmdt.hybrid).

Before, a hybrid MANIFEST.json with an empty ``files`` map loaded a tampered model.json and the
served model_hash still showed the original hash; booster names ``../x.txt`` and absolute paths
were read from outside the folder."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from stream_helpers import tiny_model as tiny_cnn

from broker.models import ModelSource
from dmdt import periodic
from dmdt.grids import get_grid
from dmdt.hybrid import HybridClassifier
from dmdt.manifest import MANIFEST_FILE, ArtifactError
from dmdt.model import load_model

lgb = pytest.importorskip("lightgbm")


def tiny_hybrid(path: Path) -> HybridClassifier:
    """A two-class hybrid model with one small booster on random features (enough to load)."""
    rng = np.random.default_rng(0)
    width = len(periodic.FEATURE_NAMES)
    x, y = rng.normal(size=(80, width)), np.repeat([0, 1], 40)
    params = {"objective": "multiclass", "num_class": 2, "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(x, y), num_boost_round=2)
    model = HybridClassifier("tiny-hybrid", ["A", "B"], get_grid(), [booster], min_points=5)
    model.save(path)
    return model


def load_hybrid(path: Path) -> str:
    return HybridClassifier.load(path).content_hash


def load_cnn(path: Path) -> str:
    return load_model(path).content_hash


def load_branchnet(path: Path) -> str:
    from dmdt.branchnet import BranchNetClassifier

    return BranchNetClassifier.load(path, "cpu").content_hash


KINDS: dict[str, tuple[Callable[[Path], object], Callable[[Path], str], str]] = {
    "cnn": (lambda p: tiny_cnn(p), load_cnn, "config.json"),
    "hybrid": (tiny_hybrid, load_hybrid, "model.json"),
}


def manifest(path: Path) -> dict:
    return json.loads((path / MANIFEST_FILE).read_text())


def write_manifest(path: Path, data: dict) -> None:
    (path / MANIFEST_FILE).write_text(json.dumps(data))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(params=sorted(KINDS))
def model_dir(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, Path]:
    kind = request.param
    path = tmp_path / kind
    KINDS[kind][0](path)
    return kind, path


def test_a_saved_model_loads_and_its_hash_is_computed(model_dir) -> None:
    kind, path = model_dir
    _, load, _ = KINDS[kind]
    recorded = manifest(path)["content_hash"]
    assert load(path) == recorded
    (path / "README.md").write_text("notes: documentation, not part of the model\n")
    assert load(path) == recorded  # unlisted documentation is never read


def test_an_empty_file_list_is_refused(model_dir) -> None:
    kind, path = model_dir
    _, load, config = KINDS[kind]
    data = manifest(path)
    (path / config).write_text((path / config).read_text() + " ")  # tampered
    write_manifest(path, {**data, "files": {}})
    with pytest.raises(ArtifactError, match=r"not listed|lists no"):
        load(path)


def test_a_declared_hash_is_never_believed(model_dir) -> None:
    kind, path = model_dir
    _, load, config = KINDS[kind]
    data = manifest(path)
    original = data["content_hash"]
    (path / config).write_text((path / config).read_text() + " ")  # a byte more
    data["files"][config] = sha256(path / config)  # files consistent, identity claimed
    write_manifest(path, data)
    with pytest.raises(ArtifactError, match="content_hash"):
        load(path)
    del data["content_hash"]  # no claim at all: the computed hash is the identity
    write_manifest(path, data)
    assert load(path) != original


@pytest.mark.parametrize("name", ["../outside.txt", "/etc/hostname", "sub/file.txt", "..", ".x"])
def test_names_stay_inside_the_folder(model_dir, name: str) -> None:
    kind, path = model_dir
    _, load, _ = KINDS[kind]
    outside = path.parent / "outside.txt"
    outside.write_text("x")
    data = manifest(path)
    data["files"][name] = "0" * 64
    write_manifest(path, data)
    with pytest.raises(ArtifactError, match="file name"):
        load(path)


def test_a_symlink_out_of_the_folder_is_refused(model_dir) -> None:
    kind, path = model_dir
    _, load, config = KINDS[kind]
    copy = path.parent / "elsewhere.json"
    shutil.copy(path / config, copy)
    (path / config).unlink()
    (path / config).symlink_to(copy)
    with pytest.raises(ArtifactError, match="outside"):
        load(path)


def test_a_booster_name_outside_the_folder_is_refused(tmp_path: Path) -> None:
    """model.json naming ``../x.txt`` or an absolute path, listed and hashed in the manifest."""
    path = tmp_path / "h"
    tiny_hybrid(path)
    booster = path / "gbm_0.txt"
    shutil.copy(booster, tmp_path / "x.txt")
    for name in ("../x.txt", str(tmp_path / "x.txt")):
        config = json.loads((path / "model.json").read_text())
        config["boosters"] = [name]
        (path / "model.json").write_text(json.dumps(config))
        data = manifest(path)
        data["files"] = {"model.json": sha256(path / "model.json"), "gbm_0.txt": sha256(booster)}
        data.pop("content_hash", None)
        write_manifest(path, data)
        with pytest.raises(ArtifactError, match=r"not listed|file name"):
            HybridClassifier.load(path)


def test_a_listed_file_the_model_does_not_use_is_refused(model_dir) -> None:
    kind, path = model_dir
    _, load, _ = KINDS[kind]
    (path / "extra.bin").write_bytes(b"\0")
    data = manifest(path)
    data["files"]["extra.bin"] = sha256(path / "extra.bin")
    data.pop("content_hash")
    write_manifest(path, data)
    with pytest.raises(ArtifactError, match=r"extra\.bin"):
        load(path)


def test_the_broker_serves_the_computed_hash(tmp_path: Path) -> None:
    """model_hash in the outputs is the hash of the files the broker loaded."""
    path = tmp_path / "h"
    model = tiny_hybrid(path)
    served = ModelSource(path, "cpu").current
    assert served.content_hash == model.content_hash == manifest(path)["content_hash"]
    assert served.version == f"tiny-hybrid-{model.content_hash[:12]}"
    data = manifest(path)
    config = path / "model.json"
    config.write_text(config.read_text().replace('"tiny-hybrid"', '"tiny-hybrid-2"', 1))
    data["files"]["model.json"] = sha256(config)
    data.pop("content_hash")
    write_manifest(path, data)
    again = ModelSource(path, "cpu").current
    assert again.content_hash not in (model.content_hash, "")
    assert again.content_hash == HybridClassifier.load(path).content_hash


def test_the_shipped_models_pass() -> None:
    repo = Path(__file__).resolve().parents[1] / "models"
    for folder in sorted(p for p in repo.iterdir() if (p / MANIFEST_FILE).is_file()):
        loaded = load_model(folder, "cpu").content_hash
        assert loaded == manifest(folder)["content_hash"], folder.name
