"""Where a causal language model keeps its neurons and heads, found from its module structure.

The study's units are read at the **input of each block's MLP down projection** (one neuron per
column, book methods §3) and its heads at the **input of the attention output projection**.
Every decoder-only model in ``transformers`` writes into its residual stream through exactly
those two projections per block, whatever they are called (``mlp.down_proj``, ``mlp.c_proj``,
``mlp.dense_4h_to_h``, ``fc2``; ``self_attn.o_proj``, ``attn.c_proj``, ``attention.dense``), so
:func:`resolve_sites` finds them by structure, on a model built on the meta device (no weights):

1. the **blocks** are the one ``ModuleList`` whose length is the config's layer count (a vision or
   audio tower's list is skipped);
2. in every block, the **residual writers** are the projections (``nn.Linear``, GPT-2's ``Conv1D``)
   whose output width is the embedding width; the one inside an attention module (a path part
   containing ``attn`` or ``attention``) is the head site, the other the neuron site;
3. a **mixture-of-experts** block has no dense down projection but one fused experts module
   (``transformers``' ``use_experts_implementation`` layout: ``gate_up_proj`` / ``up_proj`` and
   ``down_proj`` as ``[experts, ·, ·]`` tensors). Its unit is an expert's neuron,
   flat index ``expert · d_expert + neuron`` within the layer, read at :class:`ExpertUnits`, a
   module this package attaches to the experts (:func:`install_expert_units`);
4. every block must have the same neuron site (one flat index needs one width per layer: a model
   alternating dense and expert MLPs is refused); a hybrid whose blocks do not all have the same
   head site (attention beside linear attention or a state-space mixer, or attention of several
   widths, as in Qwen 3.5 and Gemma 4) is read for its neurons only.

A model whose structure does not resolve this way is refused with what was found and the override
to write (:data:`OVERRIDES`), before any weight is loaded.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import torch

__all__ = [
    "Family",
    "OVERRIDES",
    "UnsupportedModelError",
    "resolve_sites",
    "text_config",
    "layer_count",
    "head_count",
    "meta_model",
    "config_from_dict",
    "ExpertUnits",
    "install_expert_units",
    "EXPERT_UNITS",
]

#: Path parts that name a tower feeding the language model, not the language model's blocks.
OTHER_TOWERS = ("vision", "visual", "image", "audio", "speech")
ATTENTION_PARTS = ("attn", "attention")
MLP_PARTS = ("mlp", "ffn", "feed_forward")
#: Names of projections that read the residual stream inside attention (queries, keys, values, gates).
STREAM_READERS = re.compile(r"^(w?[qkvg]|qkv|query|key|value|gate|[qkvg]_?proj|qkv_proj|gate_proj|in_proj\w*|"
                            r"c_attn|query_key_value|wqkv|w_[qkvg]|[qkv]_a_proj\w*|[qkv]_b_proj)$", re.IGNORECASE)


@dataclass(frozen=True)
class Family:
    """Where a model keeps its blocks, neurons and heads.

    ``name``: the config's ``model_type``. ``layers``: dotted path(s) from the causal-LM root to
    the list of blocks (first that exists wins); ``mlp_down`` / ``attn_out``: path within a block
    to the module whose **input** is the neuron site [B, S, d_ff] / head site [B, S, H·d_head].
    ``resolved_by``: ``"structure"`` or ``"override"``. ``attn_out`` is empty for a model whose
    blocks do not all have the same head site (``note`` says why): its neurons are read, its heads
    are not. For a mixture-of-experts model
    ``experts`` is the path within a block to the fused experts module, ``mlp_down`` its
    :class:`ExpertUnits` child, and d_ff = ``n_experts · d_expert``.
    """

    name: str
    layers: tuple[str, ...]
    mlp_down: str
    attn_out: str
    resolved_by: str = "structure"
    experts: str = ""
    n_experts: int = 0
    d_expert: int = 0
    note: str = ""

    @property
    def is_moe(self) -> bool:
        return bool(self.experts)

    @property
    def has_heads(self) -> bool:
        return bool(self.attn_out)


#: ``model_type → Family`` for architectures whose structure is ambiguous. Add one with
#: ``OVERRIDES["my_type"] = Family("my_type", layers=("model.layers",), mlp_down="mlp.down_proj",
#: attn_out="self_attn.o_proj", resolved_by="override")``.
OVERRIDES: dict[str, Family] = {}

HOW_TO_OVERRIDE = (
    "If the model is a decoder-only causal LM, name its sites with an override: "
    "modularity.science.architecture.OVERRIDES['{model_type}'] = Family('{model_type}', "
    "layers=('path.to.blocks',), mlp_down='path.in.block.to.mlp_down_projection', "
    "attn_out='path.in.block.to.attention_output_projection', resolved_by='override') "
    "(the book's 'Rerun it for your model' chapter)."
)


class UnsupportedModelError(ValueError):
    """The model's neuron and head sites cannot be found."""


