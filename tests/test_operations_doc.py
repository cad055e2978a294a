"""docs/operations.md: the configuration table is the one generated from BrokerSettings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from script_helpers import load_script

from broker.settings import BrokerSettings

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "settings_table.py"


def settings_table() -> ModuleType:
    return load_script("settings_table")


def test_doc_table_matches_the_settings_class() -> None:
    script = settings_table()
    text = (REPO / "docs" / "operations.md").read_text()
    assert script.replace_in(text, script.table()) == text, (
        "docs/operations.md is stale: run python scripts/settings_table.py --write"
    )


def test_every_setting_is_a_row_with_its_environment_variable() -> None:
    script = settings_table()
    rows = [line for line in script.table().splitlines() if line.startswith("| `")]
    assert len(rows) == len(BrokerSettings.model_fields)
    for row, (name, field) in zip(rows, BrokerSettings.model_fields.items(), strict=True):
        assert row.startswith(f"| `{name}` | ")
        for env in script.env_names(name, field):
            assert f"`{env}`" in row
    by_name = dict(zip(BrokerSettings.model_fields, rows, strict=True))
    assert "`DMDT_BOOTSTRAP_SERVERS`, then `KAFKA_BOOTSTRAP`" in by_name["bootstrap_servers"]
    assert "| `127.0.0.1` |" in by_name["metrics_host"]
    assert "secret" in by_name["sasl_password"]
    assert "`lc-alerts:lightcurve`" in by_name["input_topics"]


def test_check_mode(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    script = settings_table()
    doc = tmp_path / "operations.md"
    doc.write_text(script.replace_in((REPO / "docs" / "operations.md").read_text(), "| old |\n"))
    monkeypatch.setattr(script, "DOC", doc)
    assert script.main(["--check"]) == 1
    assert script.main(["--write"]) == 0
    assert script.main(["--check"]) == 0
