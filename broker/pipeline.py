"""One batch of input messages -> encoded classifications and dead letters (pure, no Kafka).

Steps per batch, each timed for the metrics:

1. decode every message with its topic's decoder; a message that fails becomes a dead letter
   (raw bytes, origin, reason) and the rest of the batch goes on; ``strict`` raises instead; so
   does a message keyed by something else than its source id on a topic of several partitions
   (``bad_key``), or one that would take a source past the state's cap on points
   (``source_full``);
2. choose each alert's points: the kind of light curve (broker.photometry: total or difference)
   its state already holds, or, for a new source, the kind the alert proposes, which the state
   then keeps; a row written by the decoders before 0.2 (LEGACY) is replaced at its next ZTF or
   Rubin alert. Detections that make no point of that kind are counted by reason;
3. apply the chosen points to the state in one `HistogramTable.update` call (grouped by
   (source_id, band); points already held are skipped, so redelivered alerts change nothing);
4. classify every source the batch touched that holds at least the model's ``min_points``
   distinct points, in one batched call (a model that reads per-source features first gets each
   source's vector from the `broker.features.FeatureCache`, refreshed on its amortised policy);
5. one classification record per alert of those sources (scope "band"), keyed by source id; and
   with ``object_records``, one record per object (scope "object", `BatchResult.objects`, for
   the object topic) that combines the bands of the object the batch classified
   (`dmdt.bands.combine_bands`).

An alert's record carries its source's classification after the whole batch (``n_points`` says
how many points that was): alerts of one source in one batch share one inference. A batch is
all-or-nothing for the state only in the sense that matters for at-least-once: decoding and
checks run before the state changes, and replaying a batch after a crash adds no point twice.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from broker.decode import DecodedAlert, DecodeError, Decoder, SchemaRegistryUnavailable
from broker.encode import (
    UNKNOWN,
    DeadLetter,
    dead_letter_key,
    encode_dead_letter,
    now_ms,
    threshold_class,
)
from broker.feature_guard import GuardedFeatures
from broker.features import FeatureCache
from broker.models import ServedModel
from broker.outputs import ClassificationWriter
from broker.photometry import LEGACY, Points
from broker.state import PartitionId, SourceKey, SourceState
from dmdt.bands import combine_bands
from dmdt.engine import MAX_POINTS

PROCESSING_ERROR = "processing_error"  # a reason outside DecodeError's: our bug, not the input's
KIND_UNAVAILABLE = "kind_unavailable"  # the alert has no points of the kind its source keeps
# decoders whose light curves changed meaning in 0.2 (difference -> total magnitudes): a LEGACY
# row of their sources is replaced, not extended
UPGRADED_DECODERS = frozenset({"ztf", "rubin"})
SOURCE_FULL = "source_full"  # the message would take a source past the state's cap on points
BAD_KEY = "bad_key"  # keyed by something else than its source id, on a topic of several partitions


class Message(Protocol):
    """What the pipeline reads of a consumed message (`broker.kafka.Record` has these)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def timestamp_ms(self) -> int | None: ...


class StrictModeError(RuntimeError):
    """A bad message in strict mode (tests): the batch stops instead of dead-lettering it."""


