"""Shared pieces of the experiments: budgets, the data context, the JSON store, one CNN run."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dmdt.grids import Grid, get_grid
from dmdt.inference import deterministic
from dmdt.lightcurves import LightCurve
from dmdt.nets import NetConfig, build_net
from research.cache import write_json
from trainer import data
from trainer.evaluate import classification_metrics
from trainer.fit import FitOptions, seed_everything, torch_threads, train_net


@dataclass(frozen=True)
class Budget:
    """How much each experiment may spend. ``full`` is what docs/results.md reports."""

    name: str = "full"
    per_class: int | None = None  # cap on CRTS curves per class (None: all)
    eros_per_class: int | None = None  # cap on EROS-1 curves per class and band
    seven_epochs: int = 500  # 7-class shallow CNN: the default model's settings
    seven_patience: int = 30
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)  # 5 seeded stratified 80/20 splits
    variant_epochs: int = 150  # bin variants and RPCA retraining (modest, stated in the doc)
    variant_patience: int = 20
    pair_epochs: int = 200  # each of the 21 binary classifiers
    pair_patience: int = 20
    deep_epochs: int = 60  # fixed, no early stopping: the deep net is ~50x the shallow per image
    transfer_epochs: int = 500  # as the 7-class run
    transfer_patience: int = 30
    transfer_frac: float = 0.15  # share of EROS-1 objects used to fine-tune
    trees: int = 500
    cadence_per_class: int = 500  # images drawn per class for the pseudo-cadence background
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return asdict(self)


FULL = Budget()
QUICK = Budget(
    name="quick",
    per_class=16,
    eros_per_class=12,
    seven_epochs=2,
    seven_patience=0,
    seeds=(0, 1),
    variant_epochs=1,
    variant_patience=0,
    pair_epochs=1,
    pair_patience=0,
    deep_epochs=1,
    transfer_epochs=1,
    transfer_patience=0,
    trees=10,
    cadence_per_class=20,
)


def cap_per_class(lcs: Sequence[LightCurve], cap: int | None) -> list[LightCurve]:
    """The first ``cap`` curves of each class, in the given order (None: all)."""
    if cap is None:
        return list(lcs)
    seen: dict[str, int] = {}
    out = []
    for lc in lcs:
        key = f"{lc.label}/{getattr(lc, 'band', '')}"
        if seen.get(key, 0) < cap:
            seen[key] = seen.get(key, 0) + 1
            out.append(lc)
    return out


class Context:
    """The CRTS curves of the paper's seven classes, their labels and images per grid (cached)."""

    def __init__(self, budget: Budget, classes: Sequence[str] = data.PAPER_CLASSES) -> None:
        self.budget = budget
        self.classes = tuple(classes)
        self._images: dict[str, np.ndarray] = {}

    @cached_property
    def lcs(self) -> list[LightCurve]:
        """Cleaned CRTS curves (sorted by id, as ``dmdt-train fit`` loads them)."""
        return cap_per_class(data.load("crts", classes=self.classes), self.budget.per_class)

    @cached_property
    def labels(self) -> np.ndarray:
        """Class indices into :attr:`classes`."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.array([index[str(lc.label)] for lc in self.lcs], dtype=np.int64)

    def images(self, grid: str | Grid = "mahabal2017") -> np.ndarray:
        """uint8 dmdt images ``(n, n_dt, n_dm)`` on ``grid``."""
        g = get_grid(grid)
        if g.name not in self._images:
            self._images[g.name] = data.images(self.lcs, g)
        return self._images[g.name]

    def split(self, seed: int, test_frac: float = 0.2) -> tuple[np.ndarray, np.ndarray]:
        """The stratified 80/20 split of ``dmdt-train fit --seed`` (train+val, test)."""
        return data.stratified_split(self.labels, test_frac, seed)


class Store:
    """``<dir>/<experiment>.json``: parts saved one at a time, so a run can resume."""

    def __init__(self, folder: str | Path, force: bool = False) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.force = force
        self._fresh: set[str] = set()

    def path(self, name: str) -> Path:
        """Where ``name``'s JSON lives."""
        return self.folder / f"{name}.json"

    def read(self, name: str) -> dict[str, Any] | None:
        """The stored document of ``name`` or None."""
        p = self.path(name)
        return json.loads(p.read_text()) if p.exists() else None

    def _doc(self, name: str, meta: dict[str, Any]) -> dict[str, Any]:
        doc = None if (self.force and name not in self._fresh) else self.read(name)
        self._fresh.add(name)
        if doc is None or doc.get("budget", {}).get("name") != meta.get("budget", {}).get("name"):
            doc = {"experiment": name, "parts": {}, "complete": False}
        doc.update(meta)
        return doc

    def run(
        self,
        name: str,
        keys: Iterable[str],
        fn: Callable[[str], dict[str, Any]],
        meta: dict[str, Any],
    ) -> dict[str, Any]:
        """Compute ``fn(key)`` for each key not stored yet, saving after each; mark complete."""
        doc = self._doc(name, meta)
        if doc.get("complete") and not self.force:
            return doc
        for key in keys:
            if key in doc["parts"]:
                continue
            t0 = time.perf_counter()
            result = fn(key)
            result.setdefault("wall_seconds", round(time.perf_counter() - t0, 1))
            doc["parts"][key] = result
            self._write(name, doc)
            print(f"  {name}/{key}: {summary(result)} ({result['wall_seconds']} s)", flush=True)
        doc["complete"] = True
        self._write(name, doc)
        return doc

    def _write(self, name: str, doc: dict[str, Any]) -> None:
        write_json(self.path(name), doc)


