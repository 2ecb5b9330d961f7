"""The localizer: units selected by a contrast of two stimulus conditions, as neuroscience selects
a network (AlKhamissi et al., 2024: Welch's t-test on unit activations, top units kept).

Everything here is pure computation (texts, tensors, arrays and DataFrames in and out):

* :func:`mean_activations` — each MLP neuron's activation (the input of the down projection, the
  neuron site attribution scores, :mod:`modularity.science.sites`) averaged over a text's own tokens;
* :func:`welch_t` — the per-neuron Welch t-statistic of two conditions (``scipy.stats.ttest_ind``
  with ``equal_var=False``);
* :func:`localized_set` — the top-k% neurons by t, with the k of the attribution sets;
* :func:`set_task_matrix`, :func:`within_across`, :func:`own_other_bars` — a [domain set × task]
  matrix (overlap with the tasks' attribution sets, or the accuracy drop of ablating the set on
  each task), its own-domain (within) vs other-domain (across) comparison with a label-permutation
  p, and Fig 2C's three bars per domain;
* :func:`agreement` — whether the localizer and attribution both find own-domain > other-domain.
"""
from __future__ import annotations

import warnings
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from . import passes
from .batches import length_sorted_batches, make_batch, pad_id_of
from .overlap import domain_of, top_positive_set
from .scoring import encode_prompt
from .stats import bar_table, holm, permutation_indices, permutation_p
from .tasks.schema import DOMAINS

__all__ = ["pooling_masks", "mean_activations", "welch_t", "localized_set", "set_task_matrix", "within_across",
           "own_other_bars", "agreement", "ALPHA"]

#: Level at which a comparison counts as showing own-domain > other-domain in :func:`agreement`.
ALPHA = 0.05


# --------------------------------------------------------------------------- activations


def pooling_masks(tokenizer, texts: Sequence[str], bos: str = "model") -> tuple[list[list[int]], list[np.ndarray]]:
    """Token ids of each text (:func:`modularity.science.scoring.encode_prompt`, with the model's BOS when
    ``bos="model"``) and a bool mask [len(ids)] of the positions that are pooled: the text's own
    tokens, not the special tokens the tokenizer adds. A BOS position carries the same large
    activations in every text, so averaging it in would make a text's mean depend on its length."""
    ids, masks = [], []
    special = set(tokenizer.all_special_ids)
    for text in texts:
        tokens = encode_prompt(tokenizer, text, bos)
        ids.append(tokens)
        masks.append(np.array([token not in special for token in tokens]))
    return ids, masks


@torch.no_grad()
def mean_activations(loaded, texts: Sequence[str], bos: str = "model", batch_size: int = 16) -> torch.Tensor:
    """Each MLP neuron's activation averaged over each text's tokens: float32 [n_texts, L · d_ff] (CPU).

    Column ``layer · d_ff + i`` is neuron i of layer ``layer`` (the flat index of attribution's
    [L, d_ff] tensors, :func:`modularity.science.sites.split_flat`). The neuron is the input of the layer's
    MLP down projection, the site attribution scores; a text's value is its mean over the text's
    own tokens (:func:`pooling_masks`: special tokens such as BOS and padding excluded), as
    AlKhamissi et al. averaged over tokens. Texts run right-padded, in batches of similar length,
    with no chat template; the mean is taken in float64.
    """
    ids, masks = pooling_masks(loaded.tokenizer, texts, bos)
    if any(not m.any() for m in masks):
        raise ValueError("a text has no token of its own to pool (empty text?)")
    pad_id = pad_id_of(loaded.tokenizer)
    out = torch.zeros(len(texts), loaded.n_layers, loaded.d_ff, dtype=torch.float32)
    for rows in length_sorted_batches([len(x) for x in ids], batch_size):
        # No answers: a batch of the texts alone, right-padded (scoring's batch layout).
        batch = make_batch([ids[r] for r in rows], [[] for _ in rows], pad_id).to(loaded.device)
        pooled = torch.zeros(len(rows), batch.input_ids.shape[1], dtype=torch.float64, device=loaded.device)
        for position, row in enumerate(rows):
            pooled[position, : len(masks[row])] = torch.as_tensor(masks[row], dtype=torch.float64)
        weights = pooled / pooled.sum(1, keepdim=True)  # [B, S], each row sums to 1 over its pooled tokens
        recorded = passes.record(loaded, batch)["neurons"]  # on the run's backend
        for layer, values in recorded.items():  # values [B, S, d_ff]
            out[rows, layer] = torch.einsum("bs,bsf->bf", weights, values.double()).float().cpu()
    return out.reshape(len(texts), -1)


