"""One loader for the models that classify from dmdt counts plus per-source features: the hybrid
(dmdt/hybrid.py, LightGBM) and the branch net (dmdt/branchnet.py, torch). Both have the interface
the broker's feature path uses (broker.features.FeatureModel); a dmdt CNN directory has no
model.json and is none of these."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

FEATURE_KINDS = ("hybrid", "branchnet")


def feature_model_kind(path: str | os.PathLike[str]) -> str | None:
    """The ``kind`` a model directory's model.json names, if it is a feature model's; else None."""
    config = Path(path) / "model.json"
    try:
        kind = json.loads(config.read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return kind if kind in FEATURE_KINDS else None


def load_feature_model(path: str | os.PathLike[str], device: str = "auto") -> Any:
    """Load and verify a feature model directory (``device``: where a branch net runs)."""
    kind = feature_model_kind(path)
    if kind == "hybrid":
        from dmdt.hybrid import HybridClassifier

        return HybridClassifier.load(path)
    if kind == "branchnet":
        from dmdt.branchnet import BranchNetClassifier

        return BranchNetClassifier.load(path, device)
    raise ValueError(f"{path} is not a feature model directory (model.json kind in "
                     f"{FEATURE_KINDS})")  # fmt: skip


def publish_feature_model(
    path: str | os.PathLike[str], registry_dir: str | os.PathLike[str]
) -> dict[str, Any]:
    """Copy a verified feature model into ``registry_dir/<version>/`` and make it CURRENT (as
    dmdt.artifact.publish does for a CNN); returns the record a broker announces."""
    import time

    from dmdt.artifact import publish_files

    def content_hash(folder: str | os.PathLike[str]) -> str:
        return str(load_feature_model(folder, "cpu").content_hash)  # verified, computed

    model = load_feature_model(path, "cpu")
    digest = str(model.content_hash)
    dest = publish_files(Path(path), registry_dir, model.version, digest, content_hash)
    return {
        "version": model.version,
        "content_hash": digest,
        "path": str(dest),
        "kind": feature_model_kind(dest),
        "classes": list(model.classes),
        "grid": model.grid.name,
        "features_version": model.features_version,
        "metrics": {
            k: v
            for k, v in model.metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool)
        },
        "announced": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
