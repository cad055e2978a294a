"""Write the generated parts of docs/architecture.md from the code: every module of the packages
with the first sentence of its docstring and the project modules it imports, and the import
graph between the packages.

    python scripts/architecture_doc.py           # rewrite the generated sections in place
    python scripts/architecture_doc.py --check   # exit 1 if the doc does not match the code

Only the text between the ``<!-- generated:NAME -->`` and ``<!-- end:NAME -->`` markers is
written; the rest of the doc is prose kept by hand.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "architecture.md"
PACKAGES = ("dmdt", "broker", "trainer", "research")  # those that exist are listed
GROUPS = {"broker.tools": "broker.tools"}  # subpackages shown apart in the package graph


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages present."""
    out: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def purpose(tree: ast.Module) -> str:
    """The first sentence of the module docstring, on one line."""
    doc = ast.get_docstring(tree) or ""
    text = " ".join(doc.strip().split("\n\n")[0].split())
    cut = re.search(r"(?<!e\.g)(?<!i\.e)\.\s", text)
    text = text[: cut.start() + 1] if cut else text
    return text.replace("|", "\\|")


def project_imports(name: str, path: Path, tree: ast.Module, known: set[str]) -> set[str]:
    """The project modules a module imports (anywhere in it), each named by its dotted name."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = str(node.module or "")
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:  # `from a.b import c`: module a.b.c if it is one, else a.b
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def group_of(module: str) -> str:
    for prefix, group in GROUPS.items():
        if module == prefix or module.startswith(prefix + "."):
            return group
    return module.split(".")[0]


def analyse() -> tuple[dict[str, str], dict[str, set[str]]]:
    """Purpose and project imports of every module."""
    files = module_files()
    known = set(files)
    purposes: dict[str, str] = {}
    imports: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        purposes[name] = purpose(tree)
        imports[name] = project_imports(name, path, tree, known)
    return purposes, imports


def modules_section(purposes: dict[str, str], imports: dict[str, set[str]]) -> str:
    lines: list[str] = []
    for package in PACKAGES:
        names = [n for n in purposes if n.split(".")[0] == package]
        if not names:
            continue
        lines += ["", f"### {package}", "", "| module | purpose | imports (project modules) |"]
        lines.append("|---|---|---|")
        for name in names:
            own = sorted(
                (m.removeprefix(f"{package}.") if m.split(".")[0] == package else m)
                for m in imports[name]
            )
            lines.append(f"| `{name}` | {purposes[name]} | {', '.join(own)} |")
    return "\n".join(lines[1:])


def graph_section(imports: dict[str, set[str]]) -> str:
    edges: Counter[tuple[str, str]] = Counter()
    for name, targets in imports.items():
        for target in targets:
            a, b = group_of(name), group_of(target)
            if a != b:
                edges[(a, b)] += 1
    groups = sorted(
        {group_of(n) for n in imports}, key=lambda g: (PACKAGES.index(g.split(".")[0]), g)
    )
    width = max(len(g) for g in groups)
    lines = ["```"]
    for group in groups:
        out = [f"{b} ({edges[(a, b)]})" for (a, b) in sorted(edges) if a == group]
        lines.append(f"{group.ljust(width)} -> {', '.join(out) if out else '(nothing)'}")
    lines.append("```")
    lines.append("")
    lines.append(
        "(n): how many import statements of modules of the left-hand side name a module of the "
        "right-hand side, imports inside functions included."
    )
    return "\n".join(lines)


def render(doc: str) -> str:
    purposes, imports = analyse()
    sections = {"modules": modules_section(purposes, imports), "graph": graph_section(imports)}
    for key, body in sections.items():
        pattern = re.compile(
            rf"(<!-- generated:{key} -->\n).*?(<!-- end:{key} -->)", flags=re.DOTALL
        )
        if not pattern.search(doc):
            raise SystemExit(f"{DOC}: no <!-- generated:{key} --> ... <!-- end:{key} --> section")
        doc = pattern.sub(lambda m, body=body: m.group(1) + body + "\n" + m.group(2), doc)
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the doc is out of date")
    args = parser.parse_args(argv)
    old = DOC.read_text()
    new = render(old)
    if args.check:
        if new != old:
            print(f"{DOC.relative_to(REPO)} is out of date: run scripts/architecture_doc.py")
            return 1
        return 0
    DOC.write_text(new)
    print(f"wrote {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
