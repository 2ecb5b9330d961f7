"""Stage 9 · lesions you can read: what the model writes with one domain's units silenced.

For every open prompt (:func:`modularity.science.tasks.open_prompts.open_prompts`,
:data:`PROMPTS_PER_DOMAIN` per domain, seeded by ``seed``) the model continues greedily for
:data:`NEW_TOKENS` tokens (:func:`modularity.science.generation.generate`) under

* the intact model;
* each domain's units silenced, selected two ways: **attribution**, the union of the top
  ``main_pct``% sets (stage 3's sets) of the domain's tasks that passed stage 1 and were attributed;
  **localizer**, stage 7's localized set (``localizer_units.csv``);
* one layer-matched random set per selected set (:data:`RANDOM_DRAWS`): in every layer as many
  other neurons as the selected set has there.

Silenced means held, at every position, at their mean activation over the suite's prompts (the
both-correct ablation items of every attributed task: the clean prompt with either answer, as stage
5's mean mode) or at 0; both modes are run (:data:`MODES`). Each output is measured
(:mod:`modularity.science.generation`): fluency (its mean log-probability per token under the intact
model), whether it states the prompt's key, word-trigram repetition and length. The Language tasks'
minimal pairs are scored under the same lesions (their first ``ablation_items`` both-correct items,
:func:`modularity.science.ablation.ablate_target`, the same neurons and values). The double
dissociation is tested per reasoning domain D against Language by
:func:`modularity.science.stats.dissociation_test`.

One batch per prompt holds every condition in both modes (the intact model once). Generations are
cached per prompt, Language cells per (task, mode), the mean activations once: a killed stage resumes. Writes the tables its registry entry names.
"""
from __future__ import annotations

import dataclasses
import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from ..base.progress import bar
from ..records.store import content_digest, json_records, read_cache, save_json, save_table, write_cache
from ..science import ablation, generation, scoring, stats
from ..science.models import load_tokenizer
from ..science.sites import split_flat
from ..science.stats import STUDY_SEED
from ..science.tasks.open_prompts import key_stated, open_prompts
from ..science.tasks.schema import DOMAINS, format_prompt
from .cells import target_items
from .context import RunContext
from .scores import load_scores, top_set

__all__ = ["LesionResult", "run", "PROMPTS_PER_DOMAIN", "NEW_TOKENS", "RANDOM_DRAWS", "MODES", "SELECTIONS",
           "SHOWN_MODE", "INTACT", "EXAMPLES_PER_LESION", "condition_name"]

#: Open prompts per domain: the issue of a 2-core CPU; a GPU run can raise it in a params-free way
#: by editing this line (every number on the page follows).
PROMPTS_PER_DOMAIN = 8
#: New tokens per continuation (greedy; a text may end sooner with its end-of-text token).
NEW_TOKENS = 40
#: Layer-matched random sets per selected set.
RANDOM_DRAWS = 1
#: How a silenced neuron is held: at its mean activation over the suite's prompts, or at 0.
MODES = ("mean", "zero")
#: The mode the page's texts and main table show (both are in every table).
SHOWN_MODE = "mean"
SELECTIONS = ("attribution", "localizer")
#: Prompts shown side by side per lesion (:func:`choose_examples`).
EXAMPLES_PER_LESION = 2
INTACT = "intact"
OUTPUT_COLUMNS = ["mode", "prompt", "prompt_domain", "condition", "selection", "lesion_domain", "kind", "n_neurons",
                  "text", "n_tokens", "ended", "fluency", "key_stated", "repetition", "changed", "intact_key_stated"]


def condition_name(selection: str, domain: str, kind: str, draw: int = 0) -> str:
    """``attribution:Lan`` for a selected set, ``attribution:Lan|random0`` for its random sets."""
    return f"{selection}:{domain}" if kind == "selected" else f"{selection}:{domain}|random{draw}"


