"""The rules that choose a page's words from its numbers (modularity.showing.findings), fed planted
results: significant, not significant, too few tasks, one domain, a near-zero denominator."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from modularity.base.files import REPO_ROOT
from modularity.science import stats
from modularity.science.matrix_csv import write_matrix_csv
from modularity.showing import findings

NAN = float("nan")
RESULTS = REPO_ROOT / "book" / "results"


def test_p_values_have_one_style():
    assert findings.format_p(0.0443955, 10_000) == "p = 0.044"
    assert findings.format_p(1 / 10_001, 10_000) == "p < 0.0001"
    assert findings.format_p(0.00031, 10_000) == "p = 0.00031"
    assert findings.format_p(NAN) == findings.format_p(None) == "p not computed"


@pytest.mark.parametrize("p, beyond", [(0.0001, True), (0.0499, True), (0.05, False), (0.63, False), (NAN, False)])
def test_beyond_chance_only_below_alpha(p, beyond):
    assert findings.beyond_chance(p) is beyond


def test_a_significant_ratio_and_a_non_significant_one():
    yes = findings.ratio_sentence("overlap", 0.21, 0.035, 6.17, 1 / 10_001, 10_000)
    assert yes.startswith("Within-domain overlap is 6.17 times cross-domain overlap (p < 0.0001)")
    assert "beyond what shuffled domain labels give" in yes and "near zero" not in yes
    no = findings.ratio_sentence("ablation drop", 0.29, 0.081, 3.53, 0.285, 10_000)
    assert "not distinguishable from shuffled domain labels" in no and "beyond" not in no


def test_a_near_zero_denominator_is_named():
    sentence = findings.ratio_sentence("ablation drop", 0.135, 0.0045, 30.3, 0.001, 10_000)
    assert "denominator is near zero" in sentence and "0.0045" in sentence


def test_too_few_tasks_is_not_computed_and_says_why():
    labels = ["Lan/a", "Lan/b", "Lan/c", "phys/d"]
    reason = stats.untestable_reason(pd.DataFrame(np.eye(4), index=labels, columns=labels))
    sentence = findings.ratio_sentence("overlap", 0.2, 0.01, NAN, NAN, 10_000, reason)
    assert sentence.startswith("The within/cross overlap test is not computed: 4 tasks (Lan 3, phys 1)")
    assert not any(token in sentence for token in ("nan", "NaN", "None", "times"))
    assert "not computed" in findings.ari_sentence(NAN, NAN, 2, 10_000, reason)
    assert findings.untested_reason(pd.DataFrame(np.eye(4), index=labels, columns=labels)) == reason
    assert findings.untested_reason(None) == findings.untested_reason(pd.DataFrame()) == \
        "fewer than two tasks were attributed"


def test_clustering_recovers_only_when_exact_and_two_domains_are_named():
    exact = findings.ari_sentence(1.0, 0.044, 2, 10_000)
    assert "recovers the domains exactly" in exact and "only two domains" in exact
    partial = findings.ari_sentence(0.23, 0.028, 4, 10_000)
    assert "beyond chance" in partial and "recovers" not in partial and "share clusters" in partial
    chance = findings.ari_sentence(0.4, 0.2, 4, 10_000)
    assert "does not match the domains beyond chance" in chance and "recovers" not in chance


def planted_results(folder, passing: dict, measures: dict, main: list[str] | None):
    """A run's results folder as the stages leave it: stage 1's summary, stage 3's main matrix,
    stage 4's and 5's summaries and stage 6's placement (``measures``: {measure: (value, p)})."""
    folder.mkdir(parents=True)
    rows = [{"task": f"{domain}_{i}", "domain": domain, "passes": i < n_pass}
            for domain, (n_pass, n_all) in passing.items() for i in range(n_all)]
    pd.DataFrame(rows).to_csv(folder / "eval_summary.csv", index=False)
    (folder / "manifest.json").write_text(json.dumps({
        "params": {"main_pct": 0.1, "n_permutations": 10_000, "model": "planted"},
        "stages": {stage: {} for stage in ("01_eval", "02_attribution", "03_overlap", "04_ari_permutation")}}))
    if main is not None:
        write_matrix_csv(pd.DataFrame(np.eye(len(main)), index=main, columns=main), folder / "overlap_0.1.csv")
    (folder / "stats_summary.json").write_text(json.dumps({"overlap": {"overlap_within": 0.2, "overlap_cross": 0.03}}))
    (folder / "ablation_summary.json").write_text(json.dumps({"summary": {"drop": {"within": 0.25, "across": 0.02}}}))
    pd.DataFrame([{"model": "planted", "source": "run", "measure": m, "value": v, "p": p, "n_tasks": len(main or [])}
                  for m, (v, p) in measures.items()]).to_csv(folder / "beside_study.csv", index=False)
    return folder


