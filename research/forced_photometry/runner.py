"""What forced photometry is worth to the classifiers: the held-out CRTS curves whole (every epoch,
as forced photometry measures a source at every visit) against the same curves cut to the epochs
a difference-image survey would have detected (|flux - reference flux| >= 5 sigma, the reference
being the curve's median flux, as a reference image is a stack of many epochs).

    python -m research.forced_photometry [--models default,models/hybrid-7-stream]

Writes docs/surveys/forced_photometry.json, then from it the generated part of docs/surveys.md
that the default of DMDT_FORCED_PHOTOMETRY rests on (research.forced_photometry.report;
``--report-only`` rewrites only that). About two minutes per hybrid model on one core.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

from dmdt.lightcurves import LightCurve
from dmdt.model import classify_lightcurves
from dmdt.model import load_model as load_predictor
from research.cache import write_json
from research.forced_photometry.report import BEGIN, END, THRESHOLD, markdown
from research.pages import write_block
from trainer import data

ROOT = Path(__file__).resolve().parents[2]

OUT = ROOT / "docs" / "surveys" / "forced_photometry.json"

DOC = ROOT / "docs" / "surveys.md"


def held_out() -> list[LightCurve]:
    """The held-out part of the seven CRTS classes every shipped model leaves out of training."""
    lcs = data.load("crts", data.PAPER_CLASSES)
    labels = np.array([data.PAPER_CLASSES.index(str(lc.label)) for lc in lcs])
    _, test = data.stratified_split(labels, 0.2, 0)
    return [lcs[i] for i in test]


def detected_only(lc: LightCurve, threshold: float = THRESHOLD) -> LightCurve:
    """The epochs whose flux differs from the curve's median flux by ``threshold`` sigma."""
    flux = 10 ** (-0.4 * lc.m)
    sigma = flux * lc.err / 1.0857
    keep = np.abs(flux - np.median(flux)) >= threshold * sigma
    return LightCurve(lc.source_id, lc.t[keep], lc.m[keep], lc.err[keep], lc.label)


def score(model: str, whole: list[LightCurve], cut: list[LightCurve]) -> dict[str, Any]:
    """Accuracy on the whole curves and on the detected epochs (a curve left with fewer than the
    model's min_points cannot be classified: counted wrong in ``accuracy``, left out of
    ``accuracy_classifiable``, the whole-curve accuracy on the same curves beside it)."""
    clf = load_predictor(model)
    classes = list(clf.classes)
    truth = np.array([classes.index(str(lc.label)) for lc in whole])
    right_whole = np.asarray(classify_lightcurves(clf, whole).probabilities).argmax(1) == truth
    ok = np.array([len(lc) >= clf.min_points for lc in cut])
    right_cut = np.zeros(len(cut), dtype=bool)
    kept = [lc for lc, k in zip(cut, ok, strict=True) if k]
    right_cut[ok] = np.asarray(classify_lightcurves(clf, kept).probabilities).argmax(1) == truth[ok]
    recall = {
        c: {"whole": float(right_whole[truth == i].mean()), "detected": float(
            right_cut[truth == i].mean())}
        for i, c in enumerate(classes)
    }  # fmt: skip
    return {
        "model": model,
        "accuracy_whole": float(right_whole.mean()),
        "accuracy_detected": float(right_cut.mean()),
        "classifiable_detected": int(ok.sum()),
        "accuracy_detected_classifiable": float(right_cut[ok].mean()),
        "accuracy_whole_same_curves": float(right_whole[ok].mean()),
        "recall": recall,
    }


def main(argv: list[str] | None = None) -> int:
    """Score the models (unless --report-only), save the JSON, then the page's block from it."""
    ap = argparse.ArgumentParser(
        prog="python -m research.forced_photometry",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    ap.add_argument("--models", default="default,models/hybrid-7-stream",
                    help="comma-separated models to score (default: %(default)s)")  # fmt: skip
    ap.add_argument("--report-only", action="store_true", help="the page's block from the JSON")
    args = ap.parse_args(argv)
    if args.report_only:
        write_block(DOC, markdown(json.loads(OUT.read_text())), BEGIN, END)
        return 0
    whole = held_out()
    cut = [detected_only(lc) for lc in whole]
    result: dict[str, Any] = {
        "curves": len(whole),
        "threshold_sigma": THRESHOLD,
        "detected_fraction": sum(len(c) for c in cut) / sum(len(w) for w in whole),
        "too_short": sum(len(c) < 20 for c in cut),
        "models": [],
    }
    for model in args.models.split(","):
        result["models"].append(score(model, whole, cut))
        print(json.dumps({k: v for k, v in result["models"][-1].items() if k != "recall"}))
    write_json(OUT, result)
    write_block(DOC, markdown(result), BEGIN, END)
    print(markdown(result))
    return 0
