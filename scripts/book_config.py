"""The book's ``_config.yml`` with launch buttons for a published repository.

Launch buttons (Binder, Colab) open a page's notebook from the repository the book is published
from, so they need its URL; the committed ``_config.yml`` cannot know it (a fork publishes from
its own). ``make html`` / ``make book`` pass ``REPOSITORY_URL`` (default: the ``origin`` remote;
the Pages workflow passes ``https://github.com/<owner>/<repo>``) and build with the config this
script writes; without a URL, or with a remote that is not a web repository (a clone of a local
folder), the book builds from ``_config.yml`` as is, without the buttons.

    python scripts/book_config.py https://github.com/owner/modularity-book > _build/_config.yml
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def https_url(remote: str) -> str:
    """``git@github.com:owner/repo.git`` or ``https://github.com/owner/repo.git`` → ``https://github.com/owner/repo``."""
    remote = remote.strip()
    ssh = re.fullmatch(r"git@([^:/]+):(.+?)(?:\.git)?", remote) or \
        re.fullmatch(r"ssh://(?:[^@/]+@)?([^:/]+)(?::\d+)?/(.+?)(?:\.git)?", remote)
    if ssh:
        return f"https://{ssh.group(1)}/{ssh.group(2)}"
    if re.match(r"https?://", remote):
        return re.sub(r"\.git$", "", remote.rstrip("/"))
    raise ValueError(f"not a repository URL: {remote!r} (expected https://… or git@host:owner/repo)")


def with_launch_buttons(config: dict, url: str, branch: str = "main") -> dict:
    """``config`` plus the repository and Binder / Colab launch buttons (JupyterLab interface)."""
    out = dict(config)
    out["repository"] = {"url": https_url(url), "branch": branch}
    out["launch_buttons"] = {"notebook_interface": "jupyterlab", "binderhub_url": "https://mybinder.org",
                             "colab_url": "https://colab.research.google.com"}
    out["html"] = {**config.get("html", {}), "use_repository_button": True, "use_issues_button": True}
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    try:
        config = with_launch_buttons(config, argv[0])
    except ValueError as error:  # a clone of a local folder or a mirror: no web page to launch from
        print(f"book_config: {error}; building without launch buttons", file=sys.stderr)
    sys.stdout.write(yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
