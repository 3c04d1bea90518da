"""The CIFAR ResNets against the literature's numbers: parameter counts, feature shapes, block structure,
initialisation, and export in MLflow's pt2 format."""
import math

import pytest
import torch
from torch import nn

from kdtrack.models import from_params
from kdtrack.models.resnet import ResNetConfig, build_resnet


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("arch, parameters", [("resnet8x4", 1_233_540), ("resnet32x4", 7_433_860)])
def test_parameter_counts_are_the_papers(arch, parameters):
    assert _count(build_resnet(ResNetConfig(arch, 100))) == parameters
    assert _count(build_resnet(ResNetConfig(arch, 10))) == parameters - 90 * 257


@pytest.mark.parametrize("arch", ["resnet8x4", "resnet32x4"])
def test_stage_maps_and_logits(arch):
    model = build_resnet(ResNetConfig(arch, 100), seed=0).eval()
    x = torch.randn(2, 3, 32, 32)
    maps = model.features(x)
    assert [tuple(m.shape) for m in maps] == [(2, 64, 32, 32), (2, 128, 16, 16), (2, 256, 8, 8)]
    with torch.no_grad():
        assert torch.equal(model(x), model.classify(model.features(x)[-1]))
    small = build_resnet(ResNetConfig(arch, 10, in_channels=1), seed=0)
    assert small.features(torch.randn(2, 1, 8, 8))[-1].shape == (2, 256, 2, 2)
    assert small(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_blocks_and_shortcuts():
    model = build_resnet(ResNetConfig("resnet32x4", 100))
    assert [len(stage) for stage in model.stages] == [5, 5, 5]
    for stage in model.stages:
        shortcuts = [not isinstance(block.shortcut, nn.Identity) for block in stage]
        assert shortcuts == [True, False, False, False, False]
    assert [stage[0].conv1.stride for stage in model.stages] == [(1, 1), (2, 2), (2, 2)]
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())


def test_kaiming_fan_out_initialisation():
    model = build_resnet(ResNetConfig("resnet32x4", 100), seed=0)
    conv = model.stages[2][1].conv1  # 256 -> 256, 3x3
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.05)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)


def test_seeds_and_configs():
    config = ResNetConfig("resnet8x4", 10)
    same = [build_resnet(config, seed=3).state_dict() for _ in range(2)]
    assert all(torch.equal(same[0][key], same[1][key]) for key in same[0])
    other = build_resnet(config, seed=4).state_dict()
    assert not torch.equal(same[0]["stem.0.weight"], other["stem.0.weight"])
    assert ResNetConfig.from_params(config.to_params()) == config
    assert isinstance(from_params(config.to_params()), type(build_resnet(config)))
    with pytest.raises(ValueError, match="resnet8x4, resnet32x4"):
        ResNetConfig("resnet18", 10)


def test_exports_as_mlflow_logs_it():
    model = build_resnet(ResNetConfig("resnet8x4", 10), seed=0).eval()
    x = torch.randn(2, 3, 32, 32)
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        assert torch.allclose(exported.module()(x), model(x), atol=1e-5)