# --------------------------------------------------------------------------- config


def text_config(config):
    """The language model's part of a config (multimodal configs nest it)."""
    return config.get_text_config() if hasattr(config, "get_text_config") else config


def _first(config, *names):
    """The first of ``names`` the config sets (a per-layer attribute of a heterogeneous config,
    which refuses a global read, counts as unset)."""
    for name in names:
        try:
            value = getattr(config, name, None)
        except Exception:  # transformers' AmbiguousGlobalPerLayerAttributeError
            value = None
        if value is not None:
            return value
    return None


def layer_count(config) -> int | None:
    """The config's number of blocks."""
    return _first(text_config(config), "num_hidden_layers", "n_layer", "num_layers", "n_layers")


def head_count(config) -> int | None:
    """The config's number of attention (query) heads per block."""
    return _first(text_config(config), "num_attention_heads", "n_head", "num_heads", "n_heads")


def config_from_dict(fields: dict):
    """A ``transformers`` config from the dict of a ``config.json`` (a config object passes through)."""
    if not isinstance(fields, dict):
        return fields
    from transformers import AutoConfig

    fields = dict(fields)
    model_type = fields.pop("model_type", None)
    try:
        return AutoConfig.for_model(model_type, **fields)
    except (ValueError, KeyError) as error:
        raise UnsupportedModelError(f"transformers does not know model_type={model_type!r} ({error})") from None


def meta_model(config) -> torch.nn.Module:
    """``AutoModelForCausalLM.from_config(config)`` on the meta device: structure, no weights."""
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


# --------------------------------------------------------------------------- structure


def projection_widths(module: torch.nn.Module) -> tuple[int, int] | None:
    """``(input width, output width)`` of a projection (``nn.Linear`` or GPT-2's ``Conv1D``,
    whose weight is stored [in, out]); ``None`` for any other module."""
    if isinstance(module, torch.nn.Linear):
        return module.in_features, module.out_features
    if type(module).__name__ == "Conv1D" and getattr(module, "weight", None) is not None:
        return tuple(module.weight.shape)
    if isinstance(module, ExpertUnits):
        return module.in_features, module.out_features
    return None


def _is_experts(module: torch.nn.Module) -> bool:
    """A fused experts module in ``transformers``' layout (3-D ``down_proj``, ``num_experts``)."""
    down = getattr(module, "down_proj", None)
    return (isinstance(down, torch.nn.Parameter) and down.dim() == 3
            and getattr(module, "num_experts", None) is not None)


def _expert_sizes(experts: torch.nn.Module) -> tuple[int, int, int]:
    """``(n_experts, d_expert, d_model)`` of a fused experts module."""
    n_experts, a, b = experts.down_proj.shape
    # down_proj maps d_expert -> d_model: stored [E, d_model, d_expert], or [E, d_expert, d_model]
    # when the module says it is transposed.
    return (n_experts, a, b) if getattr(experts, "is_transposed", False) else (n_experts, b, a)


def _in_other_tower(path: str) -> bool:
    return any(word in part.lower() for part in path.split(".") for word in OTHER_TOWERS)


def attention_module(path: str) -> str:
    """The path up to the first part that names attention (``self_attn.o_proj`` → ``self_attn``)."""
    parts = path.split(".")
    first = next(i for i, part in enumerate(parts) if any(w in part.lower() for w in ATTENTION_PARTS))
    return ".".join(parts[: first + 1])


def _is_attention_path(path: str) -> bool:
    return any(word in part.lower() for part in path.split(".") for word in ATTENTION_PARTS)


def find_blocks(model: torch.nn.Module, n_layers: int | None, d_model: int) -> str:
    """Dotted path of the language model's block list (see the module docstring)."""
    lists = [(name, modules) for name, modules in model.named_modules()
             if isinstance(modules, torch.nn.ModuleList) and name]
    writing = [name for name, modules in lists
               if not _in_other_tower(name) and len(modules)
               and any((projection_widths(m) or (0, 0))[1] == d_model for m in modules[0].modules())]
    # The config's layer count decides; a config that counts layers under another name (an
    # encoder-decoder's decoder_layers) leaves the one outermost list that writes the stream.
    candidates = [name for name in writing if len(model.get_submodule(name)) == n_layers] or writing
    top = [name for name in candidates if not any(name.startswith(other + ".") for other in candidates)]
    if len(top) == 1:
        return top[0]
    found = ", ".join(f"{name} ({len(modules)})" for name, modules in lists[:8]) or "none"
    why = "several module lists" if top else "no module list"
    raise UnsupportedModelError(
        f"{why} of {n_layers} blocks writing width {d_model} found (module lists: {found})")


