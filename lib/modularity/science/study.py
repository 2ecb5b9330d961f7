"""The study's released results, read from the vendored copy in ``data/external/llm_modularity``.

The study (Pengrui-Han/LLM_Modularity, MIT) ships, per model, its task × task overlap matrices,
its ablation matrix and each task's evaluation figures (``baselines.json``). This module reads
them into the same shapes the pipeline produces for a run, so every statistic of
:mod:`modularity.science.stats` applies to the study's models and to our runs alike, and a run can be
placed beside the six study models (:func:`beside_study`, :func:`tau_against_study`).

Nothing here reads the study's task files, only its results; see ``tasks.study_io`` for those.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import yaml

from modularity.science.matrix_csv import read_matrix_csv
from modularity.science.overlap import average_matrices, resolve_domains
from modularity.science.stats import STUDY_SEED, ari_permutation, kendall_summary, kendall_tau_pairs, testable, within_cross_permutation
from modularity.base.files import REPO_ROOT
from modularity.science.tasks.schema import DOMAINS

__all__ = [
    "STUDY_ROOT",
    "StudyModel",
    "STUDY_MODELS",
    "CONTROL_MODEL",
    "PCTS",
    "overlap_matrix",
    "overlap_matrices",
    "ablation_matrix",
    "ablation_matrices",
    "average_ablation",
    "baselines",
    "claims",
    "model_statistics",
    "beside_study",
    "tau_against_study",
]

#: The vendored copy of the study's ``results/`` folder and its LICENSE (see its README.md).
STUDY_ROOT = REPO_ROOT / "data" / "external" / "llm_modularity"

#: The stated numbers of the paper, transcribed with their sources (inputs, not results).
CLAIMS_FILE = REPO_ROOT / "data" / "study_claims.yaml"


@dataclass(frozen=True)
class StudyModel:
    """One of the study's models: its results folder and the name the paper uses."""

    folder: str
    name: str
    hf_id: str


#: The six models of the paper, in the order of its figures (SI Fig 1).
STUDY_MODELS: tuple[StudyModel, ...] = (
    StudyModel("mistralai_Mistral-Small-24B-Instruct-2501", "Mistral-Small-24B", "mistralai/Mistral-Small-24B-Instruct-2501"),
    StudyModel("Qwen_Qwen2-5-32B-Instruct", "Qwen2.5-32B", "Qwen/Qwen2.5-32B-Instruct"),
    StudyModel("allenai_OLMo-2-0325-32B-Instruct", "OLMo-2-32B", "allenai/OLMo-2-0325-32B-Instruct"),
    StudyModel("meta-llama_Meta-Llama-3-1-70B-Instruct", "Llama-3.1-70B", "meta-llama/Meta-Llama-3.1-70B-Instruct"),
    StudyModel("Qwen_Qwen2-5-72B-Instruct", "Qwen2.5-72B", "Qwen/Qwen2.5-72B-Instruct"),
    StudyModel("mistralai_Mistral-Large-Instruct-2407", "Mistral-Large-123B", "mistralai/Mistral-Large-Instruct-2407"),
)

#: The study's small control, run without the inclusion filter (book methods §3); never averaged.
CONTROL_MODEL = StudyModel("openai-community_gpt2", "GPT-2", "openai-community/gpt2")

#: Top-k% thresholds the study ships overlap matrices for.
PCTS: tuple[float, ...] = (0.05, 0.1, 1.0, 5.0)


def _model(name: str) -> StudyModel:
    for model in (*STUDY_MODELS, CONTROL_MODEL):
        if name in (model.name, model.folder):
            return model
    known = ", ".join(m.name for m in (*STUDY_MODELS, CONTROL_MODEL))
    raise KeyError(f"{name!r} is not one of the study's models ({known})")


def _results(root: Path | None) -> Path:
    results = Path(root or STUDY_ROOT) / "results"
    if not results.is_dir():
        raise FileNotFoundError(f"{results}: the study's results are missing; they are vendored under "
                                "data/external/llm_modularity/results in this repository")
    return results


def overlap_matrix(model: str, pct: float = 0.1, doubly_stochastic: bool = False,
                   root: Path | None = None) -> pd.DataFrame:
    """One model's (or ``"average"``'s) top-``pct``% overlap matrix [n, n] as the study shipped it.

    ``doubly_stochastic`` reads the Sinkhorn-normalised version, which the study ships only for
    some (model, pct) pairs (book methods §4); a missing file raises FileNotFoundError.
    """
    folder = "average" if model == "average" else _model(model).folder
    suffix = "_doubly_stochastic" if doubly_stochastic else ""
    return read_matrix_csv(_overlap_path(_results(root), folder, pct, suffix))