@dataclass(frozen=True)
class LesionResult:
    """What stage 9 computed (every table also saved).

    ``prompts``: domain, prompt, message, keys, key_kind, the text given to the model; ``sets``:
    one row per condition (selection, domain, kind, neurons, layers used); ``outputs``: one row per
    (mode, prompt, condition), :data:`OUTPUT_COLUMNS`; ``language``: accuracy of each Language task's
    minimal pairs per (mode, condition); ``measures``: per (mode, condition) the means of the
    measures; ``dissociation``: per (mode, selection, reasoning domain) the test;
    ``examples``: the texts shown side by side (:func:`choose_examples`); ``neurons``: each
    condition's flat indices; ``mean_values``: [L, d_ff] the mean mode's values; ``notes``: what is
    missing and why; ``seconds``: time spent computing (0 for what was read from the cache).
    """

    prompts: pd.DataFrame
    sets: pd.DataFrame = field(default_factory=pd.DataFrame)
    outputs: pd.DataFrame = field(default_factory=pd.DataFrame)
    language: pd.DataFrame = field(default_factory=pd.DataFrame)
    measures: pd.DataFrame = field(default_factory=pd.DataFrame)
    dissociation: pd.DataFrame = field(default_factory=pd.DataFrame)
    examples: pd.DataFrame = field(default_factory=pd.DataFrame)
    neurons: dict = field(default_factory=dict)
    mean_values: torch.Tensor | None = None
    computed: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    written: list = field(default_factory=list)


def run(ctx: RunContext) -> LesionResult:
    """Stage 9 for the run of ``ctx``: sets, mean values, generations, measures, tests; saves the tables."""
    if ctx.params["remote"]:
        raise ValueError(f"{ctx.label}: stage 09_lesions generates on this machine only (a generation trace is not "
                         "shipped to NDIF); run it with remote: false")
    prompts = open_prompts(PROMPTS_PER_DOMAIN, ctx.params["seed"])
    prompt_table = pd.DataFrame([{"domain": p.domain, "prompt": p.name, "message": p.message, "raw": p.raw,
                                  "keys": " | ".join(p.keys), "key_kind": p.key_kind} for p in prompts])
    tasks = ctx.attributed()
    sets, set_table, notes = _lesion_sets(ctx, tasks)
    if not any(set_table.kind == "selected") if len(set_table) else True:
        notes.append("no domain has a set to silence: no task passed stage 1 with attribution scores, "
                     "and stage 07_localizer has not run")
        return _save(ctx, LesionResult(prompt_table, set_table, notes=notes))
    mean_values, mean_seconds = _mean_values(ctx, tasks)
    tokenizer = load_tokenizer(ctx.params["model"])  # the model itself loads only if something is computed
    given = {p.name: _prompt_text(tokenizer, p) for p in prompts}
    prompt_table["given"] = prompt_table.prompt.map(given)
    if ctx.shard is not None:
        _generations(ctx, ctx.share(list(prompts)), given, sets, mean_values)
        ctx.stop_if_sharded()
    outputs, computed, gen_seconds = _generations(ctx, prompts, given, sets, mean_values)
    outputs = _with_conditions(outputs, set_table, prompts)
    language, lang_computed, lang_seconds = _language(ctx, tasks, sets, mean_values)
    if language.empty:
        notes.append("no Language task passed stage 1 with attribution scores: no minimal-pair accuracy under the lesions")
    measures = _measures(outputs, language, set_table, ctx.params["n_permutations"])
    dissociation = _dissociation(outputs, ctx.params["n_permutations"])
    examples = choose_examples(outputs)
    result = LesionResult(prompt_table, set_table, outputs, language, measures, dissociation, examples,
                          neurons=sets, mean_values=mean_values, computed={"generations": computed, "language_cells": lang_computed},
                          seconds={"mean_values": mean_seconds, "generation": gen_seconds, "language": lang_seconds},
                          notes=notes)
    return _save(ctx, result)


# --------------------------------------------------------------------------- the sets


