"""docs/results.md from the experiments' JSON, each number beside the paper's or "not available"."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from research.paper.common import Budget, Store

NA = "not available"
COMMAND = "python -m research.paper"
HEAD = ("accuracy", "balanced_accuracy", "macro_f1")


def _f(x: Any) -> str:
    return "–" if x is None else f"{x:.3f}"


def _spread(rows: list[dict[str, Any]], key: str) -> str:
    vals = [r[key] for r in rows if r.get(key) is not None]
    if not vals:
        return "–"
    if len(vals) == 1:
        return f"{vals[0]:.3f}"
    return f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1):.3f}"


def _ep(p: dict[str, Any]) -> str:
    """Epochs run and the best (kept) epoch; a best epoch at the end means still improving."""
    return f"{p['epochs_run']} ({p['best_epoch']})"


def _secs(doc: dict[str, Any]) -> str:
    """Mean training seconds over a document's parts."""
    return f"{np.mean([p['train_seconds'] for p in doc['parts'].values()]):.0f}"


def _cmd(name: str) -> str:
    return f"Regenerate: `{COMMAND} --only {name} --force`"


def _status(doc: dict[str, Any] | None, name: str) -> str | None:
    if doc is None:
        return f"*Not run yet.* Run: `{COMMAND} --only {name}`\n"
    if not doc.get("complete"):
        return (
            f"*Partial: {len(doc['parts'])} part(s) done; `{COMMAND} --only {name}` resumes "
            "from the cache.*\n"
        )
    return None


def _section(store: Store, out: list[str], title: str, name: str) -> dict[str, Any] | None:
    """Append the section's title and its run status; the experiment's results when it has
    any parts done, else None."""
    out.append(title)
    doc = store.read(name)
    note = _status(doc, name)
    if note:
        out.append(note)
    return doc if doc and doc["parts"] else None


def _recall_row(label: str, rows: list[dict[str, Any]], classes: list[str]) -> str:
    cells = [_spread([{"r": r["per_class_recall"].get(c)} for r in rows], "r") for c in classes]
    return f"| {label} | " + " | ".join(cells) + " |"


# Counts in the authors' code (docs/paper.md 1.6: transform.py class_len), not the paper's Table I.
AUTHORS_COUNTS = {"EW": 30593, "EA": 4658, "RRab": 2420, "RRc": 5433, "RRd": 500, "RS_CVn": 1514,
                  "LPV": 512}  # fmt: skip


def _data(store: Store, out: list[str]) -> None:
    doc = store.read("composites")
    if not doc or "images" not in doc["parts"]:
        return
    stats = doc["parts"]["images"]["per_class"]
    out.append("## 0. Data (Table I)\n")
    out.append("| class | curves here | authors' code (CRTS, not the paper's table) | paper |")
    out.append("|---|---|---|---|")
    for name, n_code in AUTHORS_COUNTS.items():
        n = stats.get(f"{name}/mean", {}).get("n", "–")
        out.append(f"| {name} | {n} | {n_code} | {NA} |")
    total = sum(v["n"] for k, v in stats.items() if k.endswith("/mean"))
    out.append(f"| total | {total} | {sum(AUTHORS_COUNTS.values())} | {NA} |\n")


