"""The dmdt engine against two references: light-curve's DmDt (Rust) and a plain numpy version."""

from __future__ import annotations

import itertools

import light_curve
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmdt import engine
from dmdt.grids import PRESETS, custom_grid, get_grid
from dmdt.reference import numpy_counts
from dmdt.table import HistogramTable

UNALIGNED = custom_grid(
    np.geomspace(0.003, 3000.0, 19), [-4.1, -1.33, -0.7, -0.21, 0.0, 0.05, 0.6, 1.7, 3.9]
)
GRIDS = [*PRESETS.values(), UNALIGNED]


def oracle(t: np.ndarray, m: np.ndarray, grid) -> np.ndarray:
    dmdt = light_curve.DmDt(dt=grid.dt_edges, dm=grid.dm_edges, dt_type="asis", dm_type="asis")
    return dmdt.points(np.asarray(t, float), np.asarray(m, float)).astype(np.int64)


@pytest.fixture(scope="module")
def crts_curves():
    from dmdt.datasets import load_labelled

    lcs = load_labelled("crts", clean=True)
    rng = np.random.default_rng(1)
    return [lcs[i] for i in rng.choice(len(lcs), 40, replace=False)]


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: g.name)
def test_real_crts_curves_match_light_curve_and_numpy(crts_curves, grid):
    for lc in crts_curves:
        got = engine.counts(lc.t, lc.m, grid)
        assert got.dtype == np.int32
        assert got.shape == grid.shape
        np.testing.assert_array_equal(got, oracle(lc.t, lc.m, grid), err_msg=lc.source_id)
        np.testing.assert_array_equal(got, numpy_counts(lc.t, lc.m, grid), err_msg=lc.source_id)


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: g.name)
def test_batch_equals_single(crts_curves, grid):
    batch = engine.counts_many([(lc.t, lc.m) for lc in crts_curves], grid, n_threads=2)
    assert batch.shape == (len(crts_curves), *grid.shape)
    for lc, got in zip(crts_curves, batch, strict=True):
        np.testing.assert_array_equal(got, engine.counts(lc.t, lc.m, grid))


def test_default_grid_is_the_papers_with_dt_zero_prepended():
    g = get_grid()
    assert g.shape == (24, 22)
    assert g.dt_edges[0] == 0.0
    assert g.dt_edges[1] == 1 / 145
    assert g.dt_edges[-1] == 4000.0
    np.testing.assert_array_equal(g.dm_edges[11:], [0, 0.1, 0.2, 0.3, 0.5, 1, 1.5, 2, 2.5, 3, 5, 8])
    np.testing.assert_array_equal(g.dm_edges[:11], -g.dm_edges[:11:-1])
    assert get_grid("mahabal2017-23dt").shape == (23, 22)


@pytest.mark.parametrize("grid", GRIDS, ids=lambda g: g.name)
def test_values_exactly_on_edges_fall_in_the_upper_bin(grid):
    """Half-open bins: dt or dm equal to an edge belongs to the bin that starts there."""
    for dt_edge in grid.dt_edges[1:-1]:
        for dm_edge in grid.dm_edges[1:-1]:
            t = np.array([0.0, dt_edge])
            m = np.array([0.0, dm_edge])
            got = engine.counts(t, m, grid)
            kt = int(np.searchsorted(grid.dt_edges, dt_edge, side="right") - 1)
            km = int(np.searchsorted(grid.dm_edges, dm_edge, side="right") - 1)
            assert got[kt, km] == 1, (dt_edge, dm_edge)
            assert got.sum() == 1
            np.testing.assert_array_equal(got, oracle(t, m, grid))


def test_pairs_outside_the_grid_are_dropped():
    g = get_grid()
    t = np.array([0.0, 1.0, 5000.0])  # the pairs with the last point have dt >= 4000
    m = np.array([10.0, 19.0, 10.0])  # dm = +9 is beyond +8
    assert engine.counts(t, m, g).sum() == 0
    assert engine.counts([0.0, 4000.0], [0.0, 0.0], g).sum() == 0  # upper edge excluded
    kt = int(np.searchsorted(g.dt_edges, 1.0, side="right") - 1)
    assert engine.counts([0.0, 1.0], [0.0, -8.0], g)[kt, 0] == 1  # lower edge included


def test_strict_grid_drops_pairs_closer_than_its_first_edge():
    strict = get_grid("mahabal2017-23dt")
    t, m = np.array([0.0, 0.001, 3.0]), np.array([15.0, 15.05, 15.3])
    assert engine.counts(t, m, strict).sum() == 2
    assert engine.counts(t, m, get_grid()).sum() == 3


def test_sign_convention_is_later_minus_earlier_and_input_order_does_not_matter():
    g = get_grid()
    a = engine.counts([10.0, 0.0], [15.0, 16.0], g)  # later point is 1 mag brighter: dm = -1
    kt = int(np.searchsorted(g.dt_edges, 10.0, side="right") - 1)
    km = int(np.searchsorted(g.dm_edges, -1.0, side="right") - 1)
    assert a[kt, km] == 1
    np.testing.assert_array_equal(a, engine.counts([0.0, 10.0], [16.0, 15.0], g))


