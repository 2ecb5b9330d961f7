"""Which architectures the pipeline runs, measured on tiny random models of each.

* :func:`survey_model_types` walks every model type of the installed ``transformers``' causal-LM
  mapping, builds each from its default config made tiny (:func:`tiny_config`) on the meta device and
  says whether its sites resolve by structure (:func:`modularity.science.architecture.resolve_sites`)
  and, if not, why.
* :func:`check_family` builds one tiny random model (seeded), saves it with a tokenizer, loads it as a
  user's model is loaded (the sites are checked by a probe forward) and measures what the stages rely
  on: attribution scores against exact patching of single neurons, the nnsight backend against the
  hooks, and a model with half its blocks offloaded to disk against the single-device one.

The rerun chapter's architecture page shows both tables; the test suite runs the stages on the same
tiny models.
"""
from __future__ import annotations

import copy
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..base import numerics
from ..science import ablation, attribution, scoring
from ..science.architecture import UnsupportedModelError, meta_model, resolve_sites

__all__ = ["SHRINK", "FAMILIES", "tiny_config", "tiny_model_dir", "survey_model_types", "check_family",
           "check_families", "half_on_disk", "stage_outputs"]

#: Sizes that make any architecture tiny: each is set where the model type's default config has it.
SHRINK = dict(hidden_size=32, n_embd=32, intermediate_size=64, n_inner=64, num_hidden_layers=2, n_layer=2,
              num_attention_heads=4, n_head=4, num_key_value_heads=2, head_dim=8, moe_intermediate_size=16,
              num_experts=4, num_local_experts=4, num_experts_per_tok=2, max_position_embeddings=512,
              n_positions=512, sliding_window=16)
#: A multimodal config's other towers, made tiny too.
SHRINK_OTHER = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                    image_size=28, patch_size=14)
TOKEN_IDS = dict(bos_token_id=1, eos_token_id=2, pad_token_id=2)

#: Families the test suite and the rerun chapter check end to end (``model_type`` values): the dense
#: architectures people run in interpretability work now, two hybrids read for their neurons only
#: (Qwen 3.5: linear and full attention; Gemma 4: attention of two widths) and four mixtures of experts.
FAMILIES = ("llama", "mistral", "qwen2", "qwen3", "olmo2", "olmo3", "gemma2", "gemma3_text", "gemma3", "phi3",
            "granite", "smollm3", "gpt_neox", "gpt2", "qwen3_5_text", "gemma4_text", "qwen3_moe", "mixtral", "olmoe",
            "gpt_oss")
#: Blocks of a tiny model where two would not show every kind: Qwen 3.5 has full attention every 4th block.
TINY_LAYERS = {"qwen3_5": 4, "qwen3_5_text": 4}


def tiny_config(model_type: str, vocab_size: int = 512):
    """The default config of ``model_type`` with :data:`SHRINK` sizes (2 blocks); raises what
    ``transformers`` raises for a type it cannot build that way."""
    import transformers as tf

    default = tf.AutoConfig.for_model(model_type)

    def shrunk(config, sizes):
        fields = config.to_dict()  # not getattr: a per-layer field of a heterogeneous config refuses a global read
        values = {key: value for key, value in sizes.items() if fields.get(key) is not None}
        if fields.get("layer_types") is not None:  # regenerated for the new block count
            values["layer_types"] = None
        return values

    sizes = dict(SHRINK, num_hidden_layers=TINY_LAYERS.get(model_type, SHRINK["num_hidden_layers"]))
    text = default.get_text_config()
    if text is default:
        return tf.AutoConfig.for_model(model_type, **shrunk(default, sizes), vocab_size=vocab_size, **TOKEN_IDS)
    nested = {}
    for key in getattr(default, "sub_configs", {}):
        sub = getattr(default, key, None)
        if sub is text:
            nested[key] = {**text.to_dict(), **shrunk(text, sizes), "vocab_size": vocab_size, **TOKEN_IDS}
        elif sub is not None:
            nested[key] = {**sub.to_dict(), **shrunk(sub, SHRINK_OTHER)}
    if hasattr(default, "mm_tokens_per_image"):
        nested["mm_tokens_per_image"] = 4
    return tf.AutoConfig.for_model(model_type, **nested, **TOKEN_IDS)


