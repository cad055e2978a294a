"""The period search of periodic features version 4, kept as the reference that the period-recovery
benchmark (research/period_recovery/benchmark.py) measures the current search against.

Version 4 took light-curve's FFT Lomb-Scargle periodogram on a fixed grid of 2^17 + 1 frequencies
up to 20 cycles/day, refined its 6 best peaks by a direct generalised Lomb-Scargle (GLS) and ranked
them by that refined power: its ``period`` was the best. Its ``mh_period`` was the best 4-harmonic
chi^2 among that period, the next two peaks, and their halves and doubles (no penalty for model
size). Its second period was the best peak of a 2^16-frequency periodogram of the residuals of a
4-harmonic fit at ``period``. :func:`v4_periods` reproduces the three exactly (checked against
the version-4 feature code before it was replaced).
"""

from __future__ import annotations

from collections.abc import Sequence

import light_curve as lcf
import numpy as np
from numba import njit

MAX_FREQ = 20.0  # cycles/day
GRID_LOG2 = 17
RESIDUAL_GRID_LOG2 = 16
ERR_FLOOR = 0.005
N_HARMONICS = 4


def periodogram(peaks: int, log2: int) -> lcf.Periodogram:
    """light-curve's FFT periodogram on version 4's grid: ``2**log2 + 1`` frequencies in [0, 20]
    cycles/day, ``peaks`` best peaks as [P, snr, ...]."""
    freqs = np.linspace(0.0, 2.0 * np.pi * MAX_FREQ, 2**log2 + 1)  # angular, rad/day
    return lcf.Periodogram(peaks=peaks, freqs=freqs, fast=True, normalization="standard")


_CURVE = periodogram(6, GRID_LOG2)
_RESIDUAL = periodogram(4, RESIDUAL_GRID_LOG2)


@njit(cache=True, error_model="numpy")
def gls_grid(
    t: np.ndarray, y: np.ndarray, w: np.ndarray, f0: float, df: float, n: int
) -> np.ndarray:
    """Generalised Lomb-Scargle power at ``f0 + k df``, ``k < n`` (each point's (cos, sin) advanced
    by a rotation, recomputed every 64 frequencies), as version 4 computed it."""
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


def refine(
    t: np.ndarray, y: np.ndarray, w: np.ndarray, f0: float, step: float
) -> tuple[float, float]:
    """The best GLS frequency within ``f0 +- 1.5 step`` (two passes of 31 trials) and its power."""
    best, power = f0, 0.0
    for half_width in (1.5 * step, 0.15 * step):
        trial = best + np.linspace(-half_width, half_width, 31)
        p = gls_grid(t, y, w, best - half_width, half_width / 15.0, 31)
        p[trial <= 0] = -np.inf
        i = int(np.argmax(p))
        best, power = float(trial[i]), float(p[i])
    return best, power


def ranked(
    t: np.ndarray, y: np.ndarray, w: np.ndarray, peaks: np.ndarray, step: float, keep: int
) -> list[float]:
    """The grid's peak periods refined and sorted by refined GLS power, the best ``keep``."""
    found = []
    for p in peaks[0::2]:
        if np.isfinite(p) and p > 0:
            f, power = refine(t, y, w, 1.0 / p, step)
            found.append((power, 1.0 / f))
    found.sort(key=lambda r: -r[0])
    return [p for _, p in found[:keep]]


def harmonic_fit(t: np.ndarray, y: np.ndarray, w: np.ndarray, freq: float, k: int) -> np.ndarray:
    """The weighted least-squares ``k``-harmonic Fourier series at ``freq``, evaluated at ``t``."""
    x = 2.0 * np.pi * freq * t
    cols = [np.ones_like(t)]
    for j in range(1, k + 1):
        cols += [np.cos(j * x), np.sin(j * x)]
    design = np.stack(cols, axis=1)
    sw = np.sqrt(w)
    coef = np.linalg.lstsq(design * sw[:, None], y * sw, rcond=None)[0]
    return np.asarray(design @ coef)


def v4_periods(t: np.ndarray, m: np.ndarray, err: np.ndarray) -> tuple[float, float, float]:
    """Version 4's ``period`` (best refined Lomb-Scargle peak), ``mh_period`` (best 4-harmonic
    chi^2 among peaks, halves and doubles) and ``residual_period`` of one cleaned curve."""
    step = MAX_FREQ / 2**GRID_LOG2
    w = 1.0 / np.maximum(err, ERR_FLOOR) ** 2
    tz = t - t[0]
    grid = np.asarray(_CURVE(t, m, err, sorted=True))
    periods = ranked(tz, m, w, grid, step, 3)
    periods += [np.nan] * (3 - len(periods))
    f0 = 1.0 / periods[0] if np.isfinite(periods[0]) else step
    f_best, _ = refine(tz, m, w, f0, step)
    candidates = [f_best, f_best / 2.0, f_best * 2.0]
    for p in periods[1:]:
        if np.isfinite(p):
            f, _ = refine(tz, m, w, 1.0 / p, step)
            candidates += [f, f / 2.0, f * 2.0]
    chi2 = [np.sum(w * (m - harmonic_fit(tz, m, w, f, N_HARMONICS)) ** 2) for f in candidates]
    f_mh = candidates[int(np.argmin(chi2))]
    resid = m - harmonic_fit(tz, m, w, f_best, N_HARMONICS)
    residual_step = MAX_FREQ / 2**RESIDUAL_GRID_LOG2
    rgrid = np.asarray(_RESIDUAL(t, resid, err, sorted=True))
    second = ranked(tz, resid, w, rgrid, residual_step, 1)
    return 1.0 / f_best, 1.0 / f_mh, second[0] if second else np.nan


def v4_periods_many(curves: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> np.ndarray:
    """:func:`v4_periods` of each ``(t, m, err)``: ``(n, 3)`` [period, mh_period, second]."""
    return np.array([v4_periods(*c) for c in curves]).reshape(len(curves), 3)
