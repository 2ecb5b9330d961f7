"""The item schema and prompt assembly of the study (book methods §1): the user message of a
condition (:func:`assemble_message`) and the prompt string a model reads (:func:`format_prompt`).

A task is a list of minimal pairs. Each item is a dict with the six keys of
:data:`REQUIRED_KEYS` (plus free metadata), and each task has a
:class:`PromptConfig` that turns an item's problem text into the user message.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: Domain codes as the study writes them, in the study's CSV order (book methods §4).
DOMAINS: tuple[str, ...] = ("MD", "ToM", "phys", "Lan")

#: Human names of the domains (book methods, difference 16).
DOMAIN_NAMES: dict[str, str] = {
    "Lan": "Language",
    "MD": "Formal reasoning",
    "phys": "Physical reasoning",
    "ToM": "Social reasoning",
}

REQUIRED_KEYS: tuple[str, ...] = (
    "clean_problem",
    "corrupted_problem",
    "clean_correct",
    "clean_incorrect",
    "corrupted_correct",
    "corrupted_incorrect",
)

CONDITIONS: tuple[str, ...] = ("clean", "corrupted")


@dataclass(frozen=True)
class PromptConfig:
    """How a task's problem text becomes a user message (book methods §1–1.3).

    ``suffix`` may hold ``{correct_answer}`` / ``{incorrect_answer}``; they are
    filled from the condition's own answers, exactly as the study does.
    """

    path: str
    prefix: str = ""
    concatenation: str = ""
    suffix: str = ""
    force_base_evaluation: bool = False

    def to_study_json(self) -> dict:
        """The config entry in the study's ``config.json`` layout."""
        return {
            "path": self.path,
            "prefix": self.prefix or None,
            "concatenation": self.concatenation or None,
            "suffix": self.suffix or None,
            "merging_sign": "",
            "standardize_answers": None,
            "force_base_evaluation": self.force_base_evaluation,
        }


@dataclass(frozen=True)
class ItemSource:
    """Where a task's items came from in a study-layout data file, and what was left out.

    ``file`` is the data file relative to the layout's root (``data/<domain>/<file>.json``),
    ``n_in_file`` the number of entries in it, ``excluded`` maps a reason (see
    :data:`modularity.science.tasks.study_io.EXCLUSION_REASONS`) to the file positions (0-based) of the
    entries left out for it, ``valid`` lists the file positions of every usable item and ``used``
    the file position of each item of :attr:`TaskData.items`, in order (a sample of ``valid``).
    """

    file: str
    n_in_file: int
    excluded: dict = field(default_factory=dict)
    valid: tuple = ()
    used: tuple = ()

    @property
    def n_valid(self) -> int:
        return len(self.valid)

    @property
    def n_used(self) -> int:
        return len(self.used)

    def n_excluded(self, reason: str | None = None) -> int:
        """Entries excluded for ``reason``, or for any reason."""
        if reason is None:
            return sum(len(v) for v in self.excluded.values())
        return len(self.excluded.get(reason, ()))


@dataclass
class TaskData:
    """One task: its name, domain code, prompt config and items.

    ``source`` is set when the items were read from a study-layout file
    (:func:`modularity.science.tasks.load_study_data`): the file position of each item and what was
    excluded. Generated tasks have none.
    """

    name: str
    domain: str
    config: PromptConfig
    items: list[dict] = field(default_factory=list)
    source: ItemSource | None = None

    @property
    def label(self) -> str:
        """``domain/task`` as in the study's CSV headers."""
        return f"{self.domain}/{self.name}"

    def __len__(self) -> int:
        return len(self.items)


def assemble_message(config: PromptConfig, item: dict, condition: str) -> str:
    """The user message for ``condition`` ∈ {"clean", "corrupted"} (book methods §1).

    ``msg = prefix + problem + concatenation``, then ``" " + suffix`` with the
    placeholders filled from the condition's own correct/incorrect answers.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"condition must be one of {CONDITIONS}, got {condition!r}")
    message = config.prefix + item[f"{condition}_problem"] + config.concatenation
    if config.suffix:
        message += " " + config.suffix.format(
            correct_answer=item[f"{condition}_correct"],
            incorrect_answer=item[f"{condition}_incorrect"],
        )
    return message


def format_prompt(tokenizer, message: str, raw: bool = False) -> str:
    """The prompt string the model reads for a user ``message``.

    ``raw`` (Language tasks, ``force_base_evaluation``) or a tokenizer without
    a chat template → the message itself. Otherwise the tokenizer's own template
    on ``[system: "", user: message]`` with the generation prompt, exactly as
    the study (an explicit empty system message replaces default ones).
    """
    if raw or not getattr(tokenizer, "chat_template", None):
        return message
    conversation = [
        {"role": "system", "content": ""},
        {"role": "user", "content": message},
    ]
    return tokenizer.apply_chat_template(
        conversation, add_generation_prompt=True, tokenize=False
    )
