"""Image experiments: composite (mean) and median dmdt images per class (Figs. 3, 5) and the
robust-PCA backgrounds with their retraining (Table IV, Fig. 4)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from dmdt.grids import get_grid
from research.paper import rpca
from research.paper.common import Context, Store, cnn_metrics


def _grid_figure(panels: list[tuple[str, np.ndarray]], rows: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = -(-len(panels) // rows)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, img) in zip(axes.ravel(), panels, strict=False):
        ax.imshow(
            np.asarray(img).T, origin="lower", cmap="viridis", aspect="auto"
        )  # dm up, dt right
        ax.set_title(name, fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def composites(ctx: Context, store: Store) -> dict[str, Any]:
    """Mean and median image of each class (all curves), drawn as one 2 x 7 PNG."""
    images = ctx.images()

    def run(key: str) -> dict[str, Any]:
        panels, stats = [], {}
        for kind, fn in (("mean", np.mean), ("median", np.median)):
            for i, name in enumerate(ctx.classes):
                img = fn(images[ctx.labels == i].astype(np.float64), axis=0)
                panels.append((f"{name} {kind}", img))
                stats[f"{name}/{kind}"] = {
                    "n": int(np.sum(ctx.labels == i)),
                    "max": round(float(img.max()), 2),
                    "nonzero_bins": int(np.count_nonzero(img)),
                }
        png = store.folder / "composites.png"
        _grid_figure(
            panels,
            2,
            png,
            "composite (mean, top) and median (bottom) dmdt images; x: dt bin, y: dm bin",
        )
        return {"png": png.name, "per_class": stats}

    return store.run("composites", ["images"], run, {"budget": ctx.budget.to_dict()})


def _backgrounds(
    ctx: Context, train: np.ndarray, images: np.ndarray
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-class, max and pseudo-cadence backgrounds from the training images only."""
    rng = np.random.default_rng(0)
    out, info, lows = {}, {}, []
    for i, name in enumerate(ctx.classes):
        stack = images[train[ctx.labels[train] == i]].astype(np.float64)
        back, res = rpca.class_background(stack)
        out[f"class/{name}"] = back
        lows.append(res.low_rank)
        info[name] = {
            "n": int(stack.shape[0]),
            "rank": res.rank,
            "iterations": res.iterations,
            "converged": res.converged,
        }
    out["max"] = rpca.max_background(np.concatenate(lows, axis=1)).reshape(images.shape[1:])
    out["per_class_mean"] = np.mean([out[f"class/{n}"] for n in ctx.classes], axis=0)
    picks = [
        rng.choice(train[ctx.labels[train] == i], size=ctx.budget.cadence_per_class, replace=True)
        for i in range(len(ctx.classes))
    ]
    back, res = rpca.class_background(images[np.concatenate(picks)])
    out["pseudo_cadence"] = back
    info["pseudo_cadence"] = {
        "n": int(sum(p.size for p in picks)),
        "rank": res.rank,
        "iterations": res.iterations,
        "converged": res.converged,
    }
    return out, info


def rpca_backgrounds(ctx: Context, store: Store) -> dict[str, Any]:
    """Retrain the shallow CNN on images minus each background (clipped at 0), and with the
    central dm rows zeroed; backgrounds come from the split-0 training images only."""
    b = ctx.budget
    grid = get_grid("mahabal2017")
    images = ctx.images(grid)
    train, test = ctx.split(0)
    state: dict[str, Any] = {}

    def backgrounds() -> dict[str, np.ndarray]:
        if "backs" not in state:
            state["backs"], state["info"] = _backgrounds(ctx, train, images)
            panels = [(k.removeprefix("class/"), v) for k, v in state["backs"].items()]
            _grid_figure(
                panels,
                2,
                store.folder / "rpca_backgrounds.png",
                "robust-PCA (PCP) max backgrounds: per class, max over classes, "
                "mean of classes, pseudo-cadence (500/class)",
            )
        return state["backs"]

    def run(key: str) -> dict[str, Any]:
        if key == "none":
            variant = images.astype(np.float32)
        elif key == "row_elimination":
            variant = rpca.eliminate_rows(images, grid.dm_edges)
        else:
            variant = rpca.subtract(images, backgrounds()[key])
        result = cnn_metrics(
            variant,
            ctx.labels,
            train,
            test,
            ctx.classes,
            epochs=b.variant_epochs,
            patience=b.variant_patience,
            seed=0,
        )
        if key in state.get("backs", {}):
            back = state["backs"][key]
            result["background_sum"] = round(float(back.sum()), 2)
            result["background_max"] = round(float(back.max()), 2)
            result["pcp"] = state["info"]
        return result

    keys = ["none", "per_class_mean", "max", "pseudo_cadence", "row_elimination"]
    meta = {
        "budget": b.to_dict(),
        "settings": {"epochs": b.variant_epochs, "patience": b.variant_patience},
    }
    return store.run("rpca", keys, run, meta)
