"""Measure how well a small model solves each task of both profiles (the 60% both-correct filter).

Writes benchmarks/results/task_calibration_<model>.csv (a design-time record; the book reads the real runs) with one row per (profile, task): items scored,
token-aligned items, clean / corrupted / both-correct accuracy over the aligned items, and
whether the task passes the study's 60% filter (book methods §2). Scoring is modularity.science.scoring's
(summed teacher-forced answer log-probs, special tokens never added: ``bos="study"``).

Usage (a few minutes per profile on 2 CPU cores at 32 items per task):
    python benchmarks/calibrate_tasks.py --n-items 32 --profiles small,paper
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from modularity.science.models import load_model
from modularity.records.store import save_table
from modularity.science.scoring import evaluate_task, summarize_task
from modularity.science.tasks import TASK_NAMES, generate_task

RESULTS = Path(__file__).resolve().parent / "results"
COLUMNS = ["profile", "task", "domain", "n_items", "n_aligned", "clean_accuracy", "corrupted_accuracy",
           "both_correct_accuracy", "passes", "model", "seed", "bos"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--n-items", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profiles", default="small,paper")
    parser.add_argument("--tasks", default="", help="comma-separated subset (default: all 46)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None,
                        help="CSV to update (default: benchmarks/results/task_calibration_<model>.csv)")
    args = parser.parse_args(argv)
    args.out = args.out or RESULTS / f"task_calibration_{args.model.split('-')[0]}.csv"
    torch.set_num_threads(args.threads)
    tasks = [t for t in args.tasks.split(",") if t] or list(TASK_NAMES)
    loaded = load_model(args.model)
    rows = []
    if args.out.exists():  # keep rows of other profiles/tasks; the ones measured now are replaced
        previous = pd.read_csv(args.out)
        rows = previous.to_dict("records")
    for profile in args.profiles.split(","):
        for name in tasks:
            start = time.time()
            task = generate_task(name, profile, args.n_items, args.seed)
            summary = summarize_task(evaluate_task(loaded, task, batch_size=16, bos="study"))
            rows = [r for r in rows if not (r["profile"] == profile and r["task"] == name)]
            rows.append({"profile": profile, "task": name, "domain": task.domain, "n_items": summary["n_items"],
                         "n_aligned": summary["n_aligned"], "clean_accuracy": summary["clean_accuracy"],
                         "corrupted_accuracy": summary["corrupted_accuracy"],
                         "both_correct_accuracy": summary["both_correct_accuracy"], "passes": summary["passes"],
                         "model": args.model, "seed": args.seed, "bos": "study"})
            print(f"{profile:6s} {task.label:40s} both={summary['both_correct_accuracy']:.2f} "
                  f"aligned={summary['n_aligned']}/{summary['n_items']} ({time.time() - start:.0f}s)", flush=True)
            order = {n: i for i, n in enumerate(TASK_NAMES)}
            frame = pd.DataFrame(rows, columns=COLUMNS)
            frame = frame.sort_values(["profile", "task"], key=lambda s: s.map(order) if s.name == "task" else s)
            save_table(frame.round(4), args.out)
    frame = pd.read_csv(args.out)
    print(frame.groupby(["profile", "domain"]).passes.agg(["sum", "size"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
