"""One clear line for every bad input, one clear block for a failed stage (issue #20).

Bad input is refused before anything loads (no kernel, no model): the params file, the model,
the device, the stages a stage reads from. A stage that raises inside its notebook ends the run
with the notebook's own error, and its partial notebook stays out of the book. The stages here
are small templates of the tests' own (``runner.NOTEBOOKS`` points at them), so each runs in a
second or two.
"""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from modularity.running import runner
from modularity.showing.cli import main
from modularity.records.params import ParamsError, load_params, parameters_source
from modularity.records.preflight import PreflightError, check_model, gguf_architecture
from modularity.base.files import REPO_ROOT

LAYOUT = Path(__file__).parent / "data" / "study_layout"
PARAMS = dict(model="smollm2-135m-instruct", run_name="clear", profile="small", n_items=4, seed=0,
              dtype="float32", device="cpu", batch_size=4, threshold=0.6, tasks=["npi", "wug"])


def write_params(path: Path, **values) -> Path:
    path.write_text(yaml.safe_dump({**PARAMS, **values}))
    return path


def write_template(folder: Path, stage: str, body: str) -> Path:
    """A stage template as the real ones are written: jupytext header, the schema's parameters cell, ``body``."""
    folder.mkdir(parents=True, exist_ok=True)
    header = ("# ---\n# jupyter:\n#   kernelspec:\n#     display_name: Python 3\n#     language: python\n"
              "#     name: python3\n# ---\n\n")
    path = folder / f"{stage}.py"
    path.write_text(f'{header}# %% tags=["parameters"]\n{parameters_source()}\n\n# %%\n{body}\n')
    return path


@pytest.fixture
def root(tmp_path, monkeypatch):
    """A results root of the test's own, and stage templates under ``tmp_path/notebooks``."""
    monkeypatch.setenv("MODULARITY_ROOT", str(tmp_path / "root"))
    monkeypatch.setattr(runner, "NOTEBOOKS", tmp_path / "notebooks")
    return tmp_path / "root"


def results_of(root: Path, run: str = "clear") -> Path:
    return root / "book" / "results" / run / "small"


def one_line_error(capsys, argv) -> str:
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured.err
    assert captured.err.startswith(f"modularity {argv[0]}: error: ") and captured.err.count("\n") == 1, captured.err
    return captured.err


# --------------------------------------------------------------------------- A: before anything loads


def test_unsupported_architecture_is_refused_before_any_stage(tmp_path, root, capsys):
    mamba = tmp_path / "mamba"
    mamba.mkdir()  # a state-space model: no attention, so no head site
    (mamba / "config.json").write_text(json.dumps({"model_type": "mamba", "hidden_size": 8, "num_hidden_layers": 2}))
    params = write_params(tmp_path / "p.yaml", model=str(mamba))
    with pytest.raises(PreflightError, match=r"p.yaml: model: .*mamba: cannot find the neuron and head sites of "
                                             r"model_type='mamba' .*no MLP down projection and no attention"):
        runner.run(params, root=root)
    assert not root.exists()  # no stage started
    assert "OVERRIDES['mamba']" in one_line_error(capsys, ["run", str(params)])


def unsupported_gguf(path: Path, architecture: str = "mamba") -> Path:
    """A GGUF header of ``architecture`` (no tensors), a string and an array before the architecture."""
    def text(value: str) -> bytes:
        return struct.pack("<Q", len(value)) + value.encode()

    kv = (text("general.name") + struct.pack("<I", 8) + text("tiny")
          + text("general.tags") + struct.pack("<IIQ", 9, 8, 2) + text("a") + text("bc")
          + text("general.architecture") + struct.pack("<I", 8) + text(architecture))
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 0, 3) + kv)
    return path


def test_the_architecture_of_a_gguf_file_is_read_from_its_header(tmp_path):
    gguf = unsupported_gguf(tmp_path / "mamba.gguf")
    assert gguf_architecture(gguf) == "mamba"
    with pytest.raises(PreflightError, match=r"p.yaml: model: .*mamba.gguf: cannot find the neuron and head sites "
                                             r"of model_type='mamba'"):
        check_model(dict(PARAMS, model=str(gguf)), "p.yaml")
    check_model(dict(PARAMS, model=str(unsupported_gguf(tmp_path / "phi.gguf", "phi3"))), "p.yaml")  # found by structure
    (tmp_path / "short.gguf").write_bytes(gguf.read_bytes()[:30])
    with pytest.raises(ValueError, match="cannot be read"):
        gguf_architecture(tmp_path / "short.gguf")


