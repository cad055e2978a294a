"""The scale-out acceptance run: 1,000 real CRTS light curves (their first 30 detections) replayed
into 6 partitions, three `dmdt-broker run` consumers in one group, one killed with SIGKILL
mid-stream and restarted, a fourth added, then the same replay again (the scenario and its checks:
tests/acceptance_helpers.py). ``-s`` prints the figures docs/state.md quotes."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import acceptance_helpers as acceptance
import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_no_alert_lost_no_point_counted_twice(kafka_bootstrap: str, tmp_path: Path) -> None:
    figures = acceptance.run_acceptance(
        bootstrap=kafka_bootstrap, sources=1000, points=30, partitions=6, workdir=tmp_path
    )
    print(json.dumps({**asdict(figures), "ok": figures.ok}, indent=2))
    assert figures.sources == 1000
    assert figures.alerts == 30_000
    assert figures.outputs_at_kill < figures.alerts / 2  # B died mid-stream
    assert figures.alerts_without_output == 0
    assert figures.wrong_n_points == 0  # the last classification has every distinct point
    assert figures.wrong_probabilities == 0  # and equals dmdt-train predict's (atol 1e-6)
    assert figures.wrong_histograms == 0  # the changelog rebuilds every histogram exactly
    assert figures.dead_letters == 0
    assert figures.second_run_outputs >= figures.alerts  # the second run classified every alert
    assert figures.second_run_partial == 0  # with the full point count: nothing was missing
    assert figures.changelog_rows_second_run == 0  # and no histogram changed
    assert figures.wrong_histograms_second_run == 0
    assert figures.committed == 2 * figures.alerts
    assert figures.exit_codes == [0] * 4  # A, B, C, D stopped with SIGTERM after the second run
    assert figures.ok
