"""Tests for modularity.science.stats: permutation tests, kNN clustering/ARI, per-domain, bars, Kendall τ."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau
from sklearn.metrics import adjusted_rand_score, silhouette_score

from modularity.science import stats as st
from modularity.science import study

N_PERM = 999


def planted(n_per_domain=4, within=0.3, cross=0.03, noise=0.02, seed=0):
    """Symmetric matrix with planted domain blocks (diagonal 1)."""
    rng = np.random.default_rng(seed)
    domains = np.repeat(["MD", "ToM", "phys", "Lan"], n_per_domain)
    labels = [f"{d}/t{i}" for i, d in enumerate(domains)]
    same = domains[:, None] == domains[None, :]
    jitter = rng.uniform(-noise, noise, (len(labels), len(labels)))
    values = np.where(same, within, cross) + (jitter + jitter.T) / 2
    np.fill_diagonal(values, 1.0)
    return pd.DataFrame(values, index=labels, columns=labels)


def structureless(n_per_domain=4, seed=1):
    """Symmetric i.i.d. matrix: domain labels carry no information."""
    matrix = planted(n_per_domain, within=0.1, cross=0.1, noise=0.1, seed=seed)
    return matrix


def reference_within_cross_p(values, domains, n_perm, seed):
    """The study's loop, written out (book methods §6): masked means, rng.permutation(domains)."""
    finite = np.isfinite(values) & ~np.eye(len(domains), dtype=bool)
    same = domains[:, None] == domains[None, :]
    real = values[same & finite].mean() - values[~same & finite].mean()
    rng = np.random.default_rng(seed)
    null = []
    for _ in range(n_perm):
        perm = rng.permutation(domains)
        s = perm[:, None] == perm[None, :]
        null.append(values[s & finite].mean() - values[~s & finite].mean())
    return (np.sum(np.array(null) >= real) + 1) / (n_perm + 1)


# --------------------------------------------------------------------------- permutations


def test_permutation_indices_reproduce_rng_permutation_of_labels():
    labels = np.array(["MD", "MD", "ToM", "Lan", "phys", "Lan", "MD"])
    indices = st.permutation_indices(len(labels), 50, seed=42)
    rng = np.random.default_rng(42)
    for row in indices:
        np.testing.assert_array_equal(labels[row], rng.permutation(labels))


def test_within_cross_permutation_planted_structure_is_significant():
    result = st.within_cross_permutation(planted(), n_permutations=N_PERM, seed=42)
    assert result["ratio"] > 5
    assert result["delta"] == pytest.approx(result["within"] - result["cross"])
    assert result["p"] == pytest.approx(1 / (N_PERM + 1))


def test_within_cross_permutation_without_structure_is_not_significant():
    result = st.within_cross_permutation(structureless(), n_permutations=N_PERM, seed=42)
    assert result["p"] > 0.1
    assert 0.7 < result["ratio"] < 1.4


def test_within_cross_p_equals_the_study_loop_exactly_even_with_nan():
    matrix = structureless(n_per_domain=3, seed=7)
    matrix.iloc[0, 4] = np.nan  # a missing cell must be skipped, as the study does
    domains = np.array([label.split("/")[0] for label in matrix.index])
    expected = reference_within_cross_p(matrix.to_numpy(), domains, 300, seed=3)
    assert st.within_cross_permutation(matrix, n_permutations=300, seed=3)["p"] == pytest.approx(expected, abs=0)


# --------------------------------------------------------------------------- kNN clustering


