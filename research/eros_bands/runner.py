"""EROS-1's two bands used one at a time and jointly, and the CRTS-trained seven-class LightGBM
applied to one EROS-1 band.

    python -m research.eros_bands            # full: docs/multiband/*.json, docs/multiband.md
    python -m research.eros_bands --quick    # a few objects per class, tiny models (tests)
    python -m research.eros_bands --report-only   # the page from the JSON

Periodic features (the current version, dmdt/periodic.py) are cached under
``build/multiband-cache`` by band, version and data hash; the CRTS features come from the
comparison's cache (build/beyond-cache). Every EROS-1 model is trained on the upstream ``train``
split and scored on ``test``. The page is written from the JSON (research.eros_bands.report).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dmdt import periodic
from research import folds as harness
from research.cache import write_json
from research.eros_bands import features as mb
from research.eros_bands.report import write_doc
from trainer.evaluate import classification_metrics

ROOT = Path(__file__).resolve().parents[2]
COMMAND = "python -m research.eros_bands"

TRANSFER_GROUPS = ("EB", "RRLyrae", "Mira", "RS_CVn")


def score(y: np.ndarray, probs: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class recall and confusion of EROS-1 class probabilities."""
    r = classification_metrics(y, probs.argmax(axis=1), mb.EROS_CLASSES)
    recalls = [v for v in r["per_class_recall"].values() if v is not None]
    r["balanced_accuracy"] = float(np.mean(recalls)) if recalls else None
    return r


def eros_models(
    eros: mb.Eros, sets: dict[str, tuple[np.ndarray, list[str]]], trees: int
) -> dict[str, Any]:
    """LightGBM (balanced) per feature set on the upstream split, plus the late fusion of the
    two single-band models (mean of their probabilities)."""
    train, test = ~eros.test, eros.test
    y = eros.labels
    out: dict[str, Any] = {}
    probs: dict[str, np.ndarray] = {}
    for name, (x, names) in sets.items():
        t0 = time.perf_counter()
        model = mb.fit_gbm(x[train], y[train], len(mb.EROS_CLASSES), trees)
        probs[name] = model.predict_proba(x[test])
        r = score(y[test], probs[name])
        r["n_features"] = len(names)
        r["wall_seconds"] = round(time.perf_counter() - t0, 1)
        gain = model.booster_.feature_importance("gain")
        top = np.argsort(gain)[::-1][:10]
        r["top_features_by_gain"] = [names[i] for i in top]
        out[name] = r
        print(f"  {name}: accuracy {r['accuracy']:.3f} macro-F1 {r['macro_f1']:.3f}", flush=True)
    fused = 0.5 * (probs["B"] + probs["R"])
    out["late fusion (mean of B and R)"] = {**score(y[test], fused), "n_features": 0}
    return out


def dmdt_models(eros: mb.Eros, epochs: int, patience: int, work: Path) -> dict[str, Any]:
    """The shallow dmdt CNN on B, on R, and on both bands stacked as two channels; each result
    is saved to ``work`` as it finishes (a rerun skips it)."""
    imgs = {b: mb.band_images(eros, b) for b in mb.BANDS}
    inputs = {
        "dmdt CNN, B": imgs["B"][:, None],
        "dmdt CNN, R": imgs["R"][:, None],
        "dmdt CNN, B and R as two channels": np.stack([imgs["B"], imgs["R"]], axis=1),
    }
    train, test = np.flatnonzero(~eros.test), np.flatnonzero(eros.test)
    out: dict[str, Any] = {}
    work.mkdir(parents=True, exist_ok=True)
    for name, x in inputs.items():
        path = work / (name.replace(" ", "_").replace(",", "") + ".json")
        if not path.exists():
            probs, run = mb.train_band_cnn(
                x, eros.labels, train, test, len(mb.EROS_CLASSES), epochs, patience
            )
            r = {**score(eros.labels[test], probs), **run, "n_features": 0}
            path.write_text(json.dumps(r) + "\n")
            print(f"  {name}: accuracy {r['accuracy']:.3f} ({run['train_seconds']} s)", flush=True)
        out[name] = json.loads(path.read_text())
    return out


