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
# # Stage 1 · Evaluation: which tasks can the model do?
#
# **Question.** Before asking *which neurons* support a task, we must know whether the model solves
# the task at all. Attribution and ablation only ever use items the model gets right in both
# conditions, and a task enters the analysis only if enough of its items are right.
#
# **You will learn**
#
# * how a multi-token answer is scored by teacher forcing (summed log-probability, {ref}`methods §2 <methods-evaluation>`), and
#   how to read these scores from the model's own logits with an nnsight trace;
# * what *clean correct*, *corrupted correct* and *both correct* mean for a minimal pair;
# * why items whose clean and corrupted prompts differ in length are dropped;
# * which tasks pass the 60% inclusion filter, per domain, with their binomial standard error.
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
# Everything this stage needs comes from one object, the run's context: its validated parameters
# (papermill only warns about unknown names; the schema in `modularity.records.params` refuses them), where
# its results go, its tasks and its model (loaded on first use).

# %%
from modularity.stages.context import RunContext

ctx = RunContext.from_notebook(globals())  # the parameters above, validated
ctx.settings("model", "profile", "data_dir", "n_items", "seed", "threshold", "stop_early", "dtype", "device", "bos")

# %%
import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display
from myst_nb import glue

from modularity.showing import charts, tables
from modularity.base import numerics
from modularity.science import scoring
from modularity import stages
from modularity.science.tasks import DOMAIN_NAMES

pd.set_option("display.precision", 3)

# %% [markdown]
# ## 1. The model and the tasks
#
# The model (an embedded alias resolves to files installed from PyPI; no network) and the task suite of the chosen profile.

# %%
loaded = ctx.model
tables.for_reading(pd.Series({
    "family": loaded.family.name,
    "layers": loaded.n_layers,
    "MLP neurons per layer": loaded.d_ff,
    "MLP neurons in all": loaded.n_neurons,
    "chat template": loaded.has_chat_template,
    "tasks": len(ctx.suite),
    "items per task": int(np.median([len(t) for t in ctx.suite.values()])),
}, name=ctx.params["model"]).to_frame())

# %% [markdown]
# ## 2. Scoring one minimal pair by hand
#
# Take the first item of the first task. Here are its two prompts exactly as the model reads them
# (chat template applied unless the task is a raw-text Language task) and its two candidate answers:
# y⁺ (`clean_correct`) and y⁻ (`clean_incorrect`). Both prompts are scored on the *same* two answers.

# %%
example_task = next(iter(ctx.suite.values()))
example = example_task.items[0]
clean_prompt, corrupted_prompt = (p[0] for p in scoring.task_prompts(loaded, example_task))
tokens = scoring.tokenize_task(loaded, example_task, ctx.params["bos"])
prompts = {"clean": tokens.clean[0], "corrupted": tokens.corrupted[0]}
answers = {"y+": tokens.correct[0], "y-": tokens.incorrect[0]}
print(f"task: {example_task.label}\n--- clean prompt ---\n{clean_prompt}\n--- corrupted prompt ---\n{corrupted_prompt}")
print(f"y+ = {example['clean_correct']!r} {answers['y+']}   y- = {example['clean_incorrect']!r} {answers['y-']}")

# %% [markdown]
# The score of an answer y = y₁…y_m after a prompt of T tokens is its *teacher-forced* log-probability
# ({ref}`methods §2 <methods-evaluation>`): feed prompt ⊕ answer once, and add up the log-probabilities the model gives each answer
# token at the position just before it. Counting positions from 0, the prompt fills positions
# 0…T − 1, so the logits at position T − 1 predict y₁, those at T predict y₂, and so on:
# LP(p, y) = Σ_{j=1..m} log softmax(logits[T − 2 + j])[y_j]. The model never generates anything;
# it only reads.
#
# We read the logits with an nnsight trace of the same weights
# (`ctx.model.lm`): inside `with lm.trace(ids):` the model runs on `ids`, and `lm.output.logits.save()`
# keeps the output once the trace ends. One sequence per trace: nnsight pads a ragged batch on the
# left, which would move the positions.