def _seven(store: Store, out: list[str]) -> None:
    out.append(
        "## 1. Seven classes: shallow CNN, deep CNN, random forest (Table II last column, Fig. 7)\n"
    )
    seven, deep, forest = store.read("seven_class"), store.read("deep"), store.read("forest")
    for name, doc in (("seven_class", seven), ("deep", deep), ("forest", forest)):
        note = _status(doc, name)
        if note:
            out.append(f"{name}: {note}")
    rows: list[tuple[str, list[dict[str, Any]], str]] = []
    if seven:
        s = seven["settings"]
        rows.append(
            (
                "shallow CNN",
                list(seven["parts"].values()),
                f"Adam 2e-4, batch 32, ≤{s['epochs']} epochs, "
                f"early stopping patience {s['patience']}; {_secs(seven)} s of training per split",
            )
        )
    if deep:
        rows.append(
            (
                "deep CNN (reduced budget)",
                list(deep["parts"].values()),
                f"**fixed {deep['settings']['epochs']} epochs only** (best val-loss epoch kept); "
                "not converged: a CPU budget, not the paper's training; "
                f"{_secs(deep)} s of training on one thread",
            )
        )
    if forest:
        for kind in ("unweighted", "weighted"):
            parts = [v for k, v in forest["parts"].items() if k.startswith(kind + "/")]
            rows.append(
                (
                    f"random forest, {kind}",
                    parts,
                    f"{forest['settings']['n_estimators']} trees, 18 features",
                )
            )
    if not rows:
        return
    out.append(
        "CRTS, the paper's seven classes, held-out 20% (stratified per class). Mean ± std over "
        "the seeded splits listed (seed 0 is the split of `models/paper-cnn`); the paper's "
        "numbers could not be read (docs/paper.md), so its column says *not available*.\n"
    )
    out.append(
        "| model | splits | accuracy | paper | balanced accuracy | paper | macro F1 | paper "
        "| training |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|")
    for label, parts, how in rows:
        cells = " | ".join(f"{_spread(parts, k)} | {NA}" for k in HEAD)
        out.append(f"| {label} | {len(parts)} | {cells} | {how} |")
    classes = next(p for _, parts, _ in rows for p in parts)["classes"]
    out.append("\nPer-class recall (mean ± std over the same splits; paper: not available):\n")
    out.append("| model | " + " | ".join(classes) + " |")
    out.append("|---|" + "---|" * len(classes))
    out.extend(_recall_row(label, parts, classes) for label, parts, _ in rows)
    if seven and seven["parts"]:
        epochs = [p["epochs_run"] for p in seven["parts"].values()]
        out.append(
            f"\nShallow CNN epochs run per split (early stopping): {epochs}; best epochs: "
            f"{[p['best_epoch'] for p in seven['parts'].values()]}."
        )
    out.append(
        "\nFor context only (not the paper): the authors' 2019 Keras run of the same shallow "
        "net on "
        "their 36,504/9,126 split of 45,630 curves (two thirds EW) reached 0.836 test accuracy "
        "(docs/paper.md, 3.1); our data are far more balanced (EW is a fifth), so accuracies "
        "are not comparable.\n"
    )
    if (store.folder / "fig7_recall.png").exists():
        out.append("![per-class recall](results/fig7_recall.png)\n")
    if (store.folder / "seven_class_confusion.png").exists():
        out.append("![confusion matrix, shallow CNN, split 0](results/seven_class_confusion.png)\n")
    out.append(_cmd("seven_class") + " (deep: `--only deep`, forest: `--only forest`).\n")


def _pairwise(store: Store, out: list[str]) -> None:
    doc = _section(store, out, "## 2. The 21 pairwise binary classifiers (Table II)\n", "pairwise")
    if doc is None:
        return
    s = doc["settings"]
    out.append(
        f"Shallow CNN per pair (≤{s['epochs']} epochs, patience {s['patience']}: a compact "
        "budget so the 21 fit on one CPU thread), split seed 0 (20% of each pair held out); "
        "random forests (18 features) on the same split. Recall is the macro recall (mean of "
        "the two classes' recalls), F1 the macro F1, MCC Matthews' correlation (scikit-learn). "
        "Paper: not available for every cell.\n"
    )
    out.append(
        "| pair | n test | CNN recall | CNN F1 | CNN MCC | epochs (best) | RF MCC "
        "| RF weighted MCC | paper |"
    )
    out.append("|---|---|---|---|---|---|---|---|---|")
    for key, p in doc["parts"].items():
        c, rf, rfw = p["cnn"], p["rf"], p["rf_weighted"]
        out.append(
            f"| {key} | {c['n']} | {_f(c['macro_recall'])} | {_f(c['macro_f1'])} | "
            f"{_f(c['mcc'])} | {_ep(c)} | {_f(rf['mcc'])} | {_f(rfw['mcc'])} | {NA} |"
        )
    out.append(
        "\nPer-class recalls and the forests' recall/F1 are in `docs/results/pairwise.json`.\n"
    )
    out.append(_cmd("pairwise") + "\n")


