"""modularity: do an LLM's MLP neurons organise into brain-like domain modules?

The package's folders are its layers, bottom to top; a module imports only from its own layer
and the ones below it:

* :mod:`~modularity.base`: files (roots, atomic writes), float tolerances, progress bars;
* :mod:`~modularity.science`: the tasks, the model and its sites, the passes on either backend,
  scoring, attribution, overlap, statistics, ablation, the localizer, the study's released results;
* :mod:`~modularity.records`: a run's parameters, its results and verified caches, its manifest,
  the checks made before it loads anything;
* :mod:`~modularity.stages`: one module per stage (``run(ctx)``) on one floor, and the registry;
* :mod:`~modularity.running`: papermill, the book's pages, what a run costs, the precision check;
* :mod:`~modularity.showing`: charts and the ``modularity`` command line.
"""
import warnings

# transformers imports tqdm.auto, which warns in every notebook kernel without ipywidgets; the
# package's own bars are plain text, so the warning only adds noise to every executed page.
warnings.filterwarnings("ignore", message="IProgress not found")

__version__ = "0.1.0"
