"""Teacher-forced scoring, tokenization and the inclusion filter (``modularity.science.scoring``, book methods §1, §2)."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import FAMILY_NAMES
from modularity.science import scoring
from modularity.science.models import format_prompt
from modularity.science.batches import answer_logprobs, length_sorted_batches, make_batch
from modularity.science.scoring import binomial_se, both_correct_indices, encode_prompt, evaluate_task, sequence_logprobs, summarize_task
from modularity.science.tasks.schema import PromptConfig, TaskData



# mixed prompt and answer lengths, so rows are padded differently
PROMPTS = [[5, 60, 700, 9000, 33], [44, 1023], [7, 301, 2900, 61, 8, 99, 12], [400]]
ANSWERS = [[17, 250], [3000], [55, 66, 77], [808, 909, 1001, 12]]


def naive_logprob(model, prompt, answer) -> float:
    """One unpadded full forward, log_softmax over the whole vocabulary, summed over the answer."""
    ids = torch.tensor([prompt + answer])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
    T = len(prompt)
    return float(sum(logp[T - 1 + j, token] for j, token in enumerate(answer)))


# --------------------------------------------------------------------------
# Log-probabilities
# --------------------------------------------------------------------------
def test_make_batch_layout():
    batch = make_batch(PROMPTS, ANSWERS, pad_id=2)
    assert batch.input_ids.shape == (4, 10)
    assert batch.input_ids[1].tolist() == [44, 1023, 3000] + [2] * 7
    assert batch.attention_mask[1].tolist() == [1, 1, 1] + [0] * 7
    assert batch.last_prompt.tolist() == [4, 1, 6, 0]
    assert batch.answer_rows.tolist() == [0, 0, 1, 2, 2, 2, 3, 3, 3, 3]
    assert batch.answer_pos.tolist() == [4, 5, 1, 6, 7, 8, 0, 1, 2, 3]
    assert batch.answer_ids.tolist() == sum(ANSWERS, [])


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_answer_logprobs_equal_naive_forward(tiny_models, family):
    loaded = tiny_models[family]
    expected = [naive_logprob(loaded.model, p, a) for p, a in zip(PROMPTS, ANSWERS)]
    with torch.no_grad():
        got = answer_logprobs(loaded.model, make_batch(PROMPTS, ANSWERS, pad_id=loaded.tokenizer.pad_token_id))
    assert got.shape == (4,)
    np.testing.assert_allclose(got.numpy(), expected, atol=2e-4, rtol=1e-5)
    # the scores are not trivially equal (the prompt matters)
    assert np.ptp(expected) > 0.1


def test_answer_logprobs_applies_final_logit_softcapping():
    """Gemma-style logit soft-capping: the decoder+head shortcut must cap the logits as the model does."""
    import transformers as tf

    from conftest import TINY

    torch.manual_seed(0)
    config = tf.Gemma3TextConfig(vocab_size=10_000, head_dim=8, sliding_window=16, final_logit_softcapping=2.0, **TINY)
    model = tf.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(50.0)  # raw logits far beyond the cap
    expected = [naive_logprob(model, p, a) for p, a in zip(PROMPTS, ANSWERS)]
    with torch.no_grad():
        got = answer_logprobs(model, make_batch(PROMPTS, ANSWERS))
        raw = model.lm_head(model.model(torch.tensor([PROMPTS[0]])).last_hidden_state)
    assert raw.abs().max() > 10 * 2.0  # the cap matters here
    np.testing.assert_allclose(got.numpy(), expected, atol=2e-4, rtol=1e-5)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_sequence_logprobs_independent_of_batch_size_and_order(tiny_models, family):
    loaded = tiny_models[family]
    reference = sequence_logprobs(loaded, PROMPTS, ANSWERS, batch_size=1)
    assert reference.dtype == np.float64 and reference.shape == (4,)
    for batch_size in (3, 16):
        np.testing.assert_allclose(sequence_logprobs(loaded, PROMPTS, ANSWERS, batch_size=batch_size),
                                   reference, atol=2e-5, rtol=0)
    order = [2, 0, 3, 1]
    shuffled = sequence_logprobs(loaded, [PROMPTS[i] for i in order], [ANSWERS[i] for i in order], batch_size=3)
    np.testing.assert_allclose(shuffled, reference[order], atol=2e-5, rtol=0)


def test_sequence_logprobs_pairs_sharing_prompts(tiny_models):
    """Pairs with the same prompt (one-token answers, answers agreeing on all tokens but the last,
    answers that do not) are scored exactly as on their own, in any order and batch size."""
    loaded = tiny_models["qwen2"]
    p1, p2, p3 = [5, 60, 700, 9000], [44, 1023, 7], [400]
    pairs = [(p1, [10]), (p1, [20]), (p1, [10, 30]), (p1, [10, 40]), (p1, [10, 30, 50]), (p1, [60, 70]),
             (p2, [10]), (p2, [10]), (p2, [30, 10]), (p3, [5, 6]), (p1, [10])]
    prompts, answers = [list(p) for p, _ in pairs], [list(a) for _, a in pairs]
    expected = np.array([naive_logprob(loaded.model, p, a) for p, a in pairs])
    for batch_size, order in ((1, range(11)), (3, [10, 4, 2, 0, 9, 8, 7, 6, 5, 3, 1]), (16, range(11))):
        order = list(order)
        got = sequence_logprobs(loaded, [prompts[i] for i in order], [answers[i] for i in order], batch_size)
        np.testing.assert_allclose(got, expected[order], atol=2e-4, rtol=1e-5)
    assert prompts == [list(p) for p, _ in pairs] and answers == [list(a) for _, a in pairs]  # inputs untouched


def test_length_sorted_batches_cover_every_index_once():
    lengths = [5, 1, 9, 3, 3, 7, 2]
    batches = length_sorted_batches(lengths, 3)
    assert sorted(sum(batches, [])) == list(range(7))
    assert all(len(b) <= 3 for b in batches)
    assert [lengths[i] for i in sum(batches, [])] == sorted(lengths)


# --------------------------------------------------------------------------
# Tokenization and BOS (book methods §1, difference 10)
# --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bos_tokenizer(tiny_model_dirs):
    """The same vocabulary, but a tokenizer that adds BOS by itself (like Llama's)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model_dirs["llama"]), add_bos_token=True)
    assert tok("hi").input_ids[0] == tok.bos_token_id
    return tok


def test_bos_rule_tokenizer_adding_bos(bos_tokenizer):
    bos_id, text = bos_tokenizer.bos_token_id, "The cat sat on the"
    plain = bos_tokenizer(text, add_special_tokens=False).input_ids
    assert encode_prompt(bos_tokenizer, text, "model") == [bos_id] + plain
    assert encode_prompt(bos_tokenizer, text, "study") == plain
    # the prompt already starts with the BOS text (a chat template wrote it): no second BOS
    written = bos_tokenizer.bos_token + text
    ids = encode_prompt(bos_tokenizer, written, "model")
    assert ids.count(bos_id) == 1 and ids[0] == bos_id
    assert encode_prompt(bos_tokenizer, written, "study") == ids


def test_bos_rule_tokenizer_without_bos(base_tokenizer):
    text = "The cat sat on the"
    assert base_tokenizer(text).input_ids == base_tokenizer(text, add_special_tokens=False).input_ids
    assert encode_prompt(base_tokenizer, text, "model") == encode_prompt(base_tokenizer, text, "study")
    chat = format_prompt(base_tokenizer, text)
    ids = encode_prompt(base_tokenizer, chat, "model")
    # the template's special tokens are single tokens, read from the text
    assert ids[0] == base_tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids.count(base_tokenizer.convert_tokens_to_ids("<|im_start|>")) == 3


def test_bos_mode_checked(base_tokenizer):
    with pytest.raises(ValueError, match="bos must be one of"):
        encode_prompt(base_tokenizer, "x", "always")


def test_encode_answer(base_tokenizer):
    assert scoring.encode_answer(base_tokenizer, " Paris") == base_tokenizer(" Paris", add_special_tokens=False).input_ids
    with pytest.raises(ValueError, match="no tokens"):
        scoring.encode_answer(base_tokenizer, "")


# --------------------------------------------------------------------------
# evaluate_task and the filter
# --------------------------------------------------------------------------
def _item(clean, corrupted, correct=" mat", incorrect=" dog"):
    return dict(clean_problem=clean, corrupted_problem=corrupted, clean_correct=correct,
                clean_incorrect=incorrect, corrupted_correct=incorrect, corrupted_incorrect=correct)


def _task(raw=True, items=None):
    items = items or [
        _item("The cat sat on the", "The dog sat on the"),                # aligned
        _item("The cat sat on the", "The big black dog sat on the"),      # misaligned
        _item("A bird flew over the", "A fish swam under the"),           # aligned
        _item("It was", "It was very very much"),                         # misaligned
    ]
    return TaskData("toy", "Lan", PromptConfig(path="toy", force_base_evaluation=raw), items)


def test_evaluate_task_flags_misaligned_items(tiny_models):
    loaded = tiny_models["llama"]
    tok = loaded.tokenizer
    task = _task()
    frame = evaluate_task(loaded, task, batch_size=3)
    clean_len = [len(encode_prompt(tok, it["clean_problem"])) for it in task.items]
    corrupted_len = [len(encode_prompt(tok, it["corrupted_problem"])) for it in task.items]
    assert frame.clean_len.tolist() == clean_len and frame.corrupted_len.tolist() == corrupted_len
    assert frame.aligned.tolist() == [True, False, True, False]
    assert frame.item.tolist() == [0, 1, 2, 3]
    # the four scores are the teacher-forced log-probs of the clean answers
    for n, it in list(enumerate(task.items))[:2]:
        c = encode_prompt(tok, it["clean_problem"])
        r = encode_prompt(tok, it["corrupted_problem"])
        y_pos, y_neg = (scoring.encode_answer(tok, it[k]) for k in ("clean_correct", "clean_incorrect"))
        expected = [naive_logprob(loaded.model, p, a) for p, a in ((c, y_pos), (c, y_neg), (r, y_pos), (r, y_neg))]
        np.testing.assert_allclose(frame.loc[n, ["lp_cc", "lp_ci", "lp_rc", "lp_ri"]].to_numpy(float),
                                   expected, atol=2e-4)
    summary = summarize_task(frame)
    assert (summary["n_items"], summary["n_aligned"], summary["n_misaligned"]) == (4, 2, 2)
    aligned = frame[frame.aligned]
    assert summary["both_correct_accuracy"] == aligned.both_correct.sum() / 2
    assert summary["clean_accuracy"] == aligned.clean_correct.mean()


def test_evaluate_task_uses_the_chat_template_unless_raw(tiny_models):
    loaded = tiny_models["llama"]
    chat, raw = evaluate_task(loaded, _task(raw=False)), evaluate_task(loaded, _task(raw=True))
    header = len(encode_prompt(loaded.tokenizer, format_prompt(loaded.tokenizer, "")))
    assert (chat.clean_len - raw.clean_len == header).all()
    assert not np.allclose(chat.lp_cc, raw.lp_cc)


def test_both_correct_definition(tiny_models, monkeypatch):
    """clean correct: LPcc > LPci; corrupted correct: LPri > LPrc (the switch worked); strict."""
    lp_cc = np.array([-1.0, -1.0, -3.0, -1.0, -2.0])
    lp_ci = np.array([-2.0, -2.0, -1.0, -1.0, -4.0])
    lp_rc = np.array([-3.0, -1.0, -3.0, -2.0, -2.0])
    lp_ri = np.array([-1.0, -2.0, -1.0, -1.0, -2.0])
    # expected:  both   clean  corr.  corr.  clean(tie in r)
    fake = np.concatenate([lp_cc, lp_ci, lp_rc, lp_ri])
    monkeypatch.setattr(scoring, "sequence_logprobs", lambda *a, **k: fake)
    items = [_item("The cat sat on the", "The dog sat on the")] * 5
    frame = evaluate_task(tiny_models["llama"], _task(items=items))
    assert frame.clean_correct.tolist() == [True, True, False, False, True]
    assert frame.corrupted_correct.tolist() == [True, False, True, True, False]
    assert frame.both_correct.tolist() == [True, False, False, False, False]
    np.testing.assert_array_equal(frame.lp_rc, lp_rc)


def _frame(aligned, both, cc=None, ci=None, rc=None, ri=None):
    n = len(aligned)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "item": np.arange(n), "aligned": aligned,
        "lp_cc": cc if cc is not None else rng.normal(size=n),
        "lp_ci": ci if ci is not None else rng.normal(size=n),
        "lp_rc": rc if rc is not None else rng.normal(size=n),
        "lp_ri": ri if ri is not None else rng.normal(size=n),
    })
    frame["clean_correct"] = frame.lp_cc > frame.lp_ci
    frame["corrupted_correct"] = frame.lp_ri > frame.lp_rc
    frame["both_correct"] = frame.clean_correct & frame.corrupted_correct
    if both is not None:
        assert frame.both_correct.tolist() == list(both)
    return frame


