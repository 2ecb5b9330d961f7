"""Attribution patching (``modularity.science.attribution``, book methods §3): gradients, formula, first-order check."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from modularity.science.attribution import attribute_task, patch_effect
from modularity.science.batches import answer_logprobs, make_batch
from modularity.science.scoring import TokenizedTask
from modularity.science.sites import hooks, probe_at



FAMILIES = ("llama", "gpt2", "gemma3")
C, R = 2.0, -1.0


def make_tokens(seed: int = 0, n: int = 5) -> TokenizedTask:
    """Aligned minimal pairs of varied lengths: corrupted = clean with one or two tokens changed."""
    rng = np.random.default_rng(seed)
    clean, corrupted, correct, incorrect = [], [], [], []
    for i in range(n):
        length = int(rng.integers(3, 9))
        prompt = rng.integers(100, 20_000, size=length).tolist()
        other = list(prompt)
        for pos in rng.choice(length, size=min(2, length), replace=False):
            other[pos] = int(rng.integers(100, 20_000))
        clean.append(prompt)
        corrupted.append(other)
        correct.append(rng.integers(100, 20_000, size=int(rng.integers(1, 4))).tolist())
        incorrect.append(rng.integers(100, 20_000, size=int(rng.integers(1, 4))).tolist())
    return TokenizedTask("toy", "MD", clean, corrupted, correct, incorrect)


def naive_lp(model, prompt, answer):
    """Differentiable LP(prompt, answer) from one unpadded full forward."""
    logits = model(input_ids=torch.tensor([prompt + answer])).logits[0]
    logp = torch.log_softmax(logits.float(), dim=-1)
    T = len(prompt)
    return sum(logp[T - 1 + j, token] for j, token in enumerate(answer))


def site_values_and_grads(loaded, modules, prompt, answers_signs):
    """Full site tensors of prompt ⊕ answer and ∂(Σ sign·LP)/∂site, by autograd on the captured tensors.

    The embeddings are made to require grad so the whole forward builds a graph (the weights are frozen).
    Returns the site at T−1 (from the first sequence) and the summed gradient there, per layer.
    """
    T = len(prompt)
    grads = [0.0] * len(modules)
    values = None
    for answer, sign in answers_signs:
        seen = [None] * len(modules)

        def make_hook(layer):
            def hook(module, args):
                args[0].retain_grad()
                seen[layer] = args[0]

            return hook

        ids = torch.tensor([prompt + answer])
        with torch.enable_grad(), hooks(modules, make_hook):
            embeds = loaded.model.get_input_embeddings()(ids).detach().requires_grad_(True)
            logits = loaded.model(inputs_embeds=embeds).logits[0]
            logp = torch.log_softmax(logits.float(), dim=-1)
            objective = sign * sum(logp[T - 1 + j, token] for j, token in enumerate(answer))
            full = torch.autograd.grad(objective, seen)
        for layer, g in enumerate(full):
            assert g.shape == seen[layer].shape  # the full activation tensor [1, S, width]
            grads[layer] = grads[layer] + g[0, T - 1]
        if values is None:
            values = [s[0, T - 1].detach() for s in seen]
    return values, grads


def reference_scores(loaded, modules, tokens, indices, metric):
    """A = Σ_n g·(a_clean − a_corrupted) / (N (C − R)), item by item, without padding or probes."""
    totals = [torch.zeros(m_width, dtype=torch.float64) for m_width in
              [modules[0].in_features if hasattr(modules[0], "in_features") else modules[0].weight.shape[0]] * len(modules)]
    for n in indices:
        signs = [(tokens.correct[n], 1.0)]
        if metric == "logit_diff":
            signs.append((tokens.incorrect[n], -1.0))
        clean_values, _ = site_values_and_grads(loaded, modules, tokens.clean[n], [(tokens.correct[n], 1.0)])
        corrupted_values, grads = site_values_and_grads(loaded, modules, tokens.corrupted[n], signs)
        for layer in range(len(modules)):
            totals[layer] += (grads[layer] * (clean_values[layer] - corrupted_values[layer])).double()
    return torch.stack(totals).float() / (len(indices) * (C - R))


# --------------------------------------------------------------------------
# (a) gradients and formula
# --------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_probe_gradient_equals_autograd_on_full_activation(tiny_models, family):
    loaded = tiny_models[family]
    n_items = 2
    tokens = make_tokens(1, n=n_items)
    modules = loaded.site_modules("neurons")
    # logit_diff layout: both answers of an item share one probe
    prompts = tokens.corrupted + tokens.corrupted
    answers = tokens.correct + tokens.incorrect
    sign = torch.tensor([1.0] * n_items + [-1.0] * n_items)
    batch = make_batch(prompts, answers, pad_id=loaded.tokenizer.pad_token_id)
    rows = torch.arange(2 * n_items)
    with torch.enable_grad(), probe_at(modules, rows, batch.last_prompt, rows % n_items, n_items) as (
        probes, values
    ):
        lp = answer_logprobs(loaded.model, batch)
        (lp * sign).sum().backward()
    for n in range(n_items):
        ref_values, ref_grads = site_values_and_grads(
            loaded, modules, tokens.corrupted[n], [(tokens.correct[n], 1.0), (tokens.incorrect[n], -1.0)])
        for layer in range(loaded.n_layers):
            assert probes[layer].grad.shape == (n_items, loaded.d_ff)
            torch.testing.assert_close(values[layer][n], ref_values[layer], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(probes[layer].grad[n], ref_grads[layer], atol=1e-5, rtol=1e-4)
        assert any(ref_grads[layer].abs().max() > 1e-4 for layer in range(loaded.n_layers))


@pytest.mark.parametrize(("family", "metric"), [("llama", "paper"), ("llama", "logit_diff"),
                                                ("gpt2", "paper"), ("gemma3", "logit_diff")])
def test_attribute_task_equals_reference_formula(tiny_models, family, metric):
    loaded = tiny_models[family]
    tokens = make_tokens(2, n=5)
    indices = np.array([0, 2, 3, 4])  # a subset, in batches of 3 (one partial batch)
    result = attribute_task(loaded, tokens, indices, C, R, metric=metric, batch_size=3)
    assert result.neurons.shape == (loaded.n_layers, loaded.d_ff) and result.neurons.dtype == torch.float32
    assert (result.n_items, result.C, result.R, result.metric) == (4, C, R, metric)
    expected = reference_scores(loaded, loaded.site_modules("neurons"), tokens, indices, metric)
    torch.testing.assert_close(result.neurons, expected, atol=1e-6, rtol=1e-4)
    assert result.neurons.abs().max() > 1e-4


# --------------------------------------------------------------------------
# (b) first order: the score predicts the exact patching effect
# --------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("metric", ["paper", "logit_diff"])
def test_scores_predict_single_neuron_patching(tiny_models, family, metric):
    loaded = tiny_models[family]
    tokens = make_tokens(3, n=4)
    indices = np.arange(4)
    scores = attribute_task(loaded, tokens, indices, C, R, metric=metric, heads=False).neurons.flatten().numpy()
    top = np.argsort(-np.abs(scores))[:8]
    rest = np.setdiff1d(np.arange(scores.size), top)
    chosen = np.concatenate([top, np.random.default_rng(0).choice(rest, 12, replace=False)])
    exact = patch_effect(loaded, tokens, indices, C, R, [np.array([i]) for i in chosen], metric=metric, batch_size=3)
    predicted = scores[chosen]
    assert np.corrcoef(predicted, exact)[0, 1] > 0.9
    # the top neurons' effects have the predicted sign and roughly the predicted size
    assert (np.sign(exact[:5]) == np.sign(predicted[:5])).all()
    np.testing.assert_allclose(exact[:5], predicted[:5], rtol=0.5)


def test_patch_effect_of_a_set_is_not_the_sum_of_nothing(tiny_models):
    """Sanity of patch_effect itself: patching nothing changes nothing; patching every neuron of every
    layer at T−1 moves the corrupted run by a non-zero amount."""
    loaded = tiny_models["llama"]
    tokens = make_tokens(4, n=3)
    every = np.arange(loaded.n_neurons)
    effects = patch_effect(loaded, tokens, np.arange(3), C, R, [np.array([], dtype=int), every])
    assert effects[0] == 0.0
    assert abs(effects[1]) > 1e-3


# --------------------------------------------------------------------------
# (c) the two metrics
# --------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_paper_metric_ignores_the_incorrect_answer(tiny_models, family):
    loaded = tiny_models[family]
    tokens = make_tokens(5, n=4)
    other = dataclasses.replace(tokens, incorrect=[[t + 7 for t in ans] + [321] for ans in tokens.incorrect])
    indices = np.arange(4)
    paper_a = attribute_task(loaded, tokens, indices, C, R, metric="paper")
    paper_b = attribute_task(loaded, other, indices, C, R, metric="paper")
    assert torch.equal(paper_a.neurons, paper_b.neurons) and torch.equal(paper_a.heads, paper_b.heads)
    diff_a = attribute_task(loaded, tokens, indices, C, R, metric="logit_diff")
    diff_b = attribute_task(loaded, other, indices, C, R, metric="logit_diff")
    assert (diff_a.neurons - diff_b.neurons).abs().max() > 1e-5
    assert (diff_a.neurons - paper_a.neurons).abs().max() > 1e-5


# --------------------------------------------------------------------------
# (d) heads
# --------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
def test_heads_are_per_head_sums_of_per_dimension_scores(tiny_models, family):
    loaded = tiny_models[family]
    tokens = make_tokens(6, n=3)
    indices = np.array([0, 2])
    result = attribute_task(loaded, tokens, indices, C, R, metric="logit_diff")
    assert result.heads.shape == (loaded.n_layers, loaded.n_heads)
    per_dim = reference_scores(loaded, loaded.site_modules("heads"), tokens, indices, "logit_diff")
    assert per_dim.shape == (loaded.n_layers, loaded.n_heads * loaded.head_dim)
    expected = per_dim.view(loaded.n_layers, loaded.n_heads, loaded.head_dim).sum(-1)
    torch.testing.assert_close(result.heads, expected, atol=1e-6, rtol=1e-4)
    # not the same as a sum over a wrong grouping (heads interleaved instead of contiguous)
    interleaved = per_dim.view(loaded.n_layers, loaded.head_dim, loaded.n_heads).sum(1)
    assert not torch.allclose(result.heads, interleaved, atol=1e-6, rtol=1e-4)
    assert attribute_task(loaded, tokens, indices, C, R, heads=False).heads is None


def test_item_weights_do_not_depend_on_batching(tiny_models):
    loaded = tiny_models["llama"]
    tokens = make_tokens(7, n=5)
    a = attribute_task(loaded, tokens, np.arange(5), C, R, batch_size=2)
    b = attribute_task(loaded, tokens, np.arange(5), C, R, batch_size=8)
    torch.testing.assert_close(a.neurons, b.neurons, atol=1e-6, rtol=1e-4)
    torch.testing.assert_close(a.heads, b.heads, atol=1e-6, rtol=1e-4)


# --------------------------------------------------------------------------
# (e) errors
# --------------------------------------------------------------------------
def test_errors(tiny_models):
    loaded = tiny_models["llama"]
    tokens = make_tokens(8, n=2)
    with pytest.raises(ValueError, match="no both-correct items"):
        attribute_task(loaded, tokens, np.array([], dtype=int), C, R)
    for c, r in ((1.0, 1.0), (-1.0, 2.0)):
        with pytest.raises(ValueError, match="C > R"):
            attribute_task(loaded, tokens, np.arange(2), c, r)
    with pytest.raises(ValueError, match="metric must be one of"):
        attribute_task(loaded, tokens, np.arange(2), C, R, metric="abs")
