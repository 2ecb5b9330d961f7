"""Half precision against float32 on the same model and tasks: what bf16 and fp16 move.

The study ran its 24B–123B models in half precision; this project's committed runs are float32.
:func:`run_precision_check` runs stages 1, 2, 3 and 5 of one params file once per dtype on the
same tasks and items (each dtype its own run, under a scratch root, cached per task, so a
killed check resumes), then compares every half-precision run with the float32 one:

* :func:`decision_table`: per task, both-correct accuracy and the pass decision in each dtype;
* :func:`score_agreement`: per task attributed in both, the overlap |A ∩ B|/k of the top-``pct``%
  positive neuron sets (the quantity stage 3 is built on), Spearman's ρ over all neuron scores
  and the largest score difference relative to the largest score;
* :func:`ratio_row`: the within/across overlap ratio (stage 3) and ablation-drop ratio (stage 5)
  with their permutation p-values, on the tasks that pass in that dtype.

:func:`backend_agreement` compares the two backends the same way (hooks against nnsight traces,
every output of the model stages), each output held to the float rounding tolerance of
:mod:`modularity.numerics`.

The comparison functions are pure (tables in, tables out); :func:`run_precision_check` does the
running and :func:`save_precision_check` writes the tables the book's scale chapter reads.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from . import stats
from .params import validate_params
from .store import REPO_ROOT, save_json, save_table

__all__ = ["backend_outputs", "backend_agreement", "PrecisionCheck", "DtypeRun", "TokenCounter", "run_dtype", "decision_table", "score_agreement", "ratio_row", "run_precision_check",
           "save_precision_check", "DEFAULT_TASKS", "results_folder"]

#: Two tasks per domain that pass on SmolLM2-135M-Instruct in float32 (small profile), three of them
#: within 0.05 of the 60% threshold, where a change of precision could flip the decision.
DEFAULT_TASKS = ("add_sub_2op_symbolic", "mul_div_2op_symbolic", "desires_goals", "social_interactions",
                 "physics_elasticity", "phys_newton", "det_noun_agreement_regular",
                 "det_noun_agreement_with_adjective")

REFERENCE = "float32"


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
    (:func:`modularity.overlap.top_positive_set`). ``set overlap`` = |A ∩ B| / k with k the
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
    and the magnitude each is computed from (the ``scale`` of :func:`modularity.numerics.tolerance`).

    Outputs: evaluation log-probs [n]; attribution neuron [L, d_ff] and head [L, H] scores
    (logit-difference metric, ``C``, ``R``); corrupted-ablation log-probs of ``neuron_sets``
    (``{name: flat indices}``) [S, n, …] and the unablated ones; mean activations [L, d_ff] and
    mean-ablation log-probs; exact patching effects [S]. An exact-patching effect is a difference of
    corrupted-run log-probs (correct and incorrect answers) over |C − R|: its scale is theirs, not
    its own size. The others' scale is their own largest value.
    """
    from . import ablation, attribution, scoring
    from .numerics import largest_magnitude

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
    the tolerance it is held to (:func:`modularity.numerics.tolerance` in the model's dtype, plus
    one float32 unit of the value: outputs are stored in float32) and whether it agrees."""
    import copy

    from .numerics import EPS, agreement, largest_magnitude, tolerance

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


@dataclass
class PrecisionCheck:
    """What :func:`run_precision_check` measured.

    ``decisions``: :func:`decision_table`; ``sets``: per half dtype :func:`score_agreement`
    (column ``dtype``); ``ratios``: one :func:`ratio_row` per dtype; ``stages``: per dtype and
    stage its wall time and the tokens its forward passes ran (:class:`DtypeRun`);
    ``settings``: model, tasks, items and dtypes compared.
    """

    decisions: pd.DataFrame
    sets: pd.DataFrame
    ratios: pd.DataFrame
    stages: pd.DataFrame = field(default_factory=pd.DataFrame)
    settings: dict = field(default_factory=dict)


@dataclass
class DtypeRun:
    """Stages 1, 2, 3 and 5 of one dtype: ``summary`` (stage 1), ``scores`` (task → neuron scores),
    ``overlap`` (stage 3's main matrix or None), ``drops`` (stage 5's drop matrix or None) and
    ``stages``: per stage ``seconds``, ``tokens`` (real tokens through the model, backward passes
    not counted), ``grad_tokens`` (those of forwards that were differentiated) and ``n_params``
    (parameters outside the embeddings, for FLOP estimates)."""

    summary: pd.DataFrame
    scores: dict
    overlap: pd.DataFrame | None
    drops: pd.DataFrame | None
    stages: pd.DataFrame


class TokenCounter:
    """Counts the real tokens of every forward through ``model.base_model`` (a pre-hook), split
    by whether gradients were on (attribution's differentiated pass costs about three forwards)."""

    def __init__(self, model):
        self.tokens = self.grad_tokens = 0
        self._handle = model.base_model.register_forward_pre_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs):
        import torch

        mask = kwargs.get("attention_mask")
        ids = kwargs.get("input_ids", args[0] if args else None)
        n = int(mask.sum()) if mask is not None else int(ids.numel())
        self.tokens += n
        if torch.is_grad_enabled():
            self.grad_tokens += n

    def take(self) -> tuple[int, int]:
        """Tokens and grad tokens since the last call."""
        counts = (self.tokens, self.grad_tokens)
        self.tokens = self.grad_tokens = 0
        return counts

    def close(self) -> None:
        self._handle.remove()


