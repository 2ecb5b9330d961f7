"""Chart builders: valid Vega-Lite that vl-convert renders offline; show() is offline and interactive."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modularity.showing import charts

REPO = Path(__file__).resolve().parents[1]
DOMS = {"MD": 3, "ToM": 2, "phys": 2, "Lan": 2}


def _labels():
    return [f"{d}/{d.lower()}_t{i}" for d, n in DOMS.items() for i in range(n)]


def _matrix(seed=0):
    rng = np.random.default_rng(seed)
    labs = _labels()
    dom = [x.split("/")[0] for x in labs]
    m = rng.uniform(0, 0.05, (len(labs), len(labs)))
    for i in range(len(labs)):
        for j in range(len(labs)):
            if dom[i] == dom[j]:
                m[i, j] += 0.3
    m = (m + m.T) / 2
    np.fill_diagonal(m, 1.0)
    return pd.DataFrame(m, index=labs, columns=labs)


def _accuracy():
    rng = np.random.default_rng(1)
    return pd.DataFrame([{"task": t, "model": m, "accuracy": float(rng.uniform(0.3, 1.0))}
                         for m in ("model-A", "model-B") for t in _labels()])


def _bars():
    return pd.DataFrame([{"domain": d, "kind": k, "mean": 0.2 if k == "within" else 0.02, "sem": 0.01, "n": 6}
                         for d in DOMS for k in ("within", "D→others", "others→D")])


def _layers():
    return pd.DataFrame([{"bin": b, "category": c, "count": float(b + i)}
                         for b in range(25) for i, c in enumerate(["Lan", "MD", "phys", "ToM", "shared"])])


def _t_values():
    rng = np.random.default_rng(3)
    return pd.concat([pd.DataFrame({"domain": d, "t": rng.normal(size=6000) * 3, "threshold": 8.0}) for d in DOMS])


def _sweep():
    return pd.DataFrame([{"pct": p, "metric": m, "value": v, "model": "x"}
                         for m in ("ARI", "Kendall τ") for p, v in zip((0.05, 0.1, 1, 5), (0.5, 0.7, 0.6, 0.4))])


CASES = {
    "accuracy_heatmap": (lambda: charts.accuracy_heatmap(_accuracy()), "Both-correct accuracy"),
    "overlap_heatmap": (lambda: charts.overlap_heatmap(_matrix()), "Overlap of top-attributed"),
    "overlap_heatmap_domains_arg": (
        lambda: charts.overlap_heatmap(
            _matrix().rename(index=lambda s: s.split("/")[1], columns=lambda s: s.split("/")[1]),
            {x.split("/")[1]: x.split("/")[0] for x in _labels()}, title="Custom overlap title"),
        "Custom overlap title"),
    "chord_diagram": (lambda: charts.chord_diagram(_matrix(), None, 0.1), "Task pairs sharing neurons"),
    "domain_bars": (lambda: charts.domain_bars(_bars()), "Ablation effect by domain"),
    "layer_composition": (lambda: charts.layer_composition(_layers()), "layer-wise composition"),
    "threshold_sweep": (lambda: charts.threshold_sweep(_sweep()), "Sensitivity to the top-k"),
    "accuracy_bars": (lambda: charts.accuracy_bars(_accuracy()), "Both-correct accuracy per task"),
    "set_task_heatmap": (lambda: charts.set_task_heatmap(_matrix().iloc[[0, 3, 5, 7]].set_axis(list(DOMS), axis=0),
                                                         title="Localized vs attributed", value_label="|L ∩ A|/k"),
                         "Localized vs attributed"),
    "t_distribution": (lambda: charts.t_distribution(_t_values()), "Welch t of every neuron"),
    "domain_coefficients": (lambda: charts.domain_coefficients(_coefficients()), "The same-domain coefficient"),
    "domain_bars_kind_titles": (lambda: charts.domain_bars(_bars(), title="Localizer bars",
                                                           kind_titles={"within": "D's set on D's tasks"},
                                                           legend_title="set → task"), "Localizer bars"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_builder_spec_renders_to_svg(name):
    build, title = CASES[name]
    chart = build()
    spec = chart.to_dict()  # validates against Altair's Vega-Lite schema
    assert spec["$schema"].startswith("https://vega.github.io/schema/vega-lite/v")
    svg = charts.to_svg(chart)
    assert svg.startswith("<svg") and len(svg) > 2000
    assert title.replace("&", "&amp;") in svg
    # a reader can hover: some mark carries a tooltip
    assert '"tooltip"' in json.dumps(spec)


def test_overlap_heatmap_orders_domains_and_tooltips_pairs():
    spec = charts.overlap_heatmap(_matrix()).to_dict()
    text = json.dumps(spec, ensure_ascii=False)
    assert "md_t0 ∩ md_t1: " in text
    # explicit scale domain in MD, ToM, phys, Lan order
    domains = re.findall(r'"scale": \{"domain": (\[[^\]]*\])', text)
    order = json.loads(domains[0])
    assert order[0].startswith("md_") and order[-1].startswith("lan_")


def test_accuracy_heatmap_marks_below_threshold_and_sorts_by_domain():
    df = _accuracy()
    spec = json.dumps(charts.accuracy_heatmap(df, threshold=60).to_dict(), ensure_ascii=False)
    assert "datum.below" in spec and "viridis" in spec
    assert '"domain": [50, 100]' in spec
    # Language, Physical and Social share the first row; Formal, the widest, has the second
    panels = [spec.index(f'"text": "{charts.DOMAIN_NAMES[d]}"') for d in ("Lan", "phys", "ToM", "MD")]
    assert panels == sorted(panels)


def test_chord_links_respect_cutoff():
    m = _matrix()
    chart = charts.chord_diagram(m, None, cutoff=0.2)
    links = pd.DataFrame(chart.layer[0].data)
    vals = links.groupby("link")["value"].first()
    upper = m.values[np.triu_indices(len(m), 1)]
    assert len(vals) == int((upper >= 0.2).sum())
    assert (vals >= 0.2).all()


def test_domain_bars_requires_columns():
    with pytest.raises(ValueError, match="missing column"):
        charts.domain_bars(pd.DataFrame({"domain": ["Lan"], "mean": [0.1]}))


def test_show_html_is_offline_with_svg_fallback_and_caption():
    html = charts.to_html(charts.domain_bars(_bars()), caption="Figure: a caption <with> markup")
    assert "<svg" in html and "</svg>" in html  # static fallback, visible without JS
    assert "modularity-chart-static" in html and 'data-state="static"' in html
    assert charts.BUNDLE_PATH in html  # interactive chart from the local bundle
    assert "window.modularityVega" in html
    assert "cdn.jsdelivr" not in html and "unpkg" not in html
    assert not re.search(r"<script[^>]*\bsrc=", html)  # no external script tags at all
    assert not re.search(r"""src=["']?https?:""", html)
    assert "Figure: a caption &lt;with&gt; markup</figcaption>" in html
    # the embedded spec cannot close its <script> early
    body = html.split('type="application/json"', 1)[1].split("</script>", 1)[0]
    assert "</" not in body


