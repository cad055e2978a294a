"""The research package's shape: the product never imports it, and every experiment follows the
one pattern (a runner with the command line, a report, ``python -m research.<name>``)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PRODUCT = ("dmdt", "broker", "trainer")
EXPERIMENTS = sorted(p.name for p in (REPO / "research").iterdir() if (p / "__init__.py").exists())


def imported(path: Path) -> set[str]:
    """Top-level names of the modules a file imports (at any depth of the file)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", PRODUCT)
def test_the_product_never_imports_the_research(package: str) -> None:
    offenders = [
        str(p.relative_to(REPO))
        for p in (REPO / package).rglob("*.py")
        if "research" in imported(p)
    ]
    assert offenders == []


def test_every_experiment_has_a_runner_a_report_and_an_entry_point() -> None:
    assert len(EXPERIMENTS) >= 10
    for name in EXPERIMENTS:
        folder = REPO / "research" / name
        assert (folder / "runner.py").exists(), name
        assert (folder / "report.py").exists(), name
        main = (folder / "__main__.py").read_text()
        assert f"from research.{name}.runner import main" in main, name
        assert "def main(" in (folder / "runner.py").read_text(), name


@pytest.mark.slow
def test_every_entry_point_explains_itself() -> None:
    for name in EXPERIMENTS:
        done = subprocess.run(
            [sys.executable, "-m", f"research.{name}", "--help"], cwd=REPO, capture_output=True,
            text=True, timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, (name, done.stderr[-2000:])
        assert f"python -m research.{name}" in done.stdout, name
