"""Folders of light curves given to dmdt-train: clear errors for folders with nothing usable,
the <id>-<class>.csv rule where labels are needed, and --skip-bad for unreadable files."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from stream_helpers import CLASSES, tiny_model

from trainer.cli import main

CRTS = Path(__file__).resolve().parent / "data" / "crts"
GOOD = sorted(CRTS.glob("*.csv"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tiny_model(tmp_path_factory.mktemp("model") / "model").path)


@pytest.fixture
def mixed(tmp_path: Path) -> Path:
    """The test CRTS curves plus a file with a bad number and one that is not text."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    for path in GOOD:
        shutil.copy(path, folder / path.name)
    (folder / "222-RRab.csv").write_text('"ID","MJD","mag","magerr"\n222,53000.1,x,0.1\n')
    (folder / "333-EW.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff binary")
    return folder


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_images_refuses_a_folder_with_nothing_to_use(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `wrote 0 images`, exit 0, for both folders."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no light curves here")
    status, _, err = run(capsys, "images", str(empty), "--out", str(tmp_path / "a.npz"))
    assert status == 2
    assert "no light curve to read" in err
    assert "<id>-<class>.csv" in err
    short = tmp_path / "short"
    short.mkdir()
    (short / "1-EW.csv").write_text('"ID","MJD","mag","magerr"\n1,53000.1,15.2,0.05\n')
    status, _, err = run(capsys, "images", str(short), "--out", str(tmp_path / "b.npz"))
    assert status == 2
    assert "none of its 1 light curves has 20 points after cleaning (--min-points)" in err
    assert not (tmp_path / "a.npz").exists()
    assert not (tmp_path / "b.npz").exists()


def test_evaluate_states_the_file_name_rule(
    model_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Before: `no light curves to evaluate`."""
    nolabel = tmp_path / "nolabel"
    nolabel.mkdir()
    for path in GOOD:
        shutil.copy(path, nolabel / f"{path.stem.split('-')[0]}.csv")
    status, _, err = run(capsys, "evaluate", model_dir, str(nolabel), "--json", "x.json")
    assert status == 2
    assert "a curve's class comes from its file name, <id>-<class>.csv" in err
    assert f"found {len(GOOD)} without a class in their name" in err


def test_one_bad_file_stops_a_folder_and_names_the_option(
    model_dir: str, mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["predict", model_dir, str(mixed)],
        ["evaluate", model_dir, str(mixed), "--json", str(tmp_path / "e.json")],
        ["images", str(mixed), "--out", str(tmp_path / "i.npz")],
    ):
        status, _, err = run(capsys, *argv)
        assert status == 2, argv
        assert "222-RRab.csv" in err
        assert "--skip-bad" in err


def test_skip_bad_leaves_out_and_reports_unreadable_files(
    model_dir: str, mixed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run(capsys, "predict", model_dir, str(mixed), "--skip-bad")
    assert status == 0, err
    assert "skipped 2 unreadable files:" in err
    assert "222-RRab.csv: line 2: column 'mag': 'x' is not a number" in err
    assert "333-EW.csv: not a UTF-8 text file" in err
    rows = {r["source_id"]: r for r in csv.DictReader(io.StringIO(out))}
    assert len(rows) == len(GOOD) + 2  # every file accounted for
    assert rows["222"]["skipped"].startswith("unreadable file: line 2")
    assert rows["333"]["label"] == "EW"
    assert all(rows[p.stem.split("-")[0]]["predicted"] for p in GOOD)

    # the same curves and probabilities as the good files alone
    status, alone, _ = run(capsys, "predict", model_dir, str(CRTS))
    assert status == 0
    assert [r for r in csv.DictReader(io.StringIO(out)) if r["predicted"]] == list(
        csv.DictReader(io.StringIO(alone))
    )

    status, _, err = run(
        capsys, "images", str(mixed), "--out", str(tmp_path / "i.npz"), "--skip-bad"
    )
    assert status == 0, err
    assert "skipped 2 unreadable files:" in err
    assert len(np.load(tmp_path / "i.npz")["ids"]) == len(GOOD)

    out_json = tmp_path / "e.json"
    status, _, err = run(
        capsys, "evaluate", model_dir, str(mixed), "--json", str(out_json), "--skip-bad",
        "--split", "all",
    )  # fmt: skip
    assert status == 0, err
    assert "skipped 2 unreadable files:" in err
    known = [p for p in GOOD if p.stem.split("-", 1)[1] in CLASSES]
    assert json.loads(out_json.read_text())["n"] == len(known) == 4
