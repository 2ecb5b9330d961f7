"""The real book builds offline with ``jupyter-book build -W -n`` and every page passes the
headless-Chromium checks (pages, figures, internal links). Skipped only without Chromium."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
import check_book  # noqa: E402

#: What the book's pages read: its sources, and the study's figure the study chapter shows.
BOOK_FILES = ["_config.yml", "_toc.yml", "book", "_static", "_extra", "data/external/llm_modularity/figures",
              "data/external/llm_modularity/LICENSE"]


@pytest.fixture(scope="module")
def built_book(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("book")
    for name in BOOK_FILES:
        source = REPO / name
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, root / name)
    exe = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run([str(exe), "build", str(root), "-W", "-n", "--keep-going"],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return root / "_build" / "html"


def test_book_builds_without_warnings(built_book):
    assert (built_book / "index.html").exists()
    assert (built_book / "book" / "tasks.html").exists()
    assert (built_book / "book" / "results" / "index.html").exists()


@pytest.mark.skipif(check_book.find_chromium() is None,
                    reason="Chromium is not installed (apt-get install -y chromium)")
def test_every_page_renders_with_its_figures(built_book, tmp_path):
    code = check_book.main([str(built_book), "--screenshots", str(tmp_path / "shots")])
    assert code == 0
