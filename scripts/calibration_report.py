"""Issue 7: calibration of the 7-class model and its "unknown" answer for the other 9 CRTS types.

    python scripts/calibration_report.py            # LightGBM (balanced, 76 periodic features)
    python scripts/calibration_report.py --quick    # a few curves per class, tiny model (tests)
    python scripts/calibration_report.py --probs docs/beyond/probs/<model>.npz

Out-of-fold (5 folds) and held-out probabilities come from the harness's split
(docs/beyond/folds_7.json): either our own LightGBM, saved per part under
``build/calibration/`` so a run resumes, or a ``--probs`` file with arrays ``ids, labels,
classes, probs, part`` (part: ``fold0``..``fold4`` / ``held_out`` or 0..4 / -1) and, for the
open-set half, ``other_ids, other_labels, other_probs`` (the 9 other types, scored by the model
trained on all folds); ``logits`` / ``other_logits`` are used where present. The 8th-class
alternative (leave one other type out) and the kNN distance always use our own features.
Writes ``<out>/*.json``, ``<out>/*.png`` and the markdown (docs/calibration.md).
"""

from __future__ import annotations

import argparse
import functools
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

from trainer import beyond, openset, periodic_v3  # noqa: E402
from trainer import calibration as cal  # noqa: E402
from trainer.beyond_models import make_gbm  # noqa: E402

N_V2 = 76  # periodic features of version 2 (version 3 appends to them): the baseline's input
KEEP = (0.90, 0.95, 0.98)
PROB_GRID = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def v2_features(lcs: Sequence[Any]) -> np.ndarray:
    """The 76 version-2 periodic features: version 3's first columns (trainer/periodic_v3.py)."""
    return periodic_v3.features(lcs)[0][:, :N_V2]


class Data:
    """Known (7 paper classes, harness folds) and other-type curves with their feature rows."""

    def __init__(self, budget: beyond.Budget, folds_dir: Path, cache: Path) -> None:
        ds16 = beyond.Dataset("16", budget, folds_dir)
        self.ds7 = beyond.Dataset("7", budget, folds_dir)
        x16, _ = beyond.cached_features(ds16, "periodic_v2", v2_features, cache)
        row = {(lc.source_id, lc.label): i for i, lc in enumerate(ds16.lcs)}
        self.x = x16[[row[(lc.source_id, lc.label)] for lc in self.ds7.lcs]]
        self.ids = np.array([lc.source_id for lc in self.ds7.lcs])
        self.classes = tuple(self.ds7.classes)
        other = [i for i, lc in enumerate(ds16.lcs) if lc.label not in self.classes]
        self.x_other = x16[other]
        self.other_ids = np.array([ds16.lcs[i].source_id for i in other])
        self.other_types = np.array([str(ds16.lcs[i].label) for i in other])


@functools.lru_cache(maxsize=2)
def load_data(budget: beyond.Budget, folds_dir: Path, cache: Path) -> Data:
    """:class:`Data`, built once per process for the same arguments (loading CRTS takes seconds)."""
    return Data(budget, folds_dir, cache)


def own_predictions(d: Data, trees: int, work: Path) -> dict[str, np.ndarray]:
    """Per part, LightGBM raw scores (logits) of its test curves; the held-out model also scores
    the other types. Each part is saved to ``work/<part>.npz`` and reused."""
    work.mkdir(parents=True, exist_ok=True)
    y, folds = d.ds7.labels, d.ds7.folds
    logits = np.full((y.size, len(d.classes)), np.nan)
    other_logits = None
    for part in beyond.PARTS:
        path = work / f"{part}.npz"
        train, test = beyond.part_indices(folds, part)
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
        "other_probs": cal.apply_temperature(other_logits, 1.0),
        "other_logits": other_logits,
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


