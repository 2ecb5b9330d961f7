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
# # Stage 6 · Beside the study: this run and the six large models
#
# **Question.** The study found domain-specific neurons in six models of 24B–123B parameters. Where
# does this run's model sit among them: is its overlap as domain-specific, does ablation hurt its own
# domain as selectively, do its tasks cluster by domain, and does it rank task pairs like they do?
#
# **You will learn**
#
# * the three numbers that place a model: the within/across ratio of its overlap matrix and of its
#   ablation matrix, and the ARI of the study's clustering against the domains;
# * how Kendall's τ compares two models' matrices on the tasks both of them kept, and why few common
#   tasks make it noisy.
#
# The study's numbers come from its released matrices (vendored under `data/external/llm_modularity/`,
# see the chapter *The study's own results, recomputed*); this run's from its stage 3 and stage 5
# tables. Nothing here loads a model.

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
ctx.settings("model", "profile", "main_pct", "n_permutations", "knn")

# %%
import pandas as pd
from myst_nb import glue

from modularity.showing import charts, findings, tables
from modularity import stages

pd.set_option("display.precision", 3)

# %% [markdown]
# ## 1. The same numbers for every model
#
# For every model, ours and the study's, the same functions compute the within/across ratio (with
# its label-permutation p) of the overlap matrix at the main threshold and of the ablation matrix,
# and the ARI of the kNN-graph clustering cut into one cluster per domain present. A number that
# needs two domains with two tasks each is left out when the run does not have them. Only tasks that
# passed the 60% filter are in this run's matrices.

# %%
result = stages.beside_study.run(ctx)
if result.overlap.empty:  # stage 3 writes no matrix when fewer than two tasks were attributed
    print("This run has no overlap matrix (fewer than two attributed tasks): only the study's models are placed.")
tables.for_reading(pd.Series({"overlap matrix": len(result.overlap),
                              "ablation matrix": 0 if result.ablation is None else len(result.ablation)},
                             name="tasks").to_frame())

# %%
charts.show(charts.beside_study(result.placed, title=f"{result.label} beside the study's six models"),
            caption=f"Figure 1. Overlap ratio, ablation ratio (within / across a domain, log scale) and ARI of "
                    f"{result.label} (red) and of the study's six models (grey, hover for the name).")

# %%
reason = findings.untested_reason(result.overlap)
glue("position_text", "; ".join(
    f"{measure} {row['this run']:.2f} (study {row['study min']:.2f}–{row['study max']:.2f})"
    for measure, row in result.positions.iterrows() if pd.notna(row["this run"]))
    or f"None of the three numbers is computed for this run: {reason}", display=False)
tables.for_reading(result.positions, p_columns=["p"], n_permutations=ctx.params["n_permutations"],
                   rename={"study models below this run": "study models below"},
                   note="Study min and max: the smallest and largest value among the study's six models.")

# %% [markdown]
# {glue:text}`position_text`.
#
# ## 2. Do the models rank task pairs alike? Kendall's τ
#
# Each study model's matrix and this run's, cut to the tasks both kept: τ-b over the upper triangle of
# the overlap matrices and over all directed off-diagonal cells of the ablation matrices. With fewer
# than three common tasks τ is not computed.

# %%
glue("tau_text", "; ".join(f"{kind}: mean τ {row.tau_mean:.2f} over the six models "
                           f"({row.tau_min:.2f} to {row.tau_max:.2f}), about {row.common_tasks:.0f} common tasks"
                           for kind, row in result.tau_summary.iterrows() if pd.notna(row.tau_mean))
     or "not computable", display=False)
tables.for_reading(result.tau.reset_index().set_index(["matrix", "study_model"])
                   .rename_axis(["matrix", "study model"])[["tau", "p", "n_tasks", "n_values"]],
                   p_columns=["p"], digits={"tau": 3},
                   rename={"tau": "τ", "n_tasks": "common tasks", "n_values": "cells compared"},
                   note="p: asymptotic p of Kendall's τ-b (scipy).")

# %% [markdown]
# {glue:text}`tau_text`. For scale: the study's six models agree with each other at τ ≈ 0.7
# (overlap) and 0.6 (ablation) on 29–30 common tasks.
#
# The stage saved:

# %%
sorted(path.name for path in result.written)

# %% [markdown]
# ## Interpretation notes
#
# * The study's models are 100–1000× larger and pass most tasks; this run passes fewer, so its
#   ratios rest on fewer cells and its τ on fewer common tasks. A high ratio from a handful of tasks is
#   weaker evidence than the same ratio from 40.
# * The ARI depends on which domains are present: with few tasks per domain, one misplaced task moves
#   it a lot.
# * The permutation p of each model is computed the same way (labels shuffled, seed 42), so a p at its
#   floor (1/(permutations + 1)) says the observed structure beat every shuffle.
