"""Tests for `modularity plan` and modularity.running.plan: parameter counts from configs, memory fits, the CLI."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import FAMILY_NAMES, tiny_config

from modularity.running import plan as planning
from modularity.base.files import REPO_ROOT
from modularity.stages import registry
from modularity.showing.cli import main

STUDY = json.loads((Path(__file__).resolve().parents[1] / "data" / "study_model_configs.json").read_text())["models"]
LLAMA_70B = "meta-llama/Llama-3.1-70B-Instruct"
MISTRAL_LARGE = "mistralai/Mistral-Large-Instruct-2407"

#: book methods §3: neurons N = L · d_ff of each study model.
METHOD_NEURONS = {"mistralai/Mistral-Small-24B-Instruct-2501": 1_310_720, "Qwen/Qwen2.5-32B-Instruct": 1_769_472,
                  "allenai/OLMo-2-0325-32B-Instruct": 1_769_472, LLAMA_70B: 2_293_760,
                  "Qwen/Qwen2.5-72B-Instruct": 2_365_440, MISTRAL_LARGE: 2_523_136}
#: the study's compute notes: fp16 weights alone, GB.
METHOD_FP16_GB = {"mistralai/Mistral-Small-24B-Instruct-2501": 48, "Qwen/Qwen2.5-32B-Instruct": 65,
                  "allenai/OLMo-2-0325-32B-Instruct": 65, LLAMA_70B: 141, "Qwen/Qwen2.5-72B-Instruct": 145,
                  MISTRAL_LARGE: 246}

PARAMS = dict(profile="paper", n_items=200, seed=0, dtype="float16", device="auto", batch_size=16, threshold=0.6,
              attribution_items=0, ablation_items=32)


def study_geometry(name):
    return planning.model_geometry(STUDY[name]["config"])


def workload(n_passing=None, **overrides):
    from modularity.records.params import validate_params

    params = validate_params({**PARAMS, "model": "x", **overrides}, require=True)
    return planning.workload_from_params(params, n_passing=n_passing)


def write_params(tmp_path, model, **overrides):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**PARAMS, "model": str(model), **overrides}))
    return path


def run_cli(capsys, argv):
    code = main(["plan", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# --------------------------------------------------------------------------- parameter counts


@pytest.mark.parametrize("name", list(STUDY))
def test_study_model_parameter_counts_near_nominal(name):
    geometry = study_geometry(name)
    nominal = STUDY[name]["nominal_params_b"] * 1e9
    assert abs(geometry.n_params / nominal - 1) < 0.05, geometry.n_params
    assert geometry.n_neurons == METHOD_NEURONS[name]
    assert 0 < geometry.n_flop_params < geometry.n_params


@pytest.mark.parametrize("name", list(STUDY))
def test_study_model_fp16_weights_match_method(name):
    weights_gb = study_geometry(name).n_params * 2 / 1e9
    assert weights_gb == pytest.approx(METHOD_FP16_GB[name], rel=0.04)


def tiny_variants():
    for family in FAMILY_NAMES:
        yield family, tiny_config(family, vocab_size=101)
    import transformers as tf

    # Biases and a head_dim that is not hidden_size / heads (as in Mistral-Small-24B).
    yield "llama+bias", tf.LlamaConfig(vocab_size=101, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, attention_bias=True,
                                       mlp_bias=True)
    yield "mistral+head_dim", tf.MistralConfig(vocab_size=101, hidden_size=32, intermediate_size=64,
                                               num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                               head_dim=16)
    yield "llama untied", tf.LlamaConfig(vocab_size=101, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                         num_attention_heads=4, num_key_value_heads=1, tie_word_embeddings=False)


@pytest.mark.parametrize("label,config", list(tiny_variants()), ids=lambda v: v if isinstance(v, str) else "")
def test_parameter_count_equals_the_built_model(label, config):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(config)
    built = sum(p.numel() for p in model.parameters())  # a tied head is one tensor, counted once
    assert planning.model_geometry(config).n_params == built
    assert planning.model_geometry(config.to_dict()).n_params == built  # a config.json reads the same


def test_unsupported_family_is_refused():
    from modularity.science.models import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match="no MLP down projection and no attention"):
        planning.model_geometry({"model_type": "mamba", "hidden_size": 8, "num_hidden_layers": 2})
    with pytest.raises(UnsupportedModelError, match="does not know model_type='no_such_type'"):
        planning.model_geometry({"model_type": "no_such_type"})


def test_embedded_model_config_matches_the_calibration_constant():
    pytest.importorskip("gguf")
    try:
        config = planning.read_model_config("smollm2-135m-instruct")
    except FileNotFoundError:
        pytest.skip("embedded SmolLM2 not installed")
    assert planning.model_geometry(config) == planning.model_geometry(planning.SMOLLM2_CONFIG)


# --------------------------------------------------------------------------- memory and fits


def gpu_plan(name, gpus, model, **params):
    """``gpus`` × ``model`` with the memory its name says (H100: 80 GB, H200: 141 GB)."""
    geometry = study_geometry(name)
    w = workload(**params)
    return planning.plan_run(geometry, w, planning.gpu_device(gpus, None, model, w.dtype), model=name)


def test_70b_fp16_needs_more_than_one_80gb_gpu_and_fits_on_two_h200():
    one_h100 = gpu_plan(LLAMA_70B, 1, "H100")
    assert one_h100.weights_gb > 80 and not one_h100.fits
    assert one_h100.largest_batch == {"evaluation": 0, "attribution": 0, "ablation": 0}
    two_h200 = gpu_plan(LLAMA_70B, 2, "H200", batch_size=8)
    assert two_h200.fits
    assert two_h200.largest_batch["attribution"] >= 8
    assert gpu_plan(LLAMA_70B, 4, "H100", batch_size=8).fits
    assert one_h100.gpus_needed == {"80 GB": 2, "141 GB": 2}


def test_123b_fp16_matches_method_section_14():
    # the study's compute notes: "123B needs ≥ 4×80GB or 2×H200 (tight)".
    plan = gpu_plan(MISTRAL_LARGE, 2, "H200", batch_size=2)
    assert plan.gpus_needed == {"80 GB": 4, "141 GB": 2}
    assert plan.fits
    assert plan.largest_batch["attribution"] < 8  # tight: little room for activations
    assert not gpu_plan(MISTRAL_LARGE, 3, "H100", batch_size=2).fits


def test_one_gpu_placement_is_told_to_use_device_auto():
    plan = gpu_plan(LLAMA_70B, 2, "H200", device="cuda", batch_size=8)
    assert not plan.fits and plan.usable_gb < plan.usable_all_gb
    assert any("device: auto" in line for line in plan.advice)


def test_bfloat16_halves_weights_and_float32_is_advised_against():
    fp32 = gpu_plan(LLAMA_70B, 4, "H100", dtype="float32")
    bf16 = gpu_plan(LLAMA_70B, 4, "H100", dtype="bfloat16")
    assert fp32.weights_gb == pytest.approx(2 * bf16.weights_gb)
    assert any("bfloat16" in line for line in fp32.advice)
    assert fp32.total_seconds > bf16.total_seconds  # fp32 runs without tensor cores


def test_time_grows_with_work_and_ablation_with_passing_squared():
    base = gpu_plan(LLAMA_70B, 2, "H200").stages.set_index("stage")
    half = planning.plan_run(study_geometry(LLAMA_70B), workload(n_items=100),
                             planning.gpu_device(2, None, "H200", "float16")).stages.set_index("stage")
    assert half.seconds["evaluation"] == pytest.approx(base.seconds["evaluation"] / 2)
    geometry, w = study_geometry(LLAMA_70B), workload()
    device = planning.gpu_device(2, None, "H200", "float16")
    full = planning.plan_run(geometry, w, device).stages.set_index("stage").seconds["ablation"]
    halved = planning.plan_run(geometry, workload(n_passing=w.n_tasks // 2), device).stages.set_index("stage")
    halved = halved.seconds["ablation"]
    assert halved == pytest.approx(full * (w.n_tasks // 2) ** 2 / w.n_tasks ** 2)


def test_the_cost_model_counts_the_work_a_committed_run_did():
    """The units the cost model charges each stage are the units the stages ran, counted from the
    default run's own tables: every generated item scored (stage 1 keeps a row per item), the
    first ``attribution_items`` both-correct items of each passing task attributed, and every
    (source, target) pair ablated on ``ablation_items`` items. A cost model whose work grew otherwise
    (ablation linear in the passing tasks, say) fails here; calibration cannot hide it."""
    import pandas as pd

    run = REPO_ROOT / "book" / "results" / "smollm2-135m-instruct" / "small"
    params = {**json.loads((run / "manifest.json").read_text())["params"], "device": "cpu"}
    summary, items = pd.read_csv(run / "eval_summary.csv"), pd.read_csv(run / "eval_items.csv")
    cells = pd.read_csv(run / "ablation_cells.csv")
    passing = summary[summary.passes]
    w = planning.workload_from_params(params, n_passing=len(passing))
    units = planning.stage_costs(planning.model_geometry(planning.SMOLLM2_CONFIG), w).set_index("stage")["units"]
    assert units["evaluation"] == len(items) == len(summary) * params["n_items"]
    attributed = passing.n_both_correct.clip(upper=params["attribution_items"]).sum()
    assert units["attribution"] == len(passing) * params["attribution_items"] >= attributed >= 0.75 * units["attribution"]
    selected = cells[cells.kind == "selected"]
    assert len(selected) == len(passing) ** 2 and units["ablation"] == selected.n_items.sum()


def test_cpu_calibration_inverts_the_cost_model_on_the_measured_job():
    """The calibration's rates, put back into the cost model, give the measured job's stage times
    (a round trip: it checks the calibration's arithmetic, not the cost model, which the test
    above checks against the work the stages did)."""
    job = json.loads(planning.MAIN_JOB.read_text())
    params = {**job["params"], "device": "cpu"}
    w = planning.workload_from_params(params, n_passing=planning.MAIN_JOB_PASSING)
    plan = planning.plan_run(planning.model_geometry(planning.SMOLLM2_CONFIG), w, planning.cpu_device(24))
    seconds = plan.stages.set_index("stage").seconds
    for stage in planning.STAGES:
        assert seconds[stage] == pytest.approx(job["stage_wall_s"][registry.stage(stage).notebook], rel=1e-6)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_tiny_models_get_finite_positive_plans(tmp_path, family):
    directory = tmp_path / family
    tiny_config(family, vocab_size=101).save_pretrained(directory)
    geometry = planning.model_geometry(planning.read_model_config(str(directory)))
    for device in (planning.cpu_device(24), planning.gpu_device(1, 80, "H100", "float32")):
        plan = planning.plan_run(geometry, workload(dtype="float32", device="cpu"), device, model=family)
        numbers = plan.stages[["units", "forwards", "tflop", "seconds", "memory_gb"]].to_numpy().ravel()
        assert all(math.isfinite(x) and x > 0 for x in numbers)
        assert plan.fits and 0 < plan.weights_gb < 1
        assert all(b > 0 for b in plan.largest_batch.values())
        assert "Assumptions" in planning.format_plan(plan)


def test_format_duration():
    assert [planning.format_duration(s) for s in (42, 600, 3 * 3600, 5 * 86400)] == ["42 s", "10 min", "3.0 h",
                                                                                         "5.0 d"]


# --------------------------------------------------------------------------- command line


@pytest.fixture
def tiny_llama_dir(tmp_path):
    directory = tmp_path / "tiny-llama"
    tiny_config("llama", vocab_size=101).save_pretrained(directory)
    return directory


def test_cli_prints_stage_table_and_assumptions(tmp_path, capsys, tiny_llama_dir):
    params = write_params(tmp_path, tiny_llama_dir, device="cpu", dtype="float32")
    code, out, err = run_cli(capsys, [str(params), "--cpu-memory-gb", "24"])
    assert code == 0, err
    for expected in ("stage", "evaluation", "attribution", "ablation", "memory GB", "Assumptions",
                     "main_job_shared-2core-epyc.json", "2026-11-21", "CPU", "24 GB RAM"):
        assert expected in out, expected


def test_cli_plans_for_gpus_given_by_flags(tmp_path, capsys):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(STUDY[LLAMA_70B]["config"]))
    params = write_params(tmp_path, LLAMA_70B)
    code, out, err = run_cli(capsys, [str(params), "--config", str(config), "--gpus", "1", "--gpu-memory-gb", "80"])
    assert code == 0, err
    assert "1 × H100" in out and "NO" in out and "2 × 80 GB" in out
    assert "assumed 30% of the H100" in out
    code, out, err = run_cli(capsys, [str(params), "--config", str(config), "--gpus", "2", "--gpu-memory-gb", "141",
                                      "--gpu-model", "H200"])
    assert code == 0, err
    assert "2 × H200" in out and "fit on 2 with device: auto" in out


def test_cli_says_when_no_gpu_is_visible(tmp_path, capsys, tiny_llama_dir, monkeypatch):
    monkeypatch.setattr(planning, "visible_gpus", lambda: [])
    params = write_params(tmp_path, tiny_llama_dir, device="cuda")
    code, out, err = run_cli(capsys, [str(params)])
    assert code == 0, err
    assert "no GPU is visible here" in out and "--gpus" in out


def one_line_error(capsys, argv):
    code, out, err = run_cli(capsys, argv)
    assert code == 2 and out == ""
    assert err.startswith("modularity plan: error: ") and err.count("\n") == 1
    return err


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert "params file not found" in one_line_error(capsys, [str(tmp_path / "missing.yaml")])
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**PARAMS, "model": "x", "modle": "typo"}))
    assert "unknown parameter" in one_line_error(capsys, [str(bad)])
    assert "model path not found" in one_line_error(capsys, [str(write_params(tmp_path, "./no/such/model"))])
    mamba = tmp_path / "mamba"
    mamba.mkdir()  # no attention: refused by plan as by run
    (mamba / "config.json").write_text(json.dumps({"model_type": "mamba", "hidden_size": 8, "num_hidden_layers": 2}))
    assert "cannot find the neuron and head sites" in one_line_error(capsys, [str(write_params(tmp_path, mamba))])
    assert "config file not found" in one_line_error(capsys, [str(write_params(tmp_path, "a/b")), "--config",
                                                              str(tmp_path / "none.json")])


def test_cli_hub_model_offline_says_how_to_fix(tmp_path):
    params = write_params(tmp_path, "no-such-org/no-such-model-xyz")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([sys.executable, "-m", "modularity", "plan", str(params)], capture_output=True,
                            text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "cannot read the config" in lines[0] and "--config" in lines[0] and "HF_HUB_OFFLINE" in lines[0]


def test_plan_run_accepts_validated_params(tiny_llama_dir):
    from modularity.records.params import validate_params

    params = validate_params({**PARAMS, "model": str(tiny_llama_dir), "device": "cpu"}, require=True)
    geometry = planning.model_geometry(planning.read_model_config(params["model"]))
    plan = planning.plan_run(geometry, params, planning.cpu_device(24))
    assert plan.model == str(tiny_llama_dir) and plan.workload.n_items == 200 and plan.fits


def test_cli_uses_the_visible_gpus(tmp_path, capsys, tiny_llama_dir, monkeypatch):
    monkeypatch.setattr(planning, "visible_gpus", lambda: [("NVIDIA H100 80GB HBM3", 85.0)] * 2)
    code, out, err = run_cli(capsys, [str(write_params(tmp_path, tiny_llama_dir, device="auto"))])
    assert code == 0, err
    assert "2 × H100 with 85.0 GB" in out and "detected here" in out
    monkeypatch.setattr(planning, "visible_gpus", lambda: [("Some Future GPU", 200.0)])
    code, out, err = run_cli(capsys, [str(write_params(tmp_path, tiny_llama_dir, device="cuda"))])
    assert code == 0, err
    assert "'Some Future GPU' is not in the GPU table" in out and "1 × H100 with 200.0 GB" in out


def test_a_remote_run_is_planned_as_work_for_the_service(tmp_path, capsys):
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    (config_dir / "config.json").write_text(json.dumps(STUDY["meta-llama/Llama-3.1-70B-Instruct"]["config"]))
    params = write_params(tmp_path, "meta-llama/Llama-3.1-70B-Instruct", backend="nnsight", remote=True)
    code, out, _ = run_cli(capsys, [str(params), "--config", str(config_dir)])
    assert code == 0
    assert "remote: true — NDIF runs the model" in out and "TFLOP" in out


def test_cli_refuses_unknown_task_names_as_run_does(tmp_path, capsys, tiny_llama_dir):
    from modularity.science.tasks import generate_suite

    params = write_params(tmp_path, tiny_llama_dir, device="cpu", tasks=["code_list", "code_lst"])
    error = one_line_error(capsys, [str(params)])
    with pytest.raises(ValueError) as run_error:  # what a run's stage 1 would say
        generate_suite(tasks=["code_list", "code_lst"])
    assert f"{params}: {run_error.value}" in error
    assert "unknown task(s) ['code_lst'] ('code_lst': did you mean 'code_list'?)" in error


def test_cli_notes_the_items_a_data_dir_leaves_out(tmp_path, capsys, tiny_llama_dir):
    layout = Path(__file__).parent / "data" / "study_layout"
    params = write_params(tmp_path, tiny_llama_dir, device="cpu", data_dir=str(layout), tasks=["wug", "phys_newton"])
    code, out, err = run_cli(capsys, [str(params), "--cpu-memory-gb", "24"])
    assert code == 0, err
    notes = [line for line in out.splitlines() if "left out" in line]
    assert notes == [f"Note: {layout}: wug (data/Lan/wug.json): 2 of 5 entries left out: 2 equal answers"]


def test_processes_sharing_a_run_divide_the_model_stages_by_their_units():
    from modularity.science.tasks.catalog import describe_tasks

    w = workload(n_passing=4, tasks=[task["task"] for task in describe_tasks()][:10])
    assert w.n_tasks == 10
    plan = planning.plan_run(planning.model_geometry(planning.SMOLLM2_CONFIG), w, planning.gpu_device(4, 80))
    seconds = plan.stages.set_index("stage").seconds
    assert plan.seconds_with_processes(1) == pytest.approx(plan.total_seconds)
    # 10 tasks over 4 processes: the busiest evaluates 3; 4 passing tasks: one each
    expected = seconds["evaluation"] * 3 / 10 + seconds["attribution"] / 4 + seconds["ablation"] / 4
    assert plan.seconds_with_processes(4) == pytest.approx(expected)
    assert "with 4 processes sharing the run" in planning.format_plan(plan)
