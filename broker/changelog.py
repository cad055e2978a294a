"""The state changelog: a compacted Kafka topic per input topic that lets any machine rebuild it.

Every row the broker persists is also produced, whole, to ``<group>-<input topic>-changelog``,
keyed by ``source_id\\0band`` and sent to the SAME partition number as the input partition the
source arrives on. Compaction keeps the last row per source, so the topic's size is the state's
size, and the owner of input partition p can rebuild p's state from changelog partition p.

Where a restore stops: Tansu reports wrong high watermarks and drops offset-commit metadata, and
neither a watermark nor the committed offset says which changelog writes are complete. The new
owner therefore produces an end marker (a tombstone with the reserved key ``\\0end``) to the
changelog partition and reads up to the marker's acknowledged offset: every write acknowledged
before it (every batch whose input offsets were committed) lies below it, on any broker that
acknowledges in log order, as Kafka does. The marker is a tombstone, so compaction removes it.

Pure apart from the `AlertProducer` and `PartitionReader` it is given (broker.kafka,
broker.kafka_admin).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from broker.kafka import AlertProducer, Delivery, ProduceError, Record
from broker.kafka_admin import PartitionReader, create_topics, topic_partitions, wait_for_topics
from broker.settings import BrokerSettings
from broker.state import PartitionId

log = logging.getLogger(__name__)

MARKER_KEY = b"\0end"  # never a source key: those start with a non-empty source id
CHANGELOG_CONFIG = {"cleanup.policy": "compact", "min.compaction.lag.ms": "60000"}
WRITE_TIMEOUT_S = 60.0


class ChangelogError(RuntimeError):
    """Changelog records were not acknowledged, or the topics do not match the inputs."""


def changelog_topic(group_id: str, input_topic: str) -> str:
    """The changelog topic of one input topic for one consumer group."""
    return f"{group_id}-{input_topic}-changelog"


def ensure_changelogs(
    settings: BrokerSettings,
    overrides: Mapping[str, Any] | None = None,
    timeout_s: float = 30.0,
) -> dict[str, str]:
    """Create missing changelog topics (compacted, one partition per input partition).

    Returns {input topic: changelog topic}. Raises TimeoutError while the input topics do not
    exist, ChangelogError when an existing changelog has fewer partitions than its input (a
    source's rows would have nowhere to go).
    """
    inputs = wait_for_topics(
        settings, list(settings.input_topics), overrides=overrides, timeout_s=timeout_s
    )
    names = {t: changelog_topic(settings.group_id, t) for t in inputs}
    exist = topic_partitions(settings, timeout_s=timeout_s, overrides=overrides)
    missing = {names[t]: n for t, n in inputs.items() if names[t] not in exist}
    if missing:
        create_topics(
            settings, missing, config=CHANGELOG_CONFIG, overrides=overrides, timeout_s=timeout_s
        )
    have = wait_for_topics(settings, list(names.values()), overrides=overrides, timeout_s=timeout_s)
    for topic, n in inputs.items():
        if have[names[topic]] < n:
            raise ChangelogError(
                f"{names[topic]} has {have[names[topic]]} partitions, its input {topic} has {n}"
            )
    return names


class Changelog:
    """Writes rows to the changelog partitions and reads them back for restores."""

    def __init__(
        self,
        topics: Mapping[str, str],
        producer: AlertProducer,
        reader: PartitionReader,
        *,
        timeout_s: float = WRITE_TIMEOUT_S,
    ) -> None:
        self.topics = dict(topics)  # input topic -> changelog topic
        self.producer = producer
        self.reader = reader
        self.timeout_s = timeout_s
        self.idle: Callable[[], None] | None = None  # called while waiting for acknowledgements

    def _wait(self, pending: Callable[[], int], what: str) -> None:
        deadline = time.monotonic() + self.timeout_s
        while pending() > 0:
            if time.monotonic() > deadline:
                raise ChangelogError(f"{what}: {pending()} not acknowledged in {self.timeout_s} s")
            self.producer.flush(0.2)
            if pending() > 0 and self.idle is not None:
                self.idle()

    def write(self, records: Sequence[tuple[PartitionId, bytes, bytes]]) -> dict[PartitionId, int]:
        """Produce (input partition, key, row) records and wait for every acknowledgement.

        Returns, per partition written, the offset after the last record written. Raises
        ChangelogError if any record failed: the caller must not persist or commit the batch.
        """
        last: dict[PartitionId, int] = {}
        failed: list[Delivery] = []
        pending = [len(records)]

        def delivered(d: Delivery) -> None:
            pending[0] -= 1
            if d.error is not None:
                failed.append(d)

        def on(part: PartitionId) -> Callable[[Delivery], None]:
            def cb(d: Delivery) -> None:
                delivered(d)
                if d.error is None:
                    last[part] = max(last.get(part, -1), d.offset)

            return cb

        try:
            for part, key, value in records:
                self.producer.produce(
                    self.topics[part[0]], value, key=key, partition=part[1], on_delivery=on(part)
                )
        except ProduceError as exc:  # those already queued are delivered or fail on their own
            raise ChangelogError(f"changelog record of {len(value)} bytes refused: {exc}") from exc
        self._wait(lambda: pending[0], "changelog records")
        if failed:
            raise ChangelogError(f"{len(failed)} changelog records failed: {failed[0].error}")
        return {part: offset + 1 for part, offset in last.items()}

    def end_marker(self, part: PartitionId) -> int:
        """Append an end marker to the partition's changelog; returns its offset."""
        got: list[Delivery] = []
        try:
            self.producer.produce(
                self.topics[part[0]], None, key=MARKER_KEY, partition=part[1],
                on_delivery=got.append,
            )  # fmt: skip
        except ProduceError as exc:
            raise ChangelogError(f"end marker of {part}: {exc}") from exc
        self._wait(lambda: 1 - len(got), "changelog end marker")
        if got[0].error is not None:
            raise ChangelogError(f"end marker of {part}: {got[0].error}")
        return got[0].offset

    def seek(self, part: PartitionId, offset: int) -> None:
        """Start reading the partition's changelog at offset."""
        self.reader.seek(self.topics[part[0]], part[1], offset)

    def read(self, max_records: int = 2000, timeout_s: float = 0.2) -> list[Record]:
        """The next records of the partition being read."""
        return self.reader.read(max_records, timeout_s)


def rows_of(records: Iterable[Record], end: int) -> tuple[list[tuple[bytes, bytes]], bool]:
    """(key, row) of the records below offset ``end``, markers and tombstones left out; and
    whether ``end`` was reached."""
    rows: list[tuple[bytes, bytes]] = []
    reached = False
    for r in records:
        if r.offset >= end:
            reached = True
            continue
        if r.value is not None and r.key is not None and r.key != MARKER_KEY:
            rows.append((r.key, r.value))
    return rows, reached
