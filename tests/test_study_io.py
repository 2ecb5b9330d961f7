"""Reading the study's own task files as shipped (issue #12): exclusions, strict mode, sampling.

The fixture ``tests/data/study_layout/`` reproduces each defect of the study's files on a few
items (its README lists them); the study's files themselves are never read here.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from modularity.records.params import validate_params
from modularity.records.provenance import update_manifest
from modularity.base.files import REPO_ROOT
from modularity.records.store import RunPaths, task_fingerprints
from modularity.science.tasks import load_suite
from modularity.science.tasks import EXCLUSION_REASONS, TaskDataError, audit_items, excluded_items_lines, generate_suite, item_sources, load_study_data, source_table, subsample_suite, validate_items

LAYOUT = Path(__file__).parent / "data" / "study_layout"
USABLE = ["npi", "wug", "number_sorting", "physics_speed", "phys_newton"]
PARAMS = dict(model="smollm2-135m-instruct", profile="paper", n_items=5, seed=0, dtype="float32", device="cpu",
              batch_size=4, threshold=0.6, tasks=USABLE, data_dir=str(LAYOUT))


def raw(domain: str, name: str) -> list:
    return json.loads((LAYOUT / "data" / domain / name).read_text())


@pytest.fixture(scope="module")
def suite():
    return load_study_data(LAYOUT, tasks=USABLE)


# ------------------------------------------------------------------ exclusions

EXPECTED = {  # task: (entries in the file, {reason: excluded positions}, kept positions)
    "npi": (8, {"duplicate": (3, 6, 7)}, (0, 1, 2, 4, 5)),
    "wug": (5, {"equal_answers": (2, 4)}, (0, 1, 3)),
    "number_sorting": (9, {"not_an_object": (4,), "empty_fields": (2, 3, 6), "broken_swap": (1,),
                           "equal_answers": (8,)}, (0, 5, 7)),
    "physics_speed": (13, {"duplicate": (12,)}, tuple(range(12))),
    "phys_newton": (4, {}, (0, 1, 2, 3)),
}


def test_unusable_items_are_left_out_and_recorded_by_reason(suite):
    assert list(suite) == ["number_sorting", "phys_newton", "physics_speed", "npi", "wug"]  # study CSV order
    for name, (n_in_file, excluded, kept) in EXPECTED.items():
        task = suite[name]
        source = task.source
        assert source.n_in_file == n_in_file, name
        assert source.excluded == excluded, name
        assert list(source.excluded) == [r for r in EXCLUSION_REASONS if r in excluded]  # fixed reason order
        assert source.valid == source.used == kept, name
        entries = raw(task.domain, task.config.path)
        assert task.items == [entries[i] for i in kept], name  # unmodified, in file order
        assert source.file == f"data/{task.domain}/{task.config.path}"
        assert source.n_excluded() == n_in_file - len(kept)


def test_excluded_items_are_one_line_per_task_with_their_reasons(suite):
    assert excluded_items_lines(suite) == [
        "number_sorting (data/MD/number_sorting.json): 6 of 9 entries left out: 1 not an object, "
        "3 a field missing or empty, 1 corrupted answers not the clean ones swapped, 1 equal answers",
        "physics_speed (data/phys/phys_speed.json): 1 of 13 entries left out: 1 duplicate",
        "npi (data/Lan/npi.json): 3 of 8 entries left out: 3 duplicate",
        "wug (data/Lan/wug.json): 2 of 5 entries left out: 2 equal answers",
    ]  # phys_newton left nothing out
    assert excluded_items_lines(generate_suite("small", 3, 0, tasks=["npi"])) == []


def test_source_table_counts_and_first_positions(suite):
    table = source_table(suite, first=2).set_index("task")
    assert list(table.columns) == ["domain", "file", "n_in_file", "n_not_object", "n_empty_fields", "n_broken_swap",
                                   "n_equal_answers", "n_duplicates", "n_valid", "n_used", "first_excluded"]
    row = table.loc["number_sorting"]
    assert (row.n_in_file, row.n_not_object, row.n_empty_fields, row.n_broken_swap, row.n_equal_answers,
            row.n_duplicates, row.n_valid, row.n_used) == (9, 1, 3, 1, 1, 0, 3, 3)
    assert row.first_excluded == "1, 2, …"
    assert table.loc["npi", "n_duplicates"] == 3 and table.loc["npi", "first_excluded"] == "3, 6, …"
    assert table.loc["wug", "first_excluded"] == "2, 4"
    assert table.loc["phys_newton", "first_excluded"] == "" and table.loc["phys_newton", "n_valid"] == 4
    assert (table.n_valid + table.filter(like="n_").drop(columns=["n_in_file", "n_valid", "n_used"]).sum(axis=1)
            == table.n_in_file).all()
    generated = source_table(generate_suite("small", 3, 0, tasks=["npi"]))
    assert generated.loc[0, ["n_in_file", "n_valid", "n_used", "n_duplicates"]].tolist() == [3, 3, 3, 0]


# ------------------------------------------------------------------ strict mode and hard errors

@pytest.mark.parametrize("task,message", [
    ("npi", r"npi.json: item 3: duplicate of item 0; remove one of them"),
    ("wug", r"wug.json: item 2: clean_correct equals clean_incorrect \('ies'\)"),
    ("number_sorting", r"number_sorting.json: item 1: corrupted answers are not the clean ones swapped"),
    ("physics_speed", r"phys_speed.json: item 12: duplicate of item 4"),
])
def test_strict_raises_at_the_first_bad_item_with_the_old_message(task, message):
    with pytest.raises(TaskDataError, match=message):
        load_study_data(LAYOUT, tasks=[task], strict=True)


def test_strict_accepts_a_clean_file_and_validate_items_is_unchanged():
    assert load_study_data(LAYOUT, tasks=["phys_newton"], strict=True)["phys_newton"].source.excluded == {}
    entries = raw("MD", "number_sorting.json")
    for position, message in [(2, "'clean_problem' is empty or not a string"), (3, r"missing key\(s\) \['clean_incorrect'\]"),
                              (4, "expected an object"), (6, "'clean_correct' is empty or not a string")]:
        with pytest.raises(TaskDataError, match=rf"x.json: item 1: {message}"):
            validate_items([entries[0], entries[position]], "number_sorting", "x.json", domain="MD")


@pytest.mark.parametrize("task,error,message", [
    ("subject_verb_agreement", TaskDataError, r"subject_verb_agreement.json: expected a JSON list of items, got dict"),
    ("code_loop", FileNotFoundError, r"code_loop.json: data file of task 'code_loop' .* is missing; restore the file"),
    ("not_a_study_task", TaskDataError, r"not_a_study_task.json: unknown task 'not_a_study_task'; rename it"),
    ("physics_brightness", TaskDataError, r"phys_brightness.json: none of its 2 items is usable \(2 equal_answers\)"),
    ("agent", TaskDataError, r"agent.json: the list of items is empty"),
    ("social_relations", TaskDataError, r"social_relations.json: not valid JSON"),
])
@pytest.mark.parametrize("strict", [False, True])
def test_unusable_files_stop_with_the_file_and_the_fix(task, error, message, strict):
    if task == "physics_brightness" and strict:
        message = r"phys_brightness.json: item 0: clean_correct equals clean_incorrect"
    with pytest.raises(error, match=message) as info:
        load_study_data(LAYOUT, tasks=[task], strict=strict)
    assert str(LAYOUT) in str(info.value)  # the full path of the file


def test_whole_layout_stops_at_an_unusable_file_and_unknown_domain(tmp_path):
    with pytest.raises((TaskDataError, FileNotFoundError)):
        load_study_data(LAYOUT)
    copy = shutil.copytree(LAYOUT, tmp_path / "layout")
    (copy / "config" / "Bio").mkdir()
    (copy / "config" / "Bio" / "config.json").write_text("{}")
    with pytest.raises(TaskDataError, match="unknown domain 'Bio'"):
        load_study_data(copy, tasks=["npi"])


# ------------------------------------------------------------------ sampling

def test_subsample_size_order_determinism_and_seed(suite):
    first = subsample_suite(suite, 5, seed=0)
    speed = first["physics_speed"]
    assert len(speed.items) == 5 and len(speed.source.used) == 5
    assert list(speed.source.used) == sorted(speed.source.used)  # file order kept
    assert set(speed.source.used) <= set(speed.source.valid)
    entries = raw("phys", "phys_speed.json")
    assert speed.items == [entries[i] for i in speed.source.used]
    assert speed.source.valid == suite["physics_speed"].source.valid  # the usable count stays recorded
    assert subsample_suite(suite, 5, seed=0)["physics_speed"].source.used == speed.source.used
    assert subsample_suite(suite, 5, seed=1)["physics_speed"].source.used != speed.source.used
    alone = subsample_suite({"physics_speed": suite["physics_speed"]}, 5, seed=0)
    assert alone["physics_speed"].source.used == speed.source.used  # per-task seed: other tasks do not matter
    twin = subsample_suite({"npi": suite["physics_speed"], "physics_speed": suite["physics_speed"]}, 5, seed=0)
    assert twin["npi"].source.used != twin["physics_speed"].source.used  # each task draws its own sample
    for name in ("npi", "wug", "number_sorting", "phys_newton"):  # 5 or fewer usable items: all kept
        assert first[name].items == suite[name].items and first[name].source.used == suite[name].source.valid
    assert subsample_suite(suite, 100, seed=3)["physics_speed"].items == suite["physics_speed"].items
    assert suite["physics_speed"].source.used == tuple(range(12))  # the input is not changed
    table = item_sources(first)
    assert table[table.task == "physics_speed"].file_index.tolist() == list(speed.source.used)
    assert table[table.task == "physics_speed"].item.tolist() == list(range(5))
    assert len(table) == sum(len(t.items) for t in first.values())


def test_load_suite_reads_data_dir_and_samples_it(tmp_path):
    params = validate_params(PARAMS)
    suite = load_suite(params)
    expected = subsample_suite(load_study_data(LAYOUT, tasks=USABLE), 5, 0)
    assert {n: t.items for n, t in suite.items()} == {n: t.items for n, t in expected.items()}
    assert len(suite["physics_speed"].items) == 5
    assert len(load_suite(params, sample=False)["physics_speed"].items) == 12
    relative = validate_params(dict(PARAMS, data_dir=str(LAYOUT.relative_to(REPO_ROOT))))
    assert load_suite(relative)["physics_speed"].items == suite["physics_speed"].items  # from the repo root
    other_profile = load_suite(dict(params, profile="small"))
    assert other_profile["physics_speed"].items == suite["physics_speed"].items  # profile plays no part
    prints = task_fingerprints(params)
    assert prints == task_fingerprints(dict(params))  # deterministic sample, stable fingerprints
    reseeded = task_fingerprints(dict(params, seed=1))
    assert reseeded["physics_speed"] != prints["physics_speed"]
    assert all(reseeded[n] == prints[n] for n in ("npi", "wug", "number_sorting", "phys_newton"))  # all items used


def test_manifest_records_the_data_source(tmp_path):
    params = validate_params(PARAMS)
    paths = RunPaths.of(params, root=tmp_path)
    update_manifest(paths, params, "01_eval", 1.0)
    update_manifest(paths, params, "02_attribution", 1.0)
    source = json.loads(paths.table("manifest.json").read_text())["data_source"]
    assert source["data_dir"] == str(LAYOUT) and (source["n_items"], source["seed"]) == (5, 0)
    assert source["tasks"]["npi"] == {"file": "data/Lan/npi.json", "n_in_file": 8, "excluded": {"duplicate": 3},
                                      "n_valid": 5, "n_used": 5}
    assert source["tasks"]["physics_speed"]["n_used"] == 5 and source["tasks"]["physics_speed"]["n_valid"] == 12
    assert source["tasks"]["number_sorting"]["excluded"] == {"not_an_object": 1, "empty_fields": 3,
                                                             "broken_swap": 1, "equal_answers": 1}
    generated = validate_params(dict(PARAMS, data_dir=None, n_items=2))
    update_manifest(RunPaths.of(generated, root=tmp_path), generated, "01_eval", 1.0)
    assert "data_source" not in json.loads(paths.table("manifest.json").read_text())


# ------------------------------------------------------------------ audit

def test_audit_finds_the_study_defects_in_the_fixture(suite):
    audit = audit_items(suite).set_index("task")
    assert audit.loc["npi", "n_duplicates"] == 3 and audit.loc["npi", "n_items"] == 8
    assert audit.loc["wug", "n_equal_answers"] == 2
    assert audit.loc["number_sorting", ["n_equal_answers", "n_other_invalid"]].tolist() == [1, 5]
    assert audit.loc["phys_newton", "options_in_suffix"] and audit.loc["phys_newton", "correct_first_share"] == 1.0
    assert audit.loc["physics_speed", "fewshot_frame"] == "Context: … Answer: ×2"
    assert audit.shared_study_frame.tolist().count(True) == 1 and audit.loc["physics_speed", "shared_study_frame"]
    assert (audit.drop(index="phys_newton").correct_first_share == 0).all()


def test_listed_order_reads_the_last_listing_as_whole_words():
    from modularity.science.tasks import PromptConfig, TaskData
    from modularity.science.tasks.study_io import correct_named_first, listed_order

    def item(clean, corrupted, a="moral", b="immoral"):
        return {"clean_problem": clean, "corrupted_problem": corrupted, "clean_correct": a, "clean_incorrect": b,
                "corrupted_correct": b, "corrupted_incorrect": a}

    task = TaskData("t", "ToM", PromptConfig(path="t.json", suffix="Answer {correct_answer} or {incorrect_answer}."))
    leak = item("Is it moral or immoral?", "Is it moral or immoral?")
    assert [listed_order(task, leak, c) for c in ("clean", "corrupted")] == ["correct_first", "correct_first"]
    assert correct_named_first(task, leak)
    plain = TaskData("t", "ToM", PromptConfig(path="t.json"))
    fixed = item("Say moral or immoral. Is it kind?", "Say moral or immoral. Is it cruel?")
    assert [listed_order(plain, fixed, c) for c in ("clean", "corrupted")] == ["correct_first", "foil_first"]
    last = item("Say moral or immoral. Now answer immoral or moral.", "Say moral or immoral. Now answer moral or immoral.")
    assert listed_order(plain, last, "clean") == "foil_first" and listed_order(plain, last, "corrupted") == "foil_first"
    assert listed_order(plain, item("Is it good?", "Is it bad?"), "clean") is None
    assert not correct_named_first(plain, fixed) and not correct_named_first(plain, last)


@pytest.mark.parametrize("profile", ["small", "paper"])
def test_generated_suites_have_none_of_the_study_defects(profile):
    names = ["phys_newton", "phys_prost", "physics_speed", "norm_moral", "logic_syllogism_symbolic", "npi"]
    audit = audit_items(generate_suite(profile, 12, 0, tasks=names)).set_index("task")
    assert (audit[["n_duplicates", "n_equal_answers", "n_other_invalid"]] == 0).all().all()
    assert (audit.correct_first_share == 0).all()  # options, where listed, keep one order in both prompts
    assert not audit.shared_study_frame.any() and not audit.options_in_suffix.any()
    if profile == "paper":
        assert audit.loc["phys_newton", "options_listed_share"] == 1.0  # the options are listed, in a fixed order
