"""Helpers of the streaming tests (pipeline, app, demo): small real models and CRTS replays."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path

import torch

from broker.kafka import Record
from broker.tools.replay import ReplaySource, load_source, read_stream, replay_to_file
from broker.tools.replay_plan import select_sources
from dmdt.cnn import LoadedModel, save_model
from dmdt.grids import get_grid
from dmdt.lightcurves import LightCurve
from dmdt.nets import NetConfig, build_net

CLASSES = ("EW", "EA", "RRab", "RRc", "RRd", "RS_CVn", "LPV")


def tiny_model(
    path: Path, seed: int = 0, classes: Sequence[str] = CLASSES, min_points: int = 20
) -> LoadedModel:
    """A shallow CNN with seeded random weights, saved as a real model artifact."""
    torch.manual_seed(seed)
    grid = get_grid()
    config = NetConfig("shallow", grid.shape, len(classes))
    return save_model(
        path,
        build_net(config),
        config,
        grid,
        classes,
        preprocessing={"min_points": min_points},
        training={"seed": seed},
    )


@cache
def _crts() -> tuple[LightCurve, ...]:
    return tuple(load_source("crts").items)  # type: ignore[arg-type]


def crts_curves(n_sources: int, seed: int = 0) -> list[LightCurve]:
    """The cleaned CRTS light curves a replay with limit_sources=n_sources, seed sends."""
    return select_sources(_crts(), limit_sources=n_sources, seed=seed)  # type: ignore[return-value]


def crts_records(
    tmp_path: Path, n_sources: int, topic: str = "lc", history_days: float = 0.0, seed: int = 0
) -> list[Record]:
    """A CRTS replay (one alert per detection, time order) as consumed Records of one partition."""
    out = tmp_path / f"crts-{n_sources}-{history_days}-{seed}.bin"
    replay_to_file(
        ReplaySource("crts", "crts", _crts(), "lightcurve"),
        out,
        limit_sources=n_sources,
        history_days=history_days,
        seed=seed,
    )
    return [
        Record(topic, 0, i, r.key, r.value, 1_700_000_000_000 + i)
        for i, r in enumerate(read_stream(out))
    ]


ZTF_NIGHT = Path(__file__).resolve().parent.parent / "data/ztf/ztfss18_public_20180713"


@cache
def ztf_night_messages() -> tuple[tuple[str, float, bytes], ...]:
    """The 418 real ZTF alerts of 2018-07-13 as Kafka messages, (objectId, candidate jd,
    message), in the order ZTF sent them (candidate time)."""
    import io

    import fastavro

    from broker.tools.testing import ztf_messages

    out = []
    for path in sorted(ZTF_NIGHT.rglob("*.avro")):
        for message in ztf_messages(path):
            (record,) = fastavro.reader(io.BytesIO(message))
            out.append((record["objectId"], record["candidate"]["jd"], message))  # type: ignore[call-overload, index]
    out.sort(key=lambda x: x[1])
    return tuple(out)


def ztf_night_records(topic: str = "ztf") -> list[Record]:
    """`ztf_night_messages` as consumed Records of one partition, keyed by objectId."""
    return [
        Record(topic, 0, i, oid.encode(), message, 1_531_440_000_000 + i)
        for i, (oid, _, message) in enumerate(ztf_night_messages())
    ]


def newest_format(name: str) -> str:
    """``name/<version>`` of the newest registered version of one of our schemas (what the
    broker writes now, and what `dmdt-broker read` names it)."""
    from broker.registry import local_registry

    registry = local_registry()
    entry = registry.entry(registry.latest_id(name))
    assert entry is not None
    return f"{name}/{entry['version']}"
