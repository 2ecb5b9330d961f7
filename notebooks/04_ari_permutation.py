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
# # Stage 4 · Statistics: is the overlap structure modular beyond chance?
#
# **Question.** Is within-domain overlap larger than cross-domain overlap by more than a random
# assignment of tasks to domains would give, and can the four domains be recovered by clustering the
# tasks on their overlap alone?
#
# **You will learn**
#
# * the label-permutation test of within − cross overlap ({ref}`methods §6 <methods-clustering>`), overall and per domain (§9);
# * the study's clustering pipeline — kNN-5 graph, distance 1 − w, average linkage, one cluster per
#   domain — and its adjusted Rand index (ARI) against a permutation null;
# * how much these conclusions depend on the top-k% threshold ({ref}`methods §9 <methods-summaries>`).

# %% tags=["parameters"]
model = None  # embedded alias, local directory/.gguf, or Hugging Face id
run_name = None  # results folder name; default derived from model
profile = 'small'  # task difficulty profile
data_dir = None  # study-layout data directory to use instead of generated tasks
tasks = 'all'  # 'all' or a list of task keys
n_items = 100  # items generated per task
seed = 0  # seed for task generation and random controls
dtype = 'float32'  # weights/activations dtype
device = 'cpu'  # 'cpu', 'cuda', 'cuda:N' or 'auto'
batch_size = 16  # sequences per forward pass
backend = 'hooks'  # how activations are read and patched: torch hooks, or nnsight traces
remote = False  # with backend nnsight: execute the traces on the hosted service (NDIF)
threads = 0  # CPU threads for torch; 0 keeps torch's default (1 is faster on a busy machine)
bos = 'model'  # 'model': tokenizer's own BOS; 'study': never (book methods, difference 10)
threshold = 0.6  # inclusion filter on both-correct accuracy
stop_early = True  # stop scoring a task once it can no longer reach threshold (same decision)
metric = 'paper'  # attribution metric
attribution_items = 0  # max both-correct items per task for attribution, 0 means all
verify_tasks = 3  # tasks on which attribution is checked against exact patching
verify_neurons = 20  # neurons per checked task (top by score, plus as many random)
top_pcts = [0.05, 0.1, 1.0, 5.0]  # top-k% thresholds for the overlap sweep
main_pct = 0.1  # top-k% used for overlap statistics and ablation
n_permutations = 10000  # label permutations for p-values
knn = 5  # k of the kNN graph used for clustering
ablation_items = 32  # max both-correct items per target task for ablation
ablation_mode = 'corrupted'  # ablation values
n_random_controls = 3  # random neuron sets per control type
ablation_control_cells = 'self'  # cells that get random controls: self, within or all
localizer_items = 64  # localizer stimuli per condition and domain

# %%
from modularity.stages.context import RunContext

ctx = RunContext.from_notebook(globals())
ctx.settings("model", "profile", "main_pct", "top_pcts", "n_permutations", "knn")

# %%
import numpy as np
import pandas as pd
from myst_nb import glue

from modularity.showing import charts, findings, tables
from modularity.science import overlap, stats, surface
from IPython.display import Markdown
from modularity import stages
from modularity.science.tasks.schema import DOMAINS

N_PERMUTATIONS = ctx.params["n_permutations"]

# %% [markdown]
# ## 1. By hand: the test statistic and one shuffle
#
# The statistic is Δ = mean overlap of pairs in the same domain − mean overlap of pairs in different
# domains (diagonal excluded). If domains did not matter, any relabelling of the tasks that keeps the
# domain sizes would give a Δ as large. So we shuffle the labels, recompute Δ, and count. Overlap
# fractions are multiples of 1/k, so many shuffles can give exactly the observed Δ: those count as
# reaching it. Summed in another order, equal values can differ in their 16th digit, so "equal"
# means within a billionth of the largest overlap (`stats.TIE_RTOL`).

