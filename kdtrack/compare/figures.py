"""The pictures kdtrack draws, each from tables, histories or models its caller read from the store.

Figures use matplotlib's object API (no pyplot, no global state, no display needed); each is titled, its
axes labelled, and readable at a glance.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from .tables import t_half_width

MAX_POINTS = 600
"""Curves over 30,000 epochs are drawn through at most this many epochs."""
CLASS_COLOURS = ("#3b75af", "#c44e52")
DOMAIN_MARKERS = ("o", "s", "^", "D", "v", "P")


def accuracy_bars(rows: pd.DataFrame, metric: str, label: str) -> Figure:
    """Per dataset, a bar per method: the mean of `metric` (a fraction, shown in percent) over seeds,
    the sample std as an error bar, and each seed as a point. `rows`: dataset, method, seed, metric."""
    def bar(ax, position: int, values: np.ndarray) -> None:
        std = values.std(ddof=1) if len(values) > 1 else 0.0
        ax.bar(position, values.mean(), width=0.7, color=f"C{position % 10}", alpha=0.55, yerr=std, capsize=4)

    figure, panels = _method_panels(rows, metric, 100.0, bar)
    for ax, group in panels:
        low = 100 * group[metric].min()
        ax.set_ylim(max(0.0, low - max(2.0, (100 - low) * 0.3)), 100.5)
    panels[0][0].set_ylabel(f"{label} (%)")
    figure.suptitle(f"{label}\nmean ± sample std over seeds (bars), each seed (points)")
    return figure


def curves(rows: dict[str, dict[str, list[pd.DataFrame]]], title: str) -> Figure:
    """Training loss, validation loss and validation accuracy over epochs: a row per key of `rows`
    (a dataset), a line per group within it (a method, a domain) with a band of ± one sample std over
    its histories (seeds). Each method's losses are its own training objective."""
    columns = [("train_loss", "training loss", True), ("val_loss", "validation loss", True),
               ("val_acc", "validation accuracy (%)", False)]
    figure = _figure(len(rows), 3, width=4.6, height=3.0, layout=None)  # a fixed grid: every cell draws one
    axes = figure.subplots(len(rows), 3, squeeze=False, gridspec_kw=_margins(figure, len(rows), 3))
    for row, (dataset, groups) in zip(axes, rows.items()):
        for colour, (group, histories) in enumerate(groups.items()):
            for ax, (column, _, _) in zip(row, columns):
                epochs, mean, std = _mean_band(histories, column, 100.0 if column == "val_acc" else 1.0)
                ax.plot(epochs, mean, color=f"C{colour % 10}", lw=1.2, label=f"{group} (n={len(histories)})")
                ax.fill_between(epochs, mean - std, mean + std, color=f"C{colour % 10}", alpha=0.2, lw=0)
        for ax, (_, name, log) in zip(row, columns):
            ax.set_title(f"{dataset}: {name}", fontsize=10)
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            low, high = ax.dataLim.y0, ax.dataLim.y1
            if log and low > 0 and high / low > 10:  # losses that fall by decades
                ax.set_yscale("log")
        row[2].legend(fontsize=8, loc="lower right")
    figure.suptitle(title)
    return figure


def decision_boundaries(rows: list[list[tuple[str, Callable]]], x: np.ndarray, y: np.ndarray, d: np.ndarray,
                        title: str) -> Figure:
    """A row of panels per entry of `rows`, each a model over the plane (its predicted class as shading,
    p = 0.5 as a line) under the points `x`, coloured by class `y` and marked by domain `d`. A model maps a
    (N, 2) tensor to logits."""
    columns = max(len(row) for row in rows)
    figure = _figure(len(rows), columns, width=3.4, height=3.3)
    axes = figure.subplots(len(rows), columns, squeeze=False)
    margin = 1.0
    (x0, y0), (x1, y1) = x.min(axis=0) - margin, x.max(axis=0) + margin
    grid_x, grid_y = np.meshgrid(np.linspace(x0, x1, 200), np.linspace(y0, y1, 200))
    plane = torch.from_numpy(np.stack([grid_x.ravel(), grid_y.ravel()], axis=1).astype(np.float32))
    markers = {domain: DOMAIN_MARKERS[index % len(DOMAIN_MARKERS)] for index, domain in enumerate(np.unique(d))}
    for row_axes, panels in zip(axes, rows):
        for ax, (name, model) in zip(row_axes, panels):
            with torch.no_grad():
                p1 = torch.softmax(model(plane), dim=1)[:, 1].numpy().reshape(grid_x.shape)
            ax.contourf(grid_x, grid_y, p1, levels=[0, 0.5, 1], colors=CLASS_COLOURS, alpha=0.18)
            ax.contour(grid_x, grid_y, p1, levels=[0.5], colors="black", linewidths=0.8)
            for domain, marker in markers.items():
                for label in (0, 1):
                    chosen = (d == domain) & (y == label)
                    ax.scatter(x[chosen, 0], x[chosen, 1], s=9, color=CLASS_COLOURS[label], marker=marker,
                               linewidths=0)
            ax.set_title(name, fontsize=10)
            ax.set_aspect("equal")
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in row_axes[len(panels):]:
            ax.axis("off")
    legend_ax = axes[0, 0]
    handles = [legend_ax.scatter([], [], color=colour, marker="o", label=f"class {label}")
               for label, colour in enumerate(CLASS_COLOURS)]
    handles += [legend_ax.scatter([], [], color="grey", marker=marker, label=f"domain {domain}")
                for domain, marker in markers.items()]
    figure.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False)
    figure.suptitle(title)
    return figure


