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
#   token ({ref}`methods §3 <methods-attribution>`);
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
# Everything this stage needs comes from the run's context: its validated parameters, its results
# (stage 1's summary, refused if a task's items changed since), its tasks and its model.

# %%
from modularity.stages.context import RunContext

ctx = RunContext.from_notebook(globals())  # the parameters above, validated
ctx.settings("model", "profile", "metric", "attribution_items", "verify_tasks", "verify_neurons", "seed")

# %%
import nnsight
import numpy as np
import pandas as pd
import torch
from IPython.display import display
from myst_nb import glue

from modularity.science import attribution, scoring
from modularity.showing import charts, tables
from modularity.base import numerics
from modularity import stages

# %% [markdown]
# ## 1. The tasks that passed the filter
#
# Only tasks that passed stage 1 are attributed, and only on their both-correct, token-aligned items.

# %%
passing = ctx.passing()
glue("n_attributed", len(passing), display=False)
if passing.empty:
    print("No task passed the filter, so there is nothing to attribute; later stages will say the same.")
tables.for_reading(passing[["task", "domain", "both_correct_accuracy", "n_both_correct", "C", "R"]], digits=2,
                   rename={"both_correct_accuracy": "both correct", "n_both_correct": "both-correct items"},
                   note=tables.DOMAIN_NOTE + " C and R: the baselines of stage 1.")

# %% [markdown]
# ## 2. Attribution of one item, by hand
#
# Take one item: the first both-correct item of the first passing task (if no task passed, the first
# token-aligned item of the first task, with C − R = 1 so the numbers are unnormalised). Its clean
# and corrupted prompts have the same length T, so position T − 1, the last prompt token, means the
# same in both runs.

# %%
if len(passing):
    task, C, R = passing.task[0], passing.C[0], passing.R[0]
    i = int(stages.scores.attributed_items(ctx, task)[0])
else:
    task, C, R = next(iter(ctx.suite)), 1.0, 0.0
    i = int(np.flatnonzero(scoring.tokenize_task(ctx.model, ctx.suite[task], ctx.params["bos"]).aligned)[0])
tokens = scoring.tokenize_task(ctx.model, ctx.suite[task], ctx.params["bos"])
clean, corrupted, y_pos, y_neg = tokens.clean[i], tokens.corrupted[i], tokens.correct[i], tokens.incorrect[i]
T, L = len(corrupted), ctx.model.n_layers
assert len(clean) == T, "a token-aligned item"
print(f"task {task}, item {i}: T = {T} prompt tokens, C = {C:.3f}, R = {R:.3f}")

# %% [markdown]
# A neuron is one coordinate of the **input of the MLP down projection** ({ref}`methods §3 <methods-attribution>`), the module at
# `ctx.model.site_path("neurons", layer)`; in an nnsight trace its `.input` is the
# live tensor [batch, positions, d_ff]. The clean run only has to record a(c) at T − 1, the last
# prompt token: nothing after it can change it (causal attention), so the prompt alone is enough.
# Values leave a trace only through `.save()` (`nnsight.save` for a list).

# %%
lm = ctx.model.lm  # nnsight.TransformersModel over the same weights


def neurons(layer):
    """The live neuron tensor of ``layer`` inside a trace ([1, S, d_ff])."""
    return lm.get(ctx.model.site_path("neurons", layer) + ".input")


def ids(sequence):  # one sequence per trace: nnsight pads ragged batches on the left
    return torch.tensor([sequence], device=ctx.model.device)


with lm.trace(ids(clean)):
    a_clean = nnsight.save([neurons(layer)[0, T - 1] for layer in range(L)])  # forward order

# %% [markdown]
# The corrupted run reads a(r) at T − 1 and the gradient that turns a change of a into a change of
# m. For one item, m = (LP(r, y⁺) − LP(r, y⁻) − R)/(C − R), so ∂m/∂a = g/(C − R). The study's
# `paper` metric treats LP(r, y⁻) as a constant (detached), so g = ∂LP(r, y⁺)/∂a ({ref}`methods §3 <methods-attribution>`);
# `logit_diff` keeps it: g = ∂LP(r, y⁺)/∂a − ∂LP(r, y⁻)/∂a, the second term from a second sequence
# r ⊕ y⁻. The weights are frozen, so the graph starts at the first layer's neurons
# (`requires_grad_`); inside `with objective.backward():` gradients arrive in reverse layer order.

# %%
def gradient(answer):
    """a(r) and ∂LP(r, answer)/∂a(r) at T − 1, per layer, from one trace of r ⊕ answer."""
    grads, sites = [None] * L, []
    with lm.trace(ids(corrupted + answer)):
        for layer in range(L):
            site = neurons(layer)
            site.requires_grad_(True)  # starts the graph at layer 0 (a no-op above it)
            sites.append(site)
        values = nnsight.save([site[0, T - 1] for site in sites])
        logp = lm.output.logits[0].float().log_softmax(-1)
        objective = sum(logp[T - 1 + j, token] for j, token in enumerate(answer))  # LP(r, answer)
        with objective.backward():
            for layer in reversed(range(L)):
                grads[layer] = sites[layer].grad[0, T - 1].save()
    return torch.stack(values).detach(), torch.stack(grads)


a_corrupted, g = gradient(y_pos)
if ctx.params["metric"] == "logit_diff":
    g = g - gradient(y_neg)[1]

