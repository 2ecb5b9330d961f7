"""Charts for the book: pure Altair builders plus an offline, interactive display helper.

Builders take a :class:`pandas.DataFrame` and return an :class:`altair.Chart` (or a layered /
faceted chart). They do no file I/O and do not touch Altair's global state.

Two functions leave the pure world:

* :func:`show` puts a chart into a notebook output that works **offline**: the output is a single
  ``text/html`` block holding a static SVG rendered by vl-convert (always visible, also in plain
  Jupyter and when JavaScript fails) and the chart's Vega-Lite spec. Inside the book, a small script
  swaps the SVG for the interactive chart rendered by the *local* bundle
  ``_static/vendor/modularity-vega.min.js`` (vega, vega-lite and vega-embed, wrapped so that the only
  global is ``window.modularityVega``). Nothing is fetched from a CDN.
* :func:`save_figure` writes SVG / PNG / PDF files with vl-convert.

Input formats (long / tidy DataFrames) are documented on each builder. Task labels may be plain task
keys with a separate ``domain`` column, or ``"domain/task"`` labels as in the study's CSVs.
"""
from __future__ import annotations

import hashlib
import html
import json
import math
import re
from itertools import count
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import altair as alt
import numpy as np
import pandas as pd

from modularity.science.ablation import CONTROL_KINDS
from modularity.science.overlap import COMPOSITION_CATEGORIES, domain_of
from modularity.science.stats import BAR_KINDS
from modularity.science.tasks.schema import DOMAIN_NAMES as SCHEMA_DOMAIN_NAMES
from modularity.science.tasks.schema import DOMAINS

__all__ = [
    "DOMAINS_OVERLAP_ORDER",
    "DOMAINS_ACCURACY_ORDER",
    "DOMAIN_NAMES",
    "DOMAIN_COLORS",
    "accuracy_heatmap",
    "overlap_heatmap",
    "chord_diagram",
    "domain_bars",
    "layer_composition",
    "threshold_sweep",
    "accuracy_bars",
    "beside_study",
    "control_bars",
    "set_task_heatmap",
    "t_distribution",
    "to_html",
    "to_svg",
    "show",
    "save_figure",
    "BUNDLE_PATH",
    "COLUMN_PX",
    "MIN_TEXT_PX",
]

# --------------------------------------------------------------------------------------------
# Domains: order, names, colours
# --------------------------------------------------------------------------------------------

#: Order of the study's overlap / ablation CSVs (book methods §4): the domains' own order.
DOMAINS_OVERLAP_ORDER = DOMAINS
#: Order of the accuracy table, SI Fig 1 (book methods §2): Language, Formal, Physics, Social.
DOMAINS_ACCURACY_ORDER = ("Lan", "MD", "phys", "ToM")

#: The domains' names (one definition, in the task schema) and Fig 2B's "shared" category.
DOMAIN_NAMES = {**SCHEMA_DOMAIN_NAMES, "shared": "shared (≥ 2 domains)"}
#: Colour-blind-friendly (Tableau 10) colours, one per domain, used by every chart.
DOMAIN_COLORS = {
    "Lan": "#4e79a7",
    "MD": "#f28e2b",
    "phys": "#59a14f",
    "ToM": "#e15759",
    "shared": "#9c9c9c",
}
CROSS_COLOR = "#b0b0b0"

#: Where the book ships the offline Vega bundle, relative to the book root.
BUNDLE_PATH = "_static/vendor/modularity-vega.min.js"

_FONT = "Helvetica Neue, Helvetica, Arial, sans-serif"
#: The width a chart may take at its own size without being shrunk: a notebook output at a 1,280 px
#: window (688 px) less the interactive chart's menu button beside it.
COLUMN_PX = 640
#: The smallest text a chart draws, in px at its own size (so on screen, for a chart that fits).
MIN_TEXT_PX = 9


def _domain_of(label: str) -> str | None:
    """The domain of a ``domain/task`` label (:func:`modularity.science.overlap.domain_of`), None for a bare task key."""
    return domain_of(label) if "/" in label else None


def _task_of(label: str) -> str:
    return label.split("/", 1)[1] if "/" in label else label


def _domain_rank(order: Sequence[str]):
    rank = {d: i for i, d in enumerate(order)}
    return lambda d: rank.get(d, len(rank))


def _resolve_domains(labels: Sequence[str], domains) -> dict[str, str]:
    """Map every label to its domain.

    ``domains`` may be a mapping (label or task key -> domain), a sequence aligned with ``labels``,
    or None (then labels must be ``"domain/task"``).
    """
    out: dict[str, str] = {}
    if domains is None:
        for lab in labels:
            d = _domain_of(str(lab))
            if d is None:
                raise ValueError(f"no domain for {lab!r}: pass `domains` or use 'domain/task' labels")
            out[lab] = d
        return out
    if isinstance(domains, pd.Series):
        domains = domains.to_dict()
    if isinstance(domains, Mapping):
        for lab in labels:
            d = domains.get(lab, domains.get(_task_of(str(lab)), _domain_of(str(lab))))
            if d is None:
                raise ValueError(f"no domain for {lab!r} in `domains`")
            out[lab] = d
        return out
    domains = list(domains)
    if len(domains) != len(labels):
        raise ValueError(f"`domains` has {len(domains)} entries for {len(labels)} labels")
    return dict(zip(labels, domains))


def _percent(values: pd.Series) -> pd.Series:
    """Accuracy as percent: fractions (all ≤ 1) are multiplied by 100."""
    v = pd.to_numeric(values, errors="coerce")
    if v.dropna().le(1.0).all():
        v = v * 100.0
    return v


def _require(df: pd.DataFrame, cols: Iterable[str], who: str) -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ValueError(f"{who}: missing column(s) {missing}; got {list(df.columns)}")


def _domain_color_scale(domains: Sequence[str] | None = None, extra: Mapping[str, str] | None = None):
    doms = list(domains) if domains is not None else list(DOMAINS_OVERLAP_ORDER)
    colors = dict(DOMAIN_COLORS)
    if extra:
        colors.update(extra)
    return alt.Scale(domain=doms, range=[colors.get(d, "#777777") for d in doms])


# --------------------------------------------------------------------------------------------
# Builders (pure)
# --------------------------------------------------------------------------------------------

