"""Periodic features version 3 (and its first 76 columns, version 2), kept for the research that
was measured on them: the harness's version-2 and -3 rows (scripts/beyond_paper.py), the
multi-band and calibration reports (trainer/multiband.py, scripts/calibration_report.py), the
season and double-mode candidate features (trainer/views.py). No served model uses them: the
product's features are dmdt/periodic.py's (version 5).

Light-curve's broad set, Lomb-Scargle periods and their significance (light-curve's FFT
periodogram on a fixed grid of 2^18 + 1 frequencies up to 20 cycles/day, its best peak refined by
a direct generalised Lomb-Scargle), a Fourier fit at the best period (R21, R31, phi21, phi31),
string lengths at P, 2P and P/2, a second period after removing the first, and version 3's
additions (a period chosen by a 4-harmonic fit among the peaks, their halves and doubles; the
curve folded there; the residual power at the double-mode period ratio).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import light_curve as lcf
import numpy as np
from numba import njit

from dmdt.lightcurves import LightCurve

MAX_FREQ = 20.0  # cycles/day: periods down to 72 min (HADS); CRTS cadence aliases above anyway
GRID_LOG2 = 18  # 2**18 + 1 frequencies up to MAX_FREQ (both the curve's and the residuals')
N_HARMONICS = 4
FEATURES_VERSION = 3
ERR_FLOOR = 0.005  # mag: a few CRTS errors are tiny or zero; weights 1 / max(err, floor)^2

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


def _periodogram(peaks: int, log2: int) -> lcf.Periodogram:
    freqs = np.linspace(0.0, 2.0 * np.pi * MAX_FREQ, 2**log2 + 1)  # angular, rad/day
    return lcf.Periodogram(peaks=peaks, freqs=freqs, fast=True, normalization="standard")


_PERIODOGRAM = _periodogram(3, GRID_LOG2)
_RESIDUAL_PERIODOGRAM = _periodogram(1, GRID_LOG2)

PERIOD_NAMES = (
    "period_0",
    "period_snr_0",
    "period_1",
    "period_snr_1",
    "period_2",
    "period_snr_2",
    "period_ratio_1_0",
    "period_ratio_2_0",
    "period",  # refined best period
    "log10_period",
    "ls_power",  # standard-normalised GLS power at the refined period
    "log10_fap",  # Baluev (2008) false-alarm probability of that peak
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
    "string_length_P",
    "string_length_2P",
    "string_length_half_P",
    "string_length_ratio_2P_P",
    "residual_period",
    "residual_period_snr",
    "residual_period_ratio",  # min/max of residual period and P: 0.74-0.75 for RRd
)
N_FOLD_BINS = 20
RRD_RATIO = (0.735, 0.755)  # P1/P0 of double-mode RR Lyrae (overtone over fundamental)
RRD_FREQ = (1.4, 4.0)  # cycles/day of the dominant mode where the double-mode search runs
EXTRA_NAMES = (  # version 3
    "mh_period",  # of the top periodogram peaks and their halves and doubles: best 4-harmonic chi2
    "log10_mh_period",
    "mh_period_ratio",  # mh_period / period: 2 for most contact binaries
    "mh_chi2_ratio",  # chi2 at mh_period / chi2 at period
    "odd_harmonic_F_2P",  # F statistic of the odd harmonics of an 8-harmonic fit at 2P
    "R21_mh",
    "R31_mh",
    "phi21_mh",
    "phi31_mh",
    "fit_r2_mh",
    "fold_scatter_mh",  # rms of points about the binned folded curve / model amplitude
    *(f"fold_{i:02d}" for i in range(N_FOLD_BINS)),  # folded at mh_period, brightest at 0
    "dm_power",  # residual GLS power at the RRd period ratio (either way round)
    "dm_ratio",  # the ratio there
    "dm_power_excess",  # that power over the residual power's median in the window
    "median_err",
    "amplitude_snr",  # model_amplitude / median_err
)
REST = (*PERIOD_NAMES, *HARMONIC_NAMES, *DOUBLE_NAMES)  # computed here, after the broad set
V2_NAMES: tuple[str, ...] = (*_BROAD.names, *REST)
FEATURE_NAMES: tuple[str, ...] = (*V2_NAMES, *EXTRA_NAMES)


def gls_power(t: np.ndarray, y: np.ndarray, w: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Generalised (floating-mean, weighted) Lomb-Scargle power in [0, 1] at ``freqs`` (cycles
    per unit time), Zechmeister & Kuerster 2009; ``w`` are weights (normalised here)."""
    w = w / w.sum()
    x = 2.0 * np.pi * np.outer(freqs, t)  # (n_freq, n)
    c, s = np.cos(x), np.sin(x)
    y_mean = w @ y
    yy = w @ (y * y) - y_mean**2
    cw, sw = c @ w, s @ w
    yc = c @ (w * y) - y_mean * cw
    ys = s @ (w * y) - y_mean * sw
    cc = (c * c) @ w - cw**2
    ss = 1.0 - (c * c) @ w - sw**2
    cs = (c * s) @ w - cw * sw
    d = cc * ss - cs**2
    return (ss * yc**2 + cc * ys**2 - 2.0 * cs * yc * ys) / (yy * d)


