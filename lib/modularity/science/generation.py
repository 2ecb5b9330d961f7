"""What a model writes with neuron sets silenced: greedy generation under a patch, and measures of
the text (book methods §13).

One prompt at a time, every condition (the intact model and each silenced set) is a row of one
batch: the prompt repeated G times, no padding, row g carrying group g's mask and values
(:func:`modularity.science.sites.patched_site`, as stage 5 lays groups out). The silenced neurons
are overwritten at **every** position the model reads, prompt and generated tokens alike, by a
per-neuron constant of the condition: 0, or their mean activation over the suite's prompts
(corrupted patching needs a paired input that an open prompt does not have).

Decoding is greedy with a fixed budget of new tokens, through ``transformers``' own ``generate``
with every setting that could change a greedy choice pinned here (:func:`greedy_config`: no
repetition penalty, no minimum length, the model's end-of-text tokens), on either backend: the hook
backend registers :func:`modularity.science.sites.replace_neurons` around it, the nnsight backend
writes the same patch at every step of ``lm.generate`` (``tracer.all()``). ``tests/test_generation.py``
checks that every chosen token is the argmax of a step-by-step patched forward with no cache.

Measures, each on one output (pure functions of tokens, text and log-probs):

* **fluency**: the mean log-probability per token of the generated text (up to and including its
  end-of-text token) under the *intact* model, given the prompt (:func:`intact_logprobs`);
* **key stated**: whether the text states the prompt's key
  (:func:`modularity.science.tasks.open_prompts.key_stated`);
* **repetition**: the share of the text's word trigrams that repeat an earlier one
  (:func:`repetition`), and its **length** in tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from . import passes, sites
from .batches import make_batch, pad_id_of
from .models import LoadedModel

__all__ = ["Generations", "greedy_config", "end_tokens", "patch_values", "generate", "until_end",
           "intact_logprobs", "repetition"]

@dataclass(frozen=True)
class Generations:
    """Greedy continuations of one prompt: ``tokens[name]`` the new token ids of each condition
    (``max_new_tokens`` of them, end-of-text and the padding after it included), in the order of
    the sets given."""

    prompt: list[int]
    tokens: dict[str, list[int]]


def end_tokens(loaded: LoadedModel) -> list[int]:
    """The ids that end a text: the model's generation config's, else the tokenizer's end-of-text."""
    configured = getattr(getattr(loaded.model, "generation_config", None), "eos_token_id", None)
    ids = configured if configured is not None else loaded.tokenizer.eos_token_id
    ids = [ids] if isinstance(ids, int) else list(ids or [])
    return sorted({int(i) for i in ids})


def greedy_config(loaded: LoadedModel, max_new_tokens: int):
    """A ``GenerationConfig`` for plain greedy decoding: every setting a checkpoint's own config
    could bring in to change a choice (sampling, beams, repetition penalties, minimum lengths,
    suppressed tokens) pinned to its neutral value."""
    from transformers import GenerationConfig

    return GenerationConfig(do_sample=False, num_beams=1, max_new_tokens=int(max_new_tokens), min_new_tokens=0,
                            repetition_penalty=1.0, no_repeat_ngram_size=0, encoder_repetition_penalty=1.0,
                            length_penalty=1.0, bad_words_ids=None, suppress_tokens=None, begin_suppress_tokens=None,
                            forced_bos_token_id=None, forced_eos_token_id=None, renormalize_logits=False,
                            eos_token_id=end_tokens(loaded), pad_token_id=pad_id_of(loaded.tokenizer),
                            return_dict_in_generate=False, output_scores=False)


def patch_values(plan: sites.ColumnPlan, held: torch.Tensor, loaded: LoadedModel) -> dict:
    """Per touched layer the constants each group's silenced columns are held at, [G, 1, u_ℓ]
    (broadcast over positions): ``held`` [G, L, d_ff] at those columns."""
    return {layer: held[:, layer].index_select(-1, cols.cpu())[:, None, :].to(device=loaded.device, dtype=loaded.dtype)
            for layer, cols in plan.columns.items()}


def _held_values(loaded: LoadedModel, names: list[str], held) -> torch.Tensor:
    """[G, L, d_ff] float32: each condition's values, from ``held`` (see :func:`generate`)."""
    shape = (loaded.n_layers, loaded.d_ff)
    if held is None:
        return torch.zeros(len(names), *shape)
    per = held if isinstance(held, Mapping) else dict.fromkeys(names, held)
    missing = [n for n in names if n not in per]
    if missing:
        raise ValueError(f"no held values for conditions {missing}")
    values = [torch.as_tensor(per[n], dtype=torch.float32).cpu() for n in names]
    wrong = [n for n, v in zip(names, values) if tuple(v.shape) != shape]
    if wrong:
        raise ValueError(f"held values of {wrong} must have shape {shape} (layers, neurons)")
    return torch.stack(values)


