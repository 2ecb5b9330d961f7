"""Runs: parameters, result locations, atomic writes, manifests and the papermill runner.

A run is one params file (``params/<model>.yaml``) executed through the stage
notebooks of ``notebooks/``. Executed notebooks and small tables go to
``book/results/<run_name>/<profile>/`` (committed, rendered by the book);
heavy tensors go to ``cache/<run_name>/<profile>/`` (ignored by git).
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]

#: Stage notebooks run per params file, in order.
STAGES: tuple[str, ...] = (
    "01_eval",
    "02_attribution",
    "03_overlap",
    "04_ari_permutation",
    "05_ablation",
    "06_beside_the_study",
)


@dataclass(frozen=True)
class Param:
    default: Any
    kind: type | tuple[type, ...]
    help: str
    choices: tuple | None = None
    required: bool = False


#: Every parameter a run understands. ``required`` ones must be in the params file.
SCHEMA: dict[str, Param] = {
    "model": Param(None, str, "embedded alias, local directory/.gguf, or Hugging Face id", required=True),
    "run_name": Param(None, (str, type(None)), "results folder name; default derived from model"),
    "profile": Param("small", str, "task difficulty profile", ("small", "paper"), required=True),
    "data_dir": Param(None, (str, type(None)), "study-layout data directory to use instead of generated tasks"),
    "tasks": Param("all", (str, list), "'all' or a list of task keys"),
    "n_items": Param(100, int, "items generated per task", required=True),
    "seed": Param(0, int, "seed for task generation and random controls", required=True),
    "dtype": Param("float32", str, "weights/activations dtype", ("float32", "bfloat16", "float16"), required=True),
    "device": Param("cpu", str, "'cpu', 'cuda', 'cuda:N' or 'auto'", required=True),
    "batch_size": Param(16, int, "sequences per forward pass", required=True),
    "threads": Param(0, int, "CPU threads for torch; 0 keeps torch's default (1 is faster on a busy machine)"),
    "bos": Param("model", str, "'model': tokenizer's own BOS; 'study': never (METHOD §15.10)", ("model", "study")),
    "threshold": Param(0.60, float, "inclusion filter on both-correct accuracy", required=True),
    "stop_early": Param(True, bool, "stop scoring a task once it can no longer reach threshold (same decision)"),
    "metric": Param("paper", str, "attribution metric", ("paper", "logit_diff")),
    "attribution_items": Param(0, int, "max both-correct items per task for attribution, 0 means all"),
    "verify_tasks": Param(3, int, "tasks on which attribution is checked against exact patching"),
    "verify_neurons": Param(20, int, "neurons per checked task (top by score, plus as many random)"),
    "top_pcts": Param([0.05, 0.1, 1.0, 5.0], list, "top-k% thresholds for the overlap sweep"),
    "main_pct": Param(0.1, float, "top-k% used for overlap statistics and ablation"),
    "n_permutations": Param(10_000, int, "label permutations for p-values"),
    "knn": Param(5, int, "k of the kNN graph used for clustering"),
    "ablation_items": Param(32, int, "max both-correct items per target task for ablation"),
    "ablation_mode": Param("corrupted", str, "ablation values", ("corrupted", "zero", "mean")),
    "n_random_controls": Param(3, int, "random neuron sets per control type"),
    "ablation_control_cells": Param("self", str, "cells that get random controls: self, within or all",
                                    ("self", "within", "all")),
}


def parameters_source() -> str:
    """The text of a stage template's parameters cell: one ``name = default  # help`` line per :data:`SCHEMA` entry.

    Every per-run template in ``notebooks/`` (a jupytext percent script) holds exactly this text in its
    cell tagged ``parameters``, which papermill replaces with a run's values; a test keeps them in step.
    """
    return "\n".join(f"{key} = {spec.default!r}  # {spec.help}" for key, spec in SCHEMA.items())


class ParamsError(ValueError):
    """A params file or notebook parameter is invalid."""


def default_run_name(model: str) -> str:
    """Results folder name of a model: the alias, or the id with '/'→'_' and '.'→'-' (METHOD §14)."""
    return Path(model).name if Path(model).exists() else model.replace("/", "_").replace(".", "-")


def validate_params(params: dict, source: str = "parameters", require: bool = False) -> dict:
    """Check names, types and choices; fill defaults. Raises :class:`ParamsError`."""
    unknown = sorted(set(params) - set(SCHEMA))
    if unknown:
        raise ParamsError(
            f"{source}: unknown parameter(s) {unknown}. Known: {sorted(SCHEMA)}. "
            "Check the spelling (papermill only warns about unknown names)."
        )
    if require:
        missing = [k for k, p in SCHEMA.items() if p.required and k not in params]
        if missing:
            raise ParamsError(f"{source}: missing required parameter(s) {missing}; see params/README.md")
    out = {}
    for key, spec in SCHEMA.items():
        value = params.get(key, spec.default)
        if spec.kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if spec.required and value is None:
            raise ParamsError(f"{source}: parameter {key!r} must be set ({spec.help})")
        if not isinstance(value, spec.kind) or isinstance(value, bool) and spec.kind is not bool:
            raise ParamsError(f"{source}: {key}={value!r} should be {spec.kind}: {spec.help}")
        if spec.choices and value not in spec.choices:
            raise ParamsError(f"{source}: {key}={value!r} must be one of {list(spec.choices)}")
        out[key] = value
    if not 0 < out["threshold"] <= 1:
        raise ParamsError(f"{source}: threshold={out['threshold']} must lie in (0, 1]")
    if out["threads"] < 0:
        raise ParamsError(f"{source}: threads={out['threads']} must be ≥ 0 (0 keeps torch's default)")
    for key in ("attribution_items", "verify_tasks", "verify_neurons", "ablation_items", "n_random_controls"):
        if out[key] < 0:
            raise ParamsError(f"{source}: {key}={out[key]} must be ≥ 0")
    if not out["top_pcts"] or not all(isinstance(p, (int, float)) and 0 < p <= 100 for p in out["top_pcts"]):
        raise ParamsError(f"{source}: top_pcts={out['top_pcts']} must be percentages in (0, 100]")
    out["top_pcts"] = [float(p) for p in out["top_pcts"]]
    for key in ("n_items", "batch_size", "n_permutations", "knn"):
        if out[key] < 1:
            raise ParamsError(f"{source}: {key}={out[key]} must be ≥ 1")
    if out["main_pct"] not in out["top_pcts"]:
        raise ParamsError(f"{source}: main_pct={out['main_pct']} must be one of top_pcts={out['top_pcts']}")
    out["run_name"] = out["run_name"] or default_run_name(out["model"])
    return out


def load_params(path: str | Path) -> dict:
    """Read and validate a params YAML file (required keys must be present)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of parameter: value")
    return validate_params(raw, source=str(path), require=True)


