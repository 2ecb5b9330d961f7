"""The runner: executes a run's stage notebooks with papermill, in order, resumably.

Templates are jupytext percent scripts in ``notebooks/`` (converted to a notebook in the run's
scratch folder for papermill). Before the first stage the run is checked without loading
anything (:mod:`modularity.records.preflight`, :func:`check_stage_inputs`). Each notebook executes in
the scratch folder and is moved to the run's results folder only when it finished, so the book
never shows a partial page and a good page is never replaced by a failed rerun; a failed one is
kept under the run's cache (:func:`execute_template`). Each finished stage is recorded in the
run's manifest. Finished per-task work is cached by the stages themselves
(:mod:`modularity.records.store`), so running the same command again after a kill resumes.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

from ..records.params import load_params, validate_params
from ..records.preflight import PreflightError, check_device, check_model
from ..base.progress import watch
from ..records.provenance import update_manifest
from ..stages import registry
from ..base.files import REPO_ROOT, atomic_write_bytes
from ..records.store import RunPaths, closure_version

#: Stage notebooks run per params file, in order (:mod:`modularity.stages.registry`).
STAGES: tuple[str, ...] = registry.NOTEBOOKS
#: Per stage notebook, the earlier stages whose results it reads, and what it reads of each.
STAGE_INPUTS: dict[str, dict[str, str]] = {s.notebook: s.reads for s in registry.STAGES if s.reads}

#: Where the stage templates are (tests point it at templates of their own).
NOTEBOOKS = REPO_ROOT / "notebooks"


class NotebookFailed(RuntimeError):
    """A notebook raised while executing: what failed, the notebook's own error, and where the
    executed notebook (with the full traceback) was kept."""

    def __init__(self, what: str, cause: str, notebook: Path | None, fix: str | None = None):
        super().__init__(f"{what} failed: {cause}")
        self.what, self.cause, self.notebook, self.fix = what, cause, notebook, fix

    def report(self) -> str:
        """The block the command line prints: what failed, the cause, the fix when known, the notebook."""
        cause = self.cause.replace("\n", "\n         ")  # a message of several lines stays under its heading
        lines = [f"{self.what} failed", f"  cause: {cause}"]
        if self.fix:
            lines.append(f"  fix:   {self.fix}")
        lines.append(f"  the executed notebook, with the full traceback: {self.notebook}" if self.notebook else
                     "  no notebook was written: papermill stopped before the first cell")
        return "\n".join(lines)


#: Fixes of errors whose own message does not say what to do (the package's errors do), by the
#: exception's class name.
KNOWN_FIXES = {
    "OutOfMemoryError": "lower batch_size in the params file; `modularity plan <params>` shows the largest batch "
                        "that fits",
    "MemoryError": "lower batch_size in the params file; `modularity plan <params>` shows the memory each stage needs",
    "DeadKernelError": "the notebook's Python process died, most often for lack of memory: lower batch_size in "
                       "the params file (`modularity plan <params>` shows what fits)",
    "KeyboardInterrupt": "it was interrupted: run the same command again to resume",
}


def execute_stage(stage: str, params: dict, notebooks_dir: Path | None = None, root: Path | None = None,
                  log_output: bool = False, scratch: Path | None = None) -> Path:
    """Execute one stage notebook with papermill into the run's results folder.

    On failure the executed notebook goes to ``cache/<run>/<profile>/failed/<stage>.ipynb``, the
    results folder keeps what it had and the manifest records nothing (:class:`NotebookFailed`).
    """
    paths = RunPaths.of(params, root=root)
    output = paths.results / f"{stage}.ipynb"
    start = time.perf_counter()
    execute_template(Path(notebooks_dir or NOTEBOOKS), stage, output, params, REPO_ROOT, log_output,
                     failed_notebook=paths.cache / "failed" / output.name, scratch=scratch,
                     what=f"stage {stage} of {params['run_name']}/{params['profile']}",
                     heading=run_label(params["run_name"], params["profile"]))
    update_manifest(paths, params, stage, time.perf_counter() - start,
                    extra=stage_versions(stage, notebooks_dir))
    return output


def run_label(run_name: str, profile: str) -> str:
    """How pages name a run: ``smollm2-135m-instruct (small)``."""
    return f"{run_name} ({profile})"


def stage_versions(stage: str, notebooks_dir: Path | None = None) -> dict[str, str]:
    """What made a stage's tables and page, as the manifest records them: ``code``, the
    :func:`~modularity.records.store.closure_version` of its module (everything its tables depend
    on), and ``template``, a hash of its notebook template (the page's text and displays)."""
    template = Path(notebooks_dir or NOTEBOOKS) / f"{stage}.py"
    return {"code": closure_version(f"stages.{registry.stage(stage).name}"),
            "template": hashlib.sha256(template.read_bytes()).hexdigest()[:16] if template.exists() else ""}


#: A stage of a run, judged against the code here (:func:`stage_states`).
CURRENT = "current"
CODE_CHANGED = "code changed since"
TEMPLATE_CHANGED = "page template changed since"
NOT_RECORDED = "not recorded"


def stage_states(manifest: dict, notebooks_dir: Path | None = None) -> dict[str, str]:
    """Per finished stage of a run's ``manifest.json``: :data:`CURRENT` when the code of its
    tables and its page template are those here; :data:`CODE_CHANGED` when the code its tables
    depend on differs (rerun the stage to check them); :data:`TEMPLATE_CHANGED` when only the
    page's template does; :data:`NOT_RECORDED` for a stage run before the manifest recorded either."""
    states = {}
    for stage, entry in manifest.get("stages", {}).items():
        if stage not in registry.NOTEBOOKS:
            continue
        if "code" not in entry:
            states[stage] = NOT_RECORDED
            continue
        now = stage_versions(stage, notebooks_dir)
        states[stage] = (CODE_CHANGED if entry["code"] != now["code"] else
                         TEMPLATE_CHANGED if entry.get("template") != now["template"] else CURRENT)
    return states


def run(params_path: str | Path, stages: tuple[str, ...] | None = None, root: Path | None = None,
        log_output: bool = False, overrides: dict | None = None) -> list[Path]:
    """Execute the stage notebooks for one params file; returns the executed notebooks.

    Raises :class:`~modularity.records.preflight.PreflightError` (a ValueError) before the first stage when
    the run cannot work, and :class:`NotebookFailed` when a stage raises.
    """
    params = load_params(params_path)
    if overrides:
        params = validate_params({**params, **overrides}, source=f"{params_path} with overrides")
    chosen = chosen_stages(stages)
    label = f"[{params['run_name']}/{params['profile']}]"
    preflight(params, chosen, str(params_path), root)
    if params["data_dir"]:
        from ..science.tasks import excluded_items_lines, load_suite

        for line in excluded_items_lines(load_suite(params)):
            print(f"{label} {params['data_dir']}: {line}", flush=True)
    outputs = []
    with scratch_folder() as scratch, signals_interrupt():
        for number, stage in enumerate(chosen, start=1):
            print(f"{label} stage {number}/{len(chosen)}: {stage} ...", flush=True)
            start = time.perf_counter()
            with watch(f"{label} {stage}:", scratch / "progress.json"):
                outputs.append(execute_stage(stage, params, root=root, log_output=log_output, scratch=scratch))
            print(f"{label} {stage} done in {time.perf_counter() - start:.0f} s", flush=True)
    print(f"{label} results: {outputs[-1].parent}\n"
          f"{label} build the book: make book (or jupyter-book build . -W -n), then open _build/html/index.html",
          flush=True)
    return outputs


def chosen_stages(stages: tuple[str, ...] | None) -> tuple[str, ...]:
    """The notebooks of ``stages`` (names or notebooks; default: every stage), in the order given."""
    try:  # a stage may be named by its notebook (02_attribution) or its name (attribution)
        return tuple(registry.stage(s).notebook for s in stages) if stages else STAGES
    except KeyError as unknown:
        raise ValueError(unknown.args[0]) from None


def preflight(params: dict, chosen: tuple[str, ...], source: str, root: Path | None = None) -> None:
    """The checks made before the first stage: device, model, the inputs of each chosen stage."""
    check_device(params, source)
    check_model(params, source)
    check_stage_inputs(chosen, params, RunPaths.results_of(params, root), source)


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


#: Name of a run's scratch folder in the system's temporary folder: the prefix, the process id, a random part.
SCRATCH_PREFIX = "modularity-run-"


@contextlib.contextmanager
def scratch_folder() -> Iterator[Path]:
    """A temporary folder for one command (converted templates, executing notebooks, the progress
    state, the kernels' sockets), removed at the end.

    A run killed outright (SIGKILL, a power cut) cannot remove its own, so each start first removes
    the folders whose process is gone.
    """
    base = Path(tempfile.gettempdir())
    for folder in base.glob(f"{SCRATCH_PREFIX}*"):
        if folder.is_dir() and not _process_alive(folder.name.removeprefix(SCRATCH_PREFIX).partition("-")[0]):
            shutil.rmtree(folder, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{SCRATCH_PREFIX}{os.getpid()}-", dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: str) -> bool:
    if not pid.isdigit():
        return True  # not a name this module made: leave it alone
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    return True


@contextlib.contextmanager
def signals_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise KeyboardInterrupt as Ctrl-C does.

    Their default action ends the process at once, skipping every ``finally``: the kernel would not
    be shut down nor the scratch folder removed. Signal handlers can only be set from the main thread;
    elsewhere the block runs unchanged.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    caught = [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None]
    previous = {s: signal.signal(s, interrupt) for s in caught}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def template_notebook(folder: Path, name: str, scratch: Path | None = None) -> Iterator[Path]:
    """The ``.ipynb`` papermill executes for template ``name`` of ``folder``.

    A template written as a jupytext percent script (``name.py``) is converted to a notebook in
    ``scratch`` (default: a :func:`scratch_folder` of its own, removed afterwards); otherwise
    ``name.ipynb`` is used as it is.
    """
    script, notebook = Path(folder) / f"{name}.py", Path(folder) / f"{name}.ipynb"
    if not script.exists():
        if not notebook.exists():
            raise FileNotFoundError(f"no template {name!r} in {folder} (looked for {script.name} and {notebook.name})")
        yield notebook
        return
    import jupytext

    with contextlib.ExitStack() as stack:
        folder_used = scratch or stack.enter_context(scratch_folder())
        converted = folder_used / "templates" / f"{name}.ipynb"
        converted.parent.mkdir(parents=True, exist_ok=True)
        jupytext.write(jupytext.read(script), converted)
        yield converted


def kernel_config(scratch: Path):
    """Configuration of the kernel papermill starts: IPC sockets in ``scratch`` where the system has
    them, and an immediate shutdown.

    Over TCP, ipykernel warns at every start that its messages are not encrypted; over Unix sockets
    nothing leaves the machine and nothing is said. The sockets live in the scratch folder, so a
    killed run's are removed with it. A kernel is shut down once every cell's outputs have arrived,
    or when the run is interrupted; asked to stop gracefully while a cell still runs, it prints a
    traceback of its own closed sockets, so it is stopped at once.
    """
    from traitlets.config import Config

    config = Config({"NotebookClient": {"shutdown_kernel": "immediate"}})
    if os.name != "nt":  # Windows has no IPC transport: TCP, and its warning
        config.KernelManager = Config({"transport": "ipc", "ip": str(scratch / "kernel")})
    return config


def execute_template(folder: Path, name: str, output: Path, parameters: dict, cwd: Path,
                     log_output: bool = False, failed_notebook: Path | None = None, scratch: Path | None = None,
                     what: str | None = None, heading: str | None = None) -> Path:
    """Execute template ``name`` of ``folder`` with papermill into ``output``.

    The notebook executes in ``scratch`` (default: a :func:`scratch_folder` of its own) and is
    written to ``output``, atomically, only when every cell ran. When a cell raises, or the kernel
    dies, the executed notebook is kept at ``failed_notebook`` (default: ``cache/failed/`` of the
    repository) and :class:`NotebookFailed` says ``what`` failed (default: the template) and why;
    ``output`` keeps what it had. The executed notebook records the template it came from (the
    script, relative to the repository when inside it) and ``output``, rather than the converted
    notebook papermill read and the scratch copy it wrote. ``heading``, when given, names the page
    in its title (:func:`name_heading`).
    """
    import nbformat
    import papermill

    failed_notebook = Path(failed_notebook or REPO_ROOT / "cache" / "failed" / Path(output).name)
    with contextlib.ExitStack() as stack:
        scratch = scratch or stack.enter_context(scratch_folder())
        source = stack.enter_context(template_notebook(folder, name, scratch))
        executing = scratch / "executing" / Path(output).name
        executing.parent.mkdir(parents=True, exist_ok=True)
        try:
            papermill.execute_notebook(str(source), str(executing), parameters=parameters, cwd=str(cwd),
                                       kernel_name="python3", progress_bar=False, log_output=log_output,
                                       config=kernel_config(scratch))
        except BaseException as error:
            kept = None
            if executing.exists():
                failed_notebook.parent.mkdir(parents=True, exist_ok=True)
                kept = Path(shutil.move(executing, failed_notebook))
            if isinstance(error, Exception):
                cause, error_name = _cause(error)
                raise NotebookFailed(what or f"notebook {name}", cause, kept, KNOWN_FIXES.get(error_name)) from None
            raise
        template = Path(folder) / source.name if source.parent == Path(folder) else Path(folder) / f"{name}.py"
        notebook = nbformat.read(executing, as_version=4)
    shown = template.resolve()
    recorded = notebook.metadata.setdefault("papermill", {})
    recorded["input_path"] = str(shown.relative_to(REPO_ROOT) if shown.is_relative_to(REPO_ROOT) else shown)
    recorded["output_path"] = str(output)  # not the scratch copy papermill wrote
    written = io.StringIO()
    if heading:
        name_heading(notebook, heading)
    nbformat.write(hide_parameter_cells(notebook), written)
    atomic_write_bytes(Path(output), written.getvalue().encode())
    failed_notebook.unlink(missing_ok=True)  # an earlier failure of this notebook is history now
    return output


def _cause(error: Exception) -> tuple[str, str]:
    """``("Name: message", "Name")`` of what a notebook raised: the cell's own exception for
    papermill's execution error, else (the kernel died, a cell timed out) papermill's or nbclient's."""
    from papermill import PapermillExecutionError

    if isinstance(error, PapermillExecutionError):
        name, message = error.ename, error.evalue
    else:
        name, message = type(error).__name__, str(error).strip()
    return (f"{name}: {message}" if message else name), name


def name_heading(notebook, name: str):
    """Put ``name`` before the page's title (the first ``# `` line of its first Markdown cell),
    so the page, its browser title and the book's previous / next links say which run (or which
    profile) it shows; a template without a title gets ``# <name>``."""
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.split("\n")
        for number, line in enumerate(lines):
            if line.startswith("# "):
                if not line[2:].startswith(name):
                    lines[number] = f"# {name} · {line[2:]}"
                cell.source = "\n".join(lines)
                return notebook
        break
    import nbformat

    notebook.cells.insert(0, nbformat.v4.new_markdown_cell(f"# {name}"))
    return notebook


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
