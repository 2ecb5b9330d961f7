"""Caches that cannot lie: a cache file is reused only when it is intact and was made from what a
stage would compute it from now; otherwise it is recomputed, with one line on stderr saying why.

Stages 1 and 2 run once on the tiny llama (conftest) into a template root; each test works on a
copy of it, damages or changes something, and runs the stages again.
"""
from __future__ import annotations

import os
import re
import shutil
import stat

import numpy as np
import pandas as pd
import pytest
import torch

from modularity.science import attribution, models, scoring
from modularity.records import store
from modularity.stages import attribution as attribution_stage
from modularity.stages import evaluation
from modularity.stages import scores
from modularity.stages.context import RunContext
from modularity.records.store import RunPaths, cached_evaluation, save_json, save_table

#: On the tiny llama, anaphor_gender_agreement passes at threshold 0.3 with 6 items; agent fails.
TASKS = ["anaphor_gender_agreement", "agent"]
PASSING = "anaphor_gender_agreement"


def run_params(model_dir) -> dict:
    return dict(model=str(model_dir), run_name="tiny", profile="small", n_items=6, seed=0, dtype="float32",
                device="cpu", batch_size=8, threshold=0.3, tasks=TASKS, threads=1, verify_tasks=0,
                attribution_items=8)


@pytest.fixture(scope="module")
def template(tiny_model_dirs, tmp_path_factory):
    """``(params, root)`` of a run whose stages 1 and 2 have finished, and their results."""
    root = tmp_path_factory.mktemp("template")
    params = run_params(tiny_model_dirs["llama"])
    ctx = RunContext.of(params, root)
    ev = evaluation.run(ctx, progress=False)
    assert list(ev.passing.task) == [PASSING]
    at = attribution_stage.run(ctx, progress=False)
    return params, root, ev, at


@pytest.fixture
def copied(template, tmp_path):
    """A fresh copy of the template run: ``(params, root, ev, at)`` with ``root`` the copy."""
    params, root, ev, at = template
    shutil.copytree(root, tmp_path / "run")
    return params, tmp_path / "run", ev, at


def notices(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("cache file ")]


def count_attributions(monkeypatch) -> list:
    """Record every call of :func:`modularity.science.attribution.attribute_task` (stage 2 computing scores)."""
    calls, real = [], attribution.attribute_task

    def counted(*args, **kwargs):
        calls.append(args[2])  # the item indices
        return real(*args, **kwargs)

    monkeypatch.setattr(attribution, "attribute_task", counted)
    return calls


# --------------------------------------------------------------------------- the model's files


def test_new_weights_at_the_same_path_are_noticed(tiny_model_dirs, tmp_path):
    from transformers import AutoModelForCausalLM

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dirs["llama"], model_dir)
    params = run_params(model_dir)
    ctx = RunContext.of(params, tmp_path)
    first = evaluation.run(ctx, progress=False)

    tuned = AutoModelForCausalLM.from_pretrained(model_dir)
    with torch.no_grad():  # a "fine-tune" of the same shapes, written over the old files
        for parameter in tuned.parameters():
            parameter.mul_(0.5)
    names = sorted(p.name for p in model_dir.iterdir())
    tuned.save_pretrained(model_dir)
    assert sorted(p.name for p in model_dir.iterdir()) == names

    again = RunContext.of(params, tmp_path)
    assert again.paths.fingerprints != ctx.paths.fingerprints
    with pytest.raises(ValueError, match="tasks changed since stage 01_eval"):
        again.passing()  # stage 2 would attribute the new weights on the old weights' items
    second = evaluation.run(again, progress=False)
    assert "model" in again.__dict__, "stage 1 scored the new weights"
    assert not np.allclose(second.items.lp_cc, first.items.lp_cc)
    direct = scoring.evaluate_task(again.model, again.suite[PASSING], 8, stop_below=0.3)
    got = second.items[second.items.task == PASSING].drop(columns="task").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, direct, check_dtype=False)


def test_sampled_fingerprint_of_a_large_model_notices_new_weights(tiny_model_dirs, tmp_path, monkeypatch):
    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dirs["llama"], model_dir)
    monkeypatch.setattr(models, "FULL_HASH_BYTES", 1024)  # as if the files were too large to read whole
    monkeypatch.setattr(models, "SAMPLED_BLOCKS", 8)
    before, note = models.model_files_fingerprint(str(model_dir))
    assert note == "" and before == models.model_files_fingerprint(str(model_dir))[0]
    weights = model_dir / "model.safetensors"
    data = bytearray(weights.read_bytes())
    sampled = (len(data) - models.SAMPLED_BLOCK_BYTES) * 3 // 7  # the 4th of 8 evenly spaced blocks
    data[sampled: sampled + 100] = bytes(100)
    weights.write_bytes(bytes(data))
    after, _ = models.model_files_fingerprint(str(model_dir))
    assert after != before
    assert any(key[0] == str(weights.resolve()) and key[-1] is False for key in models._FILE_DIGESTS), "sampled"


