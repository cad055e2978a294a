"""Model artifacts: save, load and verify a model directory; publish it to a registry.

A model directory holds three files, and nothing else is needed to rebuild the model::

    model.pt        the network's state_dict (tensors only; loaded with ``weights_only=True``)
    config.json     net config, grid edges, class names, preprocessing, training record, metrics
    MANIFEST.json   sha256 of each file and the content hash over both (the model's identity)

``load_model`` recomputes the hashes and refuses an artifact whose files do not match its
manifest (`ArtifactError`), so a truncated copy or a hand-edited config never serves alerts; the
manifest's rules are `dmdt.manifest`'s, the same for hybrid models.

A registry is a directory of published versions, ``<registry>/<version>/``, and a ``CURRENT``
file naming the one to serve. Both the copy and the pointer flip are atomic renames, so a broker
that reads ``CURRENT`` between batches sees either the old model or the new one, never half.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from dmdt import __version__
from dmdt.grids import Grid
from dmdt.manifest import MANIFEST_FILE, ArtifactError, read_manifest, write_manifest
from dmdt.nets import NetConfig, build_net

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
CURRENT_FILE = "CURRENT"
FORMAT = "dmdt-model/1"
HASHED_FILES = (MODEL_FILE, CONFIG_FILE)  # the files a model is made of (dmdt.manifest.FORMATS)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "default"
PAPER_CNN_DIR = REPO_ROOT / "models" / "paper-cnn"  # the paper's CNN, for the CRTS cadence
MODEL_DIR_ENV = "DMDT_MODEL_DIR"
DEFAULT_MIN_POINTS = 20  # for artifacts that do not record it (dmdt.datasets' default)


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A verified model directory: everything needed to rebuild and run the network."""

    path: Path
    net_config: NetConfig
    grid: Grid
    classes: tuple[str, ...]
    net: torch.nn.Module  # weights loaded, eval mode, CPU
    config: Mapping[str, Any]
    content_hash: str

    @property
    def version(self) -> str:
        """Registry version name: creation time and the first 12 hex digits of the hash."""
        return version_name(self.config, self.content_hash)

    @property
    def min_points(self) -> int:
        """The fewest cleaned points a training light curve had (the serving threshold too)."""
        return int(self.config.get("preprocessing", {}).get("min_points", DEFAULT_MIN_POINTS))


def resolve_model_dir(path_or_name: str | os.PathLike[str] = "default") -> Path:
    """Map ``default`` to the shipped model or ``$DMDT_MODEL_DIR``; follow a registry CURRENT."""
    if str(path_or_name) == "default":
        path = Path(os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL_DIR)
    else:
        path = Path(path_or_name)
    if (path / CURRENT_FILE).is_file():
        current = current_model(path)
        assert current is not None
        return current
    return path


def _temp_path(folder: Path, name: str) -> Path:
    """A fresh hidden name in ``folder`` (created with open()/mkdir(), so the umask applies,
    unlike tempfile's private 0600/0700 that a broker running as another user could not read)."""
    return folder / f".{name}.{secrets.token_hex(6)}.tmp"


