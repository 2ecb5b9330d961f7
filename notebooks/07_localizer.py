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
# # Stage 7 · The localizer: a second way to find each domain's units
#
# **Question.** Stages 2–5 select each task's neurons by attribution patching: the neurons whose
# activation most changes the answer. Neuroscience finds its networks differently, with a
# *localizer contrast*: the language network responds more to sentences than to strings of
# non-words (Fedorenko et al., 2010), the multiple-demand network more to hard than to easy tasks
# (Fedorenko et al., 2013), the theory-of-mind network more to false-belief than to
# false-photograph stories (Saxe & Kanwisher, 2003). AlKhamissi et al. (2024, "The LLM Language
# Network") applied the language contrast to the units of language models: a Welch t-test per unit,
# the top units kept, then ablated. Does the domain structure of this model look the same when its
# units are selected that way?
#
# **You will learn**
#
# * how a localizer selects units: each neuron's mean activation over a text, a Welch t-statistic
#   between the two conditions, the top-k% by t — written out below with nnsight for a few texts;
# * how much a domain's localized neurons overlap with the attribution sets of that domain's tasks,
#   compared with other domains' tasks;
# * whether ablating a domain's localized neurons hurts that domain's tasks more than others, next
#   to random neurons of the same size and layers (the form of Fig 2C);
# * where the two selections agree and where they do not.

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
ctx.settings("model", "profile", "localizer_items", "main_pct", "ablation_items", "ablation_mode", "seed", "batch_size", "dtype", "device")

# %%
import nnsight
import numpy as np
import pandas as pd
import torch
from IPython.display import display
from myst_nb import glue

from modularity.showing import charts, findings, tables
from modularity.science import localizer
from modularity.base import numerics
from modularity import stages
from modularity.science.tasks.localizer import CONTRASTS, localizer_suite
from modularity.science.tasks.schema import DOMAIN_NAMES

pd.set_option("display.precision", 3)
PCT = ctx.params["main_pct"]
N_PERM = ctx.params["n_permutations"]
glue("main_pct", PCT, display=False)
glue("localizer_items", ctx.params["localizer_items"], display=False)
SWEEP_PERM = min(N_PERM, 2000)  # the stage repeats the overlap test at every threshold with at most 2,000 permutations


def by_domain_table(within: pd.DataFrame, note: str = ""):
    """A stage's per-domain within/across table (Holm-corrected p) for reading."""
    return tables.for_reading(within[["domain", "n_tasks", "within", "across", "ratio", "delta", "p", "p_holm"]],
                              p_columns=["p", "p_holm"], n_permutations=N_PERM,
                              digits={"within": 3, "across": 3, "delta": 3},
                              rename={"n_tasks": "tasks", "delta": "Δ", "p_holm": "Holm p"},
                              note=f"Δ = within − across. {note}{tables.DOMAIN_NOTE}")

# %% [markdown]
# ## 1. The stimuli: one contrast per domain
#
# Every domain gets a *localized* condition and a matched *control*, {glue:text}`localizer_items`
# texts each, written by this project and drawn from the run's `seed` (the task chapter describes
# them and counts their lengths). The contrasts follow the neuroscience where it has one (Language,
# Social) and this book's design where it does not: Formal contrasts arithmetic with the same
# numbers without the operations, Physical contrasts physical scenes and their outcomes with
# descriptions of everyday objects that carry no physical dynamics. The model reads them as raw
# text. One pair per domain:

# %%
stimuli = localizer_suite(ctx.params["localizer_items"], ctx.params["seed"]) if ctx.params["localizer_items"] else {}
pd.set_option("display.max_colwidth", 200)
tables.for_reading(pd.DataFrame([{"domain": DOMAIN_NAMES[d], "localized": f"{CONTRASTS[d][0]}: {s.localized[0]}",
                                  "control": f"{CONTRASTS[d][1]}: {s.control[0]}"} for d, s in stimuli.items()]),
                   font_size=0.9)

