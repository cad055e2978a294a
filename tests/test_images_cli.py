"""`dmdt-train images`: a folder of <id>-<class>.csv files in, counts and images out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dmdt import engine
from dmdt.grids import get_grid
from dmdt.lightcurves import clean, read_crts_csv
from trainer.cli import main

DATA = Path(__file__).parent / "data" / "crts"


def test_images_writes_ids_edges_counts_and_images(tmp_path):
    out = tmp_path / "images.npz"
    assert main(["images", str(DATA), "--out", str(out), "--grid", "mahabal2017-23dt"]) == 0
    z = np.load(out)
    grid = get_grid("mahabal2017-23dt")
    files = sorted(DATA.glob("*.csv"))
    expected = {}
    for f in files:
        lc, _ = clean(read_crts_csv(f))
        if lc is not None:
            expected[f.stem] = lc
    assert sorted(z["ids"].tolist()) == sorted(expected)
    np.testing.assert_array_equal(z["dt_edges"], grid.dt_edges)
    np.testing.assert_array_equal(z["dm_edges"], grid.dm_edges)
    assert z["counts"].shape == (len(expected), *grid.shape)
    assert json.loads(str(z["grid"]))["name"] == "mahabal2017-23dt"
    for i, key in enumerate(z["ids"].tolist()):
        lc = expected[key]
        np.testing.assert_array_equal(z["counts"][i], engine.counts(lc.t, lc.m, grid))
        np.testing.assert_array_equal(z["images"][i], engine.normalize(z["counts"][i], lc.t.size))
        assert z["n_points"][i] == lc.t.size
