"""Tables for readers: numbers formatted for what they mean, one style of p-value, and nothing
hidden off the right edge of the text column.

:func:`for_reading` turns a :class:`pandas.DataFrame` into a :class:`ReadingTable`, which a notebook
shows like a DataFrame (its HTML is a pandas Styler, its plain text the same formatted cells):

* p-values in the one style of :func:`modularity.showing.findings.format_p` without its ``p``
  (``0.044``, ``< 0.0001``);
* counts as integers with thousands separators (``10,000``, never ``10000.000000``);
* other numbers to the decimals a column asks for, else to three significant digits
  (``0.664``, ``18``), shares as percentages (``62%``) where asked;
* a missing value as an em dash (``—``), never ``nan`` or ``None``; ``True``/``False`` as yes/no;
* the index hidden when it is only row numbers.

:func:`folded` shows a short summary and keeps the whole table one click away, in an HTML
``<details>`` block. Both are pure: they build HTML and text, they read and write no file.
"""
from __future__ import annotations

import hashlib
import html
import math
import numbers
from typing import Callable, Iterable, Mapping

import numpy as np
import pandas as pd
from pandas.io.formats.style import Styler

from ..science.tasks.schema import DOMAIN_NAMES, DOMAINS
from .findings import format_p

__all__ = ["MISSING", "ID_COLUMNS", "SMALLEST_FONT", "DOMAIN_NOTE", "ReadingTable", "Folded", "p_text",
           "number_text", "count_text", "percent_text", "for_reading", "folded"]

#: What a reader sees for a missing or undefined value.
MISSING = "—"
#: Columns that number things rather than count them: shown as plain integers (neuron 1238).
ID_COLUMNS = ("layer", "neuron", "index", "item", "position")
#: The smallest font a table may shrink to (relative to the page's text).
SMALLEST_FONT = 0.85
#: The line under a table that names domains by the study's short codes.
DOMAIN_NOTE = "Domains: " + ", ".join(f"{code} {DOMAIN_NAMES[code].lower()}" for code in DOMAINS) + "."


def _missing(value) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and not math.isfinite(float(value))


def p_text(p, n_permutations: int | None = None) -> str:
    """A p-value as a table cell, in :func:`~modularity.showing.findings.format_p`'s style without
    its leading ``p``: ``0.044``, ``< 0.0001`` at the resolution of ``n_permutations`` draws, and
    :data:`MISSING` when it was not computed."""
    if _missing(p):
        return MISSING
    shown = format_p(float(p), n_permutations)
    if shown.startswith("p = "):
        return shown[len("p = "):]
    if shown.startswith("p < "):
        return shown[len("p "):]
    return MISSING  # "p not computed"


def count_text(value) -> str:
    """A count: ``1,536`` (a float count is rounded to the integer it stands for)."""
    if _missing(value):
        return MISSING
    return f"{int(round(float(value))):,}"


def percent_text(share, decimals: int = 0) -> str:
    """A share in [0, 1] as a percentage: ``0.62`` → ``62%``."""
    if _missing(share):
        return MISSING
    return f"{100 * float(share):.{decimals}f}%"


def number_text(value, decimals: int | None = None) -> str:
    """A number for reading. With ``decimals``: that many (``0.66``). Without: an integral value as
    an integer (``18``, ``10,000``), else three significant digits (``0.664``, ``4.10``, ``123``),
    in exponent form only below 0.0001 (``3.2e-06``)."""
    if _missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    x = float(value)
    if decimals is not None:
        return f"{x:,.{decimals}f}"
    if x == 0:
        return "0"
    if x.is_integer() and abs(x) < 1e15:
        return f"{int(x):,}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) < 1e-4:
        return f"{x:.2g}"
    exact = float(f"{x:.3g}") == x  # a value with three digits or fewer (0.05, 0.1) is shown as it is
    shown = f"{x:.3g}" if exact else f"{x:#.3g}".rstrip(".")  # "#" keeps the rounded digits: 4.10, 12.0
    if "e" in shown:  # 0.0001 ≤ |x| < 0.001 prints in exponent form with "g"
        shown = f"{x:.{3 - 1 - math.floor(math.log10(abs(x)))}f}"
    return shown


