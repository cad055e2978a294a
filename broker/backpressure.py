"""Back-pressure: a batch that waits (slow model, full output queue, slow acknowledgements) pauses
fetching and keeps the consumer in its group, instead of letting librdkafka's prefetch grow or
letting max.poll.interval.ms expire (which would cost the partitions and redo the work).

The loop calls `start` when a batch begins and `end` when it is stored. Inference runs in one
worker thread (`call`) while this thread waits; every wait in between calls `idle`. Once a batch
has waited `after_s`, `idle` calls `AlertConsumer.keepalive`: every owned partition is paused
(librdkafka drops its prefetched messages and refetches them on resume) and the group is served,
so heartbeats and rebalance callbacks go on. Rebalance hooks that run during such a wait call
`settle` first, so they never touch the state while the worker updates it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from broker.kafka import AlertConsumer, AlertProducer

T = TypeVar("T")
POLL_S = 0.1  # how often a waiting loop serves the group


class Backpressure:
    """The waits of one consumer's loop; see the module docstring."""

    def __init__(self, after_s: float = 1.0, on_pause: Callable[[], None] | None = None) -> None:
        self.after_s = after_s
        self.on_pause = on_pause  # called once per batch that paused fetching (a metric)
        self.consumer: AlertConsumer | None = None
        self._since: float | None = None  # start of the batch in hand
        self._paused = False
        self._busy: Future[object] | None = None
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="dmdt-batch")

    @property
    def in_batch(self) -> bool:
        """True between `start` and `end`: a batch is in flight."""
        return self._since is not None

    def start(self) -> None:
        """A batch begins."""
        self._since = time.monotonic()

    def idle(self) -> None:
        """Called by every wait: past `after_s`, pause fetching and serve the group."""
        if self._since is None or self.consumer is None:
            return
        if time.monotonic() - self._since < self.after_s:
            return
        if not self._paused:
            self._paused = True
            if self.on_pause is not None:
                self.on_pause()
        self.consumer.keepalive()

    def call(self, fn: Callable[[], T]) -> T:
        """Run fn in the worker thread, serving `idle` until it returns (or raises)."""
        future = self._executor.submit(fn)
        self._busy = future  # type: ignore[assignment]
        try:
            while True:
                try:
                    return future.result(timeout=POLL_S)
                except TimeoutError:
                    self.idle()
        finally:
            self._busy = None

    def settle(self) -> None:
        """Wait until the worker is done with the batch in hand (rebalance hooks call this)."""
        busy = self._busy
        if busy is not None:
            wait([busy])

    def drain(self, producer: AlertProducer, timeout_s: float) -> int:
        """Wait for every queued output's acknowledgement; returns how many are still in flight."""
        deadline = time.monotonic() + timeout_s
        while True:
            left = producer.flush(min(POLL_S * 2, max(deadline - time.monotonic(), 0)))
            if left == 0 or time.monotonic() >= deadline:
                return left
            self.idle()

    def end(self) -> None:
        """The batch is done: resume fetching if it was paused."""
        self._since = None
        if self._paused:
            self._paused = False
            if self.consumer is not None:
                self.consumer.end_keepalive()

    def close(self) -> None:
        """Stop the worker thread."""
        self._executor.shutdown(wait=True)
