"""Stages 1 and 2 as library calls (``modularity.stages.evaluation.run``, ``.attribution.run``), and the
nnsight traces their notebooks and the teaching chapter show, checked against the library's fast paths.

Trace code must live in a file (nnsight reads its source), which this is; the teaching chapter's
snippet is extracted from ``book/teaching.md`` and run from a file.
"""
from __future__ import annotations

import json
import re
import runpy
from pathlib import Path

import nnsight
import numpy as np
import pandas as pd
import pytest
import torch

from modularity.science import attribution, scoring
from modularity.stages import attribution as attribution_stage
from modularity.stages import scores
from modularity.stages import evaluation
from modularity.stages.context import RunContext
from modularity.records.store import check_file, read_cache
from modularity.science.tasks import audit_items, generate_task, item_sources, load_suite

REPO = Path(__file__).resolve().parents[1]
LAYOUT = Path(__file__).parent / "data" / "study_layout"
# On the tiny llama (conftest), anaphor_gender_agreement passes at threshold 0.3 with 6 items.
TASKS = ["anaphor_gender_agreement", "agent", "code_list"]
EVAL_COLUMNS = ["task", "domain", "n_items", "n_aligned", "n_misaligned", "n_scored", "clean_accuracy",
                "corrupted_accuracy", "both_correct_accuracy", "n_both_correct", "C", "R", "both_correct_se",
                "passes", "reason", "fingerprint"]
ITEM_COLUMNS = ["item", "clean_len", "corrupted_len", "aligned", "scored", "lp_cc", "lp_ci", "lp_rc", "lp_ri",
                "clean_correct", "corrupted_correct", "both_correct", "task"]


def run_params(model_dir, **values) -> dict:
    return dict(dict(model=str(model_dir), run_name="tiny", profile="small", n_items=6, seed=0, dtype="float32",
                     device="cpu", batch_size=8, threshold=0.3, tasks=TASKS, threads=1, verify_tasks=1,
                     verify_neurons=3, attribution_items=8), **values)


# ------------------------------------------------------------------ the stages


def test_stages_write_their_tables_and_a_rerun_reuses_the_caches(tiny_model_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv("MODULARITY_ROOT", str(tmp_path))
    params = run_params(tiny_model_dirs["llama"])
    ctx = RunContext.of(params)
    ev = evaluation.run(ctx, progress=False)
    results = ctx.paths.results
    assert list(ev.summary.columns) == EVAL_COLUMNS
    assert list(ev.items.columns) == ITEM_COLUMNS
    assert sorted(ev.summary.task) == sorted(TASKS) and len(ev.items) == 6 * len(TASKS)
    assert ev.sources is None and ev.audit is None
    assert not (results / "source_items.csv").exists()
    assert (results / "eval_summary.csv").read_text() == ev.summary.to_csv(index=False)
    assert (results / "eval_items.csv").read_text() == ev.items.to_csv(index=False)
    assert dict(zip(ev.summary.task, ev.summary.fingerprint)) == ctx.paths.fingerprints
    assert ev.by_domain.n_passing.sum() == ev.summary.passes.sum() >= 1
    assert list(ev.passing.task) == list(ctx.passing().task)
    # the same decision and scores as scoring one task directly
    direct = scoring.evaluate_task(ctx.model, ctx.suite["anaphor_gender_agreement"], 8, stop_below=0.3)
    row = ev.summary.set_index("task").loc["anaphor_gender_agreement"]
    assert row.passes == scoring.summarize_task(direct, 0.3)["passes"]
    got = ev.items[ev.items.task == "anaphor_gender_agreement"].drop(columns="task").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, direct, check_dtype=False)

    at = attribution_stage.run(ctx, progress=False)
    passing = list(ev.passing.task)
    assert list(at.scores) == passing == list(at.summary.task)
    assert list(at.summary.columns) == ["task", "positive neurons", "max score", "sum of scores"]
    assert list(at.check.columns) == ["task", "neuron", "kind", "estimate", "exact"]
    assert len(at.check) == 2 * params["verify_neurons"] and list(at.agreement.index) == passing[:1]
    assert set(at.top_layers.task) <= set(passing) and at.overall["n"] == len(at.check)
    assert (results / "attribution_summary.csv").read_text() == at.summary.to_csv(index=False)
    assert (results / "attribution_check.csv").read_text() == at.check.to_csv(index=False)
    for task in passing:
        path = ctx.paths.tensor("attribution", task)
        made_from = scores.scores_made_from(ctx, task)
        tensors = read_cache(path, "attribution", made_from)
        recorded = json.loads(check_file(path).read_text())["made_from"]
        assert set(tensors) == {"neurons", "heads"} and recorded["task"] == task and recorded["metric"] == "paper"
        assert recorded["items"] == scores.attributed_items(ctx, task).tolist()
        assert tensors["neurons"].shape == (ctx.model.n_layers, ctx.model.d_ff)

    # A rerun reads everything back: no scoring, no attribution of a cached task, no model for stage 1.
    def refuse(*args, **kwargs):
        raise AssertionError("scored again")

    monkeypatch.setattr(scoring, "evaluate_task", refuse)
    attribute_task = attribution.attribute_task

    def only_the_check(*args, heads=True, **kwargs):  # the check recomputes on its 16 items, without heads
        if heads:
            raise AssertionError("attributed again")
        return attribute_task(*args, heads=heads, **kwargs)

    monkeypatch.setattr(attribution, "attribute_task", only_the_check)
    again = RunContext.of(params)
    ev2 = evaluation.run(again, progress=False)
    assert "model" not in again.__dict__, "stage 1 loaded the model although every task was cached"
    pd.testing.assert_frame_equal(ev2.summary, ev.summary)
    pd.testing.assert_frame_equal(ev2.items, ev.items)
    at2 = attribution_stage.run(again, progress=False)
    pd.testing.assert_frame_equal(at2.summary, at.summary)
    pd.testing.assert_frame_equal(at2.check, at.check)
    for task in passing:
        assert torch.equal(at2.scores[task]["neurons"], at.scores[task]["neurons"])


