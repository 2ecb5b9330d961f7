"""`modularity models`: placeholder until its stage lands."""


def add_parser(subparsers):
    subparsers.add_parser("models", help="(not implemented yet)")
