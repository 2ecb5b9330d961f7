"""Stage 5 · causal ablation: does silencing a source task's neurons hurt a target task?

Every task that passed the filter and has an attribution tensor is a source and a target. A
source's set is its top ``main_pct``% positive neurons (as in stage 3); a target's items are its
first ``ablation_items`` aligned, both-correct items. For each (set, target) cell
:func:`modularity.science.ablation.ablate_target` patches the set's neurons in the target's clean runs, at
every position, with their values on the target's corrupted prompts (``ablation_mode``,
book methods §7). Random control sets of the same size (layer-matched and uniform,
``n_random_controls`` of each) run on the cells that ``ablation_control_cells`` names.

Cells are cached per target under ``cache/…/ablation/<settings>_<fingerprint of every task>/``
(:mod:`modularity.stages.cells`, which stage 7 ablates through too) so a killed run resumes; a
changed task or another set of participating tasks gets a fresh folder, and a target's file
records the sets and items it was computed with, so cells of other sets or items are recomputed,
never reused. Writes
``ablation_cells.csv`` (every cell, long format), ``ablation_drop_<pct>.csv`` (the study's matrix
layout) and ``ablation_summary.json``. With fewer than two tasks only the summary is written,
saying why.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..science import ablation, overlap, stats
from ..science.matrix_csv import write_matrix_csv
from ..science.sites import split_flat
from ..records.store import save_json, save_table
from .cells import ablate_cells, cache_folder, drop_bars, target_items
from .context import RunContext
from .scores import load_scores, top_set

__all__ = ["AblationResult", "run", "CELL_COLUMNS"]

#: Columns of ``ablation_cells.csv``.
CELL_COLUMNS = ["source", "target", "kind", "draw", "n_neurons", "n_items", "accuracy", "unablated_accuracy",
                "drop", "drop_vs_unablated", "metric_change"]
#: The values summarised per relation; the metric change is negative when ablation hurts.
VALUES = {"drop": "higher", "drop_vs_unablated": "higher", "metric_change": "lower"}


@dataclass(frozen=True)
class AblationResult:
    """What stage 5 computed.

    ``tasks``: the participating tasks (label, task, domain, n_both_correct, C, R, …);
    ``n_passing`` tasks passed the filter, ``missing_attribution`` of them have no tensor;
    ``k`` neurons per set out of ``n_layers · d_ff``; ``source_sets[label]``: flat indices;
    ``sets_table``: per source its size, layers used and deepest layer; ``items_per_target[label]``:
    item indices; ``all_sets``: every set, controls included (set, source, kind, draw, n_neurons);
    ``cells``: one row per (set, target) with :data:`CELL_COLUMNS`; ``matrix``: the selected sets'
    drop, rows = sources, columns = targets; ``summary[value]``: self, within, across, ratio,
    delta, p, n_tasks for ``drop``, ``drop_vs_unablated`` and ``metric_change``;
    ``domain_bars``: Fig 2C's three bars per domain; ``controls``: per relation, selected vs
    controls (:func:`modularity.science.ablation.control_summary`); ``control_bars``: mean ± SEM per
    (relation, kind) over the cells that have controls; ``computed_cells`` were computed now
    (the rest read from ``cache_folder``) in ``seconds`` (time spent computing only);
    ``untestable``: why the within/across test is not computed
    (:func:`modularity.science.stats.untestable_reason`; its ratio, delta and p are then NaN).
    """

    tasks: pd.DataFrame
    n_passing: int
    missing_attribution: list
    k: int = 0
    n_layers: int = 0
    d_ff: int = 0
    source_sets: dict = field(default_factory=dict)
    sets_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    items_per_target: dict = field(default_factory=dict)
    all_sets: pd.DataFrame = field(default_factory=pd.DataFrame)
    cells: pd.DataFrame = field(default_factory=pd.DataFrame)
    matrix: pd.DataFrame | None = None
    summary: dict = field(default_factory=dict)
    domain_bars: pd.DataFrame = field(default_factory=pd.DataFrame)
    controls: pd.DataFrame = field(default_factory=pd.DataFrame)
    control_bars: pd.DataFrame = field(default_factory=pd.DataFrame)
    computed_cells: int = 0
    seconds: float = 0.0
    cache_folder: Path | None = None
    untestable: str | None = None
    written: list = field(default_factory=list)

    @property
    def enough(self) -> bool:
        """At least two tasks: a matrix with off-diagonal cells."""
        return len(self.tasks) >= 2

    @property
    def selected(self) -> pd.DataFrame:
        """The cells of the selected (top) sets, without the random controls."""
        return self.cells[self.cells.kind == "selected"] if len(self.cells) else self.cells


def run(ctx: RunContext) -> AblationResult:
    """Stage 5 for the run of ``ctx``: every (set, target) cell (cached), matrix, tests; saves them."""
    params, pct = ctx.params, ctx.params["main_pct"]
    passing, tasks = ctx.passing(), ctx.attributed()
    missing = [task for task in passing.task if task not in set(tasks.task)]
    if len(tasks) < 2:
        written = [save_json({"skipped": "fewer than 2 tasks pass the filter and have attribution tensors",
                              "n_tasks": int(len(tasks))}, ctx.paths.table("ablation_summary.json"))]
        return AblationResult(tasks, len(passing), missing, written=written)

    sources = {row.label: top_set(ctx, row.task, tasks) for row in tasks.itertuples()}
    n_layers, d_ff = load_scores(ctx, tasks.task.iloc[0], tasks).shape
    k = overlap.top_k_count(n_layers * d_ff, pct)
    assert all(s.size <= k and np.unique(s).size == s.size for s in sources.values())
    items = {row.label: target_items(ctx, row.task) for row in tasks.itertuples()}
    assert all(len(v) > 0 for v in items.values()), "a passing task has both-correct items"
    all_sets, set_table = ablation.build_ablation_sets(sources, n_layers, d_ff,
                                                       n_controls=params["n_random_controls"], seed=params["seed"])
    plan = {label: {name: all_sets[name] for name in _sets_for_target(set_table, label, params["ablation_control_cells"])}
            for label in tasks.label}
    folder = cache_folder(ctx, "ablation", tasks, params["n_random_controls"], params["ablation_control_cells"])
    if ctx.shard is not None:  # this process's targets only; the tables below run once, after every shard
        ablate_cells(ctx, ctx.share(tasks), plan, folder, desc="ablating (set, target)")
        ctx.stop_if_sharded()
    ablated = ablate_cells(ctx, tasks, plan, folder, desc="ablating (set, target)")
    cells, computed, seconds = ablated.cells.merge(set_table, on="set"), ablated.computed, ablated.seconds
    selected = cells[cells.kind == "selected"]
    assert len(selected) == len(tasks) ** 2, "one selected cell per (source, target)"
    matrix = ablation.ablation_matrix(selected, "drop")
    untestable = stats.untestable_reason(matrix)  # the rule stage 4 and stage 6 apply to the same tasks
    summary = {value: _without_test(ablation.ablation_summary(ablation.ablation_matrix(selected, value),
                                                              n_permutations=params["n_permutations"],
                                                              stronger=stronger), untestable)
               for value, stronger in VALUES.items()}
    controls = ablation.control_summary(cells, "drop")[1] if (cells.kind != "selected").any() else pd.DataFrame()
    result = AblationResult(
        tasks, len(passing), missing, k, int(n_layers), int(d_ff), sources, _sets_table(sources, n_layers, d_ff),
        items, set_table, cells[CELL_COLUMNS], matrix, summary, stats.domain_bars(matrix), controls,
        _control_bars(cells), computed, seconds, folder, untestable=untestable,
    )
    return _save(ctx, result)


def _without_test(summary: dict, untestable: str | None) -> dict:
    """``summary`` with its ratio, difference and p left out (NaN) when the tasks cannot be tested."""
    if untestable is None:
        return summary
    return {**summary, **{key: float("nan") for key in ("ratio", "delta", "p")}}


def _sets_for_target(set_table: pd.DataFrame, target: str, control_cells: str) -> list[str]:
    """The sets run on ``target``: every selected set, plus the controls of the sources whose cell
    with this target is in scope (``self``: the diagonal; ``within``: and same-domain; ``all``)."""
    scope = {"self": ("self",), "within": ("self", "within"), "all": ("self", "within", "across")}[control_cells]
    in_scope = set_table.source.map(lambda source: ablation.relation_of(source, target) in scope)
    return list(set_table.set[(set_table.kind == "selected") | in_scope])


def _sets_table(sources: dict, n_layers: int, d_ff: int) -> pd.DataFrame:
    counts = {label: np.bincount(split_flat(s, d_ff)[0], minlength=n_layers) for label, s in sources.items()}
    return pd.DataFrame({
        "neurons": {label: s.size for label, s in sources.items()},
        "layers used": {label: int((c > 0).sum()) for label, c in counts.items()},
        "deepest layer": {label: int(np.flatnonzero(c).max()) if c.any() else -1 for label, c in counts.items()},
    })


def _control_bars(cells: pd.DataFrame) -> pd.DataFrame:
    """Mean ± SEM of the drop per (relation, kind) over the cells that have controls (draws
    averaged within a cell first); empty without controls."""
    controlled = cells.loc[cells.kind != "selected", ["source", "target"]].drop_duplicates()
    if controlled.empty:
        return pd.DataFrame()
    long = cells.merge(controlled, on=["source", "target"])
    long = long.assign(relation=[ablation.relation_of(s, t) for s, t in zip(long.source, long.target)])
    return drop_bars(long, ["source", "target"])


def _save(ctx: RunContext, result: AblationResult) -> AblationResult:
    p, pct = ctx.params, ctx.params["main_pct"]
    summary = {
        "mode": p["ablation_mode"], "pct": pct, "k": int(result.k), "n_tasks": int(len(result.tasks)),
        "items_per_target": {label: int(len(v)) for label, v in result.items_per_target.items()},
        "n_random_controls": p["n_random_controls"], "control_cells": p["ablation_control_cells"], "seed": p["seed"],
        "summary": {value: {key: float(v) for key, v in s.items()} for value, s in result.summary.items()},
        "controls": result.controls.to_dict(orient="records"),
        "seconds_per_cell": result.seconds / result.computed_cells if result.computed_cells else None,
    }
    if result.untestable:
        summary["not_computed"] = result.untestable
    written = [save_table(result.cells, ctx.paths.table("ablation_cells.csv")),
               write_matrix_csv(result.matrix, ctx.paths.table(f"ablation_drop_{pct:g}.csv")),
               save_json(summary, ctx.paths.table("ablation_summary.json"))]
    return dataclasses.replace(result, written=written)
