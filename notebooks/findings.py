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
# # What the runs found
#
# **Question.** The study reports that in large language models the MLP neurons supporting tasks of
# one cognitive domain overlap more with each other than with other domains' neurons, and that
# ablating them hurts their own domain more. What do this book's own runs, on two small models, show,
# and what can they not show?
#
# Every number on this page is read from the runs' committed tables by the cells below, and every
# sentence that states a finding is chosen by a rule on those numbers
# (`modularity.showing.findings`): a difference is called beyond chance only when its permutation
# p is below 0.05; a test is "not computed" when the run has too few tasks for it (at least 4 tasks,
# in at least two domains with two or more tasks each: the rule of every stage); a ratio whose
# cross-domain mean is near zero is named as such; clustering "recovers" the domains only when it
# does so exactly.

# %% tags=["parameters"]
runs = ["smollm2-135m-instruct/small", "gemma3-270m/small", "smollm2-135m-instruct/paper", "gemma3-270m/paper"]

# %%
import pandas as pd
from IPython.display import Markdown, display

from modularity.base import files
from modularity.science.tasks import DOMAIN_NAMES, DOMAINS
from modularity.showing import charts, findings, tables

assert isinstance(runs, list) and runs, "runs: folders under book/results/, e.g. 'smollm2-135m-instruct/small'"
numbers = {run: findings.run_numbers(files.results_root() / run) for run in runs}

# %% [markdown]
# ## 1. The runs at a glance
#
# How many tasks of each domain pass the 60% both-correct filter (the study's inclusion rule), then
# the three numbers the study places its models by, each with its permutation p-value (shuffles of
# the task → domain labels). "not computed" marks a test the run has too few tasks for.

# %%
def cell(measure: dict, n_permutations: int, digits: int = 2) -> str:
    if pd.isna(measure["value"]):
        return "not computed"
    return f"{measure['value']:.{digits}f} ({findings.format_p(measure['p'], n_permutations)})"


passing = pd.DataFrame([{"run": n["run"], **{DOMAIN_NAMES[d]: "{} of {}".format(*n["passing"][d])
                                              for d in DOMAINS if d in n["passing"]}} for n in numbers.values()])
passing.set_index("run").rename_axis(None)

# %%
measures = pd.DataFrame([{"run": n["run"], **{m: cell(n["measures"][m], n["n_permutations"], 1 if "ratio" in m else 2)
                                              for m in findings.MEASURES}} for n in numbers.values()])
measures.set_index("run").rename_axis(None)

# %% [markdown]
# ## 2. Each run in words
#
# The same numbers, with the within- and cross-domain means the ratios are made of, what the
# localizer (stage 7: units chosen by a contrast of stimuli instead of by attribution) adds, and
# whether silencing a domain's units while the model writes (stage 9) gives the study's double
# dissociation, in the mode the lesion pages show (units held at their mean).

# %%
for run, n in numbers.items():  # each run's name links to its landing page, when the book has one
    name = f"[{n['run']}](results/{run}/overview.html)" if (files.results_root() / run / "overview.ipynb").exists() \
        else n["run"]
    display(Markdown(f"**{name}.** " + " ".join(findings.run_sentences(n))))

# %% [markdown]
# ## 3. Beside the study's six models
#
# Each run's three numbers (red) beside those of the study's six models (grey), recomputed from the
# study's released matrices by the same code (chapter *The study's own results, recomputed*).
# A run whose test is not computed has no point in that panel.

# %%
placed = pd.concat([pd.read_csv(files.results_root() / run / "beside_study.csv") for run in runs
                    if (files.results_root() / run / "beside_study.csv").exists()], ignore_index=True)
placed = placed.drop_duplicates(subset=["model", "measure"])  # each run file repeats the study's six
charts.show(charts.beside_study(placed, title="This book's runs beside the study's six models"),
            caption="Figure 1. Overlap ratio and ablation ratio (within / cross, log scale; dashed: 1, no domain "
                    "structure) and ARI of the clustering (dashed: 0, chance) of every run (red diamonds) and of the "
                    "study's six models (grey dots). Hover a point for the model, its p-value and its number of tasks.")

# %% [markdown]
# ## 4. What the study's models show, and what these runs can and cannot show

