"""Half precision against float32 on the same model and tasks: what bf16 and fp16 move.

The study ran its 24B–123B models in half precision; this project's committed runs are float32.
:func:`modularity.running.precision_check.run_precision_check` runs stages 1, 2, 3 and 5 of one params
file once per dtype on the same tasks and items, then compares every half-precision run with the
float32 one with these functions:

* :func:`decision_table`: per task, both-correct accuracy and the pass decision in each dtype;
* :func:`score_agreement`: per task attributed in both, the overlap |A ∩ B|/k of the top-``pct``%
  positive neuron sets (the quantity stage 3 is built on), Spearman's ρ over all neuron scores
  and the largest score difference relative to the largest score;
* :func:`ratio_row`: the within/across overlap ratio (stage 3) and ablation-drop ratio (stage 5)
  with their permutation p-values, on the tasks that pass in that dtype.

:func:`backend_agreement` compares the two backends the same way (hooks against nnsight traces,
every output of the model stages), each output held to the float rounding tolerance of
:mod:`modularity.base.numerics`.

The comparison functions are pure (tables in, tables out); running the stages once per dtype is
:mod:`modularity.running.precision_check`'s.
"""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from . import ablation, attribution, scoring, stats
from ..base.numerics import EPS, agreement, largest_magnitude, tolerance

__all__ = ["backend_outputs", "backend_agreement", "decision_table", "score_agreement", "ratio_row"]


def decision_table(summaries: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Per task its both-correct accuracy and pass decision in every dtype.

    ``summaries``: dtype → stage 1's ``eval_summary`` (columns task, domain,
    both_correct_accuracy, passes); the first is the reference. Returns one row per task with
    ``accuracy <dtype>``, ``passes <dtype>`` and, per other dtype, ``changed <dtype>``.
    """
    reference = next(iter(summaries))
    table = summaries[reference][["task", "domain"]].copy()
    for dtype, summary in summaries.items():
        indexed = summary.set_index("task")
        table[f"accuracy {dtype}"] = table.task.map(indexed.both_correct_accuracy)
        table[f"passes {dtype}"] = table.task.map(indexed.passes).astype(bool)
    for dtype in list(summaries)[1:]:
        table[f"changed {dtype}"] = table[f"passes {dtype}"] != table[f"passes {reference}"]
    return table


def score_agreement(reference: dict, other: dict, pct: float, top_set) -> pd.DataFrame:
    """Per task attributed in both: top-set overlap, rank correlation and largest difference.

    ``reference``, ``other``: task → neuron scores [L, d_ff] (tensors or arrays);
    ``top_set(scores, pct)``: the flat indices of the top-``pct``% positive neurons
    (:func:`modularity.science.overlap.top_positive_set`). ``set overlap`` = |A ∩ B| / k with k the
    reference set's size (1 when the sets agree, the quantity stage 3 builds its matrices on).
    """
    rows = []
    for task in [t for t in reference if t in other]:
        a, b = np.asarray(reference[task], dtype=float), np.asarray(other[task], dtype=float)
        set_a, set_b = set(np.asarray(top_set(reference[task], pct)).tolist()), set(np.asarray(top_set(other[task], pct)).tolist())
        k = max(len(set_a), 1)
        rows.append({"task": task, "k": len(set_a), "set overlap": len(set_a & set_b) / k,
                     "spearman": float(spearmanr(a.ravel(), b.ravel()).statistic),
                     "max difference / max score": float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-30))})
    return pd.DataFrame(rows, columns=["task", "k", "set overlap", "spearman", "max difference / max score"])


def backend_outputs(loaded, task, items, neuron_sets: dict, C: float = 1.0, R: float = -1.0,
                    batch_size: int = 4) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every number the model stages compute on ``items`` of ``task``, on ``loaded``'s backend,
    and the magnitude each is computed from (the ``scale`` of :func:`modularity.base.numerics.tolerance`).

    Outputs: evaluation log-probs [n]; attribution neuron [L, d_ff] and head [L, H] scores
    (logit-difference metric, ``C``, ``R``); corrupted-ablation log-probs of ``neuron_sets``
    (``{name: flat indices}``) [S, n, …] and the unablated ones; mean activations [L, d_ff] and
    mean-ablation log-probs; exact patching effects [S]. An exact-patching effect is a difference of
    corrupted-run log-probs (correct and incorrect answers) over |C − R|: its scale is theirs, not
    its own size. The others' scale is their own largest value.
    """
    tokens = scoring.tokenize_task(loaded, task)
    items = np.asarray(items)
    clean, corrupted = [tokens.clean[i] for i in items], [tokens.corrupted[i] for i in items]
    scores = attribution.attribute_task(loaded, tokens, items, C=C, R=R, metric="logit_diff", batch_size=batch_size)
    ablated = ablation.ablation_logprobs(loaded, tokens, items, neuron_sets, batch_size=batch_size)
    means = ablation.mean_activations(loaded, tokens, items)
    outputs = {
        "evaluation log-probs": scoring.sequence_logprobs(loaded, clean, [tokens.correct[i] for i in items],
                                                          batch_size=batch_size),
        "neuron scores": scores.neurons.numpy(), "head scores": scores.heads.numpy(),
        "ablated log-probs (corrupted)": ablated.patched, "unablated log-probs": ablated.unablated,
        "mean activations": means.numpy(),
        "ablated log-probs (mean)": ablation.ablation_logprobs(loaded, tokens, items, neuron_sets, mode="mean",
                                                               mean_values=means, batch_size=batch_size).patched,
        "exact patching": attribution.patch_effect(loaded, tokens, items, C, R, list(neuron_sets.values()),
                                                   batch_size=batch_size),
    }
    scales = {name: largest_magnitude(value) for name, value in outputs.items()}
    corrupted_lps = [scoring.sequence_logprobs(loaded, corrupted, [answers[i] for i in items], batch_size=batch_size)
                     for answers in (tokens.correct, tokens.incorrect)]
    scales["exact patching"] = largest_magnitude(*corrupted_lps) / abs(C - R)
    return outputs, scales