def test_summary_excludes_misaligned_items_from_denominator():
    # items 0-2 aligned (1 both-correct); items 3-5 misaligned, all both-correct
    cc = np.array([0.0, 0.0, -1.0, 0.0, 0.0, 0.0])
    ci = np.array([-1.0, -1.0, 0.0, -1.0, -1.0, -1.0])
    rc = np.array([-2.0, 0.0, -2.0, -2.0, -2.0, -2.0])
    ri = np.array([0.0, -1.0, 0.0, 0.0, 0.0, 0.0])
    frame = _frame([True, True, True, False, False, False], [True, False, False, True, True, True], cc, ci, rc, ri)
    summary = summarize_task(frame)
    assert summary["n_aligned"] == 3 and summary["n_misaligned"] == 3
    assert summary["both_correct_accuracy"] == pytest.approx(1 / 3)
    assert summary["clean_accuracy"] == pytest.approx(2 / 3)
    assert summary["corrupted_accuracy"] == pytest.approx(2 / 3)
    assert summary["n_both_correct"] == 1
    assert summary["C"] == 1.0 and summary["R"] == -2.0  # from the aligned both-correct item only
    assert both_correct_indices(frame).tolist() == [0]
    assert summary["both_correct_se"] == pytest.approx(math.sqrt((1 / 3) * (2 / 3) / 3))
    assert summary["passes"] is False and "0.33 < 0.60" in summary["reason"]


