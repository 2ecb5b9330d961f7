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
# # Stage 9 · Lesions you can read: what the model writes with one domain's units silenced
#
# **Question.** Stages 5 and 7 measure a lesion by accuracy on scored items. The study also reports a
# qualitative double dissociation: silencing the Language units "largely preserved the models'
# reasoning abilities but introduced syntactic and morphological errors", while silencing the
# physical-reasoning units "led the models to incorrect reasoning and conclusions while preserving
# the linguistic well-formedness" of the output, shown with one prompt judged by hand. Here every
# domain's units are silenced in turn while the model answers open prompts, and the texts are
# measured: does a Language lesion cost fluency, and a reasoning lesion the answer, more than random
# units of the same layers do?
#
# **You will learn**
#
# * how to generate text with neurons held fixed at every step of greedy decoding, written out with
#   nnsight for one prompt and checked against the library's batched path;
# * how the texts are measured: fluency under the intact model, whether the key is stated,
#   repetition and length; and the minimal pairs of the Language tasks under the same lesion;
# * how a double dissociation is tested against layer-matched random units, with a permutation p.

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
ctx.settings("model", "profile", "main_pct", "ablation_items", "seed", "batch_size", "dtype", "device", "backend")

# %%
import warnings

import numpy as np
import pandas as pd
import torch
from IPython.display import Markdown, display
from myst_nb import glue

from modularity import stages
from modularity.base import numerics
from modularity.science import generation, scoring, sites
from modularity.science.tasks.schema import DOMAIN_NAMES, DOMAINS
from modularity.showing import charts, findings, tables

lesions = stages.lesions
N_PERM = ctx.params["n_permutations"]
glue("prompts_per_domain", lesions.PROMPTS_PER_DOMAIN, display=False)
glue("new_tokens", lesions.NEW_TOKENS, display=False)
glue("main_pct", ctx.params["main_pct"], display=False)
glue("shown_mode", lesions.SHOWN_MODE, display=False)
glue("examples_per_lesion", lesions.EXAMPLES_PER_LESION, display=False)

# %% [markdown]
# ## 1. The prompts
#
# {glue:text}`prompts_per_domain` open prompts per domain, written by this project and drawn by the
# run's `seed` (the tasks chapter lists how they are made): sentences to continue whose verb must
# agree with a distant subject, arithmetic word problems, physical scenes, false-belief stories. Each
# has a key where one can be checked (the agreeing verb, the result, the outcome, where the person
# will look). A model with a chat template reads the message in it; a base model reads the raw form,
# which ends where the answer begins. One per domain:

# %%
from modularity.science.tasks.open_prompts import open_prompts

prompts = open_prompts(lesions.PROMPTS_PER_DOMAIN, ctx.params["seed"])
first = {}
for p in prompts:
    first.setdefault(p.domain, p)
tables.for_reading(pd.DataFrame([{"domain": DOMAIN_NAMES[d], "prompt": p.message, "key": " / ".join(p.keys) or "none",
                                  "the key is": p.key_kind or "(no key)"} for d, p in first.items()]), font_size=0.9)

# %% [markdown]
# ## 2. The stage: every prompt under every lesion
#
# `stages.lesions.run(ctx)` builds the sets and generates. A domain's units are selected two ways:
# by **attribution**, the union of the top {glue:text}`main_pct`% sets of the domain's tasks that
# passed the filter (stage 3's sets), and by the **localizer** (stage 7's set of the domain). Each
# set has a layer-matched random twin of the same size (in every layer as many other neurons). The
# silenced neurons are held at every position, prompt and new tokens alike, at their **mean**
# activation over the suite's prompts (the both-correct items of every attributed task, as stage
# 5's mean mode) or at **zero**: corrupted patching needs a paired input that an open prompt does not
# have. Both modes run; this page shows the {glue:text}`shown_mode` mode and tabulates both. Decoding is
# greedy, {glue:text}`new_tokens` new tokens at most, one batch per prompt: a row per condition and
# mode.

# %%
result = lesions.run(ctx)
for note in result.notes:
    print("note:", note)
if result.computed.get("generations"):
    print(f"{result.computed['generations']} prompts generated in {result.seconds['generation']:.0f} s")
