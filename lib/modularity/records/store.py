"""The result store: where a run's results and caches live, and how they are written and read back.

Executed notebooks and small tables go to ``book/results/<run_name>/<profile>/`` (committed,
rendered by the book); heavy tensors and per-task caches go to ``cache/<run_name>/<profile>/``
(ignored by git). Every write is atomic (temporary file + rename) and gets the permissions the
umask gives a new file (0644 under the usual 022), so a killed stage leaves no torn file.

A cache file is reused only when three things agree:

* **its name**: per-task files are ``<task>-<fingerprint>``, the fingerprint
  (:func:`task_fingerprints`) a hash of the task's config and items, of the parameters that
  change its results (:data:`CACHE_KEYS`) and of the model's weight, config and tokenizer files
  (:func:`modularity.science.models.model_files_fingerprint`, their content, not their name); caches over
  several tasks name a folder after all of theirs (:func:`combined_fingerprint`);
* **its check file** ``<name>.check``, written after it (:func:`write_cache`): the file's sha256,
  size and contents (rows, or tensor shapes), so a truncated or overwritten file is caught;
* **what it was made with**, also in the check file: the code version of the computation
  (:func:`code_version`) and ``made_from``, the inputs the caller names (the fingerprint; for
  attribution the items and baselines stage 1 chose, for ablation the sets and target items).

:func:`read_cache` refuses a file when any of them disagrees, says so in one line on stderr
(``cache file cache/…/wug-ab12.csv is corrupt (checksum mismatch): recomputing``) and the caller
computes it again; a kill between the data file and its check file leaves a file that is simply
recomputed. Every cache of the stages is read and written through this one pair.

The code version stays out of the fingerprint on purpose. The fingerprint is what stage 1
records in ``eval_summary.csv`` and what later stages compare before using its item indices
(:func:`check_task_fingerprints`): folding the code in would make every edit of a scoring module
refuse stages 2–7 until stage 1 was rerun, although a code edit only needs the caches that code
made recomputed, which the check file's code version does when each is next read. Stage 1's
items themselves are guarded by ``made_from``: attribution tensors and ablation cells record the
items they were computed on and are recomputed when stage 1 now chooses others. Runs committed
under ``book/results`` before the fingerprint covered the model's files carry older fingerprints
in their ``eval_summary.csv``: stages 2, 3, 5 and 7 ask for stage 1 to be rerun on them; the
whole-book pages read only their tables (:func:`committed_eval_summaries` and the matrices),
never the fingerprints.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import io
import json
from dataclasses import dataclass, field
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..base.files import atomic_write_bytes, project_root, results_root
from ..base.progress import bar, notice
from ..science.tasks import load_suite

PACKAGE_DIR = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RunPaths:
    """Where a run's outputs live.

    ``results`` (committed): executed notebooks, small tables, manifest.
    ``cache`` (ignored): per-task files named ``<task>-<fingerprint>`` (:func:`task_fingerprints`);
    editing one task's generator therefore recomputes that task only. ``model_digest``: the
    digest of the model's files that the fingerprints include, for caches not made per task.
    """

    results: Path
    cache: Path
    fingerprints: dict = field(default_factory=dict, compare=False, repr=False)
    model_digest: str = field(default="", compare=False, repr=False)

    @classmethod
    def of(cls, params: dict, suite: dict | None = None, root: str | Path | None = None) -> "RunPaths":
        """The paths of the run of validated ``params`` under ``root`` (:func:`project_root`), the
        fingerprints of ``suite`` (its tasks, built from ``params`` when not given)."""
        sub = Path(params["run_name"]) / params["profile"]
        model = _model_digest(params["model"])
        return cls(RunPaths.results_of(params, root), project_root(root) / "cache" / sub,
                   task_fingerprints(params, model, suite), model)

    @staticmethod
    def results_of(params: dict, root: str | Path | None = None) -> Path:
        """The run's results folder alone (no task is built, no model file read)."""
        return results_root(root) / params["run_name"] / params["profile"]

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


_NOTED_MODELS: set[tuple[str, str]] = set()


def _model_digest(model: str) -> str:
    """:func:`modularity.science.models.model_files_fingerprint`, its note (if any) shown once per process."""
    from ..science.models import model_files_fingerprint

    digest, note = model_files_fingerprint(model)
    if note and (model, note) not in _NOTED_MODELS:
        _NOTED_MODELS.add((model, note))
        notice(f"{note}: cache fingerprints cover the model's name, not its weights")
    return digest


