"""The networks kdtrack trains, and rebuilding one from the architecture params its run logged."""
import torch
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


def from_checkpoint(params: dict[str, str], state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """The network a run logged, from its params and state_dict, in eval mode. Building it first draws from
    torch's global generator, as building any network does."""
    network = from_params(params)
    network.load_state_dict(state_dict)
    return network.eval()


__all__ = ["ARCHS", "ImageNetwork", "MLP", "NetworkConfig", "SimKDStudent", "build_network", "from_checkpoint", "from_params"]
