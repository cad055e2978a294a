"""docs/ceiling.md and its figure from ceiling.json (research.ceiling.runner): the learning curve,
its saturation fit, and the out-of-fold accuracy by data quality; no recomputation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

VIEWS = ("curve", "intravisit", "visit_medians")  # gbm_views_7's three views, in its order

TARGETS = {"accuracy": 0.93, "macro_f1": 0.92, "RRd recall": 0.80}  # the comparison's targets

QUALITY = {
    "points": "Points in the curve (after cleaning)",
    "magnitude": "Median magnitude",
    "snr": "Amplitude signal-to-noise: half the 5-95% range over the median error",
}


def figure(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = doc["learning_curve"]
    n = np.array([r["n_train"] for r in rows])
    rrd = doc["classes"].index("RRd")
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4.2))
    grid = np.geomspace(n.min(), 20 * n.max(), 200)
    for key, label, colour in (
        ("accuracy", "accuracy", "C0"),
        ("macro_f1", "macro-F1", "C1"),
        ("RRd recall", "RRd recall", "C2"),
    ):
        y = [r["recall"][rrd] if key == "RRd recall" else r[key] for r in rows]
        err = [0.0 if key == "RRd recall" else r[f"{key}_std"] for r in rows]
        ax.errorbar(n, y, yerr=err, fmt="o", color=colour, label=label, capsize=2)
        fit = doc["saturation"][key]
        curve = fit["asymptote"] - fit["scale"] * grid ** -fit["exponent"]
        ax.plot(grid, curve, "-", color=colour, lw=1)
        ax.axhline(TARGETS[key], color=colour, ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("training curves (stratified fraction of a fold's training part)")
    ax.set_ylabel("score on the fold")
    ax.set_title("gbm_views_7: learning curve, power-law fit (dotted: the accuracy targets)")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8, loc="lower right")
    for (name, marker), colour in zip(
        (("points", "o"), ("magnitude", "s"), ("snr", "^")), ("C0", "C1", "C2"), strict=True
    ):
        bins = doc["quality_bins"][name]
        x = range(1, len(bins) + 1)
        label = QUALITY[name].split(":")[0]
        bx.plot(x, [b["mix_adjusted"] for b in bins], marker=marker, color=colour, label=label)
        bx.plot(x, [b["accuracy"] for b in bins], marker=marker, color=colour, ls=":", alpha=0.5)
        acc = bins
    bx.axhline(TARGETS["accuracy"], color="k", ls=":", lw=1)
    bx.set_xticks(range(1, len(acc) + 1))
    bx.set_xlabel("quintile (1 = fewest points / brightest / lowest signal-to-noise)")
    bx.set_ylabel("out-of-fold accuracy at the overall class mix")
    bx.set_title("accuracy by data quality (faint lines: the quintile's own mix; black: 0.93)")
    bx.title.set_fontsize(9)
    bx.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


def findings(doc: dict[str, Any]) -> list[str]:
    """What the learning curve says, in numbers read from ``doc``."""
    rows = doc["learning_curve"]
    rrd = doc["classes"].index("RRd")
    fit = doc["saturation"]
    half = min(rows, key=lambda r: abs(r["fraction"] - 0.5))
    whole = rows[-1]
    acc, f1, rec = fit["accuracy"], fit["macro_f1"], fit["RRd recall"]
    return [
        f"Doubling the training curves from {half['n_train']:,.0f} to {whole['n_train']:,.0f} "
        f"moves accuracy by {whole['accuracy'] - half['accuracy']:+.4f} and macro-F1 by "
        f"{whole['macro_f1'] - half['macro_f1']:+.4f}, well inside the fold-to-fold spread "
        f"({whole['accuracy_std']:.3f}). Extrapolated to unlimited training data of the same kind, "
        f"accuracy levels off at {acc['asymptote']:.3f} and macro-F1 at {f1['asymptote']:.3f}, "
        f"against targets of {TARGETS['accuracy']:.2f} and {TARGETS['macro_f1']:.2f}: more "
        "curves like these, labelled the same way, would not reach them with this model. RRd "
        f"recall is the exception: it still rises ({half['recall'][rrd]:.3f} -> "
        f"{whole['recall'][rrd]:.3f}) and levels off near {rec['asymptote']:.2f}, so more RRd "
        "curves would help that class (there are 250 in all).",
    ]


def reading(doc: dict[str, Any]) -> list[str]:
    """What the quality bins say, in numbers read from ``doc``, and what follows."""
    classes = doc["classes"]
    points = doc["quality_bins"]["points"]
    mags = doc["quality_bins"]["magnitude"]
    best = max(
        (b["mix_adjusted"], QUALITY[name].split(":")[0].split(" (")[0], i)
        for name, bins in doc["quality_bins"].items()
        for i, b in enumerate(bins, 1)
    )
    well = points[2:]  # the three best-sampled fifths
    faint = mags[-1]
    worst = sorted((r, c) for r, c in zip(faint["recall"], classes, strict=True) if r is not None)[
        :2
    ]
    return [
        "Data quality matters at the sparse and faint ends: at the overall class mix, the fifth "
        f"with the fewest points scores {points[0]['mix_adjusted']:.3f} and the faintest fifth "
        f"{faint['mix_adjusted']:.3f} (its {worst[0][1]} and {worst[1][1]} recall "
        f"{worst[0][0]:.2f} and {worst[1][0]:.2f}). But it levels off: the three best-sampled "
        f"fifths ({well[0]['low']:.0f} points and more) score "
        + ", ".join(f"{b['mix_adjusted']:.3f}" for b in well)
        + f", and the best quintile of any measure (quintile {best[2]} of {best[1].lower()}) "
        f"scores {best[0]:.3f}, below {TARGETS['accuracy']:.2f}. (A quintile with a handful of "
        "curves of a class, such as RRd or LPV at low signal-to-noise, has a noisy recall and "
        "sways its column at the overall mix.) Well-measured curves are confused "
        "as well: the pairs of the out-of-fold confusion matrix (docs/beyond.md: RRc / RRd, "
        "EW / RS_CVn, EW / EA, RRab / RRc, EW / RRc) overlap in period and shape, and the label "
        "audit (docs/label_audit.md) estimates about 1.3% plainly wrong labels among them.",
        "",
        "Together with the learning curve: neither more curves like these nor better-measured "
        "ones would bring this model to the accuracy targets. They need information that the light "
        "curves and labels do not carry: a colour or parallax for each source (EW against "
        "RS_CVn and RRc, RRab against RRc), labels vetted by people who classify variable "
        "stars, or many more RRd curves. None of those is in the repository's data, and this "
        "machine cannot reach the catalogues that hold them. The analysis is of one model, the "
        "harness's best shipped row; docs/beyond.md lists the others, none of which is more "
        "than 0.002 better on the folds.",
    ]


def markdown(doc: dict[str, Any], figure_path: str, command: str) -> str:
    classes = doc["classes"]
    rrd = classes.index("RRd")
    fit = doc["saturation"]
    lines = [
        "# Where the accuracy of the periodic-feature models stops",
        "",
        f"Generated by `{command}` from `ceiling.json` ({doc['n_curves']:,} curves, seven "
        f"classes; {doc['wall_seconds']:.0f} s of model fits). The model is the harness's best "
        "row, `gbm_views_7` (docs/beyond.md; shipped as models/hybrid-views-7), on the harness's "
        "five folds.",
        "",
        "## Learning curve",
        "",
        "Each fold is scored by the model trained on a stratified fraction of the other four "
        "folds (several draws for the small fractions); the mean and spread are over folds and "
        "draws. The fit is `score(n) = a - b n^-c`; `a` is the score with unlimited training "
        "data like these curves.",
        "",
        "| fraction | training curves | fits | accuracy | macro-F1 | RRd recall |",
        "|---|---|---|---|---|---|",
    ]
    for r in doc["learning_curve"]:
        lines.append(
            f"| {r['fraction']:g} | {r['n_train']:,.0f} | {r['measurements']} | "
            f"{r['accuracy']:.4f} ± {r['accuracy_std']:.4f} | "
            f"{r['macro_f1']:.4f} ± {r['macro_f1_std']:.4f} | {r['recall'][rrd]:.3f} |"
        )
    lines += ["", "| score | target | fitted asymptote `a` | exponent `c` |", "|---|---|---|---|"]
    for key, target in TARGETS.items():
        f = fit[key]
        lines.append(
            f"| {key} | {target:.2f} | {f['asymptote']:.3f} ± {f['asymptote_se']:.3f} | "
            f"{f['exponent']:.2f} |"
        )
    lines += ["", *findings(doc)]
    lines += [
        "",
        f"![learning curve and accuracy by data quality]({figure_path})",
        "",
        "## Errors by data quality",
        "",
        f"Out-of-fold predictions with all the training data (accuracy "
        f"{doc['out_of_fold_accuracy']:.3f}), in quintiles of each measure. A quintile's "
        "accuracy depends on its class mix (large-amplitude LPV and RRab fill the top "
        "signal-to-noise fifth); the next column weights each class's recall in the quintile by "
        "the class's share of all the curves, which takes the mix out. Then the recall of each "
        "class, with its number of curves in the quintile.",
        "",
    ]
    for name, what in QUALITY.items():
        lines += [
            f"**{what}**",
            "",
            "| quintile | range | curves | accuracy | at the overall class mix | "
            + " | ".join(classes)
            + " |",
            "|---|---|---|---|---|" + "---|" * len(classes),
        ]
        for i, b in enumerate(doc["quality_bins"][name], 1):
            rec = " | ".join(
                "" if r is None else f"{r:.2f} ({c})"
                for r, c in zip(b["recall"], b["counts"], strict=True)
            )
            lines.append(
                f"| {i} | {b['low']:.2f} - {b['high']:.2f} | {b['n']} | {b['accuracy']:.3f} | "
                f"{b['mix_adjusted']:.3f} | {rec} |"
            )
        lines.append("")
    lines += [
        "## What it means",
        "",
        *reading(doc),
    ]
    return "\n".join(lines) + "\n"
