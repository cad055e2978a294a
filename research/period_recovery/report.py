"""docs/periods.md from the benchmark's JSON (docs/periods/recovery.json, design.json, speed.json):
recovery rates by survey, shape, amplitude and number of points; no recomputation."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from research.period_recovery import benchmark as pr

AMPLITUDES = (1.0, 2.0, 3.0, 5.0, 10.0)
SEARCH = (
    "The search (`dmdt/periodogram.py`, `dmdt/periods.py`; features version 5). (1) Each"
    " source's periodogram on a grid sized to its own baseline T: steps of at most 1 / (2 T)"
    " cycles/day up to 10 cycles/day (the seven classes' shortest periods are contact binaries"
    " of ~0.22 days, whose strongest peak is at twice their frequency); the weighted sums over"
    " points come from one FFT per source (a non-uniform FFT: Gaussian spreading, 8 taps, FFT"
    " length >= 3x the grid frequencies), sources of equal FFT length in one batched call; the"
    " power is the weighted mean-subtracted Schuster power, within ~5 % of the generalised"
    " Lomb-Scargle (GLS), and its 16 highest local maxima are kept in a heap, not by sorting the"
    " grid. (2) Each peak refined by the exact GLS (three values half a step apart moved uphill,"
    " then a quarter of that, then a parabola). (3) Candidates: the 4 best refined peaks, their"
    " halves and doubles, the daily aliases (f +- 1.0027 cycles/day, refined) of the best two,"
    " and the fundamentals of the 3 best peaks of the power summed over 6 harmonics (a detached"
    " binary spreads its power over many). (4) Each candidate scored by the Bayesian"
    " information criterion of its best Fourier fit, n ln(RSS_K) + (2K + 1) ln n over K = 1..6"
    " harmonics: an alias fits worse, and a double (2P) fits as well as P only with more terms,"
    " which the criterion charges; the best three candidates in the RR Lyrae range are also"
    " scored with a second sinusoid in the residuals at the double-mode period ratio"
    " (0.735-0.755 either way, not a daily alias of the first; its gain charged 3 ln n and"
    " 2 ln of the frequencies tried). The period is the candidate of best criterion; the"
    " second mode, the best residual sinusoid there."
)
SPEED = (
    "`python benchmarks/bench_periods.py --json docs/periods/speed.json` (one core, best of"
    " interleaved rounds). Today's implementation is version 4's `dmdt/periodic.py`, read from"
    " git (the commit before version 5), called one source at a time as the broker called it;"
    " version 5 is called once per batch of due refreshes, as broker/features.py now calls it"
    " (`HybridClassifier.features_many`). The stream workload is the refreshes the default 10 %"
    " policy makes while CRTS curves are replayed round robin (most of them on young, short"
    " baselines: where a baseline-sized grid saves most); the whole-curve workload is every"
    " curve whole (~3,000-day baselines: the worst case). light-curve's `Periodogram` runs on a"
    " grid of the same highest frequency and at least as fine a step, one source per call. In"
    " the broker (docs/streaming.md, `python benchmarks/bench_hybrid.py --hybrid"
    " models/hybrid-7-stream --policies 0.1`, CNN and hybrid interleaved) hybrid-7-stream at the"
    " default 10 % refresh sustained 0.78 of the CNN's alerts/s (2,134 against 2,751): the"
    " target, at least the CNN's rate, is not met; a refresh costs 1.9 ms there, the batched"
    " LightGBM call ~0.1 ms per alert."
)
GPU = (
    "## On a GPU\n\n"
    "`dmdt/periodogram_torch.py` is the grid stage in torch: the same spreading (float32 grids),"
    " one batched `rfft` per FFT length, the same power, `topk` of the local maxima, the same"
    " harmonic sums. `dmdt.periods.search` uses it when torch sees CUDA (`DMDT_PERIODS_DEVICE`"
    " overrides: `cpu`, `cuda`, `torch-cpu`); the stages after the grid stay on the CPU (numba,"
    " threads). Tested on CPU (`tests/test_periods_torch.py`, torch on CPU against the numba"
    " path on 75 CRTS curves and their young cuts): the same grid peaks, powers within 1e-5"
    " (float32 rounding: another order of additions, another FFT), the same periods and every"
    " feature equal but `period_snr_*` (within 1e-5). Near-ties of grid peaks can in principle"
    " pick another peak to refine; none in those tests. No GPU was lent to this work, so no"
    " figure on one is quoted: `python benchmarks/bench_periods_gpu.py` (on a GPU machine)"
    " prints refreshed sources per second with the grid stage on the GPU and the rest on the"
    " CPU's threads, the CPU-only rates beside them, and how many periods and classes of the"
    " shipped stream model agree between the two paths. The target there (>= 50,000"
    " refreshed sources per second) needs the stages after the grid on the GPU too: on the CPU"
    " they cost about 1 ms per source per core."
)
MULTIBAND = (
    "## Several bands\n\n"
    "`dmdt.periods_multiband.multiband_period({band: (t, m, err), ...})` returns one"
    " `MultibandPeriod` (period, joint power, harmonics, criterion margin, runner-up, bands used,"
    " each band's weight) for a source seen in several bands: the bands' periodograms on one"
    " grid (the union baseline's), averaged with weights chi^2 of each band about its mean"
    " (light-curve's multi-band normalisation); the peaks refined by the same average of exact"
    " GLS powers; the candidates scored by one criterion of a shared-frequency Fourier fit,"
    " each band with its own mean and amplitudes. Tested on injected two-band signals (the joint"
    " period right on 48 of 60, the better band alone on 38) and on EROS-1's B and R against"
    " its catalogue (`tests/test_periods_multiband.py`; the table above)."
)
TARGET_AMP, TARGET_N = 3.0, 60  # the target: amplitude >= 3 median errors, >= 60 points
SURVEY_NAMES = {"crts": "CRTS", "eros1": "EROS-1", "ztf": "ZTF alerts"}


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def target_region(survey: str) -> tuple[str, dict[str, Any]]:
    """The target region for ``survey`` (ZTF alerts never reach 60 points: all sizes)."""
    if survey == "ztf":
        return "amplitude >= 3, 20-40 points (no ZTF alert curve has 60)", {
            "amp": lambda a: a >= TARGET_AMP
        }
    return "amplitude >= 3, >= 60 points", {
        "amp": lambda a: a >= TARGET_AMP,
        "n": lambda k: k >= TARGET_N,
    }


def summary_lines(methods: dict[str, dict], surveys: Sequence[str]) -> list[str]:
    lines = [
        "| search | survey | region | trials | recovered within 1 % | aliases | double modes"
        " recovered | ms per curve |",
        "|---|---|---|---:|---:|---:|---:|---:|",
        "| target | | amplitude >= 3, >= 60 points | | >= 95 % | < 3 % | | |",
    ]
    for name, res in methods.items():
        for survey in surveys:
            region, sel = target_region(survey)
            r = pr.rates(res["cells"], survey, **sel)
            if not r["total"]:
                continue
            lines.append(
                f"| `{name}` | {SURVEY_NAMES[survey]} | {region} | {r['total']} |"
                f" {pct(r['recovered'])} | {pct(r['alias'])} | {pct(r['double'])} |"
                f" {res['ms_per_curve']:.1f} |"
            )
    return lines


def _equal_to(value: float) -> Callable[[float], bool]:
    return lambda x: bool(x == value)


def grid_lines(res: dict, survey: str, key: str, shapes: Sequence[str] = pr.SHAPES) -> list[str]:
    sizes = pr.SIZES[survey]
    lines = [
        "| amplitude \\ points | " + " | ".join(str(n) for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for a in AMPLITUDES:
        cells = []
        for n in sizes:
            r = pr.rates(res["cells"], survey, shapes, _equal_to(a), _equal_to(n))
            cells.append(pct(r[key]) if r["total"] else "-")
        lines.append(f"| {a:g} | " + " | ".join(cells) + " |")
    return lines


def shape_lines(methods: dict[str, dict], survey: str) -> list[str]:
    region, sel = target_region(survey)
    lines = [
        f"Recovered / aliases (%) by shape, {region}:",
        "",
        "| search | " + " | ".join(pr.SHAPES) + " |",
        "|---|" + "---|" * len(pr.SHAPES),
    ]
    for name, res in methods.items():
        cells = []
        for shape in pr.SHAPES:
            r = pr.rates(res["cells"], survey, (shape,), **sel)
            cells.append(f"{pct(r['recovered'])} / {pct(r['alias'])}" if r["total"] else "-")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return lines


def design_lines(where: Path) -> list[str]:
    """The design variants on the development trials (``--design``)."""
    if not where.exists():
        return []
    doc = json.loads(where.read_text())
    lines = [
        "## How the search was chosen",
        "",
        SEARCH,
        "",
        f"Each choice against its alternatives on the development trials (seed {doc['seed']},"
        f" {doc['per_cell']} per cell; amplitude 3, 5, 10; CRTS 60-200 points, EROS-1 60-100; the"
        " committed figures above use seed 0). Recovered / aliases / double modes recovered (%);"
        " per shape, recovered (`python -m research.period_recovery --design`):",
        "",
        "| variant | CRTS | EROS-1 | CRTS by shape: " + ", ".join(pr.SHAPES) + " |",
        "|---|---|---|---|",
    ]
    for name, row in doc["variants"].items():
        cells = []
        for survey in ("crts", "eros1"):
            r = row[survey]["all"]
            cells.append(f"{pct(r['recovered'])} / {pct(r['alias'])} / {pct(r['double'])}")
        shapes = ", ".join(pct(row["crts"][s]["recovered"]) for s in pr.SHAPES)
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {shapes} |")
    return [*lines, ""]


def speed_lines(where: Path) -> list[str]:
    """The speed run's table (benchmarks/bench_periods.py --json docs/periods/speed.json)."""
    if not where.exists():
        return []
    doc = json.loads(where.read_text())
    lines = [
        "## Speed",
        "",
        SPEED,
        "",
        f"{doc.get('setting', '')}",
        "",
        "| row | ms per refreshed source |",
        "|---|---:|",
    ]
    lines += [f"| {name} | {ms:.2f} |" for name, ms in doc["ms"].items()]
    lines += ["", "| ratio (same run, interleaved) | |", "|---|---:|"]
    lines += [f"| {name} | {r:.2f}x |" for name, r in doc["ratios"].items()]
    return [*lines, ""]


