"""gradlab.sweep (the API): grids, summary.csv and profile.csv, resume, failing runs, bad input, Dask."""
from __future__ import annotations

import importlib
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from gradlab import sweep as S
from gradlab.config import ConfigError

CSVS = ("metrics.csv", "grad_norms.csv", "layer_stats.csv")
STEPS = 6
BASE = {"name": "tiny", "seed": 0, "data": {"kind": "spirals", "n_samples": 64},
        "model": {"depth": 2, "width": 8, "activation": "tanh"},
        "train": {"steps": STEPS, "batch_size": 16}, "log": {"every": 1}}
GRID = {"model.depth": [2, 3], "model.init": ["he_normal", "xavier_normal", {"scheme": "normal", "std": 0.01}]}
LABELS = [f"depth={d},init={i},seed=0" for d in (2, 3) for i in ("he_normal", "xavier_normal", "normal-std=0.01")]
FIELDS = [  # written out, so that a wrong SUMMARY_FIELDS fails here
    "status", "steps", "final_train_loss", "final_train_accuracy", "final_val_loss", "final_val_accuracy",
    "diverged_at", "wall_time", "grad_norm_at_first_step", "grad_norm_at_last_step",
    "first_layer_grad_norm_at_first_step", "first_layer_grad_norm_at_last_step",
    "first_layer_delta_norm_at_first_step", "first_layer_delta_norm_at_last_step",
    "last_layer_grad_norm_at_first_step", "last_layer_grad_norm_at_last_step",
    "last_layer_delta_norm_at_first_step", "last_layer_delta_norm_at_last_step",
    "grad_ratio_at_first_step", "grad_ratio_at_last_step", "delta_ratio_at_first_step", "delta_ratio_at_last_step",
    "error",
]
# the config values that were not swept, after FIELDS (those empty in every row left out)
NOT_SWEPT = ["model.kind", "model.width", "model.activation", "model.batchnorm", "model.residual",
             "train.optimizer", "train.lr", "train.batch_size", "train.steps", "train.clip", "data.kind"]


def grid_sweep(out: Path, **extra) -> S.Sweep:
    base = {**BASE, "log": {**BASE["log"], "out": str(out)}}
    return S.sweep_from_dict({"name": "grid", "base": base, "grid": GRID, **extra}, "<test>")


def run_folders(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir())


class Recorder:
    """Observer: the labels of the runs executed, in the order they came back."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.labels: list[str] = []
        self.info: dict = {}
        self.stop_after = stop_after

    def on_start(self, info: dict) -> None:
        self.info = info

    def on_run(self, res: dict) -> None:
        self.labels.append(res["label"])
        if self.stop_after is not None and len(self.labels) >= self.stop_after:
            raise KeyboardInterrupt  # what Ctrl-C does in the client while it waits for results


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """The 2 x 3 grid, run once on 2 local worker processes; tests only read it (or copy it)."""
    out = tmp_path_factory.mktemp("grid") / "runs"
    sweep = grid_sweep(out)
    rec = Recorder()
    result = S.run_sweep(sweep, workers=2, observers=[rec])
    return sweep, result, rec


def same_file(a: Path, b: Path) -> bool:
    """The same bytes, but for metrics.csv's ``time`` (seconds since the run started, never twice alike)."""
    if a.name != "metrics.csv":
        return a.read_bytes() == b.read_bytes()
    x, y = (pd.read_csv(p, dtype=str).drop(columns="time", errors="ignore") for p in (a, b))
    return x.equals(y)


def summary(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "summary.csv")


# --------------------------------------------------------------------------- the grid

