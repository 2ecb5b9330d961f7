"""The 46 tasks by name: their specs, keys in the study's order, domains and per-task seeds."""
from __future__ import annotations

import difflib
import zlib

from . import formal, language, physical, social
from .base import TaskSpec
from .frames import check_frame, split_variant
from .schema import DOMAINS

SPECS: dict[str, TaskSpec] = {**formal.SPECS, **social.SPECS, **physical.SPECS, **language.SPECS}

#: The 46 task keys in the study's CSV order: domains MD, ToM, phys, Lan; alphabetical within each.
TASK_NAMES: tuple[str, ...] = tuple(
    name for domain in DOMAINS for name in sorted(n for n, s in SPECS.items() if s.domain == domain)
)
TASK_DOMAINS: dict[str, str] = {name: SPECS[name].domain for name in TASK_NAMES}


def task_seed(seed: int, name: str) -> int:
    """A per-task seed that is stable across Python runs (crc32, not the salted ``hash``)."""
    return zlib.crc32(f"{seed}:{name}".encode("utf-8"))


def check_task_names(names) -> None:
    """Raise ValueError naming every unknown task key of ``names``, with the closest known key of each
    (a key may name a frame, ``task~frame``: :mod:`modularity.science.tasks.frames`)."""
    for name in names:
        check_frame(name)
    unknown = [name for name in (split_variant(name)[0] for name in names) if name not in SPECS]
    if not unknown:
        return
    guesses = {name: difflib.get_close_matches(name, TASK_NAMES, n=1) for name in unknown}
    hints = "; ".join(f"{name!r}: did you mean {guess[0]!r}?" for name, guess in guesses.items() if guess)
    raise ValueError(f"unknown task(s) {unknown}" + (f" ({hints})" if hints else "")
                     + f"; known tasks: {', '.join(TASK_NAMES)} (`modularity tasks list`)")


def describe_tasks() -> list[dict]:
    """One row per task: name, domain, study file and a one-line description."""
    return [{"task": n, "domain": TASK_DOMAINS[n], "file": SPECS[n].config("paper").path,
             "description": SPECS[n].description} for n in TASK_NAMES]