def test_knn_graph_and_distance_on_hand_example():
    # 6 tasks, symmetric affinity with zero diagonal, k = 2.
    a = np.array(
        [
            [0.0, 0.9, 0.8, 0.1, 0.0, 0.0],
            [0.9, 0.0, 0.7, 0.0, 0.2, 0.0],
            [0.8, 0.7, 0.0, 0.0, 0.0, 0.3],
            [0.1, 0.0, 0.0, 0.0, 0.6, 0.5],
            [0.0, 0.2, 0.0, 0.6, 0.0, 0.4],
            [0.0, 0.0, 0.3, 0.5, 0.4, 0.0],
        ]
    )
    # Row picks (2 largest): 0→{1,2}, 1→{0,2}, 2→{0,1}, 3→{4,5}, 4→{3,5}, 5→{3,4}.
    # Edges 0–3 (0.1), 1–4 (0.2), 2–5 (0.3) are nobody's top-2, so they vanish.
    expected = np.array(
        [
            [0.0, 0.9, 0.8, 0.0, 0.0, 0.0],
            [0.9, 0.0, 0.7, 0.0, 0.0, 0.0],
            [0.8, 0.7, 0.0, 0.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 0.6, 0.5],
            [0.0, 0.0, 0.0, 0.6, 0.0, 0.4],
            [0.0, 0.0, 0.0, 0.5, 0.4, 0.0],
        ]
    )
    graph = st.knn_graph(a, knn=2)
    np.testing.assert_array_equal(graph, expected)
    distance = st.knn_distance(graph)
    np.testing.assert_allclose(distance[0, 1], 0.1)
    assert distance[0, 3] == 1.0 and distance[2, 5] == 1.0
    np.testing.assert_array_equal(np.diag(distance), 0.0)
    labels = st.cluster_tasks(a, n_clusters=2, knn=2)
    assert adjusted_rand_score([0, 0, 0, 1, 1, 1], labels) == 1.0


def test_knn_graph_keeps_value_when_only_one_side_picks_it():
    # Task 3's best neighbour is 0, but 0 prefers 1 and 2: the edge must still appear in both cells.
    a = np.array(
        [
            [0.0, 0.9, 0.8, 0.3],
            [0.9, 0.0, 0.7, 0.0],
            [0.8, 0.7, 0.0, 0.0],
            [0.3, 0.0, 0.0, 0.0],
        ]
    )
    graph = st.knn_graph(a, knn=1)
    # Single picks: 0→1, 1→0, 2→0, 3→0; each pick writes both K[i, j] and K[j, i].
    expected = np.array(
        [
            [0.0, 0.9, 0.8, 0.3],
            [0.9, 0.0, 0.0, 0.0],
            [0.8, 0.0, 0.0, 0.0],
            [0.3, 0.0, 0.0, 0.0],
        ]
    )
    np.testing.assert_array_equal(graph, expected)


def test_cluster_tasks_symmetrises_and_zeroes_nan():
    matrix = planted(seed=3)
    directed = matrix.copy()
    upper = np.triu(np.ones(directed.shape, dtype=bool), k=1)
    directed = directed.where(~upper, directed * 1.5)  # asymmetric, same symmetrised blocks
    directed.iloc[0, 5] = np.nan
    domains = [label.split("/")[0] for label in matrix.index]
    assert adjusted_rand_score(domains, st.cluster_tasks(directed)) == 1.0


def test_ari_permutation_planted_versus_structureless():
    strong = st.ari_permutation(planted(), n_permutations=N_PERM, seed=42)
    assert strong["ari"] == 1.0
    assert strong["p"] == pytest.approx(1 / (N_PERM + 1))
    assert set(strong["clusters"]) == set(planted().index)
    weak = st.ari_permutation(structureless(), n_permutations=N_PERM, seed=42)
    assert abs(weak["ari"]) < 0.3
    assert weak["p"] > 0.05
    assert abs(weak["null_mean"]) < 0.05


def test_vectorised_null_ari_equals_sklearn():
    matrix = structureless(seed=5)
    domains = np.array([label.split("/")[0] for label in matrix.index])
    clusters = st.cluster_tasks(matrix)
    codes = np.unique(domains, return_inverse=True)[1]
    indices = st.permutation_indices(len(domains), 200, seed=9)
    fast = st._ari_of_labellings(codes[indices], clusters)
    slow = [adjusted_rand_score(domains[row], clusters) for row in indices]
    np.testing.assert_allclose(fast, slow, atol=1e-12)


