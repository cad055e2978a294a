"""The models issue 7 compares on the harness's split: gradient boosting on the periodic features,
the random forest on the paper's 18 features, and the shallow dmdt CNN (as ``dmdt-train fit``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from dmdt.grids import get_grid
from dmdt.lightcurves import LightCurve
from trainer import data
from trainer.beyond import Budget, FitPredict
from trainer.forest import make_forest


def make_gbm(n_classes: int, trees: int, balanced: bool, seed: int = 0) -> Any:
    """A seeded LightGBM classifier on one thread (lightgbm is imported here: optional)."""
    import lightgbm as lgb

    return lgb.LGBMClassifier(
        n_estimators=trees,
        learning_rate=0.05,
        num_leaves=31,
        min_child_samples=10,
        subsample=0.8,
        subsample_freq=1,
        colsample_bytree=0.5,
        reg_lambda=1.0,
        class_weight="balanced" if balanced else None,
        objective="multiclass" if n_classes > 2 else "binary",
        random_state=seed,
        deterministic=True,
        force_row_wise=True,
        n_jobs=1,
        verbose=-1,
    )


GBM_SETTINGS = {
    "learning_rate": 0.05,
    "num_leaves": 31,
    "min_child_samples": 10,
    "subsample": 0.8,
    "colsample_bytree": 0.5,
    "reg_lambda": 1.0,
    "early_stopping": "none (fixed number of trees)",
}


def gbm(x: np.ndarray, n_classes: int, budget: Budget, balanced: bool) -> FitPredict:
    """Gradient boosting on feature matrix ``x`` (NaN allowed: LightGBM routes missing values)."""

    def fit_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
        model = make_gbm(n_classes, budget.gbm_trees, balanced).fit(x[train], y)
        return _full_probs(model.predict_proba(x[test]), model.classes_, n_classes)

    return fit_predict


def gbm_small(
    x: np.ndarray,
    n_classes: int,
    budget: Budget,
    balanced: bool = True,
    weight: np.ndarray | None = None,
) -> FitPredict:
    """The shipped hybrid's boosting (trainer.hybrid_fit: 400 rounds of 7-leaf trees, balanced
    class weights unless told, 30% of columns per tree) on ``x``; ``weight``: one per row of
    ``x``, on top of the class weights."""
    from trainer.hybrid_fit import HybridOptions, train_boosters

    opts = HybridOptions(trees=min(budget.gbm_trees, HybridOptions.trees), balanced=balanced)

    def fit_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
        present = np.unique(y)
        index = np.searchsorted(present, y)  # LightGBM wants labels 0..k-1
        w = None if weight is None else weight[train]
        (booster,) = train_boosters(x[train], index, present.size, opts, w)
        probs = booster.predict(x[test]).reshape(test.size, present.size)
        return _full_probs(probs, present, n_classes)

    return fit_predict


def per_view(x: np.ndarray, n_views: int, model: Callable[[np.ndarray], FitPredict]) -> FitPredict:
    """``model`` of each block of ``x.shape[1] // n_views`` columns (one view's), probabilities
    averaged."""
    width = x.shape[1] // n_views
    return blend(
        [(model(x[:, k * width : (k + 1) * width]), 1.0 / n_views) for k in range(n_views)]
    )


def gbm_views(x: np.ndarray, n_classes: int, n_views: int, budget: Budget) -> FitPredict:
    """The harness's ``gbm_views`` rows (models/hybrid-views-7): :func:`gbm_small` per view."""
    return per_view(x, n_views, lambda block: gbm_small(block, n_classes, budget))


def small_settings(budget: Budget, balanced: bool = True) -> dict[str, object]:
    """The settings of :func:`gbm_small` for the JSON record."""
    from dataclasses import asdict

    from trainer.hybrid_fit import HybridOptions

    opts = asdict(
        HybridOptions(trees=min(budget.gbm_trees, HybridOptions.trees), balanced=balanced)
    )
    return {k: opts[k] for k in ("trees", "learning_rate", "num_leaves", "min_child_samples",
                                 "colsample_bytree", "reg_lambda", "balanced")}  # fmt: skip


