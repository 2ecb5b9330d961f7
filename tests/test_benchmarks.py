"""benchmarks/run_benchmarks.py --quick runs end to end and writes every measured field (not a timed test:
only that the numbers exist and are positive, and that the fast paths agree with the references)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

POSITIVE = {
    "": ["weight_bytes", "rss_after_load_bytes"],
    "evaluation": ["n_items", "seconds", "items_per_s", "speedup_vs_reference", "peak_rss_bytes"],
    "evaluation.reference": ["n_items", "seconds", "items_per_s"],
    "attribution": ["n_items", "seconds", "items_per_s", "ratio_to_floor", "speedup_vs_reference", "peak_rss_bytes"],
    "attribution.floor": ["seconds", "items_per_s"],
    "attribution.reference": ["n_items", "seconds", "items_per_s"],
    "ablation": ["cells", "set_size", "seconds", "cells_per_s", "ratio_to_forward_per_cell",
                 "speedup_vs_reference", "peak_rss_bytes"],
    "ablation.floor": ["seconds"],
    "ablation.reference": ["seconds", "cells_per_s"],
    "memory": ["weight_bytes", "peak_rss_bytes"],
    "storage": ["attribution_safetensors_bytes", "eval_csv_bytes", "eval_csv_items"],
}


def _at(record: dict, dotted: str) -> dict:
    for part in filter(None, dotted.split(".")):
        record = record[part]
    return record


def test_quick_benchmark_writes_every_field(tmp_path):
    out = tmp_path / "bench.json"
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "run_benchmarks.py"), "--quick", "--threads", "1",
         "--label", "pytest", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["label"] == "pytest" and report["options"]["quick"] is True
    machine = report["machine"]
    assert machine["cpu_count"] > 0 and machine["torch_threads"] == 1
    assert len(machine["load_avg_start"]) == 3 and len(machine["load_avg_end"]) == 3
    assert list(report["models"]) == ["tiny-llama"]  # --quick: the tiny model only
    model = report["models"]["tiny-llama"]
    for section, fields in POSITIVE.items():
        record = _at(model, section)
        for field in fields:
            value = record[field]
            assert isinstance(value, (int, float)) and value > 0, f"{section}.{field} = {value!r}"
    for section in ("evaluation", "attribution", "ablation"):
        assert len(model[section]["times"]) >= 3
    # The fast paths compute what the references compute.
    assert model["evaluation"]["max_abs_lp_diff_vs_reference"] < 1e-3
    assert model["attribution"]["max_rel_score_diff_vs_reference"] < 1e-3
    assert model["ablation"]["max_abs_lp_diff_vs_reference"] < 1e-3
    assert "tiny-llama" in proc.stdout and "attribution" in proc.stdout  # the printed table


def _formal_designs():
    import importlib.util
    spec = importlib.util.spec_from_file_location("formal_designs", REPO / "benchmarks" / "formal_designs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_query(query: str) -> str:
    """What the last example of a code design prints or (REPL) shows, by running it."""
    import contextlib
    import io
    if query.rstrip().endswith("Output:"):  # a snippet, then "Output:"
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            exec(query.rsplit("\n", 1)[0], {})  # noqa: S102 - our own generated snippets
        return " " + buffer.getvalue().strip()
    lines = [line[4:] for line in query.splitlines() if line.startswith((">>> ", "... "))]
    namespace: dict = {}
    exec("\n".join(lines[:-1]), namespace)  # noqa: S102
    return repr(eval(lines[-1], namespace))  # noqa: S307


def test_formal_designs_answers_by_execution_and_copy_kinds():
    """The design record's code designs give the answers Python computes, and the designs named
    copy-solvable measure as copy while the choice designs for logic and code do not."""
    from modularity.science.tasks.reports import copy_solvable_share, query_of
    designs = _formal_designs()
    checked = 0
    for design, _meant_for, _shots, build in designs.DESIGNS:
        task = designs.design_task(design, build, 12, 0)
        share = copy_solvable_share(task)
        if "copy-solvable" in design:
            assert share == 1.0, design
        elif design.startswith(("two-rule", "REPL: index", "REPL: look up", "REPL: if-else")):
            assert share == 0.0, design
        if design.startswith(("REPL", "code")):
            for item in task.items:
                for side, other in (("clean", "corrupted"), ("corrupted", "clean")):
                    problem = item[f"{side}_problem"]
                    if "Output:" in problem:  # snippets separated by blank lines
                        last = problem.rsplit("\n\n", 1)[-1]
                    else:  # REPL sessions, each opening with the same assignment as the first one
                        marker = problem.split("\n", 1)[0].split(" = ")[0] + " = "
                        last = marker + problem.rsplit(marker, 1)[-1]
                    assert query_of(problem, item[f"{other}_problem"]) in last
                    assert _run_query(last) == item[f"{side}_correct"], (design, last)
                    checked += 1
    assert checked >= 100
