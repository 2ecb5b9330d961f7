"""Named model sites: record, patch and probe them with forward pre-hooks (the one hook layer).

A *site* is the input of one module per layer (see :class:`~modularity.science.models.Family`): the MLP
neurons are the input of the down projection, [B, S, d_ff] (``LoadedModel.site_modules("neurons")``),
the head outputs the input of the attention output projection, [B, S, H·head_dim]
(``LoadedModel.site_modules("heads")``); :data:`KINDS` names them. ``modules`` below is such a
per-layer list, indexed by layer.

Every operation takes the same selection:

* ``columns``: a layer subset and a column index, ``{layer: LongTensor [u_ℓ]}``; a value
  ``None`` means every column of that layer (u_ℓ = width); a plain list of layers means
  every column of those; ``None`` means every layer, every column. Layers outside the
  subset get no hook at all;
* ``rows``, ``positions``: LongTensor [n] each, the (batch row, sequence position) pairs
  to read or write; none means every position.

Results come back as dicts keyed by layer. Every hook is vectorised over the batch: one
indexing op per layer, no per-item or per-neuron Python loop.

Flat neuron indices (``layer · d_ff + column``, the C order of an [L, d_ff] score tensor) are
split and joined by :func:`split_flat` / :func:`join_flat` only; :func:`plan_columns` turns
several flat sets into per-layer columns and a membership mask for :func:`replace_neurons`.

With ``stop=True`` a recording raises :class:`StopForward` once its last layer is read, and
:func:`base_forward` ends there: nothing above a layer feeds back into it, so the recorded
values are identical and the layers above, the final norm and the head never run.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Iterator, Mapping, Sequence, Union

import numpy as np
import torch

if TYPE_CHECKING:  # only for annotations
    from .batches import Batch

#: ``{layer: column index [u_ℓ] or None (every column)}``, a list of layers, or None (all).
Columns = Union[Mapping[int, Union[torch.Tensor, None]], Iterable[int], None]

__all__ = [
    "split_flat",
    "read_site",
    "patched_site",
    "Patch",
    "join_flat",
    "ColumnPlan",
    "plan_columns",
    "StopForward",
    "hooks",
    "record_at",
    "probe_at",
    "replace_neurons",
    "sum_into",
    "base_forward",
    "KINDS",
]

#: Site kinds, in the order a block computes them (attention output before the MLP).
KINDS = ("heads", "neurons")


# --------------------------------------------------------------------------- flat neuron indices


def split_flat(flat, d_ff: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices ``layer · d_ff + column`` (any shape, array or CPU tensor) → (layers,
    columns), two int64 arrays [n] (flattened in C order)."""
    flat = np.asarray(flat, dtype=np.int64).ravel()
    return np.divmod(flat, d_ff)


def join_flat(layers, columns, d_ff: int) -> np.ndarray:
    """(layers, columns) → flat indices ``layer · d_ff + column``, int64 (broadcast shapes)."""
    return np.asarray(layers, dtype=np.int64) * d_ff + np.asarray(columns, dtype=np.int64)


@dataclass
class ColumnPlan:
    """Which columns each layer touches, and which set touches which of them.

    ``columns[ℓ]``: LongTensor [u_ℓ], the sorted union of all sets' columns in layer ℓ;
    ``membership[ℓ]``: bool [n_sets, u_ℓ], set s contains column j. Only layers some set
    touches are keys.
    """

    columns: dict[int, torch.Tensor]
    membership: dict[int, torch.Tensor]


def plan_columns(sets: Sequence, n_layers: int, d_ff: int, device=None) -> ColumnPlan:
    """Per-layer columns and membership of several flat index sets (each any size, empty
    allowed; duplicates count once). Raises ValueError for an index outside [0, L · d_ff)."""
    per_set = [split_flat(s, d_ff) for s in sets]
    for layers, _ in per_set:
        if layers.size and (layers.min() < 0 or layers.max() >= n_layers):
            raise ValueError(f"neuron index outside [0, {n_layers} · {d_ff})")
    columns, membership = {}, {}
    for layer in range(n_layers):
        union = np.unique(np.concatenate([n[l == layer] for l, n in per_set] + [np.empty(0, np.int64)]))
        if not union.size:
            continue
        member = np.zeros((len(sets), union.size), dtype=bool)
        for row, (l, n) in enumerate(per_set):
            member[row, np.searchsorted(union, n[l == layer])] = True
        columns[layer] = torch.as_tensor(union, device=device)
        membership[layer] = torch.as_tensor(member, device=device)
    return ColumnPlan(columns, membership)


# --------------------------------------------------------------------------- site tensors (pure)


