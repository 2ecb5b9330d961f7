"""Language (Lan) tasks: grammatical and lexical minimal pairs read as raw text (no chat template).

Answers carry a leading space (the next word), except ``wug`` whose answer completes a
word. Both profiles use the same construction; ``small`` drops the longer frames.
"""
from __future__ import annotations

import random

from .base import MinimalPair, TaskSpec, choose_same_length, token_length, wordlist
from .schema import PromptConfig


def _lan_config(name: str) -> dict[str, PromptConfig]:
    config = PromptConfig(path=f"{name}.json", force_base_evaluation=True)
    return {"paper": config, "small": config}


def regular_plural(noun: str) -> str:
    """English plural of a regular noun (city → cities, box → boxes, car → cars)."""
    if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou"):
        return noun[:-1] + "ies"
    if noun.endswith(("s", "x", "ch", "sh", "z")):
        return noun + "es"
    return noun + "s"


def _same_length_forms(forms: tuple[str, str]) -> bool:
    a, b = (token_length(" " + f) for f in forms)
    return a is None or a == b


def _anaphor(rng: random.Random, profile: str) -> MinimalPair:
    names = wordlist("names")
    frames = wordlist("verbs")["reflexive_frames"]
    frame = rng.choice(frames[:10] if profile == "small" else frames)
    female = rng.choice(names["female"])
    male = choose_same_length(rng, names["male"], female, with_space=False)
    return MinimalPair(
        frame.format(name=female), " herself", frame.format(name=male), " himself",
        template_id=frame, scenario_a=female, scenario_b=male,
        metadata={"paradigm": "anaphor_gender_agreement"},
    )


_SENTENCE_STARTS = ["{name} {verb}", "Yesterday {name} {verb}", "I think {name} {verb}"]


def _det_noun(rng: random.Random, profile: str, kind: str) -> MinimalPair:
    name = rng.choice(wordlist("names")["neutral"])
    verb = rng.choice(wordlist("verbs")["transitive_past"])
    start = rng.choice(_SENTENCE_STARTS[:1] if profile == "small" else _SENTENCE_STARTS)
    if kind == "irregular":
        candidates = [tuple(p) for p in wordlist("irregular_nouns")]
    else:
        nouns = sorted(set(wordlist("regular_nouns")))
        candidates = [(n, regular_plural(n)) for n in nouns]
    aligned = [c for c in candidates if _same_length_forms(c)]
    singular, plural = rng.choice(aligned or candidates)
    det_sg, det_pl = rng.choice([("this", "these"), ("that", "those")])
    adjective = ""
    if kind == "adjective":
        adjective = " " + rng.choice(wordlist("adjectives"))
    prefix = start.format(name=name, verb=verb)
    return MinimalPair(
        f"{prefix} {det_sg}{adjective}", " " + singular, f"{prefix} {det_pl}{adjective}", " " + plural,
        template_id=f"{start} <det>{' <adj>' if adjective else ''}",
        scenario_a=f"{prefix} {det_sg}", scenario_b=f"{prefix} {det_pl}",
        metadata={"paradigm": f"det_noun_agreement_{kind}", "determiners": [det_sg, det_pl]},
    )


_HYPERNYM_FRAMES = {
    "paper": ["{x}, and other", "We saw {x}, and other", "She likes {x}, and other"],
    "small": ["{x}, {y}, and other", "We saw {x}, {y}, and other"],
}


def _hypernymy(rng: random.Random, profile: str) -> MinimalPair:
    table = wordlist("hypernyms")
    cat_a, cat_b = rng.sample(sorted(table), 2)
    frame = rng.choice(_HYPERNYM_FRAMES[profile])
    xa, ya = rng.sample(table[cat_a], 2)
    xb = choose_same_length(rng, table[cat_b], xa)
    yb = choose_same_length(rng, [w for w in table[cat_b] if w != xb], ya)
    return MinimalPair(
        frame.format(x=xa, y=ya), " " + cat_a, frame.format(x=xb, y=yb), " " + cat_b,
        template_id=frame, scenario_a=xa, scenario_b=xb,
        metadata={"hypernym": cat_a, "corrupted_hypernym": cat_b},
    )


