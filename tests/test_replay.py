"""The replay: plan order, determinism, completeness, history windows, ZTF pass-through, the
stream file, the CLI, and an end-to-end run through the real Tansu broker."""

from __future__ import annotations

import time
from collections import defaultdict
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from broker.cli import build_parser, main
from broker.decode import DecodedAlert
from broker.decode_lightcurve import LightcurveDecoder
from broker.decode_ztf import ZtfDecoder
from broker.encode import decode_lightcurve_alert, encode_lightcurve_alert
from broker.settings import BrokerSettings
from broker.tools.replay import (
    ArchivedAlert,
    ReplaySource,
    load_source,
    plan_replay,
    read_stream,
    replay_to_file,
    replay_to_topic,
    run_replay,
)
from broker.tools.replay_plan import alert_ids
from dmdt.lightcurves import LightCurve, clean, read_crts_csv

TEST_DATA = Path(__file__).parent / "data"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def crts() -> ReplaySource:
    """The bundled 5,757 cleaned CRTS light curves."""
    return load_source("crts")


@pytest.fixture(scope="module")
def crts_subset(crts: ReplaySource) -> list[LightCurve]:
    """80 bundled CRTS light curves (a fixed random draw) plus the 6 test files, cleaned."""
    rng = np.random.default_rng(7)
    picked = [crts.items[i] for i in rng.choice(len(crts.items), 80, replace=False)]
    return [*picked, *load_source(TEST_DATA / "crts").items]  # type: ignore[list-item]


def _curve(source_id: str, t: list[float], label: str | None = None) -> LightCurve:
    n = len(t)
    return LightCurve(source_id, t, np.linspace(15, 16, n), np.full(n, 0.05), label=label)


def _shared_field(n_sources: int = 8, n_points: int = 25) -> list[LightCurve]:
    """Sources observed on the same exposures: every time is a tie between all of them."""
    times = list(53_000.0 + np.cumsum(np.r_[0, np.tile([0.01, 0.01, 3.0], n_points)])[:n_points])
    return [_curve(f"src{i:02d}", times, label="EW" if i % 2 else "RRab") for i in range(n_sources)]


def _points(lc: LightCurve) -> list[tuple[float, float, float]]:
    return list(zip(lc.t.tolist(), lc.m.tolist(), lc.err.tolist(), strict=True))


def _new(alert: DecodedAlert) -> tuple[float, float, float]:
    """The alert's new detection (the latest of its points)."""
    return float(alert.t[-1]), float(alert.m[-1]), float(alert.err[-1])


# ---------------------------------------------------------------- the plan


def test_plan_is_time_ordered_and_sends_every_detection_exactly_once(
    crts_subset: list[LightCurve],
) -> None:
    plan = plan_replay(crts_subset, survey="crts", seed=3)
    alerts = list(plan)
    assert len(alerts) == len(plan) == sum(len(lc) for lc in crts_subset)
    assert plan.n_sources == len(crts_subset)
    times = np.array([a.alert.alert_time for a in alerts])
    sims = np.array([a.sim_time for a in alerts])
    assert (np.diff(times) >= 0).all()
    assert (np.diff(sims) >= 0).all()
    assert (sims >= times).all()  # nothing is released before it was observed
    assert (times[0], times[-1]) == (plan.t_first, plan.t_last)
    sent: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    for key, alert, _sim in alerts:
        assert isinstance(alert, DecodedAlert)
        assert key == alert.source_id
        assert alert.n == 1  # no history asked
        assert alert.alert_time == alert.t[-1]
        sent[key].append(_new(alert))
    for lc in crts_subset:
        assert sent[lc.source_id] == _points(lc)
    ids = [a.alert.alert_id for a in alerts]  # type: ignore[union-attr]
    assert len(set(ids)) == len(ids)
    assert all(0 <= i < 2**63 for i in ids)


def test_plan_keeps_label_band_survey_and_position() -> None:
    lc = read_crts_csv(TEST_DATA / "crts" / "1001007044030-RS_CVn.csv")
    cleaned, _ = clean(lc)
    assert cleaned is not None
    first = next(iter(plan_replay([cleaned], survey="crts")))
    alert = first.alert
    assert isinstance(alert, DecodedAlert)
    assert first.key == alert.source_id == "1001007044030"  # the CSS id, not the file name
    assert (alert.label, alert.band, alert.survey) == ("RS_CVn", "V", "crts")
    assert (alert.ra, alert.dec) == (cleaned.ra, cleaned.dec)


