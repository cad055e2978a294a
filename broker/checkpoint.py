"""What one batch must do before its input offsets are stored: the at-least-once guarantee.

At-least-once: a batch's input offsets are stored only after its state is durable (its changed
rows acknowledged on the changelog, then written to the local store) and every output of this
batch (and of all before it) is acknowledged; on failure nothing is stored and the loop stops
(`DeliveryFailed`), so a restart redelivers the batch, which the state merges idempotently (it
skips points it already holds). `Checkpoint` holds a batch's duties, in order (as Quix Streams'
`Checkpoint` does): `process` it, `produce` its outputs and dead letters, `flush` the state of
its partitions still owned, then `store` its offsets once every output is acknowledged. A store
found damaged on the way is rebuilt (`Ownership.rebuild`) and the batch fetched again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from broker.backpressure import Backpressure
from broker.changelog import ChangelogError
from broker.failures import DeliveryFailed
from broker.kafka import AlertConsumer, AlertProducer, ProduceError, Record, deliver_then_store
from broker.metrics import BrokerMetrics
from broker.ownership import Ownership
from broker.pipeline import BatchResult
from broker.settings import BrokerSettings
from broker.store import StateStoreCorrupted, StateStoreError

DELIVERY_TIMEOUT_S = 60.0


class Checkpoint:
    """One batch's duties between its poll and the next; see the module doc."""

    def __init__(
        self,
        records: Sequence[Record],
        ownership: Ownership,
        consumer: AlertConsumer,
        producer: AlertProducer,
        settings: BrokerSettings,
        metrics: BrokerMetrics,
        flow: Backpressure,
    ) -> None:
        self.records = records
        self.ownership = ownership
        self.consumer = consumer
        self.producer = producer
        self.settings = settings
        self.metrics = metrics
        self.flow = flow

    def run(self, process: Callable[[], BatchResult]) -> BatchResult | None:
        """Every duty in order; the batch's result once its offsets are stored, None when the
        store was rebuilt (the batch is fetched again). Raises DeliveryFailed (stop)."""
        result = self.process(process)
        if result is None:
            return None
        self.produce(result)
        if not self.flush():
            return None
        self.store()
        return result

    def _failed(self, what: str) -> str:
        return f"batch of {len(self.records)} messages: {what}; offsets not stored"

    def process(self, process: Callable[[], BatchResult]) -> BatchResult | None:
        """Run the pipeline in the back-pressure worker (broker.backpressure); None when the
        store turned out damaged (nothing produced yet: rebuilt, the batch fetched again)."""
        try:
            return self.flow.call(process)
        except StateStoreCorrupted as exc:
            self.ownership.rebuild(exc, self.records)
            return None
        except StateStoreError as exc:  # a read (the store's disk), before anything was produced
            self.metrics.state_store_errors.inc()
            raise DeliveryFailed(self._failed(f"state not read ({exc})")) from exc

    def produce(self, result: BatchResult) -> None:
        """Queue the batch's classifications, object records and dead letters."""
        s, producer = self.settings, self.producer
        try:
            for key, value in result.outputs:
                producer.produce(s.output_topic, value, key=key)
            for key, value in result.objects:
                producer.produce(s.object_topic, value, key=key)
            for dl_key, dl_value in result.dead_letters:
                producer.produce(s.dead_letter_topic, dl_value, key=dl_key)
        except ProduceError as exc:  # refused by librdkafka itself (its limits, its config)
            self.metrics.publish_failures.labels(topic=exc.topic).inc()
            raise DeliveryFailed(self._failed(str(exc))) from exc

    def flush(self) -> bool:
        """Make the state of the batch's owned partitions durable; False when the store turned
        out damaged (rebuilt: the batch is fetched again, its outputs may be published twice)."""
        try:
            self.ownership.state.flush(self.ownership.owned_partitions(self.records))
        except StateStoreCorrupted as exc:
            self.ownership.rebuild(exc, self.records)
            return False
        except (ChangelogError, StateStoreError) as exc:
            self.metrics.state_store_errors.inc()
            raise DeliveryFailed(self._failed(f"state not persisted ({exc})")) from exc
        return True

    def store(self) -> None:
        """Wait for every output's acknowledgement, then store the offsets of the records whose
        partition is still owned (a revoked one's are redone by its new owner)."""
        self.flow.drain(self.producer, DELIVERY_TIMEOUT_S)
        stored = self.ownership.owned_records(self.records)
        if not deliver_then_store(self.producer, self.consumer, stored, DELIVERY_TIMEOUT_S):
            failures = self.producer.take_failures()
            for _ in failures:
                self.metrics.publish_failures.labels(topic=self.settings.output_topic).inc()
            cause = failures[0].error if failures else "timeout"
            raise DeliveryFailed(self._failed(f"outputs not acknowledged ({cause})"))
