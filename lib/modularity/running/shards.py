"""One run spread over several processes: each computes a share of every stage's per-task and
per-cell work, and each stage's tables are made once, after all shares are in the cache.

Two ways to start the processes (they must see the same results and cache folders):

* on one node, ``accelerate launch --multi_gpu --num_processes N -m modularity run params.yaml`` (or
  ``torchrun --nproc_per_node N -m modularity run params.yaml``): each process
  reads its rank from the environment accelerate (or ``torchrun``) sets (``RANK``, ``WORLD_SIZE``,
  ``LOCAL_RANK``, :func:`shard_from_environment`) and, with ``device: cuda`` or ``auto``, uses GPU
  ``LOCAL_RANK`` (:func:`device_for`);
* on a cluster, a job array of N tasks, each ``modularity run params.yaml --shard $SLURM_ARRAY_TASK_ID/N``.

Per stage, in order (:func:`run_shard`):

1. each shard computes its units (:meth:`modularity.stages.context.RunContext.share`: the tasks of
   stages 1 and 2, the ablation targets of stage 5, the localizer's domains of stage 7) into the
   cache; stages 3, 4 and 6 have no model work and no units;
2. it writes ``cache/<run>/<profile>/shards/<stage>/<round>-<i>-of-<n>.done`` and waits;
3. shard 0, once every shard's file is there, executes the stage's notebook as a one-process run
   does: every unit is read from the cache, the tables and tests are made once, the manifest
   records the stage;
4. the others see the manifest's new record of the stage and go on to the next stage.

The marker files only save work: the notebook of step 3 computes any unit it does not find in the
cache, so its tables are those of a one-process run whatever the markers say. ``round`` names the
stage's record in the manifest before this attempt, so markers of an earlier, finished attempt are
not counted again.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from ..records.params import load_params, validate_params
from ..records.store import RunPaths
from ..stages import registry
from ..stages.context import RunContext, ShardDone

__all__ = ["parse_shard", "shard_from_environment", "device_for", "run_shard", "ShardFailed", "POLL_SECONDS"]

#: How often a waiting shard looks at the markers and the manifest.
POLL_SECONDS = 2.0
#: Stages whose units the shards compute; the others run their notebook on shard 0 only.
SHARDED = ("evaluation", "attribution", "ablation", "localizer")


class ShardFailed(RuntimeError):
    """Another shard, or the assembly of a stage, failed: this shard stops too."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)`` with 0 ≤ i < n; a one-line ValueError otherwise."""
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: write i/n, e.g. --shard 0/4 (shard i of n, counted from 0)") from None
    if not 0 <= i < n:
        raise ValueError(f"--shard {text!r}: i must lie in 0 … n−1 (0 ≤ {i} < {n} does not hold)")
    return i, n


def shard_from_environment(environ=os.environ) -> tuple[int, int] | None:
    """``(RANK, WORLD_SIZE)`` when a launcher (accelerate, torchrun) started several processes, else None."""
    world = int(environ.get("WORLD_SIZE", "1") or 1)
    return (int(environ.get("RANK", "0")), world) if world > 1 else None


def device_for(device: str, environ=os.environ) -> str:
    """The device of this process: ``cuda:LOCAL_RANK`` for ``cuda`` or ``auto`` when a launcher set
    ``LOCAL_RANK`` (one GPU per process), else ``device`` unchanged."""
    local = environ.get("LOCAL_RANK")
    if local is None or device not in ("cuda", "auto"):
        return device
    return f"cuda:{int(local)}"


def _round(paths: RunPaths, notebook: str) -> str:
    """A short name of the stage's record in the manifest now (``none`` before its first run)."""
    manifest = paths.table("manifest.json")
    record = json.loads(manifest.read_text()).get("stages", {}).get(notebook) if manifest.exists() else None
    return hashlib.sha1(json.dumps(record, sort_keys=True).encode()).hexdigest()[:10] if record else "none"


def _marker(folder: Path, round_: str, i: int, n: int, what: str) -> Path:
    return folder / f"{round_}-{i}-of-{n}.{what}"


