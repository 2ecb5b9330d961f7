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
# # Stage 2 · Attribution patching: which neurons carry each task?
#
# **Question.** For each task the model solves, which MLP neurons (and attention heads) move its
# answer from the corrupted to the clean one?
#
# **You will learn**
#
# * the attribution-patching estimate (clean − corrupted activation) × gradient, at the last prompt
#   token (METHOD §3);
# * the difference between the study's metric (incorrect-answer term detached) and the full
#   logit difference;
# * how to check a first-order estimate against exact activation patching — and how well it holds.
#
# For item n with clean prompt c and corrupted prompt r, the score of neuron i in layer ℓ is
#
# $$A^{\ell}_i = \sum_n \frac{\partial m}{\partial a^{\ell}_i(r_n)}\,\big[a^{\ell}_i(c_n) - a^{\ell}_i(r_n)\big],
# \qquad m = \frac{\overline{LP(r, y^+) - LP(r, y^-)} - R}{C - R},$$
#
# the predicted gain of the normalised metric m when the clean activation is patched into the
# corrupted run.

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
from modularity.params import configure_torch, notebook_params
from modularity.progress import bar
from modularity.store import RunPaths, check_task_fingerprints, load_tensors, save_table, save_tensors
from modularity.tasks import load_suite

P = notebook_params(globals())
paths = RunPaths.of(P)
{k: P[k] for k in ("model", "profile", "metric", "attribution_items", "verify_tasks", "verify_neurons", "seed")}

# %%
import numpy as np
import pandas as pd
import torch
from myst_nb import glue

from modularity import attribution, charts, scoring
from modularity.models import load_model

configure_torch(P)

# %% [markdown]
# ## 1. The tasks that passed the filter
#
# Only tasks that passed stage 1 are attributed, and only on their both-correct, token-aligned items.

# %%
summary = pd.read_csv(paths.table("eval_summary.csv"))
check_task_fingerprints(paths, summary)
eval_items = pd.read_csv(paths.table("eval_items.csv"))
passing = summary[summary.passes].reset_index(drop=True)
glue("n_attributed", len(passing), display=False)
passing[["task", "domain", "n_both_correct", "both_correct_accuracy", "C", "R"]]

# %%
if passing.empty:
    print("No task passed the filter, so there is nothing to attribute; later stages will say the same.")

# %% [markdown]
# ## 2. Scores for every passing task
#
# Each task's [layers × neurons] and [layers × heads] scores are stored as safetensors in the cache; finished tasks are skipped on a rerun.

# %%
loaded = load_model(P["model"], dtype=P["dtype"], device=P["device"])
suite = load_suite(P)


