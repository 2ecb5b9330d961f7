"""Command line: ``modularity <group> <command> ...`` (also ``python -m modularity``).

Each command group lives in its own module with an ``add_parser(subparsers)``
function that registers it and sets ``func`` on its parsers.
"""
from __future__ import annotations

import argparse
import importlib
import sys

#: Command groups, in the order ``--help`` lists them.
GROUPS = ("run", "plan", "precision", "tasks", "stats", "models", "book")

DESCRIPTION = """\
Brain-like modularity analysis for causal language models.

Typical workflow:
  modularity models list                          # embedded models and supported families
  modularity tasks export --profile small --seed 0 --out data/
  modularity run params/smollm2-135m-instruct.yaml  # execute all stage notebooks (papermill)
  modularity stats overlap results.csv             # statistics on any overlap matrix CSV
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modularity",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    subparsers = parser.add_subparsers(dest="group", metavar="<group>")
    for group in GROUPS:
        module = importlib.import_module(f"modularity.showing.cli.{group}")
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.group is None else 2
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError, KeyError) as error:
        # Bad input is the user's to fix: one clear line, no traceback.
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"modularity {args.group}: error: {message}", file=sys.stderr)
        return 2
