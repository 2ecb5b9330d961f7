"""The runner: executes a run's stage notebooks with papermill, in order, resumably.

Templates are jupytext percent scripts in ``notebooks/`` (converted to a temporary notebook for
papermill). Before the first stage the run is checked without loading anything
(:mod:`modularity.preflight`, :func:`check_stage_inputs`). Each executed notebook goes to the run's
results folder and each finished stage is recorded in the run's manifest. Finished per-task work
is cached by the stages themselves (:mod:`modularity.store`), so running the same command again
after a kill resumes.
"""
from __future__ import annotations

import contextlib
import json
import tempfile
import time
from pathlib import Path
from typing import Iterator

from .params import load_params, validate_params
from .preflight import PreflightError, check_device, check_model
from .progress import watch
from .provenance import update_manifest
from .store import REPO_ROOT, RunPaths

#: Stage notebooks run per params file, in order.
STAGES: tuple[str, ...] = (
    "01_eval",
    "02_attribution",
    "03_overlap",
    "04_ari_permutation",
    "05_ablation",
    "06_beside_the_study",
    "07_localizer",
)

#: Per stage, the earlier stages whose results it reads, and what it reads of each
#: (``stages/*.py``; stage 1 reads nothing of another stage).
STAGE_INPUTS: dict[str, dict[str, str]] = {
    "02_attribution": {"01_eval": "eval_summary.csv and eval_items.csv"},
    "03_overlap": {"01_eval": "eval_summary.csv", "02_attribution": "the attribution scores"},
    "04_ari_permutation": {"03_overlap": "the overlap matrices"},
    "05_ablation": {"01_eval": "eval_summary.csv and eval_items.csv", "02_attribution": "the attribution scores"},
    "06_beside_the_study": {"03_overlap": "the overlap matrix", "05_ablation": "the ablation matrix"},
    "07_localizer": {"01_eval": "eval_summary.csv", "02_attribution": "the attribution scores"},
}

#: Where the stage templates are (tests point it at templates of their own).
NOTEBOOKS = REPO_ROOT / "notebooks"


def execute_stage(stage: str, params: dict, notebooks_dir: Path | None = None,
                  root: Path | None = None, log_output: bool = False) -> Path:
    """Execute one stage notebook with papermill into the run's results folder."""
    paths = RunPaths.of(params, root)
    output = paths.results / f"{stage}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    execute_template(Path(notebooks_dir or NOTEBOOKS), stage, output, params, REPO_ROOT, log_output)
    update_manifest(paths, params, stage, time.perf_counter() - start)
    return output