def attribute(row):
    items = eval_items[eval_items.task == row.task]
    indices = scoring.both_correct_indices(items)
    if P["attribution_items"]:
        indices = indices[: P["attribution_items"]]
    tokens = scoring.tokenize_task(loaded, suite[row.task], P["bos"])
    return attribution.attribute_task(loaded, tokens, indices, row.C, row.R, metric=P["metric"],
                                      batch_size=max(1, P["batch_size"] // 2))


scores = {}
for row in bar(passing.itertuples(), total=len(passing), desc="attributing", unit="tasks"):
    path = paths.tensor("attribution", row.task)
    if not path.exists():
        result = attribute(row)
        save_tensors(path, {"neurons": result.neurons, "heads": result.heads},
                          {"task": row.task, "domain": row.domain, "metric": P["metric"],
                           "n_items": result.n_items, "C": result.C, "R": result.R})
    scores[row.task] = load_tensors(path)[0]

# %% [markdown]
# Sanity checks: every score tensor has the model's shape, is finite, and has positive entries to select from.

# %%
for task, tensors in scores.items():
    assert tensors["neurons"].shape == (loaded.n_layers, loaded.d_ff), task
    assert tensors["heads"].shape == (loaded.n_layers, loaded.n_heads), task
    assert torch.isfinite(tensors["neurons"]).all(), task
    assert (tensors["neurons"] > 0).any(), task
overview = pd.DataFrame([
    {"task": t, "positive neurons": int((s["neurons"] > 0).sum()),
     "max score": float(s["neurons"].max()), "sum of scores": float(s["neurons"].sum())}
    for t, s in scores.items()])
overview

# %% [markdown]
# ## 3. The strongest neurons of one task
#
# The ten highest-scoring neurons of the first passing task, by layer and index:

# %%
if scores:
    first = next(iter(scores))
    print(first)
    display(attribution.top_neurons(scores[first]["neurons"], 10))

# %% [markdown]
# ## 4. Does the first-order estimate hold? A check against exact patching
#
# For a few tasks we patch single neurons for real (clean activation into the corrupted run at the last prompt token) and compare the measured change of m with the estimate, for the top-scoring neurons and as many random ones.

# %%
checked = passing.sort_values("n_both_correct", ascending=False).head(P["verify_tasks"])
check_rows = []
for row in checked.itertuples():
    items = eval_items[eval_items.task == row.task]
    indices = scoring.both_correct_indices(items)[:16]
    tokens = scoring.tokenize_task(loaded, suite[row.task], P["bos"])
    estimate_scores = attribution.attribute_task(loaded, tokens, indices, row.C, row.R, metric=P["metric"],
                                                 heads=False).neurons
    top, random_ = attribution.verification_neurons(estimate_scores, P["verify_neurons"], P["seed"])
    chosen = np.concatenate([top, random_])
    exact = attribution.patch_effect(loaded, tokens, indices, row.C, row.R, [np.array([i]) for i in chosen],
                                     metric=P["metric"])
    for i, flat in enumerate(chosen):
        check_rows.append({"task": row.task, "neuron": int(flat), "kind": "top" if i < len(top) else "random",
                           "estimate": float(estimate_scores.flatten()[flat]), "exact": float(exact[i])})
check = pd.DataFrame(check_rows)
agreement = (pd.DataFrame({t: attribution.compare_with_patching(g.estimate, g.exact) for t, g in check.groupby("task")}).T
             if len(check) else pd.DataFrame())
agreement

# %% [markdown]
# Sanity check: the correlation is a number in [−1, 1] for every checked task; a low value would mean the linear estimate is not trustworthy for this model.

# %%
if len(agreement):
    assert agreement.pearson.between(-1, 1).all()
    overall = attribution.compare_with_patching(check.estimate, check.exact)
    glue("check_pearson", f"{overall['pearson']:.3f}", display=False)
    glue("check_n", overall["n"], display=False)
    charts.show(charts.attribution_check(check),
                caption="Figure 1. Attribution estimate (x) against the exact effect of patching the same single "
                        "neuron (y), in units of the normalised metric m; top-scoring and random neurons of the "
                        "checked tasks. Points on the diagonal mean the first-order estimate is exact.")
else:
    glue("check_pearson", "not computed (no passing task)", display=False)
    glue("check_n", 0, display=False)

# %% [markdown]
# Over {glue:text}`check_n` single-neuron patches, the estimate and the exact effect correlate at
# r = {glue:text}`check_pearson`.

# %% [markdown]
# ## 5. Where the strongest neurons sit
#
# The layer of each task's top-0.1% positive neurons, per domain, shows whether domains use different depths.

# %%
from modularity import overlap

layer_rows = []
for task, tensors in scores.items():
    flat = overlap.top_positive_set(tensors["neurons"], P["main_pct"])
    for layer in flat // loaded.d_ff:
        layer_rows.append({"task": task, "domain": summary.set_index("task").domain[task], "layer": int(layer)})
layers = pd.DataFrame(layer_rows)
if len(layers):
    charts.show(charts.layer_histogram(layers, n_layers=loaded.n_layers),
                caption=f"Figure 2. Layer of the top-{P['main_pct']}% positive neurons of every passing task, "
                        "stacked by domain (counts of neurons).")

# %% [markdown]
# ## 6. Saving the results

# %%
save_table(overview, paths.table("attribution_summary.csv"))
save_table(check, paths.table("attribution_check.csv"))
sorted(p.name for p in paths.results.iterdir())

# %% [markdown]
# ## Interpretation notes
#
# * Scores are summed over items with equal weight 1/N and divided by C − R, so a score is the
#   predicted change of the normalised metric; the study weighted items per batch (METHOD §15.18),
#   which only rescales scores and does not change any ranking.
# * With `metric: paper` the gradient only sees the clean answer under the corrupted prompt
#   (METHOD §15.2); `metric: logit_diff` differentiates the full difference.
# * The estimate is linear: it predicts single-neuron effects well when they are small, and tends to
#   overstate the joint effect of many neurons patched together (interactions, saturation).