def test_grid_gives_one_folder_per_combination_and_a_summary_row_each(done):
    sweep, result, rec = done
    assert result.status == "completed" and result.ran == 6 and result.failed == []
    assert [c.label for c in sweep.combos] == LABELS
    assert re.fullmatch(r"grid-\d{8}-\d{6}", result.dir.name)
    assert run_folders(result.dir) == sorted(LABELS)
    assert sorted(rec.labels) == sorted(LABELS)
    assert rec.info["total"] == 6 and rec.info["skipped"] == 0 and rec.info["workers"] == 2
    for label in LABELS:
        files = set(os.listdir(result.dir / label))
        assert {"config.yaml", *CSVS, "params_init.npz", "params_final.npz", "summary.json"} <= files
        assert "error.txt" not in files
    assert {p.name for p in result.dir.iterdir() if p.is_file()} == {"sweep.yaml", "summary.csv", "profile.csv"}

    table = summary(result.dir)
    assert len(table) == 6
    assert list(table.columns) == ["run", "model.depth", "model.init", "seed", *FIELDS, *NOT_SWEPT]
    assert list(S.SUMMARY_FIELDS) == FIELDS
    assert table["model.depth"].tolist() == [2, 2, 2, 3, 3, 3]
    assert table["model.init"].tolist() == ["he_normal", "xavier_normal", "normal(std=0.01)"] * 2
    assert table.seed.tolist() == [0] * 6
    assert table.status.tolist() == ["completed"] * 6
    assert table.steps.tolist() == [STEPS] * 6
    assert table.diverged_at.isna().all()
    assert len(result.rows) == 6 and [r["status"] for r in result.rows] == ["completed"] * 6


def test_each_run_folder_is_an_ordinary_run_of_its_combination(done):
    sweep, result, _ = done
    for combo in sweep.combos:
        config = yaml.safe_load((result.dir / combo.label / "config.yaml").read_text())
        assert config["model"]["depth"] == combo.values["model.depth"]
        init = combo.values["model.init"]
        assert config["model"]["init"]["scheme"] == (init["scheme"] if isinstance(init, dict) else init)
        if isinstance(init, dict):
            assert config["model"]["init"]["std"] == 0.01
        assert config["seed"] == 0 and config["name"] == "grid"
        assert config["train"]["steps"] == STEPS


def test_summary_values_are_those_of_each_runs_own_files(done):
    sweep, result, _ = done
    table = summary(result.dir)
    for combo, (_, row) in zip(sweep.combos, table.iterrows()):
        run = result.dir / combo.label
        metrics = pd.read_csv(run / "metrics.csv")
        stats = pd.read_csv(run / "layer_stats.csv")
        grads = pd.read_csv(run / "grad_norms.csv")
        own = json.loads((run / "summary.json").read_text())
        assert row.grad_norm_at_first_step == pytest.approx(metrics.grad_norm.iloc[0], rel=1e-9)  # 10 digits
        assert row.grad_norm_at_last_step == pytest.approx(metrics.grad_norm.iloc[-1], rel=1e-9)
        assert row.final_train_loss == pytest.approx(own["final_train_loss"], rel=1e-9)
        assert row.final_train_accuracy == pytest.approx(own["final_train_accuracy"], rel=1e-9)
        assert row.final_val_accuracy == pytest.approx(own["final_val_accuracy"], rel=1e-9)
        assert row.final_val_loss == pytest.approx(own["final_val_loss"], rel=1e-9) and row.run == combo.label
        assert row.steps == own["steps"] == STEPS
        assert row.wall_time == own["wall_time"]

        depth = combo.values["model.depth"]
        assert sorted(stats.layer.unique()) == list(range(1, depth + 2))  # hidden layers, then the output
        first_step, last_step = 0, STEPS - 1
        assert (stats.step.min(), stats.step.max()) == (first_step, last_step)

        def delta(layer, step):
            return stats[(stats.layer == layer) & (stats.step == step)].delta_norm.item()

        def grad(layer, step):
            at = grads[(grads.layer == layer) & (grads.step == step)]
            assert len(at) == 2  # W and b
            return float(np.sqrt((at.grad_norm ** 2).sum()))

        for which, layer in (("first", 1), ("last", depth)):
            for when, step in (("first", first_step), ("last", last_step)):
                assert row[f"{which}_layer_delta_norm_at_{when}_step"] == pytest.approx(delta(layer, step), rel=1e-9)
                assert row[f"{which}_layer_grad_norm_at_{when}_step"] == pytest.approx(grad(layer, step), rel=1e-9)
        for when, step in (("first", first_step), ("last", last_step)):
            assert row[f"delta_ratio_at_{when}_step"] == pytest.approx(delta(1, step) / delta(depth, step), rel=1e-9)
            assert row[f"grad_ratio_at_{when}_step"] == pytest.approx(grad(1, step) / grad(depth, step), rel=1e-9)
        config = yaml.safe_load((run / "config.yaml").read_text())  # the values not swept, from the run's config
        assert (row["model.width"], row["train.lr"], row["train.steps"]) == (8, config["train"]["lr"], STEPS)
        assert (row["model.activation"], row["train.optimizer"]) == ("tanh", "sgd")
        assert pd.isna(row["train.clip"]) and (run / "../summary.csv").resolve().read_text().count(",null,") == 6
    # the vanishing-gradient picture the columns are for: tiny normal init shrinks delta from top to bottom
    tiny = table[table["model.init"] == "normal(std=0.01)"]
    assert (tiny.delta_ratio_at_first_step < 0.05).all()


