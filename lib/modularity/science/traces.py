"""The passes of :mod:`modularity.science.passes` as nnsight traces (``backend: nnsight``).

Each pass is one ``model.trace`` over the batch as the hook backend sees it (right-padded
``input_ids`` and ``attention_mask``, no re-tokenising). The body reads and writes the sites
through the same pure functions as the hooks (:func:`modularity.science.sites.read_site`,
:func:`modularity.science.sites.patched_site`), in forward order — nnsight runs the body interleaved
with the forward, so a layer's site is read after the layers below it — and saves only what the
stage keeps: answer log-probs [n_slots], the site at the positions asked for, gradients at the
probed positions. With ``loaded.remote`` the same body runs on NDIF's copy of the model
(``remote=True``) and only those small tensors come back; ``remote="local"`` is nnsight's local
simulation of that path (the body is serialised with this package's modules shipped by value,
as for the service, and run here), which the tests use.

Answer log-probs come from the model's own output head (``logits_to_keep``: only the positions
that predict answer tokens), so logit soft-capping is the model's; the hook backend applies the
head to the same positions itself (:func:`modularity.science.batches.answer_logprobs`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import nnsight
import torch

from . import batches, sites

if TYPE_CHECKING:
    from .models import LoadedModel
    from .batches import Batch

__all__ = ["logprobs", "record", "gradients", "site_sums", "ship_by_value"]


def ship_by_value() -> None:
    """Register the modules trace bodies call into for serialisation by value (``nnsight.register``):
    the service has torch and nnsight, not this package."""
    from . import traces

    nnsight.register(batches)
    nnsight.register(sites)
    nnsight.register(traces)


def _trace(loaded: "LoadedModel", batch: "Batch", **kwargs):
    remote = getattr(loaded, "remote", False)
    if remote:
        ship_by_value()
    inputs = {"input_ids": batch.input_ids, "attention_mask": batch.attention_mask}
    return loaded.lm.trace(inputs, remote=remote, **kwargs)


def _answer_positions(batch: "Batch") -> tuple[torch.Tensor, torch.Tensor]:
    """The sorted distinct positions that predict answer tokens [P], and each answer token's
    index among them [A]."""
    kept, index = torch.unique(batch.answer_pos, sorted=True, return_inverse=True)
    return kept, index


def answer_scores(logits: torch.Tensor, batch_rows: torch.Tensor, kept_index: torch.Tensor,
                  answer_ids: torch.Tensor, answer_slot: torch.Tensor, n_slots: int) -> torch.Tensor:
    """Summed log-probs per output slot [n_slots] from ``logits`` [B, P, V] at the kept positions."""
    return batches.slot_logprobs(logits[batch_rows, kept_index].float(), answer_ids, answer_slot, n_slots)


def logprobs(loaded: "LoadedModel", batch: "Batch", patch: sites.Patch | None = None) -> torch.Tensor:
    """:func:`modularity.science.passes.logprobs` as one trace."""
    kept, kept_index = _answer_positions(batch)
    rows, ids, slots, n_slots = batch.answer_rows, batch.answer_ids, batch.answer_slot, batch.n_slots
    patched = [] if patch is None else [
        (loaded.lm.get(loaded.site_path("neurons", layer)), patch.masks[layer], patch.values[layer],
         (patch.columns or {}).get(layer))
        for layer in sorted(patch.masks)]
    positions = None if patch is None else patch.positions
    lm = loaded.lm  # the body must not reference this package's objects: it may be shipped
    with torch.no_grad(), _trace(loaded, batch, logits_to_keep=kept):
        for envoy, mask, values, cols in patched:  # forward order
            envoy.input = sites.patched_site(envoy.input, mask, values, cols, positions)
        scores = answer_scores(lm.output.logits, rows, kept_index, ids, slots, n_slots).save()
    return scores


def record(loaded: "LoadedModel", batch: "Batch", columns: Mapping[int, torch.Tensor | None] | None = None,
           rows: torch.Tensor | None = None, positions: torch.Tensor | None = None,
           kinds: Sequence[str] = ("neurons",)) -> dict[str, dict[int, torch.Tensor]]:
    """:func:`modularity.science.passes.record` as one trace (the whole forward runs)."""
    layers = range(loaded.n_layers) if columns is None else sorted(columns)
    order = [(kind, layer) for layer in layers for kind in sites.KINDS if kind in kinds]  # forward order
    reads = [(loaded.lm.get(loaded.site_path(kind, layer)), None if columns is None else columns[layer])
             for kind, layer in order]
    kept = batch.last_prompt.new_zeros(1)  # the head's output is not needed: one position
    with torch.no_grad(), _trace(loaded, batch, logits_to_keep=kept):
        recorded = nnsight.save([sites.read_site(envoy.input, rows, positions, cols) for envoy, cols in reads])
    out = {kind: {} for kind in sites.KINDS if kind in kinds}
    for (kind, layer), value in zip(order, recorded):
        out[kind][layer] = value
    return out


def gradients(loaded: "LoadedModel", batch: "Batch", weights: torch.Tensor, rows: torch.Tensor,
              positions: torch.Tensor, probe_index: torch.Tensor, n_probes: int,
              kinds: Sequence[str] = ("neurons",)) -> dict[str, tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]]:
    """:func:`modularity.science.passes.gradients` as one trace with a backward pass in it."""
    order = [(layer, kind) for layer in range(loaded.n_layers) for kind in sites.KINDS if kind in kinds]  # forward order
    envoys = [loaded.lm.get(loaded.site_path(kind, layer)) for layer, kind in order]
    kept, kept_index = _answer_positions(batch)
    a_rows, ids, slots, n_slots = batch.answer_rows, batch.answer_ids, batch.answer_slot, batch.n_slots
    lm = loaded.lm
    with _trace(loaded, batch, logits_to_keep=kept):
        live = []
        for envoy in envoys:
            site = envoy.input
            site.requires_grad_(True)  # the frozen model builds no graph below the first site
            live.append(site)
        values = nnsight.save([site[rows, positions].detach() for site in live])
        backwards = nnsight.save([])  # gradient rows, filled in reverse forward order
        scores = answer_scores(lm.output.logits, a_rows, kept_index, ids, slots, n_slots)
        objective = (scores * weights.to(scores.dtype)).sum()
        with objective.backward():
            for j in reversed(range(len(live))):  # gradients arrive in reverse forward order
                at = live[j].grad[rows, positions]  # [n, width]
                backwards.append(torch.zeros(n_probes, at.shape[-1], dtype=at.dtype, device=at.device).index_add(
                    0, probe_index, at))
    result = {kind: ({}, {}) for kind in kinds}
    for (layer, kind), grad, value in zip(order, reversed(backwards), values):
        result[kind][0][layer] = grad
        result[kind][1][layer] = value
    return result


def site_sums(loaded: "LoadedModel", batch: "Batch", where: torch.Tensor, kind: str = "neurons") -> torch.Tensor:
    """:func:`modularity.science.passes.site_sums` as one trace."""
    envoys = [loaded.lm.get(loaded.site_path(kind, layer)) for layer in range(loaded.n_layers)]
    kept = batch.last_prompt.new_zeros(1)
    with torch.no_grad(), _trace(loaded, batch, logits_to_keep=kept):
        sums = nnsight.save([envoy.input[where].double().sum(0) for envoy in envoys])
    return torch.stack(sums)
