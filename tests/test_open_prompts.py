"""Open prompts for the lesions stage: counts, seeds, keys that are correct, the whole-word key check."""
from __future__ import annotations

import itertools
import re
import string

import pytest
from modularity.science.tasks.base import content, wordlist
from modularity.science.tasks.number_words import number_to_words
from modularity.science.tasks.open_prompts import (
    OpenPrompt,
    key_stated,
    open_prompts,
    open_templates,
)
from modularity.science.tasks.schema import DOMAINS

DATA = content("open_prompts")
TEMPLATES = {f"{domain}/{t['name']}": t for domain in DOMAINS for t in DATA[domain]["templates"]}
FEWEST = min(len(DATA[domain]["templates"]) for domain in DOMAINS)
#: Every template of every domain, drawn over several seeds (the most each draw allows).
ALL = [prompt for seed in range(30) for prompt in open_prompts(FEWEST, seed)]


def test_counts_order_and_fields():
    prompts = open_prompts(8, 0)
    assert len(prompts) == 8 * len(DOMAINS)
    assert [p.domain for p in prompts] == [domain for domain in DOMAINS for _ in range(8)]
    for prompt in prompts:
        assert isinstance(prompt, OpenPrompt)
        assert prompt.name.startswith(prompt.domain + "/")
        assert prompt.message.strip() and prompt.raw.strip()
        assert all(isinstance(key, str) and key and key == key.lower() for key in prompt.keys)
        assert bool(prompt.key_kind) == bool(prompt.keys)
    assert len({p.name for p in prompts}) == len(prompts)


def test_enough_templates_and_every_one_is_drawn():
    for domain in DOMAINS:
        assert len(open_templates(domain)) >= 10
        assert len(set(open_templates(domain))) == len(open_templates(domain))
    assert {p.name for p in ALL} == set(TEMPLATES)
    for seed in range(5):
        names = [p.name for p in open_prompts(FEWEST, seed)]
        assert len(set(names)) == len(names)


def test_deterministic_for_a_seed_and_different_for_another():
    assert open_prompts(8, 0) == open_prompts(8, 0)
    assert open_prompts(8, 3) == open_prompts(8, 3)
    assert open_prompts(8, 0) != open_prompts(8, 1)
    messages = {seed: {p.message for p in open_prompts(8, seed)} for seed in range(3)}
    assert messages[0] != messages[1] != messages[2]


def test_too_many_or_too_few_prompts_are_refused():
    with pytest.raises(ValueError, match="templates"):
        open_prompts(FEWEST + 1, 0)
    with pytest.raises(ValueError, match="at least 1"):
        open_prompts(0, 0)


def _values(template: str, text: str) -> dict[str, str]:
    """The slot values of a filled str.format ``template`` (a repeated slot must repeat its value)."""
    pattern, seen = "", set()
    for literal, field, _, _ in string.Formatter().parse(template):
        pattern += re.escape(literal)
        if field is None:
            continue
        if field in seen:
            pattern += f"(?P={field})"
        else:
            seen.add(field)
            pattern += rf"(?P<{field}>\d+)" if field.islower() else rf"(?P<{field}>.+?)"
    match = re.fullmatch(pattern, text)
    assert match, (template, text)
    return match.groupdict()


def test_formal_keys_are_the_computed_result_in_digits_and_words():
    formal = [p for p in ALL if p.domain == "MD"]
    assert formal
    for prompt in formal:
        template = TEMPLATES[prompt.name]
        shown = {k: int(v) for k, v in _values(template["text"], prompt.message).items() if k.islower()}
        hidden = [name for name in template["numbers"] if name not in shown]
        results = set()  # every assignment of the hidden numbers that gives the shown derived ones
        for combo in itertools.product(*(range(lo, hi + 1) for lo, hi in (template["numbers"][h] for h in hidden))):
            values = {**shown, **dict(zip(hidden, combo))}
            if all(eval(expr, {}, values) == shown[name] for name, expr in template.get("derived", {}).items()):
                results.add(eval(template["answer"], {}, values))
        assert results == {int(prompt.keys[0])}, prompt
        result = int(prompt.keys[0])
        assert prompt.keys == (str(result), number_to_words(result))
        assert 1 <= result <= 100 and all(1 <= v <= 100 for v in shown.values())
        assert result not in shown.values()
        if prompt.raw.endswith("="):  # the bare sums: the raw form is the same expression
            assert eval(prompt.raw.rstrip("=")) == result
        else:
            assert prompt.raw == f"Question: {prompt.message}\nAnswer:"