@njit(cache=True, error_model="numpy")  # x / 0 -> inf or nan, as numpy
def _gls_grid(
    t: np.ndarray, y: np.ndarray, w: np.ndarray, f0: float, df: float, n: int
) -> np.ndarray:
    """:func:`gls_power` at the evenly spaced ``f0 + k df``, ``k < n``: the same sums, with each
    point's (cos, sin) advanced from one frequency to the next by a rotation instead of evaluated
    (recomputed exactly every 64 frequencies to bound the rounding drift) and no (n, points)
    temporaries."""
    w = w / w.sum()
    y_mean = np.sum(w * y)
    yy = np.sum(w * y * y) - y_mean**2
    wy = w * y
    rc, rs = np.cos(2.0 * np.pi * df * t), np.sin(2.0 * np.pi * df * t)
    zc, zs = np.empty_like(t), np.empty_like(t)
    out = np.empty(n)
    for k in range(n):
        if k % 64 == 0:
            x = 2.0 * np.pi * (f0 + k * df) * t
            zc[:], zs[:] = np.cos(x), np.sin(x)
        cw = sw = yc = ys = c2 = cs = 0.0
        for j in range(t.size):
            c, s = zc[j], zs[j]
            cw += w[j] * c
            sw += w[j] * s
            yc += wy[j] * c
            ys += wy[j] * s
            c2 += w[j] * c * c
            cs += w[j] * c * s
            zc[j] = c * rc[j] - s * rs[j]
            zs[j] = c * rs[j] + s * rc[j]
        yc -= y_mean * cw
        ys -= y_mean * sw
        cc = c2 - cw**2
        ss = 1.0 - c2 - sw**2
        cs -= cw * sw
        d = cc * ss - cs**2
        out[k] = (ss * yc**2 + cc * ys**2 - 2.0 * cs * yc * ys) / (yy * d)
    return out


def refine_frequency(
    t: np.ndarray, y: np.ndarray, w: np.ndarray, f0: float, step: float
) -> tuple[float, float]:
    """The frequency of highest GLS power within ``f0 +- 1.5 step`` (two passes of 31 trial
    frequencies, to ~step/100), and that power."""
    best, power = f0, 0.0
    for half_width in (1.5 * step, 0.15 * step):
        trial = best + np.linspace(-half_width, half_width, 31)
        p = _gls_grid(t, y, w, best - half_width, half_width / 15.0, 31)
        p[trial <= 0] = -np.inf
        i = int(np.argmax(p))
        best, power = float(trial[i]), float(p[i])
    return best, power


def log10_fap_baluev(z: float, n: int, t: np.ndarray, fmax: float) -> float:
    """log10 of Baluev's (2008) false-alarm probability of a standard-normalised peak ``z``
    (astropy's ``fap_baluev`` with a floating mean, unit weights for the effective baseline)."""
    from scipy.special import gammaln

    z = min(max(z, 1e-12), 1.0 - 1e-12)
    nk = n - 3  # N - 1 - 2 parameters: floating mean
    log_single = 0.5 * nk * np.log1p(-z)
    gamma = np.sqrt(2.0 / (n - 1)) * np.exp(gammaln((n - 1) / 2.0) - gammaln((n - 2) / 2.0))
    t_eff = np.sqrt(4.0 * np.pi * np.var(t))
    log_tau = (
        np.log(gamma * fmax * t_eff)
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
    x = 2.0 * np.pi * freq * t
    cols = [np.ones_like(t)]
    for j in range(1, k + 1):
        cols += [np.cos(j * x), np.sin(j * x)]
    design = np.stack(cols, axis=1)  # (n, 1 + 2k)
    sw = np.sqrt(w)
    coef = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)[0]
    return coef, design @ coef


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


