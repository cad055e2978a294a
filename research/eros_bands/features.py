"""EROS-1's two bands as model inputs: each band's periodic features, the colour features across
the bands, each band's dmdt image, and the CRTS training set of the transferred model.

Everything here works on per-object feature matrices (one row per EROS-1 object, NaN where a band
was too short to keep): single-band models see one band's periodic features, the joint model both
bands' plus the colour features of :func:`colour_features`. The upstream ``split`` (train/test)
of the bundled file is the split every model is scored on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dmdt import periodic
from dmdt.datasets import bundled_path, load_labelled
from dmdt.lightcurves import LightCurve
from research import folds as harness
from trainer import data

EROS_CLASSES = ("EB", "Cepheid", "RRLyrae", "Mira")
BANDS = ("B", "R")
# features that describe the survey (depth, baseline, cadence) more than the star: left out of
# the cross-survey transfer variant
SURVEY_FEATURES = (
    "mean",
    "weighted_mean",
    "duration",
    "observation_count",
    "linear_fit_slope_sigma",
    "linear_trend_sigma",
    "period_snr_0",
    "period_snr_1",
    "period_snr_2",
    "log10_fap",
    "residual_period_snr",
)
COLOUR_NAMES = (
    "median_b_minus_r",
    "mean_b_minus_r",
    "log_amplitude_ratio_b_r",
    "log_std_ratio_b_r",
    "log_period_diff_b_r",
    "period_agree_b_r",
    "period_agree_harmonic_b_r",
    "log_period_mean",
)


@dataclass
class Curves:
    """Light curves with the hash :func:`research.folds.cached_features` keys its cache on."""

    lcs: list[LightCurve]
    data_hash: str


@dataclass
class Eros:
    """EROS-1 objects (sorted by id): labels, upstream split and each band's curve (or None)."""

    ids: list[str]
    labels: np.ndarray  # (n,) index into EROS_CLASSES
    test: np.ndarray  # (n,) bool: upstream split == "test"
    bands: dict[str, list[LightCurve | None]]

    def curves(self, band: str) -> Curves:
        """The kept curves of ``band`` (in object order) for feature caching."""
        lcs = [lc for lc in self.bands[band] if lc is not None]
        return Curves(lcs, data.data_hash(lcs))


def load_eros(per_class: int | None = None, min_points: int = 20) -> Eros:
    """The cleaned two-band EROS-1 objects; ``per_class`` keeps the first objects of each class
    (by id) for quick runs."""
    with np.load(bundled_path("eros1"), allow_pickle=False) as z:
        split = dict(zip(z["id"].tolist(), z["split"].tolist(), strict=True))
    by_obj: dict[str, dict[str, LightCurve]] = {}
    for lc in load_labelled("eros1", min_points=min_points):
        by_obj.setdefault(lc.source_id, {})[str(lc.band)] = lc
    ids = sorted(by_obj)
    if per_class is not None:
        seen: dict[str, int] = {}
        keep = []
        for i in ids:
            lab = str(next(iter(by_obj[i].values())).label)
            if seen.get(lab, 0) < per_class:
                seen[lab] = seen.get(lab, 0) + 1
                keep.append(i)
        ids = keep
    labels = np.array([EROS_CLASSES.index(str(next(iter(by_obj[i].values())).label)) for i in ids])
    test = np.array([split[i] == "test" for i in ids])
    bands = {b: [by_obj[i].get(b) for i in ids] for b in BANDS}
    return Eros(ids, labels, test, bands)


FEATURE_NAMES = periodic.FEATURE_NAMES
FEATURES = f"periodic_v{periodic.FEATURES_VERSION}"  # the cache name carries the version


def current_features(lcs: Sequence[LightCurve]) -> np.ndarray:
    """The periodic features of ``lcs`` (dmdt/periodic.py, the current version)."""
    return periodic.features(lcs)[0]


def band_features(eros: Eros, band: str, cache: Path) -> np.ndarray:
    """Periodic features ``(n_objects, n_features)`` of one band (NaN rows where the band is
    missing), cached under ``cache``."""
    curves = eros.curves(band)
    x, _ = harness.cached_features(
        curves,  # type: ignore[arg-type]  # duck-typed: lcs and data_hash
        f"eros1-{band}-{FEATURES}",
        current_features,
        cache,
    )
    out = np.full((len(eros.ids), x.shape[1]), np.nan)
    have = np.flatnonzero([lc is not None for lc in eros.bands[band]])
    out[have] = x
    return out


def _col(name: str) -> int:
    return FEATURE_NAMES.index(name)


def colour_features(eros: Eros, fb: np.ndarray, fr: np.ndarray) -> np.ndarray:
    """Cross-band features ``(n, len(COLOUR_NAMES))``: colour, amplitude and scatter ratios,
    and how well the two bands' periods agree (the same star should show the same period)."""
    med = {
        b: np.array([np.nan if lc is None else np.median(lc.m) for lc in eros.bands[b]])
        for b in BANDS
    }
    amp = _col("amplitude")
    std = _col("standard_deviation")
    per = _col("period")
    mean = _col("mean")
    with np.errstate(divide="ignore", invalid="ignore"):
        lpb, lpr = np.log10(fb[:, per]), np.log10(fr[:, per])
        d = np.abs(lpb - lpr)
        # harmonic agreement: same period, or one twice the other (eclipsing binaries)
        harm = np.minimum(d, np.abs(d - np.log10(2.0)))
        cols = [
            med["B"] - med["R"],
            fb[:, mean] - fr[:, mean],
            np.log10(fb[:, amp] / fr[:, amp]),
            np.log10(fb[:, std] / fr[:, std]),
            d,
            (d < 0.01).astype(float),
            (harm < 0.01).astype(float),
            0.5 * (lpb + lpr),
        ]
    out = np.stack(cols, axis=1)
    out[~np.isfinite(out)] = np.nan
    missing = ~(np.isfinite(fb[:, per]) & np.isfinite(fr[:, per]))
    out[missing, 5:7] = np.nan
    return out


