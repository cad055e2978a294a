"""dmdt-train: build dmdt images, fit and evaluate the CNNs, classify files, publish models.

DATA is a folder of ``<id>-<class>.csv`` light curves, a compact ``.npz``, or a bundled dataset
name (``crts``: 5,757 real CRTS light curves). A MODEL_DIR is an artifact written by ``fit``
(``default`` is the shipped model, models/default/).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dmdt.grids import DEFAULT_GRID, PRESETS

EPILOG = """examples:
  dmdt-train images crts --out crts.npz
  dmdt-train fit crts --out models/mine --arch shallow --classes paper --seed 0
  dmdt-train fit-hybrid crts --out models/hybrid-7 --cache build/beyond-cache
  dmdt-train audit-labels crts --out build/label-audit --cache build/beyond-cache
  dmdt-train evaluate models/hybrid-7 crts
  dmdt-train evaluate models/mine crts --json metrics.json --png cm.png
  dmdt-train predict default data/my_curves/ --out predictions.csv
  dmdt-train publish models/mine --registry /srv/dmdt-registry
"""


def _add_data_args(p: argparse.ArgumentParser, default_classes: str = "all") -> None:
    p.add_argument(
        "data", metavar="DATA", help="folder of <id>-<class>.csv files, a compact .npz, or 'crts'"
    )
    p.add_argument(
        "--classes",
        default=None,
        help="comma-separated classes to use, e.g. EW,EA,RRab; 'paper' for the "
        f"paper's seven (EW,EA,RRab,RRc,RRd,RS_CVn,LPV); default: {default_classes}",
    )
    p.add_argument(
        "--min-points",
        type=int,
        default=20,
        help="drop light curves with fewer points after cleaning (default: 20)",
    )


def _add_folder_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out the files of a folder that cannot be read, and list them with the reason "
        "(default: stop at the first one)",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no progress bars (there are none off a terminal)"
    )


def _progress(args: argparse.Namespace) -> bool:
    """Progress bars on stderr when it is a terminal and --quiet is not given."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()


def _report_skipped(skipped: Sequence[Any], limit: int = 20) -> None:
    """The files --skip-bad left out, one per line on stderr (the first `limit`)."""
    if not skipped:
        return
    print(f"skipped {len(skipped)} unreadable files:", file=sys.stderr)
    for item in list(skipped)[:limit]:
        print(f"  {item}", file=sys.stderr)
    if len(skipped) > limit:
        print(f"  ... and {len(skipped) - limit} more", file=sys.stderr)


def _add_grid_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--grid",
        default=DEFAULT_GRID,
        choices=sorted(PRESETS),
        help=f"dmdt grid preset (default: {DEFAULT_GRID})",
    )


def _add_cache_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cache", default=None, metavar="DIR",
        help="feature cache folder (e.g. build/beyond-cache); computed and saved when missing",
    )  # fmt: skip


def _add_cadence_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--cadences", default="", metavar="NAME,...",
        help="also train on each training curve's copy in these cadences simulated from it "
        "(trainer/cadence.py: nightly = one point per night, ztf, rubin; docs/cadence.md; "
        "default: none)",
    )  # fmt: skip
    p.add_argument(
        "--cadence-seed", type=int, default=1, help="seed of the cadence copies' draws (default: 1)"
    )


def _cadences(text: str) -> tuple[str, ...] | None:
    """Parse ``--cadences``; None (after saying why on stderr) unless distinct simulated
    cadences of trainer.cadence."""
    from trainer.cadence import SIMULATED

    names = tuple(c.strip() for c in text.split(",") if c.strip())
    if any(c not in SIMULATED for c in names) or len(set(names)) != len(names):
        print(f"--cadences {text!r}: want distinct names among {', '.join(SIMULATED)}",
              file=sys.stderr)  # fmt: skip
        return None
    return names


