"""The period-recovery benchmark: signals of known period injected into the real cadences and errors
of CRTS, EROS-1 and the bundled ZTF alerts, searched by each period search
(research.period_recovery.benchmark); writes docs/periods/recovery.json and docs/periods.md.

    python -m research.period_recovery                  # every search, 30 trials per cell
    python -m research.period_recovery --searches periods  # one search (the others' kept)
    python -m research.period_recovery --report-only    # rewrite the markdown from the JSON

A cell is (survey, shape, amplitude, number of points); each has its own seeded generator, so
the trials are the same for every search and every run with the same --seed. The search's
design was chosen on --seed 1 (development); the committed figures use --seed 0.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from research.cache import write_json
from research.pages import markdown_path
from research.period_recovery import benchmark as pr
from research.period_recovery.report import AMPLITUDES, write_doc

ROOT = Path(__file__).resolve().parents[2]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the searches named on the surveys named (resuming per search), then the page."""
    p = argparse.ArgumentParser(
        prog="python -m research.period_recovery",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    p.add_argument("--searches", default=",".join(pr.SEARCHES), help="comma-separated searches")
    p.add_argument("--surveys", default="crts,eros1,ztf", help="comma-separated surveys")
    p.add_argument("--per-cell", type=int, default=30, help="trials per cell")
    p.add_argument("--seed", type=int, default=0, help="0: the committed figures")
    p.add_argument("--out", type=Path, default=ROOT / "docs/periods", help="JSON folder")
    p.add_argument("--doc", type=Path, help="markdown (docs/periods.md for the committed --out)")
    p.add_argument("--report-only", action="store_true", help="only rewrite the markdown")
    p.add_argument(
        "--catalogue", action="store_true", help="also EROS-1's catalogue periods (B, R, both)"
    )
    p.add_argument(
        "--design",
        action="store_true",
        help="also the design variants on the development trials (design.json)",
    )
    args = p.parse_args(argv)
    path = args.out / "recovery.json"
    doc: dict[str, Any] = pr.load_results(path)
    settings = {"seed": args.seed, "per_cell": args.per_cell}
    if any(doc.get(k, v) != v for k, v in settings.items()):
        p.error(f"{path} holds seed {doc.get('seed')}, {doc.get('per_cell')} per cell: use"
                " another --out for other settings")  # fmt: skip
    doc.update(settings)
    if not args.report_only:
        surveys = [s for s in args.surveys.split(",") if s]
        for name in [s for s in args.searches.split(",") if s]:
            if name not in pr.SEARCHES:
                p.error(f"unknown search {name!r}; known: {sorted(pr.SEARCHES)}")
            doc["methods"].update(pr.run(name, surveys, args.per_cell, args.seed, AMPLITUDES))
            write_json(path, doc)
        if args.catalogue:
            doc["eros_catalogue"] = pr.eros_catalogue()
            write_json(path, doc)
        if args.design:
            write_json(args.out / "design.json", pr.design())
    doc_path = args.doc or markdown_path(args.out, ROOT, "periods")
    write_doc(doc, doc_path, "python -m research.period_recovery")
    print(f"wrote {doc_path}")
    return 0
