"""The nnsight backend (``backend: nnsight``) gives the hook backend's numbers (#14).

Every pass of :mod:`modularity.science.passes` has a hook implementation and an nnsight-trace one
(:mod:`modularity.science.traces`); the stages are written once above them. On every tiny family the
three model stages — evaluation log-probs, attribution scores (neurons and heads), ablation
log-probs (corrupted and mean values) — and the exact patching used to verify attribution must
agree. ``remote="local"`` is nnsight's local simulation of hosted execution: the trace body is
serialised with this package hidden, as on the service, so a pass that reached for a local object
it had not shipped would fail here. Hosted execution itself (NDIF) needs an API key and the
network and is not exercised.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from modularity.science import batches, passes, precision, scoring, sites
from modularity.science.models import load_model
from modularity.records.params import ParamsError, validate_params
from modularity.science.tasks import generate_task

from conftest import FAMILY_NAMES

pytestmark = pytest.mark.numerics

ITEMS = np.arange(6)
SETS = {"source": np.array([3, 70, 100]), "other": np.array([5, 64])}  # flat indices over layers 0 and 1


@pytest.fixture(scope="module")
def task():
    return generate_task("code_list", "small", n_items=len(ITEMS), seed=0)


def on_backend(loaded, backend: str, remote=False):
    """A shallow copy of ``loaded`` whose passes run on ``backend`` (same weights)."""
    other = copy.copy(loaded)
    other.backend, other.remote, other._lm = backend, remote, None
    return other


def stage_outputs(loaded, task) -> dict[str, np.ndarray]:
    return precision.backend_outputs(loaded, task, ITEMS, SETS)[0]


def in_dtype(loaded, dtype: str):
    """A copy of ``loaded`` with its weights in ``dtype``."""
    other = copy.copy(loaded)
    other.model, other._lm = copy.deepcopy(loaded.model).to(getattr(torch, dtype)), None
    return other


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_nnsight_backend_gives_the_hook_numbers(tiny_models, task, family):
    """In float64 the two backends must agree to float64 rounding: a wrong position, layer or sign
    shows as a difference the size of an effect (≥ 1e-6 here, against tolerances of ~1e-11). In
    float32 they agree to float32 rounding, held to :func:`modularity.base.numerics.tolerance`, which
    holds on any CPU's kernels (an exact-patching effect is held to the rounding of the log-probs it
    is the difference of, not to a share of its own size)."""
    for dtype in ("float64", "float32"):
        table = precision.backend_agreement(in_dtype(tiny_models[family], dtype), task, ITEMS, SETS)
        assert table.agrees.all(), f"{family}, {dtype}:\n{table.to_string()}"
        if dtype == "float64":  # sensitive where float32 could not be: effects of ~1e-6 and below
            assert table.loc["exact patching", "held to"] < 1e-9


def test_traces_survive_serialisation_for_hosted_execution(tiny_models, task):
    loaded = tiny_models["llama"]
    local = stage_outputs(on_backend(loaded, "nnsight"), task)
    shipped = stage_outputs(on_backend(loaded, "nnsight", remote="local"), task)
    for name, expected in local.items():
        np.testing.assert_allclose(shipped[name], expected, rtol=0, atol=0, err_msg=name)


def test_record_with_columns_and_every_position(tiny_models):
    loaded = tiny_models["qwen2"]
    batch = batches.make_batch([[5, 6, 7, 8], [9, 10, 11]], [[12, 13], [14]], 0)
    columns = {1: torch.tensor([0, 7, 9])}
    hooked = passes.record(loaded, batch, columns, kinds=("neurons", "heads"))
    traced = passes.record(on_backend(loaded, "nnsight"), batch, columns, kinds=("neurons", "heads"))
    assert hooked["neurons"][1].shape == hooked["heads"][1].shape == (2, 6, 3)
    for kind in ("neurons", "heads"):
        torch.testing.assert_close(traced[kind][1], hooked[kind][1], rtol=0, atol=0)
    # one forward for both sites gives what one forward per site gives
    torch.testing.assert_close(passes.record(loaded, batch, columns, kinds=("heads",))["heads"][1], hooked["heads"][1],
                               rtol=0, atol=0)
    assert passes.record(loaded, batch, {}) == {"neurons": {}}


def test_patch_with_positions_matches(tiny_models):
    loaded = tiny_models["mistral"]
    batch = batches.make_batch([[5, 6, 7, 8], [9, 10, 11]], [[12, 13], [14]], 0)
    at_last = torch.zeros(2, 6, dtype=torch.bool)
    at_last[torch.arange(2), batch.last_prompt] = True
    patch = sites.Patch({0: torch.ones(1, 4, dtype=torch.bool)}, {0: torch.full((2, 6, 4), 3.0)},
                        {0: torch.tensor([1, 2, 3, 4])}, positions=at_last)
    hooked = passes.logprobs(loaded, batch, patch)
    assert not torch.equal(hooked, passes.logprobs(loaded, batch)), "the patch changes the answer log-probs"
    torch.testing.assert_close(passes.logprobs(on_backend(loaded, "nnsight"), batch, patch), hooked, rtol=0, atol=1e-6)


def test_remote_needs_the_nnsight_backend_and_a_hosted_model(tiny_model_dirs, monkeypatch):
    with pytest.raises(ParamsError, match="backend='nnsight'"):
        validate_params({"model": "x", "remote": True})
    with pytest.raises(ValueError, match="backend must be one of"):
        load_model(str(tiny_model_dirs["llama"]), backend="jax")
    with pytest.raises(ValueError, match="Hugging Face id"):
        load_model(str(tiny_model_dirs["llama"]), backend="nnsight", remote=True)
    loaded = load_model(str(tiny_model_dirs["llama"]), backend="nnsight")
    assert (loaded.backend, loaded.remote) == ("nnsight", False)


def test_localizer_means_on_the_nnsight_backend(tiny_models):
    from modularity.science import localizer

    texts = ["The cat sat on the mat.", "Blick dax wug tove.", "Two plus two is four"]
    hooked = localizer.mean_activations(tiny_models["olmo2"], texts)
    traced = localizer.mean_activations(on_backend(tiny_models["olmo2"], "nnsight"), texts)
    assert hooked.shape == (3, tiny_models["olmo2"].n_layers * tiny_models["olmo2"].d_ff)
    torch.testing.assert_close(traced, hooked, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_backends_agree_on_smollm2_as_the_scale_page_shows():
    """The scale chapter's live comparison: 30 layers, where float32 rounding between the backends
    reaches 330 units of the largest attribution score; held to numerics' tolerance on any kernels."""
    from modularity.science.models import load_model

    smollm2 = load_model("smollm2-135m-instruct")
    task = generate_task("det_noun_agreement_regular", "small", n_items=8, seed=0)
    items = np.flatnonzero(scoring.tokenize_task(smollm2, task).aligned)[:2]
    sets = {"every 997th neuron": np.arange(0, smollm2.n_neurons, 997), "first 200, every 7th": np.arange(0, 200, 7)}
    table = precision.backend_agreement(smollm2, task, items, sets)
    assert table.agrees.all(), table.to_string()
