"""Fit a dmdt CNN: stratified held-out test split, validation split for early stopping, artifact."""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from dmdt.cnn import Classifier, LoadedModel, save_model
from dmdt.grids import Grid, get_grid
from dmdt.inference import deterministic, images_to_batch, resolve_device
from dmdt.lightcurves import LightCurve
from dmdt.nets import NetConfig, build_net
from trainer import data
from trainer.evaluate import evaluate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitOptions:
    """Everything that decides a training run (recorded in the artifact)."""

    arch: str = "shallow"
    classes: tuple[str, ...] | None = None  # None: every class in the data
    epochs: int = 500  # the authors' max_epochs
    batch_size: int = 32  # Keras' default, as in the authors' 2019 port (their nolearn: 128)
    lr: float = 2e-4  # Adam, as in the authors' code
    # loss += l2 * sum(W**2) over weights, not biases. The authors' nolearn runs used 0.0025;
    # on the bundled CRTS data that underfits (train loss = val loss, ~58% held-out accuracy
    # after 300 epochs), so the default is none (docs in models/paper-cnn/README.md).
    l2: float = 0.0
    val_frac: float = 0.1  # of the training part, for early stopping
    test_frac: float = 0.2  # of all curves, held out and recorded by source id
    patience: int = 30  # epochs without a better validation loss before stopping
    seed: int = 0
    device: str = "auto"
    grid: str = "mahabal2017"
    min_points: int = 20
    dropout: tuple[float, ...] | None = None  # None: the arch's default (dmdt.nets)
    threads: int = 1  # torch CPU threads: the nets are tiny, more threads mostly add contention
    # train (and early-stop) also on each training curve's copy in each of these cadences
    # (trainer.cadence: nightly, ztf, rubin); the held-out test curves stay as they are
    cadences: tuple[str, ...] = ()
    cadence_seed: int = 1


@contextmanager
def torch_threads(n: int, flush_denormal: bool = False) -> Iterator[None]:
    """Run the block on ``n`` torch threads and, with ``flush_denormal``, with denormal floats
    flushed to zero (Adam's second moments and L2-decayed weights drift into denormals, which run
    many times slower on CPUs); both restored after."""
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    flush = flush_denormal and torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if flush:
            torch.set_flush_denormal(False)


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch and numpy; return a generator for the batch order."""
    torch.manual_seed(seed)
    np.random.seed(seed)  # for anything downstream that uses the global state
    return torch.Generator().manual_seed(seed)


def _epoch_loss(
    net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device, bs: int = 1024
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``net`` on a whole set (eval mode, no grad)."""
    net.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, x.shape[0], bs):
            xb, yb = x[i : i + bs].to(device), y[i : i + bs].to(device)
            logits = net(xb)  # (b, n_classes)
            loss_sum += float(torch.nn.functional.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(1) == yb).sum())
    n = max(int(x.shape[0]), 1)
    return loss_sum / n, correct / n


def train_net(
    net: torch.nn.Module,
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    opts: FitOptions,
    device: torch.device,
    progress: bool = True,
) -> tuple[torch.nn.Module, list[dict[str, float]]]:
    """Adam on cross-entropy + L2; keep the weights of the epoch with the lowest validation loss."""
    gen = seed_everything(opts.seed)
    net = net.to(device)
    optim = torch.optim.Adam(net.parameters(), lr=opts.lr)
    weights = [p for p in net.parameters() if p.ndim > 1]  # Lasagne regularises W, not b
    best_state, best_loss, stale = None, float("inf"), 0
    history: list[dict[str, float]] = []
    has_val = x_val.shape[0] > 0
    bar = tqdm(
        range(1, opts.epochs + 1), desc=f"fit {opts.arch}", unit="epoch", disable=not progress
    )
    for epoch in bar:
        net.train()
        order = torch.randperm(x_train.shape[0], generator=gen)
        loss_sum = 0.0
        for i in range(0, len(order), opts.batch_size):
            idx = order[i : i + opts.batch_size]
            xb, yb = x_train[idx].to(device), y_train[idx].to(device)  # (b, 1, n_dt, n_dm), (b,)
            optim.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(net(xb), yb)
            penalty = opts.l2 * sum(w.square().sum() for w in weights) if opts.l2 else 0.0
            (loss + penalty).backward()
            optim.step()
            loss_sum += loss.item() * len(idx)
        row = {"epoch": epoch, "train_loss": loss_sum / max(len(order), 1)}
        if has_val:
            row["val_loss"], row["val_accuracy"] = _epoch_loss(net, x_val, y_val, device)
        history.append(row)
        bar.set_postfix({k: f"{v:.4f}" for k, v in row.items() if k != "epoch"})
        monitor = row.get("val_loss", row["train_loss"])
        if monitor < best_loss:
            best_loss, stale = monitor, 0
            best_state = copy.deepcopy(net.state_dict())
        else:
            stale += 1
            if opts.patience and stale >= opts.patience:
                break
    bar.close()
    if progress and len(history) < opts.epochs:
        tqdm.write(
            f"early stop after epoch {len(history)}: no better validation loss "
            f"for {opts.patience} epochs"
        )
    if best_state is not None:
        net.load_state_dict(best_state)
    return net.eval(), history


