#!/usr/bin/env python
"""Look at the built book the way a reader would, and fail loudly if something is broken.

Usage::

    python scripts/check_book.py [_build/html] [--screenshots DIR] [--pages a.html,b.html]
                                 [--toc _toc.yml] [--width 1280] [--tiles 4000] [--timeout 30]
                                 [--no-screenshots] [--strict-js]

Every page of the HTML build is opened in headless Chromium (driven through the DevTools protocol
with a tiny stdlib WebSocket client: no Python dependency beyond the standard library). For each page
the script waits for the load event and for the interactive charts to settle, saves a full-page
screenshot (default ``<html>/../screenshots/<page>.png``, in tiles when the page is tall) and checks:

* the page exists (``--pages``, and every file named in ``_toc.yml`` when it is found);
* every ``<img>`` loaded (``naturalWidth > 0``), every inline chart SVG is non-empty;
* every chart made by ``modularity.showing.charts.show`` turned interactive (``data-state="live"``, an SVG
  or canvas of non-zero size inside), and no other Vega/Altair container stayed empty;
* no resource failed to load and nothing was requested from the network (the book must work offline);
* no uncaught JavaScript exception;
* every formula was typeset by MathJax, without a TeX error;
* every internal link points to an existing file, and its ``#anchor`` exists in the target page;

and, once the page has settled, what a reader would trip over (``READER_JS``; each finding names the table by
its first header cells or the chart by its figure id, with a number, and the end of the report counts them):

* no table (Markdown table or notebook output, e.g. a pandas DataFrame) is wider than its scroll box or the text
  column so that columns lie beyond the visible right edge (their headers are listed);
* no visible text of a chart (``figure.modularity-chart``, live or static SVG, or any ``.vega-embed``) is
  rendered smaller than ``MIN_CHART_TEXT_PX`` on screen (font size times the SVG's on-screen scale), and none
  sticks out of its SVG, where it is clipped;
* no dead reference to the study's ``METHOD §...`` sections (pages cite the book's methods chapter instead);
* no ``NaN``, ``nan``, Python ``None`` or dict repr (``{'key': ...``) in the reader-facing text: prose,
  headings, admonitions, Markdown and output tables, printed outputs; code blocks and cell inputs are exempt;
* no unresolved cross-reference (a Sphinx ``xref`` outside a link, or a MyST role such as ``{ref}`` left raw).

The full-page screenshot is never cut: a page taller than a tile (``--tiles``, default 4000 px) is saved as
tiles ``<page>.01.png``, ``<page>.02.png``, ... that together cover its whole height.

Exit status: 0 when all pages pass, 1 when any check fails (the report says which page and why),
2 on usage errors, 3 when Chromium cannot be found or started.
Chromium on Debian/Ubuntu: ``apt-get install -y chromium`` (set ``CHROMIUM=/path`` to use another).
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path

SKIP_PAGES = {"genindex.html", "search.html", "py-modindex.html"}
SKIP_DIRS = ("_static/", "_sources/", "_images/", "_downloads/", "_sphinx_design_static/")
# Known, harmless JavaScript errors of the Jupyter Book v1 stack itself (not of this book's content):
# sphinx-thebe's inline config `const THEBE_JS_URL = ...` is emitted twice in every page, so the second
# copy throws a SyntaxError while the first already defined the same values. Reported as a note; use
# --strict-js to fail on them as well.
KNOWN_JS_QUIRKS = (
    r"Identifier 'THEBE_JS_URL' has already been declared",
)
MIN_CHART_TEXT_PX = 9      # smallest chart text (font size on screen, px) a reader can be asked to read
EDGE_TOLERANCE_PX = 2      # slack for sub-pixel layout when comparing edges
DEFAULT_TILE_PX = 4000     # screenshot tile height when --tiles is not given
MAX_ITEMS_PER_CHECK = 8    # findings listed per check and page; the rest are counted in one line


# --------------------------------------------------------------------------------------------
# Minimal WebSocket client (RFC 6455, client side, text frames) for the DevTools protocol
# --------------------------------------------------------------------------------------------

class WebSocket:
    def __init__(self, url: str, timeout: float = 30.0):
        u = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + (f"?{u.query}" if u.query else "")
        req = (f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.sock.sendall(req.encode())
        self.buf = bytearray()
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("DevTools closed the connection during the handshake")
            self.buf += chunk
        end = self.buf.index(b"\r\n\r\n")
        status = bytes(self.buf[:end]).split(b"\r\n", 1)[0]
        del self.buf[: end + 4]
        if b" 101" not in status:
            raise ConnectionError(f"WebSocket handshake failed: {status!r}")

    def send(self, text: str, opcode: int = 0x1) -> None:
        payload = text.encode() if isinstance(text, str) else text
        n = len(payload)
        header = bytearray([0x80 | opcode])
        if n < 126:
            header.append(0x80 | n)
        elif n < 65536:
            header.append(0x80 | 126)
            header += struct.pack(">H", n)
        else:
            header.append(0x80 | 127)
            header += struct.pack(">Q", n)
        mask = os.urandom(4)
        header += mask
        masked = bytes(b ^ mask[i & 3] for i, b in enumerate(payload))
        self.sock.sendall(bytes(header) + masked)

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("DevTools connection closed")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def recv(self, timeout: float) -> str:
        self.sock.settimeout(max(timeout, 0.01))
        message = bytearray()
        while True:
            b0, b1 = self._read(2)
            opcode, n = b0 & 0x0F, b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b1 & 0x80 else None
            data = self._read(n)
            if mask:
                data = bytes(b ^ mask[i & 3] for i, b in enumerate(data))
            if opcode == 0x9:  # ping
                self.send(data, opcode=0xA)
                continue
            if opcode == 0x8:
                raise ConnectionError("DevTools closed the WebSocket")
            if opcode == 0xA:
                continue
            message += data
            if b0 & 0x80:
                return message.decode("utf-8")

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class CDP:
    """Just enough of the Chrome DevTools protocol: calls with ids, buffered events."""

    def __init__(self, ws: WebSocket):
        self.ws, self.next_id, self.events = ws, 0, []

    def _pump(self, deadline: float) -> dict:
        remaining = deadline - time.time()
        if remaining <= 0:
            raise TimeoutError
        try:
            return json.loads(self.ws.recv(remaining))
        except socket.timeout as exc:
            raise TimeoutError from exc

    def call(self, method: str, timeout: float = 30.0, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        deadline = time.time() + timeout
        while True:
            msg = self._pump(deadline)
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)

    def wait_event(self, name: str, timeout: float) -> dict | None:
        deadline = time.time() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if ev["method"] == name:
                    return self.events.pop(i)
            try:
                msg = self._pump(deadline)
            except TimeoutError:
                return None
            if "method" in msg:
                self.events.append(msg)

    def drain(self, seconds: float = 0.05) -> None:
        deadline = time.time() + seconds
        while True:
            try:
                msg = self._pump(deadline)
            except TimeoutError:
                return
            if "method" in msg:
                self.events.append(msg)


# --------------------------------------------------------------------------------------------
# Chromium
# --------------------------------------------------------------------------------------------

def find_chromium() -> str | None:
    env = os.environ.get("CHROMIUM")
    if env:
        return env if (os.path.exists(env) or shutil.which(env)) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        p = shutil.which(name)
        if p:
            return p
    return None


class Browser:
    def __init__(self, exe: str, width: int, timeout: float):
        self.profile = tempfile.mkdtemp(prefix="check-book-chromium-")
        args = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--no-first-run", "--no-default-browser-check",
                "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
                "--disable-extensions", "--disable-sync", "--metrics-recording-only",
                f"--user-data-dir={self.profile}", f"--window-size={width},1000",
                "--remote-debugging-port=0", "about:blank"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        port_file = Path(self.profile, "DevToolsActivePort")
        deadline = time.time() + timeout
        while not (port_file.exists() and port_file.read_text().strip()):
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace")[-2000:]
                raise RuntimeError(f"Chromium exited with {self.proc.returncode}:\n{err}")
            if time.time() > deadline:
                self.close()
                raise RuntimeError("Chromium did not open its DevTools port in time")
            time.sleep(0.1)
        port = int(port_file.read_text().split()[0])
        targets = []
        while time.time() < deadline and not targets:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                targets = [t for t in json.load(r) if t.get("type") == "page"]
            if not targets:
                time.sleep(0.1)
        if not targets:
            raise RuntimeError("Chromium has no page target")
        self.cdp = CDP(WebSocket(targets[0]["webSocketDebuggerUrl"], timeout=timeout))
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.cdp.call(f"{domain}.enable")
        self.width = width

    def close(self) -> None:
        try:
            if hasattr(self, "cdp"):
                self.cdp.ws.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
            shutil.rmtree(self.profile, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------------------------

PAGE_JS = r"""
(() => {
  const out = {settled: true, problems: [], links: [], ids: [], charts: 0, live: 0, images: 0,
               title: document.title, height: Math.max(document.documentElement.scrollHeight,
               document.body ? document.body.scrollHeight : 0)};
  for (const img of document.images) {
    out.images++;
    if (!img.complete) { out.settled = false; continue; }
    if (img.naturalWidth === 0) out.problems.push("image failed to load: " + (img.getAttribute("src") || "?"));
  }
  for (const f of document.querySelectorAll("figure.modularity-chart")) {
    out.charts++;
    const st = f.getAttribute("data-state");
    if (st === "static" || st === "rendering") out.settled = false;
    const svg = f.querySelector(".modularity-chart-static svg");
    if (!svg || svg.childElementCount === 0) out.problems.push("chart " + f.id + ": static SVG fallback missing or empty");
    if (st !== "live") {
      out.problems.push("chart " + f.id + ": interactive chart did not render (state '" + st + "'" +
        (f.getAttribute("data-error") ? ": " + f.getAttribute("data-error") : "") + ")");
    } else {
      const el = f.querySelector(".modularity-chart-live svg, .modularity-chart-live canvas");
      const r = el ? el.getBoundingClientRect() : null;
      if (!r || r.width < 10 || r.height < 10) out.problems.push("chart " + f.id + ": interactive container is empty");
      else out.live++;
    }
  }
  for (const el of document.querySelectorAll(".vega-embed, [id^='altair-viz'], .vega-vis")) {
    if (el.closest("figure.modularity-chart")) continue;
    out.charts++;
    if (!el.querySelector("svg, canvas")) out.problems.push("chart container #" + (el.id || el.className) + " stayed empty (CDN script not loaded?)");
  }
  for (const s of document.querySelectorAll("article svg, main svg")) {
    if (s.parentElement && s.parentElement.closest("svg")) continue;
    if (s.childElementCount === 0) out.problems.push("empty <svg> element in the page content");
  }
  const maths = document.querySelectorAll("span.math, div.math");
  let untypeset = 0;
  for (const m of maths) if (!m.querySelector("mjx-container, .MathJax, svg, math")) untypeset++;
  if (untypeset) {
    out.settled = false;
    out.problems.push(untypeset + " of " + maths.length + " formula(s) not typeset (MathJax not loaded?)");
  }
  for (const e of document.querySelectorAll("mjx-merror, .mjx-merror")) {
    out.problems.push("math error in formula: " + (e.getAttribute("data-mjx-error") || e.textContent).slice(0, 120));
  }
  out.maths = maths.length;
  for (const a of document.querySelectorAll("a[href]")) out.links.push([a.getAttribute("href"), a.href]);
  for (const e of document.querySelectorAll("[id]")) out.ids.push(e.id);
  for (const e of document.querySelectorAll("a[name]")) out.ids.push(e.getAttribute("name"));
  return out;
})()
"""


# Reader-facing defects (READER_JS), checked once per page after it settled.
READER_JS = r"""
(() => {
  const MIN_TEXT = __MIN_TEXT__, TOL = __TOL__;
  const out = {wide_tables: [], small_text: [], clipped_text: [], method_refs: [], prose: [], xrefs: []};
  const root = document.querySelector("article.bd-article") || document.querySelector(".bd-content") ||
               document.querySelector("main") || document.body;
  const clean = s => (s || "").replace(/\s+/g, " ").trim();
  const cut = (s, n) => { s = clean(s); return s.length > n ? s.slice(0, n - 1) + "…" : s; };
  const around = (s, i, n, w) => {  // a snippet of s around s[i, i + n)
    const a = Math.max(0, i - w), b = Math.min(s.length, i + n + w);
    return (a > 0 ? "…" : "") + clean(s.slice(a, b)) + (b < s.length ? "…" : "");
  };
  const sized = r => r && (r.width > 0 || r.height > 0);

  // A table's header cells (its <thead>, else its first row): the table's name (first header texts) and
  // the header above a cell (all header texts over the cell's middle, for multi-row pandas headers).
  const tableHead = t => {
    const rows = t.tHead && t.tHead.rows.length ? [...t.tHead.rows] : (t.rows.length ? [t.rows[0]] : []);
    const cells = rows.flatMap(r => [...r.cells]).map(c => [c, cut(c.textContent, 40)]);
    const first = cells.map(c => c[1]).filter(Boolean).slice(0, 3);
    return {
      name: "table \"" + (first.length ? first.join(" | ") : cut(t.textContent, 50)) + "\"",
      above: cell => {
        const r = cell.getBoundingClientRect(), mid = (r.left + r.right) / 2, names = [];
        if (sized(r)) for (const [c, txt] of cells) {
          const cr = c.getBoundingClientRect();
          if (txt && cr.left <= mid && mid <= cr.right && !names.includes(txt)) names.push(txt);
        }
        return names.join(" / ") || "column " + (cell.cellIndex + 1);
      },
    };
  };

  // 1. tables wider than their scroll box (or the text column) so that columns lie beyond its visible edge
  const viewRight = document.documentElement.clientWidth;
  for (const t of root.querySelectorAll("table")) {
    if (t.parentElement.closest("table, pre, .highlight, svg")) continue;
    const tr = t.getBoundingClientRect();
    if (!sized(tr)) continue;  // hidden (e.g. in a closed dropdown): nothing to measure
    let box = t.parentElement;
    const scrolls = el => /^(auto|scroll|hidden|clip)$/.test(getComputedStyle(el).overflowX);
    while (box !== root && !scrolls(box)) box = box.parentElement;
    const br = box.getBoundingClientRect();
    const edge = Math.min(br.left + box.clientLeft + box.clientWidth, viewRight);
    const width = Math.max(tr.width, t.scrollWidth);
    if (tr.left + width <= edge + TOL) continue;
    let widest = null;
    for (const r of t.rows) if (!widest || r.cells.length > widest.cells.length) widest = r;
    const head = tableHead(t), cells = widest ? [...widest.cells] : [];
    const hidden = cells.filter(c => c.getBoundingClientRect().right - parseFloat(getComputedStyle(c).paddingRight) >
                                     edge + TOL);  // the cell's content, not just its padding, is past the edge
    if (hidden.length)
      out.wide_tables.push({where: head.name, width: Math.round(width), room: Math.round(edge - tr.left),
                            columns: cells.length, hidden: hidden.map(head.above)});
  }

  // 2, 3. chart text too small to read on screen, or sticking out of its SVG (which clips it)
  const invisible = el => {
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
      const cs = getComputedStyle(e);
      if (cs.display === "none" || parseFloat(cs.opacity) === 0) return true;
      if (e === el && (cs.visibility !== "visible" || parseFloat(cs.fillOpacity) === 0)) return true;
    }
    return false;
  };
  const chartName = svg => {
    const f = svg.closest("figure.modularity-chart");
    if (f) return f.id + (svg.closest(".modularity-chart-static") ? " (static SVG)" : "");
    const holder = svg.closest(".vega-embed");
    const withId = holder.id ? holder : holder.closest("[id]");
    return "vega-embed " + (withId ? "#" + withId.id : "(no id)");
  };
  for (const svg of document.querySelectorAll("figure.modularity-chart svg, .vega-embed svg")) {
    if (svg.parentElement.closest("svg")) continue;  // the outermost SVG only
    const sr = svg.getBoundingClientRect();
    if (!sized(sr)) continue;  // not displayed (e.g. the static fallback once the chart is live)
    const small = [], clipped = [];
    for (const t of svg.querySelectorAll("text")) {
      const txt = clean(t.textContent);
      if (!txt || t.parentElement.closest("text")) continue;
      const r = t.getBoundingClientRect();
      if (!sized(r) || invisible(t)) continue;
      const m = t.getScreenCTM();  // user units -> screen px, the viewBox scaling and transforms included
      const px = parseFloat(getComputedStyle(t).fontSize) * (m ? Math.sqrt(Math.abs(m.a * m.d - m.b * m.c)) : 1);
      if (px < MIN_TEXT - 0.01) small.push([px, txt]);
      if (r.left < sr.left - TOL || r.right > sr.right + TOL || r.top < sr.top - TOL || r.bottom > sr.bottom + TOL)
        clipped.push(txt);
    }
    const samples = list => [...new Set(list.map(s => cut(s, 40)))].slice(0, 3);
    if (small.length) {
      small.sort((a, b) => a[0] - b[0]);
      out.small_text.push({where: chartName(svg), count: small.length, smallest: small[0][0],
                           samples: samples(small.map(s => s[1]))});
    }
    if (clipped.length)
      out.clipped_text.push({where: chartName(svg), count: clipped.length, samples: samples(clipped)});
  }

  // 4. dead references to the study's METHOD sections, anywhere in the rendered text
  const page = document.body ? document.body.innerText : "";
  for (const m of page.matchAll(/METHOD[\s\u00a0]*§[\s\u00a0]*[\w.\-]*/g))
    out.method_refs.push(around(page, m.index, m[0].length, 50));

  // 5, 6. the reader-facing text: everything in the article but code shown as code and cell inputs;
  // notebook outputs (tables, printed text) are what the reader gets, so they count even inside <pre>.
  const SKIP = "script, style, noscript, template, textarea, svg, math, mjx-container, .MathJax, .cell_input, " +
               ".headerlink";
  const CODE = "pre, code, kbd, samp, tt, .highlight";
  const OUTPUT = ".cell_output, .output";
  const BLOCK = "p, li, dd, dt, td, th, h1, h2, h3, h4, h5, h6, caption, figcaption, pre, blockquote, div";
  // NaN/None as a value leaked into the text, not as a word: in a table cell always; elsewhere "p = NaN",
  // "(ratio nan, ...", "NaN)" or "None," fail, while prose about NaN ("the ratio is NaN when ...") and the
  // English "None of the runs ..." do not. Python's lower-case "nan" is never a word.
  const AFTER_VALUE = /[=:(\[,≈][\s\u00a0]*$/, BEFORE_VALUE = /^[\s\u00a0]*(?:$|[,;)\]])/;
  const inDict = (text, i) => text.lastIndexOf("{'", i) > text.lastIndexOf("}", i);  // reported as the dict
  const leaked = (text, i, word) => !inDict(text, i) && (word === "nan" || AFTER_VALUE.test(text.slice(0, i)) ||
    (word === "None" ? !/^[\s\u00a0]+[a-z]/.test(text.slice(i + 4)) : BEFORE_VALUE.test(text.slice(i + word.length))));
  const PROSE = [[/(?<![\w.])(?:NaN|nan)(?![\w(])/g, "NaN", leaked],
                 [/(?<![\w.])None(?![\w(])/g, "None", leaked],
                 [/\{\s*'[^'\n]{0,80}'\s*:\s/g, "a Python dict", () => true]];
  const ROLE = /\{(?:ref|doc|numref|eq|term|download|glue(?::\w+)?|cite(?::\w+)?|py:\w+|std:\w+)\}/g;
  const inTables = new Map();  // table -> kind -> its finding: one line per table and kind, saying where
  const seen = new Set();
  const report = (list, what, block, cell, text, i, n) => {
    if (cell) {
      const t = cell.closest("table");
      if (!inTables.has(t)) inTables.set(t, new Map());
      const byWhat = inTables.get(t);
      if (!byWhat.has(what)) {
        byWhat.set(what, {what: what, where: tableHead(t).name, cells: 0, columns: []});
        list.push(byWhat.get(what));
      }
      const item = byWhat.get(what), col = tableHead(t).above(cell);
      item.cells++;
      if (!item.columns.includes(col)) item.columns.push(col);
      item.text = item.cells + " cell(s), column(s): " + item.columns.slice(0, 6).join(", ") +
                  (item.columns.length > 6 ? ", …" : "");
      return;
    }
    const snip = around(text, i, n, 60);
    if (seen.has(what + "\u0000" + snip)) return;
    seen.add(what + "\u0000" + snip);
    list.push({what: what, where: block.tagName.toLowerCase(), text: snip});
  };
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
  const range = document.createRange();
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement, s = node.nodeValue;
    if (!el || !s.trim() || el.closest(SKIP)) continue;
    if (el.closest(CODE) && !el.closest(OUTPUT)) continue;
    const block = el.closest(BLOCK) || el, td = el.closest("td, th"), cell = td && td.closest("table") ? td : null;
    const text = block.textContent;
    range.setStart(block, 0);
    range.setEnd(node, 0);
    const off = range.toString().length;  // where this text node starts in its block's text
    const repl = text.includes(">>> ");  // a Python session quoted as data (a task's prompt): not a leak
    for (const [re, what, isLeak] of PROSE) for (const m of s.matchAll(re)) {
      const i = off + m.index;
      if (!repl && (cell || isLeak(text, i, m[0]))) report(out.prose, what, block, cell, text, i, m[0].length);
    }
    for (const m of s.matchAll(ROLE))
      report(out.xrefs, "raw " + m[0] + " role", block, cell, text, off + m.index, m[0].length);
  }
  for (const x of root.querySelectorAll(".xref, .std-ref, .std-doc, .std-numref")) {
    if (x.closest("a") || x.parentElement.closest(".xref")) continue;
    out.xrefs.push({what: "unresolved " + ([...x.classList].find(c => /^(std|py)-/.test(c)) || "xref"),
                    where: x.tagName.toLowerCase(), text: cut(x.textContent, 80)});
  }
  return out;
})()
"""


def reader_js() -> str:
    """READER_JS with this module's thresholds filled in."""
    return READER_JS.replace("__MIN_TEXT__", str(MIN_CHART_TEXT_PX)).replace("__TOL__", str(EDGE_TOLERANCE_PX))


# (key in READER_JS's result, name in the summary, what one finding counts)
READER_CHECKS = (
    ("wide_tables", "wide tables", "table"),
    ("small_text", "chart text below %d px" % MIN_CHART_TEXT_PX, "chart"),
    ("clipped_text", "clipped chart text", "chart"),
    ("method_refs", "dead METHOD § references", "reference"),
    ("prose", "NaN/None/dict repr in the text", "place"),
    ("xrefs", "unresolved cross-references", "reference"),
)


def reader_problems(res: dict) -> tuple[list[str], dict[str, int]]:
    """The page's report lines for READER_JS's findings, and how many findings each check had."""
    lines: list[str] = []
    counts: dict[str, int] = {}
    for key, _, _ in READER_CHECKS:
        items = res.get(key) or []
        counts[key] = len(items)
        for it in items[:MAX_ITEMS_PER_CHECK]:
            if key == "wide_tables":
                hidden = it["hidden"]
                names = ", ".join(hidden[:6]) + (f", … ({len(hidden) - 6} more)" if len(hidden) > 6 else "")
                lines.append(f'{it["where"]}: table wider than the column: {it["width"]} px in '
                             f'{it["room"]} px, hidden columns: {names} ({len(hidden)} of {it["columns"]})')
            elif key == "small_text":
                samples = ", ".join(f'"{x}"' for x in it["samples"])
                lines.append(f'chart {it["where"]}: {it["count"]} text(s) below {MIN_CHART_TEXT_PX} px on screen, '
                             f'smallest {it["smallest"]:.1f} px: {samples}')
            elif key == "clipped_text":
                samples = ", ".join(f'"{x}"' for x in it["samples"])
                lines.append(f'chart {it["where"]}: {it["count"]} text(s) clipped at the edge of the SVG: {samples}')
            elif key == "method_refs":
                lines.append(f'dead reference to METHOD §…: "{it}" (cite the book\'s methods chapter)')
            elif "cells" in it:  # NaN/None/dict repr/raw role in table cells: one line per table
                what = it["what"] + ("" if key == "prose" else " (unresolved cross-reference)")
                lines.append(f'{what} in {it["where"]}: {it["text"]}')
            elif key == "prose":
                lines.append(f'{it["what"]} in the text ({it["where"]}): "{it["text"]}"')
            else:
                lines.append(f'{it["what"]} ({it["where"]}): "{it["text"]}"')
        if len(items) > MAX_ITEMS_PER_CHECK:
            name = dict((k, n) for k, n, _ in READER_CHECKS)[key]
            lines.append(f"… and {len(items) - MAX_ITEMS_PER_CHECK} more ({name}: {len(items)} on this page)")
    return lines, counts


def tiles(height: int, tile: int) -> list[tuple[int, int]]:
    """(top, height) of the screenshot tiles that together cover a page of ``height`` px: one when it fits."""
    height, tile = max(int(height), 1), max(int(tile), 1)
    return [(y, min(tile, height - y)) for y in range(0, height, tile)]


class _IdParser(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.refresh: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"])
        if tag == "a" and a.get("name"):
            self.ids.add(a["name"])
        if tag == "meta" and (a.get("http-equiv") or "").lower() == "refresh":
            m = re.search(r"url\s*=\s*['\"]?([^'\"]+)", a.get("content") or "", re.I)
            if m:
                self.refresh = m.group(1).strip()


def static_parse(path: Path) -> _IdParser:
    p = _IdParser()
    p.feed(path.read_text(encoding="utf-8", errors="replace"))
    return p


def toc_pages(toc: Path) -> list[str]:
    """Expected HTML pages (relative paths) from a Jupyter Book v1 ``_toc.yml``; globs expanded
    against the source tree next to the toc."""
    try:
        import yaml  # PyYAML ships with jupyter-book
    except ImportError:  # pragma: no cover
        return []
    data = yaml.safe_load(toc.read_text()) or {}
    root = toc.parent
    files: list[str] = []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                files.append(str(node["file"]))
            if "glob" in node:
                pat = str(node["glob"])
                for ext in (".md", ".ipynb", ".rst", ".myst"):
                    for p in sorted(root.glob(pat + ext)):
                        files.append(p.relative_to(root).with_suffix("").as_posix())
            for v in node.values():
                if isinstance(v, (list, dict)):
                    walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    if "root" in data:
        files.append(str(data["root"]))
    walk(data)
    out = []
    for f in files:
        f = re.sub(r"\.(md|ipynb|rst|myst)$", "", f)
        out.append(f + ".html")
    return list(dict.fromkeys(out))


def local_target(base: Path, url: str) -> tuple[Path, str] | None:
    """(file, fragment) for a file:// URL inside the build, else None (external)."""
    u = urllib.parse.urlparse(url)
    if u.scheme != "file":
        return None
    return Path(urllib.parse.unquote(u.path)), urllib.parse.unquote(u.fragment)


FRAME_JS = "new Promise(r => requestAnimationFrame(() => setTimeout(r, 150)))"
HEIGHT_JS = "Math.max(document.documentElement.scrollHeight, document.body ? document.body.scrollHeight : 0)"


def screenshot(cdp: CDP, shots: Path, stem: str, width: int, tile: int, timeout: float) -> list[Path]:
    """Save the whole page: ``<stem>.png`` when it fits in one tile, else ``<stem>.01.png``, ... that
    together cover its full height. The viewport is made as tall as the page first (capturing beyond a
    short viewport lays the theme's sticky sidebars out wrongly), so each tile is a clip of one layout."""
    def height() -> int:
        cdp.call("Runtime.evaluate", expression=FRAME_JS, awaitPromise=True)
        r = cdp.call("Runtime.evaluate", expression=HEIGHT_JS, returnByValue=True)
        return max(int(r.get("result", {}).get("value") or 0), 600)

    h = height()
    for _ in range(3):  # a taller viewport can make the page taller (e.g. 100vh sidebars): follow it
        cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=h, deviceScaleFactor=1, mobile=False)
        grown = height()
        if grown <= h:
            break
        h = grown
    shots.mkdir(parents=True, exist_ok=True)
    parts = tiles(h, tile)
    names = [stem + ".png"] if len(parts) == 1 else [f"{stem}.{k + 1:02d}.png" for k in range(len(parts))]
    saved = []
    for (y, th), name in zip(parts, names):
        shot = cdp.call("Page.captureScreenshot", format="png", timeout=max(timeout, 60),
                        clip={"x": 0, "y": y, "width": width, "height": th, "scale": 1})
        (shots / name).write_bytes(base64.b64decode(shot["data"]))
        saved.append(shots / name)
    return saved


def check(html_dir: Path, pages: list[str], expected: list[str], shots: Path | None,
          width: int, timeout: float, exe: str, strict_js: bool = False, tile: int = DEFAULT_TILE_PX) -> int:
    tile = tile if tile and tile > 0 else DEFAULT_TILE_PX
    quirks: set[str] = set()
    found: dict[str, dict[str, int]] = {key: {} for key, _, _ in READER_CHECKS}  # check -> page -> findings
    failures: dict[str, list[str]] = {}
    notes: dict[str, str] = {}
    dom_ids: dict[Path, set[str]] = {}
    links: dict[str, list[tuple[str, str]]] = {}

    for page in expected:
        if not (html_dir / page).is_file():
            failures.setdefault(page, []).append("page missing from the build (named in the toc / --pages)")
    todo = [p for p in pages if (html_dir / p).is_file()]
    pages = list(dict.fromkeys(pages + expected))

    browser = Browser(exe, width, timeout)
    try:
        cdp = browser.cdp
        for page in todo:
            path = (html_dir / page).resolve()
            probs = failures.setdefault(page, [])
            parsed = static_parse(path)
            if parsed.refresh:  # Jupyter Book's index.html: a redirect page
                links[page] = [(parsed.refresh, urllib.parse.urljoin(path.as_uri(), parsed.refresh))]
                notes[page] = f"redirect -> {parsed.refresh}"
                continue
            cdp.drain()
            cdp.events.clear()
            cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=1000,
                     deviceScaleFactor=1, mobile=False)
            cdp.call("Page.navigate", url=path.as_uri())
            if cdp.wait_event("Page.loadEventFired", timeout) is None:
                probs.append(f"page did not finish loading within {timeout:g}s")
            deadline = time.time() + timeout
            res = None
            while True:
                r = cdp.call("Runtime.evaluate", expression=PAGE_JS, returnByValue=True)
                res = r.get("result", {}).get("value") or {}
                if res.get("settled") or time.time() > deadline:
                    break
                time.sleep(0.2)
            cdp.drain(0.3)
            for ev in cdp.events:
                m, p = ev["method"], ev.get("params", {})
                if m == "Runtime.exceptionThrown":
                    d = p.get("exceptionDetails", {})
                    desc = (d.get("exception") or {}).get("description") or d.get("text", "")
                    first = desc.splitlines()[0] if desc else "?"
                    if not strict_js and any(re.search(q, first) for q in KNOWN_JS_QUIRKS):
                        quirks.add(first)
                    else:
                        probs.append(f"uncaught JavaScript exception: {first}")
                elif m == "Network.requestWillBeSent":
                    url = p.get("request", {}).get("url", "")
                    if urllib.parse.urlparse(url).scheme in ("http", "https", "ws", "wss"):
                        probs.append(f"requests the network at view time (not offline): {url}")
                elif m == "Network.loadingFailed" and not p.get("canceled"):
                    probs.append(f"resource failed to load: {p.get('errorText')} (request {p.get('requestId')})")
                elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                    e = p["entry"]
                    if e.get("source") == "network":
                        probs.append(f"resource failed to load: {e.get('url') or e.get('text')}")
            probs.extend(res.get("problems", []))
            if not res.get("settled"):
                probs.append("charts/images still loading after the time budget")
            r = cdp.call("Runtime.evaluate", expression=reader_js(), returnByValue=True, timeout=max(timeout, 60))
            if "exceptionDetails" in r:
                probs.append("reader checks failed to run: " + r["exceptionDetails"].get("text", "?"))
            lines, counts = reader_problems(r.get("result", {}).get("value") or {})
            probs.extend(lines)
            for key, n in counts.items():
                if n:
                    found[key][page] = n
            links[page] = [tuple(x) for x in res.get("links", [])]
            dom_ids[path] = set(res.get("ids", []))
            notes[page] = (f"{res.get('charts', 0)} chart(s), {res.get('live', 0)} interactive, "
                           f"{res.get('images', 0)} image(s), {res.get('maths', 0)} formula(s)")
            if shots is not None:
                screenshot(cdp, shots, re.sub(r"\.html$", "", page).replace("/", "__"), width, tile, timeout)
    finally:
        browser.close()

    # internal links, checked after every page's DOM ids are known
    static_ids: dict[Path, set[str]] = {}
    html_root = html_dir.resolve()
    for page, items in links.items():
        probs = failures.setdefault(page, [])
        src = (html_dir / page).resolve()
        for raw, absolute in items:
            if not raw or raw.startswith(("mailto:", "javascript:", "tel:", "data:")) or raw == "#":
                continue
            tgt = local_target(html_dir, absolute)
            if tgt is None:
                continue
            fpath, frag = tgt
            try:
                fpath.relative_to(html_root)
            except ValueError:
                probs.append(f"link leaves the book: {raw}")
                continue
            if fpath.is_dir():
                fpath = fpath / "index.html"
            if not fpath.exists():
                probs.append(f"broken link: {raw} (no file {fpath.relative_to(html_root)})")
                continue
            if frag and fpath.suffix == ".html":
                ids = dom_ids.get(fpath)
                if ids is None:
                    if fpath not in static_ids:
                        static_ids[fpath] = static_parse(fpath).ids
                    ids = static_ids[fpath]
                if frag not in ids:
                    where = "this page" if fpath == src else str(fpath.relative_to(html_root))
                    probs.append(f"broken anchor: {raw} (no id '{frag}' in {where})")

    bad = 0
    for page in list(dict.fromkeys(expected + pages)):
        probs = list(dict.fromkeys(failures.get(page, [])))
        status = "FAIL" if probs else "ok  "
        print(f"{status} {page}" + (f"  [{notes[page]}]" if page in notes else ""))
        for p in probs:
            print(f"       - {p}")
        bad += bool(probs)
    for key, name, unit in READER_CHECKS:
        per_page = found[key]
        if per_page:
            worst = sorted(per_page.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
            print(f"{name}: {sum(per_page.values())} {unit}(s) on {len(per_page)} page(s); most on "
                  + ", ".join(f"{p} ({n})" for p, n in worst))
    for q in sorted(quirks):
        print(f"note: ignored a known Jupyter Book v1 JavaScript quirk on the pages: {q}")
    if shots is not None:
        print(f"screenshots: {shots}")
    if bad:
        print(f"check_book: {bad} page(s) FAILED", file=sys.stderr)
        return 1
    print(f"check_book: all {len(pages)} page(s) passed")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("html", nargs="?", default="_build/html", help="built HTML directory")
    ap.add_argument("--screenshots", default=None, help="where to save PNGs (default <html>/../screenshots)")
    ap.add_argument("--no-screenshots", action="store_true")
    ap.add_argument("--pages", default=None, help="comma-separated pages (relative .html paths) to check only")
    ap.add_argument("--toc", default=None, help="_toc.yml listing the expected pages (default: found next to "
                                                "the build, i.e. <html>/../../_toc.yml)")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("--tiles", type=int, default=DEFAULT_TILE_PX, metavar="PX",
                    help="save a page taller than PX pixels as tiles of PX pixels (<page>.01.png, ...) that "
                         f"together cover it (default {DEFAULT_TILE_PX}); a shorter page as one <page>.png")
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds per page")
    ap.add_argument("--strict-js", action="store_true",
                    help="also fail on the known harmless Jupyter Book v1 JavaScript quirks")
    args = ap.parse_args(argv)

    html_dir = Path(args.html)
    if not html_dir.is_dir():
        print(f"check_book: no HTML build at {html_dir} (run `jupyter-book build .` first)", file=sys.stderr)
        return 2
    toc = Path(args.toc) if args.toc else html_dir.resolve().parent.parent / "_toc.yml"
    expected = toc_pages(toc) if toc.is_file() else []
    if args.pages:  # only these pages; each of them must exist
        pages = [p.strip() for p in args.pages.split(",") if p.strip()]
        expected = list(pages)
    else:  # every built page, plus every page the toc promises
        pages = sorted(
            p.relative_to(html_dir).as_posix() for p in html_dir.rglob("*.html")
            if not p.relative_to(html_dir).as_posix().startswith(SKIP_DIRS)
            and p.name not in SKIP_PAGES
        )
    if not pages:
        print(f"check_book: no pages to check in {html_dir}", file=sys.stderr)
        return 2
    exe = find_chromium()
    if not exe:
        print("check_book: Chromium not found. Install it (Debian/Ubuntu: `apt-get install -y chromium`) "
              "or set CHROMIUM=/path/to/chrome.", file=sys.stderr)
        return 3
    shots = None if args.no_screenshots else Path(args.screenshots or html_dir.resolve().parent / "screenshots")
    try:
        return check(html_dir, pages, expected, shots, args.width, args.timeout, exe, args.strict_js, args.tiles)
    except (RuntimeError, ConnectionError, TimeoutError) as exc:
        print(f"check_book: browser failure: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