KIND_NAMES = {"intact": "nothing (intact model)", "selected": "the domain's units", "layer_matched": "their random twin"}
tables.for_reading(result.sets.assign(domain=result.sets.domain.map(DOMAIN_NAMES).fillna(""),
                                      kind=result.sets.kind.map(KIND_NAMES))[
    ["selection", "domain", "kind", "n_neurons", "layers"]],
    rename={"kind": "silenced", "n_neurons": "neurons", "layers": "layers used"}, font_size=0.9)

# %% [markdown]
# ## 3. One lesion by hand, with nnsight
#
# The library generates every condition of a prompt in one batch through `transformers`' own greedy
# decoding. By hand, one condition: the Language units held at their mean, written at every step of
# the decode loop with nnsight (`tracer.all()` repeats the body for each forward the loop makes).
# The chosen tokens must be the library's; where two continuations were nearly tied, rounding of
# another order of sums could pick the other one, so agreement is checked the way the tests check
# it: every token of the by-hand text is the argmax of the library's patched forward, up to the
# rounding two correct computations may show.

# %%
example_condition = next((c for c in ("attribution:Lan", "localizer:Lan") if c in result.neurons), None)
example = next((p for p in prompts if p.domain == "Lan"), prompts[0])
glue("example_condition", example_condition or "none", display=False)
if example_condition is not None and result.mean_values is not None:
    loaded = ctx.model
    lm = loaded.lm
    given = result.prompts.set_index("prompt").given[example.name]
    ids = scoring.encode_prompt(loaded.tokenizer, given, ctx.params["bos"])  # as the stage encodes it
    neurons = result.neurons[example_condition]
    layers, columns = np.divmod(neurons, loaded.d_ff)
    L, mean = loaded.n_layers, result.mean_values
    config = generation.greedy_config(loaded, lesions.NEW_TOKENS)
    # nnsight warns that the open step loop ended with the generation: by design, the result is read
    # in a block of its own.
    warnings.filterwarnings("ignore", message=".*was never reached.*")
    with lm.generate(generation_config=config) as tracer:
        with tracer.invoke(torch.tensor([ids])):
            for _ in tracer.all():  # every forward of the decode loop
                for layer in np.unique(layers):
                    site = lm.get(loaded.site_path("neurons", int(layer)))
                    cols = torch.as_tensor(columns[layers == layer])
                    held = site.input.clone()
                    held[..., cols] = mean[int(layer), cols].to(held.dtype)
                    site.input = held
        with tracer.invoke():
            by_hand = tracer.result.save()
    by_hand = by_hand[0, len(ids):].tolist()

# %% [markdown]
# The library's batched path on the same prompt and neurons, and one patched forward (no cache) over
# the prompt and the by-hand text, which gives the logits of every step at once:

# %%
if example_condition is not None and result.mean_values is not None:
    library = generation.generate(loaded, ids, {example_condition: neurons}, held=mean,
                                  max_new_tokens=lesions.NEW_TOKENS).tokens[example_condition]
    kept, _ = generation.until_end(by_hand, generation.end_tokens(loaded))
    plan = sites.plan_columns([neurons], L, loaded.d_ff)
    with torch.no_grad(), sites.replace_neurons(loaded.site_modules("neurons"), plan.membership,
                                                generation.patch_values(plan, mean[None], loaded), columns=plan.columns):
        logits = loaded.model(input_ids=torch.tensor([ids + kept]), use_cache=False).logits[0, len(ids) - 1:-1].double()
    gaps = logits.max(-1).values - logits[torch.arange(len(kept)), torch.tensor(kept)]
    held_to = numerics.tolerance(numerics.largest_magnitude(logits), L, loaded.dtype)
    print(f"prompt {example.name}, {example_condition} held at its mean: {len(kept)} tokens by hand; "
          + ("identical to the library's." if by_hand == library else "they part from the library's at a near-tie."))
    print(f"every by-hand token is the argmax of the patched forward at its step: largest shortfall "
          f"{float(gaps.max()):.1e} (held to {held_to:.1e})")
    assert float(gaps.max()) <= held_to, "a by-hand token is not the patched model's greedy choice"
    display(tables.for_reading(pd.DataFrame({"": ["intact (library)", "Language units held (by hand)"],
                                             "text": [result.outputs.query("mode == 'mean' and prompt == @example.name "
                                                                           "and condition == 'intact'").text.iloc[0],
                                                      loaded.tokenizer.decode(kept, skip_special_tokens=True).strip()]}),
                               font_size=0.9))

