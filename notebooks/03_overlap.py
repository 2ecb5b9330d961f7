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
# # Stage 3 · Overlap: do tasks of one domain share their neurons?
#
# **Question.** If the model is organised like the brain's networks, the neurons that matter for two
# tasks of the same domain should overlap more than those of two tasks from different domains.
#
# **You will learn**
#
# * how a task's neuron set is chosen: the top k% *positive* attribution scores, ranked globally
#   across layers, with $k = \max(1, \lfloor N p / 100 \rfloor)$ (METHOD §4);
# * the study's overlap measure $|A \cap B| / k$ and how it relates to Jaccard, $J = O / (2 - O)$;
# * the doubly-stochastic (Sinkhorn) matrix behind the chord diagram, and the within- vs
#   cross-domain comparison.

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
threads = 0  # CPU threads for torch; 0 keeps torch's default (1 is faster on a busy machine)
bos = 'model'  # 'model': tokenizer's own BOS; 'study': never (METHOD §15.10)
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

# %% [markdown]
# Parameters are validated against the schema in `modularity.params`.

# %%
from modularity.params import notebook_params
from modularity.store import RunPaths, load_tensors

P = notebook_params(globals())
paths = RunPaths.of(P)
{k: P[k] for k in ("model", "profile", "top_pcts", "main_pct")}

# %%
import numpy as np
import pandas as pd
from myst_nb import glue

from modularity import charts, matrix_csv, overlap

# %% [markdown]
# ## 1. The attributed tasks
#
# We read the score tensors written by stage 2 for every task that passed the filter.

# %%
summary = pd.read_csv(paths.table("eval_summary.csv"))
passing = summary[summary.passes]
scores, domains = {}, {}
for row in passing.itertuples():
    path = paths.tensor("attribution", row.task)
    if path.exists():
        label = f"{row.domain}/{row.task}"
        scores[label] = load_tensors(path)[0]["neurons"]
        domains[label] = row.domain
labels = overlap.order_labels(list(scores))
enough = len(labels) >= 2
glue("n_overlap_tasks", len(labels), display=False)
print(f"{len(labels)} attributed tasks" + ("" if enough else ": overlap needs at least two, so this stage stops here."))

# %% [markdown]
# ## 2. Top-k% sets and the overlap matrices
#
# For each threshold p we select every task's set and compute |A∩B|/k and Jaccard for every pair.

# %%
n_neurons = next(iter(scores.values())).numel() if scores else 0
matrices, jaccards, set_sizes = {}, {}, []
for pct in P["top_pcts"] if enough else []:
    k = overlap.top_k_count(n_neurons, pct)
    sets = {label: overlap.top_positive_set(scores[label], pct) for label in labels}
    matrices[pct] = overlap.overlap_matrix(sets, k).loc[labels, labels]
    jaccards[pct] = overlap.jaccard_matrix(sets).loc[labels, labels]
    set_sizes += [{"pct": pct, "k": k, "task": label, "set size": len(sets[label])} for label in labels]
pd.DataFrame(set_sizes).groupby(["pct", "k"])["set size"].agg(["min", "max"]) if enough else None

# %% [markdown]
# Sanity checks: overlaps lie in [0, 1], the matrix is symmetric, a full set overlaps itself fully, and Jaccard equals O/(2 − O) because all sets have size k.

# %%
for pct, O in matrices.items():
    values = O.to_numpy()
    assert np.allclose(values, values.T) and ((values >= 0) & (values <= 1)).all()
    full = [l for l in labels if len(overlap.top_positive_set(scores[l], pct)) == overlap.top_k_count(n_neurons, pct)]
    assert np.allclose(np.diag(O.loc[full, full]), 1.0)
    off = ~np.eye(len(labels), dtype=bool)
    assert np.allclose(jaccards[pct].to_numpy()[off], (values / (2 - values))[off]) or len(full) < len(labels)

# %% [markdown]
# ## 3. Within- vs cross-domain overlap at the main threshold

# %%
main = matrices.get(P["main_pct"])
if main is not None:
    wc = overlap.within_cross(main, domains)
    glue("within", f"{wc['within']:.3f}", display=False)
    glue("cross", f"{wc['cross']:.3f}", display=False)
    glue("ratio", f"{wc['ratio']:.2f}", display=False)
    display(pd.Series(wc).to_frame(f"top {P['main_pct']}%"))
