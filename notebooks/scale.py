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
# # At the study's scale: big models, half precision, hosted runs
#
# **Question.** The study's models have 24B–123B parameters and ran in half precision on GPUs;
# this book's committed runs are 135M–270M models in float32 on two CPU cores. What does it take
# to rerun the pipeline at the study's scale, and what changes when you do?
#
# **You will learn**
#
# * how to plan a run before starting it: whether the weights fit, on how many GPUs, how long each
#   stage takes, and which assumptions those numbers rest on (`modularity plan`);
# * how far half precision moves the results, measured on an embedded model: pass decisions, the
#   top-0.1% neuron sets, and the within/across ratios (`modularity precision`);
# * how the same stages run as nnsight traces (`backend: nnsight`), locally or on a hosted model
#   (`remote: true`), and that they give the hook backend's numbers;
# * what the GPU check measures, and whether it has been run.

# %% tags=["parameters"]
precision_run = "smollm2-135m-instruct-small"  # folder of book/results/precision/ to show
planned_model = "meta-llama/Llama-3.1-70B-Instruct"  # a study model for the worked plan

# %%
import json
from pathlib import Path

import numpy as np
import pandas as pd

from IPython.display import display

from modularity.records.params import validate_params
from modularity.running import plan
from modularity.science.tasks import DOMAIN_NAMES
from modularity.showing import tables

pd.set_option("display.precision", 3)
REPO = Path.cwd()
study_configs = json.loads((REPO / "data" / "study_model_configs.json").read_text())["models"]

# %% [markdown]
# ## 1. A plan before a run
#
# `modularity plan params/<model>.yaml` reads the model's `config.json` only — no weights — and
# prints per stage the memory and time it expects, the largest batch that fits and what to change
# if the run does not fit. Here is the plan for the paper protocol (46 tasks, 100 items each) on
# the largest Llama of the study, in bfloat16, first on one 80 GB H100 with `device: cuda`. The
# config numbers come from `data/study_model_configs.json` (as published on the Hub); a user with
# hub access just names the model.

# %%
paper_params = validate_params({"model": planned_model, "profile": "paper", "n_items": 100, "seed": 0,
                                "dtype": "bfloat16", "device": "cuda", "batch_size": 16, "attribution_items": 0,
                                "ablation_items": 32, "metric": "paper"})
geometry = plan.model_geometry(study_configs[planned_model]["config"])
one_gpu = plan.plan_run(geometry, paper_params, plan.gpu_device(1, model="H100"))
print(plan.format_plan(one_gpu, source="data/study_model_configs.json"))

# %% [markdown]
# The weights alone do not fit one GPU, and the plan says what to change. With `device: auto`
# accelerate spreads consecutive layers over every visible GPU (they then run one after another,
# so the time is one GPU's):

# %%
four_gpus = plan.plan_run(geometry, {**paper_params, "device": "auto"}, plan.gpu_device(4, model="H100"))
print(plan.format_plan(four_gpus, source="data/study_model_configs.json"))

# %% [markdown]
# The same arithmetic for the six models of the study, on as many H100s as the weights and one
# attribution pass need, with `device: auto`; the batch column is the largest `batch_size` every
# stage can use there (the params above ask for 16). The time assumes that every task passes (an upper bound: ablation grows with the square of the passing
# tasks) and 30% of the GPU's dense bf16 peak, which the GPU check (section 4) exists to measure.

# %%
rows = []
for name, entry in study_configs.items():
    g, run = plan.model_geometry(entry["config"]), {**paper_params, "model": name, "device": "auto"}
    needed = plan.plan_run(g, run, plan.gpu_device(1, model="H100")).gpus_needed  # weights + one attribution pass
    p = plan.plan_run(g, run, plan.gpu_device(needed["80 GB"], model="H100"))
    rows.append({"model": name, "parameters (B)": g.n_params / 1e9, "bf16 weights (GB)": p.weights_gb,
                 "80 GB GPUs needed": needed["80 GB"], "141 GB GPUs needed": needed["141 GB"],
                 "largest batch_size on them": min(p.largest_batch.values()),
                 "hours (upper bound)": p.total_seconds / 3600})
study_plans = pd.DataFrame(rows)
tables.for_reading(study_plans, digits={"parameters (B)": 1, "bf16 weights (GB)": 0, "hours (upper bound)": 1})

# %% [markdown]
# **Layers on several devices.** With `device: auto` the layers of one model sit on different
# devices and accelerate moves weights and activations through hooks of its own. The pipeline's
# site hooks then still see and patch the same neurons: `tests/test_dispatch_precision.py`
# dispatches a tiny model of each of the six supported families with half of its blocks offloaded
# to disk and checks that evaluation log-probs, attribution scores and ablation log-probs equal the
# single-device run exactly.

