"""The book's own pages: the whole-book notebooks (executed once, not per run) and ``_toc.yml``,
which lists every run's finished stage pages."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from .runner import execute_template, scratch_folder, signals_interrupt
from ..stages import registry
from ..base.files import REPO_ROOT, atomic_write_bytes

#: Book chapters made by executing a notebook once for the whole book (not per run):
#: page name → (template in notebooks/, page, parameters, working directory relative to the repo,
#: navigation title or None for the notebook's own heading).
BOOK_PAGES: dict[str, tuple[str, str, dict, str, str | None]] = {
    "findings": ("findings", "book/findings.ipynb", {}, ".", None),
    "tasks": ("00_task_suite", "book/tasks.ipynb", {"profile": "small", "n_items": 64, "seed": 0}, "notebooks", None),
    "study_results": ("study_results", "book/study_results.ipynb", {}, ".", None),
    "across_models": ("08_across_models", "book/across_models.ipynb",
                      {"runs_to_compare": ["smollm2-135m-instruct/small", "gemma3-270m/small"]}, ".",
                      "Across models (small profile)"),
    "across_models_paper": ("08_across_models", "book/across_models_paper.ipynb",
                            {"runs_to_compare": ["smollm2-135m-instruct/paper", "gemma3-270m/paper"]}, ".",
                            "Across models (paper profile)"),
    "scale": ("scale", "book/scale.ipynb", {}, ".", None),
    "provenance": ("90_provenance", "book/provenance.ipynb", {}, ".", None),
}


def execute_book_pages(names: tuple[str, ...] | None = None, log_output: bool = False) -> list[Path]:
    """Execute the whole-book chapter notebooks of :data:`BOOK_PAGES` into ``book/``."""
    chosen = names or tuple(BOOK_PAGES)
    unknown = [n for n in chosen if n not in BOOK_PAGES]
    if unknown:
        raise ValueError(f"unknown book page(s) {unknown}; pages are {list(BOOK_PAGES)}")
    outputs = []
    with scratch_folder() as scratch, signals_interrupt():
        for name in chosen:
            template, page, parameters, cwd, _ = BOOK_PAGES[name]
            output = REPO_ROOT / page
            execute_template(REPO_ROOT / "notebooks", template, output, parameters, REPO_ROOT / cwd, log_output,
                             scratch=scratch, what=f"book page {name}")
            outputs.append(output)
    return outputs


def _page_entry(name: str) -> dict:
    _, page, _, _, title = BOOK_PAGES[name]
    entry = {"file": page.removesuffix(".ipynb")}
    return {**entry, "title": title} if title else entry


#: The book's runs in reading order, the default run first; runs not named here follow, by name.
RUN_ORDER = ("smollm2-135m-instruct/small", "gemma3-270m/small", "smollm2-135m-instruct/paper", "gemma3-270m/paper",
             "smollm2-135m-instruct-study-items/paper")


def _reading_order(manifest_path: Path) -> tuple:
    run = f"{manifest_path.parent.parent.name}/{manifest_path.parent.name}"
    return (RUN_ORDER.index(run), "") if run in RUN_ORDER else (len(RUN_ORDER), run)


def finished_stage_pages(root: Path | None = None) -> list[tuple[str, str]]:
    """``(page path without suffix, title)`` of every stage notebook that its run's manifest
    records as finished, runs in :data:`RUN_ORDER`, stages in pipeline order."""
    root = Path(root or REPO_ROOT)
    pages = []
    for manifest_path in sorted((root / "book" / "results").glob("*/*/manifest.json"), key=_reading_order):
        finished = json.loads(manifest_path.read_text()).get("stages", {})
        run_dir = manifest_path.parent
        label = f"{run_dir.parent.name} ({run_dir.name})"
        for stage in registry.STAGES:
            if stage.notebook in finished and (run_dir / f"{stage.notebook}.ipynb").exists():
                page = (run_dir / stage.notebook).relative_to(root).as_posix()
                pages.append((page, f"{label} · {stage.title}"))
    return pages


def write_toc(root: Path | None = None) -> Path:
    """Write ``_toc.yml``: fixed chapters plus the finished stage pages of every run present."""
    root = Path(root or REPO_ROOT)
    results = {"file": "book/results/index"}
    pages = finished_stage_pages(root)
    if pages:
        results["sections"] = [{"file": page, "title": title} for page, title in pages]
    toc = {
        "format": "jb-book",
        "root": "book/intro",
        "parts": [
            {"caption": "Findings", "chapters": [_page_entry("findings")]},
            {"caption": "The study", "chapters": [_page_entry("tasks"), {"file": "book/methods"}]},
            {"caption": "Results", "chapters": [_page_entry("study_results"), results, _page_entry("across_models"),
                                                 _page_entry("across_models_paper")]},
            {"caption": "Using this book", "chapters": [{"file": "book/rerun"}, _page_entry("scale"), {"file": "book/teaching"},
                                                        {"file": "book/limitations"}, _page_entry("provenance")]},
        ],
    }
    header = "# Written by `modularity book pages` (modularity.running.book.write_toc): run pages are the finished stages present.\n"
    path = root / "_toc.yml"
    atomic_write_bytes(path, (header + yaml.safe_dump(toc, sort_keys=False, allow_unicode=True)).encode())
    return path