def schedules(rows: dict[str, dict[str, pd.DataFrame]], title: str) -> Figure:
    """Annealing: the temperature over epochs, a panel per method and a line per dataset, with the final
    phase shaded. Each history has columns epoch, temperature and phase."""
    figure = _figure(1, len(rows), width=5.2, height=3.6)
    axes = figure.subplots(1, len(rows), squeeze=False)[0]
    for ax, (method, histories) in zip(axes, rows.items()):
        for colour, (dataset, history) in enumerate(histories.items()):
            ax.plot(history["epoch"], history["temperature"], color=f"C{colour}", lw=1.4, label=dataset)
        final = next(iter(histories.values()))
        last_phase = final["phase"].max()
        start = final.loc[final["phase"] == last_phase, "epoch"].min()
        ax.axvspan(start, final["epoch"].max(), color="grey", alpha=0.15, lw=0, label=f"phase {last_phase:g}")
        ax.set_title(method)
        ax.set_xlabel("epoch")
        ax.set_ylabel("temperature")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    figure.suptitle(title)
    return figure


def paired_differences(diffs: pd.DataFrame, reference: str) -> Figure:
    """Per dataset, each method's per-seed difference from `reference` in points (points), their mean and
    95% t-interval (bar). `diffs`: dataset, method, seed, diff."""
    def interval(ax, position: int, values: np.ndarray) -> None:
        ax.errorbar(position, values.mean(), yerr=t_half_width(values), fmt="D", color=f"C{position % 10}",
                    capsize=5, ms=6)

    figure, panels = _method_panels(diffs, "diff", 1.0, interval)
    for ax, _ in panels:
        ax.axhline(0, color="black", lw=0.8)
    panels[0][0].set_ylabel(f"difference from {reference} (points)")
    figure.suptitle(f"Per-seed difference from {reference}\neach seed (points), mean and 95% t-interval (bar)")
    return figure


