"""Classify light curves from files with a saved model: per-source class and probabilities."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dmdt.classify import Classifier
from dmdt.datasets import BUNDLED, load_labelled, read_compact
from dmdt.lightcurves import LightCurve, clean, read_catalina, read_crts_csv


def _read_file(path: Path) -> list[LightCurve]:
    if path.suffix == ".npz":
        return read_compact(path)
    with path.open(newline="") as fh:
        header = fh.readline().lower()
    if "masterid" in header:
        return read_catalina(path)
    return [read_crts_csv(path)]


def read_input(source: str | Path) -> list[LightCurve]:
    """Raw light curves of a file (CRTS ``.csv``, Catalina ``.csv``, ``.npz``), a folder of such
    files, or a bundled dataset name; labels come along where the files carry them."""
    if str(source).lower() in BUNDLED:
        return load_labelled(str(source), clean=False)
    path = Path(source)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in (".csv", ".npz"))
        if not files:
            raise FileNotFoundError(f"{path} holds no .csv or .npz light-curve file")
        return [lc for f in files for lc in _read_file(f)]
    if path.is_file():
        return _read_file(path)
    raise FileNotFoundError(f"{source}: no such file or folder")


def load_predictor(model: str | Path, device: str = "cpu") -> Any:
    """A saved model of either kind behind ``classes``, ``classify_lightcurves(lcs)`` and
    ``model.min_points``: a dmdt CNN (`Classifier`) or a hybrid (`HybridPredictor`)."""
    from dmdt.artifact import resolve_model_dir
    from dmdt.hybrid import is_hybrid_model

    path = resolve_model_dir(model)
    if is_hybrid_model(path):
        from trainer.hybrid_fit import HybridPredictor

        return HybridPredictor.load(path)
    return Classifier.from_checkpoint(path, device=device)


def predict(
    clf: Classifier, lcs: Sequence[LightCurve], min_points: int | None = None
) -> list[dict[str, Any]]:
    """One record per input light curve: the class and probabilities, or why it was skipped.

    Curves are cleaned exactly as in training (the model's recorded ``min_points``).
    """
    if min_points is None:
        min_points = clf.model.min_points
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
        preds = clf.classify_lightcurves([lc for _, lc in kept])
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
