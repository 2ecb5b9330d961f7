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
#   across layers, with $k = \max(1, \lfloor N p / 100 \rfloor)$ ({ref}`methods §4 <methods-overlap>`);
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

# %% [markdown]
# The run's context: its validated parameters, where its results live, and stage 1's summary,
# checked against the tasks' current items.

# %%
from modularity.stages.context import RunContext

ctx = RunContext.from_notebook(globals())
ctx.settings("model", "profile", "top_pcts", "main_pct")

# %%
import numpy as np
import pandas as pd
import torch
from myst_nb import glue

from modularity.showing import charts, tables
from modularity.science.sites import split_flat
from modularity import stages

PCT = ctx.params["main_pct"]

# %% [markdown]
# ## 1. By hand: two tasks, their top neurons and their overlap
#
# Stage 2 gave every task that passed the filter one score per MLP neuron, a tensor
# [layers, neurons per layer]. A task's set at threshold p keeps the strictly positive scores,
# ranks them across **all layers at once** (no per-layer quota) and takes the first
# k = max(1, ⌊N·p/100⌋) of the N neurons. We do it with plain torch for two tasks, of one domain
# when a domain has two.

# %%
tasks = ctx.attributed()
print(f"{len(tasks)} tasks passed the filter and have attribution scores.")
by_domain = tasks.groupby("domain", sort=False).label.agg(list)  # the study's domain order
pair = next((labels[:2] for labels in by_domain if len(labels) >= 2), list(tasks.label[:2]))


def top_set(scores: torch.Tensor, pct: float) -> tuple[set, int]:
    flat = scores.flatten()  # flat index = layer · d_ff + neuron
    k = max(1, int(flat.numel() * pct / 100))
    ranked = torch.sort(flat, descending=True, stable=True).indices
    return set(ranked[flat[ranked] > 0][:k].tolist()), k


# %%
if len(pair) == 2:
    task_of = dict(zip(tasks.label, tasks.task))
    scores = {label: stages.scores.load_scores(ctx, task_of[label]) for label in pair}
    (set_a, k), (set_b, _) = (top_set(scores[label], PCT) for label in pair)
    shared = set_a & set_b
    by_hand = len(shared) / k
    d_ff = scores[pair[0]].shape[1]
    print(f"k = {k}. {pair[0]} and {pair[1]} share {len(shared)} of their top {PCT}% neurons:\n"
          f"  overlap |A∩B|/k = {len(shared)}/{k} = {by_hand:.3f}; Jaccard |A∩B|/|A∪B| = "
          f"{len(shared)}/{len(set_a | set_b)} = {len(shared) / len(set_a | set_b):.3f}")
    layers, _ = split_flat(np.array(sorted(shared), dtype=np.int64), d_ff)  # flat index = layer · d_ff + column
    print("layers of the shared neurons:", sorted(set(layers.tolist())))

# %% [markdown]
# ## 2. The stage: every pair, every threshold
#
# `stages.overlap.run(ctx)` selects every task's set at each threshold of `top_pcts`, fills the
# task × task matrices of |A∩B|/k and of Jaccard, normalises the main one (Sinkhorn), maps the
# domains' top neurons onto the layers, and saves the matrices in the study's CSV layout.

# %%
result = stages.overlap.run(ctx)
glue("n_overlap_tasks", len(result.tasks), display=False)
if not result.enough:
    print(f"{len(result.tasks)} attributed task(s): overlap needs at least two, so this stage stops here.")
tables.for_reading(result.set_sizes.reset_index(), rename={
    "pct": "top %", "k": "k", "min": "smallest set", "max": "largest set"},
    note="k: neurons per set; a set is smaller when the task has fewer than k positive scores.") \
    if len(result.set_sizes) else None

# %% [markdown]
# The stage's sets and matrix cell are the ones computed by hand; and since every set has size k,
# Jaccard is a function of the overlap, J = O/(2 − O): both rank pairs identically.