# %% [markdown]
# ## 2. One contrast by hand
#
# A neuron is, as in attribution, one coordinate of the input of an MLP down projection
# (`ctx.model.site_path("neurons", layer)`). A text's value for that neuron is its activation averaged
# over the text's own tokens: the tokenizer's special tokens (a BOS, where the model has one) carry
# the same large activations in every text and are left out. We trace a few Language texts with
# nnsight, one text per trace, and average by hand.

# %%
lm = ctx.model.lm  # an nnsight model over the same weights
L, D_FF = ctx.model.n_layers, ctx.model.d_ff
few = min(4, ctx.params["localizer_items"])
texts = list(stimuli["Lan"].localized[:few]) + list(stimuli["Lan"].control[:few]) if few >= 2 else []


def traced_means(text: str) -> torch.Tensor:
    """[L · d_ff]: every neuron's activation, averaged over the text's own tokens, from one trace."""
    ids, own = localizer.pooling_masks(ctx.model.tokenizer, [text], ctx.params["bos"])
    with lm.trace(torch.tensor(ids, device=ctx.model.device)):
        sites = nnsight.save([lm.get(ctx.model.site_path("neurons", layer) + ".input")[0] for layer in range(L)])
    keep = torch.as_tensor(own[0], device=ctx.model.device)
    return torch.stack([site[keep].double().mean(0) for site in sites]).flatten().float().cpu()


# %% [markdown]
# The library's batched path (`localizer.mean_activations`, which the stage runs on every stimulus)
# must give the same means:

# %%
if texts:
    by_hand = torch.stack([traced_means(text) for text in texts])  # [2 · few, L · d_ff]
    fast = localizer.mean_activations(ctx.model, texts, ctx.params["bos"], ctx.params["batch_size"])
    held_to = numerics.tolerance(numerics.largest_magnitude(fast), L, ctx.model.dtype)
    check = numerics.assert_agree(by_hand, fast, held_to, "traced vs batched mean activations")
    print(f"{len(texts)} texts: traced and batched means agree (largest difference "
          f"{check['largest difference']:.1e}, largest value {float(fast.abs().max()):.1e}, held to {held_to:.1e})")

# %% [markdown]
# Welch's t for neuron j compares its mean over the localized texts with its mean over the control
# texts, scaled by the standard error without assuming equal variances:
# $t_j = (\bar a_j - \bar b_j) / \sqrt{s^2_{a,j}/n_a + s^2_{b,j}/n_b}$. By hand on these
# {glue:text}`few_texts` pairs, against the library's `localizer.welch_t` (scipy's `ttest_ind` with
# `equal_var=False`):

# %%
glue("few_texts", few, display=False)
if texts:
    a, b = by_hand[:few].double().numpy(), by_hand[few:].double().numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        t_hand = (a.mean(0) - b.mean(0)) / np.sqrt(a.var(0, ddof=1) / few + b.var(0, ddof=1) / few)
    t_scipy = localizer.welch_t(a, b)
    finite = np.isfinite(t_hand)
    # float64 arithmetic on the same numbers; t carries the rounding of the means it divides by the SE
    se = np.sqrt(a.var(0, ddof=1) / few + b.var(0, ddof=1) / few)[finite]
    scale = float(((np.abs(a.mean(0)) + np.abs(b.mean(0)))[finite] / se).max()) if finite.any() else 0.0
    numerics.assert_agree(t_hand[finite], t_scipy[finite], numerics.tolerance(scale, 0, "float64"), "Welch t by hand vs scipy")
    top = np.argsort(-t_scipy, kind="stable")[:5]
    display(tables.for_reading(pd.DataFrame({"layer": top // D_FF, "neuron": top % D_FF, "mean (sentences)": a.mean(0)[top],
                                             "mean (pseudowords)": b.mean(0)[top], "t": t_scipy[top]}), digits=3))

