"""Where the reports write: a page of its own (docs/<name>.md), or a generated block inside a page
that people also write by hand (between two HTML comments)."""

from __future__ import annotations

from pathlib import Path


def markdown_path(out: Path, root: Path, name: str) -> Path:
    """Where a report writes its markdown: ``<root>/docs/<name>.md`` when ``out`` is the committed
    results folder ``<root>/docs/<name>``, else ``<out>/<name>.md``, so that a run into another
    folder never rewrites the committed page."""
    docs = root / "docs"
    return docs / f"{name}.md" if out.resolve() == (docs / name).resolve() else out / f"{name}.md"


def replace_block(text: str, block: str, begin: str, end: str) -> str:
    """``text`` with its generated part (from ``begin`` to ``end``) replaced by ``block`` (which
    starts with ``begin`` and ends with ``end``); appended when ``text`` has none."""
    if begin not in text:
        return f"{text}\n{block}\n"
    head, _, rest = text.partition(begin)
    _, _, tail = rest.partition(end)
    return head + block + tail


def write_block(path: Path, block: str, begin: str, end: str) -> None:
    """Replace the generated part of the page at ``path`` by ``block`` (:func:`replace_block`)."""
    text = path.read_text() if path.exists() else ""
    path.write_text(replace_block(text, block, begin, end))