# --------------------------------------------------------------------------- t and sets


def welch_t(localized, control) -> np.ndarray:
    """Per-neuron Welch t-statistic of ``localized`` [n_a, N] against ``control`` [n_b, N] → float64 [N].

    ``scipy.stats.ttest_ind(localized, control, axis=0, equal_var=False)``: positive where a neuron
    is more active in the localized condition. A neuron with no variance in either condition
    and equal means gets t = 0 (scipy gives NaN: 0/0), not NaN, so it is never selected;
    with no variance and different means t is ±inf (a perfect separation) and stays so.
    """
    from scipy.stats import ttest_ind

    a = localized.detach().double().cpu().numpy() if hasattr(localized, "detach") else np.asarray(localized, float)
    b = control.detach().double().cpu().numpy() if hasattr(control, "detach") else np.asarray(control, float)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"need [n_a, N] and [n_b, N] activations, got {a.shape} and {b.shape}")
    if a.shape[0] < 2 or b.shape[0] < 2:
        raise ValueError("Welch's t needs at least two texts per condition")
    # Constant neurons make scipy warn ("precision loss", 0/0); they are handled just below.
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        t = ttest_ind(a, b, axis=0, equal_var=False).statistic
    return np.nan_to_num(np.asarray(t, dtype=float), nan=0.0, posinf=np.inf, neginf=-np.inf)


def localized_set(t, pct: float) -> np.ndarray:
    """Flat indices of the top-``pct``% neurons by t (positive t only), int64 in rank order.

    The same rule and the same k = max(1, ⌊N · pct/100⌋) as a task's attribution set
    (:func:`modularity.science.overlap.top_positive_set`), so the two selections have equal sizes.
    """
    return top_positive_set(np.asarray(t, dtype=float), pct)


# --------------------------------------------------------------------------- set × task matrices


def set_task_matrix(sets: Mapping[str, np.ndarray], task_sets: Mapping[str, np.ndarray], k: int) -> pd.DataFrame:
    """|L_d ∩ A_t| / k for every localizer set L_d (rows, domain codes) and task set A_t (columns,
    ``domain/task`` labels): the study's overlap measure across the two selections, [D, n_tasks]."""
    if k < 1:
        raise ValueError(f"k must be ≥ 1, got {k}")
    values = np.array([[np.intersect1d(np.asarray(s), np.asarray(a)).size / k for a in task_sets.values()]
                       for s in sets.values()], dtype=float).reshape(len(sets), len(task_sets))
    return pd.DataFrame(values, index=list(sets), columns=list(task_sets))


def _task_domains(matrix: pd.DataFrame) -> np.ndarray:
    return np.array([domain_of(str(label)) for label in matrix.columns])


def within_across(matrix: pd.DataFrame, n_permutations: int = 10_000, seed: int = 42) -> tuple[pd.DataFrame, dict]:
    """Own-domain (within) vs other-domain (across) cells of a [domain set × task] matrix, with p.

    Rows are localizer domains (codes), columns ``domain/task`` labels. A cell is *within* when the
    task's domain is the row's. Per domain d: ``within`` = mean of row d over d's tasks,
    ``across`` = mean over the other tasks, ``delta`` = within − across, ``ratio`` =
    within/across; overall: the mean of every within cell against every across cell. Null: the
    task → domain labels shuffled ``n_permutations`` times
    (:func:`modularity.science.stats.permutation_indices`, the study's stream; domain sizes preserved),
    one-sided p = (#{Δ_null ≥ Δ} + 1)/(n + 1); ``p_holm`` corrects the per-domain p across the
    domains (Holm). NaN cells are skipped; a domain without tasks gets NaN.
    Returns (per-domain table: domain, n_tasks, within, across, ratio, delta, p, p_holm; overall dict).
    """
    values = matrix.to_numpy(dtype=float)
    codes = _task_domains(matrix)
    rows = np.asarray(matrix.index).astype(str)
    finite = np.isfinite(values)
    cells = np.where(finite, values, 0.0)
    labellings = np.vstack([codes[None, :], codes[permutation_indices(len(codes), n_permutations, seed)]])
    own = rows[None, :, None] == labellings[:, None, :]  # [1 + P, D, n]
    own_sum, own_n = (own * cells).sum(2), (own & finite).sum(2)
    other_sum, other_n = (~own * cells).sum(2), (~own & finite).sum(2)
    with np.errstate(invalid="ignore", divide="ignore"):
        own_mean, other_mean = own_sum / own_n, other_sum / other_n  # [1 + P, D]
        all_own = own_sum.sum(1) / own_n.sum(1)
        all_other = other_sum.sum(1) / other_n.sum(1)

    def p_value(delta: np.ndarray) -> float:
        # Observed (row 0) and null through the same code path: a draw reproducing the partition ties exactly.
        return permutation_p(delta[1:], delta[0], scale=float(np.abs(cells).max(initial=0.0)))

    table = pd.DataFrame({
        "domain": rows,
        "n_tasks": [int((codes == d).sum()) for d in rows],
        "within": own_mean[0], "across": other_mean[0],
        "ratio": np.where(other_mean[0] > 0, own_mean[0] / np.where(other_mean[0] > 0, other_mean[0], 1), np.nan),
        "delta": own_mean[0] - other_mean[0],
        "p": [p_value(own_mean[:, d] - other_mean[:, d]) for d in range(len(rows))],
    })
    table["p_holm"] = holm(table.p)
    overall = {"within": float(all_own[0]), "across": float(all_other[0]),
               "ratio": float(all_own[0] / all_other[0]) if all_other[0] > 0 else float("nan"),
               "delta": float(all_own[0] - all_other[0]), "p": p_value(all_own - all_other),
               "n_tasks": int(len(codes)), "n_permutations": int(n_permutations)}
    return table, overall