def _lesion_sets(ctx: RunContext, tasks: pd.DataFrame) -> tuple[dict, pd.DataFrame, list]:
    """``{condition: flat indices}`` (the intact model's empty set first), its table, notes."""
    notes, selected = [], {}
    n_layers = d_ff = None
    for domain in DOMAINS:
        chosen = [top_set(ctx, row.task, tasks) for row in tasks.itertuples() if row.domain == domain]
        if chosen:
            selected[("attribution", domain)] = np.unique(np.concatenate(chosen)).astype(np.int64)
        else:
            notes.append(f"{domain}: no task of the domain passed stage 1 with attribution scores: no attribution lesion")
    units_path = ctx.paths.table("localizer_units.csv")
    if units_path.exists():
        units = pd.read_csv(units_path)
        for domain in DOMAINS:
            part = units[units.domain == domain]
            if len(part):
                selected[("localizer", domain)] = np.sort(part.flat.to_numpy(dtype=np.int64))
    else:
        notes.append("stage 07_localizer has not run: no localizer lesions")
    if selected:
        n_layers, d_ff = _geometry(ctx, tasks)
    sets, rows = {INTACT: np.empty(0, dtype=np.int64)}, [
        {"condition": INTACT, "selection": "", "domain": "", "kind": INTACT, "draw": -1, "n_neurons": 0, "layers": 0}]
    for position, ((selection, domain), chosen) in enumerate(selected.items()):
        # A seed stream of its own (9 = the stage), one child per selected set.
        child = int(np.random.SeedSequence([ctx.params["seed"], 9, position]).generate_state(1)[0])
        draws = ablation.random_control_sets(chosen, n_layers, d_ff, "layer_matched", RANDOM_DRAWS, child)
        for kind, draw, neurons in [("selected", -1, chosen)] + [("layer_matched", d, s) for d, s in enumerate(draws)]:
            name = condition_name(selection, domain, kind, draw)
            sets[name] = neurons
            rows.append({"condition": name, "selection": selection, "domain": domain, "kind": kind, "draw": draw,
                         "n_neurons": int(neurons.size), "layers": int(np.unique(split_flat(neurons, d_ff)[0]).size)})
    return sets, pd.DataFrame(rows), notes


def _geometry(ctx: RunContext, tasks: pd.DataFrame) -> tuple[int, int]:
    if len(tasks):
        n_layers, d_ff = load_scores(ctx, tasks.task.iloc[0], tasks).shape
        return int(n_layers), int(d_ff)
    return ctx.model.n_layers, ctx.model.d_ff


def _mean_values(ctx: RunContext, tasks: pd.DataFrame) -> tuple[torch.Tensor | None, float]:
    """[L, d_ff] mean activation over the attributed tasks' ablation items (each task weighted
    equally), cached; None without tasks (then only zero ablation can run)."""
    if not len(tasks):
        return None, 0.0
    items = {row.task: target_items(ctx, row.task) for row in tasks.itertuples()}
    made_from = {"tasks": {task: ctx.paths.fingerprints[task] for task in items}, "items": content_digest(items),
                 "model": ctx.paths.model_digest, "dtype": ctx.params["dtype"], "bos": ctx.params["bos"]}
    path = ctx.paths.cache / "lesions" / f"mean-{content_digest(made_from)}.safetensors"
    cached = read_cache(path, "ablation", made_from)
    if cached is not None:
        return cached["mean"], 0.0
    started, loaded, total = time.perf_counter(), ctx.model, None
    for task, chosen in bar(items.items(), total=len(items), desc="mean activations", unit="tasks"):
        tokens = scoring.tokenize_task(loaded, ctx.suite[task], ctx.params["bos"])
        means = ablation.mean_activations(loaded, tokens, chosen, ctx.params["batch_size"]).double()
        total = means if total is None else total + means
    mean = (total / len(items)).float()
    write_cache(path, {"mean": mean}, "ablation", made_from)
    return mean, time.perf_counter() - started


# --------------------------------------------------------------------------- generations


def _prompt_text(tokenizer, prompt) -> str:
    """The text the model reads: the message in its chat template, or the raw form without one."""
    if getattr(tokenizer, "chat_template", None):
        return format_prompt(tokenizer, prompt.message)
    return prompt.raw


def _digest_of(mean_values) -> str | None:
    """What the caches record of the mean values (None without them)."""
    return None if mean_values is None else content_digest(mean_values.numpy().round(8).tolist())


def _modes(mean_values) -> list[str]:
    """The modes that can run: the mean mode needs mean values (attributed tasks)."""
    return [m for m in MODES if m != "mean" or mean_values is not None]


def _generations(ctx: RunContext, prompts, given: dict, sets: dict, mean_values) -> tuple[pd.DataFrame, int, float]:
    """One row per (mode, prompt, condition): text, tokens, fluency under the intact model. Each
    prompt is one batch: the intact model and every set in every mode."""
    loaded, parts, computed, seconds = None, [], 0, 0.0
    modes = _modes(mean_values)
    folder = ctx.paths.cache / "lesions" / f"generations_{NEW_TOKENS}tokens"
    mean_digest = _digest_of(mean_values)
    with bar(total=len(prompts), desc="generating", unit="prompts") as progress:
        for prompt in prompts:
            made_from = {"prompt": prompt.name, "text": given[prompt.name], "sets": content_digest(sets), "modes": modes,
                         "mean": mean_digest, "new_tokens": NEW_TOKENS, "model": ctx.paths.model_digest,
                         "dtype": ctx.params["dtype"], "bos": ctx.params["bos"], "backend": ctx.params["backend"]}
            path = folder / f"{prompt.name.replace('/', '-')}-{content_digest(made_from)[:12]}.csv"
            table = read_cache(path, "generation", made_from)
            if table is None:
                started = time.perf_counter()
                loaded = loaded or ctx.model
                table = _generate_one(ctx, loaded, prompt, given[prompt.name], sets, modes, mean_values)
                write_cache(path, table, "generation", made_from)
                seconds += time.perf_counter() - started
                computed += 1
            parts.append(table)
            progress.update(1)
    return pd.concat(parts, ignore_index=True), computed, seconds


