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
# large within a domain and small across domains ({ref}`methods §7 <methods-ablation>`).
#
# **You will learn**
#
# * how "corrupted" activation patching ablates a neuron set: the target's clean run receives, at
#   every position, the values those neurons take on the target's own corrupted prompt — written
#   out below with nnsight for one item;
# * what the study's stored number means: Δ = 1 − ablated accuracy, which assumes the unablated
#   accuracy is exactly 1 (we re-measure it, {ref}`difference 13 <differs-13>`);
# * how to read the directed source × target matrix: self-ablation, within-domain and cross-domain
#   drops, and the within-vs-across permutation test;
# * whether the selected neurons hurt more than random neuron sets of the same size and layers.

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
ctx.settings("model", "profile", "main_pct", "ablation_items", "ablation_mode", "n_random_controls", "ablation_control_cells", "seed", "batch_size", "dtype", "device")

# %%
import numpy as np
import pandas as pd
import torch
from myst_nb import glue

from modularity.science import ablation, scoring, sites
from modularity.showing import charts, findings, tables
from modularity.base import numerics
from modularity import stages

pd.set_option("display.precision", 3)
PCT = ctx.params["main_pct"]
glue("main_pct", PCT, display=False)

# %% [markdown]
# ## 1. One item from the inside
#
# Every task that passed the filter and has attribution scores is both a source and a target. A
# source's set is its top {glue:text}`main_pct`% neurons by attribution score, positive scores only
# (as in stage 3). We take the first task as source *and* target — a diagonal cell, where the study
# found the largest drops — and its first test item: an item the model answers correctly both on the
# clean prompt and on the corrupted one.

# %%
tasks = ctx.attributed()
print(f"{len(tasks)} tasks passed the filter and have attribution scores.")
if len(tasks) >= 2:
    source = target = tasks.label[0]
    neurons = stages.scores.top_set(ctx, tasks.task[0])  # flat indices: layer · d_ff + neuron
    item = int(stages.cells.target_items(ctx, tasks.task[0])[0])
    tokens = scoring.tokenize_task(ctx.model, ctx.suite[tasks.task[0]], ctx.params["bos"])
    layers, columns = sites.split_flat(neurons, ctx.model.d_ff)
    by_layer = {int(layer): torch.as_tensor(columns[layers == layer], device=ctx.model.device)
                for layer in np.unique(layers)}  # increasing layers: the forward order
    decode = ctx.model.tokenizer.decode
    print(f"{source}: {len(neurons)} neurons in layers {sorted(by_layer)}; item {item}")
    for name, ids in (("clean", tokens.clean[item]), ("corrupted", tokens.corrupted[item])):
        print(f"{name:>9} prompt ends …{decode(ids)[-70:]!r}")
    print(f"clean answers: y⁺ = {decode(tokens.correct[item])!r}, y⁻ = {decode(tokens.incorrect[item])!r}")

# %% [markdown]
# With nnsight the patch reads as the method states it. One forward pass on the corrupted prompt
# records the set's neurons (the input of each layer's MLP down projection) at every position; a
# second, on the clean prompt, overwrites them with those values — all layers in the same pass —
# and we read the log-probability of the answer. Clean and corrupted prompts have the same length
# (the alignment filter), so positions line up. One sequence per trace: nnsight would pad a ragged
# batch on the left.

# %%
lm = ctx.model.lm  # an nnsight.TransformersModel over the same weights


def neurons_of(layer: int):  # e.g. lm.model.layers[layer].mlp.down_proj.input for Llama-style models
    return lm.get(ctx.model.site_path("neurons", layer) + ".input")


