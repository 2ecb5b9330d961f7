"""modularity: do an LLM's MLP neurons organise into brain-like domain modules?

Stage modules: :mod:`~modularity.tasks`, :mod:`~modularity.models`,
:mod:`~modularity.scoring`, :mod:`~modularity.attribution`,
:mod:`~modularity.overlap`, :mod:`~modularity.stats`,
:mod:`~modularity.ablation`, :mod:`~modularity.charts`, :mod:`~modularity.runs`.
"""
__version__ = "0.1.0"