def _with_copies(
    lcs: Sequence[LightCurve],
    labels: np.ndarray,
    idx: np.ndarray,
    x: torch.Tensor,
    y: torch.Tensor,
    grid: Grid,
    opts: FitOptions,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of the curves ``idx`` followed by their copies in ``opts.cadences``."""
    from trainer.training_rows import Augmentation, extra_curves

    aug = Augmentation(cadences=opts.cadences, seed=opts.cadence_seed, min_points=opts.min_points)
    copies, owner, _ = extra_curves([lcs[i] for i in idx], aug)
    if not copies:
        return x, y
    x_copies = images_to_batch(data.images(copies, grid))
    y_copies = torch.from_numpy(labels[idx][owner])
    return torch.cat([x, x_copies]), torch.cat([y, y_copies])


def fit(
    source: str,
    out_dir: str | Path,
    opts: FitOptions,
    lcs: Sequence[LightCurve] | None = None,
    progress: bool = True,
) -> tuple[LoadedModel, dict[str, Any]]:
    """Train on ``source`` and write a verified model directory; return it and its test metrics."""
    t0 = time.perf_counter()
    grid = get_grid(opts.grid)
    if lcs is None:
        lcs = data.load(source, classes=opts.classes, min_points=opts.min_points)
    classes = data.class_names(lcs, opts.classes)
    lcs = [lc for lc in lcs if lc.label in classes]
    index = {c: i for i, c in enumerate(classes)}
    labels = np.array([index[str(lc.label)] for lc in lcs], dtype=np.int64)

    rest, test = data.stratified_split(labels, opts.test_frac, opts.seed)
    fit_part, val_part = data.stratified_split(labels[rest], opts.val_frac, opts.seed + 1)
    train_idx, val_idx = rest[fit_part], rest[val_part]

    x = images_to_batch(data.images(lcs, grid))  # (n, 1, n_dt, n_dm) float32
    y = torch.from_numpy(labels)
    x_train, y_train, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
    n_copies = 0
    if opts.cadences:
        x_train, y_train = _with_copies(lcs, labels, train_idx, x_train, y_train, grid, opts)
        x_val, y_val = _with_copies(lcs, labels, val_idx, x_val, y_val, grid, opts)
        n_copies = int(x_train.shape[0] - train_idx.size + x_val.shape[0] - val_idx.size)
    device = resolve_device(opts.device)
    config = NetConfig(
        arch=opts.arch, input_shape=grid.shape, n_classes=len(classes), dropout=opts.dropout
    )
    seed_everything(opts.seed)
    net = build_net(config)
    log.info(
        "training %s on %d curves (%d val, %d test held out)",
        opts.arch,
        len(train_idx),
        len(val_idx),
        len(test),
    )
    t_train = time.perf_counter()
    with torch_threads(opts.threads, flush_denormal=True), deterministic():
        net, history = train_net(net, x_train, y_train, x_val, y_val, opts, device, progress)
    train_s = time.perf_counter() - t_train
    net = net.cpu()

    training = {
        "data_source": str(source),
        "data_hash": data.data_hash(lcs),
        "n_curves": len(lcs),
        "class_counts": {c: int((labels == i).sum()) for c, i in index.items()},
        "seed": opts.seed,
        "options": {**asdict(opts), "classes": list(classes)},
        "split": {
            "method": "stratified per class, numpy default_rng(seed); val from the rest",
            "n_train": len(train_idx),
            "n_val": len(val_idx),
            "n_test": len(test),
            "n_cadence_copies": n_copies,
            "test_ids": [lcs[i].source_id for i in test],
        },
        "history": history,
        "epochs_run": len(history),
        "best_epoch": int(min(history, key=lambda r: r.get("val_loss", r["train_loss"]))["epoch"])
        if history
        else 0,
        "device": str(device),
        "torch_version": torch.__version__,
        "train_seconds": round(train_s, 2),
    }
    preprocessing = {
        "image": "uint8 int(255 * count / p + 0.99999), p = n(n-1)/2 (dmdt.engine.normalize)",
        "input": "float32 image / 255, shaped (batch, 1, n_dt, n_dm)",
        "clean": True,
        "min_points": opts.min_points,
    }
    metrics: dict[str, Any] = {}
    if len(test):
        # Score the held-out curves through the serving path (Classifier) before saving, so
        # config.json records the metrics of exactly the weights it ships with.
        unsaved = LoadedModel(Path(out_dir), config, grid, classes, copy.deepcopy(net), {}, "")
        metrics = evaluate(Classifier(unsaved, device="cpu"), [lcs[i] for i in test], split="all")
        for key in ("evaluated_on", "model_version", "model_content_hash"):
            metrics.pop(key)
        metrics["evaluated_on"] = "held-out test ids"
    training["total_seconds"] = round(time.perf_counter() - t0, 2)
    model = save_model(
        out_dir,
        net,
        config,
        grid,
        classes,
        preprocessing=preprocessing,
        training=training,
        metrics=metrics,
    )
    return model, metrics