def _write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through a temporary file in the same folder, fsync, and a rename."""
    tmp = _temp_path(path.parent, path.name)
    try:
        with tmp.open("xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode()


def save_model(
    out_dir: str | os.PathLike[str],
    net: torch.nn.Module,
    net_config: NetConfig,
    grid: Grid,
    classes: Sequence[str],
    *,
    preprocessing: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> LoadedModel:
    """Write a model directory (weights, config, manifest last) and return it verified.

    Other files in ``out_dir`` (a README) are left alone. The manifest is written last, so a run
    that dies half-way leaves an artifact that ``load_model`` refuses rather than a wrong one.
    """
    if len(classes) != net_config.n_classes:
        raise ValueError(f"{len(classes)} class names for a net with {net_config.n_classes}")
    if tuple(grid.shape) != tuple(net_config.input_shape):
        raise ValueError(f"grid shape {grid.shape} != net input shape {net_config.input_shape}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_FILE).unlink(missing_ok=True)
    config = {
        "format": FORMAT,
        "net": net_config.to_dict(),
        "grid": grid.to_dict(),
        "classes": list(classes),
        "preprocessing": dict(preprocessing or {}),
        "training": dict(training or {}),
        "metrics": dict(metrics or {}),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "trainer_version": __version__,
    }
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    _write_atomic(out / MODEL_FILE, lambda fh: torch.save(state, fh))
    _write_atomic(out / CONFIG_FILE, lambda fh: fh.write(_json_bytes(config)))
    write_manifest(out, FORMAT, HASHED_FILES)
    return load_model(out)


def verify(path_or_name: str | os.PathLike[str] = "default") -> str:
    """Check a model directory against its manifest (`dmdt.manifest`); return its content hash."""
    manifest = read_manifest(resolve_model_dir(path_or_name), FORMAT)
    manifest.require(HASHED_FILES)
    return manifest.content_hash


def load_model(path_or_name: str | os.PathLike[str] = "default") -> LoadedModel:
    """Load and verify a model directory (``default``, a path, or a registry's CURRENT)."""
    path = resolve_model_dir(path_or_name)
    manifest = read_manifest(path, FORMAT)
    manifest.require(HASHED_FILES)
    content_hash = manifest.content_hash
    try:
        config = json.loads(manifest.path(CONFIG_FILE).read_text())
        if config.get("format") != FORMAT:
            raise ArtifactError(f"{path}: format {config.get('format')!r}, expected {FORMAT!r}")
        net_config = NetConfig.from_dict(config["net"])
        grid = Grid.from_dict(config["grid"])
        classes = tuple(str(c) for c in config["classes"])
    except (ValueError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path / CONFIG_FILE} is not a valid model config: {exc!r}") from exc
    if len(classes) != net_config.n_classes or grid.shape != tuple(net_config.input_shape):
        raise ArtifactError(f"{path / CONFIG_FILE}: classes or grid disagree with the net config")
    try:
        state = torch.load(manifest.path(MODEL_FILE), map_location="cpu", weights_only=True)
        net = build_net(net_config)
        net.load_state_dict(state)
    except Exception as exc:  # pickle, zip and shape errors all mean the same thing here
        raise ArtifactError(f"{path / MODEL_FILE} does not load into {net_config}: {exc}") from exc
    return LoadedModel(path, net_config, grid, classes, net.eval(), config, content_hash)


# --- registry -------------------------------------------------------------------------------


def version_name(config: Mapping[str, Any], content_hash: str) -> str:
    """``<created, compact UTC>-<hash[:12]>``: sorts by time, names the content."""
    created = str(config.get("created", "")).replace("-", "").replace(":", "")
    return f"{created or 'undated'}-{content_hash[:12]}"


def publish(model_dir: str | os.PathLike[str], registry_dir: str | os.PathLike[str]) -> LoadedModel:
    """Copy a verified model into ``registry_dir/<version>/`` and make it CURRENT (atomically).

    Publishing the same content twice is a no-op copy that still flips CURRENT to it, so
    re-publishing an older version is how to roll back.
    """
    model = load_model(model_dir)
    dest = publish_files(model.path, registry_dir, model.version, model.content_hash, verify)
    return load_model(dest)


def publish_files(
    source: Path,
    registry_dir: str | os.PathLike[str],
    version: str,
    content_hash: str,
    check: Callable[[Path], str],
) -> Path:
    """Copy the files of a verified model directory into ``registry_dir/<version>/`` (through a
    temporary folder, renamed atomically) and make it CURRENT; ``check`` verifies a directory
    and returns its content hash (the model kind's own check)."""
    registry = Path(registry_dir)
    registry.mkdir(parents=True, exist_ok=True)
    dest = registry / version
    if not dest.is_dir():
        tmp = _temp_path(registry, version)
        tmp.mkdir()
        try:
            for item in source.iterdir():
                if item.is_file():
                    shutil.copy2(item, tmp / item.name)
            check(tmp)
            os.rename(tmp, dest)  # atomic; fails if a concurrent publish got there first
        except OSError:
            shutil.rmtree(tmp, ignore_errors=True)
            if not dest.is_dir():
                raise
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    if check(dest) != content_hash:
        raise ArtifactError(f"{dest} exists with different content; refusing to overwrite it")
    _write_atomic(registry / CURRENT_FILE, lambda fh: fh.write(f"{version}\n".encode()))
    return dest


def current_model(registry_dir: str | os.PathLike[str]) -> Path | None:
    """The directory CURRENT names, or None when nothing was published yet."""
    registry = Path(registry_dir)
    try:
        version = (registry / CURRENT_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    if not version or "/" in version or version.startswith("."):
        raise ArtifactError(f"{registry / CURRENT_FILE} holds an invalid version {version!r}")
    path = registry / version
    if not path.is_dir():
        raise ArtifactError(f"{registry / CURRENT_FILE} names {version!r}, which does not exist")
    return path


def announcement(model: LoadedModel) -> dict[str, Any]:
    """The record a broker announces when it switches to ``model`` (JSON-ready, no weights)."""
    return {
        "version": model.version,
        "content_hash": model.content_hash,
        "path": str(model.path),
        "arch": model.net_config.arch,
        "classes": list(model.classes),
        "grid": model.grid.name,
        "input_shape": list(model.net_config.input_shape),
        "created": model.config.get("created"),
        "trainer_version": model.config.get("trainer_version"),
        "metrics": {
            k: v
            for k, v in model.config.get("metrics", {}).items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        },
        "announced": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
