"""The frame-swap design: the same items written in another task's frame (book tasks chapter,
*Frames*; methods §12).

A task key with a frame, ``desires_goals~instruction``, names the task's own items (the same seed,
the same minimal pairs, field for field) written in that frame instead of the task's own: the frame
sets the prompt config's prefix, concatenation, suffix and whether the chat template is applied,
nothing else. The frames are those the study's tasks are written in:

* ``raw``: the problem as raw text, no chat template (the study's Language tasks);
* ``chat``: the problem alone as the user message of the chat template (its Social-reasoning tasks);
* ``instruction``: the chat template with an instruction opening ("You will be given …", as its code
  and ``phys_newton`` / ``phys_prost`` tasks) and closing ("Reply with only …, no other words.", as its
  logic tasks);
* ``given`` and ``complete``: raw text after one of two instruction openings ("You will be given some
  text. Continue it." / "Complete the last line of the text below."): frames a model that only
  continues raw text (the embedded ones, on the small profile's continuation items) can still answer
  in, so that a shared opening can be tested where the chat frames fail.

Rendering every content in every frame crosses content (domain) with frame, so that overlap and
ablation can be asked which of the two they follow.
"""
from __future__ import annotations

from dataclasses import replace

from .schema import PromptConfig, TaskData

#: Frame name → the prompt fields it sets (every other config field is the task's own).
FRAMES: dict[str, dict] = {
    "raw": dict(prefix="", concatenation="", suffix="", force_base_evaluation=True),
    "chat": dict(prefix="", concatenation="", suffix="", force_base_evaluation=False),
    "instruction": dict(prefix="You will be given a question. Determine the answer.\n", concatenation="",
                        suffix="Reply with only the answer, no other words.", force_base_evaluation=False),
    "given": dict(prefix="You will be given some text. Continue it.\n", concatenation="", suffix="",
                  force_base_evaluation=True),
    "complete": dict(prefix="Complete the last line of the text below.\n", concatenation="", suffix="",
                     force_base_evaluation=True),
}
#: Separates a task key from its frame in a variant's key.
SEPARATOR = "~"


def split_variant(key: str) -> tuple[str, str | None]:
    """``(task key, frame)`` of a key; frame None for a task in its own frame."""
    task, separator, frame = key.partition(SEPARATOR)
    return task, (frame if separator else None)


def check_frame(key: str) -> None:
    """Raise ValueError when ``key`` names a frame that does not exist."""
    _, frame = split_variant(key)
    if frame is not None and frame not in FRAMES:
        raise ValueError(f"task {key!r}: unknown frame {frame!r}; frames are {', '.join(FRAMES)} "
                         f"(write task{SEPARATOR}frame, e.g. desires_goals{SEPARATOR}raw)")


def framed_config(config: PromptConfig, frame: str) -> PromptConfig:
    """``config`` with the prompt fields of ``frame``."""
    if frame not in FRAMES:
        raise ValueError(f"unknown frame {frame!r}; frames are {', '.join(FRAMES)}")
    return replace(config, **FRAMES[frame])


def reframe(task: TaskData, frame: str) -> TaskData:
    """The task's items, unchanged, in ``frame``: name ``<task>~<frame>``, same domain and source."""
    return TaskData(name=f"{task.name}{SEPARATOR}{frame}", domain=task.domain,
                    config=framed_config(task.config, frame), items=[dict(item) for item in task.items],
                    source=task.source)


def with_frames(suite: dict[str, TaskData], keys) -> dict[str, TaskData]:
    """The tasks ``keys`` names (in the order of ``keys``) from ``suite``, which holds every base task:
    a plain key is the suite's task, a framed one its :func:`reframe`."""
    out = {}
    for key in keys:
        task, frame = split_variant(key)
        out[key] = suite[task] if frame is None else reframe(suite[task], frame)
    return out
