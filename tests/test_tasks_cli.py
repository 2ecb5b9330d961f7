"""`modularity tasks …` commands."""
from __future__ import annotations

import pytest

from modularity.showing.cli import main
from modularity.science.tasks import load_study_data


def test_list_shows_all_tasks(capsys):
    assert main(["tasks", "list"]) == 0
    out = capsys.readouterr().out
    assert "physics_brightness" in out and "46 tasks" in out


def test_show_prints_both_conditions(capsys):
    assert main(["tasks", "show", "code_list", "--profile", "paper", "--n", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("[clean]") == 2 and out.count("[corrupted]") == 2 and "```python" in out


def test_export_round_trip(tmp_path, capsys):
    assert main(["tasks", "export", "--profile", "small", "--seed", "1", "--n-items", "4",
                 "--tasks", "wug,physics_speed", "--out", str(tmp_path)]) == 0
    loaded = load_study_data(tmp_path)
    assert list(loaded) == ["physics_speed", "wug"] and all(len(t) == 4 for t in loaded.values())


@pytest.mark.parametrize("argv,message", [
    (["tasks", "export", "--tasks", "nope", "--out", "x"], "unknown task"),
    (["tasks", "export", "--n-items", "0", "--out", "x"], "--n-items"),
    (["tasks", "show", "nope"], "unknown task"),
])
def test_errors_are_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err
