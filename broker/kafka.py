"""The only module that imports confluent_kafka: a thin adapter the broker's app wires together.

It hands out plain `Record` / `Delivery` values (never confluent_kafka objects), so decoding, state
and inference stay testable without Kafka. Every librdkafka key is rendered from `BrokerSettings`
(`kafka_config()`), then role defaults, then the settings' passthrough, then caller overrides;
the keys the delivery guarantee rests on cannot be overridden.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import confluent_kafka
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from broker.settings import BrokerSettings

log = logging.getLogger(__name__)

PartitionId = tuple[str, int]  # (topic, partition)

CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": True,  # commits only what was stored, every auto.commit.interval.ms
    "auto.commit.interval.ms": 5000,
    "auto.offset.reset": "earliest",
    "partition.assignment.strategy": "cooperative-sticky",
    "enable.partition.eof": False,
}
# Offsets are stored by the app after a batch's outputs are delivered (at-least-once).
CONSUMER_INVARIANTS: dict[str, Any] = {"enable.auto.offset.store": False}
PRODUCER_DEFAULTS: dict[str, Any] = {"linger.ms": 20, "compression.type": "zstd"}
PRODUCER_INVARIANTS: dict[str, Any] = {"enable.idempotence": True, "acks": "all"}


class KafkaFatalError(RuntimeError):
    """librdkafka reported a fatal error: the client is unusable and must be recreated."""


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


def _norm(value: Any) -> str:
    text = str(value).lower()
    return {"-1": "all", "1": "true", "0": "false"}.get(text, text)


@functools.cache
def property_scopes() -> dict[str, str]:
    """librdkafka's own table of configuration properties: name -> "C" (consumer only), "P"
    (producer only) or "*", read from the library bundled with confluent-kafka
    (``rd_kafka_conf_properties_show``), so it matches the version in use. Empty if the library
    cannot be reached this way (nothing is filtered then)."""
    try:
        folder = Path(confluent_kafka.__file__).parent
        libs = sorted((folder.parent / "confluent_kafka.libs").glob("librdkafka*"))
        lib = ctypes.CDLL(str(libs[0]) if libs else "librdkafka.so.1")
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        libc.fopen.restype = ctypes.c_void_p
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "properties.md")
            fp = libc.fopen(path.encode(), b"w")
            lib.rd_kafka_conf_properties_show(ctypes.c_void_p(fp))
            libc.fclose(ctypes.c_void_p(fp))
            text = Path(path).read_text()
    except (OSError, IndexError, AttributeError) as exc:
        log.debug("librdkafka property scopes unavailable: %s", exc)
        return {}
    scopes: dict[str, str] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) > 2 and cells[1] in ("C", "P", "*") and cells[0]:
            scopes.setdefault(cells[0], cells[1])
    return scopes


def _for_role(conf: dict[str, Any], role: str) -> dict[str, Any]:
    """Drop the properties librdkafka only knows for the other role (the passthrough setting is
    shared by consumers, producers and admin clients; librdkafka would warn and ignore them)."""
    other = "P" if role == "consumer" else "C"
    scopes = property_scopes()
    return {k: v for k, v in conf.items() if scopes.get(k) != other}


def _render(
    settings: BrokerSettings,
    defaults: Mapping[str, Any],
    invariants: Mapping[str, Any],
    overrides: Mapping[str, Any] | None,
    role: str,
) -> dict[str, Any]:
    merged = {**defaults, **settings.kafka_config(), **(overrides or {})}
    conf: dict[str, Any] = _for_role(merged, role)
    for key, required in invariants.items():
        if key in conf and _norm(conf[key]) != _norm(required):
            raise ValueError(f"{key}={conf[key]!r} is not allowed: the broker needs {required!r}")
        conf[key] = required
    return conf


def consumer_config(
    settings: BrokerSettings,
    *,
    group_id: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """librdkafka consumer config: manual offset store, auto-commit of stored offsets."""
    conf = _render(settings, CONSUMER_DEFAULTS, CONSUMER_INVARIANTS, overrides, "consumer")
    conf["group.id"] = group_id or conf.get("group.id") or settings.group_id
    return conf


def producer_config(
    settings: BrokerSettings, *, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """librdkafka producer config: idempotent, acks=all."""
    return _render(settings, PRODUCER_DEFAULTS, PRODUCER_INVARIANTS, overrides, "producer")


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
        self._consumer = Consumer(conf)
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
        self._producer = Producer(conf)

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
        serve deliveries (and `on_full`) until it has room."""
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


