"""The import layering, read from the source (every import statement, also those inside
functions): dmdt (the science core) imports none of the other packages; the service (broker)
and the trainer import neither each other nor the research; the research may use them all."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("dmdt", "broker", "trainer", "research")
FORBIDDEN = {
    "dmdt": {"broker", "trainer", "research"},
    "broker": {"trainer", "research"},
    "trainer": {"broker", "research"},
    "research": set(),
}


def modules() -> list[Path]:
    return sorted(
        path.relative_to(REPO)
        for package in PACKAGES
        if (REPO / package).is_dir()
        for path in (REPO / package).rglob("*.py")
    )


def imported_packages(source: str, package: str) -> set[str]:
    """The top-level packages a module's source imports (relative imports: its own package)."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            out.add(package if node.level else str(node.module).split(".")[0])
    return out


def params() -> list[object]:
    return [pytest.param(p, id=str(p)) for p in modules()]


@pytest.mark.parametrize("path", params())
def test_module_respects_the_layering(path: Path) -> None:
    package = path.parts[0]
    wrong = imported_packages((REPO / path).read_text(), package) & FORBIDDEN[package]
    assert not wrong, f"{path} imports {sorted(wrong)}"


def test_every_package_is_checked() -> None:
    found = {p.parts[0] for p in modules()}
    assert {"dmdt", "broker", "trainer"} <= found
    assert len(modules()) > 100


def test_the_reader_sees_every_form_of_import() -> None:
    source = (
        "import numpy as np, os.path\n"
        "from . import grids\n"
        "def f():\n"
        "    from broker.models import ModelSource\n"
        "    import trainer.cli\n"
    )
    assert imported_packages(source, "dmdt") == {"numpy", "os", "dmdt", "broker", "trainer"}


def test_the_service_leaves_the_tools_to_the_command_line() -> None:
    service = [p for p in modules() if p.parts[0] == "broker" and p.parts[1] != "tools"]
    assert len(service) > 20
    users = []
    for path in service:
        source = (REPO / path).read_text()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom):
                names = [str(node.module)]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            if any(n == "broker.tools" or n.startswith("broker.tools.") for n in names):
                users.append(str(path))
    assert sorted(set(users)) == ["broker/cli.py"]
