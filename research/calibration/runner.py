"""Calibration of the seven-class model and its "unknown" answer for the other 9 CRTS types.

    python -m research.calibration            # LightGBM (balanced) on the current periodic features
    python -m research.calibration --quick    # a few curves per class, tiny model (tests)
    python -m research.calibration --probs docs/beyond/probs/<model>.npz
    python -m research.calibration --report-only   # the page and figures from the JSON

Out-of-fold (5 folds) and held-out probabilities come from the fixed split
(docs/beyond/folds_7.json): either our own LightGBM, saved per part under ``build/calibration/``
(keyed by the features' version and the data hash) so a run resumes, or a ``--probs`` file with
arrays ``ids, labels, classes, probs, part`` (part: ``fold0``..``fold4`` / ``held_out`` or 0..4 /
-1) and, for the open-set half, ``other_ids, other_labels, other_probs`` (the 9 other types,
scored by the model trained on all folds); ``logits`` / ``other_logits`` are used where present.
The 8th-class alternative (leave one other type out) and the kNN distance always use our own
features. Writes ``<out>/*.json``, then the figures and the markdown (docs/calibration.md) from
them (research.calibration.report).
"""

from __future__ import annotations

import argparse
import functools
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
from research.calibration import metrics as rel
from research.calibration import openset
from research.calibration.report import figures, write_doc
from research.candidates import make_gbm
from research.pages import markdown_path
from trainer import calibration as cal
from trainer.split import HELD_OUT, PARTS, part_indices

ROOT = Path(__file__).resolve().parents[2]
FEATURES = f"periodic_v{periodic.FEATURES_VERSION}"  # the comparison's cache name: shared

KEEP = (0.90, 0.95, 0.98)

PROB_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


class Data:
    """Known (7 paper classes, harness folds) and other-type curves with their feature rows."""

    def __init__(self, budget: harness.Budget, folds_dir: Path, cache: Path) -> None:
        ds16 = harness.Dataset("16", budget, folds_dir)
        self.ds7 = harness.Dataset("7", budget, folds_dir)
        x16, _ = harness.cached_features(
            ds16, FEATURES, lambda lcs: periodic.features(lcs)[0], cache
        )
        row = {(lc.source_id, lc.label): i for i, lc in enumerate(ds16.lcs)}
        self.x = x16[[row[(lc.source_id, lc.label)] for lc in self.ds7.lcs]]
        self.ids = np.array([lc.source_id for lc in self.ds7.lcs])
        self.classes = tuple(self.ds7.classes)
        other = [i for i, lc in enumerate(ds16.lcs) if lc.label not in self.classes]
        self.x_other = x16[other]
        self.other_ids = np.array([ds16.lcs[i].source_id for i in other])
        self.other_types = np.array([str(ds16.lcs[i].label) for i in other])


@functools.lru_cache(maxsize=2)
def load_data(budget: harness.Budget, folds_dir: Path, cache: Path) -> Data:
    """:class:`Data`, built once per process for the same arguments (loading CRTS takes seconds)."""
    return Data(budget, folds_dir, cache)


def own_predictions(d: Data, trees: int, work: Path) -> dict[str, np.ndarray]:
    """Per part, LightGBM raw scores (logits) of its test curves; the held-out model also scores
    the other types. Each part is saved to ``work/<part>.npz`` and reused (``work`` is named by
    the features and the data hash)."""
    work.mkdir(parents=True, exist_ok=True)
    y, folds = d.ds7.labels, d.ds7.folds
    logits = np.full((y.size, len(d.classes)), np.nan)
    other_logits = None
    for part in PARTS:
        path = work / f"{part}.npz"
        train, test = part_indices(folds, part)
        if not path.exists():
            t0 = time.perf_counter()
            model = make_gbm(len(d.classes), trees, balanced=True).fit(d.x[train], y[train])
            z = model.predict(d.x[test], raw_score=True)
            zo = model.predict(d.x_other, raw_score=True) if part == "held_out" else np.zeros(0)
            np.savez(path, test=test, logits=z, other_logits=zo)
            print(f"  {part}: {time.perf_counter() - t0:.1f} s", flush=True)
        with np.load(path) as f:
            logits[f["test"]] = f["logits"]
            if part == "held_out":
                other_logits = f["other_logits"]
    probs = cal.apply_temperature(logits, 1.0)
    return {
        "ids": d.ids,
        "labels": y,
        "classes": np.array(d.classes),
        "probs": probs,
        "logits": logits,
        "part": folds,
        "other_ids": d.other_ids,
        "other_labels": d.other_types,
        "other_probs": cal.apply_temperature(np.asarray(other_logits), 1.0),
        "other_logits": np.asarray(other_logits),
    }


