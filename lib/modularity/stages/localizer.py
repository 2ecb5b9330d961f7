"""Stage 7 · the localizer: a second way to select each domain's units, beside attribution.

For each domain, the run's localizer stimuli (:mod:`modularity.science.tasks.localizer`,
``localizer_items`` per condition, seeded by ``seed``) are read by the model; every MLP neuron's
activation is averaged over each text's tokens (:func:`modularity.science.localizer.mean_activations`),
a Welch t-statistic per neuron contrasts the localized condition with its control, and the
domain's *localized set* is its top ``main_pct``% neurons by t — the size of a task's attribution
set. Activations are cached per domain under ``cache/…/localizer/`` (forward passes only), named
after the texts, the settings and the model's files.

Then, with the tasks that passed stage 1 and have stage-2 attribution tensors:

* **overlap** |L_d ∩ A_t|/k of every localizer set with every task's attribution set, at every
  threshold of ``top_pcts``; within (the task is of the set's domain) vs across, with a
  task-label permutation p (:func:`modularity.science.localizer.within_across`);
* **ablation** of every localizer set on every task, exactly as stage 5 ablates a task's set
  (``ablation_mode``, the first ``ablation_items`` both-correct items of each target), with one
  layer-matched random set of the same size per domain (:data:`CONTROL_DRAWS`) on the tasks of
  the set's own domain (on every task when ``ablation_control_cells`` is ``"all"``; stage 5's
  ``"self"`` and ``"within"`` both mean the own domain here, a localizer set having no task of
  its own); cells are cached per target, so a killed run resumes;
* **agreement**: per domain and measure, whether the localizer and attribution (stage 3's sets;
  stage 5's ablation matrix when it is there) both favour their own domain.

Writes ``localizer_sets.csv``, ``localizer_units.csv`` (each set's neurons: domain, rank, layer,
neuron, flat index, t; stage 9 silences them), ``localizer_overlap.csv``, ``localizer_ablation_cells.csv``,
``localizer_agreement.csv`` and ``localizer_summary.json``. Without two attributed tasks only the
sets are computed and saved.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..science import ablation, localizer, overlap, stats
from ..base.progress import bar
from ..science.sites import split_flat
from ..science.stats import STUDY_SEED
from ..records.store import json_records, read_cache, save_json, save_table, write_cache
from ..science.tasks.localizer import CONTRASTS, LocalizerStimuli, localizer_suite
from .cells import ablate_cells, cache_folder, drop_bars
from .context import RunContext
from .scores import load_scores

__all__ = ["LocalizerResult", "run", "CONTROL_DRAWS", "CELL_COLUMNS", "control_scope"]

#: Layer-matched random sets per domain set. One draw: every draw costs as many forward passes as
#: a localizer set, and the main job has a 30-minute budget (README).
CONTROL_DRAWS = 1


def control_scope(params: dict) -> str:
    """Where the random sets run: ``"all"`` tasks, or ``"within"`` (the set's own domain's tasks)
    for stage 5's ``"self"`` and ``"within"``."""
    return "all" if params["ablation_control_cells"] == "all" else "within"
#: Columns of ``localizer_ablation_cells.csv``.
CELL_COLUMNS = ["set", "domain", "kind", "draw", "target", "target_domain", "relation", "n_neurons", "n_items",
                "accuracy", "unablated_accuracy", "drop", "drop_vs_unablated", "metric_change"]
#: Settings that change the activations, besides the texts.
ACTIVATION_KEYS = ("model", "dtype", "bos")


