"""Period recovery: signals of known period injected into real survey cadences, and how often a
period search finds them (research.period_recovery.report writes docs/periods.md).

Each trial takes one real light curve's time stamps and errors (CRTS: the curves of the five
folds, never the held-out part; EROS-1: each band; ZTF: each band of the bundled alerts), keeps
``n`` of its points at random, and replaces the magnitudes by a signal of known shape and period
plus Gaussian noise of the real errors. The signal's peak-to-peak amplitude is given in units of
the curve's median error. Shapes: a sinusoid, RR Lyrae-like (a fundamental-mode sawtooth, a
nearly sinusoidal overtone), eclipsing (detached, with a shallower secondary eclipse; contact,
with minima of unequal depth) and double-mode (two modes, period ratio 0.742-0.748).

A found period within 1 % of the true one is recovered; within 1 % of a harmonic (P/3, P/2, 2P,
3P) or a daily alias (1 / |f +- k f_sid|, k = 1, 2, f_sid = 1.0027 cycles/day, also of 2f and f/2)
it is an alias; a double-mode signal found at its other mode is ``other_mode``; anything else is
``wrong``. A double mode is recovered when both periods are found (either order).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIDEREAL = 1.0027379  # cycles/day: ground-based surveys' daily alias spacing
SHAPES = ("sinusoid", "rrab", "rrc", "eclipsing_detached", "eclipsing_contact", "double_mode")
PERIOD_RANGE = {  # days (double_mode: the fundamental mode, the overtone is 0.745 of it)
    "sinusoid": (0.1, 100.0),
    "rrab": (0.45, 0.9),
    "rrc": (0.25, 0.42),
    "eclipsing_detached": (0.5, 10.0),
    "eclipsing_contact": (0.25, 0.8),
    "double_mode": (0.45, 0.6),
}
DOUBLE_MODE_RATIO = (0.742, 0.748)
OUTCOMES = ("recovered", "alias_harmonic", "alias_daily", "other_mode", "wrong")
TOLERANCE = 0.01  # relative: within 1 %

# a search: curves (t, m, err) -> (n, 2) [period, second period] in days (NaN: none)
Search = Callable[[Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]], np.ndarray]


@dataclass(frozen=True)
class Trial:
    """One injected light curve and its truth."""

    survey: str
    shape: str
    amplitude: float  # peak-to-peak, in median errors
    n: int  # points kept
    t: np.ndarray
    m: np.ndarray
    err: np.ndarray
    period: float  # the dominant mode's
    second: float  # double mode: the other mode's period; else NaN


# ------------------------------------------------------------------------------------ shapes


def _circular(phase: np.ndarray, at: float) -> np.ndarray:
    d = np.mod(phase - at, 1.0)
    return np.minimum(d, 1.0 - d)


def shape_curve(shape: str, phase: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A single-mode shape in magnitudes (larger is fainter) at ``phase`` (cycles), scaled to
    peak-to-peak 1 over a full cycle; its free parameters drawn from ``rng``."""
    x = 2.0 * np.pi * phase
    fine = np.linspace(0.0, 1.0, 512, endpoint=False)
    if shape == "sinusoid":
        return -0.5 * np.cos(x)
    if shape == "rrab":  # slow fading, fast rise: a tapered sawtooth, R21 ~ 0.5, R31 ~ 0.3
        k = np.arange(1, 7)
        a = 0.85 ** (k - 1) / k

        def saw(p: np.ndarray) -> np.ndarray:
            return -np.sum(a[:, None] * np.sin(2.0 * np.pi * k[:, None] * p), axis=0)

    elif shape == "rrc":  # nearly sinusoidal, a small second harmonic
        r2, phi = rng.uniform(0.05, 0.2), rng.uniform(0.0, 2.0 * np.pi)

        def saw(p: np.ndarray) -> np.ndarray:
            return -np.cos(2 * np.pi * p) - r2 * np.cos(4 * np.pi * p + phi)

    elif shape == "eclipsing_detached":  # two Gaussian eclipses, the secondary 20-70 % as deep
        width, secondary = rng.uniform(0.02, 0.05), rng.uniform(0.2, 0.7)

        def saw(p: np.ndarray) -> np.ndarray:
            dip = np.exp(-0.5 * (_circular(p, 0.0) / width) ** 2)
            return dip + secondary * np.exp(-0.5 * (_circular(p, 0.5) / width) ** 2)

    elif shape == "eclipsing_contact":  # continuous light change, eclipses 10-30 % unequal
        d = rng.uniform(0.1, 0.3)

        def saw(p: np.ndarray) -> np.ndarray:
            return 0.5 * (1 + np.cos(4 * np.pi * p)) + d * 0.5 * (1 + np.cos(2 * np.pi * p))

    else:
        raise ValueError(f"unknown shape {shape!r}; known: {SHAPES}")
    ref = saw(fine)
    return (saw(phase) - ref.min()) / (ref.max() - ref.min())