def accuracy_heatmap(
    df: pd.DataFrame,
    *,
    threshold: float = 60.0,
    title: str = "Both-correct accuracy per task and model",
    model_order: Sequence[str] | None = None,
    cell: int = 16,
) -> alt.VConcatChart:
    """SI Fig 1: both-correct accuracy (%) with tasks as columns and models as rows.

    ``df`` is long: columns ``task``, ``model``, ``accuracy`` (percent, or fractions ≤ 1 which are
    converted), plus ``domain`` unless tasks are ``"domain/task"`` labels. Optional ``n_aligned``,
    ``n_both`` and ``n_scored`` columns appear in the tooltip. Colours: viridis from 50 to 100 (clamped); columns are
    grouped by domain (Language, Physical, Social in one row; Formal, the widest, in a row of its own,
    so that the 46 tasks fit a text column), and sorted by task key; cells below the inclusion ``threshold`` are outlined
    in red.
    """
    _require(df, ["task", "model", "accuracy"], "accuracy_heatmap")
    d = df.copy()
    d["task"] = d["task"].astype(str)
    if "domain" not in d.columns:
        d["domain"] = [_domain_of(t) for t in d["task"]]
        if d["domain"].isna().any():
            raise ValueError("accuracy_heatmap: give a `domain` column or 'domain/task' labels")
    d["task_key"] = d["task"].map(_task_of)
    d["accuracy"] = _percent(d["accuracy"])
    d["domain_name"] = d["domain"].map(lambda x: DOMAIN_NAMES.get(x, x))
    d["acc_label"] = d["accuracy"].map(lambda v: "" if pd.isna(v) else f"{v:.0f}")
    d["status"] = np.where(d["accuracy"] >= threshold, "kept", f"excluded (< {threshold:g}%)")
    d["below"] = d["accuracy"] < threshold
    rank = _domain_rank(DOMAINS_ACCURACY_ORDER)
    task_order = sorted(d[["domain", "task_key"]].drop_duplicates().itertuples(index=False),
                        key=lambda r: (rank(r.domain), r.task_key))
    tasks_sorted = [t.task_key for t in task_order]
    models = list(model_order) if model_order is not None else list(dict.fromkeys(d["model"]))
    dom_present = sorted(d["domain"].unique(), key=rank)

    tooltip = [
        alt.Tooltip("task_key:N", title="task"),
        alt.Tooltip("domain_name:N", title="domain"),
        alt.Tooltip("model:N", title="model"),
        alt.Tooltip("accuracy:Q", title="both-correct accuracy (%)", format=".1f"),
        alt.Tooltip("status:N", title="60% filter"),
    ]
    for extra, t in (("n_both", "items both-correct"), ("n_aligned", "token-aligned items"),
                     ("n_scored", "items scored (fewer: stopped early)")):
        if extra in d.columns:
            tooltip.append(alt.Tooltip(f"{extra}:Q", title=t))

    def panel(domain: str, first_in_row: bool) -> alt.LayerChart:
        tasks = [t for t in tasks_sorted if t in set(d.loc[d.domain == domain, "task_key"])]
        x = alt.X("task_key:N", sort=tasks, title=None, scale=alt.Scale(domain=tasks),
                  axis=alt.Axis(labelAngle=-60, labelFontSize=MIN_TEXT_PX, labelLimit=160))
        y = alt.Y("model:N", sort=models, title=None, scale=alt.Scale(domain=models),
                  axis=alt.Axis(labelFontSize=10, labelLimit=140) if first_in_row else None)
        base = alt.Chart().encode(x=x, y=y)
        rect = base.mark_rect().encode(
            color=alt.Color("accuracy:Q", title="accuracy (%)",
                            scale=alt.Scale(scheme="viridis", domain=[50, 100], clamp=True),
                            legend=alt.Legend(gradientLength=120, orient="bottom")),
            tooltip=tooltip,
        )
        outline = base.mark_rect(fill=None, stroke="#d62728", strokeWidth=2).encode(
            tooltip=tooltip).transform_filter("datum.below")
        text = base.mark_text(fontSize=MIN_TEXT_PX).encode(
            text="acc_label:N",
            color=alt.condition("datum.accuracy >= 80", alt.value("black"), alt.value("white")),
            tooltip=tooltip,
        )
        return alt.layer(rect, outline, text, data=d[d.domain == domain]).properties(
            width=alt.Step(cell), height=alt.Step(cell + 3),
            title=alt.TitleParams(DOMAIN_NAMES.get(domain, domain), fontSize=11, anchor="middle"))

    # The widest domain (Formal, 20 tasks) gets a row of its own below the others, so that the
    # 46 tasks fit a text column.
    widest = max(dom_present, key=lambda x: (d.loc[d.domain == x, "task_key"].nunique(), -rank(x)))
    others = [x for x in dom_present if x != widest]
    rows = ([alt.hconcat(*[panel(x, i == 0) for i, x in enumerate(others)], spacing=8)] if others else []) \
        + [panel(widest, True)]
    return alt.vconcat(*rows, spacing=12).properties(
        title=alt.Title(title, subtitle=f"Cells outlined in red fall below the {threshold:g}% inclusion filter; "
                                        "hover a cell for the task, model and exact value."))


def _square_long(matrix: pd.DataFrame, domains, order: Sequence[str]):
    if matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"matrix must be square, got {matrix.shape}")
    labels = [str(x) for x in matrix.index]
    m = matrix.copy()
    m.index = labels
    m.columns = [str(c) for c in matrix.columns]
    if list(m.columns) != labels:
        m = m.loc[labels, labels] if set(m.columns) == set(labels) else m.set_axis(labels, axis=1)
    dom = _resolve_domains(labels, domains)
    rank = _domain_rank(order)
    sorted_labels = sorted(labels, key=lambda lab: (rank(dom[lab]), labels.index(lab)))
    return m.loc[sorted_labels, sorted_labels], dom, sorted_labels


def overlap_heatmap(
    matrix: pd.DataFrame,
    domains=None,
    *,
    title: str = "Overlap of top-attributed neuron sets between tasks",
    value_label: str = "overlap |A∩B|/k",
    value_format: str = ".3f",
    cell: int = 12,
    domain_order: Sequence[str] = DOMAINS_OVERLAP_ORDER,
    show_diagonal: bool = False,
) -> alt.LayerChart:
    """Interactive heatmap of a task × task matrix with visible domain blocks.

    ``matrix``: square DataFrame, index and columns are task labels (same set). ``domains``: mapping
    label/task -> domain, a list aligned with the index, or None for ``"domain/task"`` labels. Tasks
    are ordered MD, ToM, phys, Lan (the study's CSV order), keeping the matrix order within a domain.
    Coloured strips on the top and left mark the domains; white rules separate the blocks. The colour
    scale spans the off-diagonal values; the diagonal (1 for overlap by construction) is drawn grey
    unless ``show_diagonal``. The tooltip reads "A ∩ B: value".
    """
    m, dom, order = _square_long(matrix, domains, domain_order)
    rows = []
    for a in order:
        for b in order:
            v = m.at[a, b]
            v = None if pd.isna(v) else float(v)
            ta, tb = _task_of(a), _task_of(b)
            rows.append({
                "a": ta, "b": tb, "a_dom": dom[a], "b_dom": dom[b], "value": v,
                "diag": a == b,
                "pair": f"{ta} ∩ {tb}: " + ("n/a" if v is None else format(v, value_format)),
                "kind": "within domain" if dom[a] == dom[b] else "cross domain",
            })
    d = pd.DataFrame(rows)
    tasks = [_task_of(x) for x in order]
    if len(set(tasks)) != len(tasks):  # task keys collide across domains: keep full labels
        d["a"] = [r for r in order for _ in order]
        d["b"] = [c for _ in order for c in order]
        d["pair"] = [f"{r} ∩ {c}: " + ("n/a" if pd.isna(v) else format(v, value_format))
                     for r, c, v in zip(d["a"], d["b"], d["value"])]
        tasks = list(order)
    off = d.loc[~d["diag"], "value"].dropna()
    vmax = float(off.max()) if len(off) else 1.0
    vmin = min(0.0, float(off.min())) if len(off) else 0.0
    if vmax <= vmin:
        vmax = vmin + 1.0

    dom_seq = [dom[x] for x in order]
    doms_present = list(dict.fromkeys(dom_seq))
    tooltip = [alt.Tooltip("pair:N", title=value_label),
               alt.Tooltip("a_dom:N", title="row domain"),
               alt.Tooltip("b_dom:N", title="column domain"),
               alt.Tooltip("kind:N", title="pair")]
    # explicit scale domains: layers with different data would otherwise drop the custom sort
    label_color = _label_color_by_domain(tasks, dom_seq)
    x = alt.X("b:N", title=None, scale=alt.Scale(domain=tasks),
              axis=alt.Axis(orient="top", labelAngle=-90, labelFontSize=MIN_TEXT_PX, labelLimit=110, ticks=False,
                            labelColor=label_color, domain=False))
    y = alt.Y("a:N", title=None, scale=alt.Scale(domain=tasks),
              axis=alt.Axis(labelFontSize=MIN_TEXT_PX, labelLimit=110, ticks=False, labelColor=label_color,
                            domain=False))
    color = alt.Color("value:Q", title=value_label,
                      scale=alt.Scale(scheme="blues", domain=[vmin, vmax], clamp=True),
                      legend=alt.Legend(gradientLength=int(max(50, min(160, len(order) * cell - 30))),
                                        orient="top", direction="horizontal", titleLimit=300))
    if show_diagonal:
        heat = alt.Chart(d).mark_rect().encode(x=x, y=y, color=color, tooltip=tooltip)
    else:
        heat = alt.Chart(d).mark_rect().encode(
            x=x, y=y,
            color=alt.condition("datum.diag", alt.value("#d9d9d9"), color),
            tooltip=tooltip)

    # domain blocks: separator rules at the first task of each block (band start)
    starts = [tasks[i] for i in range(1, len(tasks)) if dom_seq[i] != dom_seq[i - 1]]
    sep = pd.DataFrame({"t": starts})
    vrule = alt.Chart(sep).mark_rule(color="white", strokeWidth=2).encode(
        x=alt.X("t:N", scale=alt.Scale(domain=tasks), bandPosition=0))
    hrule = alt.Chart(sep).mark_rule(color="white", strokeWidth=2).encode(
        y=alt.Y("t:N", scale=alt.Scale(domain=tasks), bandPosition=0))
    strip_df = pd.DataFrame({"t": tasks, "domain": dom_seq,
                             "domain_name": [DOMAIN_NAMES.get(x, x) for x in dom_seq]})
    dscale = _domain_color_scale(doms_present)
    strip_tip = [alt.Tooltip("t:N", title="task"), alt.Tooltip("domain_name:N", title="domain")]
    bottom = alt.Chart(strip_df).mark_rect().encode(
        x=alt.X("t:N", scale=alt.Scale(domain=tasks), title=None, axis=None),
        color=alt.Color("domain:N", scale=dscale, title="domain",
                        legend=alt.Legend(orient="bottom", direction="horizontal", labelExpr=_domain_name_expr())),
        tooltip=strip_tip,
    ).properties(height=8, width=alt.Step(cell))
    main = alt.layer(heat, vrule, hrule).properties(width=alt.Step(cell), height=alt.Step(cell))
    chart = alt.vconcat(main, bottom, spacing=3).resolve_scale(color="independent")
    return chart.properties(title=alt.Title(title, subtitle=[
        "Tasks grouped by domain: label colours and the strip below mark each task's domain.",
        "Grey diagonal: a task with itself. Hover a cell for the pair and its value."]))


