"""Top-k% neuron sets, their pairwise overlap, and the matrices built from them.

Everything here is pure computation on arrays and DataFrames (no file I/O, no
plotting), following book methods §3, §4 and §10:

* :func:`top_k_count` and :func:`top_positive_set` pick a task's neuron set:
  strictly positive attribution scores, ranked globally across layers, first k.
* :func:`overlap_matrix` is the study's measure O_ij = |S_i ∩ S_j| / k
  (**not** Jaccard; :func:`jaccard_matrix` gives the real Jaccard for contrast).
* :func:`sinkhorn` is the "doubly stochastic" variant used only for Fig 2A.
* :func:`within_cross` is the within- vs cross-domain summary of any square matrix.
* :func:`average_matrices` is the cell-wise cross-model average (book methods §4).
* :func:`domain_mean_attribution` and :func:`layer_composition` build Fig 2B (book methods §10).

Matrices are DataFrames indexed by ``domain/task`` labels (rows = columns).
"""
from __future__ import annotations

import math
import warnings
from fractions import Fraction
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from modularity.science.tasks.schema import DOMAINS

__all__ = [
    "top_k_count",
    "top_positive_set",
    "overlap_matrix",
    "jaccard_matrix",
    "sinkhorn",
    "within_cross",
    "average_matrices",
    "domain_mean_attribution",
    "layer_composition",
    "composition_by_bin",
    "order_labels",
    "domain_of",
    "chance_overlap",
    "resolve_domains",
]


# --------------------------------------------------------------------------- labels


def domain_of(label: str) -> str:
    """The domain code of a ``domain/task`` label (the part before the first ``/``)."""
    if "/" not in label:
        raise ValueError(f"label {label!r} is not of the form 'domain/task' (e.g. 'MD/code_A')")
    return label.split("/", 1)[0]


def order_labels(labels: Sequence[str]) -> list[str]:
    """``labels`` sorted in the study's CSV order: domains MD, ToM, phys, Lan, then
    task keys alphabetically (plain string order, so ``code_A`` < ``code_conditional``).

    Unknown domain codes go last, sorted by code, so nothing is silently dropped.
    """
    rank = {domain: position for position, domain in enumerate(DOMAINS)}

    def key(label: str):
        domain, _, task = label.partition("/")
        return (rank.get(domain, len(DOMAINS)), domain, task)

    return sorted(labels, key=key)


def resolve_domains(
    matrix: pd.DataFrame, domains: Sequence[str] | Mapping[str, str] | None = None
) -> np.ndarray:
    """One domain code per row of ``matrix``, as a numpy string array of shape [n].

    ``domains`` may be None (read the prefix of each ``domain/task`` row label),
    a sequence aligned with the rows, or a mapping label → domain.
    """
    labels = list(matrix.index)
    if domains is None:
        return np.array([domain_of(str(label)) for label in labels])
    if isinstance(domains, Mapping):
        missing = [label for label in labels if label not in domains]
        if missing:
            raise ValueError(f"no domain given for labels {missing[:5]}")
        return np.array([domains[label] for label in labels])
    codes = np.asarray(list(domains)).astype(str)
    if codes.shape != (len(labels),):
        raise ValueError(
            f"domains has {codes.size} entries but the matrix has {len(labels)} rows; "
            "give one domain per row (or None to read them from 'domain/task' labels)"
        )
    return codes


def _check_square(matrix: pd.DataFrame) -> np.ndarray:
    """The values of a square, same-labelled matrix as float [n, n]."""
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square, got shape {matrix.shape}")
    if list(matrix.index) != list(matrix.columns):
        raise ValueError("matrix rows and columns must carry the same labels in the same order")
    return matrix.to_numpy(dtype=float)


# --------------------------------------------------------------------------- top-k sets


def top_k_count(n_neurons: int, pct: float) -> int:
    """k = max(1, ⌊N · pct / 100⌋) (book methods §3), with ``pct`` in percent (0.1 = 0.1%).

    The product is done in exact rational arithmetic on the decimal value of
    ``pct``, so float rounding cannot push an exact integer below itself
    (e.g. 1,310,720 × 5 / 100 = 65,536 exactly).
    """
    if n_neurons < 0:
        raise ValueError(f"n_neurons must be ≥ 0, got {n_neurons}")
    if not pct > 0:
        raise ValueError(f"pct must be > 0 (a percentage such as 0.1), got {pct}")
    exact = Fraction(int(n_neurons)) * Fraction(str(pct)) / 100
    return max(1, math.floor(exact))