def test_study_average_overlap_reproduces_verified_ari():
    """book methods §6 [verified]: ARI 0.7838; null mean ≈ 0.0002, SD ≈ 0.038, max ≈ 0.26; p = 1/10001."""
    matrix = study.overlap_matrix("average", 0.1)  # the vendored file the study shipped
    result = st.ari_permutation(matrix, n_permutations=10_000, seed=42)
    assert result["ari"] == pytest.approx(0.7838, abs=5e-5)
    assert result["p"] == pytest.approx(1 / 10_001)
    assert abs(result["null_mean"]) < 0.001
    assert result["null_sd"] == pytest.approx(0.038, abs=0.001)
    assert result["null_max"] == pytest.approx(0.26, abs=0.01)
    clusters = result["clusters"]
    # Recovered clusters (book methods §6): phys_newton/prost join MD; few-shot ToM joins the phys tasks.
    assert clusters["phys/phys_newton"] == clusters["MD/code_A"]
    assert clusters["ToM/norm_moral"] == clusters["phys/physics_speed"]
    assert clusters["ToM/agent"] != clusters["ToM/norm_moral"]
    # Sensitivity to the kNN parameter: k = 3–5 give 0.784, k = 6–8 give 0.41.
    assert st.clustering_scores(matrix, knn=3)["ari"] == pytest.approx(0.7838, abs=5e-5)
    assert st.clustering_scores(matrix, knn=7)["ari"] == pytest.approx(0.41, abs=0.005)
    summary = st.within_cross_permutation(matrix, n_permutations=N_PERM)
    assert round(summary["within"] * 100, 1) == 12.9  # the paper's 12.9% vs 3.0%
    assert round(summary["cross"] * 100, 1) == 3.0


def test_clustering_scores_silhouette_uses_true_labels_on_one_minus_a():
    matrix = planted()
    scores = st.clustering_scores(matrix)
    assert scores["ari"] == scores["nmi"] == scores["ami"] == pytest.approx(1.0)
    values = matrix.to_numpy()
    affinity = (values + values.T) / 2
    np.fill_diagonal(affinity, 0)
    distance = np.clip(1 - affinity, 0, None)
    np.fill_diagonal(distance, 0)
    domains = [label.split("/")[0] for label in matrix.index]
    assert scores["silhouette"] == pytest.approx(silhouette_score(distance, domains, metric="precomputed"))
    assert scores["silhouette"] > 0


# --------------------------------------------------------------------------- per domain and bars


def hand_directed():
    """4 tasks, cell (i, j) = 10·i + j: every cell distinguishable."""
    labels = ["MD/a", "MD/b", "ToM/c", "Lan/d"]
    values = np.array([[10.0 * i + j for j in range(4)] for i in range(4)])
    return pd.DataFrame(values, index=labels, columns=labels)


def test_per_domain_cross_is_exactly_one_task_in_domain():
    table = st.per_domain_modularity(hand_directed(), n_permutations=50, seed=1).set_index("domain")
    assert list(table.index) == ["MD", "ToM", "Lan"]
    assert table.loc["MD", "within"] == pytest.approx((1 + 10) / 2)
    # exactly one in MD: (0,2),(0,3),(1,2),(1,3) and (2,0),(2,1),(3,0),(3,1); NOT (2,3),(3,2).
    assert table.loc["MD", "cross"] == pytest.approx((2 + 3 + 12 + 13 + 20 + 21 + 30 + 31) / 8)
    assert table.loc["MD", "n_tasks"] == 2
    assert np.isnan(table.loc["ToM", "within"])  # a single task has no within cells


def test_per_domain_p_matches_reference_loop_and_reseeds_per_domain():
    matrix = structureless(n_per_domain=3, seed=11)
    domains = np.array([label.split("/")[0] for label in matrix.index])
    values = matrix.to_numpy()
    off = ~np.eye(len(domains), dtype=bool)
    table = st.per_domain_modularity(matrix, n_permutations=200, seed=5).set_index("domain")
    for target in ["MD", "Lan"]:
        rng = np.random.default_rng(5)  # fresh generator per domain, as the study
        inside = domains == target
        real = values[inside[:, None] & inside[None, :] & off].mean() - values[inside[:, None] ^ inside[None, :]].mean()
        null = []
        for _ in range(200):
            t = rng.permutation(domains) == target
            null.append(values[t[:, None] & t[None, :] & off].mean() - values[t[:, None] ^ t[None, :]].mean())
        expected = (np.sum(np.array(null) >= real) + 1) / 201
        assert table.loc[target, "p"] == pytest.approx(expected, abs=0)


