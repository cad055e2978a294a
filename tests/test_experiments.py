"""The paper's experiments (python -m research.paper) in --quick mode, and the robust-PCA function
on a synthetic matrix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from research.paper import rpca

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = (
    "forest",
    "composites",
    "transfer",
    "bins",
    "pairwise",
    "rpca",
    "seven_class",
    "deep",
)


def test_pcp_recovers_low_rank_plus_sparse() -> None:
    rng = np.random.default_rng(1)
    low = rng.normal(size=(80, 2)) @ rng.normal(size=(2, 60))  # rank 2
    sparse = np.zeros_like(low)
    mask = rng.random(low.shape) < 0.05
    sparse[mask] = rng.uniform(-10, 10, mask.sum())
    result = rpca.pcp(low + sparse)
    assert result.converged
    assert result.rank == 2
    assert np.linalg.norm(result.low_rank - low) / np.linalg.norm(low) < 1e-4
    assert np.linalg.norm(result.sparse - sparse) / np.linalg.norm(sparse) < 1e-4
    np.testing.assert_allclose(result.low_rank + result.sparse, low + sparse, atol=1e-5)


def test_pcp_zero_and_bad_input() -> None:
    assert rpca.pcp(np.zeros((3, 4))).rank == 0
    with pytest.raises(ValueError, match="2-D"):
        rpca.pcp(np.zeros(5))


def test_background_subtraction_and_row_elimination() -> None:
    images = np.full((3, 4, 6), 10, dtype=np.uint8)  # (n, n_dt, n_dm)
    back = np.full((4, 6), 4.0)
    back[0, 0] = 30.0
    out = rpca.subtract(images, back)
    assert out[0, 0, 0] == 0.0  # clipped at 0
    assert out[0, 1, 1] == 6.0
    dm_edges = np.array([-1.0, -0.5, -0.1, 0.0, 0.1, 0.5, 1.0])
    zeroed = rpca.eliminate_rows(images, dm_edges)
    assert (zeroed[:, :, 2:4] == 0).all()
    assert (zeroed[:, :, [0, 1, 4, 5]] == 10).all()


def test_paper_results_quick(tmp_path: Path) -> None:
    results, doc = tmp_path / "results", tmp_path / "results.md"
    cmd = [
        sys.executable,
        "-m",
        "research.paper",
        "--quick",
        "--results-dir",
        str(results),
        "--doc",
        str(doc),
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in EXPERIMENTS:
        stored = json.loads((results / f"{name}.json").read_text())
        assert stored["complete"], name
        assert stored["parts"], name
        assert stored["budget"]["name"] == "quick"
    assert len(json.loads((results / "pairwise.json").read_text())["parts"]) == 21
    for png in ("composites.png", "rpca_backgrounds.png", "fig7_recall.png"):
        assert (results / png).stat().st_size > 0
    text = doc.read_text()
    for heading in (
        "## 1. Seven classes",
        "## 2. The 21 pairwise",
        "## 3. Composite",
        "## 4. Robust PCA",
        "## 5. dmdt bin variants",
        "## 6. Transfer learning",
    ):
        assert heading in text
    assert "not available" in text
    assert "Smoke run" in text
    assert "python -m research.paper" in text
    # A second run reuses the cache: nothing is recomputed.
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0
    assert "  forest/" not in again.stdout


def test_the_committed_page_is_the_report_of_the_committed_results(tmp_path: Path) -> None:
    """docs/results.md regenerated from the committed results alone (docs/results/*.json, the
    figures the experiments drew, docs/beyond/*.json) is the committed page, byte for byte, and
    the figures the report redraws are the committed ones."""
    for folder, pattern in (("results", "*.*"), ("beyond", "*.json")):
        (tmp_path / folder).mkdir()
        for path in (REPO / "docs" / folder).glob(pattern):
            (tmp_path / folder / path.name).write_bytes(path.read_bytes())
    doc = tmp_path / "results.md"
    cmd = [sys.executable, "-m", "research.paper", "--report-only",
           "--results-dir", str(tmp_path / "results"), "--doc", str(doc)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert doc.read_bytes() == (REPO / "docs/results.md").read_bytes()
    for png in (tmp_path / "results").glob("*.png"):
        assert png.read_bytes() == (REPO / "docs/results" / png.name).read_bytes(), png.name
