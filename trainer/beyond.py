"""Issue 7's evaluation harness: one fixed split that every model is measured on.

Hold out 20% of each class first (stratified, seed 0: for the paper's seven classes this is the
held-out test set of ``dmdt-train fit --seed 0`` and of models/paper-cnn), then 5 stratified folds
(seed 0) on the rest. The fold of every source id is saved (``folds_<set>.json``) so later models
reuse exactly the same parts. Each model is scored on the 5 folds (train on 4) and on the held-out
part (train on all 5); each part is saved as it finishes, so a run resumes.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from dmdt.lightcurves import LightCurve
from trainer import data
from trainer.evaluate import classification_metrics

HELD_OUT = -1
N_FOLDS = 5
PARTS = (*(f"fold{i}" for i in range(N_FOLDS)), "held_out")
CLASS_SETS = {"7": data.PAPER_CLASSES, "16": None}  # None: every CRTS type

# fit on (train indices, their labels), return class probabilities (n_test, n_classes) of the test
# indices (or predicted class indices, for models without probabilities)
FitPredict = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Budget:
    """Model sizes; ``quick`` is for tests and smoke runs, ``full`` is what docs/beyond.md shows."""

    name: str = "full"
    per_class: int | None = None
    gbm_trees: int = 600
    rf_trees: int = 500
    cnn_epochs: int = 500
    cnn_patience: int = 30


FULL = Budget()
QUICK = Budget(name="quick", per_class=12, gbm_trees=20, rf_trees=10, cnn_epochs=2, cnn_patience=0)


def fold_ids(labels: np.ndarray, seed: int = 0, held_out_frac: float = 0.2) -> np.ndarray:
    """Per curve: -1 for the held-out part, else its fold 0..4 (stratified, seeded)."""
    rest, _ = data.stratified_split(labels, held_out_frac, seed)
    folds = np.full(labels.size, HELD_OUT, dtype=np.int64)
    skf = StratifiedKFold(n_splits=N_FOLDS, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # LADS has 2 curves left after the hold-out: it cannot be in all 5 folds
        warnings.filterwarnings("ignore", message="The least populated class")
        for i, (_, test) in enumerate(skf.split(np.zeros(rest.size), labels[rest])):
            folds[rest[test]] = i
    return folds


def part_indices(folds: np.ndarray, part: str) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of ``part``: ``fold<i>`` (train on the other folds) or
    ``held_out`` (train on all folds)."""
    if part == "held_out":
        return np.flatnonzero(folds != HELD_OUT), np.flatnonzero(folds == HELD_OUT)
    i = int(part.removeprefix("fold"))
    return np.flatnonzero((folds != HELD_OUT) & (folds != i)), np.flatnonzero(folds == i)


class Dataset:
    """The cleaned CRTS curves of one class set, their labels and saved fold ids."""

    def __init__(self, class_set: str, budget: Budget, folder: Path) -> None:
        self.class_set = class_set
        lcs = data.load("crts", classes=CLASS_SETS[class_set])
        if budget.per_class is not None:
            from trainer.experiments.common import cap_per_class

            lcs = cap_per_class(lcs, budget.per_class)
        self.lcs: list[LightCurve] = lcs
        self.classes = data.class_names(lcs, CLASS_SETS[class_set])
        index = {c: i for i, c in enumerate(self.classes)}
        self.labels = np.array([index[str(lc.label)] for lc in lcs], dtype=np.int64)
        self.data_hash = data.data_hash(lcs)
        self.folds = self._folds(folder / f"folds_{class_set}.json")

    def _folds(self, path: Path) -> np.ndarray:
        """Read the saved fold ids if they are for this data, else compute and save them."""
        ids = [lc.source_id for lc in self.lcs]
        if path.exists():
            doc = json.loads(path.read_text())
            if doc.get("data_hash") == self.data_hash:
                return np.array([doc["fold"][i] for i in ids], dtype=np.int64)
        folds = fold_ids(self.labels)
        doc = {
            "description": "fold of each CRTS source id: -1 held out (20% per class, stratified, "
            "seed 0, trainer.data.stratified_split), 0..4 the 5 stratified folds (sklearn "
            "StratifiedKFold shuffle, seed 0) of the rest",
            "classes": list(self.classes),
            "data_hash": self.data_hash,
            "n": len(ids),
            "fold": dict(zip(ids, folds.tolist(), strict=True)),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=0) + "\n")
        return folds


def run_model(
    name: str,
    ds: Dataset,
    fit_predict: FitPredict,
    folder: Path,
    meta: dict[str, Any],
    parts: Sequence[str] = PARTS,
) -> dict[str, Any]:
    """Score ``fit_predict`` on each part not yet in ``<folder>/<name>.json``; save after each."""
    path = folder / f"{name}.json"
    doc: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    key = {k: meta.get(k) for k in ("budget", "features_id", "outputs")}
    key["data_hash"] = ds.data_hash
    if any(doc.get(k) != v for k, v in key.items()):
        doc = {}
    doc.update({**meta, **key, "model": name, "class_set": ds.class_set})
    doc["classes"] = list(ds.classes)
    doc.setdefault("parts", {})
    for part in parts:
        if part in doc["parts"]:
            continue
        train, test = part_indices(ds.folds, part)
        t0 = time.perf_counter()
        out = np.asarray(fit_predict(train, ds.labels[train], test))
        pred = out.argmax(axis=1) if out.ndim == 2 else out
        if out.ndim == 2:
            save_probs(folder / "probs" / f"{name}.npz", ds, part, test, out)
        result = classification_metrics(ds.labels[test], pred, ds.classes)
        result["wall_seconds"] = round(time.perf_counter() - t0, 1)
        result["pred"] = pred.tolist()
        doc["parts"][part] = result
        _write(path, doc)
        print(
            f"  {name}/{part}: accuracy {result['accuracy']:.3f} macro-F1 "
            f"{result['macro_f1']:.3f} ({result['wall_seconds']} s)",
            flush=True,
        )
    doc["summary"] = summarise(doc)
    _write(path, doc)
    return doc


