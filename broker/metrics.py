"""All Prometheus metrics of the broker, declared once on a given registry (namespace ``dmdt``).

Labels take few values only (topic, partition, reason, outcome), never a source id. Tests build
`BrokerMetrics(CollectorRegistry())` and read values with `registry.get_sample_value`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from broker.pipeline import BatchResult

NAMESPACE = "dmdt"
# Seconds, from 100 us (decoding one alert) to 60 s (a stalled end-to-end path).
LATENCY_BUCKETS = (
    1e-4,
    2.5e-4,
    5e-4,
    1e-3,
    2.5e-3,
    5e-3,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)


class BrokerMetrics:
    """The broker's metrics; one instance per process (or per test, on a fresh registry)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(name, doc, labels, namespace=NAMESPACE, registry=registry)

        def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
            return Gauge(name, doc, labels, namespace=NAMESPACE, registry=registry)

        def histogram(name: str, doc: str, buckets: Sequence[float]) -> Histogram:
            return Histogram(name, doc, namespace=NAMESPACE, registry=registry, buckets=buckets)

        # Two units: input *messages*, and *source-bands* (one source's light curve in one band:
        # a message yields one per band it carries, so ZTF and Rubin alerts can yield several).
        # decoded = classified + unclassified; consumed = dead-lettered + messages decoded.
        self.messages_consumed = counter("messages_consumed", "Input messages consumed", ["topic"])
        self.messages_dead_lettered = counter(
            "messages_dead_lettered",
            "Input messages sent to the dead-letter topic, by reason",
            ["topic", "reason"],
        )
        self.source_bands_decoded = counter(
            "source_bands_decoded",
            "Source-bands decoded from input messages (one per band a message carries)",
            ["topic"],
        )
        self.source_bands_classified = counter(
            "source_bands_classified",
            "Decoded source-bands classified: one classification record published for each",
            ["topic"],
        )
        self.source_bands_unclassified = counter(
            "source_bands_unclassified",
            "Decoded source-bands not classified: their source holds fewer than min_points points",
            ["topic"],
        )
        self.source_bands_unknown = counter(
            "source_bands_unknown",
            'Classification records published with thresholded_class "unknown": their top '
            "class probability was below min_probability",
            ["topic"],
        )
        self.objects_classified = counter(
            "objects_classified",
            "Object records published (one per object and batch, its bands combined)",
        )
        self.detections_dropped = counter(
            "detections_dropped",
            "Detections in decoded alerts that made no point of their source's kind of light "
            "curve (docs/surveys.md), by survey and reason; an alert repeats its history, so a "
            "detection counts once per message that carries it",
            ["survey", "reason"],
        )
        self.photometry_fallbacks = counter(
            "photometry_fallbacks",
            "Detections measured by a documented fallback (docs/surveys.md), e.g. Rubin's "
            "templateFlux + psfFlux where scienceFlux is missing or flagged",
            ["survey", "fallback"],
        )
        self.state_rows_reset = counter(
            "state_rows_reset",
            "State rows written by the decoders before 0.2 (difference-image magnitudes) "
            "replaced at their source's next ZTF or Rubin alert",
        )
        self.publish_failures = counter(
            "publish_failures", "Output messages whose delivery failed", ["topic"]
        )
        self.batch_size = histogram("batch_size", "Messages per processed batch", BATCH_BUCKETS)
        self.decode_seconds = histogram(
            "decode_seconds", "Time to decode one batch of messages", LATENCY_BUCKETS
        )
        self.update_seconds = histogram(
            "update_seconds", "Time to update the dmdt histograms of one batch", LATENCY_BUCKETS
        )
        self.inference_seconds = histogram(
            "inference_seconds", "Time of one batched CNN inference", LATENCY_BUCKETS
        )
        self.end_to_end_seconds = histogram(
            "end_to_end_seconds",
            "From the input message's Kafka timestamp to its classification's delivery",
            LATENCY_BUCKETS,
        )
        self.consumer_lag = gauge(
            "consumer_lag", "Messages behind the high watermark", ["topic", "partition"]
        )
        self.sources_held = gauge("sources_held", "Sources whose dmdt state is held in memory")
        self.model = Info(
            "model",
            "The loaded model: name, version, hash",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.model_load_failures = counter(
            "model_load_failures", "Failed attempts to load or verify the model"
        )
        self.state_store_errors = counter(
            "state_store_errors", "Failed reads or writes of the durable state store"
        )
        self.state_store_rebuilds = counter(
            "state_store_rebuilds",
            "Damaged state stores set aside and rebuilt from the changelog, found when the store "
            "was opened (start) or by a read or write while running (running)",
            ["when"],
        )
        for when in ("start", "running"):
            self.state_store_rebuilds.labels(when=when)
        self.state_rows = counter(
            "state_rows",
            "Durable state rows by event: persisted (store + changelog), loaded (from the "
            "store on a cache miss), evicted (from memory), restored (from the changelog)",
            ["event"],
        )
        self.fetch_pauses = counter(
            "fetch_pauses", "Batches that waited long enough to pause fetching (back-pressure)"
        )
        self.partitions_restoring = gauge(
            "partitions_restoring", "Assigned partitions paused while their state is restored"
        )
        # hybrid models (broker.features)
        self.feature_refreshes = counter(
            "feature_refreshes", "Per-source feature vectors recomputed (hybrid models)"
        )
        self.feature_refresh_seconds = histogram(
            "feature_refresh_seconds",
            "Time to recompute one source's feature vector (hybrid models)",
            LATENCY_BUCKETS,
        )
        self.feature_refresh_deferred = counter(
            "feature_refresh_deferred",
            "Feature refreshes due but left to a later batch: the batch's budget was spent",
        )
        self.feature_failures = counter(
            "feature_failures",
            "Feature refreshes refused or failed, by reason: baseline (a history too long for a "
            "period search) or failed (the feature code raised); the source is classified "
            "without features (hybrid models)",
            ["reason"],
        )
        self.feature_cache_size = gauge(
            "feature_cache_size", "Sources whose feature vector is held (hybrid models)"
        )
        self.feature_stale_outputs = counter(
            "feature_stale_outputs",
            "Classifications made with features older than the source's points: stale "
            "(computed on fewer points) or missing (none yet, over the budget)",
            ["kind"],
        )
        registry.register(DeprecatedNames(self))

    def set_model(self, name: str, version: str, model_hash: str) -> None:
        """Publish the loaded model's identity (dmdt_model_info)."""
        self.model.info({"name": name, "version": version, "hash": model_hash})

    def observe_batch(self, r: BatchResult, delivered_ms: int, n_records: int) -> None:
        """Count what one delivered batch did (its messages, source-bands, dead letters,
        detections, timings; and, for a model that reads features, their refreshes)."""
        for topic, n in r.consumed.items():
            self.messages_consumed.labels(topic=topic).inc(n)
        for (topic, reason), n in r.dead_reasons.items():
            self.messages_dead_lettered.labels(topic=topic, reason=reason).inc(n)
        classified: dict[str, int] = {}
        for topic in r.output_topics:
            classified[topic] = classified.get(topic, 0) + 1
        for topic, n in classified.items():
            self.source_bands_classified.labels(topic=topic).inc(n)
        for topic, n in r.unclassified.items():
            self.source_bands_unclassified.labels(topic=topic).inc(n)
        for topic in classified.keys() | r.unclassified.keys():
            self.source_bands_decoded.labels(topic=topic).inc(
                classified.get(topic, 0) + r.unclassified[topic]
            )
        for topic, n in r.unknown.items():
            self.source_bands_unknown.labels(topic=topic).inc(n)
        for (survey, reason), n in r.dropped_detections.items():
            self.detections_dropped.labels(survey=survey, reason=reason).inc(n)
        for (survey, fallback), n in r.photometry_fallbacks.items():
            self.photometry_fallbacks.labels(survey=survey, fallback=fallback).inc(n)
        self.state_rows_reset.inc(r.rows_reset)
        self.objects_classified.inc(len(r.objects))
        self.batch_size.observe(n_records)
        self.decode_seconds.observe(r.decode_s)
        self.update_seconds.observe(r.update_s)
        self.inference_seconds.observe(r.inference_s)
        for ts in r.output_alert_ts:
            if ts is not None:
                self.end_to_end_seconds.observe(max(delivered_ms - ts, 0) / 1000)
        if r.model is not None and r.model.reads_features:
            self.feature_refreshes.inc(r.features_refreshed)
            self.feature_refresh_deferred.inc(r.features_deferred)
            for reason, n in r.feature_failures.items():
                self.feature_failures.labels(reason=reason).inc(n)
            for seconds in r.feature_seconds:
                self.feature_refresh_seconds.observe(seconds)
            self.feature_stale_outputs.labels(kind="stale").inc(r.stale_outputs)
            self.feature_stale_outputs.labels(kind="missing").inc(r.missing_outputs)

    def set_lag(self, lags: dict[tuple[str, int], int]) -> None:
        """Set the consumer lag gauge from {(topic, partition): messages behind}."""
        for (topic, partition), lag in lags.items():
            self.consumer_lag.labels(topic=topic, partition=str(partition)).set(lag)

    def forget_partitions(self, partitions: list[tuple[str, int]]) -> None:
        """Drop the lag series of partitions this consumer no longer owns (on revoke / lost)."""
        for topic, partition in partitions:
            try:
                self.consumer_lag.remove(topic, str(partition))
            except KeyError:
                pass


# Names before the message / source-band split, still exposed with the same values until they are
# removed in a later release: old name -> the BrokerMetrics attribute whose counter it mirrors.
DEPRECATED_NAMES = {
    "alerts_consumed": "messages_consumed",
    "alerts_dead_lettered": "messages_dead_lettered",
    "alerts_classified": "source_bands_classified",
    "alerts_unclassified": "source_bands_unclassified",
    "alerts_unknown": "source_bands_unknown",
}


class DeprecatedNames(Collector):
    """Exposes each counter of DEPRECATED_NAMES under its old name too (same labels, values)."""

    def __init__(self, metrics: BrokerMetrics) -> None:
        self._sources = {
            f"{NAMESPACE}_{old}": getattr(metrics, attr) for old, attr in DEPRECATED_NAMES.items()
        }

    def describe(self) -> list[Metric]:
        """The old names, so that the registry refuses a clash with them."""
        return [CounterMetricFamily(name, "") for name in self._sources]

    def collect(self) -> Iterator[Metric]:
        """The current values of each mirrored counter, under its old name."""
        for name, counter in self._sources.items():
            (family,) = counter.collect()
            old = Metric(name, f"DEPRECATED, use {family.name}_total: {family.documentation}",
                         "counter")  # fmt: skip
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    old.add_sample(f"{name}_total", sample.labels, sample.value)
            yield old


@dataclass(frozen=True)
class MetricsServer:
    """A running /metrics HTTP server; `port` is the bound one (useful when asked for port 0)."""

    host: str
    port: int
    _server: Any
    _thread: Any

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(
    registry: CollectorRegistry, host: str = "127.0.0.1", port: int = 9108
) -> MetricsServer:
    """Serve the registry on http://host:port/metrics in a daemon thread (port 0: any free one)."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(host, server.server_port, server, thread)
