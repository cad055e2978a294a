"""The consumer / producer adapter the broker's app wires together.

It hands out plain `Record` / `Delivery` values (never confluent_kafka objects), so decoding, state
and inference stay testable without Kafka. Client configs come from `broker.kafka_conf` (the keys
the delivery guarantee rests on cannot be overridden); topic administration and the plain
partition reader live in `broker.kafka_admin`. These three are the only modules that import
confluent_kafka.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from broker.kafka_conf import consumer_config, producer_config
from broker.settings import BrokerSettings

log = logging.getLogger(__name__)

PartitionId = tuple[str, int]  # (topic, partition)


class KafkaFatalError(RuntimeError):
    """librdkafka reported a fatal error: the client is unusable and must be recreated."""


class ProduceError(RuntimeError):
    """librdkafka refused to queue a message (too large, unknown partition, bad argument):
    ``code`` is its error name, e.g. MSG_SIZE_TOO_LARGE."""

    def __init__(self, topic: str, code: str, message: str) -> None:
        super().__init__(f"cannot produce to {topic}: {code}: {message}")
        self.topic = topic
        self.code = code


def new_client(factory: Callable[[dict[str, Any]], Any], conf: dict[str, Any]) -> Any:
    """A librdkafka client; a configuration librdkafka refuses (an unknown property, a bad
    value) is a ValueError naming the property, with no other configuration value in it."""
    try:
        return factory(conf)
    except KafkaException as exc:
        err = exc.args[0]
        if err.code() != KafkaError._INVALID_ARG:
            raise
        raise ValueError(
            f"invalid Kafka client configuration: {err.str()} (see DMDT_KAFKA_EXTRA and the "
            "DMDT_* Kafka settings)"
        ) from None


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed message, as plain values."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None  # the message's Kafka timestamp, if it has one
    headers: tuple[tuple[str, bytes | None], ...] = ()


@dataclass(frozen=True, slots=True)
class Delivery:
    """The outcome of one produced message (offset -1 and `error` set when it failed)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    error: str | None = None
    fatal: bool = False


@dataclass(frozen=True)
class RebalanceHooks:
    """App callbacks on partition ownership changes; each gets [(topic, partition), ...].

    on_revoke: flush outputs and store offsets of the revoked partitions; the adapter then
    commits what is stored. on_lost: drop their state without committing (someone else owns them).
    """

    on_assign: Callable[[list[PartitionId]], None] | None = None
    on_revoke: Callable[[list[PartitionId]], None] | None = None
    on_lost: Callable[[list[PartitionId]], None] | None = None


def _ids(partitions: Sequence[TopicPartition]) -> list[PartitionId]:
    return [(tp.topic, tp.partition) for tp in partitions]