def test_show_displays_text_html(monkeypatch):
    seen = []
    import IPython.display

    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: seen.append((obj, raw)))
    charts.show(charts.layer_composition(_layers()), caption="Figure: layers")
    (bundle, raw), = seen
    assert raw and set(bundle) == {"text/html", "text/plain"}
    assert "<svg" in bundle["text/html"] and bundle["text/plain"] == "Figure: layers"


def test_two_charts_get_distinct_ids_and_svg_ids():
    a = charts.to_html(charts.domain_bars(_bars()))
    b = charts.to_html(charts.domain_bars(_bars()))
    ida = re.search(r'<figure class="modularity-chart" id="([^"]+)"', a).group(1)
    idb = re.search(r'<figure class="modularity-chart" id="([^"]+)"', b).group(1)
    assert ida != idb
    heat = charts.to_html(charts.accuracy_heatmap(_accuracy()), chart_id="mc-x")
    for ref in re.findall(r'url\(#([^)]+)\)', heat):
        assert ref.startswith("mc-x-")


def test_save_figure_svg_png(tmp_path):
    chart = charts.domain_bars(_bars())
    svg = charts.save_figure(chart, tmp_path / "f" / "bars.svg")
    png = charts.save_figure(chart, tmp_path / "bars.png")
    assert svg.read_text().startswith("<svg")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError):
        charts.save_figure(chart, tmp_path / "bars.jpg2")


def test_bundle_is_shipped_and_namespaced():
    bundle = REPO / charts.BUNDLE_PATH
    text = bundle.read_text(encoding="utf-8")
    assert bundle.stat().st_size > 500_000
    assert "window.modularityVega=" in text
    assert "//# sourceMappingURL" not in text
    assert "vega@6.2.0 + vega-lite@6.4.1 + vega-embed@7.0.2" in text


