"""Social / theory-of-mind (ToM) tasks: beliefs, desires, emotions, norms, interactions, relations.

Where the question names the two answers (agent, social_interactions, social_relations) they
appear in a random order that is the same in both prompts of an item.

In the ``small`` profile all nine are raw few-shot completions over stereotyped, familiar cues
(``content/small_completion.json``; :func:`.fewshot.build_completion_pair`), e.g. "Tom won the game.
Tom feels" → " happy" vs "Tom lost the game. Tom feels" → " sad", with 3–6 solved lines first.
``agent`` is a false-belief story in which both places are named: "Mia put the cup in the box.
While Mia slept, Tom moved the cup to the bag. Mia thinks the cup is in the" → " box" (" bag" when
Mia watched). An earlier version ("Mia saw the cup in the box. Mia thinks the cup is in the") named
only the answer, so copying solved it (``reports.copy_solvable_share``).
"""
from __future__ import annotations

import random

from .base import MinimalPair, TaskSpec, choose_same_length, content, two_options, wordlist
from .fewshot import build_fewshot_pair, small_completion_or
from .schema import PromptConfig


#: Tasks whose small profile is a raw few-shot completion over familiar scenarios
#: (content/small_completion.json); the others keep the paper format in both profiles.
SMALL_COMPLETION = ("agent", "desires_goals", "emotion_fewshot", "norm_appropriate", "norm_moral",
                    "primary_emotions", "secondary_emotions", "social_interactions", "social_relations")


def _config(name: str) -> dict[str, PromptConfig]:
    config = PromptConfig(path=f"{name}.json")
    small = PromptConfig(path=config.path, force_base_evaluation=True) if name in SMALL_COMPLETION else config
    return {"paper": config, "small": small}


def _small(name: str, paper_builder):
    return small_completion_or(name, paper_builder) if name in SMALL_COMPLETION else paper_builder


def _all_names() -> list[str]:
    names = wordlist("names")
    return names["neutral"] + names["female"] + names["male"]


def _two_people(rng: random.Random) -> tuple[str, str]:
    first, second = rng.sample(wordlist("names")["neutral"], 2)
    return first, second


def _agent(rng: random.Random, profile: str) -> MinimalPair:
    data = content("social_agent")
    a, b = _two_people(rng)
    place, obj = rng.choice(data["places"]), rng.choice(data["objects"])
    templates = data["templates"][:3] if profile == "small" else data["templates"]
    template = rng.choice(templates)
    believe_word, doubt_word = template["words"]
    verbs = two_options(rng, "believe", "doubt")
    question = f"Does {a} {verbs[0]} or {verbs[1]} that the {obj} is in the {place}?"
    story = lambda w: template["text"].format(a=a, b=b, o=obj, p=place, w=w)  # noqa: E731
    answer = lambda key: data["answers"][key].format(a=a, o=obj, p=place)  # noqa: E731
    return MinimalPair(
        f"{story(believe_word)} {question}", answer("believe"), f"{story(doubt_word)} {question}", answer("doubt"),
        template_id=template["id"], scenario_a=story(believe_word), scenario_b=story(doubt_word),
        metadata={"domain": "agent-properties", "context_diff": "antonym", "swap_words": [believe_word, doubt_word],
                  "options": list(verbs)},
    )


def _desires(rng: random.Random, profile: str) -> MinimalPair:
    data = content("social_desires")
    a = rng.choice(_all_names())
    (place_a, goal_a) = rng.choice(data["place_goals"])
    others = [pg for pg in data["place_goals"] if pg[0] != place_a]
    place_b = choose_same_length(rng, [p for p, _ in others], place_a)
    goal_b = dict(data["place_goals"])[place_b]
    frame = rng.choice(data["frames"][:2] if profile == "small" else data["frames"])
    ask = lambda place: frame.format(a=a, p=place) + " " + data["question"].format(a=a)  # noqa: E731
    answer = lambda goal: data["answer"].format(a=a, g=goal)  # noqa: E731
    return MinimalPair(
        ask(place_a), answer(goal_a), ask(place_b), answer(goal_b),
        template_id=frame, scenario_a=frame.format(a=a, p=place_a), scenario_b=frame.format(a=a, p=place_b),
        metadata={"places": [place_a, place_b]},
    )


def _primary(rng: random.Random, profile: str) -> MinimalPair:
    data = content("social_primary")
    a = rng.choice(_all_names())
    event = rng.choice(data["events"])
    happy, unhappy = event["emotions"]
    question = data["question"].format(a=a)
    return MinimalPair(
        event["clean"].format(a=a) + " " + question, data["answer"].format(a=a, e=happy),
        event["corrupt"].format(a=a) + " " + question, data["answer"].format(a=a, e=unhappy),
        template_id=event["clean"], scenario_a=event["clean"], scenario_b=event["corrupt"],
        metadata={"emotion_pair": [happy, unhappy]},
    )