# %%
lm = ctx.model.lm  # nnsight.TransformersModel over the same weights
rows = []
for condition, prompt in prompts.items():
    for name, answer in answers.items():
        with lm.trace(torch.tensor([prompt + answer], device=loaded.device)):
            logits = lm.output.logits.save()  # [1, T + m, vocabulary]
        logp = logits[0].float().log_softmax(-1)
        T = len(prompt)
        per_token = [logp[T - 1 + j, token].item() for j, token in enumerate(answer)]
        rows.append({"prompt": condition, "answer": name, "answer tokens": len(answer),
                     "first token": per_token[0], "summed log-prob": sum(per_token)})
by_hand = pd.DataFrame(rows)
tables.for_reading(by_hand, digits={"first token": 3, "summed log-prob": 3})

# %% [markdown]
# The pipeline scores whole tasks with `scoring.sequence_logprobs`, which batches many sequences
# (right-padded), shares one forward pass between answers that allow it, and applies the output
# layer only at the answer positions. It must give the same four numbers:

# %%
library = scoring.sequence_logprobs(loaded, [prompts["clean"]] * 2 + [prompts["corrupted"]] * 2,
                                    [answers["y+"], answers["y-"]] * 2)
# Batching sums in another order: equal up to float rounding through the layers (modularity.base.numerics).
held_to = numerics.tolerance(numerics.largest_magnitude(library), loaded.n_layers, loaded.dtype)
check = numerics.assert_agree(by_hand["summed log-prob"], library, held_to, "traced vs library log-probs")
lp = by_hand["summed log-prob"].to_numpy()  # LP_cc, LP_ci, LP_rc, LP_ri
print(f"traced and library scores agree: largest difference {check['largest difference']:.1e} nats "
      f"(held to {held_to:.1e}, the rounding of float log-probs of this size through {loaded.n_layers} layers)")

# %% [markdown]
# The item is *clean correct* when the clean prompt prefers y⁺, and *corrupted correct* when the
# corrupted prompt prefers y⁻, i.e. the corruption really flipped the model's answer.

# %%
clean_ok, corrupted_ok = lp[0] > lp[1], lp[3] > lp[2]
assert np.all(lp < 0), "log-probabilities of real tokens are negative"
print(f"clean correct: {clean_ok}   corrupted correct: {corrupted_ok}   both: {clean_ok and corrupted_ok}")

# %% [markdown]
# ## 3. Scoring every item of every task
#
# `stages.evaluation.run` does the same for every item of every task, then summarises each task. Each task's
# per-item scores are cached, so an interrupted run resumes where it stopped and a rerun scores
# nothing again. With `stop_early` (the default) a task's items are scored in order, in chunks, and
# scoring stops as soon as so many aligned items are wrong that the task could not reach the
# threshold even if every remaining item were right: this *exact curtailment* gives the same
# pass/fail decision as scoring every item, and only the accuracy of an excluded task is then
# measured on the items scored. The tables are saved next to this page (`eval_summary.csv`,
# `eval_items.csv`).

# %%
result = stages.evaluation.run(ctx)
summary = result.summary

# %% [markdown]
# Sanity checks: accuracies are fractions, *both correct* cannot exceed either condition, and on the
# both-correct items the baselines satisfy C > 0 > R by construction.

# %%
acc = summary[["clean_accuracy", "corrupted_accuracy", "both_correct_accuracy"]].dropna()
assert ((acc >= 0) & (acc <= 1)).all().all()
assert (acc.both_correct_accuracy <= acc[["clean_accuracy", "corrupted_accuracy"]].min(axis=1) + 1e-12).all()
assert (summary.n_aligned <= summary.n_items).all()
kept = summary[summary.n_both_correct > 0]
assert (kept.C > 0).all() and (kept.R < 0).all()
assert summary.passes.sum() == (summary.both_correct_accuracy >= ctx.params["threshold"]).sum()
assert not summary.passes[summary.n_scored < summary.n_items].any(), "a stopped task cannot pass"