def test_a_run_with_structure_beyond_chance(tmp_path):
    labels = [f"{d}/{d}_{i}" for d in ("MD", "ToM", "Lan") for i in range(3)]
    folder = planted_results(tmp_path / "m" / "small", {"MD": (3, 20), "ToM": (3, 9), "phys": (0, 9), "Lan": (3, 8)},
                             {"overlap ratio": (6.2, 1e-4), "ablation ratio": (14.4, 1e-4), "ARI": (0.66, 1e-4)}, labels)
    numbers = findings.run_numbers(folder)
    assert numbers["reason"] is None and numbers["n_domains"] == 3
    text = " ".join(findings.run_sentences(numbers))
    assert text.startswith("9 of 46 tasks pass the 60% both-correct filter (Formal reasoning 3 of 20")
    assert "Physical reasoning has fewer than two passing tasks" in text
    assert text.count("beyond what shuffled domain labels give") == 2 and "agrees with the domains beyond chance" in text


def test_a_run_with_one_testable_domain_reads_not_computed_everywhere(tmp_path):
    labels = [f"Lan/Lan_{i}" for i in range(7)] + ["phys/phys_0"]
    folder = planted_results(tmp_path / "m" / "paper", {"MD": (0, 20), "ToM": (0, 9), "phys": (1, 9), "Lan": (7, 8)},
                             {m: (NAN, NAN) for m in findings.MEASURES}, labels)
    sentences = findings.run_sentences(findings.run_numbers(folder))
    assert sum("is computed: 8 tasks (Lan 7, phys 1), but" in s for s in sentences) == 1
    assert "Formal reasoning, Social reasoning and Physical reasoning have fewer than two" in sentences[1]
    assert not any("times" in s or "nan" in s.lower() for s in sentences)


def test_the_committed_gemma_paper_run_reads_the_same_as_its_stage_4():
    """Gemma (paper) keeps seven Language tasks and one Physical one: stage 4 computes no test, so
    no finding may quote stage 5's ratio for it."""
    numbers = findings.run_numbers(RESULTS / "gemma3-270m" / "paper")
    assert numbers["reason"] is not None
    assert all(math.isnan(numbers["measures"][m]["value"]) for m in findings.MEASURES)
    assert findings.run_sentences(numbers)[2].startswith("None of the three tests (overlap, ablation, clustering) is "
                                                         "computed: 8 tasks (Lan 7, phys 1)")


def test_across_runs_counts_only_computed_runs_and_names_silent_domains():
    def run(reason, ps, passing):
        return {"reason": reason, "passing": passing,
                "measures": {m: {"value": 1.0, "p": p} for m, p in zip(findings.MEASURES, ps)}}
    numbers = {"a": run(None, (0.001, 0.3, 0.01), {"MD": (2, 20), "phys": (0, 9), "Lan": (5, 8)}),
               "b": run(None, (0.2, 0.01, 0.5), {"MD": (3, 20), "phys": (1, 9), "Lan": (7, 8)}),
               "c": run("too few", (NAN, NAN, NAN), {"MD": (0, 20), "phys": (1, 9), "Lan": (7, 8)})}
    text = " ".join(findings.across_runs(numbers))
    assert "computed for 2 of the 3 runs" in text
    assert "overlap ratio is beyond chance in 1, the ablation ratio in 1 and the clustering's ARI in 1" in text
    assert "No run passes two tasks of Physical reasoning" in text
    assert "fewer than half of the Formal reasoning tasks, so that domain is" in text
    assert findings.across_runs({"c": numbers["c"]})[0] == "The run has too few tasks for the within/cross tests."