def test_per_domain_planted_is_significant_for_every_domain():
    table = st.per_domain_modularity(planted(n_per_domain=5), n_permutations=N_PERM, seed=42)
    assert (table["ratio"] > 5).all()
    assert (table["p"] < 0.01).all()


def test_domain_bars_directions_and_sem_with_ddof_one():
    bars = st.domain_bars(hand_directed()).set_index(["domain", "kind"])
    within = bars.loc[("MD", "within")]
    assert within["mean"] == pytest.approx(5.5) and within["n"] == 2
    assert within["sem"] == pytest.approx(np.std([1, 10], ddof=1) / np.sqrt(2))  # = 4.5
    assert within["sem"] == pytest.approx(4.5)
    to_others = bars.loc[("MD", "D→others")]  # rows (sources) in MD, columns not
    assert to_others["mean"] == pytest.approx(np.mean([2, 3, 12, 13]))
    assert to_others["sem"] == pytest.approx(np.std([2, 3, 12, 13], ddof=1) / 2)
    assert bars.loc[("MD", "others→D"), "mean"] == pytest.approx(np.mean([20, 21, 30, 31]))
    assert np.isnan(bars.loc[("ToM", "within"), "sem"])


# --------------------------------------------------------------------------- Kendall τ


def kendall_models():
    labels = ["MD/a", "MD/b", "ToM/c", "Lan/d"]
    a = np.array([[1, 5, 2, 7], [3, 1, 9, 4], [8, 6, 1, 2], [5, 1, 3, 1]], dtype=float)
    b = np.array([[1, 4, 3, 8], [2, 1, 7, 5], [9, 5, 1, 1], [6, 2, 2, 1]], dtype=float)
    extra = ["MD/a", "MD/b", "ToM/c", "Lan/d", "phys/e"]
    c = np.arange(25, dtype=float).reshape(5, 5)
    return {
        "A": pd.DataFrame(a, index=labels, columns=labels),
        "B": pd.DataFrame(b, index=labels, columns=labels),
        "C": pd.DataFrame(c, index=extra, columns=extra),
    }


def test_kendall_directed_matches_scipy_on_hand_example():
    models = kendall_models()
    pairs = st.kendall_tau_pairs({"A": models["A"], "B": models["B"]}, mode="directed")
    off = ~np.eye(4, dtype=bool)
    tau, p = kendalltau(models["A"].to_numpy()[off], models["B"].to_numpy()[off])
    row = pairs.iloc[0]
    assert (row["model_a"], row["model_b"]) == ("A", "B")
    assert row["tau"] == pytest.approx(tau) and row["p"] == pytest.approx(p)
    assert row["n_tasks"] == 4 and row["n_values"] == 12


def test_kendall_upper_common_tasks_and_nan_dropping():
    models = kendall_models()
    models["A"].iloc[0, 1] = np.nan
    pairs = st.kendall_tau_pairs(models, mode="upper").set_index(["model_a", "model_b"])
    assert len(pairs) == 3
    # Common to all three: the 4 shared tasks (phys/e only in C); upper triangle = 6 values.
    assert (pairs["n_tasks"] == 4).all()
    assert pairs.loc[("B", "C"), "n_values"] == 6
    assert pairs.loc[("A", "B"), "n_values"] == 5  # the NaN position is dropped from both vectors
    iu = np.triu_indices(4, k=1)
    vector_a, vector_b = models["A"].to_numpy()[iu], models["B"].to_numpy()[iu]
    keep = ~np.isnan(vector_a)
    assert pairs.loc[("A", "B"), "tau"] == pytest.approx(kendalltau(vector_a[keep], vector_b[keep])[0])
    per_pair = st.kendall_tau_pairs({"B": models["B"], "C": models["C"]}, mode="upper", common="pair")
    assert per_pair["n_tasks"].iloc[0] == 4