# %% [markdown]
# ## 2. Half precision, measured
#
# `modularity precision params/smollm2-135m-instruct.yaml --dtypes bfloat16` ran stages 1, 2, 3 and 5
# of the embedded SmolLM2 on the same eight tasks (two per domain, three of them within 0.05 of the
# 60% threshold) and the same items, once in float32 and once in bfloat16, on this machine's CPU. Its
# tables are committed under `book/results/precision/`; this page reads them.

# %%
folder = REPO / "book" / "results" / "precision" / precision_run
have_precision = (folder / "decisions.csv").exists()
if have_precision:
    settings = json.loads((folder / "precision.json").read_text())["settings"]
    decisions = pd.read_csv(folder / "decisions.csv")
    sets = pd.read_csv(folder / "sets.csv")
    ratios = pd.read_csv(folder / "ratios.csv")
    half = [d for d in settings["dtypes"] if d != "float32"]
    print(f"{settings['model']} ({settings['profile']}): {len(settings['tasks'])} tasks, {settings['n_items']} items "
          f"each, attribution on ≤ {settings['attribution_items']}, ablation on ≤ {settings['ablation_items']}; "
          f"compared: {', '.join(settings['dtypes'])}")
    shown = decisions.copy()
    shown["domain"] = shown.domain.map(DOMAIN_NAMES)
    shown = shown.rename(columns=lambda c: c.replace("accuracy ", "").replace("passes ", "passes, ")
                         .replace("changed ", "changed, "))
    display(tables.for_reading(shown, percent_columns=[c for c in shown.columns if c in settings["dtypes"]],
                               note="float32, bfloat16: both-correct accuracy in that precision"))
    committed = pd.read_csv(REPO / "book" / "results" / settings["model"] / settings["profile"] / "eval_summary.csv")
    same = decisions.task.map(committed.set_index("task").both_correct_accuracy).eq(decisions["accuracy float32"])
    print(f"float32 accuracies equal to the committed {settings['model']} run on {same.sum()} of {len(same)} tasks")
else:
    print(f"no precision check committed for {precision_run!r}: run `modularity precision` (see the rerun chapter)")

# %% [markdown]
# **The pass decisions.** A task passes when at least 60% of its items are answered correctly in
# both the clean and the corrupted prompt. Rounding in bfloat16 (8 bits of mantissa) moves
# log-probabilities by a few hundredths of a nat, so an item whose two answers are that close can
# change sides:

# %%
if have_precision:
    for dtype in half:
        moved = (decisions[f"accuracy {dtype}"] - decisions["accuracy float32"]).abs()
        changed = decisions[decisions[f"changed {dtype}"]]
        print(f"{dtype}: {len(changed)} of {len(decisions)} pass decisions change"
              + (f" ({', '.join(changed.task)})" if len(changed) else "")
              + f"; both-correct accuracy moves by {moved.mean():.3f} on average, at most {moved.max():.3f}")

# %% [markdown]
# **The neuron sets.** Stage 3 compares tasks through their top-0.1% positive neurons. For every
# task attributed in both precisions, the share of float32's set that bfloat16 keeps, the rank
# correlation of all neuron scores, and the largest score difference relative to the largest score:

# %%
if have_precision:
    display(tables.for_reading(sets, percent_columns=["set overlap"], digits={"spearman": 3,
                                                                               "max difference / max score": 3}))
    for dtype, group in sets.groupby("dtype"):
        print(f"{dtype}: the top-{settings['main_pct']:g}% set keeps {group['set overlap'].mean():.0%} of float32's "
              f"neurons on average (from {group['set overlap'].min():.0%} to {group['set overlap'].max():.0%}); "
              f"Spearman ρ of the scores {group.spearman.min():.3f}–{group.spearman.max():.3f}")

# %% [markdown]
# **The ratios.** What the study reports are within/across-domain ratios. On these eight tasks
# (too few for a strong test: the p-values are shown for completeness, not as a result):

# %%
if have_precision:
    display(tables.for_reading(ratios, p_columns=["overlap p", "ablation drop p"]))

