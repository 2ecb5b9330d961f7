"""The study's scale (#14): layers spread over devices with accelerate, and half precision.

A model too big for one GPU is dispatched by accelerate (``device: auto`` → ``device_map``), which
moves weights and activations through hooks of its own around each module; the pipeline's site
hooks must see and patch the same neurons. Here, on a CPU, the second half of every tiny model's
blocks is offloaded to disk (accelerate then loads each block's weights just before it runs), and
evaluation log-probs, attribution scores and ablation log-probs must equal the single-device run.
Half precision cannot be exact; its stated tolerances are what the six tiny families measure.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from modularity.science import ablation, attribution, scoring
from modularity.base import numerics
from modularity.science.models import describe_model, load_model
from modularity.science.tasks import generate_task
from modularity.running.family_check import half_on_disk

from conftest import FAMILY_NAMES

pytestmark = pytest.mark.numerics

ITEMS = np.arange(6)
SETS = {"source": np.array([3, 70, 100])}  # flat neuron indices across layers 0 and 1


@pytest.fixture(scope="module")
def task():
    return generate_task("code_list", "small", n_items=len(ITEMS), seed=0)


def stage_outputs(loaded, task):
    """What the three model stages compute on the same items: LP, attribution scores, ablated LP."""
    tokens = scoring.tokenize_task(loaded, task)
    lp = scoring.sequence_logprobs(loaded, [tokens.clean[i] for i in ITEMS], [tokens.correct[i] for i in ITEMS])
    scores = attribution.attribute_task(loaded, tokens, ITEMS, C=1.0, R=-1.0).neurons.float()
    ablated = np.asarray(ablation.ablation_logprobs(loaded, tokens, ITEMS, SETS).patched, dtype=float)
    return lp, scores, ablated


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_offloaded_layers_give_the_single_device_numbers(tiny_models, task, tmp_path, family):
    from accelerate import dispatch_model

    single = tiny_models[family]
    reference = stage_outputs(single, task)
    dispatched_model = dispatch_model(copy.deepcopy(single.model), device_map=half_on_disk(single),
                                      offload_dir=str(tmp_path / "offload"))
    assert any(p.device.type == "meta" for p in dispatched_model.parameters()), "some weights live on disk"
    dispatched = describe_model(f"{family} (half on disk)", dispatched_model, single.tokenizer)
    # The same ops on the same weights, moved by accelerate's hooks: float rounding at most.
    for name, got, want in zip(("log-probs", "attribution scores", "ablated log-probs"), stage_outputs(dispatched, task),
                               reference):
        held_to = numerics.tolerance(numerics.largest_magnitude(want), single.n_layers, single.dtype)
        numerics.assert_agree(got, want, held_to, what=f"{family}, offloaded: {name}")


#: Largest differences from float32 allowed, per dtype: log-probs (nats), the rank correlation of the
#: attribution scores, the share of the top-13 neurons kept, ablated log-probs. On the six tiny
#: families bfloat16 measured ≤ 0.0084 nats, ρ ≥ 0.888, ≥ 77% kept; float16 ≤ 0.0013, ρ ≥ 0.994, ≥ 92%.
TOLERANCE = {"bfloat16": (0.05, 0.85, 0.6, 0.05), "float16": (0.01, 0.98, 0.8, 0.01)}


@pytest.mark.parametrize("dtype", sorted(TOLERANCE))
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_half_precision_stays_within_stated_tolerances(tiny_model_dirs, tiny_models, task, family, dtype):
    lp_tol, rho_min, kept_min, ablated_tol = TOLERANCE[dtype]
    lp32, scores32, ablated32 = stage_outputs(tiny_models[family], task)
    half = load_model(str(tiny_model_dirs[family]), dtype=dtype)
    assert next(half.model.parameters()).dtype == getattr(torch, dtype)
    lp, scores, ablated = stage_outputs(half, task)
    assert np.abs(lp - lp32).max() <= lp_tol
    assert spearmanr(scores.flatten(), scores32.flatten())[0] >= rho_min
    k = 13
    top, top32 = (set(torch.topk(s.flatten(), k).indices.tolist()) for s in (scores, scores32))
    assert len(top & top32) / k >= kept_min
    assert np.abs(ablated - ablated32).max() <= ablated_tol
