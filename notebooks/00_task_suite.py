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
# # The 46-task minimal-pair suite
#
# **Question.** What exactly do the 46 tasks of the study ask, and how do we rebuild them as seeded
# minimal pairs that a small model can partly solve?
#
# **You will learn**
# * what a minimal pair is and how the clean and corrupted prompts of an item differ;
# * what each of the 46 tasks looks like, domain by domain;
# * how diverse the generated items are, and how the `paper` and `small` profiles differ;
# * how often the clean and corrupted prompts tokenize to the same length (the study drops the others);
# * the localizer stimuli with which stage 7 selects each domain's units a second way;
# * how to add a task.

# %% tags=["parameters"]
profile = "small"  # difficulty profile: "paper" (study-like) or "small" (100-300M models)
seed = 0  # random seed of the generators: same seed, same items
n_items = 100  # items generated per task
model = "smollm2-135m-instruct"  # model whose tokenizer is used for the alignment check

# %%
from modularity.science.tasks import PROFILES

if profile not in PROFILES:
    raise ValueError(f"profile must be one of {PROFILES}, got {profile!r}")
if not (isinstance(n_items, int) and n_items >= 2):
    raise ValueError(f"n_items must be an integer >= 2, got {n_items!r}")
if not isinstance(seed, int):
    raise ValueError(f"seed must be an integer, got {seed!r}")

# %% [markdown]
# ## 1. What a minimal pair is
#
# Each item has a *clean* and a *corrupted* problem that differ in one task-relevant detail; the
# correct answer of one is the foil of the other. Here is one item, rendered as the model reads it.

# %%
import pandas as pd
from modularity.science.tasks import assemble_message, generate_suite, generate_task
from modularity.showing import tables

example = generate_task("code_conditional", profile, 1, seed)
item = example.items[0]
for condition in ("clean", "corrupted"):
    print(f"[{condition}]", assemble_message(example.config, item, condition))
    print("   correct:", repr(item[f"{condition}_correct"]), " foil:", repr(item[f"{condition}_incorrect"]), "\n")

# %% [markdown]
# ## 2. One example per task
#
# The first item of a task of each domain, then of every task in the folded table: the end of its
# clean and corrupted problems (in the `small` profile many prompts start with solved examples; "↵"
# marks a line break and "…" the elided start), and the two answers: the correct one of the clean
# problem and its foil (the correct answer of the corrupted problem).

# %%
from modularity.science.tasks import prompt_tail

suite = generate_suite(profile, n_items, seed)
pd.set_option("display.max_colwidth", 120)
examples = pd.DataFrame([
    {"task": t.label, "clean problem (end)": prompt_tail(t.items[0]["clean_problem"]),
     "corrupted problem (end)": prompt_tail(t.items[0]["corrupted_problem"]),
     "correct": t.items[0]["clean_correct"], "foil": t.items[0]["clean_incorrect"]}
    for t in suite.values()
])
first_of_domain = examples.task.str.split("/").str[0].drop_duplicates().index
tables.folded(tables.for_reading(examples, font_size=0.85), f"All {len(examples)} tasks",
              summary=tables.for_reading(examples.loc[first_of_domain], font_size=0.85))

# %% [markdown]
# ## 3. Counts and diversity
#
# Per task: items, distinct templates, and distinct scenario sentences (the task-relevant sentence or
# expression of each side). A task built from a handful of sentences would show few scenarios.

# %%
from modularity.science.tasks import diversity_report

diversity = diversity_report(suite)
tables.for_reading(diversity, rename={"n_items": "items", "n_templates": "templates", "n_scenarios": "scenarios",
                                      "n_clean_problems": "distinct clean problems"}, note=tables.DOMAIN_NOTE)

# %% [markdown]
# The answers are balanced: half the items take side *a* of the pair as the clean prompt, and
# where the question names two options their order is random but identical in both prompts. The last
# column is the share of items that copying alone would solve: on both sides the query (the last
# example) names the correct answer and not the foil. Such an item tests copying, not the task, so
# every `small` task keeps it at or below 5% (a few arithmetic items name their answer by chance).

