"""Every candidate measured on the fixed split (trainer/split.py): each model is scored on the 5
folds (trained on the other 4) and on the held-out part (trained on all 5).

The fold of every source id is saved (``folds_<set>.json``) so later models reuse exactly the same
parts; each part's scores are saved to ``<model>.json`` as it finishes (and its class
probabilities per curve to ``probs/<model>.npz``), so a run resumes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dmdt.lightcurves import LightCurve
from research.cache import write_json
from trainer import data
from trainer.evaluate import classification_metrics
from trainer.feature_cache import cached_matrix
from trainer.split import N_FOLDS, PARTS, fold_ids, part_indices

CLASS_SETS = {"7": data.PAPER_CLASSES, "16": None}  # None: every CRTS type

# fit on (train indices, their labels), return class probabilities (n_test, n_classes) of the test
# indices
FitPredict = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Budget:
    """Model sizes; ``quick`` is for tests and smoke runs, ``full`` is what the committed results
    used."""

    name: str = "full"
    per_class: int | None = None
    gbm_trees: int = 600
    rf_trees: int = 500
    cnn_epochs: int = 500
    cnn_patience: int = 30


FULL = Budget()
QUICK = Budget(name="quick", per_class=12, gbm_trees=20, rf_trees=10, cnn_epochs=2, cnn_patience=0)


class Dataset:
    """The cleaned CRTS curves of one class set, their labels and saved fold ids."""

    def __init__(self, class_set: str, budget: Budget, folder: Path) -> None:
        self.class_set = class_set
        lcs = data.load("crts", classes=CLASS_SETS[class_set])
        if budget.per_class is not None:
            from research.paper.common import cap_per_class

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
        path.write_text(json.dumps(doc, separators=(",", ":")) + "\n")  # one line: 5,000+ ids
        return folds


def run_model(
    name: str,
    ds: Dataset,
    fit_predict: FitPredict,
    folder: Path,
    meta: dict[str, Any],
    parts: Sequence[str] = PARTS,
) -> dict[str, Any]:
    """Score ``fit_predict`` on each part not yet in ``<folder>/<name>.json``; save after each (its
    scores there, its probabilities and predicted classes per curve in ``probs/<name>.npz``)."""
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
        probs = np.asarray(fit_predict(train, ds.labels[train], test))
        pred = probs.argmax(axis=1)
        save_probs(folder / "probs" / f"{name}.npz", ds, part, test, probs)
        result = classification_metrics(ds.labels[test], pred, ds.classes)
        result["wall_seconds"] = round(time.perf_counter() - t0, 1)
        doc["parts"][part] = result
        write_json(path, doc)
        print(
            f"  {name}/{part}: accuracy {result['accuracy']:.3f} macro-F1 "
            f"{result['macro_f1']:.3f} ({result['wall_seconds']} s)",
            flush=True,
        )
    doc["summary"] = summarise(doc)
    write_json(path, doc)
    return doc


PROBS_COLUMNS = ("ids", "labels", "probs", "pred", "part")


def save_probs(path: Path, ds: Dataset, part: str, test: np.ndarray, probs: np.ndarray) -> None:
    """Add (or replace) one part's class probabilities in ``path`` (npz: ids, labels, classes,
    probs float16, pred: the predicted class index, from the probabilities before rounding, part),
    for calibration and stacking."""
    cols: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path) as z:
            keep = z["part"] != part
            cols = {k: z[k][keep] for k in PROBS_COLUMNS}
    new = {
        "ids": np.array([ds.lcs[i].source_id for i in test]),
        "labels": np.array([ds.classes[k] for k in ds.labels[test]]),
        "probs": probs.astype(np.float16),
        "pred": probs.argmax(axis=1).astype(np.int8),
        "part": np.array([part] * test.size),
    }
    merged = {k: np.concatenate([cols[k], v]) if cols else v for k, v in new.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp, classes=np.array(ds.classes), ids=merged["ids"], labels=merged["labels"],
        probs=merged["probs"], pred=merged["pred"], part=merged["part"],
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


def budget_dict(b: Budget) -> dict[str, Any]:
    """JSON-ready budget."""
    return asdict(b)
