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
# # Stage 5 · Causal ablation: do a task's neurons matter for other tasks?
#
# **Question.** Overlap says two tasks *select* the same neurons. Ablation asks whether those
# neurons are *needed*: if we silence the top neurons of a source task S while the model reads the
# items of a target task T, does T's accuracy drop? The study's modularity claim is that drops are
# large within a domain and small across domains (METHOD §7).
#
# **You will learn**
#
# * how "corrupted" activation patching ablates a neuron set: the target's clean run receives, at
#   every position, the values those neurons take on the target's own corrupted prompt;
# * what the study's stored number means: Δ = 1 − ablated accuracy, which assumes the unablated
#   accuracy is exactly 1 (we re-measure it, METHOD §15.13);
# * how to read the directed source × target matrix: self-ablation, within-domain and cross-domain
#   drops, and the within-vs-across permutation test;
# * whether the selected neurons hurt more than random neuron sets of the same size and layers.
#
# The cell below holds the parameters; `modularity run params/<model>.yaml` (papermill) replaces them.

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
# Parameters are checked against the schema in `modularity.params` (papermill itself only warns about unknown names).

# %%
from modularity.params import configure_torch, notebook_params
from modularity.store import (RunPaths, check_task_fingerprints, combined_fingerprint, load_tensors, save_json,
                              save_table)
from modularity.tasks import load_suite

P = notebook_params(globals())
paths = RunPaths.of(P)
{k: P[k] for k in ("model", "profile", "main_pct", "ablation_items", "ablation_mode", "n_random_controls",
                   "seed", "batch_size", "dtype", "device")}

# %%
import time

import altair as alt
import numpy as np
import pandas as pd
import torch
from myst_nb import glue

from modularity import ablation, charts, overlap, scoring, stats
from modularity.matrix_csv import write_matrix_csv
from modularity.progress import bar as progress_bar

configure_torch(P)
pd.set_option("display.precision", 3)
PCT = P["main_pct"]

# %% [markdown]
# ## 1. Which tasks take part
#
# A task can be a source and a target only if it passed the inclusion filter of stage 1 **and** has an attribution tensor from stage 2 (its neuron set comes from there).

# %%
summary = pd.read_csv(paths.table("eval_summary.csv"))
check_task_fingerprints(paths, summary)
eval_items = pd.read_csv(paths.table("eval_items.csv"))
passing = summary[summary.passes.astype(bool)]
has_attribution = passing.task.map(lambda name: paths.tensor("attribution", name).exists())
tasks = passing[has_attribution].reset_index(drop=True)
tasks["label"] = tasks.domain + "/" + tasks.task
tasks = tasks.set_index("label").loc[overlap.order_labels(list(tasks.label))].reset_index()
missing_attribution = passing.loc[~has_attribution, "task"].tolist()
enough = len(tasks) >= 2
glue("n_ablation_tasks", len(tasks), display=False)
glue("n_passing", len(passing), display=False)
print(f"{len(passing)} tasks pass the filter; {len(tasks)} of them have an attribution tensor.")
if missing_attribution:
    print("passing but without attribution (stage 2 not run for them):", missing_attribution)
if not enough:
    print("FEWER THAN 2 TASKS: an ablation matrix needs at least two tasks, so the analysis below is skipped. "
          "Run stages 1-2 on more tasks or items, or a model that passes more tasks.")
tasks[["label", "n_both_correct", "C", "R"]]

# %% [markdown]
# **{glue:text}`n_ablation_tasks` tasks** (of {glue:text}`n_passing` passing the filter) serve as both sources and targets.

# %% [markdown]
# ## 2. Source sets: each task's top neurons
#
# As in the overlap analysis, a task's set is its top {glue:text}`main_pct`% neurons by attribution score, keeping only positive scores (METHOD §4).

