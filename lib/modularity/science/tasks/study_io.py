"""Reading and writing the study's published layout, with validation that says how to fix things.

Layout: ``root/data/<domain>/<file>.json`` (a JSON list of items) and
``root/config/<domain>/config.json`` (task key → config; ``config.path`` names the data file,
so phys keys ``physics_*`` point at files ``phys_*.json``).

The study's own files hold exact duplicates and a few items whose two answers are equal;
:func:`load_study_data` leaves such items out and records what it left out, :func:`source_table`
and :func:`audit_items` tabulate that and the study files' other known defects (book methods, difference 8–9).
"""
from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pandas as pd

from ...base.files import atomic_write_bytes
from .catalog import TASK_DOMAINS, TASK_NAMES, task_seed
from .schema import DOMAINS, REQUIRED_KEYS, ItemSource, PromptConfig, TaskData, assemble_message


class TaskDataError(ValueError):
    """A task file that does not follow the study's item format (book methods §1)."""


#: Why :func:`load_study_data` leaves an item out (first failing check wins, in this order):
#: not a JSON object; a required key missing, empty or not a string; corrupted answers that are
#: not the clean ones swapped; equal clean answers; an exact copy (all six required keys) of an
#: earlier usable item.
EXCLUSION_REASONS: tuple[str, ...] = ("not_an_object", "empty_fields", "broken_swap", "equal_answers", "duplicate")


def _check_file(items, task: str, source: str, domain: str | None = None) -> None:
    """The checks that make a whole file unusable: domain, task key, a non-empty JSON list."""
    if domain is not None and domain not in DOMAINS:
        raise TaskDataError(f"{source}: unknown domain {domain!r}; the study's domains are {DOMAINS}")
    if task not in TASK_DOMAINS:
        raise TaskDataError(f"{source}: unknown task {task!r}; rename it to one of the 46 study keys "
                            f"({', '.join(TASK_DOMAINS)})")
    if domain is not None and TASK_DOMAINS[task] != domain:
        raise TaskDataError(f"{source}: task {task!r} belongs to domain {TASK_DOMAINS[task]!r}, not {domain!r}; "
                            f"move it to data/{TASK_DOMAINS[task]}/")
    if not isinstance(items, list):
        raise TaskDataError(f"{source}: expected a JSON list of items, got {type(items).__name__}; "
                            "wrap the items in [ ... ]")
    if not items:
        raise TaskDataError(f"{source}: the list of items is empty; add at least one minimal pair")


def _item_problem(item, seen: dict) -> tuple[str, str] | None:
    """``(reason, message)`` of an item's first problem, or None. ``seen`` maps the required
    values of the usable items met so far to their position (the caller adds each one)."""
    if not isinstance(item, dict):
        return "not_an_object", f"expected an object with keys {REQUIRED_KEYS}, got {type(item).__name__}"
    missing = [k for k in REQUIRED_KEYS if k not in item]
    if missing:
        return "empty_fields", f"missing key(s) {missing}; every item needs {list(REQUIRED_KEYS)}"
    for key in REQUIRED_KEYS:
        if not isinstance(item[key], str) or not item[key].strip():
            return "empty_fields", (f"{key!r} is empty or not a string; give it the text of the "
                                    f"{'problem' if key.endswith('problem') else 'answer'}")
    if item["corrupted_correct"] != item["clean_incorrect"] or item["corrupted_incorrect"] != item["clean_correct"]:
        return "broken_swap", (
            f"corrupted answers are not the clean ones swapped "
            f"(corrupted_correct={item['corrupted_correct']!r}, clean_incorrect={item['clean_incorrect']!r}; "
            f"corrupted_incorrect={item['corrupted_incorrect']!r}, clean_correct={item['clean_correct']!r}); "
            "set corrupted_correct = clean_incorrect and corrupted_incorrect = clean_correct")
    if item["clean_correct"] == item["clean_incorrect"]:
        return "equal_answers", (f"clean_correct equals clean_incorrect ({item['clean_correct']!r}); "
                                 "the foil must be a different answer")
    if _key(item) in seen:
        return "duplicate", f"duplicate of item {seen[_key(item)]}; remove one of them"
    return None


def validate_items(items, task: str, source: str, domain: str | None = None) -> list[dict]:
    """Check a task's items; raise :class:`TaskDataError` naming ``source``, the item index and the fix.

    Checks: a list of dicts, the six required keys with non-empty strings, the pure answer swap
    (``corrupted_correct == clean_incorrect`` and ``corrupted_incorrect == clean_correct``),
    distinct answers, no duplicated item, and, when ``domain`` is given, a known task/domain pair.
    """
    _check_file(items, task, source, domain)
    seen: dict[tuple, int] = {}
    for index, item in enumerate(items):
        problem = _item_problem(item, seen)
        if problem is not None:
            raise TaskDataError(f"{source}: item {index}: {problem[1]}")
        seen[_key(item)] = index
    return items


