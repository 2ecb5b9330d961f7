"""Tables for readers (modularity.showing.tables): one p-value style, counts as integers, numbers to
the digits they mean, an em dash for what is missing, meaningless indexes hidden, long tables folded."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from modularity.showing import findings, tables

NAN = float("nan")


@pytest.mark.parametrize("p, n, shown", [
    (1 / 10_001, 10_000, "< 0.0001"),
    (0.0443955, 10_000, "0.044"),
    (0.00031, 10_000, "0.00031"),
    (1 / 2_001, 2_000, "< 0.0005"),
    (2.7416662225401556e-10, None, "2.7e-10"),
    (1.0, 10_000, "1"),
    (NAN, 10_000, "—"),
    (None, None, "—"),
])
def test_p_values_in_the_one_style_of_format_p(p, n, shown):
    assert tables.p_text(p, n) == shown
    if shown != "—":  # the same digits as the sentences of the pages
        assert findings.format_p(p, n).endswith(shown.removeprefix("< "))


@pytest.mark.parametrize("value, decimals, shown", [
    (0.664435, None, "0.664"), (18.0, None, "18"), (10000.0, None, "10,000"), (6.168392, None, "6.17"),
    (128.0000001, None, "128"), (-0.000485, None, "-0.000485"), (0.00031, None, "0.00031"), (4.102, None, "4.10"), (12.04, None, "12.0"), (0.05, None, "0.05"),
    (3.2e-06, None, "3.2e-06"), (0.0, None, "0"), (0.765625, 2, "0.77"), (1536.25, 0, "1,536"),
    (NAN, 2, "—"), (None, None, "—"), (np.float32(0.5), None, "0.5"), (0.29999, None, "0.300"),
])
def test_numbers_for_reading(value, decimals, shown):
    assert tables.number_text(value, decimals) == shown


def test_counts_and_percentages():
    assert tables.count_text(46080.0) == "46,080"
    assert tables.count_text(np.int64(7)) == "7"
    assert tables.count_text(NAN) == "—"
    assert tables.percent_text(0.778) == "78%"
    assert tables.percent_text(0.0512, 1) == "5.1%"
    assert tables.percent_text(None) == "—"


def frame() -> pd.DataFrame:
    return pd.DataFrame({
        "task": ["a_b", "c"], "n_items": [64, 42], "accuracy": [0.765625, NAN], "p": [1 / 10_001, 0.0443955],
        "passes": [True, False], "cells": [18.0, NAN], "reason": [None, "stopped early"], "share": [0.625, 0.1],
        "ratio": [6.168392, 128.0],
    })


def test_for_reading_formats_every_column_for_what_it_means():
    table = tables.for_reading(frame(), p_columns=["p"], n_permutations=10_000, int_columns=["cells"],
                               percent_columns=["share"], digits={"accuracy": 2},
                               rename={"n_items": "items", "passes": "kept"})
    cells = table.frame
    assert list(cells.columns) == ["task", "items", "accuracy", "p", "kept", "cells", "reason", "share", "ratio"]
    assert cells.iloc[0].tolist() == ["a_b", "64", "0.77", "< 0.0001", "yes", "18", "—", "62%", "6.17"]
    assert cells.iloc[1].tolist() == ["c", "42", "—", "0.044", "no", "—", "stopped early", "10%", "128"]
    shown = table.to_html() + repr(table)
    for never in ("nan", "None", "NaN", "0.000100", "128.000000", "True"):
        assert never not in shown
    assert table.hide_index and "row_heading" not in table.to_html()  # row numbers say nothing
    assert "&lt; 0.0001" in table.to_html()  # escaped HTML
    assert 'class="dataframe modularity-table"' in table.to_html()  # the book's table style


def test_meaningful_index_is_kept_and_numbers_align_right():
    df = frame().set_index("task")
    table = tables.for_reading(df[["n_items", "reason"]])
    html = table.to_html()
    assert not table.hide_index and "row_heading" in html and "a_<wbr>b" in html
    assert "td.col0" in html and "td.col1" not in html  # the count column is right-aligned, the text not


def test_same_table_same_html_and_font_floor():
    assert tables.for_reading(frame()).to_html() == tables.for_reading(frame()).to_html()
    assert "font-size: 0.9em" in tables.for_reading(frame(), font_size=0.9).to_html()
    with pytest.raises(ValueError):
        tables.for_reading(frame(), font_size=0.7)
    with pytest.raises(KeyError):
        tables.for_reading(frame(), p_columns=["no such column"])


def test_note_multiindex_breakable_and_empty():
    df = pd.DataFrame({"tasks": [18.0, 17.5], "p": [1 / 10_001, NAN]},
                      index=pd.MultiIndex.from_tuples([("smollm2/small", "overlap"), ("mean", "overlap")],
                                                      names=["run", "matrix"]))
    table = tables.for_reading(df, p_columns=["p"], n_permutations=10_000, note="mean: across runs.")
    assert table.frame["tasks"].tolist() == ["18", "17.5"] and table.frame["p"].tolist() == ["< 0.0001", "—"]
    assert "smollm2/<wbr>small" in table.to_html() and "mean: across runs." in table.to_html()
    assert repr(table).endswith("mean: across runs.")
    wrapped = tables.for_reading(pd.DataFrame({"name": ["long_task/name"]})).to_html()
    assert "long_task/name" in tables.for_reading(pd.DataFrame({"name": ["long_task/name"]}), breakable=False).to_html()
    assert "long_<wbr>task/<wbr>name" in wrapped
    assert len(tables.for_reading(pd.DataFrame(columns=["a", "b"]))) == 0


def test_domain_note_names_every_domain():
    assert tables.DOMAIN_NOTE == ("Domains: MD formal reasoning, ToM social reasoning, phys physical reasoning, "
                                  "Lan language.")


def test_folded_keeps_the_whole_table_one_click_away():
    full = tables.for_reading(frame())
    summary = tables.for_reading(frame().head(1))
    fold = tables.folded(full, "All <2> tasks", summary=summary)
    html = fold._repr_html_()
    assert html.index(summary.to_html()) < html.index("<details") < html.index(full.to_html()) < html.index("</details>")
    assert "<summary>All &lt;2&gt; tasks</summary>" in html
    assert "All <2> tasks:" in repr(fold)
    sentence = tables.folded(frame(), "Every row", summary="Two tasks, one kept.")._repr_html_()
    assert sentence.startswith("<p>Two tasks, one kept.</p><details") and "modularity-table" in sentence
    assert tables.folded(full, "only the fold")._repr_html_().startswith("<details")


def test_every_numeric_cell_is_finite_or_a_dash():
    rng = np.random.default_rng(0)
    df = pd.DataFrame(rng.normal(size=(5, 3)) * 10.0 ** rng.integers(-6, 6, size=(5, 3)), columns=list("xyz"))
    df.iloc[0, 0] = NAN
    df.iloc[1, 1] = math.inf
    cells = tables.for_reading(df).frame
    assert cells.iloc[0, 0] == cells.iloc[1, 1] == "—"
    assert not cells.stack().str.contains("nan|inf", case=False).any()


def test_indices_are_plain_integers_and_counts_have_separators():
    table = tables.for_reading(pd.DataFrame({"layer": [20], "neuron": [1238], "positive neurons": [23193],
                                             "score": [0.0288661]}))
    assert table.frame.iloc[0].tolist() == ["20", "1238", "23,193", "0.0289"]


def test_alignment_can_be_turned():
    df = pd.DataFrame({"n": [1], "shown": ["0.77*"]})
    assert "td.col0" in tables.for_reading(df).to_html() and "td.col1" not in tables.for_reading(df).to_html()
    turned = tables.for_reading(df, left=["n"], right=["shown"]).to_html()
    assert "td.col1" in turned and "td.col0" not in turned
