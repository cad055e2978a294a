"""Where models are found: ``default``, model directories, and registries of published versions.

A registry is a directory of published versions, ``<registry>/<version>/``, and a ``CURRENT``
file naming the one to serve. Both the copy and the pointer flip are atomic renames, so a broker
that reads ``CURRENT`` between batches sees either the old model or the new one, never half.
Every model kind is published the same way (`publish`), verified by `dmdt.model.load_model`.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dmdt.manifest import ArtifactError, temp_path, write_atomic

if TYPE_CHECKING:
    from dmdt.model import Model

CURRENT_FILE = "CURRENT"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL_DIR = REPO_ROOT / "models" / "default"
PAPER_CNN_DIR = REPO_ROOT / "models" / "paper-cnn"  # the paper's CNN, for the CRTS cadence
MODEL_DIR_ENV = "DMDT_MODEL_DIR"


def is_registry(path: str | os.PathLike[str]) -> bool:
    """True when the path is a model registry (a folder with a CURRENT file)."""
    return (Path(path) / CURRENT_FILE).is_file()


def resolve_model_dir(path_or_name: str | os.PathLike[str] = "default") -> Path:
    """Map ``default`` to the shipped model or ``$DMDT_MODEL_DIR``; follow a registry CURRENT."""
    if str(path_or_name) == "default":
        path = Path(os.environ.get(MODEL_DIR_ENV) or DEFAULT_MODEL_DIR)
    else:
        path = Path(path_or_name)
    if is_registry(path):
        current = current_model(path)
        assert current is not None
        return current
    return path


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


def publish(model_dir: str | os.PathLike[str], registry_dir: str | os.PathLike[str]) -> Model:
    """Copy a verified model of any kind into ``registry_dir/<version>/`` (through a temporary
    folder, renamed atomically) and make it CURRENT; returns the published copy, verified.

    Publishing the same content twice is a no-op copy that still flips CURRENT to it, so
    re-publishing an older version is how to roll back.
    """
    from dmdt.model import load_model

    def check(folder: Path) -> str:
        return load_model(folder, "cpu").content_hash  # verified, computed from the files

    model = load_model(resolve_model_dir(model_dir), "cpu")
    source = Path(model_dir) if model.path is None else Path(model.path)
    registry = Path(registry_dir)
    registry.mkdir(parents=True, exist_ok=True)
    dest = registry / model.version
    if not dest.is_dir():
        tmp = temp_path(registry, model.version)
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
    if check(dest) != model.content_hash:
        raise ArtifactError(f"{dest} exists with different content; refusing to overwrite it")
    write_atomic(registry / CURRENT_FILE, lambda fh: fh.write(f"{model.version}\n".encode()))
    return load_model(dest, "cpu")


def announcement(model: Model) -> dict[str, Any]:
    """The record `dmdt-train publish` prints for a model (JSON-ready, no weights)."""
    return {
        "version": model.version,
        "content_hash": model.content_hash,
        "path": str(model.path),
        "kind": model.kind,
        "name": model.name,
        "classes": list(model.classes),
        "grid": model.grid.name,
        "min_points": model.min_points,
        "features_version": model.features_version,
        "metrics": {
            k: v
            for k, v in model.metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        },
        "announced": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
