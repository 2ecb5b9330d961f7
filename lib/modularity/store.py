"""The result store: where a run's results and caches live, and how they are written.

Executed notebooks and small tables go to ``book/results/<run_name>/<profile>/`` (committed,
rendered by the book); heavy tensors and per-task caches go to ``cache/<run_name>/<profile>/``
(ignored by git). Every write is atomic (temporary file + rename) and gets the permissions the
umask gives a new file (0644 under the usual 022), and per-task caches are named
after a fingerprint of the task's items, the parameters that change them and the content of the
model's weight, config and tokenizer files (:func:`modularity.models.model_files_fingerprint`),
so a killed stage resumes where it stopped and new weights written over a model's files are not
mistaken for the old ones. Runs committed under ``book/results`` before the fingerprint covered
the model's files carry older fingerprints in ``eval_summary.csv``: stages 2, 3, 5 and 7 ask for
stage 1 to be rerun on them; the whole-book pages read only their tables, never the fingerprints.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .progress import bar, notice

REPO_ROOT = Path(__file__).resolve().parents[2]


def results_root() -> Path:
    """``book/results`` under ``$MODULARITY_ROOT`` (tests, other checkouts) or this repository."""
    return Path(os.environ.get("MODULARITY_ROOT") or REPO_ROOT) / "book" / "results"


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
    def of(cls, params: dict, root: str | Path | None = None) -> "RunPaths":
        # MODULARITY_ROOT lets tests (and users) send outputs somewhere else.
        root = Path(root or os.environ.get("MODULARITY_ROOT") or REPO_ROOT)
        sub = Path(params["run_name"]) / params["profile"]
        model = _model_digest(params["model"])
        return cls(root / "book" / "results" / sub, root / "cache" / sub, task_fingerprints(params, model), model)

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
    """:func:`modularity.models.model_files_fingerprint`, its note (if any) shown once per process."""
    from .models import model_files_fingerprint

    digest, note = model_files_fingerprint(model)
    if note and (model, note) not in _NOTED_MODELS:
        _NOTED_MODELS.add((model, note))
        notice(f"{note}: cache fingerprints cover the model's name, not its weights")
    return digest


def task_fingerprints(params: dict, model_digest: str | None = None) -> dict[str, str]:
    """``{task: short hash}`` of each task's config and items, :data:`CACHE_KEYS` and the content of
    the model's files (``model_digest``, computed from ``params["model"]`` when not given)."""
    from .tasks import load_suite

    model = _model_digest(params["model"]) if model_digest is None else model_digest
    settings = json.dumps({key: params[key] for key in CACHE_KEYS}, sort_keys=True, default=str) + model
    fingerprints = {}
    for name, task in load_suite(params).items():
        content = json.dumps([task.config.to_study_json(), task.items], sort_keys=True, default=str)
        fingerprints[name] = hashlib.sha1((settings + content).encode()).hexdigest()[:12]
    return fingerprints


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename (no torn files).

    The temporary file is created with mode 0666 less the umask, as ``open`` would create
    ``path`` (``tempfile.mkstemp`` makes it 0600, which the rename would keep).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
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
    out = {}
    for name in bar(list(names), desc=desc, unit="tasks", disable=not progress):
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
    stop_below = params["threshold"] if params["stop_early"] else None
    stopped_kind = f"eval_stopped_{params['threshold']!r}"
    out = {}
    for name in bar(list(names), desc=desc, unit="tasks", disable=not progress):
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