def classify_items(items: list) -> tuple[list[int], dict[str, list[int]]]:
    """``(valid, excluded)``: the positions of the usable items, in order, and
    ``{reason: [positions]}`` of the others, reasons as in :data:`EXCLUSION_REASONS` (the first
    failing check of :func:`validate_items` names an item's reason; a duplicate is an exact copy
    of an earlier usable item)."""
    seen: dict[tuple, int] = {}
    valid: list[int] = []
    excluded: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        problem = _item_problem(item, seen)
        if problem is None:
            seen[_key(item)] = index
            valid.append(index)
        else:
            excluded.setdefault(problem[0], []).append(index)
    return valid, {reason: excluded[reason] for reason in EXCLUSION_REASONS if reason in excluded}


def _key(item: dict) -> tuple:
    return tuple(item[k] for k in REQUIRED_KEYS)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise TaskDataError(f"{path}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
                            "fix the syntax, e.g. a missing comma or quote") from None


def _config_from_json(entry: dict, task: str, source: Path) -> PromptConfig:
    if not isinstance(entry, dict) or not entry.get("path"):
        raise TaskDataError(f"{source}: config of task {task!r} has no 'path'; give the data file name")
    return PromptConfig(
        path=entry["path"], prefix=entry.get("prefix") or "", concatenation=entry.get("concatenation") or "",
        suffix=entry.get("suffix") or "", force_base_evaluation=bool(entry.get("force_base_evaluation", False)),
    )


def load_study_data(root, tasks=None, strict: bool = False) -> dict[str, TaskData]:
    """Read ``root/config/<domain>/config.json`` and the data files they name, in study CSV order.

    ``tasks`` (optional) restricts to those keys; a requested task that is missing raises
    FileNotFoundError. The files are read as they are. By default unusable items (see
    :data:`EXCLUSION_REASONS`: the study's own files hold exact duplicates and items whose two
    answers are equal) are left out and recorded in each task's :class:`ItemSource`
    (``task.source``: the file position of every kept item, the excluded positions per reason);
    :func:`source_table` tabulates them. ``strict=True`` instead raises :class:`TaskDataError`
    at the first unusable item (:func:`validate_items`). In both modes a file that cannot be used
    at all (invalid JSON, not a list, empty, unknown task or domain, missing, no usable item
    left) raises an error naming the file.
    """
    root = Path(root)
    if not (root / "config").is_dir():
        raise FileNotFoundError(f"{root}: no config/ folder; expected the study layout "
                                "root/config/<domain>/config.json and root/data/<domain>/<file>.json")
    found: dict[str, TaskData] = {}
    for domain_dir in sorted(p for p in (root / "config").iterdir() if p.is_dir()):
        domain = domain_dir.name
        if domain not in DOMAINS:
            raise TaskDataError(f"{domain_dir}: unknown domain {domain!r}; the study's domains are {DOMAINS}")
        config_path = domain_dir / "config.json"
        if not config_path.exists():
            continue
        configs = _read_json(config_path)
        if not isinstance(configs, dict):
            raise TaskDataError(f"{config_path}: expected a JSON object of task key → config, "
                                f"got {type(configs).__name__}")
        for task, entry in configs.items():
            if tasks is not None and task not in tasks:
                continue
            config = _config_from_json(entry, task, config_path)
            data_path = root / "data" / domain / config.path
            if not data_path.exists():
                raise FileNotFoundError(f"{data_path}: data file of task {task!r} (named by {config_path}) is "
                                        "missing; restore the file or correct the task's 'path' in that config")
            found[task] = _read_task(_read_json(data_path), task, domain, config, data_path, strict)
    if tasks is not None:
        missing = [t for t in tasks if t not in found]
        if missing:
            raise FileNotFoundError(f"{root}: task(s) {missing} not found in any config/<domain>/config.json")
    order = {name: i for i, name in enumerate(TASK_NAMES)}
    return dict(sorted(found.items(), key=lambda kv: order.get(kv[0], len(order))))


def _read_task(raw, task: str, domain: str, config: PromptConfig, data_path: Path, strict: bool) -> TaskData:
    """One task from its file's parsed content: validated (strict) or with unusable items left out."""
    if strict:
        items = validate_items(raw, task, str(data_path), domain=domain)
        valid, excluded = list(range(len(items))), {}
    else:
        _check_file(raw, task, str(data_path), domain)
        valid, excluded = classify_items(raw)
        if not valid:
            counts = ", ".join(f"{len(v)} {reason}" for reason, v in excluded.items())
            raise TaskDataError(f"{data_path}: none of its {len(raw)} items is usable ({counts}); fix the items "
                                "(load_study_data(..., strict=True) names the first problem) or remove the task "
                                "from its config.json")
        items = [raw[i] for i in valid]
    source = ItemSource(file=f"data/{domain}/{config.path}", n_in_file=len(raw),
                        excluded={reason: tuple(v) for reason, v in excluded.items()},
                        valid=tuple(valid), used=tuple(valid))
    return TaskData(name=task, domain=domain, config=config, items=items, source=source)


