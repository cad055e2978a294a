"""One period for a source observed in several bands: every band constrains the same frequency.

:func:`multiband_period` is the period search of :mod:`dmdt.periods` made joint. Each band's
periodogram is taken on one grid (the union baseline's) and the bands' powers are averaged with
weights ``sum((m - mean)^2 / err^2)`` (a band's chi^2 about its mean: light-curve's ``chi2``
multi-band normalisation); the best peaks of that average are refined by the exact joint power
(the same average of each band's direct GLS), and the candidates (peaks, halves, doubles, daily
aliases of the best two) are scored by one information criterion of a shared-frequency Fourier
fit, each band with its own mean and amplitudes and the same number of harmonics:
``sum_b n_b ln RSS_b(K) + PENALTY (2K + 1) (bands) ln N``. A band with fewer than
:data:`dmdt.periods.MIN_POINTS` points, or constant, is left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numba import njit

from dmdt import periodogram, periods
from dmdt.periodogram import pack
from dmdt.periods import (
    MAX_HARMONICS,
    MIN_POINTS,
    N_CANDIDATE_PEAKS,
    N_PEAKS,
    PENALTY,
    REFINE_STEP,
    SIDEREAL,
    _gls_at,
    _harmonic_system,
    _nested_rss,
)

Curve = tuple[np.ndarray, np.ndarray, np.ndarray]  # (t, m, err), time-sorted


@dataclass(frozen=True)
class MultibandPeriod:
    """The joint search's result for one source (NaN / 0 when no band can be searched)."""

    period: float  # days: the candidate of best joint criterion
    power: float  # the bands' weighted mean exact GLS power at ``period``
    n_harmonics: int  # harmonics of the best joint fit
    margin: float  # the runner-up candidate's criterion minus the best's (>= 0)
    runner_up: float  # days
    bands: tuple[str, ...]  # the bands used, in the order given
    band_weights: dict[str, float] = field(default_factory=dict)  # each band's share, sum 1


@njit(cache=True, nogil=True)
def _joint_power(
    t: np.ndarray,
    yc: np.ndarray,
    w: np.ndarray,
    yy: np.ndarray,
    offsets: np.ndarray,
    share: np.ndarray,
    f0: float,
    h: float,
    out: np.ndarray,
) -> None:
    """The bands' ``share``-weighted mean exact GLS power at ``f0 + i h``, ``i < out.size``."""
    out[:] = 0.0
    part = np.empty(out.size)
    for b in range(offsets.size - 1):
        lo, hi = offsets[b], offsets[b + 1]
        _gls_at(t[lo:hi], yc[lo:hi], w[lo:hi], yy[b], f0, h, part)
        out += share[b] * part


@njit(cache=True, nogil=True)
def _joint_refine(
    t: np.ndarray,
    yc: np.ndarray,
    w: np.ndarray,
    yy: np.ndarray,
    offsets: np.ndarray,
    share: np.ndarray,
    f: float,
    h: float,
) -> tuple[float, float]:
    """:func:`dmdt.periods._refine` of the joint power."""
    p = np.empty(3)
    for step in (h, 0.25 * h):
        _joint_power(t, yc, w, yy, offsets, share, f - step, step, p)
        for _ in range(8):
            if p[0] > p[1] and f - 2 * step > 0:
                f -= step
            elif p[2] > p[1]:
                f += step
            else:
                break
            _joint_power(t, yc, w, yy, offsets, share, f - step, step, p)
    step = 0.25 * h
    denom = p[0] - 2.0 * p[1] + p[2]
    if denom >= 0:
        return f, p[1]
    delta = 0.5 * (p[0] - p[2]) / denom
    return f + delta * step, p[1] - 0.25 * (p[0] - p[2]) * delta


@njit(cache=True, nogil=True)
def _joint_score(
    t: np.ndarray,
    m: np.ndarray,
    w: np.ndarray,
    offsets: np.ndarray,
    f: float,
    kmax: int,
    penalty: float,
) -> tuple[float, int]:
    """The best joint criterion over ``K = 1..kmax`` shared harmonics at ``f``, and that K."""
    n_bands = offsets.size - 1
    total_n = offsets[-1]
    crit = np.zeros(kmax + 1)
    rss = np.empty(kmax + 1)
    for b in range(n_bands):
        lo, hi = offsets[b], offsets[b + 1]
        g, rhs, yy = _harmonic_system(t[lo:hi], m[lo:hi], w[lo:hi], f, kmax)
        _nested_rss(g, rhs, yy, kmax, rss)
        crit += (hi - lo) * np.log(rss)
    best, best_k = np.inf, 1
    for k in range(1, kmax + 1):
        v = crit[k] + penalty * (2 * k + 1) * n_bands * math.log(total_n)
        if v < best - 1e-9:
            best, best_k = v, k
    return best, best_k