def _secondary(rng: random.Random, profile: str) -> MinimalPair:
    data = content("social_secondary")
    a, b = _two_people(rng)
    action = rng.choice(data["actions"])
    setting = rng.choice(data["settings"])
    (verb_pos, verb_neg), (emo_pos, emo_neg) = action["verbs"], action["emotions"]
    story = lambda verb: f"{a} {verb} {b} {setting}."  # noqa: E731
    question = data["question"].format(b=b)
    return MinimalPair(
        f"{story(verb_pos)} {question}", data["answer"].format(b=b, e=emo_pos),
        f"{story(verb_neg)} {question}", data["answer"].format(b=b, e=emo_neg),
        template_id=f"{verb_pos}/{verb_neg}", scenario_a=story(verb_pos), scenario_b=story(verb_neg),
        metadata={"swap_words": [verb_pos, verb_neg], "emotion_pair": [emo_pos, emo_neg]},
    )


def _interactions(rng: random.Random, profile: str) -> MinimalPair:
    data = content("social_interactions")
    a, b = _two_people(rng)
    context = rng.choice(data["contexts"])
    (word_pos, word_neg), (label_pos, label_neg) = context["words"], context["labels"]
    x, y = two_options(rng, label_pos, label_neg)
    question = data["question"].format(a=a, b=b, x=x, y=y)
    story = lambda w: context["frame"].format(a=a, b=b, w=w)  # noqa: E731
    answer = lambda label: data["answer"].format(a=a, b=b, l=label)  # noqa: E731
    return MinimalPair(
        f"{story(word_pos)} {question}", answer(label_pos), f"{story(word_neg)} {question}", answer(label_neg),
        template_id=context["frame"], scenario_a=story(word_pos), scenario_b=story(word_neg),
        metadata={"swap_words": [word_pos, word_neg], "options": [x, y]},
    )


def _relations(rng: random.Random, profile: str) -> MinimalPair:
    data = content("social_relations")
    a, b = _two_people(rng)
    relation = rng.choice(data["relations"])
    (phrase_top, phrase_bottom), (role_top, role_bottom) = relation["phrases"], relation["roles"]
    frame = rng.choice(data["frames"][:2] if profile == "small" else data["frames"])
    x, y = two_options(rng, role_top, role_bottom)
    question = data["question"].format(a=a, b=b, x=x, y=y)
    story = lambda r: frame.format(a=a, b=b, r=r)  # noqa: E731
    answer = lambda role: data["answer"].format(a=a, b=b, role=role)  # noqa: E731
    return MinimalPair(
        f"{story(phrase_top)} {question}", answer(role_top), f"{story(phrase_bottom)} {question}", answer(role_bottom),
        template_id=frame, scenario_a=story(phrase_top), scenario_b=story(phrase_bottom),
        metadata={"swap_words": [phrase_top, phrase_bottom], "options": [x, y]},
    )


N_SHOTS = {"paper": 2, "small": 2}


def _fewshot(name: str):
    def build(rng: random.Random, profile: str) -> MinimalPair:
        return build_fewshot_pair(rng, content("social_fewshot")[name], "ToM", N_SHOTS[profile])
    return build


SPECS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        TaskSpec("agent", "ToM", _small("agent", _agent), _config("agent"), "Belief from perception/testimony: inside vs outside."),
        TaskSpec("desires_goals", "ToM", _small("desires_goals", _desires), _config("desires_goals"), "Place visited → what the person wants."),
        TaskSpec("emotion_fewshot", "ToM", _small("emotion_fewshot", _fewshot("emotion_fewshot")), _config("emotion_fewshot"),
                 "Few-shot: joy vs sadness from a situation."),
        TaskSpec("norm_appropriate", "ToM", _small("norm_appropriate", _fewshot("norm_appropriate")), _config("norm_appropriate"),
                 "Few-shot: appropriate vs inappropriate behavior."),
        TaskSpec("norm_moral", "ToM", _small("norm_moral", _fewshot("norm_moral")), _config("norm_moral"), "Few-shot: moral vs immoral."),
        TaskSpec("primary_emotions", "ToM", _small("primary_emotions", _primary), _config("primary_emotions"), "Event → basic emotion."),
        TaskSpec("secondary_emotions", "ToM", _small("secondary_emotions", _secondary), _config("secondary_emotions"),
                 "Social action → self-conscious emotion (proud vs ashamed)."),
        TaskSpec("social_interactions", "ToM", _small("social_interactions", _interactions), _config("social_interactions"),
                 "Helping vs hurting / coercing."),
        TaskSpec("social_relations", "ToM", _small("social_relations", _relations), _config("social_relations"), "Who is whose boss/teacher…"),
    ]
}
