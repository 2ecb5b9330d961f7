"""The pipeline's stages, one module each, each with one entry function ``run(ctx)``.

``ctx`` is a :class:`~modularity.stages.context.RunContext`: the run's validated parameters, its
result store, its tasks and its model (loaded on first use). A stage's ``run`` does the stage
entirely: reads what earlier stages wrote, computes (through the pure modules :mod:`~modularity.scoring`,
:mod:`~modularity.attribution`, :mod:`~modularity.overlap`, :mod:`~modularity.stats`,
:mod:`~modularity.ablation`), caches per task so that a killed run resumes, reports progress, saves
its small tables, and returns a typed result that the stage's notebook shows.
"""
