"""HistogramTable: batched in-place updates equal the full dmdt of each source's distinct points."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dmdt import engine
from dmdt.grids import custom_grid, get_grid
from dmdt.table import HistogramTable

GRIDS = [get_grid(), custom_grid(np.geomspace(0.01, 1000, 12), [-2.2, -0.7, 0.0, 0.31, 1.9])]


def distinct(ts: list[float], ms: list[float]) -> tuple[np.ndarray, np.ndarray]:
    """First arrival of each time wins."""
    t, m = np.array(ts, dtype=float), np.array(ms, dtype=float)
    _, first = np.unique(t, return_index=True)
    return t[first], m[first]


alerts = st.lists(
    st.tuples(
        st.integers(0, 4),  # source key: few keys, so keys repeat inside batches
        st.lists(
            st.tuples(
                st.integers(0, 300).map(lambda i: i * 0.5),
                st.integers(-40, 40).map(lambda i: i / 20),
            ),
            min_size=0,
            max_size=8,
        ),
    ),
    max_size=40,
)


@settings(max_examples=120, deadline=None)
@given(stream=alerts, batch=st.integers(1, 12), grid_i=st.integers(0, 1))
def test_any_batching_and_order_equals_full_computation(stream, batch, grid_i):
    grid = GRIDS[grid_i]
    table = HistogramTable(grid, rows=2, points=8)  # tiny: forces row and arena growth
    seen: dict[int, tuple[list[float], list[float]]] = {}
    for start in range(0, len(stream), batch):
        chunk = stream[start : start + batch]
        keys = [k for k, _ in chunk]
        pts = [p for _, ps in chunk for p in ps]
        offsets = np.concatenate([[0], np.cumsum([len(ps) for _, ps in chunk])])
        t = np.array([p[0] for p in pts], dtype=float)
        m = np.array([p[1] for p in pts], dtype=float)
        added = table.update(keys, t, m, np.full(t.size, 0.05), offsets)
        before = sum(distinct(*seen.get(k, ([], [])))[0].size for k in set(keys))
        for k, ps in chunk:
            seen.setdefault(k, ([], []))
            seen[k][0].extend(p[0] for p in ps)
            seen[k][1].extend(p[1] for p in ps)
        after = sum(distinct(*seen[k])[0].size for k in set(keys))
        assert int(added.sum()) == after - before
    for k, (ts, ms) in seen.items():
        t, m = distinct(ts, ms)
        row = table.rows([k], create=False)
        assert table.n_points(row)[0] == t.size
        np.testing.assert_array_equal(table.counts(row)[0], engine.counts(t, m, grid))
        np.testing.assert_array_equal(table.history(k)[0], np.sort(t))


def test_drop_compact_export_and_load_keep_rows_exact():
    grid = get_grid()
    rng = np.random.default_rng(2)
    table = HistogramTable(grid, rows=4, points=16)
    curves = {
        f"src{i}": (np.sort(rng.uniform(0, 3000, 50 + i)), rng.normal(15, 0.3, 50 + i))
        for i in range(12)
    }
    for step in range(5):  # five alerts per source, interleaved
        keys, ts, ms, offs = [], [], [], [0]
        for key, (t, m) in curves.items():
            part = np.array_split(np.arange(t.size), 5)[step]
            keys.append(key)
            ts.append(t[part])
            ms.append(m[part])
            offs.append(offs[-1] + part.size)
        t_all = np.concatenate(ts)
        table.update(keys, t_all, np.concatenate(ms), np.zeros_like(t_all), np.array(offs))
    saved = table.export("src3")
    for key in ("src0", "src3", "src7"):
        table.drop(key)
    assert "src3" not in table
    assert len(table) == 9
    table.compact()
    table.load("src3", saved)
    for key, (t, m) in curves.items():
        if key in ("src0", "src7"):
            continue
        row = table.rows([key], create=False)
        np.testing.assert_array_equal(table.counts(row)[0], engine.counts(t, m, grid))
        np.testing.assert_array_equal(table.history(key)[1], m)
    # a dropped key starts from nothing when it comes back
    t, m = curves["src0"]
    table.update(["src0"], t[:3], m[:3], np.zeros(3), np.array([0, 3]))
    np.testing.assert_array_equal(
        table.counts(table.rows(["src0"]))[0], engine.counts(t[:3], m[:3], grid)
    )


def test_bad_batches_are_rejected_before_any_row_changes():
    table = HistogramTable(get_grid())
    table.update(["a"], np.array([1.0, 2.0]), np.array([15.0, 15.5]), np.zeros(2), np.array([0, 2]))
    before = table.counts(table.rows(["a"]))[0].copy()
    with pytest.raises(ValueError, match="finite"):
        table.update(
            ["a"], np.array([3.0, np.nan]), np.array([15.0, 15.5]), np.zeros(2), np.array([0, 2])
        )
    with pytest.raises(ValueError, match="offsets"):
        table.update(["a"], np.array([3.0]), np.array([15.0]), np.zeros(1), np.array([0, 2]))
    np.testing.assert_array_equal(table.counts(table.rows(["a"]))[0], before)
    assert table.n_points(table.rows(["a"]))[0] == 2
