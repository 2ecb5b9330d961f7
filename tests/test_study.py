"""Tests for modularity.science.study: the vendored study results, the stated numbers and runs beside them."""
import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from modularity.science import study
from modularity.science.overlap import average_matrices

RESULTS = study.STUDY_ROOT / "results"


def test_vendored_files_carry_the_licence_and_every_model():
    assert "MIT License" in (study.STUDY_ROOT / "LICENSE").read_text()
    assert "e3ac7fb" in (study.STUDY_ROOT / "README.md").read_text()
    for model in (*study.STUDY_MODELS, study.CONTROL_MODEL):
        assert (RESULTS / model.folder / "overlap" / "positive_0.1pct_overlap.csv").is_file(), model


def test_overlap_readers_give_square_matrices_at_every_pct():
    for pct in study.PCTS:
        average = study.overlap_matrix("average", pct)
        assert average.shape == (46, 46) and list(average.index) == list(average.columns)
        np.testing.assert_allclose(np.diag(average), 1.0)
    sizes = {name: len(m) for name, m in study.overlap_matrices(0.1).items()}
    assert sizes == {"Mistral-Small-24B": 40, "Qwen2.5-32B": 45, "OLMo-2-32B": 35, "Llama-3.1-70B": 43,
                     "Qwen2.5-72B": 46, "Mistral-Large-123B": 39}  # book methods §2 "counts kept"
    with pytest.raises(FileNotFoundError):
        study.overlap_matrix("Qwen2.5-32B", 5.0, doubly_stochastic=True)  # not shipped (book methods §4)
    with pytest.raises(KeyError, match="not one of the study's models"):
        study.overlap_matrix("GPT-5", 0.1)


def test_shipped_average_is_the_cellwise_mean_of_the_six_models():
    """book methods §4 [verified]: the averaged raw matrix is reproduced from the per-model CSVs."""
    recomputed = average_matrices(list(study.overlap_matrices(0.1).values()))
    shipped = study.overlap_matrix("average", 0.1)
    np.testing.assert_allclose(recomputed.loc[shipped.index, shipped.index], shipped, atol=1e-6)


def test_ablation_readers_and_legacy_tasks():
    kept = study.ablation_matrix("Qwen2.5-32B", keep_legacy=True)
    dropped = study.ablation_matrix("Qwen2.5-32B")
    assert {"phys/material", "phys/spatial"} <= set(kept.index)
    assert dropped.attrs["dropped_legacy"] == ["phys/material", "phys/spatial"]
    assert len(kept) == len(dropped) + 2
    average = study.average_ablation()
    assert average.shape == (46, 46) and not any(label in average.index for label in ("phys/material", "phys/spatial"))
    assert not np.allclose(average.to_numpy(), average.to_numpy().T)  # directed


def test_baselines_read_both_formats():
    table = study.baselines()
    assert len(table) == 6 * 46
    assert table.groupby("model").passes.sum().to_dict()["Llama-3.1-70B"] == 44  # number_sequence included
    odd = table[table.format == "run_eval"]
    assert list(odd.label) == ["MD/number_sequence"] and odd.model.iloc[0] == "Llama-3.1-70B"
    raw = json.loads((RESULTS / "meta-llama_Meta-Llama-3-1-70B-Instruct/MD/number_sequence/baselines.json").read_text())
    assert odd.both_correct_accuracy.iloc[0] == raw["both_correct_pct"]
    assert odd.corrupted_accuracy.iloc[0] == pytest.approx(1 - raw["corrupted_accuracy"])  # sense flipped
    normal = table[table.format == "attribution"]
    assert (normal.n_aligned == normal.n_total - normal.n_misaligned).all()
    np.testing.assert_allclose(normal.both_correct_accuracy, normal.n_both_correct / normal.n_aligned)
    # Fig 1A of the paper: 8,877 / 19,941 / 9,200 / 11,412 pairs per domain.
    items = table.drop_duplicates("label").groupby("domain").n_total.sum().to_dict()
    assert items == {"Lan": 8877, "MD": 19941, "phys": 9200, "ToM": 11412}


@pytest.fixture(scope="module")
def headline():
    return study.headline_numbers(n_permutations=10_000)  # the study's count: p < 1e-4 needs it


