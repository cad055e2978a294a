"""Other surveys' cadences simulated from CRTS curves (trainer/cadence.py) and the extra training
rows made from them (trainer/training_rows.py)."""

from __future__ import annotations

import numpy as np
import pytest

from dmdt.lightcurves import LightCurve
from trainer import cadence
from trainer.training_rows import Augmentation, build_rows, extra_curves


def crts_like(seed: int, nights: int = 80, per_night: int = 4, label: str = "RRab") -> LightCurve:
    """``nights`` nights spread over 8 years, ``per_night`` exposures ~10 minutes apart each."""
    rng = np.random.default_rng(seed)
    starts = np.sort(rng.choice(np.arange(53500, 56500), nights, replace=False)) + 0.3
    t = (starts[:, None] + np.arange(per_night)[None, :] * 0.007).reshape(-1)
    m = 15.0 + 0.3 * np.sin(2 * np.pi * t / 0.57) + rng.normal(0, 0.05, t.size)
    return LightCurve(f"c{seed}", t, m, np.full(t.size, 0.05), label=label)


def nights_by_hand(t: np.ndarray) -> list[list[int]]:
    """Indices of each night: a plain loop, a new night after more than half a day."""
    groups: list[list[int]] = [[0]]
    for i in range(1, t.size):
        if t[i] - t[i - 1] > 0.5:
            groups.append([])
        groups[-1].append(i)
    return groups


def kept_indices(lc: LightCurve, thin: LightCurve) -> np.ndarray:
    """Where each point of ``thin`` is in ``lc`` (every one must be there, unchanged)."""
    idx = np.searchsorted(lc.t, thin.t)
    np.testing.assert_array_equal(lc.t[idx], thin.t)
    np.testing.assert_array_equal(lc.m[idx], thin.m)
    np.testing.assert_array_equal(lc.err[idx], thin.err)
    return idx


def test_nightly_keeps_one_measured_point_of_every_night() -> None:
    for seed in range(5):
        lc = crts_like(seed)
        thin = cadence.thin(lc, "nightly", seed=2)
        idx = kept_indices(lc, thin)
        nights = nights_by_hand(lc.t)
        owner = {i: k for k, night in enumerate(nights) for i in night}
        assert sorted(owner[i] for i in idx) == list(range(len(nights)))
        assert len(thin) == len(nights) == 80


def test_draws_are_seeded_per_curve_whatever_the_set() -> None:
    lcs = [crts_like(s) for s in range(6)]
    for name in cadence.SIMULATED:
        alone = [cadence.thin(lc, name, 2) for lc in lcs]
        together = cadence.thinned(lcs[::-1], name, 2)[::-1]
        for a, b in zip(alone, together, strict=True):
            np.testing.assert_array_equal(a.t, b.t)
        other_seed = cadence.thinned(lcs, name, 3)
        assert any(not np.array_equal(a.t, b.t) for a, b in zip(alone, other_seed, strict=True))
    assert cadence.thin(lcs[0], "crts", 2) is lcs[0]
    with pytest.raises(ValueError, match="unknown cadence"):
        cadence.thin(lcs[0], "tess", 2)


def test_ztf_pairs_a_share_of_nights() -> None:
    lcs = [crts_like(s, nights=100) for s in range(40)]
    pairs = nights = 0
    for lc in lcs:
        thin = cadence.thin(lc, "ztf", 2)
        per_night = np.bincount(cadence.night_index(thin.t))
        kept_indices(lc, thin)
        assert per_night.max() <= 2
        assert per_night.size == 100  # every night kept
        pairs += int((per_night == 2).sum())
        nights += per_night.size
    # 4,000 nights at 6%: 240 expected, binomial sd 15
    assert 0.045 < pairs / nights < 0.075


def test_rubin_keeps_nights_at_the_bands_yearly_rate() -> None:
    lcs = [crts_like(s, nights=150) for s in range(300)]
    per_band: dict[str, list[float]] = {b: [] for b in cadence.RUBIN_VISITS}
    for lc in lcs:
        band = cadence.rubin_band(cadence.curve_rng(lc, "rubin", 2))
        thin = cadence.thin(lc, "rubin", 2)
        kept_indices(lc, thin)
        years = (lc.t[-1] - lc.t[0]) / 365.25
        per_band[band].append(np.unique(cadence.night_index(thin.t)).size / years)
    assert all(per_band.values())  # every band drawn
    share = {b: len(v) / len(lcs) for b, v in per_band.items()}
    assert share["r"] > share["g"] > share["u"]  # visit shares 184 : 80 : 56
    crts_rate = 150 / ((lcs[0].t[-1] - lcs[0].t[0]) / 365.25)  # ~19 nights a year
    for band, rates in per_band.items():
        expected = min(cadence.RUBIN_VISITS[band] / cadence.RUBIN_YEARS, crts_rate)
        assert np.mean(rates) == pytest.approx(expected, rel=0.2), band


def test_extra_curves_owners_weights_and_rows() -> None:
    lcs = [crts_like(0, nights=30), crts_like(1, nights=8)]  # the second: 32 points
    aug = Augmentation(cadences=("nightly", "ztf"), history_cuts=(20, 50), history_weight=0.3)
    extra, owner, weight = extra_curves(lcs, aug)
    # curve 0: two copies of 30 nights, cuts 20 and 50 of 120 points; curve 1: copies of 8
    # points are too short, cut 20 only
    assert owner.tolist() == [0, 0, 0, 0, 1]
    assert weight.tolist() == [1.0, 1.0, 0.3, 0.3, 0.3]
    assert [len(e) for e in extra] == [30, len(extra[1]), 20, 50, 20]
    np.testing.assert_array_equal(extra[3].t, lcs[0].t[:50])
    x = np.arange(2 * 3, dtype=np.float64).reshape(2, 3)
    rows = build_rows(lcs, x, np.array([4, 6]), aug, "test", lambda c: np.ones((len(c), 3)), None)
    assert rows.n_curves == 2
    assert rows.labels.tolist() == [4, 6, 4, 4, 4, 4, 6]
    assert rows.part(np.array([1])).tolist() == [1, 6]
    np.testing.assert_array_equal(rows.features[:2], x)
    with pytest.raises(ValueError, match="unknown cadences"):
        Augmentation(cadences=("crts",))
    with pytest.raises(ValueError, match="below min_points"):
        Augmentation(history_cuts=(10,))
