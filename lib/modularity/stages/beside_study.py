"""Stage 6 · beside the study: this run's three numbers and τ beside the study's six models.

Reads the run's overlap matrix at ``main_pct`` (stage 3) and ablation matrix (stage 5) and
computes, for the run and for each of the study's six models (from their released matrices),
the within/across ratio of the overlap and of the ablation matrix and the ARI of the study's
clustering (:func:`modularity.science.study.model_statistics`), and Kendall's τ between the run's
matrices and each study model's on their common tasks (:func:`modularity.science.study.tau_against_study`).
Writes ``beside_study.csv`` and ``tau_vs_study.csv``. Loads no model. A missing matrix leaves the
run's numbers NaN; the study's models are placed regardless.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..science import study
from ..science.matrix_csv import read_matrix_csv
from ..records.store import save_table
from .context import RunContext

__all__ = ["BesideStudyResult", "run"]


@dataclass(frozen=True)
class BesideStudyResult:
    """What stage 6 computed.

    ``overlap`` / ``ablation``: the run's matrices (``overlap`` empty and ``ablation`` None when
    the stage that writes it found too few tasks); ``statistics``: the run's
    :func:`~modularity.science.study.model_statistics`; ``placed``: one row per (model, measure) with
    columns model, source ("study" or "run"), measure, value, p, n_tasks (``beside_study.csv``);
    ``positions``: per measure the run's value and p, the study's range and how many study models
    lie below the run; ``tau``: τ against each study model, indexed by matrix kind
    (``tau_vs_study.csv``); ``tau_summary``: per kind the mean, min and max τ and the median
    number of common tasks.
    """

    label: str
    overlap: pd.DataFrame
    ablation: pd.DataFrame | None
    statistics: dict
    placed: pd.DataFrame
    positions: pd.DataFrame
    tau: pd.DataFrame
    tau_summary: pd.DataFrame
    written: list = field(default_factory=list)


def run(ctx: RunContext) -> BesideStudyResult:
    """Stage 6 for the run of ``ctx``: places the run among the study's models; saves the tables."""
    params = ctx.params
    n_permutations = params["n_permutations"]
    overlap = _read_if_present(ctx, f"overlap_{params['main_pct']:g}.csv")
    ablation = _read_if_present(ctx, f"ablation_drop_{params['main_pct']:g}.csv")
    if overlap is None:  # stage 3 writes no matrix when fewer than two tasks were attributed
        overlap = pd.DataFrame()
    statistics = study.model_statistics(overlap, ablation, n_permutations=n_permutations, knn=params["knn"])
    placed = study.beside_study({ctx.label: statistics}, n_permutations=n_permutations)
    tau = pd.concat({"overlap": study.tau_against_study(overlap, "overlap", name=ctx.label),
                     **({"ablation": study.tau_against_study(ablation, "ablation", name=ctx.label)}
                        if ablation is not None else {})}, names=["matrix"]).droplevel(1)
    tau_summary = tau.groupby("matrix", sort=False).agg(
        tau_mean=("tau", "mean"), tau_min=("tau", "min"), tau_max=("tau", "max"),
        common_tasks=("n_tasks", "median"))
    written = [save_table(placed, ctx.paths.table("beside_study.csv")),
               save_table(tau.reset_index(), ctx.paths.table("tau_vs_study.csv"))]
    return BesideStudyResult(ctx.label, overlap, ablation, statistics, placed, _positions(placed), tau,
                             tau_summary, written)


def _read_if_present(ctx: RunContext, name: str) -> pd.DataFrame | None:
    path = ctx.paths.table(name)
    return read_matrix_csv(path) if path.is_file() else None


def _positions(placed: pd.DataFrame) -> pd.DataFrame:
    """Per measure: the run's value and p, the study's range, how many study models lie below."""
    rows = {}
    for measure in placed.measure.unique():
        part = placed[placed.measure == measure]
        run_row = part[part.source == "run"].iloc[0]
        study_values = part[part.source == "study"].value
        below = f"{int((study_values < run_row.value).sum())} of {len(study_values)}"
        rows[measure] = {"this run": run_row.value, "p": run_row.p, "study min": study_values.min(),
                         "study max": study_values.max(),
                         "study models below this run": below if np.isfinite(run_row.value) else "—"}
    return pd.DataFrame(rows).T
