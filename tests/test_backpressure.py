"""Back-pressure without a cluster: a slow batch pauses fetching and keeps serving the group until
it is done; a full producer queue calls the same keepalive while produce waits for room."""

from __future__ import annotations

import time

import pytest

from broker.backpressure import Backpressure
from broker.kafka import AlertProducer
from broker.settings import BrokerSettings


class FakeConsumer:
    """Stands for AlertConsumer: records keepalive calls (no Kafka needed to test the timing)."""

    def __init__(self) -> None:
        self.keepalives = 0
        self.ended = 0

    def keepalive(self) -> None:
        self.keepalives += 1

    def end_keepalive(self) -> None:
        self.ended += 1


def test_a_slow_batch_pauses_after_the_threshold_and_resumes_at_the_end() -> None:
    pauses = []
    flow = Backpressure(after_s=0.3, on_pause=lambda: pauses.append(1))
    consumer = FakeConsumer()
    flow.consumer = consumer  # type: ignore[assignment]
    try:
        flow.start()
        assert flow.call(lambda: 42) == 42  # fast: no pause
        assert consumer.keepalives == 0
        assert flow.call(lambda: time.sleep(1.0) or 7) == 7  # slow: keepalive every 0.1 s
        assert 4 <= consumer.keepalives <= 9
        assert pauses == [1]  # counted once per batch
        flow.settle()  # nothing in flight: returns at once
        flow.end()
        assert consumer.ended == 1
        assert not flow.in_batch
        flow.idle()  # between batches: nothing happens
        assert consumer.keepalives <= 9
    finally:
        flow.close()


def test_a_full_producer_queue_calls_on_full_while_it_waits() -> None:
    settings = BrokerSettings(bootstrap_servers="127.0.0.1:1")  # nothing listens
    producer = AlertProducer(settings, overrides={"queue.buffering.max.messages": 1})
    calls: list[float] = []

    class Enough(Exception):
        pass

    def on_full() -> None:  # the app's keepalive would serve the group here
        calls.append(time.monotonic())
        if len(calls) == 3:
            raise Enough

    producer.on_full = on_full
    try:
        producer.produce("t", b"first")
        with pytest.raises(Enough):
            producer.produce("t", b"second")  # no room: waits, calling on_full each round
        assert len(calls) == 3
    finally:
        producer.close(timeout_s=0.1)
