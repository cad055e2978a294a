"""The period-recovery benchmark's parts (research/period_recovery/): shapes, trials, outcomes."""

import numpy as np
import pytest

from research.period_recovery import benchmark as pr
from research.period_recovery.baseline import v4_periods


@pytest.mark.parametrize("shape", [s for s in pr.SHAPES if s != "double_mode"])
def test_shapes_have_unit_peak_to_peak(shape):
    rng = np.random.default_rng(3)
    y = pr.shape_curve(shape, np.linspace(0.0, 1.0, 4096, endpoint=False), rng)
    assert y.max() - y.min() == pytest.approx(1.0, abs=1e-3)


def test_contact_binary_minima_are_unequal_and_half_a_cycle_apart():
    phase = np.linspace(0.0, 1.0, 4000, endpoint=False)
    y = pr.shape_curve("eclipsing_contact", phase, np.random.default_rng(0))
    deep, shallow = y[np.abs(phase - 0.0) < 0.01].max(), y[np.abs(phase - 0.5) < 0.01].max()
    assert deep == pytest.approx(1.0)
    assert 0.6 < shallow < 0.95


def test_outcomes():
    p = 0.6
    assert pr.outcome(p * 1.005, p) == "recovered"
    assert pr.outcome(p / 2, p) == "alias_harmonic"
    assert pr.outcome(2 * p, p) == "alias_harmonic"
    assert pr.outcome(1.0 / (1.0 / p - pr.SIDEREAL), p) == "alias_daily"
    assert pr.outcome(1.0 / (1.0 / p + pr.SIDEREAL), p) == "alias_daily"
    assert pr.outcome(0.745 * p, p, second=0.745 * p) == "other_mode"
    assert pr.outcome(0.37, p) == "wrong"
    assert pr.outcome(np.nan, p) == "wrong"
    assert pr.double_recovered(p, 0.745 * p, p, 0.745 * p)
    assert pr.double_recovered(0.745 * p, p, p, 0.745 * p)
    assert not pr.double_recovered(p, 0.5 * p, p, 0.745 * p)


def test_trials_are_seeded_per_cell():
    rng = np.random.default_rng(0)
    cad = [(np.sort(rng.uniform(0, 300, 150)), np.full(150, 0.05)) for _ in range(5)]
    a = list(pr.trials("x", cad, ["rrab", "sinusoid"], [3.0], [60], 4, seed=0))
    b = list(pr.trials("x", cad, ["sinusoid"], [3.0], [60], 4, seed=0))
    assert len(a) == 8
    assert len(b) == 4
    for x, y in zip(a[4:], b, strict=True):  # the sinusoid cell does not depend on the rrab one
        assert np.array_equal(x.t, y.t)
        assert np.array_equal(x.m, y.m)
        assert x.period == y.period
    c = list(pr.trials("x", cad, ["sinusoid"], [3.0], [60], 4, seed=1))
    assert not np.array_equal(c[0].m, b[0].m)
    for tr in a:
        assert tr.t.size == 60
        assert np.all(np.diff(tr.t) > 0)
        assert tr.period <= (tr.t[-1] - tr.t[0]) / 3 or tr.shape != "sinusoid"


def test_double_mode_truth_is_the_dominant_overtone():
    t = np.linspace(0, 100, 500)
    y, p1, p0 = pr.signal("double_mode", t, 0.5, np.random.default_rng(1))
    assert 0.742 <= p1 / p0 <= 0.748
    assert p0 == 0.5
    assert y.max() - y.min() <= 1.0 + 1e-9


def test_tally_and_rates():
    cad = [(np.sort(np.random.default_rng(i).uniform(0, 500, 200)), np.full(200, 0.1))
           for i in range(3)]  # fmt: skip
    batch = list(pr.trials("x", cad, ["sinusoid", "double_mode"], [10.0], [100], 3, seed=0))
    truth = np.array([[tr.period, tr.second] for tr in batch])
    cells = pr.tally(pr.score(batch, truth))
    r = pr.rates(cells, "x")
    assert r["recovered"] == 1.0
    assert r["alias"] == 0.0
    assert r["total"] == 6
    assert r["double"] == 1.0
    assert r["double_total"] == 3


def test_version_4_search_finds_a_clean_sinusoid():
    rng = np.random.default_rng(5)
    t = np.sort(rng.uniform(0, 800, 120))
    err = np.full(t.size, 0.02)
    m = 15 + 0.3 * np.sin(2 * np.pi * t / 0.731) + err * rng.standard_normal(t.size)
    period, mh, _ = v4_periods(t, m, err)
    assert period == pytest.approx(0.731, rel=1e-3)
    assert mh in (pytest.approx(0.731, rel=1e-3), pytest.approx(2 * 0.731, rel=1e-3))