def _npi(rng: random.Random, profile: str) -> MinimalPair:
    subjects = [p for _, p in wordlist("plural_subjects")]
    noun = rng.choice(subjects)
    verb = rng.choice(wordlist("verbs")["npi_past"])
    frames = ["{det} {noun} {verb}", "{det} {noun} ever {verb}", "{det} {noun} in the town {verb}"]
    frame = rng.choice(frames[:2] if profile == "small" else frames)
    return MinimalPair(
        frame.format(det="No", noun=noun, verb=verb), " any",
        frame.format(det="The", noun=noun, verb=verb), " some",
        template_id=frame, scenario_a=f"No {noun}", scenario_b=f"The {noun}",
        metadata={"paradigm": "npi_licensing"},
    )


def _subject_verb(rng: random.Random, profile: str) -> MinimalPair:
    pairs = [tuple(p) for p in wordlist("plural_subjects")]
    aligned = [p for p in pairs if _same_length_forms(p)]
    singular, plural = rng.choice(aligned or pairs)
    verb_base, verb_s = rng.choice(wordlist("verbs")["agreement"])
    frames = ["The {n}", "The {adj} {n}", "The {n} in the {place}"]
    frame = rng.choice(frames[:2] if profile == "small" else frames)
    adj = rng.choice(wordlist("adjectives"))
    place = rng.choice(["city", "village", "office", "school", "park"])
    fill = lambda n: frame.format(n=n, adj=adj, place=place)  # noqa: E731
    return MinimalPair(
        fill(plural), " " + verb_base, fill(singular), " " + verb_s,
        template_id=frame, scenario_a=plural, scenario_b=singular,
        metadata={"paradigm": "subject_verb_agreement", "verb": verb_base},
    )


def _wug(rng: random.Random, profile: str) -> MinimalPair:
    stem = rng.choice(wordlist("nonce_stems"))
    family = rng.choice(wordlist("nonce_suffixes"))
    sg, pl = family["singular"], family["plural"]
    frames = {
        "paper": ("Here is one {sg_word}. Now there are two {stem}", "Here are two {pl_word}. Now there is one {stem}"),
        "small": ("This is a {sg_word}. Now there are two {stem}", "These are two {pl_word}. Now there is one {stem}"),
    }
    to_plural, to_singular = frames[profile]
    return MinimalPair(
        to_plural.format(sg_word=stem + sg, stem=stem), pl,
        to_singular.format(pl_word=stem + pl, stem=stem), sg,
        template_id=f"{family['family']}:{to_plural}", scenario_a=stem + sg, scenario_b=stem + pl,
        metadata={"nonce_singular": stem + sg, "nonce_plural": stem + pl, "suffix_family": family["family"]},
    )


SPECS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        TaskSpec("anaphor_gender_agreement", "Lan", _anaphor, _lan_config("anaphor_gender_agreement"),
                 "A female vs a male name before a reflexive slot: herself vs himself."),
        TaskSpec("det_noun_agreement_irregular", "Lan", lambda r, p: _det_noun(r, p, "irregular"),
                 _lan_config("det_noun_agreement_irregular"), "this/these + irregular noun (analysis/analyses)."),
        TaskSpec("det_noun_agreement_regular", "Lan", lambda r, p: _det_noun(r, p, "regular"),
                 _lan_config("det_noun_agreement_regular"), "that/those + regular noun (customer/customers)."),
        TaskSpec("det_noun_agreement_with_adjective", "Lan", lambda r, p: _det_noun(r, p, "adjective"),
                 _lan_config("det_noun_agreement_with_adjective"), "this good / these good + noun."),
        TaskSpec("hypernymy", "Lan", _hypernymy, _lan_config("hypernymy"),
                 "'roses, tulips, and other' → flowers; hyponyms of another category flip it."),
        TaskSpec("npi", "Lan", _npi, _lan_config("npi"), "'No …' licenses 'any'; 'The …' does not (some)."),
        TaskSpec("subject_verb_agreement", "Lan", _subject_verb, _lan_config("subject_verb_agreement"),
                 "The doctors respect / The doctor respects."),
        TaskSpec("wug", "Lan", _wug, _lan_config("wug"), "Nonce-word plural vs singular suffix (ities/ity)."),
    ]
}
