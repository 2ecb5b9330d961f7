"""Stage 3 · overlap: every task's top-k% neuron set and the task × task overlap matrices.

Reads the attribution tensors of stage 2 (one per passing task; one damaged or made from other
items is recomputed, :func:`modularity.stages.scores.load_scores`), selects each task's top-k%
strictly positive neurons at every threshold of ``top_pcts`` (book methods §4), and computes the
study's overlap |A∩B|/k, the true Jaccard for contrast, the doubly-stochastic (Sinkhorn) matrix
at ``main_pct`` and the layer-wise composition of the domain-mean maps (book methods §10). Writes
``overlap_<pct>.csv``, ``jaccard_<pct>.csv`` and ``overlap_<main_pct>_doubly_stochastic.csv`` in
the study's CSV layout. With fewer than two attributed tasks nothing is computed or written.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..science import overlap
from ..science.matrix_csv import write_matrix_csv
from .context import RunContext
from .scores import load_scores

__all__ = ["OverlapResult", "run"]


@dataclass(frozen=True)
class OverlapResult:
    """What stage 3 computed; matrices are ``domain/task``-labelled DataFrames in the study's order.

    ``tasks``: the attributed tasks (``label``, ``task``, ``domain``, and stage 1's columns);
    ``k[pct]``: the set size k = max(1, ⌊N·pct/100⌋) of N = ``n_layers · d_ff`` neurons;
    ``sets[pct][label]``: flat neuron indices (``layer · d_ff + neuron``) in rank order;
    ``overlap[pct]``, ``jaccard[pct]``: [n, n]; ``set_sizes``: smallest and largest set per pct;
    ``within_cross``: within, cross and ratio at ``main_pct``; ``doubly_stochastic``: the Sinkhorn
    matrix at ``main_pct`` (None with fewer than three tasks), ``sinkhorn_converged`` whether its
    linked rows sum to 1 and ``unlinked`` the tasks sharing no top neuron with any other;
    ``composition``: Fig 2B's per-bin counts of one model; ``written``: the files saved.
    """

    main_pct: float
    tasks: pd.DataFrame
    n_layers: int = 0
    d_ff: int = 0
    k: dict = field(default_factory=dict)
    sets: dict = field(default_factory=dict)
    overlap: dict = field(default_factory=dict)
    jaccard: dict = field(default_factory=dict)
    set_sizes: pd.DataFrame = field(default_factory=pd.DataFrame)
    within_cross: dict | None = None
    doubly_stochastic: pd.DataFrame | None = None
    sinkhorn_converged: bool = True
    unlinked: list = field(default_factory=list)
    composition: pd.DataFrame | None = None
    written: list = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return list(self.tasks.label)

    @property
    def domains(self) -> dict[str, str]:
        return dict(zip(self.tasks.label, self.tasks.domain))

    @property
    def enough(self) -> bool:
        """At least two attributed tasks: an overlap needs a pair."""
        return len(self.tasks) >= 2

    @property
    def main(self) -> pd.DataFrame | None:
        """The overlap matrix at ``main_pct`` (None when not computed)."""
        return self.overlap.get(self.main_pct)


def run(ctx: RunContext) -> OverlapResult:
    """Stage 3 for the run of ``ctx``: sets, matrices, Sinkhorn, composition; saves the matrices."""
    params, main_pct = ctx.params, ctx.params["main_pct"]
    tasks = ctx.attributed()
    if len(tasks) < 2:
        return OverlapResult(main_pct, tasks)
    scores = {row.label: load_scores(ctx, row.task, tasks) for row in tasks.itertuples()}
    labels, domains = list(tasks.label), dict(zip(tasks.label, tasks.domain))
    n_layers, d_ff = next(iter(scores.values())).shape
    k, sets, matrices, jaccards, sizes = {}, {}, {}, {}, []
    for pct in params["top_pcts"]:
        k[pct] = overlap.top_k_count(n_layers * d_ff, pct)
        sets[pct] = {label: overlap.top_positive_set(scores[label], pct) for label in labels}
        matrices[pct] = overlap.overlap_matrix(sets[pct], k[pct]).loc[labels, labels]
        jaccards[pct] = overlap.jaccard_matrix(sets[pct]).loc[labels, labels]
        sizes += [{"pct": pct, "k": k[pct], "set size": len(s)} for s in sets[pct].values()]
    set_sizes = pd.DataFrame(sizes).groupby(["pct", "k"])["set size"].agg(["min", "max"])

    main = matrices[main_pct]
    doubly, converged, unlinked = _doubly_stochastic(main) if len(labels) > 2 else (None, True, [])
    domain_maps = overlap.domain_mean_attribution(scores, domains)
    composition = overlap.composition_by_bin([overlap.layer_composition(domain_maps, pct=main_pct)])

    written = []
    for pct in matrices:
        written.append(write_matrix_csv(matrices[pct], ctx.paths.table(f"overlap_{pct:g}.csv")))
        written.append(write_matrix_csv(jaccards[pct], ctx.paths.table(f"jaccard_{pct:g}.csv")))
    if doubly is not None:
        written.append(write_matrix_csv(doubly, ctx.paths.table(f"overlap_{main_pct:g}_doubly_stochastic.csv")))
    return OverlapResult(
        main_pct, tasks, int(n_layers), int(d_ff), k, sets, matrices, jaccards, set_sizes,
        overlap.within_cross(main, domains), doubly, converged, unlinked, composition, written,
    )


def _doubly_stochastic(main: pd.DataFrame) -> tuple[pd.DataFrame, bool, list[str]]:
    """Sinkhorn's matrix, whether its linked rows reached sum 1, and the unlinked tasks.

    A task sharing no top neuron with any other keeps a zero row. Sinkhorn reaches row sums of 1
    only when the link pattern admits a doubly-stochastic matrix (total support); otherwise the
    chord diagram drawn from it is indicative only.
    """
    doubly = overlap.sinkhorn(main)
    values = main.to_numpy()
    linked = (values - np.diag(np.diag(values))).sum(axis=1) > 0
    row_sums = doubly.sum(axis=1).to_numpy()
    assert np.allclose(row_sums[~linked], 0), "a task with no overlap keeps a zero row"
    converged = bool(np.allclose(row_sums[linked], 1, atol=1e-3))
    return doubly, converged, [label for label, is_linked in zip(main.index, linked) if not is_linked]

