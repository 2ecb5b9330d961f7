"""Progress of long work, in the notebook and, live, in the terminal that started the run.

Inside a stage notebook :func:`bar` is a plain text progress bar (tqdm, on stderr). When the
stage runs under ``modularity run``, the runner also names a state file in the environment
variable :data:`STATE_VARIABLE`; every top-level bar then writes its state there (what, how many
done, of how many, rate), and the runner's :func:`watch` shows it in the terminal while the
notebook executes in its own kernel. Inner bars (``report=False``) stay in the notebook.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from tqdm import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets

from .files import atomic_write_bytes

#: Environment variable naming the state file a running stage reports to.
STATE_VARIABLE = "MODULARITY_PROGRESS"


class _ReportingBar(tqdm):
    """A tqdm bar that also writes its state to the runner's state file on every refresh."""

    def __init__(self, *args, state_file: str | None = None, **kwargs):
        self._state_file = state_file
        super().__init__(*args, **kwargs)

    def display(self, msg=None, pos=None):
        shown = super().display(msg, pos)
        self._report()
        return shown

    def close(self):
        self._report()
        super().close()

    def _report(self) -> None:
        if not self._state_file or getattr(self, "disable", True):
            return
        shown = self.format_dict
        state = {"desc": self.desc, "n": self.n, "total": self.total, "unit": self.unit,
                 "elapsed": shown.get("elapsed"), "rate": shown.get("rate")}

        atomic_write_bytes(Path(self._state_file), json.dumps(state).encode())  # never half a state


def bar(iterable=None, total: int | None = None, desc: str = "", unit: str = "it", report: bool = True,
        disable: bool = False, leave: bool = True) -> tqdm:
    """A progress bar over ``iterable`` (or updated by hand when ``iterable`` is None).

    ``report`` (top-level work: tasks, cells) sends its state to the terminal of
    ``modularity run``; per-batch bars inside a task pass ``report=False``.
    """
    state_file = os.environ.get(STATE_VARIABLE) if report else None
    return _ReportingBar(iterable, total=total, desc=desc, unit=unit, disable=disable, leave=leave,
                         state_file=state_file, file=sys.stderr, dynamic_ncols=True)


def notice(message: str) -> None:
    """``message`` as one line on stderr, above any progress bar that is running (not through it)."""
    tqdm.write(" ".join(message.splitlines()), file=sys.stderr)


def describe(state: dict) -> str:
    """One line for a bar's state, e.g. ``evaluating 12/46 tasks · 3m05s · ~8m left``."""
    done, total, rate = state.get("n") or 0, state.get("total"), state.get("rate")
    unit = state.get("unit") or "it"
    text = f"{state.get('desc') or 'working'} {done}" + (f"/{total}" if total else "") + f" {unit}"
    text += f" · {_clock(state.get('elapsed') or 0)}"
    if total and rate and rate > 0 and done < total:
        text += f" · ~{_clock((total - done) / rate)} left"
    return text


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


@contextmanager
def watch(label: str, state_file: Path, every: float = 1.0, log_every: float = 30.0) -> Iterator[None]:
    """While the block runs, show the state written to ``state_file`` after ``label`` on stderr.

    On a terminal the line is redrawn in place every ``every`` seconds; in a log (not a tty) a
    line is printed at most every ``log_every`` seconds, so logs stay short.
    """
    state_file = Path(state_file)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    state_file.unlink(missing_ok=True)
    stop = threading.Event()
    interactive = sys.stderr.isatty()

    def show() -> None:
        last_line, last_print = "", 0.0
        while not stop.wait(every):
            try:
                line = f"{label} {describe(json.loads(state_file.read_text()))}"
            except (FileNotFoundError, ValueError):
                continue
            if interactive:
                sys.stderr.write("\r" + line[:160].ljust(len(last_line)))
                sys.stderr.flush()
            elif line != last_line and time.monotonic() - last_print >= log_every:
                print(line, file=sys.stderr, flush=True)
                last_print = time.monotonic()
            last_line = line

    previous = os.environ.get(STATE_VARIABLE)
    os.environ[STATE_VARIABLE] = str(state_file)  # the kernel papermill starts inherits it
    thread = threading.Thread(target=show, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if interactive:
            sys.stderr.write("\n")
        if previous is None:
            os.environ.pop(STATE_VARIABLE, None)
        else:
            os.environ[STATE_VARIABLE] = previous
        state_file.unlink(missing_ok=True)
