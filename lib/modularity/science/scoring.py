"""Evaluation: teacher-forced answer log-probabilities and the inclusion filter (book methods §2).

For a prompt p and an answer y = y₁..y_m (tokenized separately),

    LP(p, y) = Σ_j log softmax(logits[T−1+j−1])[y_j],   T = len(ids(p)).

Each item gets four scores with the *clean* answers y⁺ (``clean_correct``)
and y⁻ (``clean_incorrect``): LPcc, LPci (clean prompt) and LPrc, LPri
(corrupted prompt). An item is *both-correct* when LPcc > LPci **and**
LPri > LPrc. A task passes the filter when the both-correct fraction of its
token-aligned items (clean and corrupted prompts of equal length) is at least
the threshold (0.60 in the study). :func:`evaluate_task` can stop scoring a task as soon
as it can no longer reach the threshold (exact curtailment: the same decision).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets

from . import passes  # the forward passes, on the run's backend
from .batches import length_sorted_batches, make_batch, pad_id_of, plan_carriers
from .models import LoadedModel
from .stats import binomial_se  # one definition of the proportion's standard error
from .tasks.schema import TaskData, assemble_message

BOS_MODES = ("model", "study")


# --------------------------------------------------------------------------
# Tokenization
# --------------------------------------------------------------------------
@dataclass
class TokenizedTask:
    """Token ids of one task's items.

    ``clean``/``corrupted``: prompt ids per item; ``correct``/``incorrect``:
    ids of the clean answers y⁺ / y⁻ per item; ``aligned[n]`` is True when the
    two prompts of item n have the same length.
    """

    name: str
    domain: str
    clean: list[list[int]]
    corrupted: list[list[int]]
    correct: list[list[int]]
    incorrect: list[list[int]]

    @property
    def aligned(self) -> np.ndarray:
        return np.array([len(c) == len(r) for c, r in zip(self.clean, self.corrupted)])

    def __len__(self) -> int:
        return len(self.clean)


def encode_prompt(tokenizer, prompt: str, bos: str = "model") -> list[int]:
    """Prompt ids. ``bos="model"``: the tokenizer's own special tokens (BOS for
    models that expect one) unless the chat template already wrote the BOS;
    ``bos="study"``: never add special tokens (book methods §1, flaw §15.10)."""
    if bos not in BOS_MODES:
        raise ValueError(f"bos must be one of {BOS_MODES}, got {bos!r}")
    bos_token = getattr(tokenizer, "bos_token", None)
    add_special = bos == "model" and not (bos_token and prompt.startswith(bos_token))
    return tokenizer(prompt, add_special_tokens=add_special).input_ids


def encode_answer(tokenizer, answer: str) -> list[int]:
    """Answer ids, tokenized on their own without special tokens (book methods §1)."""
    ids = tokenizer(answer, add_special_tokens=False).input_ids
    if not ids:
        raise ValueError(f"answer {answer!r} tokenizes to no tokens")
    return ids


def task_prompts(loaded: LoadedModel, task: TaskData) -> tuple[list[str], list[str]]:
    """Clean and corrupted prompt strings (chat-formatted unless the task is raw)."""
    raw = task.config.force_base_evaluation
    clean = [loaded.format_prompt(assemble_message(task.config, it, "clean"), raw) for it in task.items]
    corrupted = [
        loaded.format_prompt(assemble_message(task.config, it, "corrupted"), raw) for it in task.items
    ]
    return clean, corrupted


def tokenize_task(loaded: LoadedModel, task: TaskData, bos: str = "model") -> TokenizedTask:
    tok = loaded.tokenizer
    clean, corrupted = task_prompts(loaded, task)
    return TokenizedTask(
        name=task.name,
        domain=task.domain,
        clean=[encode_prompt(tok, p, bos) for p in clean],
        corrupted=[encode_prompt(tok, p, bos) for p in corrupted],
        correct=[encode_answer(tok, it["clean_correct"]) for it in task.items],
        incorrect=[encode_answer(tok, it["clean_incorrect"]) for it in task.items],
    )


@torch.no_grad()
def sequence_logprobs(
    loaded: LoadedModel,
    prompts: list[list[int]],
    answers: list[list[int]],
    batch_size: int = 16,
    progress: bool = False,
    desc: str = "scoring",
) -> np.ndarray:
    """LP(prompt_n, answer_n) for every n, float64 array [N].

    Pairs that share a prompt share a forward pass where their answers allow it
    (:func:`modularity.science.batches.plan_carriers`); batches group sequences of similar length.
    """
    pad_id = pad_id_of(loaded.tokenizer)
    carriers, carrier_of = plan_carriers(prompts, answers)
    pairs_of: dict[int, list[int]] = {}
    for pair, carrier in enumerate(carrier_of):
        pairs_of.setdefault(carrier, []).append(pair)
    result = np.empty(len(prompts))
    lengths = [len(prompts[p]) + len(a) for p, a in carriers]
    for index in tqdm(length_sorted_batches(lengths, batch_size), desc=desc, disable=not progress, leave=False):
        row_of = {carrier: row for row, carrier in enumerate(index)}
        pairs = [pair for carrier in index for pair in pairs_of[carrier]]
        batch = make_batch(
            [prompts[carriers[c][0]] for c in index],
            [carriers[c][1] for c in index],
            pad_id,
            requests=[(row_of[carrier_of[pair]], answers[pair]) for pair in pairs],
        )
        result[pairs] = passes.logprobs(loaded, batch.to(loaded.device)).double().cpu().numpy()
    return result


# --------------------------------------------------------------------------
# Evaluation of a task
# --------------------------------------------------------------------------
def deciding_failures(n_aligned: int, threshold: float) -> int | None:
    """Fewest aligned items that are *not* both-correct with which a task of ``n_aligned``
    aligned items can no longer reach ``threshold``; None when no count can (no aligned items).

    The passing count is found with the comparison :func:`summarize_task` makes
    (``n_both / n_aligned >= threshold`` in floating point), so the stop is exact.
    """
    if n_aligned == 0:
        return None
    need = min(max(math.ceil(threshold * n_aligned), 0), n_aligned)  # both-correct items to pass
    while need > 0 and (need - 1) / n_aligned >= threshold:
        need -= 1
    while need < n_aligned and need / n_aligned < threshold:
        need += 1
    return n_aligned - need + 1


def _chunk_end(aligned: np.ndarray, start: int, wanted_aligned: int, chunk_items: int) -> int:
    """End of the next chunk: the fewest items from ``start`` that hold ``wanted_aligned``
    aligned items (the failures that could still decide), but at least ``chunk_items``."""
    reached = np.flatnonzero(np.cumsum(aligned[start:]) >= wanted_aligned)
    end = start + (reached[0] + 1 if len(reached) else len(aligned) - start)
    return min(len(aligned), max(end, start + chunk_items))


def evaluate_task(
    loaded: LoadedModel,
    task: TaskData,
    batch_size: int = 16,
    bos: str = "model",
    progress: bool = False,
    stop_below: float | None = None,
    chunk_items: int = 16,
) -> pd.DataFrame:
    """Per-item scores of one task, optionally stopped once it cannot pass the filter.

    Returns one row per item (``len(task)`` rows, in item order): ``item``, ``clean_len``,
    ``corrupted_len``, ``aligned``, ``scored``, ``lp_cc``, ``lp_ci``, ``lp_rc``, ``lp_ri``,
    ``clean_correct``, ``corrupted_correct``, ``both_correct``.

    ``stop_below=None`` (default) scores every item in one call of :func:`sequence_logprobs`.
    With a threshold, items are scored in order, in chunks, and scoring stops as soon as
    so many aligned items are not both-correct that the task cannot reach ``stop_below``
    even if every remaining aligned item were both-correct (exact curtailment:
    :func:`summarize_task` at that threshold decides as on the full evaluation; a task that
    could still pass is scored to the end). Each chunk is the fewest items that could
    decide (as many aligned items as failures are still missing), but at least
    ``chunk_items`` items so batches stay full. Rows not scored have ``scored`` False,
    NaN log-probs and False in the three correctness columns.
    """
    if chunk_items < 1:
        raise ValueError(f"chunk_items must be >= 1, got {chunk_items}")
    tokens = tokenize_task(loaded, task, bos)
    n, aligned = len(tokens), tokens.aligned
    lp = np.full((4, n), np.nan)
    scored = np.zeros(n, dtype=bool)
    limit = None if stop_below is None else deciding_failures(int(aligned.sum()), stop_below)
    start, failures = 0, 0
    while start < n:
        end = n if limit is None else _chunk_end(aligned, start, limit - failures, chunk_items)
        chunk = range(start, end)
        clean = [tokens.clean[i] for i in chunk]
        corrupted = [tokens.corrupted[i] for i in chunk]
        correct = [tokens.correct[i] for i in chunk]
        incorrect = [tokens.incorrect[i] for i in chunk]
        scores = sequence_logprobs(loaded, clean * 2 + corrupted * 2, correct + incorrect + correct + incorrect,
                                   batch_size, progress, desc=task.name)
        lp[:, start:end] = scores.reshape(4, end - start)
        scored[start:end] = True
        cc, ci, rc, ri = lp[:, start:end]
        failures += int((aligned[start:end] & ~((cc > ci) & (ri > rc))).sum())
        start = end
        if limit is not None and failures >= limit:
            break
    frame = pd.DataFrame(
        {
            "item": np.arange(n),
            "clean_len": [len(p) for p in tokens.clean],
            "corrupted_len": [len(p) for p in tokens.corrupted],
            "aligned": aligned,
            "scored": scored,
            "lp_cc": lp[0],
            "lp_ci": lp[1],
            "lp_rc": lp[2],
            "lp_ri": lp[3],
        }
    )
    # comparisons with NaN are False: unscored rows are never correct
    frame["clean_correct"] = frame.lp_cc > frame.lp_ci
    frame["corrupted_correct"] = frame.lp_ri > frame.lp_rc
    frame["both_correct"] = frame.clean_correct & frame.corrupted_correct
    return frame


def summarize_task(items: pd.DataFrame, threshold: float = 0.60) -> dict:
    """Accuracies over the token-aligned items, baselines C and R, and the filter decision.

    Accuracies, their SE, C and R use the aligned items that were scored (all of them
    unless :func:`evaluate_task` stopped early; a frame without a ``scored`` column counts
    as fully scored). ``n_aligned`` counts every aligned item, ``n_scored`` the scored
    items. A task stopped early fails with a reason that gives the best accuracy it could
    still have reached. ``passes`` is False with a ``reason`` when the task is excluded;
    no NaN is left unexplained.
    """
    scored_mask = items["scored"].astype(bool) if "scored" in items else pd.Series(True, index=items.index)
    aligned_mask = items.aligned.astype(bool)
    n_aligned = int(aligned_mask.sum())
    aligned = items[aligned_mask & scored_mask]
    n_scored_aligned = len(aligned)
    both = aligned[aligned.both_correct.astype(bool)]
    summary = {
        "n_items": len(items),
        "n_aligned": n_aligned,
        "n_misaligned": len(items) - n_aligned,
        "n_scored": int(scored_mask.sum()),
        "clean_accuracy": aligned.clean_correct.mean() if n_scored_aligned else float("nan"),
        "corrupted_accuracy": aligned.corrupted_correct.mean() if n_scored_aligned else float("nan"),
        "both_correct_accuracy": len(both) / n_scored_aligned if n_scored_aligned else float("nan"),
        "n_both_correct": len(both),
        "C": float((both.lp_cc - both.lp_ci).mean()) if len(both) else float("nan"),
        "R": float((both.lp_rc - both.lp_ri).mean()) if len(both) else float("nan"),
    }
    summary["both_correct_se"] = binomial_se(summary["both_correct_accuracy"], n_scored_aligned)
    if n_aligned == 0:
        passes, reason = False, "no token-aligned items"
    elif summary["n_scored"] < len(items):
        failures = n_scored_aligned - len(both)
        best = (n_aligned - failures) / n_aligned
        if best >= threshold:
            raise ValueError(
                f"scoring stopped after {summary['n_scored']} of {len(items)} items, but the task could "
                f"still reach {best:.2f} >= threshold {threshold:.2f}: evaluate it without stop_below "
                "or with this threshold"
            )
        passes = False
        reason = (f"stopped after {summary['n_scored']} of {len(items)} items: {failures} of {n_aligned} "
                  f"aligned items not both-correct, at most {n_aligned - failures}/{n_aligned} < {threshold:.2f}")
    elif summary["both_correct_accuracy"] < threshold:
        passes = False
        reason = f"both-correct {summary['both_correct_accuracy']:.2f} < {threshold:.2f}"
    else:
        passes, reason = True, ""
    summary.update(passes=passes, reason=reason)
    return summary


def both_correct_indices(items: pd.DataFrame) -> np.ndarray:
    """Indices of the aligned, both-correct items (used by attribution and ablation)."""
    return items.loc[items.aligned & items.both_correct, "item"].to_numpy()


def summarize_suite(item_tables: dict, domains: dict, threshold: float = 0.60) -> pd.DataFrame:
    """One row per task (``task``, ``domain`` and the fields of :func:`summarize_task`)."""
    rows = [
        {"task": name, "domain": domains[name], **summarize_task(items, threshold)}
        for name, items in item_tables.items()
    ]
    return pd.DataFrame(rows)


def passing_by_domain(summary: pd.DataFrame) -> pd.DataFrame:
    """Tasks passing the filter per domain: ``domain``, ``n_tasks``, ``n_passing``, ``share``."""
    table = summary.groupby("domain", sort=False).agg(n_tasks=("task", "size"), n_passing=("passes", "sum"))
    table["share"] = table.n_passing / table.n_tasks
    return table.reset_index()