class PartitionReader:
    """Reads one partition from an offset, outside any consumer group (changelog restores).

    Fetches what the log holds, whatever high watermark the broker reports: callers read up to
    an offset they know exists (an end marker they produced), not up to the watermark.
    """

    def __init__(
        self, settings: BrokerSettings, *, overrides: Mapping[str, Any] | None = None
    ) -> None:
        defaults = {"enable.auto.commit": False, "auto.offset.reset": "earliest",
                    "enable.partition.eof": False}  # fmt: skip
        conf = _render(settings, defaults, {}, overrides, "consumer")
        conf["group.id"] = f"{conf.get('group.id') or settings.group_id}-restore"  # never joined
        self._consumer = Consumer(conf)

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read ``topic[partition]`` from ``offset`` on (the earliest kept one if it is gone)."""
        self._consumer.assign([TopicPartition(topic, partition, max(offset, 0))])

    def read(self, max_messages: int, timeout_s: float) -> list[Record]:
        """Up to max_messages records from the current position."""
        out: list[Record] = []
        for msg in self._consumer.consume(max_messages, timeout_s):
            err = msg.error()
            if err is not None:
                if err.fatal():
                    raise KafkaFatalError(str(err))
                log.warning("kafka restore read: %s", err)
                continue
            out.append(
                Record(cast(str, msg.topic()), cast(int, msg.partition()),
                       cast(int, msg.offset()), cast("bytes | None", msg.key()),
                       cast("bytes | None", msg.value()), None)
            )  # fmt: skip
        return out

    def close(self) -> None:
        """Release the client."""
        self._consumer.close()


# ---------------------------------------------------------------- admin


def _admin(settings: BrokerSettings, overrides: Mapping[str, Any] | None) -> AdminClient:
    return AdminClient(_for_role({**settings.kafka_config(), **(overrides or {})}, "admin"))


def create_topics(
    settings: BrokerSettings,
    topics: Mapping[str, int],
    *,
    replication_factor: int = 1,
    config: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
    overrides: Mapping[str, Any] | None = None,
) -> None:
    """Create {topic: partitions}; topics that already exist are left as they are."""
    admin = _admin(settings, overrides)  # kept referenced until every future resolves
    new = [
        NewTopic(
            name, num_partitions=n, replication_factor=replication_factor, config=dict(config or {})
        )
        for name, n in topics.items()
    ]
    futures = admin.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s)
    for name, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
            log.info("topic %s already exists", name)


def delete_topics(
    settings: BrokerSettings,
    topics: Sequence[str],
    *,
    timeout_s: float = 30.0,
    overrides: Mapping[str, Any] | None = None,
) -> None:
    """Delete topics; unknown ones are ignored."""
    admin = _admin(settings, overrides)
    futures = admin.delete_topics(
        list(topics), operation_timeout=timeout_s, request_timeout=timeout_s
    )
    for future in futures.values():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise


def topic_partitions(
    settings: BrokerSettings,
    *,
    timeout_s: float = 10.0,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Partitions of every topic the cluster has now (one metadata request; creates nothing).

    Raises TimeoutError when the cluster does not answer in time.
    """
    admin = _admin(settings, overrides)
    try:
        meta = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise TimeoutError(f"no topic metadata: {exc}") from exc
    return {name: len(t.partitions) for name, t in meta.items() if t.error is None}


def wait_for_topics(
    settings: BrokerSettings,
    topics: Iterable[str],
    *,
    timeout_s: float = 30.0,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Block until every topic exists with a leader on each partition; returns their partitions."""
    admin = _admin(settings, overrides)
    wanted = set(topics)
    deadline = time.monotonic() + timeout_s
    missing: set[str] = wanted
    while True:
        left = deadline - time.monotonic()
        try:
            meta = admin.list_topics(timeout=max(min(left, 5.0), 0.5)).topics
        except KafkaException as exc:
            log.info("list_topics: %s", exc)
            meta = {}
        ready = {
            name: len(meta[name].partitions)
            for name in wanted
            if name in meta
            and meta[name].error is None
            and meta[name].partitions
            and all(p.leader >= 0 for p in meta[name].partitions.values())
        }
        missing = wanted - set(ready)
        if not missing:
            return ready
        if time.monotonic() >= deadline:
            raise TimeoutError(f"topics not ready after {timeout_s} s: {sorted(missing)}")
        time.sleep(0.1)