def test_summary_threshold_edge():
    both = [True, True, True, False, False]
    cc = np.array([0.0, 0.0, 0.0, -1.0, -1.0])
    ci = np.array([-1.0, -2.0, -3.0, 0.0, 0.0])
    rc = np.array([-1.0, -1.0, -1.0, -1.0, -1.0])
    ri = np.array([0.0, 0.0, 0.0, 0.0, 0.0])
    frame = _frame([True] * 5, both, cc, ci, rc, ri)
    summary = summarize_task(frame, threshold=0.6)
    assert summary["both_correct_accuracy"] == 0.6
    assert summary["passes"] is True and summary["reason"] == ""
    assert summary["C"] == pytest.approx(2.0) and summary["R"] == pytest.approx(-1.0)
    below = summarize_task(frame, threshold=0.61)
    assert below["passes"] is False and "<" in below["reason"]


def test_summary_no_aligned_items():
    frame = _frame([False, False], None)
    summary = summarize_task(frame)
    assert summary["passes"] is False
    assert summary["reason"] == "no token-aligned items"
    assert summary["n_aligned"] == 0 and summary["n_both_correct"] == 0
    for key in ("clean_accuracy", "both_correct_accuracy", "C", "R", "both_correct_se"):
        assert math.isnan(summary[key])


