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
# # Which models it runs
#
# **Question.** The pipeline reads a model's MLP neurons at the input of each block's down
# projection and its heads at the input of the attention output projection. For which of the
# architectures in `transformers` can it find those two sites, and does every stage then compute
# what it should?
#
# **You will learn**
#
# * how the sites are found from a model's module structure, before any weight is loaded;
# * what a unit of a mixture-of-experts model is, and what its attribution means;
# * which families were checked end to end on tiny random models, and what was measured;
# * which architectures of the installed `transformers` are refused, and why.

# %% tags=["parameters"]
seed = 0  # seed of the tiny random models

# %%
import pandas as pd
import torch
import transformers
from IPython.display import Markdown, display

from modularity.running import family_check
from modularity.science.models import load_tokenizer
from modularity.showing import findings, tables

torch.set_num_threads(1)

# %% [markdown]
# ## 1. Sites found by structure
#
# Every decoder block writes into the residual stream through two projections: the attention's
# output projection and the MLP's down projection. Whatever a family calls them (`o_proj`,
# `c_proj`, `dense`, `out_proj`; `down_proj`, `dense_4h_to_h`, `fc2`), they are the projections
# whose output is as wide as the embeddings. The package builds the model from its config on
# PyTorch's *meta* device (shapes, no weights), finds the list of blocks (the module list as long as
# the config's layer count), and in every block the one such projection inside the attention
# module and the one outside it. Every block must have the same neuron site; a hybrid whose blocks
# differ in attention (Qwen 3.5, Gemma 4) is read for its neurons only. After the weights load, a
# probe forward checks that each site reads `[batch, tokens, width]` and that overwriting it changes
# the logits.
#
# A **mixture-of-experts** block has no single down projection: each expert has its own, stored
# side by side in one tensor. Its unit is an expert's neuron: (layer, expert, neuron), numbered
# `expert · d_expert + neuron` within the layer, so the stages see `n_experts · d_expert` units per
# layer and need nothing else. The package computes every expert on every token (so each unit has
# a value everywhere, at `n_experts / top_k` times the experts' usual cost) and leaves the router
# as it is: an expert's contribution to a token is weighted by the router's weight for it, which is
# zero where the router does not send the token there. There the unit's gradient is zero, so its
# **attribution at that token is zero** and ablating it there changes nothing; a unit's attribution
# is the sum over the tokens its expert receives.

# %% [markdown]
# ## 2. Families checked end to end
#
# For each family a tiny random model (two blocks, 32-wide) is built from its default config,
# saved with the SmolLM2 tokenizer and loaded as a user's model would be. Measured on one task's
# items: the Pearson r between attribution scores and the exact effect of patching each of 20
# single neurons (the top 8 by score and 12 at random), and the largest difference of the three
# model stages' outputs (log-probs, attribution scores, ablated log-probs) between the hook backend
# and the nnsight backend, and between one device and a model with half its blocks offloaded to
# disk, relative to the largest value. The test suite also runs stages 1 to 5 and 7 on each.

# %%
tokenizer = load_tokenizer("smollm2-135m-instruct")
checked = family_check.check_families(tokenizer, seed=seed)
allowed = family_check.largest_allowed_gap()
R_FLOOR = 0.99
shown = checked.assign(units=checked.units.astype(int), experts=checked.experts.replace(0, pd.NA))
display(tables.for_reading(
    shown[["model_type", "neurons", "heads", "units", "experts"]].assign(heads=shown.heads.replace("", pd.NA)),
    rename={"model_type": "model type", "neurons": "neuron site", "heads": "head site", "units": "units per layer"},
    note="Sites are module paths inside a block: the neuron site's input holds the units, the head site's the "
         "heads' outputs. Qwen 3.5 and Gemma 4 are read for their neurons only: their blocks differ in attention."))

# %% [markdown]
# What was measured on each (differences relative to the largest value; two float32 computations of
# the same numbers may differ by the tolerance printed under the table):

# %%
display(tables.for_reading(
    checked[["model_type", "attribution_r", "nnsight_gap", "offload_gap"]], digits={"attribution_r": 4},
    rename={"model_type": "model type", "attribution_r": "r, attribution vs exact patching",
            "nnsight_gap": "nnsight vs hooks", "offload_gap": "half on disk vs one device"},
    note=f"Tolerance of a difference: {allowed:.1e}; 0 means the same numbers to the last bit."))