def test_a_run_whose_stages_have_not_run_says_so(tmp_path):
    folder = planted_results(tmp_path / "m" / "paper", {"Lan": (5, 8)}, {m: (NAN, NAN) for m in findings.MEASURES}, None)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["stages"] = {"01_eval": {}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert findings.run_numbers(folder)["reason"] == "stage 03_overlap has not run for this run"


def test_a_run_says_whether_its_stages_still_hold_at_this_code():
    titles = {"01_eval": "evaluation", "03_overlap": "overlap", "05_ablation": "ablation"}
    assert "Every stage" in findings.currency_sentence({"01_eval": "current", "03_overlap": "current"}, titles)
    mixed = findings.currency_sentence({"01_eval": "current", "03_overlap": "code changed since",
                                        "05_ablation": "code changed since"}, titles)
    assert mixed.startswith("Evaluation was made by the code")
    assert "tables of overlap and ablation has changed since they ran: rerun them" in mixed
    one = findings.currency_sentence({"01_eval": "not recorded"}, titles)
    assert one.startswith("Evaluation ran before runs recorded") and "its tables" in one
    assert "page template has changed" in findings.currency_sentence({"05_ablation": "page template changed since"},
                                                                      titles)
    assert findings.currency_sentence({}, titles) == "No stage of this run has finished."


def test_families_sentences_follow_the_table():
    import pandas as pd

    from modularity.showing.findings import families_sentences

    table = pd.DataFrame({"model_type": ["llama", "qwen3_moe", "mamba"], "error": ["", "", "UnsupportedModelError: x"],
                          "attribution_r": [0.9999, 0.9944, float("nan")], "nnsight_gap": [0.0, 0.0, float("nan")],
                          "offload_gap": [0.0, 2e-5, float("nan")]})
    words = families_sentences(table, allowed_gap=1e-5, r_floor=0.99)
    assert words[0] == "2 of 3 architectures loaded with their sites found by structure; mamba failed (the table says why)."
    assert words[1] == ("Attribution predicted exact single-neuron patching with r ≥ 0.994 (lowest: qwen3_moe), "
                        "at or above 0.99 for every one.")
    assert words[2].endswith("for every architecture but qwen3_moe.")
    strict = families_sentences(table, allowed_gap=1e-4, r_floor=0.995)
    assert "below 0.995 for qwen3_moe." in strict[1] and strict[2].endswith("to float rounding for every architecture.")


# --------------------------------------------------------------------------- domain or surface


@pytest.mark.parametrize("effect, words", [
    ({"coef_alone": 0.10, "p_alone": 0.0001, "coef_with_surface": 0.05, "p_with_surface": 0.002},
     "survives the surface terms: the same-domain coefficient goes from 0.1 to 0.05 (50% of it kept), still beyond"),
    ({"coef_alone": 0.10, "p_alone": 0.0001, "coef_with_surface": 0.02, "p_with_surface": 0.002},
     "the surface terms absorb most of the same-domain coefficient (80% of it: from 0.1 to 0.02); the rest is still "
     "beyond chance (p = 0.002)"),
    ({"coef_alone": 0.10, "p_alone": 0.0001, "coef_with_surface": 0.02, "p_with_surface": 0.30},
     "beside the surface terms the domain effect is no longer distinguishable from chance"),
    ({"coef_alone": 0.10, "p_alone": 0.0001, "coef_with_surface": -0.01, "p_with_surface": 0.01},
     "no longer distinguishable from chance"),  # a significant negative coefficient is no domain effect
    ({"coef_alone": 0.01, "p_alone": 0.40, "coef_with_surface": 0.0, "p_with_surface": 0.9},
     "do not overlap more than other pairs beyond chance even before"),
    ({"coef_alone": NAN, "p_alone": NAN, "coef_with_surface": NAN, "p_with_surface": NAN}, "not computed"),
])
def test_surface_sentence_follows_the_coefficients(effect, words):
    assert words in findings.surface_sentence("Model", effect, 10_000)


def test_restricted_ratio_sentence_names_missing_pairs():
    row = {"subset": "different frame", "within_pairs": 0, "cross_pairs": 12, "ratio": NAN, "p": NAN}
    assert findings.restricted_ratio_sentence(row) == ("Among pairs written in different frames there is no "
                                                       "same-domain pair, so the ratio is not computed there.")
    row = {"subset": "different family", "within_pairs": 20, "cross_pairs": 90, "ratio": 2.5, "p": 0.001}
    assert findings.restricted_ratio_sentence(row, 10_000).endswith("2.5 times cross-domain (p = 0.001): beyond chance.")
    row["p"] = 0.2
    assert "not distinguishable" in findings.restricted_ratio_sentence(row, 10_000)


@pytest.mark.parametrize("p_content, p_frame, verdict", [
    (0.001, 0.5, "follows the content, not the frame"), (0.5, 0.001, "follows the frame, not the content"),
    (0.001, 0.001, "follows both the content and the frame"), (0.5, 0.5, "follows neither")])
def test_frame_swap_sentence_follows_the_p_values(p_content, p_frame, verdict):
    fit = pd.DataFrame({"term": ["same_domain", "same_content", "same_frame"], "coef": [0.2, NAN, 0.1],
                        "p": [p_content, NAN, p_frame]})
    cells = pd.DataFrame({"pairs": ["same content, other frame", "other content, same frame"], "mean": [0.3, 0.1]})
    sentence = findings.frame_swap_sentence("Overlap", fit, cells, 10_000)
    assert sentence.startswith(f"Overlap {verdict}")
    assert "same content in another frame 0.3, another content in the same frame 0.1" in sentence
    assert "Beyond a task's own items" not in sentence  # one task per domain: the domain is the content


@pytest.mark.parametrize("p_domain, words", [(0.001, "two different tasks of one domain share more than two of "
                                                        "different domains (same-domain coefficient 0.05"),
                                              (0.4, "do not share more than two of different domains beyond chance")])
def test_frame_swap_sentence_says_what_the_domain_adds_beyond_the_items(p_domain, words):
    fit = pd.DataFrame({"term": ["same_domain", "same_content", "same_frame"], "coef": [0.05, 0.5, 0.0],
                        "p": [p_domain, 0.0001, 0.8]})
    cells = pd.DataFrame({"pairs": ["same content, other frame", "other content, same frame"], "mean": [0.5, 0.02]})
    sentence = findings.frame_swap_sentence("Overlap", fit, cells, 10_000)
    assert sentence.startswith("Overlap follows the content, not the frame: same content in another frame 0.5")
    assert words in sentence


def test_study_surface_sentence_counts_the_matrices_that_keep_the_effect():
    effects = {"A": {"coef_with_surface": 0.02, "p_with_surface": 0.01, "share_kept": 0.2},
               "B": {"coef_with_surface": 0.003, "p_with_surface": 0.6, "share_kept": 0.04},
               "C": {"coef_with_surface": 0.03, "p_with_surface": 0.001, "share_kept": 0.3}}
    assert findings.study_surface_sentence(effects) == (
        "Beside the surface terms, the same-domain coefficient of the study's overlap keeps 4%–30% of its size, "
        "and stays beyond chance for 2 of the 3 matrices (not for B).")
    assert findings.study_surface_sentence({"A": effects["A"]}, "ablation drop").endswith("for 1 of the 1 matrices.")


def test_a_run_states_its_surface_result(tmp_path):
    labels = [f"{d}/{d}_{i}" for d in ("MD", "ToM", "Lan") for i in range(3)]
    run_dir = planted_results(tmp_path / "m" / "small", {"MD": (3, 20), "ToM": (3, 9), "Lan": (3, 8)},
                              {"overlap ratio": (6.2, 1e-4), "ablation ratio": (14.4, 1e-4), "ARI": (0.66, 1e-4)},
                              labels)
    assert findings.run_numbers(run_dir)["surface"] is None  # before stage 4 wrote the model
    pd.DataFrame({"model": ["domain only", "domain + surface"], "term": ["same_domain"] * 2, "coef": [0.1, 0.01],
                  "p": [0.0001, 0.4]}).to_csv(run_dir / "surface_model.csv", index=False)
    sentences = findings.run_sentences(findings.run_numbers(run_dir))
    assert any(s.startswith("Against how its tasks are written: beside the surface terms the domain effect is no "
                            "longer distinguishable from chance") for s in sentences)


def test_a_run_states_its_lesion_result_in_the_mode_its_page_shows(tmp_path):
    labels = [f"{d}/{d}_{i}" for d in ("MD", "ToM", "Lan") for i in range(3)]
    run_dir = planted_results(tmp_path / "m" / "small", {"MD": (3, 20), "ToM": (3, 9), "Lan": (3, 8)},
                              {"overlap ratio": (6.2, 1e-4), "ablation ratio": (14.4, 1e-4), "ARI": (0.66, 1e-4)},
                              labels)
    assert findings.run_numbers(run_dir)["lesions"] is None  # before stage 9 ran
    row = dict(selection="attribution", domain="ToM", form=0.9, content=0.5, statistic=1.4, p=0.01, p_form=0.01,
               p_content=0.02, n_prompts=32, n_content=6)
    pd.DataFrame([{**row, "mode": "mean"}, {**row, "mode": "zero", "p": 0.5}]).to_csv(
        run_dir / "lesion_dissociation.csv", index=False)
    (run_dir / "lesion_summary.json").write_text(json.dumps({"shown_mode": "mean"}))
    numbers = findings.run_numbers(run_dir)
    assert [r["mode"] for r in numbers["lesions"]] == ["mean"]
    sentences = findings.run_sentences(numbers)
    assert sentences[-1].startswith("Attribution sets, mean values, Language against Social reasoning: a double "
                                    "dissociation")