def test_summary_no_both_correct_items_fails_with_reason():
    frame = _frame([True, True], [False, False], cc=np.array([-1.0, -1.0]), ci=np.zeros(2),
                   rc=np.zeros(2), ri=np.zeros(2))
    summary = summarize_task(frame)
    assert summary["passes"] is False and summary["reason"]
    assert summary["both_correct_accuracy"] == 0.0 and math.isnan(summary["C"])


@pytest.mark.parametrize("seed", range(5))
def test_baselines_c_positive_r_negative(seed):
    rng = np.random.default_rng(seed)
    n = 50
    frame = _frame(rng.random(n) < 0.8, None, *(rng.normal(size=n) for _ in range(4)))
    summary = summarize_task(frame)
    assert summary["n_both_correct"] > 0
    assert summary["C"] > 0 > summary["R"]
    both = frame[frame.aligned & frame.both_correct]
    assert summary["C"] == pytest.approx((both.lp_cc - both.lp_ci).mean())
    assert summary["R"] == pytest.approx((both.lp_rc - both.lp_ri).mean())


def test_binomial_se():
    assert binomial_se(0.5, 100) == pytest.approx(0.05)
    assert binomial_se(0.0, 10) == 0.0 and binomial_se(1.0, 10) == 0.0
    assert binomial_se(0.2, 25) == pytest.approx(0.08)
    assert math.isnan(binomial_se(0.5, 0))


