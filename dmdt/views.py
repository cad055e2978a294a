"""Views of a light curve that the periodic features can be computed on.

CRTS observes a field in visits of four exposures about 10 minutes apart, a few times a month.
:func:`intravisit_clip` drops points that disagree with the rest of their visit (a star does not
change by several sigma in 30 minutes; a cosmic ray or a bad frame does); :func:`visit_medians`
replaces each visit by its median (a quarter of the points, each with half the noise). On curves
with one point per night (ZTF, Rubin) both leave the curve as it is, but for points with outsized
errors. A hybrid model (dmdt/hybrid.py) may average boosters trained on several views
(:data:`VIEWS`); docs/beyond.md measures each.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np

from dmdt.lightcurves import LightCurve

VISIT_GAP = 0.1  # days: CRTS exposures of one visit are ~10 min apart, visits >= hours apart
CLIP_SIGMA = 6.0  # robust sigmas off the visit's median (and >= 3 median errors) to drop a point
ERR_CLIP = 5.0  # points with errors above this many times the median error are dropped


def visits(t: np.ndarray, gap: float = VISIT_GAP) -> np.ndarray:
    """Visit index (0, 1, ...) of each point of a time-sorted curve: a new visit after ``gap``."""
    return np.concatenate([[0], np.cumsum(np.diff(t) > gap)]).astype(np.int64)


def _group_median(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Median of ``values`` per group of a :func:`visits` index (contiguous runs 0, 1, ...)."""
    return np.array([np.median(v) for v in np.split(values, np.flatnonzero(np.diff(group)) + 1)])


def intravisit_clip(lc: LightCurve) -> LightCurve:
    """``lc`` without the points that stray from their visit's median (visits of 3 or more points;
    more than :data:`CLIP_SIGMA` robust sigmas of all such deviations and 3 median errors) or
    whose error is over :data:`ERR_CLIP` times the median error."""
    if lc.t.size < 3:
        return lc
    g = visits(lc.t)
    dev = lc.m - _group_median(lc.m, g)[g]
    in_visit = np.bincount(g)[g] >= 3
    keep = lc.err <= ERR_CLIP * np.median(lc.err)
    if in_visit.any():
        sigma = 1.4826 * np.median(np.abs(dev[in_visit]))
        limit = max(CLIP_SIGMA * sigma, 3.0 * float(np.median(lc.err)))
        keep &= ~(in_visit & (np.abs(dev) > limit))
    return replace(lc, t=lc.t[keep], m=lc.m[keep], err=lc.err[keep])


def visit_medians(lc: LightCurve) -> LightCurve:
    """One point per visit: mean time, median magnitude, median error / sqrt(points) x 1.25
    (the median's efficiency)."""
    if lc.t.size == 0:
        return lc
    g = visits(lc.t)
    counts = np.bincount(g)
    t = np.bincount(g, weights=lc.t) / counts
    err = _group_median(lc.err, g) / np.sqrt(counts) * 1.25
    return replace(lc, t=t, m=_group_median(lc.m, g), err=err)


VIEWS: dict[str, Callable[[LightCurve], LightCurve]] = {
    "curve": lambda lc: lc,
    "intravisit": intravisit_clip,
    "visit_medians": visit_medians,
}