def test_profile_is_long_format_over_swept_values_layers_and_steps(done):
    sweep, result, _ = done
    profile = pd.read_csv(result.dir / "profile.csv")
    assert list(profile.columns) == ["model.depth", "model.init", "seed", "layer", "step", "grad_norm", "delta_norm"]
    assert len(profile) == sum(STEPS * (c.values["model.depth"] + 1) for c in sweep.combos)
    for combo in sweep.combos:
        init = S.value_text(combo.values["model.init"])
        part = profile[(profile["model.depth"] == combo.values["model.depth"]) & (profile["model.init"] == init)
                       & (profile.seed == 0)].sort_values(["step", "layer"])
        stats = pd.read_csv(result.dir / combo.label / "layer_stats.csv").sort_values(["step", "layer"])
        assert part[["step", "layer"]].to_numpy().tolist() == stats[["step", "layer"]].to_numpy().tolist()
        assert part.delta_norm.tolist() == stats.delta_norm.tolist()
        row = summary(result.dir).set_index(["model.depth", "model.init"]).loc[(combo.values["model.depth"], init)]
        first = part[(part.layer == 1) & (part.step == 0)].grad_norm.item()
        assert first == pytest.approx(row.first_layer_grad_norm_at_first_step, rel=1e-9)


def test_resolved_sweep_yaml_loads_again_to_the_same_runs(done):
    sweep, result, _ = done
    text = (result.dir / "sweep.yaml").read_text()
    raw = yaml.safe_load(text)
    assert list(raw) == ["name", "base", "grid", "zip", "seeds"]
    assert raw["grid"]["model.init"][2] == {"scheme": "normal", "std": 0.01}
    for again in (S.load_sweep(result.dir / "sweep.yaml"), S.load_resume(result.dir)):
        assert again.name == "grid"
        assert [c.label for c in again.combos] == LABELS
        assert [c.config.resolved() for c in again.combos] == [c.config.resolved() for c in sweep.combos]


# --------------------------------------------------------------------------- expanding a sweep

def test_zip_varies_lists_together_and_seeds_repeat_every_combination(tmp_path):
    sweep = S.sweep_from_dict({
        "base": {**BASE, "log": {"out": str(tmp_path / "runs")}},
        "grid": {"model.depth": [2, 3]},
        "zip": {"model.activation": ["relu", "tanh"], "train.lr": [0.01, 0.1]},
        "seeds": [0, 1, 2],
    })
    assert len(sweep.combos) == 2 * 2 * 3
    assert sweep.combos[0].label == "depth=2,activation=relu,lr=0.01,seed=0"
    assert sweep.combos[-1].label == "depth=3,activation=tanh,lr=0.1,seed=2"
    seen = {(c.config.model.depth, c.config.model.activation.name, c.config.train.lr, c.config.seed)
            for c in sweep.combos}
    assert seen == {(d, a, lr, s) for d in (2, 3) for a, lr in (("relu", 0.01), ("tanh", 0.1)) for s in (0, 1, 2)}
    for c in sweep.combos:
        assert c.values == {"model.depth": c.config.model.depth, "model.activation": c.config.model.activation.name,
                            "train.lr": c.config.train.lr, "seed": c.config.seed}
        assert c.config.name == "sweep"  # the sweep's name (default: "sweep" for one given as data)
    assert not (tmp_path / "runs").exists()  # expanding runs nothing


