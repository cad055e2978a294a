"""How the experiments write their results: JSON atomically and compactly (lists of numbers on one
line)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

# a list or an object holding only numbers, strings, booleans or nulls, as json.dumps(indent=1)
# spreads it over lines
_SCALAR = r'(?:[-+0-9.eE]+|"[^"\n]*"|true|false|null|NaN|-?Infinity)'
_FLAT_LIST = re.compile(rf"\[\n\s*({_SCALAR}(?:,\n\s*{_SCALAR})*)\n\s*\]")
_ITEM = rf'"[^"\n]*": {_SCALAR}'
_FLAT_OBJECT = re.compile(rf"\{{\n\s*({_ITEM}(?:,\n\s*{_ITEM})*)\n\s*\}}")


def _join(match: re.Match[str], left: str, right: str) -> str:
    return left + re.sub(r",\n\s*", ", ", match.group(1)) + right


def dumps(doc: Any) -> str:
    """``doc`` as JSON indented by one space, each list and each object of scalars on one line."""
    text = json.dumps(doc, indent=1)
    text = _FLAT_LIST.sub(lambda m: _join(m, "[", "]"), text)
    return _FLAT_OBJECT.sub(lambda m: _join(m, "{", "}"), text)


def write_json(path: Path, doc: Any) -> None:
    """Write ``doc`` to ``path`` (:func:`dumps`, then a newline) through a temporary file, so that
    an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dumps(doc) + "\n")
    tmp.replace(path)
