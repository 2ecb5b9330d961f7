"""Tests for `modularity stats ...` and the matrix CSV reader/writer behind it."""
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from modularity.showing.cli import main
from modularity.science.matrix_csv import domains_of, read_matrix_csv, write_matrix_csv

DATA = Path(__file__).parent / "data"
OVERLAP = DATA / "planted_overlap.csv"
ABLATION = DATA / "planted_ablation.csv"


def run_json(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return json.loads(captured.out)


def run_error(capsys, argv):
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    return captured.err


# --------------------------------------------------------------------------- CSV reader / writer


def test_read_matrix_csv_reorders_columns_and_drops_legacy(tmp_path):
    matrix = read_matrix_csv(ABLATION)
    assert matrix.shape == (16, 16)
    assert matrix.attrs["dropped_legacy"] == ["phys/material", "phys/spatial"]
    assert read_matrix_csv(ABLATION, drop_legacy=False).shape == (18, 18)
    shuffled = pd.read_csv(OVERLAP, index_col=0)
    shuffled = shuffled[list(reversed(shuffled.columns))]
    path = tmp_path / "shuffled.csv"
    shuffled.to_csv(path)
    reread = read_matrix_csv(path)
    assert list(reread.columns) == list(reread.index)
    pd.testing.assert_frame_equal(reread, read_matrix_csv(OVERLAP), check_like=False)


def write_text(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_errors_name_file_label_and_fix(tmp_path):
    bad_domain = write_text(tmp_path, "bad_domain.csv", ",MD/a,Math/b\nMD/a,1,0.1\nMath/b,0.1,1\n")
    with pytest.raises(ValueError, match=r"bad_domain\.csv.*'Math/b'.*unknown domain 'Math'"):
        read_matrix_csv(bad_domain)
    bad_row = write_text(tmp_path, "bad_row.csv", ",MD/a,ToM/b\nMD/a,1,0.1\nToMb,0.1,1\n")
    with pytest.raises(ValueError, match=r"bad_row\.csv: row label 'ToMb' \(data row 2\).*domain/task"):
        read_matrix_csv(bad_row)
    not_number = write_text(tmp_path, "text.csv", ",MD/a,ToM/b\nMD/a,1,abc\nToM/b,0.1,1\n")
    with pytest.raises(ValueError, match=r"text\.csv: row 'MD/a', column 'ToM/b' holds 'abc'"):
        read_matrix_csv(not_number)
    mismatch = write_text(tmp_path, "mismatch.csv", ",MD/a,ToM/b\nMD/a,1,0.1\nLan/c,0.1,1\n")
    with pytest.raises(ValueError, match=r"mismatch\.csv: rows and columns.*Lan/c.*ToM/b.*common_labels=True"):
        read_matrix_csv(mismatch)
    cut = read_matrix_csv(mismatch, common_labels=True)
    assert list(cut.index) == ["MD/a"] and cut.attrs["dropped_unpaired"] == ["Lan/c", "ToM/b"]
    duplicate = write_text(tmp_path, "dup.csv", ",MD/a,MD/a\nMD/a,1,0.1\nMD/b,0.1,1\n")
    with pytest.raises(ValueError, match=r"dup\.csv: column label 'MD/a' appears more than once"):
        read_matrix_csv(duplicate)
    short_row = write_text(tmp_path, "short.csv", ",MD/a,ToM/b\nMD/a,1,0.1\nToM/b,0.1\n")
    with pytest.raises(ValueError, match=r"short\.csv: row 'ToM/b' \(data row 2\) has 1 values but the header names 2"):
        read_matrix_csv(short_row)
    empty = write_text(tmp_path, "empty.csv", "")
    with pytest.raises(ValueError, match=r"empty\.csv: the file is empty"):
        read_matrix_csv(empty)
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        read_matrix_csv(tmp_path / "nope.csv")


def test_empty_cells_are_missing_values(tmp_path):
    path = write_text(tmp_path, "gaps.csv", ",MD/a,ToM/b\nMD/a,1,\nToM/b, 0.25 ,1\n")
    matrix = read_matrix_csv(path)
    assert np.isnan(matrix.loc["MD/a", "ToM/b"]) and matrix.loc["ToM/b", "MD/a"] == 0.25


def test_write_matrix_csv_round_trip_is_atomic(tmp_path):
    matrix = read_matrix_csv(OVERLAP)
    target = write_matrix_csv(matrix, tmp_path / "sub" / "out.csv")
    assert target.read_text().startswith(",MD/add,")
    pd.testing.assert_frame_equal(read_matrix_csv(target), matrix)
    assert sorted(os.listdir(tmp_path / "sub")) == ["out.csv"]  # no temporary left behind
    with pytest.raises(ValueError):
        write_matrix_csv(matrix.iloc[:, :3], tmp_path / "bad.csv")
    assert not (tmp_path / "bad.csv").exists()


def test_domains_of():
    assert domains_of(["MD/a", "Lan/b", "phys/c", "ToM/d"]) == ["MD", "Lan", "phys", "ToM"]
    with pytest.raises(ValueError, match="'md/a'"):
        domains_of(["md/a"])


# --------------------------------------------------------------------------- CLI


def test_stats_overlap_json(capsys):
    report = run_json(capsys, ["stats", "overlap", str(OVERLAP), "--permutations", "999"])
    for key in ("n_tasks", "within", "cross", "ratio", "p_within_gt_cross", "ari", "ari_p", "per_domain",
                "nmi", "ami", "silhouette", "dropped_legacy"):
        assert key in report
    assert report["n_tasks"] == 16
    assert report["ratio"] > 5
    assert report["p_within_gt_cross"] == pytest.approx(1 / 1000)
    assert report["ari"] == 1.0 and report["ari_p"] == pytest.approx(1 / 1000)
    assert set(report["per_domain"]) == {"MD", "ToM", "phys", "Lan"}
    for domain in report["per_domain"].values():
        assert {"within", "cross", "ratio", "p"} <= set(domain)
        assert domain["ratio"] > 5
    assert report["symmetric"] is True and report["dropped_legacy"] == []


def test_stats_ablation_json_drops_legacy_and_has_bars(capsys):
    report = run_json(capsys, ["stats", "ablation", str(ABLATION), "--permutations", "199", "--seed", "1"])
    assert report["kind"] == "ablation"
    assert report["n_tasks"] == 16
    assert report["dropped_legacy"] == ["phys/material", "phys/spatial"]
    assert report["within"] > report["cross"] and report["ari"] == 1.0
    assert report["diagonal_mean"] == pytest.approx(0.8)
    bars = report["bars"]["MD"]
    assert set(bars) == {"within", "D→others", "others→D"}
    assert bars["within"]["n"] == 12 and bars["D→others"]["n"] == 48
    kept = run_json(capsys, ["stats", "ablation", str(ABLATION), "--permutations", "19", "--keep-legacy"])
    assert kept["n_tasks"] == 18 and kept["n_tasks_per_domain"]["phys"] == 6


def test_stats_kendall_json(tmp_path, capsys):
    rng = np.random.default_rng(3)
    base = read_matrix_csv(OVERLAP)
    paths = []
    for index in range(3):
        values = base.to_numpy() + rng.normal(0, 0.02, base.shape)
        noisy = pd.DataFrame((values + values.T) / 2, index=base.index, columns=base.columns)
        if index == 2:  # one model lacks a task: the common set shrinks to 15
            noisy = noisy.drop(index="Lan/wug", columns="Lan/wug")
        paths.append(write_matrix_csv(noisy, tmp_path / f"model{index}.csv"))
    report = run_json(capsys, ["stats", "kendall", *map(str, paths), "--mode", "upper"])
    assert report["n_common_tasks"] == 15 and report["n_values"] == 105
    assert len(report["pairs"]) == 3 and report["ddof"] == 1
    first = report["pairs"][0]
    assert (first["file_a"], first["file_b"]) == (str(paths[0]), str(paths[1]))
    a = read_matrix_csv(paths[0]).drop(index="Lan/wug", columns="Lan/wug")
    b = read_matrix_csv(paths[1]).drop(index="Lan/wug", columns="Lan/wug")
    labels = sorted(a.index)
    iu = np.triu_indices(15, k=1)
    expected = kendalltau(a.loc[labels, labels].to_numpy()[iu], b.loc[labels, labels].to_numpy()[iu])
    assert first["tau"] == pytest.approx(expected[0]) and first["p"] == pytest.approx(expected[1])
    assert report["tau_mean"] == pytest.approx(np.mean([pair["tau"] for pair in report["pairs"]]))
    assert report["tau_sd"] == pytest.approx(np.std([pair["tau"] for pair in report["pairs"]], ddof=1))
    directed = run_json(capsys, ["stats", "kendall", *map(str, paths)])
    assert directed["mode"] == "directed" and directed["n_values"] == 210 and directed["ddof"] == 0


def test_stats_errors_exit_2_with_clear_message(tmp_path, capsys):
    assert "no such file" in run_error(capsys, ["stats", "overlap", str(tmp_path / "missing.csv")])
    bad = write_text(tmp_path, "bad.csv", ",MD/a,Foo/b\nMD/a,1,0\nFoo/b,0,1\n")
    message = run_error(capsys, ["stats", "overlap", str(bad)])
    assert "bad.csv" in message and "'Foo/b'" in message
    assert "at least two" in run_error(capsys, ["stats", "kendall", str(OVERLAP)])
    assert "--permutations" in run_error(capsys, ["stats", "overlap", str(OVERLAP), "--permutations", "-1"])
    tiny = write_text(tmp_path, "tiny.csv", ",MD/a,ToM/b\nMD/a,1,0\nToM/b,0,1\n")
    assert "at least 3" in run_error(capsys, ["stats", "overlap", str(tiny)])


def test_stats_help_teaches_layout_and_numbers(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["stats", "overlap", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for phrase in ("domain/task", "p_within_gt_cross", "Adjusted Rand", "exactly one task", "phys/material"):
        assert phrase in text
    assert main(["stats"]) == 2  # no command: prints the group's help
    assert "kendall" in capsys.readouterr().out