def _shape(coef: np.ndarray, k: int) -> dict[str, float]:
    """Amplitude ratios, phase differences and model shape of a harmonic fit's coefficients."""
    a, b = coef[1::2], coef[2::2]
    amp = np.hypot(a, b)
    phase = np.arctan2(b, a)
    out = {f"A{j}": float(amp[j - 1]) for j in range(1, k + 1)}
    for j in range(2, k + 1):
        out[f"R{j}1"] = float(amp[j - 1] / amp[0]) if amp[0] > 0 else 0.0
        out[f"phi{j}1"] = float(np.mod(phase[j - 1] - j * phase[0], 2.0 * np.pi))
    grid = np.linspace(0.0, 1.0, 200, endpoint=False)
    model = sum(
        a[j] * np.cos(2 * np.pi * (j + 1) * grid) + b[j] * np.sin(2 * np.pi * (j + 1) * grid)
        for j in range(k)
    )
    model = np.asarray(model)
    out["model_amplitude"] = float(model.max() - model.min())
    # magnitudes: faintest = max; the fraction of a cycle from faintest to brightest
    out["model_phase_rise"] = float(np.mod(grid[np.argmin(model)] - grid[np.argmax(model)], 1.0))
    out["model_skew"] = _skew(model)
    return out


def periodic_features(
    t: np.ndarray,
    m: np.ndarray,
    err: np.ndarray,
    peaks: np.ndarray,
    residual_peak: bool = True,
    step: float = MAX_FREQ / 2**GRID_LOG2,
) -> tuple[dict[str, float], np.ndarray]:
    """Refined period, Fourier shape, string lengths of one light curve given its periodogram
    ``peaks`` [P0, snr0, P1, snr1, P2, snr2]; returns the features and the fit's residuals."""
    w = 1.0 / np.maximum(err, ERR_FLOOR) ** 2
    tz = t - t[0]  # numerical range for the trigonometric arguments
    f0 = 1.0 / peaks[0] if np.isfinite(peaks[0]) and peaks[0] > 0 else step
    freq, power = refine_frequency(tz, m, w, f0, step)
    period = 1.0 / freq
    out: dict[str, float] = dict(zip(PERIOD_NAMES[:6], map(float, peaks), strict=True))
    out["period_ratio_1_0"] = float(peaks[2] / peaks[0])
    out["period_ratio_2_0"] = float(peaks[4] / peaks[0])
    out["period"] = period
    out["log10_period"] = float(np.log10(period))
    out["ls_power"] = power
    out["log10_fap"] = log10_fap_baluev(power, m.size, tz, MAX_FREQ)

    coef, model = harmonic_fit(tz, m, w, freq)
    out.update(_shape(coef, N_HARMONICS))
    resid = m - model
    var = np.sum(w * (m - np.average(m, weights=w)) ** 2)
    dof = max(m.size - coef.size, 1)
    out["fit_r2"] = float(1.0 - np.sum(w * resid**2) / var) if var > 0 else 0.0
    out["fit_reduced_chi2"] = float(np.sum(w * resid**2) / dof)
    rs = resid.std()
    out["residual_std"] = float(rs)
    out["residual_skew"] = _skew(resid)
    out["residual_beyond2std"] = float(np.mean(np.abs(resid - resid.mean()) > 2 * rs))

    coef2, model2 = harmonic_fit(tz, m, w, freq / 2.0)
    amp2 = np.hypot(coef2[1::2], coef2[2::2])
    out["odd_even_ratio_2P"] = float((amp2[0] + amp2[2]) / max(amp2[1] + amp2[3], 1e-9))
    resid2 = m - model2
    out["fit_r2_2P"] = float(1.0 - np.sum(w * resid2**2) / var) if var > 0 else 0.0
    phase_grid = np.linspace(0.0, 1.0, 200, endpoint=False)
    x2 = 2 * np.pi * phase_grid
    curve = sum(
        coef2[2 * j + 1] * np.cos((j + 1) * x2) + coef2[2 * j + 2] * np.sin((j + 1) * x2)
        for j in range(N_HARMONICS)
    )
    curve = np.asarray(curve)
    # the two halves of a 2P cycle: depths (faintest points) of the two minima
    i = int(np.argmax(curve))
    other = np.roll(curve, -i)[50:150]  # the half cycle away from the deepest minimum
    out["minima_depth_diff_2P"] = float(curve.max() - other.max())
    for name, p in (("P", period), ("2P", 2 * period), ("half_P", period / 2)):
        out[f"string_length_{name}"] = string_length(tz, m, p)
    out["string_length_ratio_2P_P"] = out["string_length_2P"] / max(out["string_length_P"], 1e-9)
    return out, resid