def chance_overlap(n_neurons: int, pct: float) -> float:
    """The overlap |A ∩ B|/k expected of two independent uniformly random sets of size k
    (:func:`top_k_count`) among ``n_neurons``: k/N."""
    return top_k_count(n_neurons, pct) / n_neurons if n_neurons else float("nan")


def _as_numpy(scores) -> np.ndarray:
    """A float64 numpy copy of a torch tensor or array-like (torch is optional here)."""
    if hasattr(scores, "detach"):  # torch.Tensor without importing torch
        scores = scores.detach().to("cpu").double().numpy()
    return np.asarray(scores, dtype=float)


def top_positive_set(scores, pct: float) -> np.ndarray:
    """Flat indices of a task's top-``pct``% strictly positive neurons (book methods §4).

    ``scores``: attribution tensor or array of shape [L, d_ff] (any shape works;
    it is flattened in C order, so flat index = layer · d_ff + neuron).

    Only scores > 0 qualify (NaN never does), ranked in descending order across
    all layers at once; ties keep the lower flat index first (stable sort), so
    the result is deterministic. Returns at most k = :func:`top_k_count` indices
    (int64, in rank order); fewer if fewer scores are positive — the overlap
    denominator stays k.
    """
    flat = _as_numpy(scores).ravel()
    k = top_k_count(flat.size, pct)
    positive = np.flatnonzero(flat > 0)  # NaN > 0 is False
    order = np.argsort(-flat[positive], kind="stable")
    return positive[order[:k]].astype(np.int64)


