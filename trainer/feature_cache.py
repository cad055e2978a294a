"""Feature matrices cached on disk, keyed by the features' name (which carries their version) and
the curves' data hash, so that a later fit, or a research run, on the same curves reuses them."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from dmdt.lightcurves import LightCurve


def cached_matrix(
    lcs: Sequence[LightCurve],
    data_hash: str,
    name: str,
    compute: Callable[[Sequence[LightCurve]], np.ndarray],
    cache: Path | None,
) -> tuple[np.ndarray, float]:
    """``compute(lcs)`` from ``<cache>/<name>-<hash>.npz`` (the hash of ``name`` and the curves'
    ``data_hash``) or computed and saved there (not saved without ``cache``); also the compute
    cost in ms per light curve (as measured when computed, after a warm-up)."""
    path = None
    if cache is not None:
        digest = hashlib.sha256(f"{name}\0{data_hash}".encode()).hexdigest()[:16]
        path = cache / f"{name}-{digest}.npz"
        if path.exists():
            z = np.load(path)
            return z["x"], float(z["ms_per_curve"])
    compute(lcs[:2])  # warm-up (numba compilation) outside the timing
    t0 = time.perf_counter()
    x = compute(lcs)
    ms = (time.perf_counter() - t0) * 1e3 / max(len(lcs), 1)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, x=x, ms_per_curve=ms, ids=[lc.source_id for lc in lcs])
    return x, ms