def _overlap_path(results: Path, folder: str, pct: float, suffix: str) -> Path:
    # The study writes 0.05, 0.1, 1.0, 5.0: one decimal at least, trailing zeros kept for whole numbers.
    text = f"{pct:.2f}".rstrip("0") if pct < 1 else f"{pct:.1f}"
    return results / folder / "overlap" / f"positive_{text}pct_overlap{suffix}.csv"


def overlap_matrices(pct: float = 0.1, root: Path | None = None) -> dict[str, pd.DataFrame]:
    """``{paper name: overlap matrix}`` of the six models at ``pct`` (figure order)."""
    return {model.name: overlap_matrix(model.name, pct, root=root) for model in STUDY_MODELS}


def ablation_matrix(model: str, keep_legacy: bool = False, root: Path | None = None) -> pd.DataFrame:
    """One model's directed ablation matrix [sources, targets] (accuracy drop, book methods §7).

    Cut to the labels present as both row and column. ``keep_legacy`` keeps ``phys/material`` and
    ``phys/spatial``, which the shipped files still hold and the study's SI Table 1 and ablation
    τ used (book methods, difference 4); by default they are dropped, as the study's averaging did.
    """
    path = _results(root) / _model(model).folder / "ablation_analysis" / "positive_0.1pct_corrupted_accuracy.csv"
    return read_matrix_csv(path, drop_legacy=not keep_legacy, common_labels=True)


def ablation_matrices(keep_legacy: bool = False, root: Path | None = None) -> dict[str, pd.DataFrame]:
    """``{paper name: ablation matrix}`` of the six models (figure order)."""
    return {model.name: ablation_matrix(model.name, keep_legacy, root) for model in STUDY_MODELS}


def average_ablation(root: Path | None = None) -> pd.DataFrame:
    """The six-model average ablation matrix, which the study used but did not ship (book methods, difference 5).

    Regenerated as the study's averaging script does: legacy tasks removed, each cell the mean
    over the models that have both tasks (:func:`modularity.science.overlap.average_matrices`).
    """
    return average_matrices(list(ablation_matrices(keep_legacy=False, root=root).values()))


def task_surface(root: Path | None = None) -> pd.DataFrame:
    """The surface of the study's 46 tasks (:func:`modularity.science.surface.describe_tasks` of its
    items), one row per ``domain/task`` label, as ``scripts/derive_study_surface.py`` derived it from
    the study's files (the items themselves are not redistributed)."""
    path = (root or STUDY_ROOT) / "surface" / "task_surface.csv"
    if not path.exists():
        raise FileNotFoundError(f"{path}: the study's task surface is missing; derive it with "
                                "`python scripts/derive_study_surface.py PATH/TO/LLM_Modularity`")
    return pd.read_csv(path, index_col="task", keep_default_na=False)


def baselines(root: Path | None = None, include_control: bool = False) -> pd.DataFrame:
    """Every ``baselines.json`` as one table: one row per (model, task).

    Columns: model (paper name), label (``domain/task``), domain, task, n_total, n_misaligned,
    n_aligned, clean_accuracy, corrupted_accuracy, both_correct_accuracy, n_both_correct,
    passes (both-correct accuracy ≥ 0.60, the study's filter) and ``format``: "attribution" for
    the files written by the attribution script (accuracies over aligned items), "run_eval" for
    the one file written by the evaluation script in another format (book methods, difference 6).
    """
    rows = []
    results = _results(root)
    for model in (*STUDY_MODELS, *((CONTROL_MODEL,) if include_control else ())):
        for path in sorted((results / model.folder).glob("*/*/baselines.json")):
            domain, task = path.parent.parent.name, path.parent.name
            if domain not in DOMAINS:
                continue
            rows.append({"model": model.name, "label": f"{domain}/{task}", "domain": domain, "task": task,
                         **_baseline_row(json.loads(path.read_text()))})
    table = pd.DataFrame(rows)
    table["passes"] = table.both_correct_accuracy >= 0.60
    return table


