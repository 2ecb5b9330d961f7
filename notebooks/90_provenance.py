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
# # Provenance of every run
#
# Each run of `modularity run` writes a `manifest.json` next to its executed notebooks: the
# parameters, the software environment (Python, platform, package versions, git commit of this
# project) and, per stage, when it finished and how long it took. This page collects them.

# %% tags=["parameters"]
results_root = ""  # folder holding <run>/<profile>/manifest.json; empty means the book's results

# %%
import json
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from modularity.base import files
from modularity.base.files import REPO_ROOT
from modularity.running.cost import FORWARDS_PER_UNIT, estimate_cost
from modularity.running.runner import stage_states
from modularity.showing import findings, tables
from modularity.stages import registry

root = Path(results_root) if results_root else files.results_root()
manifests = {str(p.parent.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.glob("*/*/manifest.json"))}
print(f"{len(manifests)} run(s) found")

# %% [markdown]
# ## Stages, and whether they still hold
#
# Per stage of each run: the commit of this project that ran it, its wall time, and whether the
# code its tables depend on (the stage's module and everything of this package it imports, as
# syntax trees, with the torch and transformers versions) and its page template are those of this
# build. "not recorded" marks a stage run before manifests recorded them.

# %%
titles = {s.notebook: s.title for s in registry.STAGES}
rows = []
for run, m in manifests.items():
    states = stage_states(m)
    rows += [{"run": run, "stage": titles.get(stage, stage), "commit": info["git_sha"][:7],
              "finished (UTC)": info["finished"][:16].replace("T", " "), "wall time (s)": round(info["wall_time_s"]),
              "made by this build's code": findings.STATE_ANSWERS.get(states.get(stage), "")}
             for stage, info in sorted(m["stages"].items())]
stages = pd.DataFrame(rows)
for run, m in manifests.items():
    display(Markdown(f"**{run}.** " + findings.currency_sentence(stage_states(m), titles)))
tables.for_reading(stages) if len(stages) else "no run has been executed yet"

# %% [markdown]
# ## Environment of the last stage of each run
#
# The commit, Python and the two libraries whose versions can change a model's outputs; the
# platform and every package version are in the fold below.

# %%
def environment(m: dict) -> dict:
    e = m["environment"]
    return {"commit": e["git_sha"][:7] + (" (uncommitted changes)" if e["git_sha"].endswith("+dirty") else ""),
            "python": e["python"], "torch": e["packages"].get("torch"),
            "transformers": e["packages"].get("transformers"), "CPUs": e["cpu_count"]}


env = pd.DataFrame([{"run": run, **environment(m)} for run, m in manifests.items()])
everything = pd.DataFrame({run: {"platform": m["environment"]["platform"], **m["environment"]["packages"]}
                           for run, m in manifests.items()}).reset_index(names="")
tables.folded(tables.for_reading(everything, font_size=0.85), "Platform and package versions, per run",
              summary=tables.for_reading(env))

# %% [markdown]
# ## Parameters
#
# What each run chose; every other parameter is the same for all of them, listed after the table.

# %%
params = pd.DataFrame({run: {k: "—" if v is None else str(v) for k, v in m["params"].items()}
                       for run, m in manifests.items()}).T
differ = [c for c in params.columns if params[c].nunique(dropna=False) > 1 and c != "run_name"]
shared = [c for c in params.columns if c not in differ and c != "run_name"]
display(tables.for_reading(params[differ].fillna("(default)").reset_index(names="run")))
display(Markdown("All runs: " + "; ".join(f"`{c}` {params[c].iloc[0]}" for c in shared) + "."))

# %% [markdown]
# ## Measured cost and a cost model for larger models
#
# `make benchmark` (`benchmarks/run_benchmarks.py`) times the three expensive stages against their
# floors and against naive reference implementations; each JSON under `benchmarks/results/` is one
# run on one machine.

# %%
def measured(m: dict, phase: str, key: str) -> float:
    # a benchmark run may cover only some phases (e.g. `--phases ablation`)
    return m.get(phase, {}).get(key, float("nan"))


reports = {path.name: json.loads(path.read_text())
           for path in sorted((REPO_ROOT / "benchmarks" / "results").glob("*.json"))}
main_jobs = [{"file": name, "wall (min)": bench["wall_s"] / 60,
              "CPU (min)": (bench["user_cpu_s"] + bench["system_cpu_s"]) / 60,
              **{f"{stage} (s)": t for stage, t in bench["stage_wall_s"].items()},
              "threads": bench["params"].get("threads", 0) or "torch default",
              "within 30 min": bench["within_target"]}
             for name, bench in reports.items() if "stage_wall_s" in bench]  # measured runs of the main job

