"""The manifest of a model directory, one implementation for every model kind.

``MANIFEST.json`` holds the directory's model format, the sha256 of each file the model is made
of, and the content hash over them (the model's identity: ``model_hash`` in every output)::

    {"format": "dmdt-hybrid/1", "files": {"model.json": "<sha256>", ...}, "content_hash": "..."}

`read_manifest` is called by every kind's loader (`dmdt.cnn`, `dmdt.hybrid`, `dmdt.branchnet`,
reached through `dmdt.model.load_model`) and refuses (`ArtifactError`) a directory that breaks
any of these rules:

- the manifest's format is the one the loader reads;
- every file the model is made of is listed, and nothing else (`Manifest.require`): the loader
  reads listed files only (`Manifest.path`), so a file the manifest does not cover is never read;
- names are plain file names: no path separator, not ``.`` / ``..``, no leading dot (the temporary
  files of an atomic write), not absolute; a listed file resolves inside the folder (a symlink
  may point within it, never out of it);
- every listed file exists and has the listed sha256;
- the content hash is computed from the listed hashes, never taken from the manifest; one the
  manifest records must equal it.

Files a manifest does not list (README.md, evaluation.json, figures) are documentation: no
loader reads them, and they are not part of the identity.

The content hash follows the model format, so that models written before keep their identity:
``dmdt-model/1`` (the CNN) hashes ``format`` then ``\\n<name>:<sha256>`` per file in the order
the format fixes (model.pt, config.json); ``dmdt-hybrid/1`` and ``dmdt-branchnet/1`` hash the
JSON of the sorted ``{name: sha256}`` map.

Every file of a model directory is written through `write_atomic` (a temporary file, fsync, a
rename), the manifest last: a run that dies half-way leaves a directory the loaders refuse,
never a wrong model.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MANIFEST_FILE = "MANIFEST.json"


class ArtifactError(RuntimeError):
    """A model directory or registry is missing, incomplete, corrupted or inconsistent."""


def _cnn_hash(files: Mapping[str, str]) -> str:
    digest = hashlib.sha256(b"dmdt-model/1")
    for name in ("model.pt", "config.json"):
        digest.update(f"\n{name}:{files[name]}".encode())
    return digest.hexdigest()


def _hybrid_hash(files: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(files), sort_keys=True).encode()).hexdigest()


# model format -> (files every model of it has, the content hash of its files)
FORMATS: dict[str, tuple[tuple[str, ...], Callable[[Mapping[str, str]], str]]] = {
    "dmdt-model/1": (("model.pt", "config.json"), _cnn_hash),
    "dmdt-hybrid/1": (("model.json",), _hybrid_hash),
    "dmdt-branchnet/1": (("weights.pt", "model.json"), _hybrid_hash),
}


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_name(folder: Path, name: object) -> Path:
    """The path of a file named in a manifest or a model config, if the name is a plain file
    name that resolves inside ``folder``; ArtifactError otherwise."""
    if (
        not isinstance(name, str)
        or not name
        or name in (".", "..")
        or name.startswith(".")
        or "/" in name
        or "\\" in name
        or "\0" in name
        or os.path.isabs(name)
    ):
        raise ArtifactError(f"{folder}: {name!r} is not a plain file name inside the model folder")
    path = folder / name
    if not path.resolve().is_relative_to(folder.resolve()):
        raise ArtifactError(f"{path} resolves outside the model folder: refusing it")
    return path


def content_hash(format_name: str, files: Mapping[str, str]) -> str:
    """The identity of a model of this format made of these files (name -> sha256)."""
    if format_name not in FORMATS:
        raise ArtifactError(f"unknown model format {format_name!r}")
    return FORMATS[format_name][1](files)


@dataclass(frozen=True)
class Manifest:
    """A verified manifest: every listed file matched its hash; the content hash is computed."""

    folder: Path
    format: str
    files: Mapping[str, str]  # name -> sha256, checked against the files
    content_hash: str

    def path(self, name: object) -> Path:
        """The path of a file the model reads, which must be listed."""
        checked = check_name(self.folder, name)
        if name not in self.files:
            raise ArtifactError(
                f"{self.folder}: {name!r} is not listed in {MANIFEST_FILE}: refusing to read it"
            )
        return checked

    def require(self, names: Iterable[str]) -> None:
        """The model is made of exactly these files: each is listed, and nothing else is."""
        wanted = set(names)
        missing = sorted(wanted - set(self.files))
        extra = sorted(set(self.files) - wanted)
        if missing:
            raise ArtifactError(f"{self.folder}: {', '.join(missing)} not listed in "
                                f"{MANIFEST_FILE}: refusing the model")  # fmt: skip
        if extra:
            raise ArtifactError(f"{self.folder}: {MANIFEST_FILE} lists {', '.join(extra)}, "
                                "which the model does not use: refusing the model")  # fmt: skip


def temp_path(folder: Path, name: str) -> Path:
    """A fresh hidden name in ``folder`` (created with open()/mkdir(), so the umask applies,
    unlike tempfile's private 0600/0700 that a broker running as another user could not read)."""
    return folder / f".{name}.{secrets.token_hex(6)}.tmp"


def write_atomic(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write ``path`` through a temporary file in the same folder, fsync, and a rename."""
    tmp = temp_path(path.parent, path.name)
    try:
        with tmp.open("xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def json_bytes(obj: Any) -> bytes:
    """``obj`` as indented JSON text with a final newline (a model's config file)."""
    return (json.dumps(obj, indent=1) + "\n").encode()


def write_manifest(
    folder: str | os.PathLike[str], format_name: str, names: Iterable[str]
) -> Manifest:
    """Hash the named files of ``folder`` and write its MANIFEST.json atomically (a temporary
    file, fsync, rename: write it after the files it lists); returns it."""
    root = Path(folder)
    files = {name: sha256_file(check_name(root, name)) for name in names}
    manifest = Manifest(root, format_name, files, content_hash(format_name, files))
    record = {"format": format_name, "files": files, "content_hash": manifest.content_hash}
    write_atomic(root / MANIFEST_FILE, lambda fh: fh.write(json_bytes(record)))
    return manifest


def recorded_format(folder: str | os.PathLike[str]) -> str | None:
    """The model format a directory's MANIFEST.json names, unverified (to pick the loader, which
    verifies everything); None without a readable one."""
    try:
        data = json.loads((Path(folder) / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    recorded = data.get("format") if isinstance(data, dict) else None
    return recorded if isinstance(recorded, str) else None


def read_manifest(folder: str | os.PathLike[str], format_name: str) -> Manifest:
    """Read and verify a model directory's manifest (see the module docstring)."""
    root = Path(folder)
    if not root.is_dir():
        raise ArtifactError(f"model directory {root} does not exist")
    if not (root / MANIFEST_FILE).is_file():
        raise ArtifactError(f"model directory {root} has no {MANIFEST_FILE}: not a model artifact")
    try:
        data = json.loads((root / MANIFEST_FILE).read_text())
        recorded_format = data["format"]
        listed = data["files"]
        claimed = data.get("content_hash")
        if not isinstance(listed, dict):
            raise TypeError(f"files is a {type(listed).__name__}")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ArtifactError(f"{root / MANIFEST_FILE} is unreadable: {exc!r}") from exc
    if recorded_format != format_name:
        raise ArtifactError(f"{root / MANIFEST_FILE}: format {recorded_format!r}, expected "
                            f"{format_name!r}")  # fmt: skip
    if not listed:
        raise ArtifactError(f"{root / MANIFEST_FILE} lists no file: refusing the model")
    files: dict[str, str] = {}
    for name, recorded in listed.items():
        path = check_name(root, name)
        if not path.is_file():
            raise ArtifactError(f"{path} is listed in {MANIFEST_FILE} but missing")
        actual = sha256_file(path)
        if actual != recorded:
            raise ArtifactError(
                f"{path} does not match {MANIFEST_FILE} (sha256 {actual[:12]}... != recorded "
                f"{str(recorded)[:12]}...): the artifact was modified or corrupted; refusing it"
            )
        files[name] = actual
    manifest = Manifest(root, format_name, files, "")
    for name in FORMATS[format_name][0]:
        manifest.path(name)  # every model of the format is made of these, at least
    computed = content_hash(format_name, files)
    if claimed is not None and claimed != computed:
        raise ArtifactError(f"{root / MANIFEST_FILE}: content_hash {str(claimed)[:12]}... does "
                            f"not match its files ({computed[:12]}...): refusing it")  # fmt: skip
    return Manifest(root, format_name, files, computed)