_NOTEBOOK_NAMES = {"In", "Out", "get_ipython", "exit", "quit", "open"}


def notebook_params(namespace: dict, source: str = "notebook parameters") -> dict:
    """Validate the parameters a notebook received (call it right after the parameters cell).

    Collects the plain values of ``namespace`` (``globals()``), so a name
    injected by papermill that the schema does not know is an error here.
    """
    values = {
        k: v
        for k, v in namespace.items()
        if not k.startswith("_")
        and k not in _NOTEBOOK_NAMES
        and not isinstance(v, (types.ModuleType, types.FunctionType, types.BuiltinFunctionType, type))
    }
    return validate_params(values, source=source)


def configure_torch(params: dict) -> None:
    """Seed torch and set its CPU thread count (``threads: 0`` leaves the default)."""
    import torch

    torch.manual_seed(params["seed"])
    if params["threads"]:
        # Busy-waiting OpenMP threads on oversubscribed cores are very slow (3x measured here).
        torch.set_num_threads(params["threads"])


# --------------------------------------------------------------------------
# Locations and atomic writes
# --------------------------------------------------------------------------
def results_root() -> Path:
    """``book/results`` under ``$MODULARITY_ROOT`` (tests, other checkouts) or this repository."""
    return Path(os.environ.get("MODULARITY_ROOT") or REPO_ROOT) / "book" / "results"


