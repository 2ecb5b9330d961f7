"""Few-shot "scenario → label" tasks (7 physical, 3 social).

Each item shows ``n_shots`` solved examples (labels balanced, random order) and then a query.
The corrupted prompt replaces only the query scenario by one with the other label, chosen
with the same cached token length when possible (the study's ``token_length_key`` idea).

The study gave all ten tasks the same "What is the physical outcome in the following contexts?
Context: … Answer: …" frame, even the social ones (book methods, difference 9), which makes prompt format a
confound of the domain clustering. Here each task asks its own question and each domain uses
its own field names.
"""
from __future__ import annotations

import random

from .base import MinimalPair, article, choose_same_length, content, token_length

FIELD_NAMES = {"phys": ("Situation", "Outcome"), "ToM": ("Story", "Answer")}


def build_fewshot_pair(rng: random.Random, spec: dict, domain: str, n_shots: int) -> MinimalPair:
    """A pair from a content entry ``{"question", "labels": [l0, l1], "scenarios": {l0: [...], l1: [...]}}``."""
    label_a, label_b = spec["labels"]
    pools = spec["scenarios"]
    shots = []
    for k in range(n_shots):
        label = (label_a, label_b)[k % 2]
        used = {s for s, _ in shots}
        shots.append((rng.choice([s for s in pools[label] if s not in used]), label))
    rng.shuffle(shots)
    used = {s for s, _ in shots}
    candidates_a = [s for s in pools[label_a] if s not in used]
    candidates_b = [s for s in pools[label_b] if s not in used]
    lengths_b = {token_length(" " + s) for s in candidates_b}
    # prefer a query that has a partner of the same token length on the other side
    matched = [s for s in candidates_a if token_length(" " + s) in lengths_b and token_length(" " + s) is not None]
    query_a = rng.choice(matched or candidates_a)
    query_b = choose_same_length(rng, candidates_b, query_a)
    field, answer = FIELD_NAMES[domain]
    lines = [spec["question"]] + [f"{field}: {s}\n{answer}: {lab}" for s, lab in shots]

    def render(query: str) -> str:
        return "\n".join(lines + [f"{field}: {query}\n{answer}:"])

    return MinimalPair(
        render(query_a), label_a, render(query_b), label_b,
        template_id=f"{n_shots}-shot", scenario_a=query_a, scenario_b=query_b,
        metadata={f"{label_a}_scenario": query_a, f"{label_b}_scenario": query_b,
                  "shots": [s for s, _ in shots]},
    )


# ------------------------------------------------------------------ small profile: raw completions

def _fill(template: str, filler: str, names: tuple[str, str], obj: str) -> str:
    """``{x}`` filler, ``{A}``/``{a}`` its article, ``{n}``/``{m}`` two people, ``{o}`` an object."""
    art = article(filler)
    return template.format(x=filler, A=art.capitalize(), a=art, n=names[0], m=names[1], o=obj)


def build_completion_pair(rng: random.Random, task: dict, names: list[str], objects: list[str]) -> MinimalPair:
    """A raw few-shot completion pair for the small profile (``force_base_evaluation``).

    ``task`` is a content entry ``{"groups": [{"template", "answers", "fillers"}], "lengths"}``;
    ``template`` holds ``{x}`` (the swapped filler) and optionally ``{A}`` (its article), ``{n}``/``{m}``
    (people) and ``{o}`` (an object). ``task["shots"]`` solved lines (``template + answer + "."``, labels alternating,
    order shuffled) precede the query line, which ends right before the answer. The corrupted
    prompt swaps only the query's filler for one of the other answer with the same SmolLM2 token
    count (``lengths``: token count of the query sentence per filler), so the answer flips.
    ``answers`` is either two answer strings (fillers grouped by answer), ``"copy"`` (the answer
    is the filler itself) or ``"pairs"`` (fillers are ``[filler, answer]`` pairs).
    """
    group = rng.choice(task["groups"])
    n_shots = task["shots"]
    template, lengths = group["template"], task["lengths"]
    if group["answers"] == "copy":
        entries = [(f, " " + f) for f in group["fillers"]]
    elif group["answers"] == "pairs":
        entries = [(f, a) for f, a in group["fillers"]]
    else:
        entries = [(f, a) for a in group["answers"] for f in group["fillers"][a]]
    answer_of = dict(entries)
    # the answer first, then one of its fillers that has a partner of equal token length: every
    # answer is side a's equally often, however many fillers (and partners) each answer has
    answer_a = rng.choice(sorted({a for _, a in entries}))
    partners_of = {f: [g for g, b in entries if b != answer_a and lengths[g] == lengths[f]]
                   for f, a in entries if a == answer_a}
    candidates = [f for f, partners in partners_of.items() if partners]
    if not candidates:
        raise ValueError(f"no filler of answer {answer_a!r} has a partner of equal token length")
    query_a = rng.choice(candidates)
    query_b = rng.choice(partners_of[query_a])
    people = tuple(rng.sample(names, 2))
    obj = rng.choice(objects)
    # shots: alternate the two query answers' families, never reuse a query filler
    pool = [(f, a) for f, a in entries if f not in (query_a, query_b)]
    shots = []
    for k in range(n_shots):
        wanted = (answer_of[query_a], answer_of[query_b])[k % 2]
        same = [e for e in pool if e[1] == wanted and e not in shots]
        choice = rng.choice(same or [e for e in pool if e not in shots and e[1] not in (answer_of[query_a], answer_of[query_b])] or [e for e in pool if e not in shots])
        shots.append(choice)
    rng.shuffle(shots)
    lines = [_fill(template, f, tuple(rng.sample(names, 2)), rng.choice(objects)) + a + "." for f, a in shots]

    def render(filler: str) -> str:
        return "\n".join(lines + [_fill(template, filler, people, obj)])

    return MinimalPair(
        render(query_a), answer_of[query_a], render(query_b), answer_of[query_b],
        template_id=template, scenario_a=_fill(template, query_a, people, obj),
        scenario_b=_fill(template, query_b, people, obj),
        metadata={"swap_words": [query_a, query_b], "shots": [f for f, _ in shots], "people": list(people),
                  "token_length": lengths[query_a]},
    )


def small_completion_or(name: str, paper_builder):
    """The paper builder, or for the ``small`` profile a raw completion over familiar content
    (``content/small_completion.json``); shared by the physical and social tasks."""
    def build(rng: random.Random, profile: str) -> MinimalPair:
        if profile == "small":
            data = content("small_completion")
            return build_completion_pair(rng, data[name], data["names"], data["objects"])
        return paper_builder(rng, profile)
    return build