def test_language_agreement_keys_follow_the_subject_and_the_attractor_has_the_other_number():
    pairs = [tuple(p) for p in wordlist("plural_subjects")]
    pairs += [tuple(p) for value in DATA["Lan"]["lists"].values() if isinstance(value, list)
              for p in value if isinstance(p, list) and len(p) == 2]
    singular, plural = {p[0] for p in pairs}, {p[1] for p in pairs}
    keys = DATA["Lan"]["agreement_keys"]
    checked = 0
    for prompt in (p for p in ALL if "agreement" in TEMPLATES[p.name]):
        agreement = TEMPLATES[prompt.name]["agreement"]
        if agreement.get("subject"):
            subject = prompt.raw.split()[1]
            number = "plural" if subject in plural and subject not in singular else "singular"
            assert subject in (plural if number == "plural" else singular)
        else:
            number = agreement["number"]
        assert prompt.keys == tuple(keys[number]), prompt
        if agreement.get("attractor"):
            other, same = (0, 1) if number == "plural" else (1, 0)
            assert prompt.raw.endswith(tuple(" " + p[other] for p in pairs)), prompt
            assert not prompt.raw.endswith(tuple(" " + p[same] for p in pairs)), prompt
        assert prompt.message == f"Continue this sentence: {prompt.raw}"
        checked += 1
    assert checked > 50
    numbers = {p.keys for p in ALL if p.domain == "Lan" and "agreement" in TEMPLATES[p.name]}
    assert numbers == {tuple(keys["singular"]), tuple(keys["plural"])}


def test_keys_are_in_the_prompt_only_where_the_content_says_so():
    for prompt in ALL:
        if not prompt.keys:
            continue
        in_prompt = bool(TEMPLATES[prompt.name].get("key_in_prompt"))
        assert key_stated(prompt.message, prompt.keys) is in_prompt, prompt
        if not in_prompt:
            assert key_stated(prompt.raw, prompt.keys) is False, prompt


def test_social_false_belief_keys_are_the_first_place_and_true_belief_the_second():
    checked = 0
    for prompt in (p for p in ALL if p.domain == "ToM"):
        template = TEMPLATES[prompt.name]
        if template.get("keys") in (["{p1}"], ["{p2}"]):
            places = [a or b for a, b in re.findall(r"in the (\w+)|to the (\w+)", prompt.message)]
            first, second = list(dict.fromkeys(places))[:2]  # in the order the story names them
            assert first != second
            assert prompt.keys == ((first,) if template["keys"] == ["{p1}"] else (second,)), prompt
            assert prompt.raw.endswith(" the"), prompt
            checked += 1
    assert checked > 100


def test_the_studys_rubber_band_prompt_has_no_keys():
    (prompt,) = [p for p in ALL if p.name == "phys/rubber_bands"][:1]
    assert prompt.message == (
        "Two identical rubber bands: one is left in a hot car for several days, the other kept indoors. "
        "How do they differ in restoring force, return to their original length, and energy dissipated "
        "when stretched?")
    assert prompt.keys == () and prompt.key_kind == ""
    assert key_stated("It is weaker.", prompt.keys) is None


@pytest.mark.parametrize("text, keys, expected", [
    ("They are in the drawer.", ("are", "were"), True),
    ("ARE they here?", ("are",), True),
    ("The area is large.", ("are",), False),
    ("They aren't here.", ("are",), False),
    ("They aren’t here.", ("are",), False),
    ("The keys to the cabinet were lost", ("are", "were"), True),
    ("Tom looks in the basket.", ("basket",), True),
    ("Tom looks in the 'basket'.", ("basket",), True),
    ("Tom looks in the baskets.", ("basket",), False),
    ("The answer is 12.", ("12", "twelve"), True),
    ("The answer is 112.", ("12", "twelve"), False),
    ("The answer is 12.5 apples.", ("12",), False),
    ("It is Twelve.", ("12", "twelve"), True),
    ("twenty one", ("21", "twenty-one"), True),
    ("Twenty-one apples", ("21", "twenty-one"), True),
    ("twenty-one", ("one",), False),
    ("He doesn’t know.", ("doesn't",), True),
    ("It goes out after a while.", ("out",), True),
    ("It goes without saying.", ("out",), False),
    ("anything", (), None),
    ("anything", [], None),
])
def test_key_stated(text, keys, expected):
    assert key_stated(text, keys) is expected


def test_key_stated_takes_a_single_key_and_ignores_blank_keys():
    assert key_stated("the nail sinks", "nail") is True
    assert key_stated("the nail sinks", ("", "  ")) is None
    assert key_stated("the nail sinks", ("", "nail")) is True