def test_summarize_suite_and_passing_by_domain():
    good = _frame([True] * 2, [True, True], cc=np.zeros(2), ci=-np.ones(2), rc=-np.ones(2), ri=np.zeros(2))
    bad = _frame([True] * 2, [False, False], cc=-np.ones(2), ci=np.zeros(2), rc=-np.ones(2), ri=np.zeros(2))
    suite = scoring.summarize_suite({"a": good, "b": bad, "c": good}, {"a": "MD", "b": "MD", "c": "Lan"})
    assert suite.passes.tolist() == [True, False, True]
    by_domain = scoring.passing_by_domain(suite).set_index("domain")
    assert by_domain.loc["MD", "n_tasks"] == 2 and by_domain.loc["MD", "n_passing"] == 1
    assert by_domain.loc["MD", "share"] == 0.5 and by_domain.loc["Lan", "share"] == 1.0


# --------------------------------------------------------------------------
# Exact early stopping (curtailment) of evaluate_task
# --------------------------------------------------------------------------
def _numbered_task(n, misaligned=()):
    """Items "The cat number i sat on the" / "The dog number i …" (misaligned ones get an extra word)."""
    items = [_item(f"The cat number {i} sat on the",
                   f"The dog number {i} sat on the" + (" very" if i in misaligned else ""))
             for i in range(n)]
    return _task(items=items)


def _scripted_logprobs(outcomes, calls):
    """A stand-in for sequence_logprobs: item i (read from its prompt) is both-correct iff
    ``outcomes[i]``; otherwise the clean prompt prefers the wrong answer. Logs every pair scored."""
    import re

    def fake(loaded, prompts, answers, *args, **kwargs):
        out = []
        for prompt, answer in zip(prompts, answers):
            text = loaded.tokenizer.decode(prompt)
            item = int(re.search(r"number (\d+)", text).group(1))
            clean, says_mat = " cat " in text, loaded.tokenizer.decode(answer) == " mat"
            prefers_mat = clean and outcomes[item]  # corrupted prompts always prefer " dog"
            calls.append(item)
            out.append(-1.0 if says_mat == prefers_mat else -2.0 - item / 100)
        return np.array(out)

    return fake


def test_deciding_failures_matches_the_filter_comparison():
    for n in range(1, 101):
        for threshold in (0.01, 0.07, 0.1, 0.3, 0.5, 0.55, 0.6, 0.7, 0.9, 1.0, 1 / 3, 2 / 3):
            limit = scoring.deciding_failures(n, threshold)
            # with limit - 1 failures the task can still pass, with limit it cannot
            assert (n - limit + 1) / n >= threshold or limit == 1 and n / n < threshold
            assert (n - limit) / n < threshold
    assert scoring.deciding_failures(64, 0.6) == 26  # 39 of 64 pass, 38 do not
    # 55/100 passes at 0.55 although 0.55 * 100 == 55.00000000000001 rounds up to 56
    assert scoring.deciding_failures(100, 0.55) == 46
    assert scoring.deciding_failures(0, 0.6) is None