def save_probs(path: Path, ds: Dataset, part: str, test: np.ndarray, probs: np.ndarray) -> None:
    """Add (or replace) one part's class probabilities in ``path`` (npz: ids, labels, classes,
    probs float16, part), for calibration and stacking."""
    cols: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as z:
            keep = z["part"] != part
            cols = {k: z[k][keep] for k in ("ids", "labels", "probs", "part")}
    new = {
        "ids": np.array([ds.lcs[i].source_id for i in test]),
        "labels": np.array([ds.classes[k] for k in ds.labels[test]]),
        "probs": probs.astype(np.float16),
        "part": np.array([part] * test.size),
    }
    merged = {k: np.concatenate([cols[k], v]) if cols else v for k, v in new.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp, classes=np.array(ds.classes), ids=merged["ids"], labels=merged["labels"],
        probs=merged["probs"], part=merged["part"],
    )  # fmt: skip
    tmp.replace(path)


def load_probs(path: Path, ds: Dataset) -> np.ndarray:
    """Per curve of ``ds`` its saved probability (out-of-fold for fold curves, from the model
    trained on all folds for held-out curves), float64 ``(n, n_classes)``."""
    with np.load(path) as z:
        row = {i: k for k, i in enumerate(z["ids"].tolist())}
        missing = [lc.source_id for lc in ds.lcs if lc.source_id not in row]
        if missing:
            raise ValueError(f"{path}: no probabilities for {len(missing)} curves")
        return z["probs"][[row[lc.source_id] for lc in ds.lcs]].astype(np.float64)


def _write(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)


def summarise(doc: dict[str, Any]) -> dict[str, Any]:
    """Mean and std over the folds present, the held-out scores, pooled out-of-fold confusion."""
    parts = doc["parts"]
    folds = [parts[p] for p in PARTS[:N_FOLDS] if p in parts]
    out: dict[str, Any] = {"n_folds": len(folds)}

    def value(r: dict[str, Any], key: str, cls: str | None) -> float | None:
        return r[key] if cls is None else r["per_class_recall"].get(cls)

    def stats(key: str, cls: str | None = None) -> dict[str, float | None]:
        vals = [v for v in (value(r, key, cls) for r in folds) if v is not None]
        held = parts.get("held_out")
        return {
            "mean": float(np.mean(vals)) if vals else None,
            "std": float(np.std(vals)) if vals else None,
            "held_out": value(held, key, cls) if held else None,
        }

    out["accuracy"] = stats("accuracy")
    out["macro_f1"] = stats("macro_f1")
    out["per_class_recall"] = {c: stats("recall", c) for c in doc["classes"]}
    if folds:
        out["oof_confusion_matrix"] = np.sum(
            [r["confusion_matrix"] for r in folds], axis=0
        ).tolist()
    return out


def cached_features(
    ds: Dataset,
    name: str,
    compute: Callable[[Sequence[LightCurve]], np.ndarray],
    cache: Path,
) -> tuple[np.ndarray, float]:
    """Features of ``ds.lcs``, cached (:func:`cached_matrix`)."""
    return cached_matrix(ds.lcs, ds.data_hash, name, compute, cache)


def cached_matrix(
    lcs: Sequence[LightCurve],
    data_hash: str,
    name: str,
    compute: Callable[[Sequence[LightCurve]], np.ndarray],
    cache: Path | None,
) -> tuple[np.ndarray, float]:
    """``compute(lcs)`` from ``<cache>/<name>-<hash>.npz`` (the hash of ``name`` and the curves'
    ``data_hash``) or computed and saved there (not saved without ``cache``); also the compute
    cost in ms per light curve (as measured when computed, after a warm-up)."""
    path = None
    if cache is not None:
        digest = hashlib.sha256(f"{name}\0{data_hash}".encode()).hexdigest()[:16]
        path = cache / f"{name}-{digest}.npz"
        if path.exists():
            z = np.load(path)
            return z["x"], float(z["ms_per_curve"])
    compute(lcs[:2])  # warm-up (numba compilation) outside the timing
    t0 = time.perf_counter()
    x = compute(lcs)
    ms = (time.perf_counter() - t0) * 1e3 / max(len(lcs), 1)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, x=x, ms_per_curve=ms, ids=[lc.source_id for lc in lcs])
    return x, ms


def markdown_path(out: Path, root: Path, name: str) -> Path:
    """Where a report script (scripts/beyond_paper.py, beyond_ceiling.py, calibration_report.py,
    history_accuracy.py) writes its markdown: ``<root>/docs/<name>.md`` when ``out`` is the
    committed results folder ``<root>/docs/<name>``, else ``<out>/<name>.md``, so that a run into
    another folder never rewrites the committed page."""
    docs = root / "docs"
    return docs / f"{name}.md" if out.resolve() == (docs / name).resolve() else out / f"{name}.md"


def budget_dict(b: Budget) -> dict[str, Any]:
    """JSON-ready budget."""
    return asdict(b)