def _fold_curve(phase: np.ndarray, y: np.ndarray, model_at: np.ndarray) -> np.ndarray:
    """Median of ``y`` in N_FOLD_BINS phase bins; empty bins take the model's value there."""
    idx = np.minimum((phase * N_FOLD_BINS).astype(np.int64), N_FOLD_BINS - 1)
    order = np.argsort(idx, kind="stable")
    bounds = np.searchsorted(idx[order], np.arange(N_FOLD_BINS + 1))
    ys = y[order]
    out = model_at.copy()
    for i in range(N_FOLD_BINS):
        if bounds[i + 1] > bounds[i]:
            out[i] = np.median(ys[bounds[i] : bounds[i + 1]])
    return out


def _chi2(t: np.ndarray, y: np.ndarray, w: np.ndarray, freq: float, k: int) -> float:
    return float(np.sum(w * (y - harmonic_fit(t, y, w, freq, k)[1]) ** 2))


def extra_features(
    t: np.ndarray,
    m: np.ndarray,
    err: np.ndarray,
    peaks: np.ndarray,
    period: float,
    step: float = MAX_FREQ / 2**GRID_LOG2,
) -> np.ndarray:
    """Version 3's features (:data:`EXTRA_NAMES` order) of one cleaned curve given its periodogram
    ``peaks`` [P0, snr0, P1, snr1, P2, snr2] and refined ``period``: the period of best
    multi-harmonic fit among the peaks, their halves and doubles; the curve folded there; the
    residual power at the double-mode RR Lyrae period ratio; error-aware amplitude."""
    w = 1.0 / np.maximum(err, ERR_FLOOR) ** 2
    tz = t - t[0]
    f_best = 1.0 / period
    candidates = [f_best, f_best / 2.0, f_best * 2.0]
    for p in peaks[2::2]:
        if np.isfinite(p) and p > 0:
            f, _ = refine_frequency(tz, m, w, 1.0 / p, step)
            candidates += [f, f / 2.0, f * 2.0]
    chi2 = [_chi2(tz, m, w, f, N_HARMONICS) for f in candidates]
    i = int(np.argmin(chi2))
    f_mh = candidates[i]
    out: dict[str, float] = {"mh_period": 1.0 / f_mh, "log10_mh_period": float(np.log10(1 / f_mh))}
    out["mh_period_ratio"] = float(f_best / f_mh)
    out["mh_chi2_ratio"] = float(chi2[i] / max(chi2[0], 1e-12))
    chi2_2p = _chi2(tz, m, w, f_best / 2.0, 2 * N_HARMONICS)
    dof = max(m.size - (4 * N_HARMONICS + 1), 1)
    out["odd_harmonic_F_2P"] = float((chi2[0] - chi2_2p) / N_HARMONICS / max(chi2_2p / dof, 1e-12))

    coef, model = harmonic_fit(tz, m, w, f_mh)
    shape = _shape(coef, N_HARMONICS)
    for name in ("R21", "R31", "phi21", "phi31"):
        out[f"{name}_mh"] = shape[name]
    var = np.sum(w * (m - np.average(m, weights=w)) ** 2)
    out["fit_r2_mh"] = float(1.0 - np.sum(w * (m - model) ** 2) / var) if var > 0 else 0.0
    # fold with the model's brightest point (smallest magnitude) at phase 0
    grid = np.arange(N_FOLD_BINS) / N_FOLD_BINS
    fine = np.linspace(0.0, 1.0, 200, endpoint=False)
    a, b = coef[1::2], coef[2::2]

    def model_at(ph: np.ndarray) -> np.ndarray:
        x = 2 * np.pi * ph
        return coef[0] + sum(
            a[j] * np.cos((j + 1) * x) + b[j] * np.sin((j + 1) * x) for j in range(N_HARMONICS)
        )

    phi0 = fine[int(np.argmin(model_at(fine)))]
    phase = np.mod(f_mh * tz - phi0, 1.0)
    folded = _fold_curve(phase, m, model_at(grid + phi0 + 0.5 / N_FOLD_BINS))
    amp = max(float(shape["model_amplitude"]), 1e-6)
    med = float(np.median(m))
    idx = np.minimum((phase * N_FOLD_BINS).astype(np.int64), N_FOLD_BINS - 1)
    out["fold_scatter_mh"] = float(np.sqrt(np.mean((m - folded[idx]) ** 2)) / amp)
    for j in range(N_FOLD_BINS):
        out[f"fold_{j:02d}"] = float((folded[j] - med) / amp)

    # double mode: prewhiten the dominant period, then search the residuals at P1/P0 ~ 0.745
    resid = m - harmonic_fit(tz, m, w, f_best)[1]
    span = max(float(tz[-1]), 1.0)
    df = 1.0 / (3.0 * span)
    lo, hi = RRD_RATIO
    windows = [np.arange(f_best * lo, f_best * hi, df), np.arange(f_best / hi, f_best / lo, df)]
    trial = np.concatenate(windows)
    if RRD_FREQ[0] <= f_best <= RRD_FREQ[1] and trial.size:  # RR Lyrae periods only (cost)
        p = np.concatenate([_gls_grid(tz, resid, w, f[0], df, f.size) for f in windows if f.size])
        j = int(np.argmax(p))
        out["dm_power"] = float(p[j])
        out["dm_ratio"] = float(min(trial[j], f_best) / max(trial[j], f_best))
        out["dm_power_excess"] = float(p[j] / max(np.median(p), 1e-12))
    else:
        out["dm_power"], out["dm_ratio"], out["dm_power_excess"] = 0.0, 0.0, 0.0
    med_err = float(np.median(err))
    out["median_err"] = med_err
    out["amplitude_snr"] = float(shape["model_amplitude"] / max(med_err, ERR_FLOOR))
    return np.array([out[n] for n in EXTRA_NAMES], dtype=np.float64)


