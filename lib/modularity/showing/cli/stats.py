"""`modularity stats`: the study's statistics on any task × task matrix CSV.

Commands:
  modularity stats overlap FILE.csv    within/cross permutation test, ARI, per-domain table
  modularity stats ablation FILE.csv   the same for a directed ablation matrix, plus Fig 2C bars
  modularity stats kendall A.csv B.csv ...   pairwise Kendall τ between models' matrices
  modularity stats average A.csv B.csv ... --out AVG.csv   the study's cell-wise average over models

Each prints one JSON object on stdout.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from modularity.science.matrix_csv import LEGACY_LABELS, read_matrix_csv, write_matrix_csv
from modularity.science.overlap import average_matrices, resolve_domains
from modularity.science.stats import ari_permutation, clustering_scores, domain_bars, kendall_summary, kendall_tau_pairs, per_domain_modularity, within_cross_permutation
from modularity.science.tasks.schema import DOMAIN_NAMES

FILE_LAYOUT = """\
File layout (the study's published CSVs, e.g. results/<model>/overlap/positive_0.1pct_overlap.csv):
  ,MD/code_A,ToM/agent,phys/phys_newton,Lan/npi,...
  MD/code_A,1.0,0.02,0.15,0.01,...
  ...
  A square table: the first column and the header row both hold 'domain/task' labels
  (domains MD, ToM, phys, Lan; same labels on both axes, any order), every cell a number
  (empty = missing). The legacy tasks phys/material and phys/spatial (book methods, difference 4) are
  dropped unless --keep-legacy is given; the output lists what was dropped.
"""

NUMBERS = """\
What the numbers mean:
  within, cross        mean of off-diagonal cells whose two tasks share / do not share a domain
                       (both directions counted; the diagonal never counts)
  ratio                within / cross; > 1 means domain-specific (modular) structure
  p_within_gt_cross    one-sided permutation p for within − cross: task→domain labels shuffled
                       --permutations times (seeded); smallest possible value 1/(permutations+1);
                       null (and p_note says why) when within or cross has no cell to average
  ari, ari_p           Adjusted Rand Index of the study's clustering (symmetrise, kNN graph with
                       --knn neighbours, average linkage, 4 clusters) against the true domains, and
                       its permutation p (clustering fixed, labels shuffled). 1 = domains recovered
                       exactly, ~0 = chance
  nmi, ami, v_measure  other agreement scores of the same clustering with the domains
  silhouette           how much closer same-domain tasks are on 1 − matrix (−1..1), no clustering
  per_domain           for each domain D: within_D (both tasks in D), cross_D (exactly one task
                       in D, both directions), ratio, permutation p and its Holm adjustment
                       across the domains tested (SI Table 2); a one-task domain has no within_D,
                       so its p is null and note says why
