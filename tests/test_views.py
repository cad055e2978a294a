"""dmdt.views (visit-level views of a CRTS curve) and trainer.views (augmentation, candidate
features of issue 7)."""

from __future__ import annotations

import numpy as np
import pytest

from dmdt import periodic
from dmdt import views as dmdt_views
from dmdt.lightcurves import LightCurve
from trainer import views


def visit_curve(
    signal: callable, n_visits: int = 160, per_visit: int = 4, noise: float = 0.03, seed: int = 0
) -> LightCurve:
    """CRTS-like cadence: visits of ``per_visit`` exposures 10 minutes apart, a visit every few
    nights in 240-day seasons over ~8 years; magnitudes ``15 + signal(t)`` plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    season_nights = np.flatnonzero(np.mod(np.arange(2900), 365) < 240)
    nights = np.sort(rng.choice(season_nights, size=n_visits, replace=False))
    nights = nights + rng.uniform(0.1, 0.4, n_visits)
    t = (nights[:, None] + np.arange(per_visit)[None, :] * 10.0 / 1440.0).ravel() + 53500.0
    m = 15.0 + signal(t) + rng.normal(0.0, noise, t.size)
    return LightCurve("v", t, m, np.full(t.size, noise), label="X")


def flat(t: np.ndarray) -> np.ndarray:
    return np.zeros_like(t)


def test_visits_split_at_gaps() -> None:
    t = np.array([0.0, 0.007, 0.014, 1.2, 1.207, 5.0])
    assert dmdt_views.visits(t).tolist() == [0, 0, 0, 1, 1, 2]


def test_intravisit_clip_drops_a_stray_point_and_keeps_an_eclipse() -> None:
    lc = visit_curve(flat)
    m = lc.m.copy()
    m[41] += 1.5  # one bad exposure inside a visit
    m[80:84] += 1.0  # a whole visit faint: an eclipse, as every exposure agrees
    err = lc.err.copy()
    err[100] = 1.0  # a point with a huge error
    out = dmdt_views.intravisit_clip(LightCurve("v", lc.t, m, err, label="X"))
    kept = set(np.searchsorted(lc.t, out.t).tolist())
    assert 41 not in kept
    assert 100 not in kept
    assert {80, 81, 82, 83} <= kept
    assert len(out) == len(lc) - 2
    assert out.label == "X"


def test_visit_medians_one_point_per_visit() -> None:
    lc = visit_curve(flat)
    m = lc.m.copy()
    m[0] += 5.0  # an outlier does not move its visit's median much
    out = dmdt_views.visit_medians(LightCurve("v", lc.t, m, lc.err))
    assert len(out) == len(lc) // 4
    np.testing.assert_allclose(out.t, lc.t.reshape(-1, 4).mean(axis=1))
    assert abs(out.m[0] - 15.0) < 0.1
    np.testing.assert_allclose(out.err, 0.03 / 2 * 1.25)


def test_augmented_keeps_whole_visits_and_is_seeded() -> None:
    lc = visit_curve(flat)
    a = views.augmented(lc, np.random.default_rng(3))
    b = views.augmented(lc, np.random.default_rng(3))
    np.testing.assert_array_equal(a.m, b.m)
    assert 0.4 * len(lc) < len(a) < 0.95 * len(lc)
    assert np.all(np.bincount(dmdt_views.visits(a.t)) == 4)  # whole visits only
    assert not np.array_equal(a.m, lc.m[np.isin(lc.t, a.t)])  # re-noised
    short = LightCurve("s", lc.t[:40], lc.m[:40], lc.err[:40])
    assert len(views.augmented(short, np.random.default_rng(0))) == 40  # too few: all kept


def test_season_features_see_a_changing_shape() -> None:
    period = 0.5873
    stable = visit_curve(lambda t: 0.3 * np.sin(2 * np.pi * t / period))
    growing = visit_curve(  # amplitude and mean drift from season to season (spots)
        lambda t: (
            (0.1 + 0.05 * ((t - 53500) // 365)) * np.sin(2 * np.pi * t / period)
            + 0.1 * np.sin((t - 53500) / 500.0)
        )
    )
    s, g = views.season_features(stable, period), views.season_features(growing, period)
    assert s[0] == g[0] >= 7  # seasons with enough points
    assert s[1] < 0.1 < g[1]  # amplitude spread
    assert s[3] < 1.0 < g[3]  # season means over the noise
    assert s[4] == pytest.approx(1.0, abs=0.15)  # per-season fits help only the changing one
    assert g[4] < 0.5
    one = LightCurve("o", stable.t[:30], stable.m[:30], stable.err[:30])
    assert np.isnan(views.season_features(one, period)[1:]).all()


def test_double_mode_features_find_a_second_mode() -> None:
    p1 = 0.3571  # first overtone; fundamental at P1 / P0 = 0.745
    p0 = p1 / 0.745
    single = visit_curve(lambda t: 0.2 * np.sin(2 * np.pi * t / p1))
    double = visit_curve(
        lambda t: 0.2 * np.sin(2 * np.pi * t / p1) + 0.12 * np.sin(2 * np.pi * t / p0 + 1.0)
    )
    s = views.double_mode_features(single, p1)
    d = views.double_mode_features(double, p1)
    assert d[3] < 0.5 < 0.9 < s[3]  # the joint two-mode fit explains what one mode leaves
    assert d[2] > 5 * s[2]  # the direct window's power excess
    assert np.all(views.double_mode_features(single, 5.0) == 0.0)  # not an RR Lyrae period
    assert len(s) == views.N_DOUBLE_MODE_FEATURES


def test_the_views_feed_the_periodic_features() -> None:
    period = 0.5873
    lc = visit_curve(lambda t: 0.3 * np.sin(2 * np.pi * t / period))
    x, _ = periodic.features([dmdt_views.intravisit_clip(lc), dmdt_views.visit_medians(lc)])
    col = list(periodic.FEATURE_NAMES).index("period")
    np.testing.assert_allclose(x[:, col], period, rtol=1e-4)
