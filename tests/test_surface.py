"""Domain or surface (book methods §10): task descriptors, the QAP regression against a brute-force
one, planted matrices, the restricted ratios, and the frame-swap generator and test."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm

from modularity.records.params import ParamsError, validate_params
from modularity.science import stats, study, surface
from modularity.science.tasks import generate_task, load_suite
from modularity.science.tasks.frames import FRAMES, reframe, split_variant
from modularity.science.tasks.schema import PromptConfig, TaskData


# --------------------------------------------------------------------------- descriptors

@pytest.mark.parametrize("answer, form", [
    ("704", "number"), ("-2", "number"), ("['-47.0', '-38.9', '9.0']", "number"),
    ("five hundred and seventeen", "number"), ("one thousand, three hundred and two", "number"),
    ("∃x(S(x) ∧ Q(x))", "symbols"), (" herself", "word"), ("Option1", "word"), ("ice cream", "phrase"),
    ("Ali feels joyful", "sentence"), ("Ali believes that the candle is in the bakery.", "sentence"),
])
def test_answer_form(answer, form):
    assert surface.answer_form(answer) == form


def _task(name, domain, problems, answers, **config):
    items = [{"clean_problem": p, "corrupted_problem": p + " (b)", "clean_correct": a, "clean_incorrect": b,
              "corrupted_correct": b, "corrupted_incorrect": a} for p, (a, b) in zip(problems, answers)]
    return TaskData(name=name, domain=domain, config=PromptConfig(path=f"{name}.json", **config), items=items)


def test_describe_task_reads_the_frame_from_config_and_items():
    code = _task("code_A", "MD", ["print(1)", "print(2)", "print(3)"], [("1", "2"), ("2", "3"), ("3", "4")],
                 prefix="You will be given a Python code snippet.\n", suffix="Answer with just the number.")
    row = surface.describe_task(code)
    assert (row["template"], row["opening"], row["closing"], row["fewshot"]) == \
        ("chat", "You will be given", "with just the number.", False)
    assert row["frame"] == "You will be given …" and row["family"] == "code"
    assert row["answer_form"] == "number" and row["vocabulary"] == "1|2|3|4"
    fewshot = _task("norm_moral", "ToM", [f"Context: x{i}. Answer: moral Context: y{i}. Answer:" for i in range(4)],
                    [("moral", "immoral")] * 4)
    row = surface.describe_task(fewshot)
    assert row["fewshot"] and row["frame"] == "few-shot Context/Answer" and row["opening"] == ""
    raw = _task("npi", "Lan", ["No author has had", "Few cats ever"], [(" any", " some"), (" ever", " never")],
                force_base_evaluation=True)
    assert surface.describe_task(raw)["frame"] == "raw text"
    plain = _task("desires_goals", "ToM", ["Ali goes to the gym. What does Ali want?", "Wei sleeps. Why?"],
                  [("Ali wants to exercise", "Ali wants to study"), ("tired", "bored")])
    assert surface.describe_task(plain)["frame"] == surface.PLAIN_CHAT


def test_pair_predictors_follow_the_descriptors():
    rows = pd.DataFrame({
        "domain": ["MD", "MD", "ToM"], "template": ["chat", "chat", "raw"], "opening": ["You will", "", ""],
        "closing": ["", "", ""], "fewshot": [True, True, False], "frame": ["a", "b", "c"],
        "answer_form": ["word", "word", "number"], "vocabulary": ["a|b", "b|c", ""], "prompt_words": [10.0, 20.0, 10.0],
        "family": ["f", "g", "f"]}, index=["MD/x", "MD/y", "ToM/z"])
    p = surface.pair_predictors(rows, ["MD/x", "ToM/z", "MD/y"])
    assert p["same_domain"][0, 2] == 1 and p["same_domain"][0, 1] == 0
    assert p["same_opening"][0, 0] == 1 and p["same_opening"][1, 1] == 0  # a task without an opening shares none
    assert p["answer_overlap"][0, 2] == pytest.approx(1 / 3) and p["answer_overlap"][0, 1] == 0
    assert p["length_similarity"][0, 2] == pytest.approx(-np.log(2)) and p["same_family"][0, 1] == 1
    assert p["both_fewshot"][0, 2] == 1 and p["both_fewshot"][0, 1] == 0
    with pytest.raises(ValueError, match="no surface description"):
        surface.pair_predictors(rows, ["MD/w"])


def test_study_surface_table_is_the_derived_one():
    table = study.task_surface()
    assert len(table) == 46 and table.loc["Lan/npi", "frame"] == "raw text"
    assert table.loc["MD/code_A", "opening"] == table.loc["phys/phys_newton", "opening"] == "You will be given"
    assert (table.loc[[label for label in table.index if label.startswith("MD/add_sub")], "family"] == "arithmetic").all()


# --------------------------------------------------------------------------- the QAP regression

def _random_problem(n=9, seed=0):
    rng = np.random.default_rng(seed)
    labels = [f"{'AB'[i % 2]}/t{i}" for i in range(n)]
    predictors = {}
    for term in ("x1", "x2", "x3"):
        half = rng.normal(size=(n, n))
        predictors[term] = half + half.T
    predictors["x3"] = (predictors["x3"] > 0).astype(float)
    y = 0.5 * predictors["x1"] + rng.normal(size=(n, n))
    return pd.DataFrame(y + y.T, index=labels, columns=labels), predictors


def _brute_force_qap(matrix, predictors, term, permutations, directed=False):
    """Double semi-partialling written out: a statsmodels fit per permutation."""
    n = len(matrix)
    values = matrix.to_numpy()
    cells = ~np.eye(n, dtype=bool) if directed else np.triu(np.ones((n, n), dtype=bool), k=1)
    cells &= np.isfinite(values)
    y = values[cells] if directed else ((values + values.T) / 2)[cells]
    off = ~np.eye(n, dtype=bool)
    others = [t for t in predictors if t != term]
    aux = sm.OLS(predictors[term][off], sm.add_constant(np.column_stack([predictors[t][off] for t in others]))).fit()
    residual = np.zeros((n, n))
    residual[off] = aux.resid
    base = np.column_stack([predictors[t][cells] for t in others])

    def t_of(moved):
        return sm.OLS(y, sm.add_constant(np.column_stack([base, moved[cells]]))).fit().tvalues[-1]

    observed = t_of(residual)
    null = np.array([t_of(residual[np.ix_(p, p)]) for p in permutations])
    full = sm.OLS(y, sm.add_constant(np.column_stack([predictors[t][cells] for t in predictors]))).fit()
    return observed, null, full


@pytest.mark.numerics
@pytest.mark.parametrize("directed", [False, True])
def test_qap_regression_equals_a_brute_force_one(directed):
    matrix, predictors = _random_problem()
    if directed:
        matrix = matrix + np.triu(np.ones_like(matrix.to_numpy()))  # not symmetric
        matrix.iloc[0, 3] = np.nan  # a missing cell is left out
    n_permutations = 200
    fit = qap_regression = surface.qap_regression(matrix, predictors, directed=directed,
                                                  n_permutations=n_permutations, seed=7).set_index("term")
    permutations = stats.permutation_indices(len(matrix), n_permutations, 7)
    for position, term in enumerate(predictors, start=1):
        observed, null, full = _brute_force_qap(matrix, predictors, term, permutations, directed)
        assert fit.loc[term, "t"] == pytest.approx(observed, rel=1e-7)
        assert fit.loc[term, "t"] == pytest.approx(full.tvalues[position], rel=1e-7)
        assert fit.loc[term, "coef"] == pytest.approx(full.params[position], rel=1e-7, abs=1e-12)
        assert fit.loc[term, "se"] == pytest.approx(full.bse[position], rel=1e-7)
        expected_p = (np.sum(np.abs(null) >= abs(observed) * (1 - 1e-9)) + 1) / (n_permutations + 1)
        assert abs(fit.loc[term, "p"] - expected_p) <= 1 / (n_permutations + 1)  # at most one draw at a tie
    assert qap_regression.attrs["r2"] == pytest.approx(full.rsquared, rel=1e-7)


def test_qap_regression_leaves_out_constant_and_collinear_terms():
    matrix, predictors = _random_problem()
    predictors["constant"] = np.ones_like(predictors["x1"])
    predictors["copy"] = 2 * predictors["x1"]
    fit = surface.qap_regression(matrix, predictors, n_permutations=50).set_index("term")
    assert fit.loc["constant", "note"] == "the same for every pair" and np.isnan(fit.loc["constant", "coef"])
    assert fit.loc["copy", "note"] == "determined by the terms before it"
    assert np.isfinite(fit.loc["x1", "p"])


# --------------------------------------------------------------------------- planted matrices

def _planted(domain_effect: float, frame_effect: float, seed: int = 3):
    """16 tasks: 4 domains × 4 frames, each frame holding one task of every domain (so the two are
    crossed); overlap = effects + small noise."""
    rng = np.random.default_rng(seed)
    domains = np.repeat(["MD", "ToM", "phys", "Lan"], 4)
    frames = np.tile(["You will be given", "What is the answer", "Sort these numbers in", "Tell me what you"], 4)
    labels = [f"{d}/task{i}" for i, d in enumerate(domains)]
    descriptors = pd.DataFrame({
        "domain": domains, "template": "chat", "opening": frames, "closing": "", "fewshot": False,
        "frame": [f"{f} …" for f in frames], "answer_form": "word", "vocabulary": "", "prompt_words": 20.0,
        "family": labels}, index=labels)
    same_domain = domains[:, None] == domains[None, :]
    same_frame = frames[:, None] == frames[None, :]
    noise = rng.normal(scale=0.01, size=(16, 16))
    values = 0.05 + domain_effect * same_domain + frame_effect * same_frame + (noise + noise.T) / 2
    return pd.DataFrame(values, index=labels, columns=labels), descriptors


@pytest.mark.parametrize("domain_effect, frame_effect", [(0.0, 0.2), (0.2, 0.0), (0.2, 0.2)])
def test_planted_effects_are_found_and_only_they(domain_effect, frame_effect):
    matrix, descriptors = _planted(domain_effect, frame_effect)
    model = surface.confound_model(matrix, descriptors, n_permutations=2000)
    beside = model[model.model == "domain + surface"].set_index("term")
    assert (beside.loc["same_domain", "p"] < 0.01) == (domain_effect > 0)
    assert (beside.loc["same_opening", "p"] < 0.01) == (frame_effect > 0)
    if domain_effect == 0:
        assert beside.loc["same_domain", "p"] > 0.05
    if frame_effect == 0:
        assert beside.loc["same_opening", "p"] > 0.05
    effect = surface.domain_effect(model)
    assert effect["coef_with_surface"] == pytest.approx(domain_effect, abs=0.02)
    ratios = surface.restricted_ratios(matrix, descriptors, n_permutations=2000).set_index("subset")
    # Among pairs in different frames only the domain can raise within over cross.
    assert (ratios.loc["different frame", "p"] < 0.01) == (domain_effect > 0)
    ari = surface.domain_vs_frame_ari(matrix, descriptors, n_permutations=500).set_index("labels")
    if domain_effect > 0 and frame_effect == 0:
        assert ari.loc["domain", "ari"] == 1.0 and ari.loc["frame", "ari"] < 0.2
    if frame_effect > 0 and domain_effect == 0:
        assert ari.loc["frame", "ari"] == 1.0 and ari.loc["domain", "ari"] < 0.2


def test_restricted_ratios_count_the_pairs_they_keep():
    matrix, descriptors = _planted(0.2, 0.0)
    descriptors["family"] = ["fam0", "fam0"] + list(descriptors.index[2:])  # one cross-frame family pair in MD
    ratios = surface.restricted_ratios(matrix, descriptors, n_permutations=100).set_index("subset")
    # 16 tasks: 24 same-domain pairs, 96 cross; 4 frames of 4 → 24 same-frame pairs, all cross-domain.
    assert ratios.loc["all pairs", ["within_pairs", "cross_pairs"]].tolist() == [24, 96]
    assert ratios.loc["different frame", ["within_pairs", "cross_pairs"]].tolist() == [24, 72]
    assert ratios.loc["different family", ["within_pairs", "cross_pairs"]].tolist() == [23, 96]
    assert ratios.loc["different answer form", "within_pairs"] == 0  # every task answers a word
    assert ratios.loc["different answer form", "note"].startswith("not computed")


# --------------------------------------------------------------------------- the frame-swap suite

@pytest.mark.parametrize("profile", ["small", "paper"])
@pytest.mark.parametrize("name", ["desires_goals", "physics_temperature", "mul_div_2op_symbolic",
                                  "det_noun_agreement_regular", "phys_newton", "code_A"])
def test_reframing_keeps_every_item_field_and_changes_only_the_frame(profile, name):
    task = generate_task(name, profile, n_items=12, seed=0)
    for frame, fields in FRAMES.items():
        framed = reframe(task, frame)
        assert framed.name == f"{name}~{frame}" and framed.domain == task.domain
        assert len(framed.items) == len(task.items)
        for original, copy in zip(task.items, framed.items):
            assert copy.keys() == original.keys()
            for key in original:
                assert copy[key] == original[key], (frame, key)
        for field in ("prefix", "concatenation", "suffix", "force_base_evaluation"):
            assert getattr(framed.config, field) == fields[field]
        assert framed.config.path == task.config.path


def test_frame_keys_in_params_and_suite():
    params = validate_params({"model": "m", "profile": "small", "n_items": 6, "seed": 0, "dtype": "float32",
                              "device": "cpu", "batch_size": 4, "threshold": 0.6,
                              "tasks": ["npi~raw", "npi~instruction", "agent"]})
    suite = load_suite(params)
    assert list(suite) == ["npi~raw", "npi~instruction", "agent"]
    assert suite["npi~raw"].items == suite["npi~instruction"].items
    assert suite["npi~instruction"].label == "Lan/npi~instruction"
    assert split_variant("npi~raw") == ("npi", "raw") and split_variant("npi") == ("npi", None)
    with pytest.raises(ParamsError, match="unknown frame 'poem'"):
        validate_params({**params, "tasks": ["npi~poem"]})
    with pytest.raises(ParamsError, match="unknown task"):
        validate_params({**params, "tasks": ["nip~raw"]})


def _swap_matrix(content_effect: float, frame_effect: float, seed: int = 5):
    rng = np.random.default_rng(seed)
    contents = ["MD/mul", "ToM/goals", "phys/temp", "Lan/det"]
    labels = [f"{c}~{f}" for c in contents for f in ("raw", "chat", "instruction")]
    content = np.array([label.split("~")[0] for label in labels])
    frame = np.array([label.split("~")[1] for label in labels])
    noise = rng.normal(scale=0.01, size=(len(labels),) * 2)
    values = 0.05 + content_effect * (content[:, None] == content[None, :]) \
        + frame_effect * (frame[:, None] == frame[None, :]) + noise
    return pd.DataFrame(values, index=labels, columns=labels)


@pytest.mark.parametrize("directed", [False, True])
@pytest.mark.parametrize("content_effect, frame_effect", [(0.2, 0.0), (0.0, 0.2)])
def test_frame_swap_test_tells_content_from_frame(content_effect, frame_effect, directed):
    fit, cells = surface.frame_swap_test(_swap_matrix(content_effect, frame_effect), directed=directed,
                                         n_permutations=2000)
    fit = fit.set_index("term")
    assert fit.loc["same_content", "note"] == "determined by the terms before it"  # one content per domain
    assert (fit.loc["same_domain", "p"] < 0.01) == (content_effect > 0)
    assert (fit.loc["same_frame", "p"] < 0.01) == (frame_effect > 0)
    cells = cells.set_index("pairs")
    n = 12 * 11 // (1 if directed else 2)
    assert cells.n_pairs.sum() == n
    assert cells.loc["same content, other frame", "n_pairs"] == (24 if directed else 12)
    higher = "same content, other frame" if content_effect else "other content, same frame"
    lower = "other content, same frame" if content_effect else "same content, other frame"
    assert cells.loc[higher, "mean"] > cells.loc[lower, "mean"] + 0.15


def test_no_tasks_describe_to_an_empty_table_with_the_columns():
    empty = surface.describe_tasks([])
    assert empty.empty and empty.index.name == "task" and "frame" in empty.columns


def test_frame_swap_domain_p_permutes_contents_not_variants():
    """Two contents per domain: the same-domain p comes from permuting domain labels over the contents
    (8 contents in 4 domains of 2: 105 pairings, so p ≥ 1/105 however many variants)."""
    rng = np.random.default_rng(3)
    contents = [f"{d}/t{i}" for d in ("MD", "ToM", "phys", "Lan") for i in range(2)]
    labels = [f"{c}~{f}" for c in contents for f in ("raw", "given", "complete")]
    content = np.array([label.split("~")[0] for label in labels])
    domain = np.array([label.split("/")[0] for label in labels])
    noise = rng.normal(scale=0.005, size=(len(labels),) * 2)
    values = 0.02 + 0.6 * (content[:, None] == content[None, :]) + 0.1 * (domain[:, None] == domain[None, :]) + noise
    fit, cells = surface.frame_swap_test(pd.DataFrame(values, index=labels, columns=labels), n_permutations=2000)
    fit = fit.set_index("term")
    assert fit.loc["same_domain", "note"].startswith("p: domain labels permuted over the contents")
    assert 1 / 106 <= fit.loc["same_domain", "p"] < 0.05
    assert fit.loc["same_content", "p"] < 0.01 and fit.loc["same_frame", "p"] > 0.05
    assert cells.set_index("pairs").loc["other content, other frame (same domain)", "n_pairs"] == 4 * 6