def _full_probs(probs: np.ndarray, seen: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over all ``n_classes`` (a class absent from a training part gets 0)."""
    out = np.zeros((probs.shape[0], n_classes))
    out[:, np.asarray(seen, dtype=np.int64)] = probs
    return out


def forest(x: np.ndarray, n_classes: int, budget: Budget, weighted: bool) -> FitPredict:
    """The paper-baseline random forest (trainer.forest) on feature matrix ``x``."""
    x = np.nan_to_num(x)

    def fit_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
        model = make_forest(weighted, 0, budget.rf_trees).fit(x[train], y)
        return _full_probs(model.predict_proba(x[test]), model.classes_, n_classes)

    return fit_predict


def cnn_images(lcs: Sequence[LightCurve]) -> np.ndarray:
    """The paper's uint8 dmdt images on the default grid, flattened to ``(n, 24 * 22)`` so that
    they cache like a feature matrix."""
    grid = get_grid("mahabal2017")
    return data.images(lcs, grid).reshape(len(lcs), -1)


def shallow_cnn(flat_images: np.ndarray, n_classes: int, budget: Budget) -> FitPredict:
    """The shallow CNN trained as ``dmdt-train fit`` trains it (10% of the training part for early
    stopping, split seed 1; Adam 2e-4, batch 32, one thread; trainer.experiments.common)."""
    from trainer.experiments.common import predict_logits, to_batch, train_cnn

    images = flat_images.reshape(-1, *get_grid("mahabal2017").shape)

    def fit_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
        labels = np.zeros(images.shape[0], dtype=np.int64)
        labels[train] = y
        net, _ = train_cnn(
            images,
            labels,
            train,
            n_classes=n_classes,
            arch="shallow",
            epochs=budget.cnn_epochs,
            patience=budget.cnn_patience,
            seed=0,
        )
        logits = predict_logits(net, to_batch(images[test]))
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return fit_predict


def mlp(x: np.ndarray, n_classes: int, budget: Budget, seeds: int = 3) -> FitPredict:
    """A torch MLP on quantile-normalised features (two hidden layers of 256 and 128, GELU,
    dropout 0.3, balanced cross-entropy with 0.05 label smoothing, AdamW one-cycle, 60 epochs
    of batch 128, one thread), probabilities averaged over ``seeds`` seeds."""
    import torch
    from sklearn.preprocessing import QuantileTransformer

    from trainer.fit import torch_threads

    epochs = 60 if budget.name == "full" else 2

    def fit_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
        qt = QuantileTransformer(n_quantiles=200, output_distribution="normal", random_state=0)
        clean = np.where(np.isfinite(x), x, np.nan)
        a = torch.tensor(np.nan_to_num(qt.fit_transform(clean[train])), dtype=torch.float32)
        b = torch.tensor(np.nan_to_num(qt.transform(clean[test])), dtype=torch.float32)
        ya = torch.tensor(y)
        weight = _balanced_weights(y, n_classes)
        probs = []
        with torch_threads(1):
            for seed in range(seeds):
                torch.manual_seed(seed)
                net = torch.nn.Sequential(
                    torch.nn.Linear(a.shape[1], 256), torch.nn.GELU(), torch.nn.Dropout(0.3),
                    torch.nn.Linear(256, 128), torch.nn.GELU(), torch.nn.Dropout(0.3),
                    torch.nn.Linear(128, n_classes),
                )  # fmt: skip
                opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-3)
                steps = epochs * ((len(ya) + 127) // 128)
                sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps)
                for _ in range(epochs):
                    net.train()
                    perm = torch.randperm(len(ya))
                    for i in range(0, len(ya), 128):
                        idx = perm[i : i + 128]
                        loss = torch.nn.functional.cross_entropy(
                            net(a[idx]), ya[idx], weight=weight, label_smoothing=0.05
                        )
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                        sched.step()
                net.eval()
                with torch.no_grad():
                    probs.append(torch.softmax(net(b), dim=1).numpy().astype(np.float64))
        return np.mean(probs, axis=0)

    return fit_predict


def _balanced_weights(labels: np.ndarray, n_classes: int) -> Any:
    """Balanced cross-entropy class weights, n / (n_classes * count), as a float32 tensor; 0 for
    a class absent from ``labels``."""
    import torch

    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    return torch.tensor(
        np.where(counts > 0, labels.size / (n_classes * np.maximum(counts, 1)), 0.0),
        dtype=torch.float32,
    )


def blend(parts: list[tuple[FitPredict, float]]) -> FitPredict:
    """Weighted average of the probabilities of several models."""

    def fit_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
        return np.sum([w * fp(train, y, test) for fp, w in parts], axis=0)

    return fit_predict


def label_cleaned(fp: FitPredict, n_classes: int, inner_folds: int = 4) -> FitPredict:
    """``fp`` trained without the training labels that confident learning flags
    (trainer.label_audit.find_issues) on out-of-fold probabilities of ``fp`` itself, computed
    inside the training part only (``inner_folds`` stratified folds): the scored part's labels
    never decide what is dropped."""
    from sklearn.model_selection import StratifiedKFold

    from trainer.label_audit import find_issues

    def fit_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
        oof = np.zeros((train.size, n_classes))
        split = StratifiedKFold(inner_folds, shuffle=True, random_state=0).split(train, y)
        for fit, score in split:
            oof[score] = fp(train[fit], y[fit], train[score])
        flagged = np.zeros(train.size, dtype=bool)
        flagged[find_issues(y, oof)] = True
        return fp(train[~flagged], y[~flagged], test)

    return fit_predict


def gbm_augmented(x: np.ndarray, n_features: int, n_classes: int, budget: Budget) -> FitPredict:
    """:func:`gbm_small` trained on each training curve's features and those of its augmented
    copies (``x`` = the curve's ``n_features`` columns, then each copy's, side by side); scored
    on the test curves' own features."""
    copies = x.shape[1] // n_features - 1
    rows = x.reshape(x.shape[0], copies + 1, n_features)

    def fit_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
        stacked = np.concatenate([rows[:, 0], *(rows[train, k] for k in range(1, copies + 1))])
        n = rows.shape[0]
        index = np.concatenate([train, n + np.arange(copies * train.size)])
        fp = gbm_small(stacked, n_classes, budget)
        return fp(index, np.tile(y, copies + 1), test)

    return fit_predict


def gbm_history(
    x: np.ndarray, n_features: int, n_classes: int, budget: Budget, weight: float
) -> FitPredict:
    """:func:`gbm_small` trained on each training curve's features and those of its first k
    points for each history cut (``x`` = the curve's ``n_features`` columns, then each cut's,
    side by side; NaN where the curve is no longer than the cut, and then left out), the cuts'
    rows weighing ``weight``; scored on the test curves' own features
    (models/hybrid-7-stream's design, ``fit-hybrid --history-cuts``)."""
    cuts = x.shape[1] // n_features - 1
    rows = x.reshape(x.shape[0], cuts + 1, n_features)

    def fit_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
        n = rows.shape[0]
        blocks, index, labels = [rows[:, 0]], [train], [y]
        for k in range(1, cuts + 1):
            kept = ~np.all(np.isnan(rows[train, k]), axis=1)
            blocks.append(rows[train[kept], k])
            index.append(n + np.arange(int(kept.sum())))
            labels.append(y[kept])
            n += int(kept.sum())
        stacked = np.concatenate(blocks)
        weights = np.full(stacked.shape[0], weight)
        weights[: rows.shape[0]] = 1.0
        fp = gbm_small(stacked, n_classes, budget, weight=weights)
        return fp(np.concatenate(index), np.concatenate(labels), test)

    return fit_predict


def two_branch(
    x: np.ndarray,
    n_features: int,
    n_classes: int,
    budget: Budget,
    seeds: int = 1,
    fold_cols: Sequence[int] = (),
    image: bool = True,
) -> FitPredict:
    """A jointly trained two-branch net on ``x`` = [periodic features | dmdt pixels / 255]: the
    paper's shallow CNN (conv 16@5x5, maxpool 2, conv 64@5x5; :class:`dmdt.nets.ShallowNet`'s
    layers) on the 24x22 image -> 64, an MLP (128 -> 64, GELU, dropout 0.3) on quantile-normalised
    features (NaN -> 0 beside a missing indicator per column with a NaN), the two embeddings
    concatenated -> dense 64 -> classes. Balanced cross-entropy (0.05 label smoothing), AdamW 1e-3,
    batch 64, at most 60 epochs, early stopping (patience 8, best weights kept) on the validation
    loss of 10% of the training part (stratified, seed 1); one thread; probabilities averaged over
    ``seeds`` seeds. ``fold_cols`` (the feature columns of the folded curve, ``fold_00..19``) adds
    a third branch: a circular 1-D CNN (conv 16@5, conv 32@5, ReLU, mean and max over phase ->
    dense 32) on those bins as they are (NaN -> 0), its embedding joining the other two.
    ``image=False`` drops the CNN branch (the control: the same net and training on features)."""
    import torch
    from sklearn.preprocessing import QuantileTransformer
    from torch import nn

    from trainer.fit import torch_threads

    shape = get_grid("mahabal2017").shape
    full = budget.name == "full"
    max_epochs, patience = (60, 8) if full else (2, 1)

    class Net(nn.Module):
        def __init__(self, n_in: int) -> None:
            super().__init__()
            self.fold = None
            if len(fold_cols):
                self.fold = nn.Sequential(
                    nn.Conv1d(1, 16, 5, padding=2, padding_mode="circular"), nn.ReLU(),
                    nn.Conv1d(16, 32, 5, padding=2, padding_mode="circular"), nn.ReLU(),
                )  # fmt: skip
                self.fold_out = nn.Sequential(nn.Linear(64, 32), nn.ReLU())
            self.cnn = None if not image else nn.Sequential(
                nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 64, 5), nn.ReLU(), nn.Flatten(),
                nn.Dropout(0.3), nn.LazyLinear(64), nn.ReLU(),
            )  # fmt: skip
            self.mlp_in = n_in
            self.mlp = nn.Sequential(
                nn.Linear(n_in, 128), nn.GELU(), nn.Dropout(0.3),
                nn.Linear(128, 64), nn.GELU(),
            )  # fmt: skip
            width = 64 * (1 + image) + (32 if self.fold is not None else 0)
            self.head = nn.Sequential(
                nn.Dropout(0.3), nn.Linear(width, 64), nn.GELU(), nn.Linear(64, n_classes)
            )

        def forward(self, img: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
            parts = [] if self.cnn is None else [self.cnn(img)]
            parts.append(self.mlp(feat[:, : self.mlp_in]))
            if self.fold is not None:
                h = self.fold(feat[:, -len(fold_cols) :].unsqueeze(1))  # the raw bins, last
                parts.append(self.fold_out(torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)))
            return self.head(torch.cat(parts, dim=1))

    def prepare(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        clean = np.where(np.isfinite(x[:, :n_features]), x[:, :n_features], np.nan)
        qt = QuantileTransformer(
            n_quantiles=min(200, train.size), output_distribution="normal", random_state=0
        )
        qt.fit(clean[train])
        missing = np.isnan(clean[train]).any(axis=0)
        out = []
        for idx in (train, test):
            z = np.nan_to_num(qt.transform(clean[idx]))
            bins = np.nan_to_num(clean[idx][:, list(fold_cols)])  # raw, for the third branch
            out.append(np.concatenate([z, np.isnan(clean[idx][:, missing]), bins], axis=1))
        return out[0], out[1]

    def fit_predict(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
        fa, fb = (torch.tensor(v, dtype=torch.float32) for v in prepare(train, test))
        ia, ib = (
            torch.tensor(x[idx, n_features:].reshape(-1, 1, *shape), dtype=torch.float32)
            for idx in (train, test)
        )
        fit_part, val_part = data.stratified_split(y, 0.1, 1)
        tr, va = torch.tensor(fit_part), torch.tensor(val_part)
        ya = torch.tensor(y)
        weight = _balanced_weights(y[fit_part], n_classes)
        probs = []
        with torch_threads(1):
            for seed in range(seeds):
                torch.manual_seed(seed)
                net = Net(fa.shape[1] - len(fold_cols))
                net(ia[:2], fa[:2])  # materialise the lazy layer
                opt = torch.optim.AdamW(net.parameters(), 1e-3, weight_decay=1e-3)
                best, best_state, waited = np.inf, None, 0
                t0, epoch = time.perf_counter(), 0
                for epoch in range(max_epochs):  # noqa: B007
                    net.train()
                    perm = tr[torch.randperm(tr.numel())]
                    for i in range(0, perm.numel(), 64):
                        idx = perm[i : i + 64]
                        loss = nn.functional.cross_entropy(
                            net(ia[idx], fa[idx]), ya[idx], weight=weight, label_smoothing=0.05
                        )
                        opt.zero_grad()
                        loss.backward()
                        opt.step()
                    net.eval()
                    with torch.no_grad():
                        val = nn.functional.cross_entropy(
                            net(ia[va], fa[va]), ya[va], weight=weight
                        ).item()
                    if val < best:
                        best, waited = val, 0
                        best_state = {k: v.clone() for k, v in net.state_dict().items()}
                    else:
                        waited += 1
                        if waited > patience:
                            break
                if best_state is not None:
                    net.load_state_dict(best_state)
                print(f"  branch net seed {seed}: {epoch + 1} epochs, best val loss {best:.3f},"
                      f" {time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
                net.eval()
                with torch.no_grad():
                    probs.append(torch.softmax(net(ib, fb), dim=1).numpy().astype(np.float64))
        return np.mean(probs, axis=0)

    return fit_predict
