"""Statistics on task × task matrices: permutation tests, clustering recovery,
per-domain modularity, ablation bars, Kendall τ across models, threshold sweep.

Follows book methods §6–§10 (what the study's scripts do, checked against its shipped
numbers). Inputs are square DataFrames indexed by ``domain/task`` labels
(overlap: symmetric; ablation: directed, rows = source, columns = target).
``domains`` arguments accept None (read the label prefixes), a sequence aligned
with the rows, or a mapping label → domain (see
:func:`modularity.science.overlap.resolve_domains`).

Permutation nulls reproduce the study's random stream: ``numpy.random.default_rng(seed)``
and one ``rng.permutation`` per null draw, applied to the task → domain labels
(so domain sizes are preserved), with p = (#{null ≥ observed} + 1) / (n + 1).
The statistics themselves are computed in vectorised form.
"""
from __future__ import annotations

from itertools import combinations
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from scipy.stats import kendalltau
from statsmodels.stats.multitest import multipletests
from sklearn.metrics import (
    adjusted_mutual_info_score,
    adjusted_rand_score,
    normalized_mutual_info_score,
    silhouette_score,
    v_measure_score,
)

from modularity.science.overlap import _check_square, resolve_domains, within_cross
from modularity.science.tasks.schema import DOMAINS

__all__ = [
    "permutation_indices",
    "within_cross_permutation",
    "knn_graph",
    "knn_distance",
    "cluster_tasks",
    "ari_permutation",
    "clustering_scores",
    "per_domain_modularity",
    "domain_bars",
    "common_labels",
    "kendall_tau_pairs",
    "kendall_summary",
    "threshold_sweep",
    "model_summary",
    "within_cross_columns",
    "summarise_models",
    "testable",
    "untestable_reason",
    "permutation_p",
    "holm",
    "untested_reason",
    "bar_table",
    "format_p",
    "binomial_se",
    "dissociation_test",
    "sign_flip_p",
]

Domains = Sequence[str] | Mapping[str, str] | None

#: The study's permutation seed (``numpy.random.default_rng(42)`` in its statistics scripts): the
#: default of every test here, so the study's own numbers come back draw for draw.
STUDY_SEED = 42

#: Permutations processed per vectorised block (bounds memory to a few MB for ~50 tasks).
_BLOCK = 2000


# --------------------------------------------------------------------------- permutations


def permutation_indices(n_items: int, n_permutations: int, seed: int) -> np.ndarray:
    """Index permutations [n_permutations, n_items] from ``default_rng(seed)``.

    Row r equals the r-th ``rng.permutation(n_items)`` of a fresh generator, and
    ``labels[row]`` is exactly what ``rng.permutation(labels)`` returns — the
    study's null draw.
    """
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(n_items) for _ in range(n_permutations)]) if n_permutations else np.empty((0, n_items), dtype=np.int64)


#: Two values of a statistic closer than this, relative to the magnitude of the numbers they are
#: computed from, are ties: float64 sums of n cells differ by summation order by at most ~n·2.2e-16
#: relative (about 1e-11 for the 200 × 200 matrices of the largest runs), far below this, while
#: distinct values of a mean of overlap fractions (multiples of 1/k) lie much further apart.
TIE_RTOL = 1e-9


def permutation_p(null: np.ndarray, observed: float, scale: float | None = None) -> float:
    """One-sided p = (#{null ≥ observed} + 1) / (n + 1), over the n defined (finite) null draws.

    NaN when ``observed`` is undefined (NaN: e.g. no within-domain cell exists) or no null draw
    is defined: a test without its statistic has no p-value. Ties count as reaching the observed
    value: a null draw counts when null ≥ observed − ``TIE_RTOL``·``scale``, so a draw equal to the
    observed value in exact arithmetic counts whatever order the sums were taken in (the same
    rule as ``scipy.stats.permutation_test``'s relative tolerance). ``scale`` is the magnitude of
    the numbers the statistic is formed from (for a difference of means of matrix cells, the
    largest |cell|); default, the largest |value| among observed and null.
    """
    null = np.asarray(null, dtype=float)
    null = null[np.isfinite(null)]
    if not np.isfinite(observed) or null.size == 0:
        return float("nan")
    if scale is None:
        scale = max(abs(float(observed)), float(np.abs(null).max()))
    tolerance = TIE_RTOL * abs(float(scale))
    return float((np.sum(null >= observed - tolerance) + 1) / (null.size + 1))


def _cell_scale(values: np.ndarray) -> float:
    """Largest |finite cell| of a matrix: the magnitude its cell means are computed from."""
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size else 0.0


