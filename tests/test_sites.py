"""The one hook layer (``modularity.science.sites``): record, patch and probe on tiny models against a
manual forward of the MLP, layer subsets and column indices, flat indices, the early stop."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from modularity.science import passes, sites
from modularity.science.batches import answer_logprobs, make_batch, pad_id_of

FAMILIES = ("llama", "gpt2", "gemma3")
# Two rows of different lengths: the second is right-padded.
PROMPTS = [[5, 60, 700, 9000, 33], [44, 1023, 7]]
ANSWERS = [[812, 17], [301, 2900, 61]]


def batch_for(loaded):
    return make_batch(PROMPTS, ANSWERS, pad_id_of(loaded.tokenizer))


def manual_site(mlp, h: torch.Tensor) -> torch.Tensor:
    """The neuron site computed by hand from the MLP's input h [B, S, d_model] → [B, S, d_ff]."""
    if hasattr(mlp, "c_fc"):  # gpt2
        return mlp.act(mlp.c_fc(h))
    return mlp.act_fn(mlp.gate_proj(h)) * mlp.up_proj(h)


def down(mlp, site: torch.Tensor) -> torch.Tensor:
    return (mlp.c_proj if hasattr(mlp, "c_fc") else mlp.down_proj)(site)


class MLPTrace:
    """Context manager: every block's MLP input and output in the forward run inside it."""

    def __init__(self, loaded):
        self.mlps = [block.mlp for block in loaded.blocks()]
        self.inputs, self.outputs = {}, {}

    def __enter__(self):
        def make(layer):
            def hook(module, args, output):
                self.inputs[layer], self.outputs[layer] = args[0].detach(), output.detach()

            return hook

        self.handles = [m.register_forward_hook(make(layer)) for layer, m in enumerate(self.mlps)]
        return self

    def __exit__(self, *exc):
        for handle in self.handles:
            handle.remove()

    def site(self, layer):
        with torch.no_grad():
            return manual_site(self.mlps[layer], self.inputs[layer])


def no_hooks_left(loaded):
    return not any(m._forward_pre_hooks for m in loaded.site_modules("neurons") + loaded.site_modules("heads"))


# --------------------------------------------------------------------------- flat indices


def test_split_and_join_flat_round_trip():
    d_ff, n_layers = 7, 5
    flat = np.random.default_rng(0).choice(n_layers * d_ff, 20, replace=False)
    layers, columns = sites.split_flat(flat, d_ff)
    assert layers.dtype == columns.dtype == np.int64 and layers.shape == columns.shape == (20,)
    np.testing.assert_array_equal((layers, columns), np.unravel_index(flat, (n_layers, d_ff)))
    np.testing.assert_array_equal(sites.join_flat(layers, columns, d_ff), flat)
    # C order of an [L, d_ff] score tensor, from a tensor as well as a list; any shape is flattened
    scores = torch.arange(n_layers * d_ff).view(n_layers, d_ff)
    l, c = sites.split_flat(torch.tensor([0, 8, 34]), d_ff)
    assert scores[l, c].tolist() == [0, 8, 34]
    np.testing.assert_array_equal(sites.split_flat([[3], [9]], d_ff)[1], [3, 2])
    empty = sites.split_flat(np.empty(0), d_ff)
    assert empty[0].size == empty[1].size == 0 and empty[0].dtype == np.int64


def test_plan_columns():
    d_ff = 10
    plan = sites.plan_columns([np.array([], int), np.array([3, 1, 3, 25]), np.array([1, 21, 22])], 3, d_ff)
    assert sorted(plan.columns) == [0, 2]  # layer 1 untouched: not a key
    assert plan.columns[0].tolist() == [1, 3] and plan.columns[2].tolist() == [1, 2, 5]
    assert plan.membership[0].tolist() == [[False, False], [True, True], [True, False]]
    assert plan.membership[2].tolist() == [[False, False, False], [False, False, True], [True, True, False]]
    with pytest.raises(ValueError, match="outside"):
        sites.plan_columns([np.array([30])], 3, d_ff)
    with pytest.raises(ValueError, match="outside"):
        sites.plan_columns([np.array([-1])], 3, d_ff)


def test_pad_id_of():
    class Tok:
        pad_token_id = None

    assert pad_id_of(Tok()) == 0
    Tok.pad_token_id = 7
    assert pad_id_of(Tok()) == 7


# --------------------------------------------------------------------------- record


