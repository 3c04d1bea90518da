"""The pictures kdtrack draws, each from tables, histories or models its caller read from the store.

Figures use matplotlib's object API (no pyplot, no global state, no display needed); each is titled, its
axes labelled, and readable at the size a user sees it (the MLflow artifact viewer, a docs page): panels
wrap into a grid rather than a strip, tick labels stay inside the figure, legends stay off the curves, and
one method has one colour in every figure of a report (`method_colours`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import pandas as pd
import torch
from matplotlib import colormaps, ticker
from matplotlib.axes import Axes
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from .tables import t_half_width

MAX_POINTS = 600
"""Curves over 30,000 epochs are drawn through at most this many epochs."""
PANELS_PER_ROW = 2
"""Per-dataset panels of accuracy and paired figures: two side by side, then the next row."""
PALETTE = tuple(to_hex(colour) for colour in colormaps["tab10"].colors)
CLASS_COLOURS = ("#3b75af", "#c44e52")
DOMAIN_MARKERS = ("o", "s", "^", "D", "v", "P")
LOSSES = ("train_loss", "val_loss")
"""Non-negative like every quantity drawn here; a loss is drawn only where checkpoints are selected."""


def method_colours(methods: Iterable[str]) -> dict[str, str]:
    """A colour per method (or group), in the order given: the study's method order, so that a method has
    one colour in every figure of a report. Past ten methods the palette repeats."""
    return {method: PALETTE[index % len(PALETTE)] for index, method in enumerate(dict.fromkeys(methods))}


def accuracy_bars(rows: pd.DataFrame, metric: str, label: str, colours: dict[str, str] | None = None) -> Figure:
    """Per dataset, a bar per method: the mean of `metric` (a fraction, shown in percent) over seeds,
    the sample std as an error bar, and each seed as a point. `rows`: dataset, method, seed, metric, in the
    order the table prints them. The panels share one accuracy axis, from a little below the lowest value."""
    colours = colours or method_colours(rows["method"])

    def bar(ax: Axes, position: int, method: str, values: np.ndarray) -> None:
        std = values.std(ddof=1) if len(values) > 1 else 0.0
        ax.bar(position, values.mean(), width=0.7, color=colours[method], alpha=0.6, yerr=std, capsize=4)

    figure, axes = _method_panels(rows, metric, 100.0, bar)
    values = 100 * rows[metric].to_numpy(dtype=float)
    low = 5 * math.floor((values.min() - max(2.0, (100 - values.min()) * 0.3)) / 5)
    axes[0].set_ylim(max(0.0, low), 100.5)  # shared by every panel
    for ax in axes[::PANELS_PER_ROW]:
        ax.set_ylabel(f"{label} (%)")
    figure.suptitle(f"{label}\nmean ± sample std over seeds (bars), each seed (points)\nthe axis starts at "
                    f"{max(0.0, low):g}%", fontsize=11)
    return figure


def paired_differences(diffs: pd.DataFrame, reference: str, colours: dict[str, str] | None = None) -> Figure:
    """Per dataset, each method's per-seed difference from `reference` in points (points), their mean and
    95% t-interval (bar). `diffs`: dataset, method, seed, diff."""
    colours = colours or method_colours(diffs["method"])

    def interval(ax: Axes, position: int, method: str, values: np.ndarray) -> None:
        ax.errorbar(position, values.mean(), yerr=t_half_width(values), fmt="D", color=colours[method], capsize=5, ms=6)

    figure, axes = _method_panels(diffs, "diff", 1.0, interval)
    for ax in axes:
        ax.axhline(0, color="black", lw=0.8)
    for ax in axes[::PANELS_PER_ROW]:
        ax.set_ylabel(f"difference from {reference} (points)")
    figure.suptitle(f"Per-seed difference from {reference}\neach seed (points), mean and 95% t-interval (bar)",
                    fontsize=11)
    return figure


def curves(rows: dict[str, dict[str, list[pd.DataFrame]]], title: str, colours: dict[str, str] | None = None) -> Figure:
    """Training loss, validation loss and validation accuracy over epochs: a row per key of `rows`
    (a dataset), a line per group within it (a method, a domain) with a band of ± one sample std over
    its histories (seeds), cut at zero (and at 100%) as the quantity is.

    Each method's loss is its own training objective, drawn only over the epochs its checkpoint may be
    selected from: an annealing history (one with a `phase` column) over its last phase. Its first phase
    fits scaled teacher logits by MSE, a loss of another kind (up to ~1e5 at 30,000 epochs) that would
    flatten every other method's loss to a line at zero; the accuracy panel shows every epoch."""
    present = dict.fromkeys(group for by_group in rows.values() for group in by_group)
    colours = colours or method_colours(present)
    groups = [group for group in colours if group in present]  # the legend in the colours' (the table's) order
    legend_rows = math.ceil(len(groups) / 4)
    figure = _figure(len(rows), 3, width=4.6, height=3.0, layout=None, extra=0.25 * legend_rows)
    axes = figure.subplots(len(rows), 3, squeeze=False,
                           gridspec_kw=_margins(figure, len(rows), 3, bottom=0.65 + 0.25 * legend_rows))
    columns = [("train_loss", "training loss"), ("val_loss", "validation loss"), ("val_acc", "validation accuracy (%)")]
    phases_cut = set()
    for row, (dataset, by_group) in zip(axes, rows.items()):
        for ax, (column, name) in zip(row, columns):
            drawn = {group: _mean_band(histories, column) for group, histories in by_group.items()}
            for group, (epochs, mean, std) in drawn.items():
                high = mean + std if column in LOSSES else np.minimum(mean + std, 100.0)
                ax.plot(epochs, mean, color=colours[group], lw=1.2)
                ax.fill_between(epochs, np.maximum(mean - std, 0.0), high, color=colours[group], alpha=0.2, lw=0)
            if column in LOSSES:
                phases_cut |= {group for group, histories in by_group.items() if "phase" in histories[0]}
                means = np.concatenate([mean for _, mean, _ in drawn.values()])
                if means.min() > 0 and means.max() / means.min() > 10:  # losses that fall by decades
                    _log_axis(ax, means.min(), means.max())
            ax.set_title(f"{dataset}: {name}", fontsize=10)
            ax.set_xlabel("epoch")
            ax.tick_params(labelsize=9)
            ax.grid(alpha=0.3)
        for ax in row[:2]:  # a loss drawn over the last phase alone still reads against every epoch
            ax.set_xlim(row[2].get_xlim())
    counts = {group: sorted({len(by_group[group]) for by_group in rows.values() if group in by_group}) for group in groups}
    handles = [Line2D([], [], color=colours[group], lw=2) for group in groups]
    labels = [f"{group} (n={n[0]}{f'-{n[-1]}' if len(n) > 1 else ''})"
              + (" — losses over its last phase, where checkpoints are selected" if group in phases_cut else "")
              for group, n in counts.items()]
    figure.legend(handles, labels, loc="lower center", ncol=min(len(groups), 4), frameon=False, fontsize=9)
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
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 2 * columns), frameon=False)
    figure.suptitle(title)
    return figure