# %%
main = stages.statistics.overlap_matrices(ctx).get(ctx.params["main_pct"])
domains = np.array([overlap.domain_of(label) for label in main.index]) if main is not None else np.array([])
counts = pd.Series(domains).value_counts()
testable = main is not None and stats.testable(main)  # a within and a cross pair exist
print(f"{len(domains)} tasks in {len(counts)} domains: " + ", ".join(f"{d} {n}" for d, n in counts.items()))


def within_minus_cross(labels: np.ndarray) -> float:
    values, same = main.to_numpy(), labels[:, None] == labels[None, :]
    usable = np.isfinite(values) & ~np.eye(len(labels), dtype=bool)  # off-diagonal cells that exist
    return values[usable & same].mean() - values[usable & ~same].mean()


# %%
if testable:
    rng = np.random.default_rng(42)  # the study's seed
    observed, shuffled = within_minus_cross(domains), rng.permutation(domains)
    display(tables.for_reading(pd.DataFrame({"task": [label.split("/", 1)[-1] for label in main.index],
                                             "true domain": domains, "after one shuffle": shuffled})))
    print(f"Δ observed = {observed:.4f}; Δ after this shuffle = {within_minus_cross(shuffled):.4f}")
    null = np.array([within_minus_cross(shuffled)] + [within_minus_cross(rng.permutation(domains))
                                                      for _ in range(N_PERMUTATIONS - 1)])
    # A shuffle equal to the observed Δ in exact arithmetic reaches it, whatever order the sums took.
    tie_tolerance = stats.TIE_RTOL * np.nanmax(np.abs(main.to_numpy()))
    reached = int(np.sum(null >= observed - tie_tolerance))
    p_by_hand = (reached + 1) / (N_PERMUTATIONS + 1)
    print(f"{reached} of {N_PERMUTATIONS} shuffles reach it: p = {p_by_hand:.4g}")

# %% [markdown]
# ## 2. The stage: the tests, the clustering, the sweep
#
# `stages.statistics.run(ctx)` runs this test (vectorised, same seed, same draws), the per-domain tests, the
# clustering and its ARI, places the run beside the study's models, repeats the tests at every
# threshold, and saves the tables.

# %%
result = stages.statistics.run(ctx)
glue("n_stats_tasks", len(result.labels), display=False)
if not result.testable:
    print("Too few tasks for the tests (needs ≥ 4 tasks and ≥ 2 domains with ≥ 2 tasks each); "
          "the tables below stay empty.")
else:  # the same statistic and the same shuffles, summed in another order
    agreement = pd.DataFrame({"by hand": [observed, p_by_hand], "stage": [result.test["delta"], result.test["p"]]},
                             index=["Δ observed", "p"])
    agreement["|difference|"] = (agreement["by hand"] - agreement["stage"]).abs()
    agreement["held to"] = [tie_tolerance, 1 / (N_PERMUTATIONS + 1)]  # Δ: the tie tolerance; p: one shuffle
    display(tables.for_reading(agreement))
    assert (agreement["|difference|"] <= agreement["held to"]).all(), agreement

# %% [markdown]
# ## 3. Within- vs cross-domain, overall and per domain
#
# The first row tests all tasks together. Per domain D: within_D over pairs inside D, cross_D over
# pairs with exactly one task in D (SI Table 2); the Holm p corrects the per-domain p-values for
# testing several domains.

# %%
overall_row = pd.DataFrame([{"domain": "all", **result.test}]) if result.testable else pd.DataFrame()
by_domain = pd.concat([overall_row, result.per_domain], ignore_index=True)
notes = [f"{row.domain}: {row.note}" for row in by_domain.itertuples() if isinstance(row.note, str) and row.note]
tables.for_reading(
    by_domain[[c for c in ("domain", "n_tasks", "within", "cross", "ratio", "delta", "p", "p_holm") if c in by_domain]],
    p_columns=["p", "p_holm"], n_permutations=N_PERMUTATIONS, digits={"within": 3, "cross": 3, "delta": 3},
    rename={"n_tasks": "tasks", "delta": "Δ", "p_holm": "Holm p"},
    note=" ".join([f"Δ = within − cross; p from {N_PERMUTATIONS:,} label permutations.", tables.DOMAIN_NOTE] + notes)) \
    if len(by_domain) else None