def test_without_seeds_the_base_seed_is_used_once(tmp_path):
    sweep = S.sweep_from_dict({"name": "s", "base": {**BASE, "seed": 7}, "grid": {"model.depth": [2, 3]}})
    assert [c.label for c in sweep.combos] == ["depth=2,seed=7", "depth=3,seed=7"]
    assert {c.config.seed for c in sweep.combos} == {7}


def test_labels_of_mapping_and_odd_values_are_file_system_safe():
    safe = re.compile(r"[A-Za-z0-9_.=,+-]+")  # what a shell takes without quotes
    assert S.combo_label({"model.init": {"scheme": "normal", "std": 0.01}, "seed": 0}) == "init=normal-std=0.01,seed=0"
    assert S.combo_label({"model.init": "he_normal", "model.depth": 20, "seed": 1}) == "init=he_normal,depth=20,seed=1"
    assert S.combo_label({"train.clip": {"mode": "norm", "threshold": 1.0}, "seed": 0}) == \
        "clip=norm-threshold=1.0,seed=0"
    assert S.combo_label({"train.clip": None, "seed": 0}) == "clip=null,seed=0"
    # two keys ending in the same name keep their full paths
    assert S.combo_label({"model.depth": 2, "data.depth": 3, "seed": 0}) == "model.depth=2,data.depth=3,seed=0"
    odd = S.combo_label({"data.path": "/data/a b/c:d*?.csv", "model.layers": [{"type": "dense", "units": 8}],
                         "note": 'x"<>|\\y', "seed": 0})
    assert safe.fullmatch(odd) and "/" not in odd and "\\" not in odd and ":" not in odd
    assert len(S.combo_label({"x": "y" * 500})) <= 200
    # every item of a mapping is in its label, also one whose value repeats the head's
    assert S.value_text({"name": "x", "other": "x"}) == "x(other=x)"


def test_mapping_values_make_real_folders(done):
    _, result, _ = done
    folder = result.dir / "depth=2,init=normal-std=0.01,seed=0"
    assert folder.is_dir() and (folder / "metrics.csv").is_file()


# --------------------------------------------------------------------------- resume

def test_resume_reruns_only_what_is_missing_and_gives_identical_files(done, tmp_path):
    sweep, first, _ = done
    folder = tmp_path / first.dir.name
    shutil.copytree(first.dir, folder)
    gone, broken = LABELS[1], LABELS[4]
    shutil.rmtree(folder / gone)
    own = json.loads((folder / broken / "summary.json").read_text())
    (folder / broken / "summary.json").write_text(json.dumps({**own, "status": "interrupted"}))

    rec = Recorder()
    result = S.run_sweep(S.load_resume(folder), workers=2, resume=folder, observers=[rec])
    assert result.dir == folder and result.status == "completed"
    assert result.ran == 2 and sorted(rec.labels) == sorted([gone, broken])
    assert rec.info["skipped"] == 4
    assert run_folders(folder) == sorted(LABELS)
    for label in LABELS:
        for name in (*CSVS, "config.yaml"):
            assert same_file(folder / label / name, first.dir / label / name), (label, name)
        for name in ("params_init.npz", "params_final.npz"):
            with np.load(folder / label / name) as a, np.load(first.dir / label / name) as b:
                assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)
        assert json.loads((folder / label / "summary.json").read_text())["status"] == "completed"
    assert (folder / "profile.csv").read_bytes() == (first.dir / "profile.csv").read_bytes()
    before, after = summary(first.dir), summary(folder)
    assert len(after) == 6 and after.status.tolist() == ["completed"] * 6
    pd.testing.assert_frame_equal(after.drop(columns="wall_time"), before.drop(columns="wall_time"), check_exact=True)
    untouched = [i for i, label in enumerate(LABELS) if label not in (gone, broken)]
    assert after.wall_time[untouched].tolist() == before.wall_time[untouched].tolist()

    # resuming a finished sweep runs nothing and keeps the tables
    again = S.run_sweep(S.load_resume(folder), workers=2, resume=folder)
    assert again.ran == 0 and again.status == "completed" and len(again.rows) == 6
    pd.testing.assert_frame_equal(summary(folder), after, check_exact=True)


