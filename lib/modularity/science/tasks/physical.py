"""Physical (phys) tasks: Newtonian intuitions, object affordances (PROST) and seven few-shot outcome tasks.

Newton and PROST name their two options in the problem text, in a random order that is the
same in the clean and the corrupted prompt, so "the correct option is named first" no longer
leaks the answer (the study's suffix did, book methods, difference 8).

In the ``small`` profile all nine are raw few-shot completions over very familiar objects
(``content/small_completion.json``; :func:`.fewshot.build_completion_pair`): a few solved lines such
as "A cheetah is very fast." and then the query "A snail is very" → " slow"; the corrupted query
swaps the object for one of the other answer with the same SmolLM2 token count. SmolLM2-135M
knew too few of the paper scenarios' facts to pass the 60% filter on any of them.
"""
from __future__ import annotations

import random

from .base import MinimalPair, TaskSpec, content, two_options
from .fewshot import build_fewshot_pair, small_completion_or
from .schema import PromptConfig

_PHYS_PREFIX = "You will be given a physical reasoning question. Answer with just the correct option.\n"


def _small_config(path: str) -> PromptConfig:
    """Small profile: a raw few-shot completion (no chat template), answers with a leading space."""
    return PromptConfig(path=path, force_base_evaluation=True)


_small = small_completion_or  # every physical task has a small completion form


def _options_config(name: str) -> dict[str, PromptConfig]:
    config = PromptConfig(path=f"{name}.json", prefix=_PHYS_PREFIX)
    return {"paper": config, "small": _small_config(f"{name}.json")}


def _newton(rng: random.Random, profile: str) -> MinimalPair:
    data = content("physical_newton")
    heavy = rng.choice([h for h, _ in data["pairs"]])
    light = rng.choice([lt for _, lt in data["pairs"]])
    frames = data["frames"][:3] if profile == "small" else data["frames"]
    frame = rng.choice(frames)
    first, second = two_options(rng, heavy, light)
    ask = lambda word: frame["text"].format(a=first, b=second, w=word) + f" Please just answer {first} or {second}."  # noqa: E731
    return MinimalPair(
        ask(frame["words"]["light"]), light, ask(frame["words"]["heavy"]), heavy,
        template_id=frame["id"], scenario_a=frame["text"].format(a=first, b=second, w=frame["words"]["light"]),
        scenario_b=frame["text"].format(a=first, b=second, w=frame["words"]["heavy"]),
        metadata={"heavy_object": heavy, "light_object": light, "options": [first, second]},
    )


def _prost(rng: random.Random, profile: str) -> MinimalPair:
    prop = rng.choice(content("physical_prost")["properties"])
    easy, hard = rng.choice(prop["easy"]), rng.choice(prop["hard"])
    first, second = two_options(rng, easy, hard)
    ask = lambda word: f"Here are {first} and {second}. " + prop["question"].format(w=word) + f" Please just answer {first} or {second}."  # noqa: E731
    return MinimalPair(
        ask("easier"), easy, ask("harder"), hard,
        template_id=prop["id"], scenario_a=f"{prop['id']}: {easy}", scenario_b=f"{prop['id']}: {hard}",
        metadata={"property": prop["id"], "options": [first, second]},
    )


#: Shots per few-shot item: the study used 2; 2 stays for both profiles (short contexts for small models).
N_SHOTS = {"paper": 2, "small": 2}


def _fewshot(name: str):
    def build(rng: random.Random, profile: str) -> MinimalPair:
        return build_fewshot_pair(rng, content("physical_fewshot")[name], "phys", N_SHOTS[profile])
    return build


def _fewshot_config(name: str) -> dict[str, PromptConfig]:
    # Study quirk kept on purpose: keys physics_* live in files phys_*.json.
    config = PromptConfig(path=name.replace("physics_", "phys_") + ".json")
    return {"paper": config, "small": _small_config(config.path)}


_FEWSHOT = {
    "physics_brightness": "Light on a surface: absorbs vs reflects.",
    "physics_buoyancy": "Object in a liquid: floats vs sinks.",
    "physics_elasticity": "Object hits a hard surface: bounces vs breaks.",
    "physics_solubility": "Substance in a liquid: dissolves vs settles.",
    "physics_speed": "Motion over a surface: fast vs slow.",
    "physics_stability": "Object at rest: stable vs unstable.",
    "physics_temperature": "Substance near heat or cold: melt vs freeze.",
}

SPECS: dict[str, TaskSpec] = {
    "phys_newton": TaskSpec("phys_newton", "phys", _small("phys_newton", _newton), _options_config("phys_newton"),
                            "Heavy vs light object; top/bottom, easier/harder… flips the answer."),
    "phys_prost": TaskSpec("phys_prost", "phys", _small("phys_prost", _prost), _options_config("phys_prost"),
                           "Which object is easier/harder to stack, roll, break…"),
    **{name: TaskSpec(name, "phys", _small(name, _fewshot(name)), _fewshot_config(name), text) for name, text in _FEWSHOT.items()},
}