def test_same_seed_same_plan_other_seed_differs_only_among_ties() -> None:
    curves = _shared_field()

    def run(seed: int, items: list[LightCurve]) -> list[tuple[str, int, float, float]]:
        return [
            (a.key, a.alert.alert_id, a.alert.alert_time, a.sim_time)  # type: ignore[union-attr]
            for a in plan_replay(items, seed=seed)
        ]

    first = run(0, curves)
    assert run(0, curves) == first
    assert run(0, curves[::-1]) == first  # input order does not matter
    other = run(1, curves)
    assert other != first
    assert [x[2:] for x in other] == [x[2:] for x in first]  # same times, same release times
    for (_, a), (_, b) in zip(
        groupby(first, key=lambda x: x[2]), groupby(other, key=lambda x: x[2]), strict=True
    ):
        assert sorted(a) == sorted(b)  # reordered only within a tie


def test_real_data_order_differs_between_seeds_only_within_ties(
    crts_subset: list[LightCurve],
) -> None:
    def by_time(seed: int) -> list[tuple[float, list[int]]]:
        plan = plan_replay(crts_subset, seed=seed)
        rows = [(a.alert.alert_time, a.alert.alert_id) for a in plan]  # type: ignore[union-attr]
        return [(t, [i for _, i in g]) for t, g in groupby(rows, key=lambda r: r[0])]

    a, b = by_time(0), by_time(1)
    assert [t for t, _ in a] == [t for t, _ in b]
    assert all(sorted(x) == sorted(y) for (_, x), (_, y) in zip(a, b, strict=True))


def test_limit_sources_and_classes_sample_by_seed(crts: ReplaySource) -> None:
    def chosen(seed: int, **kw: Any) -> set[str]:
        return {a.key for a in plan_replay(crts.items, seed=seed, limit_sources=12, **kw)}

    s0 = chosen(0)
    assert len(s0) == 12
    assert chosen(0) == s0
    assert chosen(1) != s0
    labels = {lc.source_id: lc.label for lc in crts.items}  # type: ignore[union-attr]
    rr = chosen(0, classes=["RRab", "RRc"])
    assert len(rr) == 12
    assert {labels[s] for s in rr} <= {"RRab", "RRc"}
    with pytest.raises(ValueError, match="Nope"):
        plan_replay(crts.items, classes=["Nope"])


@pytest.mark.parametrize("days", [0.0, 1.0, 30.0, np.inf])
def test_history_window_is_the_previous_detections_within_days(
    crts_subset: list[LightCurve], days: float
) -> None:
    curves = {lc.source_id: lc for lc in crts_subset[:30]}
    for _key, alert, _sim in plan_replay(curves.values(), history_days=days):
        assert isinstance(alert, DecodedAlert)
        lc = curves[alert.source_id]
        i = int(np.searchsorted(lc.t, alert.alert_time))
        assert lc.t[i] == alert.alert_time
        window = (lc.t <= alert.alert_time) & (lc.t >= alert.alert_time - days)
        np.testing.assert_array_equal(alert.t, lc.t[window])
        np.testing.assert_array_equal(alert.m, lc.m[window])
        np.testing.assert_array_equal(alert.err, lc.err[window])


def test_alert_ids_do_not_depend_on_seed_or_selection(crts_subset: list[LightCurve]) -> None:
    full = {
        (a.key, a.alert.alert_time): a.alert.alert_id  # type: ignore[union-attr]
        for a in plan_replay(crts_subset, seed=0)
    }
    for a in plan_replay(crts_subset, seed=5, limit_sources=10, history_days=30):
        assert full[(a.key, a.alert.alert_time)] == a.alert.alert_id  # type: ignore[union-attr]
    lc = crts_subset[0]
    np.testing.assert_array_equal(
        alert_ids("crts", lc.source_id, "V", lc.t), alert_ids("crts", lc.source_id, "V", lc.t)
    )
    assert not np.array_equal(
        alert_ids("crts", lc.source_id, "V", lc.t), alert_ids("ptf", lc.source_id, "V", lc.t)
    )


def test_groups_are_nights_or_visits() -> None:
    lcs = [_curve("a", [0.0, 0.2, 1.0, 3.0]), _curve("b", [0.1, 1.05, 1.4])]
    night = [(a.alert.alert_time, a.sim_time) for a in plan_replay(lcs, visit_gap_days=0.5)]  # type: ignore[union-attr]
    assert night == [
        (0.0, 0.2), (0.1, 0.2), (0.2, 0.2),
        (1.0, 1.4), (1.05, 1.4), (1.4, 1.4),
        (3.0, 3.0),
    ]  # fmt: skip
    plan = plan_replay(lcs, visit_gap_days=0.0)
    assert plan.n_groups == 7
    assert all(a.sim_time == a.alert.alert_time for a in plan)  # type: ignore[union-attr]