def _domain_name_expr() -> str:
    expr = "datum.label"
    for code, name in DOMAIN_NAMES.items():
        expr = f"datum.label === {json.dumps(code)} ? {json.dumps(name)} : ({expr})"
    return expr


def _label_color_by_domain(tasks: Sequence[str], dom_seq: Sequence[str]) -> dict:
    conds = []
    for dname in dict.fromkeys(dom_seq):
        members = [t for t, dd in zip(tasks, dom_seq) if dd == dname]
        conds.append({"test": f"indexof({json.dumps(members)}, datum.value) >= 0",
                      "value": _darken(DOMAIN_COLORS.get(dname, "#333333"))})
    return {"condition": conds, "value": "#333333"}


def _darken(hex_color: str, f: float = 0.75) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) for i in (0, 2, 4))
    return "#{:02x}{:02x}{:02x}".format(int(r * f), int(g * f), int(b * f))


def _circle_layout(order: Sequence[str], dom: Mapping[str, str], gap: float) -> dict[str, float]:
    """Angles (radians, 0 = 12 o'clock, clockwise) of every task, with a gap between domains."""
    n = len(order)
    n_groups = len(dict.fromkeys(dom[x] for x in order))
    step = (2 * math.pi - gap * n_groups) / max(n, 1)
    theta, angles, prev = gap / 2, {}, None
    for lab in order:
        if prev is not None and dom[lab] != dom[prev]:
            theta += gap
        angles[lab] = theta + step / 2
        theta += step
        prev = lab
    return angles


def chord_diagram(
    matrix: pd.DataFrame,
    domains=None,
    cutoff: float = 0.05,
    *,
    title: str | None = None,
    size: int = 440,
    domain_order: Sequence[str] = DOMAINS_OVERLAP_ORDER,
    value_format: str = ".3f",
) -> alt.LayerChart:
    """Chord-style diagram (Fig 2A style) of the task pairs whose value is ≥ ``cutoff``.

    Tasks sit on a circle grouped by domain (an arc per task, coloured by domain). Each upper-triangle
    pair with value ≥ ``cutoff`` is a curved link through the centre; its width is
    0.5 + 5·v/max(v) as in the study's R script, and its colour is the domain when both tasks share
    one, grey when the link crosses domains. Purely illustrative: the statistics are elsewhere.
    """
    m, dom, order = _square_long(matrix, domains, domain_order)
    angles = _circle_layout(order, dom, gap=0.12)
    c = size / 2
    r_in = size * 0.30
    r_node = r_in + 3
    step = (2 * math.pi - 0.12 * len(set(dom.values()))) / max(len(order), 1)

    def xy(theta: float, r: float) -> tuple[float, float]:
        return c + r * math.sin(theta), c - r * math.cos(theta)

    links = []
    for i, a in enumerate(order):
        for b in order[i + 1:]:
            v = m.at[a, b]
            if pd.isna(v) or float(v) < cutoff:
                continue
            links.append((a, b, float(v)))
    vmax = max((v for *_, v in links), default=1.0) or 1.0
    pts = []
    for k, (a, b, v) in enumerate(links):
        kind = dom[a] if dom[a] == dom[b] else "cross-domain"
        (x0, y0), (x2, y2) = xy(angles[a], r_in), xy(angles[b], r_in)
        # control point pulled towards the centre; closer tasks bend less
        sep = abs(angles[a] - angles[b])
        sep = min(sep, 2 * math.pi - sep)
        pull = 0.15 + 0.6 * (1 - sep / math.pi)
        xm, ym = (x0 + x2) / 2, (y0 + y2) / 2
        x1, y1 = c + (xm - c) * pull, c + (ym - c) * pull
        label = f"{_task_of(a)} ∩ {_task_of(b)}: {format(v, value_format)}"
        for j, (x, y) in enumerate(((x0, y0), (x1, y1), (x2, y2))):
            pts.append({"link": k, "order": j, "x": x, "y": y, "kind": kind, "value": v,
                        "width": 0.5 + 5 * v / vmax, "pair": label})
    links_df = pd.DataFrame(pts, columns=["link", "order", "x", "y", "kind", "value", "width", "pair"])

    nodes = []
    for lab in order:
        th = angles[lab]
        deg = math.degrees(th)
        right = deg <= 180
        lx, ly = xy(th, r_node + 16)
        nodes.append({
            "task": _task_of(lab), "domain": dom[lab], "domain_name": DOMAIN_NAMES.get(dom[lab], dom[lab]),
            "theta": th - step * 0.45, "theta2": th + step * 0.45,
            "lx": lx, "ly": ly, "angle": (deg - 90) if right else (deg + 90), "right": right,
            "degree": int(sum(1 for a, b, _ in links if lab in (a, b))),
        })
    nodes_df = pd.DataFrame(nodes)
    doms_present = list(dict.fromkeys(dom[x] for x in order))
    kinds = doms_present + ["cross-domain"]
    kscale = _domain_color_scale(kinds, {"cross-domain": CROSS_COLOR})

    pix = dict(scale=None, axis=None)
    link_layer = alt.Chart(links_df).mark_line(interpolate="basis", opacity=0.55).encode(
        x=alt.X("x:Q", **pix), y=alt.Y("y:Q", **pix),
        detail="link:N", order="order:Q",
        color=alt.Color("kind:N", scale=kscale, title="link",
                        legend=alt.Legend(orient="right", symbolType="stroke", symbolStrokeWidth=3)),
        strokeWidth=alt.StrokeWidth("width:Q", scale=None, legend=None),
        tooltip=[alt.Tooltip("pair:N", title="tasks"), alt.Tooltip("kind:N", title="link")],
    )
    arcs = alt.Chart(nodes_df).mark_arc(radius=r_node, radius2=r_node + 10, stroke="white",
                                        strokeWidth=0.5).encode(
        theta=alt.Theta("theta:Q", scale=None), theta2="theta2",
        color=alt.Color("domain:N", scale=kscale, legend=None),
        tooltip=[alt.Tooltip("task:N"), alt.Tooltip("domain_name:N", title="domain"),
                 alt.Tooltip("degree:Q", title=f"links ≥ {cutoff:g}")],
    )
    text_common = dict(
        x=alt.X("lx:Q", **pix), y=alt.Y("ly:Q", **pix), text="task:N",
        angle=alt.Angle("angle:Q", scale=None),
        tooltip=[alt.Tooltip("task:N"), alt.Tooltip("domain_name:N", title="domain")],
    )
    lab_r = alt.Chart(nodes_df).mark_text(align="left", baseline="middle", fontSize=MIN_TEXT_PX).encode(
        **text_common).transform_filter("datum.right")
    lab_l = alt.Chart(nodes_df).mark_text(align="right", baseline="middle", fontSize=MIN_TEXT_PX).encode(
        **text_common).transform_filter("!datum.right")
    n_within = int(sum(1 for a, b, _ in links if dom[a] == dom[b]))
    sub = (f"{len(links)} links ≥ {cutoff:g} ({n_within} within a domain, {len(links) - n_within} across); "
           "width ∝ value. Illustrative only.")
    return alt.layer(link_layer, arcs, lab_r, lab_l).properties(
        width=size, height=size,
        title=alt.Title(title or f"Task pairs sharing neurons (links ≥ {cutoff:g})", subtitle=sub))


