"""``dmdt-train audit-labels``: the labelled curves whose light curves contradict their label.

Every curve is scored by the hybrid boosting (trainer.hybrid_fit, the shipped models' design)
trained on the other folds, so no curve is judged by a model that saw its label. Confident
learning (Northcutt et al. 2021, JAIR 70, 1373; the ``cleanlab`` library) then counts, per pair of
classes, how many curves the out-of-fold probabilities confidently put in another class than their
label, and flags that many of each pair, most confident first. A flag is a candidate for a human
to look at, not a verdict: it is also where the classifier itself is weakest.

Output folder: ``label_issues.csv`` (one row per flagged curve, most suspect first),
``summary.json`` (counts per class pair, estimated label-noise rate) and ``gallery.png`` (the
first flagged curves folded at their period, for the eye).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import StratifiedKFold

from dmdt import periodic
from dmdt.hybrid import HybridClassifier, default_grid
from dmdt.lightcurves import LightCurve
from trainer import data
from trainer.hybrid_fit import HybridOptions, features_of, train_views

FOLD_PERIOD = "period"  # the feature a curve is folded at: the period search's choice


@dataclass(frozen=True)
class Audit:
    """Out-of-fold probabilities of labelled curves and the label issues they point to."""

    ids: tuple[str, ...]
    classes: tuple[str, ...]
    labels: np.ndarray  # (n,) index into classes
    probs: np.ndarray  # (n, n_classes) out of fold
    flagged: np.ndarray  # indices of flagged curves, most suspect first
    periods: np.ndarray  # (n,) days, for folding

    def suggested(self) -> np.ndarray:
        """The class the out-of-fold probabilities prefer, per curve."""
        return np.asarray(self.probs.argmax(axis=1))

    def pair_counts(self) -> dict[str, int]:
        """Flagged curves per ``given -> suggested`` pair, largest first."""
        pairs: dict[str, int] = {}
        suggested = self.suggested()
        for i in self.flagged:
            key = f"{self.classes[self.labels[i]]} -> {self.classes[suggested[i]]}"
            pairs[key] = pairs.get(key, 0) + 1
        return dict(sorted(pairs.items(), key=lambda kv: (-kv[1], kv[0])))


def out_of_fold_probs(
    x: np.ndarray, y: np.ndarray, classes: Sequence[str], opts: HybridOptions, n_folds: int = 5,
    seed: int = 0,
) -> np.ndarray:  # fmt: skip
    """Each curve's class probabilities ``(n, len(classes))`` from the hybrid boosters trained
    on the other ``n_folds - 1`` stratified folds, averaged as a served model averages them
    (:meth:`dmdt.hybrid.HybridClassifier.booster_probs`)."""
    from tqdm import tqdm

    probs = np.zeros((y.size, len(classes)))
    split = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed).split(x, y)
    for fit, score in tqdm(list(split), desc="out-of-fold boosting", unit="fold"):
        boosters = train_views(x[fit], y[fit], len(classes), opts)
        model = HybridClassifier(name="audit", classes=list(classes), grid=default_grid(),
                                 boosters=boosters, views=list(opts.views))  # fmt: skip
        probs[score] = model.booster_probs(x[score])
    return probs


def find_issues(labels: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Indices of the curves confident learning flags, most suspect (lowest probability of the
    given label) first."""
    from cleanlab.filter import find_label_issues

    norm = probs / probs.sum(axis=1, keepdims=True)
    return np.asarray(
        find_label_issues(
            labels=labels,
            pred_probs=norm,
            filter_by="prune_by_noise_rate",
            return_indices_ranked_by="self_confidence",
        ),
        dtype=np.int64,
    )


def audit(
    source: str,
    classes: Sequence[str] | None = data.PAPER_CLASSES,
    views: Sequence[str] = ("curve",),
    cache: Path | None = None,
    min_points: int = 20,
    n_folds: int = 5,
) -> tuple[Audit, list[LightCurve]]:
    """Audit the labels of the curves of ``classes`` in ``source`` (as ``fit-hybrid`` reads it);
    returns the audit and the curves, in the audit's order."""
    every = data.load(source, None, min_points)
    x_all, _ = features_of(every, cache, views)  # cached under the whole data's hash
    names = data.class_names(every, classes)
    keep = np.array([lc.label in names for lc in every])
    lcs = [lc for lc, k in zip(every, keep, strict=True) if k]
    x = x_all[keep]
    y = np.array([names.index(str(lc.label)) for lc in lcs], dtype=np.int64)
    counts = np.bincount(y, minlength=len(names))
    if counts.min() < n_folds:
        few = ", ".join(f"{c} ({k})" for c, k in zip(names, counts, strict=True) if k < n_folds)
        raise ValueError(f"every class needs at least {n_folds} curves for {n_folds} folds: "
                         f"{few}; leave it out with --classes")  # fmt: skip
    opts = HybridOptions(classes=tuple(names), views=tuple(views), min_points=min_points)
    probs = out_of_fold_probs(x, y, names, opts, n_folds)
    period = x[:, periodic.FEATURE_NAMES.index(FOLD_PERIOD)]
    result = Audit(
        ids=tuple(lc.source_id for lc in lcs),
        classes=tuple(names),
        labels=y,
        probs=probs,
        flagged=find_issues(y, probs),
        periods=period,
    )
    return result, lcs