def signal(
    shape: str, t: np.ndarray, period: float, rng: np.random.Generator
) -> tuple[np.ndarray, float, float]:
    """The signal of ``shape`` at times ``t`` (peak-to-peak 1), the dominant mode's period and
    the second mode's (NaN for one mode). ``period`` is the fundamental's for a double mode."""
    if shape != "double_mode":
        return shape_curve(shape, t / period + rng.uniform(), rng), period, np.nan
    # double-mode RR Lyrae: the first overtone (0.745 P0) dominant, the fundamental 40-80 % of it
    p1 = period * rng.uniform(*DOUBLE_MODE_RATIO)
    r = rng.uniform(0.4, 0.8)
    overtone = np.cos(2 * np.pi * (t / p1 + rng.uniform()))
    y = -overtone - r * np.cos(2 * np.pi * (t / period + rng.uniform()))
    return y / (2.0 * (1.0 + r)), p1, period


# ------------------------------------------------------------------------------------ trials


def _cell_rng(seed: int, *key: object) -> np.random.Generator:
    digest = hashlib.sha256(repr((seed, *key)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def trials(
    survey: str,
    cadences: Sequence[tuple[np.ndarray, np.ndarray]],
    shapes: Sequence[str],
    amplitudes: Sequence[float],
    sizes: Sequence[int],
    per_cell: int,
    seed: int,
) -> Iterator[Trial]:
    """``per_cell`` trials of every (shape, amplitude, n) on ``cadences`` [(t, err), ...] of
    ``survey``; each cell has its own seeded generator, so a cell's trials do not depend on which
    other cells are run."""
    lengths = np.array([t.size for t, _ in cadences])
    for shape in shapes:
        for amp in amplitudes:
            for n in sizes:
                pool = np.flatnonzero(lengths >= n)
                if pool.size == 0:
                    continue
                rng = _cell_rng(seed, survey, shape, float(amp), int(n))
                for _ in range(per_cell):
                    t, err = cadences[int(rng.choice(pool))]
                    keep = np.sort(rng.choice(t.size, n, replace=False))
                    t, err = t[keep], err[keep]
                    lo, hi = PERIOD_RANGE[shape]
                    hi = min(hi, (t[-1] - t[0]) / 3.0) if shape == "sinusoid" else hi
                    period = float(np.exp(rng.uniform(np.log(lo), np.log(max(hi, lo)))))
                    y, p1, p2 = signal(shape, t, period, rng)
                    noise = err * rng.standard_normal(t.size)
                    m = 15.0 + amp * float(np.median(err)) * y + noise
                    yield Trial(survey, shape, float(amp), int(n), t, m, err, p1, p2)


# ----------------------------------------------------------------------------------- outcome


def _near(found: float, target: float) -> bool:
    return bool(np.isfinite(found) and target > 0 and abs(found / target - 1.0) < TOLERANCE)


def outcome(found: float, period: float, second: float = np.nan) -> str:
    """One of :data:`OUTCOMES` for a found period against the true ``period`` (and a double
    mode's ``second``)."""
    if _near(found, period):
        return "recovered"
    if np.isfinite(second) and _near(found, second):
        return "other_mode"
    if any(_near(found, period * r) for r in (1 / 3, 0.5, 2.0, 3.0)):
        return "alias_harmonic"
    f = 1.0 / period
    for base in (f, 2 * f, f / 2):
        for k in (1, 2):
            for alias in (base + k * SIDEREAL, abs(base - k * SIDEREAL)):
                if alias > 0 and _near(found, 1.0 / alias):
                    return "alias_daily"
    return "wrong"


def double_recovered(found: float, found_second: float, period: float, second: float) -> bool:
    """Both modes of a double-mode signal found, in either order."""
    return (_near(found, period) and _near(found_second, second)) or (
        _near(found, second) and _near(found_second, period)
    )


# ------------------------------------------------------------------------------------ report


def score(batch: Sequence[Trial], found: np.ndarray) -> list[dict[str, object]]:
    """Per trial: its cell and outcome (and double-mode recovery), from ``found`` (n, 2)."""
    rows = []
    for tr, (p, p2) in zip(batch, found, strict=True):
        row: dict[str, object] = {"survey": tr.survey, "shape": tr.shape,
                                  "amplitude": tr.amplitude, "n": tr.n,
                                  "outcome": outcome(float(p), tr.period, tr.second)}  # fmt: skip
        if np.isfinite(tr.second):
            row["double"] = double_recovered(float(p), float(p2), tr.period, tr.second)
        rows.append(row)
    return rows


def tally(rows: Sequence[dict[str, object]]) -> dict[str, dict[str, int]]:
    """Counts per cell ``survey|shape|amplitude|n``: every outcome, the double modes recovered,
    and the total."""
    out: dict[str, dict[str, int]] = {}
    for r in rows:
        key = f"{r['survey']}|{r['shape']}|{r['amplitude']:g}|{r['n']}"
        cell = out.setdefault(key, {k: 0 for k in (*OUTCOMES, "double", "total")})
        cell[str(r["outcome"])] += 1
        cell["double"] += int(bool(r.get("double", False)))
        cell["total"] += 1
    return out


def load_results(path: Path) -> dict[str, object]:
    """The saved results (``{"methods": {name: {"cells": ..., ...}}}``), or an empty document."""
    return json.loads(path.read_text()) if path.exists() else {"methods": {}}


# ---------------------------------------------------------------------------------- cadences

SIZES = {"crts": (30, 60, 100, 200), "eros1": (30, 60, 100), "ztf": (20, 30, 40)}


def cadences(survey: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """Real (time, error) pairs of ``survey``'s cleaned curves: ``crts`` (the five folds' curves
    of every type; never the held-out part), ``eros1`` (B and R, each a cadence), ``ztf`` (each
    band of each bundled alert with at least 20 detections)."""
    from dmdt.lightcurves import LightCurve, clean

    if survey == "crts":
        from trainer import data
        from trainer.split import HELD_OUT, fold_ids

        lcs = data.load("crts")
        labels = np.unique([str(lc.label) for lc in lcs], return_inverse=True)[1]
        folds = fold_ids(labels)
        return [(lc.t, lc.err) for lc, f in zip(lcs, folds, strict=True) if f != HELD_OUT]
    if survey == "eros1":
        from dmdt.datasets import load_labelled

        return [(lc.t, lc.err) for lc in load_labelled("eros1")]
    if survey == "ztf":
        from broker.decode_ztf import ZtfDecoder
        from dmdt.datasets import data_dir

        decode = ZtfDecoder()
        out = []
        folder = data_dir() / "ztf" / "ztfss18_public_20180713"
        for path in sorted(folder.rglob("*.avro")):
            for alert in decode(path.read_bytes()):
                lc, _ = clean(LightCurve(alert.source_id, alert.t, alert.m, alert.err))
                if lc is not None:
                    out.append((lc.t, lc.err))
        return out
    raise ValueError(f"unknown survey {survey!r}; known: {sorted(SIZES)}")


# ---------------------------------------------------------------------------------- searches

Curves = Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]]


def v4_search(curves: Curves) -> dict[str, np.ndarray]:
    """Version 4's search (research/period_recovery/baseline.py): its Lomb-Scargle ``period`` and
    its ``mh_period``, each with its residual period as the second."""
    from research.period_recovery.baseline import v4_periods_many

    x = v4_periods_many(curves)
    return {"v4_period": x[:, [0, 2]], "v4_mh_period": x[:, [1, 2]]}


SEARCHES: dict[str, Callable[[Curves], dict[str, np.ndarray]]] = {"v4": v4_search}
DESCRIPTIONS = {
    "v4_period": "features version 4: the best refined Lomb-Scargle peak (`period`)",
    "v4_mh_period": "features version 4: best 4-harmonic chi^2 among the top 3 peaks, their"
    " halves and doubles (`mh_period`)",
}


def run(
    search: str,
    surveys: Sequence[str],
    per_cell: int,
    seed: int,
    amplitudes: Sequence[float],
    progress: bool = True,
) -> dict[str, dict[str, object]]:
    """Every trial of ``surveys`` through ``search``: per output, its tallies and the search's
    wall ms per curve."""
    import time

    from tqdm import tqdm

    results: dict[str, dict[str, object]] = {}
    rows: dict[str, list[dict[str, object]]] = {}
    seconds, count = 0.0, 0
    for survey in surveys:
        pool = cadences(survey)
        batch = list(trials(survey, pool, SHAPES, amplitudes, SIZES[survey], per_cell, seed))
        found: dict[str, list[np.ndarray]] = {}
        step = 64
        chunks = range(0, len(batch), step)
        for i in tqdm(chunks, desc=f"{search} {survey}", unit="chunk", disable=not progress):
            part = batch[i : i + step]
            t0 = time.perf_counter()
            out = SEARCHES[search]([(tr.t, tr.m, tr.err) for tr in part])
            seconds += time.perf_counter() - t0
            count += len(part)
            for name, x in out.items():
                found.setdefault(name, []).append(x)
        for name, xs in found.items():
            rows.setdefault(name, []).extend(score(batch, np.concatenate(xs)))
    for name, rs in rows.items():
        results[name] = {
            "description": DESCRIPTIONS.get(name, name),
            "ms_per_curve": 1e3 * seconds / max(count, 1),
            "cells": tally(rs),
        }
    return results


# ----------------------------------------------------------------------------------- reading


def _cells(
    cells: dict[str, dict[str, int]],
    survey: str,
    shapes: Sequence[str] = SHAPES,
    amp: Callable[[float], bool] = lambda a: True,
    n: Callable[[int], bool] = lambda k: True,
) -> dict[str, int]:
    total = {k: 0 for k in (*OUTCOMES, "double", "total", "double_total")}
    for key, cell in cells.items():
        s, shape, a, k = key.split("|")
        if s == survey and shape in shapes and amp(float(a)) and n(int(k)):
            for name in (*OUTCOMES, "double", "total"):
                total[name] += cell[name]
            if shape == "double_mode":
                total["double_total"] += cell["total"]
    return total


def rates(
    cells: dict[str, dict[str, int]],
    survey: str,
    shapes: Sequence[str] = SHAPES,
    amp: Callable[[float], bool] = lambda a: True,
    n: Callable[[int], bool] = lambda k: True,
) -> dict[str, float]:
    """Shares of the selected trials: ``recovered``, ``alias`` (harmonic and daily),
    ``double`` (of the double-mode trials), and the counts ``total``, ``double_total``."""
    c = _cells(cells, survey, shapes, amp, n)
    tot = max(c["total"], 1)
    return {
        "recovered": c["recovered"] / tot,
        "alias": (c["alias_harmonic"] + c["alias_daily"]) / tot,
        "alias_harmonic": c["alias_harmonic"] / tot,
        "alias_daily": c["alias_daily"] / tot,
        "other_mode": c["other_mode"] / tot,
        "double": c["double"] / max(c["double_total"], 1),
        "total": c["total"],
        "double_total": c["double_total"],
    }


def periods_search(curves: Curves, **options: object) -> dict[str, np.ndarray]:
    """The current search (dmdt/periods.py): its period and second-mode period."""
    from dmdt.periods import search

    res = search(curves, **options)  # type: ignore[arg-type]
    return {"periods": np.stack([res.period, res.second], axis=1)}


SEARCHES["periods"] = periods_search
DESCRIPTIONS["periods"] = (
    "dmdt/periods.py: grid peaks refined by the exact GLS, candidates (peaks, halves, doubles,"
    " daily aliases) scored by the information criterion of their best multi-harmonic fit;"
    " second mode in the residuals at the double-mode period ratio"
)


# ------------------------------------------------------------------- EROS-1 catalogue periods


def eros_catalogue(every: int = 1, progress: bool = True) -> dict[str, object]:
    """Real periods: each EROS-1 object's catalogue period (the upstream ``period /
    div_period``, which puts RR Lyrae stars at 0.33-0.75 days) against the period found in its B
    band, its R band, and both together (dmdt/periods_multiband.py), by version 4's search and
    the current one; per class, the share within 1 % (``every``: every k-th object)."""
    from tqdm import tqdm

    from dmdt.datasets import bundled_path, load_labelled
    from dmdt.periods import search
    from dmdt.periods_multiband import multiband_period
    from research.period_recovery.baseline import v4_periods_many

    z = np.load(bundled_path("eros1"))
    catalogue = dict(zip(z["id"], z["static_period"] / z["static_div_period"], strict=True))
    objects: dict[str, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}
    labels: dict[str, str] = {}
    for lc in load_labelled("eros1"):
        objects.setdefault(lc.source_id, {})[str(lc.band)] = (lc.t, lc.m, lc.err)
        labels[lc.source_id] = str(lc.label)
    ids = sorted(i for i, b in objects.items() if len(b) == 2)[::every]
    truth = np.array([catalogue[i] for i in ids])
    found: dict[str, np.ndarray] = {}
    for band in ("B", "R"):
        curves = [objects[i][band] for i in ids]
        found[f"current, {band}"] = search(curves).period
        v4 = np.concatenate([v4_periods_many(curves[k : k + 64])
                             for k in tqdm(range(0, len(curves), 64), disable=not progress,
                                           desc=f"version 4, {band}")])  # fmt: skip
        found[f"version 4 period, {band}"] = v4[:, 0]
        found[f"version 4 mh_period, {band}"] = v4[:, 1]
    found["current, B and R together"] = np.array(
        [multiband_period(objects[i]).period for i in tqdm(ids, disable=not progress,
                                                            desc="B and R together")]
    )  # fmt: skip
    classes = sorted(set(labels[i] for i in ids))
    lab = np.array([labels[i] for i in ids])
    out: dict[str, object] = {"n": len(ids), "classes": {c: int((lab == c).sum()) for c in classes}}
    rows = {}
    for name, p in found.items():
        hit = np.abs(p / truth - 1.0) < TOLERANCE
        rows[name] = {"all": float(hit.mean()), **{c: float(hit[lab == c].mean()) for c in classes}}
    out["recovered"] = rows
    return out


# -------------------------------------------------------------------------- design choices

DESIGN_VARIANTS: dict[str, dict[str, object]] = {  # search options against the chosen ones
    "as chosen": {},
    "grid at 1 step per 1 / baseline (oversample 1)": {"oversample": 1.0},
    "8 grid peaks refined, not 16": {"n_peaks": 8},
    "32 grid peaks refined": {"n_peaks": 32},
    "penalty 0.75 ln n per parameter": {"penalty": 0.75},
    "penalty 1.25 ln n per parameter": {"penalty": 1.25},
    "no harmonic-sum candidates": {"n_sum_peaks": 0},
    "no joint second-mode scoring": {"n_joint": 0},
    "exact GLS grid (3 FFTs), not the 1-FFT approximation": {"exact_grid": True},
}


def design(seed: int = 1, per_cell: int = 12, progress: bool = True) -> dict[str, object]:
    """Each of :data:`DESIGN_VARIANTS` on the development trials (``seed`` 1, not the committed
    figures' 0) of the target region (amplitude 3, 5, 10; CRTS 60-200 points, EROS-1 60-100):
    per survey the shares recovered, aliased and double modes recovered, by shape."""
    from tqdm import tqdm

    from dmdt.periods import search

    batches = {
        survey: list(trials(survey, cadences(survey), SHAPES, (3.0, 5.0, 10.0),
                            [n for n in SIZES[survey] if n >= 60], per_cell, seed))
        for survey in ("crts", "eros1")
    }  # fmt: skip
    out: dict[str, object] = {"seed": seed, "per_cell": per_cell, "variants": {}}
    for name, options in tqdm(DESIGN_VARIANTS.items(), disable=not progress, desc="variants"):
        row = {}
        for survey, batch in batches.items():
            found = search([(tr.t, tr.m, tr.err) for tr in batch], **options)  # type: ignore[arg-type]
            cells = tally(score(batch, np.stack([found.period, found.second], axis=1)))
            row[survey] = {
                "all": rates(cells, survey),
                **{shape: rates(cells, survey, (shape,)) for shape in SHAPES},
            }
        out["variants"][name] = row  # type: ignore[index]
    return out
