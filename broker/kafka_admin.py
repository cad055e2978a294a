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

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from broker.kafka import KafkaFatalError, Record, new_client
from broker.kafka_conf import _for_role, _render
from broker.settings import BrokerSettings

log = logging.getLogger(__name__)


def _admin(settings: BrokerSettings, overrides: Mapping[str, Any] | None) -> AdminClient:
    conf = _for_role({**settings.kafka_config(), **(overrides or {})}, "admin")
    return cast(AdminClient, new_client(AdminClient, conf))


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
        self._consumer = new_client(Consumer, conf)

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
