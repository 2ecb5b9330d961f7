"""Attribution patching over MLP neurons and attention heads (book methods §3).

For a task's both-correct items n (clean prompt c_n, corrupted prompt r_n),
at the last prompt position T−1, the score of site i in layer ℓ is

    A^ℓ_i = Σ_n g^ℓ_i(n) · [a^ℓ_i(c_n) − a^ℓ_i(r_n)],

the first-order estimate of how much patching the clean activation into the
corrupted run raises the normalised metric m = (LD − R)/(C − R), where
LD = LP(r, y⁺) − LP(r, y⁻) averaged over the items. Two variants:

* ``metric="paper"`` — the study's: LP(r, y⁻) is detached, so
  g = ∂LP(r, y⁺)/∂a / (N (C − R))  (book methods §3, flaw §15.2);
* ``metric="logit_diff"`` — the full difference is differentiated:
  g = ∂[LP(r, y⁺) − LP(r, y⁻)]/∂a / (N (C − R)).

Unlike the study (per-batch mean, heavier final batch, book methods, difference 18), every item gets
the same weight 1/N, so A is directly the predicted change of m.
Heads (book methods §3): the same product summed over each head's ``head_dim`` slice of
the attention output projection's input.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets

from . import passes, sites
from .batches import make_batch, pad_id_of
from .models import LoadedModel
from .scoring import TokenizedTask

METRICS = ("paper", "logit_diff")


@dataclass
class Attribution:
    """Scores of one task: ``neurons`` [L, d_ff], ``heads`` [L, H] (float32, CPU)."""

    task: str
    metric: str
    neurons: torch.Tensor
    heads: torch.Tensor | None
    n_items: int
    C: float
    R: float


def _prompt_batch(prompts: list[list[int]], pad_id: int):
    return make_batch(prompts, [[] for _ in prompts], pad_id)


def attribute_task(
    loaded: LoadedModel,
    tokens: TokenizedTask,
    indices: np.ndarray,
    C: float,
    R: float,
    metric: str = "paper",
    batch_size: int = 8,
    heads: bool = True,
    progress: bool = False,
) -> Attribution:
    """Attribution scores over ``indices`` (the both-correct, aligned items)."""
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    if len(indices) == 0:
        raise ValueError(f"task {tokens.name!r} has no both-correct items to attribute")
    if not C > R:
        raise ValueError(f"task {tokens.name!r}: baselines must satisfy C > R, got C={C}, R={R}")
    device = loaded.device
    pad_id = pad_id_of(loaded.tokenizer)
    kinds = ("heads", "neurons") if heads and loaded.has_heads else ("neurons",)
    totals = {kind: torch.zeros(loaded.n_layers, loaded.site_width(kind), dtype=torch.float64) for kind in kinds}
    for start in tqdm(range(0, len(indices), batch_size), desc=tokens.name, disable=not progress, leave=False):
        index = [int(i) for i in indices[start : start + batch_size]]
        n = len(index)
        # Clean activations at T−1 depend on the prompt only: run the prompt alone.
        clean = _prompt_batch([tokens.clean[i] for i in index], pad_id).to(device)
        items = torch.arange(n, device=device)
        clean_values = passes.record(loaded, clean, rows=items, positions=clean.last_prompt,
                                     kinds=kinds)  # kind → layer → [n, width]

        prompts = [tokens.corrupted[i] for i in index]
        answers = [tokens.correct[i] for i in index]
        sign = [1.0] * n
        if metric == "logit_diff":
            prompts += prompts
            answers += [tokens.incorrect[i] for i in index]
            sign += [-1.0] * n
        batch = make_batch(prompts, answers, pad_id).to(device)
        rows = torch.arange(len(prompts), device=device)
        probe_index = rows % n  # both answers of an item share the prompt, hence one probe
        probed = passes.gradients(loaded, batch, torch.tensor(sign, device=device), rows, batch.last_prompt,
                                  probe_index, n, kinds)
        for kind, (grads, values) in probed.items():
            for layer, grad in grads.items():  # [n, width]
                delta = clean_values[kind][layer] - values[layer][:n]  # same prompt for both answers
                totals[kind][layer] += (grad * delta).double().sum(0).cpu()
    scale = 1.0 / (len(indices) * (C - R))
    neurons = totals["neurons"].float() * scale
    head_scores = None
    if heads and not loaded.has_heads:  # a hybrid read for its neurons only: no head scores
        head_scores = torch.zeros(loaded.n_layers, 0)
    elif heads:
        per_dim = totals["heads"].float() * scale  # [L, H·head_dim]
        head_scores = per_dim.view(loaded.n_layers, loaded.n_heads, loaded.head_dim).sum(-1)
    return Attribution(tokens.name, metric, neurons, head_scores, len(indices), float(C), float(R))


@torch.no_grad()
def patch_effect(
    loaded: LoadedModel,
    tokens: TokenizedTask,
    indices: np.ndarray,
    C: float,
    R: float,
    neuron_sets: list[np.ndarray],
    metric: str = "paper",
    batch_size: int = 8,
) -> np.ndarray:
    """Exact effect on m of patching clean activations into the corrupted run.

    For each set of flat neuron indices (``layer · d_ff + i``), the clean
    values at T−1 replace the corrupted ones at T−1, and the change of the
    normalised metric (same ``metric`` convention as :func:`attribute_task`)
    is returned, averaged over the items: array [len(neuron_sets)]. This is
    the quantity attribution patching estimates to first order.
    """
    device = loaded.device
    pad_id = pad_id_of(loaded.tokenizer)
    # One plan per set: its columns per layer, all of them patched (membership [1, u_ℓ]).
    plans = [sites.plan_columns([flat], loaded.n_layers, loaded.d_ff, device) for flat in neuron_sets]
    effects = np.zeros(len(neuron_sets))
    for start in range(0, len(indices), batch_size):
        index = [int(i) for i in indices[start : start + batch_size]]
        n = len(index)
        items = torch.arange(n, device=device)
        clean = _prompt_batch([tokens.clean[i] for i in index], pad_id).to(device)
        clean_values = passes.record(loaded, clean, rows=items, positions=clean.last_prompt)["neurons"]  # layer → [n, d_ff]
        answer_lists = [[tokens.correct[i] for i in index]]
        if metric == "logit_diff":
            answer_lists.append([tokens.incorrect[i] for i in index])
        for sign, answers in zip((1.0, -1.0), answer_lists):
            batch = make_batch([tokens.corrupted[i] for i in index], answers, pad_id).to(device)
            base = passes.logprobs(loaded, batch)
            width = batch.input_ids.shape[1]
            at_last = torch.zeros(n, width, dtype=torch.bool, device=device)
            at_last[items, batch.last_prompt] = True
            for s, plan in enumerate(plans):
                replacement = {}
                for layer, cols in plan.columns.items():
                    full = torch.zeros(n, width, cols.numel(), dtype=loaded.dtype, device=device)  # [n, S, u_ℓ]
                    full[items, batch.last_prompt] = clean_values[layer].index_select(-1, cols)
                    replacement[layer] = full
                patch = sites.Patch(plan.membership, replacement, plan.columns, positions=at_last)
                patched = passes.logprobs(loaded, batch, patch)
                effects[s] += sign * float((patched - base).sum())
    return effects / (len(indices) * (C - R))


def top_neurons(scores: torch.Tensor, n: int = 10) -> "pd.DataFrame":
    """The ``n`` highest-scoring sites of a [L, width] score tensor: ``layer``, ``index``, ``score``."""
    import pandas as pd

    flat = scores.flatten()
    order = torch.argsort(flat, descending=True, stable=True)[:n]
    layers, index = sites.split_flat(order.numpy(), scores.shape[1])
    return pd.DataFrame({"layer": layers, "index": index, "score": flat[order].numpy()})


def verification_neurons(scores: torch.Tensor, n_top: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the ``n_top`` top-scoring neurons and of ``n_top`` random other neurons.

    The random ones show the estimate where effects are near zero; the top ones where they matter.
    """
    flat = scores.flatten()
    top = torch.argsort(flat, descending=True, stable=True)[:n_top].numpy()
    rng = np.random.default_rng(seed)
    rest = np.setdiff1d(np.arange(flat.numel()), top)
    return top, rng.choice(rest, size=min(n_top, rest.size), replace=False)


def compare_with_patching(estimates: np.ndarray, exact: np.ndarray) -> dict:
    """Agreement of attribution estimates with exact patching effects.

    Pearson and Spearman correlation, the slope of exact on estimate through the
    origin, and the sign agreement over the sites with a non-negligible effect.
    """
    from scipy import stats as scipy_stats

    estimates, exact = np.asarray(estimates, float), np.asarray(exact, float)
    big = np.abs(exact) > 1e-3 * max(np.abs(exact).max(), 1e-12)
    return {
        "n": len(exact),
        "pearson": float(scipy_stats.pearsonr(estimates, exact)[0]) if len(exact) > 2 else float("nan"),
        "spearman": float(scipy_stats.spearmanr(estimates, exact)[0]) if len(exact) > 2 else float("nan"),
        "slope": float(estimates @ exact / (estimates @ estimates)) if estimates.any() else float("nan"),
        "sign_agreement": float(np.mean(np.sign(estimates[big]) == np.sign(exact[big]))) if big.any() else float("nan"),
    }
