"""Stages 3–6 through their ``run(ctx)``: overlap and statistics on planted structure, ablation on a
tiny model end to end (with cache reuse), and the nnsight one-item ablation of notebook 05 against
the library's batched hooks.

Stage inputs are written by hand into a temporary ``MODULARITY_ROOT``: stage 1's summary (with the
tasks' real fingerprints) and item table, and stage 2's attribution tensors, whose scores are a
shared pattern per domain plus task noise, so tasks of one domain select overlapping neurons.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from modularity.science import ablation, overlap, scoring, sites, surface
from modularity.science.matrix_csv import read_matrix_csv, write_matrix_csv
from modularity.records.params import validate_params
from modularity.stages import ablation as ablation_stage
from modularity.stages import beside_study as beside_stage
from modularity.stages import overlap as overlap_stage
from modularity.stages import scores
from modularity.stages import statistics as statistics_stage
from modularity.stages.context import RunContext
from modularity.records.store import save_table, write_cache

#: Three tasks in each of three domains (MD, ToM, Lan): 280 distinct partitions, so a permutation
#: p can fall below 0.05 (two per domain would allow only 15).
TASKS = ["code_list", "number_sorting", "simple_equation", "desires_goals", "agent", "primary_emotions",
         "subject_verb_agreement", "anaphor_gender_agreement", "npi"]


def planted_run(root: Path, model: str, shape: tuple[int, int], aligned=None, **params) -> RunContext:
    """A run whose stages 1–2 are written by hand: every task passes, with planted attributions.

    ``aligned``: ``{task: bool array}`` of token-aligned items (default: all), written to
    ``eval_items.csv`` as both-correct.
    """
    params = validate_params({"model": model, "run_name": "planted", "tasks": TASKS, "n_items": 6,
                              "n_permutations": 200, "threads": 1, **params})
    ctx = RunContext.of(params, root)
    rng = np.random.default_rng(0)
    domains = {name: task.domain for name, task in ctx.suite.items()}
    patterns = {domain: rng.normal(size=shape) for domain in sorted(set(domains.values()))}
    common = rng.normal(size=shape)  # shared by every task: some overlap across domains too
    rows, items = [], []
    for name in TASKS:
        flags = np.ones(params["n_items"], dtype=bool) if aligned is None else aligned[name]
        rows.append({"task": name, "domain": domains[name], "n_both_correct": int(flags.sum()), "C": 1.0,
                     "R": -1.0, "passes": True, "reason": "", "fingerprint": ctx.paths.fingerprints[name]})
        items += [{"item": i, "aligned": bool(f), "both_correct": bool(f), "task": name} for i, f in enumerate(flags)]
    save_table(pd.DataFrame(rows), ctx.paths.table("eval_summary.csv"))
    save_table(pd.DataFrame(items), ctx.paths.table("eval_items.csv"))
    passing = ctx.passing()
    for name in TASKS:  # cached as stage 2 caches them, made from the items above
        planted = 3.0 * patterns[domains[name]] + 2.0 * common + rng.normal(size=shape)
        write_cache(ctx.paths.tensor("attribution", name), {"neurons": torch.tensor(planted, dtype=torch.float32)},
                    "attribution", scores.scores_made_from(ctx, name, passing))
    return ctx


# --------------------------------------------------------------------------- stage 3


def test_overlap_stage_on_planted_attributions(tmp_path):
    ctx = planted_run(tmp_path, "m", (4, 2500))
    result = overlap_stage.run(ctx)
    assert result.enough and result.labels == overlap.order_labels(result.labels) and len(result.labels) == len(TASKS)
    for pct in ctx.params["top_pcts"]:
        k = result.k[pct]
        assert k == overlap.top_k_count(10_000, pct)
        assert all(len(s) == k for s in result.sets[pct].values())
        assert read_matrix_csv(ctx.paths.table(f"overlap_{pct:g}.csv")).equals(result.overlap[pct])
        assert read_matrix_csv(ctx.paths.table(f"jaccard_{pct:g}.csv")).equals(result.jaccard[pct])
    # One cell by hand: |A ∩ B| / k of the two MD tasks' top sets.
    a, b = "MD/code_list", "MD/number_sorting"
    pct, k = ctx.params["main_pct"], result.k[ctx.params["main_pct"]]
    top = {label: set(np.argsort(-scores.load_scores(ctx, label.split("/")[1]).numpy().ravel(),
                                 kind="stable")[:k].tolist()) for label in (a, b)}
    assert result.main.loc[a, b] == len(top[a] & top[b]) / k
    # Planted domains: within-domain pairs share more top neurons, at every threshold.
    assert result.within_cross["within"] > 3 * result.within_cross["cross"]
    assert result.doubly_stochastic is not None and result.sinkhorn_converged
    assert read_matrix_csv(ctx.paths.table(f"overlap_{pct:g}_doubly_stochastic.csv")).equals(result.doubly_stochastic)
    assert set(result.composition.category) >= {"MD", "ToM", "Lan"}
    saved = [*ctx.paths.results.glob("overlap_*.csv"), *ctx.paths.results.glob("jaccard_*.csv")]
    assert sorted(p.name for p in result.written) == sorted(p.name for p in saved) and len(saved) == 9


def test_overlap_stage_stops_with_too_few_tasks(tmp_path):
    ctx = planted_run(tmp_path, "m", (2, 50))
    summary = pd.read_csv(ctx.paths.table("eval_summary.csv"))
    save_table(summary.assign(passes=summary.task == TASKS[0]), ctx.paths.table("eval_summary.csv"))
    result = overlap_stage.run(ctx)
    assert not result.enough and result.main is None and result.written == []
    assert not list(ctx.paths.results.glob("overlap_*.csv"))


def test_overlap_stage_refuses_changed_tasks(tmp_path):
    ctx = planted_run(tmp_path, "m", (2, 50))
    summary = pd.read_csv(ctx.paths.table("eval_summary.csv"))
    save_table(summary.assign(fingerprint="stale"), ctx.paths.table("eval_summary.csv"))
    with pytest.raises(ValueError, match="tasks changed since stage 01_eval"):
        overlap_stage.run(ctx)


# --------------------------------------------------------------------------- stages 4 and 6


def test_statistics_and_beside_study_stages_on_planted_overlap(tmp_path):
    ctx = planted_run(tmp_path, "m", (4, 2500))
    overlap_stage.run(ctx)
    result = statistics_stage.run(ctx)
    assert result.testable and result.n_clusters == 3 and result.knn == 5
    assert result.test["p"] < 0.05 and result.test["delta"] > 0
    assert result.ari["ari"] == pytest.approx(1.0)
    assert list(result.per_domain.domain) == ["MD", "ToM", "Lan"] and "p_holm" in result.per_domain
    assert list(result.sweep.pct) == ctx.params["top_pcts"]
    assert set(result.beside_study.measure) == {"overlap ratio", "ARI"}
    assert json.loads(ctx.paths.table("stats_summary.json").read_text()) == json.loads(json.dumps(result.summary))
    saved = pd.read_csv(ctx.paths.table("per_domain_overlap.csv"))
    pd.testing.assert_frame_equal(saved.drop(columns="note"), result.per_domain.drop(columns="note"))
    assert list(saved.note.fillna("")) == list(result.per_domain.note)  # an empty note reads back as NaN
    # The observed statistic by hand.
    main, labels = result.matrices[ctx.params["main_pct"]], result.labels
    codes = np.array([label.split("/")[0] for label in labels])
    same, off = codes[:, None] == codes[None, :], ~np.eye(len(labels), dtype=bool)
    values = main.to_numpy()
    assert result.test["delta"] == pytest.approx(values[same & off].mean() - values[~same].mean())
    # The surface of the run's tasks and the domain effect beside it (book methods §12).
    assert list(result.surface.index) == labels and result.surface_note == ""
    assert pd.read_csv(ctx.paths.table("surface_tasks.csv")).task.tolist() == labels
    saved_model = pd.read_csv(ctx.paths.table("surface_model.csv"))
    assert list(saved_model.model.unique()) == ["domain only", "domain + surface"]
    alone = saved_model[(saved_model.model == "domain only") & (saved_model.term == "same_domain")].iloc[0]
    assert alone.coef == pytest.approx(result.test["delta"])  # the domain term alone is within − cross
    assert pd.read_csv(ctx.paths.table("surface_ratios.csv")).subset.tolist() == list(surface.SUBSETS)
    assert ctx.paths.table("frame_swap.csv").read_text().strip() == ""  # no framed variants here

    placed = beside_stage.run(ctx)
    assert placed.ablation is None and len(placed.overlap) == len(TASKS)
    run_rows = placed.placed[placed.placed.source == "run"].set_index("measure")
    assert run_rows.loc["overlap ratio", "value"] == pytest.approx(result.test["ratio"])
    assert np.isnan(run_rows.loc["ablation ratio", "value"])
    assert list(placed.tau.index.unique()) == ["overlap"]
    pd.testing.assert_frame_equal(pd.read_csv(ctx.paths.table("beside_study.csv")), placed.placed)


def test_statistics_stage_on_too_few_tasks_writes_empty_tables(tmp_path):
    params = validate_params({"model": "m", "run_name": "few", "tasks": ["npi"], "n_items": 2})
    ctx = RunContext.of(params, tmp_path)
    labels = ["MD/a", "MD/b", "ToM/c"]
    write_matrix_csv(pd.DataFrame(np.eye(3), index=labels, columns=labels), ctx.paths.table("overlap_0.1.csv"))
    result = statistics_stage.run(ctx)
    assert not result.testable and result.test is None and result.per_domain.empty
    assert json.loads(ctx.paths.table("stats_summary.json").read_text())["ari"] is None
    assert ctx.paths.table("threshold_sweep.csv").read_text().strip() == ""
    placed = beside_stage.run(ctx)  # a run without an ablation matrix is still placed
    assert placed.placed[placed.placed.source == "run"].value.isna().all()


# --------------------------------------------------------------------------- stage 5


@pytest.fixture
def tiny_run(tiny_model_dirs, tiny_models, tmp_path):
    """A planted run on the tiny llama: aligned items only are marked both-correct."""
    loaded = tiny_models["llama"]
    params = dict(top_pcts=[1.0, 5.0], main_pct=5.0, ablation_items=3, n_random_controls=1, batch_size=4)
    probe = planted_run(tmp_path, str(tiny_model_dirs["llama"]), (loaded.n_layers, loaded.d_ff), **params)
    aligned = {name: scoring.tokenize_task(loaded, task).aligned for name, task in probe.suite.items()}
    assert all(flags.sum() >= 1 for flags in aligned.values()), "every task has an aligned item"
    return planted_run(tmp_path, str(tiny_model_dirs["llama"]), (loaded.n_layers, loaded.d_ff), aligned, **params)


def test_ablation_stage_end_to_end_and_from_its_cache(tiny_run):
    ctx = tiny_run
    result = ablation_stage.run(ctx)
    n = len(TASKS)
    assert result.enough and result.k == 6 and result.n_layers == 2
    # Selected sets on every cell, plus one layer-matched and one uniform control on the diagonal.
    assert len(result.cells) == n * n + 2 * n == result.computed_cells
    assert result.cells.columns.tolist() == ablation_stage.CELL_COLUMNS
    assert result.matrix.shape == (n, n) and not result.matrix.isna().any().any()
    assert set(result.controls.relation) == {"self", "within", "across"}
    assert all(len(result.items_per_target[label]) <= 3 for label in result.tasks.label)
    p = ctx.params
    assert result.cache_folder.name.startswith(f"corrupted_5.0pct_3items_1controls-self_seed{p['seed']}_")
    assert len(list(result.cache_folder.glob("*.csv"))) == n
    # One cell recomputed directly.
    target = result.tasks.iloc[1]
    tokens = scoring.tokenize_task(ctx.model, ctx.suite[target.task], p["bos"])
    direct = ablation.ablate_target(ctx.model, tokens, result.items_per_target[target.label],
                                    {"s": result.source_sets[result.tasks.label[0]]}, batch_size=4, C=1.0, R=-1.0)
    cell = result.selected.set_index(["source", "target"]).loc[(result.tasks.label[0], target.label)]
    assert cell.accuracy == direct.accuracy[0] and cell.metric_change == pytest.approx(direct.metric_change[0])

    files = {name: ctx.paths.table(name).read_bytes() for name in ("ablation_cells.csv", "ablation_drop_5.csv")}
    summary = json.loads(ctx.paths.table("ablation_summary.json").read_text())
    again = ablation_stage.run(RunContext.of(ctx.params, ctx.paths.results.parents[3]))
    assert again.computed_cells == 0, "every target read back from the cache"
    assert again.seconds == 0.0 < result.seconds, "time spent computing only, as stage 7 counts it"
    pd.testing.assert_frame_equal(again.cells, result.cells)
    assert all(ctx.paths.table(name).read_bytes() == data for name, data in files.items())
    summary_again = json.loads(ctx.paths.table("ablation_summary.json").read_text())
    assert summary_again.pop("seconds_per_cell") is None and summary.pop("seconds_per_cell") > 0
    assert summary_again == summary


def test_ablation_stage_with_too_few_tasks(tiny_run):
    ctx = tiny_run
    summary = pd.read_csv(ctx.paths.table("eval_summary.csv"))
    save_table(summary.assign(passes=summary.task == TASKS[0]), ctx.paths.table("eval_summary.csv"))
    result = ablation_stage.run(ctx)
    assert not result.enough and result.matrix is None and result.cells.empty
    assert json.loads(ctx.paths.table("ablation_summary.json").read_text())["n_tasks"] == 1


# --------------------------------------------------------------------------- nnsight, one item


def nnsight_patched_logprobs(loaded, tokens, item: int, neurons: np.ndarray) -> np.ndarray:
    """Notebook 05's worked example: [LP′(y⁺), LP′(y⁻)] of one item, traced with nnsight, one
    sequence per trace, the set's neurons overwritten at every position by their corrupted values."""
    lm = loaded.lm
    layers, columns = sites.split_flat(neurons, loaded.d_ff)
    by_layer = {int(layer): torch.as_tensor(columns[layers == layer]) for layer in np.unique(layers)}

    def neurons_of(layer):
        envoy = lm
        for part in loaded.site_path("neurons", layer).split("."):
            envoy = envoy[int(part)] if part.isdigit() else getattr(envoy, part)
        return envoy.input

    out = []
    for answer in (tokens.correct[item], tokens.incorrect[item]):
        recorded = {}
        with lm.trace(torch.tensor([tokens.corrupted[item] + answer])):
            for layer, cols in by_layer.items():
                recorded[layer] = neurons_of(layer)[0, :, cols].save()
        with lm.trace(torch.tensor([tokens.clean[item] + answer])):
            for layer, cols in by_layer.items():
                neurons_of(layer)[0, :, cols] = recorded[layer]
            logits = lm.output.logits.save()
        logp = torch.log_softmax(logits[0].double(), dim=-1)
        start = len(tokens.clean[item]) - 1
        out.append(sum(logp[start + i, token].item() for i, token in enumerate(answer)))
    return np.array(out)


