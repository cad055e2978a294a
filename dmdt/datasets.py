"""Labelled datasets: a folder of ``<id>-<class>.csv`` files, a compact ``.npz``, or bundled data.

The bundled files live in the repository's ``data/`` folder (override with ``DMDT_DATA_DIR``):
``crts`` (5,757 CRTS light curves, Drake et al. 2014 labels) and ``eros1`` (3,641 EROS-1 objects,
bands B and R; ``eros1-b`` / ``eros1-r`` for one band).

The compact format (``dmdt-lightcurves/1``) is an ``.npz`` (zip, LZMA-compressed members) of
concatenated columns plus ``offsets``. A column whose values are all short decimals is stored
as a dictionary of scaled integers (``<col>_table`` cumulative-summed, indexed by
``<col>_index``, divided by ``10**<col>_scale``); the writer checks that this gives back every
float64 bit for bit, and otherwise stores the column as plain float64.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dmdt.lightcurves import (
    CleanReport,
    CleanSummary,
    LightCurve,
    LightCurveFormatError,
    read_crts_csv,
    read_eros1,
    split_name,
    write_crts_csv,
)
from dmdt.lightcurves import clean as clean_light_curve

log = logging.getLogger(__name__)

DATA_ENV = "DMDT_DATA_DIR"
COMPACT_FORMAT = "dmdt-lightcurves/1"
BUNDLED = {"crts": "crts/crts_drake2014.npz", "eros1": "eros1/eros1.npz"}
_EROS_BANDS = {"eros1": ("B", "R"), "eros1-b": ("B",), "eros1-r": ("R",)}
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed member times: rebuilding gives the same bytes


def data_dir() -> Path:
    """The bundled data folder: ``$DMDT_DATA_DIR`` or the repository's ``data/``."""
    env = os.environ.get(DATA_ENV)
    return Path(env) if env else Path(__file__).resolve().parents[1] / "data"


def bundled_path(name: str) -> Path:
    """Path of a bundled dataset by name (``crts``, ``eros1``)."""
    key = name.lower()
    key = "eros1" if key in _EROS_BANDS else key
    if key not in BUNDLED:
        raise ValueError(f"unknown bundled dataset {name!r}; known: {sorted(BUNDLED)}")
    path = data_dir() / BUNDLED[key]
    if not path.is_file():
        raise FileNotFoundError(f"bundled dataset {name!r} not found at {path} (see ${DATA_ENV})")
    return path


# ------------------------------------------------------------------------------ CSV folders


def iter_folder(
    folder: str | Path,
    classes: Iterable[str] | None = None,
    progress: bool = False,
    bad_files: list[LightCurveFormatError] | None = None,
) -> Iterator[LightCurve]:
    """Read ``<id>-<class>.csv`` files one at a time, in name order, with a tqdm bar if asked.

    A bad file raises :class:`LightCurveFormatError`; pass a list as ``bad_files`` to skip bad
    files instead and collect their errors (so ``len(bad_files)`` counts them).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder of <id>-<class>.csv files")
    wanted = None if classes is None else set(classes)
    paths = sorted(folder.glob("*.csv"))
    if wanted is not None:
        paths = [p for p in paths if split_name(p.stem)[1] in wanted]
    for path in tqdm(paths, desc=folder.name, unit="lc", disable=not progress):
        try:
            yield read_crts_csv(path)
        except LightCurveFormatError as exc:
            if bad_files is None:
                raise
            bad_files.append(exc)


def export_csv(lcs: Iterable[LightCurve], folder: str | Path) -> list[Path]:
    """Write each light curve as ``<folder>/<id>-<class>.csv`` (the folder is created)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written: set[Path] = set()
    for lc in lcs:
        path = write_crts_csv(lc, folder)
        if path in written:
            raise ValueError(f"two light curves map to {path.name}: select one band first")
        written.add(path)
    return sorted(written)


# ------------------------------------------------------------------------------ compact npz


def _decimal_scale(x: np.ndarray) -> int | None:
    """Smallest s such that the integers round(x * 10**s) / 10**s give x back exactly."""
    if x.size == 0 or not np.all(np.isfinite(x)):
        return None
    for s in range(18):
        p = 10.0**s
        k = np.rint(x * p)
        if np.abs(k).max() >= 2.0**62:
            return None
        if np.array_equal(k / p, x):
            return s
    return None


def _encode(name: str, x: np.ndarray) -> dict[str, np.ndarray]:
    scale = _decimal_scale(x)
    if scale is None:
        return {name: x}
    k = np.rint(x * 10.0**scale).astype(np.int64)
    table, index = np.unique(k, return_inverse=True)
    itype = np.uint16 if table.size <= 2**16 else np.uint32
    return {
        f"{name}_scale": np.array(scale),
        f"{name}_table": np.diff(table, prepend=0),
        f"{name}_index": index.astype(itype),
    }


def _decode(z: np.lib.npyio.NpzFile, name: str) -> np.ndarray:
    if name in z:
        return np.asarray(z[name], dtype=np.float64)
    k = np.cumsum(z[f"{name}_table"])[z[f"{name}_index"]]
    return k.astype(np.float64) / 10.0 ** int(z[f"{name}_scale"])


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """An ``.npz`` whose members are LZMA-compressed (``np.load`` reads it as usual)."""
    path = Path(path)
    with zipfile.ZipFile(path, "w") as zf:
        for name, arr in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_LZMA
            with zf.open(info, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(arr), allow_pickle=False)
    return path


