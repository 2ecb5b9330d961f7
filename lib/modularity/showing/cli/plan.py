"""``modularity plan``: memory and time of a run per stage, before starting it (no weights loaded)."""
from __future__ import annotations

import argparse

HELP = """\
Estimate, before a run, whether a model fits and how long each stage takes.

Reads the model's config only (no weights): a local directory's config.json, an
embedded model's GGUF metadata, or a Hugging Face id (hub or local HF cache; offline,
pass --config with the model's config.json). Sizes and the parameter count come from
the config; time and memory from modularity.running.cost.estimate_cost, converted to time with
a CPU throughput calibrated on the measured main job or an assumed share of a GPU's
peak. It plans for the GPUs visible here, for this CPU, or for a machine you are not
on (--gpus, --gpu-memory-gb). Every number is an estimate; the assumptions are printed.

Examples:
  modularity plan params/smollm2-135m-instruct.yaml
  modularity plan params/my-70b.yaml --gpus 2 --gpu-memory-gb 141 --dtype bfloat16
  modularity plan params/my-70b.yaml --config configs/llama-70b/config.json --gpus 4 --gpu-model H100
"""


def add_parser(subparsers) -> None:
    # Defaults live in modularity.running.plan and are filled in by main(): importing it here would load
    # pandas for every `modularity` command.
    parser = subparsers.add_parser(
        "plan", help="estimate memory and time per stage for a params file (no weights loaded)",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("params", help="params YAML file, e.g. params/smollm2-135m-instruct.yaml")
    parser.add_argument("--config", help="the model's config.json (or a folder holding it) instead of reading it "
                                         "through the model name; for hub models when offline")
    parser.add_argument("--device", choices=("cpu", "cuda"),
                        help="plan for the CPU or GPUs (default: from the params' device; cuda with --gpus)")
    parser.add_argument("--gpus", type=int, help="plan for N GPUs instead of those visible here")
    parser.add_argument("--gpu-memory-gb", type=float,
                        help="memory per GPU as the product names it (80 for an H100 80GB, 141 for an H200); "
                             "these are GiB, converted to 1e9-byte GB (default: the --gpu-model's)")
    parser.add_argument("--gpu-model", help="H100, H200 or A100: the GPU whose peak throughput to assume "
                                            "(default: detected, else H200 for ≥120 GB, else H100)")
    parser.add_argument("--gpu-efficiency", type=float,
                        help="achieved share of the GPU's peak (default 0.30, as the provenance page assumes)")
    parser.add_argument("--cpu-memory-gb", type=float, help="plan for a CPU machine with this much RAM, GB")
    parser.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), help="override the params' dtype")
    parser.add_argument("--passing", type=int, help="tasks expected to pass the filter (default: all, an upper bound)")
    parser.add_argument("--tokens", type=int, help="mean tokens per sequence (default 60)")
    parser.add_argument("--max-tokens", type=int, help="longest sequence, for memory (default 192)")
    parser.set_defaults(func=main)


def main(args) -> int:
    from modularity.running import plan as planning
    from ...records.params import load_params
    from ...records.preflight import check_model
    params = load_params(args.params)
    check_model(params, args.params)
    args.tokens = planning.TOKENS_MEAN if args.tokens is None else args.tokens
    args.max_tokens = max(planning.TOKENS_MAX, args.tokens) if args.max_tokens is None else args.max_tokens
    if args.gpu_efficiency is None:
        args.gpu_efficiency = planning.DEFAULT_GPU_EFFICIENCY
    if args.tokens < 1 or args.max_tokens < args.tokens:
        raise ValueError(f"--tokens {args.tokens} and --max-tokens {args.max_tokens}: need 1 ≤ tokens ≤ max-tokens")
    config = planning.read_model_config(params["model"], args.config)
    geometry = planning.model_geometry(config)
    workload = planning.workload_from_params(params, n_passing=args.passing, dtype=args.dtype,
                                             tokens_mean=args.tokens, tokens_max=args.max_tokens)
    device, notes = choose_device(args, params, workload.dtype)
    if params["remote"]:
        notes.insert(0, "remote: true — NDIF runs the model: nothing but its config and tokenizer is loaded "
                        "here, so this machine's memory and GPUs do not limit the run. The FLOPs below are "
                        "the work the service will do; its throughput and queue are not known here, so the "
                        f"times are for the device planned ({device.kind}), not for the service")
    result = planning.plan_run(geometry, workload, device, model=params["model"])
    if params["data_dir"]:
        from ...science.tasks import excluded_items_lines, load_suite

        notes += [f"{params['data_dir']}: {line}" for line in excluded_items_lines(load_suite(params))]
    for note in notes:
        print(f"Note: {note}")
    print(planning.format_plan(result, source=args.params))
    return 0


def choose_device(args, params: dict, dtype: str):
    """The :class:`~modularity.running.plan.DeviceSpec` to plan for, and notes on how it was chosen."""
    from modularity.running import plan as planning

    planned_gpus = args.gpus is not None or args.gpu_memory_gb is not None or args.gpu_model is not None
    kind = args.device or ("cuda" if planned_gpus or params["device"] != "cpu" else "cpu")
    notes = []
    if kind == "cuda" and planned_gpus:
        memory_gb = None if args.gpu_memory_gb is None else planning.named_gpu_memory_gb(args.gpu_memory_gb)
        if args.gpu_model is None:
            notes.append(f"GPU model taken as {planning.guess_gpu_model(memory_gb)} "
                         "for its peak throughput; --gpu-model sets it")
        return planning.gpu_device(args.gpus or 1, memory_gb, args.gpu_model, dtype,
                                   args.gpu_efficiency), notes
    if kind == "cuda":
        visible = planning.visible_gpus()
        if visible:
            name = visible[0][0]
            model = planning.gpu_model_from_name(name)
            if model is None:
                notes.append(f"{name!r} is not in the GPU table; its throughput is assumed to be an H100's "
                             "(--gpu-model sets it)")
            return planning.gpu_device(len(visible), min(m for _, m in visible), model or "H100", dtype,
                                       args.gpu_efficiency, detected=True), notes
        notes.append(f"the params say device: {params['device']} but no GPU is visible here: this is the plan for "
                     "this CPU; pass --gpus N --gpu-memory-gb M (--gpu-model) to plan for a GPU machine")
    return planning.cpu_device(args.cpu_memory_gb), notes
