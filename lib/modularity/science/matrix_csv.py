"""Read and write task × task matrices in the study's published CSV layout.

Layout (e.g. ``results/<model>/overlap/positive_0.1pct_overlap.csv``)::

    ,MD/code_A,ToM/agent,...
    MD/code_A,1.0,0.02,...
    ToM/agent,0.02,1.0,...

A square table whose first column and header row both hold ``domain/task``
labels, with domain codes ``MD``, ``ToM``, ``phys``, ``Lan``. Overlap matrices
are symmetric; ablation matrices are directed (rows = source, columns = target).

:func:`read_matrix_csv` validates all of this and says which file, which label
and how to fix it when something is off. By default it also drops the two
legacy tasks ``phys/material`` and ``phys/spatial`` that haunt the study's
per-model ablation CSVs (book methods, difference 4), recording them in
``df.attrs["dropped_legacy"]``.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from modularity.base.files import atomic_write_bytes
from modularity.science.overlap import domain_of
from modularity.science.tasks.schema import DOMAINS

__all__ = ["LEGACY_LABELS", "read_matrix_csv", "write_matrix_csv", "domains_of"]

#: Tasks without data or config in the study's repo that linger in old ablation CSVs (book methods, difference 4).
LEGACY_LABELS: tuple[str, ...] = ("phys/material", "phys/spatial")


def _label_problem(label: object) -> str | None:
    """Why ``label`` is not a valid ``domain/task`` label, or None if it is."""
    if not isinstance(label, str) or "/" not in label:
        return "is not of the form 'domain/task'"
    domain, task = domain_of(label), label.split("/", 1)[1]
    if domain not in DOMAINS:
        return f"has unknown domain {domain!r} (expected one of {', '.join(DOMAINS)}, case-sensitive)"
    if not task:
        return "has an empty task name"
    return None


def domains_of(labels: Sequence[str]) -> list[str]:
    """Domain code of each ``domain/task`` label, e.g. ``['MD', 'Lan']``.

    Raises ValueError naming the first label that is malformed or has an unknown domain.
    """
    codes = []
    for position, label in enumerate(labels):
        problem = _label_problem(label)
        if problem:
            raise ValueError(f"label {label!r} (position {position}) {problem}")
        codes.append(domain_of(label))
    return codes


def _read_cells(path: Path) -> pd.DataFrame:
    """The CSV as a DataFrame of strings, labels as given (no renaming of repeats)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as stream:
            rows = [row for row in csv.reader(stream) if row]
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a UTF-8 text file; expected a CSV of 'domain/task' labels and numbers") from None
    except csv.Error as error:
        raise ValueError(f"{path}: not a well-formed CSV ({error})") from None
    if not rows:
        raise ValueError(f"{path}: the file is empty; expected a header row of 'domain/task' labels")
    header, body = rows[0], rows[1:]
    if len(header) < 2:
        raise ValueError(f"{path}: no matrix columns found; the header must be ',' followed by the task labels")
    width = len(header)
    for number, row in enumerate(body, start=1):
        if len(row) != width:
            label = row[0] if row else ""
            raise ValueError(
                f"{path}: row {label!r} (data row {number}) has {len(row) - 1} values but the header "
                f"names {width - 1} columns; every row needs its label plus one value per column "
                "(leave a cell empty, not absent, for a missing value)"
            )
    return pd.DataFrame(
        [row[1:] for row in body],
        index=pd.Index([row[0].strip() for row in body], dtype=object),
        columns=pd.Index([label.strip() for label in header[1:]], dtype=object),
    )