def _generate_one(ctx, loaded, prompt, text: str, sets: dict, modes: list[str], mean_values) -> pd.DataFrame:
    """One prompt's batch: the intact model once, every lesion in every mode; the intact rows are
    reported under each mode."""
    ids = scoring.encode_prompt(loaded.tokenizer, text, ctx.params["bos"])
    zeros = torch.zeros(loaded.n_layers, loaded.d_ff)
    conditions, held = {INTACT: sets[INTACT]}, {INTACT: zeros}
    for mode in modes:
        for name, neurons in sets.items():
            if name != INTACT:
                conditions[f"{mode}/{name}"] = neurons
                held[f"{mode}/{name}"] = mean_values if mode == "mean" else zeros
    with warnings.catch_warnings():  # nnsight's notice that its open step loop ended with the generation
        warnings.filterwarnings("ignore", message=".*was never reached.*")
        out = generation.generate(loaded, ids, conditions, held=held, max_new_tokens=NEW_TOKENS)
    ends = generation.end_tokens(loaded)
    kept = {key: generation.until_end(tokens, ends) for key, tokens in out.tokens.items()}
    fluency = dict(zip(kept, generation.intact_logprobs(loaded, ids, [k[0] for k in kept.values()],
                                                        ctx.params["batch_size"])))
    rows = []
    for mode in modes:
        for name in sets:
            key = INTACT if name == INTACT else f"{mode}/{name}"
            tokens, ended = kept[key]
            body = tokens[:-1] if ended else tokens
            rows.append({"mode": mode, "prompt": prompt.name, "condition": name, "tokens": " ".join(map(str, tokens)),
                         "text": loaded.tokenizer.decode(body, skip_special_tokens=True).strip(),
                         "n_tokens": len(body), "ended": ended, "fluency": float(fluency[key])})
    return pd.DataFrame(rows)


def _with_conditions(outputs: pd.DataFrame, set_table: pd.DataFrame, prompts) -> pd.DataFrame:
    """The generation rows with their condition's description and the text measures."""
    keys = {p.name: p.keys for p in prompts}
    domain_of = {p.name: p.domain for p in prompts}
    conditions = set_table.rename(columns={"domain": "lesion_domain"}).set_index("condition")
    out = outputs.join(conditions[["selection", "lesion_domain", "kind", "n_neurons"]], on="condition")
    out["prompt_domain"] = out.prompt.map(domain_of)
    stated = [key_stated(text, keys[name]) for text, name in zip(out.text, out.prompt)]
    out["key_stated"] = [np.nan if s is None else float(s) for s in stated]
    out["repetition"] = [generation.repetition(text) for text in out.text]
    intact = out[out.condition == INTACT].set_index(["mode", "prompt"])
    index = pd.MultiIndex.from_arrays([out["mode"], out.prompt])
    out["changed"] = (out.tokens.to_numpy() != intact.tokens.reindex(index).to_numpy())
    out["intact_key_stated"] = intact.key_stated.reindex(index).to_numpy()
    return out[OUTPUT_COLUMNS + ["tokens"]]


# --------------------------------------------------------------------------- Language minimal pairs


