"""A task's attribution scores, as every stage after stage 2 reads them.

Stage 2 computes them; stages 3, 5 and 7 read them back. All go through :func:`task_scores`:
the cache file ``cache/…/attribution/<task>-<fingerprint>.safetensors`` (tensors ``neurons``
[L, d_ff] and ``heads`` [L, H]) when it passes every check (:func:`modularity.records.store.read_cache`)
and was made from the items and baselines stage 1 chooses now (:func:`scores_made_from`);
otherwise the scores are computed again (the model is loaded) and cached. So a damaged file, or
one made from items stage 1 no longer chooses, is recomputed, never used.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..science import attribution, overlap, scoring
from ..records.store import cached
from .context import RunContext

__all__ = ["attributed_items", "scores_made_from", "task_scores", "load_scores", "top_set"]


def attributed_items(ctx: RunContext, task: str) -> np.ndarray:
    """Indices of the items stage 2 attributes for ``task``: its both-correct items in order
    (:meth:`RunContext.both_correct_items`), the first ``attribution_items`` of them when that
    parameter is set."""
    indices = ctx.both_correct_items(task)
    limit = ctx.params["attribution_items"]
    return indices[:limit] if limit else indices


def scores_made_from(ctx: RunContext, task: str, passing: pd.DataFrame | None = None) -> dict:
    """What a task's attribution scores are computed from, as their cache records it: the task's
    fingerprint, the metric, the attributed items (:func:`attributed_items`) and the baselines C
    and R (``passing``: stage 1's passing rows with task, C, R; read when not given)."""
    passing = ctx.passing() if passing is None else passing
    row = passing.set_index("task").loc[task]
    return {"task": task, "fingerprint": ctx.paths.fingerprints[task], "metric": ctx.params["metric"],
            "items": attributed_items(ctx, task), "C": float(row.C), "R": float(row.R)}


def task_scores(ctx: RunContext, task: str, passing: pd.DataFrame | None = None) -> dict:
    """A passing task's attribution scores ``{"neurons": [L, d_ff], "heads": [L, H]}`` (float32):
    the checked cache file, or computed and cached (see the module's docstring)."""
    params = ctx.params
    made_from = scores_made_from(ctx, task, passing)

    def compute() -> dict:
        tokens = scoring.tokenize_task(ctx.model, ctx.suite[task], params["bos"])
        result = attribution.attribute_task(ctx.model, tokens, made_from["items"], made_from["C"], made_from["R"],
                                            metric=params["metric"], batch_size=max(1, params["batch_size"] // 2))
        return {"neurons": result.neurons, "heads": result.heads}

    return cached(ctx.paths.tensor("attribution", task), compute, "attribution", made_from)


def load_scores(ctx: RunContext, task: str, passing: pd.DataFrame | None = None):
    """One task's neuron scores, a float tensor [n_layers, d_ff] (:func:`task_scores`)."""
    return task_scores(ctx, task, passing)["neurons"]


def top_set(ctx: RunContext, task: str, passing: pd.DataFrame | None = None) -> np.ndarray:
    """A task's top ``main_pct``% strictly positive neurons, flat indices (``layer · d_ff + neuron``)
    in rank order: its set in stage 3's overlap and stage 5's ablation."""
    return overlap.top_positive_set(load_scores(ctx, task, passing), ctx.params["main_pct"])