@dataclass(frozen=True)
class RunPaths:
    """Where a run's outputs live.

    ``results`` (committed): executed notebooks, small tables, manifest.
    ``cache`` (ignored): per-task files named ``<task>-<fingerprint>``, where the
    fingerprint hashes the task's items and config and the parameters that
    change per-task results (:data:`CACHE_KEYS`); editing one task's generator
    therefore recomputes that task only, and stale files are never reused.
    """

    results: Path
    cache: Path
    fingerprints: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, params: dict, root: str | Path | None = None) -> "RunPaths":
        # MODULARITY_ROOT lets tests (and users) send outputs somewhere else.
        root = Path(root or os.environ.get("MODULARITY_ROOT") or REPO_ROOT)
        sub = Path(params["run_name"]) / params["profile"]
        return cls(root / "book" / "results" / sub, root / "cache" / sub, task_fingerprints(params))

    def table(self, name: str) -> Path:
        return self.results / name

    def task_file(self, kind: str, task: str, suffix: str) -> Path:
        if task not in self.fingerprints:
            raise KeyError(f"task {task!r} is not part of this run")
        return self.cache / kind / f"{task}-{self.fingerprints[task]}{suffix}"

    def tensor(self, kind: str, task: str) -> Path:
        return self.task_file(kind, task, ".safetensors")


#: Parameters that change cached evaluation and attribution results. Stages whose
#: caches depend on more (ablation) name sub-folders after their own parameters.
CACHE_KEYS = ("model", "dtype", "bos", "metric", "attribution_items")


def task_fingerprints(params: dict) -> dict[str, str]:
    """``{task: short hash}`` of each task's config and items plus :data:`CACHE_KEYS`."""
    import hashlib

    settings = json.dumps({key: params[key] for key in CACHE_KEYS}, sort_keys=True, default=str)
    fingerprints = {}
    for name, task in load_suite(params).items():
        content = json.dumps([task.config.to_study_json(), task.items], sort_keys=True, default=str)
        fingerprints[name] = hashlib.sha1((settings + content).encode()).hexdigest()[:12]
    return fingerprints


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename (no torn files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_table(frame: pd.DataFrame, path: Path, index: bool = False) -> Path:
    atomic_write_bytes(path, frame.to_csv(index=index).encode())
    return path


def save_json(obj: Any, path: Path) -> Path:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())
    return path


def _json_default(value):
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_tensors(path: Path, tensors: dict, metadata: dict) -> Path:
    """safetensors file with string metadata, written atomically."""
    from safetensors.torch import save

    meta = {k: json.dumps(v, default=_json_default) for k, v in metadata.items()}
    atomic_write_bytes(path, save({k: v.contiguous() for k, v in tensors.items()}, metadata=meta))
    return path


def load_tensors(path: Path) -> tuple[dict, dict]:
    from safetensors import safe_open

    tensors, meta = {}, {}
    with safe_open(str(path), framework="pt") as handle:
        for key in handle.keys():
            tensors[key] = handle.get_tensor(key)
        meta = {k: json.loads(v) for k, v in (handle.metadata() or {}).items()}
    return tensors, meta


# --------------------------------------------------------------------------
# Provenance
# --------------------------------------------------------------------------
PACKAGES = ("modularity-book", "torch", "transformers", "nnsight", "numpy", "pandas",
            "scipy", "scikit-learn", "papermill", "jupyter-book")


