"""Stage 9 (lesions you can read): the dissociation test, the rules that choose its words and
examples, and the stage end to end on the planted tiny run, resumed after a kill."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from modularity.science import stats
from modularity.showing import charts, findings
from modularity.stages import lesions
from modularity.stages.context import RunContext

from test_localizer import localizer_run  # noqa: F401  (a fixture)


# --------------------------------------------------------------------------- the test


def test_a_planted_double_dissociation_is_found_and_noise_is_not():
    rng = np.random.default_rng(1)
    n = 24
    form = 0.5 + 0.3 * rng.normal(size=n)  # the Language lesion costs more fluency on every prompt
    content = np.full(n, np.nan)
    content[:6] = 1.0  # the D lesion loses D's six keys, the Language lesion none
    planted = stats.dissociation_test(form, content, n_permutations=2000, seed=0)
    assert planted["p"] < 0.01 and planted["form"] > 0 and planted["content"] == pytest.approx(1.0)
    assert planted["n_prompts"] == n and planted["n_content"] == 6
    # Six keyed prompts all +1: only the all-plus sign vector (1 in 64) reaches the observed mean.
    assert 0.005 < planted["p_content"] < 0.03

    null = stats.dissociation_test(rng.normal(size=n), np.where(np.arange(n) < 6, rng.choice([-1.0, 1.0], n), np.nan),
                                   n_permutations=2000, seed=0)
    assert null["p"] > 0.05

    reversed_ = stats.dissociation_test(-form, -content, n_permutations=2000, seed=0)
    assert reversed_["p"] > 0.9, "one-sided: the opposite dissociation is not the predicted one"


def test_without_keyed_prompts_only_fluency_is_tested():
    form = np.linspace(0.1, 1.0, 10)
    out = stats.dissociation_test(form, np.full(10, np.nan), n_permutations=500, seed=0)
    assert np.isnan(out["content"]) and np.isnan(out["p_content"]) and out["n_content"] == 0
    assert out["statistic"] == pytest.approx(out["form"]) and out["p"] == out["p_form"] < 0.01
    with pytest.raises(ValueError, match="aligned"):
        stats.dissociation_test(form, form[:3])


def test_identical_lesions_give_no_evidence():
    out = stats.dissociation_test(np.zeros(8), np.zeros(8), n_permutations=200, seed=0)
    assert out["statistic"] == 0.0 and out["p"] == 1.0


# --------------------------------------------------------------------------- words chosen by rules


ROW = dict(mode="mean", selection="attribution", domain="phys", form=0.8, content=0.6, statistic=1.4,
           p=0.002, p_form=0.01, p_content=0.1, n_prompts=32, n_content=3)


def test_the_dissociation_sentence_claims_each_difference_only_on_its_own_p():
    keyed = {**ROW, "n_content": 6}
    both = findings.dissociation_sentence({**keyed, "p_content": 0.01}, 10_000)
    assert both.startswith("Attribution sets, mean values, Language against Physical reasoning: a double dissociation")
    assert "(p = 0.01, 6 keyed prompts)" in both
    fluency_only = findings.dissociation_sentence(keyed, 10_000)  # the key term alone not beyond chance
    assert "double" not in fluency_only
    assert "costs more fluency than silencing the Physical reasoning units (p = 0.01)" in fluency_only
    assert "does not lose more of the Physical reasoning keys beyond chance (p = 0.1" in fluency_only
    reversed_keys = findings.dissociation_sentence({**keyed, "content": -0.3, "p_content": 0.9}, 10_000)
    assert "go the other way" in reversed_keys and "double" not in reversed_keys
    reversed_fluency = findings.dissociation_sentence({**keyed, "form": -0.8, "p_form": 0.99}, 10_000)
    assert "the fluency difference goes the other way" in reversed_fluency
    few = findings.dissociation_sentence(ROW, 10_000)  # 3 keyed prompts: no p below 0.05 is possible
    assert "cannot be compared" in few and "no p from 3 prompts can fall below 0.05" in few
    none = findings.dissociation_sentence({**ROW, "content": float("nan"), "n_content": 0}, 10_000)
    assert "states the key in none of the Physical reasoning prompts." in none
    assert "no fluency difference" in findings.dissociation_sentence({**ROW, "p_form": 0.4}, 10_000)
    assert "not tested" in findings.dissociation_sentence({**ROW, "statistic": float("nan")}, 10_000)


def test_the_lesion_sentence_calls_a_fluency_cost_only_on_its_p():
    selected = dict(n_neurons=1234, changed=1.0, fluency=-1.333, key_kept=0.4, n_keyed=5, fluency_p=0.001)
    random = dict(n_neurons=1234, changed=0.8, fluency=-0.641, key_kept=0.8, n_keyed=5)
    text = findings.lesion_effect_sentence("Lan", selected, random, 10_000)
    assert "1,234 Language units" in text and "less fluent than the twin's (-1.33 against -0.64" in text
    assert "of the 5 prompts, of every domain, whose key the intact model states, 40% keep it (twin: 80%)" in text
    same = findings.lesion_effect_sentence("Lan", {**selected, "fluency_p": 0.3}, random, 10_000)
    assert "not distinguishable in fluency from" in same
    assert "keep it" not in findings.lesion_effect_sentence("Lan", {**selected, "n_keyed": 0, "key_kept": np.nan}, random)


def outputs_table() -> pd.DataFrame:
    """Two Language prompts, one Formal one; intact, the Language lesion and its twin."""
    rows = []
    for prompt, domain, intact, lesioned in (("Lan/a", "Lan", -0.5, -0.9), ("Lan/b", "Lan", -0.5, -1.5),
                                             ("MD/a", "MD", -0.4, -3.0)):
        rows += [dict(mode="mean", prompt=prompt, prompt_domain=domain, condition="intact", selection="",
                      lesion_domain="", kind="intact", text=f"{prompt} intact", fluency=intact, changed=False,
                      key_stated=1.0, intact_key_stated=1.0),
                 dict(mode="mean", prompt=prompt, prompt_domain=domain, condition="attribution:Lan",
                      selection="attribution", lesion_domain="Lan", kind="selected", text=f"{prompt} lesioned",
                      fluency=lesioned, changed=True, key_stated=0.0, intact_key_stated=1.0),
                 dict(mode="mean", prompt=prompt, prompt_domain=domain, condition="attribution:Lan|random0",
                      selection="attribution", lesion_domain="Lan", kind="layer_matched", text=f"{prompt} random",
                      fluency=intact, changed=False, key_stated=1.0, intact_key_stated=1.0)]
    return pd.DataFrame(rows)


def test_examples_are_chosen_by_the_rule():
    chosen = lesions.choose_examples(outputs_table(), per_lesion=1)
    # Among the Language prompts (not the Formal one, whose fall is larger), the larger fall.
    assert chosen.prompt.tolist() == ["Lan/b"] and chosen.lesioned.iloc[0] == "Lan/b lesioned"
    assert lesions.choose_examples(outputs_table(), per_lesion=2).prompt.tolist() == ["Lan/b", "Lan/a"]
    assert chosen.random.iloc[0] == "Lan/b random"
    unchanged = outputs_table().assign(changed=False)
    assert lesions.choose_examples(unchanged).empty


def test_the_measures_chart_renders():
    df = pd.DataFrame({"domain": ["Language", "Language", "Formal", "Formal"],
                       "set": ["domain's units", "random units"] * 2, "selection": "attribution",
                       "fluency": [-1.3, -0.6, -0.7, -0.7]})
    svg = charts.to_svg(charts.lesion_measures(df, measure="fluency", x_title="fluency", title="t", intact=-0.68))
    assert "<svg" in svg and "Language" in svg


# --------------------------------------------------------------------------- the stage


@pytest.fixture
def lesion_run(localizer_run, monkeypatch):  # noqa: F811
    from modularity.stages import localizer as localizer_stage

    localizer_stage.run(localizer_run)
    monkeypatch.setattr(lesions, "PROMPTS_PER_DOMAIN", 2)
    monkeypatch.setattr(lesions, "NEW_TOKENS", 6)
    return localizer_run


def test_the_stage_end_to_end_and_resumed_after_a_kill(lesion_run, monkeypatch):
    ctx = lesion_run
    from modularity.science import generation

    real, calls = generation.generate, []

    def killed_after_three(*args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(generation, "generate", killed_after_three)
    with pytest.raises(KeyboardInterrupt):
        lesions.run(ctx)
    monkeypatch.setattr(generation, "generate", real)

    result = lesions.run(RunContext.of(ctx.params, ctx.paths.results.parents[3]))
    n_prompts, n_modes = 2 * 4, 2
    assert result.computed["generations"] == n_prompts - 3, "the three finished prompts are read back"
    # Sets: intact, then per selection and domain the set and one random twin (no Physical task here).
    selected = result.sets[result.sets.kind == "selected"]
    assert set(zip(selected.selection, selected.domain)) == {("attribution", d) for d in ("MD", "ToM", "Lan")} | {
        ("localizer", d) for d in ("MD", "ToM", "phys", "Lan")}
    twins = result.sets[result.sets.kind == "layer_matched"].set_index("condition")
    for row in selected.itertuples():
        twin = twins.loc[lesions.condition_name(row.selection, row.domain, "layer_matched")]
        assert twin.n_neurons == row.n_neurons and twin.layers == row.layers
        assert not set(result.neurons[row.condition]) & set(result.neurons[twin.name]), "a twin never overlaps its set"
    units = pd.read_csv(ctx.paths.table("localizer_units.csv"))
    assert set(result.neurons["localizer:Lan"]) == set(units[units.domain == "Lan"].flat)
    assert len(result.outputs) == n_prompts * n_modes * len(result.sets)
    intact = result.outputs[result.outputs.condition == lesions.INTACT]
    assert not intact.changed.any() and intact.fluency.notna().all()
    assert set(result.measures["mode"]) == {"mean", "zero"}
    assert set(result.dissociation.domain) == {"MD", "ToM"} | ({"phys"} if "localizer" in set(result.dissociation.selection) else set())
    assert len(result.language) == n_modes * (len(result.sets) - 1) * 3  # three Language tasks in the planted run
    summary = json.loads(ctx.paths.table("lesion_summary.json").read_text())
    assert summary["computed"]["generations"] == n_prompts - 3 and summary["seconds_per_prompt"] > 0

    again = lesions.run(RunContext.of(ctx.params, ctx.paths.results.parents[3]))
    assert again.computed == {"generations": 0, "language_cells": 0}
    pd.testing.assert_frame_equal(again.outputs, result.outputs)
    pd.testing.assert_frame_equal(again.measures, result.measures)


def test_the_stage_runs_without_the_localizer(localizer_run, monkeypatch):  # noqa: F811
    monkeypatch.setattr(lesions, "PROMPTS_PER_DOMAIN", 1)
    monkeypatch.setattr(lesions, "NEW_TOKENS", 3)
    result = lesions.run(localizer_run)
    assert "stage 07_localizer has not run: no localizer lesions" in result.notes
    assert set(result.sets.selection) == {"", "attribution"}


def test_remote_execution_is_refused_before_anything_loads(localizer_run):  # noqa: F811
    params = {**localizer_run.params, "backend": "nnsight", "remote": True}
    with pytest.raises(ValueError, match="generates on this machine only"):
        lesions.run(RunContext.of(params, localizer_run.paths.results.parents[3]))


def test_sign_flip_p():
    assert stats.sign_flip_p(np.full(8, 0.5), 2000, 0) < 0.01
    assert stats.sign_flip_p(np.array([0.5, np.nan]), 2000, 0) > 0.3  # one value: p about 1/2
    assert np.isnan(stats.sign_flip_p(np.array([np.nan]), 100, 0))