def test_paired_cells_uses_common_off_diagonal_cells():
    import pandas as pd

    from modularity.showing import charts

    a = pd.DataFrame([[1, .2, .0], [.1, 1, .3], [.0, .4, 1]], index=["MD/a", "MD/b", "Lan/c"],
                     columns=["MD/a", "MD/b", "Lan/c"])
    b = a.loc[["MD/a", "MD/b"], ["MD/a", "MD/b"]] * 2
    spec = charts.paired_cells(a, b, name_a="A", name_b="B").to_dict()
    values = spec["datasets"][next(iter(spec["datasets"]))]
    assert len(values) == 2  # two common labels: 2 off-diagonal cells
    assert {(v["source"], v["target"], v["a"], v["b"]) for v in values} == {("MD/a", "MD/b", .2, .4), ("MD/b", "MD/a", .1, .2)}
    assert all(v["pair"] == "within domain" for v in values)


def test_t_distribution_carries_counts_not_neurons():
    chart = charts.t_distribution(_t_values(), bins=40)
    spec = chart.to_dict()
    values = spec["datasets"][spec["data"]["name"]]
    assert len(values) <= 4 * 40 and sum(v["count"] for v in values) == len(_t_values())


def _coefficients():
    models = ["Mistral-Small-24B", "Qwen2.5-32B", "OLMo-2-32B", "Llama-3.1-70B", "Qwen2.5-72B",
              "Mistral-Large-123B", "six-model average"]
    return pd.DataFrame([{"source": m, "model": kind, "coef": c, "p_text": "p < 0.0001"}
                         for m in models for kind, c in (("domain only", 0.1), ("domain + surface", 0.02))])


def _study_sized():
    """Charts at the sizes the book draws them: the study's 46 tasks, its six models and two runs."""
    from modularity.science import study

    full = study.overlap_matrix("average", 0.1)
    rng = np.random.default_rng(0)
    models = ["Mistral-Small-24B", "Qwen2.5-32B", "OLMo-2-32B", "Llama-3.1-70B", "Qwen2.5-72B",
              "Mistral-Large-123B", "smollm2-135m-instruct (small)", "gemma3-270m (paper)"]
    accuracy = pd.DataFrame([{"task": t, "model": m, "accuracy": float(rng.uniform(0.3, 1))}
                             for m in models for t in full.index])
    sweep = pd.DataFrame([{"pct": p, "metric": m, "value": v} for m in ("ratio", "ari", "silhouette", "tau_mean")
                          for p, v in zip((0.05, 0.1, 1, 5), (0.5, 0.7, 0.6, 0.4))])
    return {
        "overlap_heatmap": charts.overlap_heatmap(full, cell=11),
        "chord_diagram": charts.chord_diagram(full, None, 0.05),
        "accuracy_heatmap": charts.accuracy_heatmap(accuracy),
        "accuracy_bars": charts.accuracy_bars(accuracy[accuracy.model == models[0]]),
        "threshold_sweep": charts.threshold_sweep(sweep),
        "domain_bars": charts.domain_bars(_bars()),
        "layer_composition": charts.layer_composition(_layers()),
        "set_task_heatmap": charts.set_task_heatmap(full.iloc[[0, 20, 30, 40], :18].set_axis(list(DOMS), axis=0),
                                                    title="Localized vs attributed", value_label="|L ∩ A|/k"),
        "t_distribution": charts.t_distribution(_t_values()),
        "domain_coefficients": charts.domain_coefficients(_coefficients()),
    }


@pytest.mark.parametrize("name", sorted(_study_sized()))
def test_charts_fit_the_column_with_legible_text(name):
    """A chart wider than the text column is shrunk by the page, and its text with it: at the book's
    sizes every chart fits the column at its own size, and draws no text under MIN_TEXT_PX."""
    svg = charts.to_svg(_study_sized()[name])
    width = float(re.search(r'<svg[^>]*\swidth="([\d.]+)"', svg).group(1))
    sizes = [float(x) for x in re.findall(r'font-size="([\d.]+)(?:px)?"', svg)]
    assert width <= charts.COLUMN_PX, f"{name}: {width:.0f} px wide, the column is {charts.COLUMN_PX} px"
    assert sizes and min(sizes) >= charts.MIN_TEXT_PX, f"{name}: text of {min(sizes)} px"


def test_threshold_sweep_names_its_panels_and_leaves_none_empty():
    sweep = pd.DataFrame([{"pct": p, "metric": m, "value": v} for m in ("ratio", "tau_mean")
                          for p, v in zip((0.05, 0.1), (0.5, float("nan") if m == "tau_mean" else 0.7))])
    sweep.loc[sweep.metric == "tau_mean", "value"] = float("nan")
    spec = json.dumps(charts.threshold_sweep(sweep).to_dict(), ensure_ascii=False)
    assert "within / cross overlap ratio" in spec and "Kendall" not in spec  # the all-NaN metric has no panel
    assert '"ratio"' not in spec