# %%
def patched_logprob(answer: list[int]) -> float:
    """LP′(clean ⊕ answer) with the source's neurons set to their corrupted-run values."""
    corrupted, clean = (torch.tensor([prompt + answer], device=ctx.model.device)
                        for prompt in (tokens.corrupted[item], tokens.clean[item]))
    recorded = {}
    with lm.trace(corrupted):
        for layer, cols in by_layer.items():
            recorded[layer] = neurons_of(layer)[0, :, cols].save()  # [positions, neurons]
    with lm.trace(clean):
        for layer, cols in by_layer.items():
            neurons_of(layer)[0, :, cols] = recorded[layer]
        logits = lm.output.logits.save()
    logp = torch.log_softmax(logits[0].double(), dim=-1)
    start = len(tokens.clean[item]) - 1  # the last prompt position predicts the first answer token
    return sum(logp[start + i, token].item() for i, token in enumerate(answer))


# %% [markdown]
# The library's batched hooks (`modularity.science.ablation.ablation_logprobs`, which the stage runs
# for every cell) must give the same two numbers.

# %%
if len(tasks) >= 2:
    by_nnsight = np.array([patched_logprob(tokens.correct[item]), patched_logprob(tokens.incorrect[item])])
    by_library = ablation.ablation_logprobs(ctx.model, tokens, [item], {source: neurons})
    held_to = numerics.tolerance(numerics.largest_magnitude(by_library.patched), ctx.model.n_layers, ctx.model.dtype)
    check = numerics.assert_agree(by_nnsight, by_library.patched[0, :, 0], held_to, "nnsight vs library patched log-probs")
    print(f"largest difference {check['largest difference']:.1e} nats, held to {held_to:.1e} (float rounding)")
    display(tables.for_reading(pd.DataFrame({"clean run": by_library.unablated[:, 0], "patched (nnsight)": by_nnsight,
                                             "patched (library)": by_library.patched[0, :, 0]},
                                            index=["LP(y⁺)", "LP(y⁻)"]), digits=3))
    print("answered correctly:", "clean run", bool(by_library.unablated[0, 0] > by_library.unablated[1, 0]),
          "· patched", bool(by_nnsight[0] > by_nnsight[1]))

# %% [markdown]
# A cell's **ablated accuracy** acc′ is the share of the target's items still answered correctly
# (LP′(y⁺) > LP′(y⁻)) with the source's set patched; the study stores the drop Δ = 1 − acc′.
#
# ## 2. Every (set, target) cell
#
# The stage does this for every source set and every target, on the target's first
# `ablation_items` test items (0 means all). For every source it also draws `n_random_controls` random
# sets of the same size that avoid the selected neurons: *layer-matched* ones keep the number of
# neurons per layer, *uniform* ones are drawn from all layers. Controls cost as much as real cells, so
# they run only on the cells `ablation_control_cells` names: `"self"` (the diagonal, the default),
# `"within"` (and same-domain cells) or `"all"`. Per target batch the corrupted run is recorded once
# and several sets share one forward pass; cells are cached per target, so an interrupted run resumes.

# %%
result = stages.ablation.run(ctx)
glue("n_ablation_tasks", len(result.tasks), display=False)
glue("n_passing", result.n_passing, display=False)
glue("n_cells_planned", len(result.cells), display=False)
if result.missing_attribution:
    print("passing but without attribution (stage 2 not run for them):", result.missing_attribution)
if not result.enough:
    print("FEWER THAN 2 TASKS: an ablation matrix needs at least two tasks, so the analysis below is skipped. "
          "Run stages 1-2 on more tasks or items, or a model that passes more tasks.")
if result.computed_cells:
    print(f"{result.computed_cells} cells computed in {result.seconds:.0f} s "
          f"({result.seconds / result.computed_cells:.2f} s per cell)")
tables.for_reading(result.tasks[["label", "n_both_correct", "C", "R"]], digits=2,
                   rename={"label": "task", "n_both_correct": "both-correct items"})

# %% [markdown]
# **{glue:text}`n_ablation_tasks` tasks** (of {glue:text}`n_passing` passing the filter) serve as
# both sources and targets, in {glue:text}`n_cells_planned` (set, target) cells. Each source set, the
# layers it occupies, and the items per target:

# %%
SET_KINDS = {"selected": "selected (top)", "layer_matched": "random, layer-matched", "uniform": "random, uniform"}
if result.enough:
    print(f"k = {result.k} neurons out of {result.n_layers} x {result.d_ff}")
    kinds = result.all_sets.kind.value_counts().reindex([k for k in SET_KINDS if k in set(result.all_sets.kind)])
    display(tables.for_reading(kinds.rename(SET_KINDS).rename_axis("kind").to_frame("sets")))
