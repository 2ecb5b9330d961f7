"""Checks of a run that need no model, made before anything heavy loads.

``modularity run`` makes them before its first stage and ``modularity plan`` before it reads the
model's config, so a run that cannot work stops in a second with one line naming the params
file, the item and the fix, instead of minutes later inside a stage notebook. Each failure is a
:class:`PreflightError`, a ``ValueError``: the command line prints it as one line and exits 2.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path


class PreflightError(ValueError):
    """A run that cannot work, found before loading anything."""


def check_device(params: dict, source: str) -> None:
    """Refuse ``device: cuda`` (or ``cuda:N``) where torch sees no such GPU."""
    device = params["device"]
    if params["remote"] or not device.startswith("cuda"):
        return  # a hosted model runs on the service's GPUs; "auto" falls back to the CPU by itself
    import torch

    if not torch.cuda.is_available():
        raise PreflightError(f"{source}: device: {device} but no CUDA device is visible here "
                             "(torch.cuda.is_available() is False); set device: cpu, or run on a machine with a GPU")
    index = device.partition(":")[2]
    if index and not (index.isdigit() and int(index) < torch.cuda.device_count()):
        raise PreflightError(f"{source}: device: {device} but this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}; choose one of them or auto")


def check_model(params: dict, source: str) -> None:
    """Refuse a model that cannot be found or whose neuron and head sites cannot be found.

    Reads only the config: a local folder's ``config.json``, a GGUF file's header, or a Hugging
    Face id's ``config.json`` when the local Hugging Face cache holds it (the hub is never asked;
    a model not cached is checked when the first stage loads it), and finds the sites on a
    weightless copy (:func:`modularity.science.models.check_supported`, as loading does). Embedded
    models are supported by construction (a test loads them).
    """
    from ..science.models import EMBEDDED_MODELS, check_supported, resolve_model_source

    model = params["model"]
    try:
        location, kwargs = resolve_model_source(model)
        if model in EMBEDDED_MODELS:
            return
        config = _model_config(location, kwargs)
        family = check_supported(config) if config is not None else None
        if family is not None and family.is_moe and params.get("remote"):
            raise ValueError("a mixture of experts' units are read through a module this package adds to the "
                             "experts, which a hosted model does not run: run it locally (remote: false)")
    except (FileNotFoundError, ValueError) as error:
        raise PreflightError(f"{source}: model: {model}: {error}") from None


def _model_config(location: str, kwargs: dict):
    """The config of a resolved model source, or None when it cannot be read without the hub."""
    from ..science.architecture import config_from_dict

    if "gguf_file" in kwargs:
        from transformers import AutoConfig

        gguf_architecture(Path(location) / kwargs["gguf_file"])  # a clear error for a file that is no GGUF
        return AutoConfig.from_pretrained(location, gguf_file=kwargs["gguf_file"])
    config = Path(location) / "config.json"
    if not config.is_file():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(location, "config.json")
        if not isinstance(cached, str):
            return None
        config = Path(cached)
    try:
        return config_from_dict(json.loads(config.read_text()))
    except json.JSONDecodeError as error:
        raise ValueError(f"{config}: not valid JSON ({error})") from None


#: Byte sizes of the GGUF metadata value types that have a fixed size (the GGUF specification's
#: ``gguf_metadata_value_type``: uint8, int8, uint16, int16, uint32, int32, float32, bool, uint64,
#: int64, float64); 8 is a string, 9 an array.
_GGUF_FIXED_SIZES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
_GGUF_STRING, _GGUF_ARRAY = 8, 9


def gguf_architecture(path: Path) -> str:
    """``general.architecture`` of a GGUF file, read from its header alone.

    ``gguf.GGUFReader`` parses every metadata array, the tokenizer's vocabulary included (seconds
    for a small model); the architecture is among the first keys, so values before it are skipped.
    """
    def number(fmt: str):
        return struct.unpack(fmt, handle.read(struct.calcsize(fmt)))[0]

    def string() -> str:
        return handle.read(number("<Q")).decode("utf-8", errors="replace")

    def skip(kind: int) -> None:
        if kind == _GGUF_STRING:
            handle.seek(number("<Q"), 1)
        elif kind == _GGUF_ARRAY:
            item, count = number("<I"), number("<Q")
            if item in _GGUF_FIXED_SIZES:
                handle.seek(_GGUF_FIXED_SIZES[item] * count, 1)
            else:
                for _ in range(count):
                    skip(item)
        else:
            handle.seek(_GGUF_FIXED_SIZES[kind], 1)

    with open(path, "rb") as handle:
        try:
            if handle.read(4) != b"GGUF" or number("<I") < 2:
                raise ValueError(f"{path}: not a GGUF file of version 2 or later")
            number("<Q")  # tensor count
            for _ in range(number("<Q")):
                key, kind = string(), number("<I")
                if key == "general.architecture" and kind == _GGUF_STRING:
                    return string()
                skip(kind)
        except (struct.error, KeyError):
            raise ValueError(f"{path}: its GGUF header cannot be read (truncated or damaged file?)") from None
    raise ValueError(f"{path}: its GGUF header names no general.architecture")