@pytest.mark.parametrize("family", ["llama", "gpt2"])
def test_nnsight_one_item_ablation_equals_the_library(tiny_models, family):
    loaded = tiny_models[family]
    # Equal-length prompts; two-token answers sharing their first token (one carrier sequence in the
    # library, whose last answer token is never run) and a longer one-token-answer item.
    tokens = scoring.TokenizedTask(
        "toy", "Lan",
        clean=[[5, 60, 700, 9000], [11, 12, 13, 14, 15, 16]],
        corrupted=[[5, 61, 701, 9000], [11, 12, 99, 14, 15, 17]],
        correct=[[33, 812], [40]], incorrect=[[33, 900], [41]])
    rng = np.random.default_rng(1)
    neurons = np.sort(rng.choice(loaded.n_layers * loaded.d_ff, 20, replace=False))
    library = ablation.ablation_logprobs(loaded, tokens, [0, 1], {"set": neurons}, batch_size=2)
    for column, item in enumerate((0, 1)):
        by_nnsight = nnsight_patched_logprobs(loaded, tokens, item, neurons)
        np.testing.assert_allclose(by_nnsight, library.patched[0, :, column], rtol=0, atol=1e-4)
        # The patch changes the log-probs: the comparison is not between two unpatched runs.
        assert np.abs(by_nnsight - library.unablated[:, column]).max() > 1e-3