class AlertConsumer:
    """A subscribed consumer that polls batches of Records and stores offsets when told to."""

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        group_id: str | None = None,
        hooks: RebalanceHooks | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.hooks = hooks or RebalanceHooks()
        self._fatal: KafkaError | None = None
        conf = consumer_config(settings, group_id=group_id, overrides=overrides)
        conf["error_cb"] = self._on_error
        self._cooperative = "cooperative" in str(conf.get("partition.assignment.strategy", ""))
        self._consumer = new_client(Consumer, conf)
        self._paused: set[PartitionId] = set()  # paused by the app (e.g. restoring state)
        self._holding = False  # keepalive: every partition paused while the app waits
        self._held: list[Record] = []  # records a keepalive poll returned, served first

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
        log.warning("kafka consumer: %s", err)

    def _check_fatal(self) -> None:
        if self._fatal is not None:
            raise KafkaFatalError(str(self._fatal))

    def subscribe(self, topics: Sequence[str]) -> None:
        """Join the group on these topics; ownership changes go to the hooks."""
        self._consumer.subscribe(
            list(topics), on_assign=self._assigned, on_revoke=self._revoked, on_lost=self._lost
        )

    def _assigned(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Assign here (confluent-kafka then skips its own assign) so that the hook and a
        # keepalive can pause the new partitions before anything is fetched from them.
        if self._cooperative:
            self._consumer.incremental_assign(partitions)
        else:
            self._consumer.assign(partitions)
        if self._holding and partitions:
            self._consumer.pause(partitions)
        if self.hooks.on_assign is not None:
            self.hooks.on_assign(_ids(partitions))

    def _forget(self, partitions: list[TopicPartition]) -> None:
        gone = set(_ids(partitions))
        self._paused -= gone
        self._held = [r for r in self._held if (r.topic, r.partition) not in gone]

    def _revoked(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        if self.hooks.on_revoke is not None:
            self.hooks.on_revoke(_ids(partitions))
        try:
            self.commit()
        except KafkaException as exc:  # redelivery after the rebalance, never loss
            log.warning("commit on revoke failed: %s", exc)

    def _lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._forget(partitions)
        if self.hooks.on_lost is not None:
            self.hooks.on_lost(_ids(partitions))

    # ---- flow control: pause what must not be fetched, stay in the group while waiting

    def pause(self, partitions: Iterable[PartitionId]) -> None:
        """Stop fetching these partitions until `resume` (e.g. while their state is restored)."""
        parts = set(partitions) - self._paused
        self._paused |= parts
        if parts:
            self._consumer.pause([TopicPartition(t, p) for t, p in parts])

    def resume(self, partitions: Iterable[PartitionId]) -> None:
        """Fetch these partitions again (after a keepalive ends, if one is running)."""
        parts = set(partitions) & self._paused
        self._paused -= parts
        if parts and not self._holding:
            self._consumer.resume([TopicPartition(t, p) for t, p in parts])

    def keepalive(self) -> None:
        """Call while the app waits on a slow model or the output queue: the first call pauses
        every partition (librdkafka drops what it prefetched and refetches it on resume, so memory
        stops growing), each call serves the group (heartbeats, rebalance callbacks) and resets
        max.poll.interval.ms. `end_keepalive` resumes."""
        self._check_fatal()
        if not self._holding:
            self._holding = True
            self._consumer.pause(self._consumer.assignment())
        self._held += self._records(self._consumer.consume(1000, 0))

    def end_keepalive(self) -> None:
        """Resume fetching every owned partition the app has not paused itself."""
        if self._holding:
            self._holding = False
            active = [tp for tp in self._consumer.assignment()
                      if (tp.topic, tp.partition) not in self._paused]  # fmt: skip
            if active:
                self._consumer.resume(active)

    def poll_batch(self, max_messages: int, timeout_s: float) -> list[Record]:
        """Up to max_messages records, waiting at most timeout_s for the first ones."""
        self._check_fatal()
        if self._held:
            out, self._held = self._held[:max_messages], self._held[max_messages:]
            return out
        return self._records(self._consumer.consume(max_messages, timeout_s))

    def _records(self, messages: list[Any]) -> list[Record]:
        out: list[Record] = []
        for msg in messages:
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaFatalError(str(err))
                if err.code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka consume: %s", err)
                continue
            ts_type, ts = msg.timestamp()
            headers = cast("list[tuple[str, bytes | None]] | None", msg.headers())
            out.append(
                Record(
                    topic=cast(str, msg.topic()),  # set on every message without error
                    partition=cast(int, msg.partition()),
                    offset=cast(int, msg.offset()),
                    key=cast("bytes | None", msg.key()),
                    value=cast("bytes | None", msg.value()),
                    timestamp_ms=ts if ts_type != 0 else None,  # 0: TIMESTAMP_NOT_AVAILABLE
                    headers=tuple(headers) if headers else (),
                )
            )
        return out

    def rewind(self, records: Iterable[Record]) -> None:
        """Fetch these records again: each owned partition among them goes back to the first of
        their offsets (none of them was stored), also past records a keepalive held."""
        first: dict[PartitionId, int] = {}
        for r in records:
            key = (r.topic, r.partition)
            first[key] = min(first.get(key, r.offset), r.offset)
        self._held = [r for r in self._held if (r.topic, r.partition) not in first]
        owned = set(self.assignment())
        for (topic, partition), offset in first.items():
            if (topic, partition) in owned:
                self._consumer.seek(TopicPartition(topic, partition, offset))

    def store(self, records: Iterable[Record]) -> None:
        """Mark records as done: the next commit resumes after the highest offset per partition.

        Offsets of partitions this consumer no longer owns are dropped by librdkafka.
        """
        latest: dict[PartitionId, int] = {}
        for r in records:
            key = (r.topic, r.partition)
            latest[key] = max(latest.get(key, -1), r.offset)
        if not latest:
            return
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in latest.items()]
        try:
            self._consumer.store_offsets(offsets=offsets)
        except KafkaException as exc:
            # None of them is assigned (a rebalance took them): nothing to store.
            if exc.args[0].code() not in (KafkaError._STATE, KafkaError._UNKNOWN_PARTITION):
                raise
            log.info("offsets of unassigned partitions not stored: %s", sorted(latest))

    def commit(self) -> bool:
        """Commit stored offsets now (synchronously); False when there was nothing to commit."""
        try:
            self._consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError._NO_OFFSET:
                return False
            raise
        return True

    def committed(
        self, partitions: Sequence[PartitionId], timeout_s: float = 10.0
    ) -> dict[PartitionId, int]:
        """The group's committed offsets (-1001 when none) of some partitions."""
        tps = [TopicPartition(t, p) for t, p in partitions]
        return {
            (tp.topic, tp.partition): tp.offset
            for tp in self._consumer.committed(tps, timeout=timeout_s)
        }

    def partition_counts(self, topics: Iterable[str], timeout_s: float = 5.0) -> dict[str, int]:
        """Partitions of each of these topics that exists (cluster metadata); a topic whose
        metadata cannot be read now is left out (the caller asks again later)."""
        out: dict[str, int] = {}
        for topic in topics:
            try:
                meta = self._consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
            except KafkaException as exc:
                log.warning("partitions of %s unknown for now: %s", topic, exc)
                continue
            if meta is not None and meta.error is None and meta.partitions:
                out[topic] = len(meta.partitions)
        return out

    def assignment(self) -> list[PartitionId]:
        """Partitions this consumer owns now."""
        return _ids(self._consumer.assignment())

    def lag(self) -> dict[PartitionId, int]:
        """Messages behind the cached high watermark, per owned partition that has a position."""
        out: dict[PartitionId, int] = {}
        for tp in self._consumer.position(self._consumer.assignment()):
            _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
            if tp.offset >= 0 and high >= 0:
                out[(tp.topic, tp.partition)] = max(high - tp.offset, 0)
        return out

    def close(self) -> None:
        """Leave the group; with auto-commit on, librdkafka commits the stored offsets first."""
        self._consumer.close()

    def __enter__(self) -> AlertConsumer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AlertProducer:
    """An idempotent acks=all producer that remembers failed deliveries until taken."""

    def __init__(
        self, settings: BrokerSettings, *, overrides: Mapping[str, Any] | None = None
    ) -> None:
        self._fatal: KafkaError | None = None
        self._failures: list[Delivery] = []
        self.on_full: Callable[[], None] | None = None  # called while produce waits for room
        conf = producer_config(settings, overrides=overrides)
        conf["error_cb"] = self._on_error
        self._producer = new_client(Producer, conf)

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self._fatal = err
        log.warning("kafka producer: %s", err)

    def _check_fatal(self) -> None:
        if self._fatal is not None:
            raise KafkaFatalError(str(self._fatal))

    def produce(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | str | None = None,
        partition: int | None = None,
        headers: list[tuple[str, str | bytes | None]] | None = None,
        on_delivery: Callable[[Delivery], None] | None = None,
    ) -> None:
        """Queue one message (to ``partition``, else the key's); when the local queue is full,
        serve deliveries (and `on_full`) until it has room. Raises ProduceError when librdkafka
        refuses the message itself (MSG_SIZE_TOO_LARGE, ...)."""
        self._check_fatal()

        def delivered(err: KafkaError | None, msg: Any) -> None:
            if err is None:
                report = Delivery(msg.topic(), msg.partition(), msg.offset(), msg.key())
            else:
                report = Delivery(
                    topic, -1, -1, msg.key() if msg is not None else None, str(err), err.fatal()
                )
                self._failures.append(report)
            if on_delivery is not None:
                on_delivery(report)

        extra: dict[str, Any] = {} if partition is None else {"partition": partition}
        while True:
            try:
                self._producer.produce(
                    topic, value, key, headers=headers, on_delivery=delivered, **extra
                )
                return
            except BufferError:
                self._producer.poll(0.1)
                self._check_fatal()
                if self.on_full is not None:
                    self.on_full()
            except KafkaException as exc:
                err = exc.args[0]
                raise ProduceError(topic, err.name(), err.str()) from exc

    def poll(self, timeout_s: float = 0.0) -> int:
        """Serve delivery callbacks; returns how many were served."""
        served = int(self._producer.poll(timeout_s))
        self._check_fatal()
        return served

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for every queued message's delivery; returns how many are still in flight."""
        remaining = int(self._producer.flush(timeout_s))
        self._check_fatal()
        return remaining

    def take_failures(self) -> list[Delivery]:
        """Failed deliveries since the last call."""
        failures, self._failures = self._failures, []
        return failures

    def close(self, timeout_s: float = 30.0) -> int:
        """Flush for up to timeout_s, then release the client; returns messages left undelivered.

        Messages still in flight after the timeout are purged first: librdkafka's own close
        would otherwise wait for them up to ``message.timeout.ms`` (5 minutes by default).
        """
        remaining = int(self._producer.flush(timeout_s))
        if remaining:
            self._producer.purge()
            self._producer.flush(0)
        self._producer.close()
        return remaining

    def __enter__(self) -> AlertProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def deliver_then_store(
    producer: AlertProducer,
    consumer: AlertConsumer,
    records: Sequence[Record],
    timeout_s: float = 30.0,
) -> bool:
    """Wait for a batch's outputs, then store its input offsets; False (nothing stored) otherwise.

    At-least-once: an input's offset is stored only after every output produced for it (and for
    everything before it) is acknowledged by all in-sync replicas, so a crash anywhere before
    that point redelivers the input rather than losing its outputs.
    """
    if producer.flush(timeout_s) > 0 or producer.take_failures():
        return False
    consumer.store(records)
    return True
