"""``scripts/check_book.py`` fails a page on the defects a reader trips over, and only on those: small
self-contained HTML pages (one per defect, and a clean one full of look-alikes that must pass) are checked in
headless Chromium; a tall page is saved as screenshot tiles that together cover its whole height.

Needs Chromium (``apt-get install -y chromium``); skipped, with that reason, when it is absent.
"""
from __future__ import annotations

import contextlib
import io
import re
import struct
import sys
import zlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import check_book  # noqa: E402

pytestmark = pytest.mark.skipif(
    check_book.find_chromium() is None,
    reason="Chromium is not installed (apt-get install -y chromium); the render check needs a browser",
)

# The article markup of the Jupyter Book theme, around each fixture's body.
PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{name}</title>
<style>
  body {{ margin: 0; font: 16px sans-serif; }}
  main {{ width: 600px; margin: 0 auto; }}
  div.cell_output {{ overflow-x: auto; }}
</style></head>
<body><main><article class="bd-article" role="main">
{body}
</article></main></body></html>
"""


def svg_chart(fig_id: str, font_px: float, scale: float, text: str = "axis label", extra: str = "") -> str:
    """A live ``charts.show`` figure whose SVG (400 x 200 user units) is drawn ``scale`` times its size."""
    svg = (f'<svg class="marks" width="{400 * scale:g}" height="{200 * scale:g}" viewBox="0 0 400 200">'
           f'<rect width="400" height="200" fill="#eee"/>'
           f'<text x="20" y="100" font-size="{font_px}px">{text}</text>{extra}</svg>')
    return (f'<figure class="modularity-chart" id="{fig_id}" data-state="live">'
            f'<div class="modularity-chart-static" style="display:none">{svg}</div>'
            f'<div class="modularity-chart-live">{svg}</div>'
            f'<figcaption>Figure 1. A test chart.</figcaption></figure>')


def wide_table(columns: int) -> str:
    head = "".join(f"<th>col{k}</th>" for k in range(columns))
    row = "".join(f"<td>{k * 1.5:.2f}</td>" for k in range(columns))
    return (f'<table class="dataframe" style="border-collapse:collapse"><thead><tr>{head}</tr></thead>'
            f'<tbody><tr>{row}</tr><tr>{row}</tr></tbody></table>')


DEFECTS = {
    # page -> (body, what its FAIL must say)
    "wide_table.html": (
        '<p>Results.</p><div class="cell_output" style="width:300px">'
        '<style>td, th { padding: 0 20px; }</style>' + wide_table(12) + '</div>',
        [r'table "col0 \| col1 \| col2": table wider than the column: \d+ px in 300 px, '
         r'hidden columns: col\d+, col\d+, .* \(\d+ of 12\)$']),
    "small_text.html": (
        svg_chart("mc-small-0", 12, 0.5, text="tiny tick"),
        [r"chart mc-small-0: 1 text\(s\) below 9 px on screen, smallest 6\.0 px: \"tiny tick\""]),
    "clipped_text.html": (
        svg_chart("mc-clip-0", 14, 1, extra='<text x="380" y="40" font-size="14px">legend that runs out</text>'),
        [r'chart mc-clip-0: 1 text\(s\) clipped at the edge of the SVG: "legend that runs out"']),
    "method_ref.html": (
        "<p>The threshold is the study's; see METHOD §3 for the derivation.</p>",
        [r'dead reference to METHOD §…: ".*see METHOD §3 for the derivation.*"']),
    "nan_prose.html": (
        "<p>For this task the test gives p = NaN, as no item was kept.</p>",
        [r'NaN in the text \(p\): ".*p = NaN, as no item.*"']),
    "nan_output.html": (  # printed output is reader-facing even though it is a <pre>
        '<div class="cell"><div class="cell_output"><div class="output stream"><div class="highlight">'
        '<pre>within 0.20, across 0.00 (ratio nan)</pre></div></div></div></div>',
        [r'NaN in the text \(pre\): "within 0.20, across 0.00 \(ratio nan\)"']),
    "dict_prose.html": (
        "<p>The run used {'a': 1} as its parameters.</p>",
        [r"""a Python dict in the text \(p\): ".*\{'a': 1\} as its parameters.*\""""]),
    "raw_ref.html": (
        '<p>As shown in <span class="xref std std-ref">stage-3-overlap</span>, and in {ref}`the methods`.</p>',
        [r'unresolved std-ref \(span\): "stage-3-overlap"', r'raw \{ref\} role \(p\): ".*\{ref\}`the methods`.*"']),
    "nan_table.html": (
        '<div class="cell_output"><table class="dataframe"><thead><tr><th>task</th><th>p</th></tr></thead>'
        '<tbody><tr><td>a</td><td>NaN</td></tr><tr><td>b</td><td>None</td></tr></tbody></table></div>',
        [r'NaN in table "task \| p": 1 cell\(s\), column\(s\): p', r'None in table "task \| p": 1 cell\(s\)']),
}