@dataclass
class BatchResult:
    """What one batch produced, plus counts and timings for the metrics."""

    outputs: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, classification)
    output_alert_ts: list[int | None] = field(default_factory=list)  # input Kafka timestamps
    output_topics: list[str] = field(default_factory=list)  # input topic of each output
    dead_letters: list[tuple[bytes | None, bytes]] = field(default_factory=list)  # (key, value)
    dead_reasons: Counter[tuple[str, str]] = field(default_factory=Counter)  # (topic, reason)
    consumed: Counter[str] = field(default_factory=Counter)  # messages per topic
    alerts: int = 0  # decoded alerts (one per band per message)
    # detections that made no point of their source's kind, and documented fallbacks used:
    # (survey, reason) -> detections (each alert repeats its history: counted per message)
    dropped_detections: Counter[tuple[str, str]] = field(default_factory=Counter)
    photometry_fallbacks: Counter[tuple[str, str]] = field(default_factory=Counter)
    rows_reset: int = 0  # LEGACY rows replaced (written by the decoders before 0.2)
    objects: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, object record)
    unclassified: Counter[str] = field(default_factory=Counter)  # below min_points, per topic
    unknown: Counter[str] = field(default_factory=Counter)  # outputs answered UNKNOWN, per topic
    sources_classified: int = 0
    model: ServedModel | None = None
    decode_s: float = 0.0
    update_s: float = 0.0
    inference_s: float = 0.0
    encode_s: float = 0.0
    # models that read features: the batch's feature refreshes (broker.features)
    features_refreshed: int = 0
    features_deferred: int = 0  # refreshes due but over the batch's budget
    features_s: float = 0.0
    feature_seconds: list[float] = field(default_factory=list)  # per refresh
    stale_outputs: int = 0  # outputs whose features are older than their n_points
    missing_outputs: int = 0  # outputs of sources with no features yet (NaN vector)
    feature_failures: Counter[str] = field(default_factory=Counter)  # refreshes refused, by reason