# %% [markdown]
# With {glue:text}`few_texts` texts per condition these t values are noisy; the stage uses all
# {glue:text}`localizer_items` of each condition. A domain's **localized set** is its top
# {glue:text}`main_pct`% neurons by t (positive t only), the same k as a task's attribution set, so
# the two selections have the same size.
#
# ## 3. The stage: every domain, every comparison
#
# `stages.localizer.run(ctx)` records the activations of every stimulus (forward passes only, cached per domain),
# computes t and the localized sets, and compares them with the attribution sets of the tasks that
# passed the filter, by overlap and by ablation.

# %%
result = stages.localizer.run(ctx)
for note in result.notes:
    print("note:", note)
if result.seconds.get("activations"):
    print(f"activations computed in {result.seconds['activations']:.0f} s")
if result.computed.get("ablation_cells"):
    print(f"{result.computed['ablation_cells']} ablation cells computed in {result.seconds['ablation']:.0f} s")
sets = result.sets_table
tables.folded(
    tables.for_reading(sets[["domain", "localized", "control", "stimuli per condition", "neurons"]]),
    "The contrast of each domain, its stimuli and the size of its set", summary=tables.for_reading(
        sets[["domain", "smallest t", "largest t", "neurons with t > 0", "layers used", "median layer", "deepest layer"]],
        digits={"smallest t": 1, "largest t": 1}, font_size=0.9,
        note="Smallest and largest t: of the neurons in the localized set; layers counted from 0. " + tables.DOMAIN_NOTE),
) if len(sets) else None

# %% [markdown]
# Where the localized neurons sit, and how far the selected t values stand out from the rest:

# %%
if result.sets:
    positions = pd.DataFrame([{"domain": d, "layer": int(layer)} for d, s in result.sets.items()
                              for layer in s // result.d_ff])
    charts.show(charts.layer_histogram(positions, n_layers=result.n_layers, title="Layer of each localized neuron",
                                       y_title="localized neurons"),
                caption=f"Figure 1. Layers of the top-{PCT}% neurons by Welch t of each domain's localizer "
                        f"contrast (k = {result.k} per domain), stacked by domain.")
    distribution = pd.concat([pd.DataFrame({"domain": d, "t": t, "threshold": float(t[result.sets[d]].min())})
                              for d, t in result.t.items() if result.sets[d].size])
    charts.show(charts.t_distribution(distribution),
                caption="Figure 2. Welch t of every neuron for each contrast (localized − control; symlog counts). "
                        "Neurons right of the dashed line form the domain's localized set.")

# %% [markdown]
# ## 4. Do a domain's localized neurons overlap with its tasks' attribution sets?
#
# Each cell is the study's overlap |L ∩ A|/k between a domain's localized set L and a task's
# attribution set A (both of size k). *Within* cells pair a domain's set with its own tasks, *across*
# cells with the other domains' tasks; p shuffles the task → domain labels (one-sided, within >
# across). Two unrelated random sets would overlap by k/N on average.

# %%
glue("n_tasks", len(result.tasks), display=False)
if not result.enough:
    print("Fewer than two tasks passed the filter with attribution scores: the comparisons below are skipped.")
else:
    charts.show(charts.set_task_heatmap(result.overlap_matrix, title=f"Overlap of localized and attributed "
                                        f"top-{PCT}% sets", value_label="|L ∩ A|/k"),
                caption=f"Figure 3. Overlap |L ∩ A|/k of each domain's localized set (rows) with the attribution set "
                        f"of each task that passed the filter (columns), top {PCT}%. Outlined: the task is of the "
                        f"set's domain. Chance (two random sets): {result.chance:.4f}.")
    display(by_domain_table(result.overlap_within))
overall = result.overlap_overall or dict.fromkeys(("within", "across", "ratio", "p"), float("nan"))
glue("overlap_within", f"{overall['within']:.3f}", display=False)
glue("overlap_across", f"{overall['across']:.3f}", display=False)
glue("overlap_p", findings.format_p(overall["p"], N_PERM), display=False)
glue("chance", f"{result.chance:.4f}", display=False)

# %% [markdown]
# Over all domains, a localized set shares on average **{glue:text}`overlap_within`** of its neurons
# with the attribution sets of its own domain's tasks and **{glue:text}`overlap_across`** with those
# of other domains' tasks (permutation {glue:text}`overlap_p`; two random sets: {glue:text}`chance`).
# The table gives each domain's numbers and Holm's correction across the four domains. The same
# comparison at every threshold of `top_pcts` (fewer permutations):

# %%
if result.enough:
    display(tables.for_reading(result.overlap_sweep[["pct", "k", "within", "across", "ratio", "p", "chance"]],
                               p_columns=["p"], n_permutations=SWEEP_PERM,
                               digits={"within": 3, "across": 3},
                               rename={"pct": "top %", "chance": "two random sets"},
                               note=f"p from {SWEEP_PERM:,} label permutations at each threshold."))
    bars = localizer.own_other_bars(result.overlap_matrix)
    charts.show(charts.domain_bars(bars, title="Overlap of each domain's localized set with attribution sets",
                                   y_title="overlap |L ∩ A|/k (mean ± SEM)", legend_title="localizer set → task set",
                                   kind_titles={"within": "D's localized set with D's tasks",
                                                "D→others": "D's localized set with other domains' tasks",
                                                "others→D": "other domains' localized sets with D's tasks"}),
                caption="Figure 4. Mean overlap (± SEM over cells) per domain D: D's localized set with the "
                        "attribution sets of D's tasks (within), with other domains' tasks (D → others), and the "
                        "other domains' localized sets with D's tasks (others → D).")

# %% [markdown]
# ## 5. Ablating the localized neurons
#
# Each domain's localized set is ablated on every task exactly as stage 5 ablates a task's own set
# (`ablation_mode`, the first `ablation_items` both-correct items of each target; the drop is
# 1 − ablated accuracy). Beside each set, one layer-matched random set of the same size (never
# overlapping it) runs on the tasks of the set's own domain, where the localized set should hurt
# most (on every task when `ablation_control_cells` is `"all"`): the question is whether *these*
# neurons matter, or any neurons of the same layers would.

# %%
if result.enough:
    charts.show(charts.set_task_heatmap(result.ablation_matrix, title="Accuracy drop after ablating a localized set",
                                        value_label="drop 1 − acc′"),
                caption=f"Figure 5. Accuracy drop of each task (columns) when a domain's top-{PCT}% localized neurons "
                        f"(rows) are patched ({ctx.params['ablation_mode']} ablation). Outlined: the task is of the "
                        "set's domain.")
    display(by_domain_table(result.ablation_within))
ablated = result.ablation_overall or dict.fromkeys(("within", "across", "p", "control_within", "control_across"),
                                                   float("nan"))
for key in ("within", "across"):
    glue(f"ablation_{key}", f"{ablated[key]:.3f}", display=False)
glue("ablation_p", findings.format_p(ablated["p"], N_PERM), display=False)
control_text = (f"{ablated['control_within']:.3f} on the tasks of their own domain"
                if np.isfinite(ablated["control_within"]) else "nothing measured (no controls ran)")
if np.isfinite(ablated["control_across"]):
    control_text += f" and {ablated['control_across']:.3f} on the other domains' tasks"
glue("ablation_controls", control_text, display=False)

# %% [markdown]
# Ablating a domain's localized neurons costs its own tasks **{glue:text}`ablation_within`** of their
# accuracy on average and the other domains' tasks **{glue:text}`ablation_across`** (permutation
# {glue:text}`ablation_p`). Layer-matched random sets of the same size cost
# {glue:text}`ablation_controls`. In the form of Fig 2C:

# %%
if result.enough:
    charts.show(charts.domain_bars(result.ablation_bars, title="Ablating localized sets, by domain",
                                   kind_titles={"within": "ablate D's localized set, test D's tasks",
                                                "D→others": "ablate D's localized set, test other tasks",
                                                "others→D": "ablate other domains' localized sets, test D"}),
                caption="Figure 6. Mean accuracy drop (± SEM over cells) per domain D when D's localized set is "
                        "ablated on D's tasks (within) or on other tasks (D → others), and when the other "
                        "domains' sets are ablated on D's tasks (others → D).")
    charts.show(charts.control_bars(result.control_bars, title="Localized neurons vs random neurons of the same layers"),
                caption="Figure 7. Accuracy drop when the localized sets (selected) or layer-matched random sets of "
                        "the same size are ablated, on the tasks of the set's own domain (within) and of other "
                        "domains (across; random sets only where ablation_control_cells is 'all'); mean ± SEM "
                        "over cells.")
    display(tables.for_reading(result.control_within[["domain", "n_tasks", "within", "across"]], digits=3,
                               rename={"n_tasks": "tasks", "within": "random sets: within",
                                       "across": "random sets: across"}, note=tables.DOMAIN_NOTE))

# %% [markdown]
# ## 6. Where the two selections agree
#
# Per domain and measure: does each selection favour its own domain? For the localizer, *within* and
# *across* are the means above (its set with its own domain's tasks against the others); for
# attribution, the per-domain test of stage 4 (SI Table 2): the overlap of the attribution sets of
# two tasks of the domain against pairs with one task outside it, and the same on stage 5's ablation
# matrix. A side *shows* own > other when within exceeds across at one-sided permutation
# p < 0.05 (uncorrected); the two agree when their verdicts match.

# %%
if result.enough:
    agreement = result.agreement.assign(domain=result.agreement.domain.map(DOMAIN_NAMES))
    agreement = agreement.set_index(["measure", "domain"])
    display(tables.folded(
        tables.for_reading(agreement[["localizer_within", "localizer_across", "attribution_within", "attribution_cross"]],
                           digits=3, font_size=0.9, rename=lambda c: c.replace("_", ": ")),
        "The means behind each verdict", summary=tables.for_reading(
            agreement[["localizer_p", "localizer", "attribution_p", "attribution", "agree"]],
            p_columns=["localizer_p", "attribution_p"], n_permutations=N_PERM, font_size=0.9, rename={
                "localizer_p": "localizer: p", "localizer": "localizer shows", "attribution_p": "attribution: p",
                "attribution": "attribution shows", "agree": "agree"})))
    counted = result.agreement.dropna(subset=["agree"])
    glue("n_agree", int(counted.agree.astype(bool).sum()), display=False)
    glue("n_compared", len(counted), display=False)
else:
    glue("n_agree", "n/a", display=False)
    glue("n_compared", "n/a", display=False)

# %% [markdown]
# The two selections give the same verdict in {glue:text}`n_agree` of the {glue:text}`n_compared`
# (measure, domain) comparisons that both could make.
#
# The stage saved its tables next to this page:

# %%
sorted(path.name for path in result.written)

# %% [markdown]
# ## Interpretation notes
#
# * The two selections answer different questions. Attribution asks which neurons change *this
#   task's answer*; the localizer asks which neurons are *more active* for one kind of text than for
#   a matched control, with no answer at all. Agreement is not guaranteed even for a perfectly
#   modular model.
# * The contrasts are ours. Language and Social follow the neuroscience (sentences vs pseudowords,
#   false belief vs false photograph); Formal (arithmetic vs the same numbers without operations)
#   and Physical (physical scenes vs non-physical descriptions of objects) are choices made for this
#   project, and a control differs from its condition in more than the intended property
#   (vocabulary, plausibility, token counts: the task chapter tabulates the lengths).
# * Means over tokens: a text's value averages all its own tokens, as AlKhamissi et al. did; a
#   neuron active on few tokens of a long text is diluted.
# * The localized set has the size of an attribution set (the top {glue:text}`main_pct`%), not
#   AlKhamissi et al.'s 1%, so that the overlap |L ∩ A|/k compares sets of equal size; the overlap
#   table above shows the other thresholds.
# * One layer-matched random draw per domain, on the own domain's tasks only, keeps the cost down
#   (each draw costs as many forward passes as the set it controls); the control means are therefore
#   noisier than stage 5's.
# * With few tasks in a domain (often Formal), its within cells are few and its permutation p cannot
#   be small: read the per-domain rows with their `n_tasks`.