def read_site(x: torch.Tensor, rows: torch.Tensor | None = None, positions: torch.Tensor | None = None,
              cols: torch.Tensor | None = None) -> torch.Tensor:
    """The selected part of a site tensor ``x`` [B, S, width] (a copy, never a view).

    With ``rows``, ``positions`` (LongTensor [n] each): [n, u], entry i at (rows[i],
    positions[i]); without: [B, S, u], every position. ``cols``: LongTensor [u] or None (every
    column, u = width). The hooks of :func:`record_at` and the traces of
    :mod:`modularity.science.traces` both read sites through this function.
    """
    if rows is None:
        return x.clone() if cols is None else x.index_select(-1, cols)
    if cols is None:
        return x[rows, positions]
    return x[rows[:, None], positions[:, None], cols]


def patched_site(x: torch.Tensor, mask: torch.Tensor, values: torch.Tensor, cols: torch.Tensor | None = None,
                 positions: torch.Tensor | None = None, in_place: bool = False) -> torch.Tensor:
    """``x`` [G·B, S, width] with the masked columns of each group overwritten by ``values``.

    ``mask``: bool [G, u], G groups laid out along the batch as G consecutive blocks of B rows;
    group g writes column j where ``mask[g, j]``. ``values``: [B, S, u] (shared by the groups),
    [G·B, S, u], or anything broadcasting to [B, S, u]. ``cols``: LongTensor [u], the site
    columns ``mask`` and ``values`` refer to (None: every column). ``positions``: optional bool
    [B, S] limiting the write. ``in_place`` (needs ``cols`` and a contiguous ``x``) writes into
    ``x`` and returns it; otherwise a patched copy is returned. The hooks of
    :func:`replace_neurons` and the traces of :mod:`modularity.science.traces` both patch through it.
    """
    groups = mask.shape[0]
    shaped = x.reshape(groups, -1, *x.shape[1:])  # [G, B, S, width]
    current = shaped if cols is None else shaped.index_select(-1, cols)  # [G, B, S, u]
    new = values.to(x.dtype)
    new = new.view(groups, -1, *new.shape[1:]) if new.shape[0] == x.shape[0] else new.unsqueeze(0)
    where = mask[:, None, None, :]
    if positions is not None:
        where = where & positions[None, :, :, None]
    patched = torch.where(where, new, current)  # [G, B, S, u]
    if cols is None:
        return patched.view_as(x)
    if in_place:
        shaped.index_copy_(-1, cols, patched)
        return x
    return shaped.index_copy(-1, cols, patched).view_as(x)


@dataclass(frozen=True)
class Patch:
    """Neurons to overwrite during a forward, as :func:`replace_neurons` takes them.

    ``masks[ℓ]``: bool [G, u_ℓ]; ``values[ℓ]``: the new values (see :func:`patched_site`);
    ``columns[ℓ]``: LongTensor [u_ℓ] the masks refer to (absent: every column);
    ``positions``: optional bool [B, S]. Layers absent from ``masks`` are left alone.
    """

    masks: Mapping[int, torch.Tensor]
    values: Mapping[int, torch.Tensor]
    columns: Mapping[int, torch.Tensor | None] | None = None
    positions: torch.Tensor | None = None


# --------------------------------------------------------------------------- hooks


class StopForward(Exception):
    """Raised by a ``stop=True`` recording once its last layer is read; :func:`base_forward`
    catches it."""


def _selection(columns: Columns, n_modules: int) -> dict[int, torch.Tensor | None]:
    if columns is None:
        return dict.fromkeys(range(n_modules))
    if isinstance(columns, Mapping):
        return dict(columns)
    return dict.fromkeys(int(layer) for layer in columns)


