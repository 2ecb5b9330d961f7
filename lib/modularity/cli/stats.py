"""`modularity stats`: placeholder until its stage lands."""


def add_parser(subparsers):
    subparsers.add_parser("stats", help="(not implemented yet)")