"""


def _clean(value):
    """JSON-safe copy: numpy scalars → Python, NaN/inf → null."""
    if isinstance(value, dict):
        return {str(key): _clean(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _emit(payload: dict) -> None:
    print(json.dumps(_clean(payload), indent=2, ensure_ascii=False))


def _check_counts(args) -> None:
    if args.permutations < 0:
        raise ValueError(f"--permutations must be ≥ 0, got {args.permutations}")
    if args.knn < 1:
        raise ValueError(f"--knn must be ≥ 1, got {args.knn}")
    if args.clusters < 1:
        raise ValueError(f"--clusters must be ≥ 1, got {args.clusters}")


def _matrix_report(args, directed: bool) -> dict:
    _check_counts(args)
    # The study cuts ablation CSVs to labels present as both row and column (SI Table 1 script).
    matrix = read_matrix_csv(args.file, drop_legacy=not args.keep_legacy, common_labels=directed)
    codes = resolve_domains(matrix)
    n_tasks = matrix.shape[0]
    if n_tasks < 3:
        raise ValueError(f"{args.file}: only {n_tasks} tasks; the statistics need at least 3")
    if args.clusters > n_tasks:
        raise ValueError(f"--clusters {args.clusters} is more than the {n_tasks} tasks in {args.file}")
    test = within_cross_permutation(matrix, codes, n_permutations=args.permutations, seed=args.seed)
    ari = ari_permutation(matrix, codes, n_permutations=args.permutations, seed=args.seed, knn=args.knn, n_clusters=args.clusters)
    scores = clustering_scores(matrix, codes, knn=args.knn, n_clusters=args.clusters)
    per_domain = per_domain_modularity(matrix, codes, n_permutations=args.permutations, seed=args.seed)
    values = matrix.to_numpy(dtype=float)
    report = {
        "file": str(args.file),
        "kind": "ablation" if directed else "overlap",
        "n_tasks": n_tasks,
        "n_tasks_per_domain": {domain: int(np.sum(codes == domain)) for domain in per_domain["domain"]},
        "within": test["within"],
        "cross": test["cross"],
        "ratio": test["ratio"],
        "delta": test["delta"],
        "p_within_gt_cross": test["p"],
        "p_note": test["note"] or None,
        "ari": ari["ari"],
        "ari_p": ari["p"],
        "ari_null_mean": ari["null_mean"],
        "ari_null_sd": ari["null_sd"],
        "nmi": scores["nmi"],
        "ami": scores["ami"],
        "v_measure": scores["v_measure"],
        "silhouette": scores["silhouette"],
        "clusters": ari["clusters"],
        "per_domain": {
            row.domain: {
                "name": DOMAIN_NAMES.get(row.domain, row.domain),
                "n_tasks": row.n_tasks,
                "within": row.within,
                "cross": row.cross,
                "ratio": row.ratio,
                "p": row.p,
                "p_holm": row.p_holm,
                "note": row.note or None,
            }
            for row in per_domain.itertuples()
        },
        "diagonal_mean": float(np.nanmean(np.diag(values))) if np.isfinite(np.diag(values)).any() else None,
        "symmetric": bool(np.allclose(values, values.T, equal_nan=True)),
        "n_missing_cells": int(np.isnan(values).sum()),
        "dropped_legacy": matrix.attrs.get("dropped_legacy", []),
        "dropped_unpaired": matrix.attrs.get("dropped_unpaired", []),
        "permutations": args.permutations,
        "seed": args.seed,
        "knn": args.knn,
        "n_clusters": args.clusters,
    }
    if directed:
        bars = domain_bars(matrix, codes)
        report["bars"] = {
            domain: {row.kind: {"mean": row.mean, "sem": row.sem, "n": row.n} for row in group.itertuples()}
            for domain, group in bars.groupby("domain", sort=False)
        }
    return report


def _run_overlap(args) -> int:
    _emit(_matrix_report(args, directed=False))
    return 0


def _run_ablation(args) -> int:
    _emit(_matrix_report(args, directed=True))
    return 0


def _run_kendall(args) -> int:
    if len(args.files) < 2:
        raise ValueError("kendall needs at least two matrix CSV files (one per model)")
    names = [str(path) for path in args.files]
    if len(set(names)) != len(names):
        raise ValueError("the same file is given twice; give each model's matrix once")
    matrices = {name: read_matrix_csv(name, drop_legacy=not args.keep_legacy, common_labels=True) for name in names}
    pairs = kendall_tau_pairs(matrices, mode=args.mode, common="all")
    n_common = int(pairs["n_tasks"].iloc[0])
    if n_common < 3:
        raise ValueError(f"the files share only {n_common} tasks; Kendall τ across models needs at least 3 common tasks")
    ddof = args.ddof if args.ddof is not None else (0 if args.mode == "directed" else 1)
    summary = kendall_summary(pairs, ddof=ddof)
    _emit(
        {
            "mode": args.mode,
            "files": names,
            "n_common_tasks": n_common,
            "n_values": int(pairs["n_values"].min()),
            "ddof": ddof,
            **summary,
            "pairs": [
                {"file_a": row.model_a, "file_b": row.model_b, "tau": row.tau, "p": row.p, "n_tasks": row.n_tasks, "n_values": row.n_values}
                for row in pairs.itertuples()
            ],
            "n_pairs": summary["pairs"],
            "dropped_legacy": {name: matrix.attrs.get("dropped_legacy", []) for name, matrix in matrices.items()},
        }
    )
    return 0


def _run_average(args) -> int:
    names = [str(path) for path in args.files]
    if len(set(names)) != len(names):
        raise ValueError("the same file is given twice; give each model's matrix once")
    matrices = {name: read_matrix_csv(name, drop_legacy=not args.keep_legacy, common_labels=True) for name in names}
    averaged = average_matrices(list(matrices.values()))
    write_matrix_csv(averaged, args.out)
    _emit({"out": str(args.out), "files": names, "n_tasks": len(averaged),
           "models_per_task": {label: sum(label in m.index for m in matrices.values()) for label in averaged.index},
           "dropped_legacy": {name: m.attrs.get("dropped_legacy", []) for name, m in matrices.items()}})
    return 0


def _add_matrix_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", type=Path, help="task × task matrix CSV (layout above)")
    parser.add_argument("--permutations", type=int, default=10_000, metavar="N", help="null draws for every permutation p (default 10000, as the study)")
    parser.add_argument("--seed", type=int, default=42, help="seed of numpy default_rng for the nulls (default 42, as the study)")
    parser.add_argument("--knn", type=int, default=5, help="neighbours per task in the clustering graph (default 5; the study's ARI changes for 6–8)")
    parser.add_argument("--clusters", type=int, default=4, help="number of clusters to cut (default 4, one per domain)")
    parser.add_argument("--keep-legacy", action="store_true", help=f"keep {' and '.join(LEGACY_LABELS)} instead of dropping them")


def add_parser(subparsers) -> None:
    """Register ``modularity stats`` and its commands."""
    stats = subparsers.add_parser(
        "stats",
        help="statistics on overlap/ablation matrix CSVs (permutation tests, ARI, Kendall τ)",
        description=__doc__ + "\n" + FILE_LAYOUT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = stats.add_subparsers(dest="command", metavar="<command>")
    stats.set_defaults(func=lambda args: (stats.print_help(), 2)[1])

    overlap = commands.add_parser(
        "overlap",
        help="modularity of a symmetric overlap matrix (SI Tables 1–2, ARI)",
        description=(
            "Within- vs cross-domain permutation test, clustering recovery (ARI) and per-domain\n"
            "modularity of a neuron-overlap matrix (|S_i ∩ S_j| / k, symmetric, diagonal 1).\n\n"
            + FILE_LAYOUT + "\n" + NUMBERS
            + "\nExample:\n  modularity stats overlap results/average/overlap/positive_0.1pct_overlap.csv\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_matrix_options(overlap)
    overlap.set_defaults(func=_run_overlap)

    ablation = commands.add_parser(
        "ablation",
        help="modularity of a directed ablation matrix (rows = source, columns = target)",
        description=(
            "The same statistics for a causal-ablation matrix: cell (S, T) is the accuracy drop of\n"
            "target task T when source task S's top neurons are patched. The matrix is directed:\n"
            "within/cross use every off-diagonal cell in both directions; the clustering uses the\n"
            "symmetrised matrix (M + Mᵀ)/2. Labels present only as a row or only as a column are\n"
            "dropped (listed as dropped_unpaired), as the study's SI Table 1 script does.\n"
            "Extra output 'bars' (Fig 2C): per domain D the mean, SEM (ddof 1) and n of\n"
            "within (S,T in D), D→others (S in D, T not) and others→D (S not, T in D).\n\n"
            + FILE_LAYOUT + "\n" + NUMBERS
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_matrix_options(ablation)
    ablation.set_defaults(func=_run_ablation)

    kendall = commands.add_parser(
        "kendall",
        help="pairwise Kendall τ between several models' matrices",
        description=(
            "Do different models agree on which task pairs share neurons (or hurt each other)?\n"
            "Each file is one model's matrix. All files are cut to the tasks common to every file;\n"
            "each pair of files is compared with Kendall's τ-b (scipy, asymptotic p) over:\n"
            "  --mode directed   all off-diagonal cells, n(n−1) values (ablation, book methods §8)\n"
            "  --mode upper      the strict upper triangle, n(n−1)/2 values (symmetric overlap, book methods §9)\n"
            "Cells missing in either file are skipped. Output: tau_mean, tau_sd (ddof 0 for directed,\n"
            "1 for upper, as the study; override with --ddof), tau_min/max, p_max, n_common_tasks, pairs.\n\n"
            + FILE_LAYOUT
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    kendall.add_argument("files", nargs="+", type=Path, help="two or more matrix CSVs, one per model")
    kendall.add_argument("--mode", choices=("directed", "upper"), default="directed", help="which cells to compare (default directed)")
    kendall.add_argument("--ddof", type=int, default=None, help="delta degrees of freedom of tau_sd (default: 0 directed, 1 upper)")
    kendall.add_argument("--keep-legacy", action="store_true", help=f"keep {' and '.join(LEGACY_LABELS)}")
    kendall.set_defaults(func=_run_kendall)

    average = commands.add_parser(
        "average",
        help="cell-wise average of several models' matrices (the study's cross-model average)",
        description=(
            "Average task × task matrices over models as the study does (book methods §4): the task set is\n"
            "the union of all files' tasks, each cell the mean over the files that contain both tasks.\n"
            "Use it to regenerate the six-model average ablation matrix, which the study did not ship:\n"
            "  modularity stats average results/*/ablation_analysis/positive_0.1pct_corrupted_accuracy.csv \\\n"
            "      --out average_ablation.csv\n"
            "  modularity stats ablation average_ablation.csv\n\n"
            + FILE_LAYOUT
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    average.add_argument("files", nargs="+", type=Path, help="one matrix CSV per model")
    average.add_argument("--out", type=Path, required=True, help="where to write the averaged matrix CSV")
    average.add_argument("--keep-legacy", action="store_true", help=f"keep {' and '.join(LEGACY_LABELS)}")
    average.set_defaults(func=_run_average)