def summary(result: dict[str, Any]) -> str:
    """A short line of the headline numbers in ``result``."""
    keys = ("accuracy", "balanced_accuracy", "macro_f1", "mcc")
    return " ".join(f"{k}={result[k]:.3f}" for k in keys if isinstance(result.get(k), float))


def to_batch(images: np.ndarray) -> torch.Tensor:
    """Images in 0..255 ``(n, n_dt, n_dm)`` -> float32 ``(n, 1, n_dt, n_dm)`` / 255."""
    return torch.from_numpy(np.asarray(images, dtype=np.float32) / np.float32(255.0)).unsqueeze(1)


def predict_logits(net: torch.nn.Module, x: torch.Tensor, bs: int = 512) -> np.ndarray:
    """Logits ``(n, n_classes)`` of ``x`` ``(n, 1, n_dt, n_dm)``."""
    net.eval()
    with torch.no_grad():
        parts = [net(x[i : i + bs]).numpy() for i in range(0, x.shape[0], bs)]
    return np.concatenate(parts) if parts else np.zeros((0, 0))


def train_cnn(
    images: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    *,
    n_classes: int,
    arch: str = "shallow",
    epochs: int,
    patience: int,
    seed: int = 0,
    init_features: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Train a CNN as ``dmdt-train fit`` does (Adam 2e-4, batch 32, 10% validation split for early
    stopping, one thread, deterministic), on ``images[train_idx]``; return it and a run summary.

    ``init_features`` (a ``features`` state dict of a trained net) starts from those weights.
    """
    fit_part, val_part = data.stratified_split(labels[train_idx], 0.1, seed + 1)
    tr, va = train_idx[fit_part], train_idx[val_part]
    opts = FitOptions(arch=arch, epochs=epochs, patience=patience, seed=seed, device="cpu")
    x, y = to_batch(images), torch.from_numpy(labels)
    seed_everything(seed)
    net = build_net(NetConfig(arch=arch, input_shape=images.shape[1:], n_classes=n_classes))
    if init_features is not None:
        net.get_submodule("features").load_state_dict(init_features)
    t0 = time.perf_counter()
    with torch_threads(1, flush_denormal=True), deterministic():
        net, history = train_net(
            net, x[tr], y[tr], x[va], y[va], opts, torch.device("cpu"), progress=False
        )
    best = min(history, key=lambda r: r.get("val_loss", r["train_loss"])) if history else {}
    run = {
        "arch": arch,
        "n_train": int(tr.size),
        "n_val": int(va.size),
        "max_epochs": epochs,
        "patience": patience,
        "epochs_run": len(history),
        "best_epoch": int(best.get("epoch", 0)),
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    return net, run


def cnn_metrics(
    images: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    classes: Sequence[str],
    **kwargs: Any,
) -> dict[str, Any]:
    """Train on ``train_idx`` (:func:`train_cnn`) and score ``test_idx``: metrics + run summary."""
    net, run = train_cnn(images, labels, train_idx, n_classes=len(classes), **kwargs)
    pred = predict_logits(net, to_batch(images[test_idx])).argmax(axis=1)
    result = classification_metrics(labels[test_idx], pred, classes)
    result.update(run)
    return result