@pytest.mark.parametrize("family", FAMILIES)
def test_record_equals_manual_site(tiny_models, family):
    loaded = tiny_models[family]
    batch = batch_for(loaded)
    modules = loaded.site_modules("neurons")
    rows, positions = torch.tensor([0, 1, 1, 0]), torch.tensor([4, 2, 0, 1])
    cols = torch.tensor([3, 0, 17])
    with torch.no_grad(), MLPTrace(loaded) as trace, \
            sites.record_at(modules, rows, positions) as at_items, \
            sites.record_at(modules, columns={1: cols}) as subset, \
            sites.record_at(modules, rows, positions, columns={0: cols, 1: None}) as both, \
            sites.record_at(modules, columns=[1]) as whole:
        sites.base_forward(loaded.model, batch)
    assert sorted(at_items) == [0, 1] and sorted(subset) == [1] and sorted(whole) == [1]
    for layer in range(loaded.n_layers):
        site = trace.site(layer)  # [B, S, d_ff]
        assert at_items[layer].shape == (4, loaded.d_ff)
        torch.testing.assert_close(at_items[layer], site[rows, positions], rtol=0, atol=1e-6)
    torch.testing.assert_close(subset[1], trace.site(1)[:, :, cols], rtol=0, atol=1e-6)
    assert subset[1].shape == (2, batch.input_ids.shape[1], 3)
    torch.testing.assert_close(both[0], trace.site(0)[rows, positions][:, cols], rtol=0, atol=1e-6)
    torch.testing.assert_close(both[1], trace.site(1)[rows, positions], rtol=0, atol=1e-6)
    torch.testing.assert_close(whole[1], trace.site(1), rtol=0, atol=1e-6)
    assert no_hooks_left(loaded)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_record_stops_after_the_last_listed_layer(tiny_models, family):
    loaded = tiny_models[family]
    batch = batch_for(loaded)
    modules = loaded.site_modules("neurons")
    cols = torch.tensor([1, 5, 9])
    ran = []
    handles = [modules[1].register_forward_pre_hook(lambda m, a: ran.append("layer 1")),
               loaded.blocks()[0].register_forward_hook(lambda m, a, o: ran.append("block 0 out"))]
    try:
        with torch.no_grad(), sites.record_at(modules, columns={0: cols}, stop=True) as stopped:
            sites.base_forward(loaded.model, batch)
        assert ran == [], "the forward ran past the last listed layer"
        with torch.no_grad(), sites.record_at(modules, columns={0: cols}) as full:
            sites.base_forward(loaded.model, batch)
        assert ran == ["block 0 out", "layer 1"]
        # the same through the recording pass the stages use
        assert torch.equal(passes.record(loaded, batch, {0: cols})["neurons"][0], stopped[0])
        assert len(ran) == 2
        assert passes.record(loaded, batch, {}) == {"neurons": {}}
    finally:
        for handle in handles:
            handle.remove()
    assert torch.equal(stopped[0], full[0])
    # a stop raised outside base_forward is not swallowed
    with pytest.raises(sites.StopForward), torch.no_grad(), sites.record_at(modules, columns=[0], stop=True):
        loaded.model(batch.input_ids, attention_mask=batch.attention_mask)
    assert no_hooks_left(loaded)


