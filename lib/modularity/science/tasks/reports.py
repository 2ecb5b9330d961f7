"""Descriptive checks on a suite: diversity, label balance, copy-solvability, token alignment."""
from __future__ import annotations

import os
import re
from collections import Counter
from typing import Callable

import pandas as pd

from .schema import TaskData, assemble_message


def diversity_report(suite: dict[str, TaskData]) -> pd.DataFrame:
    """Per task: items, distinct templates, distinct scenario sentences, distinct clean problems."""
    rows = []
    for name, task in suite.items():
        scenarios = set()
        for item in task.items:
            scenarios.add(item.get("scenario_clean") or item["clean_problem"])
            scenarios.add(item.get("scenario_corrupted") or item["corrupted_problem"])
        rows.append({
            "task": name, "domain": task.domain, "n_items": len(task.items),
            "n_templates": len({item.get("template_id", "") for item in task.items}),
            "n_scenarios": len(scenarios),
            "n_clean_problems": len({item["clean_problem"] for item in task.items}),
        })
    return pd.DataFrame(rows)


def label_balance(task: TaskData) -> dict:
    """How balanced the labels are: share of the most frequent clean-correct answer among those
    that occur as answers at least twice, and the share of items whose clean side is side ``a``."""
    counts = Counter(item["clean_correct"] for item in task.items)
    repeated = {a: c for a, c in counts.items() if c > 1}
    pair_counts = Counter(tuple(sorted((i["clean_correct"], i["clean_incorrect"]))) for i in task.items)
    within_pair = []
    for (first, _second), total in pair_counts.items():
        if total >= 4:
            wins = sum(1 for i in task.items if i["clean_correct"] == first
                       and tuple(sorted((i["clean_correct"], i["clean_incorrect"]))) == (first, _second))
            within_pair.append(wins / total)
    return {
        "side_a_share": sum(i.get("clean_side") == "a" for i in task.items) / len(task.items),
        "top_answer_share": max(repeated.values()) / sum(repeated.values()) if repeated else None,
        "worst_pair_share": max((max(s, 1 - s) for s in within_pair), default=None),
    }


def prompt_tail(text: str, width: int = 110) -> str:
    """The end of a prompt for a table cell: line breaks shown as "↵", the start elided with "…".

    The end is what a reader needs (the query after any solved examples), and a literal newline
    would vanish in an HTML table.
    """
    flat = text.replace("\n", " ↵ ")
    return flat if len(flat) <= width else "…" + flat[-(width - 1):]


def _names(text: str, answer: str) -> bool:
    """Whether ``answer`` (stripped, unquoted) occurs in ``text`` as a whole word or number."""
    word = answer.strip().strip("'\"")
    return bool(word) and re.search(rf"(?<![\w.]){re.escape(word)}(?![\w])", text) is not None


def query_of(problem: str, other: str) -> str:
    """The query of a problem: its last example, where the minimal pair's detail sits.

    Both problems of an item share their solved examples, so the query starts after the last
    example separator before the two texts first differ: a blank line if that shared start has
    one (multi-line code examples), else a line break; a problem without either is all query.
    """
    shared = len(os.path.commonprefix([problem, other]))
    head = problem[:shared]
    cut = head.rfind("\n\n")
    start = cut + 2 if cut >= 0 else head.rfind("\n") + 1
    return problem[start:]


def copy_solvable_share(task: TaskData) -> float:
    """Share of items that copying alone solves: on both sides, the query names the correct answer
    and not the foil (answers compared as whole words, quotes stripped; see :func:`query_of`).

    A model that answers with the one candidate it sees in the query gets such an item
    both-correct without doing the task. A two-rule logic item (both conclusions named) or an
    arithmetic item (the answer named nowhere) is not copy-solvable.
    """
    copyable = 0
    for item in task.items:
        clean, corrupted = item["clean_problem"], item["corrupted_problem"]
        sides = [(query_of(clean, corrupted), item["clean_correct"], item["clean_incorrect"]),
                 (query_of(corrupted, clean), item["corrupted_correct"], item["corrupted_incorrect"])]
        copyable += all(_names(query, correct) and not _names(query, foil) for query, correct, foil in sides)
    return copyable / len(task.items)


def option_first_share(task: TaskData) -> float | None:
    """Share of items whose clean-correct answer is the first listed option (None if no options)."""
    hits = []
    for item in task.items:
        options = item.get("options")
        if isinstance(options, dict):  # Option1/Option2 labels
            hits.append(item["clean_correct"] == "Option1")
        elif isinstance(options, list) and len(options) == 2:
            correct = item["clean_correct"]
            hits.append(options[0] in correct if options[0] not in options[1] else options[0] == correct)
    return sum(hits) / len(hits) if hits else None


def alignment_rate(task: TaskData, tokenizer, format_prompt: Callable[[str, bool], str] | None = None) -> float:
    """Share of items whose clean and corrupted prompts have the same number of tokens.

    ``format_prompt(message, force_base_evaluation)`` turns a user message into the model's
    prompt string (e.g. applies its chat template); by default the raw message is used.
    Tokens are counted with ``add_special_tokens=False``, as in the study (book methods §1).
    """
    fmt = format_prompt or (lambda message, _force: message)
    same = 0
    for item in task.items:
        lengths = [
            len(tokenizer(fmt(assemble_message(task.config, item, cond), task.config.force_base_evaluation),
                          add_special_tokens=False)["input_ids"])
            for cond in ("clean", "corrupted")
        ]
        same += lengths[0] == lengths[1]
    return same / len(task.items)
