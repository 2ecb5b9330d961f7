"""The localizer (#15): its stimuli, Welch t against scipy, planted structure recovered, the
within/across test by brute force, mean activations against a traced forward, and stage 7 on a
tiny model end to end (with its cache) and its notebook with data."""
from __future__ import annotations

import json
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import ttest_ind

from modularity.science import localizer, overlap, sites, stats
from modularity.stages import localizer as stage
from modularity.stages import scores
from modularity.stages.context import RunContext
from modularity.science.tasks import localizer as stimuli_module
from modularity.science.tasks.localizer import CONTRASTS, localizer_stimuli, localizer_suite, nonword_string, pseudoword
from modularity.science.tasks.schema import DOMAINS

# --------------------------------------------------------------------------- stimuli


def test_stimuli_are_deterministic_distinct_and_counted():
    suite = localizer_suite(32, seed=0)
    assert list(suite) == list(DOMAINS) and set(CONTRASTS) == set(DOMAINS)
    again = localizer_suite(32, seed=0)
    for domain, s in suite.items():
        assert s.n == 32 == len(s.control)
        assert len(set(s.localized)) == 32 and len(set(s.control)) == 32, "distinct within a condition"
        assert not set(s.localized) & set(s.control)
        assert s == again[domain], "same seed, same stimuli"
        assert s.localized != localizer_stimuli(domain, 32, seed=1).localized, "another seed, other stimuli"
    assert localizer_stimuli("Lan", 8, 0).localized == suite["Lan"].localized[:8], "a prefix of a longer draw"
    with pytest.raises(ValueError, match="unknown domain"):
        localizer_stimuli("Vision", 4)


def test_language_pseudowords_match_the_sentence_and_are_not_words():
    s = localizer_stimuli("Lan", 64, 0)
    vocabulary = stimuli_module._real_words()
    vowel = re.compile("[aeiou]")
    for sentence, string in zip(s.localized, s.control):
        words, nonwords = sentence.split(" "), string.split(" ")
        assert len(words) == len(nonwords)
        for word, nonword in zip(words, nonwords):
            letters, fake = re.sub(r"\W", "", word), re.sub(r"\W", "", nonword)
            assert len(fake) == max(len(letters), 2)
            assert re.sub(r"\w", "", word) == re.sub(r"\w", "", nonword), "punctuation kept"
            assert word[0].isupper() == nonword[0].isupper(), "capitalisation kept"
            assert vowel.search(fake.lower()), "pronounceable: every pseudoword has a vowel"
            assert fake.lower() not in vocabulary
    rng = __import__("random").Random(0)
    assert all(len(pseudoword(rng, n)) == max(n, 2) for n in range(1, 12))
    assert nonword_string(rng, "Tom saw it.").endswith(".")


def test_formal_control_is_the_same_numbers_without_operations():
    s = localizer_stimuli("MD", 64, 0)
    for statement, numbers in zip(s.localized, s.control):
        lines = statement.split("\n")
        assert len(lines) == 3 == len(numbers.split("\n"))
        assert not re.search(r"[+*=]| - |plus|minus|times|equals", numbers)
        for line, listed in zip(lines, numbers.split("\n")):
            if line[0].isdigit():  # digits: the value is right and the numbers are the same
                left, right = line.split(" = ")
                assert eval(left) == int(right)
                assert re.findall(r"\d+", line) == listed.split(", ")
            else:
                kept = re.sub(r" (plus|minus|times|equals) ", ", ", line)
                assert kept == listed


def test_social_pairs_share_object_places_and_structure():
    s = localizer_stimuli("ToM", 64, 0)
    names = set(__import__("modularity.science.tasks.base", fromlist=["content"]).content("small_completion")["names"])
    for belief, photo in zip(s.localized, s.control):
        assert belief.count(".") == photo.count(".") == 3
        nouns = lambda text: re.findall(r"the (\w+)", text)  # noqa: E731
        assert set(nouns(belief)) == set(nouns(photo))
        assert any(name in belief.split() for name in names) and not any(name in photo.split() for name in names)