def task_fingerprints(params: dict, model_digest: str | None = None, suite: dict | None = None) -> dict[str, str]:
    """``{task: short hash}`` of each task's config and items, :data:`CACHE_KEYS` and the content of
    the model's files (``model_digest``, computed from ``params["model"]`` when not given); ``suite``
    is the run's tasks (:func:`modularity.science.tasks.load_suite` of ``params`` when not given)."""
    model = _model_digest(params["model"]) if model_digest is None else model_digest
    settings = json.dumps({key: params[key] for key in CACHE_KEYS}, sort_keys=True, default=str) + model
    fingerprints = {}
    for name, task in (load_suite(params) if suite is None else suite).items():
        content = json.dumps([task.config.to_study_json(), task.items], sort_keys=True, default=str)
        fingerprints[name] = hashlib.sha1((settings + content).encode()).hexdigest()[:12]
    return fingerprints


def save_table(frame: pd.DataFrame, path: Path, index: bool = False) -> Path:
    atomic_write_bytes(path, frame.to_csv(index=index).encode())
    return path


def save_json(obj: Any, path: Path) -> Path:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=_json_default) + "\n").encode())
    return path


def json_records(frame: pd.DataFrame) -> list[dict]:
    """A table as a JSON summary holds it: one dict per row (NaN as null); [] for an empty table."""
    return json.loads(frame.to_json(orient="records")) if len(frame) else []


def _json_default(value):
    if hasattr(value, "tolist"):  # numpy scalars and arrays, tensors
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# --------------------------------------------------------------------------
# Cache files and their check files
# --------------------------------------------------------------------------
#: Per computation whose results are cached, the module whose functions compute them.
COMPUTATIONS = {"eval": "science.scoring", "attribution": "science.attribution", "ablation": "science.ablation",
                "localizer": "science.localizer", "generation": "science.generation"}
#: Modules of the package those import that never compute a cached number (statistical tests and
#: summaries, task labels, progress bars): editing them recomputes no cache.
NOT_COMPUTING = ("science.stats", "science.overlap", "base.progress")
#: Libraries whose upgrade can change a model's outputs.
COMPUTING_LIBRARIES = ("torch", "transformers")
#: Identifies the layout of a check file.
CHECK_FORMAT = "modularity cache check 1"


@functools.cache
def code_version(computation: str) -> str:
    """A short hash of the code that computes ``computation``'s cached results (a key of
    :data:`COMPUTATIONS`).

    It covers the module named there and every module of this package it imports, transitively
    (imports inside functions included, :data:`NOT_COMPUTING` left out), as syntax trees without
    docstrings, so an edit of comments, docstrings or layout changes nothing, and the versions of
    :data:`COMPUTING_LIBRARIES`. Derived from the source rather than bumped by hand, it cannot
    be forgotten; the price is that a behaviour-preserving refactor of those modules recomputes
    their caches once (and so does a new Python version, whose syntax trees print differently).
    """
    return closure_version(COMPUTATIONS[computation], NOT_COMPUTING)


@functools.cache
def closure_version(module: str, skip: tuple[str, ...] = ()) -> str:
    """A short hash of ``module`` (dotted below the package) and every module of this package it
    imports, transitively, but those in ``skip``: their syntax trees without docstrings, and the
    versions of :data:`COMPUTING_LIBRARIES`. With ``skip=()`` it covers everything a stage's tables
    depend on (the run's manifest records it per stage, so a page can say whether its tables were
    made by the current code)."""
    pending, seen = [module], {}
    while pending:
        module = pending.pop()
        if module in seen or module in skip:
            continue
        tree = ast.parse(_module_file(module).read_text())
        seen[module] = ast.dump(_without_docstrings(tree))
        pending += package_imports(module, tree)
    libraries = {name: package_metadata.version(name) for name in COMPUTING_LIBRARIES}
    text = json.dumps([sorted(seen.items()), libraries])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _module_file(module: str) -> Path:
    """The source file of ``modularity.<module>`` (dotted below the package)."""
    base = PACKAGE_DIR.joinpath(*module.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def package_imports(module: str, tree: ast.Module | None = None) -> list[str]:
    """The modules of this package that ``module`` (dotted below the package, ``""`` for the package
    itself) imports, relative or absolute, at module level or inside functions; ``tree`` is its
    parsed source when already at hand. The code version and the layering test read this graph."""
    source = _module_file(module)
    tree = ast.parse(source.read_text()) if tree is None else tree
    parts = module.split(".") if module else []
    package = parts if source.name == "__init__.py" else parts[:-1]  # where `from .` starts
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1] + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "modularity":
                base = node.module.split(".")[1:]
            else:
                continue
            for alias in node.names:  # `from . import passes` names a module, `from .x import f` an attribute
                candidates = [".".join(base + [alias.name]), ".".join(base)]
                found.append(next((c for c in candidates if c and _is_module(c)), ""))
        elif isinstance(node, ast.Import):
            found += [alias.name.split(".", 1)[1] for alias in node.names
                      if alias.name.startswith("modularity.") and _is_module(alias.name.split(".", 1)[1])]
    return [name for name in found if name]


