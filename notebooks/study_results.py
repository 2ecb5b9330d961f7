# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The study's own results, recomputed
#
# **Question.** What does the study find for its six large models, and do its released files
# support the numbers it states?
#
# The study (Han, Andreas, Fedorenko & de Varda, 2026, *Modular Cognitive Architecture Emerges in
# Large Language Models*; code and data at `Pengrui-Han/LLM_Modularity`, MIT) ships, for each of
# its six instruction-tuned models (24B–123B parameters), the task × task overlap matrices, the
# ablation matrix and each task's evaluation figures. This project vendors those files unmodified
# under `data/external/llm_modularity/` (commit `e3ac7fb`, with the study's licence). Every number
# on this page is computed from them by `modularity` functions when the page executes; the only
# typed numbers are the study's own statements, in `data/study_claims.yaml`, which the last
# section checks one by one.
#
# **You will learn**
#
# * which tasks each model solves, and how that sets the size of each model's matrices;
# * the study's Fig 2: the averaged overlap matrix, its chord diagram, the within- vs
#   cross-domain test, the clustering and its ARI, and the ablation bars;
# * SI Tables 1–2, the threshold sweep and Kendall's τ across models, including where the
#   released files and the study's scripts disagree (legacy tasks, an unshipped average);
# * where each headline number comes from, with the `modularity stats` command that reproduces it.

# %% tags=["parameters"]
n_permutations = 10000  # label permutations for every permutation p (the study: 10,000, seed 42)

# %%
import numpy as np
import pandas as pd
from myst_nb import glue

from modularity.showing import charts
from modularity.science import overlap, stats, study
from modularity.science.tasks.schema import DOMAIN_NAMES

pd.set_option("display.precision", 3)
N = int(n_permutations)
assert N >= 1
models = [model.name for model in study.STUDY_MODELS]


def test_table(results: dict, columns=("within", "cross", "ratio", "p")) -> pd.DataFrame:
    """Rows of test results (name → dict) with p written as the study writes it."""
    table = pd.DataFrame(results).T[list(columns)]
    table["p"] = [stats.format_p(p, N) for p in table["p"]]
    return table

# %% [markdown]
# ## 1. What the files hold
#
# One row per model: how many tasks its evaluation files cover and pass the 60% filter, and how many
# tasks its overlap and ablation matrices hold. The matrices contain only the tasks that passed.

# %%
accuracy = study.baselines()
overlaps = study.overlap_matrices(0.1)
ablations_legacy = study.ablation_matrices(keep_legacy=True)
ablations = study.ablation_matrices(keep_legacy=False)
files = pd.DataFrame({
    "tasks evaluated": accuracy.groupby("model").size(),
    "tasks passing 60%": accuracy.groupby("model").passes.sum(),
    "overlap matrix": {name: len(m) for name, m in overlaps.items()},
    "ablation matrix (as shipped)": {name: len(m) for name, m in ablations_legacy.items()},
    "legacy tasks in it": {name: ", ".join(m.attrs["dropped_legacy"]) or "—" for name, m in ablations.items()},
}).loc[models]
files

# %% [markdown]
# Two things in this table differ from what one would expect, and the rest of the page handles both:
#
# * **Legacy tasks.** Five ablation files still hold `phys/material` and `phys/spatial`, tasks with no
#   data or config in the study's repository ({ref}`difference 4 <differs-4>`). The study's averaging drops them, but its
#   SI Table 1 and its ablation τ keep them. We show both versions where they matter.
# * **A passing task missing from the matrices.** Llama-3.1-70B passes one more task than its
#   matrices hold: its `number_sequence` evaluation file was overwritten in another format (no token
#   alignment) and the task never entered its attribution ({ref}`difference 6 <differs-6>`).

# %%
missing = {name: sorted(set(accuracy[(accuracy.model == name) & accuracy.passes].label) - set(overlaps[name].index))
           for name in models}
glue("passing_not_in_matrix", "; ".join(f"{k}: {', '.join(v)}" for k, v in missing.items() if v) or "none",
     display=False)