def feature_sets(eros: Eros, cache: Path) -> dict[str, tuple[np.ndarray, list[str]]]:
    """The model inputs compared: ``B``, ``R``, ``B+R`` (concatenated), ``B+R+colour``."""
    fb, fr = band_features(eros, "B", cache), band_features(eros, "R", cache)
    names = list(FEATURE_NAMES)
    col = colour_features(eros, fb, fr)
    both = np.concatenate([fb, fr], axis=1)
    both_names = [f"B_{n}" for n in names] + [f"R_{n}" for n in names]
    return {
        "B": (fb, [f"B_{n}" for n in names]),
        "R": (fr, [f"R_{n}" for n in names]),
        "B+R": (both, both_names),
        "B+R+colour": (np.concatenate([both, col], axis=1), [*both_names, *COLOUR_NAMES]),
    }


def fit_gbm(x: np.ndarray, y: np.ndarray, n_classes: int, trees: int, balanced: bool = True) -> Any:
    """The comparison's LightGBM (research.candidates.make_gbm), one thread."""
    from research.candidates import make_gbm

    return make_gbm(n_classes, trees, balanced).fit(x, y)


def map_predictions(crts_classes: Sequence[str], pred: np.ndarray) -> np.ndarray:
    """CRTS class indices -> EROS-side group names (EB, RRLyrae, Mira or RS_CVn)."""
    return np.array([data.CRTS_TO_EROS[crts_classes[k]] for k in pred])


def survey_invariant_columns() -> np.ndarray:
    """Column indices of the periodic features minus :data:`SURVEY_FEATURES`."""
    return np.array([i for i, n in enumerate(FEATURE_NAMES) if n not in SURVEY_FEATURES])


def crts_training_set(
    budget: harness.Budget, folds_dir: Path, cache: Path
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """The 7-class CRTS curves' periodic features (the comparison's cache), labels, class
    names."""
    ds16 = harness.Dataset("16", budget, folds_dir)
    ds7 = harness.Dataset("7", budget, folds_dir)
    x16, _ = harness.cached_features(ds16, FEATURES, current_features, cache)
    row = {(lc.source_id, lc.label): i for i, lc in enumerate(ds16.lcs)}
    x = x16[[row[(lc.source_id, lc.label)] for lc in ds7.lcs]]
    return x, ds7.labels, tuple(ds7.classes)


# ------------------------------------------------------------------ the two-channel dmdt CNN


def band_images(eros: Eros, band: str, grid: str = "mahabal2017") -> np.ndarray:
    """The paper's uint8 dmdt images ``(n_objects, n_dt, n_dm)`` of one band (zeros where the
    band is missing), on the CRTS grid."""
    from dmdt.grids import get_grid

    g = get_grid(grid)
    out = np.zeros((len(eros.ids), *g.shape), dtype=np.uint8)
    have = np.flatnonzero([lc is not None for lc in eros.bands[band]])
    out[have] = data.images([eros.bands[band][i] for i in have], g)  # type: ignore[misc]
    return out


def make_band_net(in_channels: int, n_classes: int, shape: tuple[int, int]) -> Any:
    """The shallow net (dmdt.nets.ShallowNet's layers) with one input channel per band."""
    from torch import nn

    h, w = (shape[0] - 4) // 2 - 4, (shape[1] - 4) // 2 - 4
    return nn.Sequential(
        nn.Conv2d(in_channels, 16, 5),  # (b, 16, n_dt - 4, n_dm - 4)
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 64, 5),  # (b, 64, h, w)
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(64 * h * w, n_classes),  # (b, n_classes) logits
    )


def train_band_cnn(
    images: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    n_classes: int,
    epochs: int,
    patience: int,
    seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Train on ``images[train_idx]`` ``(n, bands, n_dt, n_dm)`` uint8 as ``dmdt-train fit``
    trains (Adam 2e-4, batch 32, 10% validation for early stopping, one thread); return the
    test part's class probabilities and a run summary."""
    import time

    import torch

    from dmdt.inference import deterministic
    from trainer.fit import FitOptions, seed_everything, torch_threads, train_net

    fit_part, val_part = data.stratified_split(labels[train_idx], 0.1, seed + 1)
    tr, va = train_idx[fit_part], train_idx[val_part]
    x = torch.from_numpy(images.astype(np.float32) / np.float32(255.0))
    y = torch.from_numpy(labels.astype(np.int64))
    opts = FitOptions(epochs=epochs, patience=patience, seed=seed, device="cpu")
    seed_everything(seed)
    net = make_band_net(images.shape[1], n_classes, images.shape[2:])
    t0 = time.perf_counter()
    with torch_threads(1):
        with deterministic():
            net, history = train_net(
                net, x[tr], y[tr], x[va], y[va], opts, torch.device("cpu"), progress=False
            )
        net.eval()
        with torch.no_grad():
            probs = torch.softmax(net(x[test_idx]), dim=1).numpy()
    run = {
        "epochs_run": len(history),
        "train_seconds": round(time.perf_counter() - t0, 1),
        "n_train": int(tr.size),
        "n_val": int(va.size),
    }
    return probs, run
