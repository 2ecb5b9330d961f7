"""Half precision against float32 (#14): the comparisons, and the check end to end on a tiny model."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from modularity.science import overlap, precision
from modularity.running import precision_check

from test_stage_evaluation_attribution import run_params

pytestmark = pytest.mark.numerics


def summary(accuracies: dict, threshold: float = 0.6) -> pd.DataFrame:
    return pd.DataFrame({"task": list(accuracies), "domain": ["Lan"] * len(accuracies),
                         "both_correct_accuracy": list(accuracies.values()),
                         "passes": [a >= threshold for a in accuracies.values()]})


def test_decision_table_marks_flipped_tasks():
    table = precision.decision_table({"float32": summary({"a": 0.62, "b": 0.9, "c": 0.3}),
                                      "bfloat16": summary({"a": 0.58, "b": 0.9, "c": 0.3})})
    assert list(table["changed bfloat16"]) == [True, False, False]
    assert list(table["passes float32"]) == [True, True, False]
    assert table["accuracy bfloat16"].tolist() == [0.58, 0.9, 0.3]


def test_score_agreement_measures_the_top_sets():
    rng = np.random.default_rng(0)
    reference = {"a": torch.tensor(rng.normal(size=(4, 250))), "b": torch.tensor(rng.normal(size=(4, 250)))}
    same_top = {"a": reference["a"] + 1e-6}  # a tiny perturbation keeps the set
    shuffled = {"a": torch.tensor(rng.permutation(reference["a"].numpy().ravel()).reshape(4, 250))}
    kept = precision.score_agreement(reference, same_top, 1.0, overlap.top_positive_set)
    assert list(kept.task) == ["a"] and kept.loc[0, "k"] == 10
    assert kept.loc[0, "set overlap"] == 1.0 and kept.loc[0, "spearman"] > 0.999
    moved = precision.score_agreement(reference, shuffled, 1.0, overlap.top_positive_set)
    assert moved.loc[0, "set overlap"] < 0.5 and abs(moved.loc[0, "spearman"]) < 0.2


def test_ratio_row_is_nan_without_two_tasks_and_tests_a_planted_matrix():
    labels = ["Lan/a", "Lan/b", "MD/c", "MD/d"]
    planted = pd.DataFrame([[1, .5, .1, .1], [.5, 1, .1, .1], [.1, .1, 1, .5], [.1, .1, .5, 1]], labels, labels)
    row = precision.ratio_row("float32", planted, planted, n_permutations=200, seed=0)
    assert row["overlap ratio"] == pytest.approx(5.0) and row["ablation drop ratio"] == pytest.approx(5.0)
    assert row["n_tasks"] == 4
    empty = precision.ratio_row("bfloat16", None, None, n_permutations=10, seed=0)
    assert np.isnan(empty["overlap ratio"]) and empty["n_tasks"] == 0


def test_precision_check_end_to_end_on_a_tiny_model(tiny_model_dirs, tmp_path):
    params = run_params(tiny_model_dirs["llama"], n_permutations=50, ablation_items=4)
    check = precision_check.run_precision_check(params, dtypes=("bfloat16", "float16"), tasks=params["tasks"],
                                          root=tmp_path, progress=False)
    assert list(check.ratios.dtype) == ["float32", "bfloat16", "float16"]
    assert set(check.decisions.task) == set(params["tasks"])
    assert set(check.sets.dtype) <= {"bfloat16", "float16"}
    assert check.sets["set overlap"].between(0, 1).all()
    written = precision_check.save_precision_check(check, tmp_path / "out")
    assert {p.name for p in written} == {"decisions.csv", "sets.csv", "ratios.csv", "stages.csv", "precision.json"}
    evaluation = check.stages[(check.stages.stage == "evaluation")]
    assert list(evaluation.dtype) == ["float32", "bfloat16", "float16"] and (evaluation.tokens > 0).all()
    attribution = check.stages[check.stages.stage == "attribution"]
    assert (attribution.grad_tokens > 0).all() and (evaluation.grad_tokens == 0).all()
    # a second call resumes from the per-task caches of both dtypes
    again = precision_check.run_precision_check(params, dtypes=("bfloat16", "float16"), tasks=params["tasks"],
                                          root=tmp_path, progress=False)
    pd.testing.assert_frame_equal(again.decisions, check.decisions)
