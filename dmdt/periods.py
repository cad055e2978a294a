"""The period search of the periodic features: many light curves in one call, alias-proof periods
and a second-mode search for double-mode pulsators.

1. Each source's generalised Lomb-Scargle periodogram on a grid sized to its baseline
   (:mod:`dmdt.periodogram`), its :data:`N_PEAKS` best grid peaks.
2. Each peak refined by the exact (direct) GLS power: a parabola through the grid's three
   values, then through three exact values a quarter step apart, moved uphill until the middle
   one is highest.
3. Candidates: the :data:`N_CANDIDATE_PEAKS` best refined peaks, each with its half and double,
   and the daily aliases (``f +- 1.0027`` cycles/day, refined) of the best two. Each candidate is
   scored by the Bayesian information criterion of the best multi-harmonic Fourier fit at it,
   ``n ln(RSS_K) + PENALTY (2K + 1) ln n`` over ``K = 1..`` :data:`MAX_HARMONICS`: an alias or a
   double fits worse than the true period, or as well only with more terms, which the penalty
   charges (a contact binary's unequal minima make its odd harmonics worth their terms at the
   orbital period; a sinusoid's double gains nothing for its extra terms).
4. Second mode: the best fit is subtracted and the residuals searched by the exact GLS where a
   double-mode RR Lyrae star's other mode would be (period ratio :data:`DOUBLE_RATIO` either
   way), when the period is in the RR Lyrae range (:data:`DOUBLE_FREQ`).

Each stage after the FFT runs in numba over all sources of the call (``search``).
"""

from __future__ import annotations

import functools
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numba import njit

from dmdt import periodogram
from dmdt.periodogram import Packed, pack

N_PEAKS = 16  # grid peaks refined per source
N_CANDIDATE_PEAKS = 4  # best refined peaks whose halves, doubles (and aliases) are candidates
N_ALIASED_PEAKS = 2  # best refined peaks whose daily aliases are candidates
MAX_HARMONICS = 6
PENALTY = 1.0  # per fitted parameter, in units of ln(n) (1: the Bayesian information criterion)
SIDEREAL = 1.0027379  # cycles/day: a ground-based survey's daily alias spacing
DOUBLE_RATIO = (0.735, 0.755)  # P1 / P0 of double-mode RR Lyrae stars (0.740-0.750), a margin
DOUBLE_FREQ = (0.9, 5.5)  # cycles/day: the dominant mode's range where the second is searched
N_TOP = 3  # refined peaks reported
MIN_POINTS = 6  # fewer points: no period (a mean and one harmonic fit five exactly)
N_SUM_PEAKS = 3  # peaks of the power summed over harmonics whose fundamentals are candidates
N_JOINT = 3  # best candidates also scored with a second mode (double-mode pulsators)
WINDOW_STEP = 2.0  # the second-mode search's step, in grid steps (2: one per 1 / baseline)
N_WINDOW_PEAKS = 3  # the second-mode search's best values refined
REFINE_STEP = 0.5  # a peak's refinement starts with steps this long (grid steps), then 1/4 of it


@njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _gls_at(
    t: np.ndarray, yc: np.ndarray, w: np.ndarray, yy: float, f0: float, h: float, out: np.ndarray
) -> None:
    """Exact GLS power of centred ``yc`` (weights ``w`` summing to 1, variance ``yy``) at
    ``f0 + i h`` for ``i < out.size``: each point's (cos, sin) advanced from one frequency to the
    next by a rotation (recomputed exactly every 64 frequencies to bound the rounding drift)."""
    n = t.size
    zc, zs = np.empty(n), np.empty(n)
    rc, rs = np.empty(n), np.empty(n)
    wy = w * yc
    for j in range(n):
        d = 2.0 * np.pi * h * t[j]
        rc[j], rs[j] = math.cos(d), math.sin(d)
    for i in range(out.size):
        if i % 64 == 0:
            for j in range(n):
                x = 2.0 * np.pi * (f0 + i * h) * t[j]
                zc[j], zs[j] = math.cos(x), math.sin(x)
        cw = sw = yc_ = ys_ = c2 = cs = 0.0
        for j in range(n):
            c, s = zc[j], zs[j]
            cw += w[j] * c
            sw += w[j] * s
            yc_ += wy[j] * c
            ys_ += wy[j] * s
            c2 += w[j] * c * c
            cs += w[j] * c * s
            zc[j] = c * rc[j] - s * rs[j]
            zs[j] = c * rs[j] + s * rc[j]
        cc = c2 - cw * cw
        ss = 1.0 - c2 - sw * sw
        cs = cs - cw * sw
        dd = cc * ss - cs * cs
        out[i] = (
            (ss * yc_ * yc_ + cc * ys_ * ys_ - 2.0 * cs * yc_ * ys_) / (yy * dd) if dd > 0 else 0.0
        )