test_items = pd.Series({label: len(v) for label, v in result.items_per_target.items()}, name="test items", dtype=int)
tables.for_reading(result.sets_table.join(test_items).rename_axis("task").reset_index(),
                   note="Each task's set: its size, the number of layers it spans and its deepest layer (from 0); "
                        "test items: the items on which the task is tested as a target.")

# %% [markdown]
# Sanity checks: accuracies are fractions and the study's drop is 1 − accuracy. The unablated
# accuracy, re-measured on the same items in the same code path with nothing patched, should be
# (close to) 1 — any shortfall comes from near ties that batching can flip.

# %%
if result.enough:
    cells = result.cells
    assert cells[["accuracy", "unablated_accuracy"]].stack().between(0, 1).all()
    assert np.allclose(cells["drop"], 1 - cells.accuracy)
    assert np.allclose(cells.drop_vs_unablated, cells.unablated_accuracy - cells.accuracy)
    unablated = cells.groupby("target").unablated_accuracy.first()
    print(f"unablated accuracy per target: min {unablated.min():.3f}, mean {unablated.mean():.3f}")
glue("min_unablated", f"{unablated.min():.3f}" if result.enough else "n/a", display=False)

# %% [markdown]
# The smallest re-measured unablated accuracy over the targets is {glue:text}`min_unablated`; the
# *drop from the unablated accuracy* (`drop_vs_unablated` in the saved tables) measures the drop from
# that value instead of from 1.
#
# ## 3. The ablation matrix
#
# Rows are sources S (whose neurons are patched), columns are targets T (whose items are tested). The
# diagonal is self-ablation.

# %%
if result.enough:
    charts.show(
        charts.overlap_heatmap(result.matrix, title=f"Accuracy drop after ablating the source's top {PCT}% neurons",
                               value_label="drop 1 − acc′"),
        caption=f"Figure 1. Directed ablation matrix of {ctx.params['model']} ({ctx.params['ablation_mode']} "
                f"ablation): row = source task whose top {PCT}% neurons are patched, column = target task tested. "
                "Grey diagonal: self-ablation (values in the table below). Hover a cell for its value.")

# %% [markdown]
# ## 4. Within vs across domains
#
# Self is the mean of the diagonal; within and across are means of off-diagonal cells with the two
# tasks in the same or in different domains (both directions); p shuffles the task → domain labels
# ({ref}`methods §7 <methods-ablation>`, {ref}`methods §9 <methods-summaries>`). The change of the normalised metric (`metric_change`) is negative when ablation hurts.

# %%
main = result.summary.get("drop", {})
for key in ("self", "within", "across"):
    glue(f"ablation_{key}", f"{main[key]:.3f}" if main else "not computed", display=False)
verdict = findings.ratio_sentence("ablation drop", main.get("within"), main.get("across"), main.get("ratio"),
                                  main.get("p"), ctx.params["n_permutations"],
                                  findings.untested_reason(result.matrix))
glue("ablation_verdict", verdict, display=False)
summary_table = pd.DataFrame(result.summary).T
task_counts = summary_table.pop("n_tasks").unique() if "n_tasks" in summary_table else []
tables.for_reading(
    summary_table.rename(index={"drop": "drop 1 − acc′", "drop_vs_unablated": "drop from the unablated accuracy",
                                "metric_change": "change of the normalised metric"}),
    p_columns=[c for c in ("p",) if c in summary_table], n_permutations=ctx.params["n_permutations"],
    digits={c: 3 for c in ("self", "within", "across", "delta") if c in summary_table},
    rename={"delta": "Δ"}, note=(f"Over {int(task_counts[0])} tasks; " if len(task_counts) == 1 else "")
    + "Δ = within − across; p from label permutations.") if len(summary_table) else None