# %%
glue("main_pct", PCT, display=False)
source_sets, layer_counts = {}, {}
for row in tasks.itertuples():
    scores, _ = load_tensors(paths.tensor("attribution", row.task))
    neurons = scores["neurons"]
    n_layers, d_ff = neurons.shape
    source_sets[row.label] = overlap.top_positive_set(neurons, PCT)
    layer_counts[row.label] = np.bincount(source_sets[row.label] // d_ff, minlength=n_layers)
k = overlap.top_k_count(n_layers * d_ff, PCT) if source_sets else 0
sets_table = pd.DataFrame({
    "neurons": {label: s.size for label, s in source_sets.items()},
    "layers used": {label: int((c > 0).sum()) for label, c in layer_counts.items()},
    "deepest layer": {label: int(np.flatnonzero(c).max()) if c.any() else -1 for label, c in layer_counts.items()},
})
assert all(s.size <= k for s in source_sets.values()), "a top set cannot exceed k"
assert all(np.unique(s).size == s.size for s in source_sets.values())
print(f"k = {k} neurons out of {n_layers} x {d_ff}" if source_sets else "no source sets")
sets_table


# %% [markdown]
# ## 3. Target items
#
# Each target uses its first `ablation_items` aligned, both-correct items (0 means all): the model gets them right when clean and when corrupted, so an accuracy drop is the ablation's doing.

# %%
def target_items(task: str) -> np.ndarray:
    rows = eval_items[(eval_items.task == task) & eval_items.aligned.astype(bool) & eval_items.both_correct.astype(bool)]
    chosen = rows.item.to_numpy()
    return chosen[: P["ablation_items"]] if P["ablation_items"] else chosen

items_per_target = {row.label: target_items(row.task) for row in tasks.itertuples()}
assert all(len(v) > 0 for v in items_per_target.values()), "a passing task has both-correct items"
pd.Series({label: len(v) for label, v in items_per_target.items()}, name="items", dtype=int).to_frame().T

# %% [markdown]
# ## 4. Random controls
#
# For every source set we draw `n_random_controls` sets of the same size that avoid the selected
# neurons: *layer-matched* ones keep the number of neurons per layer, *uniform* ones are drawn from
# all layers. They tell us how much silencing *any* that many neurons hurts.
#
# Each control costs as much as a real cell, so controls run only on the cells where the selected
# sets are expected to matter, set by the parameter `ablation_control_cells`: `"self"` (the diagonal, the default: about
# 2 · n_random_controls extra cells per target), `"within"` (the diagonal and same-domain cells) or
# `"all"` (every cell; 1 + 2 · n_random_controls times the cost of the main matrix).

# %%
CONTROL_CELLS = P["ablation_control_cells"]
all_sets, set_table = ablation.build_ablation_sets(
    source_sets, n_layers, d_ff, n_controls=P["n_random_controls"], seed=P["seed"]
) if enough else ({}, pd.DataFrame(columns=["set", "source", "kind", "draw", "n_neurons"]))
sizes = set_table.groupby("source").n_neurons.nunique()
assert (sizes == 1).all(), "controls have the size of their source set"


def sets_for_target(target: str) -> dict:
    # All selected sets, plus the controls of the sources whose cell with this target is in scope.
    in_scope = lambda source: CONTROL_CELLS == "all" or ablation.relation_of(source, target) in (
        ("self",) if CONTROL_CELLS == "self" else ("self", "within"))
    keep = set_table[(set_table.kind == "selected") | set_table.source.map(in_scope)]
    return {name: all_sets[name] for name in keep.set}


n_cells_planned = sum(len(sets_for_target(label)) for label in tasks.label) if enough else 0
glue("n_cells_planned", n_cells_planned, display=False)
set_table.kind.value_counts().to_frame("sets")

# %% [markdown]
# With controls on `CONTROL_CELLS` cells, the run evaluates {glue:text}`n_cells_planned` (set, target) cells.

# %% [markdown]
# ## 5. Running the ablation
#
# For each target, one pass over its items handles every set: the corrupted run is recorded once per
# batch, and several sets run in one forward pass (the clean batch replicated along the batch axis,
# each copy with its own neuron mask). Results are cached per target, so an interrupted run resumes;
# the progress bar counts (set, target) cells.

# %%
from modularity.models import load_model

# The folder names the settings and the items of every task in the matrix: a changed task or
# another set of passing tasks gets fresh cells instead of stale ones.
folder = paths.cache / "ablation" / (
    f"{P['ablation_mode']}_{PCT}pct_{P['ablation_items']}items_{P['n_random_controls']}controls-{CONTROL_CELLS}"
    f"_seed{P['seed']}_{combined_fingerprint(paths, tasks.task)}"
)
cells_per_target = {}
loaded = load_model(P["model"], dtype=P["dtype"], device=P["device"]) if enough else None
suite = load_suite(P) if enough else {}
started, computed_cells = time.perf_counter(), 0
with progress_bar(total=n_cells_planned, desc="ablating (set, target)", unit="cells") as bar:
    for row in tasks.itertuples() if enough else []:
        cache = folder / f"{row.task}.csv"
        if cache.exists():
            cells_per_target[row.label] = pd.read_csv(cache)
        else:
            tokens = scoring.tokenize_task(loaded, suite[row.task], P["bos"])
            indices = items_per_target[row.label]
            mean_values = ablation.mean_activations(loaded, tokens, indices, P["batch_size"]) \
                if P["ablation_mode"] == "mean" else None
            target_sets = sets_for_target(row.label)
            table = ablation.ablate_target(
                loaded, tokens, indices, target_sets, mode=P["ablation_mode"], batch_size=P["batch_size"],
                mean_values=mean_values, C=row.C, R=row.R,
            )
            cells_per_target[row.label] = table.rename(columns={"source": "set"}).assign(target=row.label)
            save_table(cells_per_target[row.label], cache)
            computed_cells += len(target_sets)
        bar.update(len(cells_per_target[row.label]))
elapsed = time.perf_counter() - started
cells = (pd.concat(cells_per_target.values(), ignore_index=True).merge(set_table, on="set")
         if cells_per_target else pd.DataFrame(columns=["set", "target", "source", "kind", "drop"]))
if computed_cells:
    print(f"{computed_cells} cells computed in {elapsed:.0f} s ({elapsed / computed_cells:.2f} s per cell)")

# %% [markdown]
# Sanity checks: accuracies are fractions; the study's drop is 1 − accuracy; the selected sets are exactly the top sets; and the unablated accuracy, re-measured on both-correct items, should be (close to) 1 — any shortfall comes from near ties that batching can flip.

# %%
if enough:
    assert cells[["accuracy", "unablated_accuracy"]].stack().between(0, 1).all()
    assert np.allclose(cells["drop"], 1 - cells.accuracy)
    assert np.allclose(cells.drop_vs_unablated, cells.unablated_accuracy - cells.accuracy)
    assert len(cells) == n_cells_planned, "one row per (set, target)"
    assert len(cells[cells.kind == "selected"]) == len(tasks) ** 2
    unablated = cells.groupby("target").unablated_accuracy.first()
    glue("min_unablated", f"{unablated.min():.3f}", display=False)
    print(f"unablated accuracy per target: min {unablated.min():.3f}, mean {unablated.mean():.3f}")
else:
    glue("min_unablated", "n/a", display=False)
    print("skipped: fewer than 2 tasks")

# %% [markdown]
# The smallest re-measured unablated accuracy over the targets is {glue:text}`min_unablated`; the column `drop_vs_unablated` measures the drop from that value instead of from 1.

# %% [markdown]
# ## 6. The ablation matrix
#
# Rows are sources S (whose neurons are silenced), columns are targets T (whose items are tested). The diagonal is self-ablation.

# %%
selected = cells[cells.kind == "selected"]
matrix = ablation.ablation_matrix(selected, "drop") if enough else None
if enough:
    assert matrix.shape == (len(tasks), len(tasks)) and not matrix.isna().any().any()
    write_matrix_csv(matrix, paths.table(f"ablation_drop_{PCT}.csv"))
    charts.show(
        charts.overlap_heatmap(matrix, title=f"Accuracy drop after ablating the source's top {PCT}% neurons",
                               value_label="drop 1 − acc′"),
        caption=f"Figure 1. Directed ablation matrix of {P['model']} ({P['ablation_mode']} ablation): row = "
                f"source task whose top {PCT}% neurons are patched, column = target task tested. Grey diagonal: "
                "self-ablation (values in the table below). Hover a cell for its value.",
    )
else:
    print("skipped: fewer than 2 tasks")

# %% [markdown]
# ## 7. Within vs across domains
#
# Self is the mean of the diagonal; within and across are means of off-diagonal cells with the two tasks in the same or in different domains (both directions); p shuffles the task → domain labels (METHOD §7, §9).

# %%
if enough:
    by_value = {value: ablation.ablation_summary(ablation.ablation_matrix(selected, value),
                                                 n_permutations=P["n_permutations"],
                                                 stronger="lower" if value == "metric_change" else "higher")
                for value in ("drop", "drop_vs_unablated", "metric_change")}
    relation_table = pd.DataFrame(by_value).T
    main = by_value["drop"]
    for key in ("self", "within", "across", "ratio"):
        glue(f"ablation_{key}", f"{main[key]:.3f}", display=False)
    glue("ablation_p", stats.format_p(main["p"], P["n_permutations"]), display=False)
    assert main["self"] >= 0 and main["within"] >= 0 and main["across"] >= 0
else:
    relation_table, main = pd.DataFrame(), {}
    for key in ("self", "within", "across", "ratio", "p"):
        glue(f"ablation_{key}", "n/a", display=False)
relation_table

# %% [markdown]
# Silencing a task's own top neurons costs **{glue:text}`ablation_self`** of its accuracy on average;
# a same-domain task's neurons cost **{glue:text}`ablation_within`**, another domain's
# **{glue:text}`ablation_across`** (ratio {glue:text}`ablation_ratio`, permutation
# p = {glue:text}`ablation_p`). The ratio is NaN when no cross-domain cell shows any drop.

# %% [markdown]
# ## 8. Three bars per domain
#
# For each domain D: within (S, T ∈ D, S ≠ T), D → others (D's neurons silenced, other tasks tested) and others → D (METHOD §7, Fig 2C).

# %%
if enough:
    bars = stats.domain_bars(matrix)
    assert bars["n"].sum() > 0
    charts.show(
        charts.domain_bars(bars, title=f"Ablation drop by domain, {P['model']}"),
        caption="Figure 2. Mean accuracy drop (± SEM over cells) per domain: within the domain, from the domain "
                "to the others, and from the others to the domain. Bars without cells (a domain with one task "
                "has no within cells) are absent.",
    )
    display(bars)
else:
    print("skipped: fewer than 2 tasks")

# %% [markdown]
# ## 9. Selected neurons vs random neurons
#
# The cells that have random controls (`CONTROL_CELLS`), selected sets vs controls (mean over draws). If the selected neurons matter, their drop should exceed the controls', most clearly on the diagonal.

# %%
has_controls = enough and (cells.kind != "selected").any()
if has_controls:
    per_cell, control_table = ablation.control_summary(cells, "drop")
    assert (control_table.n_cells > 0).any()
    controlled = cells.loc[cells.kind != "selected", ["source", "target"]].drop_duplicates()
    long = cells.merge(controlled, on=["source", "target"])  # only cells that have controls
    long = long.assign(relation=[ablation.relation_of(s, t) for s, t in zip(long.source, long.target)])
    long = long.groupby(["relation", "kind", "source", "target"], as_index=False)["drop"].mean()
    bars = long.groupby(["relation", "kind"])["drop"].agg(["mean", "sem", "count"]).reset_index()
    bars["lo"], bars["hi"] = bars["mean"] - bars["sem"].fillna(0), bars["mean"] + bars["sem"].fillna(0)
    kinds = ["selected", "layer_matched", "uniform"]
    x = alt.X("relation:N", sort=["self", "within", "across"], title=None)
    base = alt.Chart(bars).encode(x=x, xOffset=alt.XOffset("kind:N", sort=kinds))
    chart = alt.layer(
        base.mark_bar().encode(y=alt.Y("mean:Q", title="accuracy drop (mean ± SEM over cells)"),
                               color=alt.Color("kind:N", sort=kinds, title="neuron set"),
                               tooltip=["relation", "kind", alt.Tooltip("mean:Q", format=".3f"), "count"]),
        base.mark_rule(color="black").encode(y="lo:Q", y2="hi:Q"),
    ).properties(width=alt.Step(26), height=260, title="Selected top neurons vs random neurons of the same size")
    charts.show(chart, caption="Figure 3. Accuracy drop when the selected top neurons or random control sets "
                "(layer-matched or uniform, averaged over draws) are patched, on the (source, target) cells "
                f"that have controls (CONTROL_CELLS = {CONTROL_CELLS!r}), grouped into self, within-domain and "
                "cross-domain cells.")
    by_relation = control_table.set_index("relation")
    glue("self_selected", f"{by_relation.loc['self', 'selected']:.3f}", display=False)
    glue("self_layer_matched", f"{by_relation.loc['self', 'layer_matched']:.3f}", display=False)
    display(control_table)
else:
    per_cell, control_table = pd.DataFrame(), pd.DataFrame()
    glue("self_selected", "n/a", display=False)
    glue("self_layer_matched", "n/a", display=False)
    print("skipped: " + ("fewer than 2 tasks" if not enough else "n_random_controls = 0, no controls were run"))

# %% [markdown]
# On the diagonal the selected sets cost {glue:text}`self_selected` of the accuracy, layer-matched random sets of the same size {glue:text}`self_layer_matched`. The `share_above_*` columns give the fraction of cells in which the selected set hurts more than the mean of its controls.

# %% [markdown]
# ## 10. Saving the results
#
# The matrix in the study's CSV layout (`ablation_drop_<pct>.csv`), every cell in long format with the controls (`ablation_cells.csv`), and a JSON summary.

# %%
columns = ["source", "target", "kind", "draw", "n_neurons", "n_items", "accuracy", "unablated_accuracy",
           "drop", "drop_vs_unablated", "metric_change"]
if enough:
    save_table(cells[columns], paths.table("ablation_cells.csv"))
    save_json({
        "mode": P["ablation_mode"], "pct": PCT, "k": int(k), "n_tasks": int(len(tasks)),
        "items_per_target": {label: int(len(v)) for label, v in items_per_target.items()},
        "n_random_controls": P["n_random_controls"], "control_cells": CONTROL_CELLS, "seed": P["seed"],
        "summary": {value: {key: float(v) for key, v in s.items()} for value, s in by_value.items()},
        "controls": control_table.to_dict(orient="records"),
        "seconds_per_cell": elapsed / computed_cells if computed_cells else None,
    }, paths.table("ablation_summary.json"))
else:
    save_json({"skipped": "fewer than 2 tasks pass the filter and have attribution tensors",
                    "n_tasks": int(len(tasks))}, paths.table("ablation_summary.json"))
sorted(p.name for p in paths.results.iterdir() if p.name.startswith("ablation"))

# %% [markdown]
# ## Interpretation notes
#
# * The study stores Δ = 1 − acc′ and so assumes the unablated accuracy is 1 on both-correct items
#   (METHOD §15.13). `drop_vs_unablated` subtracts the re-measured value instead; the two agree when
#   the unablated accuracy is 1.
# * Attribution scored neurons at the last prompt token only, but ablation patches them at **every**
#   position, answer tokens included (METHOD §15.13): a set chosen for one position is tested on all.
# * With few items per target, one item changes the accuracy by 1/n; the drops are coarse, and the
#   normalised `metric_change` (negative = the logit difference shrinks) is a smoother companion.
# * Random controls avoid the selected neurons. A selected set that hurts no more than its
#   layer-matched controls says that *where* the neurons sit matters, not *which* they are.
