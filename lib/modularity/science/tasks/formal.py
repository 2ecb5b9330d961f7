"""Formal / multiple-demand (MD) tasks: arithmetic, equations, sequences, sorting, logic, code.

Every answer is computed here (never typed), and the tests re-check it independently.
``paper`` follows the study's ranges (three-digit operands, 4–6 element lists, syllogisms);
``small`` keeps the same task and corruption but one-digit numbers, two-element lists and
one-step logic, so that 100–300M models can solve part of it.

In ``small`` every formal task is a raw few-shot completion (``force_base_evaluation``; solved
examples of the same kind, then the query; answers with a leading space). Measured on
SmolLM2-135M-Instruct, the chat-template versions gave both-correct ≈ 0 for every formal task
(the model preferred the same answer string after both prompts). Both candidate answers are named
in both prompts wherever the task has a choice to make (two rules in logic, two keys or indices in
code), so a task cannot be solved by copying the only answer in sight. The accuracies reached are
in each run's eval_summary.csv and in the task chapter of the book.
"""
from __future__ import annotations

import random
import string

from .base import MinimalPair, TaskSpec, two_options
from .number_words import number_to_words
from .schema import PromptConfig

# ---------------------------------------------------------------- arithmetic

_DIGITS_CONCAT = "? Please directly give the final answer written in digits."
_WORDS_CONCAT = "? Please directly give the final answer written in words, not digits."
_ARITH_PREFIX = "What is the answer of "


def _arith_configs(name: str, verbal: bool) -> dict[str, PromptConfig]:
    concat = _WORDS_CONCAT if verbal else _DIGITS_CONCAT
    config = PromptConfig(path=f"{name}.json", prefix=_ARITH_PREFIX, concatenation=concat)
    return {"paper": config, "small": _raw_config(name)}


def _raw_config(name: str) -> PromptConfig:
    """Small profile: raw completion (no chat template), like the Language tasks.

    SmolLM2-135M-Instruct scores a bare answer after its chat template at log-prob ≈ −18 and
    prefers the same answer string after both prompts (both-correct ≈ 0); as a raw few-shot
    completion it follows the pattern (calibration in benchmarks/calibrate_tasks.py).
    """
    return PromptConfig(path=f"{name}.json", force_base_evaluation=True)


def with_shots(build, n_shots: int, separator: str = "\n", answer_prefix: str = " "):
    """Small-profile wrapper: ``n_shots`` solved problems of the same kind, then the query.

    ``build(rng)`` gives a MinimalPair whose problems end where the answer starts ("3 + 4 =").
    Each shot is one side of a fresh pair with its answer written after it, never one of the
    query's two problems (that would show the answer); the query is the pair itself. Both prompts
    share the shots, so they still differ only in the query's detail. Answers get ``answer_prefix``
    (a leading space: they continue the raw text, as in the Language tasks; "" where the answer
    starts a line, as in a REPL transcript). Examples are joined by ``separator`` (one per line; a
    blank line between multi-line code examples).
    """
    def build_pair(rng: random.Random) -> MinimalPair:
        query = build(rng)
        shots = []
        for _ in range(n_shots):
            for _attempt in range(100):
                shot = build(rng)
                side = rng.choice("ab")
                problem = getattr(shot, "problem_" + side)
                if problem not in (query.problem_a, query.problem_b):
                    break  # a solved copy of the query would hand the model its answer
            else:
                raise ValueError("no solved example differs from the query")
            shots.append(f"{problem}{answer_prefix}{getattr(shot, 'answer_' + side)}")
        context = separator.join(shots) + separator
        return MinimalPair(
            context + query.problem_a, answer_prefix + query.answer_a, context + query.problem_b,
            answer_prefix + query.answer_b,
            template_id=f"{n_shots}-shot {query.template_id}", scenario_a=query.scenario_a,
            scenario_b=query.scenario_b, metadata={**query.metadata, "shots": shots},
        )
    return build_pair


_OP_WORDS = {"+": "plus", "-": "minus", "*": "times", "/": "divided by"}


def evaluate_expression(operands: list[int], operators: list[str]) -> int:
    """Value of ``a op b op c`` with * and / before + and - (Python precedence), exact ints only."""
    expression = " ".join(str(x) for pair in zip(operands, operators + [""]) for x in pair if x != "")
    value = eval(expression.replace("/", "//"), {"__builtins__": {}})  # our own digits and operators only
    return int(value)


def _render(operands: list[int], operators: list[str], verbal: bool) -> str:
    words = []
    for i, operand in enumerate(operands):
        words.append(number_to_words(operand) if verbal else str(operand))
        if i < len(operators):
            words.append(_OP_WORDS[operators[i]] if verbal else operators[i])
    return " ".join(words)


def _equals(profile: str, verbal: bool) -> str:
    """What ends the expression: " =" (digits); words end with " equals" in the small profile only."""
    if verbal:
        return " equals" if profile == "small" else ""
    return " ="


def _nearby(rng: random.Random, value: int, low: int, high: int, verbal: bool) -> int:
    """A different operand of the same "shape" (digit count; for words, same tens word)."""
    for _ in range(100):
        if verbal and value >= 20:
            candidate = value - value % 10 + rng.randint(1, 9)  # swap the units word only
        else:
            candidate = rng.randint(max(low, 10 ** (len(str(value)) - 1) if value >= 10 else low),
                                    min(high, 10 ** len(str(value)) - 1))
        if candidate != value and low <= candidate <= high:
            return candidate
    raise RuntimeError(f"no alternative operand near {value}")


