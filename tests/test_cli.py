"""The ``gradlab train`` command: exit statuses, error messages, run folders and divergence."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from gradlab.cli import app
from cli_helpers import assert_bad_input

RUN_FILES = {"config.yaml", "metrics.csv", "grad_norms.csv", "layer_stats.csv",
             "params_init.npz", "params_final.npz", "summary.json"}
TINY = "name: tiny\ndata: {kind: spirals, n_samples: 64}\nmodel: {depth: 2, width: 8, activation: tanh}\ntrain: {steps: 3}\n"
# relu + He init with a huge learning rate on a regression teacher: the loss overflows within a few steps
DIVERGING = ("name: boom\ndata: {kind: teacher, n_samples: 128}\n"
             "model: {depth: 3, width: 16, activation: relu, init: he_normal}\n"
             "loss: mse\ntrain: {optimizer: sgd, lr: 1.0e+6, steps: 50}\nlog: {every: 1}\n")


def write(folder: Path, text: str, name: str = "exp.yaml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def train(tmp_path: Path, config: Path | str, *args: str):
    return CliRunner().invoke(app, ["train", str(config), "--set", f"log.out={tmp_path / 'runs'}", *args])


def run_dirs(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "runs").iterdir()) if (tmp_path / "runs").exists() else []


# --------------------------------------------------------------------------- bad input: exit 2

@pytest.mark.parametrize("text, fragments", [
    ("data: {kind: spirals}\nmodel: {depth: 2, width: 8\n", ["YAML error at line 3"]),
    ("name: !!python/object/apply:os.getcwd []\ndata: {kind: spirals}\n", ["line 1", "python/object/apply"]),
    ("data: {kind: spirals}\ndata: {kind: moons}\n", ["duplicate key 'data'", "line 2"]),
    ("data: {kind: spirals}\nmodel: {dpeth: 2, width: 8}\n", ["unknown key 'model.dpeth'. Did you mean 'depth'?",
                                                             "Allowed keys in model: kind, depth, width"]),
    ("data: {kind: spirals}\nmodel: {depth: ten, width: 8}\n", ["'model.depth'", "a whole number", "(got 'ten')"]),
    ("data: {kind: spirals}\nmodel: {depth: 0, width: 8}\n", ["'model.depth'", "greater than or equal to 1 (got 0)"]),
    ("data: {kind: spirals}\nmodel: {depth: 2, width: 8}\ntrain: {lr: 0}\n", ["'train.lr'", "greater than 0 (got 0)"]),
    ("data: {kind: spirals}\nmodel: {depth: 2, width: 8, dropout: 1.0}\n", ["'model.dropout'", "less than 1 (got 1.0)"]),
    ("data: {kind: mnist}\nmodel: {depth: 2, width: 8}\n", ["'data.kind' is 'mnist'; allowed: 'spirals', 'moons'"]),
    ("- data\n- model\n", ["must be a YAML mapping"]),
], ids=["syntax", "python-tag", "duplicate", "unknown-key", "wrong-type", "depth-0", "lr-0", "dropout-1",
        "data-kind", "list"])
def test_bad_config_exits_2(tmp_path, text, fragments):
    path = write(tmp_path, text)
    assert_bad_input(train(tmp_path, path), f"error: {path}: ", *fragments)
    assert run_dirs(tmp_path) == []


def test_bad_set_exits_2(tmp_path):
    path = write(tmp_path, TINY)
    assert_bad_input(train(tmp_path, path, "--set", "model.depth"), "--set model.depth: expected KEY.PATH=VALUE")
    assert_bad_input(train(tmp_path, path, "--set", "train.lr=-1"), "error: --set train.lr=-1: 'train.lr'", "greater than 0")
    assert_bad_input(train(tmp_path, path, "--set", "model.activation=swish"), "'model.activation.name'", "'tanh'")


def test_missing_config_file_exits_2(tmp_path):
    assert_bad_input(train(tmp_path, tmp_path / "nothere.yaml"), f"{tmp_path / 'nothere.yaml'}: config file not found.")


@pytest.fixture
def csv_folder(tmp_path) -> Path:
    rows = ["x1,x2,label"] + [f"{i / 10},{(i * 7 % 10) / 10},{i % 2}" for i in range(20)]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return tmp_path


def test_csv_target_column_that_does_not_exist(csv_folder):
    path = write(csv_folder, "data: {kind: csv, path: data.csv, target: lbl}\nmodel: {depth: 2, width: 8}\n"
                             "train: {steps: 2}\n")
    message = assert_bad_input(train(csv_folder, path), f"{path}: data.target: column 'lbl' not found",
                               "available columns: x1, x2, label.")
    assert "data.csv" in message
    assert run_dirs(csv_folder) == []


def test_csv_data_file_that_does_not_exist(csv_folder):
    path = write(csv_folder, "data: {kind: csv, path: missing.csv, target: label}\nmodel: {depth: 2, width: 8}\n")
    assert_bad_input(train(csv_folder, path), f"{path}: data.path: file not found: {csv_folder / 'missing.csv'}")


def test_csv_that_exists_trains(csv_folder):
    path = write(csv_folder, "data: {kind: csv, path: data.csv, target: label}\nmodel: {depth: 2, width: 8}\n"
                             "train: {steps: 2}\n")
    result = train(csv_folder, path, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("completed: 2 steps")


def test_log_out_that_is_a_file_exits_2(tmp_path):
    path = write(tmp_path, TINY)
    result = CliRunner().invoke(app, ["train", str(path), "--set", f"log.out={path}"])
    assert_bad_input(result, f"{path}: log.out: cannot make a run folder under '{path}'")


# --------------------------------------------------------------------------- good runs: exit 0

def test_tiny_run_writes_the_run_folder(tmp_path):
    path = write(tmp_path, TINY)
    result = train(tmp_path, path)
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    [run] = run_dirs(tmp_path)
    assert run.name.startswith("tiny-")
    assert {p.name for p in run.iterdir()} == RUN_FILES
    assert "completed: 3 steps" in result.stdout and str(run) in result.stdout.replace("\n", "")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 3
    assert summary["diverged_at"] is None
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics["step"]) == [0, 1, 2]
    assert np.isfinite(metrics["loss"]).all()
    layers = pd.read_csv(run / "layer_stats.csv")
    assert sorted(set(layers["layer"])) == [1, 2, 3]  # 2 hidden layers and the output layer
    with np.load(run / "params_init.npz") as init, np.load(run / "params_final.npz") as final:
        assert set(init.files) == set(final.files) and init.files


def test_quiet_prints_exactly_one_line(tmp_path):
    path = write(tmp_path, TINY)
    result = train(tmp_path, path, "--quiet")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    [run] = run_dirs(tmp_path)
    assert len(lines) == 1, result.stdout
    assert lines[0].startswith("completed: 3 steps, train loss ") and lines[0].endswith(f"-> {run}")
    assert result.stderr == ""


# --------------------------------------------------------------------------- divergence: exit 3

def test_diverging_run_stops_and_exits_3(tmp_path):
    path = write(tmp_path, DIVERGING)
    result = train(tmp_path, path, "--quiet")
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    [run] = run_dirs(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged"
    at, layer = summary["diverged_at"], summary["diverged_layer"]
    assert isinstance(at, int) and 0 <= at < 50
    assert isinstance(layer, int) and 1 <= layer <= 4
    assert summary["steps"] == at  # updates done before the non-finite step
    line = result.stdout.strip()
    assert "\n" not in line
    assert line.startswith(f"diverged: {at} steps") and f"non-finite at step {at}, first in layer {layer}" in line
    assert {p.name for p in run.iterdir()} == RUN_FILES
    metrics = pd.read_csv(run / "metrics.csv")
    assert list(metrics["step"]) == list(range(at + 1))  # every row kept, one per step, up to the diverged one
    assert np.isfinite(metrics[["loss", "grad_norm"]].iloc[:-1].to_numpy()).all()
    assert not np.isfinite(metrics[["loss", "grad_norm"]].iloc[-1].to_numpy()).all()
    assert pd.read_csv(run / "layer_stats.csv")["step"].max() == at
    assert pd.read_csv(run / "grad_norms.csv")["step"].max() == at


def test_diverging_run_prints_the_table_without_quiet(tmp_path):
    result = train(tmp_path, write(tmp_path, DIVERGING))
    assert result.exit_code == 3
    assert "Gradients by layer" in result.stdout and "diverged: " in result.stdout


# --------------------------------------------------------------------------- a real process

def test_python_m_gradlab_exit_codes_without_traceback(tmp_path):
    bad = write(tmp_path, "data: {kind: spirals}\nmodel: {depth: 0, width: 8}\n", "bad.yaml")
    proc = subprocess.run([sys.executable, "-m", "gradlab", "train", str(bad), "--set", f"log.out={tmp_path / 'runs'}"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith(f"error: {bad}: 'model.depth'")
    assert proc.stdout == ""


# --------------------------------------------------------------------------- the sweep's closing table

def test_the_sweep_table_reads_summary_csvs_names_and_the_old_ones():
    from types import SimpleNamespace

    from rich.console import Console

    from gradlab.cli import sweep_table

    new = {"run": "clip=1.0,seed=0", "status": "completed", "steps": 5, "final_train_loss": 0.3452,
           "final_val_accuracy": None, "delta_ratio_at_first_step": 1.31, "delta_ratio_at_last_step": 0.773}
    old = {"run": "[old]", "status": "diverged", "steps": 4, "final_loss": float("nan"), "delta_ratio_first": 1.31,
           "delta_ratio_last": float("nan")}
    console = Console(width=100, record=True)
    console.print(sweep_table(SimpleNamespace(rows=[new, old], dir="runs/clip-1")))
    lines = console.export_text().splitlines()
    cells = lambda line, bar="│": [c.strip() for c in line.split(bar)[1:-1]]  # noqa: E731
    assert "val acc" not in lines[2]  # regression runs: no accuracy column
    assert cells(lines[2], "┃") == ["run", "status", "steps", "final loss", "ratio@0", "ratio@end"]
    assert cells(lines[4]) == ["clip=1.0,seed=0", "completed", "5", "0.3452", "1.3", "0.77"]
    assert cells(lines[5]) == ["[old]", "diverged", "4", "", "1.3", ""]
