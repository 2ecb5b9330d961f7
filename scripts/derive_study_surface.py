"""Derive the surface table of the study's 46 tasks from a checkout of its files.

    python scripts/derive_study_surface.py PATH/TO/LLM_Modularity

reads the study's ``config/<domain>/config.json`` and ``data/<domain>/*.json`` (its items are not
redistributed), describes every task with :func:`modularity.science.surface.describe_tasks` (on the
usable items: duplicates and equal-answer items left out, as a run of the study's items does), and
writes ``data/external/llm_modularity/surface/task_surface.csv`` beside a copy of the four config
files (MIT, the study's own) that the table's frames come from. The book reads only the table.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from modularity.science import surface
from modularity.science.tasks import load_study_data
from modularity.science.tasks.schema import DOMAINS

OUT = Path(__file__).resolve().parents[1] / "data" / "external" / "llm_modularity"


def main(root: str) -> None:
    root = Path(root)
    table = surface.describe_tasks(load_study_data(root))
    (OUT / "surface").mkdir(parents=True, exist_ok=True)
    table.to_csv(OUT / "surface" / "task_surface.csv")
    for domain in DOMAINS:
        (OUT / "config" / domain).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / "config" / domain / "config.json", OUT / "config" / domain / "config.json")
    print(f"{len(table)} tasks described → {OUT / 'surface' / 'task_surface.csv'}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/derive_study_surface.py PATH/TO/LLM_Modularity")
    main(sys.argv[1])