def read_probs(path: Path, d: Data) -> dict[str, np.ndarray]:
    """A saved-probabilities file, parts as harness fold ids (-1 held out), in our class order."""
    with np.load(path, allow_pickle=False) as f:
        z = {k: f[k] for k in f.files}
    part = z["part"]
    if part.dtype.kind in "US":
        part = np.array([-1 if p == "held_out" else int(str(p).removeprefix("fold")) for p in part])
    classes = [str(c) for c in z["classes"]]
    order = [classes.index(c) for c in d.classes]
    z["probs"], z["part"], z["classes"] = z["probs"][:, order], part, np.array(d.classes)
    labels = z["labels"]
    z["labels"] = (
        np.array([d.classes.index(str(c)) for c in labels])
        if labels.dtype.kind in "US"
        else np.array([d.classes.index(classes[int(i)]) for i in labels])
    )
    for k in ("logits", "other_probs", "other_logits"):
        if k in z:
            z[k] = z[k][:, order]
    return z


def calibration_part(p: dict[str, np.ndarray], name: str) -> dict[str, Any]:
    """Fit temperature and isotonic maps on out-of-fold predictions, score the held-out part;
    the reliability tables the figures are drawn from."""
    y, part = p["labels"], p["part"]
    oof, held = part != HELD_OUT, part == HELD_OUT
    z = p["logits"] if "logits" in p else cal.as_logits(p["probs"])
    t = cal.fit_temperature(z[oof], y[oof])
    iso = rel.IsotonicOvR().fit(p["probs"][oof], y[oof])
    # temperature fitted on 4 folds, scored on the 5th: the out-of-fold view of the calibrator
    t_oof = np.zeros_like(p["probs"])
    for f in np.unique(part[oof]):
        fit, sc = oof & (part != f), part == f
        t_oof[sc] = cal.apply_temperature(z[sc], cal.fit_temperature(z[fit], y[fit]))
    variants = {
        "uncalibrated": p["probs"][held],
        "temperature": cal.apply_temperature(z[held], t),
        "isotonic": iso.transform(p["probs"][held]),
    }
    doc: dict[str, Any] = {
        "model": name,
        "temperature": t,
        "n_oof": int(oof.sum()),
        "n_held_out": int(held.sum()),
        "oof": {
            "uncalibrated": rel.metrics(p["probs"][oof], y[oof]),
            "temperature_cv": rel.metrics(t_oof[oof], y[oof]),
        },
        "held_out": {k: rel.metrics(v, y[held]) for k, v in variants.items()},
        "reliability_held_out": {k: rel.reliability(v, y[held]) for k, v in variants.items()},
        "reliability_oof": {
            "uncalibrated": rel.reliability(p["probs"][oof], y[oof]),
            "temperature_cv": rel.reliability(t_oof[oof], y[oof]),
        },
    }
    return doc


