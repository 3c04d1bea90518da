"""The selection split: a stratified part of the training data held out for checkpoint selection and
tuning, so that the validation split is only ever reported, never selected on."""
from __future__ import annotations

import numpy as np

from .multidomain import Split


def selection_indices(split: Split, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, selection) indices: `fraction` of every (domain, class) group held out, drawn with `seed`."""
    rng = np.random.default_rng(seed)
    held = []
    for domain, label in sorted(set(zip(split.d.tolist(), split.y.tolist()))):
        group = np.flatnonzero((split.d == domain) & (split.y == label))
        held.append(rng.choice(group, size=round(len(group) * fraction), replace=False))
    selection = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(split.y)), selection), selection


def subset(split: Split, index: np.ndarray) -> Split:
    return Split(split.x[index], split.y[index], split.d[index])
