"""All Prometheus metrics of the broker, declared once on a given registry (namespace ``dmdt``).

Labels take few values only (topic, partition, reason, outcome), never a source id. Tests build
`BrokerMetrics(CollectorRegistry())` and read values with `registry.get_sample_value`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

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

        self.alerts_consumed = counter("alerts_consumed", "Input messages consumed", ["topic"])
        self.alerts_classified = counter(
            "alerts_classified", "Classifications published", ["topic"]
        )
        self.alerts_dead_lettered = counter(
            "alerts_dead_lettered",
            "Input messages sent to the dead-letter topic",
            ["topic", "reason"],
        )
        self.alerts_unclassified = counter(
            "alerts_unclassified",
            "Decoded alerts not classified: their source holds fewer than min_points points",
            ["topic"],
        )
        self.alerts_unknown = counter(
            "alerts_unknown",
            'Classifications published with thresholded_class "unknown": their top class '
            "probability was below min_probability",
            ["topic"],
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

    def set_model(self, name: str, version: str, model_hash: str) -> None:
        """Publish the loaded model's identity (dmdt_model_info)."""
        self.model.info({"name": name, "version": version, "hash": model_hash})

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