def tiny_model_dir(model_type: str, tokenizer, folder: Path, seed: int = 0, scale: float = 1.0) -> Path:
    """Build a tiny random ``model_type`` (seeded), save it with ``tokenizer`` under ``folder``.

    ``scale`` multiplies every weight matrix: at the default initialisation a tiny model's outputs
    hardly depend on its input, so no item is both-correct; at 4 some are, and the later stages run.
    """
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(model_type, len(tokenizer)))
    if scale != 1.0:
        with torch.no_grad():
            for parameter in model.parameters():
                if parameter.dim() > 1:
                    parameter.mul_(scale)
    path = Path(folder) / f"{model_type}-x{scale:g}"
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# --------------------------------------------------------------------------- the survey


def survey_model_types(model_types=None) -> pd.DataFrame:
    """One row per causal-LM model type of the installed ``transformers`` (or ``model_types``):
    ``model_type, model_class, resolved`` (bool), ``neurons`` and ``heads`` (the site paths, in a
    block; no head site for a hybrid read for its neurons only), ``experts`` (per layer, 0 for a dense
    model), ``why`` (the reason it is refused, or that ``transformers`` cannot build it from its
    default config) and ``note`` (why a resolved model has no head site)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    from transformers.utils import logging as hf_logging

    rows = []
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        for model_type in sorted(model_types or MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
            row = dict(model_type=model_type, model_class=MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type, ""),
                       resolved=False, neurons="", heads="", experts=0, why="", note="")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model, config = _meta_of(model_type)
            except Exception as error:  # noqa: BLE001 - any failure of transformers to build it is the answer
                row["why"] = f"transformers does not build it from its default config ({type(error).__name__})"
                rows.append(row)
                continue
            try:
                family = resolve_sites(model, config)
            except UnsupportedModelError as error:
                row["why"] = _reason(str(error))
            else:
                row.update(resolved=True, neurons=family.mlp_down, heads=family.attn_out, experts=family.n_experts,
                           note=family.note)
            rows.append(row)
    finally:
        hf_logging.set_verbosity(verbosity)
    return pd.DataFrame(rows)


def _meta_of(model_type: str):
    """``(meta model, config)``: tiny where the sizes of :data:`SHRINK` apply, else at the default sizes
    (the structure is the same; on the meta device size costs nothing)."""
    from transformers import AutoConfig

    try:
        config = tiny_config(model_type)
        return meta_model(config), config
    except Exception:  # noqa: BLE001 - some configs derive sizes that cannot be set one by one
        config = AutoConfig.for_model(model_type)
        return meta_model(config), config


def _reason(message: str) -> str:
    """The part of a refusal that says why (without the override advice)."""
    reason = message.split(": ", 1)[-1] if message.startswith("cannot find") else message
    for lists in ("no module list", "several module lists"):  # the config names no layer count
        reason = reason.replace(f"{lists} of None blocks", f"no layer count in the config, and {lists} of blocks")
    return reason.split(". If the model is")[0].split(" (one flat neuron index")[0]


# --------------------------------------------------------------------------- one family, measured


def half_on_disk(loaded) -> dict[str, str]:
    """An accelerate device map with every module on the CPU except the second half of the blocks,
    which live on disk (loaded just before each runs)."""
    model, blocks = loaded.model, loaded.block_path()
    device_map, path = {}, blocks
    while path:  # everything beside the block container, up to the root, stays on the CPU
        parent, _, _ = path.rpartition(".")
        for name, _ in (model.get_submodule(parent) if parent else model).named_children():
            full = f"{parent}.{name}" if parent else name
            if full != path:
                device_map[full] = "cpu"
        path = parent
    half = loaded.n_layers // 2
    device_map.update({f"{blocks}.{i}": "disk" if i >= half else "cpu" for i in range(loaded.n_layers)})
    return device_map


def stage_outputs(loaded, task, items: np.ndarray, sets: dict) -> tuple:
    """What the three model stages compute on the same items: log-probs [n] (stage 1), attribution
    scores [L, d_ff] (stage 2), ablated log-probs (stage 5) of the flat neuron ``sets``."""
    tokens = scoring.tokenize_task(loaded, task)
    lp = scoring.sequence_logprobs(loaded, [tokens.clean[i] for i in items], [tokens.correct[i] for i in items])
    scores = attribution.attribute_task(loaded, tokens, items, C=1.0, R=-1.0).neurons.float()
    ablated = np.asarray(ablation.ablation_logprobs(loaded, tokens, items, sets).patched, dtype=float)
    return lp, scores, ablated


def _gap(got, want) -> float:
    """Largest absolute difference over the three stage outputs, relative to the largest value."""
    ratios = []
    for a, b in zip(got, want):
        a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
        ratios.append(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))
    return float(max(ratios))


def check_family(model_type: str, tokenizer, folder: Path, seed: int = 0, n_items: int = 4,
                 n_neurons: int = 20, scale: float = 1.0) -> dict:
    """Measure one architecture on a tiny random model (see the module docstring).

    Returns ``model_type, model_class, resolved_by, neurons, heads, units`` (per layer), ``experts``,
    ``attribution_r`` (Pearson r of attribution scores and exact single-neuron patching effects over
    the top 8 and 12 random neurons), ``nnsight_gap`` and ``offload_gap`` (largest difference of the
    stage outputs from the hooks' single-device ones, relative to the largest value) and ``error``
    (empty, or why it failed). ``scale`` multiplies the random weights (:func:`tiny_model_dir`):
    smaller weights make smaller, more linear effects.
    """
    from accelerate import dispatch_model

    from ..science.models import describe_model, load_model
    from ..science.tasks import generate_task

    row = dict(model_type=model_type, model_class="", resolved_by="", neurons="", heads="", units=0, experts=0,
               attribution_r=np.nan, nnsight_gap=np.nan, offload_gap=np.nan, error="")
    try:
        path = tiny_model_dir(model_type, tokenizer, folder, seed, scale)
        loaded = load_model(str(path))
        row.update(model_class=type(loaded.model).__name__, resolved_by=loaded.family.resolved_by,
                   neurons=loaded.family.mlp_down, heads=loaded.family.attn_out, units=loaded.d_ff,
                   experts=loaded.family.n_experts)
        task = generate_task("code_list", "small", n_items=n_items, seed=seed)
        items = np.arange(n_items)
        tokens = scoring.tokenize_task(loaded, task)
        scores = attribution.attribute_task(loaded, tokens, items, C=1.0, R=-1.0, heads=False).neurons.flatten().numpy()
        top = np.argsort(-np.abs(scores))[:8]
        rest = np.setdiff1d(np.arange(scores.size), top)
        chosen = np.concatenate([top, np.random.default_rng(seed).choice(rest, n_neurons - 8, replace=False)])
        exact = attribution.patch_effect(loaded, tokens, items, 1.0, -1.0, [np.array([i]) for i in chosen])
        row["attribution_r"] = float(np.corrcoef(scores[chosen], exact)[0, 1])
        sets = {"source": chosen[:3]}
        reference = stage_outputs(loaded, task, items, sets)
        loaded.backend = "nnsight"
        row["nnsight_gap"] = _gap(stage_outputs(loaded, task, items, sets), reference)
        loaded.backend = "hooks"
        with tempfile.TemporaryDirectory() as offload:
            model = dispatch_model(copy.deepcopy(loaded.model), device_map=half_on_disk(loaded), offload_dir=offload)
            dispatched = describe_model(f"{model_type} (half on disk)", model, loaded.tokenizer)
            row["offload_gap"] = _gap(stage_outputs(dispatched, task, items, sets), reference)
    except Exception as error:  # noqa: BLE001 - the table reports a family that fails, with why
        row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return row


def check_families(tokenizer, model_types=FAMILIES, seed: int = 0) -> pd.DataFrame:
    """:func:`check_family` for each of ``model_types``, one row each."""
    with tempfile.TemporaryDirectory() as folder:
        return pd.DataFrame([check_family(t, tokenizer, Path(folder), seed) for t in model_types])


def largest_allowed_gap(n_layers: int = 2, dtype="float32") -> float:
    """The relative difference two float32 computations of the same stage outputs may show
    (:func:`modularity.base.numerics.tolerance` at unit scale)."""
    return numerics.tolerance(1.0, n_layers, dtype)
