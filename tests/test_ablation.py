"""Causal ablation (book methods §7): the batched, grouped implementation against simple references."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from modularity.science import ablation, batches, passes, scoring
from modularity.science.models import _resolve
from modularity.science.sites import base_forward, hooks, record_at
from modularity.science.tasks.schema import PromptConfig, TaskData

# Clean and corrupted prompts of equal token length (checked below), of several lengths so
# batches carry right padding.
ITEMS = [
    ("The cat sat on the", "The dog sat on the", " mat", " rug"),
    ("She opened the old wooden", "She closed the old wooden", " door", " box"),
    ("One two three", "Three two one", " four", " zero"),
    ("Paris is the capital of", "Rome is the capital of", " France", " Italy"),
    ("The children played in the big green", "The adults played in the big green", " park", " garden"),
    ("I like", "You like", " tea", " coffee"),
]


def make_task(items=ITEMS) -> TaskData:
    config = PromptConfig(path="toy.json", force_base_evaluation=True)
    return TaskData("toy", "Lan", config, [
        {"clean_problem": c, "corrupted_problem": r, "clean_correct": a, "clean_incorrect": b,
         "corrupted_correct": b, "corrupted_incorrect": a}
        for c, r, a, b in items
    ])


@pytest.fixture(scope="module")
def toy_tokens(tiny_models):
    tokens = {family: scoring.tokenize_task(loaded, make_task()) for family, loaded in tiny_models.items()}
    assert all(t.aligned.all() for t in tokens.values()), "toy prompts must be token-aligned"
    return tokens


def some_sets(loaded, seed=0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = loaded.n_layers * loaded.d_ff
    return {
        "empty": np.empty(0, dtype=np.int64),
        "layer0": rng.choice(loaded.d_ff, 5, replace=False),
        "mixed": rng.choice(n, 12, replace=False),
        "big": rng.choice(n, n // 2, replace=False),
    }


# --------------------------------------------------------------------------- references


def single(prompt, answer, device) -> batches.Batch:
    return batches.make_batch([prompt], [answer]).to(device)


@torch.no_grad()
def reference_logprobs(loaded, tokens, flat, mode="corrupted", constants=None, items=None) -> np.ndarray:
    """Per item and answer, one plain forward each: [2, N] of LP′(c, y⁺), LP′(c, y⁻)."""
    modules = loaded.site_modules("neurons")
    layers, neurons = np.divmod(np.asarray(flat, dtype=np.int64), loaded.d_ff)
    items = range(len(tokens)) if items is None else items
    out = np.zeros((2, len(items)))
    for column, n in enumerate(items):
        for a, answer in enumerate((tokens.correct[n], tokens.incorrect[n])):
            recorded = {}
            if mode == "corrupted":
                def record(layer):
                    def hook(module, args):
                        recorded[layer] = args[0].clone()
                    return hook
                with hooks(modules, record):
                    batches.answer_logprobs(loaded.model, single(tokens.corrupted[n], answer, loaded.device))

            def patch(layer):
                chosen = torch.as_tensor(neurons[layers == layer])

                def hook(module, args):
                    x = args[0].clone()
                    if mode == "corrupted":
                        x[:, :, chosen] = recorded[layer][:, :, chosen]
                    elif mode == "zero":
                        x[:, :, chosen] = 0
                    else:
                        x[:, :, chosen] = constants[layer, chosen].to(x.dtype)
                    return (x,)
                return hook

            with hooks(modules, patch):
                lp = batches.answer_logprobs(loaded.model, single(tokens.clean[n], answer, loaded.device))
            out[a, column] = float(lp[0])
    return out


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3", "qwen2"])
def test_nothing_patched_reproduces_plain_logprobs(tiny_models, toy_tokens, family):
    loaded, tokens = tiny_models[family], toy_tokens[family]
    items = np.arange(len(tokens))
    lps = ablation.ablation_logprobs(loaded, tokens, items, {"empty": np.empty(0)}, batch_size=4)
    plain = np.stack([
        scoring.sequence_logprobs(loaded, tokens.clean, tokens.correct),
        scoring.sequence_logprobs(loaded, tokens.clean, tokens.incorrect),
    ])
    np.testing.assert_allclose(lps.unablated, plain, atol=1e-4)
    np.testing.assert_allclose(lps.patched[0], lps.unablated, atol=1e-5)


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3"])
def test_all_last_layer_neurons_equal_substituting_the_mlp_output(tiny_models, toy_tokens, family):
    """Every neuron of the last layer patched ⇔ that layer's MLP output is the corrupted one."""
    loaded, tokens = tiny_models[family], toy_tokens[family]
    last = loaded.n_layers - 1
    flat = last * loaded.d_ff + np.arange(loaded.d_ff)
    lps = ablation.ablation_logprobs(loaded, tokens, np.arange(len(tokens)), {"last": flat}, batch_size=3)
    mlp = _resolve(loaded.blocks()[last], loaded.family.mlp_down.rsplit(".", 1)[0])
    expected = np.zeros((2, len(tokens)))
    with torch.no_grad():
        for n in range(len(tokens)):
            for a, answer in enumerate((tokens.correct[n], tokens.incorrect[n])):
                saved = {}
                handle = mlp.register_forward_hook(lambda m, i, o: saved.setdefault("out", o.clone()))
                batches.answer_logprobs(loaded.model, single(tokens.corrupted[n], answer, loaded.device))
                handle.remove()
                handle = mlp.register_forward_hook(lambda m, i, o: saved["out"])
                lp = batches.answer_logprobs(loaded.model, single(tokens.clean[n], answer, loaded.device))
                handle.remove()
                expected[a, n] = float(lp[0])
    np.testing.assert_allclose(lps.patched[0], expected, atol=1e-4)
    assert not np.allclose(lps.patched[0], lps.unablated, atol=1e-3), "patching the last layer must change LP"


