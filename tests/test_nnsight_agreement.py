"""nnsight (teaching cells) and the plain forward hooks (hot paths) read and patch the same neurons.

``LoadedModel.lm`` wraps the same weights in ``nnsight.LanguageModel``; the neuron site is the
``.input`` of the module at ``LoadedModel.site_path("neurons", layer)`` (STACK.md). Trace code must
live in a file, which this is.
"""
from __future__ import annotations

import pytest
import torch

from modularity.science.batches import answer_logprobs, make_batch
from modularity.science.sites import probe_at, record_at, replace_neurons

pytestmark = pytest.mark.numerics

# equal lengths: nnsight would left-pad a ragged batch, the hooks right-pad
IDS = torch.tensor([[5, 60, 700, 9000, 33, 812], [44, 1023, 7, 301, 2900, 61]])


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_site_paths_are_the_documented_ones(tiny_models, family):
    loaded = tiny_models[family]
    expected = {"llama": "model.layers.1.mlp.down_proj", "gpt2": "transformer.h.1.mlp.c_proj"}[family]
    assert loaded.site_path("neurons", 1) == expected


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_nnsight_reads_the_same_neurons_as_record_at(tiny_models, family):
    loaded = tiny_models[family]
    lm = loaded.lm
    B, T = IDS.shape
    saved = []
    with lm.trace(IDS):
        for layer in range(loaded.n_layers):  # forward order
            saved.append(lm.get(loaded.site_path("neurons", layer)).input.save())
        logits = lm.output.logits.save()
    # the explicit attribute path of the docs reads the same tensor
    with lm.trace(IDS):
        if family == "gpt2":
            explicit = lm.transformer.h[1].mlp.c_proj.input.save()
        else:
            explicit = lm.model.layers[1].mlp.down_proj.input.save()

    rows = torch.arange(B).repeat_interleave(T)
    positions = torch.arange(T).repeat(B)
    with torch.no_grad(), record_at(loaded.site_modules("neurons"), rows, positions) as recorded:
        plain = loaded.model(IDS).logits
    for layer in range(loaded.n_layers):
        assert saved[layer].shape == (B, T, loaded.d_ff)
        torch.testing.assert_close(saved[layer].reshape(B * T, -1), recorded[layer], rtol=0, atol=1e-6)
    torch.testing.assert_close(explicit, saved[1], rtol=0, atol=0)
    torch.testing.assert_close(logits, plain, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
@pytest.mark.parametrize("layer", [0, 1])
def test_nnsight_patch_equals_replace_neurons(tiny_models, family, layer):
    loaded = tiny_models[family]
    lm = loaded.lm
    B, T = IDS.shape
    row, pos, neuron, value = 1, 3, 7, 25.0
    with torch.no_grad():
        base = loaded.model(IDS).logits
    with lm.trace(IDS):
        lm.get(loaded.site_path("neurons", layer)).input[row, pos, neuron] = value
        nn_patched = lm.output.logits.save()

    mask = torch.zeros(1, loaded.d_ff, dtype=torch.bool)
    mask[0, neuron] = True
    where = torch.zeros(B, T, dtype=torch.bool)
    where[row, pos] = True
    with torch.no_grad(), replace_neurons(
        loaded.site_modules("neurons"), {layer: mask}, {layer: torch.full((B, T, loaded.d_ff), value)}, positions=where
    ):
        hook_patched = loaded.model(IDS).logits
    torch.testing.assert_close(nn_patched, hook_patched, rtol=0, atol=1e-5)
    # the patch did something, and only in its own row from its own position on
    assert (nn_patched[row, pos:] - base[row, pos:]).abs().max() > 1e-2
    torch.testing.assert_close(nn_patched[row, :pos], base[row, :pos], rtol=0, atol=1e-5)
    torch.testing.assert_close(nn_patched[1 - row], base[1 - row], rtol=0, atol=1e-5)


def test_nnsight_gradient_equals_probe_gradient(tiny_models):
    """Gradient of LP(prompt, answer) w.r.t. the neurons at T−1: nnsight's .grad vs the probe hooks."""
    loaded = tiny_models["llama"]
    lm = loaded.lm
    prompt, answer = [5, 60, 700, 9000], [33, 812]
    T = len(prompt)
    ids = torch.tensor([prompt + answer])

    batch = make_batch([prompt], [answer])
    with torch.enable_grad(), probe_at(
        loaded.site_modules("neurons"), torch.tensor([0]), batch.last_prompt, torch.tensor([0]), 1
    ) as (probes, _):
        answer_logprobs(loaded.model, batch).sum().backward()

    grads = [None] * loaded.n_layers
    with lm.trace(ids):
        sites = []
        for layer in range(loaded.n_layers):
            site = lm.get(loaded.site_path("neurons", layer)).input
            site.requires_grad_(True)  # the weights are frozen: start the graph at the first site
            sites.append(site)
        logp = torch.log_softmax(lm.output.logits[0].float(), dim=-1)
        objective = logp[T - 1, answer[0]] + logp[T, answer[1]]
        with objective.backward():
            for layer in reversed(range(loaded.n_layers)):  # gradients arrive in reverse order
                grads[layer] = sites[layer].grad[0, T - 1].save()
    for layer in range(loaded.n_layers):
        torch.testing.assert_close(grads[layer], probes[layer].grad[0], rtol=1e-3, atol=1e-5)
        assert probes[layer].grad.abs().max() > 1e-4