accuracy[accuracy.format != "attribution"][["model", "label", "n_total", "both_correct_accuracy", "format"]]

# %% [markdown]
# Passing tasks absent from a model's matrices: {glue:text}`passing_not_in_matrix`.
#
# ## 2. Which tasks each model solves (SI Fig 1)
#
# Both-correct accuracy: the share of token-aligned items where the model prefers the right answer
# after the clean prompt *and* switches to the other answer after the corrupted one.

# %%
charts.show(
    charts.accuracy_heatmap(accuracy.drop(columns="task").rename(columns={"label": "task", "both_correct_accuracy": "accuracy",
                                                     "n_both_correct": "n_both"}),
                            model_order=models, cell=13, title="Both-correct accuracy of the study's six models"),
    caption="Figure 1. Both-correct accuracy (%) per task and model, from the study's baselines.json files "
            "(SI Fig 1 layout). Red outlines: below the 60% filter, so the task is left out of that model's "
            "matrices. Hover a cell for the item counts.")

# %%
per_domain_items = accuracy.drop_duplicates("label").groupby("domain").n_total.sum()
kept = accuracy.pivot_table(index="domain", columns="model", values="passes", aggfunc="sum").loc[list(DOMAIN_NAMES), models]
kept.index = [DOMAIN_NAMES[d] for d in kept.index]
glue("n_items_total", f"{per_domain_items.sum():,}", display=False)
kept.rename_axis("tasks passing, per domain")

# %% [markdown]
# The study's 46 task files hold {glue:text}`n_items_total` minimal pairs in all (read from the
# `n_total` of the evaluation files). Formal reasoning is the domain the models drop most, yet every
# model keeps at least one task in every domain.
#
# ## 3. Do tasks of one domain share neurons? (Fig 2A)
#
# The six-model average of the top-0.1% overlap matrices, as the study shipped it. Each cell is
# |S_i ∩ S_j| / k, the share of task i's top neurons that task j also has ({ref}`methods §4 <methods-overlap>`; not Jaccard).

# %%
average = study.overlap_matrix("average", 0.1)
assert list(average.index) == list(average.columns) and np.allclose(np.diag(average), 1)
charts.show(charts.overlap_heatmap(average, title="Six-model average overlap, top 0.1%", cell=11),
            caption="Figure 2. Overlap |S_i ∩ S_j| / k of the top-0.1% neuron sets, averaged over the six "
                    "models (each cell over the models that kept both tasks). Domain blocks on the diagonal "
                    "are the modular structure; hover a cell for the pair and its value.")

# %% [markdown]
# The study's Fig 2A is a chord diagram. Its links match the **doubly-stochastic** average
# (Sinkhorn-normalised, diagonal zeroed; {ref}`methods §4 <methods-overlap>`, {ref}`methods §5 <methods-sinkhorn>`), not the raw average, although its title
# does not say so. We draw the same matrix with the same 5% cutoff and say which one it is.

# %%
ds_average = study.overlap_matrix("average", 0.1, doubly_stochastic=True)
upper = np.triu(np.ones(ds_average.shape, dtype=bool), k=1)
codes = np.array([overlap.domain_of(label) for label in ds_average.index])
linked = upper & (ds_average.to_numpy() >= 0.05)
within_links = int((linked & (codes[:, None] == codes[None, :])).sum())
glue("chord_links", f"{int(linked.sum())} links, {within_links} within a domain and "
     f"{int(linked.sum()) - within_links} across", display=False)
charts.show(charts.chord_diagram(ds_average, cutoff=0.05, title="Fig 2A: doubly-stochastic average, links ≥ 5%"),
            caption="Figure 3. Task pairs whose doubly-stochastic averaged overlap is at least 5%; width grows "
                    "with the value, colour marks a within-domain link, grey a cross-domain one.")