def subsample_suite(suite: dict[str, TaskData], n_items: int, seed: int) -> dict[str, TaskData]:
    """Each task reduced to a seeded sample of ``n_items`` of its items (all if it has fewer),
    kept in their original order; ``task.source.used`` follows.

    The sample of a task depends only on ``seed`` and its name (:func:`~modularity.science.tasks.task_seed`),
    so adding or removing a task changes no other task's items.
    """
    if n_items < 1:
        raise ValueError(f"n_items={n_items} must be ≥ 1")
    out = {}
    for name, task in suite.items():
        positions = range(len(task.items))
        if n_items < len(task.items):
            positions = sorted(random.Random(task_seed(seed, name)).sample(positions, n_items))
        source = task.source
        if source is not None:
            source = replace(source, used=tuple(source.used[p] for p in positions))
        out[name] = replace(task, items=[task.items[p] for p in positions], source=source)
    return out


def source_table(suite: dict[str, TaskData], first: int = 5) -> pd.DataFrame:
    """One row per task: its data file, entries in the file, entries excluded per reason, usable
    items, items used, and the file positions (0-based) of the first ``first`` excluded entries.

    A generated task (no ``source``) counts its items as the file's, with nothing excluded.
    """
    rows = []
    for name, task in suite.items():
        source = task.source or ItemSource(file="", n_in_file=len(task), valid=tuple(range(len(task))),
                                           used=tuple(range(len(task))))
        excluded = sorted(i for positions in source.excluded.values() for i in positions)
        rows.append({
            "task": name, "domain": task.domain, "file": source.file, "n_in_file": source.n_in_file,
            **{_COUNT_COLUMNS[reason]: source.n_excluded(reason) for reason in EXCLUSION_REASONS},
            "n_valid": source.n_valid, "n_used": source.n_used,
            "first_excluded": ", ".join(map(str, excluded[:first])) + (", …" if len(excluded) > first else ""),
        })
    return pd.DataFrame(rows)


#: How a line on the terminal names each reason of :data:`EXCLUSION_REASONS`.
REASON_WORDS = {"not_an_object": "not an object", "empty_fields": "a field missing or empty",
                "broken_swap": "corrupted answers not the clean ones swapped", "equal_answers": "equal answers",
                "duplicate": "duplicate"}


def excluded_items_lines(suite: dict[str, TaskData]) -> list[str]:
    """One line per task that left items of its file out: how many, and why, e.g.
    ``number_sorting (data/MD/number_sorting.json): 6 of 9 entries left out: 3 a field missing or empty, ...``."""
    lines = []
    for name, task in suite.items():
        source = task.source
        if source is None or not source.n_excluded():
            continue
        reasons = ", ".join(f"{source.n_excluded(reason)} {REASON_WORDS[reason]}"
                            for reason in EXCLUSION_REASONS if source.n_excluded(reason))
        lines.append(f"{name} ({source.file}): {source.n_excluded()} of {source.n_in_file} entries left out: {reasons}")
    return lines


_COUNT_COLUMNS = {"not_an_object": "n_not_object", "empty_fields": "n_empty_fields", "broken_swap": "n_broken_swap",
                  "equal_answers": "n_equal_answers", "duplicate": "n_duplicates"}


def item_sources(suite: dict[str, TaskData]) -> pd.DataFrame:
    """One row per item used: ``task``, ``item`` (its position in the task, as in
    ``eval_items.csv``) and ``file_index`` (its position in the study's data file)."""
    rows = [{"task": name, "item": i, "file_index": index}
            for name, task in suite.items() if task.source is not None
            for i, index in enumerate(task.source.used)]
    return pd.DataFrame(rows, columns=["task", "item", "file_index"])


# ----------------------------------------------------------------------------- audit

def _last_listing(text: str, first: str, second: str) -> int:
    """Start of the last "<first> or <second>" in ``text`` (answers stripped, whole words), or -1."""
    a, b = first.strip(), second.strip()
    if not a or not b:
        return -1
    pattern = rf"(?<!\w){re.escape(a)}(?!\w),?\s+or\s+(?<!\w){re.escape(b)}(?!\w)"
    hits = [m.start() for m in re.finditer(pattern, text)]
    return hits[-1] if hits else -1


