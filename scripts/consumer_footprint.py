"""What a consumer costs: the installed size of each role's dependency set, and the resident
memory of an idle `dmdt-broker run` per model.

    python scripts/consumer_footprint.py sizes [--pyproject FILE]...
    python scripts/consumer_footprint.py memory [--code DIR] --model DIR...

``sizes`` sums, for the base install and each extra of a pyproject.toml, the files of every
distribution in the closure of its requirements, as installed in this environment (the versions
`make setup` installs); a requirement that is not installed here is named. ``memory`` starts a
local Tansu broker, creates the topics, runs ``python -m broker.cli run`` (the code of DIR when
given, e.g. an extracted older commit) with each model until it is ready (a partition assigned,
the model loaded and warmed up), waits 10 s more, then reads VmRSS and whether libtorch is mapped.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.request
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parent.parent


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, metadata.Distribution]:
    return {norm(d.metadata["Name"]): d for d in metadata.distributions()}


def closure(
    requirements: list[str], dists: dict[str, metadata.Distribution], project: str
) -> tuple[set[str], set[str]]:
    """Installed distributions a requirement list pulls in (with extras), and those missing."""
    seen: set[str] = set()
    missing: set[str] = set()
    todo = [(Requirement(r), "") for r in requirements]
    while todo:
        req, extra = todo.pop()
        if req.marker is not None and not req.marker.evaluate({"extra": extra}):
            continue
        name = norm(req.name)
        if name == norm(project):  # an extra naming the project itself: its own lists
            continue
        if name not in dists:
            missing.add(name)
            continue
        extras = set(req.extras)
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        seen.add(key)
        for line in dists[name].requires or []:
            sub = Requirement(line)
            if sub.marker is None or sub.marker.evaluate({"extra": ""}):
                todo.append((sub, ""))
            elif any(sub.marker.evaluate({"extra": e}) for e in extras):
                todo.append((sub, next(e for e in extras if sub.marker.evaluate({"extra": e}))))
    return {k.split("[")[0] for k in seen}, missing


def size_mb(names: set[str], dists: dict[str, metadata.Distribution]) -> float:
    total = 0
    for name in names:
        for file in dists[name].files or []:
            path = Path(str(file.locate()))
            if path.is_file():
                total += path.stat().st_size
    return total / 1e6


def role_lists(project: dict) -> dict[str, list[str]]:
    """Requirement lists per role: base, and base + each extra (self-references expanded)."""
    extras: dict[str, list[str]] = project.get("optional-dependencies", {})

    def expand(names: set[str]) -> list[str]:
        out: list[str] = []
        for extra in sorted(names):
            for line in extras[extra]:
                req = Requirement(line)
                if norm(req.name) == norm(project["name"]):
                    out += expand(set(req.extras))
                else:
                    out.append(line)
        return out

    roles = {"base": list(project["dependencies"])}
    for extra in extras:
        roles[f"base+[{extra}]"] = project["dependencies"] + expand({extra})
    return roles


def cmd_sizes(args: argparse.Namespace) -> int:
    dists = installed()
    for source in args.pyproject or [str(REPO / "pyproject.toml")]:
        project = tomllib.loads(Path(source).read_text())["project"]
        print(f"{source}:")
        for role, reqs in role_lists(project).items():
            names, missing = closure(reqs, dists, project["name"])
            torch = "torch" if "torch" in names else "no torch"
            note = f"; not installed here: {', '.join(sorted(missing))}" if missing else ""
            print(f"  {role:<16} {len(names):>3} distributions {size_mb(names, dists):8.0f} MB"
                  f"  ({torch}){note}")  # fmt: skip
    return 0


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def idle_rss(model: str, code: Path, bootstrap: str, topic: str, port: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as state:
        env = {
            **os.environ,
            "DMDT_BOOTSTRAP_SERVERS": bootstrap,
            "DMDT_METRICS_PORT": str(port),
            "DMDT_DEVICE": "cpu",
            "DMDT_STATE_DIR": state,
            "PYTHONPATH": str(code),
        }
        cmd = [sys.executable, "-m", "broker.cli", "run", "--input", f"{topic}:lightcurve",
               "--group", f"footprint-{port}", "--model", model]  # fmt: skip
        proc = subprocess.Popen(cmd, cwd=code, env=env, stderr=subprocess.PIPE, text=True)  # noqa: S603
        try:
            deadline = time.monotonic() + 180
            while not ready(port):
                if proc.poll() is not None:
                    raise RuntimeError(f"{model}: exited: {proc.communicate()[1][-2000:]}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{model}: not ready after 180 s")
                time.sleep(0.5)
            time.sleep(10)
            status = Path(f"/proc/{proc.pid}/status").read_text()
            rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]
            torch = "libtorch" in Path(f"/proc/{proc.pid}/maps").read_text()
        finally:
            proc.terminate()
            proc.communicate(timeout=60)
    return {"model": model, "code": str(code), "rss_mib": round(rss), "torch_loaded": torch}


def cmd_memory(args: argparse.Namespace) -> int:
    from broker.kafka_admin import create_topics
    from broker.settings import BrokerSettings
    from broker.tools.testing import TansuBroker, free_port

    code = Path(args.code).resolve() if args.code else REPO
    with TansuBroker() as broker:
        settings = BrokerSettings(bootstrap_servers=broker.bootstrap)
        topic = "footprint-alerts"
        create_topics(
            settings,
            {topic: 1, settings.output_topic: 1, settings.object_topic: 1,
             settings.dead_letter_topic: 1},
        )  # fmt: skip
        for model in args.model:
            print(json.dumps(idle_rss(model, code, broker.bootstrap, topic, free_port())))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sizes = sub.add_parser("sizes", help="installed size per role")
    sizes.add_argument("--pyproject", action="append", help="pyproject.toml to read (repeatable)")
    sizes.set_defaults(handler=cmd_sizes)
    memory = sub.add_parser("memory", help="resident memory of an idle consumer per model")
    memory.add_argument("--code", default=None, help="repository root whose code runs")
    memory.add_argument("--model", action="append", required=True, help="model (repeatable)")
    memory.set_defaults(handler=cmd_memory)
    args = parser.parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":
    sys.exit(main())
