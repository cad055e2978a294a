"""One owner of partition lifecycle: assign, revoke, lost, restore, rebuild (pure, no Kafka).

The input partitions this consumer owns decide what it holds: the sources of the state
(`broker.state`), the feature vectors of the cache (`broker.features`), the partitions kept paused
while their state is restored, and the per-partition metric labels. `Ownership` changes all of
them together (as Quix Streams' `StateStoreManager` does for its stores):

- assign: the partitions are owned; with the durable state (broker.durable) each stays paused
  until its rows are restored from its changelog, in bounded steps between polls
  (`restore_step`), so the other partitions keep flowing meanwhile;
- revoke (a rebalance gives them to another consumer): between batches every earlier batch was
  delivered and stored, so their rows are flushed, then dropped (the adapter commits after the
  hook); in a back-pressure wait (a batch in flight, broker.backpressure) the batch's rows of
  these partitions are dropped unflushed and their offsets are not stored: the new owner redoes
  them;
- lost (the group moved on without us): dropped, never flushed, nothing committed;
- rebuild: a store found damaged while running is set aside, every owned partition is restored
  from its changelog (paused meanwhile), and the batch in hand is fetched again.

Rebalance callbacks run inside the consumer's poll; the hooks never raise into librdkafka: a
failure is kept and raised by `raise_hook_error` after the poll.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Protocol

from broker.backpressure import Backpressure
from broker.changelog import ChangelogError
from broker.durable import DurableState
from broker.failures import DeliveryFailed
from broker.features import FeatureCache
from broker.health import Health
from broker.metrics import BrokerMetrics
from broker.pipeline import Message
from broker.state import PartitionId, SourceState
from broker.store import StateStoreCorrupted, StateStoreError

if TYPE_CHECKING:
    from broker.kafka import Record

log = logging.getLogger("broker.app")

Hook = Callable[[list[PartitionId]], None]


class Fetcher(Protocol):
    """What ownership asks of the consumer (`broker.kafka.AlertConsumer` has these)."""

    def pause(self, partitions: Iterable[PartitionId]) -> None: ...
    def resume(self, partitions: Iterable[PartitionId]) -> None: ...
    def rewind(self, records: Iterable[Record]) -> None: ...
    def partition_counts(self, topics: Iterable[str]) -> dict[str, int]: ...


class Ownership:
    """The partitions this consumer owns and everything held per partition; see the module doc."""

    def __init__(
        self,
        state: SourceState,
        features: FeatureCache,
        metrics: BrokerMetrics,
        health: Health,
        flow: Backpressure,
    ) -> None:
        self.state = state
        self.features = features
        self.metrics = metrics
        self.health = health
        self.flow = flow
        self.owned: set[PartitionId] = set()
        # partitions per input topic, read when a batch first meets the topic (the pipeline's
        # key contract depends on them: Pipeline._check_keys); forgotten at each assignment
        self.partition_counts: dict[str, int] = {}
        self.fetcher: Fetcher | None = None  # set when the consumer exists
        self._hook_error: Exception | None = None

    # ---------------------------------------------------------------- rebalance hooks

    def hooks(self) -> tuple[Hook, Hook, Hook]:
        """The (assign, revoke, lost) callbacks for the consumer, guarded."""
        return self._guard(self.assign), self._guard(self.revoke), self._guard(self.lose)

    def assign(self, partitions: list[PartitionId]) -> None:
        """Partitions now owned; those whose state must be restored stay paused until it is."""
        self.partition_counts.clear()
        self.owned.update(partitions)
        self.state.assign(partitions)
        restoring = self.state.restoring() & set(partitions)
        if restoring and self.fetcher is not None:
            self.fetcher.pause(restoring)  # fetched once their state is restored
        self.gauges()
        log.info("assigned %s", partitions)

    def revoke(self, partitions: list[PartitionId]) -> None:
        """Partitions given to another consumer: flushed (between batches), then dropped."""
        self._drop(partitions, flush=not self.flow.in_batch, how="revoked")

    def lose(self, partitions: list[PartitionId]) -> None:
        """Partitions the group took without a revoke: dropped, not flushed, not committed."""
        self._drop(partitions, flush=False, how="lost")

    def _drop(self, partitions: list[PartitionId], *, flush: bool, how: str) -> None:
        self.flow.settle()  # the worker is done with the batch in hand (back-pressure)
        self.owned.difference_update(partitions)
        if flush:
            self.state.flush(partitions)
        dropped = self.state.release(partitions)
        self.features.release(partitions)  # not durable: recomputed by the next owner
        self.metrics.forget_partitions(partitions)
        self.gauges()
        (log.info if how == "revoked" else log.warning)(
            "%s %s: dropped %d sources", how, partitions, dropped
        )

    def gauges(self) -> None:
        """Set the gauges of what is held: owned partitions, sources, feature vectors, restores."""
        self.health.set_assigned(len(self.owned))
        self.metrics.sources_held.set(len(self.state))
        self.metrics.feature_cache_size.set(len(self.features))
        self.metrics.partitions_restoring.set(len(self.state.restoring()))

    def _guard(self, hook: Hook) -> Hook:
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

        guarded.__name__ = hook.__name__
        return guarded

    def raise_hook_error(self) -> None:
        """Raise what a rebalance hook failed with during the last poll."""
        if self._hook_error is not None:
            raise self._hook_error

    # ---------------------------------------------------------------- restores

    def restore_step(self, budget_s: float) -> bool:
        """Restore paused partitions for about ``budget_s`` and fetch those done; True while
        some are still restoring (the next poll should not wait)."""
        if not self.state.restoring():
            return False
        try:
            ready = self.state.restore_step(budget_s)
            if self.fetcher is not None:
                self.fetcher.resume(ready)
        except StateStoreCorrupted as exc:
            self.rebuild(exc, [])
        self.metrics.partitions_restoring.set(len(self.state.restoring()))
        return bool(self.state.restoring())

    def rebuild(self, exc: StateStoreCorrupted, records: Sequence[Record]) -> None:
        """The store turned out damaged while running: set it aside, restore the owned partitions
        from the changelog (paused meanwhile) and fetch ``records`` again (their offsets were
        not stored). Without a changelog: stop (DeliveryFailed)."""
        if not isinstance(self.state, DurableState) or self.state.changelog is None:
            self.metrics.state_store_errors.inc()
            raise DeliveryFailed(f"{exc}; no changelog to rebuild the store from; offsets not "
                                 "stored") from exc  # fmt: skip
        owned = sorted(self.owned)
        self.features.release(owned)
        self.state.rebuild(owned)
        self.metrics.state_store_rebuilds.labels(when="running").inc()
        if self.fetcher is not None:
            self.fetcher.pause(self.state.restoring())
            self.fetcher.rewind(records)
        self.metrics.partitions_restoring.set(len(self.state.restoring()))

    # ---------------------------------------------------------------- a batch's partitions

    def learn_topics(self, records: Sequence[Message]) -> None:
        """Read the partition counts of the batch's topics not seen since the assignment."""
        unknown = {r.topic for r in records} - set(self.partition_counts)
        if unknown and self.fetcher is not None:
            self.partition_counts.update(self.fetcher.partition_counts(unknown))

    def owned_partitions(self, records: Sequence[Message]) -> set[PartitionId]:
        """The partitions of ``records`` still owned."""
        return {(r.topic, r.partition) for r in records} & self.owned

    def owned_records(self, records: Sequence[Record]) -> list[Record]:
        """The records whose partition is still owned (those of a revoked one are redone)."""
        return [r for r in records if (r.topic, r.partition) in self.owned]