def test_hopeless_task_stops_after_the_deciding_items(tiny_models, monkeypatch):
    loaded = tiny_models["llama"]
    calls = []
    monkeypatch.setattr(scoring, "sequence_logprobs", _scripted_logprobs([False] * 64, calls))
    task = _numbered_task(64)
    frame = evaluate_task(loaded, task, stop_below=0.6)
    # 26 failures decide at 60% (at most 38/64 < 0.60): one chunk of 26 items, 4 pairs each
    assert frame.scored.tolist() == [True] * 26 + [False] * 38
    assert sorted(set(calls)) == list(range(26)) and len(calls) == 4 * 26
    assert len(frame) == 64 and frame.item.tolist() == list(range(64))
    unscored = frame[~frame.scored]
    assert unscored[["lp_cc", "lp_ci", "lp_rc", "lp_ri"]].isna().all().all()
    assert not unscored[["clean_correct", "corrupted_correct", "both_correct"]].any().any()
    summary = summarize_task(frame, 0.6)
    assert summary["n_scored"] == 26 and summary["n_items"] == 64 and summary["n_aligned"] == 64
    assert summary["passes"] is False
    assert summary["reason"] == "stopped after 26 of 64 items: 26 of 64 aligned items not both-correct, at most 38/64 < 0.60"
    assert summary["both_correct_accuracy"] == 0.0 and summary["clean_accuracy"] == 0.0
    assert both_correct_indices(frame).size == 0
    # fixed chunks of 16 items: the first chunk cannot decide, the second does
    assert evaluate_task(loaded, task, stop_below=0.6, chunk_items=16).scored.sum() == 26
    assert evaluate_task(loaded, task, stop_below=0.6, chunk_items=20).scored.sum() == 26
    assert evaluate_task(loaded, task, stop_below=0.6, chunk_items=40).scored.sum() == 40


def test_task_that_can_still_pass_is_never_stopped(tiny_models, monkeypatch):
    loaded = tiny_models["llama"]
    calls = []
    # 25 failures first, then 39 successes: 39/64 passes at 0.6, and every prefix could still pass
    outcomes = [False] * 25 + [True] * 39
    monkeypatch.setattr(scoring, "sequence_logprobs", _scripted_logprobs(outcomes, calls))
    task = _numbered_task(64)
    for chunk_items in (1, 7, 16, 64):
        frame = evaluate_task(loaded, task, stop_below=0.6, chunk_items=chunk_items)
        assert frame.scored.all(), chunk_items
        summary = summarize_task(frame, 0.6)
        assert summary["passes"] is True and summary["n_scored"] == 64
        assert summary["both_correct_accuracy"] == 39 / 64
    # one more failure and it is decided right there, whatever the chunk size
    outcomes[25] = False
    for chunk_items in (1, 7, 26):
        frame = evaluate_task(loaded, task, stop_below=0.6, chunk_items=chunk_items)
        assert frame.scored.sum() == 26, chunk_items
        assert summarize_task(frame, 0.6)["passes"] is False


def test_misaligned_items_are_not_counted_as_failures(tiny_models, monkeypatch):
    loaded = tiny_models["llama"]
    misaligned = {0, 3, 4, 10, 11, 12, 30}
    monkeypatch.setattr(scoring, "sequence_logprobs", _scripted_logprobs([False] * 40, []))
    frame = evaluate_task(loaded, _numbered_task(40, misaligned), stop_below=0.5, chunk_items=1)
    assert frame.aligned.tolist() == [i not in misaligned for i in range(40)]
    # 33 aligned items: 17 failures decide at 50% (16/33 < 0.5); items 0-22 hold 6 misaligned
    assert scoring.deciding_failures(33, 0.5) == 17
    assert frame.scored.tolist() == [True] * 23 + [False] * 17
    summary = summarize_task(frame, 0.5)
    assert (summary["n_scored"], summary["n_aligned"], summary["n_misaligned"]) == (23, 33, 7)
    assert summary["reason"] == "stopped after 23 of 40 items: 17 of 33 aligned items not both-correct, at most 16/33 < 0.50"