def _is_module(module: str) -> bool:
    return _module_file(module).is_file()


def _without_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def check_file(path: Path) -> Path:
    """The check file beside cache file ``path``: ``<name>.check``."""
    path = Path(path)
    return path.with_name(path.name + ".check")


def write_cache(path: Path, value, computation: str, made_from: dict) -> Path:
    """Write cache file ``path`` (a DataFrame as ``.csv``, ``{name: tensor}`` as ``.safetensors``,
    whose metadata is ``made_from``), then its check file, each atomically.

    The check file (JSON) holds ``format`` (:data:`CHECK_FORMAT`), ``file`` (the name), ``size``
    and ``sha256`` of the bytes written, ``contents`` (``rows`` and ``columns`` of a table,
    ``shapes`` of tensors), ``computation``, its ``code_version`` and ``made_from``.
    """
    path = Path(path)
    data = _encode(path, value, made_from)
    atomic_write_bytes(path, data)
    check = {"format": CHECK_FORMAT, "file": path.name, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
             "contents": _contents(value), "computation": computation, "code_version": code_version(computation),
             "made_from": json.loads(_canonical(made_from))}
    atomic_write_bytes(check_file(path), (json.dumps(check, sort_keys=True) + "\n").encode())
    return path


def read_cache(path: Path, computation: str, made_from: dict):
    """The value :func:`write_cache` wrote to ``path``, or None when there is no such file or it
    cannot be trusted: no check file, another size or checksum, other contents, another code
    version of ``computation``, made from other inputs than ``made_from``, or unparsable. A file
    refused is never used; one line on stderr names it and why, and the caller recomputes it."""
    path = Path(path)
    if not path.exists():
        return None
    problem, value = _checked(path, computation, made_from)
    if problem:
        notice(f"cache file {_shown(path)} {problem}: recomputing")
        return None
    return value


def cached(path: Path, compute: Callable[[], Any], computation: str, made_from: dict):
    """:func:`read_cache`, or ``compute()`` written with :func:`write_cache` when that gives None."""
    value = read_cache(path, computation, made_from)
    if value is None:
        value = compute()
        write_cache(path, value, computation, made_from)
    return value


def content_digest(value) -> str:
    """A short sha256 of ``value`` as canonical JSON (numpy arrays as lists), for ``made_from``
    entries too large to keep whole (the neuron sets of an ablation target)."""
    return hashlib.sha256(_canonical(value).encode()).hexdigest()[:16]


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=_json_default)


def _checked(path: Path, computation: str, made_from: dict) -> tuple[str, Any]:
    """``("", value)`` for a file that passes every check, else ``(why it failed, None)``."""
    try:
        check = json.loads(check_file(path).read_text())
        recorded = {key: check[key] for key in ("format", "size", "sha256", "contents", "code_version", "made_from")}
        if recorded["format"] != CHECK_FORMAT or not isinstance(recorded["size"], int) \
                or not isinstance(recorded["made_from"], dict):
            raise ValueError(recorded["format"])
    except FileNotFoundError:
        return "has no check file (its writing was interrupted, or it was written before checks existed)", None
    except (OSError, ValueError, KeyError, TypeError):
        return "has an unreadable check file", None
    if recorded["code_version"] != code_version(computation):
        return f"was made by another version of the code ({computation})", None
    expected = json.loads(_canonical(made_from))
    changed = sorted(key for key in set(expected) | set(recorded["made_from"])
                     if _canonical(expected.get(key)) != _canonical(recorded["made_from"].get(key)))
    if changed:
        return f"was made from other inputs ({', '.join(changed)})", None
    data = path.read_bytes()
    if len(data) < recorded["size"]:
        return f"is corrupt (truncated: {len(data)} of {recorded['size']} bytes)", None
    if len(data) != recorded["size"]:
        return f"is corrupt ({len(data)} bytes, {recorded['size']} were written)", None
    if hashlib.sha256(data).hexdigest() != recorded["sha256"]:
        return "is corrupt (checksum mismatch)", None
    try:
        value = _decode(path, data)
    except Exception as error:  # whatever the parser raises, the file is not usable
        return f"is corrupt (unparsable: {type(error).__name__})", None
    if json.loads(_canonical(_contents(value))) != recorded["contents"]:
        return "is corrupt (its contents differ from those written)", None
    return "", value


