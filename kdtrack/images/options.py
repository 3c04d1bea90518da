"""The options of the image tasks, checked once, logged as params and hashed into a cell's identity; and
each dataset's recipe, which fills in what the command line or a study config leaves out."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from torch import nn

from ..distillers import HintonKD
from ..distillers.base import Distiller
from ..distillers.simkd import LOSSES, PROJECTORS, SimKD
from ..engine import PRECISIONS, TrainSpec
from ..engine.optim import OptimConfig
from ..errors import InputError
from ..models.zoo import ARCHS
from ..spine.options import TrainOptions, coerce_numbers, params_of, require

MILESTONE_FRACTIONS = (150 / 240, 180 / 240, 210 / 240)
"""The CIFAR recipe's learning-rate drops as fractions of its 240 epochs; other epoch counts scale them."""


@dataclass(frozen=True, kw_only=True)
class ImageTrainOptions(TrainOptions):
    """How one network trains: SGD with momentum, the learning rate times `gamma` after each milestone
    epoch, mini-batches of `batch_size` (over all processes under torchrun), random crops of `padding`
    and, with `flip`, mirror images. The checkpoint that `select_on` prefers on a holdout carved from train
    (stratified by class) is the model; the test split is only ever reported (as `val_*`). `precision` bf16
    trains under bfloat16 autocast (kdtrack.engine.minibatch says what stays float32)."""

    selections = ("holdout",)

    arch: str = "resnet8x4"
    epochs: int = 240
    lr: float = 0.05
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[int, ...] = (150, 180, 210)
    gamma: float = 0.1
    padding: int = 4
    flip: bool = True
    precision: str = "float32"
    compile: bool = field(default=False, compare=False)
    """torch.compile the training forward: it changes how the step runs, not what it computes (within float
    tolerance), so, like the device, it is neither a param nor part of a cell's identity."""

    def __post_init__(self):
        super().__post_init__()
        require(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        require(self.arch in ARCHS, f"arch must be one of {', '.join(ARCHS)}, got {self.arch!r}")
        require(self.batch_size >= 1, f"batch-size must be at least 1, got {self.batch_size}")
        require(0 <= self.momentum < 1, f"momentum must lie in [0, 1), got {self.momentum}")
        require(all(1 <= m < self.epochs for m in self.milestones) and list(self.milestones) == sorted(set(self.milestones)),
                f"milestones must be increasing epochs in [1, {self.epochs}), got {self.milestones}")
        require(0 < self.gamma <= 1, f"gamma must lie in (0, 1], got {self.gamma}")
        require(self.padding >= 0, f"padding must be 0 or more, got {self.padding}")

    @property
    def optim(self) -> OptimConfig:
        return OptimConfig(self.lr, "sgd", self.weight_decay, schedule="multistep", momentum=self.momentum,
                           milestones=self.milestones, gamma=self.gamma)

    def params(self) -> dict[str, str]:
        return {key: value for key, value in super().params().items() if key != "compile"}

    def spec(self, device: str) -> TrainSpec:
        return dataclasses.replace(super().spec(device), precision=self.precision, compile=self.compile)


RECIPES = {
    "cifar100": {},
    "digits": {"epochs": 10, "lr": 0.01, "milestones": (6, 8, 9), "padding": 1, "flip": False},
}
"""Each dataset's defaults over ImageTrainOptions': CIFAR-100's are the paper's (240 epochs, lr 0.05 dropped
x0.1 at 150, 180 and 210, batch 64, 4-pixel crops and flips). Digits (8 x 8, no mirror images: a mirrored
digit is another glyph) trains 10 epochs on the same schedule's fractions, with 1-pixel crops, at lr 0.01:
at 0.05 a resnet32x4 on its 1,293 training images diverged for one seed of three (36% test accuracy after 10
epochs; 0.01 and 0.02 gave 97.2% for that seed)."""


def recipe(dataset: str, **given) -> ImageTrainOptions:
    """`dataset`'s recipe with the options given (None: the recipe's). Milestones not given follow the
    epochs: the recipe's fractions of them."""
    if dataset not in RECIPES:
        raise InputError(f"dataset must be one of {', '.join(RECIPES)}, got {dataset!r}")
    given = {key: value for key, value in given.items() if value is not None}
    if "epochs" in given and "milestones" not in given:
        given["milestones"] = scaled_milestones(given["epochs"])
    return ImageTrainOptions(**{**RECIPES[dataset], **given})


def check_rates(train: ImageTrainOptions, rates: tuple[float, ...]) -> None:
    """Every rate of a sweep is a valid `lr` of `train`: refused before anything trains, not at its turn."""
    for rate in rates:
        dataclasses.replace(train, lr=rate)


def scaled_milestones(epochs) -> tuple[int, ...]:
    """The recipe's fractions of `epochs` (a bad count is left for the options to refuse)."""
    try:
        return tuple(sorted({max(1, round(f * epochs)) for f in MILESTONE_FRACTIONS} - {epochs}))
    except (TypeError, ValueError, OverflowError):
        return ()


@dataclass(frozen=True)
class ImageKDOptions:
    """Hinton KD as the SimKD repository runs its KD baseline (the 74.42 the README compares with):
    `ce_weight` CE + `kd_weight` T^2 KL at T = 4, weights 1 and 1. RepDistiller's and mdistiller's
    convention is 0.1 and 0.9."""

    ce_weight: float = 1.0
    kd_weight: float = 1.0
    temperature: float = 4.0

    def __post_init__(self):
        coerce_numbers(self)
        require(0 <= self.ce_weight < math.inf, f"ce-weight must be a finite number >= 0, got {self.ce_weight}")
        require(0 <= self.kd_weight < math.inf, f"kd-weight must be a finite number >= 0, got {self.kd_weight}")
        require(0 < self.temperature < math.inf, f"temperature must be a positive finite number, got {self.temperature}")

    def params(self) -> dict[str, str]:
        return {"distiller": "kd", **params_of(self)}

    def label(self) -> str:
        return "kd"

    def distiller(self, epochs: int, student: nn.Module, teacher: nn.Module, image_size: tuple[int, int]) -> Distiller:
        """The objective that trains `student` from `teacher` on images of `image_size`."""
        return HintonKD.weighted(epochs, self.ce_weight, self.kd_weight, self.temperature)


@dataclass(frozen=True)
class SimKDOptions:
    """SimKD and its variants (kdtrack.distillers.simkd says what each does)."""

    factor: int = 2
    loss: str = "l2"
    projector: str = "single"
    multi_weight: float = 2 / 3
    use_labels: bool = False
    temperature: float = 4.0

    def __post_init__(self):
        coerce_numbers(self)
        require(self.factor >= 1, f"factor must be a whole number >= 1, got {self.factor}")
        require(self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        require(self.projector in PROJECTORS, f"projector must be one of {', '.join(PROJECTORS)}, got {self.projector!r}")
        require(0 < self.multi_weight < 1, f"multi-weight must lie in (0, 1), got {self.multi_weight}")
        require(0 < self.temperature < math.inf, f"temperature must be a positive finite number, got {self.temperature}")

    def params(self) -> dict[str, str]:
        return {"distiller": "simkd", **params_of(self)}

    def label(self) -> str:
        """The variant's name, as a study would call it: simkd, simkd-kl, simkd-multi, simkd-all-layer-labels..."""
        parts = ["simkd"] + (["kl"] if self.loss == "kl" else []) + ([self.projector] if self.projector != "single" else [])
        return "-".join(parts + (["labels"] if self.use_labels else []))

    def distiller(self, epochs: int, student: nn.Module, teacher: nn.Module, image_size: tuple[int, int]) -> Distiller:
        return SimKD(epochs, student, teacher, image_size, self.factor, self.loss, self.projector, self.multi_weight,
                     self.use_labels, self.temperature)


DISTILL_OPTIONS = {"kd": ImageKDOptions, "simkd": SimKDOptions}
"""The image study's distillers and their options, by the name a config's `distill.distiller` gives."""
