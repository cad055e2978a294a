"""dmdt-broker replay: archived light curves and alerts -> an alert stream (Kafka topic or file).

The plan (`broker.tools.replay_plan.plan_replay`, pure) and the sources
(`broker.tools.replay_sources`) are wired here to a sink at a chosen pace: a Kafka topic through
`broker.kafka.AlertProducer` (idempotent, acks=all, keyed by source id), a stream file, or
nothing (a dry run).

Stream file: the magic ``DMDTRPL1``, then one record per message: a big-endian header
``>IId`` (key length, value length, sim_time in MJD), the key (UTF-8 source id), the value (the
framed message exactly as it would go to Kafka). `read_stream` reads it back.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple, Protocol

from tqdm import tqdm

from broker.avro import SCHEMA_DIR
from broker.decode import DecodedAlert
from broker.encode import lightcurve_record
from broker.registry import local_registry
from broker.settings import BrokerSettings
from broker.tools.replay_plan import (
    DEFAULT_VISIT_GAP_DAYS,
    ArchivedAlert,
    PlannedAlert,
    ReplayPlan,
    plan_replay,
)
from broker.tools.replay_sources import ReplaySource, ZtfFormat, load_source

if TYPE_CHECKING:
    from broker.kafka import AlertProducer

__all__ = [
    "DEFAULT_VISIT_GAP_DAYS",
    "ArchivedAlert",
    "PlannedAlert",
    "ReplayDeliveryError",
    "ReplayPlan",
    "ReplaySource",
    "ReplaySummary",
    "StreamRecord",
    "load_source",
    "plan_replay",
    "read_stream",
    "replay_to_file",
    "replay_to_topic",
]

log = logging.getLogger(__name__)

SECONDS_PER_DAY = 86_400.0
STREAM_MAGIC = b"DMDTRPL1"
_RECORD = struct.Struct(">IId")  # key length, value length, sim_time (MJD)
DELIVERY_TIMEOUT_MS = 60_000  # librdkafka message.timeout.ms for the replay's producer
_POLL_EVERY = 1000  # produce calls between serving delivery callbacks
_BAR_EVERY = 4096  # alerts between progress-bar updates


class ReplayDeliveryError(RuntimeError):
    """Some replayed messages were not acknowledged by the Kafka cluster."""


@dataclass(frozen=True)
class ReplaySummary:
    """What a replay sent, over which sky time, how fast."""

    destination: str
    survey: str
    alerts: int
    sources: int
    groups: int  # nights, or visits with a small gap
    bytes: int  # message values, keys excluded
    t_first: float  # MJD of the first and last detection sent
    t_last: float
    wall_s: float

    @property
    def rate(self) -> float:
        """Alerts per wall-clock second."""
        return self.alerts / self.wall_s if self.wall_s > 0 else float("inf")

    @property
    def span_days(self) -> float:
        """Sky time covered, in days."""
        return self.t_last - self.t_first if self.alerts else 0.0

    def __str__(self) -> str:
        span = (
            f"MJD {self.t_first:.3f} to {self.t_last:.3f} ({self.span_days:,.1f} days, "
            f"{self.groups:,} groups)"
            if self.alerts
            else "no sky time"
        )
        return (
            f"{self.alerts:,} alerts of {self.sources:,} {self.survey} sources to "
            f"{self.destination}: {span}; {self.bytes / 1e6:,.1f} MB in {self.wall_s:,.1f} s "
            f"({self.rate:,.0f} alerts/s)"
        )


class StreamRecord(NamedTuple):
    """One message of a stream file."""

    key: bytes
    value: bytes
    sim_time: float


def read_stream(path: str | Path) -> Iterator[StreamRecord]:
    """The messages of a stream file written by `replay_to_file`, in order."""
    with Path(path).open("rb") as fh:
        if fh.read(len(STREAM_MAGIC)) != STREAM_MAGIC:
            raise ValueError(f"{path}: not a dmdt-broker replay stream (no {STREAM_MAGIC!r})")
        while header := fh.read(_RECORD.size):
            if len(header) != _RECORD.size:
                raise ValueError(f"{path}: truncated record header")
            n_key, n_value, sim_time = _RECORD.unpack(header)
            key, value = fh.read(n_key), fh.read(n_value)
            if len(key) != n_key or len(value) != n_value:
                raise ValueError(f"{path}: truncated record")
            yield StreamRecord(key, value, sim_time)


# ---------------------------------------------------------------- sinks


class Sink(Protocol):
    """Where the replay's messages go."""

    destination: str

    def send(self, key: bytes, value: bytes, sim_time: float) -> None: ...

    def wait(self, seconds: float) -> None: ...

    def close(self) -> None: ...


