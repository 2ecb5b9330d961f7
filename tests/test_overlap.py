"""Tests for modularity.science.overlap: top-k sets, overlap/Jaccard, Sinkhorn, averaging, Fig 2B counts."""
import numpy as np
import pandas as pd
import pytest
import torch

from modularity.science import overlap as ov

# book methods §3 table [verified]: (N, {pct: k}).
K_TABLE = {
    "GPT-2": (12 * 3072, {0.05: 18, 0.1: 36, 1.0: 368, 5.0: 1843}),
    "Mistral-Small-24B": (40 * 32768, {0.05: 655, 0.1: 1310, 1.0: 13107, 5.0: 65536}),
    "Qwen2.5-32B": (64 * 27648, {0.05: 884, 0.1: 1769, 1.0: 17694, 5.0: 88473}),
    "Llama-3.1-70B": (80 * 28672, {0.05: 1146, 0.1: 2293, 1.0: 22937, 5.0: 114688}),
    "Qwen2.5-72B": (80 * 29568, {0.05: 1182, 0.1: 2365, 1.0: 23654, 5.0: 118272}),
    "Mistral-Large-123B": (88 * 28672, {0.05: 1261, 0.1: 2523, 1.0: 25231, 5.0: 126156}),
}


@pytest.mark.parametrize("model", sorted(K_TABLE))
def test_top_k_count_matches_method_table(model):
    n_neurons, expected = K_TABLE[model]
    assert {pct: ov.top_k_count(n_neurons, pct) for pct in expected} == expected


def test_top_k_count_is_at_least_one_and_rejects_bad_pct():
    assert ov.top_k_count(10, 0.1) == 1
    assert ov.top_k_count(2000, 0.1) == 2
    with pytest.raises(ValueError):
        ov.top_k_count(100, 0)


def test_top_positive_set_ranks_globally_across_layers():
    # k = max(1, floor(8 * 50 / 100)) = 4; the best scores sit in different layers.
    scores = np.array([[0.1, 5.0, -3.0, 0.0], [4.0, 0.2, 7.0, -1.0]])
    chosen = ov.top_positive_set(scores, 50)
    np.testing.assert_array_equal(chosen, [6, 1, 4, 5])  # 7.0, 5.0, 4.0, 0.2 (flat = layer*4 + i)


def test_top_positive_set_ties_nan_and_fewer_positives():
    scores = np.array([[np.nan, 2.0, 2.0, -5.0], [2.0, 0.0, np.nan, 1.0]])
    # k = 4 but only 4 strictly positive finite values; ties keep the lower flat index first.
    np.testing.assert_array_equal(ov.top_positive_set(scores, 50), [1, 2, 4, 7])
    # k = 2: the three tied 2.0 values are cut by index order (stable).
    np.testing.assert_array_equal(ov.top_positive_set(scores, 25), [1, 2])
    # Fewer positives than k: the set shrinks (NaN and 0 never qualify).
    sparse = np.array([[np.nan, 0.0, 3.0, -1.0], [0.0, 0.0, 0.0, 0.0]])
    np.testing.assert_array_equal(ov.top_positive_set(sparse, 50), [2])
    assert ov.top_positive_set(np.full((2, 4), np.nan), 50).size == 0


def test_top_positive_set_accepts_torch_tensors():
    scores = torch.tensor([[0.5, -1.0], [3.0, 2.0]], dtype=torch.float16)
    np.testing.assert_array_equal(ov.top_positive_set(scores, 50), [2, 3])


def test_overlap_is_intersection_over_k_and_jaccard_differs():
    sets = {"MD/a": np.array([0, 1, 2, 3]), "ToM/b": np.array([2, 3, 4, 5]), "Lan/c": np.array([9])}
    overlap = ov.overlap_matrix(sets, k=4)
    assert list(overlap.index) == list(overlap.columns) == ["MD/a", "ToM/b", "Lan/c"]
    assert overlap.loc["MD/a", "ToM/b"] == overlap.loc["ToM/b", "MD/a"] == 0.5
    assert overlap.loc["MD/a", "Lan/c"] == 0.0
    assert overlap.loc["MD/a", "MD/a"] == 1.0
    assert overlap.loc["Lan/c", "Lan/c"] == 0.25  # fewer than k neurons: denominator stays k
    jaccard = ov.jaccard_matrix(sets)
    assert jaccard.loc["MD/a", "ToM/b"] == pytest.approx(2 / 6)
    # For equal-size sets J = O / (2 − O).
    o = overlap.loc["MD/a", "ToM/b"]
    assert jaccard.loc["MD/a", "ToM/b"] == pytest.approx(o / (2 - o))
    assert jaccard.loc["Lan/c", "Lan/c"] == 1.0


