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
# # Across models · Do different models agree on which task pairs interact?
#
# **Question.** One model's ablation or overlap matrix could reflect quirks of that model. If
# modularity is a property of the tasks, different models should rank the (source, target) pairs
# similarly. The study measures this with Kendall's τ between models' matrices ({ref}`methods §8 <methods-tau>`, {ref}`methods §9 <methods-summaries>`).
#
# **You will learn**
#
# * how two task × task matrices are turned into vectors (all off-diagonal directed cells for
#   ablation, the upper triangle for the symmetric overlap) and compared by Kendall's τ-b;
# * why only the tasks common to every model can be compared;
# * how each model's within- vs cross-domain summary (SI Table 1) looks side by side.
#
# This notebook is not tied to one params file: it reads the finished runs named below.

# %% tags=["parameters"]
runs_to_compare = ["smollm2-135m-instruct/small", "gemma3-270m/small"]  # folders under book/results/
pct = 0.1  # top-k% of the matrices to compare (file suffix)
n_permutations = 10000  # label permutations for the per-model within/cross p-values

# %%
import os
from pathlib import Path

import numpy as np
import pandas as pd
from myst_nb import glue

from modularity.showing import charts, tables
from modularity.science import stats, study
from modularity.base import files
from modularity.records import store
from modularity.science.matrix_csv import read_matrix_csv
from modularity.science.tasks import split_variant
from modularity.science.tasks.schema import DOMAINS

pd.set_option("display.precision", 3)
assert isinstance(runs_to_compare, list) and all(isinstance(r, str) for r in runs_to_compare)
assert pct > 0 and int(n_permutations) >= 1
results_root = files.results_root()

# %% [markdown]
# ## 0. Which tasks each model solves
#
# Both-correct accuracy of every committed run's stage 1 (each model with each task profile it was run on), in the layout of the study's SI Fig 1 (tasks as columns, runs as rows; cells outlined in red fall below the inclusion filter).

# %%
columns = ["task", "domain", "model", "both_correct_accuracy", "n_aligned", "n_both_correct", "n_scored", "passes"]
ours = store.committed_eval_summaries(results_root)  # every committed run, both profiles
# The study's tasks only: framed variants (task~frame) belong to the frame-swap design (chapter Domain or surface?).
ours = ours[[split_variant(task)[1] is None for task in ours.task]] if len(ours) else ours
ours = ours.assign(model=ours.run)[columns] if len(ours) else pd.DataFrame(columns=columns)
theirs = study.baselines().assign(n_scored=lambda t: t.n_aligned)[columns]  # the six study models
accuracy = pd.concat([theirs, ours], ignore_index=True)
assert accuracy.both_correct_accuracy.dropna().between(0, 1).all()
charts.show(charts.accuracy_heatmap(accuracy.rename(columns={"both_correct_accuracy": "accuracy",
                                                             "n_both_correct": "n_both"}), cell=13,
                                    model_order=list(dict.fromkeys(accuracy.model))),
            caption="Figure 0. Both-correct accuracy (%) of the study's six models (top rows, from its released "
                    "baselines.json on its own items) and of every run of this project (below, on generated "
                    "items), task by task (SI Fig 1 layout); hover a cell for the item counts. A task whose "
                    "evaluation stopped early, once it could no longer reach the filter, shows the accuracy of "
                    "the items scored before the stop: its decision is exact, its accuracy an underestimate.")
passing = accuracy.pivot_table(index="model", columns="domain", values="passes", aggfunc="sum", sort=False)
passing = passing[[d for d in DOMAINS if d in passing]].assign(
    all=passing.sum(axis=1), of=accuracy.groupby("model", sort=False).size())
tables.for_reading(passing.rename_axis(index="model or run", columns=None),
                   note="Tasks passing the 60% filter, per domain; all: in every domain, of: the tasks evaluated. "
                        + tables.DOMAIN_NOTE)


# %% [markdown]
# ## 1. Which runs have matrices
#
# Each run folder should hold `ablation_drop_<pct>.csv` (stage 5) and `overlap_<pct>.csv` (stage 3), with `domain/task` labels.

# %%
def read_if_present(run: str, name: str):
    path = results_root / run / name
    return read_matrix_csv(path) if path.is_file() else None

ablation_matrices, overlap_matrices, status = {}, {}, []
for run in runs_to_compare:
    found = {"ablation": read_if_present(run, f"ablation_drop_{pct}.csv"),
             "overlap": read_if_present(run, f"overlap_{pct}.csv")}
    if found["ablation"] is not None:
        ablation_matrices[run] = found["ablation"]
    if found["overlap"] is not None:
        overlap_matrices[run] = found["overlap"]
    status.append({"run": run, **{f"{kind} tasks": (len(m) if m is not None else "missing")
                                  for kind, m in found.items()}})