def read_matrix_csv(
    path: str | os.PathLike,
    *,
    drop_legacy: bool = True,
    common_labels: bool = False,
) -> pd.DataFrame:
    """Load a task × task matrix CSV as a float DataFrame [n, n] (rows = columns = labels).

    Checks, each failing with a ValueError that names the file, the offending
    row/label and the fix:

    * every row and column label is ``domain/task`` with a known domain;
    * no label repeats;
    * rows and columns hold the same labels (columns are reordered to the row
      order if only the order differs). With ``common_labels=True`` a
      non-square matrix is instead cut to the labels present as both row and
      column (what the study's SI Table 1 script does for ablation CSVs); the
      cut labels go to ``df.attrs["dropped_unpaired"]``;
    * every cell is numeric (empty cells become NaN and are allowed).

    ``drop_legacy`` (default True) removes :data:`LEGACY_LABELS` from rows and
    columns and lists the removed ones in ``df.attrs["dropped_legacy"]``.
    ``df.attrs["source"]`` holds the path.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (expected a task × task matrix CSV)")
    raw = _read_cells(path)
    for position, label in enumerate(raw.columns):
        problem = _label_problem(label)
        if problem:
            raise ValueError(
                f"{path}: column label {label!r} (header position {position + 1}) {problem}; "
                "fix the header so every column is named like 'MD/code_A'"
            )
    for position, label in enumerate(raw.index):
        problem = _label_problem(label)
        if problem:
            raise ValueError(
                f"{path}: row label {label!r} (data row {position + 1}) {problem}; "
                "fix the first column so every row is named like 'MD/code_A'"
            )
    for axis_name, labels in (("row", raw.index), ("column", raw.columns)):
        repeated = labels[labels.duplicated()].unique().tolist()
        if repeated:
            raise ValueError(f"{path}: {axis_name} label {repeated[0]!r} appears more than once; each task must appear once")

    row_labels, column_labels = list(raw.index), list(raw.columns)
    dropped_unpaired: list[str] = []
    if set(row_labels) != set(column_labels):
        only_rows = [label for label in row_labels if label not in set(column_labels)]
        only_columns = [label for label in column_labels if label not in set(row_labels)]
        if not common_labels:
            raise ValueError(
                f"{path}: rows and columns must hold the same task labels; "
                f"only in rows: {only_rows[:5]}, only in columns: {only_columns[:5]} "
                f"({len(row_labels)} rows × {len(column_labels)} columns). Fix the file, or keep only "
                "the labels present in both (read_matrix_csv(..., common_labels=True))"
            )
        dropped_unpaired = only_rows + only_columns
        row_labels = [label for label in row_labels if label in set(column_labels)]
    raw = raw.loc[row_labels, row_labels]

    stripped = raw.apply(lambda column: column.str.strip())
    numbers = stripped.apply(pd.to_numeric, errors="coerce")
    bad = numbers.isna() & (stripped != "")
    if bad.to_numpy().any():
        row_position, column_position = np.argwhere(bad.to_numpy())[0]
        row_label, column_label = raw.index[row_position], raw.columns[column_position]
        raise ValueError(
            f"{path}: row {row_label!r}, column {column_label!r} holds "
            f"{raw.iat[row_position, column_position]!r}, which is not a number; "
            "every cell must be a number (or empty for missing)"
        )
    matrix = numbers.astype(float)
    matrix.index.name = None
    matrix.columns.name = None

    dropped_legacy: list[str] = []
    if drop_legacy:
        dropped_legacy = [label for label in matrix.index if label in LEGACY_LABELS]
        matrix = matrix.drop(index=dropped_legacy, columns=dropped_legacy)
    if matrix.shape[0] == 0:
        raise ValueError(f"{path}: no tasks left after removing legacy/unpaired labels")
    matrix.attrs = {
        "source": str(path),
        "dropped_legacy": dropped_legacy,
        "dropped_unpaired": dropped_unpaired,
    }
    return matrix


def write_matrix_csv(matrix: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``matrix`` in the study's layout (empty top-left cell), atomically.

    Written atomically (:func:`modularity.base.files.atomic_write_bytes`), so readers
    never see a half-written file. Parent folders are created. Returns the path.
    """
    path = Path(path)
    if matrix.shape[0] != matrix.shape[1] or list(matrix.index) != list(matrix.columns):
        raise ValueError(f"{path}: refusing to write a matrix whose rows and columns differ")
    domains_of(list(matrix.index))
    atomic_write_bytes(path, matrix.to_csv(index_label="").encode())
    return path