@pytest.mark.parametrize("seed", range(4))
def test_early_stopping_rows_and_decisions_equal_full_evaluation_scripted(tiny_models, monkeypatch, seed):
    """Random outcome patterns: same decision as the full evaluation at every threshold, scored rows
    identical, and the stop comes no later than needed (the prefix before the last chunk could still pass)."""
    loaded = tiny_models["llama"]
    rng = np.random.default_rng(seed)
    n = 48
    outcomes = (rng.random(n) < rng.uniform(0.2, 0.9)).tolist()
    monkeypatch.setattr(scoring, "sequence_logprobs", _scripted_logprobs(outcomes, []))
    task = _numbered_task(n, misaligned=set(rng.choice(n, 5, replace=False).tolist()))
    full = evaluate_task(loaded, task)
    assert full.scored.all()
    for threshold in (0.1, 0.3, 0.5, 0.6, 0.75, 0.9, 1.0):
        expected = summarize_task(full, threshold)
        for chunk_items in (1, 5, 16):
            early = evaluate_task(loaded, task, stop_below=threshold, chunk_items=chunk_items)
            got = summarize_task(early, threshold)
            assert got["passes"] == expected["passes"], (threshold, chunk_items)
            pd.testing.assert_frame_equal(early[early.scored].drop(columns="scored"),
                                          full[early.scored].drop(columns="scored"))
            if got["passes"]:
                assert early.scored.all() and got == expected
            if not early.scored.all():
                failures = (early.aligned & early.scored & ~early.both_correct).sum()
                limit = scoring.deciding_failures(int(full.aligned.sum()), threshold)
                assert failures >= limit
                if chunk_items == 1:  # stopped at the item that decided, not later
                    assert failures == limit and not early.both_correct[early.scored].iloc[-1]


def test_early_stopping_on_a_real_model_equals_full_evaluation(tiny_models):
    """The tiny random model, thresholds on both sides of its accuracy: same decisions, and the
    scored rows equal the full run's up to batch-composition rounding."""
    loaded = tiny_models["qwen2"]
    words = ["cat", "dog", "bird", "fish", "cow", "horse", "mouse", "lion"]
    items = [_item(f"The {words[i % 8]} number {i} sat on the",
                   f"The {words[(3 * i + 1) % 8]} number {i} sat on the" + (" very" if i % 7 == 3 else ""),
                   " mat", " rug" if i % 2 else " big table") for i in range(40)]
    task = _task(items=items)
    full = evaluate_task(loaded, task, batch_size=8)
    accuracy = summarize_task(full)["both_correct_accuracy"]
    assert 0 <= accuracy < 0.6
    stopped_any = False
    for threshold in (0.01, accuracy, accuracy + 0.01, 0.3, 0.6, 0.95):
        early = evaluate_task(loaded, task, batch_size=8, stop_below=threshold, chunk_items=4)
        got, expected = summarize_task(early, threshold), summarize_task(full, threshold)
        assert got["passes"] == expected["passes"], threshold
        stopped_any |= not early.scored.all()
        rows = early.scored
        np.testing.assert_allclose(early.loc[rows, ["lp_cc", "lp_ci", "lp_rc", "lp_ri"]].to_numpy(),
                                   full.loc[rows, ["lp_cc", "lp_ci", "lp_rc", "lp_ri"]].to_numpy(), atol=1e-5, rtol=0)
        for column in ("aligned", "clean_correct", "corrupted_correct", "both_correct"):
            assert early.loc[rows, column].tolist() == full.loc[rows, column].tolist()
    assert summarize_task(full, accuracy)["passes"] is True
    assert stopped_any


def test_summary_of_frames_without_scored_column_and_mismatched_threshold(tiny_models, monkeypatch):
    legacy = _frame([True] * 4, [True, True, True, False], cc=np.zeros(4), ci=-np.ones(4),
                    rc=-np.ones(4), ri=np.array([0.0, 0.0, 0.0, -2.0]))
    summary = summarize_task(legacy, 0.6)
    assert summary["n_scored"] == 4 and summary["passes"] is True and summary["both_correct_accuracy"] == 0.75
    assert summarize_task(legacy.assign(scored=True), 0.6) == summary
    # a frame stopped at 0.9 cannot be judged at 0.3: refuse rather than guess
    monkeypatch.setattr(scoring, "sequence_logprobs", _scripted_logprobs([False] * 20, []))
    stopped = evaluate_task(tiny_models["llama"], _numbered_task(20), stop_below=0.9, chunk_items=1)
    assert stopped.scored.sum() == 3
    with pytest.raises(ValueError, match="could still reach"):
        summarize_task(stopped, 0.3)
    assert "at most 17/20 < 0.90" in summarize_task(stopped, 0.9)["reason"]
