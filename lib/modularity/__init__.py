"""modularity: do an LLM's MLP neurons organise into brain-like domain modules?

Stage modules: :mod:`~modularity.tasks`, :mod:`~modularity.models`, :mod:`~modularity.scoring`,
:mod:`~modularity.attribution`, :mod:`~modularity.overlap`, :mod:`~modularity.stats`,
:mod:`~modularity.ablation`, :mod:`~modularity.localizer`; the model passes on either backend:
:mod:`~modularity.passes` (hooks: :mod:`~modularity.sites`, nnsight: :mod:`~modularity.traces`);
the study's released results: :mod:`~modularity.study`; charts: :mod:`~modularity.charts`.
Running them: :mod:`~modularity.params` (the schema), :mod:`~modularity.store` (where results go),
:mod:`~modularity.provenance` (manifests), :mod:`~modularity.runner` (papermill),
:mod:`~modularity.book` (the book's pages), :mod:`~modularity.cost` and :mod:`~modularity.plan`
(what a run will cost), :mod:`~modularity.precision` (what half precision moves).
"""
import warnings

# transformers imports tqdm.auto, which warns in every notebook kernel without ipywidgets; the
# package's own bars are plain text, so the warning only adds noise to every executed page.
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"