# %% [markdown]
# ## 4. Clustering the tasks and its ARI
#
# The tasks are clustered on their overlap alone: each task keeps links to its k nearest tasks
# (kNN graph), distance = 1 − link weight, average-linkage tree cut into one cluster per domain
# present (the study's 4 for its 4 domains). ARI compares the clusters with the true domains; its null
# shuffles the true labels against the fixed clustering ({ref}`methods §6 <methods-clustering>`).

# %%
reason = findings.untested_reason(main)
test = result.test or {}
glue("overlap_verdict", findings.ratio_sentence("overlap", test.get("within"), test.get("cross"), test.get("ratio"),
                                                test.get("p"), N_PERMUTATIONS, reason), display=False)
ari = result.ari or {}
glue("ari_verdict", findings.ari_sentence(ari.get("ari"), ari.get("p"), result.n_clusters, N_PERMUTATIONS, reason),
     display=False)
if result.testable:
    crosstab = pd.crosstab(result.clusters.domain, result.clusters.cluster)
    display(tables.for_reading(crosstab.reindex([d for d in DOMAINS if d in crosstab.index]), note=tables.DOMAIN_NOTE))
    clustering = {"ARI": result.ari["ari"], "p": tables.p_text(result.ari["p"], N_PERMUTATIONS),
                  "null ARI: mean": result.ari["null_mean"], "null ARI: SD": result.ari["null_sd"],
                  "null ARI: largest": result.ari["null_max"], "NMI": result.clustering["nmi"],
                  "AMI": result.clustering["ami"], "V-measure": result.clustering["v_measure"],
                  "silhouette": result.clustering["silhouette"], "tasks": result.clustering["n_tasks"]}
    display(tables.for_reading(pd.Series(clustering).to_frame("clustering"), note=(
        "ARI: adjusted Rand index of the clusters against the domains; null: the ARI with the domain labels "
        "shuffled; NMI, AMI: normalised and adjusted mutual information; silhouette: of the true domains.")))

# %% [markdown]
# {glue:text}`overlap_verdict` {glue:text}`ari_verdict` The crosstab above shows which domains end
# up together.
#
# ### Beside the study
#
# The same two numbers for the study's six models, from their released 0.1% overlap matrices (the
# chapter *The study's own results, recomputed*), and Kendall's τ between this run's overlap matrix
# and each of theirs on the tasks both kept. Stage 6 adds the ablation matrix to the comparison.

# %%
if result.testable:
    charts.show(charts.beside_study(result.beside_study),
                caption="Figure 1. This run's overlap ratio (log scale) and ARI (red) beside the study's six "
                        "models (grey; hover for names).")
    display(tables.for_reading(result.tau_vs_study[["study_model", "tau", "p", "n_tasks", "n_values"]],
                               p_columns=["p"], digits={"tau": 3}, rename={
                                   "study_model": "study model", "tau": "τ", "n_tasks": "common tasks",
                                   "n_values": "cells"}))

# %% [markdown]
# ## 5. Threshold sweep
#
# The same tests at every top-k% threshold (SI §4).

