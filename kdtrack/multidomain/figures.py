"""The figure only the multi-domain study can draw: each model's decisions over the plane of its points."""
from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from .. import tracking
from ..compare import figures
from .data import load_if_unchanged


def decision_boundaries(rows: pd.DataFrame, notes: list[str]) -> Figure | None:
    """For one dataset's runs of MLPs on 2-D points whose file can be read here: the baseline, the domain
    teachers and every student of one seed (the lowest every method has) over the validation points; None
    (with a note) when the file cannot be read here or no longer holds the data the runs saw."""
    dataset = rows["dataset"].iloc[0]
    data = load_if_unchanged(rows["data"].iloc[0], rows["data_hash"].iloc[0])
    if isinstance(data, str):
        notes.append(f"{dataset}: no decision boundaries, {data}")
        return None
    common = set.intersection(*(set(group["seed"]) for _, group in rows.groupby("method")))
    if data.valid.x.shape[1] != 2 or not common:
        return None
    seed = min(common, key=int)
    runs = rows[rows["seed"] == seed]
    baseline, students = runs[runs["task"] == "baseline"], runs[runs["task"] == "student"]
    first = [(f"{run.method}: {100 * run.model_val_acc:.1f}%", tracking.load_model(run.run_id))
             for run in baseline.itertuples()]
    if not students.empty:  # the teachers the first student learnt from
        first += [(f"teacher, domain {domain}: {100 * tracking.get_run(run_id).data.metrics['model_val_acc']:.1f}% on its domain",
                   tracking.load_model(run_id))
                  for domain, run_id in zip(data.domains, students["teacher_run_ids"].iloc[0].split(","))]
    second = [(f"{run.method}: {100 * run.model_val_acc:.1f}%", tracking.load_model(run.run_id))
              for run in students.itertuples()]
    valid = data.valid
    return figures.decision_boundaries([row for row in (first, second) if row], valid.x, valid.y, valid.d,
                                       f"{dataset}, seed {seed}: decisions over the validation points (validation "
                                       "accuracy in the titles; a teacher's on its own domain's points)")