def _pairwise_intersections(sets: Mapping[str, np.ndarray]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Labels, set sizes [n] and intersection sizes [n, n] of a dict of index sets."""
    labels = list(sets)
    unique_sets = [np.unique(np.asarray(sets[label], dtype=np.int64)) for label in labels]
    sizes = np.array([s.size for s in unique_sets], dtype=float)
    n = len(labels)
    intersections = np.zeros((n, n), dtype=float)
    for i in range(n):
        intersections[i, i] = sizes[i]
        for j in range(i + 1, n):
            common = np.intersect1d(unique_sets[i], unique_sets[j], assume_unique=True).size
            intersections[i, j] = intersections[j, i] = common
    return labels, sizes, intersections


def overlap_matrix(sets: Mapping[str, np.ndarray], k: int) -> pd.DataFrame:
    """The study's overlap O_ij = |S_i ∩ S_j| / k (book methods §4), shape [n, n].

    ``sets`` maps ``domain/task`` → flat neuron indices (from :func:`top_positive_set`);
    ``k`` is the common top-k size. An empty set (e.g. all-NaN attributions)
    gives a zero row and column, diagonal included, as in the study's GPT-2 matrix.
    Labels keep the dict's order; pass them through :func:`order_labels` first
    for the study's order.
    """
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    labels, _, intersections = _pairwise_intersections(sets)
    return pd.DataFrame(intersections / k, index=labels, columns=labels)


def jaccard_matrix(sets: Mapping[str, np.ndarray]) -> pd.DataFrame:
    """True Jaccard J_ij = |S_i ∩ S_j| / |S_i ∪ S_j|, shape [n, n]; 0 where both sets are empty.

    For equal-size sets J = O / (2 − O) with O from :func:`overlap_matrix`.
    """
    labels, sizes, intersections = _pairwise_intersections(sets)
    unions = sizes[:, None] + sizes[None, :] - intersections
    with np.errstate(invalid="ignore", divide="ignore"):
        jaccard = np.where(unions > 0, intersections / np.where(unions > 0, unions, 1), 0.0)
    return pd.DataFrame(jaccard, index=labels, columns=labels)


# --------------------------------------------------------------------------- Sinkhorn


def sinkhorn(
    overlap: pd.DataFrame,
    zero_diagonal: bool = True,
    tol: float = 1e-10,
    max_iter: int = 10_000,
) -> pd.DataFrame:
    """Doubly stochastic version of an overlap matrix (book methods §4, reconstruction).

    Sets the diagonal to 0 (by default), then Sinkhorn–Knopp: divide each row by
    its row sum, then each column by its column sum, until every row and column
    sum is within ``tol`` of 1. Rows/columns that are entirely zero (empty sets)
    stay zero and are ignored by the convergence check. A symmetric input gives
    a symmetric result. Warns (RuntimeWarning) if ``max_iter`` is reached.
    Shape [n, n] in, [n, n] out, same labels.
    """
    values = _check_square(overlap).copy()
    if np.isnan(values).any():
        raise ValueError("sinkhorn needs a matrix without NaN")
    if (values < 0).any():
        raise ValueError("sinkhorn needs a non-negative matrix")
    if zero_diagonal:
        np.fill_diagonal(values, 0.0)
    live_rows = values.sum(axis=1) > 0
    live_cols = values.sum(axis=0) > 0
    converged = False
    for _ in range(max_iter):
        row_sums = values.sum(axis=1)
        values = values / np.where(row_sums > 0, row_sums, 1.0)[:, None]
        col_sums = values.sum(axis=0)
        values = values / np.where(col_sums > 0, col_sums, 1.0)[None, :]
        # After the column step the column sums are 1; the row sums tell whether we are done.
        row_error = np.abs(values.sum(axis=1)[live_rows] - 1.0)
        col_error = np.abs(values.sum(axis=0)[live_cols] - 1.0)
        if max(row_error.max(initial=0.0), col_error.max(initial=0.0)) < tol:
            converged = True
            break
    if not converged:
        warnings.warn(
            f"sinkhorn did not converge to tol={tol} in {max_iter} iterations "
            "(the matrix may lack total support)",
            RuntimeWarning,
            stacklevel=2,
        )
    return pd.DataFrame(values, index=overlap.index, columns=overlap.columns)


# --------------------------------------------------------------------------- summaries


def within_cross(
    matrix: pd.DataFrame, domains: Sequence[str] | Mapping[str, str] | None = None
) -> dict:
    """Within- vs cross-domain means of a square matrix (book methods §4, §7).

    within = mean of cells (i, j), i ≠ j, same domain; cross = mean of cells in
    different domains. Both ordered directions count (so directed ablation
    matrices work too); the diagonal is always excluded; NaN cells are skipped.
    ``domains``: see :func:`resolve_domains`. Returns ``{within, cross, ratio}``
    with ratio = within / cross (NaN when cross is 0).
    """
    values = _check_square(matrix)
    codes = resolve_domains(matrix, domains)
    n = values.shape[0]
    usable = np.isfinite(values) & ~np.eye(n, dtype=bool)
    same = codes[:, None] == codes[None, :]
    within_cells = values[usable & same]
    cross_cells = values[usable & ~same]
    within = float(within_cells.mean()) if within_cells.size else float("nan")
    cross = float(cross_cells.mean()) if cross_cells.size else float("nan")
    ratio = within / cross if cross > 0 else float("nan")
    return {"within": within, "cross": cross, "ratio": ratio}


def average_matrices(matrices: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Cell-wise cross-model average (book methods §4), shape [n_union, n_union].

    The task set is the union of all matrices' labels in the study's order
    (:func:`order_labels`). Each cell is the mean over the matrices that contain
    **both** tasks (presence is decided by the labels, so a NaN inside a model's
    matrix propagates rather than being skipped). Cells no matrix covers are 0.
    Each input must be square with the same labels on rows and columns.
    """
    if not matrices:
        raise ValueError("average_matrices needs at least one matrix")
    union: set[str] = set()
    for matrix in matrices:
        _check_square(matrix)
        union.update(matrix.index)
    labels = order_labels(list(union))
    total = np.zeros((len(labels), len(labels)))
    count = np.zeros((len(labels), len(labels)))
    for matrix in matrices:
        aligned = matrix.reindex(index=labels, columns=labels)
        present = pd.Index(labels).isin(matrix.index)
        both = present[:, None] & present[None, :]
        total[both] += aligned.to_numpy(dtype=float)[both]
        count[both] += 1
    averaged = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return pd.DataFrame(averaged, index=labels, columns=labels)


# --------------------------------------------------------------------------- Fig 2B (book methods §10)


def domain_mean_attribution(
    task_scores: Mapping[str, object], domains: Mapping[str, str] | None = None
) -> dict[str, np.ndarray]:
    """Element-wise mean of the raw attribution tensors of each domain's tasks (book methods §10 step 1).

    ``task_scores``: ``domain/task`` → tensor/array [L, d_ff] (only tasks that
    passed the filter should be given). ``domains``: optional label → domain
    mapping (default: the label prefix). Returns domain → float64 array [L, d_ff],
    domains in the study's order.
    """
    grouped: dict[str, list[np.ndarray]] = {}
    for label, scores in task_scores.items():
        domain = domains[label] if domains is not None else domain_of(label)
        grouped.setdefault(domain, []).append(_as_numpy(scores))
    result = {}
    for domain in sorted(grouped, key=lambda d: (DOMAINS.index(d) if d in DOMAINS else len(DOMAINS), d)):
        shapes = {array.shape for array in grouped[domain]}
        if len(shapes) != 1:
            raise ValueError(f"domain {domain}: attribution tensors have different shapes {sorted(shapes)}")
        result[domain] = np.mean(np.stack(grouped[domain]), axis=0)
    return result


#: Fig 2B category order (stacking order of the bars).
COMPOSITION_CATEGORIES: tuple[str, ...] = ("Lan", "MD", "phys", "ToM", "shared")


def layer_composition(
    domain_maps: Mapping[str, object], pct: float = 0.1, n_bins: int = 25
) -> pd.DataFrame:
    """Per-layer counts of domain-specific and shared neurons for ONE model (book methods §10 steps 2–4).

    ``domain_maps``: domain → domain-mean attribution [L, d_ff] (from
    :func:`domain_mean_attribution`). For each domain the set is
    {|value| ≥ the (100 − pct)th percentile of |values|} (numpy's default linear
    interpolation over all L·d_ff entries; **absolute** values, unlike the top-k sets of book methods §4).
    A neuron in exactly one set counts for that domain, in ≥ 2 sets for "shared".

    Returns one row per layer (L rows) with columns ``layer``, ``bin``
    (= min(⌊ℓ/(L−1)·n_bins⌋, n_bins−1); 0 when L = 1) and one count column per
    category in :data:`COMPOSITION_CATEGORIES` (domains not given count 0).
    Combine models with :func:`composition_by_bin`.
    """
    if not domain_maps:
        raise ValueError("layer_composition needs at least one domain map")
    arrays = {domain: np.abs(_as_numpy(values)) for domain, values in domain_maps.items()}
    shapes = {array.shape for array in arrays.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise ValueError(f"domain maps must all have the same shape [L, d_ff], got {sorted(shapes)}")
    n_layers = next(iter(shapes))[0]
    membership = {}
    for domain, magnitudes in arrays.items():
        threshold = np.percentile(magnitudes, 100.0 - pct)
        membership[domain] = magnitudes >= threshold
    n_sets = np.sum(np.stack(list(membership.values())), axis=0)  # [L, d_ff]
    rows = []
    for layer in range(n_layers):
        position = layer / (n_layers - 1) if n_layers > 1 else 0.0
        row = {"layer": layer, "bin": min(int(np.floor(position * n_bins)), n_bins - 1)}
        for category in COMPOSITION_CATEGORIES:
            row[category] = 0
        for domain, in_set in membership.items():
            row[domain] = int(np.sum(in_set[layer] & (n_sets[layer] == 1)))
        row["shared"] = int(np.sum(n_sets[layer] >= 2))
        rows.append(row)
    return pd.DataFrame(rows)


def composition_by_bin(per_model: Sequence[pd.DataFrame], n_bins: int = 25) -> pd.DataFrame:
    """Average neurons per layer in each depth bin over several models (book methods §10, last step).

    ``per_model``: outputs of :func:`layer_composition`. Each bin's summed counts
    are divided by its number of (model, layer) contributions. Long format (what
    :func:`modularity.showing.charts.layer_composition` reads): one row per (bin,
    category) for the bins that some layer reached, columns ``bin``,
    ``category`` (:data:`COMPOSITION_CATEGORIES` order), ``count`` (average per
    layer) and ``n_layers`` (contributions). The log10(count + 1) heights are
    the chart's job.
    """
    stacked = pd.concat(list(per_model), ignore_index=True)
    if (stacked["bin"] >= n_bins).any():
        raise ValueError(f"layer tables use bins beyond n_bins={n_bins}")
    categories = [c for c in COMPOSITION_CATEGORIES if c in stacked.columns]
    categories += sorted(set(stacked.columns) - set(categories) - {"layer", "bin"})
    grouped = stacked.groupby("bin")
    averaged = grouped[categories].sum().div(grouped.size(), axis=0)
    long = averaged.rename_axis("bin").reset_index().melt(id_vars="bin", var_name="category", value_name="count")
    long["n_layers"] = long["bin"].map(grouped.size()).astype(int)
    long["category"] = pd.Categorical(long["category"], categories=categories, ordered=True)
    long = long.sort_values(["bin", "category"]).reset_index(drop=True)
    long["category"] = long["category"].astype(str)
    return long
