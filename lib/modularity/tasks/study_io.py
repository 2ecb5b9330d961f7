"""Reading and writing the study's published layout, with validation that says how to fix things.

Layout: ``root/data/<domain>/<file>.json`` (a JSON list of items) and
``root/config/<domain>/config.json`` (task key → config; ``config.path`` names the data file,
so phys keys ``physics_*`` point at files ``phys_*.json``).
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .schema import DOMAINS, REQUIRED_KEYS, PromptConfig, TaskData


class TaskDataError(ValueError):
    """A task file that does not follow the study's item format (METHOD §1.1)."""


def validate_items(items, task: str, source: str, domain: str | None = None) -> list[dict]:
    """Check a task's items; raise :class:`TaskDataError` naming ``source``, the item index and the fix.

    Checks: a list of dicts, the six required keys with non-empty strings, the pure answer swap
    (``corrupted_correct == clean_incorrect`` and ``corrupted_incorrect == clean_correct``),
    distinct answers, no duplicated item, and, when ``domain`` is given, a known task/domain pair.
    """
    from .suite import TASK_DOMAINS  # late import: suite imports the generators

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
    seen: dict[tuple, int] = {}
    for index, item in enumerate(items):
        where = f"{source}: item {index}"
        if not isinstance(item, dict):
            raise TaskDataError(f"{where}: expected an object with keys {REQUIRED_KEYS}, got {type(item).__name__}")
        missing = [k for k in REQUIRED_KEYS if k not in item]
        if missing:
            raise TaskDataError(f"{where}: missing key(s) {missing}; every item needs {list(REQUIRED_KEYS)}")
        for key in REQUIRED_KEYS:
            if not isinstance(item[key], str) or not item[key].strip():
                raise TaskDataError(f"{where}: {key!r} is empty or not a string; give it the text of the "
                                    f"{'problem' if key.endswith('problem') else 'answer'}")
        if item["corrupted_correct"] != item["clean_incorrect"] or item["corrupted_incorrect"] != item["clean_correct"]:
            raise TaskDataError(
                f"{where}: corrupted answers are not the clean ones swapped "
                f"(corrupted_correct={item['corrupted_correct']!r}, clean_incorrect={item['clean_incorrect']!r}; "
                f"corrupted_incorrect={item['corrupted_incorrect']!r}, clean_correct={item['clean_correct']!r}); "
                "set corrupted_correct = clean_incorrect and corrupted_incorrect = clean_correct")
        if item["clean_correct"] == item["clean_incorrect"]:
            raise TaskDataError(f"{where}: clean_correct equals clean_incorrect ({item['clean_correct']!r}); "
                                "the foil must be a different answer")
        key = tuple(item[k] for k in REQUIRED_KEYS)
        if key in seen:
            raise TaskDataError(f"{where}: duplicate of item {seen[key]}; remove one of them")
        seen[key] = index
    return items


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


def load_study_data(root, tasks=None) -> dict[str, TaskData]:
    """Read ``root/config/<domain>/config.json`` and the data files they name, in study CSV order.

    ``tasks`` (optional) restricts to those keys; a requested task that is missing raises
    FileNotFoundError. Items are validated with :func:`validate_items`.
    """
    from .suite import TASK_NAMES

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
        for task, entry in configs.items():
            if tasks is not None and task not in tasks:
                continue
            config = _config_from_json(entry, task, config_path)
            data_path = root / "data" / domain / config.path
            if not data_path.exists():
                raise FileNotFoundError(f"{data_path}: data file of task {task!r} (named by {config_path}) is missing")
            items = validate_items(_read_json(data_path), task, str(data_path), domain=domain)
            found[task] = TaskData(name=task, domain=domain, config=config, items=items)
    if tasks is not None:
        missing = [t for t in tasks if t not in found]
        if missing:
            raise FileNotFoundError(f"{root}: task(s) {missing} not found in any config/<domain>/config.json")
    order = {name: i for i, name in enumerate(TASK_NAMES)}
    return dict(sorted(found.items(), key=lambda kv: order.get(kv[0], len(order))))


def _write_json_atomic(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(obj, stream, indent=2, ensure_ascii=False)
            stream.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
