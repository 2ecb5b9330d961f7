"""Open prompts: short scenarios per domain that invite a short *free* answer, each with its keys.

The suite's tasks (and the localizer) score a model by the log-probabilities of fixed answers. A
lesion can leave those rankings intact and still wreck what the model *says*, or the reverse. The
open prompts are for that second question: a later stage silences one domain's neurons, lets the
model generate a short continuation greedily, and asks of every output (a) does it still state
the key, the answer the prompt asks for, and (b) is it still fluent English? A lesion that is
specific to a domain should cost its own domain's keys more than the others', and cost keys
before fluency. This module writes the prompts and the key check (:func:`key_stated`); fluency is
measured by the stage, not here.

Every prompt comes in two forms: ``message``, a question or instruction for a chat model (the
stage wraps it in the chat template), and ``raw``, the same prompt as plain text for a base model,
ending where the answer begins ("Question: …\\nAnswer:" or an unfinished sentence such as
"… Anna wants the key and will look for it first in the"). The four domains, in simple English
a 135M-parameter model can manage:

* **Lan** — sentence beginnings to continue whose next verb must agree with a subject across an
  *attractor* noun of the other number ("The keys in the old cabinet" → "are", "were", "have"),
  the subject, attractor, adjective and names drawn from the suite's word lists and
  ``content/open_prompts.json``, the subject's number drawn too; and other morphology: an
  irregular plural ("mouse" → "mice"), an irregular past ("Every day, Tom eats an apple.
  Yesterday, Tom" → "ate") and a comparative ("… is even" → "taller");
* **MD** — arithmetic word problems and bare sums with numbers drawn from each template's ranges
  (results from 1 to 100, never equal to a number of the prompt); keys are the result in digits
  and in words (:func:`~modularity.science.tasks.number_words.number_to_words`): ("12", "twelve");
* **phys** — everyday physical scenes with one clear outcome (a ball let go falls, butter in a
  hot pan melts, a nail in water sinks, a pricked balloon pops), keys the outcome's word forms;
  plus the study's figure prompt on two rubber bands, one aged in a hot car, which has no single
  word answer and so no keys (``keys == ()``): its outputs are for reading and for fluency only;
* **ToM** — false-belief stories in the Sally–Anne mould (names, object and the two places drawn),
  the key the *original* place where the person will look; an unexpected-contents story (a cereal
  box full of buttons: the key is what the box shows); and true-belief and knowledge-access
  variants (the person watched the move or was told of it: the key is the *new* place; who
  knows what is in the box; does the other know: "no").

How they are drawn: each domain has 10–12 templates (``content/open_prompts.json``), and
:func:`open_prompts` draws ``n_per_domain`` distinct templates per domain and fills each one's
slots, with a :func:`random.Random` seeded by
:func:`~modularity.science.tasks.catalog.task_seed` ``(seed, "open_prompts/<domain>")``. The
result is deterministic in (``n_per_domain``, ``seed``), independent of the run's tasks and
profile, and nothing is downloaded; names ("<domain>/<template>") are unique in a draw.

Limits of a "key stated" measure. :func:`key_stated` looks for a key as a whole word anywhere in
the output, case-insensitively ("are" is not found in "area" or "aren't", "12" not in "112" or
"12.5"; "twenty one" matches the key "twenty-one"). That is a lenient reading of the output:

* *copying* — in a false-belief story the original place is in the story itself, and so are the
  keys of the true-belief, unexpected-contents, who-knows and which-sinks templates (marked
  ``key_in_prompt`` in the JSON): an output that only repeats the story states the key. Compare
  with the intact model, and read a hit there as "did not lose the key", not as reasoning;
* *stated is not asserted* — "not in the basket", "it does not sink", or an output naming both
  places or both outcomes ("the cork floats and the stone sinks") counts as a hit; nothing
  checks the foil;
* *common words* — the Lan keys "is", "was", "has" (singular subjects) occur in almost any English
  text, so for singular subjects a hit says little about agreement; the plural keys are rarer.
  A stricter check reads only the first verb of the continuation;
* *paraphrase* — an answer in other words ("a dozen", "plummets", "it turns to liquid") is a
  miss: the keys list the usual word forms, not every way to say the answer;
* *truncation* — greedy generation stops after a token budget; a key that would have come later
  is a miss, and a model that rambles before answering is penalised.
"""
from __future__ import annotations

