"""Alert and light-curve files as the Kafka messages the broker reads, for `dmdt-broker send`.

Each file's content is sent as it is, one message per alert or per light curve (to simulate a
survey night detection by detection, use `dmdt-broker replay`):

- ZTF ``.avro`` files (writer schema ``ztf.alert``): one message per alert, as ZTF publishes it
  (the file's bytes when it holds one alert); decoder ``ztf``, key the objectId.
- Rubin ``.avro`` files (lsst alert records, also Fink's re-distributions): one Confluent-framed
  message per alert in the official lsst.v10_0 schema, as Rubin's stream sends it; decoder
  ``rubin``, key the diaObjectId.
- light curves (CRTS ``<id>-<class>.csv``, Catalina CSVs, PTF IPAC tables, compact ``.npz``),
  cleaned as the replay cleans them: one ``lightcurve_alert`` per curve carrying all its points,
  so the consumer classifies it at once; decoder ``lightcurve``, key the source id.

Every message is read back through the broker's own decoder before it is sent, so a file the
consumer would dead-letter is refused here with the decoder's reason (``raw`` sends bytes
unchecked, one message per file: the way to try the dead-letter topic).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import fastavro
import numpy as np

from broker.decode import DecodedAlert, DecodeError
from broker.decode_rubin import RubinDecoder
from broker.decode_ztf import ZtfDecoder
from broker.tools.replay import lightcurve_encoder
from broker.tools.replay_plan import DEFAULT_BANDS, UNKNOWN_BAND, alert_ids
from broker.tools.replay_sources import load_source
from broker.tools.testing import rubin_messages, ztf_messages
from dmdt.lightcurves import LightCurve

LIGHTCURVE_SUFFIXES = (".csv", ".tbl", ".ipac", ".npz")


@dataclass
class FileMessages:
    """What some files become: keyed messages for the topic of one decoder."""

    payload: str  # the decoder that reads them: ztf, rubin or lightcurve (raw: none checked)
    messages: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, value)
    files: int = 0
    sources: set[str] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)  # what was left out, and why

    def describe(self) -> str:
        """One line: how many messages of what, from how many files and sources."""
        what = {"ztf": "ZTF alerts", "rubin": "Rubin alerts", "lightcurve": "light curves",
                "raw": "raw files"}[self.payload]  # fmt: skip
        return (
            f"{_count(len(self.messages), 'message')} ({what} of "
            f"{_count(len(self.sources), 'source')}, {_count(self.files, 'file')})"
        )


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _expand(paths: Sequence[str | Path]) -> list[Path]:
    """Files of the arguments: files as given, folders searched recursively (sorted)."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or folder")
    return out


def avro_kind(path: Path) -> str:
    """``ztf`` or ``rubin``: whose alerts an Avro container file holds (from its writer schema)."""
    try:
        with path.open("rb") as fh:
            schema = fastavro.reader(fh).writer_schema
    except (ValueError, EOFError, OSError) as exc:
        raise ValueError(f"{path}: not an Avro container file ({exc})") from exc
    if not isinstance(schema, dict):
        raise ValueError(f"{path}: the writer schema is not a record")
    fields = {f["name"] for f in schema.get("fields", [])}
    if str(schema.get("name", "")).startswith("ztf.") or {"candid", "candidate"} <= fields:
        return "ztf"
    if {"diaSourceId", "diaSource"} <= fields:
        return "rubin"
    raise ValueError(
        f"{path}: neither ZTF alerts (schema ztf.alert) nor Rubin alerts (diaSource records)"
    )


def _checked(path: Path, data: bytes, decode: ZtfDecoder | RubinDecoder) -> DecodedAlert:
    try:
        return decode(data)[0]  # every band carries the alert's source id
    except DecodeError as exc:
        raise ValueError(f"{path}: an alert the {decode.name} decoder refuses: {exc}") from exc


def _alerts(paths: list[Path], kind: str) -> FileMessages:
    out = FileMessages(kind, files=len(paths))
    if kind == "ztf":
        ztf = ZtfDecoder()
        for path in paths:
            for data in ztf_messages(path):
                source = _checked(path, data, ztf).source_id
                out.messages.append((source.encode(), data))
                out.sources.add(source)
    else:
        rubin = RubinDecoder()
        for path in paths:
            for _alert, data in rubin_messages(path):
                source = _checked(path, data, rubin).source_id
                out.messages.append((source.encode(), data))
                out.sources.add(source)
    return out


def whole_curve_alert(lc: LightCurve, survey: str) -> DecodedAlert:
    """A light curve as one alert of all its points; its id is the one `dmdt-broker replay`
    gives the curve's last detection."""
    band = lc.band or DEFAULT_BANDS.get(survey, UNKNOWN_BAND)
    alert_id = int(alert_ids(survey, lc.source_id, band, lc.t[-1:])[0])
    return DecodedAlert(
        alert_id, lc.source_id, survey, band, lc.ra, lc.dec, float(lc.t[-1]),
        np.asarray(lc.t), np.asarray(lc.m), np.asarray(lc.err), lc.label,
    )  # fmt: skip


def _curves(paths: list[Path], min_points: int, survey: str | None) -> FileMessages:
    out = FileMessages("lightcurve", files=len(paths))
    encode = lightcurve_encoder()
    for path in paths:
        source = load_source(path, min_points=min_points, survey=survey)
        curves = [lc for lc in source.items if isinstance(lc, LightCurve)]
        if not curves:
            out.notes.append(f"{path}: no light curve with {min_points} points after cleaning")
        for lc in curves:
            out.messages.append(
                (lc.source_id.encode(), encode(whole_curve_alert(lc, source.survey)))
            )
            out.sources.add(lc.source_id)
    return out


def read_files(
    paths: Sequence[str | Path],
    *,
    min_points: int = 20,
    survey: str | None = None,
    raw: bool = False,
) -> FileMessages:
    """The messages of some files or folders, all of one kind (ZTF, Rubin or light curves)."""
    files = _expand(paths)
    if raw:
        out = FileMessages("raw", files=len(files))
        for path in files:
            out.messages.append((path.stem.encode(), path.read_bytes()))
            out.sources.add(path.stem)
        return out
    kinds: dict[str, list[Path]] = {}
    for path in files:
        suffix = path.suffix.lower()
        if suffix == ".avro":
            kinds.setdefault(avro_kind(path), []).append(path)
        elif suffix in LIGHTCURVE_SUFFIXES:
            kinds.setdefault("lightcurve", []).append(path)
    if not kinds:
        raise ValueError(
            f"{', '.join(map(str, paths))}: no .avro alert file and no light-curve file "
            f"({', '.join(LIGHTCURVE_SUFFIXES)})"
        )
    if len(kinds) > 1:
        raise ValueError(
            f"files of several kinds ({', '.join(sorted(kinds))}): each goes to the topic of its "
            "decoder; send them one kind at a time"
        )
    ((kind, chosen),) = kinds.items()
    if kind == "lightcurve":
        out = _curves(chosen, min_points, survey)
    else:
        out = _alerts(chosen, kind)
    if not out.messages:
        raise ValueError(f"nothing to send: {'; '.join(out.notes)}")
    return out
