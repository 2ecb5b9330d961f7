"""Batches of ``prompt ⊕ answer`` sequences, and the one plain forward that scores them.

A :class:`Batch` lays token ids out right-padded, with the positions whose logits predict each
answer token; :func:`plan_carriers` finds the fewest sequences that score a set of
(prompt, answer) pairs; :func:`answer_logprobs` runs a Hugging Face causal LM on a batch and
applies the output head at the answer positions only. Every stage builds its batches here, and
the hook backend of :mod:`modularity.science.passes` scores them with :func:`answer_logprobs`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["Batch", "make_batch", "pad_id_of", "answer_logprobs", "slot_logprobs", "plan_carriers", "length_sorted_batches"]


@dataclass
class Batch:
    """Right-padded ``prompt ⊕ answer`` sequences and the answer tokens to score on them.

    ``input_ids``/``attention_mask``: [B, S]; ``last_prompt``: [B] index T−1.
    ``answer_rows``/``answer_pos``/``answer_ids``/``answer_slot``: [A], one entry per
    scored answer token (row, position whose logits predict it, token id, output slot).
    ``n_slots`` outputs; by default one per row (the row's own answer).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    last_prompt: torch.Tensor
    answer_rows: torch.Tensor
    answer_pos: torch.Tensor
    answer_ids: torch.Tensor
    answer_slot: torch.Tensor
    n_slots: int

    def to(self, device) -> "Batch":
        moved = [t.to(device) for t in (self.input_ids, self.attention_mask, self.last_prompt,
                                        self.answer_rows, self.answer_pos, self.answer_ids, self.answer_slot)]
        return Batch(*moved, self.n_slots)


def pad_id_of(tokenizer) -> int:
    """The token id batches are right-padded with: the tokenizer's pad token, else 0 (padded
    positions are masked out and never scored, so any id gives the same values)."""
    return tokenizer.pad_token_id or 0


def make_batch(
    prompts: list[list[int]],
    answers: list[list[int]],
    pad_id: int = 0,
    requests: list[tuple[int, list[int]]] | None = None,
) -> Batch:
    """Concatenate each prompt with its answer and right-pad (real positions unchanged).

    ``requests``: optional ``(row, answer)`` pairs to score instead of each row's own
    answer. A request may use a row whose answer agrees with it on every token but
    its last: the logits that predict the request's tokens are then all computed by
    that row's forward pass (causal attention), so one sequence scores both.
    """
    lengths = [len(p) + len(a) for p, a in zip(prompts, answers)]
    width = max(lengths)
    input_ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for row, (prompt, answer) in enumerate(zip(prompts, answers)):
        sequence = prompt + answer
        input_ids[row, : len(sequence)] = torch.tensor(sequence)
        attention_mask[row, : len(sequence)] = 1
    if requests is None:
        requests = list(enumerate(answers))
    rows, pos, ids, slots = [], [], [], []
    for slot, (row, answer) in enumerate(requests):
        if answer[:-1] != answers[row][: len(answer) - 1]:
            raise ValueError("a request must agree with its row's answer on all tokens but its last")
        start = len(prompts[row]) - 1
        rows += [row] * len(answer)
        pos += list(range(start, start + len(answer)))
        ids += answer
        slots += [slot] * len(answer)
    return Batch(
        input_ids,
        attention_mask,
        torch.tensor([len(p) - 1 for p in prompts]),
        torch.tensor(rows),
        torch.tensor(pos),
        torch.tensor(ids),
        torch.tensor(slots),
        len(requests),
    )


def answer_logprobs(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Summed answer log-probs per output slot, [n_slots] (differentiable if grads are on).

    Runs the decoder once and applies the output head only at the answer
    positions: for large vocabularies the head dominates the cost otherwise.
    """
    hidden = model.base_model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
    ).last_hidden_state
    selected = hidden[batch.answer_rows, batch.answer_pos]  # [A, d_model]
    logits = model.get_output_embeddings()(selected).float()
    softcap = getattr(model.config.get_text_config(), "final_logit_softcapping", None)
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return slot_logprobs(logits, batch.answer_ids, batch.answer_slot, batch.n_slots)


def slot_logprobs(logits: torch.Tensor, answer_ids: torch.Tensor, answer_slot: torch.Tensor,
                  n_slots: int) -> torch.Tensor:
    """Summed log-probs per output slot [n_slots] of the answer tokens ``answer_ids`` [A], from the
    logits that predict them [A, V] (float): both backends score answers through this function."""
    token_lp = torch.log_softmax(logits, dim=-1).gather(1, answer_ids[:, None])[:, 0]
    return torch.zeros(n_slots, dtype=token_lp.dtype, device=token_lp.device).index_add(0, answer_slot, token_lp)


def plan_carriers(
    prompts: list[list[int]], answers: list[list[int]], keys: list | None = None
) -> tuple[list[tuple[int, list[int]]], list[int]]:
    """Fewest ``prompt ⊕ answer`` sequences that score every (prompt, answer) pair.

    Returns ``carriers`` as ``(prompt index, answer tokens)`` and, per pair, the index
    of the carrier that scores it: a pair reuses a carrier with the same prompt whose
    answer agrees with it on every token but its last (e.g. two one-token answers
    share one sequence). ``keys`` (default: the prompt tokens) says which pairs may
    share; pass item identities when equal prompts must not share.
    """
    carriers: list[tuple[int, list[int]]] = []
    carrier_of = [0] * len(prompts)
    by_prompt: dict[tuple, list[int]] = {}
    first_index: dict[tuple, int] = {}
    order = sorted(range(len(prompts)), key=lambda i: -len(answers[i]))
    for i in order:
        key = tuple(prompts[i]) if keys is None else keys[i]
        first_index.setdefault(key, i)
        answer = answers[i]
        for c in by_prompt.get(key, []):
            carrier_answer = carriers[c][1]
            if len(carrier_answer) >= len(answer) - 1 and carrier_answer[: len(answer) - 1] == answer[:-1]:
                carrier_of[i] = c
                break
        else:
            carriers.append((first_index[key], answer))
            by_prompt.setdefault(key, []).append(len(carriers) - 1)
            carrier_of[i] = len(carriers) - 1
    return carriers, carrier_of


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Index batches of similar length (less padding); order restored by the caller."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