def test_a_hub_id_is_fingerprinted_from_its_local_snapshot(tiny_model_dirs, monkeypatch):
    import huggingface_hub

    asked = []

    def snapshot(repo_id, local_files_only=False):
        asked.append((repo_id, local_files_only))
        return str(tiny_model_dirs["llama"])

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot)
    digest, note = models.model_files_fingerprint("some-org/tiny-llama")
    assert asked == [("some-org/tiny-llama", True)], "the local cache only, never a download"
    assert note == "" and digest == models.model_files_fingerprint(str(tiny_model_dirs["llama"]))[0]


def test_a_model_without_local_files_is_named_with_a_note():
    digest, note = models.model_files_fingerprint("no-such-org/no-such-model")
    assert digest == "name:no-such-org/no-such-model"
    assert "no local copy" in note and "no-such-org/no-such-model" in note


# --------------------------------------------------------------------------- damaged cache files


def test_a_truncated_eval_cache_is_recomputed_with_a_notice(copied, capsys):
    params, root, ev, _ = copied
    ctx = RunContext.of(params, root)
    path = ctx.paths.task_file("eval", PASSING, ".csv")
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: 1 + (len(lines) - 1) // 2]))  # header and half the items
    capsys.readouterr()
    again = evaluation.run(ctx, progress=False)
    pd.testing.assert_frame_equal(again.items, ev.items)
    pd.testing.assert_frame_equal(again.summary, ev.summary)
    shown = notices(capsys.readouterr().err)
    assert len(shown) == 1
    assert re.fullmatch(rf"cache file .*eval/{PASSING}-[0-9a-f]{{12}}\.csv is corrupt \(truncated: \d+ of \d+ "
                        r"bytes\): recomputing", shown[0])


def test_attribution_is_recomputed_when_stage_1_chose_other_items(copied, monkeypatch, capsys):
    """The truncated-eval case: stage 1's tables now name fewer both-correct items than the cached
    tensors were computed on (same fingerprint), so stage 2 must not reuse them."""
    params, root, _, at = copied
    ctx = RunContext.of(params, root)
    items = pd.read_csv(ctx.paths.table("eval_items.csv"))
    chosen = scores.attributed_items(ctx, PASSING)
    assert len(chosen) >= 2
    dropped = (items.task == PASSING) & (items.item == chosen[0])
    save_table(items.assign(both_correct=items.both_correct & ~dropped), ctx.paths.table("eval_items.csv"))
    calls = count_attributions(monkeypatch)
    capsys.readouterr()
    again = attribution_stage.run(RunContext.of(params, root), progress=False)
    assert [list(c) for c in calls] == [list(chosen[1:])], "attributed again, on stage 1's current items"
    assert not torch.equal(again.scores[PASSING]["neurons"], at.scores[PASSING]["neurons"])
    shown = notices(capsys.readouterr().err)
    assert len(shown) == 1 and re.fullmatch(
        rf"cache file .*attribution/{PASSING}-[0-9a-f]{{12}}\.safetensors was made from other inputs \(items\): "
        "recomputing", shown[0])
    # and later stages read the recomputed scores, without computing them once more
    assert torch.equal(scores.load_scores(RunContext.of(params, root), PASSING),
                       again.scores[PASSING]["neurons"])
    assert len(calls) == 1


def test_a_byte_flip_in_a_tensor_cache_is_recomputed(copied, monkeypatch, capsys):
    params, root, _, at = copied
    ctx = RunContext.of(params, root)
    path = ctx.paths.tensor("attribution", PASSING)
    data = bytearray(path.read_bytes())
    data[-4:] = np.float32(4.3e9).tobytes()  # the file's last score: same size, another value
    path.write_bytes(bytes(data))
    calls = count_attributions(monkeypatch)
    capsys.readouterr()
    again = attribution_stage.run(RunContext.of(params, root), progress=False)
    assert len(calls) == 1
    for kind in ("neurons", "heads"):
        assert torch.equal(again.scores[PASSING][kind], at.scores[PASSING][kind])
    shown = notices(capsys.readouterr().err)
    assert len(shown) == 1 and shown[0].endswith(".safetensors is corrupt (checksum mismatch): recomputing")
    # a later stage reading a damaged file recomputes it too
    path.write_bytes(bytes(data))
    assert torch.equal(scores.load_scores(RunContext.of(params, root), PASSING), at.scores[PASSING]["neurons"])
    assert len(calls) == 2