def save_compact(lcs: Sequence[LightCurve], path: str | Path) -> Path:
    """Write light curves to one compact ``.npz`` (format ``dmdt-lightcurves/1``)."""
    sizes = np.array([len(lc) for lc in lcs], dtype=np.int64)
    arrays: dict[str, np.ndarray] = {
        "format": np.array(COMPACT_FORMAT),
        "offsets": np.concatenate([[0], np.cumsum(sizes)]),
        "source_id": np.array([lc.source_id for lc in lcs], dtype=str),
        "label": np.array(["" if lc.label is None else lc.label for lc in lcs], dtype=str),
        "band": np.array(["" if lc.band is None else lc.band for lc in lcs], dtype=str),
        "ra": np.array([np.nan if lc.ra is None else lc.ra for lc in lcs], dtype=np.float64),
        "dec": np.array([np.nan if lc.dec is None else lc.dec for lc in lcs], dtype=np.float64),
    }
    for name in ("t", "m", "err"):
        column = np.concatenate([getattr(lc, name) for lc in lcs]) if lcs else np.zeros(0)
        arrays.update(_encode(name, column))
    return write_npz(path, arrays)


def read_compact(path: str | Path, classes: Iterable[str] | None = None) -> list[LightCurve]:
    """Light curves of a compact ``.npz`` (optionally only those whose label is in classes)."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        fmt = str(z["format"]) if "format" in z else "?"
        if fmt != COMPACT_FORMAT:
            raise LightCurveFormatError(path, None, f"format {fmt!r}, expected {COMPACT_FORMAT!r}")
        labels = z["label"].tolist()
        wanted = None if classes is None else set(classes)
        pick = [i for i, lab in enumerate(labels) if wanted is None or lab in wanted]
        off = z["offsets"]
        t, m, err = (_decode(z, name) for name in ("t", "m", "err"))
        ids, bands = z["source_id"].tolist(), z["band"].tolist()
        ra, dec = z["ra"].tolist(), z["dec"].tolist()
    return [
        LightCurve(
            ids[i],
            t[off[i] : off[i + 1]],
            m[off[i] : off[i + 1]],
            err[off[i] : off[i + 1]],
            label=labels[i] or None,
            band=bands[i] or None,
            ra=None if np.isnan(ra[i]) else ra[i],
            dec=None if np.isnan(dec[i]) else dec[i],
        )
        for i in pick
    ]


# ---------------------------------------------------------------------------------- loading


def load_labelled(
    source: str | Path,
    classes: Iterable[str] | None = None,
    clean: bool = True,
    min_points: int = 20,
    progress: bool = False,
    *,
    bad_files: list[LightCurveFormatError] | None = None,
    reports: list[CleanReport] | None = None,
) -> list[LightCurve]:
    """Labelled light curves from a folder of ``<id>-<class>.csv``, an ``.npz``, or a bundled name.

    With ``clean`` (the default) each light curve goes through :func:`dmdt.lightcurves.clean`
    and those shorter than ``min_points`` are left out; pass a list as ``reports`` to receive
    every :class:`CleanReport`, and one as ``bad_files`` to skip unreadable CSV files.
    """
    wanted = None if classes is None else list(classes)
    name = str(source).lower()
    min_time: float | None = 40_000.0
    if name in _EROS_BANDS:
        lcs = read_eros1(bundled_path(name), bands=_EROS_BANDS[name])
        lcs = [lc for lc in lcs if wanted is None or lc.label in wanted]
        min_time = None  # EROS-1 times are days since the EROS epoch, not MJD
    elif name in BUNDLED:
        lcs = read_compact(bundled_path(name), wanted)
    elif Path(source).is_dir():
        lcs = list(iter_folder(source, wanted, progress, bad_files))
    elif Path(source).suffix == ".npz":
        lcs = _read_any_npz(Path(source), wanted)
        min_time = None if lcs and _is_eros(Path(source)) else min_time
    else:
        raise FileNotFoundError(
            f"{source}: not a folder of <id>-<class>.csv files, an .npz file, "
            f"or a bundled dataset ({', '.join(sorted({*BUNDLED, *_EROS_BANDS}))})"
        )
    if wanted is not None:
        found = {lc.label for lc in lcs}
        missing = [c for c in wanted if c not in found]
        if missing:
            raise ValueError(f"{source}: no light curves of class(es) {missing}")
    if not clean:
        return lcs
    kept, collected = [], []
    for lc in tqdm(lcs, desc="clean", unit="lc", disable=not progress):
        cleaned, report = clean_light_curve(lc, min_points, min_time)
        collected.append(report)
        if cleaned is not None:
            kept.append(cleaned)
    log.info("%s: %s", source, CleanSummary.of(collected))
    if reports is not None:
        reports.extend(collected)
    return kept


def _is_eros(path: Path) -> bool:
    with np.load(path, allow_pickle=False) as z:
        return "format" in z and str(z["format"]) == "dmdt-eros1/1"


def _read_any_npz(path: Path, wanted: list[str] | None) -> list[LightCurve]:
    if _is_eros(path):
        return [lc for lc in read_eros1(path) if wanted is None or lc.label in wanted]
    return read_compact(path, wanted)
