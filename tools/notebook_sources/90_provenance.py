CELLS = [
    ("md", r"""
# Provenance of every run

Each run of `modularity run` writes a `manifest.json` next to its executed notebooks: the
parameters, the software environment (Python, platform, package versions, git commit of this
project) and, per stage, when it finished and how long it took. This page collects them.
"""),
    ("parameters", r"""
results_root = ""  # folder holding <run>/<profile>/manifest.json; empty means the book's results
"""),
    ("code", r"""
import json
from pathlib import Path

import pandas as pd

from modularity import runs

root = Path(results_root) if results_root else runs.results_root()
manifests = {str(p.parent.relative_to(root)): json.loads(p.read_text()) for p in sorted(root.glob("*/*/manifest.json"))}
print(f"{len(manifests)} run(s) found")
"""),
    ("md", "## Stages and wall times"),
    ("code", r"""
rows = [{"run": run, "stage": stage, "finished (UTC)": info["finished"], "wall time (s)": info["wall_time_s"]}
        for run, m in manifests.items() for stage, info in sorted(m["stages"].items())]
stages = pd.DataFrame(rows)
stages if len(stages) else "no run has been executed yet"
"""),
    ("md", "## Environment of the last stage of each run"),
    ("code", r"""
env = pd.DataFrame({run: {"git SHA": m["environment"]["git_sha"], "python": m["environment"]["python"],
                          "CPU count": m["environment"]["cpu_count"], "platform": m["environment"]["platform"],
                          **m["environment"]["packages"]} for run, m in manifests.items()})
env
"""),
    ("md", "## Parameters"),
    ("code", r"""
params = pd.DataFrame({run: {k: str(v) for k, v in m["params"].items()} for run, m in manifests.items()})
params
"""),
]