def _text_of(value, kind: str, decimals: int | None, n_permutations: int | None,
             words: tuple[str, str]) -> str:
    if kind == "p":
        return p_text(value, n_permutations)
    if _missing(value):
        return MISSING
    if isinstance(value, (bool, np.bool_)):
        return words[0] if bool(value) else words[1]
    if kind == "count":
        return count_text(value)
    if kind == "id":
        return str(int(round(float(value))))
    if kind == "percent":
        return percent_text(value, decimals or 0)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        return number_text(value, decimals)
    return str(value)


def _breakable(text) -> str:
    """``text`` (already HTML-escaped) allowed to wrap after ``_`` and ``/`` (long task and run names)."""
    return str(text).replace("_", "_<wbr>").replace("/", "/<wbr>")


def _meaningless(index: pd.Index) -> bool:
    """An index that only numbers the rows: unnamed and of integers."""
    return (not isinstance(index, pd.MultiIndex) and index.name is None
            and pd.api.types.is_integer_dtype(index.dtype))


def _as_set(columns: Iterable | None) -> set:
    return set() if columns is None else set(columns)


class ReadingTable:
    """A table formatted for reading. Notebooks display it like a DataFrame; ``frame`` holds the
    formatted cells (strings), ``styler`` the pandas Styler whose HTML the page shows."""

    def __init__(self, frame: pd.DataFrame, styler: Styler, hide_index: bool, note: str | None = None):
        self.frame, self.styler, self.hide_index, self.note = frame, styler, hide_index, note

    def to_html(self) -> str:
        table = self.styler.to_html()
        if self.note:
            table += (f'<p class="modularity-table-note" style="font-size: {SMALLEST_FONT}em; margin-top: 0.25em">'
                      f"{html.escape(self.note)}</p>")
        return table

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        text = self.frame.to_string(index=not self.hide_index)
        return text + (f"\n{self.note}" if self.note else "")

    @property
    def columns(self) -> pd.Index:
        return self.frame.columns

    def __len__(self) -> int:
        return len(self.frame)


