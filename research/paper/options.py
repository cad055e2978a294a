"""Command-line options of the experiments (no heavy imports: ``--help`` stays fast)."""

from __future__ import annotations

import argparse

# Cheap, high-value results first; the long CNN runs last (each resumes part by part).
ORDER = ("forest", "composites", "transfer", "bins", "pairwise", "rpca", "seven_class", "deep")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``python -m research.paper``."""
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 16 curves per class, 1-2 epochs (default output build/results-quick)",
    )
    p.add_argument("--force", action="store_true", help="recompute even what is cached")
    p.add_argument(
        "--only",
        default=None,
        help=f"comma-separated experiments to run (default all, in order: {','.join(ORDER)})",
    )
    p.add_argument("--results-dir", default=None, help="JSON and PNG folder (default docs/results)")
    p.add_argument("--doc", default=None, help="the Markdown document (default docs/results.md)")
    p.add_argument("--report-only", action="store_true", help="rewrite the doc from the JSON only")