def _block_sites(block: torch.nn.Module, d_model: int, n_heads: int | None, head_dim: int | None) -> dict:
    """The neuron site of one block (raises when there is none, or several) and its head site
    (``heads`` is None where the block has none, with ``heads_why`` saying why).

    Candidates write the ``d_model``-wide stream (output width ``d_model``). The head site is the
    last registered such projection in the attention module whose input is H·d_head wide (where the
    config gives d_head), not named as a query, key, value or gate: those read the stream and are
    registered before it. The neuron site is the last registered one outside attention, in one module
    (the MLP's when a block has several, e.g. beside a Mamba mixer or a per-layer input projection);
    a block without attention must name it as an MLP (``mlp``, ``ffn``, ``feed_forward``).
    """
    experts = [name for name, module in block.named_modules() if _is_experts(module)]
    writers = {name: widths for name, module in block.named_modules()
               if (widths := projection_widths(module)) and widths[1] == d_model
               and not isinstance(module, ExpertUnits)}
    found = (f"projections onto the {d_model}-wide stream: "
             + (", ".join(f"{n} ({w[0]}→{w[1]})" for n, w in writers.items()) or "none")
             + (f"; fused experts: {', '.join(experts)}" if experts else ""))
    heads = _head_site(writers, n_heads, head_dim, found)
    sites = _neuron_site(block, writers, experts, has_attention=any(map(_is_attention_path, writers)), found=found)
    if isinstance(heads, dict):
        return {**sites, "heads": heads}
    return {**sites, "heads": None, "heads_why": heads}


def _head_site(writers: dict, n_heads: int | None, head_dim: int | None, found: str) -> dict | str:
    """``{"attn_out", "attn_in"}`` of a block, or why it has no head site (a string)."""
    attention = [name for name in writers if _is_attention_path(name)]
    # A projection named as a reader of the stream (a query, key, value or gate) is not the output;
    # a probe forward on load checks the choice by the order the projections run in.
    attention = [name for name in attention if not STREAM_READERS.match(name.rpartition(".")[2])] or attention
    if n_heads and head_dim:  # q, k, v read d_model; the output projection reads H·d_head
        # (unless values have their own width, as in multi-head latent attention: then keep all)
        attention = [name for name in attention if writers[name][0] == n_heads * head_dim] or attention
    if not attention:
        return f"no attention output projection ({found})"
    mixers = {attention_module(name) for name in attention}
    if len(mixers) > 1:
        return (f"{len(mixers)} attention modules write the stream ({', '.join(sorted(mixers))}: "
                "self- and cross-attention?)")
    attn_out = attention[-1]
    attn_in = writers[attn_out][0]
    if not n_heads:
        return f"the config names no number of attention heads for {attn_out}"
    if attn_in % n_heads:
        return f"attention output width {attn_in} of {attn_out} is not divisible by {n_heads} heads"
    return {"attn_out": attn_out, "attn_in": attn_in}


def _neuron_site(block, writers: dict, experts: list, has_attention: bool, found: str) -> dict:
    """The neuron site of a block: a dense MLP's down projection or one fused experts module."""
    dense = [name for name in writers if not _is_attention_path(name)
             and not any(name.startswith(e + ".") for e in experts)]
    parents = {name.rpartition(".")[0] for name in dense}
    mlp = {p for p in parents if any(w in p.rpartition(".")[2].lower() for w in MLP_PARTS)}
    if len(parents) > 1 and len(mlp) == 1 or not has_attention:
        parents, dense = mlp, [name for name in dense if name.rpartition(".")[0] in mlp]
    if dense and not experts and len(parents) == 1:
        return dict(mlp_down=dense[-1], d_ff=writers[dense[-1]][0])
    if not dense and len(experts) == 1:
        module = block.get_submodule(experts[0])
        if not hasattr(module, "has_gate"):
            raise UnsupportedModelError(f"experts {experts[0]} do not use transformers' experts interface "
                                        "(use_experts_implementation), through which their units are read")
        if getattr(module, "has_post_expert_norm", False):
            raise UnsupportedModelError(f"experts {experts[0]} normalise each expert's output: its units "
                                        "are not one linear map away from the stream")
        n_experts, d_expert, _ = _expert_sizes(module)
        return dict(mlp_down=f"{experts[0]}.{EXPERT_UNITS}", experts=experts[0], n_experts=n_experts,
                    d_expert=d_expert, d_ff=n_experts * d_expert)
    if dense and experts:
        what = "a dense MLP and experts both write"
    elif not dense:
        what = "no MLP down projection" + ("" if has_attention else " and no attention")
    else:
        what = f"stream writers in {len(parents)} modules besides attention ({', '.join(sorted(parents))})"
    raise UnsupportedModelError(f"{what} ({found})")