def test_headline_numbers_agree_with_the_statements_except_one_sd(headline):
    table = study.compare_claims(study.claims(), headline)
    assert len(table) == len(study.claims()) >= 14
    disagreeing = table[~table.agrees].quantity.tolist()
    # The only statement the files do not reproduce at its stated precision: the overlap τ SD
    # (0.066 with the sweep script's ddof 1; 0.064 with ddof 0 would round to the stated 0.06).
    assert disagreeing == ["Overlap τ: SD across the 15 model pairs"]
    assert table.set_index("quantity").loc[disagreeing[0], "computed"] == pytest.approx(0.066, abs=0.001)


def test_compare_claims_rounding_and_bounds():
    claims = pd.DataFrame([
        {"key": "a", "quantity": "A", "display": "0.78", "stated": 0.78, "precision": 0.01, "command": "c"},
        {"key": "b", "quantity": "B", "display": "0.78", "stated": 0.78, "precision": 0.01, "command": "c"},
        {"key": "p", "quantity": "P", "display": "p < 0.0001", "stated_below": 1e-4, "command": "c"},
    ])
    table = study.compare_claims(claims, {"a": 0.7849, "b": 0.7851, "p": 1e-4})
    assert table.agrees.tolist() == [True, False, False]
    assert table.difference.iloc[0] == pytest.approx(0.0049)
    assert np.isnan(table.difference.iloc[2])


def _run_command(command: str, cwd) -> dict:
    """Run a claim's shell command as a user would (R set, `modularity` = this interpreter)."""
    shell = command.replace("modularity ", f"{sys.executable} -m modularity ")
    completed = subprocess.run(["bash", "-c", shell], cwd=cwd, env={**os.environ, "R": str(RESULTS)},
                               capture_output=True, text=True, check=True)
    # A chain prints one JSON object per command; the last one holds the numbers.
    out = completed.stdout
    return json.loads(out[out.rindex("\n{") + 1:] if "\n{" in out else out)


def test_every_stated_command_reproduces_the_computed_value(tmp_path, headline):
    outputs = {}
    for claim in study.claims().itertuples():
        if claim.command not in outputs:
            outputs[claim.command] = _run_command(claim.command, tmp_path)
        assert outputs[claim.command][claim.field] == pytest.approx(headline[claim.key], rel=1e-9, abs=1e-12), claim.key


def test_model_statistics_nan_when_untestable_and_beside_study_rows():
    tiny = pd.DataFrame(np.eye(3), index=["MD/a", "MD/b", "Lan/c"], columns=["MD/a", "MD/b", "Lan/c"])
    result = study.model_statistics(tiny, None, n_permutations=99)
    assert np.isnan(result["overlap_ratio"]) and np.isnan(result["ari"]) and result["n_tasks_overlap"] == 3
    qwen = study.overlap_matrix("Qwen2.5-72B", 0.1)
    run = study.model_statistics(qwen, study.ablation_matrix("Qwen2.5-72B"), n_permutations=99)
    table = study.beside_study({"copy of Qwen2.5-72B": run}, n_permutations=99)
    assert len(table) == 7 * 3 and set(table.source) == {"study", "run"}
    as_run = table[table.model == "copy of Qwen2.5-72B"].set_index("measure").value
    as_study = table[table.model == "Qwen2.5-72B"].set_index("measure").value
    pd.testing.assert_series_equal(as_run, as_study, check_names=False)


def test_tau_against_study_is_one_on_itself_and_low_on_shuffled_labels():
    qwen = study.overlap_matrix("Qwen2.5-72B", 0.1)
    table = study.tau_against_study(qwen, "overlap").set_index("study_model")
    assert table.loc["Qwen2.5-72B", "tau"] == pytest.approx(1.0)
    assert table.loc["Qwen2.5-72B", "n_tasks"] == 46
    assert (table.tau.drop("Qwen2.5-72B") < 1).all()
    rng = np.random.default_rng(0)
    shuffled_labels = list(rng.permutation(qwen.index))
    shuffled = qwen.set_axis(shuffled_labels, axis=0).set_axis(shuffled_labels, axis=1)
    assert study.tau_against_study(shuffled, "overlap").tau.abs().max() < 0.2
    small = qwen.iloc[:2, :2]
    assert study.tau_against_study(small, "ablation").tau.isna().all()
    with pytest.raises(ValueError, match="kind must be"):
        study.tau_against_study(qwen, "jaccard")
