"""The dmdt CNNs, built from a frozen config that is saved inside every model artifact.

The paper's own layer listings could not be read (docs/paper.md, section 2). Both nets follow the
two configurations of the authors' public code (AshishMahabal/Reproducibility, nolearn/Lasagne):

- ``shallow`` (their "same_config" net A): conv 16@5x5 -> maxpool 2x2 -> conv 64@5x5 -> softmax.
- ``deep`` (their net B): conv 64@5x5 -> maxpool 2x2 -> dropout 0.1 -> conv 128@5x5 ->
  conv 256@5x5 -> dense 512 -> dropout 0.5 -> dense 512 -> softmax.

Every convolution is "valid" (no padding), stride 1, ReLU; every dense hidden layer ReLU (the
Lasagne default); weights Glorot-uniform and biases zero (Lasagne's defaults). The nets return
logits; the softmax is applied by the loss in training and by :mod:`dmdt.cnn` in inference.
Input: float32 ``(batch, 1, n_dt, n_dm)``, the uint8 dmdt image / 255. The authors' images are
dm x dt (22 x 24); ours are dt x dm (24 x 22), the same data transposed: with square kernels and
pools the layer sizes and parameter counts are identical.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

ARCHS = ("shallow", "deep")
# Dropout rates in the order the layers use them (docs/paper.md, section 2, nets A and B).
DEFAULT_DROPOUT: dict[str, tuple[float, ...]] = {"shallow": (), "deep": (0.1, 0.5)}


@dataclass(frozen=True)
class NetConfig:
    """Hyper-parameters that rebuild a net exactly (saved in config.json as ``net``)."""

    arch: str = "shallow"
    input_shape: tuple[int, int] = (24, 22)  # (n_dt, n_dm): the grid's image shape
    n_classes: int = 7
    dropout: tuple[float, ...] | None = field(default=None)  # None: the arch's default
    init: str = "glorot_uniform"  # or "torch_default"

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r}; choose one of {', '.join(ARCHS)}")
        shape = tuple(int(s) for s in self.input_shape)
        if len(shape) != 2 or min(shape) < 1:
            raise ValueError(f"input_shape must be (n_dt, n_dm), got {self.input_shape!r}")
        object.__setattr__(self, "input_shape", shape)
        if self.n_classes < 2:
            raise ValueError(f"n_classes must be at least 2, got {self.n_classes}")
        rates = DEFAULT_DROPOUT[self.arch] if self.dropout is None else tuple(self.dropout)
        if len(rates) != len(DEFAULT_DROPOUT[self.arch]):
            raise ValueError(
                f"{self.arch} takes {len(DEFAULT_DROPOUT[self.arch])} dropout rates, got {rates}"
            )
        if any(not 0.0 <= r < 1.0 for r in rates):
            raise ValueError(f"dropout rates must be in [0, 1), got {rates}")
        object.__setattr__(self, "dropout", tuple(float(r) for r in rates))
        if self.init not in ("glorot_uniform", "torch_default"):
            raise ValueError(f"unknown init {self.init!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["dropout"] = list(self.dropout or ())
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NetConfig:
        """Rebuild a config saved by :meth:`to_dict` (unknown keys are an error)."""
        d = dict(data)
        d["input_shape"] = tuple(d["input_shape"])
        if d.get("dropout") is not None:
            d["dropout"] = tuple(d["dropout"])
        return cls(**d)


def _conv_out(shape: tuple[int, int], kernel: int) -> tuple[int, int]:
    return shape[0] - kernel + 1, shape[1] - kernel + 1


class ShallowNet(nn.Module):
    """Net A: conv 16@5x5, maxpool 2, conv 64@5x5, dense (39,527 parameters for 7 classes)."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        h, w = _conv_out(config.input_shape, 5)  # 24x22 -> 20x18
        h, w = h // 2, w // 2  # pool: 10x9
        h, w = _conv_out((h, w), 5)  # 6x5
        _check(config, h, w)
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 5),  # (b, 16, 20, 18)
            nn.ReLU(),
            nn.MaxPool2d(2),  # (b, 16, 10, 9)
            nn.Conv2d(16, 64, 5),  # (b, 64, 6, 5)
            nn.ReLU(),
            nn.Flatten(),  # (b, 1920)
        )
        self.classifier = nn.Linear(64 * h * w, config.n_classes)  # (b, n_classes) logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 1, n_dt, n_dm) float32 -> (batch, n_classes) logits."""
        return self.classifier(self.features(x))


class DeepNet(nn.Module):
    """Net B: conv 64/128/256@5x5 with one maxpool, then dense 512 -> 512 -> n_classes."""

    def __init__(self, config: NetConfig) -> None:
        super().__init__()
        p1, p2 = config.dropout or DEFAULT_DROPOUT["deep"]
        h, w = _conv_out(config.input_shape, 5)  # 24x22 -> 20x18
        h, w = h // 2, w // 2  # pool: 10x9
        h, w = _conv_out(_conv_out((h, w), 5), 5)  # 6x5 -> 2x1
        _check(config, h, w)
        self.features = nn.Sequential(
            nn.Conv2d(1, 64, 5),  # (b, 64, 20, 18)
            nn.ReLU(),
            nn.MaxPool2d(2),  # (b, 64, 10, 9)
            nn.Dropout(p1),
            nn.Conv2d(64, 128, 5),  # (b, 128, 6, 5)
            nn.ReLU(),
            nn.Conv2d(128, 256, 5),  # (b, 256, 2, 1)
            nn.ReLU(),
            nn.Flatten(),  # (b, 512)
        )
        self.classifier = nn.Sequential(
            nn.Linear(256 * h * w, 512),  # (b, 512)
            nn.ReLU(),
            nn.Dropout(p2),
            nn.Linear(512, 512),  # (b, 512)
            nn.ReLU(),
            nn.Linear(512, config.n_classes),  # (b, n_classes) logits
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, 1, n_dt, n_dm) float32 -> (batch, n_classes) logits."""
        return self.classifier(self.features(x))


def _check(config: NetConfig, h: int, w: int) -> None:
    if h < 1 or w < 1:
        raise ValueError(
            f"{config.arch} net needs a larger image than {config.input_shape} "
            "(its valid 5x5 convolutions and 2x2 pool leave nothing)"
        )


def _glorot_init(net: nn.Module) -> None:
    """Lasagne's defaults: GlorotUniform(gain=1) weights, zero biases."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def build_net(config: NetConfig) -> nn.Module:
    """A freshly initialised net for ``config`` (seed torch first for repeatable weights)."""
    net: nn.Module = ShallowNet(config) if config.arch == "shallow" else DeepNet(config)
    if config.init == "glorot_uniform":
        _glorot_init(net)
    return net


def n_parameters(net: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
