"""The grid stage of :mod:`dmdt.periodogram` on a torch device: a GPU's FFTs and gathers for many
sources at once (:func:`dmdt.periods.search` uses it when CUDA is present).

The same steps as the numba path, in tensors: each point's weighted, mean-subtracted magnitude
spread onto its source's uniform grid with the same Gaussian (float32 grids, as there), one
batched ``rfft`` per FFT length, the same power, the local maxima kept by ``topk`` (not a sort of
the grid), the same harmonic sums. The grid values differ from the CPU path's by float32
rounding (another order of additions, another FFT): ~1e-6 of the peak power; the peaks' indices,
hence the refined periods the CPU then computes from them, are the same unless two peaks tie to
that precision (tests/test_periods_torch.py compares the two on CPU).
"""

from __future__ import annotations

import numpy as np
import torch

from dmdt.periodogram import (
    CHUNK_BYTES,
    OVERSAMPLE,
    SPREAD_TAPS,
    SPREAD_WIDTH,
    GridPeaks,
    Packed,
    deconvolution,
    grid_steps,
)


def _segment_sum(values: torch.Tensor, row: torch.Tensor, n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=values.dtype, device=values.device).index_add_(0, row, values)


def _spread(
    t: torch.Tensor, m: torch.Tensor, w: torch.Tensor, row: torch.Tensor, step: torch.Tensor,
    n: int, length: int,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """The spread grids ``(n, length)`` float32 of ``n`` sources' points (``row``: each point's
    source) and each source's weighted variance."""
    mean = _segment_sum(w * m, row, n)
    centred = m - mean[row]
    var = _segment_sum(w * centred * centred, row, n)
    x = t * step[row]
    pos = (x - torch.floor(x)) * length
    taps = torch.arange(SPREAD_TAPS, device=t.device)
    first = torch.floor(pos).to(torch.int64) - SPREAD_TAPS // 2 + 1
    cell = first[:, None] + taps[None, :]  # (points, taps)
    d = cell.to(torch.float64) - pos[:, None]
    values = (w * centred)[:, None] * torch.exp(-d * d / (2.0 * SPREAD_WIDTH**2))
    index = row[:, None] * length + torch.remainder(cell, length)
    grid = torch.zeros(n * length, dtype=torch.float32, device=t.device)
    grid.index_add_(0, index.reshape(-1), values.reshape(-1).to(torch.float32))
    return grid.reshape(n, length), var


def _local_maxima(power: torch.Tensor) -> torch.Tensor:
    """``power`` (n, K) where a value is above its left and not below its right neighbour (the
    ends compare with -inf), else -inf."""
    pad = torch.full_like(power[:, :1], -torch.inf)
    left = torch.cat([pad, power[:, :-1]], dim=1)
    right = torch.cat([power[:, 1:], pad], dim=1)
    return torch.where((power > left) & (power >= right), power, -torch.inf)


def _padded(power: torch.Tensor, extra: int) -> torch.Tensor:
    zeros = torch.zeros(power.shape[0], extra, dtype=power.dtype, device=power.device)
    return torch.cat([power, zeros], dim=1)


def _harmonic_sums(power: torch.Tensor, n_harmonics: int) -> tuple[torch.Tensor, list]:
    """The sum over harmonics ``h k`` of the highest power within ``h // 2`` cells (grid index
    ``k`` = column ``k - 1``; past the grid: 0), for ``k <= K // n_harmonics``, and each
    harmonic's window columns (last, width)."""
    size = power.shape[1]
    last = size // n_harmonics
    padded = _padded(power, n_harmonics + 1)
    k = torch.arange(1, last + 1, device=power.device)
    total = torch.zeros(power.shape[0], last, dtype=power.dtype, device=power.device)
    windows = []
    for h in range(1, n_harmonics + 1):
        half = h // 2
        cols = (h * k - half - 1)[:, None] + torch.arange(2 * half + 1, device=power.device)
        win = padded[:, cols]  # (n, last, width)
        total += win.max(dim=2).values
        windows.append(cols)
    return total, windows


def grid_peaks_torch(
    packed: Packed,
    n_peaks: int,
    oversample: float = OVERSAMPLE,
    n_sum_peaks: int = 0,
    n_harmonics: int = 6,
    device: str = "cuda",
) -> GridPeaks:
    """:func:`dmdt.periodogram.grid_peaks` (its fast power, ``exact=False``) on ``device``."""
    n = len(packed)
    freq = np.full((n, n_peaks), np.nan)
    power_out = np.full((n, n_peaks), -np.inf)
    sum_freq = np.full((n, n_sum_peaks), np.nan)
    sum_h = np.zeros((n, n_sum_peaks), dtype=np.int64)
    mean, std = np.zeros(n), np.zeros(n)
    step, lengths = grid_steps(packed, oversample)
    dev = torch.device(device)
    for length in np.unique(lengths):
        length = int(length)
        same = np.flatnonzero(lengths == length)
        chunk = max(1, CHUNK_BYTES // (4 * length))
        for group in (same[i : i + chunk] for i in range(0, same.size, chunk)):
            starts, stops = packed.offsets[group], packed.offsets[group + 1]
            pick = np.concatenate([np.arange(a, b) for a, b in zip(starts, stops, strict=True)])
            row = torch.as_tensor(np.repeat(np.arange(group.size), stops - starts), device=dev)
            t, m, w = (torch.as_tensor(x[pick], device=dev) for x in (packed.t, packed.m, packed.w))
            grid, var = _spread(t, m, w, row, torch.as_tensor(step[group], device=dev),
                                group.size, length)  # fmt: skip
            spectra = torch.fft.rfft(grid, dim=1)  # (group, M/2 + 1) complex64
            gain = torch.as_tensor(deconvolution(length).copy(), device=dev)
            a = spectra[:, 1 : gain.numel()].to(torch.complex128) * gain[1:]
            power = 2.0 * (a.real**2 + a.imag**2) / var[:, None]  # (group, K): index k - 1
            good = var > 0
            power = torch.where(good[:, None], power, -torch.inf)
            top = torch.topk(_local_maxima(power), min(n_peaks, power.shape[1]), dim=1)
            ok = torch.isfinite(top.values)
            steps = torch.as_tensor(step[group], device=dev)[:, None]
            freq[group, : top.values.shape[1]] = torch.where(
                ok, (top.indices + 1) * steps, torch.nan).cpu().numpy()  # fmt: skip
            power_out[group, : top.values.shape[1]] = top.values.cpu().numpy()
            finite = torch.where(good[:, None], power, 0.0)
            mean[group] = finite.mean(dim=1).cpu().numpy()
            std[group] = finite.std(dim=1, unbiased=False).cpu().numpy()
            mean[group[~good.cpu().numpy()]] = std[group[~good.cpu().numpy()]] = 0.0
            if n_sum_peaks:
                total, windows = _harmonic_sums(finite, n_harmonics)
                total = torch.where(good[:, None], total, -torch.inf)
                best = torch.topk(_local_maxima(total), min(n_sum_peaks, total.shape[1]), dim=1)
                padded = _padded(finite, n_harmonics + 1)
                for j in range(best.values.shape[1]):  # each kept k: its strongest harmonic
                    kk = best.indices[:, j]
                    highs, where = [], []
                    for cols in windows:  # per harmonic: its window's highest value and cell
                        c = cols[kk]  # (group, width)
                        high = padded.gather(1, c).max(dim=1)  # the first of equal values
                        highs.append(high.values)
                        where.append(c.gather(1, high.indices[:, None])[:, 0])
                    h = torch.stack(highs, dim=1).argmax(dim=1)
                    at = torch.stack(where, dim=1).gather(1, h[:, None])[:, 0]
                    keep = torch.isfinite(best.values[:, j])
                    sum_freq[group, j] = torch.where(keep, (at + 1) * steps[:, 0],
                                                     torch.nan).cpu().numpy()  # fmt: skip
                    sum_h[group, j] = torch.where(keep, h + 1, 0).cpu().numpy()
    return GridPeaks(freq, power_out, sum_freq, sum_h, step, mean, std)
