"""Batch layout and carrier planning (``modularity.science.batches``): pure token bookkeeping, no model."""
from __future__ import annotations

import torch

from modularity.science.batches import length_sorted_batches, make_batch, plan_carriers


def test_plan_carriers_shares_a_sequence_only_where_the_answers_allow():
    prompts = [[1, 2], [1, 2], [1, 2], [3]]
    answers = [[7], [8], [7, 9], [7]]  # one-token answers share; [7, 9] carries [7] and [8]
    carriers, carrier_of = plan_carriers(prompts, answers)
    assert [(prompts[p], answer) for p, answer in carriers] == [([1, 2], [7, 9]), ([3], [7])]
    assert carrier_of == [0, 0, 0, 1]
    # With item keys, equal prompts of different items never share.
    carriers, carrier_of = plan_carriers(prompts, answers, keys=[0, 1, 0, 2])
    assert len(carriers) == 3 and carrier_of[0] == carrier_of[2] != carrier_of[1]


def test_every_request_is_scored_at_the_positions_that_predict_it():
    prompts, answers = [[5, 6, 7], [8]], [[1, 2], [3]]
    batch = make_batch(prompts, answers, pad_id=0, requests=[(0, [1, 2]), (0, [1, 4]), (1, [3])])
    assert batch.input_ids.tolist() == [[5, 6, 7, 1, 2], [8, 3, 0, 0, 0]]
    assert batch.attention_mask.sum(1).tolist() == [5, 2]
    # Position T−1+j predicts answer token j; request 1 reuses row 0's forward.
    assert batch.answer_pos.tolist() == [2, 3, 2, 3, 0]
    assert batch.answer_ids.tolist() == [1, 2, 1, 4, 3]
    assert batch.answer_slot.tolist() == [0, 0, 1, 1, 2]
    assert torch.equal(batch.last_prompt, torch.tensor([2, 0]))


def test_a_request_must_agree_with_its_row_on_all_but_its_last_token():
    try:
        make_batch([[5]], [[1, 2]], requests=[(0, [9, 2])])
    except ValueError as error:
        assert "agree" in str(error)
    else:
        raise AssertionError("a request that its row cannot score was accepted")


def test_length_sorted_batches_cover_every_index_once():
    lengths = [5, 1, 4, 1, 3]
    batches = length_sorted_batches(lengths, 2)
    assert sorted(i for b in batches for i in b) == list(range(5))
    assert [[lengths[i] for i in b] for b in batches] == [[1, 1], [3, 4], [5]]
