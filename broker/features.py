"""Per-source feature vectors of a model, refreshed on an amortised policy (pure, no Kafka).

A model that reads features (`dmdt.model.Model` with ``feature_names``: a hybrid model or a
branch net) classifies a source from its dmdt counts, which the state keeps exact and
incremental, plus a feature vector (periods, harmonics, shape) that is
a pure function of the source's points and costs tens of milliseconds to compute (a Lomb-Scargle
period search). Computing it on every alert would cap a consumer at a few dozen sources per
second, so `FeatureCache` keeps each source's last vector and the number of distinct points it was
computed on, and recomputes it only when

- the source has none yet, or
- its point count grew by at least ``refresh_fraction`` (10 %) of that number, or
- it grew by at least ``refresh_points`` points (0: this rule off),

or on every batch that added a point (``always``: the exact mode of tests and comparisons).

All refreshes of a batch are computed together, most needed first (sources with no vector, then
the largest relative growth), in as few calls of the model's ``features_many`` as the budget
allows (one period search for many sources: `dmdt.periods`), split over ``threads`` threads, until
``budget_s`` is spent: a burst of new sources cannot stall the loop. The calls are sized from the
measured cost per source (the first call of the cache's life holds one source); with ``always``
or no budget, all due sources go in one call (at most :data:`MAX_CALL` sources each). A source
over the budget keeps its stale vector; one that has none yet is classified with a vector of NaN
(LightGBM's missing values: the counts still speak) and is first in line at its next batch. Its
alert still gets its output: nothing is dropped. ``always`` ignores the budget.

The cache is not durable: after a restart or a rebalance a source's vector is recomputed at its
next alert (it has none), and the entries of revoked or lost partitions are dropped (`release`).
It holds at most ``max_entries`` vectors, least recently used evicted first.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from broker.state import PartitionId, SourceKey, SourcePartitions
from dmdt.model import Curve, Model

History = Callable[[SourceKey], tuple[np.ndarray, np.ndarray, np.ndarray]]  # key -> (t, m, err)
MAX_CALL = 256  # sources per features_many call at most (memory of one batched search)


def features_of(model: Model, curves: Sequence[Curve]) -> np.ndarray:
    """The vectors of ``curves`` ``(n, F)``, in one ``features_many`` call."""
    return np.asarray(model.features_many(curves), dtype=np.float64).reshape(len(curves), -1)


def feature_identity(model: Model) -> tuple[int, tuple[str, ...]]:
    """Models with the same identity compute the same vectors: a reload keeps the cache."""
    return int(model.features_version or 0), tuple(model.feature_names)


@dataclass
class _Entry:
    vector: np.ndarray  # (F,) float64
    n_points: int  # distinct points it was computed on


@dataclass
class Lookup:
    """Feature vectors of one batch's sources, and what the refresh did."""

    vectors: np.ndarray  # (n, F) float64; NaN rows: no vector yet (over the budget)
    points: np.ndarray  # (n,) int64: points each vector was computed on (0: none)
    refreshed: int = 0
    refresh_s: float = 0.0
    deferred: int = 0  # refreshes due but left for a later batch (budget)
    durations: list[float] = field(default_factory=list)  # seconds per refresh