def _language(ctx: RunContext, tasks: pd.DataFrame, sets: dict, mean_values) -> tuple[pd.DataFrame, int, float]:
    """Accuracy of each attributed Language task's minimal pairs under every condition and mode."""
    language = tasks[tasks.domain == "Lan"]
    lesions = {name: s for name, s in sets.items() if name != INTACT}
    parts, computed, seconds = [], 0, 0.0
    modes = _modes(mean_values)
    mean_digest = _digest_of(mean_values)
    with bar(total=len(language) * len(modes), desc="Language pairs under the lesions", unit="cells") as progress:
        for row in language.itertuples():
            items = target_items(ctx, row.task)
            for mode in modes:
                made_from = {"target": row.label, "items": items, "sets": content_digest(lesions), "mode": mode,
                             "mean": mean_digest if mode == "mean" else None, "C": float(row.C), "R": float(row.R)}
                path = ctx.paths.task_file("lesions", row.task, f"-language-{mode}-{content_digest(made_from)[:12]}.csv")
                table = read_cache(path, "ablation", made_from)
                if table is None:
                    started, loaded = time.perf_counter(), ctx.model
                    tokens = scoring.tokenize_task(loaded, ctx.suite[row.task], ctx.params["bos"])
                    table = ablation.ablate_target(loaded, tokens, items, lesions, mode=mode,
                                                   batch_size=ctx.params["batch_size"], mean_values=mean_values,
                                                   C=row.C, R=row.R)
                    write_cache(path, table, "ablation", made_from)
                    seconds += time.perf_counter() - started
                    computed += len(table)
                parts.append(table.assign(mode=mode, target=row.label))
                progress.update(1)
    if not parts:
        return pd.DataFrame(), computed, seconds
    cells = pd.concat(parts, ignore_index=True).rename(columns={"source": "condition"})
    return cells[["mode", "target", "condition", "n_items", "accuracy", "unablated_accuracy"]], computed, seconds


# --------------------------------------------------------------------------- measures and tests


def _measures(outputs: pd.DataFrame, language: pd.DataFrame, set_table: pd.DataFrame,
              n_permutations: int) -> pd.DataFrame:
    """Per (mode, condition): prompts, mean fluency, share of texts changed, key stated where the
    intact model states it (and how many such prompts), repetition, length, Language pairs, and for a
    selected set ``fluency_p``, whether its texts are less fluent than its random twin's."""
    rows = []
    for (mode, condition), part in outputs.groupby(["mode", "condition"], sort=False):
        keyed = part[part.intact_key_stated == 1]
        row = {"mode": mode, "condition": condition, "n_prompts": len(part), "fluency": part.fluency.mean(),
               "changed": part.changed.mean(), "key_kept": keyed.key_stated.mean() if len(keyed) else np.nan,
               "n_keyed": len(keyed), "key_stated": part.key_stated.mean(), "repetition": part.repetition.mean(),
               "length": part.n_tokens.mean()}
        if len(language):
            cells = language[language["mode"] == mode]
            row["language_accuracy"] = (cells.groupby("target").unablated_accuracy.first().mean() if condition == INTACT
                                        else cells[cells.condition == condition].accuracy.mean())
        rows.append(row)
    table = pd.DataFrame(rows).merge(set_table[["condition", "selection", "domain", "kind", "n_neurons"]],
                                     on="condition", how="left")
    table["fluency_p"] = [_fluency_cost_p(outputs, mode, condition, n_permutations)
                          for mode, condition in zip(table["mode"], table.condition)]
    return table


def _fluency_cost_p(outputs: pd.DataFrame, mode: str, condition: str, n_permutations: int) -> float:
    """For a selected set: one-sided sign-flip p that its texts are less fluent than its random
    twins' on the same prompts (:func:`modularity.science.stats.sign_flip_p`); NaN for other rows."""
    part = outputs[outputs["mode"] == mode]
    rows = part[part.condition == condition]
    if rows.empty or rows.kind.iloc[0] != "selected":
        return float("nan")
    twins = part[(part.kind == "layer_matched") & (part.selection == rows.selection.iloc[0])
                 & (part.lesion_domain == rows.lesion_domain.iloc[0])].groupby("prompt").fluency.mean()
    cost = twins.reindex(rows.prompt).to_numpy() - rows.fluency.to_numpy()
    return stats.sign_flip_p(cost, n_permutations, STUDY_SEED)


def _dissociation(outputs: pd.DataFrame, n_permutations: int) -> pd.DataFrame:
    """Per (mode, selection, reasoning domain D with Language and D lesions): the test of
    :func:`modularity.science.stats.dissociation_test` on per-prompt effects against the random sets."""
    rows = []
    for (mode, selection), part in outputs[outputs.kind != INTACT].groupby(["mode", "selection"], sort=False):
        effects = _effects(part)
        if "Lan" not in effects:
            continue
        for domain in [d for d in DOMAINS if d != "Lan" and d in effects]:
            form = effects[domain]["fluency"] - effects["Lan"]["fluency"]
            content_prompts = (effects[domain]["prompt_domain"] == domain) & (effects[domain]["intact_key_stated"] == 1)
            content = (effects["Lan"]["key_stated"] - effects[domain]["key_stated"]).where(content_prompts)
            test = stats.dissociation_test(form.to_numpy(), content.to_numpy(), n_permutations, STUDY_SEED)
            rows.append({"mode": mode, "selection": selection, "domain": domain, **test})
    return pd.DataFrame(rows)