@pytest.mark.parametrize("family", ["llama", "gpt2", "olmo2"])
def test_grouped_batches_equal_one_set_at_a_time_and_reference(tiny_models, toy_tokens, family):
    loaded, tokens = tiny_models[family], toy_tokens[family]
    sets = some_sets(loaded)
    items = np.arange(len(tokens))
    grouped = ablation.ablation_logprobs(loaded, tokens, items, sets, batch_size=4)  # all sets in one forward
    one_by_one = ablation.ablation_logprobs(loaded, tokens, items, sets, batch_size=4, group_size=1)
    np.testing.assert_allclose(grouped.patched, one_by_one.patched, atol=1e-5)
    for row, name in enumerate(grouped.sources):
        if name == "big" or (name == "mixed" and family == "llama"):  # the per-item reference is slow
            np.testing.assert_allclose(grouped.patched[row], reference_logprobs(loaded, tokens, sets[name]),
                                       atol=1e-4, err_msg=name)
    assert not np.allclose(grouped.patched[3], grouped.unablated, atol=1e-3), "half the neurons must matter"


def test_ablate_target_table_matches_its_definition(tiny_models, toy_tokens):
    loaded, tokens = tiny_models["llama"], toy_tokens["llama"]
    sets = {name: s for name, s in some_sets(loaded).items() if name != "layer0"}
    items = np.array([0, 2, 3, 5])
    C, R = 2.0, -1.0
    table = ablation.ablate_target(loaded, tokens, items, sets, batch_size=3, C=C, R=R)
    assert list(table.source) == list(sets) and (table.n_items == 4).all()
    clean = reference_logprobs(loaded, tokens, np.empty(0), items=items)
    for _, row in table.iterrows():
        ref = reference_logprobs(loaded, tokens, sets[row.source], items=items)
        accuracy = np.mean(ref[0] > ref[1])
        assert row.accuracy == pytest.approx(accuracy)
        assert row["drop"] == pytest.approx(1 - accuracy)
        assert row.unablated_accuracy == pytest.approx(np.mean(clean[0] > clean[1]))
        assert row.drop_vs_unablated == pytest.approx(row.unablated_accuracy - accuracy)
        expected_change = np.mean(((ref[0] - ref[1]) - (clean[0] - clean[1])) / (C - R))
        assert row.metric_change == pytest.approx(expected_change, abs=1e-4)
    assert table.loc[table.source == "empty", "metric_change"].iloc[0] == pytest.approx(0, abs=1e-5)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_zero_and_mean_modes(tiny_models, toy_tokens, family):
    loaded, tokens = tiny_models[family], toy_tokens[family]
    sets = some_sets(loaded)
    items = np.arange(len(tokens))
    zero = ablation.ablation_logprobs(loaded, tokens, items, sets, mode="zero", batch_size=4)
    np.testing.assert_allclose(zero.patched[3], reference_logprobs(loaded, tokens, sets["big"], "zero"), atol=1e-4)
    mean_zero = ablation.ablation_logprobs(loaded, tokens, items, sets, mode="mean", batch_size=4,
                                           mean_values=torch.zeros(loaded.n_layers, loaded.d_ff))
    np.testing.assert_allclose(mean_zero.patched, zero.patched, atol=1e-6)
    constants = torch.randn(loaded.n_layers, loaded.d_ff, generator=torch.Generator().manual_seed(1))
    mean = ablation.ablation_logprobs(loaded, tokens, items, sets, mode="mean", batch_size=4, mean_values=constants)
    np.testing.assert_allclose(mean.patched[2], reference_logprobs(loaded, tokens, sets["mixed"], "mean", constants),
                               atol=1e-4)
    with pytest.raises(ValueError, match="mean_values"):
        ablation.ablation_logprobs(loaded, tokens, items, sets, mode="mean")