def _kind_label(k: str) -> str:
    s = str(k).strip()
    low = s.lower().replace(" ", "").replace("->", "→")
    if low.startswith("within"):
        return "within"
    if low in ("d→others", "d→other", "source", "out", "from"):
        return "D→others"
    if low in ("others→d", "other→d", "target", "in", "to"):
        return "others→D"
    return s


def domain_bars(
    df: pd.DataFrame,
    *,
    title: str = "Ablation effect by domain (Fig 2C)",
    y_title: str = "Accuracy drop after ablation (mean ± SEM)",
    domain_order: Sequence[str] = DOMAINS_ACCURACY_ORDER,
    kind_titles: Mapping[str, str] | None = None,
    legend_title: str = "ablated → tested",
) -> alt.LayerChart:
    """Fig 2C: three bars per domain D with mean ± SEM error bars.

    ``df`` columns: ``domain``, ``kind`` (``within`` = S, T ∈ D with S ≠ T; ``D→others`` = S ∈ D,
    T ∉ D; ``others→D`` = S ∉ D, T ∈ D; ``->`` is accepted for ``→``), ``mean``, ``sem``, ``n``.
    ``kind_titles`` replaces the tooltip's description of a kind (e.g. for localizer sets, whose
    ``within`` has no S ≠ T); ``legend_title`` names the legend.
    """
    _require(df, ["domain", "kind", "mean", "sem", "n"], "domain_bars")
    d = df.copy()
    d["kind"] = d["kind"].map(_kind_label)
    d["lo"] = d["mean"] - d["sem"]
    d["hi"] = d["mean"] + d["sem"]
    d["domain_name"] = d["domain"].map(lambda x: DOMAIN_NAMES.get(x, x))
    rank = _domain_rank(domain_order)
    doms = sorted(d["domain"].unique(), key=rank)
    names = [DOMAIN_NAMES.get(x, x) for x in doms]
    kinds = [k for k in BAR_KINDS if k in set(d["kind"])] + sorted(set(d["kind"]) - set(BAR_KINDS))
    kind_title = {"within": "within D (S, T ∈ D, S ≠ T)", "D→others": "D → others (ablate D's units, test other tasks)",
                  "others→D": "others → D (ablate other tasks' units, test D)", **(kind_titles or {})}
    d["kind_desc"] = d["kind"].map(lambda k: kind_title.get(k, k))
    tooltip = [alt.Tooltip("domain_name:N", title="domain"), alt.Tooltip("kind_desc:N", title="cells"),
               alt.Tooltip("mean:Q", format=".4f"), alt.Tooltip("sem:Q", title="SEM", format=".4f"),
               alt.Tooltip("n:Q", title="n cells")]
    # Wrap long domain names ("Formal (multiple demand)") so neighbouring labels never collide.
    x = alt.X("domain_name:N", sort=names, title=None,
              axis=alt.Axis(labelAngle=0, labelFontSize=11, labelLimit=110, labelExpr="split(datum.label, ' (')"))
    xo = alt.XOffset("kind:N", sort=kinds)
    bars = alt.Chart(d).mark_bar().encode(
        x=x, xOffset=xo, y=alt.Y("mean:Q", title=y_title),
        color=alt.Color("kind:N", sort=kinds, title=legend_title, legend=alt.Legend(orient="bottom"),
                        scale=alt.Scale(domain=kinds, range=["#4e79a7", "#f28e2b", "#bab0ac", "#76b7b2"][:len(kinds)])),
        tooltip=tooltip)
    err = alt.Chart(d).mark_rule(color="black", strokeWidth=1.2).encode(
        x=x, xOffset=xo, y="lo:Q", y2="hi:Q", tooltip=tooltip)
    return alt.layer(bars, err).properties(
        width=alt.Step(36), height=300,
        title=alt.Title(title, subtitle="Each bar is the mean over matrix cells; error bars are ± SEM "
                                        "(SD with ddof = 1 over √n)."))


