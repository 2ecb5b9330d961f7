"""Ablation cells: sets of neurons silenced on target tasks, as stages 5 and 7 both run them.

A *cell* is one set of neurons ablated on one target task's items
(:func:`modularity.science.ablation.ablate_target`: the set's activations patched, at every position,
with their values on the target's corrupted prompts, or with mean activations). Each target's
cells are cached as one file ``<folder>/<task>.csv``, which records what they were computed from
(:func:`cells_made_from`), so a killed stage resumes and cells of other sets or items are
recomputed, never reused.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..science import ablation, scoring
from ..base.progress import bar
from ..records.store import combined_fingerprint, content_digest, read_cache, write_cache
from .context import RunContext

__all__ = ["CellRun", "target_items", "cells_made_from", "cache_folder", "ablate_cells", "drop_bars"]


@dataclass(frozen=True)
class CellRun:
    """Cells of several targets: ``cells`` one row per (set, target) with the columns of
    :func:`modularity.science.ablation.ablate_target` (``source`` renamed ``set``) and ``target``;
    ``computed`` of them were computed now in ``seconds`` (time spent computing only: cells read
    from the cache cost nothing), the others read from ``folder``."""

    cells: pd.DataFrame
    computed: int
    seconds: float
    folder: Path


def target_items(ctx: RunContext, task: str) -> np.ndarray:
    """The items a target is tested on: its first ``ablation_items`` both-correct items (0 means
    all; :meth:`RunContext.both_correct_items`). The model gets them right clean and corrupted, so
    an accuracy drop is the ablation's doing."""
    chosen = ctx.both_correct_items(task)
    return chosen[: ctx.params["ablation_items"]] if ctx.params["ablation_items"] else chosen


def cells_made_from(target: str, items: np.ndarray, sets: dict, C: float, R: float) -> dict:
    """What a target's cells are computed from, as their cache records it: the target
    (``domain/task``), its items, a digest of the sets run on it (``{name: flat indices}``: they
    follow the attribution scores, which the folder name does not) and its baselines."""
    return {"target": target, "items": items, "sets": content_digest(sets), "C": float(C), "R": float(R)}


def cache_folder(ctx: RunContext, kind: str, tasks: pd.DataFrame, n_controls: int, control_cells: str,
                 extra: str = "", prefix: str = "") -> Path:
    """``cache/…/<kind>/<prefix>…`` named after the settings that change a cell, the control sets
    (``n_controls`` draws on ``control_cells``), ``extra`` (what else the sets come from) and the
    fingerprint of every participating task: another task set or a changed task gets fresh cells."""
    p = ctx.params
    extra = f"_{extra}" if extra else ""
    return ctx.paths.cache / kind / (
        f"{prefix}{p['ablation_mode']}_{p['main_pct']}pct_{p['ablation_items']}items_{n_controls}controls-"
        f"{control_cells}_seed{p['seed']}{extra}_{combined_fingerprint(ctx.paths, tasks.task)}")


def ablate_cells(ctx: RunContext, tasks: pd.DataFrame, plan: dict[str, dict[str, np.ndarray]], folder: Path,
                 desc: str) -> CellRun:
    """Every cell of ``plan`` (``{target label: {set name: flat indices}}``), one target of
    ``tasks`` (rows with label, task, C, R) at a time, each target's cells read from or written to
    ``folder``, with a progress bar named ``desc``."""
    per_target, computed, seconds = [], 0, 0.0
    with bar(total=sum(map(len, plan.values())), desc=desc, unit="cells") as progress:
        for row in tasks.itertuples():
            cache = folder / f"{row.task}.csv"
            items, sets = target_items(ctx, row.task), plan[row.label]
            made_from = cells_made_from(row.label, items, sets, row.C, row.R)
            cells = read_cache(cache, "ablation", made_from)
            if cells is None:
                started = time.perf_counter()
                cells = _ablate_target(ctx, row, items, sets)
                write_cache(cache, cells, "ablation", made_from)
                seconds += time.perf_counter() - started
                computed += len(cells)
            assert len(cells) == len(sets), f"{cache}: one row per set"
            per_target.append(cells)
            progress.update(len(cells))
    return CellRun(pd.concat(per_target, ignore_index=True), computed, seconds, folder)


def drop_bars(cells: pd.DataFrame, cell: list[str]) -> pd.DataFrame:
    """Mean ± SEM of the drop per (``relation``, ``kind``) over cells, the draws of a cell (rows
    sharing ``relation``, ``kind`` and the ``cell`` columns, e.g. source and target) averaged first:
    relation, kind, mean, sem, count, lo, hi (lo/hi: mean ∓ SEM, the mean where SEM is undefined)."""
    per_cell = cells.groupby(["relation", "kind", *cell], as_index=False)["drop"].mean()
    bars = per_cell.groupby(["relation", "kind"])["drop"].agg(["mean", "sem", "count"]).reset_index()
    bars["lo"], bars["hi"] = bars["mean"] - bars["sem"].fillna(0), bars["mean"] + bars["sem"].fillna(0)
    return bars


def _ablate_target(ctx: RunContext, row, indices: np.ndarray, sets: dict) -> pd.DataFrame:
    p, loaded = ctx.params, ctx.model
    tokens = scoring.tokenize_task(loaded, ctx.suite[row.task], p["bos"])
    mean_values = (ablation.mean_activations(loaded, tokens, indices, p["batch_size"])
                   if p["ablation_mode"] == "mean" else None)
    table = ablation.ablate_target(loaded, tokens, indices, sets, mode=p["ablation_mode"],
                                   batch_size=p["batch_size"], mean_values=mean_values, C=row.C, R=row.R)
    return table.rename(columns={"source": "set"}).assign(target=row.label)
