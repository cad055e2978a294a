"""Light curves: the `LightCurve` record, readers for the survey formats we use, and cleaning.

Readers return raw data (file order, placeholders and duplicates kept); :func:`clean` is the one
documented step that makes a light curve fit for a kernel (see docs/data.md).

- :func:`read_crts_csv` / :func:`write_crts_csv`: one ``<id>-<class>.csv`` file per light curve,
  columns ``"ID","MJD","mag","magerr","RA","Dec"`` (the labelled-dataset layout).
- :func:`read_catalina`: a Catalina Surveys data-release CSV
  (``MasterID,Mag,Magerr,RA,Dec,MJD,Blend``), any number of sources per file.
- :func:`read_ptf_ipac`: an IRSA ``ptf_lightcurves`` query result in IPAC table format.
- :func:`read_eros1`: the bundled compact EROS-1 file (fluxes turned into magnitudes).
"""

from __future__ import annotations

import csv
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

PLACEHOLDER_MJD = 40_000.0  # MJD 40000 is 1968; CRTS writes -2409998.5 for a missing time
EROS1_LABELS = {1: "EB", 2: "Cepheid", 3: "RRLyrae", 4: "Mira"}
PTF_BANDS = {1: "g", 2: "R"}  # IRSA ptf_lightcurves `fid`

_PTF_ID = ("oid", "sourceid")
_PTF_TIME = ("obsmjd", "mjd", "hmjd")
_PTF_MAG = ("mag_autocorr", "mag")
_PTF_ERR = ("magerr_auto", "magerr")


class LightCurveFormatError(ValueError):
    """A light-curve file that cannot be read; the message names the file and the line."""

    def __init__(self, path: str | Path, line: int | None, reason: str) -> None:
        self.path = str(path)
        self.line = line
        self.reason = reason
        where = self.path if line is None else f"{self.path}, line {line}"
        super().__init__(f"{where}: {reason}")


@dataclass(frozen=True, eq=False)
class LightCurve:
    """One source's photometry in one band: times in days (MJD unless said), magnitudes, errors."""

    source_id: str
    t: np.ndarray
    m: np.ndarray
    err: np.ndarray
    label: str | None = None
    band: str | None = None
    ra: float | None = None
    dec: float | None = None

    def __post_init__(self) -> None:
        for name in ("t", "m", "err"):
            arr = np.array(getattr(self, name), dtype=np.float64)  # a private, read-only copy
            if arr.ndim != 1:
                raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        if not self.t.size == self.m.size == self.err.size:
            raise ValueError(
                f"t, m, err differ in length: {self.t.size}, {self.m.size}, {self.err.size}"
            )
        object.__setattr__(self, "source_id", str(self.source_id))

    def __len__(self) -> int:
        return int(self.t.size)

    def head(self, k: int) -> LightCurve:
        """The first ``k`` points (of a cleaned curve: the first ``k`` in time, as a stream has
        them after its ``k``-th alert), with this curve's id, label, band and position."""
        return replace(self, t=self.t[:k], m=self.m[:k], err=self.err[:k])


# ----------------------------------------------------------------------------------- readers


def split_name(stem: str) -> tuple[str, str | None]:
    """``"1101014036588-RS_CVn"`` -> ``("1101014036588", "RS_CVn")``: split on the first '-'."""
    source_id, sep, label = stem.partition("-")
    return source_id, (label if sep and label else None)


def _median(values: np.ndarray) -> float | None:
    finite = values[np.isfinite(values)]
    return float(np.median(finite)) if finite.size else None


def _read_csv(
    path: Path, numeric: Sequence[str], text: Sequence[str] = (), optional: Sequence[str] = ()
) -> dict[str, np.ndarray]:
    """The named columns of a CSV file with a header line (names matched case-insensitively)."""
    try:
        return _read_csv_text(path, numeric, text, optional)
    except UnicodeDecodeError as exc:
        raise LightCurveFormatError(path, None, f"not a UTF-8 text file ({exc.reason})") from exc


