"""Topic administration and plain readers, outside any consumer group.

Admin helpers (create, delete, list and wait for topics) and `PartitionReader`, which reads one
partition from an offset without joining a group (changelog restores). Client configs come from
`broker.kafka_conf`; records are the adapter's plain `Record` values (`broker.kafka`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from broker.kafka import KafkaFatalError, Record, new_client
from broker.kafka_conf import _for_role, _render
from broker.settings import BrokerSettings

log = logging.getLogger(__name__)


def _admin(settings: BrokerSettings, overrides: Mapping[str, Any] | None) -> AdminClient:
    conf = _for_role({**settings.kafka_config(), **(overrides or {})}, "admin")
    return cast(AdminClient, new_client(AdminClient, conf))


class ClusterUnavailable(RuntimeError):
    """The cluster did not answer: ``kind`` is ``unreachable`` (nothing answered in time),
    ``authentication`` or ``tls`` (refused at once), or ``settings`` (the client refused its
    configuration); ``detail`` is the client's last error."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail


# librdkafka's log lines while probing: kept out of the terminal (the error says what failed).
_PROBE_LOG = logging.getLogger(f"{__name__}.probe")
_PROBE_LOG.propagate = False
_PROBE_LOG.addHandler(logging.NullHandler())
_REFUSED = {KafkaError._AUTHENTICATION: "authentication", KafkaError._SSL: "tls"}


def cluster_topics(
    settings: BrokerSettings,
    timeout_s: float,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Partitions of every topic, as soon as the cluster answers (creates nothing).

    Quiet while it does not answer: after ``timeout_s`` it raises ClusterUnavailable
    (``unreachable``) with the client's last error, and at once when the cluster refuses the
    client's credentials or TLS handshake (``authentication``, ``tls``).
    """
    errors: list[KafkaError] = []
    conf = _for_role({**settings.kafka_config(), **(overrides or {})}, "admin")
    conf["error_cb"] = errors.append
    if not log.isEnabledFor(logging.INFO):  # -v: librdkafka's own lines, as the clients print
        conf["logger"] = _PROBE_LOG
    try:
        admin = AdminClient(conf)
    except KafkaException as exc:  # e.g. a SASL mechanism this librdkafka was built without
        raise ClusterUnavailable("settings", str(exc.args[0].str() if exc.args else exc)) from exc
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while True:
        left = deadline - time.monotonic()
        try:
            meta = admin.list_topics(timeout=min(max(left, 0.1), 1.0)).topics
            return {name: len(t.partitions) for name, t in meta.items() if t.error is None}
        except KafkaException as exc:
            last = exc.args[0].str() if exc.args else str(exc)
        admin.poll(0)  # serves error_cb
        for err in errors:
            if err.code() in _REFUSED:
                raise ClusterUnavailable(_REFUSED[err.code()], err.str())
        if errors:
            last = errors[-1].str()
        errors.clear()
        if time.monotonic() >= deadline:
            raise ClusterUnavailable("unreachable", last)


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


# ---------------------------------------------------------------- readers


class PartitionReader:
    """Reads partitions from an offset, outside any consumer group (changelog restores,
    `dmdt-broker read`): it commits nothing and never joins a group.

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
        self._consumer = new_client(Consumer, conf)

    def seek(self, topic: str, partition: int, offset: int) -> None:
        """Read ``topic[partition]`` from ``offset`` on (the earliest kept one if it is gone)."""
        self._consumer.assign([TopicPartition(topic, partition, max(offset, 0))])

    def seek_all(self, partitions: Mapping[str, int], from_end: bool = False) -> None:
        """Read every partition of {topic: partitions} from its start (or its end: only what
        arrives from now on)."""
        offset = OFFSET_END if from_end else OFFSET_BEGINNING
        self._consumer.assign(
            [TopicPartition(t, p, offset) for t, n in partitions.items() for p in range(n)]
        )

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
            ts_type, ts = msg.timestamp()
            out.append(
                Record(cast(str, msg.topic()), cast(int, msg.partition()),
                       cast(int, msg.offset()), cast("bytes | None", msg.key()),
                       cast("bytes | None", msg.value()), ts if ts_type != 0 else None)
            )  # fmt: skip
        return out

    def close(self) -> None:
        """Release the client."""
        self._consumer.close()
