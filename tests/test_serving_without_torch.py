"""A consumer of a hybrid (LightGBM) model never needs torch: in a Python where `import torch`
fails, the service's modules import, the shipped hybrid model loads through ModelSource and the
pipeline classifies a CRTS replay. A top-level torch import anywhere on the serving path makes
the subprocess fail, as it would on an install without the [cnn] extra."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dmdt.periods import GPU_DEVICE_NODES

REPO = Path(__file__).resolve().parent.parent

# Any import of torch (or a torch submodule) raises, as on an install without torch.
BLOCK_TORCH = textwrap.dedent(
    """
    import importlib.abc
    import sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, NoTorch())
    """
)

SERVE_HYBRID = textwrap.dedent(
    """
    import json
    import sys
    import tempfile
    from collections import Counter
    from pathlib import Path

    import broker.app  # the service and every module it wires
    import broker.cli
    from broker.decode import make_decoder
    from broker.encode import decode_classification
    from broker.kafka import Record
    from broker.models import ModelSource
    from broker.pipeline import Pipeline
    from broker.state import MemoryState
    from broker.tools.replay import read_stream, replay_to_file

    source = ModelSource("models/hybrid-7", "cpu")
    served = source.current
    with tempfile.TemporaryDirectory() as tmp:
        stream = Path(tmp) / "crts.bin"
        replay_to_file("tests/data/crts", stream, history_days=float("inf"))
        records = [
            Record("lc", 0, i, r.key, r.value, 1_700_000_000_000 + i)
            for i, r in enumerate(read_stream(stream))
        ]
    pipeline = Pipeline(
        {"lc": make_decoder("lightcurve")}, MemoryState(served.classifier.grid), lambda: served
    )
    outputs = []
    for start in range(0, len(records), 500):
        outputs += pipeline.process(records[start : start + 500]).outputs
    records_out = [decode_classification(value) for _, value in outputs]
    print(json.dumps({
        "torch_loaded": "torch" in sys.modules,
        "alerts": len(records),
        "classifications": len(records_out),
        "names": sorted({c.classifier_name for c in records_out}),
        "sources": len({c.source_id for c in records_out}),
        "classes_ok": all(set(c.probabilities) == set(served.classes) for c in records_out),
        "sums": [round(sum(c.probabilities.values()), 4) for c in records_out[-3:]],
    }))
    """
)


def run_without_torch(code: str, block: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `code` in a fresh interpreter (repository root) where importing torch fails."""
    return subprocess.run(
        [sys.executable, "-c", (BLOCK_TORCH if block else "") + code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )


def test_the_torch_block_stops_a_torch_model() -> None:
    result = run_without_torch("import dmdt.cnn\n")
    assert result.returncode != 0
    assert "No module named 'torch' (blocked)" in result.stderr


@pytest.mark.parametrize("block", [True, False], ids=["torch-missing", "torch-installed"])
def test_a_hybrid_model_is_served_without_torch(block: bool) -> None:
    if not block and any(os.path.exists(p) for p in GPU_DEVICE_NODES):
        pytest.skip("a GPU is here: the period search may use it through torch")
    result = run_without_torch(SERVE_HYBRID, block=block)
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["torch_loaded"] is False
    assert report["alerts"] > 100
    assert report["classifications"] > 0
    assert report["names"] == ["hybrid-7"]
    assert report["sources"] == len(list((REPO / "tests/data/crts").glob("*.csv")))
    assert report["classes_ok"]
    assert report["sums"] == [1.0, 1.0, 1.0]