# %%
bench_rows = []
for bench in (bench for bench in reports.values() if "schema" in bench):  # runs of run_benchmarks.py
    for model, m in bench["models"].items():
        bench_rows.append({"run": bench["label"], "created": bench["created"], "model": model,
                           "threads": bench["machine"]["torch_threads"],
                           "ablation sets": m.get("sizes", {}).get("abl_sets", float("nan")),
                           "eval items/s": measured(m, "evaluation", "items_per_s"),
                           "eval speed-up vs naive": measured(m, "evaluation", "speedup_vs_reference"),
                           "attribution / floor": measured(m, "attribution", "ratio_to_floor"),
                           "ablation / forward per cell": measured(m, "ablation", "ratio_to_forward_per_cell"),
                           "peak RSS (GB)": m["memory"]["peak_rss_bytes"] / 1e9,
                           "weights (GB)": m["memory"]["weight_bytes"] / 1e9})
benchmarks = pd.DataFrame(bench_rows).sort_values(["created", "model"]).reset_index(drop=True)
benchmarks["created"] = benchmarks["created"].str[:10]
tables.folded(tables.for_reading(benchmarks[["run", "created", "model", "threads", "ablation sets",
                                               "eval speed-up vs naive", "weights (GB)"]], digits=2, font_size=0.85),
              "When each benchmark ran, its threads, the ablation sets, the speed-up over the naive evaluation and the "
              "weights' size",
              summary=tables.for_reading(benchmarks[["run", "model", "eval items/s", "attribution / floor",
                                                     "ablation / forward per cell", "peak RSS (GB)"]], digits=2))

# %% [markdown]
# The README's main job (`modularity run params/smollm2-135m-instruct.yaml`, all its stages from an
# empty cache) as measured end to end, one row per recorded run (this VM's throughput varies, so the
# same work can take quite different times), when a record of it is present
# (`benchmarks/results/main_job_*.json`); the time of each stage is in the fold:

# %%
if main_jobs:
    jobs = pd.DataFrame(main_jobs)
    per_stage = jobs.set_index("file")[[c for c in jobs.columns if c.endswith("(s)")]].T
    per_stage.index = [c.removesuffix(" (s)") for c in per_stage.index]
    display(tables.folded(tables.for_reading(per_stage.reset_index(names="stage"), digits=0, font_size=0.85),
                          "Wall time of each stage (s), per recorded run",
                          summary=tables.for_reading(jobs[["file", "wall (min)", "CPU (min)", "threads",
                                                           "within 30 min"]], digits=1)))
else:
    print("no measured main job recorded")

# %% [markdown]
# The cost model counts forward-pass equivalents per stage as this package runs them (see
# `modularity.estimate_cost`) and converts them to time with an *achieved* throughput. We
# calibrate that throughput on the measured SmolLM2 evaluation rate of the most recent benchmark that measured it, then
# project to 7B and 70B Llama-shaped models on one GPU under a stated assumption: an achieved
# 300 TFLOP/s in bf16 (about a third of an H100's dense peak; not measured here).

# %%
smol = benchmarks[(benchmarks.model == "smollm2-135m-instruct") & benchmarks["eval items/s"].notna()]
if len(smol):
    last = smol.iloc[-1]  # the most recent benchmark that measured the evaluation
    tokens_per_sequence = 60
    cpu_flops = last["eval items/s"] * FORWARDS_PER_UNIT["evaluation"] * tokens_per_sequence * 2 * 135e6
    print(f"calibrated CPU throughput: {cpu_flops / 1e9:.1f} GFLOP/s ({last['run']}, {last['threads']} thread(s))")
    shapes = {"SmolLM2-135M (CPU, calibrated)": (135e6, 30, 576, 1536, cpu_flops, 4),
              "7B, Llama-shaped (1 GPU, assumed 300 TFLOP/s)": (7e9, 32, 4096, 11008, 300e12, 2),
              "70B, Llama-shaped (GPU node, assumed 300 TFLOP/s)": (70e9, 80, 8192, 28672, 300e12, 2)}
    projections = pd.concat([
        estimate_cost(p, layers, d_model, d_ff, n_passing=20, flops_per_s=flops, bytes_per_param=b)
        .assign(model=name) for name, (p, layers, d_model, d_ff, flops, b) in shapes.items()])
    projections["minutes"] = projections.seconds / 60
    table = projections[["model", "stage", "units", "minutes", "memory_gb"]]
    display(tables.for_reading(table, int_columns=["units"], digits={"minutes": 2, "memory_gb": 2},
                               rename={"units": "work units (items or item-cells)", "memory_gb": "peak memory (GB)"}))

# %% [markdown]
# The CPU row can be checked against the measured wall times of the runs above. The GPU rows are
# estimates: real throughput depends on batch size, sequence length, attention kernels and, for 70B,
# on how the model is split over GPUs (its bf16 weights alone need about 140 GB).