@njit(cache=True, nogil=True)
def _refine(
    t: np.ndarray, yc: np.ndarray, w: np.ndarray, yy: float, f: float, h: float
) -> tuple[float, float]:
    """The exact GLS peak near ``f``: three values ``h`` apart moved uphill (at most 8 steps)
    until the middle one is highest, the same again ``h / 4`` apart, then the parabola's vertex;
    (frequency, power there)."""
    p = np.empty(3)
    for step in (h, 0.25 * h):
        _gls_at(t, yc, w, yy, f - step, step, p)
        for _ in range(8):
            if p[0] > p[1] and f - 2 * step > 0:
                f -= step
            elif p[2] > p[1]:
                f += step
            else:
                break
            _gls_at(t, yc, w, yy, f - step, step, p)
    step = 0.25 * h
    denom = p[0] - 2.0 * p[1] + p[2]
    if denom >= 0:
        return f, p[1]
    delta = 0.5 * (p[0] - p[2]) / denom
    return f + delta * step, p[1] - 0.25 * (p[0] - p[2]) * delta


@njit(cache=True, nogil=True)
def _harmonic_system(
    t: np.ndarray, y: np.ndarray, w: np.ndarray, f: float, k: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """The weighted normal equations of a ``k``-harmonic Fourier series at ``f`` (columns 1, cos,
    sin, cos 2x, sin 2x, ...): matrix (2k + 1, 2k + 1), right-hand side, and sum w y^2; from the
    sums of w e^(i m x), m <= 2k, and w y e^(i m x), m <= k."""
    wr, wi = np.zeros(2 * k + 1), np.zeros(2 * k + 1)
    yr, yi = np.zeros(k + 1), np.zeros(k + 1)
    yy = 0.0
    for j in range(t.size):
        x = 2.0 * np.pi * f * t[j]
        c1, s1 = math.cos(x), math.sin(x)
        c, s = 1.0, 0.0
        wj, wy = w[j], w[j] * y[j]
        yy += wy * y[j]
        wr[0] += wj
        yr[0] += wy
        for m in range(1, 2 * k + 1):
            c, s = c * c1 - s * s1, c * s1 + s * c1
            wr[m] += wj * c
            wi[m] += wj * s
            if m <= k:
                yr[m] += wy * c
                yi[m] += wy * s
    size = 2 * k + 1
    g = np.empty((size, size))
    rhs = np.empty(size)
    g[0, 0], rhs[0] = wr[0], yr[0]
    for a in range(1, k + 1):
        g[0, 2 * a - 1] = g[2 * a - 1, 0] = wr[a]
        g[0, 2 * a] = g[2 * a, 0] = wi[a]
        rhs[2 * a - 1], rhs[2 * a] = yr[a], yi[a]
        for b in range(1, k + 1):
            d = abs(a - b)
            sd = wi[d] if a >= b else -wi[d]  # sin((a - b) x)
            g[2 * a - 1, 2 * b - 1] = 0.5 * (wr[d] + wr[a + b])  # cos a, cos b
            g[2 * a, 2 * b] = 0.5 * (wr[d] - wr[a + b])  # sin a, sin b
            g[2 * a - 1, 2 * b] = 0.5 * (wi[a + b] - sd)  # cos a, sin b
            g[2 * a, 2 * b - 1] = 0.5 * (wi[a + b] + sd)  # sin a, cos b
    return g, rhs, yy


@njit(cache=True, nogil=True)
def _nested_rss(g: np.ndarray, rhs: np.ndarray, yy: float, k: int, out: np.ndarray) -> int:
    """Weighted residual sums of squares of the nested fits with 0..``k`` harmonics (the mean
    alone, then one more (cos, sin) pair each) into ``out[0..k]``, from one Cholesky
    factorisation; returns the largest ``k`` that was well conditioned (the rest repeat it)."""
    size = 2 * k + 1
    low = np.zeros((size, size))
    z = np.zeros(size)
    rss = yy
    good = k
    for i in range(size):
        s = g[i, i]
        for p in range(i):
            s -= low[i, p] ** 2
        if s <= 1e-10 * max(g[i, i], 1e-300):
            good = (i - 1) // 2
            break
        low[i, i] = math.sqrt(s)
        for r in range(i + 1, size):
            v = g[r, i]
            for p in range(i):
                v -= low[r, p] * low[i, p]
            low[r, i] = v / low[i, i]
        v = rhs[i]
        for p in range(i):
            v -= low[i, p] * z[p]
        z[i] = v / low[i, i]
        rss -= z[i] ** 2
        if i % 2 == 0:
            out[i // 2] = max(rss, 1e-300)
    for h in range(good + 1, k + 1):
        out[h] = out[good]
    return good


@njit(cache=True, nogil=True)
def _solve(g: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``g x = rhs`` for a symmetric positive definite ``g`` (Cholesky; a tiny ridge if needed)."""
    n = rhs.size
    a = g.copy()
    for i in range(n):
        a[i, i] += 1e-12 * max(g[i, i], 1e-300)
    low = np.zeros((n, n))
    for i in range(n):
        for r in range(i, n):
            v = a[r, i]
            for p in range(i):
                v -= low[r, p] * low[i, p]
            low[r, i] = math.sqrt(max(v, 1e-300)) if r == i else v / low[i, i]
    z = np.empty(n)
    for i in range(n):
        v = rhs[i]
        for p in range(i):
            v -= low[i, p] * z[p]
        z[i] = v / low[i, i]
    x = np.empty(n)
    for i in range(n - 1, -1, -1):
        v = z[i]
        for p in range(i + 1, n):
            v -= low[p, i] * x[p]
        x[i] = v / low[i, i]
    return x


@njit(cache=True, nogil=True)
def harmonic_model(t: np.ndarray, coef: np.ndarray, f: float) -> np.ndarray:
    """A Fourier series [mean, a1, b1, a2, b2, ...] (a cos + b sin) at ``f``, evaluated at ``t``."""
    k = (coef.size - 1) // 2
    out = np.full(t.size, coef[0])
    for j in range(t.size):
        x = 2.0 * np.pi * f * t[j]
        c1, s1 = math.cos(x), math.sin(x)
        c, s = 1.0, 0.0
        for m in range(1, k + 1):
            c, s = c * c1 - s * s1, c * s1 + s * c1
            out[j] += coef[2 * m - 1] * c + coef[2 * m] * s
    return out


@njit(cache=True, nogil=True)
def harmonic_coef(t: np.ndarray, y: np.ndarray, w: np.ndarray, f: float, k: int) -> np.ndarray:
    """Weighted least-squares coefficients [mean, a1, b1, ...] of ``k`` harmonics at ``f``."""
    g, rhs, _ = _harmonic_system(t, y, w, f, k)
    return _solve(g, rhs)


@njit(cache=True, nogil=True)
def _max_harmonics(n: int, kmax: int) -> int:
    """At most ``kmax`` harmonics and at least 6 points per fitted parameter... of a pair."""
    return max(1, min(kmax, (n - 1) // 6))


@njit(cache=True, nogil=True)
def _score(
    t: np.ndarray, y: np.ndarray, w: np.ndarray, f: float, kmax: int, penalty: float
) -> tuple[float, int]:
    """The best information criterion ``n ln RSS_K + penalty (2K + 1) ln n`` over ``K =
    1..kmax`` harmonics at ``f``, and that ``K``."""
    n = t.size
    g, rhs, yy = _harmonic_system(t, y, w, f, kmax)
    rss = np.empty(kmax + 1)
    _nested_rss(g, rhs, yy, kmax, rss)
    best, best_k = np.inf, 1
    for k in range(1, kmax + 1):
        v = n * math.log(rss[k]) + penalty * (2 * k + 1) * math.log(n)
        if v < best - 1e-9:
            best, best_k = v, k
    return best, best_k


@njit(cache=True, nogil=True)
def _add(cand: np.ndarray, nc: int, f: float, tol: float) -> int:
    """Append ``f`` to ``cand[:nc]`` unless it is within ``tol`` of one there; the new count."""
    if not np.isfinite(f) or f <= tol or nc >= cand.size:
        return nc
    for q in range(nc):
        if abs(cand[q] - f) < tol:
            return nc
    cand[nc] = f
    return nc + 1


@njit(cache=True, nogil=True)
def _second_mode(
    t: np.ndarray,
    m: np.ndarray,
    w: np.ndarray,
    f: float,
    k: int,
    h: float,
    lo: float,
    hi: float,
) -> tuple[float, float, float, int]:
    """The best sinusoid in the residuals of the ``k``-harmonic fit at ``f`` with a frequency
    ratio in [``lo``, ``hi``] either way, not a daily alias of ``f`` (GLS on a grid of step
    ``h``, the best :data:`N_WINDOW_PEAKS` values refined):
    (frequency, residual GLS power, that power over the median power searched, the number of
    frequencies searched)."""
    coef = harmonic_coef(t, m, w, f, k)
    r = m - harmonic_model(t, coef, f)
    rc = r - np.sum(w * r)
    ry = np.sum(w * rc * rc)
    if ry <= 0:
        return np.nan, 0.0, 0.0, 1
    freqs, powers = np.empty(0), np.empty(0)
    for a, b in ((f * lo, f * hi), (f / hi, f / lo)):
        count = int((b - a) / h) + 1
        p = np.empty(count)
        _gls_at(t, rc, w, ry, a, h, p)
        g = a + h * np.arange(count)
        for d in (SIDEREAL, 2.0 * SIDEREAL):  # not a daily alias of the first mode (an alias
            p[np.abs(np.abs(g - f) - d) < 2.0 * h] = 0.0  # candidate would take the true one)
        freqs, powers = np.concatenate((freqs, g)), np.concatenate((powers, p))
    f2, p2 = np.nan, -np.inf
    for i in np.argsort(-powers)[:N_WINDOW_PEAKS]:  # the grid is coarse: refine the best few
        g2, q2 = _refine(t, rc, w, ry, freqs[i], 0.5 * h)
        if q2 > p2:
            f2, p2 = g2, q2
    p2 = min(max(p2, 0.0), 1.0 - 1e-12)
    return f2, p2, p2 / max(np.median(powers), 1e-12), powers.size


@njit(cache=True, nogil=True)
def _mode_gain(power: float, n: int, penalty: float, tried: int) -> float:
    """The criterion's gain from a second mode of residual GLS ``power`` found among ``tried``
    frequencies: ``n ln(1 / (1 - power))`` less the three parameters' penalty and ``2 ln tried``
    for having picked the best of ``tried`` (else noise gains it about half the time)."""
    return -n * math.log(1.0 - power) - penalty * 3.0 * math.log(n) - 2.0 * math.log(tried)


@njit(cache=True, nogil=True)
def _search_all(
    t: np.ndarray,
    m: np.ndarray,
    w: np.ndarray,
    offsets: np.ndarray,
    grid_freq: np.ndarray,
    sum_freq: np.ndarray,
    sum_harmonic: np.ndarray,
    step: np.ndarray,
    settings: np.ndarray,
    out: np.ndarray,
    top: np.ndarray,
) -> None:
    """The search after the grid, source by source (``settings`` = [candidate peaks, aliased
    peaks, max harmonics, penalty, double-mode ratio lo, hi, frequency lo, hi, joint
    candidates]): ``out[s]`` = [frequency, GLS power, K, criterion margin to the runner-up,
    runner-up frequency, second frequency, its residual power, that power over the windows'
    median, the criterion's gain from it]; ``top[s]`` = the best refined peaks [f, power] *
    N_TOP."""
    n_cand_peaks, n_aliased, kmax = int(settings[0]), int(settings[1]), int(settings[2])
    penalty, lo, hi, fmin, fmax = settings[3], settings[4], settings[5], settings[6], settings[7]
    n_joint = int(settings[8])
    n_grid = grid_freq.shape[1]
    for s in range(offsets.size - 1):
        a, b = offsets[s], offsets[s + 1]
        ts, ms, ws = t[a:b], m[a:b], w[a:b]
        n = ts.size
        out[s, :] = np.nan
        top[s, :] = np.nan
        yc = ms - np.sum(ws * ms)
        yy = np.sum(ws * yc * yc)
        if n < MIN_POINTS or yy <= 0 or not np.isfinite(grid_freq[s, 0]):
            continue
        h = step[s]
        # the grid's peaks refined by the exact GLS, best first
        rf = np.full(n_grid, np.nan)
        rp = np.full(n_grid, -np.inf)
        for i in range(n_grid):
            if np.isfinite(grid_freq[s, i]):
                rf[i], rp[i] = _refine(ts, yc, ws, yy, grid_freq[s, i], REFINE_STEP * h)
        order = np.argsort(-rp)
        for i in range(min(N_TOP, n_grid)):
            top[s, 2 * i], top[s, 2 * i + 1] = rf[order[i]], rp[order[i]]
        # candidates: the best peaks, their halves and doubles, the best two's daily aliases;
        # each harmonic-sum peak's fundamental (its strongest harmonic refined, divided)
        cand = np.full(8 * n_cand_peaks + 2 * sum_freq.shape[1], np.nan)
        nc = 0
        for i in range(min(n_cand_peaks, n_grid)):
            f = rf[order[i]]
            if not np.isfinite(f):
                continue
            for g in (f, 0.5 * f, 2.0 * f):
                nc = _add(cand, nc, g, 0.5 * h)
            if i < n_aliased:
                for g in (f + SIDEREAL, abs(f - SIDEREAL)):
                    if g > h:
                        nc = _add(cand, nc, _refine(ts, yc, ws, yy, g, REFINE_STEP * h)[0], 0.5 * h)
        for i in range(sum_freq.shape[1]):
            if np.isfinite(sum_freq[s, i]):
                fh = (
                    _refine(ts, yc, ws, yy, sum_freq[s, i], REFINE_STEP * h)[0] / sum_harmonic[s, i]
                )
                nc = _add(cand, nc, fh, 0.5 * h)
                nc = _add(cand, nc, 0.5 * fh, 0.5 * h)
        # each candidate's best multi-harmonic criterion
        k_max = _max_harmonics(n, kmax)
        scores = np.full(nc, np.inf)
        ks = np.ones(nc, dtype=np.int64)
        for q in range(nc):
            scores[q], ks[q] = _score(ts, ms, ws, cand[q], k_max, penalty)
        # a double mode: the best few in the RR Lyrae range also as [harmonics + a second mode]
        rank = np.argsort(scores)
        second = np.full((nc, 3), np.nan)
        gain = np.full(nc, np.nan)
        for q in rank[: min(n_joint, nc)]:
            if fmin <= cand[q] <= fmax:
                f2, p2, ex, tried = _second_mode(
                    ts, ms, ws, cand[q], ks[q], WINDOW_STEP * h, lo, hi
                )
                second[q] = f2, p2, ex
                gain[q] = _mode_gain(p2, n, penalty, tried)
                if gain[q] > 0:
                    scores[q] -= gain[q]
        rank = np.argsort(scores)
        q = rank[0]
        p1 = np.empty(1)
        _gls_at(ts, yc, ws, yy, cand[q], 0.0, p1)
        out[s, 0], out[s, 1], out[s, 2] = cand[q], p1[0], ks[q]
        if nc > 1:
            out[s, 3], out[s, 4] = scores[rank[1]] - scores[q], cand[rank[1]]
        if not np.isfinite(gain[q]) and fmin <= cand[q] <= fmax:
            f2, p2, ex, tried = _second_mode(ts, ms, ws, cand[q], ks[q], WINDOW_STEP * h, lo, hi)
            second[q] = f2, p2, ex
            gain[q] = _mode_gain(p2, n, penalty, tried)
        out[s, 5], out[s, 6], out[s, 7], out[s, 8] = (
            second[q, 0],
            second[q, 1],
            second[q, 2],
            gain[q],
        )


DEVICE_ENV = "DMDT_PERIODS_DEVICE"


# A Linux machine without these driver nodes (NVIDIA's, ROCm's) has no GPU torch could use
GPU_DEVICE_NODES = ("/dev/nvidiactl", "/dev/kfd")


def default_device() -> str:
    """``$DMDT_PERIODS_DEVICE`` if set, else ``"cuda"`` when torch sees a GPU, else ``"cpu"``
    (also when torch is not installed: an install without it searches on the CPU)."""
    return os.environ.get(DEVICE_ENV) or _gpu_or_cpu()


@functools.lru_cache(maxsize=1)
def _gpu_or_cpu() -> str:
    if sys.platform == "linux" and not any(os.path.exists(p) for p in GPU_DEVICE_NODES):
        return "cpu"  # torch would say the same; not importing it saves a LightGBM consumer 70 MiB
    try:
        import torch
    except ImportError:
        return "cpu"
    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass(frozen=True)
class Periods:
    """The search's results, one row per source (NaN where a curve has none)."""

    period: np.ndarray  # days: the candidate of best criterion
    power: np.ndarray  # exact GLS power (standard normalisation) at ``period``
    n_harmonics: np.ndarray  # harmonics of the best fit there
    margin: np.ndarray  # the runner-up candidate's criterion minus the best's (>= 0)
    runner_up: np.ndarray  # days: the runner-up candidate
    peaks: np.ndarray  # (n, N_TOP) days: the best refined GLS peaks, by power
    peak_powers: np.ndarray  # (n, N_TOP)
    peak_snr: np.ndarray  # (n, N_TOP): (power - grid mean) / grid standard deviation
    second: np.ndarray  # days: the second mode's period (searched in the RR Lyrae range only)
    second_power: np.ndarray  # its GLS power in the residuals of the best fit
    second_excess: np.ndarray  # that power over the median power of the windows searched
    second_gain: np.ndarray  # criterion gain of adding it (one harmonic); > 0: worth it
    step: np.ndarray  # cycles/day: the grid's step


def search(
    curves: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]] | Packed,
    *,
    n_peaks: int = N_PEAKS,
    oversample: float = periodogram.OVERSAMPLE,
    penalty: float = PENALTY,
    n_candidate_peaks: int = N_CANDIDATE_PEAKS,
    n_aliased: int = N_ALIASED_PEAKS,
    max_harmonics: int = MAX_HARMONICS,
    exact_grid: bool = False,
    n_sum_peaks: int = N_SUM_PEAKS,
    n_joint: int = N_JOINT,
    device: str | None = None,
) -> Periods:
    """The period search of time-sorted curves ``(t, m, err)`` (or already :func:`pack` ed), all
    in one call (module doc). ``device``: where the grid stage runs: ``"cpu"`` (numba and
    scipy), ``"cuda[:i]"`` or ``"torch-cpu"`` (torch, :mod:`dmdt.periodogram_torch`); None:
    :func:`default_device`. The stages after the grid always run on the CPU."""
    packed = curves if isinstance(curves, Packed) else pack(curves)
    device = device or default_device()
    if device == "cpu" or exact_grid:
        grid = periodogram.grid_peaks(packed, n_peaks, oversample, exact_grid, n_sum_peaks)
    else:
        from dmdt.periodogram_torch import grid_peaks_torch

        torch_device = "cpu" if device == "torch-cpu" else device
        grid = grid_peaks_torch(packed, n_peaks, oversample, n_sum_peaks, device=torch_device)
    n = len(packed)
    out = np.full((n, 9), np.nan)
    top = np.full((n, 2 * N_TOP), np.nan)
    settings = np.array([n_candidate_peaks, n_aliased, max_harmonics, penalty, *DOUBLE_RATIO,
                         *DOUBLE_FREQ, n_joint], dtype=np.float64)  # fmt: skip
    _search_all(packed.t, packed.m, packed.w, packed.offsets, grid.freq, grid.sum_freq,
                grid.sum_harmonic, grid.step, settings, out, top)  # fmt: skip
    with np.errstate(divide="ignore", invalid="ignore"):
        peak_f, peak_p = top[:, 0::2], top[:, 1::2]
        return Periods(
            period=1.0 / out[:, 0],
            power=out[:, 1],
            n_harmonics=out[:, 2],
            margin=out[:, 3],
            runner_up=1.0 / out[:, 4],
            peaks=1.0 / peak_f,
            peak_powers=peak_p,
            peak_snr=(peak_p - grid.mean[:, None]) / grid.std[:, None],
            second=1.0 / out[:, 5],
            second_power=out[:, 6],
            second_excess=out[:, 7],
            second_gain=out[:, 8],
            step=grid.step,
        )