def _searchable(bands: Mapping[str, Curve]) -> dict[str, Curve]:
    out = {}
    for name, (t, m, err) in bands.items():
        t, m, err = (np.asarray(x, dtype=np.float64) for x in (t, m, err))
        if t.size >= MIN_POINTS and np.ptp(m) > 0:
            out[name] = (t, m, err)
    return out


def multiband_period(
    bands: Mapping[str, Curve],
    *,
    penalty: float = PENALTY,
    n_peaks: int = N_PEAKS,
    max_harmonics: int = MAX_HARMONICS,
) -> MultibandPeriod:
    """The one period that all of a source's bands ``{band: (t, m, err)}`` (each time-sorted,
    times in the same days) constrain together (module doc)."""
    used = _searchable(bands)
    if not used:
        return MultibandPeriod(np.nan, np.nan, 0, np.nan, np.nan, ())
    names = tuple(used)
    start = min(float(c[0][0]) for c in used.values())
    shifted = [(c[0] - start, c[1], c[2]) for c in used.values()]
    # the grid of the union baseline: one step and FFT length for every band
    union = np.sort(np.concatenate([c[0] for c in shifted]))
    _, lengths = periodogram.grid_steps(pack([(union, union, np.ones_like(union))]))
    length = int(lengths[0])
    step = periodogram.MAX_FREQ / int(periodogram.n_freqs(length))
    packed = pack(shifted)  # each band from its own first point: powers and fits are shift-free
    t, m, w, offsets = packed.t, packed.m, packed.w, packed.offsets
    power = periodogram.powers_on(packed, np.full(len(names), step), length)
    chi2 = np.empty(len(names))  # each band's chi^2 about its weighted mean: its weight
    for b, (_, mb, eb) in enumerate(shifted):
        wb = 1.0 / np.maximum(eb, periodogram.ERR_FLOOR) ** 2
        chi2[b] = np.sum(wb * (mb - np.average(mb, weights=wb)) ** 2)
    share = chi2 / chi2.sum()
    joint = share @ power  # (n_freq + 1,)
    values, where = np.empty(n_peaks), np.empty((n_peaks, 2), np.int64)
    periodogram._peaks(joint, values, where)
    yc = np.empty_like(m)
    yy = np.empty(len(names))
    for b in range(len(names)):
        lo, hi = offsets[b], offsets[b + 1]
        yc[lo:hi] = m[lo:hi] - np.sum(w[lo:hi] * m[lo:hi])
        yy[b] = np.sum(w[lo:hi] * yc[lo:hi] ** 2)
    refined = sorted(
        (_joint_refine(t, yc, w, yy, offsets, share, float(k * step), REFINE_STEP * step)
         for k in where[:, 0] if k > 0),
        key=lambda fp: -fp[1],
    )  # fmt: skip
    candidates: list[float] = []

    def add(f: float) -> None:
        if f > 0.5 * step and all(abs(f - c) >= 0.5 * step for c in candidates):
            candidates.append(f)

    for i, (f, _) in enumerate(refined[:N_CANDIDATE_PEAKS]):
        for g in (f, 0.5 * f, 2.0 * f):
            add(g)
        if i < periods.N_ALIASED_PEAKS:
            for g in (f + SIDEREAL, abs(f - SIDEREAL)):
                if g > step:
                    add(_joint_refine(t, yc, w, yy, offsets, share, g, REFINE_STEP * step)[0])
    kmax = max(1, min(max_harmonics, (int(np.diff(offsets).min()) - 1) // 6))
    scored = sorted(
        (_joint_score(t, m, w, offsets, f, kmax, penalty), f) for f in candidates
    )  # ((criterion, K), f), best first
    if not scored:
        return MultibandPeriod(np.nan, np.nan, 0, np.nan, np.nan, names)
    (best, k), f = scored[0]
    p = np.empty(1)
    _joint_power(t, yc, w, yy, offsets, share, f, 0.0, p)
    margin, runner = (scored[1][0][0] - best, 1.0 / scored[1][1]) if len(scored) > 1 else (
        np.nan, np.nan)  # fmt: skip
    return MultibandPeriod(
        period=1.0 / f,
        power=float(p[0]),
        n_harmonics=int(k),
        margin=float(margin),
        runner_up=float(runner),
        bands=names,
        band_weights=dict(zip(names, map(float, share), strict=True)),
    )
