"""``modularity book``: execute the chapters that are notebooks for the whole book."""
from __future__ import annotations

import argparse
import sys

HELP = """\
Execute the book's whole-book notebooks into book/ (run pages come from `modularity run`):

{pages}

It rewrites _toc.yml so that the Results part lists, per run under book/results/, its landing
page and its finished stage notebooks (as recorded in the run's manifest.json).

Then build the book: jupyter-book build . -W -n   (or `make book`, which does both).
"""


def _pages() -> str:
    from ...running.book import BOOK_PAGES, RUN_PAGE, RUN_PAGES

    runs = f"  {RUN_PAGES:<20} notebooks/{RUN_PAGE[0]}.py -> book/results/<run>/<profile>/{RUN_PAGE[1]} (every run)"
    return "\n".join([runs] + [f"  {name:<20} notebooks/{template}.py -> {page}"
                                for name, (template, page, *_) in BOOK_PAGES.items()])


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("book", help="execute the book's chapter notebooks",
                                   description=HELP.format(pages=_pages()), formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    pages = sub.add_parser("pages", help="execute the chapter notebooks into book/")
    pages.add_argument("names", nargs="*", help="only these (default: all)")
    pages.set_defaults(func=main)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def main(args) -> int:
    from ...running.book import execute_book_pages, write_toc
    from ...running.runner import NotebookFailed
    try:
        outputs = execute_book_pages(tuple(args.names) or None)
    except NotebookFailed as failure:
        print(f"modularity book: {failure.report()}", file=sys.stderr)
        return 1
    for path in outputs:
        print(path)
    print(write_toc())  # after the pages: it lists the landing pages made
    return 0
