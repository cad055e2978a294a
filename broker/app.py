"""The streaming broker: `App(settings).run()` wires the Kafka adapter, the pipeline, the model,
the state and the metrics, and runs the loop.

The loop (`App.run`), one thread: between batches (heartbeat, model reload, a restore step, the
lag gauge) -> poll a batch -> its `broker.checkpoint.Checkpoint`: `Pipeline.process` (decode,
state, inference, encode) in the back-pressure worker, produce classifications and dead letters,
flush the state, store the offsets once every output is acknowledged -> its metrics -> next
batch. A stop request (SIGTERM, Ctrl-C, `App.stop`) is honoured between batches: the batch in
hand is finished and delivered, its offsets stored and committed, then the consumer leaves the
group. Partition ownership (assign, revoke, lost, restores, rebuilds) has one owner,
`broker.ownership.Ownership`; back-pressure is broker.backpressure's.

Failures (docs/operations.md, "Failure policy"; broker.failures): a bad message is the pipeline's
dead letter and the stream goes on; the system's faults (outputs or state not durable, the Schema
Registry away, a refused produce) stop the loop with `DeliveryFailed`, counted, offsets not
stored; a damaged store is rebuilt from the changelog in place (`Ownership.rebuild`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry

from broker.backpressure import Backpressure
from broker.changelog import Changelog, ChangelogError, ensure_changelogs
from broker.checkpoint import DELIVERY_TIMEOUT_S, Checkpoint
from broker.decode import SchemaRegistryUnavailable, make_decoder
from broker.durable import DurableState, open_state
from broker.encode import now_ms
from broker.failures import DeadLetterLog, DeliveryFailed, close_all
from broker.features import FeatureCache
from broker.health import Health, HealthServer, serve
from broker.kafka import AlertConsumer, AlertProducer, PartitionId, RebalanceHooks, Record
from broker.kafka_admin import PartitionReader
from broker.metrics import BrokerMetrics
from broker.models import ModelSource, ServedModel
from broker.ownership import Ownership
from broker.pipeline import BatchResult, Pipeline
from broker.settings import BrokerSettings
from broker.state import SourceState
from broker.state import warm_up as warm_up_state
from broker.store import StateStoreError

log = logging.getLogger(__name__)

LAG_EVERY_S = 1.0  # consumer lag gauge refresh
OUTAGE_GIVE_UP_S = 60.0  # Schema Registry outage: retry a batch this long, then stop
PAUSE_AFTER_S = 1.0  # a batch waiting this long pauses fetching (back-pressure)
RESTORE_STEP_S = 0.5  # state restore work between two polls


@dataclass
class RunStats:
    """Totals of one `App.run`."""

    batches: int = 0
    consumed: int = 0
    alerts: int = 0
    classified: int = 0
    dead_lettered: int = 0
    model_loads: int = 0

    def add(self, result: BatchResult, n_records: int) -> None:
        """Count one delivered batch."""
        self.batches += 1
        self.consumed += n_records
        self.alerts += result.alerts
        self.classified += len(result.outputs)
        self.dead_lettered += len(result.dead_letters)


BatchHook = Callable[[BatchResult, int], None]  # (result, delivered at, epoch ms)


class App:
    """The broker: `App(settings).run()` until `stop()`; see the module docstring."""

    def __init__(
        self,
        settings: BrokerSettings,
        *,
        registry: CollectorRegistry | None = None,
        state: SourceState | None = None,
        models: ModelSource | None = None,
        consumer_overrides: Mapping[str, Any] | None = None,
        producer_overrides: Mapping[str, Any] | None = None,
        on_batch: BatchHook | None = None,
    ) -> None:
        self.settings = settings
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = BrokerMetrics(self.registry)
        self.health = Health()
        self.metrics_port: int | None = None  # the bound port once serving
        self._server: HealthServer | None = None
        self._reader: PartitionReader | None = None  # reads the changelog (durable state)
        self._next_lag = 0.0
        self.dead_log = DeadLetterLog()
        self.stats = RunStats()
        self.on_batch = on_batch
        self._stop = threading.Event()
        self._consumer_overrides = consumer_overrides
        self._producer_overrides = producer_overrides
        if settings.torch_threads:
            try:
                import torch
            except ImportError:  # an install without torch serves no torch model
                pass
            else:
                torch.set_num_threads(settings.torch_threads)
        self.models = (
            models
            if models is not None
            else ModelSource(
                settings.model,
                settings.device,
                min_points=settings.min_points,
                check_interval_s=settings.model_check_s,
            )
        )
        self.models.on_load = self._model_loaded
        self.models.on_failure = lambda _exc: self.metrics.model_load_failures.inc()
        self._model_loaded(self.models.current)
        grid = self.models.current.grid
        warm_up_state(grid)  # the kernels of the first batch, compiled now (after an install)
        self.state: SourceState = (
            state if state is not None else open_state(settings, grid, on_rebuild=self._rebuilt)
        )
        if isinstance(self.state, DurableState):
            rows = self.metrics.state_rows
            self.state.on_event = lambda event, n: rows.labels(event=event).inc(n)
        self.flow = Backpressure(PAUSE_AFTER_S, on_pause=self.metrics.fetch_pauses.inc)
        decoders = {
            topic: make_decoder(
                name,
                schema_registry_url=settings.schema_registry_url,
                schema_dir=settings.schema_dir,
                forced_photometry=settings.forced_photometry,
            )
            for topic, name in settings.input_topics.items()
        }
        self.features = FeatureCache(
            refresh_fraction=settings.feature_refresh_fraction,
            refresh_points=settings.feature_refresh_points,
            always=settings.feature_refresh_always,
            budget_s=settings.feature_budget_ms / 1000,
            threads=settings.feature_threads,
            max_entries=settings.feature_cache_rows,
        )
        self.ownership = Ownership(self.state, self.features, self.metrics, self.health, self.flow)
        self.pipeline = Pipeline(
            decoders,
            self.state,
            lambda: self.models.current,
            strict=settings.strict,
            features=self.features,
            min_probability=settings.min_probability,
            object_records=bool(settings.object_topic),
        )
        self.pipeline.partitions = self.ownership.partition_counts  # the key contract's counts

    # ---------------------------------------------------------------- control

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand, commit and leave (thread- and signal-safe)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once a stop was requested."""
        return self._stop.is_set()

    def _model_loaded(self, served: ServedModel) -> None:
        self.metrics.set_model(served.name, served.version, served.content_hash)
        self.health.set_model(served.version)
        self.stats.model_loads += 1

    @property
    def owned(self) -> set[PartitionId]:
        """The input partitions this consumer owns now."""
        return self.ownership.owned

    # ---------------------------------------------------------------- the loop

    def run(self, serve_metrics: bool = True) -> RunStats:
        """Consume until stopped; returns the totals. Raises DeliveryFailed / KafkaFatalError."""
        if serve_metrics:
            self.serve_metrics()
        consumer, producer = self._connect()
        try:
            if not self._attach_changelog(producer):
                return self.stats  # stopped while waiting for the input topics
            consumer.subscribe(list(self.settings.input_topics))
            while not self.stopping:
                wait_s = self._between_batches(consumer)
                records = consumer.poll_batch(self.settings.batch_size, wait_s)
                self.ownership.raise_hook_error()  # rebalances run inside the poll
                if records:
                    self._batch(records, consumer, producer)
            self._commit(consumer)  # the last batch is delivered and stored: commit, then leave
        except (StateStoreError, ChangelogError) as exc:  # restores, revoke flushes, topics
            self.metrics.state_store_errors.inc()
            self.health.fail(f"{type(exc).__name__}: {exc}")
            raise DeliveryFailed(f"state store or changelog failed ({exc}); offsets of the "
                                 "batch in hand not stored") from exc  # fmt: skip
        except BaseException as exc:
            self.health.fail(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self._close(consumer, producer)
        return self.stats

    def _connect(self) -> tuple[AlertConsumer, AlertProducer]:
        """The consumer (its rebalance hooks: the ownership's) and the producer."""
        s = self.settings
        hooks = RebalanceHooks(*self.ownership.hooks())
        consumer = AlertConsumer(s, hooks=hooks, overrides=self._consumer_overrides)
        producer = AlertProducer(s, overrides=self._producer_overrides)
        self.flow.consumer, producer.on_full = consumer, self.flow.idle
        self.ownership.fetcher = consumer
        return consumer, producer

    def _attach_changelog(self, producer: AlertProducer) -> bool:
        """Give the durable state its changelog (topics created once the input topics exist);
        False when stopped while waiting for them."""
        if not (isinstance(self.state, DurableState) and self.settings.state_changelog):
            return True
        topics = self._changelogs()
        if topics is None:
            return False
        self._reader = PartitionReader(self.settings, overrides=self._consumer_overrides)
        self.state.changelog = Changelog(topics, producer, self._reader)
        self.state.changelog.idle = self.flow.idle
        return True

    def _between_batches(self, consumer: AlertConsumer) -> float:
        """Heartbeat, model reload, a restore step, the lag gauge; returns how long the next
        poll may wait (not at all while partitions are being restored)."""
        self.health.beat()
        self.models.maybe_reload()
        restoring = self.ownership.restore_step(RESTORE_STEP_S)
        if time.monotonic() >= self._next_lag:
            self.metrics.set_lag(consumer.lag())
            self._next_lag = time.monotonic() + LAG_EVERY_S
        return 0.0 if restoring else self.settings.batch_wait_ms / 1000

    def _batch(
        self, records: list[Record], consumer: AlertConsumer, producer: AlertProducer
    ) -> None:
        """One batch through its checkpoint (broker.checkpoint), then its metrics."""
        self.ownership.learn_topics(records)
        checkpoint = Checkpoint(records, self.ownership, consumer, producer, self.settings,
                                self.metrics, self.flow)  # fmt: skip
        self.flow.start()
        try:
            result = checkpoint.run(lambda: self._process(records))
            if result is not None:  # None: the store was rebuilt, the batch is fetched again
                self._observe(result, len(records))
        finally:
            self.flow.end()

    @staticmethod
    def _commit(consumer: AlertConsumer) -> None:
        try:
            consumer.commit()
        except Exception as exc:  # redelivery after a restart, never loss
            log.warning("final commit failed: %s", exc)

    def _close(self, consumer: AlertConsumer, producer: AlertProducer) -> None:
        """Release the Kafka clients, then the rest (`close_all`: a failing close never hides
        why the loop stopped)."""
        steps: list[tuple[str, Callable[[], object]]] = [
            ("consumer", consumer.close),  # leaves the group (revoke hook, then commit)
            ("producer", lambda: producer.close(timeout_s=DELIVERY_TIMEOUT_S)),
        ]
        if self._reader is not None:
            steps.append(("changelog reader", self._reader.close))
        steps.append(("state, workers and metrics server", self.close))
        close_all(steps)

    def close(self) -> None:
        """Release the state, worker threads and metrics server (`run` does it when it ends;
        call it when `run` is not called)."""
        server, self._server = self._server, None
        steps: list[tuple[str, Callable[[], object]]] = [
            ("back-pressure worker", self.flow.close),
            ("feature threads", self.features.close),
            ("state store", self.state.close),
        ]
        if server is not None:
            steps.append(("metrics server", server.close))
        close_all(steps)

    def serve_metrics(self) -> int:
        """Serve /metrics, /healthz and /readyz on metrics_host:metrics_port (0: any free port)
        until `run` ends; returns the bound port (also `metrics_port`). Raises
        MetricsAddressError, naming the address and the setting, when it cannot be bound."""
        if self._server is None:
            s = self.settings
            self._server = serve(self.health, self.registry, s.metrics_host, s.metrics_port)
            self.metrics_port = self._server.port
            log.info("metrics and probes on http://%s:%d/", self._server.host, self._server.port)
        return self._server.port

    def _rebuilt(self, when: str) -> None:
        self.metrics.state_store_rebuilds.labels(when=when).inc()

    def _changelogs(self) -> dict[str, str] | None:
        """The changelog topics (created if missing), once the input topics exist; None if
        stopped first."""
        while not self._stop.is_set():
            self.health.beat()
            try:
                return ensure_changelogs(self.settings, timeout_s=5.0)
            except TimeoutError as exc:
                log.warning("waiting for the input topics: %s", exc)
        return None

    def _process(self, records: list[Record]) -> BatchResult:
        """The pipeline, retrying a Schema Registry outage (nothing changed state yet)."""
        ingest = now_ms()
        delay, deadline = 0.5, time.monotonic() + OUTAGE_GIVE_UP_S
        while True:
            try:
                return self.pipeline.process(records, ingest)
            except SchemaRegistryUnavailable as exc:
                if time.monotonic() + delay > deadline:
                    raise DeliveryFailed(
                        f"batch of {len(records)} messages: schema registry unavailable for "
                        f"{OUTAGE_GIVE_UP_S:.0f} s ({exc}); offsets not stored"
                    ) from exc
                log.warning("schema registry unavailable, retrying in %.1f s: %s", delay, exc)
                time.sleep(delay)
                delay = min(2 * delay, 8.0)

    def _observe(self, result: BatchResult, n_records: int) -> None:
        delivered = now_ms()
        self.metrics.observe_batch(result, delivered, n_records)
        self.ownership.gauges()
        for (topic, reason), n in result.dead_reasons.items():
            self.dead_log.add(topic, reason, n)
        self.stats.add(result, n_records)
        if self.on_batch is not None:
            self.on_batch(result, delivered)


def run_in_thread(app: App, serve_metrics: bool = False) -> tuple[threading.Thread, list[Any]]:
    """Start `app.run` in a daemon thread; the list receives its RunStats or exception."""
    outcome: list[Any] = []

    def target() -> None:
        try:
            outcome.append(app.run(serve_metrics=serve_metrics))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=target, name="dmdt-broker", daemon=True)
    thread.start()
    return thread, outcome
