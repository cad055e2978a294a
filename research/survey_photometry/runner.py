"""What the broker's ZTF and Rubin light curves are, measured on the repository's real alerts.

    python -m research.survey_photometry        # docs/surveys/photometry.json, the figure,
                                                # and the generated part of docs/surveys.md
    python -m research.survey_photometry --report-only   # the page's part from the JSON

- ZTF, the public alerts of 2018-07-13 (data/ztf): how many detections have a reference
  counterpart and a negative difference; each source's kind (total or difference) as the broker
  decides it; the detections left out, by reason; our DC magnitudes and errors against two
  reference formulations: ALeRCE's correction step (mag_corr, e_mag_corr, e_mag_corr_ext, as
  its documentation writes them) and Lasair's DC magnitude (after ZTF's explanatory supplement:
  zero points, fluxes, errors added in quadrature); and how well the near-simultaneous g and r
  points of objects with both signs of difference agree in each.
- Rubin, the 7 alerts of March 2026 (data/rubin): per source, the detections with a negative
  difference flux (kept now), the fallbacks used, the points forced photometry adds.

Runs in about a minute; no model is needed. The figure is drawn while measuring (it needs the
night's state); the page's part is written from the JSON (research.survey_photometry.report).
"""

from __future__ import annotations

import argparse
import io
import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fastavro
import numpy as np

from broker import photometry as ph
from broker.decode import make_decoder
from broker.decode_rubin import RubinDecoder
from broker.decode_ztf import JD_MINUS_MJD
from broker.kafka import Record
from broker.models import ModelSource
from broker.pipeline import Pipeline
from broker.state import MemoryState
from broker.tools.testing import rubin_messages, ztf_messages
from research.cache import write_json
from research.pages import write_block
from research.survey_photometry.report import BEGIN, END, markdown

ROOT = Path(__file__).resolve().parents[2]

OUT = ROOT / "docs" / "surveys"

DOC = ROOT / "docs" / "surveys.md"

NIGHT = ROOT / "data" / "ztf" / "ztfss18_public_20180713"

RUBIN = ROOT / "data" / "rubin" / "part-2-918301.avro"

LASAIR_ZP = {1: 26.325, 2: 26.275, 3: 25.660}  # reference zero points Lasair's dc_mag assumes


def night() -> list[tuple[dict[str, Any], bytes]]:
    """(record, message) of each alert of the night, in the order ZTF sent them."""
    out = []
    for path in sorted(NIGHT.rglob("*.avro")):
        for message in ztf_messages(path):
            (record,) = fastavro.reader(io.BytesIO(message))
            out.append((record, message))
    out.sort(key=lambda x: x[0]["candidate"]["jd"])  # type: ignore[index, call-overload]
    return out  # type: ignore[return-value]


def distinct_detections(alerts: list[tuple[dict[str, Any], bytes]]) -> list[dict[str, Any]]:
    """Every detection of the night once ((objectId, fid, jd, magpsf): the first copy)."""
    seen: dict[tuple[str, int, float, float], dict[str, Any]] = {}
    for record, _ in alerts:
        for d in [record["candidate"], *(record["prv_candidates"] or [])]:
            if d["magpsf"] is not None:
                seen.setdefault((record["objectId"], d["fid"], d["jd"], d["magpsf"]),
                                {**d, "objectId": record["objectId"]})  # fmt: skip
    return list(seen.values())


def state_after(alerts: list[tuple[dict[str, Any], bytes]]) -> tuple[MemoryState, Counter[str]]:
    """The night through the broker's pipeline (min_points high: nothing is classified); the
    state it leaves and the detections it left out, by reason (per message)."""
    # any served model: the photometry does not depend on it
    model = ModelSource(ROOT / "models" / "paper-cnn", "cpu", min_points=10**6).current
    state = MemoryState(model.grid)
    p = Pipeline({"ztf": make_decoder("ztf")}, state, lambda: model)
    dropped: Counter[str] = Counter()
    records = [Record("ztf", 0, i, r["objectId"].encode(), m, None)
               for i, (r, m) in enumerate(alerts)]  # fmt: skip
    for start in range(0, len(records), 100):
        result = p.process(records[start : start + 100])
        for (_, reason), n in result.dropped_detections.items():
            dropped[reason] += n
    return state, dropped


