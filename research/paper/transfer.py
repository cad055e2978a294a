"""Transfer learning (Table V): the CRTS model on EROS-1, then fine-tuned on a small part of it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import torch

from dmdt.cnn import read_model
from dmdt.datasets import load_labelled
from dmdt.lightcurves import LightCurve
from dmdt.registry import PAPER_CNN_DIR
from research.paper.common import (
    Context,
    Store,
    cap_per_class,
    cnn_metrics,
    predict_logits,
    to_batch,
)
from trainer import data
from trainer.evaluate import classification_metrics

EROS_CLASSES = ("EB", "RRLyrae", "Mira", "Cepheid")
PREDICTED = ("EB", "RRLyrae", "Mira", "RS_CVn")


def as_if_flux(lc: LightCurve) -> LightCurve:
    """The light points read as fluxes (m = -2.5 log10(value)), as the upstream description
    says and the reader once did; they are magnitudes (``read_eros1``), so this shrinks every dm
    ~18-fold. Kept as one row of the table, for the record."""
    return replace(lc, m=-2.5 * np.log10(lc.m), err=2.5 / np.log(10.0) * lc.err / lc.m)


def transfer(ctx: Context, store: Store, model: str = str(PAPER_CNN_DIR)) -> dict[str, Any]:
    """Direct application per band, then fine-tuning vs training from scratch on the same 15%."""
    b = ctx.budget
    crts = read_model(model)
    lcs = cap_per_class(load_labelled("eros1", min_points=crts.min_points), b.eros_per_class)
    lcs.sort(key=lambda lc: (lc.source_id, lc.band or ""))
    images = data.images(lcs, crts.grid)
    labels = np.array([EROS_CLASSES.index(str(lc.label)) for lc in lcs])

    def direct(band: str, imgs: np.ndarray) -> dict[str, Any]:
        idx = np.flatnonzero([lc.band == band for lc in lcs])
        probs = predict_logits(crts.net, to_batch(imgs[idx]))
        eros = [data.CRTS_TO_EROS[crts.classes[k]] for k in probs.argmax(1)]
        pred = np.array([PREDICTED.index(c) for c in eros])
        true = labels[idx]
        known = true < 3  # EB, RRLyrae, Mira: classes both surveys have
        result = classification_metrics(true[known], pred[known], PREDICTED)
        result["per_class_recall"].pop("RS_CVn")
        result["balanced_accuracy"] = float(np.mean(list(result["per_class_recall"].values())))
        result["cepheids"] = {
            "n": int((~known).sum()),
            "predicted_as": {PREDICTED[k]: int(np.sum(pred[~known] == k)) for k in range(4)},
        }
        result["note"] = (
            "confusion matrix rows: EB, RRLyrae, Mira (RS_CVn row empty); columns: predicted group"
        )
        return result

    # Split by object (both bands of an object on the same side), stratified by class.
    objects = sorted({lc.source_id for lc in lcs})
    obj_label = {lc.source_id: labels[i] for i, lc in enumerate(lcs)}
    y_obj = np.array([obj_label[o] for o in objects])
    tune_obj, _test_obj = data.stratified_split(y_obj, 1.0 - b.transfer_frac, 0)
    tune_ids = {objects[i] for i in tune_obj}
    in_tune = np.array([lc.source_id in tune_ids for lc in lcs])
    tune, test = np.flatnonzero(in_tune), np.flatnonzero(~in_tune)

    def trained(key: str) -> dict[str, Any]:
        init = None
        if key == "fine_tuned":
            features = crts.net.get_submodule("features")
            init = {k: v.clone() for k, v in features.state_dict().items()}
        result = cnn_metrics(
            images,
            labels,
            tune,
            test,
            EROS_CLASSES,
            epochs=b.transfer_epochs,
            patience=b.transfer_patience,
            seed=0,
            init_features=init,
        )
        result["n_objects_tune"] = len(tune_ids)
        return result

    def run(key: str) -> dict[str, Any]:
        if key.startswith("direct_as_read/"):  # the values read as fluxes, for the record
            return direct(key.split("/")[1], data.images([as_if_flux(lc) for lc in lcs], crts.grid))
        return direct(key.split("/")[1], images) if key.startswith("direct/") else trained(key)

    torch.manual_seed(0)
    meta = {
        "budget": b.to_dict(),
        "model": {
            "path": str(crts.path.name),
            "version": crts.version,
            "classes": list(crts.classes),
        },
        "settings": {
            "mapping": data.CRTS_TO_EROS,
            "tune_fraction": b.transfer_frac,
            "epochs": b.transfer_epochs,
            "patience": b.transfer_patience,
            "n_curves": len(lcs),
            "bands": ["B", "R"],
            "values": "EROS-1 light points used as magnitudes (read_eros1)",
        },
    }
    keys = ["direct/B", "direct/R", "direct_as_read/R", "fine_tuned", "scratch"]
    return store.run("transfer", keys, run, meta)
