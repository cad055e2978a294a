"""The failure policy's shared parts (pure, no Kafka): the error that stops the loop, the dead
letters' log, and closing everything without hiding why the loop stopped.

The policy itself (docs/operations.md, "Failure policy"): what is the input's fault is
dead-lettered with a reason, counted, and the stream goes on (broker.pipeline); what is the
system's fault stops the loop with `DeliveryFailed`, counted, the batch's offsets not stored, and
a restart redelivers the batch once the cause is gone (broker.app).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

log = logging.getLogger("broker.app")

DEAD_LOG_EVERY_S = 60.0  # dead letters are logged at most this often per topic and reason
DEAD_LETTER_HINTS = {
    "bad_key": ": the producer must key every message by its source id (docs/operations.md)",
    "source_full": ": a source reached the cap on points per source (docs/scaling.md)",
}


class DeliveryFailed(RuntimeError):
    """The system failed the batch in hand (outputs not acknowledged or refused, the state not
    read or not persisted, the Schema Registry away): its offsets were not stored; stop. A
    restart redelivers the batch once the cause is gone (docs/operations.md, failure policy)."""


class DeadLetterLog:
    """Logs dead letters once a minute per topic and reason, with how many since the last line
    (the metric counts every one)."""

    def __init__(self, every_s: float = DEAD_LOG_EVERY_S) -> None:
        self.every_s = every_s
        self._seen: dict[tuple[str, str], tuple[int, float]] = {}  # (count, last logged)

    def add(self, topic: str, reason: str, n: int) -> None:
        """Count ``n`` dead letters of a topic and reason; log them if a minute has passed."""
        key = (topic, reason)
        count, last = self._seen.get(key, (0, -math.inf))
        count += n
        if time.monotonic() - last < self.every_s:
            self._seen[key] = (count, last)
            return
        self._seen[key] = (0, time.monotonic())
        log.warning("%d message(s) of %s dead-lettered as %s%s", count, topic, reason,
                    DEAD_LETTER_HINTS.get(reason, ""))  # fmt: skip


def close_all(steps: Sequence[tuple[str, Callable[[], object]]]) -> None:
    """Run every (name, close) step in order; a close that fails (a store after a full disk:
    "Writer has previous error") is logged, never raised over the error that stopped the loop."""
    for name, close in steps:
        try:
            close()
        except Exception as exc:
            log.warning("closing the %s failed: %s", name, exc)