for matrix in [*ablation_matrices.values(), *overlap_matrices.values()]:
    assert list(matrix.index) == list(matrix.columns), "square, same labels on both axes"
tables.for_reading(pd.DataFrame(status))

# %% [markdown]
# ## 2. Common tasks
#
# τ compares the same cells in two matrices, so each kind of matrix is cut to the tasks present in **every** run that has it (the study's choice, {ref}`methods §8 <methods-tau>`).

# %%
notes, comparable = {}, {}
for kind, matrices in (("ablation", ablation_matrices), ("overlap", overlap_matrices)):
    comparable[kind], notes[kind] = stats.comparison_note(kind, matrices)
    glue(f"{kind}_note", notes[kind], display=False)
    print(notes[kind])

# %% [markdown]
# {glue:text}`ablation_note`
#
# {glue:text}`overlap_note`

# %% [markdown]
# ## 3. Kendall's τ between models
#
# For ablation all off-diagonal directed cells count (n·(n−1) values, SD with ddof 0 as the study's script); for overlap the upper triangle (n·(n−1)/2 values, SD with ddof 1). τ-b and its asymptotic p come from scipy.

# %%
tau_tables, tau_summaries = {}, {}
for kind, matrices, mode, ddof in (("ablation", ablation_matrices, "directed", 0),
                                   ("overlap", overlap_matrices, "upper", 1)):
    if not comparable[kind]:
        continue
    pairs = stats.kendall_tau_pairs(matrices, mode=mode)
    assert pairs.tau.between(-1, 1).all() and (pairs.n_values > 0).all()
    n = int(pairs.n_tasks.iloc[0])
    assert (pairs.n_values <= (n * (n - 1) if mode == "directed" else n * (n - 1) // 2)).all()
    tau_tables[kind] = pairs
    tau_summaries[kind] = {**stats.kendall_summary(pairs, ddof=ddof), "n_tasks": n}
for kind in ("ablation", "overlap"):
    s = tau_summaries.get(kind)
    text = (f"τ = {s['tau_mean']:.3f}" + (f" ± {s['tau_sd']:.3f}" if np.isfinite(s["tau_sd"]) else "")
            + f" over {s['pairs']} pair(s), range {s['tau_min']:.3f} to {s['tau_max']:.3f}, "
            f"largest p = {s['p_max']:.2g}, {s['n_tasks']} tasks") if s else "not computed (see above)"
    glue(f"{kind}_tau", text, display=False)
tables.for_reading(
    pd.concat([table.assign(matrix=kind, models=table.model_a + " and " + table.model_b)
               for kind, table in tau_tables.items()])[["matrix", "models", "tau", "p", "n_tasks", "n_values"]],
    p_columns=["p"], digits={"tau": 3},
    rename={"tau": "τ", "n_tasks": "common tasks", "n_values": "cells"},
    note="p: asymptotic p of Kendall's τ-b (scipy).") if tau_tables else \
    "τ needs two models: add a second run to runs_to_compare once its stages 3 and 5 have run."

# %% [markdown]
# **Ablation:** {glue:text}`ablation_tau`.
#
# **Overlap:** {glue:text}`overlap_tau`.
#
# With a single pair there is no spread: the SD is undefined (ddof 1) or 0 (ddof 0).

# %% [markdown]
# ## 4. The cells of the first pair, side by side
#
# Each point is one (source, target) cell: its value in one model against the other. Agreement shows up as a rising cloud.

# %%
if "ablation" in tau_tables:
    first = tau_tables["ablation"].iloc[0]
    chart = charts.paired_cells(ablation_matrices[first.model_a], ablation_matrices[first.model_b],
                                name_a=first.model_a, name_b=first.model_b,
                                title="Ablation drops of two models, cell by cell")
    charts.show(chart, caption=f"Figure 1. Off-diagonal ablation cells (source → target) of {first.model_a} "
                f"against {first.model_b}; τ = {first.tau:.3f}. Many cells sit at 0 in both models: τ-b "
                "handles such ties, but they weaken it.")
else:
    print("τ needs two models: nothing to plot.")

# %% [markdown]
# ## 5. Each model's modularity (SI Table 1)
#
# Within- and cross-domain means, their ratio and the permutation p, for the overlap and the ablation matrix of each run ({ref}`methods §9 <methods-summaries>`).

# %%
table_rows = []
for run in runs_to_compare:
    if run in overlap_matrices:  # the one rule for too few tasks: no numbers, the reason instead
        reason = stats.untestable_reason(overlap_matrices[run])
        row = {} if reason else stats.model_summary(overlap_matrices[run], ablation_matrices.get(run),
                                                    n_permutations=int(n_permutations))
        table_rows.append({"run": run, **row, "not computed": reason or ""})
si_table = pd.DataFrame(table_rows).set_index("run") if table_rows else pd.DataFrame()
tested = si_table[si_table["not computed"] == ""] if len(si_table) else si_table
if len(tested) >= 2:
    si_table = pd.concat([si_table, stats.summarise_models(tested.drop(columns="not computed"))])

# %%
MEASURES = {"n_tasks_{}": "tasks", "{}_within": "within", "{}_cross": "cross", "{}_ratio": "ratio", "{}_p": "p"}
kinds = [kind for kind in ("overlap", "ablation") if f"{kind}_p" in si_table]
long = pd.concat({kind: si_table[[c.format(kind) for c in MEASURES]].set_axis(list(MEASURES.values()), axis=1)
                  for kind in kinds}, names=["matrix", "run"]).swaplevel() if kinds else pd.DataFrame()
if len(long):
    long = long.reindex(pd.MultiIndex.from_product([si_table.index, kinds], names=["run", "matrix"]))
reasons = [f"{run}: {why}." for run, why in si_table.get("not computed", pd.Series(dtype=str)).items()
           if isinstance(why, str) and why]
tables.for_reading(long, p_columns=["p"], n_permutations=int(n_permutations), digits={"within": 3, "cross": 3},
                   note=" ".join((["mean and sd: across the runs above; p-values are not averaged."]
                                  if "mean" in si_table.index else []) + ["Not computed for"] * bool(reasons) + reasons)
                   or None) \
    if len(long) else (tables.for_reading(si_table.reset_index()) if len(si_table)
                       else "no run has an overlap matrix yet")

# %% [markdown]
# ## 6. The runs beside the study
#
# Each run's overlap ratio, ablation ratio and ARI next to the study's six models (the same functions on their released matrices), and Kendall's τ between each run's matrices and each study model's on the tasks the two share.

# %%
placed_runs = {run: study.model_statistics(overlap_matrices[run], ablation_matrices.get(run),
                                           n_permutations=int(n_permutations))
               for run in runs_to_compare if run in overlap_matrices}
if placed_runs:
    placed = study.beside_study(placed_runs, n_permutations=int(n_permutations))
    charts.show(charts.beside_study(placed, title="The runs beside the study's six models"),
                caption="Figure 2. Overlap ratio and ablation ratio (within / across, log scale) and ARI of each "
                        "run (red, one row each) and of the study's six models (grey; hover for names). A run with "
                        "too few tasks for the tests keeps its row without a point (table of section 5).")
    display(tables.for_reading(placed.pivot_table(index="model", columns="measure", values="value", sort=False,
                                                  dropna=False)
                               .rename_axis(index="model or run", columns=None)))
else:
    print("no run has an overlap matrix yet")

# %%
tau_vs_study = pd.concat(
    {(run, kind): study.tau_against_study(matrices[run], kind, name=run).set_index("study_model")
     for kind, matrices in (("overlap", overlap_matrices), ("ablation", ablation_matrices))
     for run in runs_to_compare if run in matrices}, names=["run", "matrix"]) if placed_runs else pd.DataFrame()
tau_summary = tau_vs_study.groupby(["run", "matrix"], sort=False).agg(
    tau_mean=("tau", "mean"), tau_min=("tau", "min"), tau_max=("tau", "max"), common_tasks=("n_tasks", "median")) \
    if len(tau_vs_study) else pd.DataFrame()
tables.for_reading(tau_summary.reindex([row for run in runs_to_compare for row in tau_summary.index if row[0] == run]),
    digits={"tau_mean": 3, "tau_min": 3, "tau_max": 3},
    rename={"tau_mean": "mean τ", "tau_min": "lowest τ", "tau_max": "highest τ", "common_tasks": "common tasks"}) \
    if len(tau_vs_study) else "nothing to compare"

# %% [markdown]
# Each row summarises τ between one run's matrix and each of the six study models' (mean, range, and
# the median number of tasks the pair shares); the per-pair values are on each run's stage-6 page.
#
# ## Interpretation notes
#
# * τ is a rank correlation over cells; most cross-domain ablation cells are near 0 in every model,
#   so many ties. A positive τ means the models agree on *which* pairs interact, not on how strongly.
# * The asymptotic p treats the cells as independent, which they are not (cells share tasks); read
#   it as a rough guide.
# * Small embedded models pass fewer tasks than the study's large ones, so the common task set can be
#   small and τ noisy. The study had 6 models and 29–30 common tasks ({ref}`methods §8 <methods-tau>`).
