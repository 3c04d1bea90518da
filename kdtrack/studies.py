"""The studies kdtrack runs, by the name a study config's `study:` gives: the one place that names them all."""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from .errors import InputError
from .images.study import IMAGES
from .multidomain.study import MULTIDOMAIN
from .spine.study import Study, StudyConfig

STUDIES: dict[str, Study] = {study.name: study for study in (MULTIDOMAIN, IMAGES)}


def study_of(config: StudyConfig) -> Study:
    if config.study not in STUDIES:
        raise InputError(f"{config.path}: study must be one of {', '.join(STUDIES)}, got {config.study!r}")
    return STUDIES[config.study]


def figures(runs: pd.DataFrame, notes: list[str]) -> dict[str, Figure]:
    """Every study's own figures of `runs` (compare's extras)."""
    return {name: figure for study in STUDIES.values() for name, figure in study.figures(runs, notes).items()}