def resolve_sites(model: torch.nn.Module, config=None) -> Family:
    """The :class:`Family` of ``model`` (weights not needed: a :func:`meta_model` will do).

    An entry of :data:`OVERRIDES` for its ``model_type`` wins; otherwise the sites are found by
    structure (module docstring). Every block must have the same neuron site; a model whose blocks
    do not all have the same head site (a hybrid of attention and another mixer, or attention of
    several widths) gets no head site: ``attn_out`` is empty and ``note`` says why. Raises
    :class:`UnsupportedModelError` naming what was found and the override to write.
    """
    config = config if config is not None else model.config
    model_type = getattr(config, "model_type", "") or ""
    if model_type in OVERRIDES:
        return OVERRIDES[model_type]
    try:
        embeddings = model.get_input_embeddings()
        d_model = embeddings.embedding_dim
    except (AttributeError, NotImplementedError):
        d_model = _first(text_config(config), "hidden_size", "n_embd", "d_model")
    refused = (f"cannot find the neuron and head sites of model_type={model_type!r} ({type(model).__name__}): "
               "{}. " + HOW_TO_OVERRIDE.format(model_type=model_type))
    try:
        layers = find_blocks(model, layer_count(config), d_model)
        blocks = model.get_submodule(layers)
        n_heads = head_count(config)
        head_dim = _first(text_config(config), "head_dim")
        sites = [_block_sites(block, d_model, n_heads, head_dim) for block in blocks]
    except UnsupportedModelError as error:
        raise UnsupportedModelError(refused.format(error)) from None
    neurons = [{k: v for k, v in site.items() if k not in ("heads", "heads_why")} for site in sites]
    differing = [i for i, n in enumerate(neurons) if n != neurons[0]]
    if differing:
        i = differing[0]
        raise UnsupportedModelError(refused.format(
            f"blocks differ: block {i} has neurons at {neurons[i]['mlp_down']} ({neurons[i]['d_ff']} wide) but block 0 "
            f"at {neurons[0]['mlp_down']} ({neurons[0]['d_ff']} wide) (one flat neuron index needs the same sites in "
            "every block)"))
    heads, note = sites[0]["heads"], ""
    without = [i for i, site in enumerate(sites) if site["heads"] is None]
    if without:
        heads, note = None, f"no head site: block {without[0]}: {sites[without[0]]['heads_why'].split(' (')[0]}"
    elif any(site["heads"] != heads for site in sites):
        i = next(i for i, site in enumerate(sites) if site["heads"] != heads)
        heads, note = None, (f"no head site: block {i} has heads at {sites[i]['heads']['attn_out']} "
                             f"({sites[i]['heads']['attn_in']} wide), block 0 at {sites[0]['heads']['attn_out']} "
                             f"({sites[0]['heads']['attn_in']} wide)")
    first = neurons[0]
    return Family(name=model_type, layers=(layers,), mlp_down=first["mlp_down"],
                  attn_out=heads["attn_out"] if heads else "", experts=first.get("experts", ""),
                  n_experts=first.get("n_experts", 0), d_expert=first.get("d_expert", 0), note=note)


# --------------------------------------------------------------------------- mixture of experts

#: Name of the :class:`ExpertUnits` child attached to a fused experts module.
EXPERT_UNITS = "units"
_IMPLEMENTATION = "modularity_units"