def schedules(rows: dict[str, dict[str, pd.DataFrame]], title: str) -> Figure:
    """Annealing: the temperature over epochs, a panel per method and a line per dataset, with the final
    phase shaded. Each history has columns epoch, temperature and phase. Datasets whose schedules are the
    same (the same tuned tau_max) share one line, and its label says so: else the later would hide the
    earlier exactly."""
    figure = _figure(1, len(rows), width=5.2, height=3.6)
    axes = figure.subplots(1, len(rows), squeeze=False)[0]
    for ax, (method, histories) in zip(axes, rows.items()):
        same: dict[bytes, list[str]] = {}
        for dataset, history in histories.items():
            same.setdefault(history[["epoch", "temperature"]].to_numpy(dtype=float).tobytes(), []).append(dataset)
        for colour, datasets in enumerate(same.values()):
            history = histories[datasets[0]]
            label = datasets[0] if len(datasets) == 1 else f"{', '.join(datasets)} (identical: one line)"
            ax.plot(history["epoch"], history["temperature"], color=PALETTE[colour % len(PALETTE)], lw=1.4, label=label)
        final = next(iter(histories.values()))
        last_phase = final["phase"].max()
        start = final.loc[final["phase"] == last_phase, "epoch"].min()
        ax.axvspan(start, final["epoch"].max(), color="grey", alpha=0.15, lw=0, label=f"phase {last_phase:g}")
        ax.set_title(method)
        ax.set_xlabel("epoch")
        ax.set_ylabel("temperature")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    figure.suptitle(title)
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


def accuracy_vs_size(rows: pd.DataFrame, metric: str, label: str, colours: dict[str, str] | None = None) -> Figure:
    """Per dataset, each method's accuracy (mean and sample std over seeds, each seed a point) against the
    parameters of the model it deploys (for SimKD: backbone, projector and the reused classifier), in
    millions. `rows`: dataset, method, seed, model_parameters, metric."""
    colours = colours or method_colours(rows["method"])
    datasets = list(dict.fromkeys(rows["dataset"]))
    figure = _figure(1, len(datasets), width=6.4, height=4.4)
    for ax, dataset in zip(figure.subplots(1, len(datasets), squeeze=False)[0], datasets):
        group = rows[rows["dataset"] == dataset]
        for method, runs in group.groupby("method", sort=False):
            size, values = float(runs["model_parameters"].median()) / 1e6, 100 * runs[metric].to_numpy(dtype=float)
            std = values.std(ddof=1) if len(values) > 1 else 0.0
            ax.errorbar(size, values.mean(), yerr=std, fmt="o", color=colours[method], capsize=4, label=method)
            ax.scatter(np.full(len(values), size), values, s=10, color=colours[method], alpha=0.45, lw=0)
            ax.annotate(method, (size, values.mean()), xytext=(6, 4), textcoords="offset points", fontsize=8)
        ax.margins(x=0.2)
        ax.set_xlabel("parameters of the deployed model (millions)")
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
    figure.axes[0].set_ylabel(f"{label} (%)")
    figure.suptitle("Accuracy against the deployed model's size\nmean ± sample std over seeds, each seed a point")
    return figure


