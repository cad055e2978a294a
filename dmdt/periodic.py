"""The periodic features of a light curve (version 5): light-curve's broad set, the period search
of :mod:`dmdt.periods` (alias-proof period, the best periodogram peaks, a second mode), and the
curve's shape at that period (a Fourier fit's amplitudes and phases, string lengths at P, 2P and
P/2, a fit at 2P for unequal minima, the curve folded in 20 bins).

:func:`features` takes many curves and computes their periods in one call (one batched FFT per
grid length, numba over sources); everything else is a few small fits per curve. Version 5's
period is the candidate (periodogram peaks, their halves, doubles and daily aliases, harmonic-sum
peaks) of best information criterion of a multi-harmonic fit, not the highest Lomb-Scargle peak;
its second mode is searched at the double-mode RR Lyrae period ratio in the residuals
(docs/periods.md measures both on injected signals).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import light_curve as lcf
import numpy as np
from numba import njit

from dmdt import periods
from dmdt.lightcurves import LightCurve
from dmdt.periodogram import ERR_FLOOR, MAX_FREQ
from dmdt.periods import harmonic_coef, harmonic_model

FEATURES_VERSION = 5  # bump when a feature's definition changes (invalidates caches and results)
N_HARMONICS = 4  # the shape features' Fourier fit
N_FOLD_BINS = 20

_BROAD = lcf.Extractor(
    lcf.Amplitude(),
    lcf.AndersonDarlingNormal(),
    lcf.BeyondNStd(1.0),
    lcf.BeyondNStd(2.0),
    lcf.Cusum(),
    lcf.Eta(),
    lcf.EtaE(),
    lcf.ExcessVariance(),
    lcf.InterPercentileRange(0.02),
    lcf.InterPercentileRange(0.1),
    lcf.InterPercentileRange(0.25),
    lcf.Kurtosis(),
    lcf.LinearFit(),
    lcf.LinearTrend(),
    lcf.MagnitudePercentageRatio(0.4, 0.05),
    lcf.MagnitudePercentageRatio(0.25, 0.05),
    lcf.MagnitudePercentageRatio(0.1, 0.05),
    lcf.MaximumSlope(),
    lcf.Mean(),
    lcf.MedianAbsoluteDeviation(),
    lcf.MedianBufferRangePercentage(0.1),
    lcf.MedianBufferRangePercentage(0.2),
    lcf.PercentAmplitude(),
    lcf.PercentDifferenceMagnitudePercentile(0.05),
    lcf.PercentDifferenceMagnitudePercentile(0.1),
    lcf.ReducedChi2(),
    lcf.Skew(),
    lcf.StandardDeviation(),
    lcf.StetsonK(),
    lcf.WeightedMean(),
    lcf.Duration(),
    lcf.ObservationCount(),
)

PERIOD_NAMES = (
    "period_0",  # the best periodogram peaks, refined by the exact GLS, by power
    "period_snr_0",  # (power - the grid's mean power) / its standard deviation
    "period_1",
    "period_snr_1",
    "period_2",
    "period_snr_2",
    "period_ratio_1_0",
    "period_ratio_2_0",
    "period",  # the search's period: best information criterion of a multi-harmonic fit
    "log10_period",
    "ls_power",  # standard-normalised GLS power at ``period``
    "log10_fap",  # Baluev (2008) false-alarm probability of that power
    "period_ratio_ls",  # period / period_0: 1, or 2 for a contact binary, an alias's ratio...
    "n_harmonics",  # harmonics of the best fit at ``period``
    "period_margin",  # the runner-up candidate's criterion minus the best's
    "runner_up_ratio",  # the runner-up candidate's period / period
)
HARMONIC_NAMES = (
    *(f"A{k}" for k in range(1, N_HARMONICS + 1)),
    "R21",
    "R31",
    "R41",
    "phi21",
    "phi31",
    "phi41",
    "model_amplitude",
    "model_phase_rise",  # fraction of a cycle from faintest to brightest (RRab: short rise)
    "model_skew",
    "fit_r2",  # share of the variance the harmonic fit explains
    "fit_reduced_chi2",
    "residual_std",
    "residual_skew",
    "residual_beyond2std",
)
DOUBLE_NAMES = (
    "odd_even_ratio_2P",  # (A1 + A3) / (A2 + A4) of a fit at 2P: unequal minima of binaries
    "fit_r2_2P",
    "minima_depth_diff_2P",
    "odd_harmonic_F_2P",  # F statistic of the odd harmonics of an 8-harmonic fit at 2P
    "string_length_P",
    "string_length_2P",
    "string_length_half_P",
    "string_length_ratio_2P_P",
)
SECOND_NAMES = (  # all 0 where not searched (a period outside the RR Lyrae range)
    "second_period",  # the second mode, searched at P1/P0 = 0.73-0.76 either way (RR Lyrae)
    "second_ratio",  # min / max of second_period and period
    "second_power",  # its GLS power in the residuals of the best fit
    "second_excess",  # that power over the median power of the windows searched
    "second_gain",  # the criterion's gain from it (> 0: worth its three parameters)
)
FOLD_NAMES = (
    "fold_scatter",  # rms of points about the binned folded curve / model amplitude
    *(f"fold_{i:02d}" for i in range(N_FOLD_BINS)),  # folded at period, brightest at 0
    "median_err",
    "amplitude_snr",  # model_amplitude / median_err
)
FEATURE_NAMES: tuple[str, ...] = (
    *_BROAD.names,
    *PERIOD_NAMES,
    *HARMONIC_NAMES,
    *DOUBLE_NAMES,
    *SECOND_NAMES,
    *FOLD_NAMES,
)
_PHASE = np.linspace(0.0, 1.0, 200, endpoint=False)


def log10_fap_baluev(z: float, n: int, t: np.ndarray, fmax: float) -> float:
    """log10 of Baluev's (2008) false-alarm probability of a standard-normalised peak ``z``
    (astropy's ``fap_baluev`` with a floating mean, unit weights for the effective baseline)."""
    from scipy.special import gammaln

    if n < 4:
        return 0.0
    z = min(max(z, 1e-12), 1.0 - 1e-12)
    nk = n - 3  # N - 1 - 2 parameters: floating mean
    log_single = 0.5 * nk * np.log1p(-z)
    gamma = np.sqrt(2.0 / (n - 1)) * np.exp(gammaln((n - 1) / 2.0) - gammaln((n - 2) / 2.0))
    t_eff = np.sqrt(4.0 * np.pi * np.var(t))
    log_tau = (
        np.log(gamma * fmax * max(t_eff, 1e-9))
        + 0.5 * (nk - 1) * np.log1p(-z)
        + 0.5 * np.log(0.5 * (n - 1) * z)
    )
    # FAP = 1 - (1 - exp(log_single)) exp(-tau), about single + tau when small (kept in logs)
    if max(log_single, log_tau) < np.log(1e-8):
        return float(np.logaddexp(log_single, log_tau) / np.log(10.0))
    fap = -np.expm1(np.log1p(-np.exp(log_single)) - np.exp(log_tau))
    return float(np.log10(min(max(fap, 1e-300), 1.0)))


def harmonic_fit(
    t: np.ndarray, y: np.ndarray, w: np.ndarray, freq: float, k: int = N_HARMONICS
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares Fourier series of ``k`` harmonics at ``freq``: coefficients
    ``(1 + 2k,)`` as [mean, a1, b1, a2, b2, ...] for a_j cos + b_j sin, and the model at ``t``."""
    coef = harmonic_coef(t, y, w, freq, k)
    return coef, harmonic_model(t, coef, freq)


def string_length(t: np.ndarray, y: np.ndarray, period: float) -> float:
    """Lafler-Kinman string length of ``y`` folded at ``period`` (about 1 for noise)."""
    order = np.argsort(np.mod(t / period, 1.0), kind="stable")
    folded = y[order]
    diff = np.diff(folded, append=folded[:1])
    var = np.sum((y - y.mean()) ** 2)
    return float(np.sum(diff**2) / (2.0 * var)) if var > 0 else 1.0


def _skew(x: np.ndarray) -> float:
    s = x.std()
    return float(np.mean((x - x.mean()) ** 3) / s**3) if s > 0 else 0.0


def _curve(coef: np.ndarray, phase: np.ndarray) -> np.ndarray:
    """A Fourier series without its mean at ``phase`` (cycles)."""
    no_mean = coef.copy()
    no_mean[0] = 0.0
    return np.asarray(harmonic_model(phase, no_mean, 1.0))


def _shape(coef: np.ndarray) -> dict[str, float]:
    """Amplitude ratios, phase differences and model shape of a harmonic fit's coefficients."""
    a, b = coef[1::2], coef[2::2]
    amp = np.hypot(a, b)
    phase = np.arctan2(b, a)
    out = {f"A{j}": float(amp[j - 1]) for j in range(1, N_HARMONICS + 1)}
    for j in range(2, N_HARMONICS + 1):
        out[f"R{j}1"] = float(amp[j - 1] / amp[0]) if amp[0] > 0 else 0.0
        out[f"phi{j}1"] = float(np.mod(phase[j - 1] - j * phase[0], 2.0 * np.pi))
    model = _curve(coef, _PHASE)
    out["model_amplitude"] = float(model.max() - model.min())
    # magnitudes: faintest = max; the fraction of a cycle from faintest to brightest
    out["model_phase_rise"] = float(
        np.mod(_PHASE[np.argmin(model)] - _PHASE[np.argmax(model)], 1.0)
    )
    out["model_skew"] = _skew(model)
    return out


@njit(cache=True, nogil=True)
def _fold(phase: np.ndarray, y: np.ndarray, model_at: np.ndarray) -> np.ndarray:
    """Median of ``y`` in N_FOLD_BINS phase bins; empty bins take the model's value there."""
    idx = np.minimum((phase * N_FOLD_BINS).astype(np.int64), N_FOLD_BINS - 1)
    order = np.argsort(idx, kind="mergesort")
    ys = y[order]
    bounds = np.searchsorted(idx[order], np.arange(N_FOLD_BINS + 1))
    out = model_at.copy()
    for i in range(N_FOLD_BINS):
        if bounds[i + 1] > bounds[i]:
            out[i] = np.median(ys[bounds[i] : bounds[i + 1]])
    return out


def shape_features(
    t: np.ndarray, m: np.ndarray, err: np.ndarray, period: float
) -> dict[str, float]:
    """The features of one cleaned curve's shape at ``period`` (:data:`HARMONIC_NAMES`,
    :data:`DOUBLE_NAMES`, :data:`FOLD_NAMES`)."""
    w = 1.0 / np.maximum(err, ERR_FLOOR) ** 2
    tz = t - t[0]  # numerical range for the trigonometric arguments
    f = 1.0 / period
    coef, model = harmonic_fit(tz, m, w, f)
    out = _shape(coef)
    resid = m - model
    var = np.sum(w * (m - np.average(m, weights=w)) ** 2)
    chi2 = float(np.sum(w * resid**2))
    out["fit_r2"] = 1.0 - chi2 / var if var > 0 else 0.0
    out["fit_reduced_chi2"] = chi2 / max(m.size - coef.size, 1)
    rs = resid.std()
    out["residual_std"] = float(rs)
    out["residual_skew"] = _skew(resid)
    out["residual_beyond2std"] = float(np.mean(np.abs(resid - resid.mean()) > 2 * rs))

    coef2, model2 = harmonic_fit(tz, m, w, f / 2.0)
    amp2 = np.hypot(coef2[1::2], coef2[2::2])
    out["odd_even_ratio_2P"] = float((amp2[0] + amp2[2]) / max(amp2[1] + amp2[3], 1e-9))
    out["fit_r2_2P"] = float(1.0 - np.sum(w * (m - model2) ** 2) / var) if var > 0 else 0.0
    curve = _curve(coef2, _PHASE)
    i = int(np.argmax(curve))
    other = np.roll(curve, -i)[50:150]  # the half cycle away from the deepest minimum
    out["minima_depth_diff_2P"] = float(curve.max() - other.max())
    _, model8 = harmonic_fit(tz, m, w, f / 2.0, 2 * N_HARMONICS)
    chi2_8 = float(np.sum(w * (m - model8) ** 2))
    dof = max(m.size - (4 * N_HARMONICS + 1), 1)
    out["odd_harmonic_F_2P"] = (chi2 - chi2_8) / N_HARMONICS / max(chi2_8 / dof, 1e-12)
    for name, p in (("P", period), ("2P", 2 * period), ("half_P", period / 2)):
        out[f"string_length_{name}"] = string_length(tz, m, p)
    out["string_length_ratio_2P_P"] = out["string_length_2P"] / max(out["string_length_P"], 1e-9)

    # folded with the model's brightest point (smallest magnitude) at phase 0
    phi0 = _PHASE[int(np.argmin(_curve(coef, _PHASE)))]
    phase = np.mod(f * tz - phi0, 1.0)
    grid = np.arange(N_FOLD_BINS) / N_FOLD_BINS + phi0 + 0.5 / N_FOLD_BINS
    folded = _fold(phase, m, coef[0] + _curve(coef, grid))
    amp = max(out["model_amplitude"], 1e-6)
    idx = np.minimum((phase * N_FOLD_BINS).astype(np.int64), N_FOLD_BINS - 1)
    out["fold_scatter"] = float(np.sqrt(np.mean((m - folded[idx]) ** 2)) / amp)
    med = float(np.median(m))
    for j in range(N_FOLD_BINS):
        out[f"fold_{j:02d}"] = float((folded[j] - med) / amp)
    med_err = float(np.median(err))
    out["median_err"] = med_err
    out["amplitude_snr"] = out["model_amplitude"] / max(med_err, ERR_FLOOR)
    return out


def period_features(found: periods.Periods, i: int, t: np.ndarray) -> dict[str, float]:
    """Curve ``i``'s :data:`PERIOD_NAMES` and :data:`SECOND_NAMES` from the search's results
    ``found`` (``t`` its times)."""
    out: dict[str, float] = {}
    for j in range(periods.N_TOP):
        out[f"period_{j}"] = float(found.peaks[i, j])
        out[f"period_snr_{j}"] = float(found.peak_snr[i, j])
    out["period_ratio_1_0"] = out["period_1"] / out["period_0"]
    out["period_ratio_2_0"] = out["period_2"] / out["period_0"]
    p = float(found.period[i])
    out["period"] = p
    out["log10_period"] = float(np.log10(p))
    out["ls_power"] = float(found.power[i])
    out["log10_fap"] = log10_fap_baluev(out["ls_power"], t.size, t - t[0], MAX_FREQ)
    out["period_ratio_ls"] = p / out["period_0"]
    out["n_harmonics"] = float(found.n_harmonics[i])
    out["period_margin"] = float(found.margin[i])
    out["runner_up_ratio"] = float(found.runner_up[i]) / p
    second = float(found.second[i])
    if np.isfinite(second):
        out["second_period"] = second
        out["second_ratio"] = min(second, p) / max(second, p)
        out["second_power"] = float(found.second_power[i])
        out["second_excess"] = float(found.second_excess[i])
        out["second_gain"] = float(found.second_gain[i])
    else:  # not searched: the period is outside the RR Lyrae range (dmdt.periods.DOUBLE_FREQ)
        for name in SECOND_NAMES:
            out[name] = 0.0
    return out


def features(lcs: Sequence[LightCurve]) -> tuple[np.ndarray, dict[str, float]]:
    """The features of cleaned (time-sorted) light curves, float64 ``(n, len(FEATURE_NAMES))``
    in :data:`FEATURE_NAMES` order, and the wall time per part (seconds, all curves): one
    period search for all of them (:func:`dmdt.periods.search`)."""
    timing: dict[str, float] = {}
    if not lcs:
        return np.zeros((0, len(FEATURE_NAMES))), timing
    triples = [(lc.t, lc.m, lc.err) for lc in lcs]
    t0 = time.perf_counter()
    broad = np.asarray(_BROAD.many(triples, sorted=True, n_jobs=1)).reshape(len(lcs), -1)
    t1 = time.perf_counter()
    found = periods.search(triples)
    t2 = time.perf_counter()
    rows = []
    for i, (t, m, err) in enumerate(triples):
        row = period_features(found, i, t)
        if np.isfinite(row["period"]):
            row.update(shape_features(t, m, err, row["period"]))
        rows.append([row.get(name, np.nan) for name in FEATURE_NAMES[broad.shape[1] :]])
    t3 = time.perf_counter()
    timing = {"broad": t1 - t0, "periodogram": t2 - t1, "fits": t3 - t2, "total": t3 - t0}
    return np.concatenate([broad, np.array(rows, dtype=np.float64)], axis=1), timing
