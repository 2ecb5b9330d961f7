"""Stage 2 · attribution patching: a score per MLP neuron (and attention head) for each passing task.

:func:`run` does the whole stage: for every task that passed stage 1 (read through
:meth:`RunContext.passing`, which refuses tasks whose items changed since), the attribution scores
over its both-correct items (:func:`modularity.science.attribution.attribute_task`), cached per task as
``cache/…/attribution/<task>-<fingerprint>.safetensors`` (tensors ``neurons`` [L, d_ff] and
``heads`` [L, H]) by :func:`modularity.stages.scores.task_scores`, so a killed run resumes. The
cache records what the scores were computed from (the items and baselines stage 1 chose), so
scores of items stage 1 no longer chooses are recomputed, never reused. Then the check of the
first-order estimate against exact single-neuron patching on the ``verify_tasks`` tasks with the
most both-correct items. It saves ``attribution_summary.csv`` and
``attribution_check.csv`` and returns everything as an :class:`AttributionResult`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..science import attribution, overlap, scoring
from ..base.progress import bar
from ..records.store import save_table
from .context import RunContext
from .scores import task_scores

__all__ = ["AttributionResult", "CHECK_ITEMS", "run"]

#: Both-correct items per checked task on which attribution is compared with exact patching.
CHECK_ITEMS = 16


@dataclass(frozen=True)
class AttributionResult:
    """What stage 2 found.

    ``passing``: the tasks that passed stage 1 (:meth:`RunContext.passing`);
    ``scores``: ``{task: {"neurons": [L, d_ff], "heads": [L, H]}}`` (float32, as cached);
    ``summary``: per task, positive neurons, max and sum of the neuron scores
    (``attribution_summary.csv``); ``check``: per checked neuron, its estimate and the exact
    effect of patching it (``attribution_check.csv``: task, neuron, kind, estimate, exact);
    ``agreement``: per checked task, :func:`modularity.science.attribution.compare_with_patching`;
    ``top_layers``: the layer of each task's top-``main_pct``% positive neurons (task, domain, layer).
    """

    passing: pd.DataFrame
    scores: dict
    summary: pd.DataFrame
    check: pd.DataFrame
    agreement: pd.DataFrame
    top_layers: pd.DataFrame

    @property
    def overall(self) -> dict | None:
        """Agreement of estimate and exact effect over every checked neuron (None when none was checked)."""
        return attribution.compare_with_patching(self.check.estimate, self.check.exact) if len(self.check) else None


def run(ctx: RunContext, progress: bool = True) -> AttributionResult:
    """Stage 2 for the run of ``ctx``: attribute (or read back), check, save, return.

    The model is loaded only if a task has no usable cached scores or a task is checked.
    """
    params, paths = ctx.params, ctx.paths
    passing = ctx.passing()
    mine = ctx.share(passing)
    scores = {row.task: task_scores(ctx, row.task, passing)
              for row in bar(mine.itertuples(), total=len(mine), desc="attributing", unit="tasks",
                             disable=not progress)}
    ctx.stop_if_sharded()
    summary = pd.DataFrame([
        {"task": task, "positive neurons": int((s["neurons"] > 0).sum()),
         "max score": float(s["neurons"].max()), "sum of scores": float(s["neurons"].sum())}
        for task, s in scores.items()])
    check = _check(ctx, passing, progress)
    agreement = (pd.DataFrame({task: attribution.compare_with_patching(group.estimate, group.exact)
                               for task, group in check.groupby("task")}).T
                 if len(check) else pd.DataFrame())
    save_table(summary, paths.table("attribution_summary.csv"))
    save_table(check, paths.table("attribution_check.csv"))
    return AttributionResult(passing, scores, summary, check, agreement,
                             _top_layers(scores, passing, params["main_pct"]))


def _check(ctx: RunContext, passing: pd.DataFrame, progress: bool) -> pd.DataFrame:
    """Exact single-neuron patching against the estimate, on the ``verify_tasks`` tasks with the
    most both-correct items: their ``verify_neurons`` top neurons and as many random ones, over
    the first :data:`CHECK_ITEMS` both-correct items (scores recomputed on those items)."""
    params = ctx.params
    checked = passing.sort_values("n_both_correct", ascending=False).head(params["verify_tasks"])
    rows = []
    for row in bar(checked.itertuples(), total=len(checked), desc="checking", unit="tasks", disable=not progress):
        indices = ctx.both_correct_items(row.task)[:CHECK_ITEMS]
        tokens = scoring.tokenize_task(ctx.model, ctx.suite[row.task], params["bos"])
        estimates = attribution.attribute_task(ctx.model, tokens, indices, row.C, row.R, metric=params["metric"],
                                               heads=False).neurons
        top, random_ = attribution.verification_neurons(estimates, params["verify_neurons"], params["seed"])
        chosen = np.concatenate([top, random_])
        exact = attribution.patch_effect(ctx.model, tokens, indices, row.C, row.R,
                                         [np.array([flat]) for flat in chosen], metric=params["metric"])
        for i, flat in enumerate(chosen):
            rows.append({"task": row.task, "neuron": int(flat), "kind": "top" if i < len(top) else "random",
                         "estimate": float(estimates.flatten()[flat]), "exact": float(exact[i])})
    return pd.DataFrame(rows)


def _top_layers(scores: dict, passing: pd.DataFrame, pct: float) -> pd.DataFrame:
    domain = passing.set_index("task").domain
    rows = [{"task": task, "domain": domain[task], "layer": int(layer)}
            for task, tensors in scores.items()
            for layer in overlap.top_positive_set(tensors["neurons"], pct) // tensors["neurons"].shape[1]]
    return pd.DataFrame(rows, columns=["task", "domain", "layer"])
