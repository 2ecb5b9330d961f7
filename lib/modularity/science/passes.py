"""The four model passes every stage is made of, on the run's backend.

* :func:`logprobs`: summed answer log-probs of a batch, optionally with neurons patched;
* :func:`record`: a site's values at chosen (row, position) pairs or everywhere;
* :func:`gradients`: the gradient of a weighted sum of answer log-probs w.r.t. the sites at
  chosen positions, with the sites' values there (attribution patching);
* :func:`site_sums`: a site summed over the real positions of a batch (mean ablation).

``loaded.backend`` picks the implementation: ``"hooks"`` (default) registers forward pre-hooks
with :mod:`modularity.science.sites` around a plain forward; ``"nnsight"`` runs the same pass as one
nnsight trace (:mod:`modularity.science.traces`), locally or, with ``loaded.remote``, on NDIF. Both take
and return the same tensors, so scoring, attribution and ablation are written once, above this
module, and give the same numbers on either backend (``tests/test_traces.py``).

``kind`` names a site: ``"neurons"`` (input of the MLP down projection, [B, S, d_ff]) or
``"heads"`` (input of the attention output projection, [B, S, H·head_dim]).
"""
from __future__ import annotations

from contextlib import ExitStack, nullcontext
from typing import TYPE_CHECKING, Mapping, Sequence

import torch

from . import batches, sites

if TYPE_CHECKING:
    from .models import LoadedModel
    from .batches import Batch

__all__ = ["logprobs", "record", "gradients", "site_sums"]


def _traced(loaded: "LoadedModel") -> bool:
    return getattr(loaded, "backend", "hooks") == "nnsight"


@torch.no_grad()
def logprobs(loaded: "LoadedModel", batch: "Batch", patch: sites.Patch | None = None) -> torch.Tensor:
    """Summed answer log-probs per output slot, float [n_slots] (no grad).

    ``patch``: neurons to overwrite during the forward (:class:`modularity.science.sites.Patch`; its
    groups lay out along the batch, so ``batch`` holds G blocks when the masks have G rows).
    """
    if _traced(loaded):
        from . import traces

        return traces.logprobs(loaded, batch, patch)
    context = nullcontext() if patch is None else sites.replace_neurons(
        loaded.site_modules("neurons"), patch.masks, patch.values, patch.positions, columns=patch.columns)
    with context:
        return batches.answer_logprobs(loaded.model, batch)


@torch.no_grad()
def record(
    loaded: "LoadedModel",
    batch: "Batch",
    columns: Mapping[int, torch.Tensor | None] | None = None,
    rows: torch.Tensor | None = None,
    positions: torch.Tensor | None = None,
    kinds: Sequence[str] = ("neurons",),
) -> dict[str, dict[int, torch.Tensor]]:
    """Sites ``kinds`` of the listed layers on ``batch`` (unpatched), in one forward:
    ``{kind: {layer: tensor}}``.

    ``columns``: ``{layer: LongTensor [u_ℓ] or None}`` (None: every layer, every column), the
    same for every kind. With ``rows``, ``positions`` (LongTensor [n]): [n, u_ℓ]; without:
    [B, S, u_ℓ]. The hook backend stops the forward after the last site it needs (identical
    values, fewer layers run).
    """
    kinds = [kind for kind in sites.KINDS if kind in kinds]  # forward order within a block
    if columns is not None and not columns:
        return {kind: {} for kind in kinds}
    if _traced(loaded):
        from . import traces

        return traces.record(loaded, batch, columns, rows, positions, kinds)
    with ExitStack() as stack:
        # Only the site computed last may stop the forward: the others are read before it.
        recorded = {kind: stack.enter_context(sites.record_at(loaded.site_modules(kind), rows, positions,
                                                              columns=columns, stop=kind == kinds[-1]))
                    for kind in kinds}
        sites.base_forward(loaded.model, batch)
    wanted = set(range(loaded.n_layers) if columns is None else columns)
    for kind, values in recorded.items():
        if wanted - set(values):
            raise RuntimeError(f"the recording forward never reached the {kind} of layers {sorted(wanted - set(values))}")
    return {kind: dict(values) for kind, values in recorded.items()}


def gradients(
    loaded: "LoadedModel",
    batch: "Batch",
    weights: torch.Tensor,
    rows: torch.Tensor,
    positions: torch.Tensor,
    probe_index: torch.Tensor,
    n_probes: int,
    kinds: Sequence[str] = ("neurons",),
) -> dict[str, tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]]:
    """Gradients of ``Σ_slot weights[slot] · LP(slot)`` w.r.t. the sites at (rows, positions).

    ``weights``: float [n_slots]; ``rows``, ``positions``, ``probe_index``: LongTensor [n];
    entries with the same ``probe_index`` share one gradient row (their gradients are summed),
    as sequences that share a prompt share one probe in :func:`modularity.science.sites.probe_at`.
    Returns ``{kind: (grads, values)}`` with ``grads[ℓ]`` [n_probes, width] and ``values[ℓ]``
    [n, width] (the sites there, detached), for every layer.
    """
    if _traced(loaded):
        from . import traces

        return traces.gradients(loaded, batch, weights, rows, positions, probe_index, n_probes, kinds)
    with torch.enable_grad(), ExitStack() as stack:
        probed = {kind: stack.enter_context(sites.probe_at(loaded.site_modules(kind), rows, positions,
                                                           probe_index, n_probes))
                  for kind in kinds}
        lp = batches.answer_logprobs(loaded.model, batch)
        (lp * weights.to(lp.dtype)).sum().backward()
    return {kind: ({layer: probe.grad for layer, probe in probes.items()}, values)
            for kind, (probes, values) in probed.items()}


@torch.no_grad()
def site_sums(loaded: "LoadedModel", batch: "Batch", where: torch.Tensor, kind: str = "neurons") -> torch.Tensor:
    """Site ``kind`` summed over the True positions of ``where`` (bool [B, S]), float64 [L, width]."""
    if _traced(loaded):
        from . import traces

        return traces.site_sums(loaded, batch, where, kind)
    modules = loaded.site_modules(kind)
    totals = torch.zeros(len(modules), loaded.site_width(kind), dtype=torch.float64, device=batch.input_ids.device)
    with sites.sum_into(modules, where, totals):
        sites.base_forward(loaded.model, batch)
    return totals