def _cuts(text: str, min_points: int) -> tuple[int, ...] | None:
    """Parse ``--history-cuts``; None (after saying why) unless integers >= ``min_points``."""
    try:
        cuts = tuple(sorted({int(k) for k in text.split(",") if k.strip()}))
    except ValueError:
        cuts = (0,)
    if any(k < min_points for k in cuts):
        print(f"--history-cuts {text!r}: want integers of at least --min-points ({min_points})",
              file=sys.stderr)  # fmt: skip
        return None
    return cuts


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="dmdt-train",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "images",
        help="compute dmdt images of a labelled dataset into an .npz",
        description="Compute the dmdt histograms and the paper's uint8 images of cleaned light "
        "curves. Writes ids (file names without .csv), dt_edges, dm_edges, counts "
        "(n, n_dt, n_dm), images, n_points, label and the grid.",
    )
    _add_data_args(p)
    p.add_argument("--out", required=True, metavar="FILE.npz", help="output file")
    _add_grid_arg(p)
    _add_folder_args(p)

    p = sub.add_parser(
        "fit",
        help="train a CNN and write a model directory",
        description="Hold out a stratified test split (recorded by source id), "
        "train on the rest with a validation split for early "
        "stopping, score the held-out curves, write the artifact.",
    )
    _add_data_args(p)
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="model directory to write")
    p.add_argument(
        "--arch", default="shallow", choices=("shallow", "deep"), help="network (default: shallow)"
    )
    p.add_argument("--epochs", type=int, default=500, help="maximum epochs (default: 500)")
    p.add_argument("--batch-size", type=int, default=32, help="mini-batch size (default: 32)")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (default: 2e-4)")
    p.add_argument(
        "--l2",
        type=float,
        default=0.0,
        help="L2 penalty l2 * sum(W**2) added to the loss (default: 0; the authors' code "
        "used 0.0025, which underfits the bundled CRTS data)",
    )
    p.add_argument(
        "--dropout",
        default=None,
        help="comma-separated dropout rates for the arch (deep: 2, shallow: none)",
    )
    p.add_argument(
        "--val-frac",
        type=float,
        default=0.1,
        help="fraction of the training part for early stopping (default: 0.1)",
    )
    p.add_argument(
        "--test-frac",
        type=float,
        default=0.2,
        help="stratified fraction held out for testing (default: 0.2)",
    )
    p.add_argument(
        "--patience",
        type=int,
        default=30,
        help="stop after this many epochs without a better validation loss; "
        "0 never stops early (default: 30)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for splits, init and batches")
    p.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="where to train (default: auto, CUDA when present, else CPU; give cpu for "
        "bit-for-bit repeatable runs)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (default: 1; the nets are small and extra threads mostly "
        "contend, notably on a shared machine)",
    )
    _add_cadence_args(p)
    p.add_argument(
        "--quiet", action="store_true", help="no progress bars (there are none off a terminal)"
    )
    _add_grid_arg(p)

    p = sub.add_parser(
        "fit-hybrid",
        help="train the hybrid classifier (periodic features + dmdt) and write a model directory",
        description="Train LightGBM on the periodic features (dmdt/periodic.py) and the dmdt "
        "image on every curve outside the fixed held-out part (trainer/split.py: 20% per class, "
        "stratified, seed 0), print the held-out metrics, write a hybrid model directory "
        "(dmdt/hybrid.py). Classes: the paper's seven unless --classes says otherwise ('all': "
        "every class).",
    )
    _add_data_args(p, default_classes="paper ('all': every class)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="model directory to write")
    p.add_argument("--name", default="hybrid-7", help="model name (default: hybrid-7)")
    p.add_argument(
        "--image", default="none", choices=("none", "flat"),
        help="dmdt image input: none (default; measured as good) or flat (normalised pixels "
        "beside the features)",
    )  # fmt: skip
    p.add_argument("--seeds", default="0", help="comma-separated booster seeds (default: 0)")
    p.add_argument(
        "--views", default="curve",
        help="comma-separated views of each curve to train boosters on, averaged: curve, "
        "intravisit (points that stray from their visit dropped), visit_medians (default: curve; "
        "docs/beyond.md: all three are ~0.01 more accurate for 3x the feature cost)",
    )  # fmt: skip
    p.add_argument("--trees", type=int, default=400, help="boosting rounds (default: 400)")
    p.add_argument(
        "--other", action="store_true",
        help="train one more class, 'other', on the curves of every class outside --classes "
        "(docs/calibration.md: an explicit answer for variable types the model does not name)",
    )  # fmt: skip
    p.add_argument(
        "--no-calibrate", dest="calibrate", action="store_false",
        help="skip the temperature scaling fitted on out-of-fold probabilities (by default five "
        "more boosters are trained, one per fold, to fit it; docs/calibration.md)",
    )  # fmt: skip
    p.add_argument(
        "--history-cuts", default="", metavar="K,K,...",
        help="also train on each training curve's first K points for each K (shorter than the "
        "curve), as the stream sees a young source (docs/history.md: 20,30,50,75,100,150,200,300 "
        "lifts accuracy after 20 points from 0.28 to ~0.49 and leaves whole curves as they were; "
        "default: none)",
    )  # fmt: skip
    p.add_argument(
        "--history-weight", type=float, default=0.3,
        help="weight of each history-cut row against a whole curve's 1 (default: 0.3)",
    )  # fmt: skip
    _add_cadence_args(p)
    _add_cache_arg(p)

    p = sub.add_parser(
        "fit-net",
        help="train the network over the dmdt image and the periodic features",
        description="Train the branch net (dmdt/branchnet.py: the paper's shallow dmdt CNN "
        "beside an MLP on the periodic features, trained jointly; several seeds averaged) on "
        "every curve outside the fixed held-out part (20%% per class, stratified, seed 0), with "
        "its copies in other cadences and its first points if asked, print the held-out "
        "metrics, write the model directory. CPU, one torch thread, deterministic. Classes: "
        "the paper's seven unless --classes says otherwise.",
    )
    _add_data_args(p, default_classes="paper ('all': every class)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="model directory to write")
    p.add_argument("--name", default="branchnet-7", help="model name (default: branchnet-7)")
    p.add_argument(
        "--members",
        default="0,1,2",
        help="comma-separated seeds, one member each, averaged (default: 0,1,2)",
    )
    p.add_argument("--epochs", type=int, default=60, help="maximum epochs (default: 60)")
    p.add_argument(
        "--patience",
        type=int,
        default=8,
        help="epochs without a lower validation loss before stopping (default: 8)",
    )
    p.add_argument(
        "--history-cuts", default="", metavar="K,K,...",
        help="also train on each training curve's first K points for each K shorter than it "
        "(as fit-hybrid; default: none)",
    )  # fmt: skip
    p.add_argument(
        "--history-weight",
        type=float,
        default=0.3,
        help="weight of each history-cut row (default: 0.3)",
    )
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_cadence_args(p)
    _add_cache_arg(p)

    p = sub.add_parser(
        "audit-labels",
        help="find labelled curves whose light curves contradict their label",
        description="Score every labelled curve with the hybrid boosting trained on the other "
        "folds (5 stratified folds: no curve is judged by a model that saw its label), flag the "
        "labels that confident learning (cleanlab) finds the curves contradict, and write "
        "OUT/label_issues.csv (most suspect first), OUT/summary.json (counts per class pair, "
        "estimated label-noise rate) and OUT/gallery.png (the first flagged curves, folded). A "
        "flag is a candidate for a person to look at, not a verdict. Classes: the paper's seven "
        "unless --classes says otherwise ('all': every class in DATA).",
    )
    _add_data_args(p, default_classes="paper ('all': every class)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the report to")
    p.add_argument(
        "--views", default="curve",
        help="comma-separated views to score with, as for fit-hybrid (default: curve)",
    )  # fmt: skip
    p.add_argument("--top", type=int, default=48, help="curves in the gallery (default: 48)")
    _add_cache_arg(p)

    p = sub.add_parser(
        "evaluate",
        help="score a model on labelled light curves",
        description="Score a model of any kind (CNN, hybrid, branch net): accuracy, balanced "
        "accuracy, macro F1, per-class recall and the confusion matrix, printed and written "
        "with --json. Curves of classes the model "
        "does not know are skipped and counted. --split auto uses the "
        "model's held-out test ids when DATA is the data it was "
        "trained on (same data hash over the model's classes), "
        "otherwise every curve.",
    )
    p.add_argument("model", metavar="MODEL_DIR", help="model directory or 'default'")
    p.add_argument("data", metavar="DATA", help="labelled light curves (as for fit)")
    p.add_argument(
        "--json", default=None, metavar="OUT.json",
        help="write the metrics here (default: print the summary only)",
    )  # fmt: skip
    p.add_argument("--png", default=None, metavar="CM.png", help="confusion matrix figure")
    p.add_argument(
        "--split",
        default="auto",
        choices=("auto", "test", "all"),
        help="which curves to score (default: auto)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    _add_folder_args(p)

    p = sub.add_parser(
        "predict",
        help="classify light curves from files",
        description="Classify a CRTS <id>[-<class>].csv file, a Catalina CSV, an "
        ".npz, or a folder of them. Prints CSV to stdout unless "
        "--out is given (.json or .csv); curves too short after cleaning and files --skip-bad "
        "left out get a row with the reason in 'skipped'.",
    )
    p.add_argument("model", metavar="MODEL_DIR", help="model directory or 'default'")
    p.add_argument("input", metavar="INPUT", help="light-curve file or folder")
    p.add_argument("--out", default=None, metavar="FILE", help="write .csv or .json here")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    _add_folder_args(p)

    p = sub.add_parser(
        "publish",
        help="copy a model into a registry and make it CURRENT",
        description="Verify MODEL_DIR, copy it to REGISTRY/<version>/ "
        "(atomically) and flip REGISTRY/CURRENT to it. The broker "
        "picks it up between batches.",
    )
    p.add_argument("model", metavar="MODEL_DIR", help="model directory")
    p.add_argument(
        "--registry",
        default=os.environ.get("DMDT_REGISTRY"),
        help="registry folder (default: $DMDT_REGISTRY)",
    )
    return parser


def _floats(text: str | None) -> tuple[float, ...] | None:
    return None if text is None else tuple(float(x) for x in text.split(",") if x.strip())


def cmd_images(args: argparse.Namespace) -> int:
    """``images``: dmdt images of a labelled dataset into an .npz."""
    from dmdt.grids import get_grid
    from trainer import data

    bad: list[Any] | None = [] if args.skip_bad else None
    progress = _progress(args)
    lcs = data.load(
        args.data, data.parse_classes(args.classes), args.min_points, bad_files=bad,
        progress=progress,
    )  # fmt: skip
    path = data.save_images(lcs, get_grid(args.grid), args.out, source=args.data, progress=progress)
    _report_skipped(bad or [])
    print(f"wrote {len(lcs)} images on grid {args.grid} to {path}")
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    """``fit``: train and write a model directory."""
    from trainer.data import parse_classes
    from trainer.fit import FitOptions, fit

    cadences = _cadences(args.cadences)
    if cadences is None:
        return 2
    opts = FitOptions(
        arch=args.arch, classes=parse_classes(args.classes), epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, l2=args.l2, val_frac=args.val_frac,
        test_frac=args.test_frac, patience=args.patience, seed=args.seed, device=args.device,
        grid=args.grid, min_points=args.min_points, dropout=_floats(args.dropout),
        threads=args.threads, cadences=cadences, cadence_seed=args.cadence_seed,
    )  # fmt: skip
    t0 = time.perf_counter()
    model, metrics = fit(args.data, args.out, opts, progress=_progress(args))
    wall = time.perf_counter() - t0
    training = model.config["training"]
    print(
        f"wrote {model.path} (version {model.version}) in {wall:.1f} s; "
        f"{training['epochs_run']} epochs, best {training['best_epoch']}"
    )
    if metrics:
        print(f"held-out test: {_summary(metrics)}")
    return 0


def cmd_fit_hybrid(args: argparse.Namespace) -> int:
    """``fit-hybrid``: train the hybrid classifier and write its model directory."""
    from trainer.data import parse_classes
    from trainer.hybrid_fit import HybridOptions, fit_hybrid

    classes = parse_classes(args.classes or "paper")
    seeds = tuple(int(s) for s in args.seeds.split(",") if s.strip())
    views = _views(args.views)
    if views is None:
        return 2
    if len(views) > 1 and args.image != "none":
        print("--image flat takes one view only", file=sys.stderr)
        return 2
    cuts = _cuts(args.history_cuts, args.min_points)
    cadences = _cadences(args.cadences)
    if cuts is None or cadences is None:
        return 2
    if not args.history_weight > 0:
        print("--history-weight must be positive", file=sys.stderr)
        return 2
    if cadences and views != ("curve",):
        print("--cadences trains the curve view only", file=sys.stderr)
        return 2
    opts = HybridOptions(classes=classes, image_mode=args.image, seeds=seeds, trees=args.trees,
                         views=views, other=args.other, min_points=args.min_points,
                         calibrate=args.calibrate, history_cuts=cuts,
                         history_weight=args.history_weight, cadences=cadences,
                         cadence_seed=args.cadence_seed)  # fmt: skip
    t0 = time.perf_counter()
    cache = Path(args.cache) if args.cache else None
    model, metrics = fit_hybrid(args.data, args.out, opts, name=args.name, cache=cache)
    print(f"wrote {args.out} (version {model.version}) in {time.perf_counter() - t0:.1f} s")
    if metrics:
        rrd = metrics["per_class_recall"].get("RRd")
        extra = "" if rrd is None else f" RRd_recall={rrd:.4f}"
        print(f"held-out: {_summary(metrics)}{extra}")
        opened = metrics.get("open_set")
        if opened:
            print(f"open set: known accuracy {opened['known_accuracy']:.4f}, known called other "
                  f"{opened['known_called_other']:.4f}, other types called other "
                  f"{opened['other_flagged']:.4f} of {opened['n_other']}")  # fmt: skip
        cal = metrics.get("calibration")
        if cal:
            print(f"temperature {cal['temperature']} (out of fold): held-out ECE "
                  f"{cal['held_out_ece_before']} -> {cal['held_out_ece_after']}")  # fmt: skip
    return 0


def _views(text: str) -> tuple[str, ...] | None:
    """Parse ``--views``; None (after saying why on stderr) unless distinct names of dmdt.views."""
    from dmdt.views import VIEWS

    views = tuple(v.strip() for v in text.split(",") if v.strip())
    if not views or any(v not in VIEWS for v in views) or len(set(views)) != len(views):
        print(f"--views {text!r}: want distinct names among {', '.join(VIEWS)}", file=sys.stderr)
        return None
    return views


def cmd_fit_net(args: argparse.Namespace) -> int:
    """``fit-net``: train the branch net and write its model directory."""
    from trainer.branchnet_fit import NetOptions, fit_branch_net
    from trainer.data import parse_classes
    from trainer.training_rows import Augmentation

    classes = parse_classes(args.classes or "paper")
    cuts = _cuts(args.history_cuts, args.min_points)
    cadences = _cadences(args.cadences)
    if cuts is None or cadences is None or classes is None:
        return 2
    members = tuple(int(s) for s in args.members.split(",") if s.strip())
    if not members or not args.history_weight > 0:
        print("--members needs a seed; --history-weight must be positive", file=sys.stderr)
        return 2
    aug = Augmentation(cadences=cadences, seed=args.cadence_seed, history_cuts=cuts,
                       history_weight=args.history_weight, min_points=args.min_points)  # fmt: skip
    opts = NetOptions(classes=classes, members=members, max_epochs=args.epochs,
                      patience=args.patience, min_points=args.min_points, threads=args.threads,
                      augmentation=aug)  # fmt: skip
    t0 = time.perf_counter()
    cache = Path(args.cache) if args.cache else None
    model, metrics = fit_branch_net(args.data, args.out, opts, args.name, cache,
                                    progress=not args.quiet)  # fmt: skip
    print(f"wrote {args.out} (version {model.version}) in {time.perf_counter() - t0:.1f} s; "
          f"temperature {model.temperature}")  # fmt: skip
    if metrics:
        rrd = metrics["per_class_recall"].get("RRd")
        extra = "" if rrd is None else f" RRd_recall={rrd:.4f}"
        print(f"held-out: {_summary(metrics)}{extra}")
    return 0


def cmd_audit_labels(args: argparse.Namespace) -> int:
    """``audit-labels``: out-of-fold probabilities, confident learning, the report folder."""
    from trainer.data import parse_classes
    from trainer.label_audit import audit, write_report

    try:
        import cleanlab  # noqa: F401
    except ImportError:
        print("audit-labels needs cleanlab: pip install 'dmdt-broker[audit]'", file=sys.stderr)
        return 2
    views = _views(args.views)
    if views is None:
        return 2
    classes = parse_classes(args.classes or "paper")
    cache = Path(args.cache) if args.cache else None
    result, lcs = audit(args.data, classes, views, cache, args.min_points)
    doc = write_report(result, lcs, Path(args.out), args.data, views, args.top)
    print(f"{doc['n_flagged']} of {doc['n']} labels flagged ({doc['flagged_fraction']:.1%}; "
          f"out-of-fold accuracy {doc['out_of_fold_accuracy']:.4f}, estimated label-noise rate "
          f"{doc['estimated_noise_rate']:.4f}); wrote {args.out}/label_issues.csv, summary.json, "
          "gallery.png")  # fmt: skip
    for pair, count in list(doc["flagged_by_pair"].items())[:8]:
        print(f"  {pair}: {count}")
    return 0


def _summary(metrics: dict[str, Any]) -> str:
    return (
        f"n={metrics['n']} accuracy={metrics['accuracy']:.4f} "
        f"balanced_accuracy={metrics['balanced_accuracy']:.4f} macro_f1={metrics['macro_f1']:.4f}"
    )


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``evaluate``: metrics summary, JSON and confusion-matrix PNG."""
    from dmdt.model import load_model
    from trainer import data
    from trainer.evaluate import evaluate, plot_confusion, write_json

    clf = load_model(args.model, args.device)
    bad: list[Any] | None = [] if args.skip_bad else None
    progress = _progress(args)
    lcs = data.load(args.data, None, clf.min_points, bad_files=bad, progress=progress)
    result = evaluate(clf, lcs, split=args.split, progress=progress)
    _report_skipped(bad or [])
    if args.json:
        write_json(result, args.json)
    if args.png:
        name = clf.path.name if clf.path is not None else clf.name
        plot_confusion(
            result, args.png, title=f"{name}: accuracy {result['accuracy']:.3f}, n = {result['n']}"
        )
    print(
        f"{result['evaluated_on']}: {_summary(result)} "
        f"(skipped {result['n_skipped_unknown_class']} of unknown classes)"
        + (f" -> {args.json}" if args.json else "")
    )
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """``predict``: per-source class and probabilities."""
    from dmdt.model import load_model
    from trainer import predict

    clf = load_model(args.model, args.device)
    skipped: list[predict.SkippedFile] | None = [] if args.skip_bad else None
    progress = _progress(args)
    lcs = predict.read_input(args.input, skipped=skipped, progress=progress)
    if not lcs:
        raise ValueError(f"{args.input}: no light curve could be read")
    records = predict.predict(clf, lcs, progress=progress)
    records += predict.skipped_records(skipped or [])
    _report_skipped(skipped or [])
    if args.out:
        predict.write(records, clf.classes, args.out)
        n_ok = sum(r["predicted"] is not None for r in records)
        print(f"classified {n_ok} of {len(records)} light curves -> {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(predict.to_csv(records, clf.classes))
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    """``publish``: copy into the registry and flip CURRENT."""
    from dmdt.registry import announcement, publish

    if not args.registry:
        raise SystemExit("dmdt-train publish: give --registry DIR or set $DMDT_REGISTRY")
    print(json.dumps(announcement(publish(args.model, args.registry)), indent=1))
    return 0


COMMANDS = {
    "images": cmd_images,
    "fit": cmd_fit,
    "fit-hybrid": cmd_fit_hybrid,
    "fit-net": cmd_fit_net,
    "audit-labels": cmd_audit_labels,
    "evaluate": cmd_evaluate,
    "predict": cmd_predict,
    "publish": cmd_publish,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dmdt-train``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from dmdt.manifest import ArtifactError

    try:
        return COMMANDS[args.command](args)
    except (ArtifactError, ValueError, FileNotFoundError, NotADirectoryError) as exc:
        print(f"dmdt-train {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