else:
    for name in ("within", "cross", "ratio"):
        glue(name, "not computed (fewer than two tasks)", display=False)

# %% [markdown]
# At the main threshold, tasks of the same domain share on average {glue:text}`within` of their
# top neurons, tasks of different domains {glue:text}`cross` (ratio {glue:text}`ratio`). The
# statistical test of this difference is in stage 4.

# %%
if main is not None:
    charts.show(charts.overlap_heatmap(main, domains, title=f"Overlap |A∩B|/k of top-{P['main_pct']}% neuron sets"),
                caption=f"Figure 1. Overlap between the top-{P['main_pct']}% positive neuron sets of every pair of "
                        "tasks, grouped by domain (hover a cell for the task pair and value).")

# %% [markdown]
# ## 4. The doubly-stochastic matrix and the chord diagram
#
# Sinkhorn normalisation (diagonal set to 0, rows and columns rescaled to sum to 1) removes differences in how much a task overlaps with everything; the study drew its chord diagram from it (METHOD §4, §12).

# %%
if main is not None and len(labels) > 2:
    doubly = overlap.sinkhorn(main)
    row_sums = doubly.sum(axis=1).to_numpy()
    linked = (main.to_numpy() - np.diag(np.diag(main.to_numpy()))).sum(axis=1) > 0
    assert np.allclose(row_sums[~linked], 0), "a task with no overlap keeps a zero row"
    if not np.allclose(row_sums[linked], 1, atol=1e-3):
        # Sinkhorn needs every link pattern to admit a doubly-stochastic matrix (total support).
        print("note: Sinkhorn did not reach row sums of 1 on this matrix; the chord diagram is indicative only")
    if (~linked).any():
        print("tasks sharing no top neuron with any other task:", [l for l, k in zip(labels, linked) if not k])
    charts.show(charts.chord_diagram(doubly, domains, cutoff=0.05),
                caption="Figure 2. Chord diagram of the doubly-stochastic overlap matrix: links between tasks "
                        "whose normalised overlap is at least 0.05, coloured by domain when both tasks share it. "
                        "Purely illustrative, as in the study.")
else:
    doubly = None

# %% [markdown]
# ## 5. Layer-wise composition (Fig 2B)
#
# For each domain we average its tasks' score maps, keep the top 0.1% by absolute value, and count per layer which neurons belong to one domain only or are shared.

# %%
if enough:
    domain_maps = overlap.domain_mean_attribution({l: scores[l] for l in labels}, domains)
    per_layer = overlap.layer_composition(domain_maps, pct=P["main_pct"])
    composition = overlap.composition_by_bin([per_layer])
    charts.show(charts.layer_composition(composition),
                caption="Figure 3. Top neurons of the domain-mean attribution maps per relative depth "
                        "(25 bins), by domain or shared by two or more domains; bar heights are log10(count + 1).")

# %% [markdown]
# ## 6. Saving the matrices
#
# Matrices are written in the study's CSV layout (`domain/task` labels), so the `modularity stats` CLI and the study's own scripts can read them.

# %%
for pct, O in matrices.items():
    matrix_csv.write_matrix_csv(O, paths.table(f"overlap_{pct:g}.csv"))
    matrix_csv.write_matrix_csv(jaccards[pct], paths.table(f"jaccard_{pct:g}.csv"))
if doubly is not None:
    matrix_csv.write_matrix_csv(doubly, paths.table(f"overlap_{P['main_pct']:g}_doubly_stochastic.csv"))
sorted(p.name for p in paths.results.iterdir())

# %% [markdown]
# ## Interpretation notes
#
# * The overlap |A∩B|/k is *not* Jaccard (METHOD §15.1); with equal set sizes J = O/(2 − O), so both
#   rank pairs identically but Jaccard values are smaller.
# * Tasks sharing a prompt format (the few-shot "Context: … Answer:" template) can overlap for
#   reasons of format rather than domain (METHOD §15.9).
# * The domain maps of Figure 3 use |mean score| (METHOD §15.11), a different rule from the per-task
#   positive sets of Figures 1–2.
