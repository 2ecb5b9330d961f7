"""modularity: do an LLM's MLP neurons organise into brain-like domain modules?

Stage modules: :mod:`~modularity.tasks`, :mod:`~modularity.models`, :mod:`~modularity.scoring`,
:mod:`~modularity.attribution`, :mod:`~modularity.overlap`, :mod:`~modularity.stats`,
:mod:`~modularity.ablation`; the study's released results: :mod:`~modularity.study`; charts:
:mod:`~modularity.charts`. Running them: :mod:`~modularity.params` (the schema),
:mod:`~modularity.store` (where results go), :mod:`~modularity.provenance` (manifests),
:mod:`~modularity.runner` (papermill), :mod:`~modularity.book` (the book's pages),
:mod:`~modularity.cost` and :mod:`~modularity.plan` (what a run will cost).
"""
__version__ = "0.1.0"