# %%
from modularity.science.tasks import copy_solvable_share, label_balance, option_first_share

balance = pd.DataFrame([{"task": name, **label_balance(task), "correct_option_named_first": option_first_share(task),
                         "copy_solvable": copy_solvable_share(task)} for name, task in suite.items()])
assert (balance.side_a_share - 0.5).abs().max() <= 0.5 / n_items + 1e-9, "clean side must alternate a/b"
assert profile != "small" or balance.copy_solvable.max() <= 0.05, "a small task is solvable by copying"
tables.for_reading(balance, percent_columns=balance.columns[1:], rename={
    "side_a_share": "clean side a", "top_answer_share": "top answer", "worst_pair_share": "worst pair",
    "correct_option_named_first": "correct named first", "copy_solvable": "copy-solvable"},
    note="Top answer: share of the most frequent correct answer among answers that occur twice or more; worst pair: "
         "in the most unbalanced answer pair (4 items or more), the share of the more frequent winner; correct named "
         "first: items whose question lists the correct option first; copy-solvable: items copying alone solves.")

# %% [markdown]
# ## 4. The two profiles side by side
#
# The same task and corruption at two difficulties: `paper` follows the study's ranges, `small`
# is calibrated for 100-300M models.

# %%
side_by_side = []
for name in ["add_sub_2op_symbolic", "number_sorting", "code_list", "logic_syllogism_1", "physics_buoyancy", "agent"]:
    row = {"task": name}
    for prof in PROFILES:
        task = generate_task(name, prof, 1, seed)
        row[prof] = prompt_tail(assemble_message(task.config, task.items[0], "clean"), width=240)
    side_by_side.append(row)
tables.for_reading(pd.DataFrame(side_by_side), font_size=0.9)

# %% [markdown]
# ## 5. Token alignment for the model's tokenizer
#
# The study keeps only items whose clean and corrupted prompts have the same number of tokens.
# We load only the tokenizer of the model and count, with the model's chat formatting.

# %%
from transformers.utils import logging as hf_logging
from modularity.science.models import load_tokenizer
from functools import partial

from modularity.science.tasks import alignment_rate, format_prompt

hf_logging.disable_progress_bar()
tokenizer = load_tokenizer(model)
formatter = partial(format_prompt, tokenizer)  # message, raw -> the prompt the model reads
alignment = pd.DataFrame([{"task": t.label, "aligned_share": alignment_rate(t, tokenizer, formatter)}
                          for t in suite.values()])
tables.for_reading(alignment.sort_values("aligned_share").head(12), percent_columns=["aligned_share"],
                   rename={"aligned_share": "aligned items"})

# %% [markdown]
# ## 6. Which tasks the embedded models solve, per profile
#
# The evaluation stage (`01_eval`) of every committed run records, per task, the both-correct accuracy
# over the token-aligned items and the 60% decision. The tables below are read from those runs
# (`book/results/<model>/<profile>/eval_summary.csv`), so they always match the results chapters; a
# profile that has not been run for a model is simply absent, never guessed.
#
# **What the `small` formal tasks are, and what they are not.** At 135M parameters the formal domain is
# the hard one. In `small` every formal task is a raw few-shot completion (solved examples of the same
# kind, then the query), because the chat-template versions scored near zero on every formal task.
# The logic tasks give *two* rules and a fact that fires one of them; the corruption swaps the rules'
# conclusions, so both candidate answers are named in both prompts. Variants with a single rule, where
# the correct conclusion is the only candidate present in the prompt, are solved by SmolLM2 on every
# item, but only because it can copy the one answer it sees: they would test copying, not logic, and
# we did not use them. The code tasks follow the same rule (the printed value must be *selected*, by an
# index, a key, a comparison or a loop count). The price is that few formal tasks pass for the
# smallest model; the tables say how many.

# %%
from modularity.records.store import committed_eval_summaries
from modularity.base.files import results_root
from modularity.science.tasks import split_variant
from modularity.science.tasks.schema import DOMAINS

measured = committed_eval_summaries()
if len(measured):  # the study's tasks only: framed variants (task~frame) are the frame-swap design's (§9)
    measured = measured[[split_variant(task)[1] is None for task in measured.task]]