def layer_composition(
    df: pd.DataFrame,
    *,
    title: str = "Where the top neurons sit: layer-wise composition (Fig 2B)",
    n_bins: int = 25,
) -> alt.Chart:
    """Fig 2B: stacked bars per layer bin, segment height log10(count + 1).

    ``df`` columns: ``bin`` (0 … n_bins−1, relative depth; ``layer_bin`` is accepted), ``category``
    (Lan, MD, phys, ToM, shared) and ``count`` (average number of top neurons per layer in the bin).
    Segments are stacked linearly in the order Lan, MD, phys, ToM, shared.
    """
    d = df.rename(columns={"layer_bin": "bin"}).copy()
    _require(d, ["bin", "category", "count"], "layer_composition")
    d["height"] = np.log10(d["count"].astype(float) + 1.0)
    cats = [c for c in COMPOSITION_CATEGORIES if c in set(d["category"])]
    cats += sorted(set(d["category"]) - set(cats))
    d["cat_rank"] = d["category"].map({c: i for i, c in enumerate(cats)})
    d["category_name"] = d["category"].map(lambda x: DOMAIN_NAMES.get(x, x))
    return alt.Chart(d).mark_bar().encode(
        x=alt.X("bin:O", title=f"Relative depth (layer bin: 0 = first layer, {n_bins - 1} = last)",
                sort="ascending", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("height:Q", stack="zero", title="log10(neurons per layer + 1), stacked"),
        color=alt.Color("category:N", sort=cats, title="neurons of",
                        scale=_domain_color_scale(cats)),
        order=alt.Order("cat_rank:Q", sort="ascending"),
        tooltip=[alt.Tooltip("bin:O", title="layer bin"), alt.Tooltip("category_name:N", title="category"),
                 alt.Tooltip("count:Q", title="neurons per layer (avg)", format=".2f"),
                 alt.Tooltip("height:Q", title="log10(count + 1)", format=".3f")],
    ).properties(width=alt.Step(20), height=300, title=alt.Title(
        title, subtitle="Each segment's height is log10(count + 1); segments are stacked, so the total "
                        "height is not log10 of the total."))


#: How the threshold sweep's panels name the statistics of :func:`modularity.science.stats.threshold_sweep`.
SWEEP_METRIC_NAMES = {"ratio": "within / cross overlap ratio", "delta": "within − cross overlap",
                      "p": "permutation p", "ari": "ARI of the clustering", "nmi": "NMI of the clustering",
                      "ami": "AMI of the clustering", "v_measure": "V-measure of the clustering",
                      "silhouette": "silhouette of the true domains", "tau_mean": "Kendall's τ, mean over model pairs"}


def threshold_sweep(
    df: pd.DataFrame,
    *,
    title: str = "Sensitivity to the top-k% threshold",
    x_title: str = "top-k threshold (% of all MLP neurons, log scale)",
    y_title: str = "value",
) -> alt.Chart:
    """Line chart of statistics against the top-k% threshold (SI §4).

    ``df`` columns: ``pct`` (e.g. 0.05, 0.1, 1, 5), ``value``; optional ``metric`` (one panel per
    metric, named by :data:`SWEEP_METRIC_NAMES`, independent y, two panels a row so that the grid
    fits a text column and has no empty slot beside a single panel; a metric with no finite value
    gets no panel) and ``series`` or ``model`` (one line per series). ``y_title`` is used without
    ``metric`` only: with it, each panel's heading names its statistic.
    """
    _require(df, ["pct", "value"], "threshold_sweep")
    d = df.copy()
    if "metric" in d.columns:
        finite = d.groupby("metric")["value"].transform(lambda v: np.isfinite(v.astype(float)).any())
        d = d[finite].copy()
        d["metric"] = d["metric"].map(lambda m: SWEEP_METRIC_NAMES.get(m, m))
    series = "series" if "series" in d.columns else ("model" if "model" in d.columns else None)
    faceted = "metric" in d.columns
    enc = dict(
        x=alt.X("pct:Q", scale=alt.Scale(type="log", domain=[float(d["pct"].min()) / 1.4,
                                                             float(d["pct"].max()) * 1.4]), title=x_title,
                axis=alt.Axis(values=sorted(d["pct"].unique().tolist()), format="~g")),
        y=alt.Y("value:Q", title=None if faceted else y_title, scale=alt.Scale(zero=False)),
        tooltip=[alt.Tooltip("pct:Q", title="threshold (%)", format="~g"),
                 alt.Tooltip("value:Q", format=".4f")],
    )
    if faceted:
        enc["tooltip"].insert(0, alt.Tooltip("metric:N", title="statistic"))
    if series:
        enc["color"] = alt.Color(f"{series}:N", title=series)
        enc["tooltip"].insert(0, alt.Tooltip(f"{series}:N"))
    if faceted:
        n_panels = d["metric"].nunique()
        base = alt.Chart(d).mark_line(point=True).encode(**enc).properties(width=270, height=170)
        return base.facet(facet=alt.Facet("metric:N", title=None, sort=list(dict.fromkeys(d["metric"])),
                                          header=alt.Header(labelFontSize=12)),
                          columns=1 if n_panels == 1 else 2).resolve_scale(y="independent").properties(title=title)
    return alt.Chart(d).mark_line(point=True).encode(**enc).properties(width=520, height=220, title=title)


def accuracy_bars(
    df: pd.DataFrame,
    *,
    threshold: float = 60.0,
    title: str = "Both-correct accuracy per task",
) -> alt.Chart:
    """Bar per task (coloured by domain) with a rule at the inclusion threshold.

    ``df`` columns: ``task``, ``accuracy`` (percent or fraction), plus ``domain`` unless tasks are
    ``"domain/task"`` labels; optional ``model`` (one row of bars per model).
    """
    _require(df, ["task", "accuracy"], "accuracy_bars")
    d = df.copy()
    d["task"] = d["task"].astype(str)
    if "domain" not in d.columns:
        d["domain"] = [_domain_of(t) for t in d["task"]]
    d["task_key"] = d["task"].map(_task_of)
    d["accuracy"] = _percent(d["accuracy"])
    d["status"] = np.where(d["accuracy"] >= threshold, "kept", f"excluded (< {threshold:g}%)")
    rank = _domain_rank(DOMAINS_ACCURACY_ORDER)
    tasks = [t for _, t in sorted({(rank(r.domain), r.task_key) for r in d.itertuples()})]
    doms = sorted(d["domain"].unique(), key=rank)
    tooltip = [alt.Tooltip("task_key:N", title="task"), alt.Tooltip("domain:N"),
               alt.Tooltip("accuracy:Q", title="accuracy (%)", format=".1f"),
               alt.Tooltip("status:N", title=f"{threshold:g}% filter")]
    if "model" in d.columns:
        tooltip.insert(0, alt.Tooltip("model:N"))
    bars = alt.Chart().mark_bar().encode(
        x=alt.X("task_key:N", sort=tasks, title=None, axis=alt.Axis(labelAngle=-60, labelFontSize=9)),
        y=alt.Y("accuracy:Q", title="both-correct accuracy (%)", scale=alt.Scale(domain=[0, 100])),
        color=alt.Color("domain:N", scale=_domain_color_scale(doms), title="domain",
                        legend=alt.Legend(orient="top", labelExpr=_domain_name_expr())),
        opacity=alt.condition(f"datum.accuracy >= {threshold}", alt.value(1.0), alt.value(0.45)),
        tooltip=tooltip,
    )
    rule = alt.Chart().mark_rule(color="#d62728", strokeDash=[4, 3]).encode(
        y=alt.datum(threshold))
    layered = alt.layer(bars, rule, data=d).properties(width=alt.Step(12), height=180)
    sub = f"Dashed line: the {threshold:g}% inclusion filter; faded bars fall below it."
    if "model" in d.columns and d["model"].nunique() > 1:
        models = list(dict.fromkeys(d["model"]))
        return layered.facet(row=alt.Row("model:N", title=None, sort=models, header=alt.Header(
            labelAngle=0, labelOrient="top", labelAnchor="start", labelFontWeight="bold",
            labelFontSize=11))).properties(
            title=alt.Title(title, subtitle=sub))
    return layered.properties(title=alt.Title(title, subtitle=sub))


# --------------------------------------------------------------------------------------------
# Rendering: static SVG, offline interactive HTML, files
# --------------------------------------------------------------------------------------------

def _style(chart) -> alt.TopLevelMixin:
    """Apply the book's look unless the caller configured the chart already."""
    cfg = getattr(chart, "config", alt.Undefined)
    if cfg is not alt.Undefined:
        return chart
    return chart.configure(font=_FONT, background="white").configure_title(
        fontSize=14, subtitleFontSize=11, subtitleColor="#555", subtitleFont=_FONT, anchor="start", offset=8,
    ).configure_axis(labelColor="#333", titleColor="#333", titleFontSize=11).configure_view(stroke=None)


def _vl_version() -> str | None:
    import vl_convert as vlc

    m = re.match(r"v?(\d+)\.(\d+)", getattr(alt, "SCHEMA_VERSION", ""))
    if not m:
        return None
    v = f"{m.group(1)}.{m.group(2)}"
    return v if v in vlc.get_vegalite_versions() else None


def _spec(chart) -> dict:
    if isinstance(chart, Mapping):
        return dict(chart)
    return _style(chart).to_dict()


def to_svg(chart) -> str:
    """Static SVG of a chart (or a Vega-Lite spec dict) via vl-convert; no browser, no network."""
    import vl_convert as vlc

    return vlc.vegalite_to_svg(_spec(chart), vl_version=_vl_version())


def _prefix_svg_ids(svg: str, prefix: str) -> str:
    """Make ids unique per chart so several inline SVGs on one page cannot reference each other."""
    ids = set(re.findall(r'\sid="([^"]+)"', svg))
    if not ids:
        return svg
    pat = "|".join(re.escape(i) for i in sorted(ids, key=len, reverse=True))
    svg = re.sub(rf'(\sid=")({pat})"', rf'\1{prefix}-\2"', svg)
    svg = re.sub(rf"url\(#({pat})\)", rf"url(#{prefix}-\1)", svg)
    svg = re.sub(rf'(href=")#({pat})"', rf'\1#{prefix}-\2"', svg)
    return svg


_counter = count()

_EMBED_JS = """(function(){
var id=%(id)s, src=%(bundle)s;
function fig(){return document.getElementById(id);}
function render(){
  var M=window.modularityVega, f=fig();
  if(!M||!f) return false;
  if(f.getAttribute("data-state")!=="static") return true;
  f.setAttribute("data-state","rendering");
  var spec=JSON.parse(document.getElementById(id+"-spec").textContent);
  var live=f.querySelector(".modularity-chart-live");
  M.vegaEmbed(live,spec,{renderer:"svg",actions:{export:true,source:false,compiled:false,editor:false}})
   .then(function(){live.style.display="block";f.querySelector(".modularity-chart-static").style.display="none";f.setAttribute("data-state","live");})
   .catch(function(e){live.style.display="none";f.setAttribute("data-state","error");f.setAttribute("data-error",String(e));if(window.console)console.error("modularity chart "+id+":",e);});
  return true;
}
function load(){
  if(render()) return;
  var root=document.documentElement.getAttribute("data-content_root");
  if(root===null) return;  /* not in the built book (e.g. plain Jupyter): keep the static SVG */
  var s=document.querySelector('script[data-modularity-vega]');
  if(!s){s=document.createElement("script");s.src=root+src;s.setAttribute("data-modularity-vega","1");document.head.appendChild(s);}
  s.addEventListener("load",render);
}
if(!render()){ if(document.readyState==="loading") document.addEventListener("DOMContentLoaded",load); else load(); }
})();"""


def to_html(chart, caption: str | None = None, *, chart_id: str | None = None) -> str:
    """The HTML that :func:`show` displays: static SVG + spec + local-bundle embed script + caption."""
    spec = _spec(chart)
    spec_json = json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)
    if chart_id is None:
        digest = hashlib.sha1(spec_json.encode()).hexdigest()[:10]
        chart_id = f"mc-{digest}-{next(_counter)}"
    svg = _prefix_svg_ids(to_svg(spec), chart_id)
    svg = svg.replace("<svg ", '<svg style="max-width:100%;height:auto" role="img" ', 1)
    cap = ""
    if caption:
        cap = ('<figcaption class="modularity-chart-caption" style="font-size:0.9em;color:#444;'
               f'margin-top:0.4em;line-height:1.4;text-align:left">{html.escape(caption)}</figcaption>')
    safe_json = spec_json.replace("</", "<\\/").replace("<!--", "<\\!--")
    js = _EMBED_JS % {"id": json.dumps(chart_id), "bundle": json.dumps(BUNDLE_PATH)}
    label = html.escape(caption or str(spec.get("title", "chart")), quote=True)
    return (
        f'<figure class="modularity-chart" id="{chart_id}" data-state="static" aria-label="{label}" '
        'style="margin:1em 0;max-width:100%">'
        f'<div class="modularity-chart-static" style="overflow-x:auto">{svg}</div>'
        '<div class="modularity-chart-live" style="display:none;overflow-x:auto"></div>'
        f"{cap}"
        f'<script type="application/json" id="{chart_id}-spec">{safe_json}</script>'
        f"<script>{js}</script>"
        "</figure>"
    )


