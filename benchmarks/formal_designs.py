"""Design record: small-profile formal designs that we measured and did not adopt.

The `small` profile's target (issue #3) is that SmolLM2-135M-Instruct passes the 60% both-correct
filter on at least half of each domain's tasks. The formal domain stays far below it (2 of 20 in
the committed run). This script measures, with the pipeline's own scoring, the alternative designs
that were tried for the formal tasks, so the book can show why the suite is what it is:

* **choice** designs: both candidate answers are computed from the prompt and neither is the only
  candidate in sight (the model must select by an index, a key, a comparison, a count or a rule);
  more solved examples ("shots") for the suite's own near misses; a Python REPL transcript instead
  of ``Output:`` for the code tasks; ``max``/``min`` and "the larger/smaller of" for sorting;
* **copy** designs: the correct answer is the only candidate named in the query, so copying
  solves the item. They pass easily and were rejected (they would put "copy" neurons into the
  formal domain); they are measured here as the contrast.

The kind is measured, not declared: a design is *copy* when copying solves at least half of its
items (:func:`modularity.science.tasks.reports.copy_solvable_share`, also in the CSV).

Writes ``benchmarks/results/formal_designs_<model>.csv`` (one row per design; 48 items each by
default; the task chapter reads it). About 10 minutes for SmolLM2 on 2 CPU cores; ``--resume`` continues an interrupted run.

Usage:
    python benchmarks/formal_designs.py --model smollm2-135m-instruct
    python benchmarks/formal_designs.py --model smollm2-135m-instruct --resume   # after an interruption
"""
from __future__ import annotations

import argparse
import random
import time
import zlib
from pathlib import Path

import pandas as pd
import torch

from modularity.science.models import load_model
from modularity.records.store import save_table
from modularity.science.scoring import evaluate_task, summarize_task
from modularity.science.tasks import formal
from modularity.science.tasks.base import MinimalPair
from modularity.science.tasks.reports import copy_solvable_share, prompt_tail
from modularity.science.tasks.schema import PromptConfig, TaskData
from modularity.science.tasks.suite import draw_items

RESULTS = Path(__file__).resolve().parent / "results"
_WORDS = ["apple", "river", "stone", "chair", "bread", "horse", "window", "orange", "tiger", "lemon", "cloud", "pencil"]


def repl_list_index(rng):
    items = rng.sample(_WORDS, 2)
    i = rng.randrange(2)
    body = ">>> items = {l}\n>>> items[{k}]\n"
    return MinimalPair(body.format(l=items, k=i), repr(items[i]), body.format(l=items, k=1 - i), repr(items[1 - i]),
                       "list index")


def repl_dict_lookup(rng):
    keys, values = rng.sample("abcdefgh", 2), rng.sample(_WORDS, 2)
    table = dict(zip(keys, values))
    body = ">>> d = {d}\n>>> d['{k}']\n"
    return MinimalPair(body.format(d=table, k=keys[0]), repr(values[0]), body.format(d=table, k=keys[1]),
                       repr(values[1]), "dict lookup")


def repl_conditional(rng):
    x, t = rng.sample(range(1, 10), 2)
    yes, no = rng.choice([("yes", "no"), ("high", "low"), ("go", "stop")])
    body = ">>> x = {x}\n>>> '{y}' if x {c} {t} else '{n}'\n"
    return MinimalPair(body.format(x=x, y=yes, c="<", t=t, n=no), repr(yes if x < t else no),
                       body.format(x=x, y=yes, c=">", t=t, n=no), repr(yes if x > t else no), "if-else expression")


def repl_loop_count(rng):
    n1, n2 = rng.sample(range(1, 6), 2)
    body = ">>> total = 0\n>>> for k in range({n}):\n...     total += 1\n...\n>>> total\n"
    return MinimalPair(body.format(n=n1), str(n1), body.format(n=n2), str(n2), "loop count")


def code_increment(rng):
    a = rng.randint(1, 5)
    b, c = rng.sample(range(1, 5), 2)
    body = "x = {a}\nx = x + {b}\nprint(x)\nOutput:"
    return MinimalPair(body.format(a=a, b=b), str(a + b), body.format(a=a, b=c), str(a + c), "x = x + b")


def code_branch_arithmetic(rng):
    x, t = rng.sample(range(1, 10), 2)
    body = "x = {x}\nif x {c} {t}:\n    x = x + 1\nelse:\n    x = x - 1\nprint(x)\nOutput:"
    above, below = (x + 1, x - 1) if x > t else (x - 1, x + 1)
    return MinimalPair(body.format(x=x, c=">", t=t), str(above), body.format(x=x, c="<", t=t), str(below),
                       "if-else arithmetic")


def max_min(rng):
    a, b = rng.sample(range(1, 10), 2)
    return MinimalPair(f"max({a}, {b}) =", str(max(a, b)), f"min({a}, {b}) =", str(min(a, b)), "max/min")


def larger_smaller(rng):
    a, b = rng.sample(range(1, 10), 2)
    return MinimalPair(f"The larger of {a} and {b} is", str(max(a, b)), f"The smaller of {a} and {b} is",
                       str(min(a, b)), "larger/smaller")


def single_rule_ponens(rng):
    """Copy-solvable: one rule, so its conclusion is the only candidate in the prompt."""
    person = rng.choice(formal._NAMES)
    p, q, r = rng.sample(formal._PROPERTIES, 3)
    say = lambda then: f"If {person} is {p}, then {person} is {then}. {person} is {p}. So {person} is"  # noqa: E731
    return MinimalPair(say(q), q, say(r), r, "single rule")