# %% [markdown]
# At the 5% cutoff the diagram has {glue:text}`chord_links`. Drawn from the raw average it would be
# much busier across domains, which is why the normalisation matters for the picture (and for nothing
# else: no test uses the doubly-stochastic matrices).
#
# ### Within- vs cross-domain overlap
#
# The test shuffles the task → domain labels (keeping domain sizes) and asks how often the shuffled
# within − cross difference reaches the observed one.

# %%
overlap_test = stats.within_cross_permutation(average, n_permutations=N, seed=42)
for key in ("within", "cross"):
    glue(f"ov_{key}", f"{100 * overlap_test[key]:.1f}%", display=False)
glue("ov_ratio", f"{overlap_test['ratio']:.2f}", display=False)
glue("ov_p", stats.format_p(overlap_test["p"], N), display=False)
test_table({"six-model average overlap, 0.1%": overlap_test})

# %% [markdown]
# Within a domain, tasks share {glue:text}`ov_within` of their top neurons on average; across
# domains {glue:text}`ov_cross`, a ratio of {glue:text}`ov_ratio` (permutation p
# {glue:text}`ov_p`).
#
# ### Does clustering recover the domains?
#
# The study's pipeline: symmetrise, keep each task's 5 strongest links (kNN graph), distance 1 − w,
# average linkage, cut into 4 clusters; then the adjusted Rand index (ARI) against the true domains,
# with a null that shuffles the labels against the fixed clustering ({ref}`methods §6 <methods-clustering>`).

# %%
ari = stats.ari_permutation(average, n_permutations=N, seed=42)
glue("ari", f"{ari['ari']:.3f}", display=False)
glue("ari_p", stats.format_p(ari["p"], N), display=False)
clusters = pd.DataFrame({"task": list(average.index), "cluster": [ari["clusters"][l] for l in average.index]})
clusters["domain"] = clusters.task.map(overlap.domain_of).map(DOMAIN_NAMES)
pd.crosstab(clusters.domain, clusters.cluster).rename_axis(index="domain", columns="cluster")

# %%
members = clusters.groupby("cluster").agg(tasks=("task", lambda t: ", ".join(l.split("/")[1] for l in t)),
                                         n=("task", "size"))
members

# %% [markdown]
# ARI = {glue:text}`ari` (p {glue:text}`ari_p`). The clusters are not the four domains exactly:
# Language is a cluster of its own, the two text-format physics tasks (`phys_newton`, `phys_prost`)
# join the formal tasks, and the seven few-shot physics tasks share a cluster with the three few-shot
# social tasks, which use the same "Context: … Answer:" prompt ({ref}`difference 9 <differs-9>`). Part of the structure
# follows prompt format, not domain.
#
# The ARI also depends on the number of neighbours in the graph, which the study fixed at 5:

# %%
sensitivity = pd.DataFrame([{"knn": k, **stats.clustering_scores(average, knn=k)} for k in range(3, 9)])
sensitivity[["knn", "ari", "nmi", "v_measure"]].set_index("knn")

# %% [markdown]
# ### Which layers hold each domain's neurons? (Fig 2B)
#
# Fig 2B counts, per relative depth, the neurons that belong to one domain's set only and those
# shared by several ({ref}`methods §12 <methods-composition>`, a selection rule of its own:
# {ref}`difference 11 <differs-11>`). It is made from the per-neuron attribution scores, which the
# study did not release, so it cannot be recomputed from its files: below is the study's own figure,
# unmodified. Each run of this book draws the same composition for its own model on its stage 3 page.
#
# :::{figure} ../data/external/llm_modularity/figures/fig2b_layer_composition.png
# :alt: Stacked bars per relative layer depth: few task-critical neurons before 40% depth, then counts of every domain and of shared neurons rising towards the last layers.
# :width: 100%
#
# The study's Fig 2B, as its repository ships it (`figures/fig2b_layer_composition.png` of
# [Pengrui-Han/LLM_Modularity](https://github.com/Pengrui-Han/LLM_Modularity), © 2026 Pengrui Han,
# MIT License; redistributed unmodified with that licence in `data/external/llm_modularity/`).
# Domain composition of the top-0.1% neurons per normalised layer, averaged over the six models;
# bar heights are log counts.
# :::