@dataclass(frozen=True)
class LocalizerResult:
    """What stage 7 computed.

    ``stimuli[domain]``: the texts; ``t[domain]``: Welch t per neuron, float64 [L · d_ff];
    ``sets[domain]``: flat indices of the localized set at ``pct`` (rank order), ``k`` of
    ``n_layers · d_ff``; ``sets_table``: per domain its contrast, size, t range and layers;
    ``tasks``: the attributed tasks (label, task, domain, C, R, …); ``overlap``: long table
    (pct, domain, target, target_domain, relation, overlap); ``overlap_matrix``: [domain × task] at
    ``pct``; ``overlap_within``/``overlap_overall``: :func:`modularity.science.localizer.within_across`
    at ``pct`` and ``overlap_sweep`` its overall row per threshold; ``attribution_overlap``: the
    per-domain test of the attribution sets' own overlap matrix (stage 4's table);
    ``cells``: ablation cells (:data:`CELL_COLUMNS`); ``ablation_matrix``: [domain × task] drop of
    the localized sets; ``ablation_within``/``ablation_overall``: their within/across test;
    ``control_within``: the same means for the random sets (across is NaN when they ran on
    their own domain's tasks only, :func:`control_scope`); ``ablation_bars``: Fig 2C's bars;
    ``control_bars``: mean ± SEM per (relation, kind); ``attribution_ablation``: the per-domain
    test of stage 5's matrix (empty when stage 5's cells are missing or for other tasks);
    ``agreement``: :func:`modularity.science.localizer.agreement`; ``seconds``: time spent computing
    (activations, ablation; 0 when read from the cache); ``notes``: why something is missing.
    """

    pct: float
    stimuli: dict
    t: dict = field(default_factory=dict)
    sets: dict = field(default_factory=dict)
    k: int = 0
    n_layers: int = 0
    d_ff: int = 0
    sets_table: pd.DataFrame = field(default_factory=pd.DataFrame)
    tasks: pd.DataFrame = field(default_factory=pd.DataFrame)
    overlap: pd.DataFrame = field(default_factory=pd.DataFrame)
    overlap_matrix: pd.DataFrame | None = None
    overlap_within: pd.DataFrame = field(default_factory=pd.DataFrame)
    overlap_overall: dict = field(default_factory=dict)
    overlap_sweep: pd.DataFrame = field(default_factory=pd.DataFrame)
    attribution_overlap: pd.DataFrame = field(default_factory=pd.DataFrame)
    cells: pd.DataFrame = field(default_factory=pd.DataFrame)
    ablation_matrix: pd.DataFrame | None = None
    ablation_within: pd.DataFrame = field(default_factory=pd.DataFrame)
    ablation_overall: dict = field(default_factory=dict)
    control_within: pd.DataFrame = field(default_factory=pd.DataFrame)
    ablation_bars: pd.DataFrame = field(default_factory=pd.DataFrame)
    control_bars: pd.DataFrame = field(default_factory=pd.DataFrame)
    attribution_ablation: pd.DataFrame = field(default_factory=pd.DataFrame)
    agreement: pd.DataFrame = field(default_factory=pd.DataFrame)
    computed: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    written: list = field(default_factory=list)

    @property
    def enough(self) -> bool:
        """At least two attributed tasks: something to compare the localized sets with."""
        return len(self.tasks) >= 2

    @property
    def n_neurons(self) -> int:
        return self.n_layers * self.d_ff

    @property
    def chance(self) -> float:
        """Expected overlap |L ∩ A|/k of two unrelated random sets: k/N."""
        return overlap.chance_overlap(self.n_neurons, self.pct)


def run(ctx: RunContext) -> LocalizerResult:
    """Stage 7 for the run of ``ctx``: activations (cached), t, sets, comparisons; saves the tables."""
    params, pct = ctx.params, ctx.params["main_pct"]
    if params["localizer_items"] < 2:
        note = f"localizer_items = {params['localizer_items']}: Welch's t needs at least two texts per condition"
        written = [save_json({"skipped": note}, ctx.paths.table("localizer_summary.json"))]
        return LocalizerResult(pct, {}, notes=[note], written=written)
    stimuli = localizer_suite(params["localizer_items"], params["seed"])
    if ctx.shard is not None:  # this process's domains only; the sets and their cells run once, after every shard
        _activations(ctx, dict(ctx.share(list(stimuli.items()))))
        ctx.stop_if_sharded()
    activations, activation_seconds = _activations(ctx, stimuli)
    t = {domain: localizer.welch_t(a["localized"], a["control"]) for domain, a in activations.items()}
    n_neurons = next(iter(t.values())).size
    tasks = ctx.attributed()
    n_layers, d_ff = _geometry(ctx, tasks, n_neurons)
    sets = {domain: localizer.localized_set(values, pct) for domain, values in t.items()}
    k = overlap.top_k_count(n_neurons, pct)
    base = dict(pct=pct, stimuli=stimuli, t=t, sets=sets, k=k, n_layers=n_layers, d_ff=d_ff,
                sets_table=_sets_table(stimuli, t, sets, d_ff))

    if len(tasks) < 2:
        note = f"{len(tasks)} task(s) passed the filter with attribution scores: nothing to compare the sets with"
        result = LocalizerResult(**base, tasks=tasks, seconds={"activations": activation_seconds}, notes=[note])
        return _save(ctx, result)

    comparisons = _overlap(ctx, tasks, sets, t)
    ablated = _ablation(ctx, tasks, sets, n_layers, d_ff, stimuli)
    attribution_ablation, notes = _attribution_ablation(ctx, tasks)
    agreement = localizer.agreement({"overlap": comparisons["overlap_within"], "ablation": ablated["ablation_within"]},
                                    {"overlap": comparisons["attribution_overlap"], "ablation": attribution_ablation})
    seconds = {"activations": activation_seconds, "ablation": ablated.pop("seconds")}
    result = LocalizerResult(**base, tasks=tasks, **comparisons, **ablated, attribution_ablation=attribution_ablation,
                             agreement=agreement, seconds=seconds, notes=notes)
    return _save(ctx, result)