def test_every_embedded_model_resolves_before_its_weights_load():
    from transformers import AutoConfig

    from modularity.science.models import EMBEDDED_MODELS, check_supported

    for alias, embedded in EMBEDDED_MODELS.items():
        try:
            path = embedded.locate()
        except (FileNotFoundError, ModuleNotFoundError):
            continue  # not installed here
        family = check_supported(AutoConfig.from_pretrained(path.parent, gguf_file=path.name))
        assert (family.mlp_down, family.attn_out, family.is_moe) == ("mlp.down_proj", "self_attn.o_proj", False), alias


def test_cuda_without_a_gpu_is_refused_before_any_stage(tmp_path, root, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    params = write_params(tmp_path / "p.yaml", device="cuda")
    with pytest.raises(PreflightError, match=r"p.yaml: device: cuda but no CUDA device is visible.*set device: cpu"):
        runner.run(params, root=root)
    assert not root.exists()


def test_a_missing_model_path_is_refused_when_the_params_are_read(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    params = write_params(tmp_path / "p.yaml", model="./models/absent")
    with pytest.raises(ParamsError, match=rf"p.yaml: model path not found: ./models/absent \({tmp_path}/models/absent "
                                          "does not exist"):
        load_params(params)
    for command in ("run", "plan"):
        assert "model path not found: ./models/absent" in one_line_error(capsys, [command, str(params)])


def test_a_stage_whose_inputs_have_not_run_is_refused(tmp_path, root):
    params = write_params(tmp_path / "p.yaml")
    with pytest.raises(PreflightError) as info:
        runner.run(params, stages=("03_overlap",), root=root)
    message = str(info.value)
    assert "stage 03_overlap reads eval_summary.csv of 01_eval and the attribution scores of 02_attribution" in message
    assert "--stages 01_eval 02_attribution 03_overlap" in message and "\n" not in message
    assert not root.exists()
    with pytest.raises(PreflightError, match="stage 04_ari_permutation reads the overlap matrices of 03_overlap"):
        runner.run(params, stages=("01_eval", "02_attribution", "04_ari_permutation"), root=root)


def test_stage_inputs_are_satisfied_by_the_manifest_or_an_earlier_stage(tmp_path):
    from modularity.records.params import validate_params

    params = validate_params(PARAMS)
    results = tmp_path / "results"
    runner.check_stage_inputs(("01_eval", "02_attribution", "03_overlap"), params, results, "p.yaml")
    results.mkdir()
    (results / "manifest.json").write_text(json.dumps({"stages": {"01_eval": {}, "02_attribution": {}}}))
    runner.check_stage_inputs(("03_overlap", "05_ablation", "07_localizer"), params, results, "p.yaml")
    with pytest.raises(PreflightError, match="the overlap matrix of 03_overlap and the ablation matrix of 05_ablation"):
        runner.check_stage_inputs(("06_beside_the_study", "03_overlap"), params, results, "p.yaml")


def test_stage_inputs_name_earlier_stages_only():
    for stage, inputs in runner.STAGE_INPUTS.items():
        assert stage in runner.STAGES
        assert inputs and all(runner.STAGES.index(needed) < runner.STAGES.index(stage) for needed in inputs), stage
    assert set(runner.STAGES) - set(runner.STAGE_INPUTS) == {"01_eval"}


# --------------------------------------------------------------------------- A: a stage that fails


FAILING = 'print("half done")\nraise ValueError("task \'wug\' has no usable items; fix data/Lan/wug.json")'


def test_a_failed_stage_stays_out_of_the_book_and_the_manifest(tmp_path, root):
    write_template(tmp_path / "notebooks", "01_eval", FAILING)
    params = write_params(tmp_path / "p.yaml")
    with pytest.raises(runner.NotebookFailed) as info:
        runner.run(params, stages=("01_eval",), root=root)
    failure = info.value
    assert failure.cause == "ValueError: task 'wug' has no usable items; fix data/Lan/wug.json"
    assert failure.notebook == root / "cache" / "clear" / "small" / "failed" / "01_eval.ipynb"
    kept = json.loads(failure.notebook.read_text())
    assert any(o.get("ename") == "ValueError" for c in kept["cells"] for o in c.get("outputs", []))
    results = results_of(root)
    assert not (results / "01_eval.ipynb").exists() and not (results / "manifest.json").exists()


def test_a_failed_rerun_keeps_the_good_notebook(tmp_path, root):
    params = write_params(tmp_path / "p.yaml")
    write_template(tmp_path / "notebooks", "01_eval", 'print("all good")')
    good = runner.run(params, stages=("01_eval",), root=root)[0]
    before = good.read_bytes()
    manifest = json.loads((good.parent / "manifest.json").read_text())
    write_template(tmp_path / "notebooks", "01_eval", FAILING)
    with pytest.raises(runner.NotebookFailed):
        runner.run(params, stages=("01_eval",), root=root)
    assert good.read_bytes() == before
    assert json.loads((good.parent / "manifest.json").read_text()) == manifest
    write_template(tmp_path / "notebooks", "01_eval", 'print("good again")')
    runner.run(params, stages=("01_eval",), root=root)
    assert not (root / "cache" / "clear" / "small" / "failed" / "01_eval.ipynb").exists()  # the failure is over


def test_the_command_line_ends_a_failed_stage_with_one_block(tmp_path, root, capsys):
    write_template(tmp_path / "notebooks", "01_eval", FAILING)
    params = write_params(tmp_path / "p.yaml")
    assert main(["run", str(params), "--stages", "01_eval"]) == 1
    err = capsys.readouterr().err
    failed = root / "cache" / "clear" / "small" / "failed" / "01_eval.ipynb"
    assert err.splitlines() == [
        "modularity run: stage 01_eval of clear/small failed",
        "  cause: ValueError: task 'wug' has no usable items; fix data/Lan/wug.json",
        f"  the executed notebook, with the full traceback: {failed}",
        "  stages finished before it are kept; fix the cause and run the same command again",
    ]


def test_a_known_error_gets_its_fix(tmp_path, root):
    write_template(tmp_path / "notebooks", "01_eval",
                   'class OutOfMemoryError(RuntimeError):\n    pass\n\nraise OutOfMemoryError("CUDA out of memory")')
    with pytest.raises(runner.NotebookFailed) as info:
        runner.run(write_params(tmp_path / "p.yaml"), stages=("01_eval",), root=root)
    assert "lower batch_size" in info.value.report() and "fix:" in info.value.report()


# --------------------------------------------------------------------------- B: input gaps


def test_tasks_must_be_a_list(tmp_path, capsys):
    from modularity.records.params import validate_params

    with pytest.raises(ParamsError, match=r"tasks='code_list' is a single string; write a list, e\.g\. tasks: \[code_list\]"):
        validate_params(dict(PARAMS, tasks="code_list"))
    assert validate_params(dict(PARAMS, tasks="all"))["tasks"] == "all"
    with pytest.raises(ParamsError, match=r"lists \['npi'\] more than once"):
        validate_params(dict(PARAMS, tasks=["npi", "wug", "npi"]))
    assert "single string" in one_line_error(capsys, ["plan", str(write_params(tmp_path / "p.yaml", tasks="code_list"))])


def test_a_relative_model_path_means_the_same_in_every_command(tmp_path, root, monkeypatch):
    """Taken from the folder the command runs in, once, when the params are read."""
    work, elsewhere = tmp_path / "work", tmp_path / "params"
    (work / "models" / "tiny").mkdir(parents=True)
    (work / "models" / "tiny" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    elsewhere.mkdir()
    monkeypatch.chdir(work)
    expected = str(work / "models" / "tiny")
    for written in ("models/tiny", "./models/tiny", "models/../models/tiny"):
        assert load_params(write_params(elsewhere / "p.yaml", model=written))["model"] == expected, written
    for unchanged in ("smollm2-135m-instruct", "Qwen/Qwen2.5-7B-Instruct"):
        assert load_params(write_params(elsewhere / "p.yaml", model=unchanged))["model"] == unchanged
    write_template(tmp_path / "notebooks", "01_eval", "import os\nassert os.path.isdir(model), model")
    runner.run(write_params(elsewhere / "p.yaml", model="models/tiny"), stages=("01_eval",), root=root)
    manifest = json.loads((results_of(root) / "manifest.json").read_text())
    assert manifest["params"]["model"] == expected  # what the stage, run from the repository root, received


def test_a_key_given_twice_is_an_error_naming_the_lines(tmp_path):
    path = write_params(tmp_path / "p.yaml")
    path.write_text(path.read_text() + "seed: 3\n")
    first = next(i for i, line in enumerate(path.read_text().splitlines(), 1) if line.startswith("seed:"))
    last = len(path.read_text().splitlines())
    with pytest.raises(ParamsError, match=rf"{path}: line {last}: key 'seed' is given twice \(first on line {first}\)"):
        load_params(path)


def test_a_misspelt_alias_gets_a_suggestion_before_any_hub_call(tmp_path, root, capsys, monkeypatch):
    import transformers

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked")

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", no_hub)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a stage kernel, if one started, would not wait for the network
    params = write_params(tmp_path / "p.yaml", model="smollm2-135m-instruc")
    start = time.perf_counter()
    error = one_line_error(capsys, ["plan", str(params)])
    assert "did you mean the embedded model 'smollm2-135m-instruct'?" in error
    with pytest.raises(PreflightError, match="did you mean the embedded model 'smollm2-135m-instruct'"):
        runner.run(params, root=root)
    assert time.perf_counter() - start < 10 and not root.exists()


def test_left_out_items_are_summarised_on_the_terminal(tmp_path, root, capsys):
    write_template(tmp_path / "notebooks", "01_eval", 'print("evaluated")')
    params = write_params(tmp_path / "p.yaml", data_dir=str(LAYOUT), tasks=["npi", "number_sorting", "phys_newton"])
    runner.run(params, stages=("01_eval",), root=root)
    lines = [line for line in capsys.readouterr().out.splitlines() if "left out" in line]
    assert lines == [
        f"[clear/small] {LAYOUT}: number_sorting (data/MD/number_sorting.json): 6 of 9 entries left out: "
        "1 not an object, 3 a field missing or empty, 1 corrupted answers not the clean ones swapped, 1 equal answers",
        f"[clear/small] {LAYOUT}: npi (data/Lan/npi.json): 3 of 8 entries left out: 3 duplicate",
    ]


def test_the_kernel_says_nothing_about_tcp(tmp_path, capfd):
    write_template(tmp_path / "notebooks", "page", 'print("hello")')
    output = tmp_path / "page.ipynb"
    runner.execute_template(tmp_path / "notebooks", "page", output, {}, tmp_path)
    assert "hello" in output.read_text()
    err = capfd.readouterr().err
    assert "without encryption" not in err and "IPKernelApp" not in err, err


def test_a_run_removes_the_scratch_folders_of_killed_runs(tmp_path, root, monkeypatch):
    import tempfile

    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    dead = temporary / f"{runner.SCRATCH_PREFIX}{2 ** 30}-abc"  # beyond any pid_max: no such process
    alive = temporary / f"{runner.SCRATCH_PREFIX}{os.getpid()}-def"
    for folder in (dead, alive):
        (folder / "templates").mkdir(parents=True)
    write_template(tmp_path / "notebooks", "01_eval", 'print("ok")')
    runner.run(write_params(tmp_path / "p.yaml"), stages=("01_eval",), root=root)
    assert sorted(p.name for p in temporary.iterdir()) == [alive.name]


KILLED_RUN = """
import sys
from pathlib import Path
import modularity.running.runner as runner
runner.NOTEBOOKS = Path(sys.argv[1])
from modularity.showing.cli import main
sys.exit(main(["run", sys.argv[2], "--stages", "01_eval"]))
"""


def test_a_terminated_run_leaves_no_temporary_folder(tmp_path, root):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    write_template(tmp_path / "notebooks", "01_eval", 'import time\nprint("started", flush=True)\ntime.sleep(60)')
    params = write_params(tmp_path / "p.yaml")
    env = {**os.environ, "TMPDIR": str(temporary), "MODULARITY_ROOT": str(root), "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT / "lib"), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(tmp_path / "notebooks"), str(params)],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(temporary.glob("modularity-*/executing/*.ipynb")) and time.monotonic() < deadline:
            time.sleep(0.2)  # the notebook is executing: its kernel is up
        time.sleep(1)
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, err
    assert "interrupted" in err and "run the same command again" in err
    assert "Traceback" not in err  # neither ours nor the kernel's, stopped mid-cell
    assert list(temporary.iterdir()) == []
    assert not (results_of(root) / "01_eval.ipynb").exists()