# %% [markdown]
# ## 4. What the lesions do to the texts
#
# For every text: **fluency**, its mean log-probability per token under the *intact* model given
# the prompt (in nats; closer to 0 is more expected, a broken or ungrammatical text scores lower);
# **changed**, whether it differs from the intact model's text at all; **key kept**, among the
# prompts whose key the intact model states, the share whose lesioned text still states it;
# **repetition**, the share of word trigrams that repeat an earlier one; **length** in tokens; and
# the **Language pairs**: accuracy on the Language tasks' minimal pairs (their first
# `ablation_items` both-correct items) under the same lesion, the intact row their accuracy with
# nothing silenced. Means over the prompts, in the {glue:text}`shown_mode` mode:

# %%
MEASURE_NAMES = {"n_neurons": "neurons", "fluency": "fluency", "changed": "changed", "key_kept": "key kept",
                 "repetition": "repetition", "length": "length", "language_accuracy": "Language pairs"}


def measures_table(mode: str):
    table = result.measures[result.measures["mode"] == mode].copy()
    if table.empty:
        return None
    table["silenced"] = [("nothing (intact)" if k == "intact" else
                          f"{DOMAIN_NAMES.get(d, d)} units" + (" — random twin" if k == "layer_matched" else ""))
                         for k, d in zip(table.kind, table.domain)]
    table["selection"] = table.selection.fillna("")
    columns = ["selection", "silenced"] + [c for c in MEASURE_NAMES if c in table.columns]
    return tables.for_reading(table[columns], digits={"fluency": 2, "repetition": 2, "length": 1},
                              percent_columns=[c for c in ("changed", "key_kept", "language_accuracy") if c in table],
                              int_columns=["n_neurons"], rename=MEASURE_NAMES, font_size=0.85,
                              note=f"Fluency in nats per token under the intact model. Key kept: of the "
                                   f"{int(table.n_keyed.iloc[0])} prompts whose key the intact model states.")


if len(result.measures):
    display(measures_table(lesions.SHOWN_MODE))

# %%
if len(result.measures):
    shown = result.measures[(result.measures["mode"] == lesions.SHOWN_MODE) & (result.measures.kind != "intact")].copy()
    shown["domain"] = shown.domain.map(DOMAIN_NAMES)
    shown["set"] = np.where(shown.kind == "selected", "domain's units", "random units")
    intact_row = result.measures[(result.measures["mode"] == lesions.SHOWN_MODE) & (result.measures.kind == "intact")]
    charts.show(charts.lesion_measures(shown, measure="fluency", x_title="fluency (nats per token, intact model)",
                                       title="Fluency of the texts with a domain's units silenced",
                                       intact=float(intact_row.fluency.iloc[0])),
                caption="Figure 1. Mean fluency of the texts (log-probability per token under the intact model) "
                        "when each domain's units (red) or a layer-matched random set of the same size (grey) are "
                        f"held at their {lesions.SHOWN_MODE}, per selection; the dashed line is the intact model.")
    charts.show(charts.lesion_measures(shown, measure="changed", x_title="share of texts changed",
                                       title="How many texts a lesion changes"),
                caption="Figure 2. Share of the prompts whose greedy text differs from the intact model's, per "
                        "silenced set.")

# %% [markdown]
# In words, for the attribution sets. A lesion's texts are called less fluent than its twin's only
# where the per-prompt differences (twin − lesion) pass a one-sided sign-flip test at p < 0.05
# ({glue:text}`n_perm` draws):

# %%
def effect_sentences(selection: str, mode: str) -> list[str]:
    table = result.measures[(result.measures["mode"] == mode) & (result.measures.selection == selection)]
    out = []
    for domain in DOMAINS:
        rows = table[table.domain == domain].set_index("kind")
        if {"selected", "layer_matched"} <= set(rows.index):
            out.append(findings.lesion_effect_sentence(domain, rows.loc["selected"], rows.loc["layer_matched"], N_PERM))
    return out