class FeatureCache:
    """Source -> last feature vector, refreshed on the amortised policy of the module doc."""

    def __init__(
        self,
        *,
        refresh_fraction: float = 0.10,
        refresh_points: int = 0,
        always: bool = False,
        budget_s: float = 0.5,
        threads: int = 1,
        max_entries: int = 200_000,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if refresh_fraction < 0 or refresh_points < 0 or budget_s < 0 or threads < 1:
            raise ValueError("refresh_fraction, refresh_points, budget_s >= 0 and threads >= 1")
        self.refresh_fraction = refresh_fraction
        self.refresh_points = refresh_points
        self.always = always
        self.budget_s = budget_s  # 0: no budget
        self.threads = threads
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[SourceKey, _Entry] = OrderedDict()
        self._sources = SourcePartitions()  # the partition of each entry
        self._identity: tuple[int, tuple[str, ...]] | None = None
        self._pool = ThreadPoolExecutor(threads, "dmdt-features") if threads > 1 else None
        self._per_source_s = math.inf  # measured cost of a refresh (seconds; inf: not yet)

    def __len__(self) -> int:
        return len(self._entries)

    def computed_on(self, key: SourceKey) -> int:
        """Points the source's cached vector was computed on (0: none held)."""
        entry = self._entries.get(key)
        return entry.n_points if entry is not None else 0

    def due(self, have: int, now: int) -> bool:
        """Whether a vector computed on ``have`` points must be recomputed at ``now`` points."""
        if have <= 0:
            return True
        grown = now - have
        if grown <= 0:
            return False
        if self.always:
            return True
        if grown >= max(1, math.ceil(self.refresh_fraction * have)):
            return True
        return self.refresh_points > 0 and grown >= self.refresh_points

    def release(self, partitions: Iterable[PartitionId]) -> int:
        """Drop the vectors of partitions no longer owned; returns how many."""
        dropped = 0
        for part in set(partitions):
            for key in self._sources.release(part):
                del self._entries[key]
                dropped += 1
        return dropped

    def clear(self) -> None:
        """Forget every vector (a model computing other features was loaded)."""
        self._entries.clear()
        self._sources = SourcePartitions()

    def close(self) -> None:
        """Stop the refresh threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _compute(self, model: Model, curves: list[Curve]) -> np.ndarray:
        """The vectors of ``curves``, split over the threads when there are several."""
        if self._pool is None or len(curves) < 2:
            return features_of(model, curves)
        parts = [curves[k :: self.threads] for k in range(self.threads)]
        results = list(self._pool.map(lambda c: features_of(model, c), [p for p in parts if p]))
        out = np.empty((len(curves), results[0].shape[1]))
        for k, rows in enumerate(results):
            out[k :: self.threads] = rows
        return out

    def lookup(
        self,
        model: Model,
        keys: Sequence[SourceKey],
        partitions: Sequence[PartitionId],
        n_points: np.ndarray,
        history: History,
    ) -> Lookup:
        """The vectors of distinct sources ``keys`` (holding ``n_points``), refreshing the due
        ones within the budget; ``history`` reads a source's points from the state."""
        identity = feature_identity(model)
        if identity != self._identity:
            self.clear()
            self._identity = identity
        n = len(keys)
        width = len(model.feature_names)
        vectors = np.full((n, width), np.nan, dtype=np.float64)  # (n, F)
        points = np.zeros(n, dtype=np.int64)
        due: list[tuple[float, int]] = []  # (priority, index): smaller first
        for i, (key, now) in enumerate(zip(keys, n_points.tolist(), strict=True)):
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                vectors[i], points[i] = entry.vector, entry.n_points
            have = entry.n_points if entry is not None else 0
            if self.due(have, now):
                # no vector first, then the largest relative growth
                due.append((-math.inf if have == 0 else -(now - have) / have, i))
        due.sort()
        out = Lookup(vectors, points)
        if due:
            self._refresh(model, [i for _, i in due], keys, partitions, n_points, history, out)
        return out

    def _refresh(
        self,
        model: Model,
        order: list[int],
        keys: Sequence[SourceKey],
        partitions: Sequence[PartitionId],
        n_points: np.ndarray,
        history: History,
        out: Lookup,
    ) -> None:
        """Recompute the vectors of sources ``order`` (most needed first) until the budget, in
        calls sized from the measured cost per source."""
        start = self.clock()
        deadline = math.inf if self.always or self.budget_s <= 0 else start + self.budget_s
        done: list[tuple[int, np.ndarray, float]] = []
        pending = list(order)
        while pending:
            now = self.clock()
            if now >= deadline:
                break
            size = MAX_CALL
            if math.isfinite(deadline):
                fits = (deadline - now) / self._per_source_s if self._per_source_s > 0 else 1
                size = int(min(max(fits, 1), MAX_CALL))
            chunk, pending = pending[:size], pending[size:]
            t0 = time.perf_counter()
            vectors = self._compute(model, [history(keys[i]) for i in chunk])
            seconds = (time.perf_counter() - t0) / len(chunk)
            clocked = (self.clock() - now) / len(chunk)  # the budget's clock (a test may fake it)
            self._per_source_s = clocked
            done += [(i, v, seconds) for i, v in zip(chunk, vectors, strict=True)]
        for i, vector, seconds in done:
            if vector.size != out.vectors.shape[1]:
                raise ValueError(
                    f"{model.name} computed {vector.size} features, expected "
                    f"{out.vectors.shape[1]} ({len(model.feature_names)} names)"
                )
            out.vectors[i] = vector
            out.points[i] = int(n_points[i])
            out.durations.append(seconds)
            self._entries[keys[i]] = _Entry(vector, int(n_points[i]))
            self._entries.move_to_end(keys[i])
            self._sources.note(keys[i], partitions[i])
        out.refreshed = len(done)
        out.deferred = len(order) - len(done)
        out.refresh_s = self.clock() - start
        while len(self._entries) > self.max_entries:
            key, _ = self._entries.popitem(last=False)
            self._sources.forget(key)
