"""Localizer stimuli: for each domain, texts of a *localized* condition and a matched *control*.

Neuroscience finds a network by a localizer contrast rather than by the tasks it studies: the
language network by sentences versus strings of non-words (Fedorenko et al., 2010), the
multiple-demand network by harder versus easier versions of a task (Fedorenko et al., 2013),
theory of mind by false-belief versus false-photograph stories (Saxe & Kanwisher, 2003).
AlKhamissi et al. (2024, "The LLM Language Network") applied the language contrast to the units
of language models. This module writes one such contrast per domain of the suite:

* **Lan** — sentences built from the suite's word lists (names, transitive verbs, adjectives) in
  eight frames, versus strings of pronounceable pseudowords with the same number of words, the
  same word lengths (±1 letter), capitalisation and final full stop;
* **MD** — arithmetic statements with the result written out ("23 + 18 - 7 = 34", in digits or,
  for a third of the stimuli, in words, computed with the suite's own
  :func:`~modularity.science.tasks.formal.evaluate_expression`), versus the same numbers in the same order
  without the operations ("23, 18, 7, 34"): the same surface without the operation;
* **phys** — two physical scenes from the suite's physical scenarios, each with the outcome it leads
  to ("A cork placed in a bucket of water. It floats on the surface."), versus two descriptions of
  everyday objects of the suite's physical tasks that carry no physical dynamics ("A cork listed
  in a shop catalogue from last spring. It is on the first page.");
* **ToM** — false-belief stories versus false-photograph stories in the Saxe & Kanwisher mould,
  matched pairwise: the same object and places, the same three-sentence structure, an outdated
  representation in both; in one it is a person's belief, in the other a photo, film, map or note.

Every stimulus is written by this project (``content/localizer.json``, the suite's word lists and
scenarios); nothing is downloaded. Stimuli are deterministic in (``n_items``, ``seed``), drawn per
domain from a :func:`~modularity.science.tasks.catalog.task_seed` of their own, distinct within a condition,
and independent of the profile and of the run's tasks: like a localizer scan, the same battery
serves every run. The texts are read as raw text (no chat template).
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache

from .base import article, content, load_resource, wordlist
from .formal import evaluate_expression
from .number_words import number_to_words
from .schema import DOMAINS
from .catalog import task_seed

__all__ = ["CONTRASTS", "LocalizerStimuli", "localizer_stimuli", "localizer_suite", "pseudoword",
           "nonword_string"]

#: Per domain: (localized condition, control condition), as the book names them.
CONTRASTS: dict[str, tuple[str, str]] = {
    "MD": ("arithmetic statements", "the same numbers without operations"),
    "ToM": ("false-belief stories", "false-photograph stories"),
    "phys": ("physical scenes with their outcome", "non-physical descriptions of objects"),
    "Lan": ("sentences", "pseudoword strings"),
}

#: How many draws a builder may spend per requested stimulus before the content counts as exhausted.
_ATTEMPTS_PER_ITEM = 50


@dataclass(frozen=True)
class LocalizerStimuli:
    """One domain's localizer: ``localized[i]`` and ``control[i]`` are the i-th pair of texts.

    Pairs are matched where the contrast allows (Lan: word count and lengths; MD: the numbers;
    ToM: object, places and structure); ``n`` pairs, each condition's texts distinct.
    """

    domain: str
    localized: tuple[str, ...]
    control: tuple[str, ...]

    @property
    def n(self) -> int:
        return len(self.localized)

    @property
    def condition_names(self) -> tuple[str, str]:
        return CONTRASTS[self.domain]


# --------------------------------------------------------------------------- Language


def _language_data() -> dict:
    return content("localizer")["language"]


@lru_cache(maxsize=None)
def _syllables() -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    """Every syllable of the inventory by length: (onset + nucleus + coda, and the short words'
    onset + nucleus + optional rare coda)."""
    parts = _language_data()["pseudoword"]
    full: dict[int, set] = {}
    short: dict[int, set] = {}
    for onset in parts["onsets"]:
        for nucleus in parts["nuclei"]:
            for coda in parts["codas"]:
                full.setdefault(len(onset + nucleus + coda), set()).add(onset + nucleus + coda)
        for nucleus in parts["short_nuclei"]:  # single vowels: bee, too, boa are words
            for coda in [""] + parts["short_codas"]:
                short.setdefault(len(onset + nucleus + coda), set()).add(onset + nucleus + coda)
    return ({n: sorted(v) for n, v in full.items()}, {n: sorted(v) for n, v in short.items()})


def _syllable_lengths(rng: random.Random, total: int, lengths: list[int], at_least: int) -> list[int] | None:
    """A random sequence of at least ``at_least`` syllable lengths from ``lengths`` summing to ``total``."""
    if total == 0:
        return [] if at_least <= 0 else None
    for first in rng.sample(lengths, len(lengths)):
        if first <= total:
            rest = _syllable_lengths(rng, total - first, lengths, at_least - 1)
            if rest is not None:
                return [first] + rest
    return None


def pseudoword(rng: random.Random, length: int, avoid: frozenset[str] = frozenset()) -> str:
    """A pronounceable pseudoword of exactly ``length`` letters (two for a one-letter word: a
    single letter would read as a letter, not a word).

    Built from syllables (onset, vowel nucleus, optional coda; ``content/localizer.json``), so
    every syllable has a vowel. Short random syllables make real words easily (bat, dog), so words
    of four letters or more take at least two syllables and never end in a silent-looking "e"
    (dome, fame), and shorter ones are one syllable with a single vowel that ends in its vowel or
    in a coda English words rarely end in (v, z). Never a word in ``avoid`` (lower case) or in the
    list of real short words. Raises ValueError if none is found in 1,000 draws.
    """
    real = set(_language_data()["pseudoword"]["real_short_words"]) | set(avoid)
    full, short = _syllables()
    wanted = max(length, 2)
    for _ in range(1000):
        if wanted <= 3:
            word = rng.choice(short[wanted])
        else:
            lengths = _syllable_lengths(rng, wanted, sorted(full), at_least=2)
            word = "".join(rng.choice(full[n]) for n in lengths)
        if word not in real and not (wanted >= 4 and word.endswith("e")):
            return word
    raise ValueError(f"no pseudoword of length {length} found")


_WORD = re.compile(r"[A-Za-z]+")


def nonword_string(rng: random.Random, sentence: str, avoid: frozenset[str] = frozenset()) -> str:
    """``sentence`` with every word replaced by a pseudoword of its length (:func:`pseudoword`),
    keeping capitalisation, spaces and punctuation, so only the words themselves differ."""
    def replace(match: re.Match) -> str:
        word = match.group(0)
        new = pseudoword(rng, len(word), avoid)
        return new.capitalize() if word[0].isupper() else new
    return _WORD.sub(replace, sentence)


def _strings(value) -> list[str]:
    """Every string inside a JSON value (dict keys included)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for key, item in value.items() for s in _strings(key) + _strings(item)]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    return []