def _images(store: Store, out: list[str]) -> None:
    doc = _section(
        store,
        out,
        "## 3. Composite and median dmdt images per class (Figs. 3 and 5)\n",
        "composites",
    )
    if doc is not None:
        out.append(
            "Mean (composite) and median uint8 image of every curve of each class, grid "
            "`mahabal2017` (x: dt bin, 24; y: dm bin, 22). The paper's figures: not available "
            "for comparison.\n"
        )
        out.append("![composites](results/composites.png)\n")
        out.append(_cmd("composites") + "\n")


def _rpca(store: Store, out: list[str]) -> None:
    doc = _section(
        store, out, "## 4. Robust PCA backgrounds and row elimination (Table IV, Fig. 4)\n", "rpca"
    )
    if doc is None:
        return
    s = doc["settings"]
    out.append(
        "Backgrounds from the split-0 training images only: principal component pursuit "
        "(`research/paper/rpca.py`, inexact ALM, λ = 1/√max(m, n)) on each class's "
        "(528 pixels × images) matrix; a background is the column of the low-rank part with "
        'the largest pixel sum (the authors\' "max background"). *per_class_mean*: the mean of '
        "the seven class backgrounds; *max*: the largest-sum column over all classes' low-rank "
        "parts; *pseudo_cadence*: PCP on 500 training images drawn per class (with replacement); "
        "*row_elimination*: the two central dm bins [−0.1, 0.1) zeroed. Each is subtracted from "
        "every image and clipped at 0, then the shallow CNN is retrained from scratch "
        f"(≤{s['epochs']} epochs, patience {s['patience']}) and scored on the split-0 test set. "
        "These definitions are ours (the paper's are not available).\n"
    )
    out.append(
        "| variant | accuracy | balanced accuracy | macro F1 | epochs (best) | background sum "
        "| paper |"
    )
    out.append("|---|---|---|---|---|---|---|")
    for key, p in doc["parts"].items():
        out.append(
            f"| {key} | {_f(p['accuracy'])} | {_f(p['balanced_accuracy'])} | "
            f"{_f(p['macro_f1'])} | {_ep(p)} | {p.get('background_sum', '–')} | {NA} |"
        )
    if (store.folder / "rpca_backgrounds.png").exists():
        out.append("\n![backgrounds](results/rpca_backgrounds.png)\n")
    info = next((p["pcp"] for p in doc["parts"].values() if "pcp" in p), None)
    if info:
        ranks = ", ".join(f"{k} {v['rank']} of {v['n']}" for k, v in info.items())
        out.append(
            f"Rank of the PCP low-rank part (images per class): {ranks}. With the standard λ the "
            "\"background\" keeps most of each class's structure, far from the authors' rank 1 "
            "(docs/paper.md 3.4); a rank-1 or larger-λ background is the obvious next run. Epochs "
            "(best): a best epoch at the last epoch means the run was still improving when the "
            "budget ended.\n"
        )
    out.append(_cmd("rpca") + "\n")


def _bins(store: Store, out: list[str]) -> None:
    doc = _section(store, out, "## 5. dmdt bin variants (Table III)\n", "bins")
    if doc is None:
        return
    s = doc["settings"]
    out.append(
        "The paper's variants could not be read; `mahabal2017` is the fiducial grid (dt = 0 "
        "prepended, as in the authors' code), `mahabal2017-23dt` the paper's dt edges as printed; "
        "the three `variant-*` grids are **ours** (docs/dmdt.md). Shallow CNN, split seed 0, "
        f"a modest budget: ≤{s['epochs']} epochs, patience {s['patience']}.\n"
    )
    out.append(
        "| grid | image (dt × dm) | accuracy | balanced accuracy | macro F1 | epochs (best) "
        "| paper |"
    )
    out.append("|---|---|---|---|---|---|---|")
    for key, p in doc["parts"].items():
        shape = "×".join(str(x) for x in p["grid_shape"])
        out.append(
            f"| {key} | {shape} | {_f(p['accuracy'])} | {_f(p['balanced_accuracy'])} | "
            f"{_f(p['macro_f1'])} | {_ep(p)} | {NA} |"
        )
    padded = [k for k, p in doc["parts"].items() if p.get("zero_padding_dm")]
    if padded:
        out.append(
            f"\n{', '.join(padded)}: the shallow net's valid 5×5 convolutions need at least 14 dm "
            "bins, so those images were zero-padded symmetrically on the dm axis to 14."
        )
    out.append("\n" + _cmd("bins") + "\n")


