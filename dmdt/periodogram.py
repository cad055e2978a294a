"""Generalised Lomb-Scargle periodograms of many light curves in one call, each on a grid sized to
its own baseline, and the best peaks of each without sorting its grid.

A source's grid runs from ``df`` to :data:`MAX_FREQ` cycles/day in steps of ``df = 1 / (O T)``
(``T`` its baseline, ``O`` >= :data:`OVERSAMPLE`), so a young source pays for the resolution of
its own few weeks, not of a ten-year curve. The sums over points at every grid frequency come
from one FFT per source (a type-1 non-uniform FFT: each point's weight spread onto a uniform grid
with a Gaussian of :data:`SPREAD_WIDTH` cells, :data:`SPREAD_TAPS` taps, on a grid at least
:data:`UPSAMPLE` times finer than the highest frequency needs, the Gaussian divided out after
the FFT: relative error ~1e-4 of the sums). The FFT length is taken from a ladder
(2^a x {1, 5/4, 3/2}) and ``df`` made just fine enough to fill it, so that sources of similar
baselines share one batched FFT call. Then one numba pass per source computes the power and
keeps the ``n_peaks`` highest local maxima in a small heap.

The arrays of all sources are concatenated (``offsets[s]:offsets[s + 1]`` is source ``s``), times
starting at 0, weights summing to 1 per source (:func:`pack`).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft
from numba import njit

MAX_FREQ = 10.0  # cycles/day: periods down to 2.4 h (the seven classes' shortest: EW ~0.22 d)
OVERSAMPLE = 2.0  # grid steps per 1 / baseline, at least (1 loses up to 60 % of a peak)
ERR_FLOOR = 0.005  # mag: a few CRTS errors are tiny or zero; weights 1 / max(err, floor)^2
UPSAMPLE = 1.5  # FFT length >= 2 * UPSAMPLE * (number of grid frequencies)
SPREAD_TAPS = 8  # grid cells each point is spread onto
SPREAD_WIDTH = 1.05  # the Gaussian's standard deviation, in grid cells
MIN_BASELINE = 1.0  # days: shorter curves are searched as if their baseline were this long
MAX_GRID = 2**19  # grid frequencies at most (baselines over ~70 years get a coarser step)
_LADDER = (1.0, 1.25, 1.5)
CHUNK_BYTES = 32 << 20  # the spread grids of one batched FFT call, at most


@dataclass(frozen=True)
class Packed:
    """Many light curves concatenated: times from each curve's first point, magnitudes, weights
    summing to 1 per curve, and ``offsets`` (n + 1,)."""

    t: np.ndarray
    m: np.ndarray
    w: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return int(self.offsets.size - 1)

    def curve(self, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Source ``s``'s (t, m, w)."""
        a, b = self.offsets[s], self.offsets[s + 1]
        return self.t[a:b], self.m[a:b], self.w[a:b]