@lru_cache(maxsize=None)
def _real_words() -> frozenset[str]:
    """Every word, lower case, of every file in the package's ``content/`` and ``wordlists/``
    (a few thousand English words, those of the suite itself) plus the list of real short words:
    no pseudoword may be one of them. This is not a full dictionary (none is shipped), so a rare
    real word can still come out of :func:`pseudoword`."""
    from importlib import resources

    words = set(_language_data()["pseudoword"]["real_short_words"])
    for folder in ("content", "wordlists"):
        for path in resources.files("modularity.science.tasks").joinpath(folder).iterdir():
            if path.name.endswith(".json"):
                value = load_resource(folder, path.name.removesuffix(".json"))
                words.update(w.lower() for text in _strings(value) for w in _WORD.findall(text))
    return frozenset(words)


def _sentence(rng: random.Random) -> str:
    data = _language_data()
    names = wordlist("names")["neutral"]
    verbs = [v for v in wordlist("verbs")["transitive_past"] if v not in data["excluded_verbs"]]
    n1, n2 = rng.sample(names, 2)
    adjective = rng.choice(wordlist("adjectives"))
    return rng.choice(data["frames"]).format(
        N1=n1, N2=n2, verb=rng.choice(verbs), adj=adjective, a=article(adjective), obj=rng.choice(data["objects"]),
        person=rng.choice(data["persons"]), place=rng.choice(data["places"]))


def _language_pair(rng: random.Random) -> tuple[str, str]:
    sentence = _sentence(rng)
    return sentence, nonword_string(rng, sentence, _real_words())


# --------------------------------------------------------------------------- Formal


_OPERATOR_WORDS = {"+": "plus", "-": "minus", "*": "times"}


