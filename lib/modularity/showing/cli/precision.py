"""``modularity precision``: run one params file in float32 and half precision on a few tasks, compared."""
from __future__ import annotations

import argparse

HELP = """\
How far half precision moves the results: stages 1, 2, 3 and 5 of a params file on the
same tasks and items in float32 and in each --dtypes, then per task the pass decision,
the overlap of the top-main_pct% neuron sets with float32's and the rank correlation of
the scores, and per dtype the within/across overlap and ablation ratios with their p.

Each dtype is its own run under cache/precision/ (resumable); the comparison goes to
book/results/precision/<run_name>-<profile>/, which the book's scale chapter reads.

Examples:
  modularity precision params/smollm2-135m-instruct.yaml
  modularity precision params/my-model.yaml --dtypes bfloat16 --tasks hypernymy desires_goals
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("precision", help="compare float32 with bfloat16/float16 on a few tasks",
                                   description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("params", help="params YAML file, e.g. params/smollm2-135m-instruct.yaml")
    parser.add_argument("--dtypes", nargs="+", default=["bfloat16", "float16"], choices=("bfloat16", "float16"),
                        help="half precisions to compare with float32 (default: both)")
    parser.add_argument("--tasks", nargs="+", help="task keys (default: modularity.running.precision_check.DEFAULT_TASKS, "
                                                   "two per domain)")
    parser.add_argument("--threads", type=int, help="override the CPU threads of torch")
    parser.set_defaults(func=main)


def main(args) -> int:
    from ...running import precision_check
    from ...records.params import load_params
    from ...records.preflight import check_device, check_model

    params = load_params(args.params)
    check_device(params, args.params)
    check_model(params, args.params)
    if args.threads is not None:
        params["threads"] = args.threads
    check = precision_check.run_precision_check(params, dtypes=tuple(args.dtypes),
                                                tasks=tuple(args.tasks or precision_check.DEFAULT_TASKS))
    folder = precision_check.results_folder(params)
    precision_check.save_precision_check(check, folder)
    print(check.decisions.to_string(index=False))
    print(check.sets.to_string(index=False))
    print(check.ratios.to_string(index=False))
    print(check.stages.to_string(index=False))
    print(f"written to {folder}")
    return 0
