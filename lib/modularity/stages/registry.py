"""The stages of a run, each declared once: the runner, the book's table of contents and page
titles, ``modularity plan``, the cost model and the command line's help all read this table.

A stage has one name (``attribution``): its module ``modularity.stages.<name>``, the key of its
cost (:mod:`modularity.running.cost`) and the word its pages use. Its notebook (``02_attribution``) is
the template ``notebooks/<notebook>.py`` and the executed page ``<notebook>.ipynb``; the number
gives the order. ``--stages`` takes either.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import ModuleType

__all__ = ["Stage", "STAGES", "NOTEBOOKS", "COSTED", "stage", "names"]


@dataclass(frozen=True)
class Stage:
    """One stage: ``name`` (module, cost key), ``notebook``, ``title`` (how pages name it),
    ``reads`` (``{earlier stage's notebook: what of it}``), ``writes`` (the tables it saves in the
    run's results folder: ``<pct>`` stands for each threshold, ``<main_pct>`` for the main one)
    and whether it runs the model through many items (``costed``: the cost model estimates it)."""

    name: str
    notebook: str
    title: str
    reads: dict = field(default_factory=dict)
    writes: tuple[str, ...] = ()
    costed: bool = False

    @property
    def module(self) -> ModuleType:
        """``modularity.stages.<name>``, whose ``run(ctx)`` does the stage."""
        return importlib.import_module(f"{__package__}.{self.name}")


STAGES: tuple[Stage, ...] = (
    Stage("evaluation", "01_eval", "evaluation",
          writes=("eval_summary.csv", "eval_items.csv", "source_items.csv", "task_files_audit.csv"), costed=True),
    Stage("attribution", "02_attribution", "attribution",
          reads={"01_eval": "eval_summary.csv and eval_items.csv"},
          writes=("attribution_summary.csv", "attribution_check.csv"), costed=True),
    Stage("overlap", "03_overlap", "overlap",
          reads={"01_eval": "eval_summary.csv", "02_attribution": "the attribution scores"},
          writes=("overlap_<pct>.csv", "jaccard_<pct>.csv", "overlap_<main_pct>_doubly_stochastic.csv")),
    Stage("statistics", "04_ari_permutation", "statistics",
          reads={"03_overlap": "the overlap matrices"},
          writes=("stats_summary.json", "per_domain_overlap.csv", "threshold_sweep.csv", "surface_tasks.csv",
                  "surface_model.csv", "surface_ratios.csv", "surface_ari.csv", "frame_swap.csv", "frame_swap_cells.csv")),
    Stage("ablation", "05_ablation", "ablation",
          reads={"01_eval": "eval_summary.csv and eval_items.csv", "02_attribution": "the attribution scores"},
          writes=("ablation_cells.csv", "ablation_drop_<main_pct>.csv", "ablation_summary.json"), costed=True),
    Stage("beside_study", "06_beside_the_study", "beside the study",
          reads={"03_overlap": "the overlap matrix", "05_ablation": "the ablation matrix"},
          writes=("beside_study.csv", "tau_vs_study.csv")),
    Stage("localizer", "07_localizer", "localizer",
          reads={"01_eval": "eval_summary.csv", "02_attribution": "the attribution scores"},
          writes=("localizer_sets.csv", "localizer_units.csv", "localizer_overlap.csv", "localizer_ablation_cells.csv",
                  "localizer_agreement.csv", "localizer_summary.json")),
    Stage("lesions", "09_lesions", "lesions",
          reads={"01_eval": "eval_summary.csv and eval_items.csv", "02_attribution": "the attribution scores",
                 "07_localizer": "localizer_units.csv"},
          writes=("lesion_prompts.csv", "lesion_sets.csv", "lesion_outputs.csv", "lesion_language.csv",
                  "lesion_measures.csv", "lesion_dissociation.csv", "lesion_examples.csv", "lesion_summary.json")),
)

#: The stage notebooks in pipeline order.
NOTEBOOKS: tuple[str, ...] = tuple(s.notebook for s in STAGES)
#: The stages the cost model estimates, in pipeline order.
COSTED: tuple[str, ...] = tuple(s.name for s in STAGES if s.costed)

_BY_KEY = {key: s for s in STAGES for key in (s.name, s.notebook)}


def stage(key: str) -> Stage:
    """The stage named ``key`` (its name or its notebook); a one-line error listing them otherwise."""
    try:
        return _BY_KEY[key]
    except KeyError:
        raise KeyError(f"unknown stage {key!r}; the stages are {names()}") from None


def names(separator: str = ", ") -> str:
    """``01_eval (evaluation), 02_attribution (attribution), …`` for help and errors."""
    return separator.join(f"{s.notebook} ({s.name})" for s in STAGES)