def catalogue_lines(cat: dict | None) -> list[str]:
    """EROS-1's catalogue periods against the periods found (``--catalogue``)."""
    if not cat:
        return []
    classes = list(cat["classes"])
    lines = [
        "## Real periods: EROS-1's catalogue",
        "",
        f"Every EROS-1 object with both bands ({cat['n']:,}:"
        + ", ".join(f" {c} {k:,}" for c, k in cat["classes"].items())
        + "). The catalogue period is the upstream `period / div_period` (the upstream `period` is"
        " a multiple of it: `div_period` 1-10; divided, the RR Lyrae stars fall at 0.33-0.75 days,"
        " as they should). Share of objects whose period found is within 1 % of it"
        " (`python -m research.period_recovery --catalogue`):",
        "",
        "| search | all | " + " | ".join(classes) + " |",
        "|---|---:|" + "---:|" * len(classes),
    ]
    for name, r in cat["recovered"].items():
        lines.append(
            f"| {name} | {pct(r['all'])} | " + " | ".join(pct(r[c]) for c in classes) + " |"
        )
    return [*lines, ""]


def write_doc(doc: dict, path: Path, command: str) -> None:
    methods = doc["methods"]
    surveys = [s for s in ("crts", "eros1", "ztf") if any(
        pr.rates(m["cells"], s)["total"] for m in methods.values())]  # fmt: skip
    lines = [
        "# Period recovery: injected signals in real cadences",
        "",
        f"Generated by `{command}` (research/period_recovery/benchmark.py; results in"
        " `docs/periods/recovery.json`).",
        "",
        "Each trial takes one real light curve's time stamps and errors, keeps n of its points "
        "at random, and replaces its magnitudes by a signal of known shape and period plus "
        "Gaussian noise of the real errors. Cadences: CRTS (the 4,607 curves of the five folds, "
        "every type; never the held-out part; median 302 points over 2,990 days), EROS-1 (B and "
        "R, each a cadence; about 120 points over 890 days), the bundled ZTF alerts (each band "
        "with at least 20 detections: 44 curves, 20-46 points over at most 30 days). Amplitude: "
        "peak-to-peak, in units of the curve's median error. Shapes and period ranges (days): "
        "sinusoid 0.1-100 (at most a third of the baseline), RRab-like sawtooth 0.45-0.9, "
        "RRc-like 0.25-0.42, detached eclipsing (two Gaussian eclipses 2-5 % of the cycle wide, "
        "the secondary 20-70 % as deep) 0.5-10, contact eclipsing (minima 10-30 % unequal) "
        "0.25-0.8, double mode (fundamental 0.45-0.6, the dominant overtone 0.742-0.748 of it, "
        "the fundamental's amplitude 40-80 % of the overtone's). The true period of an "
        "eclipsing binary is the orbital one (the Lomb-Scargle peak of a contact binary is at "
        "half of it); of a double mode, the dominant overtone's.",
        "",
        "Outcomes: recovered, the found period within 1 % of the true one; alias, within 1 % of"
        " P/3, P/2, 2P, 3P or a daily alias 1 / |f +- k 1.0027| (k = 1, 2; of f, 2f and f/2);"
        " double modes recovered: both periods found within 1 %, in either order (of the"
        f" double-mode trials). {doc.get('per_cell', '')} trials per (survey, shape, amplitude,"
        f" points) cell, seed {doc.get('seed', '')}. ms per curve: the search's wall time per"
        " injected curve, one thread, as the benchmark calls it (batches of 64); the speed"
        " comparison proper is benchmarks/bench_periods.py.",
        "",
        "## Summary",
        "",
        *summary_lines(methods, surveys),
        "",
    ]
    for name, res in methods.items():
        lines += [f"## `{name}`", "", res["description"], ""]
        for survey in surveys:
            lines += [f"### {SURVEY_NAMES[survey]}", "", "Recovered within 1 % (%, all shapes):"]
            lines.append("")
            lines += grid_lines(res, survey, "recovered")
            lines += ["", "Aliases (%, all shapes):", ""]
            lines += grid_lines(res, survey, "alias")
            lines += ["", "Double modes recovered (%, of the double-mode trials):", ""]
            lines += grid_lines(res, survey, "double", ("double_mode",))
            lines.append("")
    for survey in surveys:
        lines += [f"## By shape, {SURVEY_NAMES[survey]}", "", *shape_lines(methods, survey), ""]
    lines += catalogue_lines(doc.get("eros_catalogue"))
    lines += design_lines(path.parent / "periods" / "design.json")
    lines += speed_lines(path.parent / "periods" / "speed.json")
    lines += [GPU, "", MULTIBAND, ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