def git_sha(root: Path = REPO_ROOT) -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "lib", "notebooks"], cwd=root,
                               capture_output=True, text=True).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment_info() -> dict:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
        "git_sha": git_sha(),
    }


def update_manifest(paths: RunPaths, params: dict, stage: str, wall_time_s: float, extra: dict | None = None) -> dict:
    """Record one stage's completion in ``manifest.json`` (params, versions, SHA, wall time)."""
    path = paths.table("manifest.json")
    manifest = json.loads(path.read_text()) if path.exists() else {"stages": {}}
    manifest["params"] = params
    manifest["environment"] = environment_info()
    # Stages can be rerun one at a time, so each keeps the commit that produced it.
    manifest["stages"][stage] = {
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(wall_time_s, 1),
        "git_sha": manifest["environment"]["git_sha"],
        **(extra or {}),
    }
    if stage == "01_eval":  # where the items came from: the study's files, what was excluded and sampled
        manifest.pop("data_source", None)
        if params.get("data_dir"):
            manifest["data_source"] = _data_source(params)
    save_json(manifest, path)
    return manifest


def _data_source(params: dict) -> dict:
    """The manifest's record of a ``data_dir`` run's items, per task (see :func:`load_suite`)."""
    from .tasks import EXCLUSION_REASONS

    suite = load_suite(params)
    return {
        "data_dir": params["data_dir"], "n_items": params["n_items"], "seed": params["seed"],
        "item_table": "source_items.csv",
        "tasks": {name: {"file": source.file, "n_in_file": source.n_in_file,
                         "excluded": {r: source.n_excluded(r) for r in EXCLUSION_REASONS if source.excluded.get(r)},
                         "n_valid": source.n_valid, "n_used": source.n_used}
                  for name, source in ((name, task.source) for name, task in suite.items())},
    }


# --------------------------------------------------------------------------
# Runner
# --------------------------------------------------------------------------
def execute_stage(stage: str, params: dict, notebooks_dir: Path = REPO_ROOT / "notebooks",
                  root: Path | None = None, log_output: bool = False) -> Path:
    """Execute one stage notebook with papermill into the run's results folder."""
    paths = RunPaths.of(params, root)
    output = paths.results / f"{stage}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    execute_template(Path(notebooks_dir), stage, output, params, REPO_ROOT, log_output)
    update_manifest(paths, params, stage, time.perf_counter() - start)
    return output