class ExpertUnits(torch.nn.Module):
    """The second half of a fused experts module, so that its units are a module's input.

    ``forward(units, weights, down, bias)``: ``units`` [B, S, E·d_expert] is every expert's
    neuron activation at every token (computed for all experts, routed or not);
    ``weights`` [B·S, E] the router's weight of each expert per token (0 where not routed);
    ``down`` the experts' down projections ([E, d_model, d_expert], or [E, d_expert, d_model] when
    ``transposed``), ``bias`` [E, d_model] or None. Returns Σ_e w_e · (down_e u_e + b_e),
    [B·S, d_model]: the experts' output as the model computes it. An expert's neuron therefore
    acts on a token only through its router weight: where the router does not send the token to
    the expert, its gradient is 0, so attribution there is 0 and patching it there changes nothing.
    """

    def __init__(self, n_experts: int, d_expert: int, d_model: int, transposed: bool):
        super().__init__()
        self.n_experts, self.d_expert, self.transposed = n_experts, d_expert, transposed
        self.in_features, self.out_features = n_experts * d_expert, d_model

    def forward(self, units, weights, down, bias=None):
        tokens = weights.shape[0]
        weighted = (units.reshape(tokens, self.n_experts, self.d_expert) * weights[..., None].to(units.dtype))
        # Σ_e down_e (w_e u_e) is one product with the experts' down projections side by side.
        stacked = down if self.transposed else down.transpose(1, 2)  # [E, d_expert, d_model]
        out = weighted.reshape(tokens, -1) @ stacked.reshape(-1, stacked.shape[-1])
        if bias is not None:
            out = out + weights.to(bias.dtype) @ bias
        return out


def _expert_units_forward(self, hidden_states, top_k_index, top_k_weights):
    """An experts forward (``transformers``' experts interface) through :class:`ExpertUnits`."""
    tokens = hidden_states.shape[0]
    if self.has_gate:
        weight, bias = self.gate_up_proj, getattr(self, "gate_up_proj_bias", None) if self.has_bias else None
    else:
        weight, bias = self.up_proj, getattr(self, "up_proj_bias", None) if self.has_bias else None
    equation = "th,eho->teo" if self.is_transposed else "th,eoh->teo"
    projected = torch.einsum(equation, hidden_states, weight)  # [T, E, out]
    if bias is not None:
        projected = projected + bias
    units = self._apply_gate(projected) if self.has_gate else self.act_fn(projected)  # [T, E, d_expert]
    shape = getattr(self, "_site_shape", None)
    if shape is None or shape[0] * shape[1] != tokens:
        raise RuntimeError(f"the experts received {tokens} tokens but their parent module last saw a batch of "
                           f"shape {shape}: run them through their parent block")
    routed = top_k_index < self.num_experts  # expert-parallel sentinels point past the last expert
    weights = torch.zeros(tokens, self.num_experts + 1, dtype=top_k_weights.dtype, device=top_k_weights.device)
    weights.scatter_(1, torch.where(routed, top_k_index, self.num_experts), top_k_weights * routed)
    down_bias = getattr(self, "down_proj_bias", None) if self.has_bias else None
    out = getattr(self, EXPERT_UNITS)(units.reshape(*shape, -1), weights[:, :-1], self.down_proj, down_bias)
    return out.to(hidden_states.dtype)


def _register_implementation() -> None:
    from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS

    if _IMPLEMENTATION not in ALL_EXPERTS_FUNCTIONS:
        ALL_EXPERTS_FUNCTIONS.register(_IMPLEMENTATION, _expert_units_forward)


def install_expert_units(model: torch.nn.Module, family: Family) -> None:
    """Route every block's experts through an :class:`ExpertUnits` child (a no-op for a dense
    family). The outputs are the model's own up to float rounding (:func:`resolve_sites` callers
    check it with a probe forward); the router is left as it is."""
    if not family.is_moe:
        return
    _register_implementation()
    blocks = None
    for path in family.layers:
        try:
            blocks = model.get_submodule(path)
            break
        except AttributeError:
            continue
    parent_path, _, _ = family.experts.rpartition(".")
    for block in blocks:
        experts = block.get_submodule(family.experts)
        if not hasattr(experts, EXPERT_UNITS):
            n_experts, d_expert, d_model = _expert_sizes(experts)
            experts.add_module(EXPERT_UNITS, ExpertUnits(n_experts, d_expert, d_model,
                                                         bool(getattr(experts, "is_transposed", False))))
            parent = block.get_submodule(parent_path) if parent_path else block
            child = family.experts[len(parent_path) + 1:] if parent_path else family.experts
            parent.register_forward_pre_hook(functools.partial(_record_site_shape, experts=child), with_kwargs=True)
    config = model.config
    config._experts_implementation = _IMPLEMENTATION
    for sub in (text_config(config),):
        sub._experts_implementation = _IMPLEMENTATION


def _record_site_shape(module, args, kwargs, experts: str) -> None:
    """Pre-hook on the experts' parent: keep the [B, S] of the tokens it flattens on the experts
    module (named by path, not held: a deep copy of the model then records into its own copy)."""
    hidden = args[0] if args else kwargs.get("hidden_states")
    shape = tuple(hidden.shape[:2]) if hidden is not None and hidden.dim() == 3 else None
    module.get_submodule(experts)._site_shape = shape
