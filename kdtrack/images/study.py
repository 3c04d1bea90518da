"""The image study: a teacher, a student alone, Hinton KD, SimKD and its variants as named methods x seeds on one
dataset (kdtrack.spine.study runs it). Options a config leaves out are the dataset's recipe's.

A method's learning rate may be `tuned`: a tune cell trains each rate of `tune.lr` at the first `tune.seeds`
seeds (for `tune.epochs`), chooses on the holdout, and the method trains at the chosen rate at every seed.

    study: images
    dataset: digits                     # or cifar100 (with --data DIR)
    train: {arch: resnet8x4, lr: tuned}
    teachers: {resnet32x4: {arch: resnet32x4}}
    teacher_seed: 0                     # every student learns from this seed's teacher (else: its own seed's)
    tune: {lr: [0.001, 0.005, 0.01, 0.05, 0.1], seeds: 2}
    methods:
      student: {task: baseline}
      kd: {teachers: resnet32x4, distill: {distiller: kd}}
      simkd-kl: {teachers: resnet32x4, distill: {distiller: simkd, loss: kl}}
"""
from __future__ import annotations

import dataclasses
import sys

import pandas as pd
from matplotlib.figure import Figure

from ..errors import InputError
from ..spine.cells import Cell
from ..spine.options import shown
from ..spine.study import MethodSpec, StudyConfig, build
from ..spine.tuning import TUNED
from .cells import BaselineCell, NetworkCell, StudentCell, TeacherCell, tune_rate
from .data import DATASETS, ImageData, load_image_data
from .options import DISTILL_OPTIONS, ImageTrainOptions, recipe

DEFAULT_RATES = (0.001, 0.005, 0.01, 0.05, 0.1)
"""The rates a tuned method tries when the config's `tune.lr` does not name them."""


class ImageStudy:
    """What the spine needs of the image study."""

    name = "images"
    train_keys = tuple(field.name for field in dataclasses.fields(ImageTrainOptions))
    distill_keys = ("distiller", *dict.fromkeys(field.name for options in DISTILL_OPTIONS.values()
                                                for field in dataclasses.fields(options)))
    tune_keys = ("epochs", "seeds", "lr")

    def check(self, config: StudyConfig) -> None:
        if not isinstance(self._dataset(config), str) or self._dataset(config) not in DATASETS:
            raise InputError(f"{config.path}: dataset must be one of {', '.join(DATASETS)}, got {shown(self._dataset(config))}")
        rates = config.section("tune").get("lr", DEFAULT_RATES)
        if (not isinstance(rates, list | tuple) or len(rates) < 2
                or not all(isinstance(r, int | float) and not isinstance(r, bool) and 0 < r <= sys.float_info.max
                           for r in rates)):
            raise InputError(f"{config.path}: tune.lr must be a list of two or more positive rates, got {shown(rates)}")
        seeds = config.section("tune").get("seeds")
        if seeds is not None and (type(seeds) is not int or seeds < 1):
            raise InputError(f"{config.path}: tune.seeds must be a positive whole number, got {shown(seeds)}")
        for method in config.raw["methods"].values():
            distiller = (method.get("distill") or {}).get("distiller")
            if method.get("task", "distill") == "distill" and (not isinstance(distiller, str)
                                                               or distiller not in DISTILL_OPTIONS):
                raise InputError(f"{config.path}: a distilled method's distill.distiller must be one of "
                                 f"{', '.join(DISTILL_OPTIONS)}, got {shown(distiller)}")

    def load_data(self, config: StudyConfig, given: list[str] | None) -> list[ImageData]:
        if given and len(given) > 1:
            raise InputError(f"an image study reads one dataset: --data takes {self._dataset(config)}'s folder, "
                             f"got {len(given)} paths")
        return [load_image_data(self._dataset(config), given[0] if given else None)]

    def cells(self, config: StudyConfig, data: ImageData, seeds: tuple[int, ...], epochs: int | None,
              device: str) -> list[Cell]:
        """One cell per method (a tuned method's tune cell and a student's teachers are its dependencies)."""
        return [self._cell(config, method, data, seeds, device) for method in config.method_specs(data.name, epochs)]

    def figures(self, runs: pd.DataFrame, notes: list[str]) -> dict[str, Figure]:
        """None of its own: the sweep and the size figures are every study's."""
        return {}

    def _cell(self, config: StudyConfig, method: MethodSpec, data: ImageData, seeds: tuple[int, ...],
              device: str) -> Cell:
        common = {"data": data, "seeds": seeds, "label": method.label, "device": device}
        if method.task == "baseline":
            return self._tuned(config, method.train, method.where, BaselineCell, common)
        teachers = self._tuned(config, method.teachers, f"{method.where}.teachers", TeacherCell,
                               {**common, "label": "ce", "teacher_seed": config.raw.get("teacher_seed")})
        values = dict(method.distill)
        distill = build(f"{method.where}.distill", DISTILL_OPTIONS[values.pop("distiller")], values)
        return self._tuned(config, method.train, method.where, StudentCell, {**common, "teachers": teachers, "distill": distill})

    def _tuned(self, config: StudyConfig, values: dict, where: str, kind: type[NetworkCell], inputs: dict) -> NetworkCell:
        """A cell of `kind` with the training options `values` over the recipe, its rate tuned if `tuned`."""
        tuned = values.get("lr") == TUNED
        given = {key: value for key, value in values.items() if key != "lr" or not tuned}
        train = build(where, lambda **options: recipe(self._dataset(config), **options), given)
        cell = build(where, kind, {**inputs, "train": train})
        if not tuned:
            return cell
        tune = config.section("tune")
        rates = tuple(float(rate) for rate in tune.get("lr", DEFAULT_RATES))
        return tune_rate(cell, rates, cell.seeds[: tune.get("seeds", len(cell.seeds))],
                         min(config.tune_epochs or train.epochs, train.epochs))

    @staticmethod
    def _dataset(config: StudyConfig) -> str:
        return config.raw.get("dataset") or "digits"


IMAGES = ImageStudy()