@torch.no_grad()
def generate(loaded: LoadedModel, prompt: list[int], sets: Mapping[str, np.ndarray], *,
             held: Mapping[str, torch.Tensor] | torch.Tensor | None = None, max_new_tokens: int = 32) -> Generations:
    """Greedy continuations of ``prompt`` (token ids) with each set of ``sets`` (condition name → flat
    neuron indices ``layer · d_ff + i``; an empty set is the intact model) silenced, all in one batch.

    ``held``: the values the silenced neurons keep, [L, d_ff] for every condition, or a mapping
    condition → [L, d_ff] (a condition may hold its neurons at their means, another at zero);
    None holds them at 0.
    """
    names = list(sets)
    if not names:
        raise ValueError("no sets to generate under")
    values = _held_values(loaded, names, held)
    plan = sites.plan_columns([np.asarray(sets[n], dtype=np.int64) for n in names], loaded.n_layers, loaded.d_ff,
                              loaded.device)
    constants = patch_values(plan, values, loaded)
    input_ids = torch.tensor([prompt] * len(names), dtype=torch.long, device=loaded.device)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)}
    config = greedy_config(loaded, max_new_tokens)
    if getattr(loaded, "backend", "hooks") == "nnsight":
        out = _generate_traced(loaded, inputs, config, plan, constants)
    else:
        with sites.replace_neurons(loaded.site_modules("neurons"), plan.membership, constants, columns=plan.columns):
            out = loaded.model.generate(**inputs, generation_config=config)
    new = out[:, len(prompt):].cpu().tolist()
    return Generations(list(prompt), {name: row for name, row in zip(names, new)})


def _generate_traced(loaded: LoadedModel, inputs: dict, config, plan: sites.ColumnPlan, values: dict) -> torch.Tensor:
    """The same generation as one nnsight ``generate`` trace, the patch written at every step.

    nnsight warns that the open step loop "was never reached" at its last step: the loop asks for
    one step more than the decode loop makes, by design; the result is read in a block of its own."""
    patched = [(loaded.lm.get(loaded.site_path("neurons", layer)), plan.membership[layer], values[layer],
                plan.columns[layer]) for layer in sorted(plan.membership)]
    with loaded.lm.generate(generation_config=config, remote=getattr(loaded, "remote", False)) as tracer:
        with tracer.invoke(inputs):
            for _ in tracer.all():  # every forward of the decode loop, however many it makes
                for envoy, mask, constants, cols in patched:  # forward order
                    envoy.input = sites.patched_site(envoy.input, mask, constants, cols)
        with tracer.invoke():  # its own block: an open loop over the steps ends the one it is in
            ids = tracer.result.save()
    return ids


def until_end(tokens: list[int], ends: list[int]) -> tuple[list[int], bool]:
    """The tokens of a text up to and including its first end-of-text token, and whether it ended."""
    for position, token in enumerate(tokens):
        if token in ends:
            return list(tokens[: position + 1]), True
    return list(tokens), False


@torch.no_grad()
def intact_logprobs(loaded: LoadedModel, prompt: list[int], texts: list[list[int]], batch_size: int = 16) -> np.ndarray:
    """Mean log-probability per token of each text (token ids) after ``prompt``, under the model
    as loaded (no patch), float64 [len(texts)]; NaN for an empty text."""
    out = np.full(len(texts), np.nan)
    scored = [i for i, text in enumerate(texts) if text]
    pad = pad_id_of(loaded.tokenizer)
    for start in range(0, len(scored), batch_size):
        chunk = scored[start:start + batch_size]
        batch = make_batch([list(prompt)] * len(chunk), [texts[i] for i in chunk], pad).to(loaded.device)
        summed = passes.logprobs(loaded, batch).double().cpu().numpy()
        out[chunk] = summed / np.array([len(texts[i]) for i in chunk])
    return out


def repetition(text: str, n: int = 3) -> float:
    """The share of the word n-grams of ``text`` (lower case) that repeat an earlier one: 0 for
    none, near 1 for a loop; NaN for a text shorter than n + 1 words."""
    words = text.lower().split()
    grams = [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]
    if len(grams) < 2:
        return float("nan")
    seen, repeats = set(), 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams)