def run(params_path: str | Path, stages: tuple[str, ...] | None = None, root: Path | None = None,
        log_output: bool = False, overrides: dict | None = None) -> list[Path]:
    """Execute the stage notebooks for one params file; returns the executed notebooks.

    Raises :class:`~modularity.preflight.PreflightError` (a ValueError) before the first stage when
    the run cannot work.
    """
    params = load_params(params_path)
    if overrides:
        params = validate_params({**params, **overrides}, source=f"{params_path} with overrides")
    chosen = tuple(stages or STAGES)
    unknown = [s for s in chosen if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
    label = f"[{params['run_name']}/{params['profile']}]"
    check_device(params, str(params_path))
    check_model(params, str(params_path))
    check_stage_inputs(chosen, params, RunPaths.of(params, root).results, str(params_path))
    if params["data_dir"]:
        from .tasks import excluded_items_lines, load_suite

        for line in excluded_items_lines(load_suite(params)):
            print(f"{label} {params['data_dir']}: {line}", flush=True)
    outputs = []
    with tempfile.TemporaryDirectory(prefix="modularity-progress-") as progress_dir:
        for number, stage in enumerate(chosen, start=1):
            print(f"{label} stage {number}/{len(chosen)}: {stage} ...", flush=True)
            start = time.perf_counter()
            with watch(f"{label} {stage}:", Path(progress_dir) / "state.json"):
                outputs.append(execute_stage(stage, params, root=root, log_output=log_output))
            print(f"{label} {stage} done in {time.perf_counter() - start:.0f} s", flush=True)
    print(f"{label} results: {outputs[-1].parent}\n"
          f"{label} build the book: make book (or jupyter-book build . -W -n), then open _build/html/index.html",
          flush=True)
    return outputs


def finished_stages(results: Path) -> set[str]:
    """The stages the run's ``manifest.json`` in ``results`` records as finished."""
    manifest = results / "manifest.json"
    return set(json.loads(manifest.read_text()).get("stages", {})) if manifest.exists() else set()


def check_stage_inputs(stages: tuple[str, ...], params: dict, results: Path, source: str) -> None:
    """Refuse to run a stage whose input stages have neither finished (manifest) nor run earlier in ``stages``."""
    done = finished_stages(results)
    for position, stage in enumerate(stages):
        before = done | set(stages[:position])
        missing = {needed: what for needed, what in STAGE_INPUTS.get(stage, {}).items() if needed not in before}
        if not missing:
            continue
        to_run = _unfinished_inputs(stage, before)
        suggested = [s for s in STAGES if s in to_run] + [s for s in stages if s not in to_run]
        reads = " and ".join(f"{what} of {needed}" for needed, what in missing.items())
        has, it = ("has", "it") if len(missing) == 1 else ("have", "them")
        raise PreflightError(
            f"{source}: stage {stage} reads {reads}, which {has} not finished for "
            f"{params['run_name']}/{params['profile']} (not recorded in {results / 'manifest.json'}); run {it} first: "
            f"modularity run {source} --stages {' '.join(suggested)} (or leave out --stages to run every stage)")


def _unfinished_inputs(stage: str, done: set[str]) -> set[str]:
    """The stages ``stage`` needs, directly or through another, that are not in ``done``."""
    needed = set()
    for stage_input in STAGE_INPUTS.get(stage, {}):
        if stage_input not in done:
            needed |= {stage_input} | _unfinished_inputs(stage_input, done)
    return needed


@contextlib.contextmanager
def template_notebook(folder: Path, name: str) -> Iterator[Path]:
    """The ``.ipynb`` papermill executes for template ``name`` of ``folder``.

    A template written as a jupytext percent script (``name.py``) is converted to a temporary
    notebook (removed afterwards); otherwise ``name.ipynb`` is used as it is.
    """
    script, notebook = Path(folder) / f"{name}.py", Path(folder) / f"{name}.ipynb"
    if not script.exists():
        if not notebook.exists():
            raise FileNotFoundError(f"no template {name!r} in {folder} (looked for {script.name} and {notebook.name})")
        yield notebook
        return
    import jupytext

    with tempfile.TemporaryDirectory(prefix="modularity-template-") as tmp:
        converted = Path(tmp) / f"{name}.ipynb"
        jupytext.write(jupytext.read(script), converted)
        yield converted


def execute_template(folder: Path, name: str, output: Path, parameters: dict, cwd: Path,
                     log_output: bool = False) -> Path:
    """Execute template ``name`` of ``folder`` with papermill into ``output``.

    The executed notebook records the template it came from (the script, relative to the
    repository when inside it) rather than the temporary notebook papermill actually read.
    """
    import nbformat
    import papermill

    with template_notebook(folder, name) as source:
        papermill.execute_notebook(str(source), str(output), parameters=parameters, cwd=str(cwd),
                                   kernel_name="python3", progress_bar=False, log_output=log_output)
        template = Path(folder) / source.name if source.parent == Path(folder) else Path(folder) / f"{name}.py"
    notebook = nbformat.read(output, as_version=4)
    shown = template.resolve()
    notebook.metadata.setdefault("papermill", {})["input_path"] = str(
        shown.relative_to(REPO_ROOT) if shown.is_relative_to(REPO_ROOT) else shown)
    nbformat.write(hide_parameter_cells(notebook), output)
    return output


#: Cell tags papermill's parameter cells carry: the template's defaults and what it injected.
PARAMETER_TAGS = ("parameters", "injected-parameters")


def hide_parameter_cells(notebook):
    """Tag the template's parameters cell and papermill's injected one ``remove-cell``.

    The book then shows the run's parameters once, as the stage prints them, instead of two
    long cells of assignments of which the first is overridden by the second. The cells stay in
    the executed notebook (papermill and a reader opening it in Jupyter still see them).
    """
    for cell in notebook.cells:
        tags = cell.metadata.setdefault("tags", [])
        if any(tag in tags for tag in PARAMETER_TAGS) and "remove-cell" not in tags:
            tags.append("remove-cell")
    return notebook