class NullSink:
    """A dry run: messages are encoded and counted, sent nowhere."""

    destination = "nowhere (dry run)"

    def send(self, key: bytes, value: bytes, sim_time: float) -> None:
        """Drop the message."""

    def wait(self, seconds: float) -> None:
        """Sleep."""
        time.sleep(seconds)

    def close(self) -> None:
        """Nothing to release."""


class FileSink:
    """A stream file (see the module docstring)."""

    def __init__(self, path: str | Path) -> None:
        self.destination = f"file {path}"
        self._fh: BinaryIO = Path(path).open("wb")
        self._fh.write(STREAM_MAGIC)

    def send(self, key: bytes, value: bytes, sim_time: float) -> None:
        """Append one record."""
        self._fh.write(_RECORD.pack(len(key), len(value), sim_time))
        self._fh.write(key)
        self._fh.write(value)

    def wait(self, seconds: float) -> None:
        """Sleep."""
        time.sleep(seconds)

    def close(self) -> None:
        """Close the file."""
        self._fh.close()


class KafkaSink:
    """A topic, through the idempotent AlertProducer; `close` raises if anything was lost."""

    def __init__(self, producer: AlertProducer, topic: str, flush_timeout_s: float = 60.0) -> None:
        self.destination = f"topic {topic}"
        self.topic = topic
        self.flush_timeout_s = flush_timeout_s
        self._producer = producer
        self._since_poll = 0

    def send(self, key: bytes, value: bytes, sim_time: float) -> None:
        """Queue one message (blocks, serving deliveries, while the local queue is full)."""
        self._producer.produce(self.topic, value, key=key)
        self._since_poll += 1
        if self._since_poll >= _POLL_EVERY:
            self._producer.poll(0)
            self._since_poll = 0

    def wait(self, seconds: float) -> None:
        """Serve delivery reports until `seconds` have passed."""
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self._producer.poll(min(left, 0.1))

    def close(self) -> None:
        """Wait for every delivery; raise ReplayDeliveryError if any failed or is still pending."""
        pending = self._producer.flush(self.flush_timeout_s)
        failures = self._producer.take_failures()
        if pending or failures:
            first = failures[0].error if failures else "none"
            raise ReplayDeliveryError(
                f"{self.destination}: {len(failures)} message(s) failed (first error: {first}), "
                f"{pending} not acknowledged after {self.flush_timeout_s} s"
            )


# ---------------------------------------------------------------- the loop


def lightcurve_encoder(schema_dir: Path = SCHEMA_DIR) -> Callable[[DecodedAlert], bytes]:
    """encode_lightcurve_alert with the registry looked up once (it dominates the replay's time)."""
    registry = local_registry(schema_dir)
    return lambda alert: registry.encode("lightcurve_alert", lightcurve_record(alert))


def run_replay(
    plan: ReplayPlan,
    sink: Sink,
    *,
    speedup: float | None = None,
    progress: bool = False,
    schema_dir: Path = SCHEMA_DIR,
) -> ReplaySummary:
    """Send a plan to a sink, group by group at `speedup` x real time (None: at once).

    A group is released when wall time since the start reaches (its sim_time - the first
    group's) / speedup; the sink is closed (flushed) at the end, also after an error.
    """
    if speedup is not None and not speedup > 0:
        raise ValueError(f"speedup must be positive, got {speedup}")
    encode = lightcurve_encoder(schema_dir)
    start = time.monotonic()
    sent = n_bytes = shown = 0
    first_sim: float | None = None
    current: float | None = None
    bar = tqdm(total=len(plan), unit="alert", disable=not progress, smoothing=0.1)
    try:
        for key, alert, sim_time in plan:
            if sim_time != current:
                current = sim_time
                first_sim = sim_time if first_sim is None else first_sim
                if progress:
                    bar.set_postfix_str(f"MJD {sim_time:.1f}", refresh=False)
                if speedup is not None:
                    target = (sim_time - first_sim) * SECONDS_PER_DAY / speedup
                    delay = target - (time.monotonic() - start)
                    if delay > 0:
                        bar.update(sent - shown)
                        shown = sent
                        sink.wait(delay)
            value = alert if isinstance(alert, bytes) else encode(alert)
            sink.send(key.encode(), value, sim_time)
            sent += 1
            n_bytes += len(value)
            if sent - shown >= _BAR_EVERY:
                bar.update(sent - shown)
                shown = sent
    finally:
        try:
            sink.close()
        finally:
            bar.update(sent - shown)
            bar.close()
    return ReplaySummary(
        destination=sink.destination,
        survey=plan.survey,
        alerts=sent,
        sources=plan.n_sources,
        groups=plan.n_groups,
        bytes=n_bytes,
        t_first=plan.t_first,
        t_last=plan.t_last,
        wall_s=time.monotonic() - start,
    )