def for_reading(df: pd.DataFrame, *, p_columns: Iterable = (), n_permutations: int | None = None,
                int_columns: Iterable = (), percent_columns: Iterable = (), id_columns: Iterable = ID_COLUMNS,
                digits: Mapping | int | None = None, rename: Mapping | Callable | None = None,
                hide_index: bool | None = None, font_size: float | None = None,
                words: tuple[str, str] = ("yes", "no"), note: str | None = None,
                left: Iterable = (), right: Iterable = (), breakable: bool = True) -> ReadingTable:
    """``df`` formatted for a reader (see the module's docstring).

    * ``p_columns``: p-values, shown with :func:`p_text` at the resolution of ``n_permutations``;
    * ``int_columns``: counts stored as floats (shown ``1,536``); integer columns are counts anyway;
    * ``id_columns``: integers that number things, shown without separators (``neuron 1238``);
    * ``percent_columns``: shares shown as ``62%`` (decimals from ``digits``, default 0);
    * ``digits``: decimals per column (a mapping), or of every float column (an int); other
      floats get three significant digits (:func:`number_text`);
    * ``rename`` (a mapping or a function) relabels columns *after* the names above were matched;
    * ``hide_index``: by default an unnamed integer index (row numbers) is hidden;
    * ``font_size``: shrink the table to this fraction of the text size (at least
      :data:`SMALLEST_FONT`);
    * ``words``: how booleans read; ``note``: one line under the table (what an abbreviation means);
    * ``left``, ``right``: columns aligned against the default (numbers right, text left), e.g.
      ``right`` for numbers given as text (``0.77*``);
    * ``breakable``: long words (task and run names) may wrap after ``_`` and ``/``, in cells,
      headings and index labels, where the table would otherwise not fit."""
    if font_size is not None and font_size < SMALLEST_FONT:
        raise ValueError(f"font_size {font_size} is below the smallest readable {SMALLEST_FONT}")
    p_cols, int_cols, pct_cols = _as_set(p_columns), _as_set(int_columns), _as_set(percent_columns)
    id_cols = _as_set(id_columns) & set(df.columns)
    unknown = (p_cols | int_cols | pct_cols | set(digits if isinstance(digits, Mapping) else ())) - set(df.columns)
    if unknown:
        raise KeyError(f"columns not in the table: {sorted(map(str, unknown))}")
    shown = pd.DataFrame(index=df.index)
    numeric = []
    for position, column in enumerate(df.columns):
        values = df.iloc[:, position]
        dtype = values.dtype
        if column in p_cols:
            kind = "p"
        elif column in pct_cols:
            kind = "percent"
        elif column in id_cols and pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            kind = "id"
        elif column in int_cols or (pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)):
            kind = "count"
        else:
            kind = "other"
        decimals = digits.get(column) if isinstance(digits, Mapping) else digits
        if kind in ("count", "id"):
            decimals = None
        if kind != "other" or (pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)):
            numeric.append(position)
        shown[position] = [_text_of(v, kind, decimals, n_permutations, words) for v in values]
    relabel = rename if callable(rename) else (lambda c: (rename or {}).get(c, c))
    shown.columns = df.columns if isinstance(df.columns, pd.MultiIndex) else pd.Index([relabel(c) for c in df.columns])
    if hide_index is None:
        hide_index = _meaningless(df.index)
    position = {c: i for i, c in enumerate(df.columns)}
    aligned_right = sorted(({i for i in numeric} - {position[c] for c in left}) | {position[c] for c in right})
    # the same table gets the same HTML ids, so a re-executed page changes only where its numbers do
    digest = hashlib.sha1((shown.to_csv() + repr((aligned_right, font_size, hide_index, breakable))).encode())
    styler = shown.style.set_uuid(f"read{digest.hexdigest()[:10]}").format(escape="html")
    if breakable:
        styler = styler.format(_breakable, escape="html")
        for axis in (0, 1):
            styler = styler.format_index(_breakable, axis=axis, escape="html")
    styler = styler.set_table_attributes('class="dataframe modularity-table"')
    styles = [{"selector": "th, td", "props": [("text-align", "left"), ("padding", "0.15em 0.5em")]}]
    if aligned_right:  # numbers line up on the right, in their cells and under their headings
        styles.append({"selector": ", ".join(f"td.col{i}, th.col_heading.col{i}" for i in aligned_right),
                       "props": [("text-align", "right")]})
    if font_size is not None:
        styles.append({"selector": "", "props": [("font-size", f"{font_size}em")]})
    styler = styler.set_table_styles(styles)
    if hide_index:
        styler = styler.hide(axis="index")
    return ReadingTable(shown, styler, hide_index, note)


class Folded:
    """A summary shown on the page and the whole table in a ``<details>`` block below it."""

    def __init__(self, full, label: str, summary=None):
        self.full, self.label, self.summary = full, label, summary

    @staticmethod
    def _html(part) -> str:
        if part is None:
            return ""
        if isinstance(part, str):
            return f"<p>{html.escape(part)}</p>"
        if isinstance(part, pd.DataFrame):
            return for_reading(part).to_html()
        return part._repr_html_() if hasattr(part, "_repr_html_") else part.to_html()

    def _repr_html_(self) -> str:
        return (self._html(self.summary)
                + f'<details class="modularity-fold"><summary>{html.escape(self.label)}</summary>'
                + self._html(self.full) + "</details>")

    def __repr__(self) -> str:
        parts = [repr(self.summary)] if self.summary is not None and not isinstance(self.summary, str) else (
            [self.summary] if self.summary else [])
        return "\n\n".join(parts + [f"{self.label}:", repr(self.full)])


def folded(full, label: str, summary=None) -> Folded:
    """``full`` (a :class:`ReadingTable`, Styler or DataFrame) folded under ``label``, after
    ``summary`` (a table, or a sentence) that stays visible. Everything stays on the page: the
    reader opens the fold to see the whole table."""
    return Folded(full, label, summary)
