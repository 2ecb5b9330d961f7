"""The book's own pages: the whole-book notebooks (executed once, not per run) and ``_toc.yml``,
which lists every run's finished stage pages."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from .runner import execute_template, run_label, scratch_folder, signals_interrupt
from ..stages import registry
from ..base.files import REPO_ROOT, atomic_write_bytes

#: Book chapters made by executing a notebook once for the whole book (not per run):
#: page name → (template in notebooks/, page, parameters, working directory relative to the repo,
#: navigation title or None for the notebook's own heading).
BOOK_PAGES: dict[str, tuple[str, str, dict, str, str | None]] = {
    "findings": ("findings", "book/findings.ipynb", {}, ".", None),
    "tasks": ("00_task_suite", "book/tasks.ipynb", {"profile": "small", "n_items": 64, "seed": 0}, "notebooks", None),
    "study_results": ("study_results", "book/study_results.ipynb", {}, ".", None),
    "surface": ("surface", "book/surface.ipynb", {}, ".", None),
    "across_models": ("08_across_models", "book/across_models.ipynb",
                      {"runs_to_compare": ["smollm2-135m-instruct/small", "gemma3-270m/small"]}, ".",
                      "Across models (small profile)"),
    "across_models_paper": ("08_across_models", "book/across_models_paper.ipynb",
                            {"runs_to_compare": ["smollm2-135m-instruct/paper", "gemma3-270m/paper"]}, ".",
                            "Across models (paper profile)"),
    "scale": ("scale", "book/scale.ipynb", {}, ".", None),
    "architectures": ("architectures", "book/architectures.ipynb", {"seed": 0}, ".", None),
    "provenance": ("90_provenance", "book/provenance.ipynb", {}, ".", None),
}


#: Each run's landing page: template in notebooks/ and the page it makes in the run's results folder.
RUN_PAGE = ("run_overview", "overview.ipynb")
#: The name that asks :func:`execute_book_pages` for every run's landing page.
RUN_PAGES = "runs"


def execute_book_pages(names: tuple[str, ...] | None = None, log_output: bool = False,
                       root: Path | None = None) -> list[Path]:
    """Execute the whole-book chapter notebooks of :data:`BOOK_PAGES` into ``book/`` and, for
    :data:`RUN_PAGES`, the landing page of every run under ``book/results/`` (:data:`RUN_PAGE`).
    Landing pages come first: the chapters may link to them."""
    chosen = names or (RUN_PAGES, *BOOK_PAGES)
    unknown = [n for n in chosen if n not in BOOK_PAGES and n != RUN_PAGES]
    if unknown:
        raise ValueError(f"unknown book page(s) {unknown}; pages are {[RUN_PAGES, *BOOK_PAGES]}")
    root = Path(root or REPO_ROOT)
    outputs = []
    with scratch_folder() as scratch, signals_interrupt():
        if RUN_PAGES in chosen:
            template, page = RUN_PAGE
            for run_dir in runs_present(root):
                run = f"{run_dir.parent.name}/{run_dir.name}"
                execute_template(REPO_ROOT / "notebooks", template, run_dir / page, {"run": run}, REPO_ROOT,
                                 log_output, scratch=scratch, what=f"landing page of {run}",
                                 heading=run_label(run_dir.parent.name, run_dir.name))
                outputs.append(run_dir / page)
        for name in (n for n in chosen if n != RUN_PAGES):
            template, page, parameters, cwd, title = BOOK_PAGES[name]
            output = REPO_ROOT / page
            execute_template(REPO_ROOT / "notebooks", template, output, parameters, REPO_ROOT / cwd, log_output,
                             scratch=scratch, what=f"book page {name}", heading=_heading(title))
            outputs.append(output)
    return outputs


def _heading(title: str | None) -> str | None:
    """A page whose navigation title differs from its template's (the two across-models pages)
    carries the difference in its heading too: ``Across models (small profile)`` → ``Small profile``."""
    if title and "(" in title:
        inside = title[title.index("(") + 1: title.rindex(")")]
        return inside[:1].upper() + inside[1:]
    return None


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


def runs_present(root: Path | None = None) -> list[Path]:
    """The results folder of every run with a ``manifest.json``, in :data:`RUN_ORDER`."""
    root = Path(root or REPO_ROOT)
    return [m.parent for m in sorted((root / "book" / "results").glob("*/*/manifest.json"), key=_reading_order)]


def finished_stage_pages(root: Path | None = None) -> list[tuple[str, str]]:
    """``(page path without suffix, title)`` of every stage notebook that its run's manifest
    records as finished, runs in :data:`RUN_ORDER`, stages in pipeline order."""
    root = Path(root or REPO_ROOT)
    pages = []
    for run_dir in runs_present(root):
        finished = json.loads((run_dir / "manifest.json").read_text()).get("stages", {})
        label = run_label(run_dir.parent.name, run_dir.name)
        for stage in registry.STAGES:
            if stage.notebook in finished and (run_dir / f"{stage.notebook}.ipynb").exists():
                page = (run_dir / stage.notebook).relative_to(root).as_posix()
                pages.append((page, f"{label} · {stage.title}"))
    return pages


def _run_sections(root: Path) -> list[dict]:
    """The Results chapter's sections: per run its landing page, with its stage pages under it;
    a run whose landing page has not been made yet lists its stage pages directly."""
    pages = finished_stage_pages(root)  # every run's, read once
    sections = []
    for run_dir in runs_present(root):
        stages = [{"file": page, "title": title} for page, title in pages
                  if page.startswith(run_dir.relative_to(root).as_posix() + "/")]
        landing = run_dir / RUN_PAGE[1]
        if landing.exists():
            sections.append({"file": landing.with_suffix("").relative_to(root).as_posix(),
                             "title": run_label(run_dir.parent.name, run_dir.name),
                             **({"sections": stages} if stages else {})})
        else:
            sections += stages
    return sections


def write_toc(root: Path | None = None) -> Path:
    """Write ``_toc.yml``: fixed chapters plus, per run present, its landing page and finished stage pages."""
    root = Path(root or REPO_ROOT)
    results = {"file": "book/results/index"}
    sections = _run_sections(root)
    if sections:
        results["sections"] = sections
    toc = {
        "format": "jb-book",
        "root": "book/intro",
        "parts": [
            {"caption": "Findings", "chapters": [_page_entry("findings")]},
            {"caption": "The study", "chapters": [_page_entry("tasks"), {"file": "book/methods"}]},
            {"caption": "Results", "chapters": [_page_entry("study_results"), _page_entry("surface"), results,
                                                 _page_entry("across_models"), _page_entry("across_models_paper")]},
            {"caption": "Using this book", "chapters": [{"file": "book/rerun"}, _page_entry("architectures"),
                                                        _page_entry("scale"), {"file": "book/teaching"},
                                                        {"file": "book/limitations"}, _page_entry("provenance")]},
        ],
    }
    header = ("# Written by `modularity book pages` (modularity.running.book.write_toc): per run, its landing page "
              "and its finished stages.\n")
    path = root / "_toc.yml"
    atomic_write_bytes(path, (header + yaml.safe_dump(toc, sort_keys=False, allow_unicode=True)).encode())
    return path