def test_evaluation_of_a_data_dir_run_saves_sources_and_audit(tiny_model_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv("MODULARITY_ROOT", str(tmp_path))
    params = run_params(tiny_model_dirs["llama"], profile="paper", n_items=5, tasks=["npi", "wug"],
                        data_dir=str(LAYOUT))
    ctx = RunContext.of(params)
    ev = evaluation.run(ctx, progress=False)
    checked = ctx.params
    pd.testing.assert_frame_equal(pd.read_csv(ctx.paths.table("source_items.csv")),
                                  item_sources(load_suite(checked)), check_dtype=False)
    audit = audit_items(load_suite(checked, sample=False))
    pd.testing.assert_frame_equal(ev.audit, audit)
    assert len(pd.read_csv(ctx.paths.table("task_files_audit.csv"))) == len(audit)
    assert sorted(ev.sources.task) == ["npi", "wug"]


def test_attribution_refuses_a_run_without_stage_1(tiny_model_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv("MODULARITY_ROOT", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="01_eval"):
        attribution_stage.run(RunContext.of(run_params(tiny_model_dirs["llama"])), progress=False)


# ------------------------------------------------------------------ the notebooks' traces


def tokens_of(loaded, name: str = "anaphor_gender_agreement", n_items: int = 4):
    return scoring.tokenize_task(loaded, generate_task(name, profile="small", n_items=n_items, seed=0))


def traced_logprob(lm, prompt: list[int], answer: list[int]) -> float:
    """LP(prompt, answer) from the logits of one nnsight trace (stage 1's worked example)."""
    with lm.trace(torch.tensor([prompt + answer])):
        logits = lm.output.logits.save()
    logp = logits[0].float().log_softmax(-1)
    T = len(prompt)
    return sum(logp[T - 1 + j, token].item() for j, token in enumerate(answer))


@pytest.mark.parametrize("family", ["llama", "gpt2", "gemma3"])
def test_traced_logprobs_equal_sequence_logprobs(tiny_models, family):
    loaded = tiny_models[family]
    tokens = tokens_of(loaded, "code_list")
    i = 1
    prompts = [tokens.clean[i]] * 2 + [tokens.corrupted[i]] * 2
    answers = [tokens.correct[i], tokens.incorrect[i]] * 2
    traced = [traced_logprob(loaded.lm, p, a) for p, a in zip(prompts, answers)]
    library = scoring.sequence_logprobs(loaded, prompts, answers)
    np.testing.assert_allclose(traced, library, rtol=0, atol=1e-4)
    assert len(set(np.round(traced, 6))) > 1, "the four scores differ"


def traced_item_attribution(loaded, tokens, i: int, C: float, R: float, metric: str) -> torch.Tensor:
    """g · (a(c) − a(r)) / (C − R) of one item, every layer, from nnsight traces (stage 2's worked example)."""
    lm, L = loaded.lm, loaded.n_layers
    clean, corrupted = tokens.clean[i], tokens.corrupted[i]
    T = len(corrupted)
    assert len(clean) == T

    def neurons(layer):
        return lm.get(loaded.site_path("neurons", layer) + ".input")

    with lm.trace(torch.tensor([clean])):
        a_clean = nnsight.save([neurons(layer)[0, T - 1] for layer in range(L)])

    def gradient(answer):
        grads, sites = [None] * L, []
        with lm.trace(torch.tensor([corrupted + answer])):
            for layer in range(L):
                site = neurons(layer)
                site.requires_grad_(True)
                sites.append(site)
            values = nnsight.save([site[0, T - 1] for site in sites])
            logp = lm.output.logits[0].float().log_softmax(-1)
            objective = sum(logp[T - 1 + j, token] for j, token in enumerate(answer))
            with objective.backward():
                for layer in reversed(range(L)):
                    grads[layer] = sites[layer].grad[0, T - 1].save()
        return torch.stack(values).detach(), torch.stack(grads)

    a_corrupted, g = gradient(tokens.correct[i])
    if metric == "logit_diff":
        g = g - gradient(tokens.incorrect[i])[1]
    return (g * (torch.stack(a_clean) - a_corrupted) / (C - R)).float()


@pytest.mark.parametrize("family,metric", [("llama", "paper"), ("llama", "logit_diff"), ("gpt2", "paper"),
                                           ("qwen2", "logit_diff")])
def test_traced_attribution_of_one_item_equals_attribute_task(tiny_models, family, metric):
    loaded = tiny_models[family]
    tokens = tokens_of(loaded)
    i = int(np.flatnonzero(tokens.aligned)[0])
    C, R = 0.7, -0.4
    by_hand = traced_item_attribution(loaded, tokens, i, C, R, metric)
    fast = attribution.attribute_task(loaded, tokens, np.array([i]), C, R, metric=metric, heads=False).neurons
    assert by_hand.shape == fast.shape == (loaded.n_layers, loaded.d_ff)
    torch.testing.assert_close(by_hand, fast, rtol=1e-3, atol=1e-4 * float(fast.abs().max()))
    assert fast.abs().max() > 1e-6
    # two items: the library weighs each by 1/(N·(C − R)), so the sum of the traced items over N = 2
    j = int(np.flatnonzero(tokens.aligned)[1])
    pair = attribution.attribute_task(loaded, tokens, np.array([i, j]), C, R, metric=metric, heads=False).neurons
    both = (by_hand + traced_item_attribution(loaded, tokens, j, C, R, metric)) / 2
    torch.testing.assert_close(both, pair, rtol=1e-3, atol=1e-4 * float(pair.abs().max()))


# ------------------------------------------------------------------ the teaching chapter's snippet


def teaching_snippet() -> str:
    """The code of exercise 5 (attribution patching with nnsight) in ``book/teaching.md``."""
    text = (REPO / "book" / "teaching.md").read_text()
    exercise = text[text.index("**Exercise 5 (code).**"):text.index("**Exercise 6.**")]
    blocks = re.findall(r"```python\n(.*?)```", exercise, flags=re.S)
    assert len(blocks) == 1, "exercise 5 has one code block"
    return blocks[0]


def run_snippet(code: str, tmp_path: Path) -> dict:
    path = tmp_path / "exercise5.py"
    path.write_text(code)
    return runpy.run_path(str(path))


def library_view(loaded, clean: str, corrupt: str, answer: str, layer: int, i: int) -> tuple[float, float]:
    """The snippet's two numbers from the library: g·Δa (attribute_task, C − R = 1) and the exact
    change of LP(r, y⁺) when the clean value is patched in (patch_effect)."""
    tok = loaded.tokenizer
    a = tok(answer, add_special_tokens=False).input_ids
    tokens = scoring.TokenizedTask("exercise", "Lan", [tok(clean).input_ids], [tok(corrupt).input_ids], [a], [a])
    flat = layer * loaded.d_ff + i
    scores = attribution.attribute_task(loaded, tokens, np.array([0]), 1.0, 0.0, heads=False).neurons
    exact = attribution.patch_effect(loaded, tokens, np.array([0]), 1.0, 0.0, [np.array([flat])])[0]
    return float(scores.flatten()[flat]), float(exact)


def test_teaching_snippet_runs_and_agrees_with_the_library(tiny_model_dirs, tiny_models, tmp_path, capsys):
    code = teaching_snippet()
    for original in ('load_model("smollm2-135m-instruct")', "layer, i = 20, 123"):
        assert original in code
    tiny = code.replace('load_model("smollm2-135m-instruct")', f'load_model({str(tiny_model_dirs["llama"])!r})')
    tiny = tiny.replace("layer, i = 20, 123", "layer, i = 1, 12")
    names = run_snippet(tiny, tmp_path)
    printed = capsys.readouterr().out
    assert re.search(r"attribution estimate [+-]\d\.\d{5}   exact patching [+-]\d\.\d{5}", printed)
    estimate, exact = library_view(tiny_models["llama"], names["clean"], names["corrupt"], names["y_pos"], 1, 12)
    assert names["estimate"] == pytest.approx(estimate, rel=1e-4, abs=1e-7)
    assert names["exact"] == pytest.approx(exact, rel=1e-4, abs=1e-6)
    assert abs(names["exact"]) > 1e-5, "the patch changed LP(r, y+)"


@pytest.mark.slow
def test_teaching_snippet_as_printed_on_smollm2(tmp_path):
    """The chapter's code unchanged, on the model it names (the embedded SmolLM2)."""
    names = run_snippet(teaching_snippet(), tmp_path)
    estimate, exact = library_view(names["m"], names["clean"], names["corrupt"], names["y_pos"], 20, 123)
    assert names["estimate"] == pytest.approx(estimate, rel=1e-3, abs=1e-7)
    assert names["exact"] == pytest.approx(exact, rel=1e-3, abs=1e-6)
