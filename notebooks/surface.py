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
# # Domain or surface?
#
# **Question.** The study reads shared top neurons as a shared cognitive domain. But the tasks of
# one domain also share how they are *written*: the eight arithmetic tasks use one template, the
# code tasks, one logic task and two physics tasks open with "You will be given …", the Language
# tasks are the only ones read as raw text, most Social-reasoning answers are sentences and the
# Language answers single words. Attribution is taken at the last prompt token on the difference between two answers, so
# neurons that read a shared frame or write a shared kind of answer would be shared by tasks of
# similar surface whatever their domain. How much of the domain effect is surface?
#
# **You will learn**
#
# * how each task's surface is described: frame, answer form, task family, length
#   ({ref}`methods §12 <methods-surface>`);
# * how pairwise overlap is modelled on same domain plus surface, with p-values from permuting
#   tasks (QAP), for the study's six models, their average, and their ablation matrices;
# * how the within/cross ratio and the clustering look when surface cannot help;
# * a causal test the released data cannot give: the same items written in other frames.

# %% tags=["parameters"]
frame_swap_run = "smollm2-135m-instruct-frame-swap/small"  # the frame-swap run (book/results/<run>/<profile>)
n_permutations = 10000  # task permutations for every p-value

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from modularity.base.files import REPO_ROOT
from modularity.science import overlap, study, surface
from modularity.science.matrix_csv import read_matrix_csv
from modularity.showing import charts, findings, tables

SURFACE = study.task_surface()
OVERLAPS = {**study.overlap_matrices(0.1), "six-model average": study.overlap_matrix("average", 0.1)}
ABLATIONS = {**study.ablation_matrices(), "six-model average": study.average_ablation()}


def p_text(p):
    return findings.format_p(p, n_permutations)


# %% [markdown]
# ## 1. How the study's tasks are written
#
# Each task's surface is read from its prompt config and its items (the study's files; the table is
# derived by `scripts/derive_study_surface.py` and ships with the book, the items do not). The
# **frame** is the first that applies of: raw text (no chat template); a few-shot
# "Context: … Answer:" frame; a fixed opening (the first four words of more than half the
# messages); a fixed closing (their last four words); else the chat template around a free question.
# The **answer form** is that of most answers (number, word, phrase, sentence, symbols); a **task
# family** is a set of tasks written from one template with different parameters.

# %%
shown = SURFACE.reset_index()[["task", "frame", "answer_form", "family", "prompt_words"]]
tables.for_reading(shown, digits={"prompt_words": 0},
                   rename={"answer_form": "answer", "prompt_words": "words per prompt"},
                   note="One row per task of the study (its items, duplicates left out). " + tables.DOMAIN_NOTE)

# %% [markdown]
# Which frames cross domains: the number of tasks of each domain written in each frame.

# %%
crossing = pd.crosstab(SURFACE.frame, SURFACE.domain)[[d for d in ("MD", "ToM", "phys", "Lan")]]
crossing = crossing.loc[crossing.sum(axis=1).sort_values(ascending=False).index]
tables.for_reading(crossing.reset_index(), note="Tasks per frame (rows) and domain (columns). " + tables.DOMAIN_NOTE)