import ast
import random
import re
import string
from dataclasses import dataclass
from functools import cache

from .base import article, content, wordlist
from .catalog import task_seed
from .number_words import number_to_words
from .schema import DOMAINS

__all__ = ["OpenPrompt", "key_stated", "open_prompts", "open_templates"]

#: Redraws of a template's numbers before it counts as unsatisfiable (MD).
_NUMBER_ATTEMPTS = 1000
#: The range every number of an MD prompt and its result must lie in.
_NUMBER_RANGE = (1, 100)


@dataclass(frozen=True)
class OpenPrompt:
    """One open prompt: ``message`` for a chat model, ``raw`` for a base model, and the ``keys`` an
    answer should state (lower case, any one counts; ``()`` when nothing is checkable)."""

    domain: str
    name: str
    message: str
    raw: str
    keys: tuple[str, ...]
    key_kind: str


def _data() -> dict:
    return content("open_prompts")


def open_templates(domain: str) -> tuple[str, ...]:
    """The template names of ``domain``, in the order of ``content/open_prompts.json``."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; domains are {list(DOMAINS)}")
    return tuple(template["name"] for template in _data()[domain]["templates"])


@cache
def _resolve(spec: str) -> tuple:
    """A list named ``wordlist:<file>[:<key>+<key>]``: the suite's word list (those keys, joined)."""
    _, name, *keys = spec.split(":")
    value = wordlist(name)
    if keys:
        value = [item for key in keys[0].split("+") for item in value[key]]
    return tuple(value)


def _list(domain: str, name: str) -> tuple:
    data = _data()
    value = data[domain]["lists"].get(name, data["lists"].get(name))
    if value is None:
        raise KeyError(f"open prompts: no list {name!r} for {domain}")
    return _resolve(value) if isinstance(value, str) else tuple(value)


