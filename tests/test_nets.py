"""The CNNs: shapes on the default grid, parameter counts, config round trip."""

from __future__ import annotations

import pytest
import torch

from dmdt.grids import get_grid
from dmdt.nets import ARCHS, NetConfig, build_net, n_parameters


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("grid", ["mahabal2017", "mahabal2017-23dt"])
def test_output_shape(arch: str, grid: str) -> None:
    shape = get_grid(grid).shape
    net = build_net(NetConfig(arch=arch, input_shape=shape, n_classes=7)).eval()
    x = torch.rand(5, 1, *shape)  # (batch, 1, n_dt, n_dm)
    assert net(x).shape == (5, 7)


def test_shallow_matches_the_authors_parameter_count() -> None:
    # 416 + 25,664 + 13,447 printed by the authors' Keras port of net A (docs/paper.md).
    assert n_parameters(build_net(NetConfig("shallow", (24, 22), 7))) == 39_527


def test_deep_layers() -> None:
    net = build_net(NetConfig("deep", (24, 22), 7))
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 128, 256]
    drops = [m.p for m in net.modules() if isinstance(m, torch.nn.Dropout)]
    assert drops == [0.1, 0.5]


@pytest.mark.parametrize("arch", ARCHS)
def test_config_round_trip(arch: str) -> None:
    config = NetConfig(arch=arch, input_shape=(24, 22), n_classes=3)
    again = NetConfig.from_dict(config.to_dict())
    assert again == config
    torch.manual_seed(0)
    a = build_net(config)
    torch.manual_seed(0)
    b = build_net(again)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb
        assert torch.equal(va, vb)


def test_bad_configs() -> None:
    with pytest.raises(ValueError, match="unknown arch"):
        NetConfig(arch="resnet")
    with pytest.raises(ValueError, match="larger image"):
        build_net(NetConfig("shallow", (8, 8), 2))
    with pytest.raises(ValueError, match="dropout rates"):
        NetConfig("deep", dropout=(0.1,))
    with pytest.raises(TypeError):
        NetConfig.from_dict({**NetConfig().to_dict(), "unknown": 1})
