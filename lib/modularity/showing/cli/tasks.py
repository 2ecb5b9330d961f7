"""`modularity tasks`: list, show and export the 46-task minimal-pair suite."""
from __future__ import annotations

import argparse
import textwrap

DESCRIPTION = """\
The 46 tasks of the study (Language 8, Formal 20, Physical 9, Social 9) as seeded minimal
pairs: a clean and a corrupted prompt that differ in one detail, with the correct answer
swapped. Two difficulty profiles:
  paper  close to the study's items (three-digit operands, 4-6 element lists, syllogisms)
  small  same tasks, easier numbers/contexts, for 100-300M parameter models

Examples:
  modularity tasks list
  modularity tasks show code_list --profile small --n 2
  modularity tasks export --profile small --seed 0 --n-items 100 --out data/
  modularity tasks export --profile paper --tasks wug,npi --out data_paper/
"""


def _task_list(text: str | None):
    if not text:
        return None
    from modularity.science.tasks import TASK_NAMES

    names = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in names if t not in TASK_NAMES]
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; run `modularity tasks list` for the 46 names")
    return names


def _cmd_list(args) -> int:
    from modularity.science.tasks import DOMAIN_NAMES, describe_tasks

    rows = describe_tasks()
    print(f"{'task':36s} {'domain':6s} {'study file':36s} description")
    for row in rows:
        print(f"{row['task']:36s} {row['domain']:6s} {row['file']:36s} {row['description']}")
    counts = {d: sum(r["domain"] == d for r in rows) for d in DOMAIN_NAMES}
    print(f"\n{len(rows)} tasks: " + ", ".join(f"{DOMAIN_NAMES[d]} ({d}) {n}" for d, n in counts.items()))
    print("profiles: paper (study-like difficulty), small (for 100-300M models)")
    return 0


def _cmd_show(args) -> int:
    from modularity.science.tasks import assemble_message, generate_task

    task = generate_task(args.task, args.profile, args.n, args.seed)
    print(f"{task.label}  profile={args.profile} seed={args.seed}"
          f"{'  (raw text, no chat template)' if task.config.force_base_evaluation else ''}")
    for index, item in enumerate(task.items):
        print(f"\n--- item {index}")
        for cond in ("clean", "corrupted"):
            message = assemble_message(task.config, item, cond)
            print(f"[{cond}]\n{textwrap.indent(message, '  ')}")
            print(f"  → correct {item[cond + '_correct']!r}   foil {item[cond + '_incorrect']!r}")
    return 0


def _cmd_export(args) -> int:
    from modularity.science.tasks import export_study_layout, generate_suite

    if args.n_items < 1:
        raise ValueError(f"--n-items must be at least 1, got {args.n_items}")
    suite = generate_suite(args.profile, args.n_items, args.seed, tasks=_task_list(args.tasks))
    out = export_study_layout(suite, args.out)
    total = sum(len(t) for t in suite.values())
    print(f"wrote {len(suite)} tasks, {total} items ({args.profile}, seed {args.seed}) to {out}/data and {out}/config")
    return 0


def add_parser(subparsers) -> None:
    from modularity.science.tasks import PROFILES

    parser = subparsers.add_parser("tasks", help="list, show and export the 46-task suite",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="<command>")

    listing = commands.add_parser("list", help="the 46 task names, domains and study file names")
    listing.set_defaults(func=_cmd_list)

    show = commands.add_parser("show", help="print rendered clean/corrupted examples of one task")
    show.add_argument("task", help="task key, e.g. code_list or physics_buoyancy (see `tasks list`)")
    show.add_argument("--profile", choices=PROFILES, default="small", help="difficulty profile (default: small)")
    show.add_argument("--n", type=int, default=3, help="number of examples (default: 3)")
    show.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    show.set_defaults(func=_cmd_show)

    export = commands.add_parser(
        "export", help="write the suite in the study's layout (data/<domain>/*.json + config/<domain>/config.json)",
        description="Generate the suite and write it in the study's published layout, readable by "
                    "modularity.science.tasks.load_study_data and by the study's own scripts.")
    export.add_argument("--profile", choices=PROFILES, default="small", help="difficulty profile (default: small)")
    export.add_argument("--seed", type=int, default=0, help="random seed; same seed, same items (default: 0)")
    export.add_argument("--n-items", type=int, default=100, help="items per task (default: 100)")
    export.add_argument("--out", required=True, help="output folder (created if missing)")
    export.add_argument("--tasks", default=None, help="comma-separated subset, e.g. wug,npi (default: all 46)")
    export.set_defaults(func=_cmd_export)

    parser.set_defaults(func=lambda args: parser.print_help() or 0)