def _evaluate(expression: str, values: dict[str, int]) -> int:
    """An expression of names and integers with +, - and * (our own JSON only, parsed not eval'd)."""
    operations = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b}

    def walk(node):
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in operations:
            return operations[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        raise ValueError(f"unsupported expression {expression!r}")
    return walk(ast.parse(expression, mode="eval"))


def _fields(*templates: str) -> set[str]:
    """The slot names used by str.format strings ("verb[past]" → "verb")."""
    names = set()
    for template in templates:
        for _, field, _, _ in string.Formatter().parse(template):
            if field:
                names.add(re.split(r"[.\[]", field, maxsplit=1)[0])
    return names


def _with_articles(fill: dict) -> dict:
    """``fill`` plus ``a_X`` ("an ice cube") for every string slot X."""
    return {**fill, **{f"a_{slot}": f"{article(value)} {value}" for slot, value in fill.items()
                       if isinstance(value, str)}}


def _numbers(rng: random.Random, template: dict, shown: set[str]) -> tuple[dict[str, int], int]:
    """Drawn and derived numbers and the answer: every shown number and the answer in
    :data:`_NUMBER_RANGE`, the answer equal to no shown number (copying one is not answering)."""
    low, high = _NUMBER_RANGE
    for _ in range(_NUMBER_ATTEMPTS):
        values = {name: rng.randint(lo, hi) for name, (lo, hi) in template["numbers"].items()}
        for name, expression in template.get("derived", {}).items():
            values[name] = _evaluate(expression, values)
        answer = _evaluate(template["answer"], values)
        visible = [values[name] for name in values if name in shown]
        if low <= answer <= high and answer not in visible and all(low <= v <= high for v in visible):
            return values, answer
    raise ValueError(f"open prompts: MD template {template['name']!r} found no numbers in range")


def _build(rng: random.Random, domain: str, template: dict) -> OpenPrompt:
    data = _data()[domain]
    fill: dict = {}
    by_list: dict[str, list[str]] = {}
    for slot, list_name in template.get("draw", {}).items():
        by_list.setdefault(list_name, []).append(slot)
    for list_name, slots in by_list.items():  # slots drawn from one list are distinct
        fill.update(zip(slots, rng.sample(_list(domain, list_name), len(slots))))
    keys = template.get("keys", [])
    if "cases" in template:
        case = rng.choice(template["cases"])
        fill.update({field: value for field, value in case.items() if field != "keys"})
        keys = case.get("keys", keys)
    if isinstance(keys, dict):
        keys = keys[fill["outcome"]]
    if "agreement" in template:
        agreement = template["agreement"]
        number = agreement.get("number") or rng.choice(("singular", "plural"))
        index = 0 if number == "singular" else 1
        subject, attractor = agreement.get("subject"), agreement.get("attractor")
        if subject and subject == attractor:  # two different nouns of one list
            subject_pair, attractor_pair = rng.sample(_list(domain, subject), 2)
        else:
            subject_pair = rng.choice(_list(domain, subject)) if subject else None
            attractor_pair = rng.choice(_list(domain, attractor)) if attractor else None
        if subject_pair:
            fill["subject"] = subject_pair[index]
        if attractor_pair:  # the other number: the attractor is what a wrong verb would agree with
            fill["attractor"] = attractor_pair[1 - index]
        keys = data["agreement_keys"][number]
    fill = _with_articles(fill)
    message_template = template.get("message", data["message"])
    raw_template = template.get("raw", data["raw"])
    if "numbers" in template:
        shown = _fields(template["text"], message_template, raw_template)
        values, answer = _numbers(rng, template, shown)
        fill.update(values)
        keys = [str(answer), number_to_words(answer)]
    text = template["text"].format(**fill)
    message = message_template.format(text=text, **fill)
    raw = raw_template.format(text=text, message=message, **fill)
    return OpenPrompt(domain=domain, name=f"{domain}/{template['name']}", message=message, raw=raw,
                      keys=tuple(key.format(**fill).lower() for key in keys),
                      key_kind=template.get("key_kind", "") if keys else "")


def open_prompts(n_per_domain: int = 8, seed: int = 0) -> tuple[OpenPrompt, ...]:
    """``n_per_domain`` prompts per domain, in :data:`~modularity.science.tasks.schema.DOMAINS`
    order, deterministic in (``n_per_domain``, ``seed``).

    Each domain draws ``n_per_domain`` distinct templates (so names are unique) and fills them
    from its own seed (:func:`~modularity.science.tasks.catalog.task_seed`). Raises ValueError
    when ``n_per_domain`` is below 1 or above a domain's number of templates.
    """
    if n_per_domain < 1:
        raise ValueError(f"n_per_domain must be at least 1, got {n_per_domain}")
    prompts = []
    for domain in DOMAINS:
        templates = _data()[domain]["templates"]
        if n_per_domain > len(templates):
            raise ValueError(f"n_per_domain={n_per_domain} but the {domain} open prompts have only "
                             f"{len(templates)} templates (at most {min(len(_data()[d]['templates']) for d in DOMAINS)} "
                             "per domain for all four)")
        rng = random.Random(task_seed(seed, f"open_prompts/{domain}"))
        prompts += [_build(rng, domain, template) for template in rng.sample(templates, n_per_domain)]
    return tuple(prompts)


_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'"})


@cache
def _key_pattern(key: str) -> re.Pattern:
    """A key as whole words: not inside a longer word, a hyphenated word ("one" in "twenty-one") or a
    number ("12" in "112" or "12.5"); a space or hyphen in the key matches either, or several."""
    body = r"[\s-]+".join(re.escape(word) for word in re.split(r"[\s-]+", key.strip()))
    return re.compile(rf"(?<![\w-])(?<!\d[.,]){body}(?![\w]|-\w|[.,]\d)", re.IGNORECASE)


def key_stated(output: str, keys) -> bool | None:
    """Whether ``output`` states one of ``keys``: case-insensitive, whole words (a key "are" does not
    match "area" or "aren't"), curly apostrophes read as straight; None when ``keys`` is empty.

    A lenient check: a key is "stated" wherever it occurs, negated or beside the foil (see the
    module docstring for what that does and does not show).
    """
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    keys = tuple(key.translate(_APOSTROPHES) for key in keys if key.strip())
    if not keys:
        return None
    text = output.translate(_APOSTROPHES)
    return any(_key_pattern(key).search(text) for key in keys)