# --------------------------------------------------------------------------- patch


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("grad", [False, True])
def test_patch_columns_of_groups_equals_manual_mlp(tiny_models, family, grad):
    """Two groups along the batch, each overwriting its own columns of layer 0 (every position)
    and layer 1 (at the second position only): each MLP output equals the down projection of
    the manually computed site with those columns overwritten. In place without grad, a copy with."""
    loaded = tiny_models[family]
    batch = batch_for(loaded)
    B, S = batch.input_ids.shape
    modules = loaded.site_modules("neurons")
    columns = {0: torch.tensor([2, 7, 11]), 1: torch.tensor([0, 5])}
    masks = {0: torch.tensor([[True, False, True], [False, True, True]]),
             1: torch.tensor([[True, True], [False, True]])}
    values = {0: torch.randn(B, S, 3, generator=torch.Generator().manual_seed(0)) * 5,  # shared by both groups
              1: torch.full((1, 1, 2), -3.0)}  # constants
    at = torch.zeros(B, S, dtype=torch.bool)
    at[:, 1] = True
    doubled = make_batch(PROMPTS * 2, ANSWERS * 2, pad_id_of(loaded.tokenizer))
    with torch.set_grad_enabled(grad), MLPTrace(loaded) as trace:
        with sites.replace_neurons(modules, {0: masks[0]}, values, columns=columns), \
                sites.replace_neurons(modules, {1: masks[1]}, values, positions=at, columns=columns):
            patched = answer_logprobs(loaded.model, doubled)
    for layer, where in ((0, torch.ones(B, S, dtype=torch.bool)), (1, at)):
        mlp = trace.mlps[layer]
        site = trace.site(layer).view(2, B, S, -1).clone()  # unpatched site of this (patched) run
        for g in range(2):
            chosen = columns[layer][masks[layer][g]]
            new = values[layer].expand(B, S, -1)[..., masks[layer][g]]
            site[g][..., chosen] = torch.where(where[..., None], new, site[g][..., chosen])
        with torch.no_grad():
            expected = down(mlp, site.view(2 * B, S, -1))
        torch.testing.assert_close(trace.outputs[layer], expected, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        plain = answer_logprobs(loaded.model, doubled)
    assert (patched - plain).abs().max() > 1e-3
    assert no_hooks_left(loaded)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_patch_every_column_and_layers_outside_masks(tiny_models, family):
    """Without columns a mask covers the whole width; per-group values [G·B, S, width]; a layer
    absent from the masks runs untouched (no hook at all)."""
    loaded = tiny_models[family]
    batch = batch_for(loaded)
    B, S = batch.input_ids.shape
    modules = loaded.site_modules("neurons")
    mask = torch.zeros(2, loaded.d_ff, dtype=torch.bool)
    mask[0, 3], mask[1, [3, 4]] = True, True
    value = torch.arange(2 * B * S * loaded.d_ff, dtype=torch.float32).view(2 * B, S, loaded.d_ff) / 100
    doubled = make_batch(PROMPTS * 2, ANSWERS * 2, pad_id_of(loaded.tokenizer))
    with torch.no_grad(), MLPTrace(loaded) as trace, sites.replace_neurons(modules, {1: mask}, {1: value}):
        assert not modules[0]._forward_pre_hooks and modules[1]._forward_pre_hooks
        sites.base_forward(loaded.model, doubled)
        site = trace.site(1)
        site[:B, :, 3] = value[:B, :, 3]
        site[B:, :, 3:5] = value[B:, :, 3:5]
        torch.testing.assert_close(trace.outputs[1], down(trace.mlps[1], site), rtol=1e-5, atol=1e-5)
    assert no_hooks_left(loaded)


# --------------------------------------------------------------------------- probe


@pytest.mark.parametrize("family", FAMILIES)
def test_probe_gradient_and_values_on_a_column_subset(tiny_models, family):
    """Probes on layer 1's columns [4, 9] and every column of layer 0: outputs unchanged, values
    the site there, gradients equal autograd on the full site (summed over rows sharing a probe)."""
    loaded = tiny_models[family]
    prompts, answers = [PROMPTS[0], PROMPTS[0], PROMPTS[1]], [ANSWERS[0], ANSWERS[1], ANSWERS[1]]
    batch = make_batch(prompts, answers, pad_id_of(loaded.tokenizer))
    modules = loaded.site_modules("neurons")
    rows, probe_index = torch.arange(3), torch.tensor([0, 0, 1])  # rows 0 and 1 share prompt 0
    cols = torch.tensor([4, 9])
    with torch.enable_grad(), sites.probe_at(modules, rows, batch.last_prompt, probe_index, 2,
                                             columns={0: None, 1: cols}) as (probes, values):
        lp = answer_logprobs(loaded.model, batch)
        lp.sum().backward()
    assert sorted(probes) == [0, 1] and probes[1].shape == (2, 2) and values[1].shape == (3, 2)
    assert probes[0].shape == (2, loaded.d_ff)

    seen = {}

    def keep(layer):
        def hook(module, args):
            args[0].retain_grad()
            seen[layer] = args[0]

        return hook

    with torch.enable_grad(), sites.hooks(modules, keep):
        embeds = loaded.model.get_input_embeddings()(batch.input_ids).detach().requires_grad_(True)
        hidden = loaded.model.base_model(inputs_embeds=embeds, attention_mask=batch.attention_mask,
                                         use_cache=False).last_hidden_state
        selected = hidden[batch.answer_rows, batch.answer_pos]
        logits = loaded.model.get_output_embeddings()(selected).float()
        softcap = getattr(loaded.model.config.get_text_config(), "final_logit_softcapping", None)
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        reference = torch.log_softmax(logits, -1).gather(1, batch.answer_ids[:, None])[:, 0]
        reference.sum().backward()
    torch.testing.assert_close(lp.detach(), torch.zeros(3).index_add(0, batch.answer_slot, reference.detach()),
                               rtol=0, atol=1e-5)
    for layer, take in ((0, slice(None)), (1, cols)):
        grad = seen[layer].grad[rows, batch.last_prompt][:, take]  # [3, u]
        site = seen[layer].detach()[rows, batch.last_prompt][:, take]
        torch.testing.assert_close(values[layer], site, rtol=0, atol=1e-6)
        torch.testing.assert_close(probes[layer].grad, torch.stack([grad[0] + grad[1], grad[2]]),
                                   rtol=1e-4, atol=1e-6)
        assert probes[layer].grad.abs().max() > 1e-5
    assert no_hooks_left(loaded)


# --------------------------------------------------------------------------- sums


def test_sum_into_equals_manual_sum(tiny_models):
    loaded = tiny_models["llama"]
    batch = batch_for(loaded)
    real = batch.attention_mask.bool()
    totals = torch.zeros(loaded.n_layers, loaded.d_ff, dtype=torch.float64)
    with torch.no_grad(), MLPTrace(loaded) as trace, sites.sum_into(loaded.site_modules("neurons"), real, totals):
        sites.base_forward(loaded.model, batch)
    for layer in range(loaded.n_layers):
        torch.testing.assert_close(totals[layer], trace.site(layer)[real].double().sum(0), rtol=1e-6, atol=1e-6)
    assert no_hooks_left(loaded)