def test_plan_refuses_unclean_or_duplicate_curves() -> None:
    with pytest.raises(ValueError, match="clean it first"):
        plan_replay([_curve("a", [2.0, 1.0])])
    with pytest.raises(ValueError, match="clean it first"):
        plan_replay([_curve("a", [1.0, 1.0])])
    with pytest.raises(ValueError, match="two light curves"):
        plan_replay([_curve("a", [1.0]), _curve("a", [2.0])])
    with pytest.raises(ValueError, match="history_days"):
        plan_replay([_curve("a", [1.0])], history_days=-1)


# ---------------------------------------------------------------- sources


def test_readers_for_every_source_kind() -> None:
    folder = load_source(TEST_DATA / "crts")
    assert (folder.survey, folder.payload, len(folder.items)) == ("crts", "lightcurve", 6)
    assert {x.label for x in folder.items} >= {"RRab", "RS_CVn", "beta_lyrae", "Cep_II"}
    catalina = load_source(TEST_DATA / "catalina" / "css_release_cone.csv", min_points=2)
    assert catalina.survey == "crts"
    assert catalina.items
    assert all(x.label is None for x in catalina.items)
    ptf = load_source(TEST_DATA / "ptf", min_points=2)
    assert ptf.survey == "ptf"
    assert {x.band for x in ptf.items} <= {"g", "R"}  # type: ignore[union-attr]
    plan = plan_replay(ptf.items, survey=ptf.survey)
    assert {a.alert.band for a in plan} <= {"g", "R"}  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="class"):
        plan_replay(ptf.items, classes=["RRab"])
    with pytest.raises(FileNotFoundError):
        load_source("no-such-dataset")


def test_ztf_files_pass_through_byte_identical_in_candidate_time_order(
    ztf_files: list[Path], tmp_path: Path
) -> None:
    source = load_source(REPO / "data" / "ztf")
    assert (source.survey, source.payload) == ("ztf", "ztf")
    file_bytes = {p.read_bytes() for p in ztf_files}
    plan = list(plan_replay(source.items, survey=source.survey, history_days=30))
    assert len(plan) == len(ztf_files)  # one alert per file in this data
    assert {a.alert for a in plan} == file_bytes  # byte for byte
    decoder = ZtfDecoder()
    times = []
    for key, raw, _sim in plan:
        assert isinstance(raw, bytes)
        decoded = decoder(raw)
        assert key == decoded[0].source_id  # keyed by objectId
        times.append(decoded[0].alert_time)
    assert times == sorted(times)
    out = tmp_path / "ztf.stream"
    summary = replay_to_file(source, out)
    assert summary.alerts == len(plan)
    assert [r.value for r in read_stream(out)] == [a.alert for a in plan]


def test_ztf_converted_to_lightcurve_schema_keeps_the_candidate_band(
    ztf_files: list[Path],
) -> None:
    source = load_source(REPO / "data" / "ztf", ztf_format="lightcurve")
    assert source.payload == "lightcurve"
    decoder = ZtfDecoder()
    by_candid = {}
    for path in ztf_files:
        bands = decoder(path.read_bytes())
        by_candid[bands[0].alert_id] = bands
    for item in source.items:
        assert isinstance(item, ArchivedAlert)
        alert = item.payload
        assert isinstance(alert, DecodedAlert)
        same = by_candid[item.alert_id][0]  # the candidate's band, the kind it proposes
        assert (alert.band, alert.photometry) == (same.band, same.photometry)
        np.testing.assert_array_equal(alert.t, same.t)
        np.testing.assert_array_equal(alert.m, same.m)
        again = decode_lightcurve_alert(encode_lightcurve_alert(alert))  # the kind travels
        assert again.photometry == alert.photometry
    kinds = {item.payload.photometry for item in source.items}  # type: ignore[union-attr]
    assert kinds == {"total", "difference"}


# ---------------------------------------------------------------- sending


def test_stream_file_round_trips_through_the_lightcurve_decoder(tmp_path: Path) -> None:
    source = load_source(TEST_DATA / "crts")
    out = tmp_path / "crts.stream"
    summary = replay_to_file(source, out, history_days=30, seed=2)
    plan = list(plan_replay(source.items, history_days=30, seed=2))
    records = list(read_stream(out))
    assert summary.alerts == len(records) == len(plan)
    assert summary.sources == 6
    decoder = LightcurveDecoder()
    for record, planned in zip(records, plan, strict=True):
        (alert,) = decoder(record.value)
        expected = planned.alert
        assert isinstance(expected, DecodedAlert)
        assert record.key.decode() == planned.key
        assert record.sim_time == planned.sim_time
        assert (alert.alert_id, alert.label, alert.alert_time) == (
            expected.alert_id,
            expected.label,
            expected.alert_time,
        )
        np.testing.assert_array_equal(alert.t, expected.t)
        np.testing.assert_array_equal(alert.m, expected.m)


