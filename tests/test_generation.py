"""Greedy generation under a patch (:mod:`modularity.science.generation`, stage 9).

The reference is independent of the code under test: a step-by-step decode with no cache, one full
forward of the whole sequence per new token, the silenced neurons written by a plain forward
pre-hook of its own. Every token ``generate`` chose must be that forward's argmax, up to the
rounding two correct computations may show (:func:`modularity.base.numerics.tolerance`): a cache,
a batch of several conditions or another CPU's kernels sum in another order, and an exact tie could
then go either way; a wrong position, layer or value moves a logit by far more.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from modularity.base.numerics import largest_magnitude, tolerance
from modularity.science import generation

from conftest import FAMILY_NAMES

pytestmark = pytest.mark.numerics

NEW = 10
SETS = {"intact": np.empty(0, dtype=np.int64), "few": np.array([3, 70, 100]),
        "many": np.arange(0, 128, 3), "layer one": np.arange(64, 96)}


def on_backend(loaded, backend: str, remote=False):
    other = copy.copy(loaded)
    other.backend, other.remote, other._lm = backend, remote, None
    return other


def prompt_ids(loaded) -> list[int]:
    return loaded.tokenizer("Two identical rubber bands: one was left in a hot car")["input_ids"]


def stepwise_logits(loaded, prompt: list[int], generated: list[int], neurons: np.ndarray, held: torch.Tensor):
    """Logits [len(generated), V] (float64) that predict each generated token, from full forwards
    with no cache, the neurons held at ``held`` [L, d_ff] at every position."""
    layers, columns = np.divmod(neurons, loaded.d_ff)
    handles = []
    for layer in np.unique(layers):
        cols = torch.as_tensor(columns[layers == layer])

        def hook(module, args, cols=cols, layer=int(layer)):
            x = args[0].clone()
            x[..., cols] = held[layer, cols].to(x.dtype)
            return (x,) + tuple(args[1:])

        handles.append(loaded.site_modules("neurons")[int(layer)].register_forward_pre_hook(hook))
    try:
        out = []
        for step in range(len(generated)):
            ids = torch.tensor([prompt + generated[:step]])
            with torch.no_grad():
                out.append(loaded.model(input_ids=ids, use_cache=False).logits[0, -1].double())
        return torch.stack(out) if out else torch.empty(0)
    finally:
        for handle in handles:
            handle.remove()


def assert_greedy(loaded, prompt, tokens: list[int], neurons, held, label: str) -> None:
    ends = generation.end_tokens(loaded)
    kept, _ = generation.until_end(tokens, ends)
    logits = stepwise_logits(loaded, prompt, kept, neurons, held)
    chosen = logits[torch.arange(len(kept)), torch.tensor(kept)]
    best = logits.max(dim=-1).values
    held_to = tolerance(largest_magnitude(logits), loaded.n_layers, loaded.dtype)
    assert torch.all(best - chosen <= held_to), f"{label}: a chosen token is not the patched forward's argmax"


@pytest.mark.parametrize("backend", ["hooks", "nnsight"])
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_generation_under_a_patch_is_the_stepwise_patched_argmax(tiny_models, family, backend):
    loaded = on_backend(tiny_models[family], backend)
    prompt = prompt_ids(loaded)
    mean = torch.randn(loaded.n_layers, loaded.d_ff, generator=torch.Generator().manual_seed(0))
    zero = torch.zeros(loaded.n_layers, loaded.d_ff)
    for mode, held in (("zero", zero), ("mean", mean)):
        out = generation.generate(loaded, prompt, SETS, held=held, max_new_tokens=NEW)
        assert list(out.tokens) == list(SETS) and all(len(t) == NEW for t in out.tokens.values())
        for name, tokens in out.tokens.items():
            assert_greedy(loaded, prompt, tokens, SETS[name], held, f"{family}/{backend}/{mode}/{name}")
        assert out.tokens["many"] != out.tokens["intact"], "a third of the neurons silenced changes the text"
    # Both values in one batch, each condition its own: every row still the stepwise argmax.
    both = {f"{name}@{mode}": neurons for name, neurons in SETS.items() for mode in ("zero", "mean")}
    held_of = {key: mean if key.endswith("@mean") else zero for key in both}
    out = generation.generate(loaded, prompt, both, held=held_of, max_new_tokens=NEW)
    for key, tokens in out.tokens.items():
        assert_greedy(loaded, prompt, tokens, both[key], held_of[key], f"{family}/{backend}/mixed/{key}")


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_backends_and_repeated_runs_give_the_same_greedy_text(tiny_models, family):
    loaded = tiny_models[family]
    prompt = prompt_ids(loaded)
    first = generation.generate(loaded, prompt, SETS, max_new_tokens=NEW)
    again = generation.generate(loaded, prompt, SETS, max_new_tokens=NEW)
    traced = generation.generate(on_backend(loaded, "nnsight"), prompt, SETS, max_new_tokens=NEW)
    assert first.tokens == again.tokens, "greedy decoding is deterministic"
    # The backends sum in the same order on one machine; where they did not, a near-tie could
    # flip, which the stepwise test above allows for: here every token must still be the argmax.
    for name, tokens in traced.tokens.items():
        assert_greedy(loaded, prompt, tokens, SETS[name], torch.zeros(loaded.n_layers, loaded.d_ff), name)


def test_a_condition_alone_generates_what_it_generates_in_the_batch(tiny_models):
    loaded = tiny_models["llama"]
    prompt = prompt_ids(loaded)
    together = generation.generate(loaded, prompt, SETS, max_new_tokens=NEW)
    for name, neurons in SETS.items():
        alone = generation.generate(loaded, prompt, {name: neurons}, max_new_tokens=NEW)
        assert_greedy(loaded, prompt, alone.tokens[name], neurons, torch.zeros(loaded.n_layers, loaded.d_ff), name)
        assert alone.tokens[name][:3] == together.tokens[name][:3]


def test_held_values_of_the_wrong_shape_or_missing_are_refused(tiny_models):
    loaded = tiny_models["llama"]
    with pytest.raises(ValueError, match=r"must have shape \(2, 64\)"):
        generation.generate(loaded, [1, 2, 3], SETS, held=torch.zeros(3, 3))
    with pytest.raises(ValueError, match="no held values for conditions"):
        generation.generate(loaded, [1, 2, 3], SETS, held={"intact": torch.zeros(2, 64)})


def test_until_end_and_repetition():
    assert generation.until_end([5, 6, 2, 9, 9], [2]) == ([5, 6, 2], True)
    assert generation.until_end([5, 6], [2]) == ([5, 6], False)
    assert generation.repetition("the cat sat on the mat") == 0.0
    assert generation.repetition("the cat the cat the cat the cat") > 0.5
    assert np.isnan(generation.repetition("too short"))


def test_the_intact_model_scores_a_fluent_text_above_its_scrambled_words():
    """The fluency measure on planted texts, with the embedded SmolLM2: the same words in order and
    shuffled (seeded), after the same prompt."""
    from modularity.science.models import load_model

    loaded = load_model("smollm2-135m-instruct")
    tok = loaded.tokenizer
    prompt = tok("Tell me about the weather today.")["input_ids"]
    fluent = "The sun is shining and there is a light breeze from the west, so it is a pleasant day for a walk."
    words = fluent.split()
    rng = np.random.default_rng(0)
    scrambled = " ".join(words[i] for i in rng.permutation(len(words)))
    repeated = " ".join(["the day"] * 12)
    texts = [tok(" " + t, add_special_tokens=False)["input_ids"] for t in (fluent, scrambled, repeated)]
    scores = generation.intact_logprobs(loaded, prompt, texts + [[]])
    assert scores[0] > scores[1] + 1.0, scores
    assert np.isnan(scores[3])
    assert generation.repetition(repeated) > generation.repetition(fluent) == 0.0
