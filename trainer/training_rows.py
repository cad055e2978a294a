"""More training rows from each labelled curve: its copies in other surveys' cadences
(trainer.cadence) and its first k points (a young source's history), each with a weight.

The rows are built for every curve of a data set at once, so that their features are computed
(and cached) once, and each training part picks the rows of its own curves (``owner``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dmdt.lightcurves import LightCurve
from trainer import cadence, data
from trainer.feature_cache import cached_matrix


@dataclass(frozen=True)
class Augmentation:
    """Which extra rows each training curve gives (saved in a model's training record)."""

    cadences: tuple[str, ...] = ()  # trainer.cadence.SIMULATED names: one copy of each
    seed: int = 1  # the copies' draws (the measurement's copies use another seed)
    cadence_weight: float = 1.0
    history_cuts: tuple[int, ...] = ()  # first k points of the curve, for k shorter than it
    history_weight: float = 0.3
    min_points: int = 20  # copies with fewer points are not kept (nor classified by a broker)

    def __post_init__(self) -> None:
        unknown = [c for c in self.cadences if c not in cadence.SIMULATED]
        if unknown:
            raise ValueError(f"unknown cadences {unknown}; choose among {cadence.SIMULATED}")
        if any(k < self.min_points for k in self.history_cuts):
            raise ValueError(f"history cuts {self.history_cuts} below min_points {self.min_points}")

    @property
    def empty(self) -> bool:
        """True when no extra rows are made."""
        return not self.cadences and not self.history_cuts

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


def extra_curves(
    lcs: Sequence[LightCurve], aug: Augmentation
) -> tuple[list[LightCurve], np.ndarray, np.ndarray]:
    """The extra curves of ``lcs`` (cleaned): for each curve, its copy in each of
    ``aug.cadences`` (if it keeps ``min_points``), then its first k points for each history cut
    shorter than it; the index in ``lcs`` of each extra curve's original; and its weight."""
    out: list[LightCurve] = []
    owner: list[int] = []
    weight: list[float] = []
    for i, lc in enumerate(lcs):
        for name in aug.cadences:
            copy = cadence.thin(lc, name, aug.seed)
            if len(copy) >= aug.min_points:
                out.append(copy)
                owner.append(i)
                weight.append(aug.cadence_weight)
        for k in aug.history_cuts:
            if len(lc) > k:
                out.append(lc.head(k))
                owner.append(i)
                weight.append(aug.history_weight)
    return out, np.array(owner, dtype=np.int64), np.array(weight, dtype=np.float64)


def cache_name(features: str, aug: Augmentation) -> str:
    """The cache name of the extra curves' ``features`` (a feature set's own cache name)."""
    parts = [features]
    if aug.cadences:
        parts.append(f"cadences_{'-'.join(aug.cadences)}_seed_{aug.seed}_min_{aug.min_points}")
    if aug.history_cuts:
        parts.append(f"cuts_{'-'.join(map(str, aug.history_cuts))}")
    return "_".join(parts)


def extra_features(
    lcs: Sequence[LightCurve],
    aug: Augmentation,
    name: str,
    compute: Callable[[Sequence[LightCurve]], np.ndarray],
    cache: Path | None,
) -> tuple[list[LightCurve], np.ndarray, np.ndarray, np.ndarray]:
    """:func:`extra_curves` of ``lcs`` and their feature matrix ``compute(extra)`` (cached under
    ``cache`` by ``name``, the augmentation and the originals' data hash)."""
    extra, owner, weight = extra_curves(lcs, aug)
    if not extra:
        return extra, owner, weight, np.zeros((0, 0))
    x, _ = cached_matrix(extra, data.data_hash(lcs), cache_name(name, aug), compute, cache)
    return extra, owner, weight, x


def select(owner: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Indices of the extra rows whose original is one of ``rows``."""
    return np.flatnonzero(np.isin(owner, rows))


@dataclass
class Rows:
    """Rows of a data set's curves then of their extra curves: features, dmdt counts (when
    asked for), labels, weights and the curve each row comes from."""

    features: np.ndarray  # (N, F) float64
    counts: np.ndarray | None  # (N, n_dt, n_dm) int32
    n_points: np.ndarray  # (N,) int64
    labels: np.ndarray  # (N,) int64
    weight: np.ndarray  # (N,) float64: 1 for the curves themselves
    owner: np.ndarray  # (N,) int64: index of the row's curve (its own for the first n_curves)
    n_curves: int

    def part(self, curves: np.ndarray) -> np.ndarray:
        """Row indices of ``curves`` (indices of curves) and of their extra curves."""
        extra = self.n_curves + select(self.owner[self.n_curves :], curves)
        return np.concatenate([np.asarray(curves, dtype=np.int64), extra])


def build_rows(
    lcs: Sequence[LightCurve],
    features: np.ndarray,
    labels: np.ndarray,
    aug: Augmentation,
    feature_name: str,
    compute: Callable[[Sequence[LightCurve]], np.ndarray],
    cache: Path | None,
    grid: Any = None,
) -> Rows:
    """:class:`Rows` of ``lcs`` (their ``features`` and ``labels`` given) and of their extra
    curves under ``aug`` (features ``compute``d, cached as ``feature_name``); dmdt counts on
    ``grid`` when one is given."""
    from dmdt.model import lightcurve_counts

    extra, owner, weight, x_extra = extra_features(lcs, aug, feature_name, compute, cache)
    n = len(lcs)
    every = [*lcs, *extra]
    counts = None
    n_points = np.array([len(lc) for lc in every], dtype=np.int64)
    if grid is not None:
        counts, _ = lightcurve_counts(every, grid)
    return Rows(
        features=np.concatenate([features, x_extra]) if extra else np.asarray(features),
        counts=counts,
        n_points=n_points,
        labels=np.concatenate([labels, labels[owner]]).astype(np.int64),
        weight=np.concatenate([np.ones(n), weight]),
        owner=np.concatenate([np.arange(n), owner]).astype(np.int64),
        n_curves=n,
    )


def periodic_rows(lcs: Sequence[LightCurve], progress: bool = True) -> np.ndarray:
    """Version-current periodic features of ``lcs`` (dmdt/periodic.py), in chunks with a
    progress bar: ``(len(lcs), F)``."""
    from tqdm import tqdm

    from dmdt import periodic

    chunk = 256
    parts = [
        periodic.features(lcs[i : i + chunk])[0]
        for i in tqdm(range(0, len(lcs), chunk), desc="periodic features", unit="chunk",
                      disable=not progress or len(lcs) <= chunk, leave=False)
    ]  # fmt: skip
    return np.concatenate(parts) if parts else np.zeros((0, len(periodic.FEATURE_NAMES)))