def _add_sub(rng: random.Random, profile: str, n_ops: int, verbal: bool) -> MinimalPair:
    low, high = (100, 999) if profile == "paper" else (1, 9)
    while True:
        operands = [rng.randint(low, high) for _ in range(n_ops)]
        operators = [rng.choice("+-") for _ in range(n_ops - 1)]
        if verbal and profile == "paper":
            operands = [x - x % 10 + rng.randint(1, 9) if x % 100 >= 20 else x for x in operands]
        if profile == "small":
            position = n_ops - 1  # the changed detail sits right before the answer
        else:
            position = rng.randrange(n_ops) if n_ops > 2 else 1
        changed = list(operands)
        changed[position] = _nearby(rng, operands[position], low, high, verbal)
        a, b = evaluate_expression(operands, operators), evaluate_expression(changed, operators)
        if min(a, b) >= 0 and a != b:
            break
    sub_task = "addition" if set(operators) == {"+"} else "subtraction" if set(operators) == {"-"} else "mixed"
    render = lambda ops: _render(ops, operators, verbal)  # noqa: E731
    answer = number_to_words if verbal else str
    end = _equals(profile, verbal)
    return MinimalPair(
        render(operands) + end, answer(a), render(changed) + end, answer(b),
        template_id=f"{n_ops}op:{' '.join(operators)}", scenario_a=render(operands), scenario_b=render(changed),
        metadata={"sub_task": sub_task, "operands": [operands, changed], "operators": operators,
                  "values": [a, b], "changed_position": position},
    )


#: Solved examples before the query in the small profile (measured: 4 suffice for a ± b and a × b).
def _small_shots(n_ops: int, verbal: bool) -> int:
    return 4 if n_ops == 2 and not verbal else 8


def _arith(generator, n_ops: int, verbal: bool):
    """Pair builder: the study's single problem for ``paper``; a few-shot completion for ``small``."""
    small = with_shots(lambda rng: generator(rng, "small", n_ops, verbal), _small_shots(n_ops, verbal))
    return lambda rng, profile: small(rng) if profile == "small" else generator(rng, profile, n_ops, verbal)


