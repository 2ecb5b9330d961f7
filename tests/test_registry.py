"""The stage registry: each stage declared once, and what it declares is what the code does."""
from __future__ import annotations

import fnmatch
import json

import pytest

from modularity.running import runner
from modularity import stages
from modularity.stages import registry
from modularity.base.files import REPO_ROOT

#: A committed run with every stage, and where the study-items run keeps its extra stage-1 tables.
FULL_RUN = REPO_ROOT / "book" / "results" / "smollm2-135m-instruct" / "small"
DATA_DIR_ONLY = {"source_items.csv", "task_files_audit.csv"}


def test_one_name_each_and_the_notebooks_in_order():
    names = [s.name for s in registry.STAGES]
    notebooks = [s.notebook for s in registry.STAGES]
    assert len(set(names)) == len(names) and len(set(notebooks)) == len(notebooks)
    assert notebooks == sorted(notebooks) and runner.STAGES == registry.NOTEBOOKS == tuple(notebooks)
    for s in registry.STAGES:
        assert registry.stage(s.name) is registry.stage(s.notebook) is s
        assert (REPO_ROOT / "notebooks" / f"{s.notebook}.py").is_file(), s.notebook
        assert callable(s.module.run) and getattr(stages, s.name) is s.module
    with pytest.raises(KeyError, match="unknown stage 'statistic'.*04_ari_permutation \\(statistics\\)"):
        registry.stage("statistic")


def test_a_stage_reads_only_earlier_stages():
    for position, s in enumerate(registry.STAGES):
        assert set(s.reads) <= set(registry.NOTEBOOKS[:position]), s.name
    assert [s.notebook for s in registry.STAGES if not s.reads] == ["01_eval"]


def test_the_cost_model_costs_the_stages_that_run_the_model_over_items():
    from modularity.running import cost, plan

    assert plan.STAGES == registry.COSTED == ("evaluation", "attribution", "ablation")
    assert set(cost.FORWARDS_PER_UNIT) == set(registry.COSTED)


def test_each_stage_wrote_what_it_declares():
    """In the committed default run, every table is declared by exactly one stage, and every
    stage's declared tables are there (``<pct>`` at each threshold, ``<main_pct>`` at the main one;
    data_dir runs add two)."""
    params = json.loads((FULL_RUN / "manifest.json").read_text())["params"]
    pcts = [f"{pct:g}" for pct in params["top_pcts"]]
    tables = {p.name for p in FULL_RUN.iterdir() if p.suffix in (".csv", ".json") and p.name != "manifest.json"}
    owner = {}
    for s in registry.STAGES:
        for pattern in s.writes:
            matched = {t for t in tables if fnmatch.fnmatch(t, pattern.replace("<pct>", "*").replace("<main_pct>", "*"))}
            expected = {pattern.replace("<pct>", pct).replace("<main_pct>", f"{params['main_pct']:g}")
                        for pct in (pcts if "<pct>" in pattern else [""])}
            assert expected <= matched or pattern in DATA_DIR_ONLY, (s.name, pattern)
            for table in matched:
                owner.setdefault(table, set()).add(s.name)
    assert all(len(o) == 1 for o in owner.values()), owner
    assert tables == set(owner), tables - set(owner)