CLEAN = """
<h1 id="top">A clean page</h1>
<p>None of the tasks passed, and none failed twice. Its <code>data_dir</code> is <code>None</code> and
   <code>float('nan')</code> is a <code>NaN</code>; the dict <code>{'a': 1}</code> is shown as code.</p>
<div class="highlight-python"><div class="highlight"><pre>params = {'a': 1, 'b': None}
x = float("nan")  # NaN, see METHOD notes
print({'k': None})</pre></div></div>
<div class="cell"><div class="cell_input"><div class="highlight"><pre>glue("p", None)
d = {'seed': 0}</pre></div></div>
<div class="cell_output"><table class="dataframe"><thead><tr><th>task</th><th>p</th><th>n</th></tr></thead>
<tbody><tr><td>nanoGPT</td><td>0.05</td><td>12</td></tr></tbody></table></div></div>
<p>See <a class="reference internal" href="#top"><span class="std std-ref">the top</span></a> and the
   methods chapter, section 3. The ratio is NaN when no cross-domain cell shows any drop.</p>
<table><thead><tr><th>task</th><th>prompt</th></tr></thead>
<tbody><tr><td>REPL: look up a key</td>
<td>&gt;&gt;&gt; d = {'e': 'tiger'} ↵ &gt;&gt;&gt; d['e'] ↵</td></tr></tbody></table>
""" + svg_chart("mc-clean-0", 12, 1, text="readable label",
                extra='<text x="20" y="150" font-size="3px" opacity="0">hidden</text>'
                      '<text x="20" y="160" font-size="3px"> </text>') + """
<div class="cell_output" style="width:300px">""" + wide_table(3) + "</div>"


def parse_report(out: str) -> dict[str, list[str]]:
    """page -> its problem lines (empty for a page that passed)."""
    pages: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        m = re.match(r"^(FAIL|ok  ) (\S+)", line)
        if m:
            current = pages.setdefault(m.group(2), [])
        elif current is not None and line.startswith("       - "):
            current.append(line[len("       - "):])
    return pages


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[int, dict[str, list[str]], str]:
    html = tmp_path_factory.mktemp("defects")
    for name, (body, _) in DEFECTS.items():
        (html / name).write_text(PAGE.format(name=name, body=body), encoding="utf-8")
    (html / "clean.html").write_text(PAGE.format(name="clean", body=CLEAN), encoding="utf-8")
    pages = ",".join([*DEFECTS, "clean.html"])
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = check_book.main([str(html), "--no-screenshots", "--pages", pages, "--timeout", "10"])
    return code, parse_report(buf.getvalue()), buf.getvalue()


def test_clean_page_passes(report):
    code, pages, out = report
    assert code == 1, out  # the defect pages fail
    assert pages["clean.html"] == [], out


@pytest.mark.parametrize("page", list(DEFECTS))
def test_defect_page_fails_with_its_message(report, page):
    _, pages, out = report
    problems = pages[page]
    for pattern in DEFECTS[page][1]:
        assert any(re.search(pattern, p) for p in problems), f"{pattern!r} not in {problems}\n{out}"
    assert len(problems) == len(DEFECTS[page][1]), problems  # nothing else fires on it


def test_summary_counts_each_check(report):
    out = report[2]
    assert re.search(r"^wide tables: 1 table\(s\) on 1 page\(s\)", out, re.M), out
    assert re.search(r"^chart text below 9 px: 1 chart\(s\) on 1 page\(s\)", out, re.M), out
    assert re.search(r"^dead METHOD § references: 1 reference\(s\) on 1 page\(s\)", out, re.M), out


def test_tiles_cover_the_page():
    assert check_book.tiles(20_000, 4000) == [(y, 4000) for y in range(0, 20_000, 4000)]
    assert check_book.tiles(9_001, 4000) == [(0, 4000), (4000, 4000), (8000, 1001)]
    assert check_book.tiles(700, 4000) == [(0, 700)]


def png_rows(path: Path) -> tuple[int, int, list[bytes]]:
    """Width, height and the unfiltered pixel rows of an 8-bit RGB(A) PNG (what Chromium writes)."""
    data, pos, idat = path.read_bytes(), 8, b""
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    assert depth == 8 and colour in (2, 6)
    bpp = 3 if colour == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], (prev[i - bpp] if i >= bpp else 0)
            if kind == 1:
                line[i] = (line[i] + a) & 255
            elif kind == 2:
                line[i] = (line[i] + b) & 255
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line[:3]))  # the first pixel is enough: the bands span the width
        prev = line
    return width, height, rows


def test_tall_page_is_saved_as_tiles_covering_its_full_height(tmp_path):
    html, shots = tmp_path / "html", tmp_path / "shots"
    html.mkdir()
    bands = ('<div style="position:absolute;left:0;right:0;top:{top}px;height:100px;background:{colour}"></div>')
    body = "".join(bands.format(top=top, colour=colour) for top, colour in
                   ((0, "#ff0000"), (16_000, "#00ff00"), (20_400, "#0000ff")))
    (html / "tall.html").write_text(f'<!doctype html><html><body style="margin:0">'
                                    f'<div style="position:relative;height:20500px">{body}</div></body></html>')
    (html / "short.html").write_text('<!doctype html><html><body><p>short</p></body></html>')
    code = check_book.main([str(html), "--screenshots", str(shots), "--pages", "tall.html,short.html",
                            "--width", "64"])
    assert code == 0
    assert sorted(p.name for p in shots.iterdir()) == ["short.png", *(f"tall.{k:02d}.png" for k in range(1, 7))]
    heights = [struct.unpack(">II", (shots / f"tall.{k:02d}.png").read_bytes()[16:24])[1] for k in range(1, 7)]
    assert heights == [4000] * 5 + [500]  # 20,500 px in all, nothing cut at the old 16,000 px cap
    _, _, first = png_rows(shots / "tall.01.png")
    _, _, fifth = png_rows(shots / "tall.05.png")
    _, _, last = png_rows(shots / "tall.06.png")
    assert first[0] == b"\xff\x00\x00" and first[150] == b"\xff\xff\xff"
    assert fifth[50] == b"\x00\xff\x00"  # 16,000-16,100 px
    assert last[450] == b"\x00\x00\xff" and last[-1] == b"\x00\x00\xff"  # the page's last pixel row
