"""The models the cadence measurement compares: the shipped ones, and those trained with cadence
augmentation by their ``dmdt-train`` command."""

from __future__ import annotations

from dataclasses import dataclass

from trainer.hybrid_fit import STREAM_CUTS

AUGMENT = "nightly,ztf,rubin"

CUTS = ",".join(map(str, STREAM_CUTS))


@dataclass(frozen=True)
class Candidate:
    """A model to measure: shipped (``path`` under the repository) or trained by ``argv``."""

    name: str
    label: str
    path: str  # repository-relative (shipped) or under --models (trained)
    argv: tuple[str, ...] = ()  # dmdt-train arguments; ``{out}`` and ``{cache}`` filled in
    design: str = ""  # for the fold runs: "hybrid" or "branchnet" (trained candidates only)


CANDIDATES = (
    Candidate("paper-cnn", "the paper's shallow dmdt CNN (models/paper-cnn; the default until"
              " now)", "models/paper-cnn"),
    Candidate("hybrid-7", "LightGBM on 112 periodic features (models/hybrid-7)", "models/hybrid-7"),
    Candidate("hybrid-7-stream", "hybrid-7 trained also on the first 20-300 points of each curve"
              " (models/hybrid-7-stream)", "models/hybrid-7-stream"),
    Candidate("hybrid-views-7", "LightGBM on three views of each curve (models/hybrid-views-7)",
              "models/hybrid-views-7"),
    Candidate("cnn-cadence", "the paper's CNN trained also on each curve's nightly, ZTF-like and"
              " Rubin-like copies (batch 128, lr 1e-3: 4x the images)", "cnn-cadence",
              ("fit", "crts", "--out", "{out}", "--arch", "shallow", "--classes", "paper",
               "--seed", "0", "--device", "cpu", "--cadences", AUGMENT, "--batch-size", "128",
               "--lr", "1e-3", "--epochs", "150", "--patience", "15", "--quiet")),
    Candidate("hybrid-7-cadence", "hybrid-7-stream's design trained also on each curve's"
              " nightly, ZTF-like and Rubin-like copies", "hybrid-7-cadence",
              ("fit-hybrid", "crts", "--out", "{out}", "--name", "hybrid-7-cadence",
               "--cadences", AUGMENT, "--history-cuts", CUTS, "--cache", "{cache}"), "hybrid"),
    Candidate("branchnet-7-cadence", "network over the dmdt image and the 112 periodic features"
              " (dmdt/branchnet.py), 3 members, trained on the same rows as hybrid-7-cadence",
              "branchnet-7-cadence",
              ("fit-net", "crts", "--out", "{out}", "--name", "branchnet-7-cadence",
               "--cadences", AUGMENT, "--history-cuts", CUTS, "--cache", "{cache}", "--quiet"),
              "branchnet"),
)  # fmt: skip

BY_NAME = {c.name: c for c in CANDIDATES}


def command_of(c: Candidate) -> str:
    """The command that makes candidate ``c`` (shipped ones: their model card's)."""
    if not c.argv:
        return f"shipped ({c.path}/README.md)"
    argv = [a.format(out=f"models/{c.name}", cache="build/cadence-cache") for a in c.argv]
    return "dmdt-train " + " ".join(a for a in argv if a != "--quiet")