# %% [markdown]
# ### Where the items come from
#
# With `data_dir` set, the items are the study's own task files, read unmodified. Some of their
# entries cannot serve as minimal pairs and are left out: an **exact duplicate** of an earlier item
# (all six fields equal) would count one item twice in the accuracy and in the attribution sums;
# with **equal answers** (y⁺ = y⁻) the two scores of a prompt are identical, so clean and corrupted
# are indistinguishable and the item can never be right; a **broken swap** (the corrupted answers
# are not the clean ones swapped) is not a minimal pair; an **empty or missing field** leaves
# nothing to score. From the remaining items each task keeps a seeded sample of `n_items`, drawn
# per task and kept in file order (`source_items.csv` maps each item to its position in the file).

# %%
sources = result.sources
if sources is not None:
    n_left_out = sources.n_in_file.sum() - sources.n_valid.sum()
    display(Markdown(
        f"**{n_left_out:,} of the {sources.n_in_file.sum():,} entries** of the {len(sources)} files are left out "
        f"({sources.n_duplicates.sum():,} exact duplicates, {sources.n_equal_answers.sum()} with equal answers, "
        f"{n_left_out - sources.n_duplicates.sum() - sources.n_equal_answers.sum()} other), in "
        f"{(sources.n_valid < sources.n_in_file).sum()} tasks; {sources.n_used.sum():,} items are used. "
        "Tasks with exclusions (positions are 0-based indices into the task's file):"))
    left_out = sources[sources.n_valid < sources.n_in_file].assign(
        other=lambda t: t.n_not_object + t.n_empty_fields + t.n_broken_swap)
    display(tables.folded(
        tables.for_reading(left_out[["task", "domain", "n_valid", "n_not_object", "n_empty_fields", "n_broken_swap"]],
                           rename=lambda c: c.removeprefix("n_").replace("_", " ")),
        "The other entries left out, by reason, and the valid entries", summary=tables.for_reading(
            left_out[["task", "n_in_file", "n_duplicates", "n_equal_answers", "other", "n_used", "first_excluded"]],
            rename={"n_in_file": "in file", "n_duplicates": "duplicates", "n_equal_answers": "equal answers",
                    "n_used": "used", "first_excluded": "first left out"}, font_size=0.9)))
else:
    display(Markdown(f"The {len(ctx.suite)} tasks were generated by `modularity.science.tasks` ({ctx.params['profile']} "
                     f"profile, {ctx.params['n_items']} items each, seed {ctx.params['seed']}), so no item was left out."))

# %% [markdown]
# The audit of the task files (`task_files_audit.csv`, written for `data_dir` runs, over all usable items) also records two design traits of the study's files: the share of items whose clean *and* corrupted prompts list the correct answer first ("answer A or B", {ref}`difference 8 <differs-8>`) and the tasks that share the 2-shot "Context: … Answer:" frame ({ref}`difference 9 <differs-9>`).

# %%
if result.audit is not None:
    audit = result.audit
    flagged = audit[(audit.correct_first_share > 0) | audit.shared_study_frame]
    display(tables.for_reading(flagged[["task", "domain", "options_in_suffix", "correct_first_share", "fewshot_frame"]],
                               percent_columns=["correct_first_share"], note=tables.DOMAIN_NOTE,
                               rename={"options_in_suffix": "answers named in the question",
                                       "correct_first_share": "correct named first", "fewshot_frame": "few-shot frame"}))
else:
    print("generated tasks: no task-file audit")

# %% [markdown]
# ## 4. Accuracy per task

