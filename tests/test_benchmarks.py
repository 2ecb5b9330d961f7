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
