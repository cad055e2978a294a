"""docs/surveys.md's generated blocks are the reports of the committed results (no rerun)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from research.band_combination import report as bands
from research.forced_photometry import report as forced
from research.survey_photometry import report as photometry

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("report", "result"),
    [
        (forced, "forced_photometry.json"),
        (bands, "band_combination.json"),
        (photometry, "photometry.json"),
    ],
)
def test_the_block_is_the_report_of_the_committed_json(report, result: str) -> None:
    page = (REPO / "docs" / "surveys.md").read_text()
    block = report.markdown(json.loads((REPO / "docs" / "surveys" / result).read_text()))
    assert block.startswith(report.BEGIN)
    assert block.endswith(report.END)
    assert page.count(report.BEGIN) == 1
    assert block in page
