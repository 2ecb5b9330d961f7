"""Regenerate the synthetic matrix fixtures of tests/data (deterministic, seed 0).

    python tests/data/make_fixtures.py

* planted_overlap.csv   16 tasks (4 per domain), symmetric, diagonal 1; same-domain
                        cells ≈ 0.30, cross-domain cells ≈ 0.03 (planted modules).
* planted_ablation.csv  the same 16 tasks plus the legacy phys/material and
                        phys/spatial, directed (rows = source, columns = target):
                        diagonal ≈ 0.8, same-domain ≈ 0.20, cross-domain ≈ 0.02.
"""
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
DOMAIN_TASKS = {
    "MD": ["add", "code_A", "logic", "sort"],
    "ToM": ["agent", "emotion", "norm", "relations"],
    "phys": ["buoyancy", "newton", "prost", "speed"],
    "Lan": ["anaphor", "npi", "svagr", "wug"],
}


def labels():
    return [f"{domain}/{task}" for domain, tasks in DOMAIN_TASKS.items() for task in tasks]


def planted_overlap(rng):
    names = labels()
    domains = np.array([name.split("/")[0] for name in names])
    same = domains[:, None] == domains[None, :]
    noise = rng.uniform(-0.02, 0.02, (len(names), len(names)))
    values = np.where(same, 0.30, 0.03) + (noise + noise.T) / 2
    np.fill_diagonal(values, 1.0)
    return pd.DataFrame(values.round(6), index=names, columns=names)


def planted_ablation(rng):
    names = labels() + ["phys/material", "phys/spatial"]
    domains = np.array([name.split("/")[0] for name in names])
    same = domains[:, None] == domains[None, :]
    values = np.where(same, 0.20, 0.02) + rng.uniform(-0.015, 0.015, (len(names), len(names)))
    np.fill_diagonal(values, 0.8)
    return pd.DataFrame(values.round(6), index=names, columns=names)


if __name__ == "__main__":
    rng = np.random.default_rng(0)
    planted_overlap(rng).to_csv(HERE / "planted_overlap.csv", index_label="")
    planted_ablation(rng).to_csv(HERE / "planted_ablation.csv", index_label="")
