"""Build the repository's compact data (data/) from the upstream raw files.

Kept for provenance: nothing runs it at run or test time, and a clone needs no raw files (data/
holds everything). RAW is a folder holding the upstream files named in each
data/*/PROVENANCE.md, laid out as crts/, eros1/, ztf/ and rubin/. Every step checks its own
output (round trips are exact, or the script stops). Run:

    python scripts/build_data.py --raw RAW [--out data] [--only crts]
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import shutil
import sys
import tarfile
import tempfile
from collections import Counter
from pathlib import Path

import fastavro
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dmdt.datasets import iter_folder, read_compact, save_compact, write_npz  # noqa: E402
from dmdt.lightcurves import (  # noqa: E402
    EROS1_LABELS,
    CleanSummary,
    clean,
    read_eros1,
)

CRTS_TAR = "crts/raw-lc_17-05-2017_1615.train.tar.gz"
ZTF_KEEP_CUTOUTS = 40  # alerts kept byte for byte (with image cutouts), for decoder speed tests
CUTOUTS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------- CRTS


def build_crts(source: Path, out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(source / CRTS_TAR) as tar:
            members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".csv")]
            for m in members:
                (Path(tmp) / Path(m.name).name).write_bytes(tar.extractfile(m).read())
        folder = Path(tmp)
        lcs = list(iter_folder(folder, progress=True))
        spread = _position_spread(folder)
        target = out / "crts" / "crts_drake2014.npz"
        target.parent.mkdir(parents=True, exist_ok=True)
        save_compact(lcs, target)
        back = read_compact(target)
        assert len(back) == len(lcs) == len(members) == 5757
        for a, b in zip(lcs, back, strict=True):  # the compact file gives back every float64 bit
            assert a.source_id == b.source_id
            assert a.label == b.label
            assert a.ra == b.ra
            assert a.dec == b.dec
            for name in ("t", "m", "err"):
                assert np.array_equal(getattr(a, name), getattr(b, name)), (a.source_id, name)
        for path in sorted(folder.glob("*.csv"))[::500]:  # and equals an independent parse
            rows = list(csv.reader(path.open()))[1:]
            ref = np.array([[float(v) for v in r[1:4]] for r in rows])
            lc = next(x for x in back if x.source_id == path.stem.split("-", 1)[0])
            assert np.array_equal(np.stack([lc.t, lc.m, lc.err], axis=1), ref)
    counts = Counter(lc.label for lc in lcs)
    print(
        f"CRTS: {len(lcs)} light curves, {sum(map(len, lcs))} points, {target.stat().st_size} bytes"
    )
    print("  classes:", ", ".join(f"{k} {v}" for k, v in counts.most_common()))
    print(f"  per-point RA/Dec spread around the per-source median: max {spread:.5f} deg")
    reports = [clean(lc)[1] for lc in lcs]
    print("  cleaning (min_points=20):", CleanSummary.of(reports))
    with_merge = sum(r.merged_same_time > 0 for r in reports)
    with_dup = sum(r.duplicate_rows > 0 for r in reports)
    with_ph = sum(r.placeholder_time > 0 for r in reports)
    print(f"  curves touched: placeholder {with_ph}, duplicates {with_dup}, merged {with_merge}")
    sizes = [r.n_out for r in reports]
    median = int(np.median(sizes))
    print(f"  points after cleaning: min {min(sizes)}, median {median}, max {max(sizes)}")


def _position_spread(folder: Path) -> float:
    """Largest distance (deg, per axis) of a row's RA/Dec from its source's median."""
    worst = 0.0
    for path in folder.glob("*.csv"):
        pos = np.loadtxt(path, delimiter=",", skiprows=1, usecols=(4, 5), ndmin=2)
        worst = max(worst, float(np.abs(pos - np.median(pos, axis=0)).max()))
    return worst


# ------------------------------------------------------------------------------------ EROS-1


def _parse_list(cell: str) -> list[str]:
    inner = cell.strip().removeprefix("[").removesuffix("]").strip()
    return [v.strip() for v in inner.split(",")] if inner else []


def _centi(values: list[str]) -> np.ndarray:
    """Exact integer hundredths of decimal strings with at most two decimals."""
    out = np.empty(len(values), dtype=np.int64)
    for i, v in enumerate(values):
        whole, _, frac = v.partition(".")
        assert len(frac) <= 2, v
        sign = -1 if whole.startswith("-") else 1
        out[i] = sign * (abs(int(whole or "0")) * 100 + int(frac.ljust(2, "0")))
    return out


def build_eros1(source: Path, out: Path) -> None:
    src = source / "eros1"
    static: dict[str, dict[str, str]] = {}
    split: dict[str, str] = {}
    series: dict[str, dict[str, list[str]]] = {}
    for part in ("train", "test"):
        with (src / f"{part}.csv").open(newline="") as fh:
            for row in csv.DictReader(fh):
                key = row.pop("Unnamed: 0")
                static[key], split[key] = row, part
        with gzip.open(src / f"{part}_varlength_features.csv.gz", "rt", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            for row in reader:
                series[row[0]] = {
                    h: _parse_list(c) for h, c in zip(header[1:], row[1:], strict=True)
                }
    ids = list(static)
    assert len(ids) == len(set(ids)) == len(series) == 3641
    arrays: dict[str, np.ndarray] = {
        "format": np.array("dmdt-eros1/1"),
        "scale": np.array(100),
        "id": np.array(ids, dtype=str),
        "label": np.array([EROS1_LABELS[int(float(static[i]["type"]))] for i in ids], dtype=str),
        "split": np.array([split[i] for i in ids], dtype=str),
        "ra": np.array([_ra_deg(static[i]) for i in ids]),
        "dec": np.array([_dec_deg(static[i]) for i in ids]),
    }
    for col in static[ids[0]]:
        if col != "type":
            arrays[f"static_{col}"] = np.array([float(static[i][col] or "nan") for i in ids])
    for band in ("b", "r"):
        lengths = [len(series[i][f"time_points_{band}"]) for i in ids]
        arrays[f"{band}_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        for q, col in (
            ("time", "time_points"),
            ("flux", "light_points"),
            ("error", "error_points"),
            ("bkg", "bkg_points"),
            ("polltn", "polltn_points"),
        ):
            values = [v for i in ids for v in series[i][f"{col}_{band}"]]
            assert len(values) == sum(lengths)
            k = _centi(values)
            assert np.array_equal(k / 100.0, np.array(values, dtype=np.float64))
            arrays[f"{band}_{q}"] = k.astype(np.int32)
    target = out / "eros1" / "eros1.npz"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_npz(target, arrays)
    lcs = read_eros1(target)
    counts = Counter(arrays["label"].tolist())
    print(f"EROS-1: {len(ids)} objects, {len(lcs)} light curves, {target.stat().st_size} bytes")
    print("  classes:", ", ".join(f"{k} {v}" for k, v in counts.most_common()))
    print("  split:", Counter(arrays["split"].tolist()))
    for band in ("b", "r"):
        flux = arrays[f"{band}_flux"]
        print(f"  band {band}: {flux.size} points, {(flux <= 0).sum()} with flux <= 0")
    reports = [clean(lc, min_time=None)[1] for lc in lcs]
    print("  cleaning (min_points=20, no placeholder rule):", CleanSummary.of(reports))


def _ra_deg(row: dict[str, str]) -> float:
    h, m, s = (float(row[k]) for k in ("asc_d", "asc_m", "asc_s"))
    return 15.0 * (h + m / 60 + s / 3600)


def _dec_deg(row: dict[str, str]) -> float:
    d, m, s = (float(row[k]) for k in ("dec_d", "dec_m", "dec_s"))
    sign = -1.0 if row["dec_d"].strip().startswith("-") else 1.0
    return sign * (abs(d) + m / 60 + s / 3600)


# --------------------------------------------------------------------------------- ZTF/Rubin


def _read_long(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), pos


def _write_long(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _header_end(buf: bytes) -> int:
    """Offset just after an Avro container file's header (magic, metadata map, sync marker)."""
    assert buf[:4] == b"Obj\x01"
    pos = 4
    while True:
        count, pos = _read_long(buf, pos)
        if count == 0:
            return pos + 16
        if count < 0:
            count = -count
            _, pos = _read_long(buf, pos)  # block size in bytes
        for _ in range(2 * count):  # key string, value bytes
            size, pos = _read_long(buf, pos)
            pos += size