if len(measured):
    counts = measured.groupby(["model", "profile", "domain"]).passes.agg(passing="sum", tasks="size")
    shares = (counts.passing.astype(str) + " of " + counts.tasks.astype(str)).unstack("domain")
    shares = shares[[d for d in DOMAINS if d in shares]].rename_axis(columns=None)
    display(tables.for_reading(shares, right=shares.columns,
                               note="Tasks passing the 60% filter, of the tasks of the domain. " + tables.DOMAIN_NOTE))
    # a task stopped early (it could no longer reach the filter) gets "*": its accuracy is an underestimate
    measured["shown"] = (measured.both_correct_accuracy.map("{:.2f}".format)
                         + measured.stopped_early.map({True: "*", False: ""}))
    measured["run"] = measured.model + " (" + measured.profile + ")"
    per_task = measured.pivot_table(index=["domain", "task"], columns="run", values="shown", aggfunc="first",
                                    sort=False)
    per_task = per_task.reindex(sorted(per_task.index, key=lambda row: DOMAINS.index(row[0])))  # the study's order
    stopped = f"{int(measured.stopped_early.sum())} of {len(measured)} (task, run) evaluations"
    per_task_table = tables.for_reading(per_task.rename_axis(columns=None), font_size=0.9, right=per_task.columns,
                                        note=f"Both-correct accuracy; * stopped early ({stopped}): the decision is "
                                             "exact, the accuracy an underestimate.")
    display(tables.folded(per_task_table, "Per task: the both-correct accuracy of every run"))
else:
    print("no evaluation results committed yet: run `modularity run params/<model>.yaml`")

# %% [markdown]
# **The calibration target.** The `small` profile was meant to let SmolLM2-135M-Instruct pass the
# filter on at least half of the tasks of *every* domain. Per domain, from its committed `small` run:

# %%
target_runs = measured[(measured.model == "smollm2-135m-instruct") & (measured.profile == "small")] if len(measured) else measured
if len(target_runs):
    target = target_runs.groupby("domain").passes.agg(passing="sum", tasks="size")
    target["needed"] = (target.tasks + 1) // 2  # at least half
    target["met"] = target.passing >= target.needed
    display(tables.for_reading(target.reindex([d for d in DOMAINS if d in target.index]), note=(
        "needed: half the domain's tasks, rounded up. " + tables.DOMAIN_NOTE)))
else:
    print("no small-profile run of smollm2-135m-instruct committed yet")

# %% [markdown]
# **Formal designs we measured and did not adopt.** `benchmarks/formal_designs.py` scores alternative
# designs for the formal tasks with the same scoring (48 items each; one CSV per model). *choice*
# designs make the model select the answer (by an index, a key, a comparison, a count or a rule);
# they include a Python REPL transcript for the code tasks and more solved examples for the suite's
# near misses. *copy* designs name only the correct answer in the query: they pass, and that is why
# they were rejected. At 135M parameters no choice design for logic or code comes close to the
# filter; that, not a lack of attempts, is why the formal row above falls short.

# %%
from modularity.base.files import REPO_ROOT

design_files = sorted((REPO_ROOT / "benchmarks" / "results").glob("formal_designs_*.csv"))
if design_files:
    designs = pd.concat([pd.read_csv(path) for path in design_files])
    assert designs.both_correct_accuracy.between(0, 1).all()
    designs["both_correct"] = designs.both_correct_accuracy.map("{:.2f}".format) + " ± " + designs.both_correct_se.map("{:.2f}".format)
    table = designs.pivot_table(index=["kind", "meant_for", "design"], columns="model", values="both_correct",
                                aggfunc="first", sort=False)
    display(tables.for_reading(table.rename_axis(index=["kind", "meant for", "design"], columns=None),
                               right=table.columns,
                               note="Both-correct accuracy ± its standard error, per model."))
    example = designs.drop_duplicates("design")[["design", "query_end", "answers"]]
    display(tables.for_reading(example, font_size=0.9,
                               rename={"query_end": "query (end)", "answers": "correct / foil"}))
else:
    print("no design record yet: run benchmarks/formal_designs.py")