def single_key_lookup(rng):
    """Copy-solvable: one key, so its value is the only candidate in the prompt."""
    key = rng.choice("abcdefgh")
    v1, v2 = rng.sample(_WORDS, 2)
    body = 'd = {{"{k}": "{v}"}}\nprint(d["{k}"])\nOutput:'
    return MinimalPair(body.format(k=key, v=v1), v1, body.format(k=key, v=v2), v2, "single key")


def _arith(generator, n_ops: int, verbal: bool):
    return lambda rng: generator(rng, "small", n_ops, verbal)


W = formal.with_shots
#: (design, the task it was meant for, shots, pair builder); the kind is measured (copy_solvable_share)
DESIGNS = [
    ("two-rule modus ponens, 8 shots", "logic_propositional_1", 8, W(formal._small_modus_ponens_query, 8)),
    ("two-rule symbolic modus ponens, 10 shots", "logic_propositional_symbolic", 10,
     W(formal._small_symbolic_ponens_query, 10)),
    ("two-rule first-order syllogism, 8 shots", "logic_syllogism_symbolic", 8, W(formal._small_fol_query, 8)),
    ("two-rule syllogism in words, 8 shots", "logic_syllogism_1", 8, W(formal._small_syllogism_query, 8)),
    ("REPL: index a two-element list", "code_list", 6, W(repl_list_index, 6, "\n", answer_prefix="")),
    ("REPL: look up one of two keys", "code_B", 6, W(repl_dict_lookup, 6, "\n", answer_prefix="")),
    ("REPL: if-else expression, < vs >", "code_conditional", 6, W(repl_conditional, 6, "\n", answer_prefix="")),
    ("REPL: loop count", "code_loop", 6, W(repl_loop_count, 6, "\n", answer_prefix="")),
    ("code: x = x + b, then print", "code_loop", 3, W(code_increment, 3, "\n\n")),
    ("code: if-else that adds or subtracts 1", "code_conditional", 3, W(code_branch_arithmetic, 3, "\n\n")),
    ("max(a, b) vs min(a, b)", "number_sorting", 6, W(max_min, 6)),
    ("the larger vs the smaller of a and b", "number_sorting", 6, W(larger_smaller, 6)),
    ("sequence, 8 shots", "number_sequence", 8, W(formal._small_sequence_query, 8)),
    ("equation x + b = c, 12 shots", "simple_equation", 12, W(formal._small_equation_query, 12)),
    ("a × b × c, 12 shots", "mul_div_3op_symbolic", 12, W(_arith(formal._mul_div, 3, False), 12)),
    ("a ± b in words, 16 shots", "add_sub_2op_verbal", 16, W(_arith(formal._add_sub, 2, True), 16)),
    ("a ± b ± c, 16 shots", "add_sub_3op_symbolic", 16, W(_arith(formal._add_sub, 3, False), 16)),
    ("single-rule modus ponens (copy-solvable)", "logic_propositional_1", 4, W(single_rule_ponens, 4)),
    ("single-key dictionary (copy-solvable)", "code_B", 3, W(single_key_lookup, 3, "\n\n")),
]


def design_task(name: str, build, n_items: int, seed: int) -> TaskData:
    """``n_items`` distinct pairs of a design, drawn as the suite's generator draws a task's."""
    items = draw_items(build, n_items, random.Random(zlib.crc32(f"{seed}:{name}".encode())), f"design {name!r}")
    return TaskData(name="design", domain="MD", config=PromptConfig(path="design.json", force_base_evaluation=True),
                    items=items)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--n-items", type=int, default=48)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None,
                        help="CSV to write (default: benchmarks/results/formal_designs_<model>.csv)")
    parser.add_argument("--resume", action="store_true",
                        help="keep the rows of the CSV that match this --model/--seed and score only the missing designs")
    args = parser.parse_args(argv)
    out = args.out or RESULTS / f"formal_designs_{args.model}.csv"
    torch.set_num_threads(args.threads)
    rows = []
    if args.resume and out.exists():
        kept = pd.read_csv(out)
        rows = kept[(kept.model == args.model) & (kept.seed == args.seed)].to_dict("records")
    done = {row["design"] for row in rows}
    loaded = load_model(args.model)
    for design, meant_for, shots, build in DESIGNS:
        if design in done:
            continue
        start = time.time()
        task = design_task(design, build, args.n_items, args.seed)
        copy_share = copy_solvable_share(task)
        kind = "copy" if copy_share >= 0.5 else "choice"
        summary = summarize_task(evaluate_task(loaded, task, batch_size=16, bos="study"))
        first = task.items[0]
        rows.append({"design": design, "meant_for": meant_for, "kind": kind, "copy_solvable": copy_share, "shots": shots,
                     "n_items": summary["n_items"], "n_aligned": summary["n_aligned"],
                     "clean_accuracy": summary["clean_accuracy"], "corrupted_accuracy": summary["corrupted_accuracy"],
                     "both_correct_accuracy": summary["both_correct_accuracy"],
                     "both_correct_se": summary["both_correct_se"], "passes": summary["passes"],
                     "query_end": prompt_tail(first["clean_problem"]), "answers": f"{first['clean_correct']!r} / "
                     f"{first['clean_incorrect']!r}", "model": args.model, "seed": args.seed})
        print(f"{design:45s} {kind:6s} both={summary['both_correct_accuracy']:.2f} ({time.time() - start:.0f}s)",
              flush=True)
        save_table(pd.DataFrame(rows).round(4), out)  # atomic: a killed run keeps the rows so far
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
