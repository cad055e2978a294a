"""``dmdt-train fit-net``: train the network over the dmdt image and the periodic features
(dmdt/branchnet.py) on every labelled curve outside the fixed held-out part, with its copies in
other cadences and its young histories (trainer.training_rows), score the held-out part, write
the model directory.

The held-out part is the fixed split's (trainer/split.py: 20% of each class, stratified, seed 0; the
same curves as ``dmdt-train fit --seed 0`` and ``fit-hybrid`` hold out). Training is on CPU, one
torch thread, deterministic: the same command gives the same weights.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from dmdt import periodic
from dmdt.branchnet import (
    BranchMember,
    BranchNet,
    BranchNetClassifier,
    BranchNetConfig,
    fit_quantiles,
    scaled_features,
)
from dmdt.engine import normalize
from dmdt.grids import Grid, get_grid
from dmdt.inference import deterministic, images_to_batch
from trainer import data
from trainer.evaluate import classification_metrics
from trainer.fit import torch_threads
from trainer.split import HELD_OUT, fold_ids
from trainer.training_rows import Augmentation, Rows, build_rows, periodic_rows


@dataclass(frozen=True)
class NetOptions:
    """What ``fit-net`` trains; saved in model.json's training record."""

    classes: tuple[str, ...] = data.PAPER_CLASSES
    members: tuple[int, ...] = (0, 1, 2)  # one member per seed, probabilities averaged
    max_epochs: int = 60
    patience: int = 8  # epochs without a lower validation loss before stopping (best kept)
    batch_size: int = 64
    lr: float = 1e-3  # AdamW
    weight_decay: float = 1e-3
    dropout: float = 0.3
    label_smoothing: float = 0.05
    val_frac: float = 0.1  # of the training curves (their extra rows go with them), seed 1
    n_quantiles: int = 200
    calibrate: bool = True  # temperature fitted on the validation rows
    min_points: int = 20
    test_frac: float = 0.2
    threads: int = 1
    augmentation: Augmentation = field(default_factory=Augmentation)


def balanced_class_weights(labels: np.ndarray, weight: np.ndarray, n_classes: int) -> np.ndarray:
    """Per class, total weight / (n_classes * the class's weight): every class weighs the same."""
    per_class = np.bincount(labels, weights=weight, minlength=n_classes)
    return np.where(per_class > 0, weight.sum() / (n_classes * np.maximum(per_class, 1e-12)), 0.0)


def _loss(
    logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor, smoothing: float = 0.0
) -> torch.Tensor:
    """Weighted mean cross-entropy (``w`` per row)."""
    per_row = nn.functional.cross_entropy(logits, y, reduction="none", label_smoothing=smoothing)
    return (per_row * w).sum() / w.sum()


def train_member(
    seed: int,
    cfg: BranchNetConfig,
    tensors: dict[str, torch.Tensor],
    fit: torch.Tensor,
    val: torch.Tensor,
    opts: NetOptions,
    progress: bool,
) -> tuple[BranchMember, dict[str, Any]]:
    """One member trained on rows ``fit`` (AdamW, weighted loss, label smoothing), early
    stopping on the weighted loss of rows ``val``; the best epoch's weights."""
    img, feats, y, w = tensors["images"], tensors["features"], tensors["labels"], tensors["weight"]
    torch.manual_seed(seed)
    order = torch.Generator().manual_seed(seed)
    member = BranchMember(cfg)
    optim = torch.optim.AdamW(member.parameters(), opts.lr, weight_decay=opts.weight_decay)
    best, best_state, waited, epochs = float("inf"), None, 0, 0
    history = []
    bar = tqdm(range(opts.max_epochs), desc=f"member {seed}", unit="epoch", disable=not progress,
               leave=False)  # fmt: skip
    for epoch in bar:
        member.train()
        perm = fit[torch.randperm(fit.numel(), generator=order)]
        for i in range(0, perm.numel(), opts.batch_size):
            idx = perm[i : i + opts.batch_size]
            loss = _loss(member(img[idx], feats[idx]), y[idx], w[idx], opts.label_smoothing)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
        member.eval()
        with torch.no_grad():
            val_loss = float(_loss(member(img[val], feats[val]), y[val], w[val]))
        history.append(round(val_loss, 5))
        bar.set_postfix(val_loss=f"{val_loss:.4f}")
        epochs = epoch + 1
        if val_loss < best:
            best, waited = val_loss, 0
            best_state = {k: v.clone() for k, v in member.state_dict().items()}
        else:
            waited += 1
            if waited > opts.patience:
                break
    bar.close()
    if best_state is not None:
        member.load_state_dict(best_state)
    return member.eval(), {"seed": seed, "epochs": epochs, "best_val_loss": round(best, 5),
                           "val_loss": history}  # fmt: skip