def open_set_part(
    p: dict[str, np.ndarray], d: Data, temperature: float, knn_k: int
) -> dict[str, Any]:
    """AUROC known-vs-other and rejection at thresholds that keep 90/95/98% of known sources
    out-of-fold, for each score, on held-out known + all other-type curves."""
    y, part = p["labels"], p["part"]
    oof, held = part != HELD_OUT, part == HELD_OUT
    has_logits = "logits" in p and "other_logits" in p
    z = p["logits"] if has_logits else cal.as_logits(p["probs"])
    zo = p["other_logits"] if has_logits else cal.as_logits(p["other_probs"])
    pk = cal.apply_temperature(z, temperature)
    po = cal.apply_temperature(zo, temperature)
    s_known = openset.scores(pk, z if has_logits else None)
    s_other = openset.scores(po, zo if has_logits else None)
    # kNN distance: out-of-fold for the known threshold, the all-folds fit for the test parts
    knn_known = np.zeros(y.size)
    for f in np.unique(part):
        train, test = part_indices(part, "held_out" if f < 0 else f"fold{f}")
        knn_known[test] = openset.KnnDistance(knn_k).fit(d.x[train]).score(d.x[test])
    train, _ = part_indices(part, "held_out")
    s_known["knn_distance"] = knn_known
    s_other["knn_distance"] = openset.KnnDistance(knn_k).fit(d.x[train]).score(d.x_other)
    correct = pk.argmax(axis=1) == y
    types = p["other_labels"].astype(str)
    doc: dict[str, Any] = {"temperature": temperature, "n_known_held_out": int(held.sum())}
    doc["n_other"] = {t: int(np.sum(types == t)) for t in sorted(set(types))}
    doc["scores"] = {}
    for name in s_known:
        sk, so = s_known[name], s_other[name]
        r: dict[str, Any] = {"auroc_held_out": openset.auroc(sk[held], so)}
        for keep in KEEP:
            thr = openset.threshold_keeping(sk[oof], keep)
            rej: dict[str, Any] = openset.rejection(thr, sk[held], correct[held], so)
            rej["per_type_flagged"] = {
                t: float(np.mean(so[types == t] > thr)) for t in doc["n_other"]
            }
            r[f"keep_{keep:.2f}"] = rej
        doc["scores"][name] = r
    # the user-facing knob: calibrated top probability below tau -> "unknown"
    grid = []
    for tau in PROB_GRID:
        thr = 1.0 - tau
        rej = openset.rejection(thr, s_known["max_prob"][held], correct[held], s_other["max_prob"])
        grid.append({"min_probability": tau, **rej})
    doc["probability_grid"] = grid
    return doc