def show(chart, caption: str | None = None) -> None:
    """Display a chart in a notebook, offline and interactive (see the module docstring).

    The output's MIME bundle is ``text/html`` (what myst-nb renders) plus a ``text/plain`` caption.
    """
    from IPython.display import display

    text = caption or "<chart>"
    display({"text/html": to_html(chart, caption), "text/plain": text}, raw=True)


def save_figure(chart, path: str | Path, *, scale: float = 2.0) -> Path:
    """Write ``chart`` to ``path`` (``.svg``, ``.png`` or ``.pdf``) with vl-convert; returns the path."""
    import vl_convert as vlc

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spec, ver = _spec(chart), _vl_version()
    suffix = path.suffix.lower()
    if suffix == ".svg":
        path.write_text(vlc.vegalite_to_svg(spec, vl_version=ver), encoding="utf-8")
    elif suffix == ".png":
        path.write_bytes(vlc.vegalite_to_png(spec, vl_version=ver, scale=scale))
    elif suffix == ".pdf":
        path.write_bytes(vlc.vegalite_to_pdf(spec, vl_version=ver))
    else:
        raise ValueError(f"save_figure: unsupported extension {suffix!r} (use .svg, .png or .pdf)")
    return path


# --------------------------------------------------------------------------------------------
# Attribution stage
# --------------------------------------------------------------------------------------------

def attribution_check(
    df: pd.DataFrame,
    *,
    title: str = "Attribution estimate vs exact patching",
) -> alt.LayerChart:
    """Scatter of the first-order estimate (x) against the exact patching effect (y), with y = x.

    ``df`` columns: ``estimate``, ``exact``, ``task``; optional ``kind`` (e.g. top / random) and
    ``neuron`` for the tooltip.
    """
    _require(df, ["estimate", "exact", "task"], "attribution_check")
    d = df.copy()
    if "kind" not in d.columns:
        d["kind"] = "neuron"
    lo = float(min(d["estimate"].min(), d["exact"].min(), 0.0))
    hi = float(max(d["estimate"].max(), d["exact"].max(), 0.0))
    tooltip = [alt.Tooltip("task:N"), alt.Tooltip("kind:N"),
               alt.Tooltip("estimate:Q", format=".4f"), alt.Tooltip("exact:Q", format=".4f")]
    if "neuron" in d.columns:
        tooltip.insert(1, alt.Tooltip("neuron:Q", title="neuron (flat index)"))
    points = alt.Chart(d).mark_circle(size=45, opacity=0.75).encode(
        x=alt.X("estimate:Q", title="attribution estimate (Δm, first order)"),
        y=alt.Y("exact:Q", title="exact patching effect (Δm)"),
        color=alt.Color("task:N", title="task"),
        shape=alt.Shape("kind:N", title="neuron"),
        tooltip=tooltip,
    )
    diagonal = alt.Chart(pd.DataFrame({"x": [lo, hi], "y": [lo, hi]})).mark_line(
        color="#888", strokeDash=[4, 3]).encode(x="x:Q", y="y:Q")
    return alt.layer(diagonal, points).properties(
        width=360, height=300, title=alt.Title(title, subtitle="Dashed line: estimate = exact."))


def layer_histogram(
    df: pd.DataFrame,
    *,
    n_layers: int,
    title: str = "Layer of each task's top neurons",
    y_title: str = "selected neurons (all tasks of the domain)",
) -> alt.Chart:
    """Stacked bars of top-neuron counts per layer, coloured by domain.

    ``df`` columns: ``layer`` (0-based), ``domain``; optional ``task`` (one row per selected neuron).
    """
    _require(df, ["layer", "domain"], "layer_histogram")
    counts = df.groupby(["layer", "domain"]).size().reset_index(name="count")
    doms = sorted(counts["domain"].unique(), key=_domain_rank(DOMAINS_ACCURACY_ORDER))
    return alt.Chart(counts).mark_bar().encode(
        x=alt.X("layer:O", title="layer", scale=alt.Scale(domain=list(range(n_layers)))),
        y=alt.Y("count:Q", title=y_title, stack=True),
        color=alt.Color("domain:N", scale=_domain_color_scale(doms), title="domain"),
        tooltip=[alt.Tooltip("layer:O"), alt.Tooltip("domain:N"), alt.Tooltip("count:Q")],
    ).properties(width=alt.Step(14), height=200, title=title)


