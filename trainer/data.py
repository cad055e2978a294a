"""Labelled light curves for training: loading, class selection, the data hash, splits, images."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dmdt.datasets import load_labelled
from dmdt.engine import normalize
from dmdt.grids import Grid
from dmdt.lightcurves import CleanReport, LightCurve, LightCurveFormatError
from dmdt.model import lightcurve_counts

# The paper's seven classes (Mahabal et al. 2017: EW=1, EA=2, RRab=4, RRc=5, RRd=6, RS_CVn=8,
# LPV=13), in the order of its class numbers.
PAPER_CLASSES = ("EW", "EA", "RRab", "RRc", "RRd", "RS_CVn", "LPV")
# a paper class -> its EROS-1 class (transfer, multi-band); RS_CVn has no EROS-1 counterpart and
# keeps its name, EROS-1's Cepheid has no CRTS one
CRTS_TO_EROS = {
    "EW": "EB",
    "EA": "EB",
    "RRab": "RRLyrae",
    "RRc": "RRLyrae",
    "RRd": "RRLyrae",
    "LPV": "Mira",
    "RS_CVn": "RS_CVn",
}


def parse_classes(text: str | None) -> tuple[str, ...] | None:
    """``"EW,EA"`` -> ``("EW", "EA")``; ``paper`` -> the paper's seven; ``all``, None or "" ->
    None (every class)."""
    if not text or text.strip().lower() == "all":
        return None
    if text.strip().lower() == "paper":
        return PAPER_CLASSES
    names = tuple(c.strip() for c in text.split(",") if c.strip())
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate class in {text!r}")
    return names


DATASET_RULE = (
    "a labelled dataset is a folder of <id>-<class>.csv files (columns "
    '"ID","MJD","mag","magerr","RA","Dec"), a compact .npz, or crts'
)


def load(
    source: str,
    classes: Sequence[str] | None = None,
    min_points: int = 20,
    *,
    bad_files: list[LightCurveFormatError] | None = None,
    progress: bool = False,
) -> list[LightCurve]:
    """Cleaned labelled light curves of ``source`` (folder, .npz or ``crts``), sorted by id.

    Raises ValueError when there is nothing to use: no light curve at all, or none with
    ``min_points`` points after cleaning. Unreadable CSV files raise, or are collected in
    ``bad_files`` when it is a list.
    """
    reports: list[CleanReport] = []
    try:
        lcs = load_labelled(
            source, classes=classes, clean=True, min_points=min_points, progress=progress,
            bad_files=bad_files, reports=reports,
        )  # fmt: skip
    except LightCurveFormatError as exc:
        raise ValueError(f"{exc} (--skip-bad skips unreadable files and reports them)") from exc
    if not reports:
        skipped = f" ({len(bad_files)} unreadable files skipped)" if bad_files else ""
        raise ValueError(f"{source}: no light curve to read{skipped}: {DATASET_RULE}")
    if not lcs:
        raise ValueError(
            f"{source}: none of its {len(reports)} light curves has {min_points} points after "
            "cleaning (--min-points)"
        )
    return sorted(lcs, key=lambda lc: (lc.source_id, lc.label or ""))


def class_names(lcs: Sequence[LightCurve], requested: Sequence[str] | None) -> tuple[str, ...]:
    """The classes to train on: as requested (all present), else the sorted labels found."""
    found = {lc.label for lc in lcs if lc.label is not None}
    if requested is None:
        return tuple(sorted(found))
    missing = [c for c in requested if c not in found]
    if missing:
        raise ValueError(f"no light curves of class {', '.join(missing)} (found {sorted(found)})")
    return tuple(requested)


def data_hash(lcs: Sequence[LightCurve]) -> str:
    """sha256 over ids, labels and (t, m, err) of the curves, in (id, label) order."""
    digest = hashlib.sha256()
    for lc in sorted(lcs, key=lambda lc: (lc.source_id, lc.label or "")):
        digest.update(f"{lc.source_id}\0{lc.label}\0{len(lc.t)}\0".encode())
        for arr in (lc.t, lc.m, lc.err):
            digest.update(np.ascontiguousarray(arr, dtype=np.float64).tobytes())
    return digest.hexdigest()


def stratified_split(
    labels: Sequence[str] | np.ndarray, frac: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(rest, held_out)``: ``frac`` of each class held out (at least one if it has 2+)."""
    if not 0.0 <= frac < 1.0:
        raise ValueError(f"split fraction must be in [0, 1), got {frac}")
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for label in sorted(set(y.tolist())):
        idx = rng.permutation(np.flatnonzero(y == label))
        k = round(frac * idx.size)
        if frac > 0 and k == 0 and idx.size >= 2:
            k = 1
        held.append(idx[:k])
    held_out = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    rest = np.setdiff1d(np.arange(y.size), held_out)
    return rest, held_out


def images(lcs: Sequence[LightCurve], grid: Grid) -> np.ndarray:
    """The paper's uint8 dmdt images ``(n, n_dt, n_dm)`` (the same path as inference)."""
    counts, n_points = lightcurve_counts(lcs, grid)
    return normalize(counts, n_points)


def save_images(
    lcs: Sequence[LightCurve],
    grid: Grid,
    path: str | Path,
    source: str = "",
    progress: bool = True,
    chunk: int = 256,
) -> Path:
    """Write the dmdt counts and images of ``lcs`` to an ``.npz``, with a progress bar.

    Members: ``ids`` (``<id>-<class>``, the CSV file names without ``.csv``), ``source_id``,
    ``label``, ``dt_edges``, ``dm_edges``, ``counts`` int32 (n, n_dt, n_dm), ``images`` uint8
    (n, n_dt, n_dm), ``n_points``, ``grid`` (JSON of :meth:`Grid.to_dict`), ``data_hash`` and
    ``source``.
    """
    counts = np.zeros((len(lcs), *grid.shape), dtype=np.int32)
    with tqdm(total=len(lcs), desc="dmdt", unit="lc", disable=not progress) as bar:
        for start in range(0, len(lcs), chunk):
            part = lcs[start : start + chunk]
            counts[start : start + len(part)] = lightcurve_counts(part, grid)[0]
            bar.update(len(part))
    n_points = np.array([len(lc.t) for lc in lcs], dtype=np.int64)
    path = Path(path)
    np.savez_compressed(
        path,
        ids=np.array([f"{lc.source_id}-{lc.label}" if lc.label else lc.source_id for lc in lcs]),
        source_id=np.array([lc.source_id for lc in lcs], dtype=str),
        label=np.array([lc.label or "" for lc in lcs], dtype=str),
        dt_edges=grid.dt_edges,
        dm_edges=grid.dm_edges,
        counts=counts,
        images=normalize(counts, n_points),
        n_points=n_points,
        grid=np.array(json.dumps(grid.to_dict())),
        data_hash=np.array(data_hash(lcs)),
        source=np.array(str(source)),
    )
    return path
