"""``modularity book``: execute the chapters that are notebooks for the whole book."""
from __future__ import annotations

import argparse
import sys

HELP = """\
Execute the book's whole-book notebooks into book/ (run pages come from `modularity run`):

  tasks                (00_task_suite)  -> book/tasks.ipynb                the task suite chapter
  across_models        (08_across_models) -> book/across_models.ipynb        accuracy of every run; Kendall tau
                                                                           between the small-profile runs
  across_models_paper  (08_across_models) -> book/across_models_paper.ipynb  the same for the paper-profile runs
  provenance           (90_provenance)  -> book/provenance.ipynb           manifests of every run

It first rewrites _toc.yml so that the Results part lists the finished stage notebooks of
every run under book/results/ (as recorded in each run's manifest.json).

Then build the book: jupyter-book build . -W -n   (or `make book`, which does both).
"""


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("book", help="execute the book's chapter notebooks",
                                   description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    pages = sub.add_parser("pages", help="execute the chapter notebooks into book/")
    pages.add_argument("names", nargs="*", help="only these (default: all)")
    pages.set_defaults(func=main)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def main(args) -> int:
    from ...running.book import execute_book_pages, write_toc
    from ...running.runner import NotebookFailed
    print(write_toc())
    try:
        outputs = execute_book_pages(tuple(args.names) or None)
    except NotebookFailed as failure:
        print(f"modularity book: {failure.report()}", file=sys.stderr)
        return 1
    for path in outputs:
        print(path)
    return 0
