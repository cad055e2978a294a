"""The periodic features (dmdt/periodic.py) on synthetic and real curves, the periodogram against
scipy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dmdt import periodic, periodogram
from dmdt.lightcurves import LightCurve, clean, read_crts_csv

REPO = Path(__file__).resolve().parents[1]


def synthetic(period: float, seed: int = 1, shape: str = "sine") -> LightCurve:
    """A CRTS-like curve: ~300 points over 8 years, seasonal gaps, 0.05 mag noise."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(53500.0, 56500.0, 420))
    t = t[np.mod(t, 365.25) < 240.0]  # observing seasons
    phase = np.mod(t / period, 1.0)
    if shape == "sine":
        signal = 0.3 * np.sin(2 * np.pi * phase)
    else:  # RRab-like sawtooth: fast rise, slow decline
        signal = np.where(phase < 0.15, 0.8 * (1 - phase / 0.15), 0.8 * (phase - 0.15) / 0.85)
    m = 15.0 + signal + rng.normal(0.0, 0.05, t.size)
    return LightCurve("synthetic", t, m, np.full(t.size, 0.05))


@pytest.mark.parametrize(("period", "shape"), [(0.61734, "sine"), (0.3127, "saw"), (87.3, "sine")])
def test_period_recovered_with_noise_and_gaps(period: float, shape: str) -> None:
    x, _ = periodic.features([synthetic(period, shape=shape)])
    row = dict(zip(periodic.FEATURE_NAMES, x[0], strict=True))
    # ~3,000-day baseline: 1e-4 relative is ~0.4 cycle of phase drift at 0.3 d, fine for folding
    assert row["period"] == pytest.approx(period, rel=1e-4 if period < 10 else 1e-3)
    assert row["log10_fap"] < -10
    assert row["string_length_P"] < 0.3 < row["string_length_half_P"]
    if shape == "sine":
        assert row["R21"] < 0.1  # a pure sinusoid has no harmonics
    else:
        assert row["R21"] > 0.3


def test_feature_count_and_no_nan_on_real_curves() -> None:
    assert len(periodic.FEATURE_NAMES) == len(set(periodic.FEATURE_NAMES)) >= 70
    lcs = [clean(read_crts_csv(p))[0] for p in sorted((REPO / "tests/data/crts").glob("*.csv"))]
    lcs = [lc for lc in lcs if lc is not None]
    assert len(lcs) >= 3
    x, timing = periodic.features(lcs)
    assert x.shape == (len(lcs), len(periodic.FEATURE_NAMES))
    assert np.isfinite(x).all()
    assert timing["total"] > 0
    assert periodic.features([])[0].shape == (0, len(periodic.FEATURE_NAMES))


def test_gls_power_matches_scipy_lombscargle() -> None:
    from scipy.signal import lombscargle

    lc = synthetic(0.61734)
    y = lc.m - lc.m.mean()
    freqs = np.linspace(0.5, 3.0, 200)
    ours = periodogram.gls_power(lc.t - lc.t[0], lc.m, np.ones(lc.t.size), freqs)
    ref = lombscargle(lc.t - lc.t[0], y, 2 * np.pi * freqs, floating_mean=True, normalize=True)
    np.testing.assert_allclose(ours, ref, atol=1e-6)