# %% [markdown]
# ## 4. Does ablating a domain's neurons hurt that domain? (Fig 2C)
#
# For a source task S and a target task T, S's top-0.1% neurons take their values from T's corrupted
# run while the model reads T's clean prompt; the cell is the drop in T's accuracy. The study used the
# six-model average of these matrices but did not ship it ({ref}`difference 5 <differs-5>`); it is regenerated here as
# its averaging script does (legacy tasks removed, each cell averaged over the models that have both
# tasks).

# %%
average_ablation = study.average_ablation()
ablation_test = stats.within_cross_permutation(average_ablation, n_permutations=N, seed=42)
for key in ("within", "cross"):
    glue(f"ab_{key}", f"{100 * ablation_test[key]:.1f}%", display=False)
glue("ab_ratio", f"{ablation_test['ratio']:.2f}", display=False)
glue("ab_p", stats.format_p(ablation_test["p"], N), display=False)
test_table({"six-model average ablation": ablation_test})

# %%
bars = stats.domain_bars(average_ablation)
charts.show(charts.domain_bars(bars, title="Fig 2C: accuracy drop by domain, six-model average"),
            caption="Figure 4. Mean accuracy drop (± SEM over task pairs) when a source task's top-0.1% neurons "
                    "are ablated: within a domain (source and target in D), D → others and others → D.")
wide = bars.pivot(index="domain", columns="kind", values="mean")[list(stats.BAR_KINDS)]
assert (wide["within"] > wide[["D→others", "others→D"]].max(axis=1)).all()
glue("bars_every_domain", "in every domain", display=False)

# %% [markdown]
# Ablating a task's neurons costs the other tasks of its domain {glue:text}`ab_within` of their
# accuracy on average, and tasks of other domains {glue:text}`ab_cross` (ratio {glue:text}`ab_ratio`,
# p {glue:text}`ab_p`). The within bar is the tallest {glue:text}`bars_every_domain`, in both
# cross-domain directions (the cell above asserts it).
#
# Each model's own ablation matrix (legacy tasks dropped), rows are sources and columns targets:

# %%
for name in models:
    charts.show(charts.overlap_heatmap(ablations[name], title=f"{name}: ablation drop (source → target)",
                                       value_label="accuracy drop", cell=8, show_diagonal=True),
                caption=f"Figure 5 ({name}). Accuracy drop of each target task (column) when the top-0.1% "
                        "neurons of each source task (row) are ablated; the diagonal is self-ablation.")

# %% [markdown]
# ## 5. Every model on its own (SI Table 1)
#
# Within, cross, ratio and permutation p of each model's overlap (0.1%) and ablation matrix. The
# study's table kept the legacy tasks in the ablation columns; the second table drops them. The last
# two rows are the mean and SD (ddof 1) across the six models.

# %%
def si_table_1(ablation_matrices):
    rows = pd.DataFrame({name: stats.model_summary(overlaps[name], ablation_matrices[name], n_permutations=N)
                         for name in models}).T.astype(float)
    return pd.concat([rows, stats.summarise_models(rows)])


def show_table_1(table):
    """Two blocks of columns (overlap, ablation): tasks, within, cross, ratio, largest p."""
    blocks = {kind: table[[f"n_tasks_{kind}", f"{kind}_within", f"{kind}_cross", f"{kind}_ratio", f"{kind}_p"]]
              .set_axis(["tasks", "within", "cross", "ratio", "p"], axis=1) for kind in ("overlap", "ablation")}
    shown = pd.concat(blocks, axis=1)
    for kind in blocks:
        shown[(kind, "p")] = [stats.format_p(p, N) if name in models else "" for name, p in shown[(kind, "p")].items()]
    formats = {(kind, column): f for kind in blocks
               for column, f in (("tasks", "{:.4g}"), ("within", "{:.3f}"), ("cross", "{:.3f}"), ("ratio", "{:.2f}"))}
    return shown.style.format(formats)


