"""docs/architecture.md matches the code: every module is listed with its docstring's first
sentence and its imports, and the import graph is the one the modules have today."""

from __future__ import annotations

from pathlib import Path

from script_helpers import load_script

REPO = Path(__file__).resolve().parent.parent


def test_the_generated_sections_match_the_code(capsys) -> None:
    doc = load_script("architecture_doc")
    assert doc.main(["--check"]) == 0, capsys.readouterr().out


def test_every_module_is_listed() -> None:
    text = (REPO / "docs" / "architecture.md").read_text()
    for package in ("dmdt", "broker", "trainer", "research"):
        for path in (REPO / package).rglob("*.py") if (REPO / package).is_dir() else ():
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            assert f"| `{name}` |" in text, f"{name} is not in docs/architecture.md"


def test_a_package_that_changed_makes_the_check_fail(tmp_path, monkeypatch) -> None:
    doc = load_script("architecture_doc")
    fake = tmp_path / "docs" / "architecture.md"
    fake.parent.mkdir()
    fake.write_text((REPO / "docs" / "architecture.md").read_text())
    monkeypatch.setattr(doc, "DOC", fake)
    monkeypatch.setattr(doc, "REPO", tmp_path)
    for package in ("dmdt", "broker"):
        (tmp_path / package).symlink_to(REPO / package)
    assert doc.main(["--check"]) == 1  # trainer/ missing here: its table differs
