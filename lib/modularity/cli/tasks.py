"""`modularity tasks`: placeholder until its stage lands."""


def add_parser(subparsers):
    subparsers.add_parser("tasks", help="(not implemented yet)")