def pack(curves: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> Packed:
    """Concatenate time-sorted curves ``(t, m, err)``: times from each curve's first point,
    weights ``1 / max(err, ERR_FLOOR)^2`` normalised per curve."""
    sizes = np.array([len(c[0]) for c in curves], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    if not curves:
        empty = np.zeros(0)
        return Packed(empty, empty, empty, offsets)
    t = np.concatenate([np.asarray(c[0], dtype=np.float64) - c[0][0] for c in curves])
    m = np.concatenate([np.asarray(c[1], dtype=np.float64) for c in curves])
    err = np.concatenate([np.asarray(c[2], dtype=np.float64) for c in curves])
    w = 1.0 / np.maximum(err, ERR_FLOOR) ** 2
    sums = np.add.reduceat(w, offsets[:-1]) if t.size else np.zeros(0)
    w /= np.repeat(sums, sizes)
    return Packed(t, m, w, offsets)


def fft_length(n_freq: int) -> int:
    """The smallest length of the ladder 2^a x {1, 5/4, 3/2} that holds ``n_freq`` grid
    frequencies (>= 2 * UPSAMPLE * n_freq)."""
    need = int(np.ceil(2 * UPSAMPLE * max(n_freq, 8)))
    a = int(np.floor(np.log2(need)))
    for base in (2**a, 2 ** (a + 1)):
        for r in _LADDER:
            if int(base * r) >= need and (base * r) % 4 == 0:
                return int(base * r)
    return 2 ** (a + 2)


def n_freqs(lengths: np.ndarray | int) -> np.ndarray:
    """Grid frequencies an FFT of each of ``lengths`` serves (``length / (2 UPSAMPLE)``)."""
    return (np.asarray(lengths) / (2 * UPSAMPLE)).astype(np.int64)


def grid_steps(packed: Packed, oversample: float = OVERSAMPLE) -> tuple[np.ndarray, np.ndarray]:
    """Per source: the grid step ``df`` (cycles/day) and the FFT length, ``df`` at most
    ``1 / (oversample T)`` (but for :data:`MAX_GRID`) and just fine enough to fill the FFT
    length."""
    last = packed.t[np.maximum(packed.offsets[1:] - 1, 0)] if packed.t.size else np.zeros(0)
    baseline = np.maximum(last, MIN_BASELINE)
    n_freq = np.minimum(np.ceil(MAX_FREQ * oversample * baseline), MAX_GRID).astype(np.int64)
    lengths = np.array([fft_length(int(k)) for k in n_freq], dtype=np.int64)
    return MAX_FREQ / n_freqs(lengths), lengths


@functools.lru_cache(maxsize=64)
def deconvolution(length: int) -> np.ndarray:
    """The factor that turns an FFT of length ``length`` of the spread grid into the sums over
    points, at grid indices 0..n_freqs(length): 1 / (the spreading Gaussian's transform)."""
    k = np.arange(int(n_freqs(length)) + 1)
    transform = (
        SPREAD_WIDTH
        * np.sqrt(2.0 * np.pi)
        * np.exp(-2.0 * (np.pi * SPREAD_WIDTH * k / length) ** 2)
    )
    out = 1.0 / transform
    out.setflags(write=False)
    return out


@njit(cache=True, nogil=True)
def _spread(
    t: np.ndarray,
    m: np.ndarray,
    w: np.ndarray,
    offsets: np.ndarray,
    df: np.ndarray,
    rows: np.ndarray,
    out: np.ndarray,
    exact: bool,
) -> np.ndarray:
    """Spread each source's weighted, mean-subtracted magnitudes at phase ``t df`` (and, when
    ``exact``, its weights at ``t df`` and ``2 t df``) onto ``out[rows[s], seq, :]``; returns
    each source's weighted variance of the magnitudes."""
    length = out.shape[2]
    inv = 1.0 / (2.0 * SPREAD_WIDTH**2)
    half = SPREAD_TAPS // 2
    var = np.empty(offsets.size - 1)
    for s in range(offsets.size - 1):
        a, b = offsets[s], offsets[s + 1]
        mean = 0.0
        for j in range(a, b):
            mean += w[j] * m[j]
        v = 0.0
        for j in range(a, b):
            v += w[j] * (m[j] - mean) ** 2
        var[s] = v
        r = rows[s]
        for j in range(a, b):
            for seq in range(3 if exact else 1):
                x = t[j] * df[s] * (2.0 if seq == 2 else 1.0)
                pos = (x - np.floor(x)) * length
                value = w[j] * (m[j] - mean) if seq == 0 else w[j]
                first = int(np.floor(pos)) - half + 1
                for i in range(first, first + SPREAD_TAPS):
                    d = i - pos
                    out[r, seq, i % length] += value * np.exp(-d * d * inv)
    return var


@njit(cache=True, nogil=True, error_model="numpy")
def _power(
    spectrum: np.ndarray, var: float, gain: np.ndarray, exact: bool, out: np.ndarray
) -> None:
    """Power at grid indices 1..n_freq (``gain.size - 1``) of one source into ``out[1:]``, from
    its FFTs ``spectrum`` (seq, M/2 + 1) times ``gain`` (the spreading Gaussian divided out)."""
    out[0] = 0.0
    for k in range(1, gain.size):
        g = gain[k]
        ar, ai = spectrum[0, k].real * g, -spectrum[0, k].imag * g  # YC, YS
        if exact:
            cw, sw = spectrum[1, k].real * g, -spectrum[1, k].imag * g
            c2w, s2w = spectrum[2, k].real * g, -spectrum[2, k].imag * g  # spread at 2x
            cc = 0.5 * (1.0 + c2w) - cw * cw
            ss = 0.5 * (1.0 - c2w) - sw * sw
            cs = 0.5 * s2w - cw * sw
            d = cc * ss - cs * cs
            out[k] = (ss * ar * ar + cc * ai * ai - 2.0 * cs * ar * ai) / (var * d)
        else:
            out[k] = 2.0 * (ar * ar + ai * ai) / var


@njit(cache=True, nogil=True)
def _keep(value: float, index: int, extra: int, values: np.ndarray, where: np.ndarray) -> float:
    """Put ``(value, index, extra)`` in place of the smallest of ``values`` (a heap of a few
    entries, no sort); returns the new smallest value. Call it only for a value above that."""
    lowest = 0
    for i in range(1, values.size):
        if values[i] < values[lowest]:
            lowest = i
    values[lowest], where[lowest, 0], where[lowest, 1] = value, index, extra
    return values.min()


@njit(cache=True, nogil=True)
def _peaks(power: np.ndarray, values: np.ndarray, where: np.ndarray) -> None:
    """The highest local maxima of ``power[1:]`` (grid index in ``where[:, 0]``)."""
    values[:] = -np.inf
    where[:] = -1
    n = power.size - 1
    floor = -np.inf
    for k in range(1, n + 1):
        p = power[k]
        if p > floor and p > (power[k - 1] if k > 1 else -np.inf):
            if p >= (power[k + 1] if k < n else -np.inf):
                floor = _keep(p, k, 1, values, where)


@njit(cache=True, nogil=True)
def _harmonic_peaks(
    power: np.ndarray, n_harmonics: int, values: np.ndarray, where: np.ndarray
) -> None:
    """The highest local maxima over ``k`` of the power summed over harmonics ``h k``, ``h <=
    n_harmonics`` (each the highest grid value within ``h / 2`` cells of ``h k``: the grid
    resolves the fundamental to half a cell): ``where[:, 0]`` the grid index of the strongest
    harmonic, ``where[:, 1]`` its number ``h``."""
    values[:] = -np.inf
    where[:] = -1
    n = power.size - 1
    last = n // n_harmonics
    total = np.zeros(last + 2)
    padded = np.zeros(n + n_harmonics + 1)  # windows past the grid's end read zeros
    padded[: n + 1] = power
    for h in range(1, n_harmonics + 1):  # harmonic by harmonic: the grid is read in order
        half = h // 2
        for k in range(1, last + 1):
            lo = h * k - half  # >= 1
            mx = padded[lo]
            for i in range(lo + 1, lo + 2 * half + 1):
                v = padded[i]
                mx = v if v > mx else mx
            total[k] += mx
    total[0] = total[last + 1] = -np.inf
    floor = -np.inf
    for k in range(1, last + 1):
        v = total[k]
        if v > floor and v > total[k - 1] and v >= total[k + 1]:
            floor = _keep(v, k, 1, values, where)
    for slot in range(values.size):  # each kept k: its strongest harmonic and where it peaks
        k = where[slot, 0]
        if k < 0:
            continue
        best = -np.inf
        for h in range(1, n_harmonics + 1):
            for i in range(max(1, h * k - h // 2), min(n, h * k + h // 2) + 1):
                if power[i] > best:
                    best, where[slot, 0], where[slot, 1] = power[i], i, h


@njit(cache=True, nogil=True)
def _group_peaks(
    spectra: np.ndarray,
    var: np.ndarray,
    gain: np.ndarray,
    exact: bool,
    n_harmonics: int,
    peak_values: np.ndarray,
    peak_where: np.ndarray,
    sum_values: np.ndarray,
    sum_where: np.ndarray,
    stats: np.ndarray,
) -> None:
    """Per row of ``spectra`` (rows, seq, M/2 + 1): the power's best peaks into ``peak_*``
    (rows, n_peaks[, 2]), the harmonic sum's into ``sum_*``, the power's mean and standard
    deviation into ``stats`` (rows, 2)."""
    power = np.empty(gain.size)
    for r in range(spectra.shape[0]):
        peak_values[r] = -np.inf
        peak_where[r] = -1
        sum_values[r] = -np.inf
        sum_where[r] = -1
        if var[r] <= 0:
            continue
        _power(spectra[r], var[r], gain, exact, power)
        _peaks(power, peak_values[r], peak_where[r])
        if sum_values.shape[1]:
            _harmonic_peaks(power, n_harmonics, sum_values[r], sum_where[r])
        stats[r, 0] = np.mean(power[1:])
        stats[r, 1] = np.std(power[1:])


@dataclass(frozen=True)
class GridPeaks:
    """Each source's best grid peaks, sorted by power: ``freq`` and ``power`` (n, n_peaks) (NaN
    and -inf past the last); the best peaks of the power summed over harmonics: ``sum_freq``
    (n, n_sum) the frequency of the strongest harmonic, ``sum_harmonic`` its number; the grid
    ``step`` (n,) and the power's ``mean`` and ``std`` over the grid (n,)."""

    freq: np.ndarray
    power: np.ndarray
    sum_freq: np.ndarray
    sum_harmonic: np.ndarray
    step: np.ndarray
    mean: np.ndarray
    std: np.ndarray


def _sorted(values: np.ndarray, where: np.ndarray, step: np.ndarray) -> tuple[np.ndarray, ...]:
    """Heap rows sorted by value: (frequency = index x step, value, extra), NaN / -inf / 0 where
    empty."""
    order = np.argsort(-values, axis=1)
    values = np.take_along_axis(values, order, 1)
    index = np.take_along_axis(where[:, :, 0], order, 1)
    extra = np.take_along_axis(where[:, :, 1], order, 1)
    ok = index >= 0
    return np.where(ok, index * step[:, None], np.nan), values, np.where(ok, extra, 0)


def grid_peaks(
    packed: Packed,
    n_peaks: int,
    oversample: float = OVERSAMPLE,
    exact: bool = False,
    n_sum_peaks: int = 0,
    n_harmonics: int = 6,
) -> GridPeaks:
    """The ``n_peaks`` highest local maxima of each source's periodogram (the generalised
    Lomb-Scargle power, standard normalisation, with ``exact``; else its approximation
    ``2 |sum w (m - mean) e^(-2 pi i f t)|^2 / var``, one FFT instead of three), and the
    ``n_sum_peaks`` best of its sum over ``n_harmonics`` harmonics (a detached eclipsing
    binary's power is spread over many)."""
    n = len(packed)
    freq = np.full((n, n_peaks), np.nan)
    power = np.full((n, n_peaks), -np.inf)
    sum_freq = np.full((n, n_sum_peaks), np.nan)
    sum_h = np.zeros((n, n_sum_peaks), dtype=np.int64)
    mean, std = np.zeros(n), np.zeros(n)
    step, lengths = grid_steps(packed, oversample)
    seqs = 3 if exact else 1
    for length in np.unique(lengths):  # one batched FFT per length (and per ~32 MB of grids)
        same = np.flatnonzero(lengths == length)
        chunk = max(1, CHUNK_BYTES // (4 * seqs * int(length)))
        for group in (same[i : i + chunk] for i in range(0, same.size, chunk)):
            starts = packed.offsets[group]
            sizes = packed.offsets[group + 1] - starts
            offs = np.concatenate([[0], np.cumsum(sizes)])
            pick = np.concatenate([np.arange(a, a + k) for a, k in zip(starts, sizes, strict=True)])
            grid = np.zeros((group.size, seqs, int(length)), dtype=np.float32)
            var = _spread(packed.t[pick], packed.m[pick], packed.w[pick], offs, step[group],
                          np.arange(group.size), grid, exact)  # fmt: skip
            spectra = scipy.fft.rfft(grid, axis=2)  # (group, seq, M/2 + 1) complex64
            pv, pw = np.empty((group.size, n_peaks)), np.empty((group.size, n_peaks, 2), np.int64)
            sv = np.empty((group.size, n_sum_peaks))
            sw = np.empty((group.size, n_sum_peaks, 2), np.int64)
            stats = np.zeros((group.size, 2))
            gain = deconvolution(int(length))
            _group_peaks(spectra, var, gain, exact, n_harmonics, pv, pw, sv, sw, stats)
            freq[group], power[group], _ = _sorted(pv, pw, step[group])
            sum_freq[group], _, sum_h[group] = _sorted(sv, sw, step[group])
            mean[group], std[group] = stats[:, 0], stats[:, 1]
    return GridPeaks(freq, power, sum_freq, sum_h, step, mean, std)


def powers_on(packed: Packed, step: np.ndarray, length: int, exact: bool = False) -> np.ndarray:
    """Each source's whole grid ``(n, n_freq + 1)`` (index k: frequency ``k step[s]``; index 0
    unused) on FFTs of one ``length``, as :func:`grid_peaks` computes it."""
    seqs = 3 if exact else 1
    grid = np.zeros((len(packed), seqs, length), dtype=np.float32)
    var = _spread(packed.t, packed.m, packed.w, packed.offsets, np.asarray(step, dtype=np.float64),
                  np.arange(len(packed)), grid, exact)  # fmt: skip
    spectra = scipy.fft.rfft(grid, axis=2)
    gain = deconvolution(length)
    out = np.zeros((len(packed), gain.size))
    for r in range(len(packed)):
        if var[r] > 0:
            _power(spectra[r], var[r], gain, exact, out[r])
    return out


def grid_power(
    t: np.ndarray, m: np.ndarray, err: np.ndarray, oversample: float = OVERSAMPLE,
    exact: bool = False,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """One curve's whole grid: frequencies (cycles/day) and power, as :func:`grid_peaks`
    computes them (for tests and plots)."""
    packed = pack([(t, m, err)])
    step, lengths = grid_steps(packed, oversample)
    power = powers_on(packed, step, int(lengths[0]), exact)[0]
    return np.arange(1, power.size) * step[0], power[1:]


def gls_power(t: np.ndarray, y: np.ndarray, w: np.ndarray, freqs: np.ndarray) -> np.ndarray:
    """Generalised (floating-mean, weighted) Lomb-Scargle power in [0, 1] at ``freqs`` (cycles
    per unit time), Zechmeister & Kuerster 2009, by direct sums: the reference the fast paths
    are tested against; ``w`` are weights (normalised here)."""
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
    return np.asarray((ss * yc**2 + cc * ys**2 - 2.0 * cs * yc * ys) / (yy * d))