def listed_order(task: TaskData, item: dict, condition: str) -> str | None:
    """How the user message of ``condition`` lists the two answers at their last "A or B":
    ``"correct_first"``, ``"foil_first"``, or None when it never lists them so."""
    message = assemble_message(task.config, item, condition)
    correct, foil = item[f"{condition}_correct"], item[f"{condition}_incorrect"]
    correct_first, foil_first = _last_listing(message, correct, foil), _last_listing(message, foil, correct)
    if correct_first < 0 and foil_first < 0:
        return None
    return "correct_first" if correct_first > foil_first else "foil_first"


def correct_named_first(task: TaskData, item: dict) -> bool:
    """Whether both user messages of ``item`` list the two answers ("A or B") with the
    condition's own correct answer first: the answer-order leak of book methods, difference 8, where a suffix
    "answer {correct_answer} or {incorrect_answer}" names the correct option first in the clean
    and the corrupted prompt alike, so the option order alone tells the answer."""
    return all(listed_order(task, item, condition) == "correct_first" for condition in ("clean", "corrupted"))


_LABEL = re.compile(r"(?:^|(?<=\s))([A-Z][a-z]+):(?=\s|$)")


def fewshot_frame(problem: str) -> str:
    """The solved-example frame of a problem, e.g. ``"Context: … Answer: ×2"``: the label the
    problem ends on, the label that opens each example, and how many solved examples come
    before the query; ``""`` when the problem does not end on a label after solved examples."""
    labels = [(m.group(1), m.start()) for m in _LABEL.finditer(problem)]
    if not labels or problem.rstrip()[-1:] != ":" or labels[-1][1] + len(labels[-1][0]) + 1 < len(problem.rstrip()):
        return ""
    answer = labels[-1][0]
    shots = sum(label == answer for label, _ in labels) - 1
    cues = [label for label, _ in labels[:-1] if label != answer]
    if shots < 1 or not cues:
        return ""
    return f"{cues[-1]}: … {answer}: ×{shots}"


#: The few-shot frame that 7 phys and 3 ToM tasks of the study share (book methods, difference 9).
STUDY_SHARED_FRAME = "Context: … Answer: ×2"


def audit_items(suite: dict[str, TaskData]) -> pd.DataFrame:
    """How a suite's items stand on the study files' known defects, one row per task.

    ``n_items`` (entries in the file for a task read from the study's layout, else items),
    ``n_duplicates``, ``n_equal_answers`` and ``n_other_invalid`` (from ``task.source`` when the
    task was read from files, else found in its items), ``options_in_suffix`` (the config's
    suffix fills in both answers), ``options_listed_share`` (share of items whose clean message
    lists both answers as "A or B"), ``correct_first_share`` (share of items for which
    :func:`correct_named_first` holds: both messages list the correct answer first),
    ``fewshot_frame`` (the most common :func:`fewshot_frame`) and ``shared_study_frame`` (it is
    the study's shared 2-shot "Context: … Answer:" frame). Shares are over ``task.items``.
    """
    rows = []
    for name, task in suite.items():
        if task.source is not None:
            n_items, excluded = task.source.n_in_file, dict(task.source.excluded)
        else:
            n_items, (_, excluded) = len(task.items), classify_items(task.items)
        n_used = max(len(task.items), 1)
        frames = Counter(fewshot_frame(item["clean_problem"]) for item in task.items)
        frame = frames.most_common(1)[0][0] if frames else ""
        rows.append({
            "task": name, "domain": task.domain, "n_items": n_items,
            "n_duplicates": len(excluded.get("duplicate", ())),
            "n_equal_answers": len(excluded.get("equal_answers", ())),
            "n_other_invalid": sum(len(v) for r, v in excluded.items() if r not in ("duplicate", "equal_answers")),
            "options_in_suffix": all(f in task.config.suffix for f in ("{correct_answer}", "{incorrect_answer}")),
            "options_listed_share": sum(listed_order(task, item, "clean") is not None for item in task.items) / n_used,
            "correct_first_share": sum(correct_named_first(task, item) for item in task.items) / n_used,
            "fewshot_frame": frame, "shared_study_frame": frame == STUDY_SHARED_FRAME,
        })
    return pd.DataFrame(rows)


def _write_json_atomic(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def export_study_layout(suite: dict[str, TaskData], out_dir) -> Path:
    """Write ``suite`` as ``out_dir/data/<domain>/<file>.json`` + ``out_dir/config/<domain>/config.json``.

    Files are written atomically (temporary file + ``os.replace``). An existing config.json of a
    domain is replaced by the configs of the exported tasks of that domain. Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    configs: dict[str, dict] = {}
    for name, task in suite.items():
        validate_items(task.items, name, f"{task.label} (in memory)", domain=task.domain)
        _write_json_atomic(out_dir / "data" / task.domain / task.config.path, task.items)
        configs.setdefault(task.domain, {})[name] = task.config.to_study_json()
    for domain, entries in configs.items():
        _write_json_atomic(out_dir / "config" / domain / "config.json", entries)
    return out_dir
