"""`modularity run`: placeholder until its stage lands."""


def add_parser(subparsers):
    subparsers.add_parser("run", help="(not implemented yet)")
