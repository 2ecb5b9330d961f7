"""Stage 2 · attribution patching: a score per MLP neuron (and attention head) for each passing task.

:func:`run` does the whole stage: for every task that passed stage 1 (read through
:meth:`RunContext.passing`, which refuses tasks whose items changed since), the attribution scores
over its both-correct items (:func:`modularity.attribution.attribute_task`), cached per task as
``cache/…/attribution/<task>-<fingerprint>.safetensors`` (tensors ``neurons`` [L, d_ff] and
``heads`` [L, H]) by :func:`task_scores`, so a killed run resumes. The cache records what the
scores were computed from (:func:`scores_made_from`: the items and baselines stage 1 chose), so
scores of items stage 1 no longer chooses are recomputed, never reused. Then the check of the
first-order estimate against exact single-neuron patching on the ``verify_tasks`` tasks with the
most both-correct items. It saves ``attribution_summary.csv`` and
``attribution_check.csv`` and returns everything as an :class:`AttributionResult`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import attribution, overlap, scoring
from ..progress import bar
from ..store import cached, save_table
from .context import RunContext

__all__ = ["AttributionResult", "CHECK_ITEMS", "attributed_items", "run", "scores_made_from", "task_scores"]

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
    ``agreement``: per checked task, :func:`modularity.attribution.compare_with_patching`;
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


def _both_correct(eval_items: pd.DataFrame, task: str) -> np.ndarray:
    return scoring.both_correct_indices(eval_items[eval_items.task == task])


def attributed_items(ctx: RunContext, task: str, eval_items: pd.DataFrame | None = None) -> np.ndarray:
    """Indices of the items stage 2 attributes for ``task``: its aligned both-correct items in
    order, the first ``attribution_items`` of them when that parameter is set."""
    indices = _both_correct(ctx.evaluation_items() if eval_items is None else eval_items, task)
    limit = ctx.params["attribution_items"]
    return indices[:limit] if limit else indices


def scores_made_from(ctx: RunContext, task: str, passing: pd.DataFrame, eval_items: pd.DataFrame) -> dict:
    """What a task's attribution scores are computed from, as their cache records it: the task's
    fingerprint, the metric, the attributed items (:func:`attributed_items`) and the baselines C
    and R, all from stage 1's tables (``passing``: rows with task, C, R; ``eval_items``)."""
    row = passing.set_index("task").loc[task]
    return {"task": task, "fingerprint": ctx.paths.fingerprints[task], "metric": ctx.params["metric"],
            "items": attributed_items(ctx, task, eval_items), "C": float(row.C), "R": float(row.R)}


def task_scores(ctx: RunContext, task: str, passing: pd.DataFrame | None = None,
                eval_items: pd.DataFrame | None = None) -> dict:
    """A passing task's attribution scores ``{"neurons": [L, d_ff], "heads": [L, H]}``: its cache
    file when that passes every check (:func:`modularity.store.read_cache`), made from the items
    and baselines stage 1 chooses now (:func:`scores_made_from`); otherwise computed (the model is
    loaded) and cached. ``passing`` and ``eval_items`` are stage 1's tables, read when not given."""
    params = ctx.params
    passing = ctx.passing() if passing is None else passing
    eval_items = ctx.evaluation_items() if eval_items is None else eval_items
    made_from = scores_made_from(ctx, task, passing, eval_items)

    def compute() -> dict:
        tokens = scoring.tokenize_task(ctx.model, ctx.suite[task], params["bos"])
        result = attribution.attribute_task(ctx.model, tokens, made_from["items"], made_from["C"], made_from["R"],
                                            metric=params["metric"], batch_size=max(1, params["batch_size"] // 2))
        return {"neurons": result.neurons, "heads": result.heads}

    return cached(ctx.paths.tensor("attribution", task), compute, "attribution", made_from)


def run(ctx: RunContext, progress: bool = True) -> AttributionResult:
    """Stage 2 for the run of ``ctx``: attribute (or read back), check, save, return.

    The model is loaded only if a task has no usable cached scores or a task is checked.
    """
    params, paths = ctx.params, ctx.paths
    passing = ctx.passing()
    eval_items = ctx.evaluation_items()
    scores = {row.task: task_scores(ctx, row.task, passing, eval_items)
              for row in bar(passing.itertuples(), total=len(passing), desc="attributing", unit="tasks",
                             disable=not progress)}
    summary = pd.DataFrame([
        {"task": task, "positive neurons": int((s["neurons"] > 0).sum()),
         "max score": float(s["neurons"].max()), "sum of scores": float(s["neurons"].sum())}
        for task, s in scores.items()])
    check = _check(ctx, passing, eval_items, progress)
    agreement = (pd.DataFrame({task: attribution.compare_with_patching(group.estimate, group.exact)
                               for task, group in check.groupby("task")}).T
                 if len(check) else pd.DataFrame())
    save_table(summary, paths.table("attribution_summary.csv"))
    save_table(check, paths.table("attribution_check.csv"))
    return AttributionResult(passing, scores, summary, check, agreement,
                             _top_layers(scores, passing, params["main_pct"]))


def _check(ctx: RunContext, passing: pd.DataFrame, eval_items: pd.DataFrame, progress: bool) -> pd.DataFrame:
    """Exact single-neuron patching against the estimate, on the ``verify_tasks`` tasks with the
    most both-correct items: their ``verify_neurons`` top neurons and as many random ones, over
    the first :data:`CHECK_ITEMS` both-correct items (scores recomputed on those items)."""
    params = ctx.params
    checked = passing.sort_values("n_both_correct", ascending=False).head(params["verify_tasks"])
    rows = []
    for row in bar(checked.itertuples(), total=len(checked), desc="checking", unit="tasks", disable=not progress):
        indices = _both_correct(eval_items, row.task)[:CHECK_ITEMS]
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