def _encode(path: Path, value, made_from: dict) -> bytes:
    if path.suffix == ".csv" and isinstance(value, pd.DataFrame):
        return value.to_csv(index=False).encode()
    if path.suffix == ".safetensors" and isinstance(value, dict):
        from safetensors.torch import save

        metadata = {key: _canonical(item) for key, item in json.loads(_canonical(made_from)).items()}
        return save({key: tensor.contiguous() for key, tensor in value.items()}, metadata=metadata)
    raise TypeError(f"{path.name}: a cache holds a DataFrame (.csv) or tensors (.safetensors), "
                    f"not {type(value).__name__}")


def _decode(path: Path, data: bytes):
    if path.suffix == ".csv":
        return pd.read_csv(io.BytesIO(data))
    from safetensors.torch import load

    return load(data)


def _contents(value) -> dict:
    if isinstance(value, pd.DataFrame):
        return {"rows": len(value), "columns": [str(column) for column in value.columns]}
    return {"shapes": {key: list(tensor.shape) for key, tensor in value.items()}}


def _shown(path: Path) -> str:
    """``path`` relative to the working directory when it lies below it, else absolute."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


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
                    progress: bool = True, computation: str | None = None) -> dict:
    """``{name: compute(name)}`` with one CSV per task under ``paths.cache / kind``, checked
    (:func:`read_cache`) as made by ``computation`` (default ``kind``) from the task's fingerprint.

    Finished tasks are read back, so a killed stage resumes where it stopped.
    """
    out = {}
    for name in bar(list(names), desc=desc, unit="tasks", disable=not progress):
        out[name] = cached(paths.task_file(kind, name, ".csv"), lambda: compute(name), computation or kind,
                           {"task": name, "fingerprint": paths.fingerprints[name]})
    return out


def cached_evaluation(paths: RunPaths, params: dict, names, evaluate, desc: str = "evaluating",
                      progress: bool = True) -> dict:
    """Stage 1's item frames ``{name: frame}``, cached per task like :func:`per_task_cached`.

    ``evaluate(name, stop_below)`` scores one task (:func:`modularity.science.scoring.evaluate_task`);
    ``stop_below`` is ``params["threshold"]`` when ``params["stop_early"]``, else None.
    A complete evaluation (every item scored, stopped or not) goes to ``eval/`` and serves
    every run. A task stopped early goes to ``eval_stopped_<threshold>/`` and serves only runs
    with ``stop_early`` and that threshold: a run without it needs every item's scores, and
    another threshold may need more items. Neither setting enters the fingerprints
    (:data:`CACHE_KEYS`), which also name the attribution caches; those exist only for
    passing tasks, which are never stopped.
    """
    stop_below = params["threshold"] if params["stop_early"] else None
    stopped_kind = f"eval_stopped_{params['threshold']!r}"
    out = {}
    for name in bar(list(names), desc=desc, unit="tasks", disable=not progress):
        complete_path = paths.task_file("eval", name, ".csv")
        stopped_path = paths.task_file(stopped_kind, name, ".csv")
        made_from = {"task": name, "fingerprint": paths.fingerprints[name]}
        frame = read_cache(complete_path, "eval", made_from)
        if frame is None and stop_below is not None:
            frame = read_cache(stopped_path, "eval", made_from)
        if frame is None:
            frame = evaluate(name, stop_below)
            write_cache(complete_path if frame["scored"].all() else stopped_path, frame, "eval", made_from)
        out[name] = frame
    return out


def check_task_fingerprints(paths: RunPaths, summary: pd.DataFrame) -> None:
    """Refuse to continue when a task's items, the cache parameters or the model's files changed
    since stage 1 (its item indices would no longer describe the items scored now)."""
    if "fingerprint" not in summary:
        raise ValueError("eval_summary.csv has no fingerprint column: rerun stage 01_eval")
    stale = [row.task for row in summary.itertuples() if paths.fingerprints.get(row.task) != row.fingerprint]
    if stale:
        raise ValueError(
            f"tasks changed since stage 01_eval was run: {stale}. Their items, the model's files or the "
            "parameters that change results differ from the evaluated ones (or stage 1 ran before its "
            "fingerprints covered the model's files); rerun 01_eval first (tasks it already scored with "
            "these items, files and parameters are read back from the cache)."
        )


def combined_fingerprint(paths: RunPaths, tasks) -> str:
    """One short hash over the fingerprints of several tasks (order-independent)."""
    joined = ",".join(sorted(f"{task}:{paths.fingerprints[task]}" for task in tasks))
    return hashlib.sha1(joined.encode()).hexdigest()[:10]
