"""The torch grid stage (dmdt/periodogram_torch.py, the GPU path) against the numba one, on CPU:
the same peaks, powers within float32 rounding, the same periods and features."""

from __future__ import annotations

import numpy as np
import pytest

from dmdt import periodic, periods
from dmdt import periodogram as pg
from dmdt.periodogram_torch import grid_peaks_torch
from trainer import data


@pytest.fixture(scope="module")
def curves() -> list:
    lcs = data.load("crts")[::97]
    young = [(lc.t[:25], lc.m[:25], lc.err[:25]) for lc in lcs[:15]]  # short baselines
    return [(lc.t, lc.m, lc.err) for lc in lcs] + young


def test_grid_peaks_equal_the_numba_path(curves) -> None:
    packed = pg.pack(curves)
    a = pg.grid_peaks(packed, 16, n_sum_peaks=3)
    b = grid_peaks_torch(packed, 16, n_sum_peaks=3, device="cpu")
    np.testing.assert_array_equal(a.freq, b.freq)  # the same grid cells
    np.testing.assert_allclose(b.power, a.power, rtol=1e-5)
    np.testing.assert_array_equal(a.sum_freq, b.sum_freq)
    np.testing.assert_array_equal(a.sum_harmonic, b.sum_harmonic)
    np.testing.assert_allclose(b.mean, a.mean, rtol=1e-5)
    np.testing.assert_allclose(b.std, a.std, rtol=1e-5)


def test_search_and_features_within_the_stated_tolerance(curves) -> None:
    a = periods.search(curves, device="cpu")
    b = periods.search(curves, device="torch-cpu")
    for name in ("period", "power", "n_harmonics", "margin", "second", "peaks"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_allclose(b.peak_snr, a.peak_snr, rtol=1e-5)


def test_default_device_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(periods.DEVICE_ENV, "torch-cpu")
    assert periods.default_device() == "torch-cpu"
    monkeypatch.delenv(periods.DEVICE_ENV)
    import torch

    assert periods.default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    lc = data.load("crts")[5]
    monkeypatch.setenv(periods.DEVICE_ENV, "torch-cpu")
    x_torch, _ = periodic.features([lc])
    monkeypatch.setenv(periods.DEVICE_ENV, "cpu")
    x_cpu, _ = periodic.features([lc])
    snr = [periodic.FEATURE_NAMES.index(f"period_snr_{i}") for i in range(3)]
    keep = np.setdiff1d(np.arange(x_cpu.shape[1]), snr)
    np.testing.assert_array_equal(x_torch[:, keep], x_cpu[:, keep])
    np.testing.assert_allclose(x_torch[:, snr], x_cpu[:, snr], rtol=1e-5)
