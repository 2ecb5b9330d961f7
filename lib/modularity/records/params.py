"""Run parameters: the schema every params file and stage notebook is checked against.

A run is one params file (``params/<model>.yaml``); :data:`SCHEMA` names every parameter with its
default, type and meaning. :func:`load_params` reads and validates a file, :func:`notebook_params`
validates what papermill injected into a notebook, and :func:`parameters_source` writes the
``parameters`` cell of the stage templates (a test keeps them in sync).
"""
from __future__ import annotations

import os
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


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
    "backend": Param("hooks", str, "how activations are read and patched: torch hooks, or nnsight traces",
                     ("hooks", "nnsight")),
    "remote": Param(False, bool, "with backend nnsight: execute the traces on the hosted service (NDIF)"),
    "threads": Param(0, int, "CPU threads for torch; 0 keeps torch's default (1 is faster on a busy machine)"),
    "bos": Param("model", str, "'model': tokenizer's own BOS; 'study': never (book methods, difference 10)", ("model", "study")),
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
    "localizer_items": Param(64, int, "localizer stimuli per condition and domain"),
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
    """Results folder name of a model: the alias, or the id with '/'→'_' and '.'→'-' (the study's compute notes)."""
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
    _check_tasks(out["tasks"], source)
    if not 0 < out["threshold"] <= 1:
        raise ParamsError(f"{source}: threshold={out['threshold']} must lie in (0, 1]")
    if out["threads"] < 0:
        raise ParamsError(f"{source}: threads={out['threads']} must be ≥ 0 (0 keeps torch's default)")
    if out["remote"] and out["backend"] != "nnsight":
        raise ParamsError(f"{source}: remote=True needs backend='nnsight' (the hook backend runs locally only)")
    for key in ("attribution_items", "verify_tasks", "verify_neurons", "ablation_items", "n_random_controls",
                "localizer_items"):
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


def _check_tasks(tasks, source: str) -> None:
    """``tasks`` is ``'all'`` or a list of distinct, known task keys."""
    if isinstance(tasks, str):
        if tasks != "all":
            # A string is iterable: read as a list it would become one task per letter.
            raise ParamsError(f"{source}: tasks={tasks!r} is a single string; write a list, "
                              f"e.g. tasks: [{tasks}] (or tasks: all for every task)")
        return
    from ..science.tasks.catalog import check_task_names  # late: the task generators are not needed to read a file

    not_strings = [task for task in tasks if not isinstance(task, str)]
    if not_strings:
        raise ParamsError(f"{source}: tasks must be task keys (strings), got {not_strings}")
    repeated = sorted({task for task in tasks if tasks.count(task) > 1})
    if repeated:
        raise ParamsError(f"{source}: tasks lists {repeated} more than once; name each task once")
    try:
        check_task_names(tasks)
    except ValueError as error:
        raise ParamsError(f"{source}: {error}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that gives a key twice (PyYAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        first_line = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in first_line:
                raise ParamsError(f"{self.name}: line {line}: key {key!r} is given twice (first on line "
                                  f"{first_line[key]}); keep one of them")
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def _looks_like_a_path(model: str) -> bool:
    """Whether a model name can only be a local path (a Hugging Face id or an alias never looks so)."""
    return model.startswith((".", "/", "~")) or model.endswith(".gguf")


def resolve_model_path(model: str, base: Path) -> str:
    """``model`` with a relative local path made absolute from ``base``; aliases and Hugging Face ids unchanged.

    Every command reads the params file with :func:`load_params`, which calls this once, so the
    stages (executed by papermill from the repository root) and ``modularity plan`` see the same
    path. A name is a local path when it looks like one (``./``, ``../``, ``/``, ``~``, ``.gguf``)
    or names something that exists under ``base``; a bare name that is also an embedded alias stays
    the alias, as :func:`modularity.science.models.resolve_model_source` would take it.
    """
    path = Path(model).expanduser()
    if path.is_absolute():
        return str(path)
    local = base / path
    if not (_looks_like_a_path(model) or local.exists()):
        return model
    if "/" not in model and not _looks_like_a_path(model):
        from ..science.models import EMBEDDED_MODELS  # late: imports torch; reached only for a bare name that exists here

        if model in EMBEDDED_MODELS:
            return model
    return os.path.normpath(local.absolute())  # not resolve(): a symlinked folder keeps its name (run_name)


def load_params(path: str | Path) -> dict:
    """Read and validate a params YAML file (required keys must be present).

    A relative local ``model`` path is taken from the current folder (:func:`resolve_model_path`),
    and one that does not exist is an error here, before anything loads.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"params file not found: {path}")
    try:
        with path.open(encoding="utf-8") as handle:  # a file, so the loader's errors name it
            raw = yaml.load(handle, Loader=_UniqueKeyLoader) or {}
    except yaml.YAMLError as error:
        raise ParamsError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of parameter: value")
    if isinstance(raw.get("model"), str):
        model = raw["model"]
        raw["model"] = resolve_model_path(model, Path.cwd())
        if _looks_like_a_path(model) and not Path(raw["model"]).exists():
            raise ParamsError(f"{path}: model path not found: {model} ({raw['model']} does not exist; a relative "
                              "model path is taken from the folder the command runs in); correct the path")
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