class _Recorder:
    destination = "memory"

    def __init__(self) -> None:
        self.sent: list[tuple[float, float]] = []  # (wall time, sim time)
        self.closed = False

    def send(self, key: bytes, value: bytes, sim_time: float) -> None:
        self.sent.append((time.monotonic(), sim_time))

    def wait(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        self.closed = True


def test_speedup_paces_groups() -> None:
    lcs = [_curve("a", [0.0, 1.0, 2.0]), _curve("b", [0.01, 2.01])]
    sink = _Recorder()
    start = time.monotonic()
    summary = run_replay(plan_replay(lcs), sink, speedup=86_400 * 10)  # a day in 0.1 s
    assert sink.closed
    assert summary.alerts == 5
    assert summary.groups == 3
    offsets = [(w - start, s) for w, s in sink.sent]
    for wall, sim in offsets:
        assert wall >= (sim - 0.01) / 10 - 0.005  # a group goes out when its last point is due
    assert offsets[-1][0] < 1.0


def test_cli_help_explains_every_option_with_its_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    replay_parser = build_parser()._subparsers._group_actions[0].choices["replay"]  # type: ignore[union-attr]
    for action in replay_parser._actions:
        for flag in action.option_strings:
            assert flag in text
        if action.option_strings and action.default not in (None, False, "==SUPPRESS=="):
            assert "default" in (action.help or ""), action.option_strings


def test_cli_replay_to_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "s.stream"
    args = ["replay", str(TEST_DATA / "crts"), "--out", str(out), "--quiet", "--seed", "4"]
    assert main([*args, "--classes", "RRab", "--history-days", "inf"]) == 0
    assert "alerts of 3 crts sources" in capsys.readouterr().out
    decoder = LightcurveDecoder()
    alerts = [decoder(r.value)[0] for r in read_stream(out)]
    assert {a.label for a in alerts} == {"RRab"}
    last = max(alerts, key=lambda a: a.alert_time)
    assert last.n > 1  # whole history
    assert main(["replay", str(TEST_DATA / "ptf"), "--dry-run", "--classes", "RRab"]) == 2


def test_undelivered_messages_fail_the_replay_without_hanging() -> None:
    from broker.tools.replay import ReplayDeliveryError
    from broker.tools.testing import free_port

    nobody = BrokerSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
    start = time.monotonic()
    with pytest.raises(ReplayDeliveryError, match="failed"):
        replay_to_topic(
            nobody,
            load_source(TEST_DATA / "crts"),
            "lost",
            limit_sources=1,
            producer_overrides={"message.timeout.ms": 1000},
        )
    assert time.monotonic() - start < 15


# ---------------------------------------------------------------- end to end, real broker


@pytest.mark.kafka
def test_replay_through_tansu_gives_back_the_cleaned_light_curves(
    crts: ReplaySource,
    kafka_settings: BrokerSettings,
    make_topic: Any,
    consumer_overrides: dict[str, Any],
) -> None:
    from broker.kafka import AlertConsumer

    topic = make_topic(partitions=3)
    summary = replay_to_topic(
        kafka_settings, crts, topic, limit_sources=20, history_days=30, seed=11
    )
    expected = {
        p.key: None for p in plan_replay(crts.items, limit_sources=20, seed=11)
    }  # the 20 drawn source ids
    curves = {lc.source_id: lc for lc in crts.items if lc.source_id in expected}
    assert len(curves) == summary.sources == 20
    assert summary.alerts == sum(len(lc) for lc in curves.values())

    decoder = LightcurveDecoder()
    points: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    ids: set[int] = set()
    with AlertConsumer(kafka_settings, overrides=consumer_overrides) as consumer:
        consumer.subscribe([topic])
        deadline = time.monotonic() + 60
        received = 0
        while received < summary.alerts and time.monotonic() < deadline:
            for record in consumer.poll_batch(1000, 0.2):
                (alert,) = decoder(record.value)  # type: ignore[arg-type]
                assert record.key == alert.source_id.encode()
                points[alert.source_id].append(_new(alert))
                partitions[alert.source_id].add(record.partition)
                ids.add(alert.alert_id)
                assert alert.label == curves[alert.source_id].label
                received += 1
    assert received == summary.alerts
    assert len(ids) == received  # no duplicates
    assert all(len(p) == 1 for p in partitions.values())  # a source lives on one partition
    for source_id, lc in curves.items():
        # in time order per source (one partition keeps order), equal to the cleaned curve
        assert points[source_id] == _points(lc)
