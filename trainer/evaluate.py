"""Metrics of a model on labelled light curves, and the confusion-matrix figure."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, recall_score

from dmdt.lightcurves import LightCurve
from dmdt.model import Model, held_out_ids
from trainer import data

SPLITS = ("auto", "test", "all")


def classification_metrics(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, classes: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro F1, per-class recall and the confusion matrix.

    ``y_true``/``y_pred`` are class indices into ``classes``; the confusion matrix has true
    classes as rows, predicted as columns.
    """
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    labels = list(range(len(classes)))
    if yt.size == 0:
        raise ValueError("no light curves to evaluate")
    recall = recall_score(yt, yp, labels=labels, average=None, zero_division=0)
    present = np.isin(labels, yt)  # classes with no true member have no recall
    return {
        "n": int(yt.size),
        "accuracy": float(np.mean(yt == yp)),
        "balanced_accuracy": float(np.mean(recall[present])),  # sklearn's, without its warning
        "macro_f1": float(f1_score(yt, yp, average="macro", zero_division=0)),  # classes seen
        "per_class_recall": {
            c: (float(r) if ok else None) for c, r, ok in zip(classes, recall, present, strict=True)
        },
        "confusion_matrix": confusion_matrix(yt, yp, labels=labels).tolist(),
        "classes": list(classes),
    }


def training_record(clf: Model) -> tuple[set[str], str | None]:
    """The held-out ids and the training-data hash a model records (`dmdt.model.held_out_ids`:
    a CNN's ``training.split.test_ids``, a feature model's ``training.held_out_ids``)."""
    return set(held_out_ids(clf)), clf.training.get("data_hash")


def select_split(
    clf: Model, lcs: Sequence[LightCurve], split: str = "auto"
) -> tuple[list[LightCurve], str]:
    """The curves to evaluate and why: the model's held-out test ids, or all of them.

    ``auto`` uses the test ids when ``lcs`` (restricted to the model's classes) is the data the
    model was trained on, i.e. its hash equals the recorded training-data hash; otherwise the
    data is new to the model and every curve counts. ``test`` insists on the test ids.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    test_ids, trained_on = training_record(clf)
    if split == "all":
        return list(lcs), "all: every light curve of a known class"
    same = data.data_hash(lcs) == trained_on
    if split == "auto" and same and not test_ids:
        return list(lcs), "all: the model was trained on all of this data (training-set metrics)"
    if split == "test" or same:
        if not test_ids:
            raise ValueError("the model records no held-out test ids")
        chosen = [lc for lc in lcs if lc.source_id in test_ids]
        reason = "the model's held-out test ids" + (
            " (the data hash equals the model's training-data hash)" if same else ""
        )
        if not chosen:
            raise ValueError("none of the model's held-out test ids is in this data")
        return chosen, reason
    return list(lcs), "all: the data hash differs from the model's training data"


def no_known_class(lcs: Sequence[LightCurve], classes: Sequence[str]) -> str:
    """Why none of ``lcs`` can be scored: the file-name rule, and what the labels were."""
    unlabelled = sum(lc.label is None for lc in lcs)
    others = sorted({lc.label for lc in lcs if lc.label is not None})
    found = []
    if unlabelled:
        found.append(f"{unlabelled} without a class in their name")
    if others:
        found.append(f"classes {', '.join(others[:10])}{' ...' if len(others) > 10 else ''}")
    return (
        f"none of the {len(lcs)} light curves has a class the model knows "
        f"({', '.join(classes)}): a curve's class comes from its file name, <id>-<class>.csv "
        f"(e.g. 1109065026725-RRab.csv); found {' and '.join(found) or 'nothing'}"
    )


def evaluate(
    clf: Model, lcs: Sequence[LightCurve], split: str = "auto", progress: bool = False
) -> dict[str, Any]:
    """Metrics of a model of any kind (`dmdt.model.load_model`) on ``lcs``; curves of classes
    the model does not know are skipped."""
    from trainer.predict import classify

    known = [lc for lc in lcs if lc.label in clf.classes]
    if not known:
        raise ValueError(no_known_class(lcs, clf.classes))
    chosen, reason = select_split(clf, known, split)
    preds = classify(clf, chosen, progress)
    index = {c: i for i, c in enumerate(clf.classes)}
    y_true = np.array([index[str(lc.label)] for lc in chosen])
    result = classification_metrics(y_true, preds.probabilities.argmax(axis=1), list(clf.classes))
    result.update(
        n_skipped_unknown_class=len(lcs) - len(known),
        evaluated_on=reason,
        model_version=clf.version,
        model_content_hash=clf.content_hash,
    )
    return result


def plot_confusion(result: dict[str, Any], path: str | Path, title: str = "") -> None:
    """Row-normalised confusion matrix (counts in the cells) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = np.asarray(result["confusion_matrix"], dtype=float)
    classes = result["classes"]
    frac = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    size = 1.0 + 0.7 * len(classes)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(frac, cmap="Blues", vmin=0, vmax=1)
    ax.set(
        xticks=range(len(classes)),
        yticks=range(len(classes)),
        xticklabels=classes,
        yticklabels=classes,
        xlabel="predicted class",
        ylabel="true class",
        title=title or f"accuracy {result['accuracy']:.3f}, n = {result['n']}",
    )
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    for i in range(len(classes)):
        for j in range(len(classes)):
            color = "white" if frac[i, j] > 0.5 else "black"
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", color=color, fontsize=8)
    fig.colorbar(im, ax=ax, label="fraction of true class")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_json(obj: dict[str, Any], path: str | Path) -> None:
    """Write ``obj`` as indented JSON."""
    Path(path).write_text(json.dumps(obj, indent=1) + "\n")