def test_physical_scenes_and_controls():
    s = localizer_stimuli("phys", 64, 0)
    outcomes = {o for pair in stimuli_module.content("localizer")["physical"]["outcomes"].values() for o in pair.values()}
    for scene, description in zip(s.localized, s.control):
        assert sum(o in scene for o in outcomes) == 2, "two scenes, each with its outcome"
        assert not any(o in description for o in outcomes)


# --------------------------------------------------------------------------- t and sets


def test_welch_t_matches_scipy_neuron_by_neuron():
    rng = np.random.default_rng(0)
    a = rng.normal(0.3, 1.0, size=(20, 50))
    b = rng.normal(0.0, 2.0, size=(13, 50))
    t = localizer.welch_t(a, b)
    expected = [ttest_ind(a[:, j], b[:, j], equal_var=False).statistic for j in range(50)]
    np.testing.assert_allclose(t, expected, rtol=1e-12)
    np.testing.assert_allclose(localizer.welch_t(torch.tensor(a), torch.tensor(b)), t, rtol=1e-12)
    # By the formula, too.
    by_hand = (a.mean(0) - b.mean(0)) / np.sqrt(a.var(0, ddof=1) / 20 + b.var(0, ddof=1) / 13)
    np.testing.assert_allclose(t, by_hand, rtol=1e-10)


def test_welch_t_zero_variance_neurons():
    a = np.array([[1.0, 2.0, 0.0], [1.0, 2.0, 1.0], [1.0, 2.0, 2.0]])
    b = np.array([[1.0, 0.0, 0.0], [1.0, 0.0, 1.0]])
    t = localizer.welch_t(a, b)
    assert t[0] == 0.0, "no variance and equal means: 0, not NaN"
    assert t[1] == np.inf, "no variance, different means: a perfect separation"
    assert np.isfinite(t[2])
    with pytest.raises(ValueError, match="two texts per condition"):
        localizer.welch_t(a[:1], b)


def test_planted_units_are_recovered():
    """Synthetic activations: each domain's 20 planted neurons are shifted in its localized condition."""
    rng = np.random.default_rng(1)
    n_neurons, n_texts, pct = 4000, 40, 0.5  # k = 20
    planted = {domain: rng.choice(n_neurons, 20, replace=False) for domain in DOMAINS}
    sets = {}
    for domain, units in planted.items():
        localized = rng.normal(size=(n_texts, n_neurons))
        control = rng.normal(size=(n_texts, n_neurons))
        localized[:, units] += 1.5
        sets[domain] = localizer.localized_set(localizer.welch_t(localized, control), pct)
        assert sets[domain].size == overlap.top_k_count(n_neurons, pct) == 20
        assert len(set(sets[domain].tolist()) & set(units.tolist())) >= 18
    # Tasks whose attribution sets contain their domain's planted units: within ≫ across, p small.
    task_sets = {f"{d}/t{i}": np.concatenate([planted[d][:12], rng.choice(n_neurons, 8, replace=False)])
                 for d in DOMAINS for i in range(3)}
    matrix = localizer.set_task_matrix(sets, task_sets, 20)
    assert matrix.shape == (4, 12) and list(matrix.index) == list(DOMAINS)
    table, overall = localizer.within_across(matrix, n_permutations=500, seed=0)
    assert overall["within"] > 0.5 > 0.1 > overall["across"] and overall["p"] < 0.01
    assert (table.within > table.across).all()


def test_within_across_matches_brute_force():
    rng = np.random.default_rng(2)
    labels = [f"{d}/t{i}" for d, n in (("MD", 2), ("ToM", 3), ("phys", 1), ("Lan", 3)) for i in range(n)]
    matrix = pd.DataFrame(rng.uniform(size=(4, len(labels))), index=list(DOMAINS), columns=labels)
    matrix.iloc[1, 3] = np.nan
    table, overall = localizer.within_across(matrix, n_permutations=300, seed=5)
    codes = np.array([label.split("/")[0] for label in labels])

    def statistics(domains):
        values = matrix.to_numpy()
        per = {}
        own_all, other_all = [], []
        for row, domain in enumerate(matrix.index):
            own = values[row, domains == domain]
            other = values[row, domains != domain]
            own, other = own[np.isfinite(own)], other[np.isfinite(other)]
            per[domain] = own.mean() - other.mean() if own.size else np.nan
            own_all += own.tolist()
            other_all += other.tolist()
        return per, np.mean(own_all) - np.mean(other_all)

    observed, observed_all = statistics(codes)
    nulls = [statistics(codes[p]) for p in stats.permutation_indices(len(codes), 300, 5)]
    for row in table.itertuples():
        assert row.delta == pytest.approx(observed[row.domain])
        expected_p = (sum(n[0][row.domain] >= observed[row.domain] - 1e-12 for n in nulls) + 1) / 301
        assert row.p == pytest.approx(expected_p)
    assert overall["delta"] == pytest.approx(observed_all)
    assert overall["p"] == pytest.approx((sum(n[1] >= observed_all - 1e-12 for n in nulls) + 1) / 301)
    assert table.set_index("domain").loc["MD", "n_tasks"] == 2