def summary(result: Audit, source: str, views: Sequence[str]) -> dict[str, Any]:
    """Counts for ``summary.json``: flagged per class and per pair, out-of-fold accuracy."""
    from cleanlab.count import estimate_joint

    n = result.labels.size
    joint = estimate_joint(result.labels, result.probs / result.probs.sum(axis=1, keepdims=True))
    flagged_by_class = np.bincount(result.labels[result.flagged], minlength=len(result.classes))
    totals = np.bincount(result.labels, minlength=len(result.classes))
    return {
        "data": source,
        "views": list(views),
        "n": n,
        "classes": list(result.classes),
        "out_of_fold_accuracy": round(float(np.mean(result.suggested() == result.labels)), 4),
        "n_flagged": int(result.flagged.size),
        "flagged_fraction": round(result.flagged.size / n, 4),
        "estimated_noise_rate": round(float(1.0 - np.trace(joint)), 4),
        "flagged_by_class": {
            c: [int(f), int(t)]
            for c, f, t in zip(result.classes, flagged_by_class, totals, strict=True)
        },
        "flagged_by_pair": result.pair_counts(),
        "method": "confident learning (cleanlab find_label_issues, prune_by_noise_rate) on "
        "out-of-fold probabilities of the hybrid boosting (stratified folds, seed 0)",
    }


def write_report(
    result: Audit, lcs: Sequence[LightCurve], out: Path, source: str, views: Sequence[str],
    top: int = 48,
) -> dict[str, Any]:  # fmt: skip
    """Write ``label_issues.csv``, ``summary.json`` and ``gallery.png`` to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    suggested = result.suggested()
    with open(out / "label_issues.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["rank", "source_id", "label", "suggested", "p_label", "p_suggested",
                    "period_days", "n_points"])  # fmt: skip
        for rank, i in enumerate(result.flagged, 1):
            w.writerow([rank, result.ids[i], result.classes[result.labels[i]],
                        result.classes[suggested[i]], f"{result.probs[i, result.labels[i]]:.4f}",
                        f"{result.probs[i, suggested[i]]:.4f}", f"{result.periods[i]:.6g}",
                        lcs[i].t.size])  # fmt: skip
    doc = summary(result, source, views)
    (out / "summary.json").write_text(json.dumps(doc, indent=1) + "\n")
    gallery(result, lcs, out / "gallery.png", top)
    return doc


def gallery(result: Audit, lcs: Sequence[LightCurve], path: Path, top: int = 48) -> None:
    """The first ``top`` flagged curves folded at their period over two cycles (magnitudes
    downward, as astronomers plot them), titled with the given and the suggested class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = result.flagged[:top]
    cols = 6
    rows = max(1, -(-shown.size // cols))
    fig, axes = plt.subplots(
        rows, cols, figsize=(2.6 * cols, 2.2 * rows + 0.4), squeeze=False, layout="constrained"
    )
    suggested = result.suggested()
    for ax in axes.ravel()[shown.size :]:
        ax.set_axis_off()
    for ax, i in zip(axes.ravel(), shown, strict=False):
        lc, period = lcs[i], float(result.periods[i])
        phase = np.mod((lc.t - lc.t[0]) / period, 1.0) if period > 0 else np.zeros(lc.t.size)
        ax.scatter(np.concatenate([phase, phase + 1]), np.tile(lc.m, 2), s=2, c="k", lw=0)
        ax.invert_yaxis()
        ax.set_title(f"{lc.source_id}, P = {period:.5g} d\n{result.classes[result.labels[i]]} -> "
                     f"{result.classes[suggested[i]]} ({result.probs[i, suggested[i]]:.2f})",
                     fontsize=7)  # fmt: skip
        ax.tick_params(labelsize=6)
    fig.suptitle("flagged labels: given -> suggested (out-of-fold probability), folded at P",
                 fontsize=9)  # fmt: skip
    fig.savefig(path, dpi=80)
    plt.close(fig)