def _method_panels(rows: pd.DataFrame, column: str, scale: float,
                   summary: Callable[[Axes, int, str, np.ndarray], None]) -> tuple[Figure, list[Axes]]:
    """A panel per dataset of `rows` (in their order, PANELS_PER_ROW to a row, one value axis for all) with
    a place per method: `summary` draws the method's values of `column` (times `scale`) over seeds, and
    each seed is a point beside it. The figure and its panels."""
    datasets = list(dict.fromkeys(rows["dataset"]))
    methods = rows["method"].nunique()
    columns = min(len(datasets), PANELS_PER_ROW)
    grid_rows = math.ceil(len(datasets) / columns)
    figure = _figure(grid_rows, columns, width=max(5.0, 0.65 * methods + 1.2), height=3.8)
    grid = figure.subplots(grid_rows, columns, squeeze=False, sharey=True)
    for ax in grid.flat[len(datasets):]:
        ax.remove()
    panels = list(grid.flat[:len(datasets)])
    for ax, dataset in zip(panels, datasets):
        group = rows[rows["dataset"] == dataset]
        names = list(dict.fromkeys(group["method"]))
        for position, method in enumerate(names):
            values = scale * group.loc[group["method"] == method, column].to_numpy(dtype=float)
            summary(ax, position, method, values)
            jitter = np.linspace(-0.18, 0.18, len(values)) if len(values) > 1 else np.zeros(1)
            ax.scatter(position + jitter, values, s=14, color="black", alpha=0.7, zorder=3)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_title(dataset)
        ax.yaxis.set_tick_params(labelleft=True)  # each panel reads on its own, though the axis is shared
        ax.grid(axis="y", alpha=0.3)
    return figure, panels


def _mean_band(histories: list[pd.DataFrame], column: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epochs (at most MAX_POINTS of them), and the mean and sample std of `column` over `histories`
    (accuracies in percent); a loss only over the epochs whose checkpoints may be selected."""
    first = histories[0]
    rows = np.arange(len(first))
    if column in LOSSES and "phase" in first:
        rows = rows[first["phase"].to_numpy() == first["phase"].max()]
    keep = rows[np.unique(np.linspace(0, len(rows) - 1, min(MAX_POINTS, len(rows))).round().astype(int))]
    scale = 100.0 if column == "val_acc" else 1.0
    values = scale * np.stack([history[column].to_numpy(dtype=float)[keep] for history in histories])
    std = values.std(axis=0, ddof=1) if len(values) > 1 else np.zeros(len(keep))
    return first["epoch"].to_numpy()[keep], values.mean(axis=0), std


def _log_axis(ax: Axes, low: float, high: float) -> None:
    """A log value axis over the curves from `low` to `high` (a band that reaches towards zero is cut at its
    foot rather than stretch it by decades), labelled in plain numbers (0.05, 0.1, 0.2): at 1, 2 and 5
    times each power of ten when the curves span two decades at most, at the powers alone beyond."""
    ax.set_yscale("log")
    ax.set_ylim(low / 1.5, high * 1.5)
    ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0) if high / low <= 100 else (1.0,)))
    ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())


def _figure(rows: int, columns: int, width: float, height: float, layout: str | None = "constrained",
            extra: float = 0.0) -> Figure:
    return Figure(figsize=(width * columns, height * rows + 0.8 + extra), layout=layout, dpi=100)


def _margins(figure: Figure, rows: int, columns: int, bottom: float = 0.5) -> dict[str, float]:
    """Fixed margins in inches (a title above, tick labels and axis labels around each panel, `bottom`
    below for the x labels and a legend) as the fractions a GridSpec takes: a third of the cost of a layout
    engine, for figures drawn once per cell. Wide enough on the left of each panel for tick labels such as
    "4×10⁻¹" of a log axis."""
    width, height = figure.get_size_inches()
    top, left, right, between_rows, between_columns = 0.75, 0.8, 0.2, 0.75, 0.8
    panel_height = (height - top - bottom - between_rows * (rows - 1)) / rows
    panel_width = (width - left - right - between_columns * (columns - 1)) / columns
    return {"top": 1 - top / height, "bottom": bottom / height, "left": left / width, "right": 1 - right / width,
            "hspace": between_rows / panel_height, "wspace": between_columns / panel_width}