class Pipeline:
    """Decode, update state, classify, encode: one call per batch."""

    def __init__(
        self,
        decoders: Mapping[str, Decoder],
        state: SourceState,
        model: Callable[[], ServedModel],
        *,
        strict: bool = False,
        clock_ms: Callable[[], int] = now_ms,
        features: FeatureCache | None = None,
        min_probability: float = 0.5,
        object_records: bool = False,
    ) -> None:
        if not 0.0 <= min_probability <= 1.0:
            raise ValueError(f"min_probability {min_probability} not in [0, 1]")
        self.min_probability = min_probability  # below it a record's thresholded_class is UNKNOWN
        self.object_records = object_records  # also one record per object over its bands
        self.decoders = dict(decoders)
        self.features = features if features is not None else FeatureCache()
        self.state = state
        self.model = model  # called once per batch: the model may change between batches
        self.strict = strict
        self.clock_ms = clock_ms
        self._writers: dict[str, ClassificationWriter] = {}
        # partitions per input topic (the app fills it in): on a topic with more than one, or an
        # unknown number, a message must be keyed by its source id (`_check_keys`)
        self.partitions: dict[str, int] = {}

    def writer(self, served: ServedModel) -> ClassificationWriter:
        """The record writer of a model (one per model version, kept)."""
        w = self._writers.get(served.content_hash)
        if w is None:
            w = ClassificationWriter(
                served.name, served.version, served.content_hash, served.classes
            )
            self._writers = {served.content_hash: w}  # only the current model's
        return w

    # ---------------------------------------------------------------- steps

    def _reject(
        self, out: BatchResult, msg: Message, decoder: str, reason: str, error: str, now: int
    ) -> None:
        letter = DeadLetter(
            raw=msg.value,
            key=msg.key,
            topic=msg.topic,
            partition=msg.partition,
            offset=msg.offset,
            decoder=decoder,
            reason=reason,
            error=error,
            timestamp=now,
            message_timestamp=msg.timestamp_ms,
        )
        out.dead_letters.append((dead_letter_key(msg.key), encode_dead_letter(letter)))
        out.dead_reasons[(msg.topic, reason)] += 1

    def _fail(self, msg: Message, error: str) -> StrictModeError:
        return StrictModeError(f"{msg.topic}[{msg.partition}]@{msg.offset}: {error}")

    def _decode(
        self, messages: Sequence[Message], out: BatchResult
    ) -> tuple[list[DecodedAlert], list[int]]:
        alerts: list[DecodedAlert] = []
        origin: list[int] = []  # index of each alert's message
        now = self.clock_ms()
        for i, msg in enumerate(messages):
            out.consumed[msg.topic] += 1
            decoder = self.decoders.get(msg.topic)
            name = decoder.name if decoder is not None else "none"
            try:
                if decoder is None:
                    raise LookupError(f"no decoder configured for topic {msg.topic!r}")
                if msg.value is None:
                    raise DecodeError("not_avro", "null message value (a tombstone)")
                got = decoder(msg.value)
            except SchemaRegistryUnavailable:
                raise  # an outage, not a bad message: the app retries the batch
            except DecodeError as exc:
                if self.strict:
                    raise self._fail(msg, str(exc)) from exc
                self._reject(out, msg, name, exc.reason, str(exc), now)
                continue
            except Exception as exc:  # a decoder bug must not stop the stream either
                if self.strict:
                    raise self._fail(msg, repr(exc)) from exc
                self._reject(out, msg, name, PROCESSING_ERROR, repr(exc), now)
                continue
            alerts.extend(got)
            origin.extend([i] * len(got))
        return alerts, origin

    def _check_keys(
        self,
        messages: Sequence[Message],
        alerts: list[DecodedAlert],
        origin: list[int],
        out: BatchResult,
    ) -> tuple[list[DecodedAlert], list[int]]:
        """Reject the messages, on topics of several partitions, whose key is not the source id
        of each of their alerts (the producer contract: a source's alerts must all reach one
        partition, or two consumers would keep two diverging histories of it)."""
        bad: dict[int, str] = {}
        for a, i in zip(alerts, origin, strict=True):
            msg = messages[i]
            if i not in bad and self.partitions.get(msg.topic) != 1:
                if msg.key != a.source_id.encode():
                    bad[i] = a.source_id
        if not bad:
            return alerts, origin
        now = self.clock_ms()
        for i, source_id in sorted(bad.items()):
            msg = messages[i]
            n = self.partitions.get(msg.topic)
            key = "null" if msg.key is None else repr(msg.key[:40])
            error = (
                f"key {key} is not the source id {source_id!r} and {msg.topic} has "
                f"{n if n else 'an unknown number of'} partitions: key every message by its "
                "source id, or its source may be split over two consumers"
            )
            if self.strict:
                raise self._fail(msg, error)
            self._reject(out, msg, self.decoders[msg.topic].name, BAD_KEY, error, now)
        kept = [(a, i) for a, i in zip(alerts, origin, strict=True) if i not in bad]
        return [a for a, _ in kept], [i for _, i in kept]

    def _check_capacity(
        self,
        messages: Sequence[Message],
        alerts: list[DecodedAlert],
        origin: list[int],
        out: BatchResult,
    ) -> tuple[list[DecodedAlert], list[int]]:
        """Reject the messages whose source would pass the per-source cap (the kernels' MAX_POINTS,
        or less: a durable row must fit in one changelog record); an upper bound, held + sent.
        The source keeps the exact histogram of the points it holds; the rejected alert is a
        dead letter (source_full), counted."""
        cap = min(MAX_POINTS, self.state.max_points)
        sent: dict[SourceKey, int] = {}
        for a in alerts:  # the larger of the kinds the alert offers: the source keeps one
            key = (a.source_id, a.band)
            sent[key] = sent.get(key, 0) + max(a.n, a.other.n if a.other is not None else 0)
        keys = list(sent)
        worst = self.state.held(keys) + np.fromiter(sent.values(), np.int64, len(keys))
        full = {k for k, w in zip(keys, worst.tolist(), strict=True) if w > cap}
        if not full:
            return alerts, origin
        bad = {i for a, i in zip(alerts, origin, strict=True) if (a.source_id, a.band) in full}
        now = self.clock_ms()
        for i in sorted(bad):
            msg = messages[i]
            error = f"a source of this message would hold over {cap} points, the cap per source"
            if self.strict:
                raise self._fail(msg, error)
            self._reject(out, msg, self.decoders[msg.topic].name, SOURCE_FULL, error, now)
        kept = [(a, i) for a, i in zip(alerts, origin, strict=True) if i not in bad]
        return [a for a, _ in kept], [i for _, i in kept]

    def _choose_points(
        self, messages: Sequence[Message], alerts: list[DecodedAlert], origin: list[int],
        out: BatchResult,
    ) -> tuple[list[DecodedAlert], list[int], list[Points]]:  # fmt: skip
        """Each alert's points of its source's kind (a new source takes the alert's proposal,
        which the state keeps); alerts left without points are dropped (counted)."""
        keys = [(a.source_id, a.band) for a in alerts]
        unique = list(dict.fromkeys(keys))
        stored = dict(zip(unique, self.state.photometry(unique), strict=True))
        decided: dict[SourceKey, str] = {}
        new: dict[SourceKey, str] = {}
        reset: list[SourceKey] = []
        kept: list[tuple[DecodedAlert, int, Points]] = []
        for a, i, key in zip(alerts, origin, keys, strict=True):
            kind = decided.get(key) or stored[key]
            if kind is None or kind == LEGACY:
                kind = decided[key] = new[key] = a.photometry
                # a LEGACY row of our own schema keeps its points (their meaning is unchanged)
                if stored[key] == LEGACY and self.decoders[messages[i].topic].name in (
                    UPGRADED_DECODERS
                ):
                    reset.append(key)
            points = a.points(kind)
            if points is None:
                out.dropped_detections[(a.survey, KIND_UNAVAILABLE)] += a.n
                continue
            for reason, n in points.dropped.items():
                out.dropped_detections[(a.survey, reason)] += n
            for name, n in points.fallbacks.items():
                out.photometry_fallbacks[(a.survey, name)] += n
            if points.n:
                kept.append((a, i, points))
        has_points = {(a.source_id, a.band) for a, _, _ in kept}
        reset = [k for k in dict.fromkeys(reset) if k in has_points]
        self.state.decide({k: v for k, v in new.items() if k in has_points}, reset)
        out.rows_reset += len(reset)
        return [a for a, _, _ in kept], [i for _, i, _ in kept], [p for _, _, p in kept]

    # ---------------------------------------------------------------- the batch

    def process(self, messages: Sequence[Message], ingest_ms: int | None = None) -> BatchResult:
        """Process one batch; raises only SchemaRegistryUnavailable (retry) or in strict mode."""
        out = BatchResult()
        served = out.model = self.model()
        ingest = self.clock_ms() if ingest_ms is None else ingest_ms

        t0 = time.perf_counter()
        alerts, origin = self._decode(messages, out)
        alerts, origin = self._check_keys(messages, alerts, origin, out)
        alerts, origin = self._check_capacity(messages, alerts, origin, out)
        out.alerts = len(alerts)
        alerts, origin, chosen = self._choose_points(messages, alerts, origin, out)
        t1 = time.perf_counter()
        out.decode_s = t1 - t0
        if not alerts:
            return out

        keys = [(a.source_id, a.band) for a in alerts]
        parts: list[PartitionId] = [
            (messages[i].topic, messages[i].partition) for i in origin
        ]  # fmt: skip
        sizes = np.fromiter((p.n for p in chosen), np.int64, len(chosen))
        offsets = np.zeros(len(alerts) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        t = np.concatenate([p.t for p in chosen])
        m = np.concatenate([p.m for p in chosen])
        err = np.concatenate([p.err for p in chosen])
        rows = self.state.update(keys, parts, t, m, err, offsets)
        t2 = time.perf_counter()
        out.update_s = t2 - t1

        uniq, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
        n_points = self.state.n_points(uniq)
        ready = n_points >= served.min_points
        counts = self.state.counts(uniq[ready])  # (n_ready, n_dt, n_dm)
        model = served.classifier
        feature_points = n_points  # points behind each source's features (no features: all)
        vectors = np.zeros((int(ready.sum()), 0))  # (n_ready, F): F = 0 reads no features
        if served.reads_features and ready.any():
            at = first[ready].tolist()  # an alert of each ready source: its key and partition
            guarded = GuardedFeatures(model)  # a history no period search takes stops nothing
            found = self.features.lookup(
                guarded, [keys[i] for i in at], [parts[i] for i in at], n_points[ready],
                self.state.history,
            )  # fmt: skip
            out.feature_failures = guarded.failures
            out.features_refreshed, out.features_deferred = found.refreshed, found.deferred
            out.features_s, out.feature_seconds = found.refresh_s, found.durations
            feature_points = np.zeros_like(n_points)
            feature_points[ready] = found.points
            vectors = found.vectors
        if ready.any():
            probs = model.classify(counts, n_points[ready], vectors)  # one batched call
        else:
            probs = np.zeros((0, len(served.classes)))
        out.sources_classified = int(ready.sum())
        t3 = time.perf_counter()
        out.inference_s = t3 - t2 - out.features_s

        writer = self.writer(served)
        slot = np.full(uniq.size, -1, dtype=np.int64)  # row of probs per unique source
        slot[ready] = np.arange(int(ready.sum()))
        encoded = [writer.probabilities(p) for p in probs]
        blocks = [block for block, _ in encoded]
        tops = probs.max(axis=1).tolist() if len(probs) else []
        answers = [
            threshold_class(best, top, self.min_probability)
            for (_, best), top in zip(encoded, tops, strict=True)
        ]
        publish = self.clock_ms()
        encode = writer.batch(ingest, publish)
        alert_slot = slot[inverse].tolist()
        alert_points = n_points[inverse].tolist()
        alert_features = feature_points[inverse].tolist()
        reads_features = served.reads_features
        kinds = [p.kind for p in chosen]
        # object -> its last alert's index and, per band, the probs row, points and kind
        objects: dict[str, tuple[int, dict[str, tuple[int, int, str]]]] = {}
        for j, (a, i, s, n, f) in enumerate(
            zip(alerts, origin, alert_slot, alert_points, alert_features, strict=True)
        ):
            msg = messages[i]
            if s < 0:
                out.unclassified[msg.topic] += 1
                continue
            if f < n:
                out.missing_outputs += f == 0
                out.stale_outputs += f > 0
            value = encode(
                a.survey, a.source_id, a.alert_id, a.band, n, blocks[s], a.alert_time,
                msg.timestamp_ms, f if reads_features else None, answers[s], kinds[j],
            )  # fmt: skip
            if answers[s] == UNKNOWN:
                out.unknown[msg.topic] += 1
            out.outputs.append((a.source_id.encode(), value))
            out.output_alert_ts.append(msg.timestamp_ms)
            out.output_topics.append(msg.topic)
            if self.object_records:
                _, bands = objects.get(a.source_id, (j, {}))
                bands[a.band] = (s, n, kinds[j])
                objects[a.source_id] = (j, bands)
        for j, bands in objects.values():
            a, msg = alerts[j], messages[origin[j]]
            order = sorted(bands)
            band_probs = probs[[bands[b][0] for b in order]]
            combined = combine_bands(band_probs, np.array([bands[b][1] for b in order]))
            block, best = writer.probabilities(combined)
            summary = [
                (b, bands[b][1], bands[b][2], *_top(writer.classes, probs[bands[b][0]]))
                for b in order
            ]
            answer = threshold_class(best, float(combined.max()), self.min_probability)
            value = writer.object_record(
                a.survey, a.source_id, a.alert_id, summary, block, a.alert_time,
                msg.timestamp_ms, ingest, publish, answer,
            )  # fmt: skip
            out.objects.append((a.source_id.encode(), value))
        out.encode_s = time.perf_counter() - t3
        return out


def _top(classes: Sequence[str], probs: np.ndarray) -> tuple[str, float]:
    """The most probable class (the first on ties) and its probability."""
    k = int(np.argmax(probs))
    return classes[k], float(probs[k])