display(Markdown("\n".join(f"* {s}" for s in effect_sentences("attribution", lesions.SHOWN_MODE))
                 or "No attribution set was silenced in this run."))

# %% [markdown]
# The "key kept" column pools the prompts of every domain. By the prompts' own domain (the share of
# each domain's keyed prompts whose key survives; "k of n", n the prompts whose key the intact model
# states):

# %%
def kept_by_domain(mode: str, selection: str) -> pd.DataFrame:
    part = result.outputs[(result.outputs["mode"] == mode) & (result.outputs.intact_key_stated == 1)
                          & ((result.outputs.selection == selection) | (result.outputs.kind == "intact"))]
    rows = []
    for (kind, domain), group in part.groupby(["kind", "lesion_domain"], sort=False):
        row = {"silenced": "nothing" if kind == "intact" else
               f"{DOMAIN_NAMES.get(domain, domain)}" + (" units" if kind == "selected" else ", twin")}
        for prompt_domain in DOMAINS:
            keyed = group[group.prompt_domain == prompt_domain]
            row[DOMAIN_NAMES[prompt_domain]] = f"{int(keyed.key_stated.sum())} of {len(keyed)}" if len(keyed) else "none"
        rows.append(row)
    return pd.DataFrame(rows)


if len(result.outputs):
    display(tables.for_reading(kept_by_domain(lesions.SHOWN_MODE, "attribution"), font_size=0.9,
                               note="Attribution sets; columns: the prompts' domain."))

# %% [markdown]
# ## 5. Is there a double dissociation?
#
# The study's claim, for each reasoning domain D against Language: the Language lesion costs more
# *fluency* than D's lesion, and D's lesion costs more of *D's answers* than the Language lesion.
# Each lesion is first compared with its own random twin on the same prompt (the effect of *these*
# neurons beyond any neurons of the same layers). Per prompt, the fluency term is D's effect minus
# Language's (all prompts); the key term is Language's effect on the key minus D's (D's prompts whose
# key the intact model states). Each term is its mean over its root mean square; the statistic adds
# them. Under the null which lesion wrote a prompt's pair of texts is arbitrary: the prompt's
# differences change sign, independently across prompts ({glue:text}`n_perm` sign draws, one-sided
# p, for the sum and for each term). A sentence claims a difference only where its own term is
# positive at p < 0.05, and a double dissociation only when both are. With fewer than five keyed
# prompts no sign-flip p can fall below 0.05 (2⁻⁴ > 0.05): the key comparison is then called
# untestable, not absent.

# %%
glue("n_perm", f"{N_PERM:,}", display=False)
if len(result.dissociation):
    shown = result.dissociation.assign(domain=result.dissociation.domain.map(DOMAIN_NAMES))
    display(tables.for_reading(shown[["mode", "selection", "domain", "form", "p_form", "content", "p_content",
                                      "n_content"]],
                               p_columns=["p_form", "p_content"], n_permutations=N_PERM, digits=2,
                               rename={"domain": "D", "form": "fluency term", "content": "key term",
                                       "p_form": "p (fluency)", "p_content": "p (key)", "n_content": "keyed"},
                               font_size=0.85,
                               note=f"Terms as defined above, over all {int(shown.n_prompts.max())} prompts (fluency) "
                                    "and over D's keyed prompts (key: those whose key the intact model states); each "
                                    "term's one-sided p from sign draws. The combined statistic is in "
                                    "lesion_dissociation.csv."))
    display(Markdown("\n".join(f"* {findings.dissociation_sentence(row, N_PERM)}"
                                for row in result.dissociation.to_dict("records"))))
else:
    print("No test: the Language set or every reasoning domain's set is missing in this run.")

# %% [markdown]
# ## 6. Side by side
#
# Which texts are shown is chosen by a rule, not by hand: for each domain's attribution set, among
# the prompts of its own domain whose text the lesion changed, the {glue:text}`examples_per_lesion`
# whose lesioned text loses the most fluency against the intact model's text
# ({glue:text}`shown_mode` mode). Every other text follows in a folded table, and every text of every
# condition and mode is in `lesion_outputs.csv` beside this page.