def backend_agreement(loaded, task, items, neuron_sets: dict, **options) -> pd.DataFrame:
    """The hook backend against nnsight traces on the same weights: one row per output of
    :func:`backend_outputs` with its largest |hooks − nnsight|, the magnitude it is computed from,
    the tolerance it is held to (:func:`modularity.base.numerics.tolerance` in the model's dtype, plus
    one float32 unit of the value: outputs are stored in float32) and whether it agrees."""
    def on(backend: str):
        other = copy.copy(loaded)
        other.backend, other.remote, other._lm = backend, False, None
        return other

    hooks, scales = backend_outputs(on("hooks"), task, items, neuron_sets, **options)
    traced, _ = backend_outputs(on("nnsight"), task, items, neuron_sets, **options)
    rows = []
    for name, expected in hooks.items():
        held_to = tolerance(scales[name], loaded.n_layers, loaded.dtype) + EPS["float32"] * largest_magnitude(expected)
        rows.append({"output": name, **agreement(traced[name], expected, held_to), "computed from": scales[name]})
    columns = ["output", "largest difference", "computed from", "held to", "agrees"]
    return pd.DataFrame(rows)[columns].set_index("output")


def ratio_row(dtype: str, overlap_matrix: pd.DataFrame | None, drop_matrix: pd.DataFrame | None,
              n_permutations: int, seed: int) -> dict:
    """The within/across ratios of one dtype's overlap and ablation-drop matrices, with p.

    A matrix with fewer than two tasks (or None) gives NaN; ``n_tasks`` counts the tasks of the
    overlap matrix.
    """
    row = {"dtype": dtype, "n_tasks": 0 if overlap_matrix is None else len(overlap_matrix)}
    for name, matrix in (("overlap", overlap_matrix), ("ablation drop", drop_matrix)):
        if matrix is None or len(matrix) < 2:
            row.update({f"{name} ratio": np.nan, f"{name} p": np.nan})
            continue
        test = stats.within_cross_permutation(matrix, n_permutations=n_permutations, seed=seed)
        row.update({f"{name} ratio": test["ratio"], f"{name} p": test["p"]})
    return row