# %% [markdown]
# The item's score for every neuron is g · (a(c) − a(r)) / (C − R): the first-order change of m if
# that neuron's clean value replaced its corrupted one. The library's fast path (`attribution.attribute_task`)
# computes the same with forward hooks, batched, for many items at once and weights each item by
# 1/(N·(C − R)); called on this one item (N = 1) it must agree:

# %%
by_hand = (g * (torch.stack(a_clean) - a_corrupted) / (C - R)).float().cpu()  # [L, d_ff]
fast = attribution.attribute_task(ctx.model, tokens, np.array([i]), C, R, metric=ctx.params["metric"],
                                  heads=False).neurons
# Each score is a product g · Δa / (C − R): its rounding follows the size of the factors, which can be far
# larger than the score itself (a large gradient on a neuron whose value barely moves), so the
# tolerance is taken from them.
factors = numerics.largest_magnitude(g) * numerics.largest_magnitude(torch.stack(a_clean) - a_corrupted) / abs(C - R)
held_to = numerics.tolerance(factors, L, ctx.model.dtype)  # float rounding, forward and back
check = numerics.assert_agree(by_hand, fast, held_to, "traced vs library attribution scores")
print(f"traced and library scores agree: largest difference {check['largest difference']:.1e} "
      f"(largest score {float(fast.abs().max()):.1e}, held to {held_to:.1e})")
tables.for_reading(attribution.top_neurons(fast, 5), rename={"index": "neuron"})

# %% [markdown]
# These are the neurons whose clean value would most help this one item. A task's score is the sum
# of such per-item scores over its both-correct items ({ref}`methods §3 <methods-attribution>`, without absolute values): a
# neuron that helps some items and hurts others cancels out.
#
# ## 3. Scores for every passing task
#
# `stages.attribution.run` does this for every passing task (on the first `attribution_items`
# both-correct items, in batches), caches each task's [layers × neurons] and [layers × heads] scores
# so a rerun skips finished tasks, checks the estimate against exact patching (section 5) and saves
# `attribution_summary.csv` and `attribution_check.csv` next to this page.

# %%
result = stages.attribution.run(ctx)
scores = result.scores

# %% [markdown]
# Sanity checks: every score tensor has the model's shape, is finite, and has positive entries to select from.

# %%
loaded = ctx.model
for task_name, tensors in scores.items():
    assert tensors["neurons"].shape == (loaded.n_layers, loaded.d_ff), task_name
    assert tensors["heads"].shape == (loaded.n_layers, loaded.n_heads), task_name
    assert torch.isfinite(tensors["neurons"]).all(), task_name
    assert (tensors["neurons"] > 0).any(), task_name
tables.for_reading(result.summary)

# %% [markdown]
# ## 4. The strongest neurons of one task
#
# The ten highest-scoring neurons of the first passing task, by layer and index:

# %%
if scores:
    first = next(iter(scores))
    print(first)
    display(tables.for_reading(attribution.top_neurons(scores[first]["neurons"], 10), rename={"index": "neuron"}))

# %% [markdown]
# ## 5. Does the first-order estimate hold? A check against exact patching
#
# For a few tasks (the `verify_tasks` with the most both-correct items) we patch single neurons for
# real (clean activation into the corrupted run at the last prompt token) and compare the measured
# change of m with the estimate, for the top-scoring neurons and as many random ones, on the first
# 16 both-correct items.

# %%
tables.for_reading(result.agreement.rename_axis("task").reset_index(), int_columns=["n"], digits=3,
                   percent_columns=["sign_agreement"], rename={"n": "neurons patched", "sign_agreement": "same sign"},
                   note="Pearson and Spearman: correlations of estimate and exact effect; slope: of the exact effect "
                        "on the estimate, through the origin; same sign: share of the neurons with a non-negligible "
                        "effect whose estimate has its sign.")

# %% [markdown]
# Sanity check: the correlation is a number in [−1, 1] for every checked task; a low value would mean the linear estimate is not trustworthy for this model.

# %%
if result.overall is not None:
    assert result.agreement.pearson.between(-1, 1).all()
    glue("check_pearson", f"{result.overall['pearson']:.3f}", display=False)
    glue("check_n", result.overall["n"], display=False)
    charts.show(charts.attribution_check(result.check),
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
# ## 6. Where the strongest neurons sit
#
# The layer of each task's top-0.1% positive neurons, per domain, shows whether domains use different depths.

# %%
main_pct = ctx.params["main_pct"]
if len(result.top_layers):
    charts.show(charts.layer_histogram(result.top_layers, n_layers=loaded.n_layers),
                caption=f"Figure 2. Layer of the top-{main_pct}% positive neurons of every passing task, "
                        "stacked by domain (counts of neurons).")

# %% [markdown]
# ## Interpretation notes
#
# * Scores are summed over items with equal weight 1/N and divided by C − R, so a score is the
#   predicted change of the normalised metric; the study weighted items per batch ({ref}`difference 18 <differs-18>`),
#   which only rescales scores and does not change any ranking.
# * With `metric: paper` the gradient only sees the clean answer under the corrupted prompt
#   ({ref}`difference 2 <differs-2>`); `metric: logit_diff` differentiates the full difference.
# * The estimate is linear: it predicts single-neuron effects well when they are small, and tends to
#   overstate the joint effect of many neurons patched together (interactions, saturation).
