"""Causal ablation of neuron sets: source task S's neurons, target task T's items (book methods §7).

For a target item n and each clean answer y ∈ {y⁺, y⁻}:

1. the corrupted sequence r_n ⊕ y runs unpatched and the MLP neurons are recorded
   at **every** position;
2. the clean sequence c_n ⊕ y runs with the neurons of the source set overwritten,
   at every position (answer tokens included), by the recorded corrupted values
   (``mode="corrupted"``, the study's), by 0 (``"zero"``) or by given per-neuron
   constants such as the mean activation (``"mean"``). All layers are patched in
   the same forward pass, giving LP′(c_n, y).

Per (S, T): ablated accuracy acc′ = mean_n 1[LP′(c_n, y⁺) > LP′(c_n, y⁻)]; the
study stores Δ = 1 − acc′ (it assumes the unablated accuracy is 1, book methods, difference 13,
which we re-measure in the same code path with nothing patched); the change of
the normalised logit difference (LD′ − LD)/(C − R) is reported as well.

Speed: per target batch the corrupted run is done once for all source sets, and
several sets run in **one** forward: the clean batch is replicated G times along
the batch axis, each replica (group) carrying its own neuron mask. Only the
union of all sets' neurons is recorded and touched (:mod:`modularity.science.sites`: one
``index_select`` / ``torch.where`` / ``index_copy`` per layer, hooks only on layers
some set of the forward touches), so memory stays small. No per-item or
per-neuron Python loop runs in the hot path. Work that cannot change a scored
log-prob is skipped, with identical values: y⁺ and y⁻ share one sequence where
they differ only in their last token; the last answer token of each sequence is
not run (no scored logit comes after it, and causal attention keeps it from
earlier positions); the corrupted recording forward stops after the last layer
any set touches.

Everything here is pure computation (tensors / DataFrames in and out).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets

from . import passes, sites
from .batches import Batch, make_batch, pad_id_of, plan_carriers
from .models import LoadedModel
from .overlap import domain_of, order_labels
from .scoring import TokenizedTask

MODES = ("corrupted", "zero", "mean")
CONTROL_KINDS = ("layer_matched", "uniform")
#: Name of the always-present group with nothing patched (the re-measured baseline).
UNABLATED = "__unablated__"

__all__ = [
    "MODES",
    "CONTROL_KINDS",
    "AblationLogprobs",
    "ablation_logprobs",
    "ablate_target",
    "mean_activations",
    "random_control_sets",
    "build_ablation_sets",
    "ablation_matrix",
    "relation_of",
    "ablation_summary",
    "control_summary",
]


# --------------------------------------------------------------------------- batches


def _replicate(batch: Batch, groups: int) -> Batch:
    """The batch repeated ``groups`` times along the batch axis (answer rows and output
    slots shifted block by block, so outputs come out as [groups · n_outputs])."""
    rows = batch.input_ids.shape[0]
    block = torch.arange(groups, device=batch.input_ids.device)[:, None]
    changes = {
        "input_ids": batch.input_ids.repeat(groups, 1),
        "attention_mask": batch.attention_mask.repeat(groups, 1),
        "last_prompt": batch.last_prompt.repeat(groups),
        "answer_rows": (batch.answer_rows[None, :] + block * rows).reshape(-1),
        "answer_pos": batch.answer_pos.repeat(groups),
        "answer_ids": batch.answer_ids.repeat(groups),
    }
    if hasattr(batch, "n_slots"):  # batches that score several answers per row
        changes["answer_slot"] = (batch.answer_slot[None, :] + block * batch.n_slots).reshape(-1)
        changes["n_slots"] = batch.n_slots * groups
    return dataclasses.replace(batch, **changes)


# --------------------------------------------------------------------------- core


@dataclass
class AblationLogprobs:
    """Log-probs of the clean answers after the clean prompts of one target.

    ``patched``: float64 [n_sets, 2, N] — LP′(c_n, y⁺) and LP′(c_n, y⁻) per set;
    ``unablated``: float64 [2, N] — the same with nothing patched (same code path);
    ``sources``: the set names (rows of ``patched``); ``items``: the N item indices.
    """

    sources: list[str]
    items: np.ndarray
    patched: np.ndarray
    unablated: np.ndarray


def _check_mode(mode: str, mean_values, loaded: LoadedModel) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "mean":
        if mean_values is None:
            raise ValueError("mode='mean' needs mean_values [L, d_ff] (e.g. mean_activations(...))")
        if tuple(mean_values.shape) != (loaded.n_layers, loaded.d_ff):
            raise ValueError(f"mean_values must have shape {(loaded.n_layers, loaded.d_ff)}, got {tuple(mean_values.shape)}")


@torch.no_grad()
def ablation_logprobs(
    loaded: LoadedModel,
    tokens: TokenizedTask,
    indices,
    source_sets: Mapping[str, np.ndarray],
    mode: str = "corrupted",
    batch_size: int = 8,
    mean_values: torch.Tensor | None = None,
    max_tokens: int = 4096,
    group_size: int | None = None,
    progress: bool = False,
) -> AblationLogprobs:
    """LP′(c_n, y) for every source set and item, plus the unpatched LP (see module docstring).

    ``source_sets``: name → flat neuron indices (``layer · d_ff + i``), any sizes,
    empty allowed. ``indices``: target item indices (aligned, both-correct ones in
    the study). ``batch_size`` items per target batch (2 · batch_size sequences);
    ``group_size`` sets per forward (default: as many as fit in ``max_tokens``
    tokens per forward, at least 1). ``mean_values``: [L, d_ff] for ``mode="mean"``.
    """
    _check_mode(mode, mean_values, loaded)
    names = list(source_sets)
    if UNABLATED in names:
        raise ValueError(f"{UNABLATED!r} is reserved for the unpatched baseline")
    indices = np.asarray(indices, dtype=np.int64)
    misaligned = [int(i) for i in indices if len(tokens.clean[i]) != len(tokens.corrupted[i])]
    if mode == "corrupted" and misaligned:
        raise ValueError(
            f"task {tokens.name!r}: items {misaligned[:5]} have clean and corrupted prompts of different "
            "lengths; corrupted patching needs token-aligned items (use both_correct_indices)"
        )
    device = loaded.device
    pad_id = pad_id_of(loaded.tokenizer)
    # Group 0 patches nothing: the re-measured unablated baseline, same forward path.
    all_sets = [np.empty(0, dtype=np.int64)] + [np.asarray(source_sets[n], dtype=np.int64) for n in names]
    plan = sites.plan_columns(all_sets, loaded.n_layers, loaded.d_ff, device)
    constants = {}
    if mode in ("zero", "mean"):
        for layer, cols in plan.columns.items():
            base = torch.zeros(cols.numel(), device=device) if mode == "zero" else \
                torch.as_tensor(mean_values, device=device)[layer].index_select(0, cols)
            constants[layer] = base.to(loaded.dtype)[None, None, :]  # [1, 1, u] broadcast over B, S

    n_items = len(indices)
    result = np.zeros((len(all_sets), 2, n_items))
    starts = range(0, n_items, batch_size)
    for start in tqdm(starts, desc=tokens.name, disable=not progress, leave=False):
        index = indices[start : start + batch_size].tolist()
        n = len(index)
        answers = [tokens.correct[i] for i in index] + [tokens.incorrect[i] for i in index]
        items = index * 2
        # y⁺ and y⁻ of an item share one sequence when they differ only in their last token:
        # the patched values at the positions that predict it depend on the prompt alone.
        carriers, carrier_of = plan_carriers([tokens.clean[i] for i in items], answers, keys=items)
        # A carrier's last answer token is never an input that matters: no scored logit comes
        # after it and causal attention keeps it from earlier positions, so every sequence
        # stops one token early (one-token answers: the prompt alone). Same values, fewer tokens.
        carrier_answers = [answer[:-1] for _, answer in carriers]
        requests = [(carrier_of[j], answers[j]) for j in range(2 * n)]
        clean = make_batch([tokens.clean[items[p]] for p, _ in carriers], carrier_answers, pad_id,
                           requests=requests).to(device)
        if mode == "corrupted":
            corrupted = make_batch([tokens.corrupted[items[p]] for p, _ in carriers], carrier_answers,
                                   pad_id).to(device)
            # Equal lengths make every position line up: same shape, same answer positions.
            assert corrupted.input_ids.shape == clean.input_ids.shape
            assert torch.equal(corrupted.last_prompt, clean.last_prompt)
            # Truncated: stops after the last layer any set touches.
            values = passes.record(loaded, corrupted, plan.columns)["neurons"]  # [carriers, S, u_ℓ]
        else:
            values = constants
        tokens_per_group = clean.input_ids.numel()
        groups = group_size or max(1, max_tokens // max(1, tokens_per_group))
        for g0 in range(0, len(all_sets), groups):
            chunk = slice(g0, min(g0 + groups, len(all_sets)))
            size = chunk.stop - chunk.start
            masks = {
                layer: member[chunk] for layer, member in plan.membership.items() if member[chunk].any()
            }
            # Layers no group of this forward patches get no hook.
            lp = passes.logprobs(loaded, _replicate(clean, size), sites.Patch(masks, values, plan.columns))
            result[chunk, :, start : start + n] = lp.double().cpu().numpy().reshape(size, 2, n)
    return AblationLogprobs(names, indices, result[1:], result[0])


def _normalised_change(patched: np.ndarray, unablated: np.ndarray, C, R) -> np.ndarray:
    """Mean over items of (LD′ − LD)/(C − R) per set, [n_sets] (NaN without C, R)."""
    if C is None or R is None:
        return np.full(patched.shape[0], np.nan)
    if not C > R:
        raise ValueError(f"baselines must satisfy C > R, got C={C}, R={R}")
    ld_patched = patched[:, 0] - patched[:, 1]  # [n_sets, N]
    ld_clean = unablated[0] - unablated[1]  # [N]
    return ((ld_patched - ld_clean[None, :]) / (C - R)).mean(axis=1)


def summarise_logprobs(lps: AblationLogprobs, C: float | None = None, R: float | None = None) -> pd.DataFrame:
    """One row per source set from :class:`AblationLogprobs` (columns as :func:`ablate_target`)."""
    n_items = lps.items.size
    accuracy = (lps.patched[:, 0] > lps.patched[:, 1]).mean(axis=1) if n_items else np.full(len(lps.sources), np.nan)
    unablated = float((lps.unablated[0] > lps.unablated[1]).mean()) if n_items else float("nan")
    return pd.DataFrame(
        {
            "source": lps.sources,
            "n_items": n_items,
            "accuracy": accuracy,
            "unablated_accuracy": unablated,
            "drop": 1.0 - accuracy,
            "drop_vs_unablated": unablated - accuracy,
            "metric_change": _normalised_change(lps.patched, lps.unablated, C, R),
        }
    )


def ablate_target(
    loaded: LoadedModel,
    tokens: TokenizedTask,
    indices,
    source_sets: Mapping[str, np.ndarray],
    mode: str = "corrupted",
    batch_size: int = 8,
    mean_values: torch.Tensor | None = None,
    progress: bool = False,
    C: float | None = None,
    R: float | None = None,
    max_tokens: int = 4096,
    group_size: int | None = None,
) -> pd.DataFrame:
    """Ablate each source set on one target task (book methods §7). One row per source:

    ``source``, ``n_items``, ``accuracy`` (acc′), ``unablated_accuracy`` (nothing
    patched, same code path), ``drop`` = 1 − acc′ (the study's stored value),
    ``drop_vs_unablated`` = unablated − acc′, ``metric_change`` = mean_n
    (LD′_n − LD_n)/(C − R) with LD = LP(c, y⁺) − LP(c, y⁻) (NaN when C, R are
    not given). Arguments as :func:`ablation_logprobs`.
    """
    lps = ablation_logprobs(
        loaded, tokens, indices, source_sets, mode=mode, batch_size=batch_size,
        mean_values=mean_values, max_tokens=max_tokens, group_size=group_size, progress=progress,
    )
    return summarise_logprobs(lps, C, R)


@torch.no_grad()
def mean_activations(loaded: LoadedModel, tokens: TokenizedTask, indices, batch_size: int = 8) -> torch.Tensor:
    """Mean neuron activation [L, d_ff] (float32, CPU) over every real position of the
    sequences ``mode="mean"`` patches: c_n ⊕ y⁺ and c_n ⊕ y⁻ for n in ``indices``."""
    pad_id = pad_id_of(loaded.tokenizer)
    total = torch.zeros(loaded.n_layers, loaded.d_ff, dtype=torch.float64, device=loaded.device)
    count = 0
    indices = np.asarray(indices, dtype=np.int64)
    for start in range(0, len(indices), batch_size):
        index = indices[start : start + batch_size].tolist()
        answers = [tokens.correct[i] for i in index] + [tokens.incorrect[i] for i in index]
        batch = make_batch([tokens.clean[i] for i in index] * 2, answers, pad_id).to(loaded.device)
        real = batch.attention_mask.bool()
        total += passes.site_sums(loaded, batch, real)
        count += int(real.sum())
    return (total / max(count, 1)).float().cpu()


# --------------------------------------------------------------------------- random controls


def random_control_sets(
    source_set: np.ndarray,
    n_layers: int,
    d_ff: int,
    kind: str = "layer_matched",
    n_sets: int = 3,
    seed: int = 0,
    exclude_source: bool = True,
) -> list[np.ndarray]:
    """``n_sets`` random neuron sets of the source set's size (sorted flat indices).

    ``kind="layer_matched"``: in every layer as many neurons as the source set has
    there; ``"uniform"``: drawn from all L · d_ff neurons. With ``exclude_source``
    the source's own neurons are never drawn, so a control measures *other*
    neurons. Draws are without replacement, from ``default_rng(seed)``.
    """
    if kind not in CONTROL_KINDS:
        raise ValueError(f"kind must be one of {CONTROL_KINDS}, got {kind!r}")
    source = np.unique(np.asarray(source_set, dtype=np.int64))
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_sets):
        if kind == "uniform":
            pool = np.setdiff1d(np.arange(n_layers * d_ff), source) if exclude_source else np.arange(n_layers * d_ff)
            chosen = rng.choice(pool, size=source.size, replace=False)
        else:
            layers, neurons = sites.split_flat(source, d_ff)
            parts = []
            for layer, count in zip(*np.unique(layers, return_counts=True)):
                pool = np.arange(d_ff)
                if exclude_source:
                    pool = np.setdiff1d(pool, neurons[layers == layer])
                parts.append(sites.join_flat(layer, rng.choice(pool, size=count, replace=False), d_ff))
            chosen = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
        out.append(np.sort(chosen).astype(np.int64))
    return out


def build_ablation_sets(
    source_sets: Mapping[str, np.ndarray],
    n_layers: int,
    d_ff: int,
    n_controls: int = 3,
    seed: int = 0,
    kinds: Sequence[str] = CONTROL_KINDS,
) -> tuple[dict[str, np.ndarray], pd.DataFrame]:
    """The selected sets plus ``n_controls`` random sets of each kind per source.

    Control seeds are derived from (``seed``, source position, kind, draw), so
    every source gets its own reproducible draws. Returns (name → flat indices,
    table with one row per set: ``set``, ``source``, ``kind`` ("selected" or a
    control kind), ``draw`` (−1 for selected), ``n_neurons``).
    """
    sets, rows = {}, []
    for position, (source, selected) in enumerate(source_sets.items()):
        selected = np.asarray(selected, dtype=np.int64)
        sets[source] = selected
        rows.append({"set": source, "source": source, "kind": "selected", "draw": -1, "n_neurons": selected.size})
        for kind_index, kind in enumerate(kinds):
            child_seed = int(np.random.SeedSequence([seed, position, kind_index]).generate_state(1)[0])
            for draw, control in enumerate(random_control_sets(selected, n_layers, d_ff, kind, n_controls, child_seed)):
                name = f"{source}|{kind}|{draw}"
                sets[name] = control
                rows.append({"set": name, "source": source, "kind": kind, "draw": draw, "n_neurons": control.size})
    return sets, pd.DataFrame(rows)


# --------------------------------------------------------------------------- matrices and summaries


def ablation_matrix(cells: pd.DataFrame, value: str = "drop", kind: str | None = "selected") -> pd.DataFrame:
    """Square source × target matrix of ``value`` from long-format ``cells``.

    ``cells``: columns ``source``, ``target``, ``value`` (and ``kind``, filtered to
    ``kind`` when present and ``kind`` is not None). Labels are the union of
    sources and targets in the study's order (:func:`order_labels`); missing cells
    are NaN. Rows = sources, columns = targets.
    """
    if kind is not None and "kind" in cells.columns:
        cells = cells[cells["kind"] == kind]
    labels = order_labels(sorted(set(cells["source"]) | set(cells["target"])))
    table = cells.pivot_table(index="source", columns="target", values=value, aggfunc="mean")
    matrix = table.reindex(index=labels, columns=labels).astype(float)
    matrix.index.name = None
    matrix.columns.name = None
    return matrix


def relation_of(source: str, target: str) -> str:
    """"self" (S = T), "within" (same domain) or "across" for two ``domain/task`` labels."""
    if source == target:
        return "self"
    return "within" if domain_of(source) == domain_of(target) else "across"


def ablation_summary(matrix: pd.DataFrame, n_permutations: int = 10_000, seed: int = 42,
                     stronger: str = "higher") -> dict:
    """Self / within / across means of a directed ablation matrix and the permutation test.

    ``self`` = mean of the diagonal; within / across / ratio / delta / p from
    :func:`modularity.science.stats.within_cross_permutation` (off-diagonal cells, both
    directions, NaN skipped); ``n_tasks``. ``stronger``: ``"higher"`` when larger
    values mean a stronger effect (accuracy drops), ``"lower"`` when smaller ones do
    (the normalised metric change, negative when ablation hurts): the one-sided test
    then asks whether within-domain cells are more negative. Values keep their sign.
    """
    from .stats import within_cross_permutation

    if stronger not in ("higher", "lower"):
        raise ValueError(f"stronger must be 'higher' or 'lower', got {stronger!r}")
    sign = 1.0 if stronger == "higher" else -1.0
    test = within_cross_permutation(sign * matrix, n_permutations=n_permutations, seed=seed)
    test = {**test, "within": sign * test["within"], "cross": sign * test["cross"], "delta": sign * test["delta"]}
    diagonal = np.diag(matrix.to_numpy(dtype=float))
    diagonal = diagonal[np.isfinite(diagonal)]
    return {
        "self": float(diagonal.mean()) if diagonal.size else float("nan"),
        "within": test["within"],
        "across": test["cross"],
        "ratio": test["ratio"],
        "delta": test["delta"],
        "p": test["p"],
        "n_tasks": test["n_tasks"],
    }


def control_summary(cells: pd.DataFrame, value: str = "drop") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Selected sets vs random controls.

    ``cells``: long format with columns ``source``, ``target``, ``kind``
    ("selected" or a control kind) and ``value``. Returns

    * per cell: ``source``, ``target``, ``relation`` (:func:`relation_of`),
      ``selected`` and one column per control kind (mean over draws), and
      ``excess_<kind>`` = selected − control;
    * summary: one row per relation (self, within, across): ``n_cells``, mean
      ``selected``, mean of each control kind, and ``share_above_<kind>`` = the
      fraction of cells where the selected set hurts more than the control mean.
      Controls may have been run on some cells only (e.g. the diagonal): means and
      shares then use the cells that have them, counted in ``n_cells_<kind>``.
    """
    per_kind = cells.pivot_table(index=["source", "target"], columns="kind", values=value, aggfunc="mean")
    per_kind.columns.name = None
    per_cell = per_kind.reset_index()
    if "selected" not in per_cell:
        raise ValueError("cells hold no 'selected' rows")
    controls = [k for k in per_kind.columns if k != "selected"]
    per_cell.insert(2, "relation", [relation_of(s, t) for s, t in zip(per_cell.source, per_cell.target)])
    for kind in controls:
        per_cell[f"excess_{kind}"] = per_cell["selected"] - per_cell[kind]
    rows = []
    for relation in ("self", "within", "across"):
        part = per_cell[per_cell.relation == relation]
        row = {"relation": relation, "n_cells": len(part), "selected": part["selected"].mean()}
        for kind in controls:
            row[f"n_cells_{kind}"] = int(part[kind].notna().sum())  # controls may cover only some cells
            row[kind] = part[kind].mean()
            valid = part[["selected", kind]].dropna()
            row[f"share_above_{kind}"] = float((valid["selected"] > valid[kind]).mean()) if len(valid) else float("nan")
        rows.append(row)
    return per_cell, pd.DataFrame(rows)
