"""The multi-band period search (dmdt/periods_multiband.py): one period constrained by every band,
on injected two-band signals and on EROS-1's B and R curves against their catalogue periods."""

from __future__ import annotations

import numpy as np
import pytest

from dmdt import periods
from dmdt.datasets import bundled_path, load_labelled
from dmdt.periods_multiband import multiband_period


def two_bands(period: float, seed: int, n: int = 30):
    """A sinusoid seen in two bands at different nights, amplitudes and noise (the second band
    weaker), n points each over 600 days."""
    rng = np.random.default_rng(seed)
    out = {}
    for band, amp, err in (("g", 0.30, 0.10), ("r", 0.18, 0.10)):
        t = np.sort(np.floor(rng.uniform(0, 600, n)) + rng.uniform(0.2, 0.3, n))
        y = 15 + amp * np.sin(2 * np.pi * t / period + 0.7) + err * rng.standard_normal(n)
        out[band] = (t, y, np.full(n, err))
    return out


def test_joint_search_recovers_what_single_bands_miss() -> None:
    joint = single = 0
    for seed in range(60):
        period = float(np.exp(np.random.default_rng(seed).uniform(np.log(0.3), np.log(5.0))))
        bands = two_bands(period, seed)
        found = multiband_period(bands)
        joint += abs(found.period / period - 1) < 0.01
        alone = periods.search(list(bands.values()))  # the band of higher power, as one would
        single += abs(alone.period[int(np.argmax(alone.power))] / period - 1) < 0.01
        assert found.bands == ("g", "r")
        assert sum(found.band_weights.values()) == pytest.approx(1.0)
        assert found.band_weights["g"] > found.band_weights["r"]
    assert joint >= 44  # 48 of 60 here, against 38 for the better band alone
    assert joint >= single + 5


def test_one_band_is_the_single_band_search() -> None:
    bands = two_bands(0.731, seed=3, n=80)
    found = multiband_period({"g": bands["g"], "x": (np.arange(3.0), np.ones(3), np.ones(3))})
    assert found.bands == ("g",)  # a band with too few points is left out
    assert found.period == pytest.approx(periods.search([bands["g"]]).period[0], rel=1e-9)
    assert np.isnan(multiband_period({}).period)


@pytest.mark.slow
def test_eros1_both_bands_against_the_catalogue() -> None:
    """EROS-1 RR Lyrae: the catalogue period is the upstream ``period / div_period``."""
    z = np.load(bundled_path("eros1"))
    catalogue = dict(zip(z["id"], z["static_period"] / z["static_div_period"], strict=True))
    by_object: dict[str, dict] = {}
    for lc in load_labelled("eros1", classes=["RRLyrae"]):
        by_object.setdefault(lc.source_id, {})[lc.band] = (lc.t, lc.m, lc.err)
    ids = sorted(i for i, b in by_object.items() if len(b) == 2)[::20][:60]
    hits = {"B": 0, "R": 0, "joint": 0}
    for i in ids:
        for band in ("B", "R"):
            p = periods.search([by_object[i][band]]).period[0]
            hits[band] += abs(p / catalogue[i] - 1) < 0.01
        hits["joint"] += abs(multiband_period(by_object[i]).period / catalogue[i] - 1) < 0.01
    assert hits["joint"] >= max(hits["B"], hits["R"]) - 1
    assert hits["joint"] >= 0.7 * len(ids)