# %% [markdown]
# Patching a task's own top neurons costs **{glue:text}`ablation_self`** of its accuracy on average;
# a same-domain task's neurons cost **{glue:text}`ablation_within`**, another domain's
# **{glue:text}`ablation_across`**. {glue:text}`ablation_verdict`
#
# ## 5. Three bars per domain
#
# For each domain D: within (S, T ∈ D, S ≠ T), D → others (D's neurons patched, other tasks tested)
# and others → D ({ref}`methods §7 <methods-ablation>`, Fig 2C).

# %%
if result.enough:
    charts.show(charts.domain_bars(result.domain_bars, title=f"Ablation drop by domain, {ctx.params['model']}"),
                caption="Figure 2. Mean accuracy drop (± SEM over cells) per domain: within the domain, from the "
                        "domain to the others, and from the others to the domain. Bars without cells (a domain "
                        "with one task has no within cells) are absent.")
tables.for_reading(result.domain_bars, digits={"mean": 3, "sem": 3}, int_columns=["n"],
                   rename={"kind": "which cells", "mean": "mean drop", "sem": "± SEM", "n": "cells"},
                   note=tables.DOMAIN_NOTE) if len(result.domain_bars) else None

# %% [markdown]
# ## 6. Selected neurons vs random neurons
#
# On the cells that have random controls: if the selected neurons matter, their drop should exceed
# that of the controls (mean over draws), most clearly on the diagonal.

# %%
if not result.controls.empty:
    charts.show(charts.control_bars(result.control_bars),
                caption="Figure 3. Accuracy drop when the selected top neurons or random control sets "
                        "(layer-matched or uniform, averaged over draws) are patched, on the (source, target) "
                        f"cells that have controls (ablation_control_cells = {ctx.params['ablation_control_cells']!r}), "
                        "grouped into self, within-domain and cross-domain cells.")
    self_row = result.controls.set_index("relation").loc["self"]
glue("self_selected", f"{self_row['selected']:.3f}" if not result.controls.empty else "n/a", display=False)
glue("self_layer_matched", f"{self_row['layer_matched']:.3f}" if not result.controls.empty else "n/a", display=False)
if not result.controls.empty:  # one row per (relation, kind of set)
    by_relation = result.controls.set_index("relation")
    long = pd.DataFrame([{"relation": relation, "neurons patched": SET_KINDS[kind],
                          "cells": by_relation.at[relation, "n_cells" if kind == "selected" else f"n_cells_{kind}"],
                          "mean drop": by_relation.at[relation, kind],
                          "selected hurts more": by_relation.get(f"share_above_{kind}", {}).get(relation)}
                         for relation in by_relation.index for kind in SET_KINDS if kind in by_relation])
    display(tables.for_reading(long, int_columns=["cells"], digits={"mean drop": 3},
                               percent_columns=["selected hurts more"]))

# %% [markdown]
# On the diagonal the selected sets cost {glue:text}`self_selected` of the accuracy, layer-matched
# random sets of the same size {glue:text}`self_layer_matched`. *Selected hurts more* is the share of
# cells in which the selected set costs more accuracy than the mean of its random sets of that kind.
#
# The stage saved the matrix in the study's CSV layout, every cell in long format with the controls,
# and a JSON summary:

# %%
sorted(path.name for path in result.written)

# %% [markdown]
# ## Interpretation notes
#
# * The study stores Δ = 1 − acc′ and so assumes the unablated accuracy is 1 on both-correct items
#   ({ref}`difference 13 <differs-13>`). `drop_vs_unablated` subtracts the re-measured value instead; the two agree when
#   the unablated accuracy is 1.
# * Attribution scored neurons at the last prompt token only, but ablation patches them at **every**
#   position, answer tokens included ({ref}`difference 13 <differs-13>`): a set chosen for one position is tested on all.
# * With few items per target, one item changes the accuracy by 1/n; the drops are coarse, and the
#   normalised `metric_change` (negative = the logit difference shrinks) is a smoother companion.
# * Random controls avoid the selected neurons. A selected set that hurts no more than its
#   layer-matched controls says that *where* the neurons sit matters, not *which* they are.