def test_kendall_summary_ddof():
    pairs = pd.DataFrame({"tau": [0.2, 0.4, 0.6], "p": [0.01, 0.2, 0.03]})
    assert st.kendall_summary(pairs, ddof=1)["tau_sd"] == pytest.approx(0.2)
    summary = st.kendall_summary(pairs, ddof=0)
    assert summary["tau_sd"] == pytest.approx(np.std([0.2, 0.4, 0.6]))
    assert (summary["tau_mean"], summary["tau_min"], summary["tau_max"], summary["p_max"], summary["pairs"]) == (
        pytest.approx(0.4), 0.2, 0.6, 0.2, 3
    )


# --------------------------------------------------------------------------- sweep, tables, helpers


def test_threshold_sweep_rows_and_optional_kendall():
    per_model = {"m1": planted(seed=1), "m2": planted(seed=2), "m3": planted(seed=3)}
    sweep = st.threshold_sweep(
        {0.1: planted(seed=0), 1.0: structureless()},
        per_model_by_pct={0.1: per_model},
        n_permutations=199,
    ).set_index("pct")
    assert sweep.loc[0.1, "ari"] == 1.0 and sweep.loc[0.1, "p"] == pytest.approx(1 / 200)
    assert sweep.loc[1.0, "p"] > 0.05
    assert sweep.loc[0.1, "pairs"] == 3 and sweep.loc[0.1, "n_common_tasks"] == 16
    assert np.isnan(sweep.loc[1.0, "tau_mean"])  # no per-model matrices given for 1%
    assert {"nmi", "ami", "v_measure", "silhouette", "within", "cross", "ratio"} <= set(sweep.columns)


def test_model_summary_restricts_ablation_to_paired_labels():
    overlap = planted()
    ablation = planted(seed=4)
    ablation["phys/extra_target"] = 0.5  # a column without a matching row
    row = st.model_summary(overlap, ablation, n_permutations=199)
    assert row["n_tasks_overlap"] == 16 and row["n_tasks_ablation"] == 16
    assert row["overlap_ratio"] > 5 and row["ablation_p"] == pytest.approx(1 / 200)
    table = st.summarise_models(pd.DataFrame([row, st.model_summary(planted(seed=9), None, n_permutations=99)]))
    assert table.loc["sd", "n_tasks_overlap"] == 0.0
    assert table[["overlap_p", "ablation_p"]].isna().all().all(), "p-values are never averaged"


def test_format_p_and_binomial_se():
    assert st.format_p(1 / 10_001, 10_000) == "<1e-04"
    assert st.format_p(0.0123, 10_000) == "0.0123"
    assert st.binomial_se(0.5, 100) == pytest.approx(0.05)
    np.testing.assert_allclose(st.binomial_se([0.1, 0.9], [100, 0]), [0.03, np.nan])


def test_comparison_note_says_when_tau_is_possible():
    import pandas as pd

    from modularity.science.stats import common_labels, comparison_note

    def square(labels):
        return pd.DataFrame(0.0, index=labels, columns=labels)

    four = ["MD/a", "MD/b", "Lan/c", "Lan/d"]
    ok, note = comparison_note("ablation", {"x": square(four)})
    assert not ok and "τ needs two models" in note
    ok, note = comparison_note("ablation", {"x": square(four), "y": square(four[:2])})
    assert not ok and "only 2 task(s)" in note
    ok, note = comparison_note("ablation", {"x": square(four), "y": square(four[:3])})
    assert ok and "differ" in note and "3 tasks common" in note
    ok, note = comparison_note("overlap", {"x": square(four), "y": square(four)})
    assert ok and "same 4 tasks" in note
    assert common_labels({"x": square(four), "y": square(four[1:])}) == sorted(four[1:])


def test_per_domain_holm_correction_matches_statsmodels_and_never_lowers_p():
    from statsmodels.stats.multitest import multipletests

    table = st.per_domain_modularity(planted(n_per_domain=4, within=0.08, cross=0.05, noise=0.03), n_permutations=300, seed=3)
    np.testing.assert_allclose(table.p_holm, multipletests(table.p, method="holm")[1])
    assert (table.p_holm >= table.p).all() and (table.p_holm <= 1).all()


# --------------------------------------------------------------------------- undefined statistics and ties


