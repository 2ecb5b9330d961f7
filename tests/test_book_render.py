"""End-to-end: a tiny Jupyter Book whose notebook output comes from ``charts.show`` builds with
``-W -n`` and passes ``scripts/check_book.py`` in headless Chromium; the checker fails on a broken
link, a broken anchor, a missing page and a chart whose local bundle is missing.

Needs Chromium (``apt-get install -y chromium``); skipped, with that reason, when it is absent.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKER = REPO / "scripts" / "check_book.py"
sys.path.insert(0, str(REPO / "scripts"))

import check_book  # noqa: E402

pytestmark = pytest.mark.skipif(
    check_book.find_chromium() is None,
    reason="Chromium is not installed (apt-get install -y chromium); the render check needs a browser",
)

NOTEBOOK_CODE = '''
import pandas as pd
from modularity.showing import charts
bars = pd.DataFrame({
    "domain": ["Lan", "Lan", "Lan", "MD", "MD", "MD"],
    "kind": ["within", "D→others", "others→D"] * 2,
    "mean": [0.20, 0.03, 0.02, 0.25, 0.01, 0.04],
    "sem": [0.02, 0.01, 0.01, 0.03, 0.005, 0.01],
    "n": [12, 40, 40, 30, 50, 50],
})
charts.show(charts.domain_bars(bars), caption="Figure: synthetic three-bar chart (test).")
labels = ["MD/a", "MD/b", "Lan/c", "Lan/d"]
m = pd.DataFrame([[1, .3, .05, .0], [.3, 1, .02, .01], [.05, .02, 1, .4], [.0, .01, .4, 1]],
                 index=labels, columns=labels)
charts.show(charts.overlap_heatmap(m), caption="Figure: synthetic overlap heatmap (test).")
'''


def _jupyter_book() -> list[str]:
    exe = Path(sys.executable).with_name("jupyter-book")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "jupyter_book.cli.main"]


def _make_notebook(path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Charts\n\nTwo charts made by `charts.show`."),
                nbformat.v4.new_code_cell(NOTEBOOK_CODE.strip())]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}).execute()
    nbformat.write(nb, path)


def build_book(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "_config.yml").write_text(textwrap.dedent("""\
        title: "render test"
        author: test
        only_build_toc_files: true
        exclude_patterns: [_build]
        execute:
          execute_notebooks: "off"
        parse:
          myst_enable_extensions: [colon_fence, dollarmath]
        html:
          use_repository_button: false
        sphinx:
          config:
            html_show_copyright: false
            html_extra_path: ["_extra"]
            mathjax_path: "../mathjax/tex-mml-chtml.js"
    """))
    (root / "_toc.yml").write_text(textwrap.dedent("""\
        format: jb-book
        root: intro
        chapters:
          - file: charts
    """))
    (root / "intro.md").write_text("# Intro\n\nSee [the charts](charts.ipynb) and {ref}`a-section`.\n\n"
                                   "(a-section)=\n## A section\n\nOverlap $O_{ij} = |S_i \\cap S_j|/k$ and\n\n"
                                   "$$\nJ = \\frac{O}{2 - O}\n$$\n")
    _make_notebook(root / "charts.ipynb")
    shutil.copytree(REPO / "_static", root / "_static")
    shutil.copytree(REPO / "_extra", root / "_extra")
    proc = subprocess.run(_jupyter_book() + ["build", str(root), "-W", "-n"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, f"jupyter-book build failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return root / "_build" / "html"


def run_checker(html: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(CHECKER), str(html), *extra], capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def book(tmp_path_factory) -> Path:
    return build_book(tmp_path_factory.mktemp("book") / "book")


def test_good_book_passes_and_charts_turn_interactive(book: Path):
    shots = book.parent / "screenshots"
    res = run_checker(book, "--screenshots", str(shots))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "2 chart(s), 2 interactive" in res.stdout, res.stdout
    assert "2 formula(s)" in res.stdout, res.stdout  # typeset offline by the local MathJax
    assert (shots / "charts.png").stat().st_size > 10_000
    assert (shots / "intro.png").exists()
    # the bundle is shipped by Jupyter Book and referenced locally, never from a CDN
    page = (book / "charts.html").read_text()
    assert "_static/vendor/modularity-vega.min.js" in page
    assert "cdn.jsdelivr" not in page


def _copy(book: Path, dest: Path) -> Path:
    shutil.copytree(book, dest)
    return dest


def test_checker_fails_on_broken_link_and_anchor(book: Path, tmp_path: Path):
    html = _copy(book, tmp_path / "html")
    page = html / "intro.html"
    text = page.read_text()
    text = text.replace("<h1>", '<p><a href="no-such-page.html">broken</a> '
                                '<a href="charts.html#no-such-anchor">bad anchor</a></p><h1>', 1)
    page.write_text(text)
    res = run_checker(html, "--no-screenshots")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "broken link: no-such-page.html" in res.stdout
    assert "broken anchor: charts.html#no-such-anchor" in res.stdout


def test_checker_fails_on_missing_page(book: Path, tmp_path: Path):
    html = _copy(book, tmp_path / "html")
    res = run_checker(html, "--no-screenshots", "--pages", "intro.html,not-built.html")
    assert res.returncode == 1
    assert "not-built.html" in res.stdout and "page missing" in res.stdout


def test_checker_fails_when_math_cannot_be_typeset(book: Path, tmp_path: Path):
    html = _copy(book, tmp_path / "html")
    (html / "mathjax" / "tex-mml-chtml.js").unlink()
    res = run_checker(html, "--no-screenshots", "--pages", "intro.html", "--timeout", "8")
    assert res.returncode == 1, res.stdout
    assert "not typeset" in res.stdout


def test_checker_fails_when_interactive_bundle_is_missing(book: Path, tmp_path: Path):
    html = _copy(book, tmp_path / "html")
    (html / "_static" / "vendor" / "modularity-vega.min.js").unlink()
    res = run_checker(html, "--no-screenshots", "--pages", "charts.html", "--timeout", "10")
    assert res.returncode == 1, res.stdout
    assert "interactive chart did not render" in res.stdout
    assert "resource failed to load" in res.stdout