# %% [markdown]
# Reading the three tables together: a set that keeps most of its neurons gives nearly the same
# overlap matrix, and the ratios follow. The largest moves come from the tasks near the threshold,
# where a changed decision adds or removes a whole row of the matrices. For a model of the study's
# size the rounding is the same per operation, but there are more layers to accumulate it: a rerun
# in bf16 should compare against fp32 on a few tasks, as here, before trusting small differences.
#
# (`stages.csv` beside these tables also records each stage's wall time and the tokens it ran; they
# were measured on a shared machine under changing load, and the float32 evaluation resumed from a
# partly filled cache, so they say nothing about the speed of one precision against the other. On
# a CPU, bfloat16 is mainly a memory saving; on a GPU it is also the fast path.)

# %% [markdown]
# ## 3. Hosted execution with nnsight
#
# Every stage is made of four model passes (`modularity.science.passes`): answer log-probs (optionally
# with neurons patched), recording a site, gradients at a site, and site sums. Each has two
# implementations: forward hooks on the local model (`backend: hooks`, the default and the
# faster one locally) and nnsight traces (`backend: nnsight`, `modularity.science.traces`). A trace body
# reads and writes the neurons through the same functions as the hooks and saves only what the
# stage keeps — answer log-probs, gradients at the last prompt position, the patched values — so
# with `remote: true` the same body runs on NDIF's copy of the model and only those small tensors
# travel back.
#
# **When to choose it.** When the model is too large for the GPUs you have and NDIF serves it.
# **What you need.** An NDIF API key (`NDIF_API_KEY`, or `nnsight.login()`), hub access for the
# model's config and tokenizer, and a model on the service's list (the list is NDIF's, it changes,
# and this project does not keep a copy). **What is tested.** The tests run every pass on both
# backends for all six families and require the same numbers: in float64 to float64 rounding, in
# float32 to float32 rounding. They also run the traces through nnsight's local simulation of
# remote execution (`remote="local"`: the body is serialised with this package hidden, as on the
# server). Remote execution itself needs the network and a key and is not exercised.
#
# The same comparison on the embedded SmolLM2, two items of a task, live. The two backends apply
# the output head to tensors of different shapes and so sum in a different order: in float32 they
# agree to rounding, not bit for bit. Each output is held to the rounding two correct float32
# computations can show (32 units of float32 per layer, relative to the magnitude the output is
# computed from: the log-probs for an exact-patching effect, the largest score for attribution
# scores; `modularity.base.numerics` says how the constant was measured):

# %%
from modularity.science import precision, scoring
from modularity.science.models import load_model
from modularity.science.tasks import generate_task

smollm2 = load_model("smollm2-135m-instruct")
task = generate_task("det_noun_agreement_regular", "small", n_items=8, seed=0)
items = np.flatnonzero(scoring.tokenize_task(smollm2, task).aligned)[:2]  # corrupted patching needs aligned items
neuron_sets = {"every 997th neuron": np.arange(0, smollm2.n_neurons, 997), "first 200, every 7th": np.arange(0, 200, 7)}

# %%
agreement = precision.backend_agreement(smollm2, task, items, neuron_sets)
display(agreement.style.format({"largest difference": "{:.2g}", "computed from": "{:.3g}", "held to": "{:.2g}"}))
assert agreement.agrees.all(), "the backends differ beyond float32 rounding"

# %% [markdown]
# To use it, add two lines to a params file (see the rerun chapter):
#
# ```yaml
# model: meta-llama/Llama-3.1-70B-Instruct
# backend: nnsight
# remote: true
# ```

# %% [markdown]
# ## 4. The GPU check
#
# `benchmarks/gpu_check.py` runs both embedded models through stages 1, 2, 3 and 5 on the eight
# tasks above in float32 and bfloat16 on one CUDA GPU, prints per stage the tokens per second and
# the share of the GPU's bf16 peak it reaches, compares bf16 with fp32 and the GPU's fp32 decisions
# with the committed CPU run, and projects the paper protocol's time for a 7B model from the
# measured rates. Its results, where one has been run:

# %%
checks = sorted((REPO / "benchmarks" / "results").glob("gpu-check-*.json"))
if not checks:
    print("No GPU check has been run for this book yet: no GPU was available to the project so far. "
          "The script is ready (python benchmarks/gpu_check.py on a CUDA machine, about 5 minutes).")
for path in checks:
    report = json.loads(path.read_text())
    print(f"{path.name}: {report['gpu']}, {report['wall_time_s']} s")
    for model, result in report["models"].items():
        display(tables.for_reading(pd.DataFrame(result["stages"])[["dtype", "stage", "seconds", "tokens_per_s",
                                                                   "share_of_bf16_peak"]],
                                   percent_columns=["share_of_bf16_peak"], digits={"seconds": 1, "tokens_per_s": 0}))
        print(f"{model}: paper protocol for a 7B model at these rates ≈ {result['paper_protocol_7b']['hours']:.1f} h")