def _statement(rng: random.Random) -> tuple[list[int], list[str], int]:
    """Operands, operators and the value of one arithmetic statement, a non-negative result."""
    while True:
        n_operands = rng.choice((2, 3))
        operands = [rng.randint(2, 49) for _ in range(n_operands)]
        operators = [rng.choice("+-*") if rng.random() < 0.3 else rng.choice("+-") for _ in range(n_operands - 1)]
        if operators.count("*") and any(operands[i] > 12 or operands[i + 1] > 12
                                        for i, op in enumerate(operators) if op == "*"):
            continue  # products of small numbers only: the results stay short
        value = evaluate_expression(operands, operators)
        if value >= 0:
            return operands, operators, value


def _formal_pair(rng: random.Random) -> tuple[str, str]:
    verbal = rng.random() < 1 / 3
    render = number_to_words if verbal else str
    localized, control = [], []
    for _ in range(3):
        operands, operators, value = _statement(rng)
        tokens = [render(operands[0])]
        for operator, operand in zip(operators, operands[1:]):
            tokens += [_OPERATOR_WORDS[operator] if verbal else operator, render(operand)]
        tokens += ["equals" if verbal else "=", render(value)]
        localized.append(" ".join(tokens))
        # The same numbers in the same order; each operator and "=" becomes a comma.
        control.append(", ".join(render(number) for number in operands + [value]))
    return "\n".join(localized), "\n".join(control)


# --------------------------------------------------------------------------- Physical


@lru_cache(maxsize=None)
def _physical_objects() -> tuple[str, ...]:
    """The count nouns of the suite's physical tasks (phys_newton's pairs, phys_prost's objects)."""
    newton, prost = content("physical_newton"), content("physical_prost")
    objects = {o for pair in newton["pairs"] for o in pair}
    objects |= {o for prop in prost["properties"] for o in prop["easy"] + prop["hard"]}
    return tuple(sorted(objects))


def _physical_pair(rng: random.Random) -> tuple[str, str]:
    scenarios, outcomes = content("physical_fewshot"), content("localizer")["physical"]["outcomes"]
    scenes = []
    for task in rng.sample(sorted(outcomes), 2):
        label = rng.choice(scenarios[task]["labels"])
        scenes.append(f"{rng.choice(scenarios[task]['scenarios'][label])} {outcomes[task][label]}")
    control = []
    for frame in rng.sample(content("localizer")["physical"]["control_frames"], 2):
        obj = rng.choice(_physical_objects())
        control.append(frame.format(A=article(obj).capitalize(), o=obj))
    return " ".join(scenes), " ".join(control)


# --------------------------------------------------------------------------- Social


def _social_pair(rng: random.Random) -> tuple[str, str]:
    data = content("localizer")["social"]
    template = rng.randrange(len(data["false_belief"]))
    a, b = rng.sample(content("small_completion")["names"], 2)
    p1, p2 = rng.choice(data["place_pairs"])
    obj = rng.choice(data["objects"])
    fill = dict(A=a, B=b, o=obj, p1=p1, p2=p2)
    return data["false_belief"][template].format(**fill), data["false_photograph"][template].format(**fill)


_BUILDERS = {"MD": _formal_pair, "ToM": _social_pair, "phys": _physical_pair, "Lan": _language_pair}


# --------------------------------------------------------------------------- the battery


def localizer_stimuli(domain: str, n_items: int = 64, seed: int = 0) -> LocalizerStimuli:
    """``n_items`` pairs (localized, control) of ``domain``, deterministic in (domain, n_items, seed).

    Pairs are drawn until ``n_items`` have a localized text not seen before and a control text
    not seen before (so each condition's texts are distinct). Raises ValueError for an unknown
    domain, ``n_items < 1``, or content that cannot give that many.
    """
    if domain not in _BUILDERS:
        raise ValueError(f"unknown domain {domain!r}; domains are {list(DOMAINS)}")
    if n_items < 1:
        raise ValueError(f"n_items must be at least 1, got {n_items}")
    rng = random.Random(task_seed(seed, f"localizer/{domain}"))
    localized, control = [], []
    for _ in range(_ATTEMPTS_PER_ITEM * n_items):
        if len(localized) == n_items:
            break
        text, contrast = _BUILDERS[domain](rng)
        if text in localized or contrast in control:
            continue
        localized.append(text)
        control.append(contrast)
    if len(localized) < n_items:
        raise ValueError(f"the {domain} localizer yields only {len(localized)} distinct pairs, {n_items} requested")
    return LocalizerStimuli(domain, tuple(localized), tuple(control))


def localizer_suite(n_items: int = 64, seed: int = 0) -> dict[str, LocalizerStimuli]:
    """The four domains' localizers ``{domain: LocalizerStimuli}``, in the study's domain order."""
    return {domain: localizer_stimuli(domain, n_items, seed) for domain in DOMAINS}