# %%
if result.testable:
    long = result.sweep.melt(id_vars="pct", value_vars=["ratio", "ari", "silhouette"], var_name="metric")
    charts.show(charts.threshold_sweep(long),
                caption="Figure 2. Within/cross overlap ratio, ARI of the clustering and silhouette of the true "
                        "domains, against the top-k% threshold used to select each task's neurons.")
    sweep_permutations = min(N_PERMUTATIONS, 2000)  # the stage runs the sweep with at most 2,000 permutations
    display(tables.folded(
        tables.for_reading(result.sweep[["pct", "n_tasks", "delta", "nmi", "ami", "v_measure"]],
                           digits={"delta": 3, "nmi": 3, "ami": 3, "v_measure": 3},
                           rename={"pct": "top %", "n_tasks": "tasks", "delta": "Δ", "nmi": "NMI", "ami": "AMI",
                                   "v_measure": "V-measure"}),
        "Tasks, Δ and the other clustering scores at each threshold",
        summary=tables.for_reading(
            result.sweep[["pct", "within", "cross", "ratio", "p", "ari", "silhouette"]], p_columns=["p"],
            n_permutations=sweep_permutations, digits={"within": 3, "cross": 3, "ari": 3, "silhouette": 3},
            rename={"pct": "top %", "ari": "ARI"},
            note=f"p from {sweep_permutations:,} label permutations at each threshold.")))

# %% [markdown]
# ## 6. Domain or surface?
#
# Tasks of one domain may also share how they are written: a frame, a kind of answer, a template.
# The stage describes each task's surface and models the pair overlap on same domain plus the
# surface terms, with p-values from permuting tasks (QAP; {ref}`methods §12 <methods-surface>`); a
# term the same for every pair of this run's tasks cannot be estimated and says so. For framed
# variants (`task~frame`) it also asks whether the overlap follows the content or the frame.

# %%
if len(result.surface):
    display(tables.for_reading(result.surface.reset_index()[["task", "frame", "answer_form", "family", "prompt_words"]],
                               digits={"prompt_words": 0},
                               rename={"answer_form": "answer", "prompt_words": "words per prompt"},
                               note="The surface of the attributed tasks."))
if len(result.surface_model):
    beside_surface = result.surface_model.assign(term=result.surface_model.term.map(surface.TERM_NAMES))
    display(tables.for_reading(beside_surface[["model", "term", "coef", "t", "p", "r2", "note"]], p_columns=["p"],
                               n_permutations=N_PERMUTATIONS, digits={"coef": 4, "t": 2, "r2": 2},
                               rename={"r2": "R²"},
                               note="Pair overlap on same domain, alone and beside the surface terms; two-sided QAP p."))
    display(Markdown(findings.surface_sentence("This run", surface.domain_effect(result.surface_model), N_PERMUTATIONS)))
    display(tables.for_reading(result.surface_ratios[["subset", "within_pairs", "cross_pairs", "ratio", "p"]],
                               p_columns=["p"], n_permutations=N_PERMUTATIONS, digits={"ratio": 2},
                               rename={"within_pairs": "same-domain pairs", "cross_pairs": "cross-domain pairs"},
                               note="The within/cross test on the pairs that differ in the named surface."))
    display(Markdown(" ".join(findings.restricted_ratio_sentence(row, N_PERMUTATIONS)
                              for _, row in result.surface_ratios.iterrows() if row.subset != "all pairs")))
if result.surface_note:
    print(f"The surface model is {result.surface_note}.")
if len(result.frame_swap):
    display(tables.for_reading(result.frame_swap_cells, digits={"mean": 3},
                               rename={"n_pairs": "pairs", "mean": "mean overlap"},
                               note="Mean overlap per kind of variant pair (content~frame)."))
    display(Markdown(findings.frame_swap_sentence("Overlap", result.frame_swap, result.frame_swap_cells,
                                                  N_PERMUTATIONS)))

# %% [markdown]
# The stage saved:

# %%
sorted(path.name for path in result.written)

# %% [markdown]
# ## Interpretation notes
#
# * The permutation tests shuffle domain labels over the tasks that passed the filter; with few
#   tasks per domain the smallest attainable p-value is limited by the number of distinct
#   labellings, not by the number of permutations.
# * ARI depends on the kNN parameter (the study's ARI drops from 0.78 to 0.41 between k = 5 and
#   k = 6, {ref}`methods §6 <methods-clustering>`); read it together with the crosstab.
# * The study tested the average over six models; here the test is for one model.