def calibration_part(p: dict[str, np.ndarray], out: Path, name: str) -> dict[str, Any]:
    """Fit temperature and isotonic maps on out-of-fold predictions, score the held-out part."""
    y, part = p["labels"], p["part"]
    oof, held = part != beyond.HELD_OUT, part == beyond.HELD_OUT
    z = p["logits"] if "logits" in p else cal.as_logits(p["probs"])
    t = cal.fit_temperature(z[oof], y[oof])
    iso = cal.IsotonicOvR().fit(p["probs"][oof], y[oof])
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
            "uncalibrated": cal.metrics(p["probs"][oof], y[oof]),
            "temperature_cv": cal.metrics(t_oof[oof], y[oof]),
        },
        "held_out": {k: cal.metrics(v, y[held]) for k, v in variants.items()},
        "reliability_held_out": {k: cal.reliability(v, y[held]) for k, v in variants.items()},
    }
    cal.reliability_diagram(
        {k: (v, y[held]) for k, v in variants.items()},
        out / "reliability_held_out.png",
        f"{name}\nheld-out part (n={int(held.sum())}), T = {t:.2f}",
    )
    cal.reliability_diagram(
        {"uncalibrated": (p["probs"][oof], y[oof]), "temperature (cv)": (t_oof[oof], y[oof])},
        out / "reliability_oof.png",
        f"{name}\nout-of-fold (n={int(oof.sum())})",
    )
    return doc


def open_set_part(
    p: dict[str, np.ndarray], d: Data, temperature: float, knn_k: int
) -> dict[str, Any]:
    """AUROC known-vs-other and rejection at thresholds that keep 90/95/98% of known sources
    out-of-fold, for each score, on held-out known + all other-type curves."""
    y, part = p["labels"], p["part"]
    oof, held = part != beyond.HELD_OUT, part == beyond.HELD_OUT
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
        train, test = beyond.part_indices(part, "held_out" if f < 0 else f"fold{f}")
        knn_known[test] = openset.KnnDistance(knn_k).fit(d.x[train]).score(d.x[test])
    train, _ = beyond.part_indices(part, "held_out")
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
            rej = openset.rejection(thr, sk[held], correct[held], so)
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
    train, held = beyond.part_indices(folds, "held_out")
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
            r = {
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


def _f(v: float | None, nd: int = 3) -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:.{nd}f}"


SCORE_LABELS = {
    "max_prob": "1 - max probability",
    "entropy": "entropy",
    "margin": "1 - top-two margin",
    "energy": "energy (-logsumexp of raw scores)",
    "knn_distance": "kNN distance (k=10, quantile-normal features)",
}


