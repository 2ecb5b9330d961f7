"""Building blocks shared by the task generators: the minimal pair, the task spec, resources.

A generator never writes a clean item directly. It builds a :class:`MinimalPair`, two
problems ``a`` and ``b`` that differ in one task-relevant detail and whose correct answers
are each other's foil. :func:`pair_to_item` then decides which side is *clean*. Alternating
that choice over the items is what balances the labels (each answer family is correct in
half the clean prompts) without any generator having to think about it.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Callable

from .schema import PromptConfig

PROFILES: tuple[str, ...] = ("paper", "small")


@dataclass(frozen=True)
class MinimalPair:
    """Two problems that differ in one detail; ``answer_a`` is correct for ``problem_a``."""

    problem_a: str
    answer_a: str
    problem_b: str
    answer_b: str
    template_id: str
    #: The task-relevant sentence/phrase of each side (used by the diversity report).
    scenario_a: str = ""
    scenario_b: str = ""
    metadata: dict = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    """How to build one task: its domain, a pair builder and a prompt config per profile."""

    name: str
    domain: str
    build_pair: Callable[[random.Random, str], MinimalPair]
    configs: dict[str, PromptConfig]
    description: str = ""

    def config(self, profile: str) -> PromptConfig:
        return self.configs[profile]


def pair_to_item(pair: MinimalPair, clean_is_a: bool) -> dict:
    """The study's six-key item (plus metadata) with side ``a`` or ``b`` as the clean prompt."""
    clean, corrupt = ("a", "b") if clean_is_a else ("b", "a")
    get = lambda side, what: getattr(pair, f"{what}_{side}")  # noqa: E731
    item = {
        "clean_problem": get(clean, "problem"),
        "corrupted_problem": get(corrupt, "problem"),
        "clean_correct": get(clean, "answer"),
        "clean_incorrect": get(corrupt, "answer"),
        "corrupted_correct": get(corrupt, "answer"),
        "corrupted_incorrect": get(clean, "answer"),
        "template_id": pair.template_id,
        "clean_side": clean,
        "scenario_clean": get(clean, "scenario"),
        "scenario_corrupted": get(corrupt, "scenario"),
    }
    item.update(pair.metadata)
    return item


@lru_cache(maxsize=None)
def load_resource(folder: str, name: str):
    """A JSON file shipped with the package (``content/`` or ``wordlists/``)."""
    path = resources.files("modularity.science.tasks").joinpath(folder, f"{name}.json")
    return json.loads(path.read_text(encoding="utf-8"))


def wordlist(name: str):
    return load_resource("wordlists", name)


def content(name: str):
    return load_resource("content", name)


@lru_cache(maxsize=None)
def _token_lengths() -> dict[str, int]:
    try:
        return load_resource("content", "token_lengths_smollm2")
    except FileNotFoundError:
        return {}


def token_length(text: str) -> int | None:
    """Cached SmolLM2 token count of ``text`` (None when the cache does not know it).

    The cache (``content/token_lengths_smollm2.json``, built by
    ``benchmarks/build_token_length_cache.py``) lets generators pair swap phrases of equal
    token length without loading a tokenizer, as the study's ``token_length_key`` did.
    """
    return _token_lengths().get(text)


def choose_same_length(rng: random.Random, candidates: list[str], reference: str, with_space: bool = True) -> str:
    """A random candidate whose token count equals the reference's, if the cache allows; else any."""
    key = (lambda s: " " + s) if with_space else (lambda s: s)
    target = token_length(key(reference))
    if target is not None:
        same = [c for c in candidates if token_length(key(c)) == target]
        if same:
            return rng.choice(same)
    return rng.choice(candidates)


def article(noun: str) -> str:
    """"a" or "an" for a noun phrase (by its first letter; enough for our word lists)."""
    return "an" if noun[:1].lower() in "aeiou" else "a"


def two_options(rng: random.Random, first: str, second: str) -> tuple[str, str]:
    """The two answer options in a random order (shared by both prompts of an item)."""
    return (first, second) if rng.random() < 0.5 else (second, first)