def run(params_path: str | Path, stages: tuple[str, ...] | None = None, root: Path | None = None,
        log_output: bool = False, overrides: dict | None = None) -> list[Path]:
    """Execute the stage notebooks for one params file; returns the executed notebooks."""
    params = load_params(params_path)
    if overrides:
        params = validate_params({**params, **overrides}, source=f"{params_path} with overrides")
    chosen = stages or STAGES
    unknown = [s for s in chosen if s not in STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
    outputs = []
    for stage in chosen:
        print(f"[{params['run_name']}/{params['profile']}] {stage} ...", flush=True)
        start = time.perf_counter()
        outputs.append(execute_stage(stage, params, root=root, log_output=log_output))
        print(f"[{params['run_name']}/{params['profile']}] {stage} done in {time.perf_counter() - start:.0f} s", flush=True)
    return outputs


# --------------------------------------------------------------------------
# Stage helpers used by the notebooks
# --------------------------------------------------------------------------
def load_suite(params: dict, sample: bool = True) -> dict:
    """The run's tasks: generated from (profile, n_items, seed), or read from ``data_dir``.

    ``data_dir`` (relative paths are taken from the repository root, the notebooks' working
    directory) is read with :func:`modularity.tasks.load_study_data`, which leaves unusable items
    out and records them in each task's ``source``; then each task keeps a seeded sample of
    ``n_items`` of its usable items (all if fewer), in file order, drawn per task
    (:func:`modularity.tasks.subsample_suite`; ``sample=False`` keeps every usable item).
    ``profile`` plays no part then.
    """
    from .tasks import generate_suite, load_study_data, subsample_suite

    tasks = None if params["tasks"] == "all" else list(params["tasks"])
    if params["data_dir"]:
        suite = load_study_data(REPO_ROOT / Path(params["data_dir"]).expanduser(), tasks=tasks)
        return subsample_suite(suite, params["n_items"], params["seed"]) if sample else suite
    return generate_suite(params["profile"], n_items=params["n_items"], seed=params["seed"], tasks=tasks)


def committed_eval_summaries(results: Path | None = None) -> pd.DataFrame:
    """Stage 1 summaries of every run under ``results`` (default :func:`results_root`): one row
    per (run, task).

    The columns of ``eval_summary.csv`` plus ``model``, ``profile``, ``run``
    (``"model/profile"``) and ``stopped_early`` (scoring stopped before the last item, so the
    accuracy is an underestimate; the decision is exact). Runs made before early stopping
    existed scored every item and get ``n_scored = n_items``. An empty frame when there are none.
    """
    frames = []
    for path in sorted((results or results_root()).glob("*/*/eval_summary.csv")):
        summary = pd.read_csv(path)
        if "n_scored" not in summary:
            summary["n_scored"] = summary.n_items
        model, profile = path.parent.parent.name, path.parent.name
        frames.append(summary.assign(model=model, profile=profile, run=f"{model}/{profile}",
                                     stopped_early=summary.n_scored < summary.n_items))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def per_task_cached(paths: RunPaths, kind: str, names, compute, desc: str = "tasks",
                    progress: bool = True) -> dict:
    """``{name: compute(name)}`` with one CSV per task under ``paths.cache / kind``.

    Finished tasks are read back, so a killed stage resumes where it stopped.
    """
    from tqdm.auto import tqdm

    out = {}
    for name in tqdm(list(names), desc=desc, disable=not progress):
        path = paths.task_file(kind, name, ".csv")
        if path.exists():
            out[name] = pd.read_csv(path)
        else:
            out[name] = compute(name)
            save_table(out[name], path)
    return out


def cached_evaluation(paths: RunPaths, params: dict, names, evaluate, desc: str = "evaluating",
                      progress: bool = True) -> dict:
    """Stage 1's item frames ``{name: frame}``, cached per task like :func:`per_task_cached`.

    ``evaluate(name, stop_below)`` scores one task (:func:`modularity.scoring.evaluate_task`);
    ``stop_below`` is ``params["threshold"]`` when ``params["stop_early"]``, else None.
    A complete evaluation (every item scored, stopped or not) goes to ``eval/`` and serves
    every run. A task stopped early goes to ``eval_stopped_<threshold>/`` and serves only runs
    with ``stop_early`` and that threshold: a run without it needs every item's scores, and
    another threshold may need more items. Neither setting enters the fingerprints
    (:data:`CACHE_KEYS`), which also name the attribution caches; those exist only for
    passing tasks, which are never stopped. Frames cached before the ``scored`` column
    existed are complete and get ``scored`` True.
    """
    from tqdm.auto import tqdm

    stop_below = params["threshold"] if params["stop_early"] else None
    stopped_kind = f"eval_stopped_{params['threshold']!r}"
    out = {}
    for name in tqdm(list(names), desc=desc, disable=not progress):
        complete_path = paths.task_file("eval", name, ".csv")
        stopped_path = paths.task_file(stopped_kind, name, ".csv")
        if complete_path.exists():
            frame = pd.read_csv(complete_path)
            if "scored" not in frame:
                frame.insert(frame.columns.get_loc("aligned") + 1, "scored", True)
        elif stop_below is not None and stopped_path.exists():
            frame = pd.read_csv(stopped_path)
        else:
            frame = evaluate(name, stop_below)
            save_table(frame, complete_path if frame["scored"].all() else stopped_path)
        out[name] = frame
    return out


def progress(iterable, total: int | None = None, desc: str = ""):
    """A progress bar that works in terminals and executed notebooks (stderr, plain text)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc)


#: Book chapters made by executing a notebook once for the whole book (not per run):
#: page name → (template in notebooks/, page, parameters, working directory relative to the repo,
#: navigation title or None for the notebook's own heading).
BOOK_PAGES: dict[str, tuple[str, str, dict, str, str | None]] = {
    "tasks": ("00_task_suite", "book/tasks.ipynb", {"profile": "small", "n_items": 64, "seed": 0}, "notebooks", None),
    "study_results": ("study_results", "book/study_results.ipynb", {}, ".", None),
    "across_models": ("07_across_models", "book/across_models.ipynb",
                      {"runs_to_compare": ["smollm2-135m-instruct/small", "gemma3-270m/small"]}, ".",
                      "Across models (small profile)"),
    "across_models_paper": ("07_across_models", "book/across_models_paper.ipynb",
                            {"runs_to_compare": ["smollm2-135m-instruct/paper", "gemma3-270m/paper"]}, ".",
                            "Across models (paper profile)"),
    "provenance": ("90_provenance", "book/provenance.ipynb", {}, ".", None),
}


def execute_book_pages(names: tuple[str, ...] | None = None, log_output: bool = False) -> list[Path]:
    """Execute the whole-book chapter notebooks of :data:`BOOK_PAGES` into ``book/``."""
    chosen = names or tuple(BOOK_PAGES)
    unknown = [n for n in chosen if n not in BOOK_PAGES]
    if unknown:
        raise ValueError(f"unknown book page(s) {unknown}; pages are {list(BOOK_PAGES)}")
    outputs = []
    for name in chosen:
        template, page, parameters, cwd, _ = BOOK_PAGES[name]
        output = REPO_ROOT / page
        execute_template(REPO_ROOT / "notebooks", template, output, parameters, REPO_ROOT / cwd, log_output)
        outputs.append(output)
    return outputs


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
    nbformat.write(notebook, output)
    return output


def _page_entry(name: str) -> dict:
    _, page, _, _, title = BOOK_PAGES[name]
    entry = {"file": page.removesuffix(".ipynb")}
    return {**entry, "title": title} if title else entry


def check_task_fingerprints(paths: RunPaths, summary: pd.DataFrame) -> None:
    """Refuse to continue when tasks changed since stage 1 (items would no longer match its indices)."""
    if "fingerprint" not in summary:
        raise ValueError("eval_summary.csv has no fingerprint column: rerun stage 01_eval")
    stale = [row.task for row in summary.itertuples() if paths.fingerprints.get(row.task) != row.fingerprint]
    if stale:
        raise ValueError(
            f"tasks changed since stage 01_eval was run: {stale}. Their items differ from the evaluated "
            "ones; rerun 01_eval first (finished tasks are reused from the cache)."
        )


def combined_fingerprint(paths: RunPaths, tasks) -> str:
    """One short hash over the fingerprints of several tasks (order-independent)."""
    import hashlib

    joined = ",".join(sorted(f"{task}:{paths.fingerprints[task]}" for task in tasks))
    return hashlib.sha1(joined.encode()).hexdigest()[:10]


# --------------------------------------------------------------------------
# Cost model (used by the book's provenance page and the rerun chapter)
# --------------------------------------------------------------------------
#: Forward-pass equivalents per unit of work, as this package runs it: evaluation scores
#: 4 pairs per item on about 3 sequences (pairs share a sequence where answers allow);
#: attribution runs the clean prompt once and the corrupted sequence forward + backward
#: (a backward costs about two forwards); ablation runs about one patched sequence per
#: item and (source, target) cell, plus the corrupted recording and unablated group.
FORWARDS_PER_UNIT = {"evaluation": 3.0, "attribution": 4.0, "ablation": 1.3}


def estimate_cost(n_params: float, n_layers: int, d_model: int, d_ff: int, *, n_tasks: int = 46,
                  n_passing: int, n_items: int = 64, attribution_items: int = 48, ablation_items: int = 16,
                  tokens_per_sequence: int = 60, flops_per_s: float, bytes_per_param: int = 2,
                  attribution_batch: int = 8) -> pd.DataFrame:
    """Seconds and peak memory per stage, from forward-pass FLOPs (≈ 2 · params per token).

    ``flops_per_s`` is the *achieved* throughput (calibrate it on a measured run);
    memory is the weights plus, for attribution, the activations kept for the backward
    pass of one batch of ``attribution_batch`` sequences (≈ 12·d_model + 3·d_ff values
    per token and layer). Returns one row per stage: ``units``, ``forwards``, ``tflop``, ``seconds``,
    ``memory_gb``.
    """
    units = {
        "evaluation": n_tasks * n_items,
        "attribution": n_passing * attribution_items,
        "ablation": n_passing * n_passing * ablation_items,
    }
    weights = n_params * bytes_per_param
    activations = attribution_batch * tokens_per_sequence * n_layers * (12 * d_model + 3 * d_ff) * bytes_per_param
    rows = []
    for stage, count in units.items():
        forwards = count * FORWARDS_PER_UNIT[stage]
        flop = forwards * tokens_per_sequence * 2 * n_params
        rows.append({"stage": stage, "units": count, "forwards": forwards, "tflop": flop / 1e12,
                     "seconds": flop / flops_per_s,
                     "memory_gb": (weights + (activations if stage == "attribution" else 0)) / 1e9})
    return pd.DataFrame(rows)


STAGE_TITLES = {"01_eval": "evaluation", "02_attribution": "attribution", "03_overlap": "overlap",
                "04_ari_permutation": "statistics", "05_ablation": "ablation",
                "06_beside_the_study": "beside the study"}


def finished_stage_pages(root: Path | None = None) -> list[tuple[str, str]]:
    """``(page path without suffix, title)`` of every stage notebook that its run's manifest
    records as finished, runs in name order, stages in pipeline order."""
    root = Path(root or REPO_ROOT)
    pages = []
    for manifest_path in sorted((root / "book" / "results").glob("*/*/manifest.json")):
        finished = json.loads(manifest_path.read_text()).get("stages", {})
        run_dir = manifest_path.parent
        label = f"{run_dir.parent.name} ({run_dir.name})"
        for stage in STAGES:
            if stage in finished and (run_dir / f"{stage}.ipynb").exists():
                page = (run_dir / stage).relative_to(root).as_posix()
                pages.append((page, f"{label} · {STAGE_TITLES[stage]}"))
    return pages


def write_toc(root: Path | None = None) -> Path:
    """Write ``_toc.yml``: fixed chapters plus the finished stage pages of every run present."""
    root = Path(root or REPO_ROOT)
    results = {"file": "book/results/index"}
    pages = finished_stage_pages(root)
    if pages:
        results["sections"] = [{"file": page, "title": title} for page, title in pages]
    toc = {
        "format": "jb-book",
        "root": "book/intro",
        "parts": [
            {"caption": "The study", "chapters": [_page_entry("tasks"), {"file": "book/methods"}]},
            {"caption": "Results", "chapters": [_page_entry("study_results"), results, _page_entry("across_models"),
                                                 _page_entry("across_models_paper")]},
            {"caption": "Using this book", "chapters": [{"file": "book/rerun"}, {"file": "book/teaching"},
                                                        {"file": "book/limitations"}, _page_entry("provenance")]},
        ],
    }
    header = "# Written by `modularity book pages` (runs.write_toc): run pages are the finished stages present.\n"
    path = root / "_toc.yml"
    atomic_write_bytes(path, (header + yaml.safe_dump(toc, sort_keys=False, allow_unicode=True)).encode())
    return path
