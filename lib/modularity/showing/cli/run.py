"""``modularity run``: execute the stage notebooks for one params file (papermill)."""
from __future__ import annotations

import argparse
import sys

from ...stages.registry import names

HELP = """\
Execute the stage notebooks of notebooks/ for one params file with papermill.

Executed notebooks, small tables (CSV/JSON) and manifest.json go to
book/results/<run_name>/<profile>/ (rendered by the book); heavy tensors go to
cache/ (not committed). Finished per-task work is cached, so an interrupted run
resumes where it stopped when you run the same command again.

The run is checked before its first stage (model found, family supported, device
present, the stages each requested stage reads from finished): a problem is one
line and exit status 2. A stage that fails ends the run with its cause and exit
status 1; its notebook goes to cache/<run_name>/<profile>/failed/, never into the
book.

Stages, in order (--stages takes either name):
  {stages}

Examples:
  modularity run params/smollm2-135m-instruct.yaml
  modularity run params/gemma3-270m.yaml --stages 01_eval 02_attribution
  modularity run params/my-model.yaml --profile paper      # override one parameter

Several processes (one GPU each) share a run's per-task and per-cell work; each
stage's tables are made once, after every share is cached, and equal a
one-process run's:
  accelerate launch --multi_gpu --num_processes 4 -m modularity run params/my-model.yaml
  torchrun --nproc_per_node 4 -m modularity run params/my-model.yaml    # the same
  modularity run params/my-model.yaml --shard $SLURM_ARRAY_TASK_ID/4   # a job array
""".format(stages=names("\n  "))


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run", help="execute the stage notebooks for a params file",
        description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("params", help="params YAML file, e.g. params/smollm2-135m-instruct.yaml")
    parser.add_argument("--stages", nargs="+", metavar="STAGE", help="run only these stages (in order)")
    parser.add_argument("--profile", choices=("small", "paper"), help="override the params file's task profile")
    parser.add_argument("--threads", type=int, help="override the CPU threads of torch (1 is faster on a busy machine)")
    parser.add_argument("--log", action="store_true", help="stream the notebooks' output to the terminal")
    parser.add_argument("--shard", metavar="I/N", help="be shard I of N processes sharing the run (counted from 0; "
                        "taken from the environment under accelerate launch or torchrun)")
    parser.set_defaults(func=main)


def main(args) -> int:
    from ...running.runner import NotebookFailed, run
    from ...running.shards import ShardFailed, parse_shard, run_shard, shard_from_environment

    overrides = {k: v for k, v in (("profile", args.profile), ("threads", args.threads)) if v is not None}
    shard = parse_shard(args.shard) if args.shard else shard_from_environment()
    stages = tuple(args.stages) if args.stages else None
    try:
        if shard is not None:
            outputs = run_shard(args.params, shard, stages=stages, log_output=args.log, overrides=overrides or None)
        else:
            outputs = run(args.params, stages=stages, log_output=args.log, overrides=overrides or None)
    except ShardFailed as failure:
        print(f"modularity run: {failure}", file=sys.stderr)
        return 1
    except NotebookFailed as failure:
        print(f"modularity run: {failure.report()}\n"
              "  stages finished before it are kept; fix the cause and run the same command again",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("modularity run: interrupted; finished stages and tasks are kept: run the same command again to "
              "resume", file=sys.stderr)
        return 130
    for path in outputs:
        print(path)
    return 0
