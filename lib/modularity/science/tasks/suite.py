"""The seeded generators and the tasks of a run (:func:`load_suite`)."""
from __future__ import annotations

import random
from pathlib import Path

from ...base.files import REPO_ROOT
from .base import PROFILES, TaskSpec, pair_to_item
from .catalog import SPECS, TASK_NAMES, check_task_names, task_seed
from .frames import split_variant, with_frames
from .schema import TaskData
from .study_io import load_study_data, subsample_suite

#: How many draws a generator may spend per requested item before we call the task exhausted.
_ATTEMPTS_PER_ITEM = 50


def _check_name_profile(name: str, profile: str) -> TaskSpec:
    check_task_names([name])
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {PROFILES}")
    return SPECS[name]


def draw_items(build, n_items: int, rng: random.Random, what: str = "the generator") -> list[dict]:
    """``n_items`` distinct items from ``build(rng) -> MinimalPair``, clean side alternating, shuffled.

    Draws until ``n_items`` distinct pairs are found (a ValueError from ``build`` is a degenerate
    draw and is drawn again); raises ValueError naming ``what`` if the content runs out first.
    """
    items, seen = [], set()
    for _ in range(_ATTEMPTS_PER_ITEM * n_items + 100):
        if len(items) == n_items:
            break
        try:
            pair = build(rng)
        except ValueError:  # a degenerate draw (e.g. equal outputs); draw again
            continue
        key = frozenset(((pair.problem_a, pair.answer_a), (pair.problem_b, pair.answer_b)))
        if key in seen or pair.problem_a == pair.problem_b or pair.answer_a == pair.answer_b:
            continue
        seen.add(key)
        items.append(pair_to_item(pair, clean_is_a=len(items) % 2 == 0))
    if len(items) < n_items:
        raise ValueError(
            f"{what} yields only {len(items)} distinct items, {n_items} requested; "
            "ask for fewer items or add content under modularity/tasks/content/"
        )
    rng.shuffle(items)
    return items


def generate_task(name: str, profile: str = "small", n_items: int = 100, seed: int = 0) -> TaskData:
    """``n_items`` distinct minimal pairs of task ``name``, deterministic in (name, profile, n_items, seed).

    Half the items (alternating, then shuffled) take side ``a`` of the pair as the clean
    prompt, so each answer family is the clean-correct answer about half the time.
    Raises ValueError if the task's content cannot give ``n_items`` distinct pairs.
    """
    spec = _check_name_profile(name, profile)
    if n_items < 1:
        raise ValueError(f"n_items must be at least 1, got {n_items}")
    rng = random.Random(task_seed(seed, name) + PROFILES.index(profile))
    items = draw_items(lambda r: spec.build_pair(r, profile), n_items, rng, f"task {name!r} ({profile})")
    return TaskData(name=name, domain=spec.domain, config=spec.config(profile), items=items)


def generate_suite(profile: str = "small", n_items: int = 100, seed: int = 0, tasks=None) -> dict[str, TaskData]:
    """All 46 tasks (or the ones named in ``tasks``), in :data:`TASK_NAMES` order."""
    wanted = TASK_NAMES if tasks is None else tuple(tasks)
    check_task_names(wanted)
    return {name: generate_task(name, profile, n_items, seed) for name in TASK_NAMES if name in wanted}


def load_suite(params: dict, sample: bool = True) -> dict:
    """The run's tasks: generated from (profile, n_items, seed), or read from ``data_dir``.

    ``data_dir`` (relative paths are taken from the repository root, the notebooks' working
    directory) is read with :func:`load_study_data`, which leaves unusable items
    out and records them in each task's ``source``; then each task keeps a seeded sample of
    ``n_items`` of its usable items (all if fewer), in file order, drawn per task
    (:func:`subsample_suite`; ``sample=False`` keeps every usable item).
    ``profile`` plays no part then.
    """
    keys = None if params["tasks"] == "all" else list(params["tasks"])
    tasks = None if keys is None else list(dict.fromkeys(split_variant(key)[0] for key in keys))
    if params["data_dir"]:
        suite = load_study_data(REPO_ROOT / Path(params["data_dir"]).expanduser(), tasks=tasks)
        suite = subsample_suite(suite, params["n_items"], params["seed"]) if sample else suite
    else:
        suite = generate_suite(params["profile"], n_items=params["n_items"], seed=params["seed"], tasks=tasks)
    if keys is None or all(split_variant(key)[1] is None for key in keys):
        return suite
    return with_frames(suite, keys)