# --------------------------------------------------------------------------- the notebooks, with data


def test_stage_notebooks_3_to_6_run_with_data(tiny_run, monkeypatch):
    """The lessons' worked examples (by hand, and the nnsight trace of notebook 05) execute and their
    asserts hold when there are tasks; test_notebooks.py covers the "no task passes" paths."""
    from modularity.running.runner import execute_stage

    ctx = tiny_run
    root = ctx.paths.results.parents[3]
    monkeypatch.setenv("MODULARITY_ROOT", str(root))
    for stage in ("03_overlap", "04_ari_permutation", "05_ablation", "06_beside_the_study"):
        notebook = execute_stage(stage, ctx.params, root=root)
        cells = json.loads(notebook.read_text())["cells"]
        errors = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", [])
                  if o.get("output_type") == "error"]
        assert not errors, f"{stage}: {errors[0]['ename']}: {errors[0]['evalue']}"
    assert ctx.paths.table("ablation_drop_5.csv").exists() and ctx.paths.table("tau_vs_study.csv").exists()


def test_statistics_stage_draws_the_studys_null_with_seed_42(tmp_path):
    """Stage 4 reproduces the study's permutation stream (default_rng(42)); another seed gives
    other p-values on a matrix without planted structure."""
    from modularity.science import stats

    params = validate_params({"model": "m", "run_name": "seeded", "tasks": TASKS, "n_items": 6,
                              "n_permutations": 300, "threads": 1})
    ctx = RunContext.of(params, tmp_path)
    labels = [f"{task.domain}/{name}" for name, task in ctx.suite.items()]
    rng = np.random.default_rng(3)
    values = rng.uniform(0, 0.2, (len(labels), len(labels)))
    values = (values + values.T) / 2
    np.fill_diagonal(values, 1.0)
    for pct in params["top_pcts"]:
        write_matrix_csv(pd.DataFrame(values, index=labels, columns=labels), ctx.paths.table(f"overlap_{pct:g}.csv"))
    result = statistics_stage.run(ctx)
    main = result.matrices[params["main_pct"]]
    at_42 = stats.within_cross_permutation(main, n_permutations=300, seed=42)["p"]
    assert result.test["p"] == at_42 != stats.within_cross_permutation(main, n_permutations=300, seed=0)["p"]
    per_domain_42 = stats.per_domain_modularity(main, n_permutations=300, seed=42)
    np.testing.assert_array_equal(result.per_domain.p, per_domain_42.p)


def test_ablation_stage_applies_stage_4s_rule_for_too_few_tasks(tiny_run):
    """Four tasks, three of one domain and one of another: stage 4 and 6 call the tests not
    computable, so stage 5 reports its means but no ratio and no p (as Gemma paper did: 30.3, p 0.63)."""
    ctx = tiny_run
    summary = pd.read_csv(ctx.paths.table("eval_summary.csv"))
    kept = TASKS[:3] + TASKS[6:7]  # MD ×3, Lan ×1
    save_table(summary.assign(passes=summary.task.isin(kept)), ctx.paths.table("eval_summary.csv"))
    result = ablation_stage.run(ctx)
    assert result.enough and len(result.tasks) == 4
    assert result.untestable and "4 tasks (MD 3, Lan 1)" in result.untestable
    for value in ablation_stage.VALUES:
        row = result.summary[value]
        assert np.isfinite(row["self"]) and np.isfinite(row["within"]) and np.isfinite(row["across"])
        assert np.isnan(row["ratio"]) and np.isnan(row["p"]) and np.isnan(row["delta"])
    saved = json.loads(ctx.paths.table("ablation_summary.json").read_text())
    assert saved["not_computed"] == result.untestable and np.isnan(saved["summary"]["drop"]["p"])
