"""What the replay reads: archived light curves and alerts, found by the kind of SOURCE.

- a bundled dataset name (``crts``; ``eros1``, ``eros1-b``, ``eros1-r``) or a compact ``.npz``;
- a folder (searched recursively) or a file of: CRTS ``<id>-<class>.csv`` light curves (the label
  is kept), Catalina data-release CSVs (header with ``MasterID``), PTF IPAC tables (``.tbl``,
  ``.ipac``), or ZTF ``.avro`` alert files.

Light curves are cleaned with `dmdt.lightcurves.clean` (``min_points``). ZTF alerts become
`ArchivedAlert` s keyed by objectId at their candidate's time: ``ztf_format="raw"`` keeps each
message byte for byte (a file holding one alert is sent as the file's bytes); ``"lightcurve"``
converts it to our schema as the broker's ZTF decoder reads it, keeping the candidate's band
(with ZTF's own history in that band) and its candid as alert id.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from broker.decode import DecodeError
from broker.decode_ztf import ZtfDecoder
from broker.tools.replay_plan import ArchivedAlert
from broker.tools.testing import ztf_messages
from dmdt.datasets import load_labelled
from dmdt.lightcurves import (
    CleanSummary,
    LightCurve,
    clean,
    read_catalina,
    read_crts_csv,
    read_ptf_ipac,
)

log = logging.getLogger(__name__)

ZtfFormat = Literal["raw", "lightcurve"]
PayloadKind = Literal["lightcurve", "ztf"]
BUNDLED_NAMES = ("crts", "eros1", "eros1-b", "eros1-r")
PTF_SUFFIXES = (".tbl", ".ipac")
_KINDS = {".csv": "csv", ".avro": "ztf", ".npz": "npz", **{s: "ptf" for s in PTF_SUFFIXES}}


@dataclass(frozen=True)
class ReplaySource:
    """What one SOURCE holds: its survey, and light curves or archived alerts."""

    name: str
    survey: str  # crts, ptf, eros1, ztf
    items: Sequence[LightCurve | ArchivedAlert]
    payload: PayloadKind  # what the messages are: the decoder that reads them


def _is_catalina(path: Path) -> bool:
    with path.open() as fh:
        return "masterid" in fh.readline().lower()


def _files(path: Path) -> dict[str, list[Path]]:
    """The replayable files of a folder (recursively) or one file, by kind."""
    paths = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    out: dict[str, list[Path]] = {}
    for p in paths:
        kind = _KINDS.get(p.suffix.lower())
        if kind == "csv":
            kind = "catalina" if _is_catalina(p) else "crts"
        if kind is not None:
            out.setdefault(kind, []).append(p)
    return out


def _clean_all(lcs: list[LightCurve], min_points: int) -> list[LightCurve]:
    kept, reports = [], []
    for lc in lcs:
        cleaned, report = clean(lc, min_points)
        reports.append(report)
        if cleaned is not None:
            kept.append(cleaned)
    log.info("cleaned: %s", CleanSummary.of(reports))
    return kept


def load_ztf(paths: Sequence[Path], ztf_format: ZtfFormat = "raw") -> list[ArchivedAlert]:
    """ZTF alert files -> one ArchivedAlert per alert (raw bytes or the candidate's band)."""
    if ztf_format not in ("raw", "lightcurve"):
        raise ValueError(f"ztf_format must be 'raw' or 'lightcurve', not {ztf_format!r}")
    decoder = ZtfDecoder()
    out = []
    skipped = 0
    for path in paths:
        for data in ztf_messages(path):
            try:
                bands = decoder(data)
            except DecodeError as exc:
                raise ValueError(f"{path}: not a readable ZTF alert: {exc}") from exc
            first = bands[0]  # the candidate's band: its time, id and position
            if ztf_format == "raw":
                out.append(ArchivedAlert(first.source_id, first.alert_time, first.alert_id, data))
            elif first.n:  # its points of the kind the alert proposes (photometry says which)
                out.append(ArchivedAlert(first.source_id, first.alert_time, first.alert_id, first))
            else:
                skipped += 1
    if skipped:
        log.info("ztf: %d alerts without a point in the candidate's band not converted", skipped)
    return out


def _npz_survey(path: Path) -> str:
    with np.load(path, allow_pickle=False) as z:
        return "eros1" if "format" in z and str(z["format"]) == "dmdt-eros1/1" else "crts"


def load_source(
    source: str | Path,
    *,
    min_points: int = 20,
    ztf_format: ZtfFormat = "raw",
    survey: str | None = None,
) -> ReplaySource:
    """Read and clean what SOURCE holds (see the module docstring for the kinds).

    The survey is inferred (CRTS for CRTS, Catalina and compact files, ptf, eros1, ztf) unless
    given; light curves of several inferred surveys in one folder are refused.
    """
    name = str(source)
    path = Path(source)
    if name.lower() in BUNDLED_NAMES and not path.exists():
        bundled = load_labelled(name, min_points=min_points)
        inferred = "eros1" if name.lower().startswith("eros1") else "crts"
        return ReplaySource(name, survey or inferred, bundled, "lightcurve")
    if not path.exists():
        raise FileNotFoundError(
            f"{source}: no such file or folder, and not a bundled dataset "
            f"({', '.join(BUNDLED_NAMES)})"
        )
    kinds = _files(path)
    if not kinds:
        raise ValueError(f"{source}: no .csv, .avro, .npz, .tbl or .ipac file to replay")
    if "ztf" in kinds:
        if len(kinds) > 1:
            raise ValueError(f"{source}: ZTF alerts mixed with light curves ({sorted(kinds)})")
        payload: PayloadKind = "ztf" if ztf_format == "raw" else "lightcurve"
        return ReplaySource(name, survey or "ztf", load_ztf(kinds["ztf"], ztf_format), payload)
    surveys = {"ptf" if k == "ptf" else "crts" for k in kinds if k != "npz"}
    surveys |= {_npz_survey(p) for p in kinds.get("npz", [])}
    if len(surveys) > 1 and survey is None:
        raise ValueError(
            f"{source}: light curves of several surveys ({', '.join(sorted(surveys))}): "
            "replay them one at a time, or name one survey for all"
        )
    lcs: list[LightCurve] = []
    for p in kinds.get("npz", []):
        lcs += load_labelled(p, min_points=min_points)  # cleaned as its kind needs
    raw: list[LightCurve] = [read_crts_csv(p) for p in kinds.get("crts", [])]
    for p in kinds.get("catalina", []):
        raw += read_catalina(p)
    for p in kinds.get("ptf", []):
        raw += read_ptf_ipac(p)
    lcs += _clean_all(raw, min_points)
    return ReplaySource(name, survey or surveys.pop(), lcs, "lightcurve")
