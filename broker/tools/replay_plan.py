"""The replay's pure core: archived light curves -> one time-ordered stream of alerts (no Kafka).

`plan_replay` merges every detection of every light curve into one global time order and makes
one alert per detection: that detection as the new one, optionally preceded by the source's
previous detections within ``history_days`` (as ZTF repeats 30 days). Archived alerts
(`ArchivedAlert`, e.g. real ZTF alerts) take part in the same merge as they are.

Determinism: the plan depends only on its inputs (as a set) and the seed. The seed breaks ties
(equal times of different light curves, common when sources share an exposure) and picks the
sources of ``limit_sources``; nothing else is random. Alert ids do not depend on the seed at all:
a detection's id is a 63-bit hash of (survey, source id, band, time), checked unique per plan.

Pacing groups: observations closer than ``visit_gap_days`` to the previous one (across all
sources) form one group, a night by default (0.5 d) or a visit with a small gap. An alert's
``sim_time`` is its group's last observation time: the whole group is released together once
it has been observed, and nothing is sent before it happened.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from broker.decode import DecodedAlert
from dmdt.lightcurves import LightCurve

DEFAULT_VISIT_GAP_DAYS = 0.5  # observations closer than this form one group: a night
DEFAULT_BANDS = {"crts": "V"}  # CRTS magnitudes are unfiltered, calibrated to Johnson V
UNKNOWN_BAND = "unknown"
_CHUNK = 1 << 16  # plan rows turned into Python lists at a time (memory vs per-item speed)
_MASK63 = np.uint64((1 << 63) - 1)


@dataclass(frozen=True, eq=False)
class ArchivedAlert:
    """An archived alert replayed as it is: raw message bytes (ZTF) or one decoded band."""

    source_id: str  # the message key
    time: float  # MJD of its new detection (ZTF: candidate jd - 2400000.5)
    alert_id: int  # ZTF candid
    payload: bytes | DecodedAlert

    @property
    def label(self) -> str | None:
        """Known class, when the payload is a decoded alert that carries one."""
        return self.payload.label if isinstance(self.payload, DecodedAlert) else None


class PlannedAlert(NamedTuple):
    """One message of the replay: Kafka key (the source id), payload, release time (MJD)."""

    key: str
    alert: DecodedAlert | bytes
    sim_time: float


Item = LightCurve | ArchivedAlert


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """Vectorised splitmix64 finaliser (uint64 in, well-mixed uint64 out; wraps mod 2**64)."""
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def alert_ids(survey: str, source_id: str, band: str, t: np.ndarray) -> np.ndarray:
    """Alert ids of detections at times t: 63-bit hashes of (survey, source, band, time)."""
    digest = hashlib.blake2b(f"{survey}\0{source_id}\0{band}".encode(), digest_size=8).digest()
    base = np.uint64(int.from_bytes(digest, "big"))
    bits = np.ascontiguousarray(t, dtype=np.float64).view(np.uint64)
    with np.errstate(over="ignore"):
        return (_splitmix64(_splitmix64(bits) ^ base) & _MASK63).astype(np.int64)


def _band(item: Item, survey: str) -> str:
    if isinstance(item, ArchivedAlert):
        return item.payload.band if isinstance(item.payload, DecodedAlert) else ""
    return item.band or DEFAULT_BANDS.get(survey, UNKNOWN_BAND)


def _label(item: Item) -> str | None:
    return item.label


def select_sources(
    items: Iterable[Item],
    *,
    classes: Collection[str] | None = None,
    limit_sources: int | None = None,
    seed: int = 0,
) -> list[Item]:
    """Keep items of these classes, then ``limit_sources`` source ids drawn with the seed."""
    kept = list(items)
    if classes is not None:
        wanted = set(classes)
        kept = [x for x in kept if _label(x) in wanted]
        missing = sorted(wanted - {_label(x) for x in kept})
        if missing:
            raise ValueError(f"no light curve of class(es) {missing} (only labelled data have one)")
    if limit_sources is not None:
        if limit_sources < 1:
            raise ValueError(f"limit_sources must be at least 1, got {limit_sources}")
        ids = sorted({x.source_id for x in kept})
        if limit_sources < len(ids):
            rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[0])
            chosen = {ids[i] for i in rng.choice(len(ids), limit_sources, replace=False)}
            kept = [x for x in kept if x.source_id in chosen]
    return kept


def _check_curve(lc: LightCurve) -> None:
    """Planned light curves must be clean: finite, strictly increasing times."""
    if len(lc) == 0:
        raise ValueError(f"light curve {lc.source_id!r} is empty")
    if not (np.isfinite(lc.t).all() and np.isfinite(lc.m).all() and np.isfinite(lc.err).all()):
        raise ValueError(f"light curve {lc.source_id!r} has non-finite values: clean it first")
    if (lc.err < 0).any():
        raise ValueError(f"light curve {lc.source_id!r} has negative errors")
    if not (np.diff(lc.t) > 0).all():
        raise ValueError(
            f"light curve {lc.source_id!r} is not strictly increasing in time: clean it first "
            "(dmdt.lightcurves.clean sorts and merges same-time points)"
        )


class ReplayPlan:
    """An iterator of `PlannedAlert` in global time order, that knows its size and span."""

    def __init__(
        self,
        units: list[Item],
        survey: str,
        order: np.ndarray,  # (n,) rows of the concatenated detections, in send order
        unit: np.ndarray,  # (n,) concatenated: index into units
        point: np.ndarray,  # (n,) concatenated: index into the unit's light curve
        lo: np.ndarray,  # (n,) concatenated: first history point of each alert
        ids: np.ndarray,  # (n,) concatenated: alert ids
        t: np.ndarray,  # (n,) concatenated: detection times
        visit_gap_days: float,
    ) -> None:
        self.survey = survey
        self.n_sources = len({u.source_id for u in units})
        self._units = units
        self._bands = [_band(u, survey) for u in units]
        ts = t[order]
        self.t_first = float(ts[0]) if ts.size else float("nan")
        self.t_last = float(ts[-1]) if ts.size else float("nan")
        starts = np.r_[True, np.diff(ts) > visit_gap_days] if ts.size else np.zeros(0, bool)
        group = np.cumsum(starts) - 1
        ends = np.r_[np.flatnonzero(starts)[1:] - 1, ts.size - 1] if ts.size else starts
        self.n_groups = int(starts.sum())
        self._sim = ts[ends][group]  # each alert's release time: its group's last time
        self._unit, self._point, self._lo, self._ids = (
            unit[order],
            point[order],
            lo[order],
            ids[order],
        )
        self._it = self._generate()

    def __len__(self) -> int:
        return int(self._sim.size)

    def __iter__(self) -> ReplayPlan:
        return self

    def __next__(self) -> PlannedAlert:
        return next(self._it)

    def _generate(self) -> Iterator[PlannedAlert]:
        units, bands, survey = self._units, self._bands, self.survey
        for start in range(0, len(self), _CHUNK):
            s = slice(start, start + _CHUNK)
            rows = zip(
                self._unit[s].tolist(),
                self._point[s].tolist(),
                self._lo[s].tolist(),
                self._ids[s].tolist(),
                self._sim[s].tolist(),
                strict=True,
            )
            for u, i, lo, alert_id, sim in rows:
                item = units[u]
                if isinstance(item, ArchivedAlert):
                    yield PlannedAlert(item.source_id, item.payload, sim)
                    continue
                alert = DecodedAlert(
                    alert_id,
                    item.source_id,
                    survey,
                    bands[u],
                    item.ra,
                    item.dec,
                    float(item.t[i]),
                    item.t[lo : i + 1],
                    item.m[lo : i + 1],
                    item.err[lo : i + 1],
                    item.label,
                )
                yield PlannedAlert(item.source_id, alert, sim)


def plan_replay(
    items: Iterable[Item],
    *,
    survey: str = "crts",
    history_days: float = 0.0,
    visit_gap_days: float = DEFAULT_VISIT_GAP_DAYS,
    seed: int = 0,
    classes: Collection[str] | None = None,
    limit_sources: int | None = None,
) -> ReplayPlan:
    """The alerts of cleaned light curves (and archived alerts) in global time order.

    Each detection becomes one alert keyed by its source id, carrying the previous detections
    of that light curve with t >= t_new - history_days (0: none; inf: all). See the module
    docstring for ties, ids and the pacing groups.
    """
    if not history_days >= 0:
        raise ValueError(f"history_days must be >= 0, got {history_days}")
    if not visit_gap_days >= 0:
        raise ValueError(f"visit_gap_days must be >= 0, got {visit_gap_days}")
    chosen = select_sources(items, classes=classes, limit_sources=limit_sources, seed=seed)
    # A canonical order first, so the plan does not depend on the order items came in.
    units = sorted(
        chosen,
        key=lambda x: (
            x.source_id,
            _band(x, survey),
            x.alert_id if isinstance(x, ArchivedAlert) else -1,
        ),
    )
    curves = [(u.source_id, _band(u, survey)) for u in units if isinstance(u, LightCurve)]
    if len(set(curves)) != len(curves):
        dup = next(c for c in curves if curves.count(c) > 1)
        raise ValueError(f"two light curves of source {dup[0]!r} in band {dup[1]!r}")
    ts, ids, los = [], [], []
    for u, band in zip(units, (_band(u, survey) for u in units), strict=True):
        if isinstance(u, ArchivedAlert):
            ts.append(np.array([u.time], dtype=np.float64))
            ids.append(np.array([u.alert_id], dtype=np.int64))
            los.append(np.zeros(1, dtype=np.int64))
            continue
        _check_curve(u)
        ts.append(u.t)
        ids.append(alert_ids(survey, u.source_id, band, u.t))
        los.append(np.searchsorted(u.t, u.t - history_days, side="left"))
    sizes = np.array([x.size for x in ts], dtype=np.int64)
    t = np.concatenate(ts) if ts else np.zeros(0)
    all_ids = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    unique, counts = np.unique(all_ids, return_counts=True)
    if unique.size != all_ids.size:
        raise ValueError(f"alert id {int(unique[counts > 1][0])} occurs twice in the replay")
    unit = np.repeat(np.arange(len(units), dtype=np.int64), sizes)
    point = np.arange(t.size, dtype=np.int64) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    tie_rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    rank = tie_rng.permutation(len(units))
    order = np.lexsort((point, rank[unit], t))  # by time; ties by the seeded rank of the unit
    lo = np.concatenate(los) if los else np.zeros(0, np.int64)
    return ReplayPlan(units, survey, order, unit, point, lo, all_ids, t, visit_gap_days)