# %%
if result.enough:
    assert result.k[PCT] == k and set(result.sets[PCT][pair[0]].tolist()) == set_a
    assert result.main.loc[pair[0], pair[1]] == by_hand
    for pct, matrix in result.overlap.items():
        values = matrix.to_numpy()
        assert np.allclose(values, values.T) and ((values >= 0) & (values <= 1)).all()
        if all(len(s) == result.k[pct] for s in result.sets[pct].values()):
            assert np.allclose(result.jaccard[pct].to_numpy(), values / (2 - values))

# %% [markdown]
# ## 3. Within- vs cross-domain overlap at the main threshold

# %%
summary = result.within_cross or dict.fromkeys(("within", "cross", "ratio"), np.nan)
for name, form in (("within", ".3f"), ("cross", ".3f"), ("ratio", ".2f")):
    glue(name, format(summary[name], form) if result.enough else "not computed (fewer than two tasks)",
         display=False)
tables.for_reading(pd.Series(summary).rename({"within": "within a domain", "cross": "across domains",
                                               "ratio": "ratio within / across"}).to_frame(f"top {PCT}%"))

# %% [markdown]
# At the main threshold, tasks of the same domain share on average {glue:text}`within` of their
# top neurons, tasks of different domains {glue:text}`cross` (ratio {glue:text}`ratio`). The
# statistical test of this difference is stage 4.

# %%
if result.enough:
    charts.show(charts.overlap_heatmap(result.main, result.domains, title=f"Overlap |A∩B|/k of top-{PCT}% neuron sets"),
                caption=f"Figure 1. Overlap between the top-{PCT}% positive neuron sets of every pair of "
                        "tasks, grouped by domain (hover a cell for the task pair and value).")

# %% [markdown]
# ## 4. The doubly-stochastic matrix and the chord diagram
#
# Sinkhorn normalisation (diagonal set to 0, rows and columns rescaled in turn until each sums to 1)
# removes differences in how much a task overlaps with everything; the study drew its chord diagram
# from it ({ref}`methods §4 <methods-overlap>`, {ref}`methods §5 <methods-sinkhorn>`). A task sharing no top neuron with any other keeps a zero row.

# %%
if result.doubly_stochastic is not None:
    if not result.sinkhorn_converged:  # needs a link pattern that admits such a matrix (total support)
        print("note: Sinkhorn did not reach row sums of 1 on this matrix; the chord diagram is indicative only")
    if result.unlinked:
        print("tasks sharing no top neuron with any other task:", result.unlinked)
    charts.show(charts.chord_diagram(result.doubly_stochastic, result.domains, cutoff=0.05),
                caption="Figure 2. Chord diagram of the doubly-stochastic overlap matrix: links between tasks "
                        "whose normalised overlap is at least 0.05, coloured by domain when both tasks share it. "
                        "Purely illustrative, as in the study.")

# %% [markdown]
# ## 5. Layer-wise composition (Fig 2B)
#
# For each domain the stage averages its tasks' score maps, keeps the top 0.1% by *absolute* value,
# and counts per layer which neurons belong to one domain only or are shared by several.

# %%
if result.composition is not None:
    charts.show(charts.layer_composition(result.composition),
                caption="Figure 3. Top neurons of the domain-mean attribution maps per relative depth "
                        "(25 bins), by domain or shared by two or more domains; bar heights are log10(count + 1).")

# %% [markdown]
# ## 6. What the stage saved
#
# Matrices in the study's CSV layout (`domain/task` labels), which the `modularity stats` CLI and the
# study's own scripts read.

# %%
sorted(path.name for path in result.written)

# %% [markdown]
# ## Interpretation notes
#
# * The overlap |A∩B|/k is *not* Jaccard ({ref}`difference 1 <differs-1>`); with equal set sizes J = O/(2 − O), so both
#   rank pairs identically but Jaccard values are smaller.
# * Tasks sharing a prompt format can overlap for reasons of format rather than domain. The study's
#   files give ten physical and social tasks one 2-shot "Context: … Answer:" frame
#   ({ref}`difference 9 <differs-9>`; runs on those files, `data_dir`); this book's generated tasks
#   give physical ("Situation: … Outcome:") and social ("Story: … Answer:") tasks frames of their
#   own, which still share a few-shot layout.
# * The domain maps of Figure 3 use |mean score| ({ref}`difference 11 <differs-11>`), a different rule from the per-task
#   positive sets of Figures 1–2.
