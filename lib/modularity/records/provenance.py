"""Provenance of a run: its ``manifest.json`` (parameters, package versions, git SHA, wall time
of every stage) and, for runs on the study's own files, what was read, left out and sampled."""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from ..base.files import REPO_ROOT
from .store import RunPaths, save_json

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
    from ..science.tasks import EXCLUSION_REASONS, load_suite

    suite = load_suite(params)
    return {
        "data_dir": params["data_dir"], "n_items": params["n_items"], "seed": params["seed"],
        "item_table": "source_items.csv",
        "tasks": {name: {"file": source.file, "n_in_file": source.n_in_file,
                         "excluded": {r: source.n_excluded(r) for r in EXCLUSION_REASONS if source.excluded.get(r)},
                         "n_valid": source.n_valid, "n_used": source.n_used}
                  for name, source in ((name, task.source) for name, task in suite.items())},
    }