def run_dtype(params: dict, dtype: str, tasks, root: str | Path, progress: bool = True) -> DtypeRun:
    """Stages 1, 2, 3 and 5 of ``params`` in ``dtype`` on ``tasks`` (run ``<run_name>-<dtype>`` under ``root``)."""
    from .plan import model_geometry
    from .stages import ablation, attribution, evaluation
    from .stages import overlap as overlap_stage
    from .stages.context import RunContext

    run_params = {**params, "dtype": dtype, "tasks": list(tasks), "run_name": f"{params['run_name']}-{dtype}"}
    ctx = RunContext.of(run_params, root)
    counter = TokenCounter(ctx.model.model) if not ctx.model.remote else None
    n_params = model_geometry(ctx.model.model.config).n_flop_params
    rows, results = [], {}
    for stage, step in (("evaluation", lambda: evaluation.run(ctx, progress=progress)),
                        ("attribution", lambda: attribution.run(ctx)), ("overlap", lambda: overlap_stage.run(ctx)),
                        ("ablation", lambda: ablation.run(ctx) if results["overlap"].overlap else None)):
        if progress:
            print(f"[precision] {dtype}: {stage}", flush=True)
        start = time.perf_counter()
        results[stage] = step()
        seconds = time.perf_counter() - start
        tokens, grad_tokens = counter.take() if counter else (0, 0)
        rows.append({"dtype": dtype, "stage": stage, "seconds": round(seconds, 2), "tokens": tokens,
                     "grad_tokens": grad_tokens, "n_params": n_params})
    if counter:
        counter.close()
    main = results["overlap"].overlap.get(params["main_pct"])
    drops = results["ablation"].matrix if results["ablation"] is not None else None
    scores = {task: values["neurons"] for task, values in results["attribution"].scores.items()}
    return DtypeRun(results["evaluation"].summary, scores, main, drops, pd.DataFrame(rows))


def run_precision_check(params: dict, dtypes=("bfloat16", "float16"), tasks=DEFAULT_TASKS,
                        root: str | Path | None = None, progress: bool = True) -> PrecisionCheck:
    """Stages 1, 2, 3 and 5 of ``params`` on ``tasks`` in float32 and each of ``dtypes``; compared.

    Each dtype is a run of its own (``run_name`` ``<run>-<dtype>``) under ``root`` (default
    ``cache/precision``, not committed); its per-task caches make a second call resume (the
    stage times and token counts then describe the resumed call).
    """
    from . import overlap

    root = Path(root or REPO_ROOT / "cache" / "precision")
    chosen = (REFERENCE,) + tuple(d for d in dtypes if d != REFERENCE)
    base = validate_params(params)
    runs = {dtype: run_dtype(base, dtype, tasks, root, progress) for dtype in chosen}
    sets = pd.concat([score_agreement(runs[REFERENCE].scores, runs[dtype].scores, base["main_pct"],
                                      overlap.top_positive_set).assign(dtype=dtype) for dtype in chosen[1:]],
                     ignore_index=True)
    ratios = pd.DataFrame([ratio_row(dtype, run.overlap, run.drops, base["n_permutations"], base["seed"])
                           for dtype, run in runs.items()])
    settings = {"model": base["model"], "profile": base["profile"], "tasks": list(tasks), "dtypes": list(chosen),
                "n_items": base["n_items"], "attribution_items": base["attribution_items"],
                "ablation_items": base["ablation_items"], "main_pct": base["main_pct"], "seed": base["seed"],
                "device": base["device"], "threads": base["threads"]}
    decisions = decision_table({dtype: run.summary for dtype, run in runs.items()})
    stages = pd.concat([run.stages for run in runs.values()], ignore_index=True)
    return PrecisionCheck(decisions, sets, ratios, stages, settings)


def results_folder(params: dict) -> Path:
    """Where the check's tables go: ``book/results/precision/<run_name>-<profile>/``."""
    return REPO_ROOT / "book" / "results" / "precision" / f"{params['run_name']}-{params['profile']}"


def save_precision_check(check: PrecisionCheck, folder: Path) -> list[Path]:
    """Write the check's tables (``decisions.csv``, ``sets.csv``, ``ratios.csv``, ``stages.csv``)
    and ``precision.json`` (settings, environment) to ``folder``."""
    from .provenance import environment_info

    folder = Path(folder)
    written = [save_table(check.decisions, folder / "decisions.csv"), save_table(check.sets, folder / "sets.csv"),
               save_table(check.ratios, folder / "ratios.csv"), save_table(check.stages, folder / "stages.csv")]
    written.append(save_json({"settings": check.settings, "environment": environment_info()},
                             folder / "precision.json"))
    return written
