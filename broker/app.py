"""The streaming broker's run loop: wires the Kafka adapter, the pipeline, the model and metrics.

One loop, one thread: poll a batch -> `Pipeline.process` (decode, state, inference, encode) ->
produce classifications and dead letters -> `deliver_then_store` -> next batch. Between batches
the model source checks the registry. A stop request (SIGTERM, Ctrl-C, `App.stop`) is honoured
between batches: the batch in hand is finished and delivered, its offsets stored and committed,
then the consumer leaves the group.

Partition ownership (`RebalanceHooks`): rebalances happen inside `poll_batch`, when no batch is
in flight, so every batch before it is already delivered and stored. On revoke the state of the
revoked partitions is flushed and dropped and the adapter commits; on lost it is dropped without
committing (someone else owns those partitions now). With the durable state (broker.durable, the
default) a newly assigned partition stays paused until its state is restored from its changelog,
in bounded steps between polls, so the other partitions keep flowing meanwhile.

Back-pressure (broker.backpressure): inference runs in a worker thread; a batch that waits longer
than a second (slow model, full output queue, slow acknowledgements) pauses fetching and keeps
serving the group. A rebalance during such a wait drops the revoked partitions' part of the batch
unflushed and unstored, like a lost partition: their new owner redoes it.

Failures (docs/operations.md, "Failure policy"; broker.failures): a bad message is the pipeline's
dead letter and the stream goes on; the system's faults (outputs or state not durable, the Schema
Registry away, a refused produce) stop the loop with `DeliveryFailed`, counted, offsets not
stored; a damaged store is rebuilt from the changelog in place (`_rebuild`).
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
from broker.decode import SchemaRegistryUnavailable, make_decoder
from broker.durable import DurableState, open_state
from broker.encode import now_ms
from broker.failures import DeadLetterLog, DeliveryFailed, close_all
from broker.features import FeatureCache
from broker.health import Health, HealthServer, serve
from broker.kafka import (
    AlertConsumer,
    AlertProducer,
    PartitionId,
    ProduceError,
    RebalanceHooks,
    Record,
    deliver_then_store,
)
from broker.kafka_admin import PartitionReader
from broker.metrics import BrokerMetrics
from broker.models import ModelSource, ServedModel
from broker.pipeline import BatchResult, Pipeline
from broker.settings import BrokerSettings
from broker.state import SourceState
from broker.state import warm_up as warm_up_state
from broker.store import StateStoreCorrupted, StateStoreError

log = logging.getLogger(__name__)

LAG_EVERY_S = 1.0  # consumer lag gauge refresh
DELIVERY_TIMEOUT_S = 60.0
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
        self.owned: set[PartitionId] = set()
        self.metrics_port: int | None = None  # the bound port once serving
        self._server: HealthServer | None = None
        self._hook_error: Exception | None = None
        self.dead_log = DeadLetterLog()
        self.stats = RunStats()
        self.on_batch = on_batch
        self._stop = threading.Event()
        self._consumer_overrides = consumer_overrides
        self._producer_overrides = producer_overrides
        if settings.torch_threads:
            import torch

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
        self.pipeline = Pipeline(
            decoders,
            self.state,
            lambda: self.models.current,
            strict=settings.strict,
            features=self.features,
            min_probability=settings.min_probability,
            object_records=bool(settings.object_topic),
        )

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

    # ---------------------------------------------------------------- ownership

    def _assigned(self, partitions: list[PartitionId]) -> None:
        self.pipeline.partitions.clear()  # counts are read again before the next batch
        self.owned.update(partitions)
        self.health.set_assigned(len(self.owned))
        self.state.assign(partitions)
        restoring = self.state.restoring() & set(partitions)
        if restoring and self.flow.consumer is not None:
            self.flow.consumer.pause(restoring)  # fetched once their state is restored
        self.metrics.partitions_restoring.set(len(self.state.restoring()))
        log.info("assigned %s", partitions)

    def _revoked(self, partitions: list[PartitionId]) -> None:
        # Between batches every earlier batch was delivered and stored: flush, then forget. In a
        # back-pressure wait (a batch in flight) the batch's rows of these partitions are dropped
        # unflushed and their offsets are not stored: the new owner redoes them.
        self.flow.settle()
        self.owned.difference_update(partitions)
        self.health.set_assigned(len(self.owned))
        if not self.flow.in_batch:
            self.state.flush(partitions)
        dropped = self.state.release(partitions)
        self.features.release(partitions)  # not durable: recomputed by the next owner
        self.metrics.forget_partitions(partitions)
        self.metrics.sources_held.set(len(self.state))
        self.metrics.feature_cache_size.set(len(self.features))
        self.metrics.partitions_restoring.set(len(self.state.restoring()))
        log.info("revoked %s: dropped %d sources", partitions, dropped)

    def _lost(self, partitions: list[PartitionId]) -> None:
        self.flow.settle()
        self.owned.difference_update(partitions)
        self.health.set_assigned(len(self.owned))
        dropped = self.state.release(partitions)  # not flushed, not committed
        self.features.release(partitions)
        self.metrics.forget_partitions(partitions)
        self.metrics.sources_held.set(len(self.state))
        self.metrics.feature_cache_size.set(len(self.features))
        self.metrics.partitions_restoring.set(len(self.state.restoring()))
        log.warning("lost %s: dropped %d sources", partitions, dropped)

    def _guard(self, hook: Callable[[list[PartitionId]], None]) -> Callable[..., None]:
        """A rebalance hook that never raises into librdkafka; the loop re-raises after poll."""

        def guarded(partitions: list[PartitionId]) -> None:
            try:
                hook(partitions)
            except (StateStoreError, ChangelogError) as exc:  # the system's: one line
                log.error("rebalance hook %s failed: %s", hook.__name__, exc)
                self._hook_error = exc
            except Exception as exc:  # a bug: with its traceback
                log.exception("rebalance hook %s failed", hook.__name__)
                self._hook_error = exc

        return guarded

    # ---------------------------------------------------------------- the loop

    def run(self, serve_metrics: bool = True) -> RunStats:
        """Consume until stopped; returns the totals. Raises DeliveryFailed / KafkaFatalError."""
        s = self.settings
        if serve_metrics:
            self.serve_metrics()
        hooks = RebalanceHooks(
            self._guard(self._assigned), self._guard(self._revoked), self._guard(self._lost)
        )
        consumer = AlertConsumer(s, hooks=hooks, overrides=self._consumer_overrides)
        producer = AlertProducer(s, overrides=self._producer_overrides)
        self.flow.consumer, producer.on_full = consumer, self.flow.idle
        reader: PartitionReader | None = None
        try:
            if isinstance(self.state, DurableState) and s.state_changelog:
                topics = self._changelogs()
                if topics is None:  # stopped while waiting for the input topics
                    return self.stats
                reader = PartitionReader(s, overrides=self._consumer_overrides)
                self.state.changelog = Changelog(topics, producer, reader)
                self.state.changelog.idle = self.flow.idle
            consumer.subscribe(list(s.input_topics))
            next_lag = 0.0
            while not self._stop.is_set():
                self.health.beat()
                self.models.maybe_reload()
                wait_s = s.batch_wait_ms / 1000
                if self.state.restoring():
                    try:
                        consumer.resume(self.state.restore_step(RESTORE_STEP_S))
                    except StateStoreCorrupted as exc:
                        self._rebuild(exc, consumer, [])
                    self.metrics.partitions_restoring.set(len(self.state.restoring()))
                    wait_s = 0.0 if self.state.restoring() else wait_s
                records = consumer.poll_batch(s.batch_size, wait_s)
                if self._hook_error is not None:
                    raise self._hook_error
                if time.monotonic() >= next_lag:
                    self.metrics.set_lag(consumer.lag())
                    next_lag = time.monotonic() + LAG_EVERY_S
                if records:
                    self._batch(records, consumer, producer)
            # Drain: the last batch is delivered and stored; commit it before leaving.
            try:
                consumer.commit()
            except Exception as exc:  # redelivery after a restart, never loss
                log.warning("final commit failed: %s", exc)
        except (StateStoreError, ChangelogError) as exc:  # restores, revoke flushes, topics
            self.metrics.state_store_errors.inc()
            self.health.fail(f"{type(exc).__name__}: {exc}")
            raise DeliveryFailed(f"state store or changelog failed ({exc}); offsets of the "
                                 "batch in hand not stored") from exc  # fmt: skip
        except BaseException as exc:
            self.health.fail(f"{type(exc).__name__}: {exc}")
            raise
        finally:
            self._close(consumer, producer, reader)
        return self.stats

    def _close(
        self, consumer: AlertConsumer, producer: AlertProducer, reader: PartitionReader | None
    ) -> None:
        """Release the Kafka clients, then the rest (`close_all`: a failing close never hides
        why the loop stopped)."""
        steps: list[tuple[str, Callable[[], object]]] = [
            ("consumer", consumer.close),  # leaves the group (revoke hook, then commit)
            ("producer", lambda: producer.close(timeout_s=DELIVERY_TIMEOUT_S)),
        ]
        if reader is not None:
            steps.append(("changelog reader", reader.close))
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

    def _rebuild(
        self, exc: StateStoreCorrupted, consumer: AlertConsumer, records: list[Record]
    ) -> None:
        """The store turned out damaged while running: set it aside, restore the owned partitions
        from the changelog (paused meanwhile) and fetch the batch in hand again (its offsets were
        not stored). Without a changelog: stop (DeliveryFailed)."""
        if not isinstance(self.state, DurableState) or self.state.changelog is None:
            self.metrics.state_store_errors.inc()
            raise DeliveryFailed(f"{exc}; no changelog to rebuild the store from; offsets not "
                                 "stored") from exc  # fmt: skip
        owned = sorted(self.owned)
        self.features.release(owned)
        self.state.rebuild(owned)
        self._rebuilt("running")
        consumer.pause(self.state.restoring())
        consumer.rewind(records)
        self.metrics.partitions_restoring.set(len(self.state.restoring()))

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

    def _batch(
        self, records: list[Record], consumer: AlertConsumer, producer: AlertProducer
    ) -> None:
        self.flow.start()
        try:
            self._deliver(records, consumer, producer)
        finally:
            self.flow.end()

    def _deliver(
        self, records: list[Record], consumer: AlertConsumer, producer: AlertProducer
    ) -> None:
        s, m = self.settings, self.metrics
        unknown = {r.topic for r in records} - set(self.pipeline.partitions)
        if unknown:  # the key contract depends on them (Pipeline._check_keys)
            self.pipeline.partitions.update(consumer.partition_counts(unknown))
        try:
            result = self.flow.call(lambda: self._process(records))
        except StateStoreCorrupted as exc:  # nothing produced yet: rebuild, fetch the batch again
            self._rebuild(exc, consumer, records)
            return
        except StateStoreError as exc:  # a read (the store's disk), before anything was produced
            m.state_store_errors.inc()
            raise DeliveryFailed(f"batch of {len(records)} messages: state not read ({exc}); "
                                 "offsets not stored") from exc  # fmt: skip
        try:
            for key, value in result.outputs:
                producer.produce(s.output_topic, value, key=key)
            for key, value in result.objects:
                producer.produce(s.object_topic, value, key=key)
            for dl_key, dl_value in result.dead_letters:
                producer.produce(s.dead_letter_topic, dl_value, key=dl_key)
        except ProduceError as exc:  # refused by librdkafka itself (its limits, its config)
            m.publish_failures.labels(topic=exc.topic).inc()
            raise DeliveryFailed(f"batch of {len(records)} messages: {exc}; offsets not "
                                 "stored") from exc  # fmt: skip
        # At-least-once: input offsets are stored only after the batch's state is durable (its
        # changed rows acknowledged on the changelog, then written to the local store) and every
        # output of this batch (and of all before it) is acknowledged; on failure nothing is
        # stored and the loop stops, so a restart redelivers the batch, which the state merges
        # idempotently (it skips points it already holds).
        try:
            self.state.flush({(r.topic, r.partition) for r in records} & self.owned)
        except StateStoreCorrupted as exc:  # outputs queued: redone after the rebuild (duplicates)
            self._rebuild(exc, consumer, records)
            return
        except (ChangelogError, StateStoreError) as exc:
            m.state_store_errors.inc()
            raise DeliveryFailed(f"batch of {len(records)} messages: state not persisted "
                                 f"({exc}); offsets not stored") from exc  # fmt: skip
        self.flow.drain(producer, DELIVERY_TIMEOUT_S)
        stored = [r for r in records if (r.topic, r.partition) in self.owned]  # revoked: redone
        if not deliver_then_store(producer, consumer, stored, DELIVERY_TIMEOUT_S):
            failures = producer.take_failures()
            for _ in failures:
                m.publish_failures.labels(topic=s.output_topic).inc()
            raise DeliveryFailed(
                f"batch of {len(records)} messages: outputs not acknowledged "
                f"({failures[0].error if failures else 'timeout'}); offsets not stored"
            )
        delivered = now_ms()
        self._observe(result, delivered, len(records))
        if self.on_batch is not None:
            self.on_batch(result, delivered)

    def _observe(self, r: BatchResult, delivered: int, n_records: int) -> None:
        m, st = self.metrics, self.stats
        for topic, n in r.consumed.items():
            m.messages_consumed.labels(topic=topic).inc(n)
        for (topic, reason), n in r.dead_reasons.items():
            m.messages_dead_lettered.labels(topic=topic, reason=reason).inc(n)
        classified: dict[str, int] = {}
        for topic in r.output_topics:
            classified[topic] = classified.get(topic, 0) + 1
        for topic, n in classified.items():
            m.source_bands_classified.labels(topic=topic).inc(n)
        for topic, n in r.unclassified.items():
            m.source_bands_unclassified.labels(topic=topic).inc(n)
        for topic in classified.keys() | r.unclassified.keys():
            m.source_bands_decoded.labels(topic=topic).inc(
                classified.get(topic, 0) + r.unclassified[topic]
            )
        for topic, n in r.unknown.items():
            m.source_bands_unknown.labels(topic=topic).inc(n)
        for (topic, reason), n in r.dead_reasons.items():
            self.dead_log.add(topic, reason, n)
        for (survey, reason), n in r.dropped_detections.items():
            m.detections_dropped.labels(survey=survey, reason=reason).inc(n)
        for (survey, fallback), n in r.photometry_fallbacks.items():
            m.photometry_fallbacks.labels(survey=survey, fallback=fallback).inc(n)
        m.state_rows_reset.inc(r.rows_reset)
        m.objects_classified.inc(len(r.objects))
        m.batch_size.observe(n_records)
        m.decode_seconds.observe(r.decode_s)
        m.update_seconds.observe(r.update_s)
        m.inference_seconds.observe(r.inference_s)
        e2e = m.end_to_end_seconds
        for ts in r.output_alert_ts:
            if ts is not None:
                e2e.observe(max(delivered - ts, 0) / 1000)
        m.sources_held.set(len(self.state))
        if r.model is not None and r.model.reads_features:
            m.feature_refreshes.inc(r.features_refreshed)
            m.feature_refresh_deferred.inc(r.features_deferred)
            for reason, n in r.feature_failures.items():
                m.feature_failures.labels(reason=reason).inc(n)
            for seconds in r.feature_seconds:
                m.feature_refresh_seconds.observe(seconds)
            m.feature_stale_outputs.labels(kind="stale").inc(r.stale_outputs)
            m.feature_stale_outputs.labels(kind="missing").inc(r.missing_outputs)
            m.feature_cache_size.set(len(self.features))
        st.batches += 1
        st.consumed += n_records
        st.alerts += r.alerts
        st.classified += len(r.outputs)
        st.dead_lettered += len(r.dead_letters)


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
