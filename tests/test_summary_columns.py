"""summary.csv's columns (run first, the swept keys, one name per quantity, the config values not swept,
10 significant digits), sweep run folders a shell takes without quotes (and old folders still resumed),
and a train config given to ``gradlab sweep``."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from gradlab import sweep as S
from gradlab.cli import app
from gradlab.config import ConfigError
from gradlab.report.load import load_sweep_dir
from cli_helpers import assert_bad_input

STEPS = 4
BASE = {"name": "cols", "seed": 0, "data": {"kind": "spirals", "n_samples": 64},
        "model": {"depth": 2, "width": 8, "activation": "tanh"},
        "train": {"steps": STEPS, "batch_size": 16, "lr": 0.05}, "log": {"every": 1}}
GRID = {"model.depth": [2, 3], "model.init": [{"scheme": "normal", "std": 0.01}, "he_normal"]}
LABELS = ["depth=2,init=normal-std=0.01,seed=0", "depth=2,init=he_normal,seed=0",
          "depth=3,init=normal-std=0.01,seed=0", "depth=3,init=he_normal,seed=0"]
SHELL_SAFE = re.compile(r"[A-Za-z0-9_.,=+-]+")


def make(out: Path) -> S.Sweep:
    return S.sweep_from_dict({"name": "cols", "base": {**BASE, "log": {"every": 1, "out": str(out)}}, "grid": GRID},
                             "<test>")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """The 2 x 2 grid run once, in this process (workers=0: no process start-up)."""
    out = tmp_path_factory.mktemp("cols") / "runs"
    return S.run_sweep(make(out), workers=0)


def test_run_first_then_swept_keys_then_figures_then_the_config_values_not_swept(swept):
    table = pd.read_csv(swept.dir / "summary.csv")
    assert list(table.columns) == [
        "run", "model.depth", "model.init", "seed",
        "status", "steps", "final_train_loss", "final_train_accuracy", "final_val_loss", "final_val_accuracy",
        "diverged_at", "wall_time", "grad_norm_at_first_step", "grad_norm_at_last_step",
        "first_layer_grad_norm_at_first_step", "first_layer_grad_norm_at_last_step",
        "first_layer_delta_norm_at_first_step", "first_layer_delta_norm_at_last_step",
        "last_layer_grad_norm_at_first_step", "last_layer_grad_norm_at_last_step",
        "last_layer_delta_norm_at_first_step", "last_layer_delta_norm_at_last_step",
        "grad_ratio_at_first_step", "grad_ratio_at_last_step", "delta_ratio_at_first_step", "delta_ratio_at_last_step",
        "error",
        # not swept (model.hidden, model.cell, model.num_layers: empty for an MLP, left out)
        "model.kind", "model.width", "model.activation", "model.batchnorm", "model.residual", "train.optimizer",
        "train.lr", "train.batch_size", "train.steps", "train.clip", "data.kind"]
    assert table.run.tolist() == LABELS
    assert table["model.init"].tolist() == ["normal(std=0.01)", "he_normal"] * 2
    assert table["model.width"].tolist() == [8] * 4 and table["train.lr"].tolist() == [0.05] * 4
    assert table["train.steps"].tolist() == [STEPS] * 4 and table["model.activation"].tolist() == ["tanh"] * 4
    for label, row in table.set_index("run").iterrows():
        own = json.loads((swept.dir / label / "summary.json").read_text())
        assert row.final_train_loss == pytest.approx(own["final_train_loss"], rel=1e-9)
        assert row.final_train_accuracy == pytest.approx(own["final_train_accuracy"], rel=1e-9)
        assert 0 < row.final_train_accuracy <= 1
        assert row.delta_ratio_at_first_step == pytest.approx(
            row.first_layer_delta_norm_at_first_step / row.last_layer_delta_norm_at_first_step, rel=1e-8)
    # the tiny init shrinks the gradient on its way down; He's does not
    ratio = table.set_index("run").delta_ratio_at_first_step
    assert ratio[LABELS[2]] < 0.1 < ratio[LABELS[3]]


def test_floats_are_written_with_10_significant_digits(swept):
    text = (swept.dir / "summary.csv").read_text() + (swept.dir / "profile.csv").read_text()
    mantissas = re.findall(r"(?<![\w.])(\d+\.\d+)(?:e[-+]\d+)?", text)
    assert mantissas and max(len(m.replace(".", "").lstrip("0")) for m in mantissas) <= 10
    assert any(len(m.replace(".", "").lstrip("0")) == 10 for m in mantissas)  # not fewer either


def test_train_accuracy_from_metrics_when_summary_json_lacks_it():
    """An older run's summary.json has no final_train_accuracy: metrics.csv's last train_accuracy stands in."""
    files = {"summary.json": json.dumps({"status": "completed", "steps": 3, "final_train_loss": 0.5}).encode(),
             "metrics.csv": b"step,loss,grad_norm,train_accuracy\n0,0.7,1.0,0.25\n1,0.6,0.9,0.5\n2,0.5,0.8,\n"}
    row = S.summary_row({"model.depth": 2, "seed": 0}, files, "completed", 1.0)
    assert list(row)[:3] == ["run", "model.depth", "seed"] and row["run"] == "depth=2,seed=0"
    assert row["final_train_accuracy"] == 0.5 and row["final_train_loss"] == 0.5
    assert row["grad_norm_at_first_step"] == 1.0 and row["grad_norm_at_last_step"] == 0.8
    without = S.summary_row({"seed": 0}, {**files, "metrics.csv": b"step,loss,grad_norm\n0,0.7,1.0\n"}, "completed", 1.0)
    assert without["final_train_accuracy"] is None  # a regression run, or a run from before the column


OLD_HEADER = ("model.depth,seed,status,steps,final_loss,final_val_loss,final_val_accuracy,grad_norm_first,"
              "grad_norm_last,diverged_at,wall_time,run,error,first_hidden_grad_norm_first,"
              "first_hidden_delta_norm_first,first_hidden_grad_norm_last,first_hidden_delta_norm_last,"
              "last_hidden_grad_norm_first,last_hidden_delta_norm_first,last_hidden_grad_norm_last,"
              "last_hidden_delta_norm_last,grad_ratio_first,grad_ratio_last,delta_ratio_first,delta_ratio_last\n")


def test_a_sweep_folder_written_with_the_old_names_reads_with_the_new_ones(tmp_path):
    (tmp_path / "sweep.yaml").write_text("name: s\nbase: {}\ngrid:\n  model.depth: [2]\nseeds: [0]\n")
    (tmp_path / "summary.csv").write_text(
        OLD_HEADER + "2,0,completed,5,0.69,0.7,0.5,1.5,0.9,,0.1,\"depth=2,seed=0\",,0.01,0.002,0.02,0.003,"
        "0.5,0.2,0.4,0.3,0.02,0.05,0.01,0.01\n")
    sweep = load_sweep_dir(tmp_path)
    row = sweep.summary.iloc[0]
    assert row.final_train_loss == 0.69 and row.grad_norm_at_first_step == 1.5 and row.grad_norm_at_last_step == 0.9
    assert row.first_layer_grad_norm_at_first_step == 0.01 and row.last_layer_delta_norm_at_last_step == 0.3
    assert row.delta_ratio_at_first_step == 0.01 and row.grad_ratio_at_last_step == 0.05
    assert not {"final_loss", "grad_norm_first", "delta_ratio_first"} & set(sweep.summary.columns)
    assert set(S.OLD_SUMMARY_NAMES.values()) <= set(S.SUMMARY_FIELDS)
    assert sweep.keys == ["model.depth"]


# --------------------------------------------------------------------------- folder names

def test_folder_names_need_no_quotes_in_a_shell_and_stay_unique(swept):
    assert sorted(p.name for p in swept.dir.iterdir() if p.is_dir()) == sorted(LABELS)
    odd = {"model.init": {"scheme": "normal", "std": 0.01, "mode": "fan_in"}, "model.layers": [8, {"units": 4}],
           "data.path": "/data/a b/c:d*?(1).csv", "note": "[x]{y}'\"$`;&|<>!~#%^", "train.clip": None, "seed": 0}
    label = S.combo_label(odd)
    assert SHELL_SAFE.fullmatch(label), label
    assert label.startswith("init=normal-std=0.01+mode=fan_in,layers=8+units=4,") and label.endswith("clip=null,seed=0")
    assert S.combo_label({"train.clip": {"mode": "norm", "threshold": 1.0}}) == "clip=norm-threshold=1.0"
    with pytest.raises(ConfigError, match="would share the folder name 'out=runs_a,seed=0'"):
        S.sweep_from_dict({"base": BASE, "grid": {"log.out": ["runs a", "runs_a"]}})  # the same once made safe


def test_resume_of_a_sweep_folder_with_the_old_names_reuses_its_runs(swept, tmp_path):
    """Folders named as sweeps named them before (``init=normal(std=0.01),seed=0``): resume reruns none of
    them, writes no second folder beside them, and summary.csv names them as they are; a missing run is
    made under the new name."""
    folder = tmp_path / swept.dir.name
    shutil.copytree(swept.dir, folder)
    sweep = make(tmp_path / "runs")
    old = {c.label: S.old_combo_label(c.values) for c in sweep.combos}
    assert old[LABELS[0]] == "depth=2,init=normal(std=0.01),seed=0"
    for label in LABELS[:3]:
        (folder / label).rename(folder / old[label])
    shutil.rmtree(folder / LABELS[3])
    before = {old[l]: (folder / old[l] / "metrics.csv").read_bytes() for l in LABELS[:3]}

    resumed = S.load_resume(folder)
    assert [c.label for c in resumed.combos] == [old[l] for l in LABELS[:3]] + [LABELS[3]]
    result = S.run_sweep(resumed, workers=0, resume=folder)
    assert result.status == "completed" and result.ran == 1
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted([*before, LABELS[3]])
    assert all((folder / name / "metrics.csv").read_bytes() == data for name, data in before.items())
    table = pd.read_csv(folder / "summary.csv")
    assert table.run.tolist() == [old[l] for l in LABELS[:3]] + [LABELS[3]]
    assert table.status.tolist() == ["completed"] * 4
    assert table["model.depth"].tolist() == [2, 2, 3, 3]


# --------------------------------------------------------------------------- a train config to sweep

def test_a_train_config_given_to_sweep_names_the_train_command(tmp_path):
    path = tmp_path / "deep [1].yaml"
    path.write_text("model: {depth: 3}\ntrain: {steps: 5}\ndata: {kind: spirals}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["sweep", str(path)])
    message = assert_bad_input(result, str(path), "a train config (it has model, data, train), not a sweep file",
                               f"gradlab train {path}", "base: deep [1].yaml")
    assert "grid" in message
    assert not (tmp_path / "runs").exists()
    # a sweep file that merely misspells a key is still told so
    with pytest.raises(ConfigError, match="unknown key 'gird'"):
        S.sweep_from_dict({"base": BASE, "gird": {"model.depth": [2]}})