def test_ctrl_c_keeps_what_finished_and_resume_completes_it(done, tmp_path):
    _, first, _ = done
    stop = Recorder(stop_after=1)
    result = S.run_sweep(grid_sweep(tmp_path / "runs"), workers=2, observers=[stop])
    # the run that came back, and any the other worker finished meanwhile, are kept
    assert result.status == "interrupted" and 1 <= result.ran == len(result.rows) <= 2
    table = summary(result.dir)
    kept = table.run.tolist()
    assert stop.labels[0] in kept and run_folders(result.dir) == sorted(kept)
    assert table.status.tolist() == ["completed"] * len(kept)

    rec = Recorder()
    resumed = S.run_sweep(S.load_resume(result.dir), workers=2, resume=result.dir, observers=[rec])
    assert resumed.status == "completed" and resumed.ran == 6 - len(kept)
    assert sorted(rec.labels) == sorted(set(LABELS) - set(kept))
    assert run_folders(result.dir) == sorted(LABELS)
    pd.testing.assert_frame_equal(summary(result.dir).drop(columns="wall_time"),
                                  summary(first.dir).drop(columns="wall_time"), check_exact=True)
    assert (result.dir / "profile.csv").read_bytes() == (first.dir / "profile.csv").read_bytes()
    for label in LABELS:
        for name in CSVS:
            assert same_file(result.dir / label / name, first.dir / label / name)


# --------------------------------------------------------------------------- failing and diverging runs

def regression_csv(path: Path, columns=("y",)) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    for col in columns:
        frame[col] = X.sum(axis=1) + 0.1 * rng.normal(size=80)
    frame.to_csv(path, index=False)


FAILING_SWEEP = """\
name: mixed
base:
  data: {kind: csv, path: data.csv, target: y, task: regression}
  model: {depth: 2, width: 8, activation: relu, init: he_normal}
  loss: mse
  train: {lr: 0.01, steps: 40, batch_size: 16}
  log: {out: OUT}
grid:
  data.target: [y, nope]       # 'nope' passes validation; loading the data fails in the worker
  train.lr: [0.01, 1.0e+6]     # 1e6 overflows float64 within some 25 steps
"""


def test_failing_and_diverging_runs_are_recorded_and_the_rest_finish(tmp_path):
    regression_csv(tmp_path / "data.csv")
    spec = tmp_path / "mixed.yaml"
    spec.write_text(FAILING_SWEEP.replace("OUT", str(tmp_path / "runs")))
    sweep = S.load_sweep(spec)
    assert [c.label for c in sweep.combos] == ["target=y,lr=0.01,seed=0", "target=y,lr=1000000.0,seed=0",
                                               "target=nope,lr=0.01,seed=0", "target=nope,lr=1000000.0,seed=0"]
    result = S.run_sweep(sweep, workers=2)
    assert result.status == "completed" and result.ran == 4
    table = summary(result.dir)
    assert table.status.tolist() == ["completed", "diverged", "failed", "failed"]
    assert len(result.failed) == 3
    ok, boom = table.iloc[0], table.iloc[1]
    assert ok.steps == 40 and np.isfinite(ok.final_train_loss) and np.isnan(ok.diverged_at)
    assert 0 < boom.diverged_at < 40 and boom.steps == boom.diverged_at and np.isnan(boom.final_train_loss)
    assert not np.isfinite(pd.read_csv(result.dir / sweep.combos[1].label / "metrics.csv").loss.iloc[-1])
    for label in (sweep.combos[2].label, sweep.combos[3].label):
        error = (result.dir / label / "error.txt").read_text()
        assert "column 'nope' not found" in error and "Traceback" in error
        said = json.loads((result.dir / label / "summary.json").read_text())  # written for it: it never got there
        assert said["status"] == "failed" and "column 'nope' not found" in said["error"]["message"]
    failed = table[table.status == "failed"]
    assert all("column 'nope' not found" in e for e in failed.error)
    assert failed.steps.isna().all() and failed.grad_norm_at_first_step.isna().all()
    assert set(pd.read_csv(result.dir / "profile.csv")["data.target"]) == {"y"}

    # fix the data and resume: what did not complete reruns; the now completed run keeps no error.txt
    regression_csv(tmp_path / "data.csv", columns=("y", "nope"))
    class EndOnly:  # an observer needs only the hooks it uses
        def on_end(self, result):
            self.result = result

    end = EndOnly()
    resumed = S.run_sweep(S.load_resume(result.dir), workers=2, resume=result.dir, observers=[end])
    assert resumed.ran == 3 and end.result is resumed
    assert summary(result.dir).status.tolist() == ["completed", "diverged", "completed", "diverged"]
    assert not (result.dir / sweep.combos[2].label / "error.txt").exists()
    for name in CSVS:  # the run that completed the first time was not touched
        assert (result.dir / sweep.combos[0].label / name).is_file()