def test_small_and_degenerate_curves():
    g = get_grid()
    assert engine.counts([], [], g).sum() == 0
    assert engine.counts([1.0], [2.0], g).sum() == 0
    assert engine.counts([1.0, 2.0], [2.0, 2.5], g).sum() == 1
    same_time = engine.counts([1.0, 1.0, 2.0], [2.0, 2.2, 2.5], g)
    np.testing.assert_array_equal(
        same_time, numpy_counts(np.array([1.0, 1, 2]), np.array([2.0, 2.2, 2.5]), g)
    )


def test_bad_input_is_rejected_with_a_precise_message():
    with pytest.raises(ValueError, match="non-finite value at index 1"):
        engine.counts([0.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="differ in length"):
        engine.counts([0.0, 1.0], [1.0])
    with pytest.raises(ValueError, match="one-dimensional"):
        engine.counts(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="unknown dmdt grid"):
        engine.counts([0.0, 1.0], [1.0, 2.0], "no-such-grid")


def test_normalize_is_the_papers_formula():
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0, 3000, 57))
    m = rng.normal(15, 0.4, 57)
    c = engine.counts(t, m)
    p = 57 * 56 / 2
    expected = np.array([[int(255 * v / p + 0.99999) for v in row] for row in c], dtype=np.uint8)
    img = engine.normalize(c, 57)
    assert img.dtype == np.uint8
    np.testing.assert_array_equal(img, expected)
    np.testing.assert_array_equal(engine.image(t, m), expected)
    batch = engine.normalize(np.stack([c, c]), np.array([57, 57]))
    np.testing.assert_array_equal(batch[1], expected)
    assert engine.normalize(np.zeros((24, 22), np.int32), 1).sum() == 0


points = st.lists(
    st.tuples(
        st.integers(0, 400).map(lambda i: i * 0.37),  # repeated times are likely
        st.floats(-3, 3, allow_nan=False).map(lambda x: round(x, 2)),  # dm on edges is likely
    ),
    min_size=0,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(
    pts=points, cuts=st.lists(st.integers(0, 60), max_size=6), grid_i=st.integers(0, len(GRIDS) - 1)
)
def test_incremental_updates_in_any_order_equal_the_full_computation(pts, cuts, grid_i):
    grid = GRIDS[grid_i]
    t = np.array([p[0] for p in pts])
    m = np.array([p[1] for p in pts])
    table = HistogramTable(grid, rows=1, points=8)
    bounds = sorted({0, len(pts), *[c for c in cuts if c <= len(pts)]})
    added = 0
    for a, b in itertools.pairwise(bounds):
        added += int(table.update(["s"], t[a:b], m[a:b], np.full(b - a, 0.1), [0, b - a])[0])
    # the distinct points, first arrival of each time wins
    _, first = np.unique(t, return_index=True)
    row = table.rows(["s"])
    assert added == table.n_points(row)[0] == first.size
    np.testing.assert_array_equal(table.history("s")[0], np.sort(t[first]))
    np.testing.assert_array_equal(table.counts(row)[0], numpy_counts(t[first], m[first], grid))
    # redelivering everything changes nothing
    assert table.update(["s"], t, m, np.zeros(t.size), [0, t.size])[0] == 0
    np.testing.assert_array_equal(table.counts(row)[0], numpy_counts(t[first], m[first], grid))


def test_batched_updates_match_the_full_counts_and_validate_before_changing_anything(crts_curves):
    grid = get_grid()
    table = HistogramTable(grid)
    keys = [lc.source_id for lc in crts_curves]
    rng = np.random.default_rng(5)
    orders = [rng.permutation(lc.t.size) for lc in crts_curves]
    for step in range(3):
        parts = [np.array_split(order, 3)[step] for order in orders]
        offsets = np.concatenate([[0], np.cumsum([idx.size for idx in parts])])
        table.update(
            keys,
            np.concatenate([lc.t[idx] for lc, idx in zip(crts_curves, parts, strict=True)]),
            np.concatenate([lc.m[idx] for lc, idx in zip(crts_curves, parts, strict=True)]),
            np.concatenate([lc.err[idx] for lc, idx in zip(crts_curves, parts, strict=True)]),
            offsets,
            n_threads=2,
        )
    rows = table.rows(keys)
    for lc, key, counts in zip(crts_curves, keys, table.counts(rows), strict=True):
        np.testing.assert_array_equal(counts, engine.counts(lc.t, lc.m, grid))
        np.testing.assert_array_equal(
            table.history(key)[2], lc.err[np.argsort(lc.t, kind="stable")]
        )
    before = table.counts(rows).copy()
    n = len(keys)
    bad_m = np.full(n, 2.0)
    bad_m[-1] = np.inf
    with pytest.raises(ValueError, match="finite"):
        table.update(keys, np.ones(n), bad_m, np.zeros(n), np.arange(n + 1))
    np.testing.assert_array_equal(before, table.counts(rows))