def paired_cells(a: pd.DataFrame, b: pd.DataFrame, *, name_a: str, name_b: str,
                 value_label: str = "drop", title: str = "Two models, cell by cell") -> alt.Chart:
    """Scatter of the off-diagonal cells of two square matrices over their common labels.

    Each point is one (row, column) cell — e.g. (source, target) of an ablation matrix — with
    its value in ``a`` (x) and ``b`` (y), coloured by whether both labels share a domain.
    """
    labels = sorted(set(a.index) & set(b.index))
    off = ~np.eye(len(labels), dtype=bool)
    rows, cols = np.nonzero(off)
    points = pd.DataFrame({"source": np.array(labels)[rows], "target": np.array(labels)[cols],
                           "a": a.loc[labels, labels].to_numpy()[off],
                           "b": b.loc[labels, labels].to_numpy()[off]})
    same = [_domain_of(s) == _domain_of(t) for s, t in zip(points.source, points.target)]
    points["pair"] = np.where(same, "within domain", "across domains")
    return alt.Chart(points).mark_circle(size=40, opacity=0.6).encode(
        x=alt.X("a:Q", title=f"{value_label}, {name_a}"),
        y=alt.Y("b:Q", title=f"{value_label}, {name_b}"),
        color=alt.Color("pair:N", title="cell"),
        tooltip=["source", "target", alt.Tooltip("a:Q", format=".3f"), alt.Tooltip("b:Q", format=".3f")],
    ).properties(width=320, height=320, title=title)


# --------------------------------------------------------------------------------------------
# Runs beside the study
# --------------------------------------------------------------------------------------------

def beside_study(df: pd.DataFrame, *, title: str = "This run beside the study's six models",
                 width: int = 400) -> alt.VConcatChart:
    """Strip plot per measure: the study's six models on one row (grey dots), each run on a row of
    its own (red diamond), named on the axis so that no label can collide with another.

    ``df`` is the long table of :func:`modularity.science.study.beside_study`: columns ``model``,
    ``source`` ("study" or "run"), ``measure`` (e.g. "overlap ratio", "ablation ratio", "ARI"),
    ``value``, ``p``, ``n_tasks``. Ratios are drawn on a log axis with a dashed line at 1 (no
    domain structure); the ARI on a linear axis with a dashed line at 0 (chance). Rows with a
    missing value are left out (a run whose statistic could not be computed).
    """
    _require(df, ["model", "source", "measure", "value"], "beside_study")
    study_row = "the study's six models"
    rows = [study_row] + list(dict.fromkeys(df.loc[df["source"] == "run", "model"]))
    panels = []
    for measure in dict.fromkeys(df["measure"]):
        d = df[(df["measure"] == measure) & df["value"].notna()].copy()
        if d.empty:
            continue
        is_ratio = "ratio" in measure
        d = d[d["value"] > 0] if is_ratio else d
        d["row"] = np.where(d["source"] == "study", study_row, d["model"])
        scale = alt.Scale(type="log") if is_ratio else alt.Scale(zero=False, padding=12)
        tooltip = ["model:N", alt.Tooltip("value:Q", format=".3f", title=measure)]
        tooltip += [alt.Tooltip(c, format=".2g") if c == "p" else alt.Tooltip(c) for c in ("p", "n_tasks") if c in d]
        points = alt.Chart(d).mark_point(filled=True, size=80, opacity=0.9).encode(
            x=alt.X("value:Q", title=measure + (" (within / across, log scale)" if is_ratio else ""), scale=scale),
            y=alt.Y("row:N", title=None, sort=rows, scale=alt.Scale(domain=rows),
                    axis=alt.Axis(labelLimit=230, labelFontSize=11)),
            color=alt.Color("source:N", scale=alt.Scale(domain=["study", "run"], range=["#9c9c9c", "#d62728"]),
                            legend=None),
            shape=alt.Shape("source:N", scale=alt.Scale(domain=["study", "run"], range=["circle", "diamond"]),
                            legend=None),
            tooltip=tooltip,
        )
        reference = alt.Chart(pd.DataFrame({"value": [1.0 if is_ratio else 0.0]})).mark_rule(
            strokeDash=[4, 3], color="#555").encode(x=alt.X("value:Q", scale=scale))
        panels.append(alt.layer(reference, points).properties(width=width, height=24 * len(rows) + 8))
    if not panels:
        raise ValueError("beside_study: no measure has a value to draw")
    return alt.vconcat(*panels, spacing=30).configure_axis(titleFontSize=12, labelFontSize=11).properties(
        title=alt.Title(title, fontSize=13, subtitle=[
            "Grey: the study's six models (their released matrices; hover for names); red: this book's run(s).",
            "Dashed: no domain structure (ratio 1) or chance (ARI 0)."], subtitleFontSize=11))


# --------------------------------------------------------------------------------------------
# Ablation: selected neurons vs random controls
# --------------------------------------------------------------------------------------------

#: Neuron-set kinds of the ablation controls, in plotting order.
_CONTROL_KIND_ORDER = ("selected", *CONTROL_KINDS)


def control_bars(df: pd.DataFrame, *,
                 title: str = "Selected top neurons vs random neurons of the same size") -> alt.LayerChart:
    """Grouped bars: accuracy drop of the selected sets and of their random controls, per relation.

    ``df`` (the ``control_bars`` table of :mod:`modularity.stages.ablation`): one row per
    (``relation``: self / within / across, ``kind``: selected / layer_matched / uniform) with
    ``mean``, ``lo``, ``hi`` (mean ∓ SEM over cells) and ``count`` (cells).
    """
    _require(df, ["relation", "kind", "mean", "lo", "hi", "count"], "control_bars")
    kinds = [k for k in _CONTROL_KIND_ORDER if k in set(df["kind"])] + sorted(set(df["kind"]) - set(_CONTROL_KIND_ORDER))
    x = alt.X("relation:N", sort=["self", "within", "across"], title=None)
    base = alt.Chart(df).encode(x=x, xOffset=alt.XOffset("kind:N", sort=kinds))
    return alt.layer(
        base.mark_bar().encode(y=alt.Y("mean:Q", title="accuracy drop (mean ± SEM over cells)"),
                               color=alt.Color("kind:N", sort=kinds, title="neuron set"),
                               tooltip=["relation", "kind", alt.Tooltip("mean:Q", format=".3f"), "count"]),
        base.mark_rule(color="black").encode(y="lo:Q", y2="hi:Q"),
    ).properties(width=alt.Step(26), height=260, title=title)


# --------------------------------------------------------------------------------------------
# The localizer (stage 7)
# --------------------------------------------------------------------------------------------

def set_task_heatmap(matrix: pd.DataFrame, *, title: str, value_label: str, value_format: str = ".3f",
                     cell: int = 14, domain_order: Sequence[str] = DOMAINS_OVERLAP_ORDER) -> alt.LayerChart:
    """Heatmap of a [neuron set × task] matrix: rows are domains' sets (codes), columns
    ``domain/task`` labels. Tasks are ordered by domain (``domain_order``), label colours mark their
    domain, and the cells where the task is of the row's domain are outlined in black."""
    rank = _domain_rank(domain_order)
    rows = sorted([str(r) for r in matrix.index], key=rank)
    columns = sorted([str(c) for c in matrix.columns], key=lambda c: (rank(_domain_of(c)), list(matrix.columns).index(c)))
    d = pd.DataFrame([{"set": DOMAIN_NAMES.get(r, r), "set_domain": r, "task": c, "task_domain": _domain_of(c),
                       "value": None if pd.isna(matrix.at[r, c]) else float(matrix.at[r, c])}
                      for r in rows for c in columns])
    d["own"] = d.set_domain == d.task_domain
    d["shown"] = [("n/a" if v is None else format(v, value_format)) for v in d["value"]]
    names = [DOMAIN_NAMES.get(r, r) for r in rows]
    x = alt.X("task:N", sort=columns, title=None,
              axis=alt.Axis(orient="top", labelAngle=-60, labelFontSize=MIN_TEXT_PX, labelLimit=160, ticks=False,
                            labelColor=_label_color_by_domain(columns, [_domain_of(c) for c in columns])))
    y = alt.Y("set:N", sort=names, title="localizer set of", axis=alt.Axis(labelFontSize=10, ticks=False))
    tooltip = [alt.Tooltip("set:N", title="localizer set"), alt.Tooltip("task:N"),
               alt.Tooltip("shown:N", title=value_label)]
    values = d["value"].dropna()
    top = float(values.max()) if len(values) and values.max() > 0 else 1.0
    heat = alt.Chart(d).mark_rect().encode(
        x=x, y=y, tooltip=tooltip,
        color=alt.Color("value:Q", title=value_label, scale=alt.Scale(scheme="blues", domain=[0, top])))
    outline = alt.Chart(d[d.own]).mark_rect(fill=None, stroke="black", strokeWidth=1.2).encode(x=x, y=y, tooltip=tooltip)
    return alt.layer(heat, outline).properties(
        width=alt.Step(cell), height=alt.Step(22),
        title=alt.Title(title, subtitle="Outlined: the task is of the set's domain. Hover a cell for its value."))


