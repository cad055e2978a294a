"""Other surveys' cadences simulated from CRTS light curves, for training and for measurement.

CRTS observes a field on ~9 nights a year (median over the seven classes' curves), four exposures
~10 minutes apart each night; a model that learned that pattern meets another on ZTF and Rubin,
which take one exposure per band per visit. Every cadence here keeps a subset of a curve's own
points (nothing is invented: a star's magnitudes stay what CRTS measured), chosen night by night
(a night: points less than :data:`NIGHT_GAP` apart):

- ``nightly``: one exposure per night, drawn at random.
- ``ztf``: ZTF's public survey observes each field every 1-3 nights in g and r, one exposure per
  band per visit (Bellm et al. 2019, PASP 131, 068003); its real alerts of 2018-07-13 in
  data/ztf show a second same-band detection on 6% of a source's nights (g 102 of 1,765, r 67 of
  1,337; back-to-back overlapping fields and repeat visits, 1-45 min apart). CRTS has far fewer
  nights than ZTF (9 a year against ~100 per band in season), so every night is kept (one cannot
  sample densely from sparse data), one exposure each, two on :data:`ZTF_PAIR_FRACTION` of them.
- ``rubin``: Rubin's wide-fast-deep survey visits a field ~800 times in ten years, per band u 56,
  g 80, r 184, i 184, z 160, y 160 (Ivezić et al. 2019, ApJ 873, 111, table 1), in pairs ~33 min
  apart in different bands but y+y, ~2.5% of pairs followed by a third visit in one of their
  bands 3-7 h later (survey-strategy.lsst.io, baseline v3.4/v4.0). A curve gets one band, drawn
  with those weights (the broker keeps a source per band); its nights are kept at random at the
  band's yearly rate (all of them where CRTS has fewer), one exposure each, two on
  :data:`RUBIN_PAIR_FRACTION` of them. The repository's Rubin alerts (data/rubin) are deep-drilling
  fields, whose cadence is not the wide survey's: they do not anchor this.

Not simulated: other photometric noise (the magnitudes and errors are CRTS's), ZTF's alert
selection (a detection needs a 5-sigma difference from the reference image), shorter baselines
(a source's first alerts: docs/history.md measures that separately).

Every draw is seeded per curve (``seed``, the cadence and the curve's id and label), so a curve
gets the same points whatever set it is thinned in and in whatever order.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from dmdt.lightcurves import LightCurve
from dmdt.views import visits

NIGHT_GAP = 0.5  # days: CRTS's exposures of a night are ~10 min apart, its nights >= ~1 day
ZTF_PAIR_FRACTION = 0.06
RUBIN_VISITS = {"u": 56, "g": 80, "r": 184, "i": 184, "z": 160, "y": 160}  # per field, 10 years
RUBIN_YEARS = 10.0
# nights with a second same-band exposure: y+y pairs (half of y's nights: the share is not
# published; z+y is the other pairing) and the 2.5% of pairs followed by a same-band third visit
RUBIN_PAIR_FRACTION = {"u": 0.025, "g": 0.025, "r": 0.025, "i": 0.025, "z": 0.025, "y": 0.5}
CADENCES = ("crts", "nightly", "ztf", "rubin")  # "crts": the curve as it is
SIMULATED = CADENCES[1:]


def night_index(t: np.ndarray) -> np.ndarray:
    """Night (0, 1, ...) of each point of a time-sorted curve: a new night after a gap of more
    than :data:`NIGHT_GAP` days."""
    return visits(t, NIGHT_GAP)


def curve_rng(lc: LightCurve, cadence: str, seed: int) -> np.random.Generator:
    """The generator of one curve's draws: a function of ``seed``, the cadence and the curve's
    id and label only."""
    key = zlib.crc32(f"{lc.source_id}\0{lc.label}".encode())
    return np.random.default_rng([seed, CADENCES.index(cadence), key])


def sample_nights(
    lc: LightCurve, rng: np.random.Generator, keep: float = 1.0, pair: float = 0.0
) -> LightCurve:
    """Each night kept with probability ``keep``, one exposure of it drawn at random, a second
    one of the same night with probability ``pair`` (nights of 2+ exposures)."""
    if not 0.0 <= keep <= 1.0 or not 0.0 <= pair <= 1.0:
        raise ValueError(f"keep {keep} and pair {pair} must be probabilities")
    if len(lc) == 0:
        return lc
    night = night_index(lc.t)
    start = np.flatnonzero(np.r_[True, night[1:] != night[:-1]])  # first point of each night
    size = np.diff(np.r_[start, night.size])
    n = start.size
    # four draws per night whatever is kept, so one night's choice never shifts another's
    u_keep, u_first, u_pair, u_second = rng.random((4, n))
    first = (u_first * size).astype(np.int64)
    second = (first + 1 + (u_second * (size - 1)).astype(np.int64)) % size  # another point
    kept = u_keep < keep
    paired = kept & (u_pair < pair) & (size >= 2)
    chosen = np.sort(np.concatenate([start[kept] + first[kept], start[paired] + second[paired]]))
    return replace(lc, t=lc.t[chosen], m=lc.m[chosen], err=lc.err[chosen])


def nights_per_year(lc: LightCurve) -> float:
    """Observed nights per year of the curve's baseline (at least one year)."""
    if len(lc) == 0:
        return 0.0
    years = max((lc.t[-1] - lc.t[0]) / 365.25, 1.0)
    return float(np.unique(night_index(lc.t)).size / years)


def rubin_band(rng: np.random.Generator) -> str:
    """A Rubin band drawn with the wide survey's share of visits."""
    bands = list(RUBIN_VISITS)
    weights = np.array([RUBIN_VISITS[b] for b in bands], dtype=np.float64)
    return bands[int(rng.choice(len(bands), p=weights / weights.sum()))]


def thin(lc: LightCurve, cadence: str, seed: int) -> LightCurve:
    """``lc`` (cleaned: time-sorted, one point per time) as ``cadence`` would have observed it;
    ``crts`` returns it unchanged."""
    if cadence not in CADENCES:
        raise ValueError(f"unknown cadence {cadence!r}; choose one of {', '.join(CADENCES)}")
    if cadence == "crts":
        return lc
    rng = curve_rng(lc, cadence, seed)
    if cadence == "nightly":
        return sample_nights(lc, rng)
    if cadence == "ztf":
        return sample_nights(lc, rng, pair=ZTF_PAIR_FRACTION)
    band = rubin_band(rng)
    rate = RUBIN_VISITS[band] / RUBIN_YEARS
    keep = min(1.0, rate / max(nights_per_year(lc), 1e-9))
    return sample_nights(lc, rng, keep=keep, pair=RUBIN_PAIR_FRACTION[band])


def thinned(lcs: Sequence[LightCurve], cadence: str, seed: int) -> list[LightCurve]:
    """:func:`thin` of every curve."""
    return [thin(lc, cadence, seed) for lc in lcs]
