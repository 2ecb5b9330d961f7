"""What every stage needs: the run's parameters, where its results go, its tasks, its model, and
what stage 1 decided (the passing tasks, their both-correct items, the tasks stage 2 attributed).

This module and :mod:`~modularity.stages.scores` and :mod:`~modularity.stages.cells` are the
floor the stages stand on: a stage imports them and never another stage.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from ..science import overlap, scoring
from ..science.tasks import load_suite
from ..records.params import configure_torch, notebook_params, validate_params
from ..records.store import RunPaths, check_task_fingerprints


class ShardDone(Exception):
    """Raised by :meth:`RunContext.stop_if_sharded`: this shard's units of the stage are cached."""


@dataclass
class RunContext:
    """One run of the pipeline, shared by its stages.

    ``params`` are validated (:func:`modularity.records.params.validate_params`); ``paths`` say where the
    results (committed) and caches (ignored) go; ``suite`` is the run's tasks
    ``{name: TaskData}`` (:func:`modularity.science.tasks.load_suite`); :attr:`model` is loaded on
    first use, so a stage that does not need it (overlap, statistics) loads nothing.

    ``shard = (i, n)`` makes this process one of ``n`` sharing the run's work
    (:mod:`modularity.running.shards`): a stage computes only its share of the units (tasks,
    targets, domains) through :meth:`share`, caches them, and stops at :meth:`stop_if_sharded`;
    the rest of the stage (tables, tests) runs once after every shard, reading the cache.
    """

    params: dict
    paths: RunPaths = field(repr=False)
    suite: dict = field(repr=False)
    shard: tuple[int, int] | None = None
    _items_read: tuple | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, params: dict, root: str | Path | None = None, shard: tuple[int, int] | None = None) -> "RunContext":
        """The context of ``params`` (validated here), results under ``root`` (default: this repo)."""
        context = cls._of(validate_params(params), root)
        context.shard = shard
        return context

    @classmethod
    def from_notebook(cls, namespace: dict) -> "RunContext":
        """The context of the parameters papermill injected into a notebook (``globals()``)."""
        return cls._of(notebook_params(namespace), None)

    @classmethod
    def _of(cls, checked: dict, root: str | Path | None) -> "RunContext":
        suite = load_suite(checked)  # built once: the paths' fingerprints hash the same tasks
        return cls(checked, RunPaths.of(checked, suite, root), suite)

    @property
    def label(self) -> str:
        """``run_name (profile)``, how pages and charts name the run."""
        return f"{self.params['run_name']} ({self.params['profile']})"

    def settings(self, *keys: str) -> "Settings":
        """The run's parameters ``keys`` as a page shows them: one line, ``key`` value, lists
        joined, a missing value as a dash (what a stage page prints under its parameters)."""
        return Settings({key: self.params[key] for key in keys})

    def share(self, units):
        """The units (a list, or a DataFrame's rows) this process computes, in their order: all of
        them, or in a sharded run ``(i, n)`` the i-th, (i+n)-th, … of them."""
        if self.shard is None:
            return units
        i, n = self.shard
        return units.iloc[i::n] if isinstance(units, pd.DataFrame) else list(units)[i::n]

    def stop_if_sharded(self) -> None:
        """End the stage here in a sharded run (raises :class:`ShardDone`): its share of the units is
        cached; what follows in the stage reads every unit and runs once, after all shards."""
        if self.shard is not None:
            raise ShardDone(self.shard)

    @cached_property
    def model(self):
        """The :class:`~modularity.science.models.LoadedModel` of the run, seeded and threaded as the params say
        (its ``backend`` decides how every pass runs: :mod:`modularity.science.passes`)."""
        from ..science.models import load_model

        configure_torch(self.params)
        return load_model(self.params["model"], dtype=self.params["dtype"], device=self.params["device"],
                          backend=self.params["backend"], remote=self.params["remote"])

    def evaluation_summary(self) -> pd.DataFrame:
        """Stage 1's ``eval_summary.csv``, refused if a task's items changed since (fingerprints)."""
        path = self.paths.table("eval_summary.csv")
        if not path.exists():
            raise FileNotFoundError(f"{path}: stage 01_eval has not run for {self.label}; run it first")
        summary = pd.read_csv(path)
        check_task_fingerprints(self.paths, summary)
        return summary

    def evaluation_items(self) -> pd.DataFrame:
        """Stage 1's ``eval_items.csv``: one row per item and task, read once while the file is
        unchanged (a copy: callers may modify it)."""
        return self._items().copy()

    def _items(self) -> pd.DataFrame:
        """``eval_items.csv`` as last read, read again when the file changed (not to be modified)."""
        path = self.paths.table("eval_items.csv")
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
        if self._items_read is None or self._items_read[0] != key:
            self._items_read = (key, pd.read_csv(path))
        return self._items_read[1]

    def both_correct_items(self, task: str) -> np.ndarray:
        """The indices of ``task``'s aligned items that the model gets right both clean and
        corrupted, in item order: what attribution attributes and ablation tests on (stage 1's
        ``eval_items.csv``; :func:`modularity.science.scoring.both_correct_indices`)."""
        items = self._items()
        return scoring.both_correct_indices(items[items.task == task])

    def passing(self) -> pd.DataFrame:
        """The tasks that passed the inclusion filter, with a ``label`` column (``domain/task``)."""
        summary = self.evaluation_summary()
        passing = summary[summary.passes].copy()
        passing["label"] = passing.domain + "/" + passing.task
        return passing.reset_index(drop=True)

    def attributed(self) -> pd.DataFrame:
        """The passing tasks that have a stage-2 attribution tensor, in the study's order (MD, ToM,
        phys, Lan; tasks alphabetically), with a ``label`` column (``domain/task``)."""
        passing = self.passing()
        has_tensor = passing.task.map(lambda task: self.paths.tensor("attribution", task).exists())
        tasks = passing[has_tensor.astype(bool)]
        return tasks.set_index("label").loc[overlap.order_labels(list(tasks.label))].reset_index()


class Settings(dict):
    """Some of a run's parameters, shown in a notebook as one readable line (not a dict repr)."""

    @staticmethod
    def _value(value) -> str:
        if value is None:
            return "—"
        if isinstance(value, (list, tuple)):
            return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, int):
            return f"{value:,}"
        return f"{value:g}" if isinstance(value, float) else str(value)

    def _repr_markdown_(self) -> str:
        return "**Parameters:** " + " · ".join(f"`{key}` {self._value(value)}" for key, value in self.items())

    def __repr__(self) -> str:
        return "Parameters: " + " · ".join(f"{key} {self._value(value)}" for key, value in self.items())
