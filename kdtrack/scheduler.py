"""Running a graph of cells: every cell after the cells it depends on, each configuration once, and the
models already finished in the store skipped."""
from __future__ import annotations

import sys

from .cells import Cell


def run_cells(cells: list[Cell], resume: bool = True) -> list[str | None]:
    """Run `cells` and what they depend on; for each of `cells`, its parent run id (None when it had
    nothing left to train). Dependencies always skip their finished models; `cells` themselves do so
    under `resume`."""
    plan = plan_cells(cells, resume)
    ran: dict[tuple[str, str], str] = {}
    for number, cell in enumerate(plan, 1):
        if len(plan) > 1:
            seeds = ",".join(map(str, cell.seeds))
            print(f"cell {number}/{len(plan)}: {cell.name} (seeds {seeds})", file=sys.stderr, flush=True)
        ran[cell.key] = cell.run()
    skipped = len({cell.key for cell in cells} - set(ran))
    if skipped:
        print(f"{skipped} cell(s) already had a FINISHED run for every seed, skipped", file=sys.stderr, flush=True)
    return [ran.get(cell.key) for cell in cells]


def plan_cells(cells: list[Cell], resume: bool) -> list[Cell]:
    """The cells to run, dependencies first. Cells of one configuration (one key) are merged into one over
    the union of their seeds, so teachers shared by several students train once."""
    nodes: dict[tuple[str, str], Cell] = {}
    needs: dict[tuple[str, str], set[tuple[str, str]]] = {}

    def visit(cell: Cell, skip_finished: bool) -> tuple[str, str] | None:
        if skip_finished and (cell := cell.pending()) is None:
            return None
        required = {key for dependency in cell.dependencies() if (key := visit(dependency, True))}
        known = nodes.get(cell.key)
        if known is None:
            nodes[cell.key] = cell
        else:
            nodes[cell.key] = known.with_seeds(known.seeds + tuple(s for s in cell.seeds if s not in known.seeds))
        needs.setdefault(cell.key, set()).update(required)
        return cell.key

    for cell in cells:
        visit(cell, resume)
    order: list[tuple[str, str]] = []
    while len(order) < len(nodes):
        ready = next(key for key in nodes if key not in order and needs[key] <= set(order))
        order.append(ready)
    return [nodes[key] for key in order]