# %%
average = OVERLAPS["six-model average"]
predictors = surface.pair_predictors(SURFACE, average.index)
off_diagonal = ~np.eye(len(average), dtype=bool)
cross = (predictors["same_domain"] == 0) & off_diagonal
shared_opening = cross & (predictors["same_opening"] > 0)
values = average.to_numpy()
opening_pairs = pd.DataFrame([
    {"pairs": "cross-domain, same opening", "n_pairs": int(shared_opening.sum() // 2),
     "mean overlap": values[shared_opening].mean()},
    {"pairs": "every cross-domain pair", "n_pairs": int(cross.sum() // 2), "mean overlap": values[cross].mean()},
    {"pairs": "every same-domain pair", "n_pairs": int(((predictors["same_domain"] > 0) & off_diagonal).sum() // 2),
     "mean overlap": values[(predictors["same_domain"] > 0) & off_diagonal].mean()}])
tables.for_reading(opening_pairs, digits={"mean overlap": 3}, rename={"pairs": "task pairs", "n_pairs": "how many"},
                   note="Six-model average overlap of the top 0.1% neurons, per kind of task pair.")

# %%
times = opening_pairs["mean overlap"][0] / opening_pairs["mean overlap"][1]
display(Markdown(
    f"On the six-model average, the {opening_pairs.n_pairs[0]} cross-domain pairs that share a fixed opening "
    f"overlap {opening_pairs['mean overlap'][0]:.3f} on average: {times:.1f} times the mean cross-domain overlap "
    f"({opening_pairs['mean overlap'][1]:.3f}), "
    + ("more than" if opening_pairs['mean overlap'][0] > opening_pairs['mean overlap'][2] else "less than")
    + f" the mean same-domain pair ({opening_pairs['mean overlap'][2]:.3f}). These pairs are few and come from "
    "few tasks (the two physics tasks that open this way, with the six formal ones): a description, not a test."))

# %% [markdown]
# ## 2. Same domain, or same surface? A model of the pair overlap
#
# For every pair of tasks (i, j), the overlap of their top neurons is modelled as
# `overlap = b0 + b_domain · same domain + Σ b_k · surface_k`, with the surface terms: same template
# (chat or raw), same fixed opening, same fixed closing, both few-shot, same answer form, shared
# answer words (Jaccard of closed answer vocabularies), same task family and similar prompt length
# (−|log ratio of lengths|). Pairs that share a task are not independent, so ordinary p-values would
# be far too small; each coefficient's p comes from permuting the tasks (rows and columns together)
# of the term's part not explained by the other terms, refitting, and counting how often |t| reaches
# the observed one (multiple-regression QAP with double semi-partialling, Dekker, Krackhardt &
# Snijders 2007). Without the surface terms the domain coefficient is the within − cross difference
# of the study's test; "share kept" is the coefficient beside the surface terms over the one alone.
#
# Some surface features never cross domains (the table below: the share of the pairs sharing a
# feature that lie within one domain). Such a term can only be estimated from within-domain pairs
# and can absorb part of a genuine domain effect, so the share kept is a lower bound on the domain's
# part, not an estimate of it.

# %%
within_share = pd.DataFrame([
    {"surface term": surface.TERM_NAMES[term], "pairs sharing it": int(((predictors[term] > 0) & off_diagonal).sum() // 2),
     "within one domain": ((predictors[term] > 0) & off_diagonal & (predictors["same_domain"] > 0)).sum()
     / max(((predictors[term] > 0) & off_diagonal).sum(), 1)}
    for term in ("same_template", "same_opening", "same_closing", "both_fewshot", "same_answer_form", "same_family")])
tables.for_reading(within_share, percent_columns=["within one domain"],
                   note="The study's 46 tasks: task pairs that share each feature, and the share of them within one domain.")

# %%
models = {name: surface.confound_model(matrix, SURFACE, n_permutations=n_permutations)
          for name, matrix in OVERLAPS.items()}
effects = pd.DataFrame([{"matrix": name, **surface.domain_effect(table), "r2_alone": table.r2.iloc[0],
                         "r2_with_surface": table.r2.iloc[-1]} for name, table in models.items()])
tables.for_reading(
    effects[["matrix", "coef_alone", "p_alone", "r2_alone", "coef_with_surface", "p_with_surface", "r2_with_surface",
             "share_kept"]],
    p_columns=["p_alone", "p_with_surface"], n_permutations=n_permutations,
    digits={"coef_alone": 4, "coef_with_surface": 4, "r2_alone": 2, "r2_with_surface": 2, "share_kept": 2},
    rename={"coef_alone": "coef. alone", "p_alone": "p alone", "r2_alone": "R² alone",
            "coef_with_surface": "coef. with surface", "p_with_surface": "p with surface",
            "r2_with_surface": "R² with surface",
            "share_kept": "share kept"},
    note="Same-domain coefficient of the pair-overlap model (top 0.1%) without and with the eight surface terms; "
         f"two-sided QAP p from {n_permutations:,} task permutations.")

# %%
long = pd.concat([table[table.term == surface.DOMAIN_TERM].assign(source=name) for name, table in models.items()])
long["p_text"] = long.p.map(p_text)
charts.show(charts.domain_coefficients(long[["source", "model", "coef", "p_text"]]),
            caption="Figure 1. The same-domain coefficient of each study model's overlap, alone (grey) and beside "
                    "the surface terms (blue); hover a point for its QAP p.")

# %%
display(Markdown("\n".join(f"* {findings.surface_sentence(name, surface.domain_effect(table), n_permutations)}"
                           for name, table in models.items())))

# %% [markdown]
# Every term of the model, on the six-model average. A term that is the same for every pair of the
# study's tasks (no two closed answer vocabularies share a word) cannot be estimated and says so.

# %%
beside = models["six-model average"]
beside = beside[beside.model == "domain + surface"].assign(term=lambda t: t.term.map(surface.TERM_NAMES))
tables.for_reading(beside[["term", "coef", "se", "t", "p", "note"]], p_columns=["p"], n_permutations=n_permutations,
                   digits={"coef": 4, "se": 4, "t": 2},
                   note=f"Six-model average, all terms together (R² = {beside.r2.iloc[0]:.2f}); QAP p, two-sided.")

# %% [markdown]
# ## 3. The ratio with fewer surface cues
#
# The within/cross ratio of the study's test, computed only on the pairs that differ in frame, in
# answer form, in task family, or in all three: the other cells are left out of both means and of
# every permutation, and the domain labels are shuffled while each task keeps its surface. Every
# Language task is raw text, so once pairs sharing a frame are left out no Language pair is within a
# domain, while Language × other pairs, which differ in template too, stay on the cross side; the
# last subset keeps chat-template pairs only.

# %%
ratios = pd.concat([surface.restricted_ratios(matrix, SURFACE, n_permutations=n_permutations).assign(matrix=name)
                    for name, matrix in OVERLAPS.items()])
wide = ratios.pivot(index="matrix", columns="subset", values="ratio")[list(surface.SUBSETS)].loc[list(OVERLAPS)]
p_wide = ratios.pivot(index="matrix", columns="subset", values="p")[list(surface.SUBSETS)].loc[list(OVERLAPS)]
readable = wide.map(lambda r: f"{r:.2f}") + " (" + p_wide.map(p_text) + ")"
tables.for_reading(readable.reset_index(),
                   note="Within/cross overlap ratio (top 0.1%) and its permutation p, on all pairs and on the pairs "
                        "that differ in the named surface.")

# %%
pairs = ratios[ratios.matrix == "six-model average"].set_index("subset")
display(tables.for_reading(pairs[["within_pairs", "cross_pairs"]].reset_index(),
                           rename={"within_pairs": "same-domain pairs", "cross_pairs": "cross-domain pairs"},
                           note="How many pairs each subset keeps (the study's 46 tasks)."))
display(Markdown("\n".join(f"* {findings.restricted_ratio_sentence(row, n_permutations)}"
                           for _, row in pairs.reset_index().iterrows() if row.subset != "all pairs")))
lan = [label for label in average.index if overlap.domain_of(label) == "Lan"]
lan_kept = sum(SURFACE.loc[a, "frame"] != SURFACE.loc[b, "frame"] for i, a in enumerate(lan) for b in lan[i + 1:])
display(Markdown(
    f"Of the {len(lan) * (len(lan) - 1) // 2} pairs of Language tasks, {lan_kept} differ in frame"
    + (": every Language task is raw text, so for Language the study's design cannot tell domain from frame."
       if lan_kept == 0 else ".")))

# %% [markdown]
# ## 4. What the clustering recovers
#
# The study's clustering (kNN graph, average linkage, four clusters) of each overlap matrix, scored
# against the domains, against the frames and against the task families (adjusted Rand index, with
# the labels shuffled for p).

# %%
ari = pd.concat([surface.domain_vs_frame_ari(matrix, SURFACE, n_permutations=n_permutations).assign(matrix=name)
                 for name, matrix in OVERLAPS.items()])
ari_wide = ari.pivot(index="matrix", columns="labels", values="ari")[["domain", "frame", "task family"]].loc[list(OVERLAPS)]
ari_p = ari.pivot(index="matrix", columns="labels", values="p")[["domain", "frame", "task family"]].loc[list(OVERLAPS)]
reference = ari.drop_duplicates("labels").set_index("labels").ari_of_domains
display(tables.for_reading((ari_wide.map(lambda a: f"{a:.2f}") + " (" + ari_p.map(p_text) + ")").reset_index(),
                           note="ARI of the four clusters against each labelling (4 domains, "
                                f"{SURFACE.frame.nunique()} frames, {SURFACE.family.nunique()} families), with the "
                                "labels' permutation p. Four clusters cannot match nine frames: the domains themselves "
                                f"score {reference['frame']:.2f} against the frames and {reference['task family']:.2f} "
                                "against the families."))
beyond = int((ari_wide["frame"] > reference["frame"]).sum())
display(Markdown(
    f"Against the frames, the clusters score more than the domains themselves do ({reference['frame']:.2f}) for "
    f"{beyond} of the {len(ari_wide)} matrices: "
    + ("for those, the clusters follow the frames beyond what following the domains exactly would give."
       if beyond else "none of the clusterings follows the frames beyond what following the domains would give.")))

# %% [markdown]
# ## 5. The ablation matrices
#
# The same model on the study's ablation matrices (accuracy drop of a target task when a source
# task's top neurons are ablated; every ordered pair, the surface terms symmetric).

# %%
ablation_models = {name: surface.confound_model(matrix, SURFACE, directed=True, n_permutations=n_permutations)
                   for name, matrix in ABLATIONS.items()}
ablation_effects = pd.DataFrame([{"matrix": name, **surface.domain_effect(table)}
                                 for name, table in ablation_models.items()])
display(tables.for_reading(
    ablation_effects[["matrix", "coef_alone", "p_alone", "coef_with_surface", "p_with_surface", "share_kept"]],
    p_columns=["p_alone", "p_with_surface"], n_permutations=n_permutations,
    digits={"coef_alone": 4, "coef_with_surface": 4, "share_kept": 2},
    rename={"coef_alone": "coef. alone", "p_alone": "p alone", "coef_with_surface": "coef. with surface",
            "p_with_surface": "p with surface", "share_kept": "share kept"},
    note="Same-domain coefficient of the ablation drop (source → target, top 0.1%) without and with the surface "
         "terms; share kept: with over without. The six-model average is computed here as the study computed it "
         "(it did not ship that matrix)."))
display(Markdown("\n".join(f"* {findings.surface_sentence(name + ' (ablation)', surface.domain_effect(table), n_permutations)}"
                           for name, table in ablation_models.items())))

# %% [markdown]
# And the within/cross ratio of the ablation drop on the pairs that differ in surface.

# %%
ablation_ratios = pd.concat([
    surface.restricted_ratios(matrix, SURFACE, n_permutations=n_permutations).assign(matrix=name)
    for name, matrix in ABLATIONS.items()])
wide = ablation_ratios.pivot(index="matrix", columns="subset", values="ratio")[list(surface.SUBSETS)].loc[list(ABLATIONS)]
p_wide = ablation_ratios.pivot(index="matrix", columns="subset", values="p")[list(surface.SUBSETS)].loc[list(ABLATIONS)]
tables.for_reading((wide.map(lambda r: f"{r:.2f}") + " (" + p_wide.map(p_text) + ")").reset_index(),
                   note="Within/cross ratio of the ablation drop and its permutation p, on all (source, target) pairs "
                        "and on those that differ in the named surface.")

# %% [markdown]
# ## 6. The causal test: the same items in other frames
#
# The released matrices cannot separate domain from surface where the two go together (the
# Language tasks). A task generator can: it writes the *same items* in other frames
# ({ref}`tasks chapter, Frames <tasks-frames>`). The frame-swap run takes two tasks per domain and
# renders their items in three frames: `raw` (the items as raw text), `given` (after the line "You
# will be given some text. Continue it.") and `complete` (after "Complete the last line of the text
# below."). All three are raw text: the embedded model answers these continuation items only
# without the chat template, so the frame change here is an opening line, milder than the study's
# chat, few-shot and answer-form differences, and it does not separate Language from raw text; every variant goes through evaluation, attribution, overlap
# and ablation like any task. If the neurons follow what the task is about, two variants with the
# same content in different frames overlap more than two different contents in the same frame; if
# they follow the frame, the reverse. The pair model has three terms: same frame, same content (the
# same task's items) and same domain (two different tasks of one domain), so that the domain's part
# is measured beyond a task's own items.

# %%
run_dir = REPO_ROOT / "book" / "results" / frame_swap_run
ran = (run_dir / "overlap_0.1.csv").exists()
if ran:
    evaluation = pd.read_csv(run_dir / "eval_summary.csv")
    display(tables.for_reading(
        evaluation[["task", "domain", "clean_accuracy", "corrupted_accuracy", "both_correct_accuracy", "passes"]],
        digits={"clean_accuracy": 2, "corrupted_accuracy": 2, "both_correct_accuracy": 2},
        rename={"task": "variant (task~frame)", "clean_accuracy": "clean", "corrupted_accuracy": "corrupted",
                "both_correct_accuracy": "both correct", "passes": "passes"},
        note=f"Accuracy of the frame-swap variants (run {frame_swap_run}); a variant passes with ≥ 60% both correct."))
else:
    display(Markdown(f"The frame-swap run `{frame_swap_run}` has not been run in this build of the book."))

# %%
if ran:
    swap_overlap = read_matrix_csv(run_dir / "overlap_0.1.csv")
    charts.show(charts.overlap_heatmap(swap_overlap, title="Frame-swap variants: overlap, top 0.1%", cell=13),
                caption="Figure 2. Overlap of the top 0.1% neurons between the passing variants (content~frame).")
    swap_fit, swap_cells = surface.frame_swap_test(swap_overlap, n_permutations=n_permutations)
    display(tables.for_reading(swap_cells, digits={"mean": 3},
                               rename={"pairs": "variant pairs", "n_pairs": "how many", "mean": "mean overlap"},
                               note="Mean overlap per kind of variant pair."))
    display(tables.for_reading(swap_fit.assign(term=swap_fit.term.map(surface.TERM_NAMES))[["term", "coef", "t", "p", "note"]],
                               p_columns=["p"], n_permutations=n_permutations, digits={"coef": 4, "t": 2},
                               note="Overlap on same domain, same content and same frame, together. The content and "
                                    "frame p are two-sided QAP over the variants; the domain p permutes the domain "
                                    "labels over the eight contents (one-sided, as the study's test)."))
    different = swap_overlap.where(~np.eye(len(swap_overlap), dtype=bool))
    content_of = np.array([surface.content_and_frame(label)[0] for label in swap_overlap.index])
    domain_rows = []
    for domain in ("MD", "ToM", "phys", "Lan"):
        own = np.array([overlap.domain_of(c) == domain for c in content_of])
        pair = own[:, None] & own[None, :] & (content_of[:, None] != content_of[None, :])
        names = sorted(set(content_of[own]))
        domain_rows.append({"domain": domain, "contents": " · ".join(n.split("/")[1] for n in names),
                            "same family": len({surface.FAMILIES.get(n.split("/")[1], n) for n in names}) == 1,
                            "mean overlap": float(np.nanmean(different.to_numpy()[pair])) if pair.any() else np.nan})
    display(tables.for_reading(pd.DataFrame(domain_rows), digits={"mean overlap": 3},
                               note="Per domain: overlap between the variants of its two different tasks (every "
                                    "frame), and whether the two tasks are of one family."))
    display(Markdown(findings.frame_swap_sentence("Overlap", swap_fit, swap_cells, n_permutations)))
    if (run_dir / "surface_model.csv").stat().st_size > 1:
        display(Markdown(findings.surface_sentence(
            "The run's statistics page fits §2's model to the same overlap, whose same-family and shared-answer "
            "terms also mark the pairs of one content and the families above",
            surface.domain_effect(pd.read_csv(run_dir / "surface_model.csv")), n_permutations)))

# %%
if ran and (run_dir / "ablation_drop_0.1.csv").exists():
    swap_ablation = read_matrix_csv(run_dir / "ablation_drop_0.1.csv")
    ablation_fit, ablation_cells = surface.frame_swap_test(swap_ablation, directed=True, n_permutations=n_permutations)
    display(tables.for_reading(ablation_cells, digits={"mean": 3},
                               rename={"pairs": "variant pairs", "n_pairs": "how many", "mean": "mean drop"},
                               note="Mean accuracy drop per kind of (source, target) variant pair."))
    display(Markdown(findings.frame_swap_sentence("The ablation drop", ablation_fit, ablation_cells, n_permutations)))

# %% [markdown]
# ## 7. What this shows, and what it does not
#
# * The surface descriptors are coarse: four words of opening and closing, one answer form per
#   task, families named by hand from the task names. A finer description (token-level overlap of
#   the prompts, the answers' first tokens) could explain more.
# * The regression is linear and the terms are correlated; a coefficient is the effect of its term
#   *holding the others fixed*, and where two terms go together (Language and raw text) the data
#   cannot split them. That is what the frame-swap run is for.
# * The frame-swap run uses a 135M model on the small profile's continuation items, so its frames
#   are the ones such a model can answer in (raw text, or raw text after an instruction opening). Its
#   frame change is an opening line, a milder
#   change than the study's frames (chat template, few-shot format, answer form), and the "same
#   content" pairs share every item, answers included: a large same-content overlap says the top
#   neurons follow the items rather than the opening, not yet that they follow the domain; the
#   same-domain term, across two different tasks of a domain, is the part that speaks to the domain.
#   Eight contents in three frames give few pairs of each kind, so its p-values are coarse. A larger
#   model can run the same design in the chat frames (`tasks: [desires_goals~chat,
#   desires_goals~instruction, …]`).
