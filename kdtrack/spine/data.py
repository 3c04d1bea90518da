"""What every study's data shares: a content fingerprint, and the stratified holdout that selects checkpoints
and tuned options."""
from __future__ import annotations

import hashlib

import numpy as np


def fingerprint_of(*arrays: np.ndarray) -> str:
    """A short hash of the content of `arrays` (shapes and bytes), so that a moved or renamed copy of a
    dataset is recognised as the same data."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(str(array.shape).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


def stratified_holdout(strata: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(fit, held out) indices: `fraction` of every stratum (a row of `strata`, (N,) or (N, k)) held out,
    drawn with `seed`; each part sorted."""
    if not 0 < fraction < 1:
        raise ValueError(f"the holdout fraction must lie in (0, 1), got {fraction}")
    rows = strata.reshape(len(strata), -1)
    rng = np.random.default_rng(seed)
    held = []
    for stratum in np.unique(rows, axis=0):
        members = np.flatnonzero((rows == stratum).all(axis=1))
        held.append(rng.choice(members, size=round(len(members) * fraction), replace=False))
    held_out = np.sort(np.concatenate(held))
    return np.setdiff1d(np.arange(len(rows)), held_out), held_out