def _wait(condition, describe, poll: float) -> None:
    """Poll ``condition()`` until true, saying every minute what is awaited (``describe()``)."""
    said = time.monotonic()
    while not condition():
        if time.monotonic() - said > 60:
            print(f"  waiting: {describe()}", flush=True)
            said = time.monotonic()
        time.sleep(poll)


def run_shard(params_path: str | Path, shard: tuple[int, int], stages: tuple[str, ...] | None = None,
              root: Path | None = None, overrides: dict | None = None, log_output: bool = False,
              poll: float = POLL_SECONDS) -> list[Path]:
    """Run shard ``(i, n)`` of the run of ``params_path`` (see the module docstring); shard 0 returns
    the executed notebooks, the others an empty list."""
    from . import runner

    i, n = shard
    params = load_params(params_path)
    params = validate_params({**params, **(overrides or {}), "device": device_for(params["device"])},
                             source=str(params_path))
    chosen = runner.chosen_stages(stages)
    runner.preflight(params, chosen, str(params_path), root)
    paths = RunPaths.of(params, root=root)
    label = f"[{params['run_name']}/{params['profile']} shard {i}/{n}]"
    outputs = []
    for notebook in chosen:
        stage = registry.stage(notebook)
        folder = paths.cache / "shards" / notebook
        folder.mkdir(parents=True, exist_ok=True)
        round_ = _round(paths, notebook)
        if stage.name in SHARDED:
            print(f"{label} {notebook}: computing this shard's share ...", flush=True)
            try:
                stage.module.run(RunContext.of(params, root, shard=shard))
            except ShardDone:
                pass
            except Exception as error:
                _marker(folder, round_, i, n, "failed").write_text(f"{type(error).__name__}: {error}")
                raise
            _release_memory()  # shard 0's notebook loads the model again on the same GPU
        _marker(folder, round_, i, n, "done").write_text(str(time.time()))
        if i == 0:
            outputs.append(_assemble(params, notebook, folder, round_, n, label, root, log_output, poll))
        else:
            _await_assembly(paths, notebook, folder, round_, label, poll)
    return outputs


def _release_memory() -> None:
    """Free this process's copy of the model and, on a GPU, the memory torch keeps cached for it."""
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _assemble(params, notebook, folder, round_, n, label, root, log_output, poll) -> Path:
    """Shard 0: wait for every shard's marker, execute the stage's notebook once, clear the markers."""
    from . import runner

    def missing():
        failed = sorted(folder.glob(f"{round_}-*-of-{n}.failed"))
        if failed:
            raise ShardFailed(f"{notebook}: shard {failed[0].name.split('-')[1]}/{n} failed: {failed[0].read_text()}")
        return [j for j in range(n) if not _marker(folder, round_, j, n, "done").exists()]

    _wait(lambda: not missing(), lambda: f"{notebook}: shards {missing()} of {n} still computing", poll)
    print(f"{label} {notebook}: every shard done; making the stage's tables once ...", flush=True)
    try:
        output = runner.execute_stage(notebook, params, root=root, log_output=log_output)
    except BaseException:
        _marker(folder, round_, 0, n, "assembly-failed").write_text("the stage's notebook failed on shard 0")
        raise
    for marker in folder.glob(f"{round_}-*"):
        marker.unlink(missing_ok=True)
    return output


def _await_assembly(paths, notebook, folder, round_, label, poll) -> None:
    """A shard other than 0: wait until the manifest records the stage anew (shard 0 made its tables)."""
    def assembled():
        if any(folder.glob(f"{round_}-0-of-*.assembly-failed")) or any(folder.glob(f"{round_}-0-of-*.failed")):
            raise ShardFailed(f"{notebook}: shard 0 failed; see its output")
        return _round(paths, notebook) != round_

    print(f"{label} {notebook}: share done; waiting for shard 0 to make the stage's tables", flush=True)
    _wait(assembled, lambda: f"{notebook}: shard 0 has not recorded the stage yet", poll)
