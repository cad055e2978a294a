"""dmdt.views: the visit-level views of a CRTS curve."""

from __future__ import annotations

import numpy as np

from dmdt import periodic
from dmdt import views as dmdt_views
from dmdt.lightcurves import LightCurve


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


def test_the_views_feed_the_periodic_features() -> None:
    period = 0.5873
    lc = visit_curve(lambda t: 0.3 * np.sin(2 * np.pi * t / period))
    x, _ = periodic.features([dmdt_views.intravisit_clip(lc), dmdt_views.visit_medians(lc)])
    col = list(periodic.FEATURE_NAMES).index("period")
    np.testing.assert_allclose(x[:, col], period, rtol=1e-4)
