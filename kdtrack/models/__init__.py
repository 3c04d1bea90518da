"""The networks kdtrack trains, and rebuilding one from the architecture params its run logged."""
from torch import nn

from .mlp import MLP, MLPConfig
from .network import ImageNetwork, NetworkConfig
from .simkd import SimKDConfig, SimKDStudent
from .zoo import ARCHS, build_network


def from_params(params: dict[str, str]) -> nn.Module:
    """A fresh network of the architecture a run's params describe: a deployed SimKD student (it names
    its teacher's channels), an image network of the zoo (it names an arch), or else an MLP."""
    if "teacher_channels" in params:
        return SimKDStudent(SimKDConfig.from_params(params))
    if "arch" in params:
        return build_network(NetworkConfig.from_params(params))
    return MLP(MLPConfig.from_params(params))


__all__ = ["ARCHS", "ImageNetwork", "MLP", "NetworkConfig", "SimKDStudent", "build_network", "from_params"]