def test_empty_set_gives_zero_row_including_diagonal():
    overlap = ov.overlap_matrix({"MD/a": np.array([1, 2]), "MD/b": np.array([], dtype=int)}, k=2)
    np.testing.assert_array_equal(overlap.loc["MD/b"].to_numpy(), [0.0, 0.0])
    assert ov.jaccard_matrix({"MD/b": np.array([], dtype=int)}).iloc[0, 0] == 0.0


def _random_symmetric(n, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.01, 0.5, (n, n))
    values = (values + values.T) / 2
    np.fill_diagonal(values, 1.0)
    labels = [f"MD/t{i}" for i in range(n)]
    return pd.DataFrame(values, index=labels, columns=labels)


def test_sinkhorn_is_doubly_stochastic_symmetric_with_zero_diagonal():
    ds = ov.sinkhorn(_random_symmetric(7))
    values = ds.to_numpy()
    np.testing.assert_allclose(values.sum(axis=0), 1.0, atol=1e-9)
    np.testing.assert_allclose(values.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_allclose(values, values.T, atol=1e-9)
    np.testing.assert_array_equal(np.diag(values), 0.0)


def test_sinkhorn_two_by_two_and_zero_rows():
    matrix = pd.DataFrame([[1.0, 0.3], [0.3, 1.0]], index=["MD/a", "MD/b"], columns=["MD/a", "MD/b"])
    np.testing.assert_allclose(ov.sinkhorn(matrix).to_numpy(), [[0, 1], [1, 0]])
    # Keeping the diagonal scales a matrix whose rows already sum equally.
    np.testing.assert_allclose(ov.sinkhorn(matrix, zero_diagonal=False).to_numpy(), matrix.to_numpy() / 1.3)
    with_empty = _random_symmetric(4)
    with_empty.iloc[3, :] = 0.0
    with_empty.iloc[:, 3] = 0.0
    ds = ov.sinkhorn(with_empty).to_numpy()
    np.testing.assert_array_equal(ds[3], 0.0)
    np.testing.assert_allclose(ds[:3, :3].sum(axis=1), 1.0, atol=1e-9)


def test_within_cross_excludes_diagonal_and_counts_both_directions():
    labels = ["MD/a", "MD/b", "ToM/c", "ToM/d"]
    values = np.array(
        [
            [9.0, 1.0, 0.1, 0.2],
            [3.0, 9.0, 0.3, 0.4],
            [0.5, 0.6, 9.0, 2.0],
            [0.7, 0.8, 4.0, 9.0],
        ]
    )
    result = ov.within_cross(pd.DataFrame(values, index=labels, columns=labels))
    assert result["within"] == pytest.approx((1 + 3 + 2 + 4) / 4)
    assert result["cross"] == pytest.approx((0.1 + 0.2 + 0.3 + 0.4 + 0.5 + 0.6 + 0.7 + 0.8) / 8)
    assert result["ratio"] == pytest.approx(2.5 / 0.45)


def test_order_labels_uses_study_domain_order_then_alphabet():
    labels = ["Lan/wug", "phys/phys_newton", "MD/code_conditional", "ToM/agent", "MD/code_A", "MD/add"]
    assert ov.order_labels(labels) == [
        "MD/add",
        "MD/code_A",
        "MD/code_conditional",
        "ToM/agent",
        "phys/phys_newton",
        "Lan/wug",
    ]


def test_average_matrices_uses_models_containing_both_tasks():
    a_labels = ["MD/x", "Lan/y"]
    model_a = pd.DataFrame([[1.0, 0.2], [0.2, 1.0]], index=a_labels, columns=a_labels)
    b_labels = ["Lan/y", "ToM/z", "MD/x"]
    model_b = pd.DataFrame(
        [[1.0, 0.5, 0.4], [0.5, 1.0, 0.6], [0.4, 0.6, 1.0]], index=b_labels, columns=b_labels
    )
    only_c = pd.DataFrame([[1.0]], index=["phys/w"], columns=["phys/w"])
    averaged = ov.average_matrices([model_a, model_b, only_c])
    assert list(averaged.index) == ["MD/x", "ToM/z", "phys/w", "Lan/y"]
    assert averaged.loc["MD/x", "Lan/y"] == pytest.approx(0.3)  # both models
    assert averaged.loc["MD/x", "ToM/z"] == pytest.approx(0.6)  # model b only
    assert averaged.loc["phys/w", "MD/x"] == 0.0  # no model has both
    np.testing.assert_allclose(np.diag(averaged), 1.0)


def test_domain_mean_attribution_averages_tasks_per_domain():
    maps = ov.domain_mean_attribution(
        {
            "MD/a": torch.ones(2, 3),
            "MD/b": torch.full((2, 3), 3.0),
            "Lan/c": np.zeros((2, 3)),
        }
    )
    assert list(maps) == ["MD", "Lan"]
    np.testing.assert_allclose(maps["MD"], 2.0)
    np.testing.assert_allclose(maps["Lan"], 0.0)


def test_layer_composition_absolute_threshold_shared_and_bins():
    n_layers, d_ff = 3, 1000  # 3000 neurons → 0.1% = the top 3 by |value|
    md = np.zeros((n_layers, d_ff))
    md[0, 1], md[0, 2], md[2, 5] = 5.0, 4.0, 3.0
    tom = np.zeros((n_layers, d_ff))
    tom[0, 1], tom[1, 7], tom[2, 9] = 2.0, 6.0, -7.0  # the negative one counts (absolute value)
    table = ov.layer_composition({"MD": md, "ToM": tom}, pct=0.1, n_bins=25)
    assert list(table["bin"]) == [0, 12, 24]
    assert table.loc[0, ["MD", "ToM", "shared"]].tolist() == [1, 0, 1]
    assert table.loc[1, ["MD", "ToM", "shared"]].tolist() == [0, 1, 0]
    assert table.loc[2, ["MD", "ToM", "shared"]].tolist() == [1, 1, 0]
    assert table[["Lan", "phys"]].to_numpy().sum() == 0

    binned = ov.composition_by_bin([table, table.assign(MD=table["MD"] * 3)], n_bins=25)
    assert sorted(binned["bin"].unique()) == [0, 12, 24]  # only bins some layer reached
    first = binned[binned["bin"] == 0].set_index("category")
    assert list(first.index) == ["Lan", "MD", "phys", "ToM", "shared"]
    assert (first["n_layers"] == 2).all()
    assert first.loc["MD", "count"] == pytest.approx((1 + 3) / 2)  # summed counts / 2 layers
    assert first.loc["shared", "count"] == pytest.approx(1.0)


def test_top_k_count_is_exact_on_awkward_percentages():
    # 41,000 × 0.7 / 100 = 287 exactly; in floats 41000 * 0.7 / 100 = 286.99999999999994
    assert 41_000 * 0.7 / 100 < 287
    assert ov.top_k_count(41_000, 0.7) == 287
    assert ov.top_k_count(1_310_720, 5.0) == 65_536 and ov.top_k_count(30 * 1536, 0.1) == 46


def test_sinkhorn_says_when_it_cannot_converge():
    """A star (one task linked to two that link to nothing else) has no doubly stochastic form."""
    labels = ["MD/a", "MD/b", "Lan/c"]
    star = pd.DataFrame([[1.0, 0.5, 0.5], [0.5, 1.0, 0.0], [0.5, 0.0, 1.0]], index=labels, columns=labels)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        ov.sinkhorn(star, max_iter=200)
    from modularity.stages.overlap import _doubly_stochastic

    with pytest.warns(RuntimeWarning):
        _, converged, unlinked = _doubly_stochastic(star)
    assert not converged and unlinked == []