def fit_temperature(logits: np.ndarray, y: np.ndarray, w: np.ndarray) -> float:
    """The temperature T that minimises the weighted log loss of the members' mean of
    softmax(logits / T) (``logits``: ``(members, n, k)``), between 0.25 and 4."""
    from scipy.optimize import minimize_scalar
    from scipy.special import softmax

    def nll(log_t: float) -> float:
        p = softmax(logits / np.exp(log_t), axis=2).mean(axis=0)
        return float(-(w * np.log(np.clip(p[np.arange(y.size), y], 1e-12, None))).sum() / w.sum())

    res = minimize_scalar(nll, bounds=(np.log(0.25), np.log(4.0)), method="bounded")
    return float(np.exp(res.x))


def train_branch_net(
    rows: Rows,
    train_curves: np.ndarray,
    classes: Sequence[str],
    grid: Grid,
    opts: NetOptions,
    name: str = "branchnet",
    progress: bool = True,
) -> tuple[BranchNetClassifier, dict[str, Any]]:
    """A :class:`BranchNetClassifier` trained on the curves ``train_curves`` of ``rows`` and
    their extra rows (10% of the curves, stratified, seed 1, with their extra rows, for early
    stopping and the temperature); returns it and the training record."""
    if rows.counts is None:
        raise ValueError("the branch net needs rows built with dmdt counts (grid=...)")
    t0 = time.perf_counter()
    curves = np.asarray(train_curves, dtype=np.int64)
    fit_part, val_part = data.stratified_split(rows.labels[curves], opts.val_frac, 1)
    fit_rows, val_rows = rows.part(curves[fit_part]), rows.part(curves[val_part])
    x = rows.features
    missing = tuple(int(j) for j in np.flatnonzero(~np.isfinite(x[fit_rows]).all(axis=0)))
    cfg = BranchNetConfig(
        n_features=x.shape[1], missing=missing, n_classes=len(classes),
        image_shape=grid.shape, members=len(opts.members), n_quantiles=opts.n_quantiles,
        dropout=opts.dropout,
    )  # fmt: skip
    quantiles = fit_quantiles(x[fit_rows], opts.n_quantiles)
    used = np.concatenate([fit_rows, val_rows])
    local = {int(r): i for i, r in enumerate(used.tolist())}  # rows -> tensor positions
    class_w = balanced_class_weights(rows.labels[fit_rows], rows.weight[fit_rows], len(classes))
    tensors = {
        "images": images_to_batch(normalize(rows.counts[used], rows.n_points[used])),
        "features": torch.from_numpy(scaled_features(x[used], quantiles, missing)),
        "labels": torch.from_numpy(rows.labels[used]),
        "weight": torch.from_numpy(
            (rows.weight[used] * class_w[rows.labels[used]]).astype(np.float32)
        ),
    }
    fit_t = torch.tensor([local[int(r)] for r in fit_rows])
    val_t = torch.tensor([local[int(r)] for r in val_rows])
    members, record = [], []
    with torch_threads(opts.threads, flush_denormal=True), deterministic():
        for seed in opts.members:
            member, rec = train_member(seed, cfg, tensors, fit_t, val_t, opts, progress)
            members.append(member)
            record.append(rec)
        net = BranchNet(cfg)
        net.members = nn.ModuleList(members)
        net.quantiles.copy_(torch.from_numpy(quantiles))
        temperature = 1.0
        if opts.calibrate and val_t.numel():
            with torch.no_grad():
                logits = net(tensors["images"][val_t], tensors["features"][val_t]).numpy()
            temperature = fit_temperature(
                logits.astype(np.float64), rows.labels[val_rows], rows.weight[val_rows]
            )
    model = BranchNetClassifier(
        name=name, classes=list(classes), grid=grid, config=cfg, net=net.eval(),
        min_points=opts.min_points, feature_names=list(periodic.FEATURE_NAMES),
        temperature=round(temperature, 4),
    )  # fmt: skip
    info = {
        "n_fit_rows": int(fit_rows.size),
        "n_val_rows": int(val_rows.size),
        "members": record,
        "temperature": round(temperature, 4),
        "train_seconds": round(time.perf_counter() - t0, 1),
    }
    return model, info