def test_mean_activations_is_the_mean_over_real_positions(tiny_models, toy_tokens):
    loaded, tokens = tiny_models["llama"], toy_tokens["llama"]
    items = np.array([0, 4])
    means = ablation.mean_activations(loaded, tokens, items, batch_size=1)
    rows = []
    modules = loaded.site_modules("neurons")
    with torch.no_grad():
        for n in items:
            for answer in (tokens.correct[n], tokens.incorrect[n]):
                seen = {}
                with hooks(modules, lambda layer: lambda m, args: seen.__setitem__(layer, args[0][0])):
                    batches.answer_logprobs(loaded.model, single(tokens.clean[n], answer, loaded.device))
                rows.append(torch.stack([seen[layer] for layer in range(loaded.n_layers)], 1))  # [S, L, d_ff]
    np.testing.assert_allclose(means.numpy(), torch.cat(rows).mean(0).numpy(), atol=1e-5)


def test_misaligned_items_are_refused(tiny_models):
    loaded = tiny_models["llama"]
    tokens = scoring.tokenize_task(loaded, make_task([("A cat", "A very big dog", " x", " y")]))
    assert not tokens.aligned[0]
    with pytest.raises(ValueError, match="different lengths"):
        ablation.ablate_target(loaded, tokens, [0], {"s": np.array([1])})


