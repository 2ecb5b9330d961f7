"""Live progress: bars in a stage report their state to a file that the runner shows in the terminal."""
import json
import subprocess
import sys
import time

from modularity.base import progress


def test_bar_reports_its_state_only_when_the_runner_asks(tmp_path, monkeypatch):
    state = tmp_path / "state.json"
    for _ in progress.bar(range(3), desc="silent"):
        pass
    assert not state.exists()
    monkeypatch.setenv(progress.STATE_VARIABLE, str(state))
    with progress.bar(total=4, desc="scoring", unit="tasks") as bar:
        bar.update(3)
        bar.refresh()
        reported = json.loads(state.read_text())
        assert (reported["desc"], reported["n"], reported["total"], reported["unit"]) == ("scoring", 3, 4, "tasks")
    assert json.loads(state.read_text())["n"] == 3
    state.unlink()
    for _ in progress.bar(range(2), desc="inner", report=False):
        pass
    assert not state.exists()


def test_describe_gives_done_total_elapsed_and_time_left():
    line = progress.describe({"desc": "evaluating", "n": 10, "total": 46, "unit": "tasks", "elapsed": 185, "rate": 0.05})
    assert line == "evaluating 10/46 tasks · 3m05s · ~12m00s left"
    assert "left" not in progress.describe({"desc": "x", "n": 4, "total": 4, "elapsed": 1, "rate": 1.0})
    assert progress.describe({"n": 2, "elapsed": 7200}).startswith("working 2 it · 2h00m")


def test_watch_shows_a_bar_of_another_process(tmp_path, capfd):
    """The kernel is another process: it inherits the variable and the watcher prints its state."""
    code = ("import time\nfrom modularity.base.progress import bar\n"
            "with bar(total=5, desc='child', unit='cells') as b:\n"
            "    for _ in range(5):\n        b.update(1); b.refresh(); time.sleep(0.3)\n")
    with progress.watch("[run] stage:", tmp_path / "sub" / "state.json", every=0.1, log_every=0.0):
        subprocess.run([sys.executable, "-c", code], check=True)
        time.sleep(0.3)
    err = capfd.readouterr().err
    assert "[run] stage: child" in err and "/5 cells" in err
    assert progress.STATE_VARIABLE not in __import__("os").environ
    assert not (tmp_path / "sub" / "state.json").exists()
