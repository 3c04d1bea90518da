"""The fit, selection and validation splits. The selection split is a stratified part of the training data
held out for checkpoint selection and tuning, so that the validation split is only ever reported, never
selected on (the `holdout` policy); under the report's `validation` policy there is none."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..spine.data import stratified_holdout
from .data import MultiDomainData, Split
from .options import MLPTrainOptions


@dataclass(frozen=True)
class Splits:
    """`fit` trains, `selection` (None under the validation policy) selects, `valid` is reported.
    The indices locate fit and selection inside the original training split."""

    fit: Split
    selection: Split | None
    valid: Split
    fit_index: np.ndarray
    selection_index: np.ndarray | None


def make_splits(data: MultiDomainData, options: MLPTrainOptions) -> Splits:
    """The splits of `options`' selection policy; an InputError if a domain has too few fit or selection
    samples (every teacher trains and selects on its own domain alone)."""
    if options.selection == "validation":
        fit_index, selection_index = np.arange(len(data.train.y)), None
    else:
        strata = np.stack([data.train.d, data.train.y], axis=1)  # every (domain, class) group
        fit_index, selection_index = stratified_holdout(strata, options.selection_fraction, options.selection_seed)
        for name, index in (("selection", selection_index), ("fit", fit_index)):
            _require_per_domain(data, index, 1, f"selection-fraction {options.selection_fraction} leaves the {name} "
                                "split without samples")
    if options.batch_norm:  # a batch norm over one sample has no variance: its running variance would be inf
        _require_per_domain(data, fit_index, 2, "batch norm needs 2 fit samples per domain, and the fit split has fewer")
    return Splits(subset(data.train, fit_index), None if selection_index is None else subset(data.train, selection_index),
                  data.valid, fit_index, selection_index)


def subset(split: Split, index: np.ndarray) -> Split:
    return Split(split.x[index], split.y[index], split.d[index])


def domain_subset(split: Split, domain: int) -> Split:
    return subset(split, np.flatnonzero(split.d == domain))


def _require_per_domain(data: MultiDomainData, index: np.ndarray, minimum: int, problem: str) -> None:
    """An InputError naming `problem` and the domains with fewer than `minimum` samples among `index`."""
    counts = dict(zip(*np.unique(data.train.d[index], return_counts=True)))
    short = sorted(int(d) for d in data.domains if counts.get(d, 0) < minimum)
    if short:
        raise InputError(f"{problem} of domain(s) {short} in {data.name!r}")