def strip_cutouts(raw: bytes) -> bytes:
    """The same container file (header and sync marker kept) with the cutouts set to null."""
    reader = fastavro.reader(io.BytesIO(raw))
    assert reader.codec == "null"
    schema = fastavro.parse_schema(json.loads(reader.metadata["avro.schema"]))
    records = list(reader)
    body = io.BytesIO()
    for rec in records:
        fastavro.schemaless_writer(body, schema, {**rec, **dict.fromkeys(CUTOUTS)})
    end = _header_end(raw)
    header, sync = raw[:end], raw[end - 16 : end]
    data = body.getvalue()
    out = header + _write_long(len(records)) + _write_long(len(data)) + data + sync
    back = list(fastavro.reader(io.BytesIO(out)))
    assert [{k: v for k, v in r.items() if k not in CUTOUTS} for r in back] == [
        {k: v for k, v in r.items() if k not in CUTOUTS} for r in records
    ]
    assert all(r[c] is None for r in back for c in CUTOUTS)
    return out


def build_ztf(source: Path, out: Path) -> None:
    src, dst = source / "ztf", out / "ztf"
    for folder in ("schema_v4.02", "ztf-avro-alert_samples", "fink_client_samples"):
        shutil.copytree(src / folder, dst / folder, dirs_exist_ok=True)
        for f in (dst / folder).iterdir():
            f.chmod(0o644)
    alerts = sorted((src / "ztfss18_public_20180713").glob("*.avro"))
    assert len(alerts) == 418
    keep = set(alerts[:: len(alerts) // ZTF_KEEP_CUTOUTS][:ZTF_KEEP_CUTOUTS])
    base = dst / "ztfss18_public_20180713"
    manifest = ["file\tstored\toriginal_bytes\toriginal_sha256\tstored_bytes\tstored_sha256"]
    for path in alerts:
        raw = path.read_bytes()
        kind = "with_cutouts" if path in keep else "no_cutouts"
        data = raw if path in keep else strip_cutouts(raw)
        (base / kind).mkdir(parents=True, exist_ok=True)
        (base / kind / path.name).write_bytes(data)
        manifest.append(
            f"{path.name}\t{kind}\t{len(raw)}\t{sha256(raw)}\t{len(data)}\t{sha256(data)}"
        )
    (base / "MANIFEST.tsv").write_text("\n".join(manifest) + "\n")
    size = sum(f.stat().st_size for f in base.rglob("*.avro"))
    print(f"ZTF: {len(alerts)} ztfss18 alerts, {len(keep)} with cutouts, {size} bytes stored")
    rubin = out / "rubin" / "part-2-918301.avro"
    rubin.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "rubin" / "part-2-918301.avro", rubin)
    print(f"Rubin: {rubin.stat().st_size} bytes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--raw", type=Path, required=True, help="folder of the upstream files")
    parser.add_argument("--out", type=Path, default=REPO / "data")
    parser.add_argument("--only", choices=("crts", "eros1", "ztf"), action="append")
    args = parser.parse_args()
    steps = {"crts": build_crts, "eros1": build_eros1, "ztf": build_ztf}
    for name in args.only or steps:
        steps[name](args.raw, args.out)


if __name__ == "__main__":
    main()