found_by = checked.resolved_by[checked.error == ""].value_counts()
display(Markdown("Sites found " + ", ".join(f"by {how} for {n}" for how, n in found_by.items()) + " of the "
                 f"{len(checked)} families; their classes: "
                 + ", ".join(f"`{c}`" for c in checked.model_class[checked.error == ""]) + "."))
if (checked.error != "").any():
    display(tables.for_reading(checked.loc[checked.error != "", ["model_type", "error"]]))

# %% [markdown]
# **What the table shows.**

# %%
display(Markdown(" ".join(findings.families_sentences(checked, allowed, R_FLOOR))))

# %% [markdown]
# A mixture of experts is a little less linear than a dense model: patching a unit in one layer
# can change which experts the router picks in the layers above, which first-order attribution
# does not see. Where r falls below the floor, is the site wrong or the model less linear? The
# same check with the random weights scaled by 0.25 (smaller, more linear effects) tells:

# %%
low = checked[checked.attribution_r < R_FLOOR]
if len(low):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        rescaled = pd.DataFrame([family_check.check_family(t, tokenizer, Path(folder), seed, scale=0.25)
                                 for t in low.model_type])
    display(tables.for_reading(
        low[["model_type", "attribution_r"]].merge(rescaled[["model_type", "attribution_r"]], on="model_type",
                                                   suffixes=("", "_small")),
        digits={"attribution_r": 4, "attribution_r_small": 4},
        rename={"model_type": "model type", "attribution_r": "r, weights as built",
                "attribution_r_small": "r, weights × 0.25"}))
    recovered = bool((rescaled.attribution_r >= R_FLOOR).all())
    display(Markdown("With smaller weights r " + ("rises above the floor for every one: the site is right, "
                                                  "and the tiny model as built is less linear." if recovered else
                                                  "stays below the floor for some: their site needs a closer look.")))
else:
    display(Markdown(f"Every family reached r ≥ {R_FLOOR:g}."))
#
# ## 3. Every causal language model of the installed `transformers`
#
# The same resolution, on the meta device, for every model type `transformers` lists as a causal
# language model (made tiny from its default config where the sizes allow). A refused
# architecture is refused before its weights load, with the modules found and the override to write
# (`modularity.science.architecture.OVERRIDES`) when a user knows its sites.

# %%
survey = family_check.survey_model_types()
resolved, refused = survey[survey.resolved], survey[~survey.resolved]
moe = resolved[resolved.experts > 0]
display(Markdown(
    f"`transformers` {transformers.__version__} lists **{len(survey)}** causal-LM model types. "
    f"**{len(resolved)}** resolve by structure ({len(moe)} of them mixtures of experts); "
    f"**{len(refused)}** are refused."))

# %%
display(tables.folded(
    tables.for_reading(resolved[["model_type", "neurons", "heads", "experts"]]
                       .assign(experts=resolved.experts.replace(0, pd.NA), heads=resolved.heads.replace("", pd.NA)),
                       rename={"model_type": "model type", "neurons": "neuron site", "heads": "head site"},
                       note="No head site: a hybrid, or a decoder with cross-attention, read for its neurons only.",
                       font_size=0.85),
    f"The {len(resolved)} model types that resolve, with their sites"))

# %%
reasons = refused.why.str.replace(r"\(projections onto.*", "", regex=True).str.strip()
kinds = reasons.str.extract(r"^([^(:]+)")[0].str.strip().value_counts().rename_axis("why").reset_index(name="model types")
display(tables.for_reading(kinds.head(8), note="The most frequent reasons; the full list is below."))
display(tables.folded(
    tables.for_reading(refused.assign(why=reasons)[["model_type", "why"]], rename={"model_type": "model type"},
                       font_size=0.85),
    f"The {len(refused)} model types refused, and why"))

# %% [markdown]
# Refused for a reason of the method, not of the code: state-space and recurrent models (no
# attention heads), encoder-decoder decoders (two attention modules per block), hybrids whose
# blocks alternate between attention and another mixer or between dense and expert MLPs (one flat
# neuron index needs the same sites in every block), and mixtures of experts with a shared expert
# beside the routed ones (two MLPs write the stream). A user who knows which sites to read for such
# a model can name them with an override.