# %%
def side_by_side(row) -> pd.DataFrame:
    return pd.DataFrame({"": ["intact", f"{DOMAIN_NAMES[row.lesion]} units silenced", "random twin silenced"],
                         "text": [row.intact, row.lesioned, row.random],
                         "fluency": [row.intact_fluency, row.lesioned_fluency, row.random_fluency]})


if result.examples.empty:
    print("No lesion changed a text of its own domain's prompts.")
read_raw = bool(len(result.prompts)) and "given" in result.prompts and (result.prompts.given == result.prompts.raw).all()
for row in result.examples.itertuples():  # the prompt as the model read it: raw text, or the message in its template
    given = result.prompts.set_index("prompt")["raw" if read_raw else "message"][row.prompt]
    display(Markdown(f"**{DOMAIN_NAMES[row.lesion]} lesion**, prompt `{row.prompt}`: {given}"))
    display(tables.for_reading(side_by_side(row), digits={"fluency": 2}, font_size=0.9))

# %%
if len(result.outputs):
    every = result.outputs[(result.outputs["mode"] == lesions.SHOWN_MODE)
                           & (result.outputs.selection.isin(["attribution"]) | (result.outputs.kind == "intact"))]
    every = every[every.kind != "layer_matched"].assign(
        silenced=lambda t: np.where(t.kind == "intact", "nothing", t.lesion_domain.map(DOMAIN_NAMES).fillna("") + " units"),
        key=lambda t: t.key_stated.map({1.0: "yes", 0.0: "no"}).fillna(""))
    display(tables.folded(
        tables.for_reading(every[["prompt", "silenced", "text", "fluency", "key"]], digits={"fluency": 2},
                           rename={"key": "key stated"}, font_size=0.85,
                           note="Attribution sets, held at their mean. Key stated: blank where the prompt has no key."),
        "Every prompt's text, intact and under each domain's lesion"))

# %% [markdown]
# The zero mode, for comparison (the same measures, neurons held at 0):

# %%
if len(result.measures) and (result.measures["mode"] == "zero").any():
    display(tables.folded(measures_table("zero"), "Measures with the silenced neurons held at zero"))

# %% [markdown]
# The stage saved its tables next to this page:

# %%
sorted(path.name for path in result.written)

# %% [markdown]
# ## Interpretation notes
#
# * A small model answers few of these prompts correctly even intact. Where the intact model does not
#   state a prompt's key, a lesion cannot lose it: the comparison there is of fluency only, and the
#   key columns count only the prompts whose key the intact model states.
# * Fluency is judged by the intact model itself: a text the intact model finds unlikely is not
#   necessarily ungrammatical (a correct but unusual answer scores low too). The Language pairs are
#   the grammatical check that does not depend on the generated text. For the Language attribution
#   set they are not independent of the selection: that set is the union of the Language tasks' own
#   top sets, so its row measures those tasks' self-ablation (stage 5's diagonal, in mean values);
#   the localizer's Language set was chosen without them.
# * "Key stated" looks for the key as a whole word anywhere in the text; a text that repeats the
#   story's own words can state a place without reasoning about it.
# * The attribution set of a domain is the union of its passing tasks' sets, so domains with more
#   passing tasks silence more neurons; each set's random twin has the same size and layers, and the
#   test compares each lesion with its own twin.
# * One random twin per set (one draw): "beyond the twin" means beyond that draw, and the p-values
#   count the variation across prompts, not across random sets. {glue:text}`prompts_per_domain`
#   prompts per domain and greedy decoding keep the cost down on a CPU; the p-values are coarse.
# * Many tests are shown (per selection, mode and domain), none corrected for multiplicity; the
#   zero mode can disagree with the mean mode, and the findings chapter reports the mean mode.
# * A text that falls into a loop can score as fluent under the intact model (each repeat is easy
#   to predict): read fluency beside repetition.
# * A Language key ("is", "are") can be stated by a text that breaks agreement elsewhere, and a
#   false-belief story's own places can be repeated: "key stated" overcounts.
