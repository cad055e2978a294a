"""One answer per object: EROS-1's two bands (B, R) classified one at a time and combined by each
rule of dmdt.bands, against one band alone.

    python -m research.band_combination [--models default,models/hybrid-7-stream] [--quick]

Two measurements, both on the bundled EROS-1 objects (data/eros1):

1. The shipped CRTS-trained models, as the broker serves them: each band of every object is
   classified on its own, the two probability vectors are combined, and the CRTS class is mapped
   to EROS-1's (EW, EA -> EB; RRab, RRc, RRd -> RRLyrae; LPV -> Mira; RS_CVn has no EROS-1
   class and is always wrong). Cepheids have no CRTS class: left out.
2. Models trained on EROS-1 itself (LightGBM on the periodic features of one band, upstream
   train split), scored on the upstream test split one band at a time and combined, beside a
   model trained on both bands' features side by side (what a multi-band model could reach).

Writes docs/surveys/band_combination.json, then the generated part of docs/surveys.md from it
(research.band_combination.report; ``--report-only`` rewrites only that). Periodic features are
cached under build/band-combination by band, version and data hash (about 3 minutes for both
bands, once).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from dmdt import periodic
from dmdt.bands import RULES, combine_bands
from dmdt.model import classify_lightcurves
from dmdt.model import load_model as load_predictor
from research.band_combination.report import BEGIN, END, SHARED, markdown
from research.cache import write_json
from research.eros_bands import features as mb
from research.pages import write_block
from trainer import data

ROOT = Path(__file__).resolve().parents[2]

OUT = ROOT / "docs" / "surveys" / "band_combination.json"

DOC = ROOT / "docs" / "surveys.md"

CACHE = ROOT / "build" / "band-combination"


def combined(probs: dict[str, np.ndarray], n: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per object: band B alone, R alone, and each rule over the bands the object has."""
    out = {"B": probs["B"], "R": probs["R"]}
    both = np.stack([probs["B"], probs["R"]], axis=1)  # (objects, bands, classes)
    counts = np.stack([n["B"], n["R"]], axis=1)
    for rule in RULES:
        rows = []
        for p, k in zip(both, counts, strict=True):
            have = k > 0
            rows.append(combine_bands(p[have], k[have], rule))
        out[rule] = np.array(rows)
    return out


def served(model: str, eros: mb.Eros) -> dict[str, Any]:
    """A shipped model per band, combined, mapped to EROS-1's classes (shared classes only)."""
    clf = load_predictor(model)
    classes = list(clf.classes)
    keep = np.array([mb.EROS_CLASSES[y] in SHARED for y in eros.labels])
    probs, n = {}, {}
    for band in mb.BANDS:
        curves = eros.bands[band]
        have = [i for i, lc in enumerate(curves) if lc is not None and keep[i]]
        p = np.full((len(curves), len(classes)), 1.0 / len(classes))
        got = classify_lightcurves(clf, [curves[i] for i in have]).probabilities  # type: ignore[misc]
        p[have] = np.asarray(got)
        probs[band] = p
        n[band] = np.array([len(lc) if lc is not None else 0 for lc in curves])
    truth = np.array([mb.EROS_CLASSES[y] for y in eros.labels])
    rows = {}
    for name, p in combined(probs, n).items():
        both = keep & (n["B"] > 0) & (n["R"] > 0)
        pred = np.array([data.CRTS_TO_EROS[classes[k]] for k in p.argmax(axis=1)])
        right = pred == truth
        rows[name] = {
            "accuracy": float(right[both].mean()),
            "balanced_accuracy": float(
                np.mean([right[both & (truth == c)].mean() for c in SHARED])
            ),
            "recall": {c: float(right[both & (truth == c)].mean()) for c in SHARED},
        }
    return {"model": model, "objects": int((keep & (n["B"] > 0) & (n["R"] > 0)).sum()),
            "rows": rows}  # fmt: skip


def band_features(eros: mb.Eros, band: str) -> np.ndarray:
    """Current periodic features ``(objects, F)`` of one band (NaN rows where it is missing),
    cached by data hash and feature version."""
    curves = eros.curves(band)
    path = CACHE / f"{band}-v{periodic.FEATURES_VERSION}-{curves.data_hash[:16]}.npy"
    if path.exists():
        x = np.load(path)
    else:
        x, _ = periodic.features(curves.lcs)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, x)
    out = np.full((len(eros.ids), x.shape[1]), np.nan)
    out[[i for i, lc in enumerate(eros.bands[band]) if lc is not None]] = x
    return out


def trained(eros: mb.Eros, trees: int) -> dict[str, Any]:
    """EROS-1-trained LightGBM per band (train split), combined on the test split, beside one
    model on both bands' features."""
    from research.candidates import make_gbm

    x = {b: band_features(eros, b) for b in mb.BANDS}
    train, test = ~eros.test, eros.test
    y = eros.labels
    k = len(mb.EROS_CLASSES)
    probs, n = {}, {}
    for band in mb.BANDS:
        model = make_gbm(k, trees, balanced=True).fit(x[band][train], y[train])
        probs[band] = model.predict_proba(x[band][test])
        n[band] = np.array([0 if lc is None else len(lc) for lc in np.array(
            eros.bands[band], dtype=object)[test]])  # fmt: skip
    joint = make_gbm(k, trees, balanced=True).fit(
        np.concatenate([x["B"], x["R"]], axis=1)[train], y[train]
    )
    rows_p = combined(probs, n)
    rows_p["joint model (B and R features)"] = joint.predict_proba(
        np.concatenate([x["B"], x["R"]], axis=1)[test]
    )
    rows = {}
    for name, p in rows_p.items():
        right = p.argmax(axis=1) == y[test]
        rows[name] = {
            "accuracy": float(right.mean()),
            "balanced_accuracy": float(np.mean([right[y[test] == c].mean() for c in range(k)])),
            "recall": {c: float(right[y[test] == i].mean()) for i, c in enumerate(mb.EROS_CLASSES)},
        }
    return {"train": int(train.sum()), "test": int(test.sum()), "trees": trees, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    """Measure (unless --report-only), save the JSON, then the page's block from it."""
    ap = argparse.ArgumentParser(
        prog="python -m research.band_combination",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    ap.add_argument(
        "--models",
        default="default,models/hybrid-7-stream",
        help="comma-separated shipped models to score (default: %(default)s)",
    )
    ap.add_argument("--trees", type=int, default=600, help="LightGBM trees (default: 600)")
    ap.add_argument("--quick", action="store_true", help="20 objects a class, 50 trees (tests)")
    ap.add_argument("--report-only", action="store_true", help="the page's block from the JSON")
    args = ap.parse_args(argv)
    if args.report_only:
        write_block(DOC, markdown(json.loads(OUT.read_text())), BEGIN, END)
        return 0
    eros = mb.load_eros(per_class=20 if args.quick else None)
    result = {
        "served": [served(m, eros) for m in args.models.split(",")],
        "trained": trained(eros, 50 if args.quick else args.trees),
    }
    if args.quick:
        print(markdown(result))
        return 0
    write_json(OUT, result)
    write_block(DOC, markdown(result), BEGIN, END)
    print(markdown(result))
    return 0