def features(lcs: Sequence[LightCurve]) -> tuple[np.ndarray, dict[str, float]]:
    """The version-3 features of cleaned (time-sorted) light curves, float64
    ``(n, len(FEATURE_NAMES))`` in :data:`FEATURE_NAMES` order (the first :data:`V2_NAMES` are
    version 2's), and the wall time per part (seconds, all curves)."""
    step = MAX_FREQ / 2**GRID_LOG2
    timing: dict[str, float] = {}
    if not lcs:
        return np.zeros((0, len(FEATURE_NAMES))), timing
    triples = [(lc.t, lc.m, lc.err) for lc in lcs]
    t0 = time.perf_counter()
    broad = np.asarray(_BROAD.many(triples, sorted=True, n_jobs=1))
    t1 = time.perf_counter()
    peaks = np.asarray(_PERIODOGRAM.many(triples, sorted=True, n_jobs=1))
    t2 = time.perf_counter()
    rows, resids = [], []
    for (t, m, err), pk in zip(triples, peaks, strict=True):
        row, resid = periodic_features(t, m, err, pk, step=step)
        rows.append(row)
        resids.append((t, resid, err))
    t3 = time.perf_counter()
    second = np.asarray(_RESIDUAL_PERIODOGRAM.many(resids, sorted=True, n_jobs=1))
    for row, pk in zip(rows, second, strict=True):
        p, snr = pk
        row["residual_period"] = float(p)
        row["residual_period_snr"] = float(snr)
        lo, hi = sorted((p, row["period"]))
        row["residual_period_ratio"] = float(lo / hi) if hi > 0 else 0.0
    t4 = time.perf_counter()
    timing = {"broad": t1 - t0, "periodogram": (t2 - t1) + (t4 - t3), "fits": t3 - t2}
    rest = np.array([[row[n] for n in REST] for row in rows], dtype=np.float64)
    t5 = time.perf_counter()
    i_period = PERIOD_NAMES.index("period")
    more = np.array(
        [
            extra_features(t, m, err, pk, p, step)
            for (t, m, err), pk, p in zip(triples, peaks, rest[:, i_period], strict=True)
        ]
    ).reshape(len(triples), len(EXTRA_NAMES))
    timing["extra"] = time.perf_counter() - t5
    timing["total"] = t4 - t0 + timing["extra"]
    return np.concatenate([broad, rest, more], axis=1), timing
