"""The assignment's MLP, as a plain single model and as a stack of many that train as one program.

`MLP` is what a run logs and what a user loads back. `StackedMLP` holds M copies of the same
architecture with their parameters stacked on a leading model axis, so that one forward pass and one
Adam step train every seed (and every domain teacher) at once. Adam and AdamW are elementwise, so each
model's update depends only on its own slice: the stack trains each model exactly as it would alone.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class MLPConfig:
    in_features: int = 2
    hidden: tuple[int, ...] = (20, 10)
    n_classes: int = 2
    batch_norm: bool = False

    def to_params(self) -> dict[str, str]:
        """The architecture as run params, enough to rebuild the model (see `from_params`)."""
        return {
            "in_features": str(self.in_features),
            "hidden": ",".join(map(str, self.hidden)),
            "n_classes": str(self.n_classes),
            "batch_norm": str(self.batch_norm).lower(),
        }

    @classmethod
    def from_params(cls, params: dict[str, str]) -> "MLPConfig":
        return cls(
            in_features=int(params["in_features"]),
            hidden=parse_hidden(params["hidden"]),
            n_classes=int(params["n_classes"]),
            batch_norm=params["batch_norm"] == "true",
        )


def parse_hidden(text: str) -> tuple[int, ...]:
    """"20,10" -> (20, 10); a ValueError that says what is wrong otherwise."""
    try:
        sizes = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise ValueError(f"hidden sizes must be positive integers, got {text!r}")
    return sizes


class MLP(nn.Sequential):
    """Linear -> [BatchNorm1d] -> ReLU for each hidden layer, then a linear classifier.

    A Linear that feeds a BatchNorm has no bias: the norm removes it, so its gradient is zero up to
    rounding, and Adam would turn that rounding noise into full-size steps.
    """

    def __init__(self, config: MLPConfig):
        layers: list[nn.Module] = []
        width = config.in_features
        for size in config.hidden:
            layers.append(nn.Linear(width, size, bias=not config.batch_norm))
            if config.batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(nn.ReLU())
            width = size
        layers.append(nn.Linear(width, config.n_classes))
        super().__init__(*layers)
        self.config = config


def init_mlps(config: MLPConfig, seeds: list[int]) -> list[MLP]:
    """One freshly initialised MLP per seed, each exactly what `torch.manual_seed(seed)` gives alone."""
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        models.append(MLP(config))
    return models


class StackedMLP(nn.Module):
    """M MLPs of one architecture; input (M or 1, N, F) -> logits (M, N, C).

    Batch norm statistics are taken per model over that model's real samples only (`mask`), since in
    a stack of domain teachers each model sees a different number of samples, padded to a common N.
    """

    def __init__(self, models: list[MLP]):
        super().__init__()
        self.config = models[0].config
        self.n_models = len(models)
        self._plan = [(type(layer).__name__, str(i), getattr(layer, "bias", None) is not None)
                      for i, layer in enumerate(models[0])]
        states = [model.state_dict() for model in models]
        self._keys = [key for key in states[0] if not key.endswith("num_batches_tracked")]
        for key in self._keys:
            stacked = torch.stack([state[key] for state in states]).clone()
            if key.endswith(("weight", "bias")):
                self.register_parameter(_attr(key), nn.Parameter(stacked))
            else:
                self.register_buffer(_attr(key), stacked)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        h = x
        for kind, layer, has_bias in self._plan:
            if kind == "Linear":
                h = torch.matmul(h, self._get(layer, "weight").transpose(1, 2))
                if has_bias:
                    h = h + self._get(layer, "bias").unsqueeze(1)
            elif kind == "BatchNorm1d":
                h = self._batch_norm(h, layer, mask)
            else:
                h = torch.relu(h)
        return h

    def _get(self, layer: str, name: str) -> Tensor:
        return getattr(self, _attr(f"{layer}.{name}"))

    def _batch_norm(self, h: Tensor, layer: str, mask: Tensor | None, eps: float = 1e-5, momentum: float = 0.1) -> Tensor:
        gamma, beta = self._get(layer, "weight"), self._get(layer, "bias")
        running_mean, running_var = self._get(layer, "running_mean"), self._get(layer, "running_var")
        if self.training:
            weights = torch.ones_like(h[..., :1]) if mask is None else mask.unsqueeze(-1)
            count = weights.sum(dim=1)
            mean = (h * weights).sum(dim=1) / count
            var = (((h - mean.unsqueeze(1)) ** 2) * weights).sum(dim=1) / count
            with torch.no_grad():
                running_mean.lerp_(mean, momentum)
                running_var.lerp_(var * count / (count - 1), momentum)
        else:
            mean, var = running_mean, running_var
        normed = (h - mean.unsqueeze(1)) / torch.sqrt(var.unsqueeze(1) + eps)
        return normed * gamma.unsqueeze(1) + beta.unsqueeze(1)

    def tensors(self) -> dict[str, Tensor]:
        """Every stacked tensor (live, detached), keyed like a single MLP's state_dict."""
        return {key: getattr(self, _attr(key)).detach() for key in self._keys}

    def snapshot(self) -> dict[str, Tensor]:
        """A copy of `tensors()` that later training leaves untouched."""
        return {key: value.clone() for key, value in self.tensors().items()}

    def unstack(self, snapshot: dict[str, Tensor], index: int) -> MLP:
        """Model `index` of a snapshot as a plain MLP in eval mode."""
        model = MLP(self.config)
        state = model.state_dict()
        state.update({key: snapshot[key][index].clone() for key in self._keys})
        model.load_state_dict(state)
        return model.eval()


def _attr(key: str) -> str:
    """A state_dict key ("3.weight") as an attribute name ("3_weight")."""
    return key.replace(".", "_")
