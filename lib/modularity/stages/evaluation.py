"""Stage 1 · evaluation: score every item of every task and decide which tasks pass the filter.

:func:`run` does the whole stage: per task, the four teacher-forced log-probabilities of every
item (:func:`modularity.science.scoring.evaluate_task`, cached per task by
:func:`modularity.records.store.cached_evaluation`, so a killed run resumes and a finished task is never
scored again), the per-task summary with the inclusion decision
(:func:`modularity.science.scoring.summarize_suite`) and each task's fingerprint (later stages check that
the items did not change), and for a run on the study's files (``data_dir``) where each item
came from and the audit of those files. It saves ``eval_summary.csv`` and ``eval_items.csv``
(and ``source_items.csv``, ``task_files_audit.csv`` for ``data_dir`` runs) next to the stage's
notebook and returns them as an :class:`EvaluationResult`.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..science import scoring
from ..records.store import cached_evaluation, save_table
from .context import RunContext

__all__ = ["EvaluationResult", "run"]


@dataclass(frozen=True)
class EvaluationResult:
    """What stage 1 found.

    ``summary``: one row per task (``eval_summary.csv``: the fields of
    :func:`modularity.science.scoring.summarize_task`, ``task``, ``domain`` and ``fingerprint``);
    ``items``: one row per item and task (``eval_items.csv``: the columns of
    :func:`modularity.science.scoring.evaluate_task` and ``task``);
    ``by_domain``: tasks passing per domain (:func:`modularity.science.scoring.passing_by_domain`);
    ``sources`` and ``audit``: for a ``data_dir`` run, what each task file held and what was left
    out (:func:`modularity.science.tasks.source_table`) and the audit of the files over all usable items
    (:func:`modularity.science.tasks.audit_items`, ``task_files_audit.csv``); None for generated tasks.
    """

    summary: pd.DataFrame
    items: pd.DataFrame
    by_domain: pd.DataFrame
    sources: pd.DataFrame | None = None
    audit: pd.DataFrame | None = None

    @property
    def passing(self) -> pd.DataFrame:
        """The rows of :attr:`summary` whose task passed the filter."""
        return self.summary[self.summary.passes].reset_index(drop=True)


def run(ctx: RunContext, progress: bool = True) -> EvaluationResult:
    """Stage 1 for the run of ``ctx``: score (or read back), summarise, save, return.

    The model is loaded only if some task has no cached scores.
    """
    params, paths, suite = ctx.params, ctx.paths, ctx.suite

    def evaluate(name: str, stop_below: float | None) -> pd.DataFrame:
        return scoring.evaluate_task(ctx.model, suite[name], params["batch_size"], params["bos"],
                                     stop_below=stop_below)

    frames = cached_evaluation(paths, params, ctx.share(list(suite)), evaluate, desc="evaluating", progress=progress)
    ctx.stop_if_sharded()
    domains = {name: task.domain for name, task in suite.items()}
    summary = scoring.summarize_suite(frames, domains, params["threshold"])
    summary["fingerprint"] = summary.task.map(paths.fingerprints)  # later stages check the items are unchanged
    items = pd.concat([frame.assign(task=name) for name, frame in frames.items()], ignore_index=True)
    save_table(summary, paths.table("eval_summary.csv"))
    save_table(items, paths.table("eval_items.csv"))
    sources = audit = None
    if params["data_dir"]:  # which file entries were used, and the audit of the task files
        from ..science import tasks as task_io

        sources = task_io.source_table(suite)
        audit = task_io.audit_items(task_io.load_suite(params, sample=False))
        save_table(task_io.item_sources(suite), paths.table("source_items.csv"))
        save_table(audit, paths.table("task_files_audit.csv"))
    return EvaluationResult(summary, items, scoring.passing_by_domain(summary), sources, audit)