def test_no_p_value_without_its_statistic():
    matrix = planted(n_per_domain=3)
    one_task_md = matrix.drop(index=matrix.index[1:3], columns=matrix.columns[1:3])  # MD keeps one task
    table = st.per_domain_modularity(one_task_md, n_permutations=199, seed=42).set_index("domain")
    assert np.isnan(table.loc["MD", "within"]) and np.isnan(table.loc["MD", "p"]) and np.isnan(table.loc["MD", "p_holm"])
    assert "not computed" in table.loc["MD", "note"] and "inside MD" in table.loc["MD", "note"]
    tested = table.drop(index="MD")
    assert (tested.note == "").all() and tested.p.notna().all()
    # Holm over the three tests that ran, not four
    from statsmodels.stats.multitest import multipletests
    np.testing.assert_allclose(tested.p_holm, multipletests(tested.p, method="holm")[1])

    all_missing = pd.DataFrame(np.nan, index=matrix.index, columns=matrix.columns)
    result = st.within_cross_permutation(all_missing, n_permutations=199, seed=42)
    assert np.isnan(result["p"]) and result["note"].startswith("not computed")
    assert st.format_p(result["p"], 199) == "not computed"
    assert np.isnan(st.permutation_p(np.array([0.1, 0.2]), float("nan")))
    assert np.isnan(st.permutation_p(np.array([np.nan, np.nan]), 0.1))
    # undefined null draws are left out of the count, not counted as falling short
    assert st.permutation_p(np.array([np.nan, 0.5, 0.05]), 0.1) == pytest.approx(2 / 3)


def test_cli_overlap_statistics_of_a_one_task_domain_are_not_computed(tmp_path, capsys):
    import json

    from modularity.showing.cli import main

    matrix = planted(n_per_domain=3)
    matrix.drop(index=matrix.index[1:3], columns=matrix.columns[1:3]).to_csv(tmp_path / "overlap.csv")
    assert main(["stats", "overlap", str(tmp_path / "overlap.csv"), "--permutations", "199"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["per_domain"]["MD"]["p"] is None and report["per_domain"]["MD"]["within"] is None
    assert report["per_domain"]["MD"]["note"].startswith("not computed")
    pd.DataFrame(np.nan, index=matrix.index, columns=matrix.columns).to_csv(tmp_path / "missing.csv")
    assert main(["stats", "overlap", str(tmp_path / "missing.csv"), "--permutations", "199"]) == 0
    assert json.loads(capsys.readouterr().out)["p_within_gt_cross"] is None


def tie_heavy(seed=0, k=5):
    """Overlap fractions on a coarse grid (multiples of 1/k, many zeros): most shuffles tie."""
    rng = np.random.default_rng(seed)
    domains = np.repeat(["MD", "ToM", "phys", "Lan"], [3, 4, 4, 4])
    counts = rng.choice([0, 0, 0, 1], size=(len(domains), len(domains)))
    values = np.triu(counts, 1) / k
    values = values + values.T
    np.fill_diagonal(values, 1.0)
    labels = [f"{d}/t{i}" for i, d in enumerate(domains)]
    return pd.DataFrame(values, index=labels, columns=labels)


def test_ties_count_whatever_order_the_sums_take():
    assert st.permutation_p(np.array([0.3]), 0.1 + 0.2) == 1.0  # 0.30000000000000004 ties with 0.3
    assert st.permutation_p(np.array([0.3 - 1e-6]), 0.3) == 0.5  # a real difference is not a tie
    matrix = tie_heavy()
    values, domains = matrix.to_numpy(), np.array([label.split("/")[0] for label in matrix.index])
    finite = np.isfinite(values) & ~np.eye(len(domains), dtype=bool)

    def delta(labels):  # masked means: another summation order than the library's matmuls
        same = labels[:, None] == labels[None, :]
        return values[same & finite].mean() - values[~same & finite].mean()

    rng = np.random.default_rng(42)
    null = np.array([delta(rng.permutation(domains)) for _ in range(500)])
    observed = delta(domains)
    exact_ties = np.isclose(null, observed, rtol=0, atol=1e-12)
    assert exact_ties.sum() >= 5, "the example must contain ties"
    expected = (np.sum((null > observed) | exact_ties) + 1) / 501
    assert st.within_cross_permutation(matrix, n_permutations=500, seed=42)["p"] == expected
    assert st.permutation_p(null, observed, scale=1.0) == expected
