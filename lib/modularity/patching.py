"""Forward hooks shared by attribution and ablation.

Sites are the *inputs* of per-layer modules (see :class:`~modularity.models.Family`):
MLP neurons are the input of the down projection, head outputs the input of the
attention output projection. All hooks are vectorised over the batch: one
indexing op per layer, no per-item Python loops.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch


@contextmanager
def hooks(modules: Sequence[torch.nn.Module], make_hook) -> Iterator[None]:
    """Register ``make_hook(layer)`` as a forward pre-hook on each module."""
    handles = [m.register_forward_pre_hook(make_hook(layer)) for layer, m in enumerate(modules)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def record_at(
    modules: Sequence[torch.nn.Module], rows: torch.Tensor, positions: torch.Tensor
) -> Iterator[list[torch.Tensor]]:
    """Record each layer's site at (rows[i], positions[i]) → list of [n, width] tensors."""
    recorded: list[torch.Tensor] = [None] * len(modules)  # type: ignore[list-item]

    def make_hook(layer):
        def hook(module, args):
            recorded[layer] = args[0][rows, positions].detach()

        return hook

    with hooks(modules, make_hook):
        yield recorded


@contextmanager
def probe_at(
    modules: Sequence[torch.nn.Module],
    rows: torch.Tensor,
    positions: torch.Tensor,
    probe_index: torch.Tensor,
    n_probes: int,
) -> Iterator[tuple[list[torch.Tensor], list[torch.Tensor]]]:
    """Add a zero probe at (rows, positions) of each layer's site and record the site there.

    ``probe_index[i]`` says which of ``n_probes`` probe rows feeds entry i, so
    several sequences that share a prompt (e.g. corrupted ⊕ y⁺ and corrupted ⊕
    y⁻) share one probe. After ``backward()``, ``probes[layer].grad`` [n_probes,
    width] is the gradient of the objective w.r.t. the site at that position,
    summed over the sequences sharing the probe. Values are unchanged (x + 0).
    """
    probes: list[torch.Tensor] = [None] * len(modules)  # type: ignore[list-item]
    values: list[torch.Tensor] = [None] * len(modules)  # type: ignore[list-item]

    def make_hook(layer):
        def hook(module, args):
            x = args[0]
            probe = torch.zeros(n_probes, x.shape[-1], dtype=x.dtype, device=x.device, requires_grad=True)
            probes[layer] = probe
            values[layer] = x[rows, positions].detach()
            return (x.index_put((rows, positions), probe[probe_index], accumulate=True),) + tuple(args[1:])

        return hook

    with hooks(modules, make_hook):
        yield probes, values


@contextmanager
def replace_neurons(
    modules: Sequence[torch.nn.Module],
    masks: dict[int, torch.Tensor],
    replacement: dict[int, torch.Tensor],
    positions: torch.Tensor | None = None,
) -> Iterator[None]:
    """Overwrite selected neurons of each layer's site with given values.

    ``masks[layer]``: bool [G, width] — G groups (e.g. source sets) laid out
    along the batch as G consecutive blocks of equal size; ``replacement[layer]``:
    [B, S, width] values for one block (broadcast over groups) or [G·B, S, width].
    ``positions``: optional bool [B, S] limiting the patch to some positions
    (default: every position). Layers absent from ``masks`` run untouched.
    """

    def make_hook(layer):
        if layer not in masks:
            return lambda module, args: None
        mask = masks[layer]

        def hook(module, args):
            x = args[0]
            groups = mask.shape[0]
            batch = x.shape[0] // groups
            shaped = x.view(groups, batch, *x.shape[1:])
            new = replacement[layer].to(x.dtype)
            new = new.view(groups, batch, *x.shape[1:]) if new.shape[0] == x.shape[0] else new.unsqueeze(0)
            where = mask[:, None, None, :]
            if positions is not None:
                where = where & positions[None, :, :, None]
            return (torch.where(where, new, shaped).view_as(x),) + tuple(args[1:])

        return hook

    with hooks(modules, make_hook):
        yield
