"""Issue 7, multi-band: EROS-1 B and R used one at a time vs jointly, and the CRTS-trained 7-class
LightGBM applied to one EROS-1 band.

    python scripts/multiband.py            # full: docs/multiband/*.json, docs/multiband.md
    python scripts/multiband.py --quick    # a few objects per class, tiny models (tests)

Periodic features (version 2, 76 per band, dmdt/periodic.py) are cached under
``build/multiband-cache`` (about 4 minutes for both bands on one thread, once); the CRTS
features come from the harness's cache (build/beyond-cache). Every EROS-1 model is trained on the
upstream ``train`` split and scored on ``test``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # one thread per job when run as a script; an importer (the tests)
    # keeps its own settings: changing NUMBA_NUM_THREADS after numba started its threads breaks
    # every later compilation in that process
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainer import beyond  # noqa: E402
from trainer import multiband as mb  # noqa: E402
from trainer.evaluate import classification_metrics  # noqa: E402

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
    classes mapped to EROS-1 groups; with all 76 features and without the survey-bound ones."""
    x_crts, y_crts, classes = crts
    out: dict[str, Any] = {}
    true = np.array([mb.EROS_CLASSES[k] for k in eros.labels])
    for variant, cols in (
        ("all 76 features", np.arange(mb.N_V2)),
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


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def findings(doc: dict[str, Any]) -> list[str]:
    """The measured differences the tables show, in sentences."""
    e, t = doc["eros"], doc["transfer"]
    single = max(("B", "R"), key=lambda b: e[b]["accuracy"])
    joint = e["B+R+colour"]
    out = [
        f"- Joint vs best single band ({single}): accuracy {_f(e[single]['accuracy'])} → "
        f"{_f(joint['accuracy'])}, macro-F1 {_f(e[single]['macro_f1'])} → "
        f"{_f(joint['macro_f1'])} (B+R without colour features: accuracy "
        f"{_f(e['B+R']['accuracy'])}; late fusion of the single-band models "
        f"{_f(e['late fusion (mean of B and R)']['accuracy'])}). The second band helps most "
        "where one band is weak; a broker that has per-band models only can average them "
        "and get most of the joint model's gain.",
    ]
    key = "all 76 features / B"
    if key in t:
        cm = dict(zip(t[key]["confusion_rows"], t[key]["confusion"], strict=True))
        ceph = cm["Cepheid"]
        out.append(
            f"- Transfer: the CRTS periodic-feature model on EROS-1 B reaches "
            f"{_f(t[key]['accuracy_shared_classes'])} accuracy on the shared classes (balanced "
            f"{_f(t[key]['balanced_accuracy_shared_classes'])}; R: "
            f"{_f(t['all 76 features / R']['accuracy_shared_classes'])})"
            + (
                f", where the CRTS dmdt CNN gets {doc['transfer_reference_accuracy']}"
                if doc.get("transfer_reference_accuracy")
                else ""
            )
            + ": periods and light-curve shape survive a change of cadence, "
            "the dmdt image's dt axis does not. The Cepheids, a class CRTS lacks, are called "
            f"RRLyrae {ceph[1]} times out of {sum(ceph)}: a closed-set model cannot say "
            "*unknown*, which is what docs/calibration.md's threshold is for.",
        )
    cnn = doc.get("dmdt", {})
    two, one_b = cnn.get("dmdt CNN, B and R as two channels"), cnn.get("dmdt CNN, B")
    if two and one_b:
        out.append(
            f"- dmdt CNN: B alone {_f(one_b['accuracy'])}, both bands as two channels "
            f"{_f(two['accuracy'])} (macro-F1 {_f(one_b['macro_f1'])} → {_f(two['macro_f1'])}); "
            f"the periodic-feature models stay ahead ({_f(joint['accuracy'])} joint)."
        )
    return out


def write_doc(doc: dict[str, Any], out: Path, doc_path: Path, command: str) -> None:
    """docs/multiband.md from the result document."""
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    n = doc["data"]
    lines = [
        "# Multi-band: EROS-1 B and R, one at a time and together (issue 7)",
        "",
        f"Generated by `{command}` (JSON in `{shown}/multiband.json`).",
        "",
        f"Data: the bundled EROS-1 set, {n['objects']} objects (EB, Cepheid, RRLyrae, Mira), "
        f"cleaned as `load_labelled('eros1')` does (≥20 points per band; {n['missing_B']} objects "
        f"lack B, {n['missing_R']} lack R: their features are NaN, which LightGBM routes). "
        f"Upstream split: {n['train']} train, {n['test']} test objects. Features: the 76 "
        "version-2 periodic features of `dmdt/periodic.py` per band; the joint model "
        "concatenates both bands (152) and adds colour features: median and mean B−R, log "
        "amplitude and scatter ratios B/R, |log P_B − log P_R|, whether the two periods agree "
        "(within 1% or a factor of two), mean log period. Model: the harness's LightGBM "
        f"({doc['model']['trees']} trees, balanced class weights, one thread). "
        "*Late fusion* averages the two single-band models' probabilities. *dmdt CNN* rows: the "
        "paper's dmdt images on the CRTS grid (mahabal2017) per band, the shallow net with one "
        "input channel per band (zeros for a missing band), trained as `dmdt-train fit` trains "
        "(Adam 2e-4, batch 32, 10% of the train split for early stopping"
        + (
            f", ≤{doc['model']['cnn']['max_epochs']} epochs, patience "
            f"{doc['model']['cnn']['patience']}"
            if "cnn" in doc["model"]
            else ""
        )
        + ", one thread).",
        "",
        "## Single band vs joint (EROS-1 test split)",
        "",
        "| model | features | accuracy | balanced accuracy | macro-F1 | EB | Cepheid | RRLyrae "
        "| Mira |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in {**doc["eros"], **doc.get("dmdt", {})}.items():
        rec = r["per_class_recall"]
        lines.append(
            f"| {name} | {r['n_features'] or '-'} | {_f(r['accuracy'])} | "
            f"{_f(r['balanced_accuracy'])} | {_f(r['macro_f1'])} | "
            + " | ".join(_f(rec.get(c)) for c in mb.EROS_CLASSES)
            + " |"
        )
    best = doc["eros"].get("B+R+colour")
    if best:
        lines += [
            "",
            "Joint model's ten strongest features (gain): "
            + ", ".join(f"`{f}`" for f in best["top_features_by_gain"])
            + ".",
            "",
            "Joint model confusion (rows true, columns predicted; "
            + ", ".join(mb.EROS_CLASSES)
            + "):",
            "",
            "| true \\ pred | " + " | ".join(mb.EROS_CLASSES) + " |",
            "|---|" + "---|" * len(mb.EROS_CLASSES),
        ]
        for c, row in zip(mb.EROS_CLASSES, best["confusion_matrix"], strict=True):
            lines.append(f"| {c} | " + " | ".join(str(v) for v in row) + " |")
    lines += [
        "",
        "## Transfer: the CRTS-trained 7-class LightGBM on one EROS-1 band",
        "",
        "Trained on every CRTS curve of the 7 paper classes (76 periodic features, balanced), "
        "applied to every EROS-1 object (none seen in training) per band; predictions mapped "
        "EW/EA → EB, RRab/RRc/RRd → RRLyrae, LPV → Mira, RS_CVn stays RS_CVn (no EROS-1 class: "
        "always wrong). EROS-1 Cepheids have no CRTS class: they are left out of the accuracy "
        "and shown in the confusion. *Survey-invariant* drops the features that describe the "
        "survey more than the star ("
        + ", ".join(f"`{f}`" for f in mb.SURVEY_FEATURES)
        + "). *B+R mean* averages the two bands' probabilities.",
        "",
        "| features / band | n | accuracy (EB, RRLyrae, Mira) | balanced | EB | RRLyrae | Mira |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, r in doc["transfer"].items():
        rec = r["recall"]
        lines.append(
            f"| {key} | {r['n']} | {_f(r['accuracy_shared_classes'])} | "
            f"{_f(r['balanced_accuracy_shared_classes'])} | "
            + " | ".join(_f(rec.get(c)) for c in ("EB", "RRLyrae", "Mira"))
            + " |"
        )
    for key in ("all 76 features / B", "survey-invariant features / B"):
        r = doc["transfer"].get(key)
        if not r:
            continue
        lines += [
            "",
            f"Confusion, {key} (rows true, columns predicted group):",
            "",
            "| true \\ pred | " + " | ".join(r["confusion_columns"]) + " |",
            "|---|" + "---|" * len(r["confusion_columns"]),
        ]
        for c, row in zip(r["confusion_rows"], r["confusion"], strict=True):
            lines.append(f"| {c} | " + " | ".join(str(v) for v in row) + " |")
    if doc.get("transfer_reference"):
        lines += ["", doc["transfer_reference"]]
    lines += ["", "## Reading", "", *findings(doc), ""]
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    doc_path.write_text("\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    """Features (cached), the EROS-1 models, the transfer; then JSON and markdown."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few objects per class, tiny models")
    p.add_argument("--per-class", type=int, default=15, help="objects per class with --quick")
    p.add_argument("--out", type=Path, help="JSON folder (docs/multiband; quick: build/…)")
    p.add_argument("--doc", type=Path, help="markdown (docs/multiband.md; quick: <out>/…)")
    p.add_argument("--no-cnn", action="store_true", help="skip the dmdt CNN rows")
    args = p.parse_args(argv)
    quick = args.quick
    trees = 20 if quick else beyond.FULL.gbm_trees
    out = args.out or ROOT / ("build/multiband-quick" if quick else "docs/multiband")
    doc_path = args.doc or (out / "multiband.md" if quick else ROOT / "docs/multiband.md")
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
        "model": {"trees": trees, "balanced": True, "features": "periodic_v2 (76 per band)"},
    }
    doc["eros"] = eros_models(eros, sets, trees)
    if not args.no_cnn:
        epochs, patience = (2, 0) if quick else (500, 30)
        work = out / "work" if quick else ROOT / "build/multiband/cnn"
        doc["dmdt"] = dmdt_models(eros, epochs, patience, work)
        doc["model"]["cnn"] = {"max_epochs": epochs, "patience": patience, "grid": "mahabal2017"}
    if quick:
        budget = beyond.Budget(name="quick", per_class=args.per_class, gbm_trees=trees)
        crts = mb.crts_training_set(budget, out / "folds", out / "crts-cache")
    else:
        crts = mb.crts_training_set(beyond.FULL, ROOT / "docs/beyond", ROOT / "build/beyond-cache")
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
    out.mkdir(parents=True, exist_ok=True)
    (out / "multiband.json").write_text(json.dumps(doc, indent=1) + "\n")
    command = "python scripts/multiband.py" + "".join(f" {a}" for a in (argv or sys.argv[1:]))
    write_doc(doc, out, doc_path, command)
    print(f"wrote {doc_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