def transfer(eros: mb.Eros, fb: np.ndarray, fr: np.ndarray, crts: Any, trees: int) -> dict:
    """The CRTS 7-class model on each EROS-1 band (all objects: none were seen in training),
    classes mapped to EROS-1 groups; with all the periodic features and without the survey-bound
    ones."""
    x_crts, y_crts, classes = crts
    out: dict[str, Any] = {}
    true = np.array([mb.EROS_CLASSES[k] for k in eros.labels])
    for variant, cols in (
        (f"all {len(mb.FEATURE_NAMES)} features", np.arange(len(mb.FEATURE_NAMES))),
        ("survey-invariant features", mb.survey_invariant_columns()),
    ):
        t0 = time.perf_counter()
        model = mb.fit_gbm(x_crts[:, cols], y_crts, len(classes), trees)
        band_probs = {}
        for band, f in (("B", fb), ("R", fr)):
            have = np.isfinite(f[:, 0])
            band_probs[band] = np.full((f.shape[0], len(classes)), np.nan)
            band_probs[band][have] = model.predict_proba(f[have][:, cols])
        both = np.nanmean(np.stack([band_probs["B"], band_probs["R"]]), axis=0)
        for band, p in (*band_probs.items(), ("B+R mean", both)):
            ok = np.isfinite(p[:, 0])
            pred = mb.map_predictions(classes, p[ok].argmax(axis=1))
            t = true[ok]
            known = t != "Cepheid"
            rows = ("EB", "RRLyrae", "Mira", "Cepheid")
            confusion = [
                [int(np.sum((t == a) & (pred == b))) for b in TRANSFER_GROUPS] for a in rows
            ]
            recall = {c: float(np.mean(pred[t == c] == c)) for c in rows[:3] if np.any(t == c)}
            out[f"{variant} / {band}"] = {
                "n": int(ok.sum()),
                "accuracy_shared_classes": float(np.mean(pred[known] == t[known])),
                "balanced_accuracy_shared_classes": float(np.mean(list(recall.values()))),
                "recall": recall,
                "confusion_rows": list(rows),
                "confusion_columns": list(TRANSFER_GROUPS),
                "confusion": confusion,
            }
        print(f"  transfer, {variant}: {time.perf_counter() - t0:.1f} s", flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Features (cached), the EROS-1 models, the transfer, saved as JSON (unless --report-only);
    then the page from the JSON."""
    p = argparse.ArgumentParser(
        prog=COMMAND, description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="few objects per class, tiny models")
    p.add_argument("--per-class", type=int, default=15, help="objects per class with --quick")
    p.add_argument("--out", type=Path, help="JSON folder (docs/multiband; quick: build/…)")
    p.add_argument("--doc", type=Path, help="markdown (docs/multiband.md; quick: <out>/…)")
    p.add_argument("--no-cnn", action="store_true", help="skip the dmdt CNN rows")
    p.add_argument("--report-only", action="store_true", help="the page from the JSON")
    args = p.parse_args(argv)
    quick = args.quick
    trees = 20 if quick else harness.FULL.gbm_trees
    out = args.out or ROOT / ("build/multiband-quick" if quick else "docs/multiband")
    doc_path = args.doc or (out / "multiband.md" if quick else ROOT / "docs/multiband.md")
    if args.report_only:
        saved = json.loads((out / "multiband.json").read_text())
        write_doc(saved, out, doc_path, saved.get("command", COMMAND))
        print(f"wrote {doc_path}")
        return 0
    cache = out / "cache" if quick else ROOT / "build/multiband-cache"
    eros = mb.load_eros(args.per_class if quick else None)
    sets = mb.feature_sets(eros, cache)
    doc: dict[str, Any] = {
        "data": {
            "objects": len(eros.ids),
            "train": int((~eros.test).sum()),
            "test": int(eros.test.sum()),
            "missing_B": sum(lc is None for lc in eros.bands["B"]),
            "missing_R": sum(lc is None for lc in eros.bands["R"]),
        },
        "model": {
            "trees": trees,
            "balanced": True,
            "features": f"periodic_v{periodic.FEATURES_VERSION} ({len(mb.FEATURE_NAMES)} per band)",
        },
    }
    doc["eros"] = eros_models(eros, sets, trees)
    if not args.no_cnn:
        epochs, patience = (2, 0) if quick else (500, 30)
        work = out / "work" if quick else ROOT / "build/multiband/cnn"
        doc["dmdt"] = dmdt_models(eros, epochs, patience, work)
        doc["model"]["cnn"] = {"max_epochs": epochs, "patience": patience, "grid": "mahabal2017"}
    if quick:
        budget = harness.Budget(name="quick", per_class=args.per_class, gbm_trees=trees)
        crts = mb.crts_training_set(budget, out / "folds", out / "crts-cache")
    else:
        crts = mb.crts_training_set(harness.FULL, ROOT / "docs/beyond", ROOT / "build/beyond-cache")
    doc["transfer"] = transfer(eros, sets["B"][0], sets["R"][0], crts, trees)
    ref = ROOT / "docs/results/transfer.json"
    if ref.exists():
        parts = json.loads(ref.read_text())["parts"]
        cells = [
            f"{k} accuracy {parts[k]['accuracy']:.3f}, balanced {parts[k]['balanced_accuracy']:.3f}"
            for k in ("direct/B", "direct/R")
            if k in parts
        ]
        doc["transfer_reference_accuracy"] = (
            " / ".join(
                f"{parts[k]['accuracy']:.3f}" for k in ("direct/B", "direct/R") if k in parts
            )
            + " (B / R)"
        )
        doc["transfer_reference"] = (
            "For comparison, the CRTS dmdt CNN (models/paper-cnn) applied directly "
            "(docs/results/transfer.json, docs/results.md §6): " + "; ".join(cells) + "."
        )
    doc["command"] = COMMAND + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    write_json(out / "multiband.json", doc)
    write_doc(doc, out, doc_path, doc["command"])
    print(f"wrote {doc_path}")
    return 0