# %% [markdown]
# ## 7. The study's own task files, beside this suite
#
# The study's 46 files are not redistributed here, but a run can read them as shipped: a params file
# whose `data_dir` points at a checkout of the study (`params/smollm2-135m-instruct-study-items.yaml`).
# Stage 1 of such a run leaves out the entries that cannot be scored and records, per task, what it
# left out and an audit of the files. The tables below are read from that run's committed tables,
# so this chapter never reads the study's files itself.
#
# Three things differ between the study's files and the suite generated here:
#
# * **exact duplicates**: an entry repeated verbatim counts twice in every accuracy and every
#   attribution sum; the generator draws distinct items only;
# * **invalid entries**: an item whose two answers are equal cannot be both-correct in any model;
# * **answer order and shared formats**: where a suffix lists "{correct} or {incorrect}" the correct
#   option comes first in the clean *and* the corrupted prompt ({ref}`difference 8 <differs-8>`), and ten tasks of two
#   domains share one 2-shot "Context: … Answer:" frame ({ref}`difference 9 <differs-9>`), which the clustering picks up.

# %%
import json

study_run = results_root() / "smollm2-135m-instruct-study-items" / "paper"
if (study_run / "task_files_audit.csv").exists():
    study_audit = pd.read_csv(study_run / "task_files_audit.csv")
    source = json.loads((study_run / "manifest.json").read_text())["data_source"]
    excluded = study_audit[(study_audit.n_duplicates > 0) | (study_audit.n_equal_answers > 0)
                           | (study_audit.n_other_invalid > 0)]
    display(tables.for_reading(excluded[["task", "domain", "n_items", "n_duplicates", "n_equal_answers",
                                         "n_other_invalid"]],
                               rename={"n_items": "entries", "n_duplicates": "duplicates",
                                       "n_equal_answers": "equal answers", "n_other_invalid": "otherwise invalid"}))
    print(f"{len(excluded)} of {len(study_audit)} study files have entries left out: "
          f"{study_audit.n_duplicates.sum()} exact duplicates, {study_audit.n_equal_answers.sum()} items with "
          f"equal answers, {study_audit.n_other_invalid.sum()} otherwise invalid, of {study_audit.n_items.sum():,} entries")
else:
    study_audit = None
    print("no run on the study's own items is committed: run params/smollm2-135m-instruct-study-items.yaml")

# %% [markdown]
# The same audit on the generated suites (both profiles, at this page's `n_items` and `seed`), next
# to the study's files: per domain, the entries left out, the share of items whose two prompts both
# name the correct option first, and the tasks in the shared few-shot frame.

# %%
from modularity.science.tasks import audit_items, generate_suite

def audit_by_domain(audit: pd.DataFrame) -> pd.DataFrame:
    return audit.groupby("domain").agg(
        tasks=("task", "size"), left_out=("n_duplicates", "sum"), equal_answers=("n_equal_answers", "sum"),
        correct_first=("correct_first_share", lambda shares: int((shares > 0.5).sum())),
        shared_frame=("shared_study_frame", "sum"))

audits = {f"generated ({p})": audit_items(generate_suite(p, n_items=n_items, seed=seed)) for p in PROFILES}
if study_audit is not None:
    audits = {"study's files": study_audit, **audits}
tables.for_reading(pd.concat({name: audit_by_domain(audit) for name, audit in audits.items()}, names=["suite"]),
                   rename=lambda column: column.replace("_", " "))