def _plan(
    source: str | Path | ReplaySource,
    *,
    min_points: int,
    ztf_format: ZtfFormat,
    **plan_args: Any,
) -> tuple[ReplaySource, ReplayPlan]:
    src = (
        source
        if isinstance(source, ReplaySource)
        else load_source(source, min_points=min_points, ztf_format=ztf_format)
    )
    return src, plan_replay(src.items, survey=src.survey, **plan_args)


def replay_to_topic(
    settings: BrokerSettings,
    source: str | Path | ReplaySource,
    topic: str,
    *,
    speedup: float | None = None,
    history_days: float = 0.0,
    visit_gap_days: float = DEFAULT_VISIT_GAP_DAYS,
    seed: int = 0,
    classes: Collection[str] | None = None,
    limit_sources: int | None = None,
    min_points: int = 20,
    ztf_format: ZtfFormat = "raw",
    partitions: int | None = None,
    progress: bool = False,
    producer_overrides: Mapping[str, Any] | None = None,
) -> ReplaySummary:
    """Replay a source to a Kafka topic (created with `partitions` first when given).

    speedup: sky seconds per wall second (86400: a day per second); None sends as fast as
    possible. Raises ReplayDeliveryError if any message is not acknowledged.
    """
    from broker.kafka import AlertProducer
    from broker.kafka_admin import create_topics, wait_for_topics

    _, plan = _plan(
        source,
        min_points=min_points,
        ztf_format=ztf_format,
        history_days=history_days,
        visit_gap_days=visit_gap_days,
        seed=seed,
        classes=classes,
        limit_sources=limit_sources,
    )
    if partitions is not None:
        create_topics(settings, {topic: partitions})
        wait_for_topics(settings, [topic])
    # A message not acknowledged within this time fails (and is reported) rather than holding
    # close() for librdkafka's default of 5 minutes (AlertProducer.close flushes without limit).
    overrides = dict(producer_overrides or {})
    if "message.timeout.ms" not in settings.kafka_extra:
        overrides.setdefault("message.timeout.ms", DELIVERY_TIMEOUT_MS)
    timeout_s = float(overrides.get("message.timeout.ms", DELIVERY_TIMEOUT_MS)) / 1000
    producer = AlertProducer(settings, overrides=overrides)
    try:
        return run_replay(
            plan,
            KafkaSink(producer, topic, flush_timeout_s=timeout_s + 5),
            speedup=speedup,
            progress=progress,
            schema_dir=settings.schema_dir,
        )
    finally:
        producer.close(timeout_s=0)


def replay_to_file(
    source: str | Path | ReplaySource,
    out: str | Path | None,
    *,
    speedup: float | None = None,
    history_days: float = 0.0,
    visit_gap_days: float = DEFAULT_VISIT_GAP_DAYS,
    seed: int = 0,
    classes: Collection[str] | None = None,
    limit_sources: int | None = None,
    min_points: int = 20,
    ztf_format: ZtfFormat = "raw",
    progress: bool = False,
    schema_dir: Path = SCHEMA_DIR,
) -> ReplaySummary:
    """Replay a source to a stream file (`read_stream` reads it), or nowhere when out is None."""
    _, plan = _plan(
        source,
        min_points=min_points,
        ztf_format=ztf_format,
        history_days=history_days,
        visit_gap_days=visit_gap_days,
        seed=seed,
        classes=classes,
        limit_sources=limit_sources,
    )
    sink: Sink = NullSink() if out is None else FileSink(out)
    return run_replay(plan, sink, speedup=speedup, progress=progress, schema_dir=schema_dir)