def _effects(part: pd.DataFrame) -> dict:
    """Per lesion domain, per prompt: the selected set's measure minus its random sets' mean."""
    out = {}
    for domain, rows in part.groupby("lesion_domain"):
        selected = rows[rows.kind == "selected"].set_index("prompt")
        random = rows[rows.kind == "layer_matched"].groupby("prompt")[["fluency", "key_stated"]].mean()
        if selected.empty or random.empty:
            continue
        effect = selected[["fluency", "key_stated"]] - random.reindex(selected.index)
        effect["prompt_domain"] = selected.prompt_domain
        effect["intact_key_stated"] = selected.intact_key_stated
        out[domain] = effect
    if out:
        order = next(iter(out.values())).index
        out = {d: e.reindex(order) for d, e in out.items()}
    return out


def choose_examples(outputs: pd.DataFrame, mode: str = SHOWN_MODE, selection: str = "attribution",
                    per_lesion: int = EXAMPLES_PER_LESION) -> pd.DataFrame:
    """The texts shown side by side, by a rule: for each domain's lesion, among its own domain's
    prompts whose lesioned text differs from the intact one, the ``per_lesion`` prompts where the
    lesioned text's fluency falls furthest below the intact text's (prompt order on ties); none for a
    domain whose lesion changed no text of its own domain. One row per shown prompt: the intact,
    lesioned and random texts and their fluency."""
    part = outputs[(outputs["mode"] == mode) & ((outputs.selection == selection) | (outputs.kind == INTACT))]
    intact = part[part.kind == INTACT].set_index("prompt")
    rows = []
    for domain in DOMAINS:
        lesioned = part[(part.kind == "selected") & (part.lesion_domain == domain) & (part.prompt_domain == domain)
                        & part.changed]
        fall = (intact.fluency.reindex(lesioned.prompt).to_numpy() - lesioned.fluency.to_numpy())
        order = np.argsort(-np.nan_to_num(fall, nan=-np.inf), kind="stable")[:per_lesion]
        for chosen in (lesioned.iloc[i] for i in order):
            random = part[(part.kind == "layer_matched") & (part.lesion_domain == domain) & (part.prompt == chosen.prompt)]
            rows.append({"lesion": domain, "prompt": chosen.prompt, "intact": intact.text[chosen.prompt],
                         "lesioned": chosen.text, "random": random.text.iloc[0] if len(random) else "",
                         "intact_fluency": intact.fluency[chosen.prompt], "lesioned_fluency": chosen.fluency,
                         "random_fluency": random.fluency.iloc[0] if len(random) else np.nan,
                         "key": chosen.key_stated, "intact_key": chosen.intact_key_stated})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- saving



def _save(ctx: RunContext, result: LesionResult) -> LesionResult:
    tables = {"lesion_prompts.csv": result.prompts, "lesion_sets.csv": result.sets,
              "lesion_outputs.csv": result.outputs.drop(columns=["tokens"], errors="ignore"),
              "lesion_language.csv": result.language, "lesion_measures.csv": result.measures,
              "lesion_dissociation.csv": result.dissociation, "lesion_examples.csv": result.examples}
    written = [save_table(table, ctx.paths.table(name)) for name, table in tables.items()]
    generated = result.computed.get("generations") or 0
    summary = {"prompts_per_domain": PROMPTS_PER_DOMAIN, "new_tokens": NEW_TOKENS, "random_draws": RANDOM_DRAWS,
               "modes": list(MODES), "shown_mode": SHOWN_MODE, "main_pct": ctx.params["main_pct"],
               "seed": ctx.params["seed"], "decoding": "greedy", "notes": result.notes,
               "dissociation": json_records(result.dissociation),
               "seconds": result.seconds, "computed": result.computed,
               "seconds_per_prompt": result.seconds.get("generation", 0.0) / generated if generated else None}
    written.append(save_json(summary, ctx.paths.table("lesion_summary.json")))
    return dataclasses.replace(result, written=written)