@contextmanager
def hooks(modules: Sequence[torch.nn.Module], make_hook, layers: Iterable[int] | None = None) -> Iterator[None]:
    """Register ``make_hook(layer)`` as a forward pre-hook on ``modules[layer]`` for each listed
    layer (default: all), in increasing layer order; removed on exit."""
    layers = range(len(modules)) if layers is None else sorted(layers)
    handles = [modules[layer].register_forward_pre_hook(make_hook(layer)) for layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def record_at(
    modules: Sequence[torch.nn.Module],
    rows: torch.Tensor | None = None,
    positions: torch.Tensor | None = None,
    *,
    columns: Columns = None,
    stop: bool = False,
) -> Iterator[dict[int, torch.Tensor]]:
    """Record the selected sites (detached) into a dict ``layer →`` tensor.

    With ``rows``, ``positions`` (LongTensor [n] each): [n, u_ℓ], entry i at (rows[i],
    positions[i]); without: [B, S, u_ℓ], every position. ``columns``: see the module
    docstring (u_ℓ = width when a layer takes every column). ``stop``: the hook of the last
    selected layer raises :class:`StopForward` after recording (run the forward with
    :func:`base_forward`).
    """
    selection = _selection(columns, len(modules))
    recorded: dict[int, torch.Tensor] = {}
    last = max(selection, default=None)

    def make_hook(layer):
        cols = selection[layer]

        def hook(module, args):
            recorded[layer] = read_site(args[0], rows, positions, cols).detach()
            if stop and layer == last:
                raise StopForward

        return hook

    with hooks(modules, make_hook, selection):
        yield recorded


@contextmanager
def probe_at(
    modules: Sequence[torch.nn.Module],
    rows: torch.Tensor,
    positions: torch.Tensor,
    probe_index: torch.Tensor,
    n_probes: int,
    *,
    columns: Columns = None,
) -> Iterator[tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]]:
    """Add a zero probe at (rows, positions) of each selected site and record the site there.

    ``rows``, ``positions``, ``probe_index``: LongTensor [n]; ``probe_index[i]`` says which of
    ``n_probes`` probe rows feeds entry i, so sequences that share a prompt (e.g. corrupted ⊕
    y⁺ and corrupted ⊕ y⁻) share one probe. Yields ``(probes, values)``, dicts ``layer →``:
    ``probes[ℓ]`` a leaf [n_probes, u_ℓ] (zeros, requires grad) whose ``.grad`` after
    ``backward()`` is the gradient of the objective w.r.t. the site at that position, summed
    over the sequences sharing the probe; ``values[ℓ]`` [n, u_ℓ] the site there (detached).
    Values downstream are unchanged (x + 0). ``columns``: see the module docstring.
    """
    selection = _selection(columns, len(modules))
    probes: dict[int, torch.Tensor] = {}
    values: dict[int, torch.Tensor] = {}

    def make_hook(layer):
        cols = selection[layer]
        where = (rows, positions) if cols is None else (rows[:, None], positions[:, None], cols)

        def hook(module, args):
            x = args[0]
            width = x.shape[-1] if cols is None else cols.numel()
            probe = torch.zeros(n_probes, width, dtype=x.dtype, device=x.device, requires_grad=True)
            probes[layer] = probe
            values[layer] = x[where].detach()
            return (x.index_put(where, probe[probe_index], accumulate=True),) + tuple(args[1:])

        return hook

    with hooks(modules, make_hook, selection):
        yield probes, values


@contextmanager
def replace_neurons(
    modules: Sequence[torch.nn.Module],
    masks: Mapping[int, torch.Tensor],
    values: Mapping[int, torch.Tensor],
    positions: torch.Tensor | None = None,
    *,
    columns: Mapping[int, torch.Tensor | None] | None = None,
) -> Iterator[None]:
    """Overwrite selected columns of each masked layer's site (the patch).

    ``masks[ℓ]``: bool [G, u_ℓ], G groups (e.g. source sets) laid out along the batch as G
    consecutive blocks of equal size B; group g overwrites column j where ``masks[ℓ][g, j]``.
    ``values[ℓ]``: the new values, [B, S, u_ℓ] for one block (shared by the groups),
    [G·B, S, u_ℓ], or anything broadcasting to [B, S, u_ℓ] (e.g. [1, 1, u_ℓ] constants).
    ``columns[ℓ]``: LongTensor [u_ℓ], the site columns that masks and values refer to
    (absent or None: every column, u_ℓ = width). ``positions``: optional bool [B, S] limiting
    the patch to some positions (default: every position). Layers absent from ``masks`` get
    no hook. Without grad, a contiguous site is written in place (it is a temporary read only
    by its projection: saves a copy of the activation per layer); otherwise a patched copy
    replaces it.
    """
    columns = columns or {}

    def make_hook(layer):
        mask, cols = masks[layer], columns.get(layer)

        def hook(module, args):
            x = args[0]
            # Without grad a contiguous site is a temporary only its projection reads: write in place.
            in_place = cols is not None and x.is_contiguous() and not torch.is_grad_enabled()
            patched = patched_site(x, mask, values[layer], cols, positions, in_place=in_place)
            return None if in_place else (patched,) + tuple(args[1:])

        return hook

    with hooks(modules, make_hook, masks):
        yield


@contextmanager
def sum_into(modules: Sequence[torch.nn.Module], where: torch.Tensor, totals) -> Iterator[None]:
    """Add each layer's site summed over the True positions of ``where`` (bool [B, S]), in
    float64, to ``totals[layer]`` ([width] float64: a row of an [L, width] tensor or a dict
    entry)."""

    def make_hook(layer):
        def hook(module, args):
            totals[layer] += args[0][where].double().sum(0)

        return hook

    with hooks(modules, make_hook):
        yield


# --------------------------------------------------------------------------- forwards


def base_forward(model: torch.nn.Module, batch: "Batch") -> None:
    """Run the transformer body (``model.base_model``: no LM head, no cache) on ``batch``
    (``input_ids``, ``attention_mask`` [B, S]) for its hooks' sake; a :class:`StopForward`
    raised by a ``stop=True`` recording ends it early."""
    try:
        model.base_model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False)
    except StopForward:
        pass