def test_run_combo_records_an_exception_in_train(monkeypatch, tmp_path):
    train_module = importlib.import_module("gradlab.train")  # gradlab.train is also the function

    def broken(config, observers, source, write, run_dir):
        run_dir.mkdir(parents=True)
        (run_dir / "summary.json").write_text(json.dumps({"status": "running", "steps": 0}))
        raise RuntimeError("boom in the middle of training")

    monkeypatch.setattr(train_module, "train", broken)
    combo = grid_sweep(tmp_path / "runs").combos[0]
    res = S.run_combo(combo.config.resolved(), combo.label)
    assert res["status"] == "failed" and res["label"] == combo.label
    assert set(res["files"]) == {"summary.json", "error.txt"}
    text = res["files"]["error.txt"].decode()
    assert "RuntimeError: boom in the middle of training" in text and "Traceback" in text
    row = S.summary_row(combo.values, res["files"], res["status"], res["wall_time"])
    assert row["status"] == "failed" and row["grad_norm_at_first_step"] is None and row["model.depth"] == 2
    # read back from disk (as resume does), it is still a failure, not "running"
    S._write_run(tmp_path / combo.label, res["files"])
    assert S._status_on_disk(S._files_on_disk(tmp_path / combo.label)) == "failed"
    assert not S._completed(tmp_path / combo.label)


# --------------------------------------------------------------------------- bad input

def bad(tmp_path: Path, **raw):
    base = {**BASE, "log": {"out": str(tmp_path / "runs")}}
    return {"name": "bad", "base": base, **raw}


@pytest.mark.parametrize("raw, fragments", [
    ({"grid": {"model.dpeth": [2, 3]}}, ["combination dpeth=2,seed=0", "unknown key 'model.dpeth'",
                                         "Did you mean 'depth'?"]),
    ({"grid": {"trian.lr": [0.1]}}, ["unknown key 'trian'", "Did you mean 'train'?"]),
    ({"grid": {"model.depth": []}}, ["'grid.model.depth' must be a non-empty list"]),
    ({"grid": {"model.depth": 3}}, ["'grid.model.depth' must be a non-empty list"]),
    ({"zip": {"train.lr": []}}, ["'zip.train.lr' must be a non-empty list"]),
    ({"grid": {"model.depth": [2, 0]}}, ["combination depth=0,seed=0", "'model.depth'"]),
    ({"grid": {"model.init": ["he_normal", "kaiming_wrong"]}}, ["combination init=kaiming_wrong,seed=0",
                                                                "'model.init.scheme'"]),
    ({"gird": {"model.depth": [2]}}, ["unknown key 'gird'", "Did you mean 'grid'?"]),
    ({"zip": {"model.depth": [2, 3], "train.lr": [0.1]}}, ["'zip' lists must have the same length",
                                                           "model.depth: 2, train.lr: 1"]),
    ({"grid": {"model.depth": [2]}, "zip": {"model.depth": [3]}}, ["model.depth is both in 'grid' and in 'zip'"]),
    ({"seeds": []}, ["'seeds' must be a non-empty list"]),
    ({"seeds": [0, -1]}, ["'seeds' must be a non-empty list of whole numbers >= 0"]),
    ({"name": "a/b"}, ["'name' must be letters"]),
    ({"base": 3}, ["'base' must be a path to a train config or an inline config mapping"]),
    ({"base": "nowhere.yaml"}, ["'base': config file not found: nowhere.yaml"]),
])
def test_bad_input_is_reported_before_anything_runs(tmp_path, raw, fragments):
    with pytest.raises(ConfigError) as info:
        S.sweep_from_dict(bad(tmp_path, **raw), "bad.yaml", tmp_path)
    message = str(info.value)
    assert message.startswith("bad.yaml")
    for fragment in fragments:
        assert fragment in message, message
    assert not (tmp_path / "runs").exists()


