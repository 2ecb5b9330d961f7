"""Stage 4 · statistics: is the overlap structure modular beyond chance?

Reads stage 3's overlap matrices (``overlap_<pct>.csv``) and runs, on the one at ``main_pct``:
the within − cross label-permutation test (book methods §6), the per-domain test (§9, with Holm's
correction), the study's clustering (kNN graph, average linkage, one cluster per domain present)
and its ARI against a permutation null (book methods §6); places the run's overlap ratio and ARI beside the
study's six models, with Kendall's τ against each; and repeats the tests at every threshold
(§9); asks how much of the domain effect the tasks' surface explains (book methods §12,
:mod:`modularity.science.surface`: the tasks' frames and answers, the overlap modelled on same
domain plus surface with QAP p-values, the ratio among pairs that differ in surface, the clustering
against frames; for framed variants, the frame-swap test). Writes ``stats_summary.json``,
``per_domain_overlap.csv``, ``threshold_sweep.csv`` and the ``surface_*.csv`` tables.
With fewer than 4 tasks, or fewer than two domains holding two tasks each, the tests are
skipped and the tables written empty.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..science import overlap, stats, study, surface
from ..science.stats import STUDY_SEED
from ..science.matrix_csv import read_matrix_csv
from ..records.store import save_json, save_table
from .context import RunContext

__all__ = ["StatisticsResult", "run", "overlap_matrices"]


@dataclass(frozen=True)
class StatisticsResult:
    """What stage 4 computed.

    ``matrices[pct]``: the overlap matrices read; ``labels`` and ``domain_counts`` (tasks per
    domain) of the main one; ``testable``: ≥ 4 tasks and ≥ 2 domains with ≥ 2 tasks each;
    ``n_clusters``: one per domain present; ``knn``: the kNN parameter used (lowered to n − 1 for
    tiny task sets). When testable: ``test`` (within, cross, ratio, delta, p, n_tasks),
    ``per_domain`` (one row per domain, p and p_holm), ``ari`` (ari, p, null_mean, null_sd,
    null_max, clusters), ``clustering`` (ari, nmi, ami, v_measure, silhouette, n_tasks),
    ``clusters`` (task, domain, cluster), ``beside_study`` (overlap ratio and ARI of this run and
    the study's models, long format), ``tau_vs_study`` (τ against each study model),
    ``sweep`` (one row per pct), ``summary`` (the content of ``stats_summary.json``);
    ``surface`` (the tasks' descriptors, always), ``surface_model`` (:func:`surface.confound_model`),
    ``surface_ratios``, ``surface_ari`` and, for framed variants, ``frame_swap`` / ``frame_swap_cells``
    (:func:`surface.frame_swap_test`); ``surface_note``: why the surface model was not computed
    (tasks of the matrix that the run's tasks do not describe).
    """

    matrices: dict
    labels: list
    domain_counts: pd.Series
    testable: bool
    n_clusters: int
    knn: int
    n_permutations: int
    test: dict | None = None
    per_domain: pd.DataFrame = field(default_factory=pd.DataFrame)
    ari: dict | None = None
    clustering: dict | None = None
    clusters: pd.DataFrame = field(default_factory=pd.DataFrame)
    beside_study: pd.DataFrame | None = None
    tau_vs_study: pd.DataFrame | None = None
    sweep: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary: dict = field(default_factory=dict)
    surface: pd.DataFrame = field(default_factory=pd.DataFrame)
    surface_model: pd.DataFrame = field(default_factory=pd.DataFrame)
    surface_ratios: pd.DataFrame = field(default_factory=pd.DataFrame)
    surface_ari: pd.DataFrame = field(default_factory=pd.DataFrame)
    frame_swap: pd.DataFrame = field(default_factory=pd.DataFrame)
    frame_swap_cells: pd.DataFrame = field(default_factory=pd.DataFrame)
    surface_note: str = ""
    written: list = field(default_factory=list)


def overlap_matrices(ctx: RunContext) -> dict[float, pd.DataFrame]:
    """Stage 3's overlap matrices ``{pct: matrix}`` of the thresholds it wrote."""
    paths = {pct: ctx.paths.table(f"overlap_{pct:g}.csv") for pct in ctx.params["top_pcts"]}
    return {pct: read_matrix_csv(path) for pct, path in paths.items() if path.exists()}


def run(ctx: RunContext) -> StatisticsResult:
    """Stage 4 for the run of ``ctx``: permutation tests, clustering ARI, sweep; saves the tables."""
    params = ctx.params
    n_permutations = params["n_permutations"]
    matrices = overlap_matrices(ctx)
    main = matrices.get(params["main_pct"])
    labels = list(main.index) if main is not None else []
    domain_counts = pd.Series([overlap.domain_of(label) for label in labels]).value_counts()
    testable = main is not None and stats.testable(main)
    # One cluster per domain present: the study's 4 clusters are this rule for its 4 domains.
    n_clusters, knn = int(len(domain_counts)), min(params["knn"], max(len(labels) - 1, 1))
    described = surface.describe_tasks([task for task in ctx.suite.values() if task.label in set(labels)])
    base = dict(matrices=matrices, labels=labels, domain_counts=domain_counts, testable=bool(testable),
                n_clusters=n_clusters, knn=knn, n_permutations=n_permutations, surface=described)
    if not testable:
        written = _save(ctx, labels, {}, None, pd.DataFrame(), pd.DataFrame())
        return StatisticsResult(**base, written=written + _save_surface(ctx, described, {}))

    test = stats.within_cross_permutation(main, n_permutations=n_permutations, seed=STUDY_SEED)
    per_domain = stats.per_domain_modularity(main, n_permutations=n_permutations, seed=STUDY_SEED)
    ari = stats.ari_permutation(main, n_permutations=n_permutations, seed=STUDY_SEED, knn=knn, n_clusters=n_clusters)
    clustering = stats.clustering_scores(main, knn=knn, n_clusters=n_clusters)
    clusters = pd.DataFrame({"task": labels, "domain": [overlap.domain_of(label) for label in labels],
                             "cluster": [ari["clusters"][label] for label in labels]})
    # The run's row from the tests above (same seed, kNN and clusters as model_statistics would use).
    this_run = study.statistics_row(test, None, ari, len(labels), 0)
    placed = study.beside_study({ctx.label: this_run}, n_permutations=n_permutations)
    tau = study.tau_against_study(main, "overlap")
    sweep = stats.threshold_sweep(matrices, n_permutations=min(n_permutations, 2000), seed=STUDY_SEED,
                                  knn=knn, n_clusters=n_clusters)
    summary_row = stats.within_cross_columns("overlap", test)  # SI Table 1's row: stats.model_summary, without a second run
    undescribed = [label for label in labels if label not in described.index]
    surface_tables = {} if undescribed else surface_analysis(main, described, n_permutations=n_permutations, knn=knn)
    written = _save(ctx, labels, summary_row, ari, per_domain, sweep) + _save_surface(ctx, described, surface_tables)
    return StatisticsResult(
        **base, test=test, per_domain=per_domain, ari=ari, clustering=clustering, clusters=clusters,
        beside_study=placed[placed.measure != "ablation ratio"].reset_index(drop=True), tau_vs_study=tau,
        sweep=sweep, summary=_summary(ctx, labels, summary_row, ari), written=written, **surface_tables,
        surface_note=(f"not computed: {len(undescribed)} task(s) of the overlap matrix are not among this run's "
                      f"tasks ({', '.join(undescribed[:3])}…)" if undescribed else ""),
    )


def surface_analysis(main: pd.DataFrame, described: pd.DataFrame, *, n_permutations: int, knn: int) -> dict:
    """The surface tables of the overlap matrix ``main`` (book methods §12): ``surface_model``,
    ``surface_ratios``, ``surface_ari`` and, when its tasks are framed variants, ``frame_swap`` and
    ``frame_swap_cells``."""
    tables = {
        "surface_model": surface.confound_model(main, described, n_permutations=n_permutations, seed=STUDY_SEED),
        "surface_ratios": surface.restricted_ratios(main, described, n_permutations=n_permutations, seed=STUDY_SEED),
        "surface_ari": surface.domain_vs_frame_ari(main, described, knn=knn, n_permutations=n_permutations,
                                                   seed=STUDY_SEED),
    }
    if surface.is_frame_swap(main.index):
        tables["frame_swap"], tables["frame_swap_cells"] = surface.frame_swap_test(
            main, n_permutations=n_permutations, seed=STUDY_SEED)
    return tables


#: The surface tables' files (book methods §12).
SURFACE_FILES = {"surface": "surface_tasks.csv", "surface_model": "surface_model.csv",
                 "surface_ratios": "surface_ratios.csv", "surface_ari": "surface_ari.csv",
                 "frame_swap": "frame_swap.csv", "frame_swap_cells": "frame_swap_cells.csv"}


def _save_surface(ctx: RunContext, described: pd.DataFrame, tables: dict) -> list:
    """Every surface table, empty when not computed (so that no stale one stays)."""
    frames = {"surface": described.reset_index(), **tables}
    return [save_table(frames.get(name, pd.DataFrame()), ctx.paths.table(file)) for name, file in SURFACE_FILES.items()]


def _summary(ctx: RunContext, labels: list, summary_row: dict, ari: dict | None) -> dict:
    params = ctx.params
    return {"model": params["model"], "profile": params["profile"], "pct": params["main_pct"],
            "n_tasks": len(labels), "overlap": summary_row,
            "ari": {k: v for k, v in ari.items() if k != "clusters"} if ari is not None else None}


def _save(ctx: RunContext, labels: list, summary_row: dict, ari: dict | None, per_domain: pd.DataFrame,
          sweep: pd.DataFrame) -> list:
    return [save_json(_summary(ctx, labels, summary_row, ari), ctx.paths.table("stats_summary.json")),
            save_table(per_domain, ctx.paths.table("per_domain_overlap.csv")),
            save_table(sweep, ctx.paths.table("threshold_sweep.csv"))]
