"""Training-side views and candidate features of issue 7, measured against the shipped ones.

:func:`augmented` draws thinned, re-noised copies of a curve for training.
:func:`season_features` (does a source's shape change from one observing season to the next, as a
spotted RS CVn star's does?) and :func:`double_mode_features` (version 3's double-mode search,
:mod:`trainer.periodic_v3`, also at the daily aliases of the second mode, and a joint two-mode
fit) are candidate features. The curve views a served model may use (visit clipping, visit
medians) are in :mod:`dmdt.views`. docs/beyond.md reports each against the version 4 features
shipped then.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from dmdt.lightcurves import LightCurve
from dmdt.views import visits
from trainer import periodic_v3 as periodic

SEASON_GAP = 90.0  # days between observing seasons
N_SEASON_FEATURES = 7
N_DOUBLE_MODE_FEATURES = 6


def augmented(lc: LightCurve, rng: np.random.Generator, min_points: int = 40) -> LightCurve:
    """A training copy of ``lc``: a random 50-85% of its visits (whole visits, as a shorter or
    sparser survey would give), each magnitude moved by N(0, (err / 2)^2); all points when fewer
    than ``min_points`` would be left."""
    g = visits(lc.t)
    keep = (rng.random(int(g[-1]) + 1) < rng.uniform(0.5, 0.85))[g]
    if keep.sum() < min_points:
        keep[:] = True
    err = lc.err[keep]
    m = lc.m[keep] + rng.normal(0.0, 1.0, err.size) * np.maximum(err, periodic.ERR_FLOOR) * 0.5
    return replace(lc, t=lc.t[keep], m=m, err=err)


def _design(t: np.ndarray, terms: list[tuple[float, int]]) -> np.ndarray:
    """Columns 1, cos, sin of each (frequency, harmonics) term."""
    cols = [np.ones_like(t)]
    for f, k in terms:
        for h in range(1, k + 1):
            cols += [np.cos(2 * np.pi * h * f * t), np.sin(2 * np.pi * h * f * t)]
    return np.stack(cols, axis=1)


def _wlsq(a: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float]:
    """Weighted least squares: coefficients and weighted chi^2 (``w`` = 1 / sigma^2)."""
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(a * sw[:, None], y * sw, rcond=None)
    return coef, float(np.sum(w * (y - a @ coef) ** 2))


def season_features(lc: LightCurve, period: float, harmonics: int = 3, min_points: int = 20
                    ) -> np.ndarray:  # fmt: skip
    """How much the curve's shape at ``period`` changes between observing seasons (gaps over
    :data:`SEASON_GAP`): [seasons with ``min_points`` or more, std / mean of their first-harmonic
    amplitudes, circular std of their first-harmonic phases, std of their mean magnitudes over the
    median error, chi^2 of per-season fits over the global fit's on the same points, chi^2 of the
    global shape with a free mean per season over the global fit's, std of the season means over
    the mean amplitude]; NaN where fewer than two seasons qualify."""
    t, m = lc.t - lc.t[0], lc.m
    err = np.maximum(lc.err, periodic.ERR_FLOOR)
    w = 1.0 / err**2
    season = np.concatenate([[0], np.cumsum(np.diff(t) > SEASON_GAP)])
    a = _design(t, [(1.0 / period, harmonics)])
    coef, chi_global = _wlsq(a, m, w)
    resid_global = m - a @ coef
    amps, phases, means = [], [], []
    chi_seasons = chi_same_points = 0.0
    for s in range(int(season[-1]) + 1):
        sel = season == s
        if sel.sum() < min_points:
            continue
        c, chi = _wlsq(a[sel], m[sel], w[sel])
        chi_seasons += chi
        chi_same_points += float(np.sum(w[sel] * resid_global[sel] ** 2))
        amps.append(np.hypot(c[1], c[2]))
        phases.append(np.arctan2(c[2], c[1]))
        means.append(c[0])
    offsets = (season[:, None] == np.arange(int(season[-1]) + 1)[None, :]).astype(np.float64)
    _, chi_offsets = _wlsq(np.concatenate([a[:, 1:], offsets], axis=1), m, w)
    n = len(amps)
    if n < 2:
        return np.array([n] + [np.nan] * (N_SEASON_FEATURES - 1))
    amp = max(float(np.mean(amps)), 1e-3)
    resultant = max(float(np.abs(np.mean(np.exp(1j * np.array(phases))))), 1e-9)
    return np.array([
        n,
        np.std(amps) / amp,
        np.sqrt(-2.0 * np.log(resultant)),
        np.std(means) / float(np.median(err)),
        chi_seasons / max(chi_same_points, 1e-12),
        chi_offsets / max(chi_global, 1e-12),
        np.std(means) / amp,
    ])  # fmt: skip


def double_mode_features(lc: LightCurve, period: float) -> np.ndarray:
    """The double-mode RR Lyrae search of version 3 (:func:`trainer.periodic_v3.extra_features`)
    widened to the daily aliases (+-1 cycle/day) of the second mode's window, and a joint fit:
    [best alias-window residual power, that power over the residuals' median power between 0.5
    and 4.5 cycles/day,
    the same excess for the direct window, chi^2 of a joint fit (dominant mode 4 harmonics, the
    direct window's second mode 2, their sum and difference 1 each) over the one-mode chi^2, the
    same with the alias window's second mode, the residuals' highest power over their median];
    zeros outside the RR Lyrae frequencies (:data:`trainer.periodic_v3.RRD_FREQ`)."""
    f1 = 1.0 / period
    if not periodic.RRD_FREQ[0] <= f1 <= periodic.RRD_FREQ[1]:
        return np.zeros(N_DOUBLE_MODE_FEATURES)
    t, m = lc.t - lc.t[0], lc.m
    w = 1.0 / np.maximum(lc.err, periodic.ERR_FLOOR) ** 2
    resid = m - periodic.harmonic_fit(t, m, w, f1)[1]
    df = 1.0 / (3.0 * max(float(t[-1]), 1.0))
    lo, hi = periodic.RRD_RATIO

    def best(shift: float) -> tuple[float, float]:
        top = (-1.0, f1 * lo)
        for a, b in ((f1 * lo, f1 * hi), (f1 / hi, f1 / lo)):
            trial = np.arange(a + shift, b + shift, df)
            trial = trial[trial > 0.05]
            if trial.size:
                p = periodic._gls_grid(t, resid, w, trial[0], df, trial.size)
                j = int(np.argmax(p))
                top = max(top, (float(p[j]), float(trial[j])))
        return top

    direct = best(0.0)
    alias = max(best(-1.0), best(1.0))
    background = periodic._gls_grid(t, resid, w, 0.5, 0.01, 400)
    median = max(float(np.median(background)), 1e-9)
    _, chi_one = _wlsq(_design(t, [(f1, periodic.N_HARMONICS)]), m, w)

    def joint(f2: float) -> float:
        terms = [(f1, periodic.N_HARMONICS), (f2, 2), (f1 + f2, 1), (abs(f1 - f2), 1)]
        return _wlsq(_design(t, terms), m, w)[1] / max(chi_one, 1e-12)

    return np.array([
        alias[0], alias[0] / median, direct[0] / median, joint(direct[1]), joint(alias[1]),
        float(np.max(background)) / median,
    ])  # fmt: skip