def test_bad_sweep_files(tmp_path):
    with pytest.raises(ConfigError, match="sweep file not found"):
        S.load_sweep(tmp_path / "missing.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="a sweep must be a YAML mapping"):
        S.load_sweep(tmp_path / "list.yaml")
    (tmp_path / "dup.yaml").write_text("grid: {model.depth: [2]}\ngrid: {model.depth: [3]}\n")
    with pytest.raises(ConfigError, match="duplicate key 'grid'"):
        S.load_sweep(tmp_path / "dup.yaml")
    with pytest.raises(ConfigError, match=r"--set 'model\.dpeth=3'|unknown key 'model\.dpeth'"):
        S.sweep_from_dict(bad(tmp_path, grid={"model.depth": [2]}), "bad.yaml", tmp_path, ["model.dpeth=3"])


def test_base_path_is_relative_to_the_sweep_file_and_set_overrides_it(tmp_path):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "base.yaml").write_text(yaml.safe_dump(BASE))
    (tmp_path / "configs" / "s.yaml").write_text("base: base.yaml\ngrid: {model.depth: [2, 3]}\n")
    sweep = S.load_sweep(tmp_path / "configs" / "s.yaml", ["train.steps=3", "model.width=4"])
    assert sweep.name == "s"
    assert [(c.config.train.steps, c.config.model.width) for c in sweep.combos] == [(3, 4), (3, 4)]
    assert sweep.resolved()["base"]["train"]["steps"] == 3  # sweep.yaml keeps the overridden base


def test_resume_folder_that_is_not_a_sweep(tmp_path):
    (tmp_path / "some_run").mkdir()
    (tmp_path / "some_run" / "config.yaml").write_text(yaml.safe_dump(BASE))
    for folder in (tmp_path / "some_run", tmp_path / "nothing_here"):
        with pytest.raises(ConfigError, match="not a sweep folder"):
            S.load_resume(folder)
    assert os.listdir(tmp_path / "some_run") == ["config.yaml"]


# --------------------------------------------------------------------------- processes

def test_workers_run_with_one_blas_thread_and_the_client_keeps_its_own(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "8")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(S, "run_combo", os.getenv)  # jobs (name, default) -> the worker's environment
    executor = S.LocalExecutor(2)
    try:
        seen = list(executor.run([(name, "unset") for name in S.BLAS_THREADS]))
    finally:
        executor.close()
    assert seen == ["1"] * len(S.BLAS_THREADS)
    assert os.environ["OPENBLAS_NUM_THREADS"] == "8" and "MKL_NUM_THREADS" not in os.environ


# --------------------------------------------------------------------------- Dask

def test_dask_cluster_gives_the_same_summary_as_local_processes(done, tmp_path):
    distributed = pytest.importorskip("distributed")
    _, local, _ = done
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  host="127.0.0.1") as cluster:
        result = S.run_sweep(grid_sweep(tmp_path / "runs"), scheduler=cluster.scheduler_address)
    assert result.status == "completed" and result.ran == 6
    assert run_folders(result.dir) == sorted(LABELS)
    remote, here = summary(result.dir), summary(local.dir)
    assert list(remote.columns) == list(here.columns)
    assert remote.wall_time.notna().all()
    pd.testing.assert_frame_equal(remote.drop(columns="wall_time"), here.drop(columns="wall_time"), check_exact=True)
    assert (result.dir / "profile.csv").read_bytes() == (local.dir / "profile.csv").read_bytes()
    for label in LABELS:
        for name in CSVS:
            assert same_file(result.dir / label / name, local.dir / label / name)
