"""How the experiments write their results: JSON atomically and compactly (lists of numbers on one
line)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

# a list holding only numbers, strings, booleans or nulls, as json.dumps(indent=1) spreads it
_SCALAR = r'(?:[-+0-9.eE]+|"[^"\n]*"|true|false|null|NaN|-?Infinity)'
_FLAT_LIST = re.compile(rf"\[\n\s*({_SCALAR}(?:,\n\s*{_SCALAR})*)\n\s*\]")


def dumps(doc: Any) -> str:
    """``doc`` as JSON indented by one space, each list of scalars on one line."""
    text = json.dumps(doc, indent=1)
    return _FLAT_LIST.sub(lambda m: "[" + re.sub(r",\n\s*", ", ", m.group(1)) + "]", text)


def write_json(path: Path, doc: Any) -> None:
    """Write ``doc`` to ``path`` (:func:`dumps`, then a newline) through a temporary file, so that
    an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(dumps(doc) + "\n")
    tmp.replace(path)