def _baseline_row(data: dict) -> dict:
    """The figures of one ``baselines.json`` in the attribution script's sense, either format."""
    n_total = int(data["n_total"])
    if "n_after_alignment_filter" in data:
        return {"n_total": n_total, "n_misaligned": int(data["n_token_misaligned"]),
                "n_aligned": int(data["n_after_alignment_filter"]),
                "clean_accuracy": float(data["clean_accuracy"]),
                "corrupted_accuracy": float(data["corrupted_accuracy"]),
                "both_correct_accuracy": float(data["both_correct_accuracy"]),
                "n_both_correct": int(data["n_both_correct"]), "format": "attribution"}
    # The evaluation script's format: no alignment filter (all items count) and a corrupted
    # accuracy in the opposite sense (the corrupted prompt still prefers the clean answer).
    return {"n_total": n_total, "n_misaligned": 0, "n_aligned": n_total,
            "clean_accuracy": float(data["clean_accuracy"]),
            "corrupted_accuracy": 1.0 - float(data["corrupted_accuracy"]),
            "both_correct_accuracy": float(data["both_correct_pct"]),
            "n_both_correct": int(data["n_both_correct"]), "format": "run_eval"}


def claims(path: Path | None = None) -> pd.DataFrame:
    """The paper's stated numbers (``data/study_claims.yaml``): one row per claim.

    Columns: key, quantity, stated (the number as stated), display (how it is written), source.
    These are the inputs the book checks; every computed number comes from the result files.
    """
    entries = yaml.safe_load(Path(path or CLAIMS_FILE).read_text())
    return pd.DataFrame(entries)


def model_statistics(overlap: pd.DataFrame, ablation: pd.DataFrame | None, *, n_permutations: int = 10_000,
                     seed: int = STUDY_SEED, knn: int = 5) -> dict:
    """The three numbers a run is placed by: overlap ratio, ablation ratio, ARI (one model).

    ``overlap`` [n, n] at 0.1%; ``ablation`` [n', n'] directed (or None). The ARI uses the
    study's clustering cut into one cluster per domain present (4 for the study), with ``knn``
    lowered to n − 1 for very small task sets. Returns overlap_within, overlap_cross,
    overlap_ratio, overlap_p, ablation_within, ablation_cross, ablation_ratio, ablation_p, ari,
    ari_p, n_tasks_overlap, n_tasks_ablation (NaN where not computable).
    """
    def test(matrix):
        return within_cross_permutation(matrix, n_permutations=n_permutations, seed=seed) \
            if matrix is not None and testable(matrix) else None

    ari = None
    if testable(overlap):
        n_domains = len(set(resolve_domains(overlap)))
        ari = ari_permutation(overlap, n_permutations=n_permutations, seed=seed,
                              knn=min(knn, len(overlap) - 1), n_clusters=n_domains)
    return statistics_row(test(overlap), test(ablation), ari, len(overlap), 0 if ablation is None else len(ablation))


def statistics_row(overlap_test: dict | None, ablation_test: dict | None, ari: dict | None,
                   n_tasks_overlap: int, n_tasks_ablation: int) -> dict:
    """:func:`model_statistics`'s row from tests already run (None: not computable, NaN).

    ``overlap_test`` / ``ablation_test``: :func:`~modularity.science.stats.within_cross_permutation`
    results; ``ari``: :func:`~modularity.science.stats.ari_permutation`'s.
    """
    nan = float("nan")
    row = {"n_tasks_overlap": n_tasks_overlap, "n_tasks_ablation": n_tasks_ablation}
    for prefix, result in (("overlap", overlap_test), ("ablation", ablation_test)):
        row.update({f"{prefix}_{key}": result[key] if result is not None else nan
                    for key in ("within", "cross", "ratio", "p")})
    row.update({"ari": ari["ari"] if ari is not None else nan, "ari_p": ari["p"] if ari is not None else nan})
    return row


def beside_study(runs: Mapping[str, Mapping[str, float]], *, n_permutations: int = 10_000,
                 root: Path | None = None) -> pd.DataFrame:
    """Long table placing runs beside the six study models: one row per (model, measure).

    ``runs``: ``{run name: model_statistics(...)}`` of the runs to place. The study's models get
    the same statistics from their shipped 0.1% overlap and ablation matrices (legacy tasks
    dropped). Columns: model, source ("study" or "run"), measure (overlap ratio, ablation ratio,
    ARI), value, p, n_tasks.
    """
    overlaps, ablations = overlap_matrices(0.1, root), ablation_matrices(False, root)
    rows = []
    everything = {**{name: (model_statistics(overlaps[name], ablations[name], n_permutations=n_permutations), "study")
                     for name in overlaps},
                  **{name: (statistics, "run") for name, statistics in runs.items()}}
    for name, (statistics, source) in everything.items():
        for measure, value, p, n in (
            ("overlap ratio", "overlap_ratio", "overlap_p", "n_tasks_overlap"),
            ("ablation ratio", "ablation_ratio", "ablation_p", "n_tasks_ablation"),
            ("ARI", "ari", "ari_p", "n_tasks_overlap"),
        ):
            rows.append({"model": name, "source": source, "measure": measure, "value": statistics[value],
                         "p": statistics[p], "n_tasks": statistics[n]})
    return pd.DataFrame(rows)