def _transfer(store: Store, out: list[str]) -> None:
    doc = _section(store, out, "## 6. Transfer learning to EROS-1 (Table V)\n", "transfer")
    if doc is None:
        return
    s, parts = doc["settings"], doc["parts"]
    out.append(
        f"Model `{doc['model']['path']}` ({doc['model']['version']}, trained on CRTS) applied to "
        f"{s['n_curves']} EROS-1 light curves (B and R bands separately; times in days). "
        "**The bundled EROS-1 values are magnitudes, not the fluxes the upstream description "
        "names** (each object's median is within 0.05 mag of the upstream `magnitude_b`, "
        "correlation 0.998, range 13–21 mag), and `dmdt.lightcurves.read_eros1` reads them as "
        "magnitudes. *direct_as_read* reads them as fluxes (m = −2.5 log10(value), "
        "`research.paper.transfer.as_if_flux`), which shrinks every dm about 18-fold, for "
        "the record. Classes are mapped "
        "EW/EA → EB, RRab/RRc/RRd → RRLyrae, LPV → Mira (RS_CVn has no "
        "EROS-1 class, so such predictions are errors); Cepheids have no CRTS class and are "
        "counted apart. Then a 4-class net (EB, RRLyrae, Mira, Cepheid) is trained on "
        f"{s['tune_fraction']:.0%} of the EROS-1 objects (both bands; stratified, split by object) "
        "starting from the CRTS model's convolutional layers (*fine_tuned*) or from scratch "
        f"(*scratch*), ≤{s['epochs']} epochs, patience {s['patience']}, and scored on the other "
        "objects. Paper: not available.\n"
    )
    out.append("| run | n | accuracy | balanced accuracy | EB | RRLyrae | Mira | Cepheid | paper |")
    out.append("|---|---|---|---|---|---|---|---|---|")
    for key, p in parts.items():
        r = p["per_class_recall"]
        cells = " | ".join(_f(r.get(c)) for c in ("EB", "RRLyrae", "Mira", "Cepheid"))
        out.append(
            f"| {key} | {p['n']} | {_f(p['accuracy'])} | {_f(p['balanced_accuracy'])} | "
            f"{cells} | {NA} |"
        )
    for key in ("direct/B", "direct/R", "direct_as_read/R"):
        if key in parts:
            c = parts[key]["cepheids"]
            out.append(f"\n{key}: the {c['n']} Cepheids were predicted as {c['predicted_as']}.")
    out.append(
        "\nPer-class cells are recalls; for *direct* rows accuracy counts EB, RRLyrae and Mira "
        "curves only.\n"
    )
    out.append(
        "The CRTS model sees EROS-1 through a different cadence (about 120 points over 900 days, "
        "few pairs closer than a day, where CRTS has four visits a night) and passband, which the "
        "dt axis of the image encodes; hence the direct rows.\n"
    )
    out.append(_cmd("transfer") + "\n")


