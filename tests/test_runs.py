"""Runs: parameter schema, params files, paths, atomic writes, tensors, caching, manifest, runner, book TOC."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from modularity.running.book import BOOK_PAGES, write_toc
from modularity.records.params import SCHEMA, ParamsError, default_run_name, load_params, notebook_params, validate_params
from modularity.records.provenance import update_manifest
from modularity.running.runner import run
from modularity.base.files import REPO_ROOT, atomic_write_bytes
from modularity.records.store import RunPaths, cached_evaluation, check_file, check_task_fingerprints, committed_eval_summaries, per_task_cached, read_cache, save_json, save_table, task_fingerprints, write_cache

REQUIRED = {k for k, p in SCHEMA.items() if p.required}
GOOD = dict(model="smollm2-135m-instruct", profile="small", n_items=10, seed=0, dtype="float32",
            device="cpu", batch_size=4, threshold=0.6)


def test_every_params_file_loads():
    files = sorted((REPO_ROOT / "params").glob("*.yaml"))
    assert files
    for path in files:
        params = load_params(path)
        assert set(params) == set(SCHEMA)
        assert params["run_name"]


# --------------------------------------------------------------------------
# validate_params
# --------------------------------------------------------------------------
def test_defaults_filled_and_run_name_derived():
    params = validate_params(GOOD, require=True)
    assert params["metric"] == "paper" and params["bos"] == "model" and params["main_pct"] == 0.1
    assert params["run_name"] == "smollm2-135m-instruct"
    assert validate_params(dict(GOOD, run_name="mine"))["run_name"] == "mine"
    assert validate_params(dict(GOOD, threshold=1))["threshold"] == 1.0  # int accepted for a float
    assert isinstance(validate_params(dict(GOOD, threshold=1))["threshold"], float)


def test_unknown_key_named_with_known_keys():
    with pytest.raises(ParamsError) as info:
        validate_params(dict(GOOD, n_itmes=5), source="p.yaml")
    message = str(info.value)
    assert "n_itmes" in message and "p.yaml" in message
    for key in SCHEMA:
        assert key in message


@pytest.mark.parametrize(("key", "value", "pattern"), [
    ("n_items", "100", "n_items='100' should be"),
    ("n_items", 2.5, "n_items=2.5 should be"),
    ("seed", True, "seed=True should be"),          # a bool is not an int here
    ("model", 3, "model=3 should be"),
    ("top_pcts", 0.1, "top_pcts=0.1 should be"),
    ("dtype", "float64", r"dtype='float64' must be one of \['float32', 'bfloat16', 'float16'\]"),
    ("metric", "abs", "must be one of"),
    ("profile", "huge", "must be one of"),
    ("bos", "always", "must be one of"),
    ("threshold", 0.0, r"threshold=0.0 must lie in \(0, 1\]"),
    ("threshold", 1.5, r"must lie in \(0, 1\]"),
    ("threshold", -0.2, r"must lie in \(0, 1\]"),
    ("batch_size", 0, "batch_size=0 must be ≥ 1"),
    ("n_items", -3, "n_items=-3 must be ≥ 1"),
    ("main_pct", 0.5, r"main_pct=0.5 must be one of top_pcts"),
    ("model", None, "'model' must be set"),
])
def test_bad_values_are_clear_errors(key, value, pattern):
    with pytest.raises(ParamsError, match=pattern):
        validate_params(dict(GOOD, **{key: value}))


def test_edge_values_accepted():
    assert validate_params(dict(GOOD, threshold=1.0))["threshold"] == 1.0
    params = validate_params(dict(GOOD, top_pcts=[1.0, 5.0], main_pct=5.0, tasks=["npi", "wug"], run_name=None))
    assert params["main_pct"] == 5.0 and params["tasks"] == ["npi", "wug"]


def test_required_only_when_asked():
    assert validate_params({"model": "x"})["n_items"] == 100
    with pytest.raises(ParamsError) as info:
        validate_params({"model": "x"}, require=True)
    for key in REQUIRED - {"model"}:
        assert key in str(info.value)


# --------------------------------------------------------------------------
# load_params
# --------------------------------------------------------------------------
def test_load_params_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="params file not found"):
        load_params(tmp_path / "absent.yaml")


def test_load_params_invalid_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model: [unclosed\nseed: 0\n")
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_params(path)
    path.write_text("- a\n- b\n")
    with pytest.raises(ParamsError, match="expected a mapping"):
        load_params(path)


def test_load_params_missing_required_keys_listed(tmp_path):
    path = tmp_path / "few.yaml"
    path.write_text("model: gpt2\nseed: 1\n")
    with pytest.raises(ParamsError) as info:
        load_params(path)
    message = str(info.value)
    assert "missing required" in message and str(path) in message
    for key in REQUIRED - {"model", "seed"}:
        assert repr(key) in message
    assert "'seed'" not in message.split("missing required")[1]


def test_load_params_good(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in GOOD.items()) + "\nmetric: logit_diff\n")
    params = load_params(path)
    assert params["metric"] == "logit_diff" and params["n_items"] == 10


# --------------------------------------------------------------------------
# notebook_params
# --------------------------------------------------------------------------
def _namespace(**extra):
    def helper():
        return None

    return {
        "__name__": "__main__", "__builtins__": __builtins__, "_": None, "_i1": "x", "_oh": {},
        "In": [""], "Out": {}, "get_ipython": lambda: None, "exit": None, "quit": None, "open": open,
        "np": np, "pd": pd, "helper": helper, "Path": Path, "json": json,
        **GOOD, **extra,
    }


def test_notebook_params_ignores_notebook_names():
    params = notebook_params(_namespace())
    assert params["n_items"] == 10 and params["model"] == GOOD["model"]
    assert set(params) == set(SCHEMA)


def test_notebook_params_rejects_unknown_injected_name():
    with pytest.raises(ParamsError, match="n_itmes"):
        notebook_params(_namespace(n_itmes=5))


def test_notebook_params_checks_values():
    with pytest.raises(ParamsError, match="dtype"):
        notebook_params(_namespace(dtype="fp8"))


# --------------------------------------------------------------------------
# names and paths
# --------------------------------------------------------------------------
def test_default_run_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert default_run_name("Qwen/Qwen2.5-7B") == "Qwen_Qwen2-5-7B"
    assert default_run_name("smollm2-135m-instruct") == "smollm2-135m-instruct"
    local = tmp_path / "models" / "my-llama"
    local.mkdir(parents=True)
    assert default_run_name(str(local)) == "my-llama"


def test_run_paths_honour_modularity_root(tmp_path, monkeypatch):
    params = validate_params(GOOD)
    monkeypatch.setenv("MODULARITY_ROOT", str(tmp_path))
    paths = RunPaths.of(params)
    assert paths.results == tmp_path / "book" / "results" / "smollm2-135m-instruct" / "small"
    assert paths.cache == tmp_path / "cache" / "smollm2-135m-instruct" / "small"
    task = sorted(paths.fingerprints)[0]
    assert paths.tensor("attribution", task) == (
        paths.cache / "attribution" / f"{task}-{paths.fingerprints[task]}.safetensors")
    with pytest.raises(KeyError, match="not part of this run"):
        paths.tensor("attribution", "no-such-task")
    assert paths.table("eval.csv") == paths.results / "eval.csv"
    assert RunPaths.of(params, root=tmp_path / "other").results.is_relative_to(tmp_path / "other")
    monkeypatch.delenv("MODULARITY_ROOT")
    assert RunPaths.of(params).results.is_relative_to(REPO_ROOT)


# --------------------------------------------------------------------------
# atomic writes
# --------------------------------------------------------------------------
def test_atomic_write_leaves_no_temp_file(tmp_path):
    target = tmp_path / "deep" / "er" / "table.csv"
    atomic_write_bytes(target, b"a,b\n1,2\n")
    assert target.read_bytes() == b"a,b\n1,2\n"
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in target.parent.iterdir()] == ["table.csv"]


def test_atomic_write_never_leaves_a_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "table.csv"
    target.write_bytes(b"old complete content")
    real_fdopen = os.fdopen

    class Torn:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            self.handle.flush()
            raise OSError("disk full")

    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: Torn(real_fdopen(fd, mode, *a, **k)))
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"x" * 1000)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(tmp_path / "fresh.csv", b"y" * 1000)
    monkeypatch.undo()
    assert target.read_bytes() == b"old complete content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]


def test_atomic_write_interrupted_before_rename(tmp_path, monkeypatch):
    target = tmp_path / "t.json"
    target.write_bytes(b"{}")

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(target, b'{"a": 1}')
    monkeypatch.undo()
    assert target.read_bytes() == b"{}"
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]


def test_save_json_and_table(tmp_path):
    path = save_json({"x": np.float64(1.5), "n": np.int64(3), "p": Path("a/b")}, tmp_path / "o.json")
    assert json.loads(path.read_text()) == {"x": 1.5, "n": 3, "p": "a/b"}
    with pytest.raises(TypeError, match="not JSON serialisable"):
        save_json({"x": object()}, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    pd.testing.assert_frame_equal(pd.read_csv(save_table(frame, tmp_path / "t.csv")), frame)


def test_tensors_round_trip_through_a_checked_cache(tmp_path):
    tensors = {"neurons": torch.randn(3, 5), "heads": torch.randn(3, 4).t(), "ids": torch.arange(4)}
    made_from = {"task": "toy", "C": np.float64(2.5), "items": np.arange(3), "nested": {"a": None}}
    path = write_cache(tmp_path / "cache" / "attr" / "toy.safetensors", tensors, "attribution", made_from)
    loaded = read_cache(path, "attribution", made_from)
    assert set(loaded) == set(tensors)
    for key, value in tensors.items():
        assert torch.equal(loaded[key], value) and loaded[key].dtype == value.dtype
    check = json.loads(check_file(path).read_text())
    assert check["made_from"] == {"task": "toy", "C": 2.5, "items": [0, 1, 2], "nested": {"a": None}}
    assert check["contents"] == {"shapes": {"neurons": [3, 5], "heads": [4, 3], "ids": [4]}}
    assert check["size"] == path.stat().st_size
    assert sorted(p.name for p in path.parent.iterdir()) == ["toy.safetensors", "toy.safetensors.check"]
    assert read_cache(path, "attribution", dict(made_from, items=np.arange(4))) is None  # other items


# --------------------------------------------------------------------------
# per-task caching and the manifest
# --------------------------------------------------------------------------
def test_per_task_cached_computes_once(tmp_path):
    calls = []

    def compute(name):
        calls.append(name)
        values = np.random.default_rng(len(name)).normal(size=3) * 1e-3
        return pd.DataFrame({"task": [name] * 3, "lp": values, "ok": values > 0, "item": [0, 1, 2]})

    paths = RunPaths(tmp_path / "results", tmp_path / "cache", {"a": "f1", "bb": "f2", "ccc": "f3"})
    first = per_task_cached(paths, "eval", ["a", "bb"], compute, progress=False)
    assert calls == ["a", "bb"]
    assert sorted(p.name for p in (tmp_path / "cache" / "eval").glob("*.csv")) == ["a-f1.csv", "bb-f2.csv"]
    second = per_task_cached(paths, "eval", ["a", "bb", "ccc"], compute, progress=False)
    assert calls == ["a", "bb", "ccc"]  # only the new task computed
    for name in ("a", "bb"):
        pd.testing.assert_frame_equal(second[name], first[name])
    assert list(second) == ["a", "bb", "ccc"]
    # a task whose fingerprint changed is recomputed, the others are not
    edited = RunPaths(paths.results, paths.cache, {"a": "f1", "bb": "CHANGED", "ccc": "f3"})
    per_task_cached(edited, "eval", ["a", "bb", "ccc"], compute, progress=False)
    assert calls == ["a", "bb", "ccc", "bb"]


def test_stop_early_param():
    assert validate_params(GOOD)["stop_early"] is True
    assert validate_params(dict(GOOD, stop_early=False))["stop_early"] is False
    with pytest.raises(ParamsError, match="stop_early=1 should be"):
        validate_params(dict(GOOD, stop_early=1))


def _eval_frame(n, scored):
    frame = pd.DataFrame({"item": np.arange(n), "aligned": True, "scored": np.arange(n) < scored,
                          "lp_cc": np.where(np.arange(n) < scored, -1.0, np.nan)})
    frame["both_correct"] = False
    return frame


def test_cached_evaluation_keeps_stopped_tasks_apart(tmp_path):
    """A task stopped early is cached apart from complete evaluations: a run without stop_early or
    with another threshold never reads it; a complete evaluation serves every run."""
    calls = []

    def evaluate(name, stop_below):
        calls.append((name, stop_below))
        stopped = stop_below is not None and name == "bad"
        return _eval_frame(8, 3 if stopped else 8)

    paths = RunPaths(tmp_path / "results", tmp_path / "cache", {"good": "f1", "bad": "f2"})
    params = validate_params(dict(GOOD, threshold=0.6))
    first = cached_evaluation(paths, params, ["good", "bad"], evaluate, progress=False)
    assert calls == [("good", 0.6), ("bad", 0.6)]
    assert first["bad"].scored.sum() == 3 and first["good"].scored.all()
    assert [p.name for p in (paths.cache / "eval").glob("*.csv")] == ["good-f1.csv"]
    assert [p.name for p in (paths.cache / "eval_stopped_0.6").glob("*.csv")] == ["bad-f2.csv"]
    again = cached_evaluation(paths, params, ["good", "bad"], evaluate, progress=False)
    assert len(calls) == 2  # both read back
    pd.testing.assert_frame_equal(again["bad"], first["bad"])
    # another threshold: the stopped task is scored again, the complete one is reused
    cached_evaluation(paths, dict(params, threshold=0.5), ["good", "bad"], evaluate, progress=False)
    assert calls[2:] == [("bad", 0.5)]
    # no stopping: every item is needed, so the stopped file is not used
    full = cached_evaluation(paths, dict(params, stop_early=False), ["good", "bad"], evaluate, progress=False)
    assert calls[3:] == [("bad", None)] and full["bad"].scored.all()
    assert sorted(p.name for p in (paths.cache / "eval").glob("*.csv")) == ["bad-f2.csv", "good-f1.csv"]
    # ... and from now on the complete evaluation serves runs with stop_early too
    cached_evaluation(paths, params, ["good", "bad"], evaluate, progress=False)
    assert len(calls) == 4


def test_task_fingerprints_follow_items_and_cache_keys():
    base = validate_params(dict(GOOD, n_items=4))
    prints = task_fingerprints(base)
    assert prints == task_fingerprints(dict(base))
    # not cache keys (stop_early and threshold name the folder of stopped evaluations instead)
    assert prints == task_fingerprints(dict(base, batch_size=64, threshold=0.9, stop_early=False))
    metric = task_fingerprints(dict(base, metric="logit_diff"))
    assert all(metric[t] != prints[t] for t in prints)
    reseeded = task_fingerprints(dict(base, seed=1))
    assert sum(reseeded[t] != prints[t] for t in prints) > len(prints) // 2


def test_update_manifest(tmp_path):
    paths = RunPaths.of(validate_params(GOOD), root=tmp_path)
    params = validate_params(GOOD)
    first = update_manifest(paths, params, "01_eval", 12.345, extra={"n_tasks": 46})
    update_manifest(paths, dict(params, seed=1), "02_attribution", 3.0)
    manifest = json.loads(paths.table("manifest.json").read_text())
    assert set(manifest["stages"]) == {"01_eval", "02_attribution"}
    assert manifest["stages"]["01_eval"]["wall_time_s"] == 12.3
    assert manifest["stages"]["01_eval"]["n_tasks"] == 46
    assert "finished" in manifest["stages"]["02_attribution"]
    assert manifest["params"]["seed"] == 1  # the latest params
    env = manifest["environment"]
    assert env["packages"]["torch"] == torch.__version__.split("+")[0] or env["packages"]["torch"] == torch.__version__
    assert env["packages"]["pandas"] == pd.__version__
    assert "nnsight" in env["packages"] and "transformers" in env["packages"]
    sha = env["git_sha"]
    assert sha == "unknown" or (len(sha.split("+")[0]) == 40 and all(c in "0123456789abcdef" for c in sha[:40]))
    assert first["stages"]["01_eval"]["n_tasks"] == 46


def test_run_rejects_unknown_stage(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in GOOD.items()) + "\n")
    with pytest.raises(ValueError, match="unknown stage"):
        run(path, stages=("01_eval", "99_nope"), root=tmp_path)
    assert not (tmp_path / "book").exists()


def test_negative_counts_and_bad_percentages_are_rejected():

    base = {"model": "m"}
    for key in ("attribution_items", "verify_tasks", "ablation_items", "n_random_controls", "threads"):
        with pytest.raises(ParamsError, match=key):
            validate_params({**base, key: -1})
    for bad in ([], [0.0, 0.1], [0.1, 150.0], ["a"]):
        with pytest.raises(ParamsError, match="top_pcts"):
            validate_params({**base, "top_pcts": bad, "main_pct": 0.1})


def test_stale_tasks_are_refused(tmp_path, monkeypatch):
    import pandas as pd

    monkeypatch.setenv("MODULARITY_ROOT", str(tmp_path))
    params = validate_params({"model": "m", "tasks": ["npi", "code_list"], "n_items": 4})
    paths = RunPaths.of(params)
    summary = pd.DataFrame({"task": ["npi", "code_list"],
                            "fingerprint": [paths.fingerprints["npi"], paths.fingerprints["code_list"]]})
    check_task_fingerprints(paths, summary)  # unchanged tasks pass
    summary.loc[1, "fingerprint"] = "0" * 12
    with pytest.raises(ValueError, match="code_list"):
        check_task_fingerprints(paths, summary)
    with pytest.raises(ValueError, match="rerun stage 01_eval"):
        check_task_fingerprints(paths, summary.drop(columns="fingerprint"))


def test_toc_lists_only_finished_stages(tmp_path):
    import json

    import yaml

    def results_part(toc: dict) -> dict:
        return next(part for part in toc["parts"] if part["caption"] == "Results")

    def results_chapter(toc: dict) -> dict:
        return next(c for c in results_part(toc)["chapters"] if c["file"] == "book/results/index")

    assert "sections" not in results_chapter(yaml.safe_load(write_toc(tmp_path).read_text()))
    run = tmp_path / "book" / "results" / "m" / "small"
    run.mkdir(parents=True)
    for stage in ("01_eval", "02_attribution", "03_overlap"):
        (run / f"{stage}.ipynb").write_text("{}")
    # 03 has a notebook (e.g. interrupted) but is not recorded as finished: it must not be listed.
    (run / "manifest.json").write_text(json.dumps({"stages": {"01_eval": {}, "02_attribution": {}}}))
    toc = yaml.safe_load(write_toc(tmp_path).read_text())
    sections = results_chapter(toc)["sections"]
    assert toc["parts"][0]["chapters"] == [{"file": "book/findings"}]  # what the runs found comes first
    assert results_part(toc)["chapters"][0]["file"] == "book/study_results"  # the study before our runs
    assert [s["file"] for s in sections] == ["book/results/m/small/01_eval", "book/results/m/small/02_attribution"]
    assert sections[0]["title"] == "m (small) · evaluation"


def test_runs_are_listed_default_first(tmp_path):
    import json

    import yaml

    for name in ("a-model/paper", "gemma3-270m/small", "smollm2-135m-instruct/paper", "smollm2-135m-instruct/small"):
        folder = tmp_path / "book" / "results" / name
        folder.mkdir(parents=True)
        (folder / "01_eval.ipynb").write_text("{}")
        (folder / "manifest.json").write_text(json.dumps({"stages": {"01_eval": {}}}))
    toc = yaml.safe_load(write_toc(tmp_path).read_text())
    results = next(part for part in toc["parts"] if part["caption"] == "Results")["chapters"]
    sections = next(c for c in results if c["file"] == "book/results/index")["sections"]
    assert [s["title"] for s in sections] == ["smollm2-135m-instruct (small) · evaluation",
                                              "gemma3-270m (small) · evaluation",
                                              "smollm2-135m-instruct (paper) · evaluation", "a-model (paper) · evaluation"]


def test_book_pages_are_in_the_toc_with_their_titles(tmp_path):
    import yaml

    toc = yaml.safe_load(write_toc(tmp_path).read_text())
    entries = [c for part in toc["parts"] for c in part["chapters"]]
    files = {c["file"]: c.get("title") for c in entries}
    for name, (template, page, _, _, title) in BOOK_PAGES.items():
        assert (REPO_ROOT / "notebooks" / f"{template}.py").exists(), name
        assert files[page.removesuffix(".ipynb")] == title, name


def test_committed_eval_summaries_reads_every_run_and_marks_stopped_tasks(tmp_path):
    import pandas as pd

    assert committed_eval_summaries(tmp_path).empty
    old = tmp_path / "a" / "paper"
    new = tmp_path / "b" / "small"
    old.mkdir(parents=True)
    new.mkdir(parents=True)
    # a run from before early stopping (no n_scored) and one with a stopped task
    pd.DataFrame({"task": ["t1"], "n_items": [64], "passes": [True]}).to_csv(old / "eval_summary.csv", index=False)
    pd.DataFrame({"task": ["t1", "t2"], "n_items": [64, 64], "n_scored": [64, 26],
                  "passes": [True, False]}).to_csv(new / "eval_summary.csv", index=False)
    frame = committed_eval_summaries(tmp_path)
    assert list(frame.run) == ["a/paper", "b/small", "b/small"]
    assert list(frame.model) == ["a", "b", "b"] and list(frame.profile) == ["paper", "small", "small"]
    assert list(frame.n_scored) == [64, 64, 26]
    assert list(frame.stopped_early) == [False, False, True]


def test_parameter_cells_are_hidden_in_the_book_but_kept_in_the_notebook():
    import nbformat

    from modularity.running.runner import hide_parameter_cells

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("seed = 0", metadata={"tags": ["parameters"]}),
                      nbformat.v4.new_code_cell("seed = 1", metadata={"tags": ["injected-parameters"]}),
                      nbformat.v4.new_code_cell("print(seed)")]
    hidden = hide_parameter_cells(hide_parameter_cells(notebook))
    assert [c.metadata["tags"] for c in hidden.cells] == [["parameters", "remove-cell"],
                                                          ["injected-parameters", "remove-cell"], []]
    assert len(hidden.cells) == 3


def test_each_run_lands_on_its_own_page_with_its_stages_under_it(tmp_path):
    import json

    import yaml

    for name in ("gemma3-270m/small", "smollm2-135m-instruct/small"):
        folder = tmp_path / "book" / "results" / name
        folder.mkdir(parents=True)
        for stage in ("01_eval", "02_attribution"):
            (folder / f"{stage}.ipynb").write_text("{}")
        (folder / "manifest.json").write_text(json.dumps({"stages": {"01_eval": {}, "02_attribution": {}}}))
    (tmp_path / "book" / "results" / "smollm2-135m-instruct" / "small" / "overview.ipynb").write_text("{}")
    toc = yaml.safe_load(write_toc(tmp_path).read_text())
    results = next(part for part in toc["parts"] if part["caption"] == "Results")["chapters"]
    sections = next(c for c in results if c["file"] == "book/results/index")["sections"]
    landing = sections[0]  # the default run first, with its landing page
    assert landing["file"] == "book/results/smollm2-135m-instruct/small/overview"
    assert landing["title"] == "smollm2-135m-instruct (small)"
    assert [s["file"] for s in landing["sections"]] == ["book/results/smollm2-135m-instruct/small/01_eval",
                                                        "book/results/smollm2-135m-instruct/small/02_attribution"]
    # a run whose landing page is not made yet still lists its stages
    assert [s["title"] for s in sections[1:]] == ["gemma3-270m (small) · evaluation", "gemma3-270m (small) · attribution"]


def test_pages_name_their_run_in_their_title():
    import nbformat

    from modularity.running.runner import name_heading

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                               nbformat.v4.new_markdown_cell("# Stage 1 · Evaluation\n\ntext")])
    name_heading(notebook, "m (small)")
    assert notebook.cells[1].source == "# m (small) · Stage 1 · Evaluation\n\ntext"
    name_heading(notebook, "m (small)")  # a page re-executed keeps one name
    assert notebook.cells[1].source.count("m (small)") == 1
    untitled = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("no title")])
    assert name_heading(untitled, "m (small)").cells[0].source == "# m (small)"


def test_a_stage_knows_whether_the_code_that_made_it_is_still_here(tmp_path):
    from modularity.running.runner import stage_states, stage_versions

    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    (notebooks / "03_overlap.py").write_text("# template\n")
    now = stage_versions("03_overlap", notebooks)
    assert len(now["code"]) == 16 and len(now["template"]) == 16
    manifest = {"stages": {"03_overlap": {**now}}}
    assert stage_states(manifest, notebooks) == {"03_overlap": "current"}
    (notebooks / "03_overlap.py").write_text("# template, edited\n")
    assert stage_states(manifest, notebooks) == {"03_overlap": "page template changed since"}
    manifest["stages"]["03_overlap"]["code"] = "0" * 16
    assert stage_states(manifest, notebooks) == {"03_overlap": "code changed since"}
    assert stage_states({"stages": {"03_overlap": {"finished": "…"}}}, notebooks) == {"03_overlap": "not recorded"}


def test_a_stage_page_shows_its_parameters_as_a_line_not_a_dict():
    from modularity.stages.context import Settings

    shown = Settings({"model": "m", "top_pcts": [0.05, 0.1, 1.0], "data_dir": None, "n_permutations": 10_000,
                      "stop_early": True})
    assert shown._repr_markdown_() == ("**Parameters:** `model` m · `top_pcts` 0.05, 0.1, 1 · `data_dir` — · "
                                       "`n_permutations` 10,000 · `stop_early` yes")
    assert "{" not in repr(shown) and "None" not in repr(shown)
