"""Write a stage template notebook from a list of cells (keeps the parameters cell in sync with runs.SCHEMA).

Usage (from the repo root): ``python tools/notebook_builder.py`` rebuilds every template listed in
``tools/notebook_sources/``. Each source is a Python file defining ``CELLS``: a list of
``("md" | "code" | "code-hide" | "parameters", text)`` pairs; the string ``"PARAMETERS"`` marks where the parameters cell goes.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import nbformat

from modularity.runs import SCHEMA

ROOT = Path(__file__).resolve().parents[1]


def parameters_source() -> str:
    lines = []
    for key, spec in SCHEMA.items():
        lines.append(f"{key} = {spec.default!r}  # {spec.help}")
    return "\n".join(lines)


def build(cells: list, path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    for cell in cells:
        if cell == "PARAMETERS":
            code = nbformat.v4.new_code_cell(parameters_source())
            code.metadata["tags"] = ["parameters"]
            nb.cells.append(code)
            continue
        kind, text = cell
        text = text.strip("\n")
        if kind == "md":
            nb.cells.append(nbformat.v4.new_markdown_cell(text))
        else:
            code = nbformat.v4.new_code_cell(text)
            if kind == "code-hide":
                code.metadata["tags"] = ["hide-input"]
            elif kind == "parameters":  # a notebook's own parameters cell (not the run schema's)
                code.metadata["tags"] = ["parameters"]
            nb.cells.append(code)
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nbformat.write(nb, str(path))


def main(names: list[str]) -> None:
    sources = sorted((ROOT / "tools" / "notebook_sources").glob("*.py"))
    for source in sources:
        if names and source.stem not in names:
            continue
        spec = importlib.util.spec_from_file_location(source.stem, source)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        build(module.CELLS, ROOT / "notebooks" / f"{source.stem}.ipynb")
        print("wrote", f"notebooks/{source.stem}.ipynb")


if __name__ == "__main__":
    main(sys.argv[1:])