# --------------------------------------------------------------------------- activations


def stimuli_fingerprint(stimuli: dict[str, LocalizerStimuli]) -> str:
    """A short hash of every text of every domain and condition."""
    texts = {domain: [list(s.localized), list(s.control)] for domain, s in stimuli.items()}
    return hashlib.sha1(json.dumps(texts, sort_keys=True).encode()).hexdigest()[:10]


def _activation_inputs(ctx: RunContext, stimuli: LocalizerStimuli) -> str:
    """A hash of what a domain's activations are computed from: the settings, the model's files
    and the texts (the cache file is named after its first 12 digits)."""
    settings = {key: ctx.params[key] for key in ACTIVATION_KEYS}
    return hashlib.sha1(json.dumps([settings, ctx.paths.model_digest, list(stimuli.localized), list(stimuli.control)],
                                   sort_keys=True).encode()).hexdigest()


def _activations(ctx: RunContext, stimuli: dict) -> tuple[dict, float]:
    """``{domain: {"localized": [n, N], "control": [n, N]}}`` mean activations, read from or written
    to the cache, and the seconds spent computing (0 when all were cached)."""
    out, seconds = {}, 0.0
    for domain, s in bar(stimuli.items(), total=len(stimuli), desc="localizer activations", unit="domains"):
        inputs = _activation_inputs(ctx, s)
        path = ctx.paths.cache / "localizer" / f"activations-{s.domain}-{inputs[:12]}.safetensors"
        made_from = {"domain": domain, "n": s.n, "inputs": inputs, "pooling": "mean over the text's non-special tokens"}
        out[domain] = read_cache(path, "localizer", made_from)
        if out[domain] is not None:
            continue
        started = time.perf_counter()
        values = localizer.mean_activations(ctx.model, list(s.localized) + list(s.control), ctx.params["bos"],
                                            ctx.params["batch_size"])
        out[domain] = {"localized": values[: s.n], "control": values[s.n:]}
        write_cache(path, out[domain], "localizer", made_from)
        seconds += time.perf_counter() - started
    return out, seconds


def _geometry(ctx: RunContext, tasks: pd.DataFrame, n_neurons: int) -> tuple[int, int]:
    """(n_layers, d_ff) without loading the model when an attribution tensor of ``tasks`` says it."""
    if len(tasks):
        n_layers, d_ff = load_scores(ctx, tasks.task.iloc[0], tasks).shape
    else:
        n_layers, d_ff = ctx.model.n_layers, ctx.model.d_ff
    assert n_layers * d_ff == n_neurons, "activations and attribution cover the same neurons"
    return int(n_layers), int(d_ff)


def _sets_table(stimuli: dict, t: dict, sets: dict, d_ff: int) -> pd.DataFrame:
    rows = []
    for domain, chosen in sets.items():
        layers = split_flat(chosen, d_ff)[0]
        values = t[domain][chosen]
        rows.append({"domain": domain, "localized": CONTRASTS[domain][0], "control": CONTRASTS[domain][1],
                     "stimuli per condition": stimuli[domain].n, "neurons": int(chosen.size),
                     "smallest t": float(values.min()) if chosen.size else float("nan"),
                     "largest t": float(values.max()) if chosen.size else float("nan"),
                     "neurons with t > 0": int((t[domain] > 0).sum()),
                     "layers used": int(np.unique(layers).size),
                     "median layer": float(np.median(layers)) if chosen.size else float("nan"),
                     "deepest layer": int(layers.max()) if chosen.size else -1})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- overlap


