"""Which model survives other cadences: every candidate on the held-out CRTS part as it is and
thinned (one point per night, ZTF-like, Rubin-like; trainer/cadence.py), on EROS-1, and the two
designs trained with cadence augmentation on the 5 folds (the choice between them).

    python -m research.cadence                 # train missing candidates, measure, report
    python -m research.cadence --report-only   # docs/cadence.md and the figure, from JSON
    python -m research.cadence --only paper-cnn,hybrid-7    # (re)measure some candidates

Candidates that are not shipped are trained by their ``dmdt-train`` command into
``--models`` (build/cadence/models) when missing. Results go to ``<out>/cadence.json`` (saved
after each candidate and fold, so a run resumes); the markdown (docs/cadence.md when ``--out`` is
docs/cadence) and ``<out>/cadence.png`` are written from it (research.cadence.report). Results
and trained candidates of other periodic features (``dmdt.periodic.FEATURES_VERSION``) are
redone.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from dmdt import periodic
from research.cache import write_json
from research.cadence import measure as cadence_eval
from research.cadence.candidates import AUGMENT, CANDIDATES, Candidate, command_of
from research.cadence.report import (
    PARTS,
    SURVEYS_BEGIN,
    SURVEYS_END,
    SURVEYS_MARK,
    default_name,
    surveys_block,
    write_report,
)
from research.pages import markdown_path, replace_block
from trainer import cadence
from trainer.hybrid_fit import STREAM_CUTS
from trainer.split import part_indices

ROOT = Path(__file__).resolve().parents[2]

SURVEYS = ROOT / "docs" / "surveys.md"  # holds a summary of the old and the new default


def model_path(c: Candidate, models: Path) -> Path:
    """Where candidate ``c``'s model directory is."""
    return models / c.path if c.argv else ROOT / c.path


def train(c: Candidate, models: Path, cache: Path) -> float:
    """Train ``c`` by its dmdt-train command; the wall seconds."""
    from trainer.cli import main

    argv = [a.format(out=model_path(c, models), cache=cache) for a in c.argv]
    print(f"dmdt-train {' '.join(argv)}", flush=True)
    t0 = time.perf_counter()
    if main(argv) != 0:
        raise SystemExit(f"training {c.name} failed")
    return round(time.perf_counter() - t0, 1)