def test_a_truncated_tensor_cache_is_recomputed_without_a_traceback(copied, monkeypatch, capsys):
    params, root, _, at = copied
    ctx = RunContext.of(params, root)
    path = ctx.paths.tensor("attribution", PASSING)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    calls = count_attributions(monkeypatch)
    capsys.readouterr()
    again = attribution_stage.run(RunContext.of(params, root), progress=False)
    assert len(calls) == 1
    assert torch.equal(again.scores[PASSING]["neurons"], at.scores[PASSING]["neurons"])
    err = capsys.readouterr().err
    shown = notices(err)
    assert len(shown) == 1 and re.fullmatch(r"cache file \S+\.safetensors is corrupt \(truncated: \d+ of \d+ bytes\): "
                                            "recomputing", shown[0])
    assert "Traceback" not in err


# --------------------------------------------------------------------------- check files


def test_a_cache_file_without_its_check_file_is_recomputed(tmp_path, capsys):
    """A kill between the data file and its check file leaves a file that is simply recomputed."""
    path = tmp_path / "eval" / "t-f1.csv"
    frame = pd.DataFrame({"item": [0, 1], "lp": [-1.5, -0.25]})
    store.write_cache(path, frame, "eval", {"task": "t"})
    pd.testing.assert_frame_equal(store.read_cache(path, "eval", {"task": "t"}), frame)
    store.check_file(path).unlink()
    capsys.readouterr()
    assert store.read_cache(path, "eval", {"task": "t"}) is None
    assert notices(capsys.readouterr().err) == [
        f"cache file {path} has no check file (its writing was interrupted, or it was written before checks "
        "existed): recomputing"]


def test_a_cache_file_made_by_other_code_is_recomputed(tmp_path, monkeypatch, capsys):
    path = tmp_path / "eval" / "t-f1.csv"
    store.write_cache(path, pd.DataFrame({"item": [0]}), "eval", {"task": "t"})
    monkeypatch.setattr(store, "code_version", lambda computation: "another")
    capsys.readouterr()
    assert store.read_cache(path, "eval", {"task": "t"}) is None
    assert notices(capsys.readouterr().err) == [
        f"cache file {path} was made by another version of the code (eval): recomputing"]


def test_the_code_version_follows_the_code_of_the_computing_modules(tmp_path, monkeypatch):
    package = tmp_path / "modularity"
    shutil.copytree(store.PACKAGE_DIR, package, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(store, "PACKAGE_DIR", package)
    store.code_version.cache_clear()
    try:
        before = store.code_version("eval")
        batches = package / "science" / "batches.py"  # imported by scoring, which computes stage 1's frames
        batches.write_text(batches.read_text().replace('"""', '"""Reworded. ', 1) + "\n# a comment\n")
        (package / "science" / "stats.py").write_text((package / "science" / "stats.py").read_text() + "\nUNUSED_HERE = 1\n")
        def uncached(computation: str) -> str:  # both caches: code_version's and the closure hash's
            store.closure_version.cache_clear()
            return store.code_version.__wrapped__(computation)

        assert uncached("eval") == before, "docstrings, comments and stats do not count"
        batches.write_text(batches.read_text() + "\nPADDING_SIDE = 'left'\n")
        assert uncached("eval") != before
    finally:
        store.code_version.cache_clear()
        store.closure_version.cache_clear()


# --------------------------------------------------------------------------- permissions


def test_results_and_caches_get_the_permissions_of_the_umask(tmp_path):
    previous = os.umask(0o022)
    try:
        paths = RunPaths(tmp_path / "results", tmp_path / "cache", {"t": "f1"})
        params = dict(threshold=0.6, stop_early=False)
        cached_evaluation(paths, params, ["t"], lambda name, stop: pd.DataFrame({"item": [0], "scored": [True]}),
                          progress=False)
        save_table(pd.DataFrame({"a": [1]}), paths.table("table.csv"))
        save_json({"a": 1}, paths.table("summary.json"))
    finally:
        os.umask(previous)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 3
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in written} == {p.name: 0o644 for p in written}
