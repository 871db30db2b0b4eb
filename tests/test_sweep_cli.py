"""The ``gradlab sweep`` command: exit statuses, the closing line and table, bad input, --resume."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from gradlab.cli import app
from cli_helpers import assert_bad_input

SWEEP = """\
name: cli
base:
  data: {kind: spirals, n_samples: 64}
  model: {depth: 2, width: 8, activation: tanh}
  train: {steps: 5, batch_size: 16}
grid:
  model.depth: [2, 3]
zip:
  model.activation: [tanh, relu]
  model.init: [xavier_normal, he_normal]
seeds: [0]
"""
LABELS = ["depth=2,activation=tanh,init=xavier_normal,seed=0", "depth=2,activation=relu,init=he_normal,seed=0",
          "depth=3,activation=tanh,init=xavier_normal,seed=0", "depth=3,activation=relu,init=he_normal,seed=0"]
CLOSING = re.compile(r"^(completed|interrupted): (\d+) runs now, (\d+) in summary\.csv, (\d+) not completed -> (.+)$",
                     re.M)


def write(folder: Path, text: str = SWEEP, name: str = "sweep.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def sweep(tmp_path: Path, *args: str):
    return CliRunner().invoke(app, ["sweep", *args, "--set", f"log.out={tmp_path / 'runs'}"])


def closing(result) -> tuple[str, int, int, int, Path]:
    found = CLOSING.findall(result.stdout)
    assert len(found) == 1, result.stdout
    status, ran, rows, bad, folder = found[0]
    return status, int(ran), int(rows), int(bad), Path(folder)


def test_sweep_runs_the_grid_and_resume_runs_nothing_more(tmp_path):
    result = sweep(tmp_path, str(write(tmp_path)), "--workers", "2", "--set", "train.steps=3")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    status, ran, rows, bad, folder = closing(result)
    assert (status, ran, rows, bad) == ("completed", 4, 4, 0)
    assert folder.parent == tmp_path / "runs" and re.fullmatch(r"cli-\d{8}-\d{6}", folder.name)
    assert "4 runs in" in result.stdout  # the closing table
    assert "depth=2,activation=tanh" in result.stdout
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted(LABELS)
    table = pd.read_csv(folder / "summary.csv")
    assert list(table.columns[:5]) == ["run", "model.depth", "model.activation", "model.init", "seed"]
    assert table.steps.tolist() == [3] * 4  # --set overrides the base
    assert table.status.tolist() == ["completed"] * 4

    again = CliRunner().invoke(app, ["sweep", "--resume", str(folder), "--quiet"])
    assert again.exit_code == 0, (again.stdout, again.stderr)
    assert closing(again)[:4] == ("completed", 0, 4, 0)
    assert "runs in" not in again.stdout  # --quiet: only the closing line
    pd.testing.assert_frame_equal(pd.read_csv(folder / "summary.csv"), table, check_exact=True)


def test_a_diverging_run_is_counted_and_the_sweep_still_exits_0(tmp_path):
    text = ("name: boom\nbase:\n  data: {kind: teacher, n_samples: 64}\n"
            "  model: {depth: 2, width: 8, activation: relu, init: he_normal}\n  loss: mse\n"
            "  train: {steps: 40, batch_size: 16}\ngrid:\n  train.lr: [0.01, 1.0e+6]\n")
    result = sweep(tmp_path, str(write(tmp_path, text)), "--workers", "2")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    status, ran, rows, bad, folder = closing(result)
    assert (status, ran, rows, bad) == ("completed", 2, 2, 1)
    assert "diverged" in result.stdout
    assert pd.read_csv(folder / "summary.csv").status.tolist() == ["completed", "diverged"]


def test_unknown_grid_key_exits_2_with_did_you_mean(tmp_path):
    path = write(tmp_path, SWEEP.replace("model.depth: [2, 3]", "model.dpeth: [2, 3]"))
    result = sweep(tmp_path, str(path), "--workers", "2")
    assert_bad_input(result, str(path), "combination dpeth=2", "unknown key 'model.dpeth'", "Did you mean 'depth'?")
    assert not (tmp_path / "runs").exists()


def test_empty_list_and_bad_combination_exit_2_before_anything_runs(tmp_path):
    empty = write(tmp_path, SWEEP.replace("[2, 3]", "[]"), "empty.yaml")
    assert_bad_input(sweep(tmp_path, str(empty)), "'grid.model.depth' must be a non-empty list")
    zero = write(tmp_path, SWEEP.replace("[2, 3]", "[2, 0]"), "zero.yaml")
    assert_bad_input(sweep(tmp_path, str(zero)), "combination depth=0,activation=tanh,init=xavier_normal,seed=0",
                     "'model.depth'")
    assert not (tmp_path / "runs").exists()


def test_missing_sweep_file_exits_2(tmp_path):
    assert_bad_input(sweep(tmp_path, str(tmp_path / "nope.yaml")), "nope.yaml", "sweep file not found")


def test_no_sweep_file_and_no_resume_exits_2(tmp_path):
    assert_bad_input(CliRunner().invoke(app, ["sweep"]), "give a sweep file, or --resume DIR")


def test_resume_of_a_folder_that_is_not_a_sweep_exits_2(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.csv").write_text("step,loss\n")
    result = CliRunner().invoke(app, ["sweep", "--resume", str(tmp_path / "run")])
    assert_bad_input(result, "--resume", "not a sweep folder", "no sweep.yaml")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["metrics.csv"]