# %% [markdown]
# *Left out* counts exact duplicates, *equal answers* items whose two answers are the same,
# *correct first* the tasks where most items list the correct option first in both prompts (the
# option order alone gives the answer away), and *shared frame* the tasks in the study's shared
# 2-shot frame. The accuracies SmolLM2 reaches on the
# study's items (40 sampled per task) are in the per-task table of section 6, under the run
# `smollm2-135m-instruct-study-items`.
#
# ## 8. Localizer stimuli
#
# Stage 7 selects each domain's units a second way, as neuroscience finds its networks: with a
# *localizer contrast*, two kinds of text that differ in the one property the network is thought to
# process. The language network responds more to sentences than to strings of pronounceable
# non-words (Fedorenko et al., 2010), which AlKhamissi et al. (2024) used on language models; the
# theory-of-mind network more to false-belief than to false-photograph stories (Saxe & Kanwisher,
# 2003); the multiple-demand network more to harder versions of a task (Fedorenko et al., 2013).
# `modularity.science.tasks.localizer` writes one contrast per domain, from this suite's own word lists,
# scenarios and generators, seeded like the tasks (a `task_seed` per domain) and independent of the
# profile: the same battery serves every run.
#
# * **Language**: a sentence from eight frames filled with the suite's names, verbs, adjectives and
#   nouns, against a string of pseudowords built from syllables (onset, vowel, coda) with the same
#   number of words, the same word lengths (a one-letter word becomes two letters), the same
#   capitalisation and punctuation. Words of four letters or more take two syllables or more
#   (random single syllables are often words), and no pseudoword is a word of the suite's own
#   content or a listed short English word; there is no full dictionary to check against, so a rare
#   real word can slip through.
# * **Formal**: three arithmetic statements with their results (digits, or for a third of the
#   stimuli words), computed by the suite's `evaluate_expression`, against the same numbers in the
#   same order with the operations removed: the same surface without the operation.
# * **Physical**: two scenes of the suite's physical scenarios, each followed by the outcome it leads
#   to, against two descriptions of the suite's physical objects that involve no physical dynamics
#   (a catalogue, a story, a shopping list).
# * **Social**: false-belief stories against false-photograph stories: the same object, the same two
#   places and the same three-sentence structure, in which an outdated representation is a person's
#   belief in one and a photo, film, map or note in the other.
#
# One pair per domain, at the stage's default of 64 stimuli per condition and this page's seed:

# %%
from modularity.records.params import SCHEMA
from modularity.science.tasks.localizer import CONTRASTS, localizer_suite
from modularity.science.tasks.schema import DOMAIN_NAMES

localizer_items = SCHEMA["localizer_items"].default
battery = localizer_suite(localizer_items, seed)
tables.for_reading(pd.DataFrame([{"domain": DOMAIN_NAMES[d], "localized": f"{CONTRASTS[d][0]}: {s.localized[0]}",
                                  "control": f"{CONTRASTS[d][1]}: {s.control[0]}"} for d, s in battery.items()]),
                   font_size=0.9)

# %% [markdown]
# Per domain and condition: the number of distinct texts and their mean length in words,
# characters and tokens of the tokenizer loaded in section 5 (without special tokens; every text is
# read as raw text, no chat template).

# %%
import re

lengths = pd.DataFrame([
    {"domain": DOMAIN_NAMES[d], "condition": condition, "kind": CONTRASTS[d][i], "texts": len(set(texts)),
     "words": sum(len(re.findall(r"[\w'-]+", t)) for t in texts) / len(texts),
     "characters": sum(len(t) for t in texts) / len(texts),
     "tokens": sum(len(tokenizer(t, add_special_tokens=False).input_ids) for t in texts) / len(texts)}
    for d, s in battery.items() for i, (condition, texts) in enumerate((("localized", s.localized), ("control", s.control)))
])
assert (lengths.texts == localizer_items).all(), "every condition has distinct texts"
tables.for_reading(lengths.set_index(["domain", "condition"]), digits=1,
                   note="Texts: distinct texts; words, characters and tokens: mean per text.")

# %%
ratio = lengths.pivot(index="domain", columns="condition", values="tokens")
ratio = ratio["control"] / ratio["localized"]
print("Tokens of a control text per token of its localized text: "
      + "; ".join(f"{domain} {value:.2f}" for domain, value in ratio.items()) + ".")

# %% [markdown]
# What is matched and what is not: the Language pairs have the same words and letters, but
# pseudowords split into more tokens; the Formal pairs have the same numbers, the Social pairs the
# same object, places and structure; the Physical controls differ from their scenes in vocabulary as
# well as in physics. Stage 7 averages each neuron over a text's tokens, so a longer text does not
# weigh more, but what differs between two conditions besides the intended property can also drive
# a neuron's t. The localizer page of every run shows the result of each contrast.