def own_other_bars(matrix: pd.DataFrame) -> pd.DataFrame:
    """Fig 2C's three bars per domain D on a [domain set × task] matrix, long format.

    ``within``: D's set on D's tasks; ``D→others``: D's set on the other domains' tasks;
    ``others→D``: the other domains' sets on D's tasks. Columns domain, kind, mean, sem
    (SD with ddof = 1 over √n; NaN when n < 2), n — :func:`modularity.showing.charts.domain_bars` reads it.
    """
    codes, rows = _task_domains(matrix), np.asarray(matrix.index).astype(str)
    masks = {}
    for domain in [d for d in DOMAINS if d in set(rows) | set(codes)]:
        row_in, column_in = rows == domain, codes == domain
        masks[domain] = {"within": row_in[:, None] & column_in[None, :],
                         "D→others": row_in[:, None] & ~column_in[None, :],
                         "others→D": ~row_in[:, None] & column_in[None, :]}
    return bar_table(matrix.to_numpy(dtype=float), masks)


# --------------------------------------------------------------------------- agreement


def _verdict(within: float, across: float, p: float, alpha: float) -> str:
    if not (np.isfinite(within) and np.isfinite(across) and np.isfinite(p)):
        return "n/a"
    return "own > other" if within > across and p < alpha else "not shown"


def agreement(localizer: Mapping[str, pd.DataFrame], attribution: Mapping[str, pd.DataFrame],
              alpha: float = ALPHA) -> pd.DataFrame:
    """Per (measure, domain): does each selection favour its own domain, and do the two agree?

    ``localizer[measure]``: :func:`within_across`'s table (domain, within, across, p) of the
    localizer sets; ``attribution[measure]``: :func:`modularity.science.stats.per_domain_modularity`'s
    table (domain, within, cross, p) of the attribution sets for the same measure (absent or
    empty: not available). A side *shows* own > other when its own-domain mean exceeds its
    other-domain mean at one-sided permutation p < ``alpha`` (uncorrected); ``agree`` is True
    when both sides give the same verdict, None when either is n/a. Columns: measure, domain,
    localizer_within, localizer_across, localizer_p, localizer, attribution_within,
    attribution_cross, attribution_p, attribution, agree.
    """
    rows = []
    for measure, table in localizer.items():
        theirs = attribution.get(measure)
        theirs = (theirs.set_index("domain") if theirs is not None and len(theirs)
                  else pd.DataFrame(columns=["within", "cross", "p"]))
        for row in table.itertuples():
            other = theirs.loc[row.domain] if row.domain in theirs.index else None
            a_within, a_cross, a_p = ((float(other["within"]), float(other["cross"]), float(other["p"]))
                                      if other is not None else (np.nan, np.nan, np.nan))
            mine, their_verdict = _verdict(row.within, row.across, row.p, alpha), _verdict(a_within, a_cross, a_p, alpha)
            rows.append({"measure": measure, "domain": row.domain, "localizer_within": row.within,
                         "localizer_across": row.across, "localizer_p": row.p, "localizer": mine,
                         "attribution_within": a_within, "attribution_cross": a_cross, "attribution_p": a_p,
                         "attribution": their_verdict,
                         "agree": None if "n/a" in (mine, their_verdict) else mine == their_verdict})
    return pd.DataFrame(rows)