def fold_scores(design: str, curves: cadence_eval.Curves, cache: Path, part: str) -> dict:
    """The design of a trained candidate trained on the other folds, scored on fold ``part``."""
    from dmdt.grids import get_grid
    from dmdt.hybrid import HybridClassifier
    from trainer import hybrid_fit
    from trainer.branchnet_fit import NetOptions, crts_rows, train_branch_net
    from trainer.training_rows import Augmentation

    aug = Augmentation(cadences=tuple(AUGMENT.split(",")), history_cuts=STREAM_CUTS)
    grid = get_grid("mahabal2017")
    lcs, rows, classes = crts_rows("crts", NetOptions(augmentation=aug), cache, grid)
    assert [lc.source_id for lc in lcs] == [lc.source_id for lc in curves.crts]
    train_curves, test = part_indices(curves.folds, part)
    t0 = time.perf_counter()
    model: Any
    if design == "hybrid":
        opts = hybrid_fit.HybridOptions(cadences=aug.cadences, history_cuts=STREAM_CUTS)
        r = rows.part(train_curves)
        boosters = hybrid_fit.train_views(rows.features[r], rows.labels[r], len(classes), opts,
                                          rows.weight[r])  # fmt: skip
        model = HybridClassifier(name=design, classes=list(classes), grid=grid, boosters=boosters)
    else:
        model, _ = train_branch_net(rows, train_curves, classes, grid,
                                    NetOptions(augmentation=aug), progress=False)  # fmt: skip
    out = cadence_eval.score_crts(model, curves, test)
    return {"scores": out, "train_seconds": round(time.perf_counter() - t0, 1)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure the candidates asked for (training missing ones) and the fold runs."""
    path = args.out / "cadence.json"
    doc: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    if doc.get("meta", {}).get("features_version") != periodic.FEATURES_VERSION:
        doc = {}  # measured with other periodic features: start again
    # recorded now, so that an interrupted run resumes instead of starting again
    doc["meta"] = {**doc.get("meta", {}), "features_version": periodic.FEATURES_VERSION}
    doc.setdefault("candidates", {})
    doc.setdefault("folds", {})
    curves = cadence_eval.Curves(args.cache)
    only = set(args.only.split(",")) if args.only else None
    for c in CANDIDATES:
        if only is not None and c.name not in only:
            continue
        if c.name in doc["candidates"] and only is None:
            continue
        target = model_path(c, args.models)
        seconds = None
        if c.argv and not _current(target):
            seconds = train(c, args.models, args.cache)
        result = cadence_eval.measure_model(target, curves)
        result.update(label=c.label, command=command_of(c),
                      train_seconds=seconds or recorded_seconds(target))  # fmt: skip
        result["content_hash"] = json.loads((target / "MANIFEST.json").read_text())["content_hash"]
        doc["candidates"][c.name] = result
        _save(path, doc)
        held = result["held_out"]
        print(f"{c.name}: " + ", ".join(f"{n} {held[n]['accuracy']:.3f}" for n in held)
              + f"; EROS-1 B {result['eros1']['B']['mean_right']:.3f}", flush=True)  # fmt: skip
    if not args.no_folds:
        for c in CANDIDATES:
            if not c.design or (only is not None and c.name not in only):
                continue
            parts = doc["folds"].setdefault(c.name, {})
            for part in PARTS:
                if part in parts:
                    continue
                parts[part] = fold_scores(c.design, curves, args.cache, part)
                _save(path, doc)
                acc = cadence_eval.cadence_mean(parts[part]["scores"])
                print(f"{c.name}/{part}: mean accuracy over cadences {acc:.3f}", flush=True)
    doc["meta"] = {
        "features_version": periodic.FEATURES_VERSION,
        "eval_seed": cadence_eval.EVAL_SEED,
        "cadences": list(cadence.CADENCES),
        "eros_right": {k: list(v) for k, v in cadence_eval.EROS_RIGHT.items()},
        "default_hash": _default_hash(),
    }
    _save(path, doc)
    return doc


def _current(folder: Path) -> bool:
    """A trained model directory that this code can serve: complete, and (a feature model) on
    the periodic features this code computes."""
    if not (folder / "MANIFEST.json").exists():
        return False
    config = folder / "model.json"
    if not config.exists():
        return True
    return bool(json.loads(config.read_text())["features_version"] == periodic.FEATURES_VERSION)


def recorded_seconds(folder: Path) -> float | None:
    """The training time a model directory records (its training command's wall clock, features
    read from a cache where it had one)."""
    for name in ("model.json", "config.json"):
        if (folder / name).exists():
            training = json.loads((folder / name).read_text()).get("training", {})
            seconds = training.get("total_seconds", training.get("train_seconds"))
            return None if seconds is None else float(seconds)
    return None


def _default_hash() -> str | None:
    manifest = ROOT / "models" / "default" / "MANIFEST.json"
    return json.loads(manifest.read_text())["content_hash"] if manifest.exists() else None


def _save(path: Path, doc: dict[str, Any]) -> None:
    write_json(path, doc)


def main(argv: list[str] | None = None) -> int:
    """Measure (unless --report-only), then write the page and the figure from the JSON."""
    parser = argparse.ArgumentParser(
        prog="python -m research.cadence",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "cadence")
    parser.add_argument("--models", type=Path, default=ROOT / "build" / "cadence" / "models")
    parser.add_argument("--cache", type=Path, default=ROOT / "build" / "cadence-cache")
    parser.add_argument("--only", default="", help="comma-separated candidates to (re)measure")
    parser.add_argument("--no-folds", action="store_true", help="skip the fold runs")
    parser.add_argument("--report-only", action="store_true", help="only write the markdown")
    args = parser.parse_args(argv)
    path = args.out / "cadence.json"
    doc = json.loads(path.read_text()) if args.report_only else run(args)
    md = markdown_path(args.out, ROOT, "cadence")
    write_report(doc, args.out, md)
    default = default_name(doc)
    if (
        md == ROOT / "docs" / "cadence.md"
        and default is not None
        and "paper-cnn" in doc["candidates"]
    ):
        text = SURVEYS.read_text().replace(SURVEYS_MARK, f"{SURVEYS_BEGIN}\n{SURVEYS_END}")
        block = surveys_block(doc["candidates"], default)
        SURVEYS.write_text(replace_block(text, block, SURVEYS_BEGIN, SURVEYS_END))
    print(f"wrote {md} and {args.out / 'cadence.png'}")
    return 0
