"""kill -9 of a `dmdt-broker run` process, twice, mid-stream, restarted on the same state dir
(Tansu): the state that comes back is exact, every alert is classified, the last classification of
every source is the offline one of the whole light curve, every input offset is committed. Also
the narrowest crash window on its own: rows acknowledged on the changelog but not yet in the
local store are restored from the changelog on the next assignment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import acceptance_helpers as acceptance
import numpy as np
import pytest
from stream_helpers import crts_curves, tiny_model
from test_changelog import Owner, changelog_settings  # noqa: F401 (a fixture)
from test_store import alerts

from broker.encode import Classification, decode_classification
from broker.kafka import AlertConsumer, AlertProducer
from broker.kafka_admin import PartitionReader
from broker.store import RocksStore, StateStoreError, decode_row, store_path
from broker.tools.replay import ReplaySource, read_stream, replay_to_file
from broker.tools.testing import TEST_CONSUMER_OVERRIDES, unique_name
from dmdt.grids import get_grid
from dmdt.reference import numpy_counts

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

N_SOURCES = 6


def test_kill_9_twice_mid_stream(kafka_settings, make_topic, tmp_path: Path) -> None:
    model = tiny_model(tmp_path / "model").path
    lc_topic, out_topic, dlq = make_topic(2), make_topic(2), make_topic(1)
    group = unique_name("group")
    curves = crts_curves(N_SOURCES)
    stream_file = tmp_path / "stream.bin"
    replay_to_file(ReplaySource("crts", "crts", tuple(curves), "lightcurve"), stream_file)
    stream = list(read_stream(stream_file))
    conf = {**TEST_CONSUMER_OVERRIDES, "auto.commit.interval.ms": 500}
    env = {
        **os.environ,
        "DMDT_BOOTSTRAP_SERVERS": kafka_settings.bootstrap_servers,
        "DMDT_KAFKA_EXTRA": ",".join(f"{k}={v}" for k, v in conf.items()),
        "DMDT_METRICS_PORT": "0", "DMDT_DEVICE": "cpu", "DMDT_TORCH_THREADS": "1",
        "DMDT_STATE_DIR": str(tmp_path / "state"), "PYTHONUNBUFFERED": "1",
    }  # fmt: skip
    cmd = [
        sys.executable, "-m", "broker.cli", "-v", "run", "--input", f"{lc_topic}:lightcurve",
        "--output", out_topic, "--dead-letter", dlq, "--group", group, "--model", str(model),
        "--batch-size", "20", "--batch-wait-ms", "10", "--min-points", "2",
    ]  # fmt: skip
    readers = []
    for p in range(2):
        reader = PartitionReader(kafka_settings)
        reader.seek(out_topic, p, 0)
        readers.append(reader)
    outputs: list[Classification] = []
    producer = AlertProducer(kafka_settings)
    chunks = [stream[len(stream) * i // 9 : len(stream) * (i + 1) // 9] for i in range(9)]

    def append(chunk: list) -> None:
        for r in chunk:
            producer.produce(lc_topic, r.value, key=r.key)
        assert producer.flush(30) == 0

    def poll_outputs() -> None:
        for r in readers:
            outputs.extend(decode_classification(x.value) for x in r.read(5000, 0.05))  # type: ignore[arg-type]

    def wait_until(condition, proc, what: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            assert proc.poll() is None, f"the consumer exited with {proc.returncode}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            poll_outputs()

    def start(n: int) -> tuple[subprocess.Popen[bytes], Path]:
        log = tmp_path / f"consumer-{n}.log"
        return subprocess.Popen(cmd, env=env, stderr=log.open("w")), log

    procs = []
    try:
        # three chunks per process: the first two are killed with SIGKILL while the stream flows
        for n in range(3):
            proc, log = start(n)
            procs.append(proc)
            wait_until(lambda log=log: "assigned [(" in log.read_text(), proc, f"{n} assigned")
            for i, chunk in enumerate(chunks[3 * n : 3 * n + 3]):
                before = len(outputs)
                append(chunk)
                wait_until(lambda b=before: len(outputs) > b, proc, f"outputs of chunk {i}")
            if n < 2:
                os.kill(proc.pid, signal.SIGKILL)  # outputs of the last chunk still coming
                proc.wait(30)
        full = {lc.source_id: len(lc) for lc in curves}
        wait_until(
            lambda: {c.source_id for c in outputs if c.n_points == full[c.source_id]} == set(full),
            proc, "every source's full classification",
        )  # fmt: skip
        probe = AlertConsumer(kafka_settings, group_id=group, overrides=TEST_CONSUMER_OVERRIDES)
        try:  # the last consumer is in the group: probing its offsets cannot stop a later join
            wait_until(
                lambda: sum(probe.committed([(lc_topic, 0), (lc_topic, 1)]).values())
                == len(stream), proc, "every input offset committed",
            )  # fmt: skip
        finally:
            probe.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, log.read_text()
        for _ in range(10):  # stragglers
            poll_outputs()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for r in readers:
            r.close()
        producer.close()
    figures = acceptance.Figures(alerts=len(stream))
    acceptance.check_outputs(figures, outputs, stream, curves, str(model))
    assert figures.alerts_without_output == 0
    assert figures.wrong_n_points == 0
    assert figures.wrong_probabilities == 0
    with RocksStore(store_path(tmp_path / "state", group)) as store:
        rows = {k: decode_row(v, get_grid()) for k, v in store.rows()}
    assert acceptance.wrong_histograms(rows, curves) == 0


def test_rows_acknowledged_but_not_stored_are_restored(changelog_settings, tmp_path):  # noqa: F811
    s = changelog_settings
    (topic,) = s.input_topics
    part = (topic, 0)
    curves = crts_curves(3)
    keys, _, t, m, e, off = alerts(curves, 0, 30)
    owner = Owner(s, tmp_path / "a")
    try:
        owner.restore([part])
        owner.state.update(keys, [part] * len(keys), t, m, e, off)

        def crash(*_args, **_kwargs):  # the process dies after the changelog acknowledged
            raise StateStoreError("killed")

        owner.state.store.write = crash  # type: ignore[method-assign]
        with pytest.raises(StateStoreError):
            owner.state.flush([part])
    finally:
        owner.close()
    again = Owner(s, tmp_path / "a")  # restarted on the same store
    try:
        assert list(again.state.store.rows()) == []  # the store never saw the rows...
        again.restore([part])  # ...the changelog did
        rows = again.rows()
        for lc in curves:
            row = rows[(lc.source_id, "V")]
            expected = numpy_counts(lc.t[:30], lc.m[:30], get_grid())
            np.testing.assert_array_equal(row["counts"], expected)
    finally:
        again.close()