table_1_study = si_table_1(ablations_legacy)
table_1_clean = si_table_1(ablations)
show_table_1(table_1_study.rename_axis("as the study (legacy tasks kept)"))

# %%
show_table_1(table_1_clean.rename_axis("legacy tasks dropped"))

# %%
change = (table_1_clean - table_1_study).loc[models, ["ablation_within", "ablation_cross", "ablation_ratio"]]
glue("legacy_max_ratio_change", f"{change.ablation_ratio.abs().max():.2f}", display=False)
assert (table_1_study.loc[models, "overlap_p"] < 0.01).all() and (table_1_study.loc[models, "ablation_p"] < 0.01).all()

# %% [markdown]
# Every model shows the structure on its own, in overlap and in ablation (all p < 0.01, asserted).
# Dropping the legacy tasks moves a model's ablation ratio by at most
# {glue:text}`legacy_max_ratio_change`; the conclusion does not depend on them.
#
# ## 6. Every domain on its own (SI Table 2)
#
# On the averaged matrices: within_D over pairs inside domain D, cross_D over pairs with exactly one
# task in D (both directions), each with its own permutation p.

# %%
table_2 = pd.concat({"overlap (0.1%)": stats.per_domain_modularity(average, n_permutations=N),
                     "ablation": stats.per_domain_modularity(average_ablation, n_permutations=N)})
table_2["domain"] = table_2.domain.map(DOMAIN_NAMES)
table_2["p"] = [stats.format_p(p, N) for p in table_2.p]
weakest = table_2.loc["ablation"].sort_values("ratio").iloc[0]
glue("weakest_domain", f"{weakest.domain} (ablation ratio {weakest.ratio:.2f}, p {weakest.p})", display=False)
table_2.droplevel(1).set_index("domain", append=True).drop(columns="delta")

# %% [markdown]
# Every domain is more modular than chance in overlap. In ablation the weakest is
# {glue:text}`weakest_domain`: with 9 tasks, a permutation test on one domain has little power.
#
# ## 7. Does the threshold matter? (SI §4)
#
# The same tests on the averaged overlap at the four thresholds the study shipped, and Kendall's τ
# between the six models' matrices at each threshold (upper triangle, tasks common to all six).

# %%
sweep = stats.threshold_sweep({pct: study.overlap_matrix("average", pct) for pct in study.PCTS},
                              per_model_by_pct={pct: study.overlap_matrices(pct) for pct in study.PCTS},
                              n_permutations=N)
long = sweep.melt(id_vars="pct", value_vars=["ratio", "ari", "silhouette", "tau_mean"],
                  var_name="metric", value_name="value")
charts.show(charts.threshold_sweep(long), caption="Figure 6. Within/cross ratio, ARI, silhouette of the true "
            "domains and mean pairwise Kendall τ against the top-k% threshold (six-model average).")
sweep.set_index("pct")[["ratio", "p", "ari", "nmi", "silhouette", "tau_mean", "tau_sd", "n_common_tasks"]]

# %% [markdown]
# ## 8. Do the models agree? Kendall's τ
#
# Kendall's τ-b between two models' matrices, over the same cells: all off-diagonal directed cells for
# ablation, the upper triangle for overlap. The study compared every pair on the tasks common to
# **all six** models; comparing each pair on the tasks the two share keeps more cells. Both are shown,
# for ablation with and without the legacy tasks.

# %%
def tau_row(matrices, mode, common, ddof):
    pairs = stats.kendall_tau_pairs(matrices, mode=mode, common=common)
    summary = stats.kendall_summary(pairs, ddof=ddof)
    return {"τ mean": summary["tau_mean"], "τ SD": summary["tau_sd"], "τ min": summary["tau_min"],
            "τ max": summary["tau_max"], "largest p": f"{summary['p_max']:.1e}",
            "tasks per pair": f"{pairs.n_tasks.min()}–{pairs.n_tasks.max()}"}

