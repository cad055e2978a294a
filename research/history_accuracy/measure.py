"""Accuracy as a source's history grows: a served model on the first k points of curves, as the
stream classifies a source after its k-th alert (research.history_accuracy writes the report,
docs/history.md)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from dmdt.lightcurves import LightCurve
from dmdt.model import lightcurve_counts, load_model

REFRESH_FRACTION = 0.1  # the broker's default feature_refresh_fraction


_MODEL: dict[str, Any] = {}


def _features(job: tuple[str, np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
    path, t, m, err = job
    if path not in _MODEL:
        _MODEL[path] = load_model(path, "cpu")
    return np.asarray(_MODEL[path].features(t, m, err))


def features_of(path: str, parts: Sequence[tuple[LightCurve, int]], jobs: int) -> np.ndarray:
    """The model's features of the first k points of each (curve, k), ``jobs`` processes."""
    from tqdm import tqdm

    work = [(path, lc.t[:k], lc.m[:k], lc.err[:k]) for lc, k in parts]
    desc = f"{Path(path).name} features"
    if jobs <= 1:
        return np.array([_features(w) for w in tqdm(work, desc=desc, unit="curve")])
    import multiprocessing as mp

    with ProcessPoolExecutor(jobs, mp.get_context("spawn")) as pool:
        rows = list(tqdm(pool.map(_features, work, chunksize=16), total=len(work), desc=desc))
    return np.array(rows)


def evaluate(path: str, curves: list[LightCurve], levels: Sequence[int], jobs: int) -> dict:
    """Accuracy of one model at each level, on the whole curves, and (a model that reads
    features) with the refresh policy's oldest features."""
    clf = load_model(path, "cpu")
    min_points = max(2, clf.min_points)  # as the broker serves it (broker.models.ServedModel)
    _MODEL[path] = clf  # features_of's one-process path uses it instead of loading it again
    classes = list(clf.classes)
    truth = np.array([classes.index(str(lc.label)) for lc in curves])
    n = np.array([len(lc) for lc in curves])
    # every (curve, k) the report needs: each level, the whole curve, the refresh policy's oldest
    stale_k = np.maximum(np.floor(n / (1 + REFRESH_FRACTION)).astype(int), min_points)
    parts: list[tuple[LightCurve, int]] = [(lc, int(k)) for lc, k in zip(curves, n, strict=True)]
    for k in levels:
        parts += [(lc, k) for lc in curves if len(lc) > k]
    reads_features = bool(clf.feature_names)
    if reads_features:
        parts += [(lc, int(k)) for lc, k in zip(curves, stale_k, strict=True)]
        parts = list({(lc.source_id, k): (lc, k) for lc, k in parts}.values())  # no repeats
        t0 = time.perf_counter()
        feats = features_of(path, parts, jobs)
        feature_s = time.perf_counter() - t0
        row = {(lc.source_id, k): i for i, (lc, k) in enumerate(parts)}

    def probs(cut: list[LightCurve], feature_k: Sequence[int] | np.ndarray) -> np.ndarray:
        counts, n_points = lightcurve_counts(cut, clf.grid)
        if not reads_features:
            return np.asarray(clf.classify(counts, n_points, np.zeros((len(cut), 0))))
        x = feats[[row[(lc.source_id, k)] for lc, k in zip(cut, feature_k, strict=True)]]
        return np.asarray(clf.classify(counts, n_points, x))

    whole = probs(curves, n).argmax(axis=1) == truth
    out: dict[str, Any] = {
        "model": Path(path).name if Path(path).is_absolute() else path,
        "name": clf.name,
        "version": clf.version,
        "kind": clf.kind,
        "min_points": min_points,
        "classes": classes,
        "whole_accuracy": float(np.mean(whole)),
        "levels": [],
    }
    rrd = classes.index("RRd")
    for k in levels:
        keep = np.flatnonzero(n >= k)
        cut = [curves[i].head(k) for i in keep]
        right = probs(cut, [k] * len(cut)).argmax(axis=1) == truth[keep]
        is_rrd = truth[keep] == rrd
        out["levels"].append(
            {
                "k": k,
                "curves": int(keep.size),
                "accuracy": float(np.mean(right)),
                "whole_accuracy": float(np.mean(whole[keep])),
                "rrd_recall": float(np.mean(right[is_rrd])) if is_rrd.any() else None,
                "per_class_recall": [
                    float(np.mean(right[truth[keep] == c])) if np.any(truth[keep] == c) else None
                    for c in range(len(classes))
                ],
            }
        )
    if reads_features:
        stale = probs(curves, stale_k).argmax(axis=1) == truth
        out["refresh"] = {
            "fraction": REFRESH_FRACTION,
            "accuracy": float(np.mean(stale)),
            "changed": int(np.sum(stale != whole)),
        }
        out["features_ms_per_curve"] = 1e3 * feature_s * max(jobs, 1) / len(parts)
    return out