def other_class_part(d: Data, trees: int, work: Path) -> dict[str, Any]:
    """The alternative: an 8th class "other" trained on 8 of the 9 other types, tested on the
    held-out known part and every curve of the type left out (leave one type out)."""
    y, folds = d.ds7.labels, d.ds7.folds
    train, held = part_indices(folds, "held_out")
    k = len(d.classes)
    types = sorted(set(d.other_types))
    out: dict[str, Any] = {"per_type": {}}
    work.mkdir(parents=True, exist_ok=True)
    for t in types:
        path = work / f"loto_{t}.json"
        if not path.exists() or "with_min_probability" not in json.loads(path.read_text()):
            t0 = time.perf_counter()
            rest = d.other_types != t
            x = np.concatenate([d.x[train], d.x_other[rest]])
            yy = np.r_[y[train], np.full(int(rest.sum()), k)]
            model = make_gbm(k + 1, trees, balanced=True).fit(x, yy)
            pk = model.predict_proba(d.x[held])
            po = model.predict_proba(d.x_other[~rest])
            r: dict[str, Any] = {
                "n": int((~rest).sum()),
                "flagged": float(np.mean(po.argmax(1) == k)),
                "known_flagged": float(np.mean(pk.argmax(1) == k)),
                "known_accuracy_all": float(np.mean(pk.argmax(1) == y[held])),
                "known_accuracy_kept": float(np.mean((pk.argmax(1) == y[held])[pk.argmax(1) < k])),
                "wall_seconds": round(time.perf_counter() - t0, 1),
            }
            # combined rule: "other" wins, or the top probability (uncalibrated) is below tau
            r["with_min_probability"] = {
                f"{tau:.1f}": {
                    "flagged": float(np.mean((po.argmax(1) == k) | (po.max(1) < tau))),
                    "known_flagged": float(np.mean((pk.argmax(1) == k) | (pk.max(1) < tau))),
                }
                for tau in (0.4, 0.5, 0.6)
            }
            path.write_text(json.dumps(r) + "\n")
            print(f"  other-class, {t} left out: flagged {r['flagged']:.2f}", flush=True)
        out["per_type"][t] = json.loads(path.read_text())
    per = out["per_type"].values()
    n = sum(r["n"] for r in per)
    out["flagged_pooled"] = sum(r["flagged"] * r["n"] for r in per) / max(n, 1)
    out["flagged_mean_over_types"] = float(np.mean([r["flagged"] for r in per]))
    out["known_flagged_mean"] = float(np.mean([r["known_flagged"] for r in per]))
    out["known_accuracy_kept_mean"] = float(np.mean([r["known_accuracy_kept"] for r in per]))
    out["with_min_probability"] = {
        tau: {
            "flagged_pooled": sum(r["with_min_probability"][tau]["flagged"] * r["n"] for r in per)
            / max(n, 1),
            "known_flagged_mean": float(
                np.mean([r["with_min_probability"][tau]["known_flagged"] for r in per])
            ),
        }
        for tau in ("0.4", "0.5", "0.6")
    }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Predictions (own LightGBM or --probs), calibration, open set, the 8th class (unless
    --report-only); then the figures and the page from the JSON."""
    p = argparse.ArgumentParser(
        prog="python -m research.calibration",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="few curves per class, tiny models")
    p.add_argument("--per-class", type=int, default=12, help="curves per class with --quick")
    p.add_argument("--probs", type=Path, help="saved probabilities of another model (.npz)")
    p.add_argument("--out", type=Path, help="JSON/png folder (docs/calibration; quick: build/…)")
    p.add_argument(
        "--doc", type=Path, help="markdown (docs/calibration.md; quick or another --out: <out>/…)"
    )
    p.add_argument("--cache", type=Path, help="feature cache (build/beyond-cache[-quick])")
    p.add_argument("--no-other-class", action="store_true", help="skip the 8th-class runs")
    p.add_argument("--report-only", action="store_true", help="the page and figures from the JSON")
    args = p.parse_args(argv)
    quick = args.quick
    out = args.out or ROOT / ("build/calibration-quick" if quick else "docs/calibration")
    doc_path = args.doc or markdown_path(out, ROOT, "calibration")
    if args.report_only:
        cal_doc = json.loads((out / "calibration.json").read_text())
        os_doc, oc = (
            json.loads(path.read_text()) if path.exists() else None
            for path in (out / "openset.json", out / "other_class.json")
        )
    else:
        given = list(argv) if argv is not None else sys.argv[1:]
        cal_doc, os_doc, oc = measure(args, out, " ".join([COMMAND, *given]))
    figures(cal_doc, out)
    write_doc(cal_doc, os_doc, oc, out, doc_path, cal_doc.get("command", COMMAND))
    print(f"wrote {doc_path}")
    return 0


COMMAND = "python -m research.calibration"


def measure(
    args: argparse.Namespace, out: Path, command: str
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """The three result documents, each saved to ``out`` as it is done (``command``: what the
    page says made them)."""
    quick = args.quick
    budget = harness.Budget(name="quick", per_class=args.per_class, gbm_trees=20) if quick else (
        harness.FULL
    )  # fmt: skip
    cache = args.cache or ROOT / ("build/beyond-cache-quick" if quick else "build/beyond-cache")
    folds_dir = out / "folds" if quick else ROOT / "docs/beyond"  # quick: never touch the real
    d = load_data(budget, folds_dir, cache)
    base = out / "work" if quick else ROOT / "build" / "calibration" / "work"
    work = base / f"{FEATURES}-{d.ds7.data_hash[:12]}"  # other features or data: start afresh
    if args.probs:
        probs, name = read_probs(args.probs, d), args.probs.stem
    else:
        probs = own_predictions(d, budget.gbm_trees, work / "gbm_balanced_7")
        name = f"gbm_balanced_7 on {FEATURES} (own out-of-fold run)"
    cal_doc = calibration_part(probs, name)
    cal_doc.update(features=FEATURES, data_hash=d.ds7.data_hash, command=command)
    write_json(out / "calibration.json", cal_doc)
    os_doc = None
    if "other_probs" in probs:
        os_doc = open_set_part(probs, d, cal_doc["temperature"], knn_k=3 if quick else 10)
        write_json(out / "openset.json", os_doc)
    oc = None
    if not args.no_other_class:
        oc = other_class_part(d, budget.gbm_trees, work / "other_class")
        write_json(out / "other_class.json", oc)
    return cal_doc, os_doc, oc