def references(d: list[dict[str, Any]]) -> dict[str, Any]:
    """Our DC magnitudes and errors against ALeRCE's and Lasair's formulations, on every
    detection with a reference counterpart."""
    near = [x for x in d if x["distnr"] is not None and 0 <= x["distnr"] < ph.ZTF_NEAR_ARCSEC]
    magpsf = np.array([x["magpsf"] for x in near])
    sigmapsf = np.array([x["sigmapsf"] for x in near])
    magnr = np.array([x["magnr"] for x in near])
    sigmagnr = np.array([x["sigmagnr"] for x in near])
    sign = np.array([ph.ztf_sign(x["isdiffpos"]) for x in near], dtype=float)
    fid = np.array([x["fid"] for x in near])
    m, err, ok = ph.ztf_dc_magnitudes(magpsf, sigmapsf, sign, magnr)
    # ALeRCE's correction step, as its README writes it
    aux1, aux2 = 10 ** (-0.4 * magnr), 10 ** (-0.4 * magpsf)
    aux3 = np.maximum(aux1 + sign * aux2, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag_corr = -2.5 * np.log10(aux3)
        aux4 = (aux2 * sigmapsf) ** 2 - (aux1 * sigmagnr) ** 2
        e_mag_corr = np.where(aux4 >= 0, np.sqrt(aux4) / aux3, np.inf)
        e_mag_corr_ext = aux2 * sigmapsf / aux3
    # Lasair's dc_mag: fluxes in counts with the reference zero points (magzpsci absent from
    # these 2018 alerts, so the reference's), each difference capped at 12 mag, errors added
    zp = np.array([LASAIR_ZP[f] for f in fid])
    ref_flux = 10 ** (0.4 * np.minimum(zp - magnr, 12.0))
    diff_flux = 10 ** (0.4 * np.minimum(zp - magpsf, 12.0))
    dc_flux = ref_flux + sign * diff_flux
    dc_sig = np.hypot(sigmagnr / 1.0857 * ref_flux, sigmapsf / 1.0857 * diff_flux)
    with np.errstate(divide="ignore", invalid="ignore"):
        lasair_m = np.where(dc_flux > 0, zp - 2.5 * np.log10(dc_flux), np.nan)
        lasair_e = np.where(dc_flux > 0, dc_sig / dc_flux * 1.0857, np.nan)
    defined = ok & np.isfinite(e_mag_corr)
    return {
        "detections_near": len(near),
        "total_flux_not_positive": int((~ok).sum()),
        "alerce_mag_corr_max_abs_diff": float(np.max(np.abs(m[ok] - mag_corr[ok]))),
        "alerce_e_mag_corr_ext_max_rel_diff": float(
            np.max(np.abs(err[ok] - e_mag_corr_ext[ok]) / e_mag_corr_ext[ok])
        ),
        "alerce_e_mag_corr_undefined": int((~np.isfinite(e_mag_corr[ok])).sum()),
        "alerce_e_mag_corr_over_ours_median": float(np.median((e_mag_corr / err)[defined])),
        "lasair_capped": int(((zp - magnr > 12) | (zp - magpsf > 12))[ok].sum()),
        "lasair_mag_max_abs_diff_uncapped": float(
            np.nanmax(np.abs(m - lasair_m)[ok & (zp - magnr <= 12) & (zp - magpsf <= 12)])
        ),
        "lasair_err_over_ours_median": float(np.nanmedian(lasair_e[ok] / err[ok])),
        "lasair_err_over_ours_p90": float(np.nanpercentile(lasair_e[ok] / err[ok], 90)),
    }


def band_agreement(state: MemoryState, d: list[dict[str, Any]]) -> dict[str, Any]:
    """Pearson correlation of near-simultaneous (< 0.1 d) g and r points, in total magnitudes
    (the state) and in magpsf, for objects with both signs of difference and both bands total."""
    by: dict[tuple[str, int], dict[float, float]] = defaultdict(dict)
    signs: dict[str, set[str]] = defaultdict(set)
    for x in d:
        by[(x["objectId"], x["fid"])].setdefault(x["jd"] - JD_MINUS_MJD, x["magpsf"])
        signs[x["objectId"]].add(x["isdiffpos"])
    rows = []
    for oid in sorted(signs):
        keys = [(oid, "g"), (oid, "r")]
        if len(signs[oid]) < 2 or state.photometry(keys) != ["total", "total"]:
            continue
        tg, mg, _ = state.history(keys[0])
        tr, mr, _ = state.history(keys[1])
        pairs = [(i, int(np.argmin(np.abs(tr - t)))) for i, t in enumerate(tg)]
        pairs = [(i, j) for i, j in pairs if abs(tr[j] - tg[i]) < 0.1]
        if len(pairs) < 6:
            continue
        gi, rj = np.array(pairs).T
        pg = np.array([by[(oid, 1)][t] for t in tg[gi]])
        pr = np.array([by[(oid, 2)][t] for t in tr[rj]])
        rows.append({"object": oid, "pairs": len(pairs),
                     "total": float(np.corrcoef(mg[gi], mr[rj])[0, 1]),
                     "magpsf": float(np.corrcoef(pg, pr)[0, 1])})  # fmt: skip
    total = np.array([r["total"] for r in rows])
    magpsf = np.array([r["magpsf"] for r in rows])
    return {
        "objects": rows,
        "median_total": float(np.median(total)),
        "median_magpsf": float(np.median(magpsf)),
        "fraction_total_higher": float(np.mean(total > magpsf)),
    }


def figure(state: MemoryState, d: list[dict[str, Any]], oid: str, path: Path) -> None:
    """One object's night: magpsf by sign (the old light curve) above its DC magnitudes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7.5, 6), sharex=True)
    colours = {1: "tab:green", 2: "tab:red"}
    for fid, band in ((1, "g"), (2, "r")):
        mine = sorted((x for x in d if x["objectId"] == oid and x["fid"] == fid),
                      key=lambda x: x["jd"])  # fmt: skip
        t = np.array([x["jd"] - JD_MINUS_MJD for x in mine])
        mp = np.array([x["magpsf"] for x in mine])
        neg = np.array([ph.ztf_sign(x["isdiffpos"]) < 0 for x in mine])
        top.scatter(t[~neg], mp[~neg], c=colours[fid], marker="^", label=f"{band}, positive")
        top.scatter(t[neg], mp[neg], facecolors="none", edgecolors=colours[fid], marker="v",
                    label=f"{band}, negative")  # fmt: skip
        if state.photometry([(oid, band)]) == ["total"]:
            tt, mm, ee = state.history((oid, band))
            bottom.errorbar(tt, mm, ee, fmt="o", c=colours[fid], ms=4, label=f"{band} (DC)")
            bottom.axhline(mine[0]["magnr"], c=colours[fid], ls=":", lw=1)
    top.set_ylabel("magpsf [mag]")
    top.set_title(f"{oid}: difference magnitudes (before) and DC magnitudes (after)")
    bottom.set_ylabel("total [mag]")
    bottom.set_xlabel("MJD")
    for ax in (top, bottom):
        ax.invert_yaxis()
        ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def rubin() -> list[dict[str, Any]]:
    """Per Rubin source of the sample: detections, negative difference fluxes, points kept
    without and with forced photometry, fallbacks."""
    rows = []
    for alert, message in rubin_messages(RUBIN):
        dets = [alert["diaSource"], *(alert["prvDiaSources"] or [])]
        if len(dets) < 10:
            continue
        plain, forced = RubinDecoder(forced=False)(message), RubinDecoder()(message)
        old = sum(1 for x in dets if (x["psfFlux"] or 0) > 0)  # what the 0.1 decoder kept
        rows.append({
            "source": str(alert["diaSource"]["diaObjectId"]),
            "detections": len(dets),
            "negative_psfFlux": sum(1 for x in dets if (x["psfFlux"] or 0) < 0),
            "kept_before_0_2": old,
            "points": sum(a.n for a in plain),
            "points_with_forced": sum(a.n for a in forced),
            "fallbacks": sum(a.fallbacks.total() for a in plain),
            "dropped": dict(sum((a.dropped for a in forced), Counter())),
        })  # fmt: skip
    return rows


def measure() -> tuple[dict[str, Any], MemoryState, list[dict[str, Any]]]:
    """The measurements (JSON-ready), the night's final state and its distinct detections."""
    alerts = night()
    d = distinct_detections(alerts)
    state, dropped = state_after(alerts)
    keys = sorted({(x["objectId"], {1: "g", 2: "r", 3: "i"}[x["fid"]]) for x in d})
    kinds = Counter(k or "none" for k in state.photometry(keys))
    near = [x["distnr"] is not None and 0 <= x["distnr"] < ph.ZTF_NEAR_ARCSEC for x in d]
    refs: dict[tuple[str, int], set[tuple[int, int]]] = defaultdict(set)
    for x, is_near in zip(d, near, strict=True):
        if is_near:
            refs[(x["objectId"], x["fid"])].add((x["field"], x["rcid"]))
    agree = band_agreement(state, d)
    best = max(agree["objects"], key=lambda o: (o["total"] - o["magpsf"]) * math.sqrt(o["pairs"]))
    result = {
        "ztf": {
            "alerts": len(alerts),
            "detections": len(d),
            "sources": len(keys),
            "near_fraction": float(np.mean(near)),
            "negative_fraction": float(np.mean([ph.ztf_sign(x["isdiffpos"]) < 0 for x in d])),
            "kinds": {k: kinds[k] for k in ("total", "difference", "none")},
            "sources_on_several_references": sum(len(v) > 1 for v in refs.values()),
            "dropped": dict(dropped),
            "references": references(d),
            "band_agreement": agree,
            "figure_object": best["object"],
        },
        "rubin": rubin(),
    }
    return result, state, d


def main(argv: Sequence[str] | None = None) -> int:
    """Measure and draw the figure (unless --report-only), save the JSON, then the page's part
    from it."""
    ap = argparse.ArgumentParser(
        prog="python -m research.survey_photometry",
        description=__doc__,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    ap.add_argument("--report-only", action="store_true", help="the page's part from the JSON")
    args = ap.parse_args(argv)
    if args.report_only:
        result = json.loads((OUT / "photometry.json").read_text())
    else:
        result, state, d = measure()
        figure(state, d, result["ztf"]["figure_object"], OUT / "ztf_dc_magnitudes.png")
        write_json(OUT / "photometry.json", result)
    write_block(DOC, markdown(result), BEGIN, END)
    print(markdown(result))
    return 0