def sweeps(trials: dict[str, tuple[pd.DataFrame, dict[str, float]]]) -> Figure:
    """A panel per tune run: holdout accuracy against the first tuned option (the learning rate on a log
    axis, ticked at the values tried), each seed a point and the mean over seeds a line, a line per setting
    of the other tuned options; the chosen setting ringed. Each entry is a tune run's trials
    (kdtrack.spine.tuning.trials_table) and its chosen values, by the panel's title."""
    columns = min(3, len(trials))
    rows = -(-len(trials) // columns)
    figure = _figure(rows, columns, width=4.4, height=3.4)
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (title, (table, chosen)) in zip(axes, trials.items()):
        options = [column for column in table.columns if column not in ("trial", "seed", "selection_acc", "selection_ce")]
        swept, others = options[0], options[1:]
        for colour, (setting, group) in enumerate(table.groupby(others, sort=True) if others else [((), table)]):
            means = group.groupby(swept)["selection_acc"].mean() * 100
            name = ", ".join(f"{option} {value:g}" for option, value in zip(others, np.atleast_1d(setting))) or None
            ax.plot(means.index, means.to_numpy(), "-o", color=f"C{colour % 10}", ms=4, lw=1.2, label=name)
            ax.scatter(group[swept], 100 * group["selection_acc"], s=10, color=f"C{colour % 10}", alpha=0.45, lw=0)
            if all(chosen.get(option) == value for option, value in zip(others, np.atleast_1d(setting))) \
                    and chosen.get(swept) in means.index:
                ax.scatter([chosen[swept]], [means[chosen[swept]]], s=120, facecolors="none", edgecolors="black",
                           lw=1.2, zorder=4, label="chosen")
        values = sorted(table[swept].unique())
        if swept == "lr":
            ax.set_xscale("log")
        ax.set_xticks(values, [f"{value:g}" for value in values])
        ax.minorticks_off()
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(swept)
        ax.set_ylabel("holdout accuracy (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(trials):]:
        ax.axis("off")
    figure.suptitle("Tuning on the holdout: each seed (points), their mean (line), the chosen setting (ring)")
    return figure


def accuracy_vs_size(rows: pd.DataFrame, metric: str, label: str) -> Figure:
    """Per dataset, each method's accuracy (mean and sample std over seeds, each seed a point) against the
    parameters of the model it deploys (for SimKD: backbone, projector and the reused classifier), in
    millions. `rows`: dataset, method, seed, model_parameters, metric."""
    datasets = list(dict.fromkeys(rows["dataset"]))
    figure = _figure(1, len(datasets), width=6.4, height=4.4)
    for ax, dataset in zip(figure.subplots(1, len(datasets), squeeze=False)[0], datasets):
        group = rows[rows["dataset"] == dataset]
        for colour, (method, runs) in enumerate(group.groupby("method", sort=False)):
            size, values = float(runs["model_parameters"].median()) / 1e6, 100 * runs[metric].to_numpy(dtype=float)
            std = values.std(ddof=1) if len(values) > 1 else 0.0
            ax.errorbar(size, values.mean(), yerr=std, fmt="o", color=f"C{colour % 10}", capsize=4, label=method)
            ax.scatter(np.full(len(values), size), values, s=10, color=f"C{colour % 10}", alpha=0.45, lw=0)
            ax.annotate(method, (size, values.mean()), xytext=(6, 4), textcoords="offset points", fontsize=8)
        ax.margins(x=0.2)
        ax.set_xlabel("parameters of the deployed model (millions)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
    figure.axes[0].set_ylabel(f"{label} (%)")
    figure.suptitle("Accuracy against the deployed model's size\nmean ± sample std over seeds, each seed a point")
    return figure


def _method_panels(rows: pd.DataFrame, column: str, scale: float,
                   summary: Callable[[Axes, int, np.ndarray], None]) -> tuple[Figure, list[tuple[Axes, pd.DataFrame]]]:
    """A panel per dataset of `rows` with a place per method: `summary` draws the method's values of
    `column` (times `scale`) over seeds, and each seed is a point beside it. The panels and their rows."""
    datasets = sorted(rows["dataset"].unique())
    figure = _figure(1, len(datasets), width=max(4.0, 1.1 * rows["method"].nunique()), height=4.2)
    panels = []
    for ax, dataset in zip(figure.subplots(1, len(datasets), squeeze=False)[0], datasets):
        group = rows[rows["dataset"] == dataset]
        methods = list(dict.fromkeys(group["method"]))
        for position, method in enumerate(methods):
            values = scale * group.loc[group["method"] == method, column].to_numpy(dtype=float)
            summary(ax, position, values)
            jitter = np.linspace(-0.18, 0.18, len(values)) if len(values) > 1 else np.zeros(1)
            ax.scatter(position + jitter, values, s=14, color="black", alpha=0.7, zorder=3)
        ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
        ax.set_xlim(-0.6, len(methods) - 0.4)
        ax.set_title(dataset)
        ax.grid(axis="y", alpha=0.3)
        panels.append((ax, group))
    return figure, panels


def _mean_band(histories: list[pd.DataFrame], column: str, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs (at most MAX_POINTS of them), and the mean and sample std of `column` over `histories`."""
    epochs = histories[0]["epoch"].to_numpy()
    keep = np.unique(np.linspace(0, len(epochs) - 1, min(MAX_POINTS, len(epochs))).round().astype(int))
    values = scale * np.stack([history[column].to_numpy(dtype=float)[keep] for history in histories])
    std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(len(keep))
    return epochs[keep], values.mean(axis=0), std


def _figure(rows: int, columns: int, width: float, height: float, layout: str | None = "constrained") -> Figure:
    return Figure(figsize=(width * columns, height * rows + 0.8), layout=layout, dpi=100)


def _margins(figure: Figure, rows: int, columns: int) -> dict[str, float]:
    """Fixed margins in inches (a title above, tick labels and axis labels around each panel) as the
    fractions a GridSpec takes: a third of the cost of a layout engine, for figures drawn once per cell."""
    width, height = figure.get_size_inches()
    top, bottom, left, right, between_rows, between_columns = 0.75, 0.5, 0.55, 0.15, 0.75, 0.6
    panel_height = (height - top - bottom - between_rows * (rows - 1)) / rows
    panel_width = (width - left - right - between_columns * (columns - 1)) / columns
    return {"top": 1 - top / height, "bottom": bottom / height, "left": left / width, "right": 1 - right / width,
            "hspace": between_rows / panel_height, "wspace": between_columns / panel_width}