def test_random_control_sets():
    n_layers, d_ff = 4, 50
    source = np.array([3, 7, 60, 61, 62, 199])  # layers 0, 0, 1, 1, 1, 3
    matched = ablation.random_control_sets(source, n_layers, d_ff, "layer_matched", n_sets=5, seed=3)
    uniform = ablation.random_control_sets(source, n_layers, d_ff, "uniform", n_sets=5, seed=3)
    counts = lambda s: np.bincount(np.asarray(s) // d_ff, minlength=n_layers).tolist()
    assert len(matched) == len(uniform) == 5
    for s in matched + uniform:
        assert s.size == source.size == np.unique(s).size
        assert not np.isin(s, source).any()
        assert s.min() >= 0 and s.max() < n_layers * d_ff
    assert all(counts(s) == counts(source) for s in matched)
    assert any(counts(s) != counts(source) for s in uniform)
    assert len({tuple(s) for s in matched}) == 5, "draws must differ"
    again = ablation.random_control_sets(source, n_layers, d_ff, "layer_matched", n_sets=5, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(matched, again))
    other = ablation.random_control_sets(source, n_layers, d_ff, "layer_matched", n_sets=5, seed=4)
    assert not all(np.array_equal(a, b) for a, b in zip(matched, other))
    with pytest.raises(ValueError):
        ablation.random_control_sets(source, n_layers, d_ff, "everything")


def test_build_ablation_sets():
    sources = {"MD/a": np.array([1, 2, 3]), "Lan/b": np.array([100, 150])}
    sets, table = ablation.build_ablation_sets(sources, 4, 50, n_controls=2, seed=0)
    assert len(sets) == len(table) == 2 * (1 + 2 * 2)
    assert (table.groupby("source").n_neurons.nunique() == 1).all()
    assert set(table.kind) == {"selected", "layer_matched", "uniform"}
    assert not np.array_equal(sets["MD/a|uniform|0"], sets["MD/a|uniform|1"])


def synthetic_cells() -> pd.DataFrame:
    labels = ["Lan/x", "MD/a", "MD/b"]
    rows = []
    for s in labels:
        for t in labels:
            relation = ablation.relation_of(s, t)
            selected = {"self": 0.8, "within": 0.3, "across": 0.05}[relation]
            rows.append({"source": s, "target": t, "kind": "selected", "drop": selected})
            for draw, value in enumerate((0.0, 0.1)):
                rows.append({"source": s, "target": t, "kind": "uniform", "drop": value})
    return pd.DataFrame(rows)


def test_matrix_summary_and_controls():
    cells = synthetic_cells()
    matrix = ablation.ablation_matrix(cells)
    assert list(matrix.index) == ["MD/a", "MD/b", "Lan/x"] == list(matrix.columns)
    assert matrix.loc["MD/a", "MD/a"] == 0.8 and matrix.loc["MD/a", "MD/b"] == 0.3
    assert matrix.loc["Lan/x", "MD/a"] == 0.05
    summary = ablation.ablation_summary(matrix, n_permutations=50)
    assert summary["self"] == pytest.approx(0.8)
    assert summary["within"] == pytest.approx(0.3) and summary["across"] == pytest.approx(0.05)
    assert summary["ratio"] == pytest.approx(6.0)
    per_cell, table = ablation.control_summary(cells)
    assert len(per_cell) == 9 and np.allclose(per_cell.uniform, 0.05)
    assert per_cell.excess_uniform.tolist() == pytest.approx((per_cell.selected - 0.05).tolist())
    by_relation = table.set_index("relation")
    assert by_relation.loc["self", "n_cells"] == 3 and by_relation.loc["within", "n_cells"] == 2
    assert by_relation.loc["across", "share_above_uniform"] == 0.0
    assert by_relation.loc["within", "share_above_uniform"] == 1.0


def test_summary_direction_for_metric_change():
    import pandas as pd

    from modularity.science import ablation

    labels = ["MD/a", "MD/b", "Lan/c", "Lan/d"]
    drops = pd.DataFrame([[.9, .5, 0, 0], [.5, .9, 0, .01], [0, 0, .9, .4], [.02, 0, .4, .9]], index=labels, columns=labels)
    higher = ablation.ablation_summary(drops, n_permutations=199)
    lower = ablation.ablation_summary(-drops, n_permutations=199, stronger="lower")
    assert higher["p"] < 0.5 and lower["p"] == higher["p"]
    assert lower["within"] == -higher["within"] and lower["across"] == -higher["across"]
    wrong_way = ablation.ablation_summary(-drops, n_permutations=199)
    assert wrong_way["p"] > 0.5  # testing the negative effect as if higher were stronger finds nothing


# --------------------------------------------------------------------------- speed-ups that must not change values


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_truncated_recording_equals_the_full_forward_and_stops_early(tiny_models, toy_tokens, family):
    """The corrupted recording stops after the last touched layer: same values, fewer layers run."""
    loaded, tokens = tiny_models[family], toy_tokens[family]
    batch = batches.make_batch([tokens.corrupted[n] for n in range(len(tokens))],
                               [tokens.correct[n] for n in range(len(tokens))], pad_id=0).to(loaded.device)
    columns = {0: torch.tensor([1, 5, 9])}  # layer 0 only: layer 1 need not run
    modules = loaded.site_modules("neurons")
    calls = []
    handle = modules[1].register_forward_pre_hook(lambda m, args: calls.append(1))
    try:
        with torch.no_grad():
            truncated = passes.record(loaded, batch, columns)["neurons"]
            assert not calls, "the truncated recording ran the layer above the last touched one"
            with record_at(modules, columns=columns) as full:
                base_forward(loaded.model, batch)
            assert calls, "the full recording runs every layer"
    finally:
        handle.remove()
    assert list(truncated) == [0]
    assert torch.equal(truncated[0], full[0])
    assert not any(m._forward_pre_hooks for m in modules), "recording hooks must be removed"
    # End to end: a set in layer 0 only (truncated recording) against the per-item reference.
    flat = np.array([1, 5, 9])
    lps = ablation.ablation_logprobs(loaded, tokens, np.arange(len(tokens)), {"low": flat}, batch_size=4)
    np.testing.assert_allclose(lps.patched[0], reference_logprobs(loaded, tokens, flat), atol=1e-4)


# Multi-token answers: sharing a prefix (one carrier, last token dropped) and of different lengths.
LONG_ANSWERS = [
    ("The city I visited was", "The town I visited was", " New York City", " New York State"),
    ("My favourite number is", "His favourite number is", " forty two", " seven"),
    ("The colour of the sky is", "The colour of the sea is", " light blue", " dark grey"),
]


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_multi_token_answers_equal_reference(tiny_models, family):
    loaded = tiny_models[family]
    tokens = scoring.tokenize_task(loaded, make_task(LONG_ANSWERS))
    assert tokens.aligned.all(), "toy prompts must be token-aligned"
    assert max(len(a) for a in tokens.correct + tokens.incorrect) > 1
    items = np.arange(len(tokens))
    sets = some_sets(loaded)
    for mode in ("corrupted", "zero"):
        lps = ablation.ablation_logprobs(loaded, tokens, items, sets, mode=mode, batch_size=3)
        for row, name in enumerate(lps.sources):
            np.testing.assert_allclose(lps.patched[row], reference_logprobs(loaded, tokens, sets[name], mode),
                                       atol=1e-4, err_msg=f"{mode} {name}")
        np.testing.assert_allclose(lps.unablated, reference_logprobs(loaded, tokens, np.empty(0), mode), atol=1e-4)
