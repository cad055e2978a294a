"""Classify light curves from files with a saved model: per-source class and probabilities."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from dmdt.datasets import BUNDLED, load_labelled, read_compact
from dmdt.lightcurves import (
    LightCurve,
    LightCurveFormatError,
    clean,
    read_catalina,
    read_crts_csv,
    split_name,
)
from dmdt.model import Model, Predictions, classify_lightcurves

CHUNK = 256  # curves per classify call: the progress bar moves, results are unchanged
# What a light-curve file that cannot be read raises (the path is added to the message).
UNREADABLE = (ValueError, OSError, zipfile.BadZipFile)
SKIP_BAD_HINT = "--skip-bad skips unreadable files and reports them"


@dataclass(frozen=True)
class SkippedFile:
    """A file left out of a folder's light curves, and why."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _read_file(path: Path) -> list[LightCurve]:
    if path.suffix == ".npz":
        return read_compact(path)
    try:
        with path.open(newline="") as fh:
            header = fh.readline().lower()
    except UnicodeDecodeError as exc:
        raise LightCurveFormatError(path, None, f"not a UTF-8 text file ({exc.reason})") from exc
    if "masterid" in header:
        return read_catalina(path)
    return [read_crts_csv(path)]


def read_input(
    source: str | Path, *, skipped: list[SkippedFile] | None = None, progress: bool = False
) -> list[LightCurve]:
    """Raw light curves of a file (CRTS ``.csv``, Catalina ``.csv``, ``.npz``), a folder of such
    files, or a bundled dataset name; labels come along where the files carry them.

    An unreadable file of a folder raises ValueError naming it, unless ``skipped`` is a list:
    then it is left out and recorded there.
    """
    if str(source).lower() in BUNDLED:
        return load_labelled(str(source), clean=False)
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".csv", ".npz"))
        if not files:
            raise FileNotFoundError(f"{path} holds no .csv or .npz light-curve file")
        out: list[LightCurve] = []
        for f in tqdm(files, desc="read", unit="file", disable=not progress):
            try:
                out += _read_file(f)
            except UNREADABLE as exc:
                if skipped is None:
                    raise ValueError(f"{_reason(f, exc)} ({SKIP_BAD_HINT})") from exc
                skipped.append(SkippedFile(f, _reason(f, exc, with_path=False)))
        return out
    if path.is_file():
        return _read_file(path)
    raise FileNotFoundError(f"{source}: no such file or folder")


def _reason(path: Path, exc: BaseException, with_path: bool = True) -> str:
    """Why a file could not be read, naming it once."""
    text = str(exc) or type(exc).__name__
    if text.startswith(str(path)):
        text = text[len(str(path)) :].lstrip(":, ")
    return f"{path}: {text}" if with_path else text


def classify(
    clf: Model, lcs: Sequence[LightCurve], progress: bool = False, chunk: int = CHUNK
) -> Predictions:
    """`dmdt.model.classify_lightcurves` in chunks, with a progress bar: the same probabilities
    (on CPU the nets see fixed-size chunks whatever the batch: bit-identical, dmdt/inference.py)."""
    parts = []
    with tqdm(total=len(lcs), desc="classify", unit="lc", disable=not progress) as bar:
        for start in range(0, len(lcs), chunk):
            part = lcs[start : start + chunk]
            parts.append(classify_lightcurves(clf, part).probabilities)
            bar.update(len(part))
    probs = np.concatenate(parts) if parts else np.zeros((0, len(clf.classes)), np.float32)
    return Predictions(tuple(lc.source_id for lc in lcs), tuple(clf.classes), probs)


def skipped_records(skipped: Sequence[SkippedFile]) -> list[dict[str, Any]]:
    """Output rows for the files left out, so that the output accounts for every file."""
    return [
        {"source_id": split_name(s.path.stem)[0], "label": split_name(s.path.stem)[1],
         "n_points": 0, "predicted": None, "skipped": f"unreadable file: {s.reason}"}
        for s in skipped
    ]  # fmt: skip


def predict(
    clf: Model,
    lcs: Sequence[LightCurve],
    min_points: int | None = None,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """One record per input light curve: the class and probabilities, or why it was skipped.

    Curves are cleaned exactly as in training (the model's recorded ``min_points``).
    """
    if min_points is None:
        min_points = clf.min_points
    records: list[dict[str, Any]] = []
    kept: list[tuple[int, LightCurve]] = []
    for lc in lcs:
        cleaned, report = clean(lc, min_points=min_points)
        rec: dict[str, Any] = {
            "source_id": lc.source_id,
            "label": lc.label,
            "n_points": report.n_out,
        }
        records.append(rec)
        if cleaned is None:
            rec.update(predicted=None, skipped=report.reason)
        else:
            kept.append((len(records) - 1, cleaned))
    if kept:
        preds = classify(clf, [lc for _, lc in kept], progress)
        for (i, _), label, row in zip(kept, preds.labels, preds.probabilities, strict=True):
            records[i].update(
                predicted=label,
                probability=float(row.max()),
                probabilities={c: float(p) for c, p in zip(clf.classes, row, strict=True)},
            )
    return records


def to_csv(records: Sequence[dict[str, Any]], classes: Sequence[str]) -> str:
    """Records as CSV: id, label, n_points, predicted, probability, skipped, p_<class>..."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        [
            "source_id",
            "label",
            "n_points",
            "predicted",
            "probability",
            "skipped",
            *(f"p_{c}" for c in classes),
        ]
    )
    for r in records:
        probs = r.get("probabilities") or {}
        writer.writerow([
            r["source_id"], r["label"] or "", r["n_points"], r["predicted"] or "",
            f"{r['probability']:.6f}" if "probability" in r else "", r.get("skipped") or "",
            *(f"{probs[c]:.6f}" if c in probs else "" for c in classes),
        ])  # fmt: skip
    return buf.getvalue()


def write(records: Sequence[dict[str, Any]], classes: Sequence[str], out: str | Path) -> None:
    """Write records as JSON (``.json``) or CSV (anything else)."""
    path = Path(out)
    if path.suffix == ".json":
        path.write_text(json.dumps(list(records), indent=1) + "\n")
    else:
        path.write_text(to_csv(records, classes))
