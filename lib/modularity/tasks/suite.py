"""The 46-task registry, the seeded generators, and the tasks of a run (:func:`load_suite`)."""
from __future__ import annotations

import difflib
import random
import zlib
from pathlib import Path

from . import formal, language, physical, social
from .base import PROFILES, TaskSpec, pair_to_item
from .schema import DOMAINS, TaskData

SPECS: dict[str, TaskSpec] = {**formal.SPECS, **social.SPECS, **physical.SPECS, **language.SPECS}

#: The 46 task keys in the study's CSV order: domains MD, ToM, phys, Lan; alphabetical within each.
TASK_NAMES: tuple[str, ...] = tuple(
    name for domain in DOMAINS for name in sorted(n for n, s in SPECS.items() if s.domain == domain)
)
TASK_DOMAINS: dict[str, str] = {name: SPECS[name].domain for name in TASK_NAMES}

#: How many draws a generator may spend per requested item before we call the task exhausted.
_ATTEMPTS_PER_ITEM = 50


def task_seed(seed: int, name: str) -> int:
    """A per-task seed that is stable across Python runs (crc32, not the salted ``hash``)."""
    return zlib.crc32(f"{seed}:{name}".encode("utf-8"))


def check_task_names(names) -> None:
    """Raise ValueError naming every unknown task key of ``names``, with the closest known key of each."""
    unknown = [name for name in names if name not in SPECS]
    if not unknown:
        return
    guesses = {name: difflib.get_close_matches(name, TASK_NAMES, n=1) for name in unknown}
    hints = "; ".join(f"{name!r}: did you mean {guess[0]!r}?" for name, guess in guesses.items() if guess)
    raise ValueError(f"unknown task(s) {unknown}" + (f" ({hints})" if hints else "")
                     + f"; known tasks: {', '.join(TASK_NAMES)} (`modularity tasks list`)")


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
    from ..store import REPO_ROOT  # the data_dir of a params file is relative to the repository
    from .study_io import load_study_data, subsample_suite

    tasks = None if params["tasks"] == "all" else list(params["tasks"])
    if params["data_dir"]:
        suite = load_study_data(REPO_ROOT / Path(params["data_dir"]).expanduser(), tasks=tasks)
        return subsample_suite(suite, params["n_items"], params["seed"]) if sample else suite
    return generate_suite(params["profile"], n_items=params["n_items"], seed=params["seed"], tasks=tasks)


def describe_tasks() -> list[dict]:
    """One row per task: name, domain, study file and a one-line description."""
    return [{"task": n, "domain": TASK_DOMAINS[n], "file": SPECS[n].config("paper").path,
             "description": SPECS[n].description} for n in TASK_NAMES]
