"""The random-forest baseline's 18 light-curve features (Richards et al. 2011 set, as used by
the authors' code; docs/paper.md section 1.5).

Sixteen come from ``light_curve`` extractors; the flux-percentile features are those extractors
run on flux 10^(-0.4 m) instead of magnitude. Stetson J (time-ordered successive pairs, weights
exp(-dt / mean dt)) and the pair slope trend are written here, as in the authors' statistics.py.
One definition differs from that file: ``median_buffer_range_percentage`` is light-curve's
(within 10% of the half amplitude of the median, Richards et al.'s wording) where the authors'
code compares with 10% of the median magnitude itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import light_curve as lcf
import numpy as np

from dmdt.lightcurves import LightCurve

MAG_FEATURES = {
    "amplitude": lcf.Amplitude(),
    "beyond1std": lcf.BeyondNStd(1.0),
    "linear_trend": lcf.LinearTrend(),
    "max_slope": lcf.MaximumSlope(),
    "median_absolute_deviation": lcf.MedianAbsoluteDeviation(),
    "median_buffer_range_percentage": lcf.MedianBufferRangePercentage(0.1),
    "skew": lcf.Skew(),
    "small_kurtosis": lcf.Kurtosis(),
    "std": lcf.StandardDeviation(),
    "stetson_k": lcf.StetsonK(),
}
# Richards et al.: (Q(1 - q) - Q(q)) / (Q(0.95) - Q(0.05)) of the flux, for the middle 20..80 %.
FLUX_FEATURES = {
    **{
        f"flux_percentile_ratio_mid{mid}": lcf.MagnitudePercentageRatio(q, 0.05)
        for mid, q in ((20, 0.40), (35, 0.325), (50, 0.25), (65, 0.175), (80, 0.10))
    },
    "percent_difference_flux_percentile": lcf.PercentDifferenceMagnitudePercentile(0.05),
}
HAND_FEATURES = ("pair_slope_trend", "stetson_j")
FEATURE_NAMES: tuple[str, ...] = tuple(sorted((*MAG_FEATURES, *FLUX_FEATURES, *HAND_FEATURES)))

_MAG = lcf.Extractor(*MAG_FEATURES.values())
_FLUX = lcf.Extractor(*FLUX_FEATURES.values())
# LinearTrend yields (slope, sigma, noise); keep the slope only.
_MAG_COLUMNS = [_MAG.names.index(n) for n in _MAG.names if not n.startswith("linear_trend_")]
_MAG_NAMES = list(MAG_FEATURES)


def stetson_j(t: np.ndarray, m: np.ndarray, err: np.ndarray) -> float:
    """Welch-Stetson J over successive pairs in time, weights exp(-dt / mean dt) (Zhang 2003)."""
    n = m.size
    if n < 2:
        return 0.0
    delta = np.sqrt(n / (n - 1.0)) * (m - m.mean()) / err
    dt = np.diff(t)
    w = np.exp(-dt / dt.mean())
    p = delta[:-1] * delta[1:]
    return float(np.sum(w * np.sign(p) * np.sqrt(np.abs(p))) / np.sum(w))


def pair_slope_trend(t: np.ndarray, m: np.ndarray, last: int = 30) -> float:
    """(rising - falling) / (k - 1) over successive pairs of the last k = min(n, 30) points."""
    k = min(m.size, last)
    if k < 2:
        return 0.0
    dt, dm = np.diff(t[-k:]), np.diff(m[-k:])
    slope = dm[dt != 0] / dt[dt != 0]
    return float((np.sum(slope > 0) - np.sum(slope < 0)) / (k - 1))


def features(lcs: Sequence[LightCurve], n_jobs: int = 1) -> np.ndarray:
    """The 18 features of cleaned (time-sorted) light curves: float64 ``(n, 18)``, columns in
    :data:`FEATURE_NAMES` order."""
    if not lcs:
        return np.zeros((0, len(FEATURE_NAMES)))
    mags = [(lc.t, lc.m, lc.err) for lc in lcs]
    fluxes = []
    for lc in lcs:
        flux = 10.0 ** (-0.4 * lc.m)
        fluxes.append((lc.t, flux, flux * (0.4 * np.log(10.0)) * lc.err))
    mag = np.asarray(_MAG.many(mags, sorted=True, n_jobs=n_jobs))[:, _MAG_COLUMNS]
    flux = np.asarray(_FLUX.many(fluxes, sorted=True, n_jobs=n_jobs))
    hand = np.array([[pair_slope_trend(lc.t, lc.m), stetson_j(lc.t, lc.m, lc.err)] for lc in lcs])
    columns = {
        **dict(zip(_MAG_NAMES, mag.T, strict=True)),
        **dict(zip(FLUX_FEATURES, flux.T, strict=True)),
        **dict(zip(HAND_FEATURES, hand.T, strict=True)),
    }
    return np.stack([columns[name] for name in FEATURE_NAMES], axis=1)
