"""The precision check: stages 1, 2, 3 and 5 of one params file in float32 and in half precision
on a few tasks, compared (``modularity precision``; the comparisons are :mod:`modularity.science.precision`'s).

Each dtype is a run of its own (``run_name`` ``<run>-<dtype>``) under a scratch root
(``cache/precision``), cached per task, so a killed check resumes.
:func:`save_precision_check` writes the tables the book's scale chapter reads.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..science import overlap
from .. import stages
from ..base.files import project_root, results_root
from ..records.params import validate_params
from .plan import model_geometry
from ..science.precision import decision_table, ratio_row, score_agreement
from ..records.provenance import environment_info
from ..stages.context import RunContext
from ..records.store import save_json, save_table

__all__ = ["PrecisionCheck", "DtypeRun", "TokenCounter", "run_dtype", "run_precision_check", "save_precision_check",
           "DEFAULT_TASKS", "REFERENCE", "results_folder"]

#: Two tasks per domain that pass on SmolLM2-135M-Instruct in float32 (small profile), three of them
#: within 0.05 of the 60% threshold, where a change of precision could flip the decision.
DEFAULT_TASKS = ("add_sub_2op_symbolic", "mul_div_2op_symbolic", "desires_goals", "social_interactions",
                 "physics_elasticity", "phys_newton", "det_noun_agreement_regular",
                 "det_noun_agreement_with_adjective")

REFERENCE = "float32"


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
    run_params = {**params, "dtype": dtype, "tasks": list(tasks), "run_name": f"{params['run_name']}-{dtype}"}
    ctx = RunContext.of(run_params, root)
    counter = TokenCounter(ctx.model.model) if not ctx.model.remote else None
    n_params = model_geometry(ctx.model.model.config).n_flop_params
    rows, results = [], {}
    for stage, step in (("evaluation", lambda: stages.evaluation.run(ctx, progress=progress)),
                        ("attribution", lambda: stages.attribution.run(ctx)), ("overlap", lambda: stages.overlap.run(ctx)),
                        ("ablation", lambda: stages.ablation.run(ctx) if results["overlap"].overlap else None)):
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
    root = Path(root or project_root() / "cache" / "precision")
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
    return results_root() / "precision" / f"{params['run_name']}-{params['profile']}"


def save_precision_check(check: PrecisionCheck, folder: Path) -> list[Path]:
    """Write the check's tables (``decisions.csv``, ``sets.csv``, ``ratios.csv``, ``stages.csv``)
    and ``precision.json`` (settings, environment) to ``folder``."""
    folder = Path(folder)
    written = [save_table(check.decisions, folder / "decisions.csv"), save_table(check.sets, folder / "sets.csv"),
               save_table(check.ratios, folder / "ratios.csv"), save_table(check.stages, folder / "stages.csv")]
    written.append(save_json({"settings": check.settings, "environment": environment_info()},
                             folder / "precision.json"))
    return written