def t_distribution(df: pd.DataFrame, *, title: str = "Welch t of every neuron, per localizer contrast",
                   bins: int = 60) -> alt.FacetChart:
    """Histogram (symlog count) of the per-neuron t-statistics, one panel per domain, with a rule at
    the selection threshold. ``df`` columns: ``domain``, ``t`` (one row per neuron; binned here into
    ``bins`` common bins, so the page carries counts, not every neuron), ``threshold`` (the
    smallest t in the domain's selected set; one value per domain)."""
    _require(df, ["domain", "t", "threshold"], "t_distribution")
    finite = df[np.isfinite(df["t"])]
    edges = np.linspace(float(finite["t"].min()), float(finite["t"].max()), bins + 1)
    rows = []
    for domain, group in finite.groupby("domain"):
        counts, _ = np.histogram(group["t"], bins=edges)
        rows += [{"domain": domain, "lo": lo, "hi": hi, "count": int(c), "threshold": float(group["threshold"].iloc[0])}
                 for lo, hi, c in zip(edges[:-1], edges[1:], counts) if c]
    d = pd.DataFrame(rows)
    d["domain_name"] = d["domain"].map(lambda x: DOMAIN_NAMES.get(x, x))
    order = [DOMAIN_NAMES.get(x, x) for x in sorted(d["domain"].unique(), key=_domain_rank(DOMAINS_OVERLAP_ORDER))]
    # Both layers read the facet's data; the rule aggregates it to the one threshold of each panel.
    base = alt.Chart().mark_rect(color="#4e79a7").encode(
        x=alt.X("lo:Q", title="Welch t (localized − control)"), x2="hi:Q",
        y=alt.Y("count:Q", scale=alt.Scale(type="symlog"), title="neurons (symlog)"), y2=alt.datum(0),
        tooltip=[alt.Tooltip("domain_name:N", title="domain"), alt.Tooltip("lo:Q", title="t from", format=".1f"),
                 alt.Tooltip("hi:Q", title="t to", format=".1f"), alt.Tooltip("count:Q", title="neurons")])
    rule = alt.Chart().mark_rule(color="#e15759", strokeDash=[4, 3]).encode(
        x="min(threshold):Q", tooltip=[alt.Tooltip("min(threshold):Q", title="smallest selected t", format=".2f")])
    return alt.layer(base, rule, data=d).properties(width=220, height=150).facet(
        facet=alt.Facet("domain_name:N", sort=order, title=None), columns=2).properties(
        title=alt.Title(title, subtitle="Dashed: the smallest t in the domain's selected set."))


def domain_coefficients(df: pd.DataFrame, *, title: str = "The same-domain coefficient, alone and beside surface",
                        x_title: str = "same-domain coefficient (overlap units)") -> alt.LayerChart:
    """One row per model: the same-domain coefficient of the model without and with the surface terms
    (book methods §12), as points (no error bars: the pairs are not independent, so OLS standard errors
    are too small; the QAP p is in the tooltip); a rule at zero.

    ``df`` columns: ``source`` (model name), ``model`` (``domain only`` / ``domain + surface``), ``coef``,
    ``p_text`` (the QAP p as the tooltip shows it).
    """
    _require(df, ["source", "model", "coef", "p_text"], "domain_coefficients")
    order = list(dict.fromkeys(df["source"]))
    kinds = ["domain only", "domain + surface"]
    y = alt.Y("source:N", sort=order, title=None, axis=alt.Axis(labelLimit=160))
    color = alt.Color("model:N", sort=kinds, title="model of the pair overlap", legend=alt.Legend(orient="bottom"),
                      scale=alt.Scale(domain=kinds, range=["#bab0ac", "#4e79a7"]))
    tooltip = [alt.Tooltip("source:N", title="matrix"), alt.Tooltip("model:N"),
               alt.Tooltip("coef:Q", title="coefficient", format=".4f"), alt.Tooltip("p_text:N", title="QAP p")]
    links = alt.Chart(df).mark_rule(color="#ccc", strokeWidth=2).encode(
        x=alt.X("min(coef):Q", title=x_title), x2="max(coef):Q", y=y)
    points = alt.Chart(df).mark_point(filled=True, size=70).encode(x="coef:Q", y=y, color=color, tooltip=tooltip)
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="#333", strokeDash=[3, 3]).encode(x="x:Q")
    return alt.layer(links, points, zero).properties(
        width=380, height=alt.Step(18),
        title=alt.Title(title, subtitle="How much more two tasks of one domain overlap than two of different "
                                        "domains, before and after the surface terms."))


# --------------------------------------------------------------------------------------------
# Lesions (stage 9)
# --------------------------------------------------------------------------------------------

def lesion_measures(df: pd.DataFrame, *, measure: str, x_title: str, title: str,
                    intact: float | None = None) -> alt.LayerChart:
    """One row per silenced domain: a measure of the texts written with the domain's units silenced
    and with layer-matched random units of the same size, as two linked points; a dashed rule at
    the intact model's value.

    ``df`` columns: ``domain`` (the name shown), ``set`` (``domain's units`` / ``random units``),
    ``selection`` (``attribution`` / ``localizer``: one panel each) and ``measure``.
    """
    _require(df, ["domain", "set", "selection", measure], "lesion_measures")
    kinds = ["domain's units", "random units"]
    order = list(dict.fromkeys(df["domain"]))
    y = alt.Y("domain:N", sort=order, title=None, axis=alt.Axis(labelLimit=160))
    color = alt.Color("set:N", sort=kinds, title="silenced", legend=alt.Legend(orient="bottom"),
                      scale=alt.Scale(domain=kinds, range=["#e15759", "#bab0ac"]))
    tooltip = [alt.Tooltip("domain:N"), alt.Tooltip("set:N", title="silenced"),
               alt.Tooltip(f"{measure}:Q", title=x_title, format=".3f")]
    links = alt.Chart().mark_rule(color="#ccc", strokeWidth=2).encode(
        x=alt.X(f"min({measure}):Q", title=x_title), x2=f"max({measure}):Q", y=y)
    points = alt.Chart().mark_point(filled=True, size=70).encode(x=f"{measure}:Q", y=y, color=color, tooltip=tooltip)
    layers = [links, points]
    if intact is not None and np.isfinite(intact):
        layers.append(alt.Chart().mark_rule(color="#333", strokeDash=[3, 3]).encode(x=alt.datum(float(intact))))
    return alt.layer(*layers, data=df).properties(width=300, height=alt.Step(18)).facet(
        row=alt.Row("selection:N", title=None, header=alt.Header(labelAngle=0, labelAlign="left"))).properties(
        title=alt.Title(title, subtitle="Dashed: the intact model."))
