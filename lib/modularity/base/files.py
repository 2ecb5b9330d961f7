"""Where the project's files are, and how every file is written: imports nothing of the package.

:data:`REPO_ROOT` is this checkout; :func:`project_root` is where a run's outputs go
(``$MODULARITY_ROOT`` when set: tests and other checkouts, else this checkout), and
:func:`results_root` its ``book/results``. :func:`atomic_write_bytes` writes through a temporary
file and a rename, so a killed process never leaves a torn file.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["REPO_ROOT", "project_root", "results_root", "atomic_write_bytes"]

REPO_ROOT = Path(__file__).resolve().parents[3]


def project_root(root: str | Path | None = None) -> Path:
    """``root`` when given, else ``$MODULARITY_ROOT`` when set, else this checkout: the folder
    holding ``book/results`` and ``cache``."""
    return Path(root or os.environ.get("MODULARITY_ROOT") or REPO_ROOT)


def results_root(root: str | Path | None = None) -> Path:
    """``book/results`` under :func:`project_root`."""
    return project_root(root) / "book" / "results"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and rename (no torn files).

    The temporary file is created with mode 0666 less the umask, as ``open`` would create
    ``path`` (``tempfile.mkstemp`` makes it 0600, which the rename would keep).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