# %% [markdown]
# (tasks-frames)=
# ## 9. Frames: the same items, written another way
#
# A task's *frame* is how its items become a prompt: an instruction before the problem, a closing
# after it, the chat template or raw text. The study's tasks of one domain tend to share a frame (the
# chapter *Domain or surface?* measures how much that explains). To test it causally, a task key may
# name a frame, `task~frame`: the task's own items, field for field, written in that frame. The frames
# are `raw` (raw text, as the Language tasks), `chat` (the problem alone in the chat template, as the
# Social-reasoning tasks), `instruction` (the chat template after "You will be given a question." and
# before "Reply with only the answer, no other words.", as the code and logic tasks), and two raw-text
# frames with an instruction opening, `given` and `complete`, for models that only continue raw text.
# One item of `desires_goals` in each frame:

# %%
from modularity.science.tasks import FRAMES, reframe

goals = generate_task("desires_goals", profile, n_items=1, seed=seed)
tables.for_reading(pd.DataFrame([
    {"task": framed.name, "chat template": not framed.config.force_base_evaluation,
     "user message (clean)": assemble_message(framed.config, framed.items[0], "clean")}
    for framed in (reframe(goals, frame) for frame in FRAMES)]),
    note="The same item in every frame; only the prompt config differs. A params file lists framed keys "
         "under tasks:, e.g. [desires_goals~raw, desires_goals~given].")

# %% [markdown]
# (tasks-open-prompts)=
# ## 10. Open prompts for the lesions
#
# Stage 9 asks what the model *writes* with one domain's units silenced, so it needs prompts that
# invite a short free answer rather than a choice between two. This project writes them from templates
# (`content/open_prompts.json`): sentences to continue whose verb must agree with a subject across an
# attractor noun of the other number (Language), arithmetic word problems with numbers drawn between
# 1 and 100 (Formal), physical scenes with one outcome, among them the study's own rubber-band prompt
# (Physical), and false-belief, true-belief and knowledge-access stories (Social). Names, objects,
# places and numbers are drawn by the run's `seed`, each domain from a seed of its own; each prompt
# has a chat message and a raw form for base models that ends where the answer begins. The *key* is
# checked as a whole word anywhere in the text (digits or words for a number): a text that repeats a
# story's own places, or names both answers, counts as stating the key, and a singular verb like "is"
# turns up in most English continuations, so the key says more beside the intact model's text than
# alone. Eight per domain, as the runs use them:

# %%
from modularity.science.tasks.open_prompts import open_prompts

open_table = pd.DataFrame([{"domain": DOMAIN_NAMES[p.domain], "prompt": p.name.split("/")[1], "message": p.message,
                            "key": " / ".join(p.keys) or "(none)"} for p in open_prompts(8, seed)])
tables.folded(tables.for_reading(open_table, font_size=0.85), "All 32 open prompts",
              summary=tables.for_reading(open_table.groupby("domain", sort=False).first().reset_index(), font_size=0.85))

# %% [markdown]
# ## 11. How to add a task
#
# 1. Write a builder `build(rng, profile) -> MinimalPair` in the domain's module
#    (`modularity/tasks/formal.py`, `language.py`, `physical.py` or `social.py`); put sentences and
#    word lists in `content/` or `wordlists/` JSON files.
# 2. Register it with a `TaskSpec(name, domain, build, configs)` in that module's `SPECS`.
# 3. Add an independent answer check to `tests/test_tasks.py`.
#
# The generator draws pairs until it has `n_items` distinct ones, alternates which side is clean,
# and shuffles, so balance and determinism come for free.

# %%
import random
from modularity.science.tasks import MinimalPair, PromptConfig, TaskSpec

def build_parity(rng: random.Random, profile: str) -> MinimalPair:
    n = rng.randint(1, 50) * 2
    return MinimalPair(f"Is {n} even or odd?", "even", f"Is {n + 1} even or odd?", "odd", template_id="parity")

spec = TaskSpec("parity", "MD", build_parity, {p: PromptConfig(path="parity.json") for p in PROFILES})
spec.build_pair(random.Random(seed), profile)