def test_own_other_bars_and_agreement():
    labels = ["MD/a", "MD/b", "ToM/c", "Lan/d"]
    matrix = pd.DataFrame([[0.5, 0.7, 0.1, 0.0], [0.0, 0.1, 0.9, 0.1], [0.2, 0.2, 0.2, 0.2], [0.1, 0.0, 0.0, 0.8]],
                          index=list(DOMAINS), columns=labels)
    bars = localizer.own_other_bars(matrix).set_index(["domain", "kind"])
    assert bars.loc[("MD", "within"), "mean"] == pytest.approx(0.6) and bars.loc[("MD", "within"), "n"] == 2
    assert bars.loc[("MD", "D→others"), "mean"] == pytest.approx(0.05)
    assert bars.loc[("MD", "others→D"), "mean"] == pytest.approx((0.0 + 0.1 + 0.2 + 0.2 + 0.1 + 0.0) / 6)
    assert bars.loc[("phys", "within"), "n"] == 0
    mine = pd.DataFrame({"domain": ["MD", "ToM", "phys"], "within": [0.6, 0.1, np.nan], "across": [0.1, 0.3, 0.2],
                         "p": [0.01, 0.9, np.nan]})
    theirs = pd.DataFrame({"domain": ["MD", "ToM"], "within": [0.5, 0.4], "cross": [0.1, 0.1], "p": [0.02, 0.01]})
    table = localizer.agreement({"overlap": mine}, {"overlap": theirs}).set_index("domain")
    assert table.loc["MD", "agree"] is True and table.loc["MD", "localizer"] == "own > other"
    assert table.loc["ToM", "agree"] is False and table.loc["ToM", "localizer"] == "not shown"
    assert table.loc["phys", "agree"] is None and table.loc["phys", "attribution"] == "n/a"
    assert localizer.agreement({"ablation": mine}, {}).agree.isna().all()


# --------------------------------------------------------------------------- activations


def test_pooling_masks_leave_out_special_tokens():
    class Tokenizer:
        bos_token, all_special_ids = "<s>", [1]

        def __call__(self, text, add_special_tokens=True):
            ids = [10 + len(word) for word in text.split()]
            return SimpleNamespace(input_ids=([1] if add_special_tokens else []) + ids)

    ids, masks = localizer.pooling_masks(Tokenizer(), ["a bb ccc"], bos="model")
    assert ids == [[1, 11, 12, 13]] and masks[0].tolist() == [False, True, True, True]
    ids, masks = localizer.pooling_masks(Tokenizer(), ["a bb"], bos="study")
    assert ids == [[11, 12]] and masks[0].all()


@pytest.mark.parametrize("family", ["llama", "gemma3"])
def test_mean_activations_equal_one_text_at_a_time(tiny_models, family):
    loaded = tiny_models[family]
    texts = ["The cat sat on the mat.", "Blick dax wug.", "A much longer text with many more words in it than the rest."]
    batched = localizer.mean_activations(loaded, texts, batch_size=2)
    assert batched.shape == (3, loaded.n_layers * loaded.d_ff) and batched.dtype == torch.float32
    for row, text in enumerate(texts):
        ids, masks = localizer.pooling_masks(loaded.tokenizer, [text])
        with sites.record_at(loaded.site_modules("neurons")) as recorded:  # unpadded, one text
            loaded.model.base_model(input_ids=torch.tensor(ids), use_cache=False)
        keep = torch.as_tensor(masks[0])
        alone = torch.cat([recorded[layer][0][keep].double().mean(0) for layer in range(loaded.n_layers)]).float()
        torch.testing.assert_close(batched[row], alone, rtol=1e-4, atol=1e-5)