def _overlap(ctx: RunContext, tasks: pd.DataFrame, sets: dict, t: dict) -> dict:
    params, pct = ctx.params, ctx.params["main_pct"]
    scores = {row.label: load_scores(ctx, row.task, tasks) for row in tasks.itertuples()}
    n_neurons = next(iter(scores.values())).numel()
    long, sweep, main = [], [], None
    for threshold in params["top_pcts"]:
        k = overlap.top_k_count(n_neurons, threshold)
        task_sets = {label: overlap.top_positive_set(s, threshold) for label, s in scores.items()}
        domain_sets = {domain: localizer.localized_set(values, threshold) for domain, values in t.items()}
        matrix = localizer.set_task_matrix(domain_sets, task_sets, k)
        within, overall = localizer.within_across(matrix, n_permutations=min(params["n_permutations"], 2000), seed=STUDY_SEED)
        sweep.append({"pct": threshold, "k": k, **{key: overall[key] for key in ("within", "across", "ratio", "p")},
                      "chance": overlap.chance_overlap(n_neurons, threshold)})
        long += [{"pct": threshold, "domain": domain, "target": label, "target_domain": overlap.domain_of(label),
                  "relation": "within" if overlap.domain_of(label) == domain else "across", "overlap": value}
                 for domain, row in matrix.iterrows() for label, value in row.items()]
        if threshold == pct:
            main = matrix
            attribution_overlap = stats.per_domain_modularity(
                overlap.overlap_matrix(task_sets, k).loc[list(tasks.label), list(tasks.label)],
                n_permutations=params["n_permutations"], seed=STUDY_SEED)
    assert {d: set(s.tolist()) for d, s in sets.items()} == {
        d: set(localizer.localized_set(v, pct).tolist()) for d, v in t.items()}
    within, overall = localizer.within_across(main, n_permutations=params["n_permutations"], seed=STUDY_SEED)
    return {"overlap": pd.DataFrame(long), "overlap_matrix": main, "overlap_within": within,
            "overlap_overall": overall, "overlap_sweep": pd.DataFrame(sweep),
            "attribution_overlap": attribution_overlap}


# --------------------------------------------------------------------------- ablation


def _ablation(ctx: RunContext, tasks: pd.DataFrame, sets: dict, n_layers: int, d_ff: int, stimuli: dict) -> dict:
    params = ctx.params
    all_sets, rows = {}, []
    for position, (domain, chosen) in enumerate(sets.items()):
        all_sets[domain] = chosen
        rows.append({"set": domain, "domain": domain, "kind": "selected", "draw": -1, "n_neurons": int(chosen.size)})
        # A seed stream of its own (7 = the stage), one child per domain: reproducible, and
        # never the draws stage 5 makes for its own sources.
        child = int(np.random.SeedSequence([params["seed"], 7, position]).generate_state(1)[0])
        for draw, control in enumerate(ablation.random_control_sets(chosen, n_layers, d_ff, "layer_matched",
                                                                     CONTROL_DRAWS, child)):
            name = f"{domain}|layer_matched|{draw}"
            all_sets[name] = control
            rows.append({"set": name, "domain": domain, "kind": "layer_matched", "draw": draw,
                         "n_neurons": int(control.size)})
    set_table = pd.DataFrame(rows)
    scope = control_scope(params)
    # Every selected set on every target; a domain's random sets on its own tasks (or on all).
    plan = {row.label: {r["set"]: all_sets[r["set"]] for r in rows
                        if r["kind"] == "selected" or scope == "all" or r["domain"] == row.domain}
            for row in tasks.itertuples()}
    folder = cache_folder(ctx, "localizer", tasks, CONTROL_DRAWS, scope, extra=stimuli_fingerprint(stimuli),
                          prefix="ablation_")
    ablated = ablate_cells(ctx, tasks, plan, folder, desc="ablating (localizer set, target)")
    cells, computed, seconds = ablated.cells.merge(set_table, on="set"), ablated.computed, ablated.seconds
    cells["target_domain"] = cells.target.map(overlap.domain_of)
    cells["relation"] = np.where(cells.target_domain == cells.domain, "within", "across")
    cells = cells[CELL_COLUMNS]

    labels = list(tasks.label)

    def matrix_of(kind: str) -> pd.DataFrame:
        chosen = cells[cells.kind == kind].groupby(["domain", "target"])["drop"].mean().unstack("target")
        return chosen.reindex(index=list(sets), columns=labels)

    selected, controls = matrix_of("selected"), matrix_of("layer_matched")
    within, overall = localizer.within_across(selected, n_permutations=params["n_permutations"], seed=STUDY_SEED)
    control_within, control_overall = localizer.within_across(controls, n_permutations=0, seed=STUDY_SEED)
    bars = drop_bars(cells, ["domain", "target"])
    return {"cells": cells, "ablation_matrix": selected, "ablation_within": within,
            "ablation_overall": {**overall, "control_within": control_overall["within"],
                                 "control_across": control_overall["across"]},
            "control_within": control_within[["domain", "n_tasks", "within", "across"]],
            "ablation_bars": localizer.own_other_bars(selected), "control_bars": bars,
            "computed": {"activations": None, "ablation_cells": computed}, "seconds": seconds}


