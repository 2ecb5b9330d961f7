"""``modularity book``: execute the chapters that are notebooks for the whole book."""
from __future__ import annotations

import argparse
import sys

HELP = """\
Execute the book's whole-book notebooks into book/ (run pages come from `modularity run`):

{pages}

It first rewrites _toc.yml so that the Results part lists the finished stage notebooks of
every run under book/results/ (as recorded in each run's manifest.json).

Then build the book: jupyter-book build . -W -n   (or `make book`, which does both).
"""


def _pages() -> str:
    from ...running.book import BOOK_PAGES

    return "\n".join(f"  {name:<20} notebooks/{template}.py -> {page}"
                     for name, (template, page, *_) in BOOK_PAGES.items())


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
    print(write_toc())
    try:
        outputs = execute_book_pages(tuple(args.names) or None)
    except NotebookFailed as failure:
        print(f"modularity book: {failure.report()}", file=sys.stderr)
        return 1
    for path in outputs:
        print(path)
    return 0