def crts_rows(
    source: str, opts: NetOptions, cache: Path | None, grid: Grid | None = None
) -> tuple[list[Any], Rows, tuple[str, ...]]:
    """The labelled curves of ``source`` in ``opts.classes``, their :class:`Rows` (features of
    every curve of the data cached as ``fit-hybrid`` caches them, extra rows per
    ``opts.augmentation``) and the classes."""
    from trainer.hybrid_fit import features_of

    every = data.load(source, None, opts.min_points)
    x_all, _ = features_of(every, cache)
    classes = data.class_names(every, opts.classes)
    keep = np.array([lc.label in classes for lc in every])
    lcs = [lc for lc, k in zip(every, keep, strict=True) if k]
    y = np.array([classes.index(str(lc.label)) for lc in lcs], dtype=np.int64)
    name = f"periodic_v{periodic.FEATURES_VERSION}"
    rows = build_rows(lcs, x_all[keep], y, opts.augmentation, name, periodic_rows, cache,
                      grid or get_grid("mahabal2017"))  # fmt: skip
    return lcs, rows, classes


def fit_branch_net(
    source: str,
    out: str | Path,
    opts: NetOptions,
    name: str = "branchnet",
    cache: Path | None = None,
    progress: bool = True,
) -> tuple[BranchNetClassifier, dict[str, Any]]:
    """Train on every curve of ``source`` outside the held-out part (and their extra rows),
    score the held-out part, save the model to ``out``; returns the model and the metrics."""
    t0 = time.perf_counter()
    grid = get_grid("mahabal2017")
    lcs, rows, classes = crts_rows(source, opts, cache, grid)
    y = rows.labels[: rows.n_curves]
    folds = fold_ids(y, held_out_frac=opts.test_frac)
    train, test = np.flatnonzero(folds != HELD_OUT), np.flatnonzero(folds == HELD_OUT)
    model, info = train_branch_net(rows, train, classes, grid, opts, name, progress)
    metrics: dict[str, Any] = {}
    if test.size:
        assert rows.counts is not None
        probs = model.classify(rows.counts[test], rows.n_points[test], rows.features[test])
        metrics = classification_metrics(y[test], probs.argmax(axis=1), classes)
        metrics["evaluated_on"] = "held-out part (20% per class, stratified, seed 0)"
        metrics.pop("classes")
    model.training = {
        "data": source,
        "data_hash": data.data_hash(lcs),
        "n_train": int(train.size),
        "n_held_out": int(test.size),
        "held_out_ids": [lcs[i].source_id for i in test],
        "options": {**asdict(opts), "classes": list(classes)},
        **info,
        "total_seconds": round(time.perf_counter() - t0, 1),
        "torch_version": torch.__version__,
    }
    model.metrics = metrics
    model.save(out)
    return model, metrics