tau = pd.DataFrame({
    (kind, common): tau_row(matrices, mode, common, ddof)
    for kind, matrices, mode, ddof in (("ablation, legacy kept (study)", ablations_legacy, "directed", 0),
                                       ("ablation, legacy dropped", ablations, "directed", 0),
                                       ("overlap 0.1%", overlaps, "upper", 1))
    for common in ("all", "pair")}).T.rename_axis(["matrix", "common tasks"])
tau

# %% [markdown]
# The SD uses ddof 0 for ablation and ddof 1 for overlap, as the study's two scripts do. Agreement is
# high whichever convention is used.
#
# ## 9. The control: GPT-2
#
# The study ran GPT-2 (124M) through the same pipeline without the inclusion filter. Ten of its tasks
# have no both-correct item at all, so their neuron sets are empty and their rows are zeros
# ({ref}`methods §3 <methods-attribution>`). On the tasks with a neuron set:

# %%
gpt2 = study.overlap_matrix(study.CONTROL_MODEL.name, 0.1)
has_set = np.diag(gpt2) > 0
gpt2_used = gpt2.loc[has_set, has_set]
gpt2_test = stats.within_cross_permutation(gpt2_used, n_permutations=N, seed=42)
gpt2_ari = stats.ari_permutation(gpt2_used, n_permutations=N, seed=42)
glue("gpt2_summary", f"{int(has_set.sum())} tasks with a neuron set, overlap ratio {gpt2_test['ratio']:.2f} "
     f"(p {stats.format_p(gpt2_test['p'], N)}), ARI {gpt2_ari['ari']:.2f} (p {stats.format_p(gpt2_ari['p'], N)})",
     display=False)
test_table(stats.per_domain_modularity(gpt2_used, n_permutations=N)
           .assign(domain=lambda t: t.domain.map(DOMAIN_NAMES)).set_index("domain").T.to_dict())

# %% [markdown]
# GPT-2: {glue:text}`gpt2_summary`. The per-domain table shows where its structure lies; the study
# reads it as a language / non-language split.
#
# ## 10. The stated numbers, side by side
#
# Each row: what the study states (project page; `data/study_claims.yaml` names the place), what this
# page computes from the released files, the difference, and the command that reproduces the
# computed value from the repository root with `R=data/external/llm_modularity/results`
# (`tests/test_study.py` runs every command and compares).

# %%
side_by_side = study.compare_claims(study.claims(), study.headline_numbers(n_permutations=N))
glue("n_claims", str(len(side_by_side)), display=False)
glue("n_agree", str(int(side_by_side.agrees.sum())), display=False)
glue("disagreeing", "; ".join(f"{row.quantity}: stated {row.stated}, computed {row.computed:.3f}"
                              for row in side_by_side[~side_by_side.agrees].itertuples()) or "none", display=False)
side_by_side.drop(columns="command").style.format({"computed": "{:.4g}", "difference": "{:+.4f}"}, na_rep="—")

# %%
for row in side_by_side.drop_duplicates("command").itertuples():
    print(row.command)

# %% [markdown]
# {glue:text}`n_agree` of the {glue:text}`n_claims` stated numbers agree with the files to the
# precision they are stated with. The exception: {glue:text}`disagreeing`. With ddof 0 instead of 1
# the SD of the overlap τ rounds to the stated value, so the statement probably used the population SD;
# the mean agrees.
#
# ## Interpretation notes
#
# * The released files reproduce the study's headline numbers. What they cannot show is how robust
#   those numbers are to choices the study fixed: the kNN parameter of the clustering (section 3), the
#   prompt formats shared across domains, and the item sets (the study's task files contain exact
#   duplicates and items whose answers are equal; see the task chapter).
# * The averaged ablation matrix had to be regenerated; the legacy tasks change SI Table 1's ablation
#   columns a little and the conclusions not at all.
# * The next pages run the same pipeline on two models 100–1000× smaller. Each run's pages place it
#   beside these six models.