def _domain_codes(codes: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Integer codes [n] and the domain names they stand for."""
    names, integer_codes = np.unique(codes, return_inverse=True)
    return integer_codes, [str(name) for name in names]


def _usable_cells(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Off-diagonal finite cells: values with NaN/diagonal set to 0, and the 0/1 mask."""
    n = values.shape[0]
    usable = np.isfinite(values) & ~np.eye(n, dtype=bool)
    return np.where(usable, values, 0.0), usable.astype(float)


def _within_minus_cross(values: np.ndarray, usable: np.ndarray, labellings: np.ndarray, n_codes: int) -> np.ndarray:
    """Δ = mean(within cells) − mean(cross cells) for each labelling row [P, n] → [P]."""
    total_sum, total_count = values.sum(), usable.sum()
    deltas = np.empty(labellings.shape[0])
    eye = np.eye(n_codes)
    for start in range(0, labellings.shape[0], _BLOCK):
        one_hot = eye[labellings[start : start + _BLOCK]]  # [B, n, D]
        within_sum = (one_hot * np.matmul(values, one_hot)).sum(axis=(1, 2))
        within_count = (one_hot * np.matmul(usable, one_hot)).sum(axis=(1, 2))
        cross_count = total_count - within_count
        with np.errstate(invalid="ignore", divide="ignore"):
            deltas[start : start + _BLOCK] = within_sum / within_count - (total_sum - within_sum) / cross_count
    return deltas


def within_cross_permutation(
    matrix: pd.DataFrame, domains: Domains = None, n_permutations: int = 10_000, seed: int = STUDY_SEED
) -> dict:
    """Within- vs cross-domain permutation test (book methods §6 end, SI Table 1, sweep test 1).

    ``matrix``: square [n, n] (symmetric overlap or directed ablation; all
    off-diagonal finite cells count, both directions). Statistic
    Δ = within − cross; null: the task → domain labels shuffled
    ``n_permutations`` times; one-sided p = (#{Δ_null ≥ Δ_obs} + 1)/(n_permutations + 1).

    p is NaN when Δ is undefined (no finite within- or cross-domain cell), and ``note`` says why
    (empty when the test ran).

    Returns ``{within, cross, ratio, delta, p, n_tasks, n_permutations, note}``.
    """
    values = _check_square(matrix)
    codes = resolve_domains(matrix, domains)
    summary = within_cross(matrix, codes)
    integer_codes, names = _domain_codes(codes)
    cell_values, usable = _usable_cells(values)
    # Observed Δ through the same code path as the null, so that a null draw that
    # reproduces the true partition ties with it exactly.
    observed = _within_minus_cross(cell_values, usable, integer_codes[None, :], len(names))[0]
    null = _within_minus_cross(cell_values, usable, integer_codes[permutation_indices(len(codes), n_permutations, seed)], len(names))
    return {
        **summary,
        "delta": summary["within"] - summary["cross"],
        "p": permutation_p(null, observed, _cell_scale(values)),
        "n_tasks": int(len(codes)),
        "n_permutations": int(n_permutations),
        "note": untested_reason(summary["within"], summary["cross"], "pair of tasks in the same domain",
                                "pair of tasks in different domains"),
    }


def untested_reason(within: float, cross: float, within_kind: str, cross_kind: str) -> str:
    """Why a within − cross test has no p-value ("" when both means exist)."""
    missing = [kind for value, kind in ((within, within_kind), (cross, cross_kind)) if not np.isfinite(value)]
    return ("not computed: no finite cell for a " + " nor for a ".join(missing)) if missing else ""


# --------------------------------------------------------------------------- clustering (book methods §6)


def _symmetric_affinity(matrix: pd.DataFrame | np.ndarray) -> np.ndarray:
    """A = (M + Mᵀ)/2 with NaN → 0 and a zero diagonal, [n, n]."""
    values = matrix.to_numpy(dtype=float) if isinstance(matrix, pd.DataFrame) else np.asarray(matrix, dtype=float)
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise ValueError(f"matrix must be square, got shape {values.shape}")
    values = np.nan_to_num(values, nan=0.0)
    affinity = (values + values.T) / 2.0
    np.fill_diagonal(affinity, 0.0)
    return affinity


def knn_graph(affinity: np.ndarray, knn: int = 5) -> np.ndarray:
    """Symmetric kNN graph K [n, n] of a symmetric affinity with zero diagonal (book methods §6 step 2).

    For each row i the ``knn`` largest entries A[i, j] are kept, and A_ij is
    written to both K[i, j] and K[j, i]; every other entry is 0. Ties: the
    study takes ``argsort(row)[::-1]``; with a stable sort that means the higher
    column index wins, which is what is done here (deterministic on any CPU).
    """
    affinity = np.asarray(affinity, dtype=float)
    graph = np.zeros_like(affinity)
    for i in range(affinity.shape[0]):
        neighbours = np.argsort(affinity[i], kind="stable")[::-1][:knn]
        graph[i, neighbours] = affinity[i, neighbours]
        graph[neighbours, i] = affinity[neighbours, i]
    return graph


def knn_distance(graph: np.ndarray) -> np.ndarray:
    """D = 1 − K, with D = 1 wherever K = 0 and a zero diagonal (book methods §6 step 3)."""
    distance = 1.0 - graph
    distance[graph == 0] = 1.0
    np.fill_diagonal(distance, 0.0)
    return distance


def cluster_tasks(matrix: pd.DataFrame | np.ndarray, n_clusters: int = 4, knn: int = 5) -> np.ndarray:
    """The study's clustering pipeline (book methods §6 steps 1–4) → cluster ids [n] (1..n_clusters).

    Symmetrise (NaN → 0), zero the diagonal, kNN graph (:func:`knn_graph`),
    distance (:func:`knn_distance`), scipy average linkage on the condensed
    distance, cut with ``fcluster(..., n_clusters, criterion="maxclust")``.
    Directed (ablation) matrices are symmetrised by the first step.
    """
    distance = knn_distance(knn_graph(_symmetric_affinity(matrix), knn))
    tree = linkage(squareform(distance, checks=False), method="average")
    return fcluster(tree, t=n_clusters, criterion="maxclust")


def _comb2(counts: np.ndarray) -> np.ndarray:
    return counts * (counts - 1) / 2.0


def _ari_of_labellings(labellings: np.ndarray, clusters: np.ndarray) -> np.ndarray:
    """ARI of each labelling row [P, n] against fixed ``clusters`` [n] → [P].

    Same value as sklearn's ``adjusted_rand_score`` (Hubert–Arabie form on the
    contingency table), vectorised; degenerate rows fall back to sklearn.
    """
    n = clusters.size
    _, cluster_codes = np.unique(clusters, return_inverse=True)
    n_labels, n_clusters = int(labellings.max(initial=0)) + 1, int(cluster_codes.max(initial=0)) + 1
    result = np.empty(labellings.shape[0])
    for start in range(0, labellings.shape[0], _BLOCK):
        block = labellings[start : start + _BLOCK]
        size = block.shape[0]
        flat = (np.arange(size)[:, None] * n_labels + block) * n_clusters + cluster_codes[None, :]
        table = np.bincount(flat.ravel(), minlength=size * n_labels * n_clusters).reshape(size, n_labels, n_clusters)
        index = _comb2(table).sum(axis=(1, 2))
        row_pairs = _comb2(table.sum(axis=2)).sum(axis=1)
        column_pairs = _comb2(table.sum(axis=1)).sum(axis=1)
        expected = row_pairs * column_pairs / _comb2(np.float64(n))
        maximum = (row_pairs + column_pairs) / 2.0
        with np.errstate(invalid="ignore", divide="ignore"):
            result[start : start + size] = (index - expected) / (maximum - expected)
    degenerate = ~np.isfinite(result)
    for row in np.flatnonzero(degenerate):
        result[row] = adjusted_rand_score(labellings[row], clusters)
    return result


def ari_permutation(
    matrix: pd.DataFrame,
    domains: Domains = None,
    n_permutations: int = 10_000,
    seed: int = STUDY_SEED,
    knn: int = 5,
    n_clusters: int = 4,
) -> dict:
    """ARI of the clustering against the domains, with its permutation p (book methods §6 steps 5–6).

    The clustering (:func:`cluster_tasks`) is computed once and kept fixed; the
    null shuffles the true domain labels ``n_permutations`` times.
    Returns ``{ari, p, null_mean, null_sd (ddof=0), null_max, clusters}``
    (clusters: label → cluster id).
    """
    codes = resolve_domains(matrix, domains)
    clusters = cluster_tasks(matrix, n_clusters=n_clusters, knn=knn)
    integer_codes, _ = _domain_codes(codes)
    observed = _ari_of_labellings(integer_codes[None, :], clusters)[0]
    null = _ari_of_labellings(integer_codes[permutation_indices(len(codes), n_permutations, seed)], clusters)
    return {
        "ari": float(adjusted_rand_score(codes, clusters)),
        "p": permutation_p(null, observed, scale=1.0),  # ARI ≤ 1
        "null_mean": float(null.mean()) if null.size else float("nan"),
        "null_sd": float(null.std()) if null.size else float("nan"),
        "null_max": float(null.max()) if null.size else float("nan"),
        "clusters": {str(label): int(cluster) for label, cluster in zip(matrix.index, clusters)},
    }


def clustering_scores(matrix: pd.DataFrame, domains: Domains = None, knn: int = 5, n_clusters: int = 4) -> dict:
    """Cluster-recovery scores of sweep test 2 (book methods §9).

    ARI, NMI, AMI and V-measure of :func:`cluster_tasks` against the domains,
    plus the silhouette of the **true** domain labels on the distance 1 − A
    (A symmetrised, NaN → 0, zero diagonal; distance clipped at ≥ 0, zero
    diagonal; precomputed metric). Silhouette is NaN when it is undefined
    (fewer than 2 or more than n − 1 domains).
    """
    codes = resolve_domains(matrix, domains)
    clusters = cluster_tasks(matrix, n_clusters=n_clusters, knn=knn)
    distance = np.clip(1.0 - _symmetric_affinity(matrix), 0.0, None)
    np.fill_diagonal(distance, 0.0)
    n_domains = len(set(codes))
    silhouette = (
        float(silhouette_score(distance, codes, metric="precomputed"))
        if 2 <= n_domains <= len(codes) - 1
        else float("nan")
    )
    return {
        "ari": float(adjusted_rand_score(codes, clusters)),
        "nmi": float(normalized_mutual_info_score(codes, clusters)),
        "ami": float(adjusted_mutual_info_score(codes, clusters)),
        "v_measure": float(v_measure_score(codes, clusters)),
        "silhouette": silhouette,
        "n_tasks": int(len(codes)),
    }


# --------------------------------------------------------------------------- per domain (book methods §9)


def _ordered_domains(codes: np.ndarray) -> list[str]:
    present = set(codes.tolist())
    return [d for d in DOMAINS if d in present] + sorted(present - set(DOMAINS))


def _one_domain_stats(values: np.ndarray, usable: np.ndarray, indicator: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """within_D and cross_D for indicator rows [P, n] (1 = task in D) → ([P], [P])."""
    outside = 1.0 - indicator

    def quadratic(left: np.ndarray, cells: np.ndarray, right: np.ndarray) -> np.ndarray:
        return np.sum((left @ cells) * right, axis=1)  # Σ_ij left_i cells_ij right_j per row

    within_sum = quadratic(indicator, values, indicator)
    within_count = quadratic(indicator, usable, indicator)
    # Exactly one task in D: (i in D, j not) plus (i not, j in D).
    cross_sum = quadratic(indicator, values, outside) + quadratic(outside, values, indicator)
    cross_count = quadratic(indicator, usable, outside) + quadratic(outside, usable, indicator)
    with np.errstate(invalid="ignore", divide="ignore"):
        return within_sum / within_count, cross_sum / cross_count


def per_domain_modularity(
    matrix: pd.DataFrame, domains: Domains = None, n_permutations: int = 10_000, seed: int = STUDY_SEED
) -> pd.DataFrame:
    """Per-domain within vs cross test (book methods §9, SI Table 2). One row per domain (study order).

    within_D = mean of off-diagonal cells with both tasks in D; cross_D = mean
    of cells with **exactly one** task in D (both directions; so ablation's
    D → others and others → D both count). p: shuffle all task → domain labels,
    recompute within_D − cross_D; a fresh ``default_rng(seed)`` for each domain,
    as the study does. Columns: domain, n_tasks, within, cross, ratio, delta, p,
    p_holm (Holm's correction across the domains with a p-value, statsmodels; the study reported
    p alone) and note. A domain with one task (or no finite cell inside it) has no within_D:
    its p and p_holm are NaN and ``note`` says why; it does not count among Holm's tests.
    """
    values = _check_square(matrix)
    codes = resolve_domains(matrix, domains)
    cell_values, usable = _usable_cells(values)
    rows = []
    for domain in _ordered_domains(codes):
        labellings = codes[permutation_indices(len(codes), n_permutations, seed)]
        observed_within, observed_cross = _one_domain_stats(cell_values, usable, (codes == domain)[None, :].astype(float))
        null_deltas = np.concatenate(
            [
                np.subtract(*_one_domain_stats(cell_values, usable, (labellings[start : start + _BLOCK] == domain).astype(float)))
                for start in range(0, len(labellings), _BLOCK)
            ]
        ) if n_permutations else np.empty(0)
        within, cross = float(observed_within[0]), float(observed_cross[0])
        rows.append(
            {
                "domain": domain,
                "n_tasks": int(np.sum(codes == domain)),
                "within": within,
                "cross": cross,
                "ratio": within / cross if cross > 0 else float("nan"),
                "delta": within - cross,
                "p": permutation_p(null_deltas, within - cross, _cell_scale(values)),
                "note": untested_reason(within, cross, f"pair of tasks inside {domain}",
                                        f"pair with one task in {domain}"),
            }
        )
    table = pd.DataFrame(rows, columns=["domain", "n_tasks", "within", "cross", "ratio", "delta", "p", "note"])
    table.insert(table.columns.get_loc("p") + 1, "p_holm", holm(table["p"]))
    return table


def holm(p_values) -> np.ndarray:
    """Holm's step-down adjustment (statsmodels) of the defined p-values; NaN stays NaN and is not
    counted among the tests (a test that could not run is not one of the family)."""
    p_values = np.asarray(p_values, dtype=float)
    adjusted = np.full(p_values.shape, np.nan)
    tested = np.isfinite(p_values)
    if tested.any():
        adjusted[tested] = multipletests(p_values[tested], method="holm")[1]
    return adjusted


# --------------------------------------------------------------------------- ablation bars (book methods §7)

#: Fig 2C bar kinds, in plotting order (the names modularity.showing.charts.domain_bars reads).
BAR_KINDS: tuple[str, ...] = ("within", "D→others", "others→D")


def domain_bars(ablation_matrix: pd.DataFrame, domains: Domains = None) -> pd.DataFrame:
    """Fig 2C's three bars per domain D on a directed ablation matrix (book methods §7).

    Rows are sources S, columns targets T. Bars (column ``kind``): ``within``
    (S, T ∈ D, S ≠ T), ``D→others`` (S ∈ D, T ∉ D) and ``others→D`` (S ∉ D,
    T ∈ D). NaN cells are skipped. Long format, one row per (domain, kind):
    columns domain, kind, mean, sem (= SD(ddof=1)/√n; NaN when n < 2), n —
    ready for :func:`modularity.showing.charts.domain_bars`.
    """
    values = _check_square(ablation_matrix)
    codes = resolve_domains(ablation_matrix, domains)
    off_diagonal = ~np.eye(values.shape[0], dtype=bool)
    masks = {}
    for domain in _ordered_domains(codes):
        inside = codes == domain
        masks[domain] = {
            "within": inside[:, None] & inside[None, :] & off_diagonal,
            "D→others": inside[:, None] & ~inside[None, :],
            "others→D": ~inside[:, None] & inside[None, :],
        }
    return bar_table(values, masks)


def bar_table(values: np.ndarray, masks: Mapping[str, Mapping[str, np.ndarray]]) -> pd.DataFrame:
    """Fig 2C's bars from cell masks: ``masks[domain][kind]`` (bool, the shape of ``values``) picks
    the cells of each bar. One row per (domain, kind in :data:`BAR_KINDS`): domain, kind, mean,
    sem (SD with ddof = 1 over √n; NaN when n < 2) and n of the finite cells picked."""
    rows = []
    for domain, by_kind in masks.items():
        for kind in BAR_KINDS:
            cells = values[by_kind[kind]]
            cells = cells[np.isfinite(cells)]
            n = int(cells.size)
            rows.append(
                {
                    "domain": domain,
                    "kind": kind,
                    "mean": float(cells.mean()) if n else float("nan"),
                    "sem": float(cells.std(ddof=1) / np.sqrt(n)) if n >= 2 else float("nan"),
                    "n": n,
                }
            )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- Kendall τ (book methods §8, §9)


def _vectorise(matrix: pd.DataFrame, labels: list[str], mode: str) -> np.ndarray:
    values = matrix.loc[labels, labels].to_numpy(dtype=float)
    n = len(labels)
    if mode == "directed":
        return values[~np.eye(n, dtype=bool)]
    if mode == "upper":
        return values[np.triu_indices(n, k=1)]
    raise ValueError(f"mode must be 'directed' (all off-diagonal cells) or 'upper' (upper triangle), got {mode!r}")


def kendall_tau_pairs(
    matrices: Mapping[str, pd.DataFrame], mode: str = "directed", common: str = "all"
) -> pd.DataFrame:
    """Pairwise Kendall τ-b between models' matrices (book methods §8 ablation, §10 test 3 overlap).

    ``mode``: "directed" = all off-diagonal cells (directed ablation matrices,
    n·(n−1) values); "upper" = strict upper triangle (symmetric overlap
    matrices, n·(n−1)/2 values). ``common``: "all" restricts every pair to the
    tasks common to **all** models (the study), "pair" to those common to the
    two models of the pair. Positions NaN in either vector are dropped.
    τ and p come from ``scipy.stats.kendalltau`` (τ-b, asymptotic p).

    Returns one row per pair (dict order): model_a, model_b, tau, p, n_tasks, n_values.
    """
    if len(matrices) < 2:
        raise ValueError("Kendall τ needs at least two matrices")
    if common not in ("all", "pair"):
        raise ValueError(f"common must be 'all' or 'pair', got {common!r}")
    shared = common_labels(matrices) if common == "all" else None
    rows = []
    for name_a, name_b in combinations(matrices, 2):
        labels = shared if shared is not None else common_labels({name_a: matrices[name_a], name_b: matrices[name_b]})
        vector_a = _vectorise(matrices[name_a], labels, mode)
        vector_b = _vectorise(matrices[name_b], labels, mode)
        keep = ~(np.isnan(vector_a) | np.isnan(vector_b))
        if keep.sum() >= 2:
            tau, p = kendalltau(vector_a[keep], vector_b[keep])
        else:
            tau, p = float("nan"), float("nan")
        rows.append(
            {
                "model_a": name_a,
                "model_b": name_b,
                "tau": float(tau),
                "p": float(p),
                "n_tasks": len(labels),
                "n_values": int(keep.sum()),
            }
        )
    return pd.DataFrame(rows)


def kendall_summary(pairs: pd.DataFrame, ddof: int) -> dict:
    """Mean, SD, range of the pairwise τ and the largest p.

    ``ddof`` is explicit because the study uses 0 for ablation (book methods §8) and 1 for
    the overlap sweep (§9). Returns tau_mean, tau_sd, tau_min, tau_max, p_max, pairs (count).
    """
    taus = pairs["tau"].to_numpy(dtype=float)
    return {
        "tau_mean": float(np.mean(taus)),
        "tau_sd": float(np.std(taus, ddof=ddof)) if taus.size > ddof else float("nan"),
        "tau_min": float(np.min(taus)),
        "tau_max": float(np.max(taus)),
        "p_max": float(pairs["p"].max()),
        "pairs": int(len(pairs)),
    }


# --------------------------------------------------------------------------- sweep and tables (book methods §9)


def threshold_sweep(
    matrices_by_pct: Mapping[float, pd.DataFrame],
    domains: Domains = None,
    per_model_by_pct: Mapping[float, Mapping[str, pd.DataFrame]] | None = None,
    n_permutations: int = 10_000,
    seed: int = STUDY_SEED,
    knn: int = 5,
    n_clusters: int = 4,
) -> pd.DataFrame:
    """Robustness of the overlap results across top-k% thresholds (book methods §9). One row per pct.

    ``matrices_by_pct``: pct → **averaged raw** overlap matrix. Test 1:
    within/cross permutation test (within, cross, ratio, delta, p). Test 2:
    :func:`clustering_scores` (ari, nmi, ami, v_measure, silhouette). Test 3,
    only if ``per_model_by_pct`` gives the per-model matrices for that pct:
    Kendall τ on the upper triangle over tasks common to all models, summarised
    with ddof = 1 (tau_mean, tau_sd, tau_min, tau_max, p_max, pairs, n_common_tasks).
    """
    rows = []
    for pct, matrix in matrices_by_pct.items():
        test1 = within_cross_permutation(matrix, domains, n_permutations=n_permutations, seed=seed)
        test2 = clustering_scores(matrix, domains, knn=knn, n_clusters=n_clusters)
        row = {
            "pct": pct,
            "n_tasks": test1["n_tasks"],
            **{key: test1[key] for key in ("within", "cross", "ratio", "delta", "p")},
            **{key: test2[key] for key in ("ari", "nmi", "ami", "v_measure", "silhouette")},
        }
        if per_model_by_pct is not None and pct in per_model_by_pct:
            pairs = kendall_tau_pairs(per_model_by_pct[pct], mode="upper")
            row.update(kendall_summary(pairs, ddof=1))
            row["n_common_tasks"] = int(pairs["n_tasks"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def _restrict_to_paired_labels(matrix: pd.DataFrame) -> pd.DataFrame:
    """Keep labels present as both row and column (rows' order)."""
    common = [label for label in matrix.index if label in set(matrix.columns)]
    return matrix.loc[common, common]


def model_summary(
    overlap: pd.DataFrame,
    ablation: pd.DataFrame | None = None,
    domains: Mapping[str, str] | None = None,
    n_permutations: int = 10_000,
    seed: int = STUDY_SEED,
) -> dict:
    """One model's SI Table 1 row (book methods §9).

    Overlap (0.1%): n_tasks_overlap, overlap_within, overlap_cross,
    overlap_ratio, overlap_p. Ablation (directed, restricted to labels present
    as both row and column; NaN cells skipped): the same with prefix
    ``ablation_``. ``domains`` is an optional label → domain mapping (default:
    label prefixes). Whether legacy tasks are in the ablation matrix is the
    caller's choice (the study kept them; see book methods, difference 4).
    """
    def half(prefix: str, matrix: pd.DataFrame) -> dict:
        return within_cross_columns(prefix, within_cross_permutation(matrix, domains, n_permutations=n_permutations, seed=seed))

    row = half("overlap", overlap)
    if ablation is not None:
        row.update(half("ablation", _restrict_to_paired_labels(ablation)))
    return row


def within_cross_columns(prefix: str, test: Mapping) -> dict:
    """A :func:`within_cross_permutation` result as the columns of one matrix in a model's row
    (:func:`model_summary`): ``n_tasks_<prefix>``, ``<prefix>_within``, ``_cross``, ``_ratio``, ``_p``."""
    return {f"n_tasks_{prefix}": test["n_tasks"], **{f"{prefix}_{key}": test[key] for key in ("within", "cross", "ratio", "p")}}


def summarise_models(rows: pd.DataFrame) -> pd.DataFrame:
    """SI Table 1's summary line: mean and SD (ddof = 1) of each numeric column across models,
    except the p-values (columns ``p`` and ``*_p``), which are not averaged: they stay NaN.

    ``rows``: one row per model (e.g. a DataFrame of :func:`model_summary` dicts).
    Returns a 2-row DataFrame indexed "mean", "sd".
    """
    numeric = rows.select_dtypes("number")
    summary = pd.DataFrame({"mean": numeric.mean(), "sd": numeric.std(ddof=1)}).T
    p_values = [column for column in summary.columns if column == "p" or str(column).endswith("_p")]
    summary[p_values] = np.nan
    return summary


def testable(matrix: pd.DataFrame) -> bool:
    """Whether the within/cross tests can run: at least 4 tasks and two domains with two tasks
    each, so that both a within-domain and a cross-domain cell exist (domains: label prefixes).
    The one rule for "too few tasks" (:func:`untestable_reason` says why it fails)."""
    return untestable_reason(matrix) is None


def untestable_reason(matrix: pd.DataFrame) -> str | None:
    """Why the within/cross tests cannot run on ``matrix`` (None when they can), in words a page
    can print: the tests need at least 4 tasks and two domains with two tasks each."""
    counts = pd.Series(resolve_domains(matrix) if len(matrix) else [], dtype=object).value_counts()
    paired = [str(domain) for domain, n in counts.items() if n >= 2]
    if len(matrix) >= 4 and len(paired) >= 2:
        return None
    held = f" ({', '.join(f'{domain} {n}' for domain, n in counts.items())})" if len(counts) else ""
    return (f"{len(matrix)} task{'' if len(matrix) == 1 else 's'}{held}, but the within/cross tests need at least 4 "
            "tasks, in at least two domains with two or more tasks each")


def format_p(p: float, n_permutations: int) -> str:
    """The study's p display: "<1e-04" when p < 1/n_permutations, else 4 significant digits;
    "not computed" for an undefined p (NaN).

    (p = 1/(n+1), the smallest possible permutation p, prints as "<1e-04" for n = 10,000.)
    """
    if p is None or not np.isfinite(p):
        return "not computed"
    return f"<{1.0 / n_permutations:.0e}" if p < 1.0 / n_permutations else f"{p:.4g}"


def binomial_se(p, n):
    """Standard error of a proportion, √(p(1 − p)/n); NaN where n ≤ 0. Scalars or arrays."""
    p = np.asarray(p, dtype=float)
    n = np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        result = np.where(n > 0, np.sqrt(p * (1.0 - p) / np.where(n > 0, n, 1.0)), np.nan)
    return float(result) if result.ndim == 0 else result


def common_labels(matrices: Mapping[str, pd.DataFrame]) -> list[str]:
    """Labels present as rows and as columns of every matrix, sorted as plain strings (the
    study's ``sorted(set ∩ ...)``; τ does not depend on the order). Empty for no matrices."""
    common = None
    for matrix in matrices.values():
        labels = set(matrix.index) & set(matrix.columns)
        common = labels if common is None else common & labels
    return sorted(common or [])


def comparison_note(kind: str, matrices: Mapping[str, pd.DataFrame], min_tasks: int = 3) -> tuple[bool, str]:
    """Whether τ can be computed across these runs' matrices, and a sentence saying why or on what.

    τ needs two runs and at least ``min_tasks`` common tasks; when task sets differ, the
    intersection is used (book methods §8) and the sentence says how many tasks remain.
    """
    common = common_labels(matrices)
    sizes = {run: len(m) for run, m in matrices.items()}
    if len(matrices) < 2:
        return False, (f"{kind}: only {len(matrices)} run(s) have a matrix; τ needs two models, "
                       "so there is nothing to compare yet.")
    if len(common) < min_tasks:
        return False, f"{kind}: the runs share only {len(common)} task(s); too few cells for τ."
    if any(size != len(common) for size in sizes.values()):
        counted = ", ".join(f"{run} {size}" for run, size in sizes.items())
        return True, (f"{kind}: task sets differ between runs ({counted} tasks); τ uses the {len(common)} "
                      "tasks common to all of them.")
    return True, f"{kind}: all runs have the same {len(common)} tasks."


# --------------------------------------------------------------------------- double dissociation


def _standardised_mean(values: np.ndarray, signs: np.ndarray) -> np.ndarray:
    """Mean of ``signs · values`` over the finite values divided by their root mean square (a
    scale sign flips leave alone), per row of ``signs`` [n_draws, n]; 0 where every value is 0."""
    finite = np.isfinite(values)
    if not finite.any():
        return np.full(signs.shape[0], np.nan)
    x, s = values[finite], signs[:, finite]
    rms = float(np.sqrt(np.mean(x ** 2)))
    return (s * x).mean(axis=1) / rms if rms > 0 else np.zeros(signs.shape[0])


def dissociation_test(form: np.ndarray, content: np.ndarray, n_permutations: int = 10_000,
                      seed: int = STUDY_SEED) -> dict:
    """A double dissociation between a Language lesion and a domain-D lesion, on paired prompts.

    ``form`` [n]: per prompt, (D lesion's fluency effect) − (Language lesion's), each effect the
    lesion minus its layer-matched random set: positive when the Language lesion costs more
    fluency. ``content`` [n] (NaN where not measured: prompts of other domains, or whose key the
    intact model does not state): (Language lesion's key effect) − (D lesion's): positive when the
    D lesion loses more of D's keys. The statistic adds the two terms, each the mean of its finite
    values over their root mean square (a measure without a finite value adds nothing).

    Null: which of the two lesions produced a prompt's pair of outputs is arbitrary, so each prompt's
    differences change sign together, independently across prompts (``n_permutations`` random sign
    vectors from ``default_rng(seed)``); one-sided p (:func:`permutation_p`) for the predicted
    direction, and for each term alone. Returns ``form``, ``content``, ``statistic``, ``p``,
    ``p_form``, ``p_content``, ``n_prompts``, ``n_content``.
    """
    form, content = np.asarray(form, dtype=float), np.asarray(content, dtype=float)
    if form.shape != content.shape:
        raise ValueError(f"form {form.shape} and content {content.shape} must be per prompt, aligned")
    rng = np.random.default_rng(seed)
    signs = np.vstack([np.ones(form.size), rng.choice([-1.0, 1.0], size=(n_permutations, form.size))])
    terms = {"form": _standardised_mean(form, signs), "content": _standardised_mean(content, signs)}
    present = [t for t in terms.values() if np.isfinite(t[0])]
    total = np.sum(present, axis=0) if present else np.full(signs.shape[0], np.nan)
    return {"form": float(terms["form"][0]), "content": float(terms["content"][0]), "statistic": float(total[0]),
            "p": permutation_p(total[1:], float(total[0])), "p_form": permutation_p(terms["form"][1:], float(terms["form"][0])),
            "p_content": permutation_p(terms["content"][1:], float(terms["content"][0])),
            "n_prompts": int(np.isfinite(form).sum()), "n_content": int(np.isfinite(content).sum())}


def sign_flip_p(values: np.ndarray, n_permutations: int = 10_000, seed: int = STUDY_SEED) -> float:
    """One-sided p that the mean of paired differences ``values`` [n] (NaN left out) is above 0:
    each difference's sign flipped at random (``default_rng(seed)``), :func:`permutation_p` of the
    mean; NaN without a finite value. With n values no p is below about 2⁻ⁿ."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not values.size:
        return float("nan")
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n_permutations, values.size))
    return permutation_p((signs * values).mean(axis=1), float(values.mean()), scale=float(np.abs(values).max()))