# %%
study = placed[placed.source == "study"]
lines = []
for measure in findings.MEASURES:
    rows = study[study.measure == measure]
    beyond = int(sum(findings.beyond_chance(p) for p in rows.p))
    lines.append(f"{measure}: {rows.value.min():.2f} to {rows.value.max():.2f} over the study's {len(rows)} models, "
                 f"beyond chance in {beyond} of them")
display(Markdown("The study's released data, recomputed here: " + "; ".join(lines) + "."))

display(Markdown(" ".join(findings.across_runs(numbers))))

# %% [markdown]
# ## 5. Domain or surface?
#
# Tasks of one domain also share how they are written (chapter *Domain or surface?*). The pair
# overlap and the ablation drop of the study's six models, modelled on same domain beside eight
# surface terms (frame, answer form, task family, length), with p-values from permuting tasks:

# %%
from modularity.science import study as study_data
from modularity.science import surface

SURFACE_PERMUTATIONS = 10_000
study_surface = study_data.task_surface()
surface_lines = []
for what, matrices, directed in (("overlap", study_data.overlap_matrices(0.1), False),
                                 ("ablation drop", study_data.ablation_matrices(), True)):
    effects = {name: surface.domain_effect(surface.confound_model(matrix, study_surface, directed=directed,
                                                                  n_permutations=SURFACE_PERMUTATIONS))
               for name, matrix in matrices.items()}
    surface_lines.append(findings.study_surface_sentence(effects, what, SURFACE_PERMUTATIONS))
display(Markdown(" ".join(surface_lines)))

# %% [markdown]
# The same items written in other frames (the frame-swap run, two tasks per domain in three frames)
# ask it causally:

# %%
from modularity.science.matrix_csv import read_matrix_csv

swap_dir = files.results_root() / "smollm2-135m-instruct-frame-swap" / "small"
swap_lines = []
for what, table, directed in (("Overlap", "overlap_0.1.csv", False), ("The ablation drop", "ablation_drop_0.1.csv", True)):
    if (swap_dir / table).exists():
        fit, cells = surface.frame_swap_test(read_matrix_csv(swap_dir / table), directed=directed,
                                             n_permutations=SURFACE_PERMUTATIONS)
        swap_lines.append(findings.frame_swap_sentence(what, fit, cells, SURFACE_PERMUTATIONS))
display(Markdown(" ".join(swap_lines) if swap_lines else "The frame-swap run has not been run in this build."))

# %% [markdown]
# ## 6. What a lesioned model writes
#
# Stage 9 silences each domain's attribution units (the union of its passing tasks' top sets) while
# the model answers open prompts, beside a layer-matched random set of the same size. Per run and
# silenced domain: the texts' fluency under the intact model (nats per token) and, of the prompts
# whose key the intact model states, the share whose key survives, for the domain's units and their
# random twin (units held at their mean). Each run's lesion page shows the texts.

# %%
lesion_rows = []
for run in runs:
    path = files.results_root() / run / "lesion_measures.csv"
    if not path.exists():
        continue
    table = pd.read_csv(path)
    table = table[(table["mode"] == "mean") & (table.selection == "attribution")]
    for domain, part in table.groupby("domain", sort=False):
        rows = part.set_index("kind")
        if {"selected", "layer_matched"} <= set(rows.index):
            lesion_rows.append({"run": numbers[run]["run"], "silenced": DOMAIN_NAMES.get(domain, domain),
                                "units": int(rows.n_neurons["selected"]),
                                "fluency": rows.fluency["selected"], "fluency, random twin": rows.fluency["layer_matched"],
                                "key kept": rows.key_kept["selected"], "key kept, random twin": rows.key_kept["layer_matched"],
                                "keyed prompts, all domains": int(rows.n_keyed["selected"])})
if lesion_rows:
    display(tables.for_reading(pd.DataFrame(lesion_rows), digits={"fluency": 2, "fluency, random twin": 2},
                               percent_columns=["key kept", "key kept, random twin"], font_size=0.85,
                               note="Fluency: mean log-probability per token of the texts under the intact model. "
                                    "Key kept: of the prompts whose key the intact model states."))
else:
    display(Markdown("No run of this build has stage 9 yet."))
