"""The period search (dmdt/periodogram.py, dmdt/periods.py) against direct references, on real CRTS
curves and injected signals."""

from __future__ import annotations

import numpy as np
import pytest

from dmdt import periodogram as pg
from dmdt import periods
from research.period_recovery.benchmark import signal
from trainer import data


@pytest.fixture(scope="module")
def crts() -> list:
    lcs = data.load("crts")
    return lcs[::577][:10]


def injected(shape: str, period: float, n: int = 200, amp: float = 10.0, seed: int = 0):
    """A signal of ``shape`` (research.period_recovery.benchmark) on a CRTS-like cadence: nightly
    visits of four exposures 10 minutes apart, seasons of 200 days over 2,000 days."""
    rng = np.random.default_rng(seed)
    nights = np.sort(rng.choice(np.arange(2000), n // 4, replace=False))
    nights = nights[np.mod(nights, 365) < 200] + rng.uniform(
        0.2, 0.4, nights[np.mod(nights, 365) < 200].size
    )
    t = np.sort(np.concatenate([nights + k * 0.007 for k in range(4)]))
    err = np.full(t.size, 0.05)
    y, p1, p2 = signal(shape, t, period, rng)
    m = 15.0 + amp * 0.05 * y + err * rng.standard_normal(t.size)
    return (t, m, err), p1, p2


def test_exact_grid_matches_direct_gls(crts) -> None:
    for lc in crts:
        f, p = pg.grid_power(lc.t, lc.m, lc.err, exact=True)
        assert f[1] - f[0] <= 1.0 / (pg.OVERSAMPLE * (lc.t[-1] - lc.t[0])) + 1e-12
        pick = np.linspace(0, f.size - 1, 500).astype(int)
        w = 1.0 / np.maximum(lc.err, pg.ERR_FLOOR) ** 2
        ref = pg.gls_power(lc.t - lc.t[0], lc.m, w, f[pick])
        np.testing.assert_allclose(p[pick], ref, atol=2e-3 * ref.max())


def test_fast_grid_is_the_weighted_schuster_power(crts) -> None:
    for lc in crts[:4]:
        f, p = pg.grid_power(lc.t, lc.m, lc.err, exact=False)
        pick = np.linspace(0, f.size - 1, 300).astype(int)
        w = 1.0 / np.maximum(lc.err, pg.ERR_FLOOR) ** 2
        w /= w.sum()
        y = lc.m - w @ lc.m
        a = np.exp(-2j * np.pi * np.outer(f[pick], lc.t - lc.t[0])) @ (w * y)
        ref = 2.0 * np.abs(a) ** 2 / (w @ y**2)
        np.testing.assert_allclose(p[pick], ref, atol=2e-3 * ref.max())


def test_peak_heap_equals_sorting_every_local_maximum() -> None:
    rng = np.random.default_rng(1)
    power = np.concatenate([[0.0], rng.random(5000)])
    values, where = np.empty(16), np.empty((16, 2), np.int64)
    pg._peaks(power, values, where)
    inner = power[1:]
    is_max = np.r_[inner[0] > inner[1], (inner[1:-1] > inner[:-2]) & (inner[1:-1] >= inner[2:]),
                   inner[-1] > inner[-2]]  # fmt: skip
    ref = np.sort(inner[is_max])[::-1][:16]
    np.testing.assert_array_equal(np.sort(values)[::-1], ref)
    np.testing.assert_array_equal(power[where[:, 0]], values)


def test_harmonic_sum_peaks_match_a_plain_sum() -> None:
    rng = np.random.default_rng(2)
    power = np.concatenate([[0.0], rng.random(3000) * 0.1])
    for h in range(1, 6):  # a detached binary: many equal harmonics of index 97
        power[97 * h] = 1.0
    values, where = np.empty(3), np.empty((3, 2), np.int64)
    pg._harmonic_peaks(power, 6, values, where)
    k = 97
    ref = sum(power[max(1, h * k - h // 2) : h * k + h // 2 + 1].max() for h in range(1, 7))
    assert values.max() == pytest.approx(ref)
    best = int(np.argmax(values))
    assert where[best, 0] % 97 == 0
    assert where[best, 0] // 97 == where[best, 1]


def test_direct_gls_kernel_and_nested_fits(crts) -> None:
    lc = crts[0]
    t = lc.t - lc.t[0]
    w = 1.0 / np.maximum(lc.err, pg.ERR_FLOOR) ** 2
    w /= w.sum()
    yc = lc.m - w @ lc.m
    out = np.empty(200)  # > 64: crosses the kernel's exact re-anchoring
    periods._gls_at(t, yc, w, float(w @ yc**2), 1.3, 1e-4, out)
    np.testing.assert_allclose(
        out, pg.gls_power(t, lc.m, w, 1.3 + 1e-4 * np.arange(200)), atol=1e-9
    )
    g, rhs, yy = periods._harmonic_system(t, lc.m, w, 1.7, 5)
    rss = np.empty(6)
    periods._nested_rss(g, rhs, yy, 5, rss)
    for k in range(6):
        cols = [np.ones_like(t)]
        for j in range(1, k + 1):
            cols += [np.cos(2 * np.pi * j * 1.7 * t), np.sin(2 * np.pi * j * 1.7 * t)]
        x = np.stack(cols, 1) * np.sqrt(w)[:, None]
        coef = np.linalg.lstsq(x, lc.m * np.sqrt(w), rcond=None)[0]
        assert rss[k] == pytest.approx(np.sum((lc.m * np.sqrt(w) - x @ coef) ** 2), rel=1e-8)


@pytest.mark.parametrize(
    ("shape", "period"),
    [("sinusoid", 0.6173), ("sinusoid", 37.1), ("rrab", 0.5731), ("rrc", 0.3127),
     ("eclipsing_contact", 0.3712), ("eclipsing_detached", 2.317)],
)  # fmt: skip
def test_search_finds_the_true_period_not_an_alias(shape: str, period: float) -> None:
    curve, p1, _ = injected(shape, period, amp=20.0)
    found = periods.search([curve])
    assert found.period[0] == pytest.approx(p1, rel=1e-3)
    assert found.margin[0] > 0
    assert found.n_harmonics[0] >= 1
    assert np.isfinite(found.peaks[0]).all()


def test_double_mode_second_period() -> None:
    curve, p1, p0 = injected("double_mode", 0.52, n=400, amp=20.0)
    found = periods.search([curve])
    assert found.period[0] == pytest.approx(p1, rel=1e-3)
    assert found.second[0] == pytest.approx(p0, rel=1e-3)
    assert found.second_gain[0] > 0
    single, q1, _ = injected("rrc", 0.36, n=400, amp=20.0)
    alone = periods.search([single])
    assert alone.period[0] == pytest.approx(q1, rel=1e-3)
    assert alone.second_gain[0] < 0  # searched (RR Lyrae range), nothing worth its terms


def test_batch_equals_one_by_one_bit_for_bit(crts) -> None:
    curves = [(lc.t, lc.m, lc.err) for lc in crts] + [injected("rrab", 0.55, n=40)[0]]
    together = periods.search(curves)
    for i, c in enumerate(curves):
        alone = periods.search([c])
        for name in ("period", "power", "margin", "second", "peaks", "peak_snr"):
            np.testing.assert_array_equal(getattr(together, name)[i], getattr(alone, name)[0])


def test_grid_sized_to_the_baseline_and_bounded() -> None:
    t = np.array([0.0, 10.0, 20.0, 100.0])
    short = pg.pack([(t, np.ones(4), np.ones(4)), (t * 30, np.ones(4), np.ones(4))])
    step, lengths = pg.grid_steps(short)
    assert step[0] <= 1.0 / (2 * 100.0)
    assert step[1] <= 1.0 / (2 * 3000.0)
    assert lengths[1] > 20 * lengths[0]
    absurd = pg.pack([(np.array([0.0, 1.0, 1e9]), np.ones(3), np.ones(3))])
    _, big = pg.grid_steps(absurd)
    assert pg.n_freqs(big)[0] <= 2 * pg.MAX_GRID


def test_degenerate_curves_give_nan_not_errors() -> None:
    t = np.arange(30.0)
    flat = (t, np.full(30, 15.0), np.full(30, 0.1))
    five = (t[:5], np.array([1.0, 2.0, 1.5, 1.2, 1.9]), np.full(5, 0.1))
    found = periods.search([flat, five])
    assert np.isnan(found.period).all()
    assert periods.search([]).period.shape == (0,)