# %%
suite_name = "the study's own items" if ctx.params["data_dir"] else f"the {ctx.params['profile']} profile"
model_name, threshold = ctx.params["model"], ctx.params["threshold"]
charts.show(
    charts.accuracy_bars(summary.rename(columns={"both_correct_accuracy": "accuracy"}),
                         threshold=100 * threshold,
                         title=f"Both-correct accuracy, {model_name} ({suite_name})"),
    caption=f"Figure 1. Both-correct accuracy of {model_name} on each task of {suite_name} "
            f"(fraction of token-aligned items; hover for values). Bars below the dashed "
            f"{100 * threshold:.0f}% line are excluded from all later stages.",
)

# %% [markdown]
# Per task: the decision, the both-correct accuracy with its binomial standard error (√(p(1−p)/n)
# over the scored aligned items) and the clean and corrupted accuracies. The folded table below it
# gives the item counts (fewer items scored than aligned when scoring stopped early) and the
# baselines C and R (`eval_summary.csv` next to this notebook has every column).

# %%
decision = summary.passes.map({True: "kept", False: "excluded"})
accuracies = summary[["task", "domain", "both_correct_accuracy", "both_correct_se", "clean_accuracy",
                      "corrupted_accuracy"]].assign(decision=decision)
counts = summary[["task", "n_items", "n_aligned", "n_scored", "n_both_correct", "C", "R"]]
tables.folded(
    tables.for_reading(counts, digits={"C": 2, "R": 2}, font_size=0.9, rename={
        "n_items": "items", "n_aligned": "aligned", "n_scored": "scored", "n_both_correct": "both correct"},
        note="C and R: mean log-probability of y⁺ minus that of y⁻ over the both-correct items, "
             "after the clean (C) and the corrupted (R) prompt."),
    "Items and baselines C and R, per task",
    summary=tables.for_reading(accuracies, digits=2, font_size=0.9, rename={
        "both_correct_accuracy": "both correct", "both_correct_se": "± SE", "clean_accuracy": "clean",
        "corrupted_accuracy": "corrupted"}, note=tables.DOMAIN_NOTE + " SE: binomial standard error."))

# %% [markdown]
# ## 5. Which tasks pass, per domain

# %%
by_domain = result.by_domain.assign(**{"domain name": result.by_domain.domain.map(DOMAIN_NAMES)})
glue("n_pass", int(summary.passes.sum()), display=False)
glue("n_tasks", len(summary), display=False)
glue("median_se", f"{summary.both_correct_se.median():.3f}", display=False)
tables.for_reading(by_domain[["domain name", "n_tasks", "n_passing", "share"]], percent_columns=["share"],
                   rename={"domain name": "domain", "n_tasks": "tasks", "n_passing": "passing", "share": "share passing"})

# %% [markdown]
# **{glue:text}`n_pass` of {glue:text}`n_tasks` tasks** pass the filter. The median binomial standard
# error of a task's both-correct accuracy is {glue:text}`median_se`: tasks within about two standard
# errors of the threshold could fall either way with a different sample of items.
#
# Excluded tasks and why:

# %%
excluded = summary.loc[~summary.passes, ["task", "both_correct_accuracy", "both_correct_se", "reason"]]
tables.for_reading(excluded, digits=2, font_size=0.9, rename={"both_correct_accuracy": "both correct",
                                                              "both_correct_se": "± SE"}) \
    if len(excluded) else "no task was excluded"

# %% [markdown]
# ## Interpretation notes
#
# * Both-correct accuracy is measured on **token-aligned** items only ({ref}`methods §2 <methods-evaluation>`); the table shows how
#   many items were aligned. A low alignment rate means the accuracy describes a subset.
# * For a task whose scoring stopped early (`scored` below the item count) the accuracies describe
#   the first items only; the decision is exact, the accuracy is a rough estimate (set
#   `stop_early: false` to score every item).
# * A task below the filter is not "unsolvable": it may pass with more items, another profile or a
#   larger model. Later stages simply have nothing reliable to attribute for it.
# * Scores are computed in the model's dtype on the embedded model's dequantized 4-bit weights; near
#   ties between LP(c, y⁺) and LP(c, y⁻) can flip under another precision ({ref}`difference 15 <differs-15>`).
