"""Layer 4 of 6: the pipeline's stages, one module each, each with one entry function ``run(ctx)``.

``ctx`` is a :class:`~modularity.stages.context.RunContext`: the run's validated parameters, its
result store, its tasks and its model (loaded on first use). A stage's ``run`` does the stage
entirely: reads what earlier stages wrote, computes (through the pure modules :mod:`~modularity.science.scoring`,
:mod:`~modularity.science.attribution`, :mod:`~modularity.science.overlap`, :mod:`~modularity.science.stats`,
:mod:`~modularity.science.ablation`, :mod:`~modularity.science.localizer`), caches per task so that a killed run
resumes, reports progress, saves its small tables, and returns a typed result that the stage's
notebook shows.

The stages stand on one floor and never import each other: :mod:`.context` (the run, stage 1's
decisions), :mod:`.scores` (a task's attribution scores) and :mod:`.cells` (ablation cells).
:mod:`.registry` declares each stage once. ``from modularity import stages`` gives every one of
them as an attribute (``stages.attribution.run(ctx)``), imported on first use.
"""
from __future__ import annotations

import importlib

from .registry import STAGES

_FLOOR = ("context", "scores", "cells", "registry")


def __getattr__(name: str):
    if name in _FLOOR or any(s.name == name for s in STAGES):
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_FLOOR) + [s.name for s in STAGES])