def write_doc(cal_doc: dict[str, Any], os_doc: dict[str, Any] | None, oc: dict[str, Any] | None,
              out: Path, doc_path: Path, command: str) -> None:  # fmt: skip
    """docs/calibration.md from the three result documents."""
    shown = out.relative_to(ROOT) if out.is_relative_to(ROOT) else out
    t = cal_doc["temperature"]
    lines = [
        '# Calibration and the "unknown" answer (issue 7)',
        "",
        f"Generated by `{command}` (JSON and figures in `{shown}/`; rerun to refresh, per-part "
        "model outputs are reused from `build/calibration/`).",
        "",
        f"Model: `{cal_doc['model']}`. Split: the harness's (docs/beyond.md): out-of-fold = each "
        f"of the 5 folds scored by the model trained on the other 4 ({cal_doc['n_oof']} curves); "
        f"held-out = the 20% part scored by the model trained on all 5 folds "
        f"({cal_doc['n_held_out']} curves). Calibrators are fitted on the out-of-fold predictions "
        "only and scored on the held-out part. ECE: top-label, 15 equal-width bins; classwise ECE:"
        " mean over classes of the ECE of p_k against 1[y = k]; Brier: sum over classes, mean "
        "over sources (0 best, 2 worst); log loss in nats.",
        "",
        "## Calibration",
        "",
        "| held-out | accuracy | mean confidence | ECE | classwise ECE | Brier | log loss |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, m in cal_doc["held_out"].items():
        label = f"temperature (T = {t:.2f})" if k == "temperature" else k
        lines.append(
            f"| {label} | {_f(m['accuracy'])} | {_f(m['mean_confidence'])} | {_f(m['ece'])} | "
            f"{_f(m['classwise_ece'])} | {_f(m['brier'])} | {_f(m['log_loss'])} |"
        )
    o = cal_doc["oof"]
    lines += [
        "",
        f"Out-of-fold: ECE {_f(o['uncalibrated']['ece'])} uncalibrated, "
        f"{_f(o['temperature_cv']['ece'])} with a temperature fitted on the other four folds "
        f"(log loss {_f(o['uncalibrated']['log_loss'])} → {_f(o['temperature_cv']['log_loss'])}).",
        "",
        "![held-out reliability](calibration/reliability_held_out.png)",
        "",
        "Temperature scaling keeps the argmax (accuracy unchanged) and is one number to ship with "
        "the model (`trainer.calibration.fit_temperature` / `apply_temperature`; for a tree model "
        "the logits are its raw scores or the log of its probabilities, which give the same "
        "softmax). One-vs-rest isotonic maps are shown for comparison; they may change the argmax.",
        "",
    ]
    if os_doc is not None:
        n_other = sum(os_doc["n_other"].values())
        lines += [
            "## Open set: known classes vs the 9 other CRTS types",
            "",
            f"Known: the held-out part of the 7 classes ({os_doc['n_known_held_out']} curves). "
            f"Other: every curve of the 9 other types ({n_other}: "
            + ", ".join(f"{k} {v}" for k, v in os_doc["n_other"].items())
            + "), scored by the model trained on the 5 folds (none of them seen in training). "
            f"Probability scores use the temperature-scaled probabilities (T = "
            f"{os_doc['temperature']:.2f}, which reorders sources' top probabilities only "
            "slightly). Thresholds are chosen on the out-of-fold known curves so that 90/95/98% of "
            "them are kept, then applied to the held-out known and the other curves.",
            "",
            "| score | AUROC | kept known (95% target) | other flagged | accuracy all → kept "
            "| other flagged at 90% / 98% |",
            "|---|---|---|---|---|---|",
        ]
        for name, r in os_doc["scores"].items():
            k95, k90, k98 = r["keep_0.95"], r["keep_0.90"], r["keep_0.98"]
            lines.append(
                f"| {SCORE_LABELS.get(name, name)} | {_f(r['auroc_held_out'])} | "
                f"{_f(k95['known_kept'])} | {_f(k95['unknown_flagged'])} | "
                f"{_f(k95['known_accuracy_all'])} → {_f(k95['known_accuracy_kept'])} | "
                f"{_f(k90['unknown_flagged'])} / {_f(k98['unknown_flagged'])} |"
            )
        types = list(os_doc["n_other"])
        lines += [
            "",
            "Fraction of each other type flagged at the 95% threshold:",
            "",
            "| score | " + " | ".join(f"{t} ({os_doc['n_other'][t]})" for t in types) + " |",
            "|---|" + "---|" * len(types),
        ]
        for name, r in os_doc["scores"].items():
            per = r["keep_0.95"]["per_type_flagged"]
            lines.append(f"| {name} | " + " | ".join(_f(per[t], 2) for t in types) + " |")
        lines += [
            "",
            "The user-facing knob: *unknown* when the calibrated top probability is below τ "
            "(held-out known and other curves):",
            "",
            "| τ | known kept | accuracy of kept | other flagged |",
            "|---|---|---|---|",
        ]
        for g in os_doc["probability_grid"]:
            lines.append(
                f"| {g['min_probability']:.1f} | {_f(g['known_kept'])} | "
                f"{_f(g['known_accuracy_kept'])} | {_f(g['unknown_flagged'])} |"
            )
        lines.append("")
    if oc is not None:
        types = list(oc["per_type"])
        lines += [
            '## Alternative: an 8th class "other"',
            "",
            "Trained on the 5 folds of the 7 classes plus every curve of 8 of the 9 other types as"
            " one class *other* (balanced weights), tested on the held-out known part and on every"
            " curve of the type left out; repeated for each of the 9 types (leave one type out).",
            "",
            "| left-out type | n | flagged other | known flagged other | known accuracy all → "
            "kept |",
            "|---|---|---|---|---|",
        ]
        for t in types:
            r = oc["per_type"][t]
            lines.append(
                f"| {t} | {r['n']} | {_f(r['flagged'])} | {_f(r['known_flagged'])} | "
                f"{_f(r['known_accuracy_all'])} → {_f(r['known_accuracy_kept'])} |"
            )
        lines += [
            "",
            f"Pooled over the 9 types: {_f(oc['flagged_pooled'])} of unseen-type curves flagged "
            f"(mean over types {_f(oc['flagged_mean_over_types'])}); "
            f"{_f(oc['known_flagged_mean'])} of known curves called other.",
            "",
            "Combined rule (8-class model; *unknown* when *other* wins or its top probability, "
            "uncalibrated, is below τ): "
            + "; ".join(
                f"τ = {tau}: {_f(v['flagged_pooled'])} of unseen-type curves flagged, "
                f"{_f(v['known_flagged_mean'])} of known"
                for tau, v in oc["with_min_probability"].items()
            )
            + ".",
            "",
        ]
    if os_doc is not None:
        lines += recommendation(cal_doc, os_doc, oc)
    doc_path.parent.mkdir(parents=True, exist_ok=True)
    doc_path.write_text("\n".join(lines))


def recommendation(
    cal_doc: dict[str, Any], os_doc: dict[str, Any], oc: dict[str, Any] | None
) -> list[str]:
    """The section a broker operator reads: what to ship and which knob users get."""
    u, tc = cal_doc["held_out"]["uncalibrated"], cal_doc["held_out"]["temperature"]
    grid = {round(g["min_probability"], 1): g for g in os_doc["probability_grid"]}
    g5 = grid.get(0.5)
    mp = os_doc["scores"]["max_prob"]["keep_0.95"]
    lines = [
        "## What the broker should set",
        "",
        f"1. **Ship the temperature with the model** (T = {cal_doc['temperature']:.2f} for this "
        "model, fitted on its out-of-fold predictions; refit for any other model with "
        "`python scripts/calibration_report.py --probs <file>`) and publish the scaled "
        f"probabilities: held-out ECE {_f(u['ece'])} → {_f(tc['ece'])}, log loss "
        f"{_f(u['log_loss'])} → {_f(tc['log_loss'])}, accuracy unchanged. Isotonic maps reach "
        "a similar ECE but a worse log loss and are seven maps to ship instead of one number.",
    ]
    if g5 is not None:
        lines.append(
            "2. **One user setting, `min_probability` τ** (default 0.5): a source whose "
            "calibrated top probability is below τ is published as *unknown* (its class "
            f"probabilities still published). At τ = 0.5: {_f(g5['known_kept'])} of known-class"
            f" sources kept, their accuracy {_f(g5['known_accuracy_all'])} → "
            f"{_f(g5['known_accuracy_kept'])}, {_f(g5['unknown_flagged'])} of the other-type "
            "sources flagged. Because the probabilities are calibrated, each kept answer "
            "is right with probability about its top probability, so at least about τ; the τ "
            "table above gives the trade-off."
        )
    if oc is not None:
        comb = oc.get("with_min_probability", {}).get("0.5")
        extra = (
            f" With τ = 0.5 on top, {_f(comb['flagged_pooled'])} of unseen-type curves are "
            f"flagged for {_f(comb['known_flagged_mean'])} of known ones."
            if comb
            else ""
        )
        per_type = oc["per_type"]
        best = sorted(per_type, key=lambda t: -per_type[t]["flagged"])[:2]
        hidden = [t for t in per_type if per_type[t]["flagged"] < 0.1]
        lines.append(
            "3. **Recommended model: the 8th class *other* plus τ.** On types it never saw, "
            f"the 8-class model flags {_f(oc['flagged_pooled'])} of curves (pooled; mean over "
            f"types {_f(oc['flagged_mean_over_types'])}) while calling "
            f"{_f(oc['known_flagged_mean'])} of known sources *other*, where the best "
            f"probability score at the 95% threshold flags {_f(mp['unknown_flagged'])} and "
            f"loses {_f(1 - mp['known_kept'])} of known sources.{extra} "
            f"The price: its accuracy on the known held-out part is "
            f"{_f(float(np.mean([r['known_accuracy_all'] for r in per_type.values()])))} (mean "
            f"over the 9 runs; on the sources it keeps {_f(oc['known_accuracy_kept_mean'])}) "
            f"against {_f(cal_doc['held_out']['uncalibrated']['accuracy'])} for the 7-class "
            f"model. Its gain is concentrated in {', '.join(best)}; "
            f"{', '.join(hidden) or 'no type'} stay below 10% flagged (types that mimic a known "
            "class, e.g. Blazhko RR Lyrae or beta Lyrae binaries)."
        )
        shipped = ROOT / "models/hybrid-7-other/model.json"
        if shipped.exists():
            m = json.loads(shipped.read_text())["metrics"]
            o, single = m["open_set"], json.loads((ROOT / "models/hybrid-7/model.json").read_text())
            lines[-1] += (
                " It ships as `models/hybrid-7-other` (`dmdt-train fit-hybrid crts --other`: "
                "version 4 features, the 7 classes plus all 9 other types as *other*, trained on "
                "issue 7's 5 folds, T = "
                f"{m['calibration']['temperature']:.2f}). On the held-out part (the same 1,048 "
                f"known curves as `models/hybrid-7`, plus {o['n_other']} of the other types) its "
                f"accuracy on the known classes is {o['known_accuracy']:.3f} (hybrid-7: "
                f"{single['metrics']['accuracy']:.3f}); it calls {o['known_called_other']:.3f} of "
                f"the known curves and {o['other_flagged']:.3f} of the other types' curves "
                "*other* (types it trained on; for types it never saw, the leave-one-type-out "
                "figures above). Choose it where sources of other types are common."
            )
        else:
            lines[-1] += " Until a model with the 8th class ships, use τ alone."
    aurocs = [r["auroc_held_out"] for r in os_doc["scores"].values()]
    best_score = max(os_doc["scores"], key=lambda k: os_doc["scores"][k]["auroc_held_out"])
    per = os_doc["scores"][best_score]["keep_0.95"]["per_type_flagged"]
    top = sorted(per, key=lambda t: -per[t])[:2]
    lines += [
        "",
        f"No score separates the 9 other types well (AUROC {min(aurocs):.2f}–{max(aurocs):.2f})"
        f": most of them are variants of the known classes. The best single score is "
        f"{SCORE_LABELS.get(best_score, best_score)}; it flags most in {', '.join(top)}, so a "
        "feature-space distance is a useful second check where it differs from the "
        "probabilities, but it needs the training features at inference time.",
        "",
    ]
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Predictions (own LightGBM or --probs), calibration, open set, the 8th class; then docs."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="few curves per class, tiny models")
    p.add_argument("--per-class", type=int, default=12, help="curves per class with --quick")
    p.add_argument("--probs", type=Path, help="saved probabilities of another model (.npz)")
    p.add_argument("--out", type=Path, help="JSON/png folder (docs/calibration; quick: build/…)")
    p.add_argument(
        "--doc", type=Path, help="markdown (docs/calibration.md; quick or another --out: <out>/…)"
    )
    p.add_argument("--cache", type=Path, help="feature cache (build/beyond-cache[-quick])")
    p.add_argument("--no-other-class", action="store_true", help="skip the 8th-class runs")
    args = p.parse_args(argv)
    quick = args.quick
    budget = beyond.Budget(name="quick", per_class=args.per_class, gbm_trees=20) if quick else (
        beyond.FULL
    )  # fmt: skip
    out = args.out or ROOT / ("build/calibration-quick" if quick else "docs/calibration")
    doc_path = args.doc or beyond.markdown_path(out, ROOT, "calibration")
    cache = args.cache or ROOT / ("build/beyond-cache-quick" if quick else "build/beyond-cache")
    folds_dir = out / "folds" if quick else ROOT / "docs/beyond"  # quick: never touch the real
    work = ROOT / "build" / ("calibration-quick" if quick else "calibration") / "work"
    if quick:
        work = out / "work"
    d = load_data(budget, folds_dir, cache)
    if args.probs:
        probs, name = read_probs(args.probs, d), args.probs.stem
    else:
        probs = own_predictions(d, budget.gbm_trees, work / "gbm_periodic_balanced_7")
        name = "gbm_periodic_balanced_7 (own out-of-fold run)"
    out.mkdir(parents=True, exist_ok=True)
    cal_doc = calibration_part(probs, out, name)
    (out / "calibration.json").write_text(json.dumps(cal_doc, indent=1) + "\n")
    os_doc = None
    if "other_probs" in probs:
        os_doc = open_set_part(probs, d, cal_doc["temperature"], knn_k=3 if quick else 10)
        (out / "openset.json").write_text(json.dumps(os_doc, indent=1) + "\n")
    oc = None
    if not args.no_other_class:
        oc = other_class_part(d, budget.gbm_trees, work / "other_class")
        (out / "other_class.json").write_text(json.dumps(oc, indent=1) + "\n")
    command = "python scripts/calibration_report.py" + (
        " " + " ".join(argv) if argv else " ".join(["", *sys.argv[1:]]).rstrip()
    )
    write_doc(cal_doc, os_doc, oc, out, doc_path, command.strip())
    print(f"wrote {doc_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
