"""Few-shot "scenario → label" tasks (7 physical, 3 social).

Each item shows ``n_shots`` solved examples (labels balanced, random order) and then a query.
The corrupted prompt replaces only the query scenario by one with the other label, chosen
with the same cached token length when possible (the study's ``token_length_key`` idea).

The study gave all ten tasks the same "What is the physical outcome in the following contexts?
Context: … Answer: …" frame, even the social ones (METHOD §15.9), which makes prompt format a
confound of the domain clustering. Here each task asks its own question and each domain uses
its own field names.
"""
from __future__ import annotations

import random

from .base import MinimalPair, choose_same_length, token_length

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