def test_nnsight_traced_means_equal_the_library(tiny_models):
    """Notebook 07's worked example: the neuron site's mean over a text, traced with nnsight."""
    import nnsight

    loaded = tiny_models["llama"]
    lm, texts = loaded.lm, ["Sam bought a red lamp.", "Zo fap traim."]
    fast = localizer.mean_activations(loaded, texts)
    for row, text in enumerate(texts):
        ids, masks = localizer.pooling_masks(loaded.tokenizer, [text])
        with lm.trace(torch.tensor(ids)):
            values = nnsight.save([lm.get(loaded.site_path("neurons", layer) + ".input")[0]
                                   for layer in range(loaded.n_layers)])
        keep = torch.as_tensor(masks[0])
        traced = torch.stack([v[keep].double().mean(0) for v in values]).flatten().float()
        torch.testing.assert_close(traced, fast[row], rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------- stage 7


@pytest.fixture
def localizer_run(tiny_model_dirs, tiny_models, tmp_path):
    """The planted tiny-llama run of the stage 3–6 tests, with 8 localizer stimuli per condition."""
    from test_stage_overlap_statistics_ablation import planted_run

    from modularity.science import scoring

    loaded = tiny_models["llama"]
    params = dict(top_pcts=[1.0, 5.0], main_pct=5.0, ablation_items=3, n_random_controls=1, batch_size=4,
                  localizer_items=8)
    probe = planted_run(tmp_path, str(tiny_model_dirs["llama"]), (loaded.n_layers, loaded.d_ff), **params)
    aligned = {name: scoring.tokenize_task(loaded, task).aligned for name, task in probe.suite.items()}
    return planted_run(tmp_path, str(tiny_model_dirs["llama"]), (loaded.n_layers, loaded.d_ff), aligned, **params)


def test_localizer_stage_end_to_end_and_from_its_cache(localizer_run):
    ctx = localizer_run
    result = stage.run(ctx)
    n_tasks = 9
    assert result.enough and result.k == 6 and result.n_neurons == 128
    assert set(result.sets) == set(DOMAINS) and all(s.size == 6 for s in result.sets.values())
    for domain, s in result.sets.items():  # the top-k by t, recomputed from the cached activations
        assert set(s.tolist()) == set(np.argsort(-result.t[domain], kind="stable")[:6].tolist())
    assert result.overlap_matrix.shape == (4, n_tasks) and list(result.overlap_matrix.index) == list(DOMAINS)
    assert set(result.overlap.pct) == {1.0, 5.0} and len(result.overlap) == 2 * 4 * n_tasks
    # One overlap cell by hand.
    label = result.tasks.label[0]
    attributed = overlap.top_positive_set(scores.load_scores(ctx, result.tasks.task[0]), 5.0)
    assert result.overlap_matrix.loc["Lan", label] == len(set(attributed) & set(result.sets["Lan"])) / 6
    # Every localized set on every task; each domain's random set on its own domain's tasks.
    assert len(result.cells) == 4 * n_tasks + stage.CONTROL_DRAWS * n_tasks == result.computed["ablation_cells"]
    assert result.cells.columns.tolist() == stage.CELL_COLUMNS
    assert set(result.cells.relation) == {"within", "across"}
    assert set(result.cells[result.cells.kind == "layer_matched"].relation) == {"within"}
    assert result.control_within.across.isna().all()
    assert result.ablation_matrix.shape == (4, n_tasks)
    assert np.isnan(result.overlap_within.set_index("domain").loc["phys", "within"]), "no physical task here"
    assert set(result.agreement.measure) == {"overlap", "ablation"} and len(result.agreement) == 8
    assert result.notes == ["stage 05_ablation has not run: the agreement table has no attribution ablation"]
    summary = json.loads(ctx.paths.table("localizer_summary.json").read_text())
    assert summary["k"] == 6 and summary["seconds_per_ablation_cell"] > 0
    assert summary["overlap"]["overall"]["p"] == pytest.approx(result.overlap_overall["p"])

    files = {name: ctx.paths.table(name).read_bytes() for name in
             ("localizer_sets.csv", "localizer_overlap.csv", "localizer_ablation_cells.csv", "localizer_agreement.csv")}
    again = stage.run(RunContext.of(ctx.params, ctx.paths.results.parents[3]))
    assert again.computed["ablation_cells"] == 0 and again.seconds == {"activations": 0.0, "ablation": 0.0}
    assert all(ctx.paths.table(name).read_bytes() == data for name, data in files.items())
    pd.testing.assert_frame_equal(again.cells, result.cells)


def test_localizer_stage_reads_stage_5_for_the_agreement(localizer_run):
    from modularity.stages import ablation as ablation_stage

    ablation_stage.run(localizer_run)
    result = stage.run(localizer_run)
    assert result.notes == [] and len(result.attribution_ablation) == 3  # MD, ToM, Lan
    rows = result.agreement[result.agreement.measure == "ablation"].set_index("domain")
    assert np.isfinite(rows.loc["MD", "attribution_within"])


def test_localizer_stage_without_attributed_tasks_keeps_the_sets(localizer_run):
    ctx = localizer_run
    summary = pd.read_csv(ctx.paths.table("eval_summary.csv"))
    from modularity.records.store import save_table

    save_table(summary.assign(passes=False), ctx.paths.table("eval_summary.csv"))
    result = stage.run(ctx)
    assert not result.enough and len(result.sets) == 4 and result.cells.empty
    assert "nothing to compare" in result.notes[0]
    assert sorted(p.name for p in result.written) == ["localizer_sets.csv", "localizer_summary.json",
                                                      "localizer_units.csv"]
    units = pd.read_csv(ctx.paths.table("localizer_units.csv"))
    assert {domain: set(part.flat) for domain, part in units.groupby("domain")} == {
        domain: set(chosen.tolist()) for domain, chosen in result.sets.items()}
    assert (units.flat == units.layer * result.d_ff + units.neuron).all()


def test_localizer_notebook_runs_with_data(localizer_run, monkeypatch):
    """Notebook 07 with tasks: the nnsight worked example's asserts hold and every section runs."""
    from modularity.running.runner import execute_stage

    root = localizer_run.paths.results.parents[3]
    monkeypatch.setenv("MODULARITY_ROOT", str(root))
    notebook = execute_stage("07_localizer", localizer_run.params, root=root)
    cells = json.loads(notebook.read_text())["cells"]
    errors = [o for c in cells if c["cell_type"] == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{errors[0]['ename']}: {errors[0]['evalue']}"
    text = json.dumps(cells)
    assert "traced and batched means agree" in text and "Figure 7." in text


def test_localizer_controls_on_every_cell(localizer_run):
    ctx = RunContext.of({**localizer_run.params, "ablation_control_cells": "all"}, localizer_run.paths.results.parents[3])
    result = stage.run(ctx)
    assert len(result.cells) == 4 * 9 * (1 + stage.CONTROL_DRAWS)
    assert np.isfinite(result.ablation_overall["control_across"])
    assert json.loads(ctx.paths.table("localizer_summary.json").read_text())["ablation"]["control_cells"] == "all"


def test_within_across_corrects_the_domains_by_holm_not_bonferroni():
    from statsmodels.stats.multitest import multipletests

    rng = np.random.default_rng(4)
    labels = [f"{d}/t{i}" for d, n in (("MD", 3), ("ToM", 3), ("phys", 3), ("Lan", 3)) for i in range(n)]
    matrix = pd.DataFrame(rng.uniform(size=(4, len(labels))), index=list(DOMAINS), columns=labels)
    matrix.iloc[0, :3] += 0.4  # MD's set favours MD's tasks: p values spread out
    table, _ = localizer.within_across(matrix, n_permutations=400, seed=1)
    holm = multipletests(table.p, method="holm")[1]
    np.testing.assert_allclose(table.p_holm, holm)
    assert not np.allclose(holm, multipletests(table.p, method="bonferroni")[1]), "the example tells them apart"
