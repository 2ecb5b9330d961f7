"""A run spread over processes (``modularity.running.shards``): two shards give the one-process tables."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from modularity.running.shards import device_for, parse_shard, shard_from_environment

REPO = Path(__file__).resolve().parents[1]
from modularity.stages.registry import NOTEBOOKS

STAGES = list(NOTEBOOKS)  # every stage: the sharded ones (1, 2, 5, 7) and those shard 0 runs alone
#: Timings (keys naming seconds) differ from run to run; everything else in a stage's tables must not.


def test_shard_argument_and_launcher_environment():
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "1", "a/b"):
        with pytest.raises(ValueError, match="--shard"):
            parse_shard(bad)
    assert shard_from_environment({}) is None and shard_from_environment({"WORLD_SIZE": "1"}) is None
    assert shard_from_environment({"WORLD_SIZE": "3", "RANK": "2", "LOCAL_RANK": "0"}) == (2, 3)
    assert device_for("cuda", {"LOCAL_RANK": "1"}) == "cuda:1" == device_for("auto", {"LOCAL_RANK": "1"})
    assert device_for("cpu", {"LOCAL_RANK": "1"}) == "cpu" and device_for("cuda", {}) == "cuda"


def _run(root: Path, params: Path, *extra: str, launcher: tuple[str, ...] = (sys.executable,),
         stages=STAGES) -> subprocess.Popen:
    env = dict(os.environ, MODULARITY_ROOT=str(root))
    return subprocess.Popen([*launcher, "-m", "modularity", "run", str(params), "--stages", *stages, *extra],
                            env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _tables(results: Path) -> dict:
    tables = {}
    for path in sorted(results.rglob("*")):
        if path.suffix == ".csv":  # the text itself: every number to the last digit
            tables[path.name] = path.read_text()
        elif path.suffix == ".json" and path.name != "manifest.json":
            tables[path.name] = {k: v for k, v in json.loads(path.read_text()).items() if "seconds" not in k}
    return tables


def test_two_shards_give_the_one_process_tables(tiny_model_dirs, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(dict(
        model=str(tiny_model_dirs["llama"]), run_name="tiny", profile="small", n_items=12, seed=0, dtype="float32",
        device="cpu", batch_size=8, threshold=0.01, threads=1, verify_tasks=1, verify_neurons=3,
        attribution_items=6, ablation_items=4, n_random_controls=1, n_permutations=50,
        tasks=["code_list", "number_sorting", "desires_goals", "agent", "subject_verb_agreement",
               "anaphor_gender_agreement"])))
    shards = [_run(tmp_path / "sharded", params, "--shard", f"{i}/2") for i in range(2)]
    single = _run(tmp_path / "single", params)
    outputs = []
    for process in (*shards, single):
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output
        outputs.append(output)
    results = Path("book/results/tiny/small")
    sharded, alone = _tables(tmp_path / "sharded" / results), _tables(tmp_path / "single" / results)
    assert set(sharded) == set(alone) >= {"eval_summary.csv", "eval_items.csv", "attribution_summary.csv",
                                          "attribution_check.csv", "overlap_0.1.csv", "stats_summary.json",
                                          "ablation_cells.csv", "ablation_summary.json", "beside_study.csv",
                                          "localizer_sets.csv", "localizer_ablation_cells.csv"}
    for name, table in alone.items():
        assert sharded[name] == table, name
    passing = pd.read_csv(tmp_path / "single" / results / "eval_summary.csv").passes.sum()
    assert passing >= 2, "the comparison covers attribution and ablation of several tasks"
    for i, output in enumerate(outputs[:2]):  # each computed its share of the three stages
        assert output.count("computing this shard's share") == 4, output  # stages 1, 2, 5 and 7
    assert "waiting for shard 0" in outputs[1] and "making the stage's tables once" in outputs[0]

    # The same split under a launcher (what `accelerate launch --multi_gpu --num_processes N` runs on a
    # node): each process reads its rank from the environment.
    launcher = (str(Path(sys.executable).with_name("accelerate")), "launch", "--multi_gpu", "--num_processes", "2",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no")
    launched = _run(tmp_path / "launched", params, launcher=launcher, stages=["01_eval"])
    output, _ = launched.communicate(timeout=600)
    assert launched.returncode == 0, output
    assert "shard 0/2]" in output and "shard 1/2]" in output
    tables = _tables(tmp_path / "launched" / results)
    for name in ("eval_summary.csv", "eval_items.csv"):
        assert tables[name] == alone[name], name
