"""What ``dmdt-broker demo`` reports: latencies, accuracies, the summary it prints and writes as
JSON, and its live progress line (broker.tools.demo runs it)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np


@dataclass
class LatencyLog:
    """Append-to-published latencies (ms) of every classification, collected per batch."""

    chunks: list[np.ndarray] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on_batch(self, result: Any, delivered_ms: int) -> None:
        """`App` batch hook."""
        stamps = np.array([t for t in result.output_alert_ts if t is not None], dtype=np.int64)
        if stamps.size:
            with self.lock:
                self.chunks.append(delivered_ms - stamps)

    def values(self) -> np.ndarray:
        """All latencies so far, in ms."""
        with self.lock:
            return np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.int64)

    def recent(self, n: int = 20_000) -> np.ndarray:
        """The latest ~n latencies (for the live line)."""
        with self.lock:
            out: list[np.ndarray] = []
            for chunk in reversed(self.chunks):
                out.append(chunk)
                if sum(c.size for c in out) >= n:
                    break
        return np.concatenate(out) if out else np.zeros(0, np.int64)


def percentiles(ms: np.ndarray) -> dict[str, float]:
    """p50 / p90 / p99 / max of latencies in ms (NaN when empty)."""
    if ms.size == 0:
        return {k: float("nan") for k in ("p50", "p90", "p99", "max")}
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50": float(p50), "p90": float(p90), "p99": float(p99), "max": float(ms.max())}


HELD_OUT = "held-out"
ALL_LABELLED = "all labelled"


@dataclass(frozen=True)
class Accuracy:
    """Accuracy of the final stream classifications and of the offline ones on some sources."""

    n: int
    stream: float
    offline: float

    @classmethod
    def of(
        cls, scored: list[tuple[str, str | None, str]], labels: dict[str, str | None]
    ) -> Accuracy:
        """From (source, stream class or None, offline class) of labelled sources."""
        n = len(scored)
        if not n:
            return cls(0, float("nan"), float("nan"))
        stream = sum(got == labels[sid] for sid, got, _ in scored) / n
        offline = sum(off == labels[sid] for sid, _, off in scored) / n
        return cls(n, stream, offline)


@dataclass
class DemoSummary:
    """What the demo measured (also written as JSON with --json)."""

    sources: int
    alerts: int
    model: str
    model_hash: str
    replay_s: float
    replay_rate: float
    consumed: int
    classified: int
    dead_lettered: int
    stream_s: float  # first alert consumed -> last classification delivered
    stream_rate: float  # alerts per second over stream_s
    total_s: float  # the whole demo, broker start to stop
    latency_ms: dict[str, float]
    accuracy_on: str  # HELD_OUT (sources the model never trained on) or ALL_LABELLED
    labelled: int  # sources the accuracy is on (labelled with one of the model's classes)
    accuracy: float  # of the final stream classification on those
    offline_accuracy: float
    all_labelled: int  # every source labelled with one of the model's classes
    all_accuracy: float  # of the final stream classification on those: training curves included
    compared: int  # sources with a final stream classification and an offline one
    same_class: int
    identical: int  # probabilities equal as float32
    max_abs_diff: float
    missing: list[str]  # sources classified offline but not in the stream (should be empty)
    features_fresh: int | None = None  # hybrid: final outputs with features of the whole curve

    def _accuracy_lines(self) -> list[str]:
        if self.accuracy_on == HELD_OUT:
            return [
                f"  accuracy  {self.accuracy:.3f} on the {self.labelled:,} held-out sources (the "
                f"model's test split, never trained on; offline: {self.offline_accuracy:.3f})",
                f"            {self.all_accuracy:.3f} on all {self.all_labelled:,} labelled "
                "sources, training curves included",
            ]
        return [
            f"  accuracy  {self.accuracy:.3f} on all {self.labelled:,} sources labelled with the "
            f"model's classes, training curves included: none of them is in a held-out split "
            f"the model records (offline: {self.offline_accuracy:.3f})"
        ]

    @property
    def agrees(self) -> bool:
        """Stream and offline agree on every source."""
        return not self.missing and self.same_class == self.compared and self.max_abs_diff < 1e-6

    def render(self) -> str:
        """The closing summary, a few aligned lines."""
        lat = self.latency_ms
        return "\n".join(
            [
                f"dmdt-broker demo: {self.sources:,} CRTS sources, {self.alerts:,} alerts, "
                f"model {self.model} ({self.model_hash[:12]})",
                f"  replay    {self.alerts:,} alerts in {self.replay_s:.1f} s "
                f"({self.replay_rate:,.0f} alerts/s)",
                f"  broker    {self.consumed:,} consumed, {self.classified:,} classified, "
                f"{self.dead_lettered:,} dead-lettered in {self.stream_s:.1f} s "
                f"({self.stream_rate:,.0f} alerts/s)",
                f"  latency   append -> published: p50 {lat['p50']:,.0f} ms, p90 "
                f"{lat['p90']:,.0f} ms, p99 {lat['p99']:,.0f} ms, max {lat['max']:,.0f} ms "
                "(as fast as possible: mostly backlog)",
                *self._accuracy_lines(),
                f"  offline   {self.same_class:,}/{self.compared:,} final stream classifications "
                f"have the offline class, {self.identical:,} identical probabilities "
                f"(max |diff| {self.max_abs_diff:.1e}); {len(self.missing)} missing: "
                + ("AGREE" if self.agrees else "DISAGREE"),
                *(
                    []
                    if self.features_fresh is None
                    else [
                        f"  features  {self.features_fresh:,}/{self.compared:,} final outputs "
                        "with features of the whole curve (offline used the stream's: the "
                        "points of its last refresh)"
                    ]
                ),
                f"  total     {self.total_s:.1f} s",
            ]
        )


class Progress:
    """A live status line (carriage return) on a terminal; nothing when the stream is not one.

    `stage(text)` shows ``starting (N s): text`` and keeps N moving while a step blocks.
    """

    def __init__(self, stream: TextIO, enabled: bool, started: float | None = None) -> None:
        self.stream = stream
        self.enabled = enabled and stream.isatty()
        self.started = time.monotonic() if started is None else started
        self.shown = False
        self._stage: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        if self.enabled:
            threading.Thread(target=self._tick, name="dmdt-demo-progress", daemon=True).start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            with self._lock:
                stage = self._stage
            if stage is not None:
                self._write(self._staged(stage))

    def _staged(self, text: str) -> str:
        return f"  starting ({time.monotonic() - self.started:.0f} s): {text}"

    def _write(self, text: str) -> None:
        with self._lock:
            self.stream.write("\r" + text.ljust(110)[:140])
            self.stream.flush()
            self.shown = True

    def stage(self, text: str) -> None:
        """Show a step that may take a while; the seconds since the start keep counting."""
        if self.enabled:
            with self._lock:
                self._stage = text
            self._write(self._staged(text))

    def show(self, text: str) -> None:
        """Replace the line with text."""
        if self.enabled:
            with self._lock:
                self._stage = None
            self._write(text)

    def close(self) -> None:
        """Stop the ticking."""
        self._stop.set()
        self.done()

    def done(self) -> None:
        """End the line."""
        with self._lock:
            self._stage = None
            if self.shown:
                self.stream.write("\n")
                self.stream.flush()
                self.shown = False


def write_json(summary: DemoSummary, path: str | Path) -> None:
    """The summary as JSON (for scripts and tests)."""
    data = asdict(summary)
    data["agrees"] = summary.agrees
    Path(path).write_text(json.dumps(data, indent=1) + "\n")