def _figures(store: Store) -> None:
    """Fig. 7 (per-class recall, CNN vs forests) and the split-0 confusion matrix."""
    seven, forest = store.read("seven_class"), store.read("forest")
    if not seven or "seed0" not in seven["parts"]:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trainer.evaluate import plot_confusion

    s0 = seven["parts"]["seed0"]
    plot_confusion(
        s0,
        store.folder / "seven_class_confusion.png",
        title=f"shallow CNN, split 0: accuracy {s0['accuracy']:.3f}, n = {s0['n']}",
    )
    classes = s0["classes"]
    series = {"shallow CNN": list(seven["parts"].values())}
    if forest:
        for kind in ("unweighted", "weighted"):
            series[f"RF {kind}"] = [
                v for k, v in forest["parts"].items() if k.startswith(kind + "/")
            ]
    fig, ax = plt.subplots(figsize=(6.5, 2.8))
    width = 0.8 / len(series)
    for j, (label, parts) in enumerate(series.items()):
        vals = [np.mean([p["per_class_recall"][c] for p in parts]) for c in classes]
        ax.bar(np.arange(len(classes)) + j * width, vals, width, label=label)
    ax.set(
        xticks=np.arange(len(classes)) + 0.4 - width / 2,
        xticklabels=classes,
        ylabel="recall",
        ylim=(0, 1),
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(store.folder / "fig7_recall.png", dpi=90)
    plt.close(fig)


# The budget fields each experiment depends on.
BUDGET_KEYS = {
    "forest": ("per_class", "seeds", "trees"),
    "composites": ("per_class",),
    "transfer": ("eros_per_class", "transfer_epochs", "transfer_patience", "transfer_frac"),
    "bins": ("per_class", "variant_epochs", "variant_patience"),
    "pairwise": ("per_class", "pair_epochs", "pair_patience", "trees"),
    "rpca": ("per_class", "variant_epochs", "variant_patience", "cadence_per_class"),
    "seven_class": ("per_class", "seeds", "seven_epochs", "seven_patience"),
    "deep": ("per_class", "deep_epochs"),
}


def _budgets(store: Store, budget: Budget, out: list[str]) -> None:
    """List the cached experiments computed under other settings than the current budget."""
    now = json.loads(json.dumps(budget.to_dict()))  # tuples as JSON lists, like the cache
    lines = []
    for name, keys in BUDGET_KEYS.items():
        doc = store.read(name)
        if doc is None:
            continue
        then = doc.get("budget", {})
        diff = [f"{k} {then.get(k)} (now {now[k]})" for k in keys if then.get(k) != now[k]]
        if diff:
            lines.append(f"- `{name}`: {', '.join(diff)}; `{COMMAND} --only {name} --force`")
    if lines:
        out.append("## Cached under an older budget\n")
        out.append(
            "These results stand as computed; the current budget in "
            "`research/paper/common.py` asks for more:\n"
        )
        out.extend(lines)
        out.append("")


def _mean_std(vals: list[float]) -> str:
    return "–" if not vals else f"{np.mean(vals):.3f} ± {np.std(vals):.3f}"


PaperRow = tuple[str, str, list[tuple[str, dict[str, Any]]]]


def _paper_rows(store: Store) -> list[PaperRow]:
    """(label, source, [(seed, part)]) of the paper reproductions with seeded 80/20 splits."""
    rows: list[PaperRow] = []
    for name, label in (("seven_class", "shallow dmdt CNN"), ("deep", "deep dmdt CNN")):
        doc = store.read(name)
        if doc and doc["parts"]:
            rows.append((label, f"results/{name}.json", list(doc["parts"].items())))
    forest = store.read("forest")
    for kind in ("unweighted", "weighted"):
        parts = [(k.split("/")[1], v) for k, v in (forest or {}).get("parts", {}).items()
                 if k.startswith(kind + "/")]  # fmt: skip
        if parts:
            rows.append((f"random forest, 18 features, {kind}", "results/forest.json", parts))
    return rows


def _side_by_side(store: Store, out: list[str]) -> None:
    """Every model of docs/results/ and docs/beyond/ in one table per class set."""
    beyond = store.folder.parent / "beyond"
    docs = []
    for path in sorted(beyond.glob("*.json")):
        doc = json.loads(path.read_text())
        if "summary" in doc and "parts" in doc:
            docs.append(doc)
    if not docs and not _paper_rows(store):
        return
    out.append("## Every model side by side\n")
    out.append(
        "Each model measured in this repository, from the saved JSON (`docs/results/` for the "
        "paper's reproduction, `docs/beyond/` for the later models, `python -m "
        "research.comparison`). Paper reproductions: mean ± std over seeded 80/20 splits, and "
        "split 0 alone, whose test part is the held-out part of the later models' harness (20% per "
        "class, stratified, seed 0). The later models: mean ± std over 5 folds of the other 80% "
        "(train on 4), and held-out (train on all 5 folds). Sorted by held-out accuracy; the "
        "accuracy targets: accuracy ≥ 0.93, macro-F1 ≥ 0.92, RRd recall ≥ 0.80.\n"
    )
    head = (
        "| model | source | evaluation | accuracy | macro-F1 | RRd recall | held-out accuracy "
        "| held-out macro-F1 | held-out RRd recall |"
    )
    for class_set, title in (("7", "Seven paper classes"), ("16", "All 16 CRTS types")):
        rows: list[tuple[float, str]] = []
        if class_set == "7":
            for label, source, parts in _paper_rows(store):
                runs = [p for _, p in parts]
                s0 = dict(parts).get("seed0")
                rrd = [p["per_class_recall"].get("RRd") for p in runs]
                cells = [
                    _mean_std([p["accuracy"] for p in runs]),
                    _mean_std([p["macro_f1"] for p in runs]),
                    _mean_std([r for r in rrd if r is not None]),
                ]
                held = ["–"] * 3 if s0 is None else [
                    _f(s0["accuracy"]), _f(s0["macro_f1"]), _f(s0["per_class_recall"].get("RRd"))
                ]  # fmt: skip
                line = (f"| {label} | `{source}` | {len(runs)} seeded split(s) | "
                        + " | ".join(cells + held) + " |")  # fmt: skip
                rows.append((s0["accuracy"] if s0 else 0.0, line))
        for doc in docs:
            if doc.get("class_set") != class_set:
                continue
            s = doc["summary"]
            stats = (s["accuracy"], s["macro_f1"], s["per_class_recall"].get("RRd") or {})
            folds = [
                "–" if st.get("mean") is None else f"{st['mean']:.3f} ± {st['std']:.3f}"
                for st in stats
            ]
            held = [_f(st.get("held_out")) for st in stats]
            label, where = doc.get("label", doc["model"]), f"`beyond/{doc['model']}.json`"
            text = " | ".join(folds + held)
            line = f"| {label} | {where} | {s['n_folds']} folds + held-out | {text} |"
            rows.append((s["accuracy"].get("held_out") or 0.0, line))
        if not rows:
            continue
        out.append(f"### {title}\n")
        out.append(head)
        out.append("|---|---|---|---|---|---|---|---|---|")
        out.extend(line for _, line in sorted(rows, key=lambda r: -r[0]))
        out.append("")


def write(store: Store, doc: Path, budget: Budget) -> None:
    """Rewrite the results document from the JSON in ``store``."""
    _figures(store)
    out = [
        "# Results: Mahabal et al. 2017 reproduced on the repository's data\n",
        f"Generated by `{COMMAND}` from the JSON in "
        f"`{store.folder.name}/`; budget **{budget.name}**. Cached experiments are reused; "
        "`--force` recomputes, `--only NAME` runs one; an interrupted run resumes, since every "
        "part (a split, a pair, a grid, a variant) is saved as soon as it ends. The paper's own "
        "numbers (Tables II–V) could not be read (docs/paper.md), so every paper column says "
        "*not available*; nothing here is compared with an invented figure. Data: the cleaned "
        "CRTS curves of the seven classes (section 0) "
        "(`data/crts/`), EROS-1 (`data/eros1/`). CPU, one torch thread.\n",
    ]
    if budget.name != "full":
        out.append(f"**Smoke run ({budget.name} budget): these numbers mean nothing.**\n")
    for section in (_data, _seven, _pairwise, _images, _rpca, _bins, _transfer, _side_by_side):
        section(store, out)
    _budgets(store, budget, out)
    doc.parent.mkdir(parents=True, exist_ok=True)
    rel = Path(os.path.relpath(store.folder, doc.parent)).as_posix()
    doc.write_text("\n".join(out).replace("](results/", f"]({rel}/") + "\n")