def _mul_div(rng: random.Random, profile: str, n_ops: int, verbal: bool) -> MinimalPair:
    low, high = (10, 99) if profile == "paper" else (2, 9)
    if profile == "small" and n_ops == 3:
        low, high = 1, 5
    division = rng.random() < 0.5
    if division and n_ops == 2:
        # a = d1*d2; "a / d1" = d2 and "a / d2" = d1: the corruption swaps the divisor.
        d1, d2 = rng.sample(range(low, high + 1), 2)
        operands, changed, operators = [d1 * d2, d1], [d1 * d2, d2], ["/"]
    elif division:
        # a * b / c with c dividing a: corrupt b, the quotient stays exact.
        c = rng.randint(2, 9 if profile == "paper" else 3)
        k = rng.randint(max(2, low // c), max(2, high // c))
        b = rng.randint(low, high)
        operands, operators = [c * k, b, c], ["*", "/"]
        changed = [c * k, _nearby(rng, b, low, high, verbal), c]
    else:
        operands = [rng.randint(low, high) for _ in range(n_ops)]
        operators = ["*"] * (n_ops - 1)
        position = n_ops - 1 if profile == "small" else rng.randrange(n_ops)
        changed = list(operands)
        changed[position] = _nearby(rng, operands[position], low, high, verbal)
    a, b = evaluate_expression(operands, operators), evaluate_expression(changed, operators)
    if a == b:
        return _mul_div(rng, profile, n_ops, verbal)
    render = lambda ops: _render(ops, operators, verbal)  # noqa: E731
    answer = number_to_words if verbal else str
    end = _equals(profile, verbal)
    return MinimalPair(
        render(operands) + end, answer(a), render(changed) + end, answer(b),
        template_id=f"{n_ops}op:{' '.join(operators)}", scenario_a=render(operands), scenario_b=render(changed),
        metadata={"sub_task": "division" if "/" in operators else "multiplication",
                  "operands": [operands, changed], "operators": operators, "values": [a, b]},
    )


# ---------------------------------------------------------------- equation, sequence, sorting

def _small_equation_query(rng: random.Random) -> MinimalPair:
    """x + b = c with one-digit b, x and c; the right-hand side changes, so x changes."""
    letter = rng.choice("abcdefghjkmnpqrstuvwxyz")
    const = rng.randint(1, 5)
    x, x2 = rng.sample(range(0, 10 - const), 2)
    show = lambda value: f"{letter} + {const} = {value + const}, so {letter} ="  # noqa: E731
    return MinimalPair(
        show(x), str(x), show(x2), str(x2), template_id="x + b = c", scenario_a=show(x), scenario_b=show(x2),
        metadata={"variable": letter, "coefficient": 1, "constant": const, "right_hand_sides": [x + const, x2 + const]},
    )


_small_equation = with_shots(_small_equation_query, 6)


def _simple_equation(rng: random.Random, profile: str) -> MinimalPair:
    if profile == "small":
        return _small_equation(rng)
    letter = rng.choice("abcdefghjkmnpqrstuvwxyz")
    coef, const = rng.randint(2, 9), rng.randint(1, 20)
    x = rng.randint(10, 30)
    x2 = x + rng.choice([-1, 1])
    lhs = f"{coef}*{letter} + {const}"
    template = "a*x + b = c"
    c1, c2 = coef * x + const, coef * x2 + const
    text = "Find the value of {l} in the equation: {lhs} = {c}"
    return MinimalPair(
        text.format(l=letter, lhs=lhs, c=c1), str(x), text.format(l=letter, lhs=lhs, c=c2), str(x2),
        template_id=template, scenario_a=f"{lhs} = {c1}", scenario_b=f"{lhs} = {c2}",
        metadata={"variable": letter, "coefficient": coef, "constant": const, "right_hand_sides": [c1, c2]},
    )


_SEQUENCE_QUESTIONS = [
    "Complete the sequence: {s}\nWhich number replaces the question mark? Answer with the number only.",
    "Here is a number pattern: {s}\nWhat is the missing number? Answer with the number only.",
    "Find the missing number in the sequence {s}\nAnswer with the number only.",
]


def _small_sequence_query(rng: random.Random) -> MinimalPair:
    """Five one-digit terms rising by 1 or 2; the "?" sits in the middle (a) or at the end (b)."""
    while True:
        start, step = rng.randint(0, 9), rng.choice([1, 2])
        terms = [start + i * step for i in range(5)]
        if terms[-1] <= 9:
            break
    gap = rng.randrange(1, 4)
    show = lambda missing: ", ".join("?" if i == missing else str(t) for i, t in enumerate(terms)) + ". ? ="  # noqa: E731
    return MinimalPair(
        show(gap), str(terms[gap]), show(4), str(terms[-1]), template_id=f"gap{gap}->last",
        scenario_a=show(gap), scenario_b=show(4), metadata={"terms": terms, "missing_positions": [gap, 4], "step": step},
    )


_small_sequence = with_shots(_small_sequence_query, 4)


def _number_sequence(rng: random.Random, profile: str) -> MinimalPair:
    if profile == "small":
        return _small_sequence(rng)
    while True:
        if profile == "paper":
            start, step, length = rng.randint(-20, 20), rng.choice([-3, -2, -1, 1, 2, 3]), 5
        else:
            # one-digit terms only, so "?" and the number it hides are one token each
            start, step, length = rng.randint(0, 9), rng.choice([-3, -2, -1, 1, 2, 3]), rng.choice([4, 5])
        terms = [start + i * step for i in range(length)]
        if profile == "paper" or all(0 <= t <= 9 for t in terms):
            break
    gap = rng.randrange(1, length - 1)
    question = rng.choice(_SEQUENCE_QUESTIONS)

    def show(missing: int) -> str:
        return question.format(s=", ".join("?" if i == missing else str(t) for i, t in enumerate(terms)))

    return MinimalPair(
        show(gap), str(terms[gap]), show(length - 1), str(terms[-1]),
        template_id=f"{_SEQUENCE_QUESTIONS.index(question)}:gap{gap}->last", scenario_a=show(gap),
        scenario_b=show(length - 1), metadata={"terms": terms, "missing_positions": [gap, length - 1], "step": step},
    )


_SORT_INSTRUCTIONS = (
    "\nPlease follow the instruction below:\n## 1. Let all your answers be a list of numbers. Instead of reporting"
    " your answer as -69, -13, 1, 7, 11, 43, 59, 61, use ['-69', '-13', '1', '7', '11', '43', '59', '61'] instead\n"
    "## 2. Convert all numbers in the square brackets as strings. For example, ['-69', '-13', '1', '7', '11', '43',"
    " '59', '61']\n"
)


def _small_sorting_query(rng: random.Random) -> MinimalPair:
    """Two one-digit numbers; "smallest to largest" vs "largest to smallest" (same words, reordered)."""
    shown = [str(v) for v in rng.sample(range(1, 10), 2)]
    ascending = sorted(shown, key=int)
    text = "Sort " + ", ".join(shown) + " from {order}:"
    up, down = text.format(order="smallest to largest"), text.format(order="largest to smallest")
    return MinimalPair(
        up, ", ".join(ascending), down, ", ".join(ascending[::-1]), template_id="2 numbers",
        scenario_a=", ".join(shown), scenario_b=", ".join(shown), metadata={"numbers": shown},
    )


_small_sorting = with_shots(_small_sorting_query, 4)


def _number_sorting(rng: random.Random, profile: str) -> MinimalPair:
    if profile == "small":
        return _small_sorting(rng)
    count = rng.randint(3, 5)
    values = rng.sample([x / 10 for x in range(-500, 501)], count)
    shown = [f"{v:.1f}" for v in values]
    key = {s: v for s, v in zip(shown, values)}
    ascending = sorted(shown, key=key.get)
    text = "Sort these numbers in {order} order: " + ", ".join(shown) + _SORT_INSTRUCTIONS
    fmt = lambda xs: "[" + ", ".join(f"'{x}'" for x in xs) + "]"  # noqa: E731
    return MinimalPair(
        text.format(order="ascending"), fmt(ascending), text.format(order="descending"), fmt(ascending[::-1]),
        template_id=f"{len(shown)} numbers", scenario_a=", ".join(shown), scenario_b=", ".join(shown),
        metadata={"numbers": shown},
    )


# ---------------------------------------------------------------- logic

_CATEGORIES = [("florist", "florists"), ("chef", "chefs"), ("actor", "actors"), ("painter", "painters"),
               ("doctor", "doctors"), ("pilot", "pilots"), ("singer", "singers"), ("farmer", "farmers"),
               ("dancer", "dancers"), ("lawyer", "lawyers"), ("sailor", "sailors"), ("poet", "poets"),
               ("baker", "bakers"), ("nurse", "nurses"), ("teacher", "teachers"), ("driver", "drivers"),
               ("artist", "artists"), ("writer", "writers"), ("hiker", "hikers"), ("student", "students")]

#: Forms of categorical statements: (English, first-order logic) templates over subject s and predicate p.
_FORMS = {
    "A": ("All {s} are {p}.", "∀x({S}(x) → {P}(x))"),
    "E": ("No {s} are {p}.", "∀x({S}(x) → ¬{P}(x))"),
    "I": ("Some {s} are {p}.", "∃x({S}(x) ∧ {P}(x))"),
    "O": ("Some {s} are not {p}.", "∃x({S}(x) ∧ ¬{P}(x))"),
}
_CONTRADICTORY = {"A": "O", "O": "A", "E": "I", "I": "E"}

#: The 15 syllogisms valid without existential import: name → (figure, mood).
VALID_SYLLOGISMS = {
    "Barbara": (1, "AAA"), "Celarent": (1, "EAE"), "Darii": (1, "AII"), "Ferio": (1, "EIO"),
    "Cesare": (2, "EAE"), "Camestres": (2, "AEE"), "Festino": (2, "EIO"), "Baroco": (2, "AOO"),
    "Disamis": (3, "IAI"), "Datisi": (3, "AII"), "Bocardo": (3, "OAO"), "Ferison": (3, "EIO"),
    "Camenes": (4, "AEE"), "Dimaris": (4, "IAI"), "Fresison": (4, "EIO"),
}
# Premise term order per figure: (major premise, minor premise) as (subject, predicate) of S, M, P.
_FIGURE_TERMS = {1: (("M", "P"), ("S", "M")), 2: (("P", "M"), ("S", "M")),
                 3: (("M", "P"), ("M", "S")), 4: (("P", "M"), ("M", "S"))}


def _syllogism(rng: random.Random):
    name = rng.choice(sorted(VALID_SYLLOGISMS))
    figure, mood = VALID_SYLLOGISMS[name]
    terms = dict(zip("SMP", rng.sample(_CATEGORIES, 3)))
    (maj_s, maj_p), (min_s, min_p) = _FIGURE_TERMS[figure]
    premises = [(mood[0], maj_s, maj_p), (mood[1], min_s, min_p)]
    conclusion = (mood[2], "S", "P")
    invalid = (_CONTRADICTORY[mood[2]], "S", "P")
    return name, terms, premises, conclusion, invalid


def _english(statement, terms) -> str:
    form, s, p = statement
    return _FORMS[form][0].format(s=terms[s][1], p=terms[p][1])


def _fol(statement, letters) -> str:
    form, s, p = statement
    return _FORMS[form][1].format(S=letters[s], P=letters[p])


_SYLLOGISM_PREFIX = ("You will be given logical premises and a conclusion. Determine whether the conclusion logically"
                     " follows from the premises alone. Do not use real-world knowledge. Answer only Yes or No.\n")


def _two_rules(rng: random.Random, rules: list[tuple[str, str]], render, fact: str, template: str,
               meta: dict) -> MinimalPair:
    """The small-profile logic pair: two rules "if X then Y", a fact X; conclude Y.

    ``rules`` are (antecedent, consequent) keys; the fact fires ``rules[0]``. The corrupted side
    swaps the two consequents, so the same fact now licenses the other conclusion, and both
    prompts hold the same words in a different order (equal token counts). The fired rule is
    listed first or second at random, so neither position nor recency gives the answer away.
    ``render(rules_in_order, fact)`` writes the problem; the answer is the fired consequent.
    """
    (x, y), (z, w) = rules
    swapped = [(x, w), (z, y)]
    order = [0, 1] if rng.random() < 0.5 else [1, 0]
    side_a, side_b = [rules[i] for i in order], [swapped[i] for i in order]
    return MinimalPair(
        render(side_a, fact), y, render(side_b, fact), w, template_id=template,
        scenario_a=render(side_a, fact), scenario_b=render(side_b, fact),
        metadata={**meta, "rules": [[list(r) for r in side_a], [list(r) for r in side_b]], "fact": fact,
                  "fired_position": order.index(0)},
    )


#: Categories without a leading vowel, so "is a" never hints at the answer.
_CONSONANT_CATEGORIES = [c for c in _CATEGORIES if c[0][0] not in "aeiou"]
_NAMES = ["Ali", "Wei", "Sam", "Noor", "Ravi", "Zara", "Hana", "Leo", "Maya", "Omar"]


def _small_syllogism_query(rng: random.Random) -> MinimalPair:
    (a, _), (b, _), (c, _), (d, _) = rng.sample(_CONSONANT_CATEGORIES, 4)
    person = rng.choice(_NAMES)
    plural = dict(_CONSONANT_CATEGORIES)

    def render(rules, fact):
        said = " ".join(f"All {plural[s]} are {plural[p]}." for s, p in rules)
        return f"{said} {person} is a {fact}. So {person} is a"
    return _two_rules(rng, [(a, b), (c, d)], render, a, "two rules, one fires", {"sub_task": "instantiation"})


_small_syllogism = with_shots(_small_syllogism_query, 4)


def _small_fol_query(rng: random.Random) -> MinimalPair:
    f, g, h, k = rng.sample(string.ascii_uppercase, 4)
    const = rng.choice("abcde")

    def render(rules, fact):
        said = " ".join(f"∀x({s}(x) → {p}(x))." for s, p in rules)
        return f"{said} {fact}({const}). Therefore"
    pair = _two_rules(rng, [(f, g), (h, k)], render, f, "two rules, one fires", {"sub_task": "instantiation"})
    return MinimalPair(pair.problem_a, f"{pair.answer_a}({const})", pair.problem_b, f"{pair.answer_b}({const})",
                       pair.template_id, pair.scenario_a, pair.scenario_b, {**pair.metadata, "constant": const})


_small_fol = with_shots(_small_fol_query, 4)


def _logic_syllogism_1(rng: random.Random, profile: str) -> MinimalPair:
    if profile == "small":
        return _small_syllogism(rng)
    name, terms, premises, conclusion, invalid = _syllogism(rng)
    given = " ".join(_english(p, terms) for p in premises)
    text = "Premises: {g}\nConclusion: {c}\nDoes the conclusion follow?"
    good, bad = _english(conclusion, terms), _english(invalid, terms)
    meta = {"sub_task": name, "premise_forms": [p[0] for p in premises], "figure": VALID_SYLLOGISMS[name][0]}
    return MinimalPair(
        text.format(g=given, c=good), "Yes", text.format(g=given, c=bad), "No",
        template_id=f"figure {meta['figure']}", scenario_a=good, scenario_b=bad,
        metadata={**meta, "premises": [_english(p, terms) for p in premises], "conclusions": [good, bad]},
    )


def _logic_syllogism_symbolic(rng: random.Random, profile: str) -> MinimalPair:
    if profile == "small":
        return _small_fol(rng)
    name, _, premises, conclusion, invalid = _syllogism(rng)
    letters = dict(zip("SMP", rng.sample(string.ascii_uppercase, 3)))
    given = " ".join(_fol(p, letters) + "." for p in premises)
    good, bad = _fol(conclusion, letters), _fol(invalid, letters)
    first, second = two_options(rng, good, bad)
    text = "Given: {g} Which of the following is {w}? {o1} or {o2}?"
    return MinimalPair(
        text.format(g=given, w="right", o1=first, o2=second), good,
        text.format(g=given, w="wrong", o1=first, o2=second), bad,
        template_id=f"figure {VALID_SYLLOGISMS[name][0]}", scenario_a=given, scenario_b=given,
        metadata={"sub_task": name, "options": [first, second]},
    )


_GROUPS = ["judges", "pilots", "farmers", "singers", "doctors", "sailors", "bakers", "poets", "lawyers", "nurses"]
_PROPERTIES = ["brave", "rich", "happy", "tall", "kind", "busy", "calm", "tired", "strong", "quiet", "young", "wise"]


def _small_modus_ponens_query(rng: random.Random) -> MinimalPair:
    person = rng.choice(_NAMES)
    p, q, r, t = rng.sample(_PROPERTIES, 4)

    def render(rules, fact):
        said = " ".join(f"If {person} is {a}, then {person} is {b}." for a, b in rules)
        return f"{said} {person} is {fact}. So {person} is"
    return _two_rules(rng, [(p, q), (r, t)], render, p, "modus ponens, two rules", {"sub_task": "modus_ponens"})


_small_modus_ponens = with_shots(_small_modus_ponens_query, 4)


def _small_symbolic_ponens_query(rng: random.Random) -> MinimalPair:
    p, q, r, t = rng.sample("ABCDEFGHJKLMNPQRSTUVWXYZ", 4)

    def render(rules, fact):
        return " ".join(f"{a} → {b}." for a, b in rules) + f" {fact}. Therefore"
    return _two_rules(rng, [(p, q), (r, t)], render, p, "modus ponens, two rules", {"sub_task": "modus_ponens"})


_small_symbolic_ponens = with_shots(_small_symbolic_ponens_query, 4)


def _logic_propositional_1(rng: random.Random, profile: str) -> MinimalPair:
    if profile == "small":
        return _small_modus_ponens(rng)
    group = rng.choice(_GROUPS)
    adj_p, adj_q = rng.sample(_PROPERTIES, 2)
    says = lambda adj, neg=False: f"{group} are {'not ' if neg else ''}{adj}"  # noqa: E731
    rule = rng.choice(["modus_ponens", "modus_tollens", "disjunctive"])
    if rule == "modus_ponens":
        premises = [f"If {says(adj_p)}, then {says(adj_q)}.", f"{says(adj_p).capitalize()}."]
        formulas, good_f = ["p -> q", "p"], "q"
        good, bad = says(adj_q), says(adj_q, neg=True)
    elif rule == "modus_tollens":
        premises = [f"If {says(adj_p)}, then {says(adj_q)}.", f"{says(adj_q, neg=True).capitalize()}."]
        formulas, good_f = ["p -> q", "~q"], "~p"
        good, bad = says(adj_p, neg=True), says(adj_p)
    else:
        premises = [f"Either {says(adj_p)} or {says(adj_q)}.", f"{says(adj_p, neg=True).capitalize()}."]
        formulas, good_f = ["p | q", "~p"], "q"
        good, bad = says(adj_q), says(adj_q, neg=True)
    bad_f = good_f[1:] if good_f.startswith("~") else "~" + good_f
    first, second = two_options(rng, good, bad)
    text = " ".join(premises) + " Which of the following is {w}? {o1} or {o2}?"
    return MinimalPair(
        text.format(w="right", o1=first, o2=second), good, text.format(w="wrong", o1=first, o2=second), bad,
        template_id=rule, scenario_a=" ".join(premises), scenario_b=" ".join(premises),
        metadata={"sub_task": rule, "options": [first, second], "premise_formulas": formulas, "atoms": {"p": says(adj_p), "q": says(adj_q)},
                  "option_formulas": {good: good_f, bad: bad_f}},
    )


def _logic_propositional_symbolic(rng: random.Random, profile: str) -> MinimalPair:
    if profile == "small":
        return _small_symbolic_ponens(rng)
    p, q = rng.sample("ABCDEFGHJKLMNPQRSTUVWXYZ", 2)
    p_neg, q_neg = (rng.random() < 0.5 for _ in range(2))
    lit = lambda atom, neg: ("¬" if neg else "") + atom  # noqa: E731
    rule = rng.choice(["modus_ponens", "modus_tollens", "disjunctive"])
    P, Q = lit(p, p_neg), lit(q, q_neg)
    notP, notQ = lit(p, not p_neg), lit(q, not q_neg)
    if rule == "modus_ponens":
        premises, good, bad = [f"{P} → {Q}", P], Q, notQ
    elif rule == "modus_tollens":
        premises, good, bad = [f"{P} → {Q}", notQ], notP, P
    else:
        premises, good, bad = [f"{P} ∨ {Q}", notP], Q, notQ
    good_first = rng.random() < 0.5
    opt1, opt2 = (good, bad) if good_first else (bad, good)
    good_label, bad_label = ("Option1", "Option2") if good_first else ("Option2", "Option1")
    text = ". ".join(premises) + ". Which is {w}? Option1: {o1}. Option2: {o2}."
    return MinimalPair(
        text.format(w="right", o1=opt1, o2=opt2), good_label, text.format(w="wrong", o1=opt1, o2=opt2), bad_label,
        template_id=rule, scenario_a=". ".join(premises), scenario_b=". ".join(premises),
        metadata={"sub_task": rule, "options": {"Option1": opt1, "Option2": opt2}},
    )


# ---------------------------------------------------------------- code

_CODE_PREFIX = "You will be given a Python code snippet. Determine what it prints. Answer with just the {what}.\n"


def _code_config(name: str, what: str) -> dict[str, PromptConfig]:
    config = PromptConfig(path=f"{name}.json", prefix=_CODE_PREFIX.format(what=what))
    return {"paper": config, "small": _raw_config(name)}


def _small_code(build):
    """Small profile: a raw few-shot completion; each example is a snippet, then "Output:" and what it prints.

    ``build(rng, "small")`` gives the fenced pair of the chat version; the snippet is reused verbatim.
    """
    def query(rng: random.Random) -> MinimalPair:
        pair = build(rng, "small")
        unfence = lambda problem: problem.split("```python\n", 1)[1].split("\n```", 1)[0] + "\nOutput:"  # noqa: E731
        return MinimalPair(unfence(pair.problem_a), pair.answer_a, unfence(pair.problem_b), pair.answer_b,
                           pair.template_id, pair.scenario_a, pair.scenario_b, pair.metadata)
    return with_shots(query, 3, separator="\n\n")


def _code_task(build):
    small = _small_code(build)
    return lambda rng, profile: small(rng) if profile == "small" else build(rng, profile)


def _fence(code: str) -> str:
    return f"```python\n{code}\n```\nWhat does this code print?"


def run_snippet(code: str) -> str:
    """What a generated snippet prints (stripped). Our own code only: no input, no imports."""
    import contextlib
    import io

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        exec(code, {"__builtins__": {"print": print, "range": range, "len": len}})  # noqa: S102
    return buffer.getvalue().strip()


def _code_pair(code_a: str, code_b: str, template: str, meta: dict) -> MinimalPair:
    out_a, out_b = run_snippet(code_a), run_snippet(code_b)
    if out_a == out_b:
        raise ValueError("degenerate code pair")  # caught by the retry loop
    return MinimalPair(_fence(code_a), out_a, _fence(code_b), out_b, template_id=template,
                       scenario_a=code_a, scenario_b=code_b, metadata=meta)


_WORD_PAIRS = [("left", "right"), ("yes", "no"), ("up", "down"), ("on", "off"), ("red", "blue"), ("cat", "dog"),
               ("hot", "cold"), ("win", "lose"), ("open", "closed"), ("day", "night")]
_WORDS = ["apple", "tiger", "river", "violin", "guitar", "harp", "piano", "lemon", "cloud", "stone", "chair", "bread",
          "horse", "candle", "garden", "rocket", "pencil", "window", "orange", "forest", "island", "silver"]


#: Words that are one SmolLM2 token without a leading space (inside quotes), so swaps keep lengths equal.
_ONE_TOKEN_WORDS = ["apple", "river", "stone", "chair", "bread", "horse", "window", "orange"]


def _code_a(rng: random.Random, profile: str) -> MinimalPair:
    yes, no = rng.choice(_WORD_PAIRS)
    kind = rng.choice(["membership"] if profile == "small" else ["modulo", "length", "membership"])
    if kind == "modulo":
        mod, num = rng.randint(3, 7), rng.randint(10, 99)
        r_true = num % mod
        r_false = rng.choice([r for r in range(mod) if r != r_true])
        body = "def f(num):\n    if num % {m} == {r}:\n        return \"{y}\"\n    return \"{n}\"\nprint(f({x}))"
        fill = lambda r: body.format(m=mod, r=r, y=yes, n=no, x=num)  # noqa: E731
        return _code_pair(fill(r_true), fill(r_false), "modulo", {"sub_task": "modulo"})
    if kind == "length":
        word = rng.choice(_WORDS)
        limit_true = rng.randint(1, len(word) - 1)
        limit_false = rng.randint(len(word), 9)
        body = "def f(s):\n    if len(s) > {k}:\n        return \"{y}\"\n    return \"{n}\"\nprint(f(\"{w}\"))"
        fill = lambda k: body.format(k=k, y=yes, n=no, w=word)  # noqa: E731
        return _code_pair(fill(limit_true), fill(limit_false), "length", {"sub_task": "length"})
    pool = _ONE_TOKEN_WORDS if profile == "small" else _WORDS
    items = rng.sample(pool, 2 if profile == "small" else 4)
    present, absent = items[0], rng.choice([w for w in pool if w not in items])
    body = "def f(x):\n    if x in {lst}:\n        return \"{y}\"\n    return \"{n}\"\nprint(f(\"{q}\"))"
    shuffled = rng.sample(items, len(items))
    fill = lambda q: body.format(lst=shuffled, y=yes, n=no, q=q)  # noqa: E731
    return _code_pair(fill(present), fill(absent), "membership", {"sub_task": "membership"})


def _code_b(rng: random.Random, profile: str) -> MinimalPair:
    size = 2 if profile == "small" else rng.randint(4, 6)
    words = rng.sample(_WORDS, size)
    i, j = rng.sample(range(size), 2)
    if rng.random() < 0.5:
        body = "words = \"{s}\".split()\nprint(words[{k}])"
        fill = lambda k: body.format(s=" ".join(words), k=k)  # noqa: E731
        return _code_pair(fill(i), fill(j), "split", {"sub_task": "string_split"})
    keys = rng.sample(list("abcdefgh"), size)
    table = "{" + ", ".join(f"\"{k}\": \"{w}\"" for k, w in zip(keys, words)) + "}"
    body = "d = {t}\nprint(d[\"{k}\"])"
    fill = lambda k: body.format(t=table, k=keys[k])  # noqa: E731
    return _code_pair(fill(i), fill(j), "dict", {"sub_task": "dict_lookup"})


def _code_conditional(rng: random.Random, profile: str) -> MinimalPair:
    low, high = (10, 99) if profile == "paper" else (1, 9)
    value, threshold = rng.sample(range(low, high + 1), 2)
    yes, no = rng.choice([("pass", "fail"), ("yes", "no"), ("high", "low"), ("go", "stop")])
    var = rng.choice("xyzn")
    body = "{v} = {x}\nif {v} {c} {t}:\n    print(\"{y}\")\nelse:\n    print(\"{n}\")"
    fill = lambda c: body.format(v=var, x=value, c=c, t=threshold, y=yes, n=no)  # noqa: E731
    return _code_pair(fill("<"), fill(">"), "compare", {"sub_task": "comparison"})


def _code_list(rng: random.Random, profile: str) -> MinimalPair:
    size = 2 if profile == "small" else rng.randint(4, 6)
    items = rng.sample(_WORDS, size)
    i, j = rng.sample(range(size), 2)
    body = "items = {lst}\nprint(items[{k}])"
    return _code_pair(body.format(lst=items, k=i), body.format(lst=items, k=j), f"list{size}", {"sub_task": "index"})


def _code_loop(rng: random.Random, profile: str) -> MinimalPair:
    total, k = rng.choice(["total", "count", "acc", "result", "s"]), rng.choice("kijn")
    if profile == "paper":
        step = rng.randint(1, 5)
        n1, n2 = rng.sample(range(2, 10), 2)
        body = "{t} = 0\nfor {k} in range({n}):\n    {t} += {k} * {s}\nprint({t})"
        template = "sum k*s"
    else:
        # += 2, not += 1: with += 1 the printed total equals the range() argument, so copying the one
        # number in sight would solve the item (reports.copy_solvable_share)
        step = 2
        n1, n2 = rng.sample(range(1, 5), 2)
        body = "{t} = 0\nfor {k} in range({n}):\n    {t} += {s}\nprint({t})"
        template = "count by s"
    fill = lambda n: body.format(t=total, k=k, n=n, s=step)  # noqa: E731
    return _code_pair(fill(n1), fill(n2), template, {"sub_task": "accumulate"})


def _plain(name: str, prefix: str = "", concatenation: str = "", suffix: str = "") -> dict[str, PromptConfig]:
    config = PromptConfig(path=f"{name}.json", prefix=prefix, concatenation=concatenation, suffix=suffix)
    return {"paper": config, "small": config}


def _small_raw(configs: dict[str, PromptConfig]) -> dict[str, PromptConfig]:
    """Keep the paper config; the small profile is a raw few-shot completion."""
    return {"paper": configs["paper"], "small": _raw_config(configs["paper"].path.removesuffix(".json"))}


_REPLY_SUFFIX = " Reply with only the chosen statement, no other words."

SPECS: dict[str, TaskSpec] = {
    spec.name: spec
    for spec in [
        TaskSpec("add_sub_2op_symbolic", "MD", _arith(_add_sub, 2, False),
                 _arith_configs("add_sub_2op_symbolic", False), "a ± b in digits; one operand changes."),
        TaskSpec("add_sub_2op_verbal", "MD", _arith(_add_sub, 2, True),
                 _arith_configs("add_sub_2op_verbal", True), "a ± b in words; answer in words."),
        TaskSpec("add_sub_3op_symbolic", "MD", _arith(_add_sub, 3, False),
                 _arith_configs("add_sub_3op_symbolic", False), "a ± b ± c in digits."),
        TaskSpec("add_sub_3op_verbal", "MD", _arith(_add_sub, 3, True),
                 _arith_configs("add_sub_3op_verbal", True), "a ± b ± c in words."),
        TaskSpec("mul_div_2op_symbolic", "MD", _arith(_mul_div, 2, False),
                 _arith_configs("mul_div_2op_symbolic", False), "a × b or a ÷ b in digits."),
        TaskSpec("mul_div_2op_verbal", "MD", _arith(_mul_div, 2, True),
                 _arith_configs("mul_div_2op_verbal", True), "a times b / divided by, in words."),
        TaskSpec("mul_div_3op_symbolic", "MD", _arith(_mul_div, 3, False),
                 _arith_configs("mul_div_3op_symbolic", False), "a × b × c (or a × b ÷ c) in digits."),
        TaskSpec("mul_div_3op_verbal", "MD", _arith(_mul_div, 3, True),
                 _arith_configs("mul_div_3op_verbal", True), "Three-operand product in words."),
        TaskSpec("simple_equation", "MD", _simple_equation,
                 {"paper": _plain("simple_equation", concatenation="? \n Please directly give me the value.")["paper"],
                  "small": _raw_config("simple_equation")},
                 "Solve a linear equation; the right-hand side changes."),
        TaskSpec("number_sequence", "MD", _number_sequence,
                 {"paper": _plain("number_sequence")["paper"], "small": _raw_config("number_sequence")},
                 "Arithmetic sequence; the gap moves from the middle to the end."),
        TaskSpec("number_sorting", "MD", _number_sorting, _small_raw(_plain("number_sorting")),
                 "Sort ascending vs descending."),
        TaskSpec("logic_syllogism_1", "MD", _logic_syllogism_1, _small_raw(_plain("logic_syllogism_1", prefix=_SYLLOGISM_PREFIX)),
                 "Does the conclusion follow? Yes/No; the conclusion (or a quantifier) changes."),
        TaskSpec("logic_syllogism_symbolic", "MD", _logic_syllogism_symbolic,
                 _small_raw(_plain("logic_syllogism_symbolic", suffix=_REPLY_SUFFIX.strip())),
                 "First-order premises; pick the right (or wrong) formula."),
        TaskSpec("logic_propositional_1", "MD", _logic_propositional_1,
                 _small_raw(_plain("logic_propositional_1", suffix=_REPLY_SUFFIX.strip())),
                 "Modus ponens/tollens in English; right vs wrong."),
        TaskSpec("logic_propositional_symbolic", "MD", _logic_propositional_symbolic,
                 _small_raw(_plain("logic_propositional_symbolic")), "Symbolic propositional rule; Option1/Option2."),
        TaskSpec("code_A", "MD", _code_task(_code_a), _code_config("code_A", "output value"),
                 "A function with a modulo/length/membership test; the test's constant changes."),
        TaskSpec("code_B", "MD", _code_task(_code_b), _code_config("code_B", "output value"),
                 "String split or dict lookup; the index/key changes."),
        TaskSpec("code_conditional", "MD", _code_task(_code_conditional), _code_config("code_conditional", "value"),
                 "if/else on a comparison; < becomes >."),
        TaskSpec("code_list", "MD", _code_task(_code_list), _code_config("code_list", "value"), "List indexing; the index changes."),
        TaskSpec("code_loop", "MD", _code_task(_code_loop), _code_config("code_loop", "number"), "Loop accumulation; range changes."),
    ]
}