def _attribution_ablation(ctx: RunContext, tasks: pd.DataFrame) -> tuple[pd.DataFrame, list]:
    """Stage 5's per-domain test (within_D vs cross_D of its drop matrix), when its cells are there
    for exactly these tasks; else an empty table and a note saying why."""
    path = ctx.paths.table("ablation_cells.csv")
    if not path.exists():
        return pd.DataFrame(), ["stage 05_ablation has not run: the agreement table has no attribution ablation"]
    cells = pd.read_csv(path)
    matrix = ablation.ablation_matrix(cells[cells.kind == "selected"], "drop")
    if set(matrix.index) != set(tasks.label):
        return pd.DataFrame(), ["stage 05_ablation ran on other tasks: rerun it for the agreement table's ablation rows"]
    return stats.per_domain_modularity(matrix, n_permutations=ctx.params["n_permutations"], seed=STUDY_SEED), []


# --------------------------------------------------------------------------- saving



def _units_table(result: LocalizerResult) -> pd.DataFrame:
    """Every localized neuron: domain, rank (by t, 0 first), layer, neuron, flat index, t."""
    rows = []
    for domain, chosen in result.sets.items():
        layers, neurons = split_flat(chosen, result.d_ff)
        rows.append(pd.DataFrame({"domain": domain, "rank": np.arange(chosen.size), "layer": layers, "neuron": neurons,
                                  "flat": np.asarray(chosen, dtype=np.int64), "t": result.t[domain][chosen]}))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(
        columns=["domain", "rank", "layer", "neuron", "flat", "t"])


def _save(ctx: RunContext, result: LocalizerResult) -> LocalizerResult:
    p = ctx.params
    summary = {
        "pct": result.pct, "k": int(result.k), "n_neurons": int(result.n_neurons), "chance_overlap": result.chance,
        "localizer_items": p["localizer_items"], "seed": p["seed"],
        "pooling": "mean over each text's own tokens (no special tokens) of the MLP down-projection input",
        "contrasts": {domain: {"localized": a, "control": b} for domain, (a, b) in CONTRASTS.items()},
        "sets": json_records(result.sets_table),
        "n_tasks": int(len(result.tasks)), "notes": result.notes,
    }
    written = [save_table(result.sets_table, ctx.paths.table("localizer_sets.csv")),
               save_table(_units_table(result), ctx.paths.table("localizer_units.csv"))]
    if result.enough:
        summary["overlap"] = {"per_domain": json_records(result.overlap_within), "overall": result.overlap_overall,
                              "sweep": json_records(result.overlap_sweep)}
        summary["ablation"] = {"mode": p["ablation_mode"], "items_per_target": p["ablation_items"],
                               "control_draws": CONTROL_DRAWS, "control_cells": control_scope(p),
                               "per_domain": json_records(result.ablation_within),
                               "overall": result.ablation_overall, "controls": json_records(result.control_within)}
        summary["agreement"] = json_records(result.agreement)
        cells = result.computed.get("ablation_cells") or 0
        summary["seconds_per_ablation_cell"] = result.seconds["ablation"] / cells if cells else None
        written += [save_table(result.overlap, ctx.paths.table("localizer_overlap.csv")),
                    save_table(result.cells, ctx.paths.table("localizer_ablation_cells.csv")),
                    save_table(result.agreement, ctx.paths.table("localizer_agreement.csv"))]
    written.append(save_json(summary, ctx.paths.table("localizer_summary.json")))
    return dataclasses.replace(result, written=written)