def tau_against_study(matrix: pd.DataFrame, kind: str, name: str = "run", root: Path | None = None,
                      min_tasks: int = 3) -> pd.DataFrame:
    """Kendall τ-b between one run's matrix and each study model's, on their common tasks.

    ``kind``: "overlap" (0.1%, upper triangle) or "ablation" (directed off-diagonal cells, legacy
    tasks dropped). Each pair uses the tasks common to the two matrices (book methods §8's "pair"
    convention; the study's own τ used the tasks common to all six). Rows: study_model, tau, p,
    n_tasks, n_values; τ and p are NaN when fewer than ``min_tasks`` tasks are shared.
    """
    if kind not in ("overlap", "ablation"):
        raise ValueError(f"kind must be 'overlap' or 'ablation', got {kind!r}")
    study_matrices = overlap_matrices(0.1, root) if kind == "overlap" else ablation_matrices(False, root)
    mode = "upper" if kind == "overlap" else "directed"
    rows = []
    for study_name, study_matrix in study_matrices.items():
        common = sorted(set(matrix.index) & set(study_matrix.index))
        if len(common) < min_tasks:
            rows.append({"study_model": study_name, "tau": np.nan, "p": np.nan, "n_tasks": len(common), "n_values": 0})
            continue
        pair = kendall_tau_pairs({name: matrix, study_name: study_matrix}, mode=mode, common="pair").iloc[0]
        rows.append({"study_model": study_name, "tau": pair.tau, "p": pair.p, "n_tasks": int(pair.n_tasks),
                     "n_values": int(pair.n_values)})
    return pd.DataFrame(rows)



def headline_numbers(n_permutations: int = 10_000, root: Path | None = None) -> dict[str, float]:
    """The study's headline statistics recomputed from its files, keyed like :func:`claims`.

    Overlap: the shipped six-model average at 0.1% (within/cross permutation test, ARI of the
    kNN-5 average-linkage clustering). Ablation: the regenerated six-model average
    (:func:`average_ablation`). Kendall τ: overlap on the upper triangle of the tasks common to
    all six (SD with ddof 1, as the study's sweep script); ablation on all directed cells of the
    tasks common to all six *with* the legacy tasks, as the study's script (SD with ddof 0).
    """
    average = overlap_matrix("average", 0.1, root=root)
    overlap = within_cross_permutation(average, n_permutations=n_permutations)
    ari = ari_permutation(average, n_permutations=n_permutations)
    ablation = within_cross_permutation(average_ablation(root), n_permutations=n_permutations)
    overlap_tau = kendall_summary(kendall_tau_pairs(overlap_matrices(0.1, root), mode="upper"), ddof=1)
    ablation_tau = kendall_summary(kendall_tau_pairs(ablation_matrices(True, root), mode="directed"), ddof=0)
    return {
        **{f"overlap_{key}": overlap[key] for key in ("within", "cross", "ratio", "p")},
        "ari": ari["ari"], "ari_p": ari["p"],
        "overlap_tau_mean": overlap_tau["tau_mean"], "overlap_tau_sd": overlap_tau["tau_sd"],
        **{f"ablation_{key}": ablation[key] for key in ("within", "cross", "ratio", "p")},
        "ablation_tau_mean": ablation_tau["tau_mean"], "ablation_tau_sd": ablation_tau["tau_sd"],
    }


def compare_claims(stated: pd.DataFrame, computed: Mapping[str, float]) -> pd.DataFrame:
    """Side by side: each stated number, the value computed from the files, and whether they agree.

    A stated value agrees when the computed one rounds to it (|computed − stated| ≤ precision/2);
    a stated bound ("p < x") when the computed value is below it. Columns: quantity, stated
    (as written), computed, difference (computed − stated; NaN for bounds), agrees, command.
    """
    rows = []
    for claim in stated.itertuples():
        value = float(computed[claim.key])
        bound = getattr(claim, "stated_below", np.nan)
        if pd.notna(bound):
            difference, agrees = np.nan, value < bound
        else:
            difference = value - claim.stated
            agrees = abs(difference) <= claim.precision / 2 + 1e-12
        rows.append({"quantity": claim.quantity, "stated": claim.display, "computed": value,
                     "difference": difference, "agrees": bool(agrees), "command": claim.command})
    return pd.DataFrame(rows)