def _read_csv_text(
    path: Path, numeric: Sequence[str], text: Sequence[str], optional: Sequence[str]
) -> dict[str, np.ndarray]:
    with path.open(newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None:
            raise LightCurveFormatError(path, 1, "empty file; expected a header line")
        lower = [h.strip().lower() for h in header]
        missing = [c for c in (*numeric, *text) if c.lower() not in lower]
        if missing:
            raise LightCurveFormatError(
                path, 1, f"missing column(s) {', '.join(missing)}; the header is {header}"
            )
        wanted_num = [c for c in (*numeric, *optional) if c.lower() in lower]
        num_idx = [lower.index(c.lower()) for c in wanted_num]
        text_idx = [lower.index(c.lower()) for c in text]
        rows: list[list[float]] = []
        texts: list[list[str]] = []
        for row in reader:
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != len(header):
                raise LightCurveFormatError(
                    path, reader.line_num, f"{len(row)} fields where the header has {len(header)}"
                )
            try:
                rows.append([float(row[i]) for i in num_idx])
            except ValueError:
                col, value = next(
                    (c, row[i])
                    for c, i in zip(wanted_num, num_idx, strict=True)
                    if not _is_float(row[i])
                )
                raise LightCurveFormatError(
                    path, reader.line_num, f"column {col!r}: {value!r} is not a number"
                ) from None
            texts.append([row[i].strip() for i in text_idx])
    values = np.array(rows, dtype=np.float64).reshape(len(rows), len(wanted_num))
    out = {c: values[:, j] for j, c in enumerate(wanted_num)}
    for j, c in enumerate(text):
        out[c] = np.array([r[j] for r in texts], dtype=str)
    return out


def _is_float(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def read_crts_csv(path: str | Path) -> LightCurve:
    """One ``<id>-<class>.csv`` light curve; the label is the file name after the first '-'."""
    path = Path(path)
    source_id, label = split_name(path.stem)
    cols = _read_csv(path, numeric=("MJD", "mag", "magerr"), optional=("RA", "Dec"))
    nan = np.full(cols["MJD"].size, np.nan)
    return LightCurve(
        source_id,
        cols["MJD"],
        cols["mag"],
        cols["magerr"],
        label=label,
        ra=_median(cols.get("RA", nan)),
        dec=_median(cols.get("Dec", nan)),
    )


def _fmt(value: float | None) -> str:
    return "nan" if value is None else repr(float(value))


def write_crts_csv(lc: LightCurve, folder: str | Path) -> Path:
    """Write ``<folder>/<id>-<class>.csv``; values are written in full (read back bit for bit)."""
    if "-" in lc.source_id or "/" in lc.source_id or not lc.source_id:
        raise ValueError(f"source id {lc.source_id!r} cannot name a <id>-<class>.csv file")
    if lc.label is not None and "/" in lc.label:
        raise ValueError(f"label {lc.label!r} cannot be part of a file name")
    name = lc.source_id if lc.label is None else f"{lc.source_id}-{lc.label}"
    path = Path(folder) / f"{name}.csv"
    tail = f"{_fmt(lc.ra)},{_fmt(lc.dec)}"
    lines = ['"ID","MJD","mag","magerr","RA","Dec"']
    lines += [
        f"{lc.source_id},{t!r},{m!r},{e!r},{tail}"
        for t, m, e in zip(lc.t.tolist(), lc.m.tolist(), lc.err.tolist(), strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _group(
    ids: np.ndarray,
    t: np.ndarray,
    m: np.ndarray,
    err: np.ndarray,
    ra: np.ndarray,
    dec: np.ndarray,
    band: np.ndarray | None = None,
) -> list[LightCurve]:
    """Split table rows into light curves by (id, band), in order of first appearance."""
    keys = list(
        zip(ids.tolist(), [None] * ids.size if band is None else band.tolist(), strict=True)
    )
    rows: dict[tuple[str, str | None], list[int]] = {}
    for i, key in enumerate(keys):
        rows.setdefault(key, []).append(i)
    out = []
    for (source_id, b), idx_list in rows.items():
        idx = np.array(idx_list)
        out.append(
            LightCurve(
                source_id,
                t[idx],
                m[idx],
                err[idx],
                band=b,
                ra=_median(ra[idx]),
                dec=_median(dec[idx]),
            )
        )
    return out


def read_catalina(path: str | Path) -> list[LightCurve]:
    """A Catalina data-release CSV: one light curve per MasterID (the Blend flag is not used)."""
    path = Path(path)
    cols = _read_csv(
        path, numeric=("Mag", "Magerr", "MJD"), text=("MasterID",), optional=("RA", "Dec")
    )
    nan = np.full(cols["MJD"].size, np.nan)
    return _group(
        cols["MasterID"],
        cols["MJD"],
        cols["Mag"],
        cols["Magerr"],
        cols.get("RA", nan),
        cols.get("Dec", nan),
    )


def _ipac_fields(line: str, bars: list[int]) -> list[str]:
    return [line[a + 1 : b].strip() for a, b in itertools.pairwise(bars)]


@dataclass(frozen=True)
class _IpacHeader:
    names: list[str]  # lower-case
    nulls: list[str]
    bars: list[int]  # positions of '|' in the header lines
    name_line: int
    data_start: int  # index into the file's lines


def _ipac_header(path: Path, lines: list[str]) -> _IpacHeader:
    """Keyword lines (``\\``), then one to four ``|``-lines: names, types, units, nulls."""
    n = 0
    while n < len(lines) and (lines[n].startswith("\\") or not lines[n].strip()):
        n += 1
    header: list[tuple[int, str]] = []
    while n < len(lines) and lines[n].startswith("|"):
        header.append((n + 1, lines[n].rstrip()))
        n += 1
    if not header:
        raise LightCurveFormatError(path, n + 1, "expected an IPAC '|name|...|' header line")
    if len(header) > 4:
        raise LightCurveFormatError(path, header[4][0], "more than four '|' header lines")
    bars = [i for i, ch in enumerate(header[0][1]) if ch == "|"]
    for lineno, text in header[1:]:
        if [i for i, ch in enumerate(text) if ch == "|"] != bars:
            raise LightCurveFormatError(path, lineno, "'|' positions differ from the name line")
    names = [s.lower() for s in _ipac_fields(header[0][1], bars)]
    nulls = _ipac_fields(header[3][1], bars) if len(header) == 4 else ["null"] * len(names)
    return _IpacHeader(names, nulls, bars, header[0][0], n)


def read_ptf_ipac(path: str | Path) -> list[LightCurve]:
    """An IRSA PTF light-curve table (IPAC format): one light curve per (oid, fid).

    Columns: id ``oid`` or ``sourceid``; time ``obsmjd``, ``mjd`` or ``hmjd``; magnitude
    ``mag_autocorr`` or ``mag``; error ``magerr_auto`` or ``magerr``; optional ``fid`` (1 = g,
    2 = R), ``ra``, ``dec``. Null values (the table's null string, default ``null``, or blank)
    become NaN, which :func:`clean` drops. Quality flags (``goodflag``) are not applied.
    """
    path = Path(path)
    lines = path.read_text().splitlines()
    head = _ipac_header(path, lines)

    def column(options: tuple[str, ...]) -> int | None:
        return next((head.names.index(o) for o in options if o in head.names), None)

    required = (_PTF_TIME, _PTF_MAG, _PTF_ERR, _PTF_ID)
    for options in required:
        if column(options) is None:
            raise LightCurveFormatError(
                path,
                head.name_line,
                f"no column named {' or '.join(options)}; the columns are {head.names}",
            )
    num_cols = [column(o) for o in (_PTF_TIME, _PTF_MAG, _PTF_ERR, ("ra",), ("dec",), ("fid",))]
    id_col = head.names.index(next(o for o in _PTF_ID if o in head.names))
    ids: list[str] = []
    rows: list[list[float]] = []
    for lineno, line in enumerate(lines[head.data_start :], start=head.data_start + 1):
        if not line.strip() or line.startswith("\\"):
            continue
        if any(b < len(line) and line[b] != " " for b in head.bars):
            raise LightCurveFormatError(path, lineno, "a value overlaps a '|' column boundary")
        values = _ipac_fields(line, head.bars)
        row = []
        for c in num_cols:
            value = "" if c is None else values[c]
            if c is None or not value or value == head.nulls[c]:
                row.append(math.nan)
                continue
            try:
                row.append(float(value))
            except ValueError:
                raise LightCurveFormatError(
                    path, lineno, f"column {head.names[c]!r}: {value!r} is not a number"
                ) from None
        ids.append(values[id_col])
        rows.append(row)
    arr = np.array(rows, dtype=np.float64).reshape(len(rows), len(num_cols))
    band = None
    if num_cols[5] is not None:
        band = np.array(
            [PTF_BANDS.get(int(f), f"fid{int(f)}") if np.isfinite(f) else "?" for f in arr[:, 5]],
            dtype=object,
        )
    ids_arr = np.array(ids, dtype=object)
    return _group(ids_arr, arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3], arr[:, 4], band)


def read_eros1(path: str | Path, bands: Iterable[str] = ("B", "R")) -> list[LightCurve]:
    """The compact EROS-1 file: one light curve per object and band, in magnitudes.

    The upstream "light points" are magnitudes already, although the upstream description calls
    them fluxes: each object's median is within 0.05 mag of its catalogue ``magnitude_b``
    (correlation 0.998, values 13-21; docs/data.md). They are used as they are; non-positive or
    non-finite values are dropped. Times stay in days since the EROS epoch (not MJD): pass
    ``min_time=None`` to :func:`clean`.
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as z:
        if str(z["format"]) != "dmdt-eros1/1":
            raise LightCurveFormatError(path, None, "not a compact EROS-1 file (dmdt-eros1/1)")
        scale = float(z["scale"])
        ids, labels = z["id"].tolist(), z["label"].tolist()
        ra, dec = z["ra"].tolist(), z["dec"].tolist()
        out = []
        for band in bands:
            b = band.lower()
            if f"{b}_offsets" not in z:
                raise ValueError(f"EROS-1 has bands B and R, not {band!r}")
            off = z[f"{b}_offsets"]
            t, mag, err = (z[f"{b}_{q}"] / scale for q in ("time", "flux", "error"))
            for i, sid in enumerate(ids):
                s = slice(off[i], off[i + 1])
                ok = (mag[s] > 0) & np.isfinite(mag[s])
                out.append(
                    LightCurve(
                        sid,
                        t[s][ok],
                        mag[s][ok],
                        err[s][ok],
                        label=labels[i],
                        band=band.upper(),
                        ra=ra[i],
                        dec=dec[i],
                    )
                )
    return out


# ---------------------------------------------------------------------------------- cleaning


@dataclass(frozen=True)
class CleanReport:
    """What :func:`clean` did to one light curve; points are counted under the first rule hit."""

    source_id: str
    n_in: int
    non_finite: int = 0  # NaN or inf in t, m or err
    placeholder_time: int = 0  # t < min_time (CRTS: -2409998.5)
    duplicate_rows: int = 0  # exact copies of an earlier (t, m, err) row
    merged_same_time: int = 0  # points folded into another point of the same t (averaged)
    was_unsorted: bool = False  # input not in time order (sorted, stable)
    n_out: int = 0
    reason: str | None = None  # "too_short" when the light curve was dropped


def clean(
    lc: LightCurve, min_points: int = 20, min_time: float | None = PLACEHOLDER_MJD
) -> tuple[LightCurve | None, CleanReport]:
    """Drop bad points, sort by time and merge same-time points; None if too short.

    Rules, in order: non-finite values; placeholder times (t < ``min_time``; None disables it);
    stable sort by t; exact duplicate rows (the first is kept); points sharing a time are
    replaced by one point with the mean magnitude and the root-mean-square error; fewer than
    ``min_points`` points left -> ``(None, report)`` with reason ``too_short``.
    """
    t, m, e = lc.t, lc.m, lc.err
    keep = np.isfinite(t) & np.isfinite(m) & np.isfinite(e)
    non_finite = int(keep.size - keep.sum())
    placeholder = 0
    if min_time is not None:
        early = keep & (t < min_time)
        placeholder = int(early.sum())
        keep &= ~early
    t, m, e = t[keep], m[keep], e[keep]
    unsorted = bool(np.any(t[1:] < t[:-1]))
    if unsorted:
        order = np.argsort(t, kind="stable")
        t, m, e = t[order], m[order], e[order]
    duplicates = merged = 0
    if t.size > 1:
        _, first = np.unique(np.stack([t, m, e], axis=1), axis=0, return_index=True)
        first.sort()
        duplicates = int(t.size - first.size)
        t, m, e = t[first], m[first], e[first]
        starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
        if starts.size < t.size:
            size = np.diff(np.r_[starts, t.size])
            multi = size > 1
            m_mean = np.add.reduceat(m, starts) / size
            e_rms = np.sqrt(np.add.reduceat(e * e, starts) / size)
            merged = int(t.size - starts.size)
            t, m, e = t[starts], m[starts], e[starts]
            m[multi], e[multi] = m_mean[multi], e_rms[multi]
    too_short = t.size < min_points
    report = CleanReport(
        lc.source_id,
        len(lc),
        non_finite=non_finite,
        placeholder_time=placeholder,
        duplicate_rows=duplicates,
        merged_same_time=merged,
        was_unsorted=unsorted,
        n_out=int(t.size),
        reason="too_short" if too_short else None,
    )
    if too_short:
        return None, report
    return LightCurve(lc.source_id, t, m, e, lc.label, lc.band, lc.ra, lc.dec), report


@dataclass(frozen=True)
class CleanSummary:
    """Totals of many :class:`CleanReport` s (curves and points dropped by each rule)."""

    curves_in: int
    curves_out: int
    too_short: int
    unsorted: int
    points_in: int
    points_out: int
    non_finite: int
    placeholder_time: int
    duplicate_rows: int
    merged_same_time: int

    @classmethod
    def of(cls, reports: Iterable[CleanReport]) -> CleanSummary:
        """Add up reports."""
        reports = list(reports)
        kept = [r for r in reports if r.reason is None]

        def total(name: str) -> int:
            return sum(getattr(r, name) for r in reports)

        return cls(
            curves_in=len(reports),
            curves_out=len(kept),
            too_short=sum(r.reason == "too_short" for r in reports),
            unsorted=sum(r.was_unsorted for r in reports),
            points_in=total("n_in"),
            points_out=sum(r.n_out for r in kept),
            non_finite=total("non_finite"),
            placeholder_time=total("placeholder_time"),
            duplicate_rows=total("duplicate_rows"),
            merged_same_time=total("merged_same_time"),
        )
