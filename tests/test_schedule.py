"""train.schedule and train.early_stop: the schedules against their formulas, the rate a real run logs in
``lr`` and the one its optimizer used, their config messages, and where early stopping stops."""
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from cli_helpers import assert_bad_input
from typer.testing import CliRunner

import gradlab
from gradlab.cli import app
from gradlab.schedule import cosine, rate, step_decay, warmup
from gradlab.sweep import run_sweep, sweep_from_dict


def raw_config(tmp_path, **train) -> dict:
    return {
        "name": "s", "seed": 1,
        "data": {"kind": "spirals", "n_samples": 120, "val_fraction": 0.25},
        "model": {"depth": 2, "width": 8, "activation": "tanh", "init": "xavier_normal"},
        "loss": "cross_entropy",
        "train": {"optimizer": "sgd", "lr": 0.2, "batch_size": 16, "steps": 12, **train},
        "log": {"every": 1, "val_every": 1, "out": str(tmp_path)},
    }


def config(tmp_path, *sets: str, **train):
    return gradlab.config_from_dict(raw_config(tmp_path, **train), list(sets))


def metrics(result) -> pd.DataFrame:
    return pd.read_csv(Path(result.run_dir) / "metrics.csv")


# --------------------------------------------------------------------------- the formulas

def test_step_decay_multiplies_by_gamma_every_n_steps():
    assert [step_decay(0.8, t, 10, every=3, gamma=0.5) for t in range(8)] == \
        [0.8, 0.8, 0.8, 0.4, 0.4, 0.4, 0.2, 0.2]


def test_cosine_falls_from_lr_to_the_floor_along_half_a_cosine():
    T, lr = 100, 0.3
    assert cosine(lr, 0, T, 0.0) == lr
    assert cosine(lr, 50, T, 0.0) == pytest.approx(lr / 2, rel=1e-15)
    assert cosine(lr, 25, T, 0.1) == pytest.approx(lr * (0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2), rel=1e-15)
    rates = [cosine(lr, t, T, 0.1) for t in range(T)]
    assert all(a > b for a, b in itertools.pairwise(rates)) and rates[-1] > 0.1 * lr
    assert cosine(lr, T, T, 0.1) == pytest.approx(0.1 * lr, rel=1e-15)  # the floor: one step past the last


def test_warmup_climbs_linearly_then_hands_over_to_the_schedule():
    assert [warmup(1.0, t, 4) for t in range(4)] == [0.25, 0.5, 0.75, 1.0]

    class Cosine:
        name, warmup, floor = "cosine", 4, 0.0

    rates = [rate(Cosine, 1.0, t, 14) for t in range(14)]
    assert rates[:4] == [0.25, 0.5, 0.75, 1.0]
    assert rates[4:] == [cosine(1.0, t, 10, 0.0) for t in range(10)]  # counted from the warm-up's end


# --------------------------------------------------------------------------- real runs

@pytest.mark.parametrize("schedule, expected", [
    ("constant", lambda t: 0.2),
    ("{name: step, every: 5, gamma: 0.5}", lambda t: 0.2 * 0.5 ** (t // 5)),
    ("{name: cosine, floor: 0.25}", lambda t: 0.2 * (0.25 + 0.75 * (1 + math.cos(math.pi * t / 12)) / 2)),
    ("{name: step, every: 4, gamma: 0.1, warmup: 3}",
     lambda t: 0.2 * (t + 1) / 3 if t < 3 else 0.2 * 0.1 ** ((t - 3) // 4)),
])
def test_the_lr_column_logs_the_rate_the_optimizer_used(tmp_path, schedule, expected):
    result = gradlab.train(config(tmp_path, f"train.schedule={schedule}"))
    m = metrics(result)
    want = np.array([expected(t) for t in range(12)])
    np.testing.assert_allclose(m.lr, want, rtol=1e-9)
    # plain SGD moves the parameters by lr * g: the update logged beside it says the optimizer used that rate
    np.testing.assert_allclose(m.update_norm, want * m.grad_norm_clipped, rtol=1e-8)


def test_the_default_schedule_trains_bit_for_bit_as_before(tmp_path):
    """No schedule, and schedule: constant, run the very same updates as a fixed train.lr."""
    plain, constant = (gradlab.train(config(tmp_path, *sets)) for sets in ([], ["train.schedule=constant"]))
    finals = [np.load(Path(r.run_dir) / "params_final.npz") for r in (plain, constant)]
    for k in finals[0].files:
        np.testing.assert_array_equal(finals[0][k], finals[1][k])
    assert (metrics(plain).lr == 0.2).all()


def test_the_run_folder_records_the_schedule(tmp_path):
    result = gradlab.train(config(tmp_path, "train.schedule={name: cosine, warmup: 2}"))
    again = gradlab.load_config(Path(result.run_dir) / "config.yaml")
    assert again.train.schedule.name == "cosine" and again.train.schedule.warmup == 2
    assert again.train.schedule.floor == 0.0  # the default, written out


def test_adam_follows_the_schedule_too(tmp_path):
    """Adam's first step moves each entry by about lr (m_hat / sqrt(v_hat) = sign(g)): a warm-up's lr / 4."""
    result = gradlab.train(config(tmp_path, "train.schedule={name: constant, warmup: 4}", optimizer="adam",
                                  lr=0.01, steps=5))
    n_params = sum(v.size for v in np.load(Path(result.run_dir) / "params_init.npz").values())
    first = metrics(result).update_norm[0]
    assert first == pytest.approx(0.0025 * math.sqrt(n_params), rel=1e-3)


# --------------------------------------------------------------------------- early stopping

def expected_stop(val_losses: list[float], patience: int, min_delta: float) -> tuple[int | None, int | None]:
    """(index of the evaluation that stops the run, index of the best one), by the rule as documented."""
    best, best_at, waited = math.inf, None, 0
    for i, v in enumerate(val_losses):
        if v < best - min_delta:
            best, best_at, waited = v, i, 0
        else:
            waited += 1
        if waited >= patience:
            return i, best_at
    return None, best_at


def test_a_run_that_stops_improving_stops_after_patience_evaluations(tmp_path):
    """A rate of 1e-9 leaves the validation loss where it was: no evaluation after the first improves it by
    min_delta, so the run stops at the patience-th evaluation after it (every 2 steps: step 6)."""
    cfg = config(tmp_path, "train.early_stop={patience: 3, min_delta: 0.001}", "log.val_every=2",
                 lr=1e-9, steps=40)
    result = gradlab.train(cfg)
    assert result.status == "completed" and result.stopped_early_at == 6 and result.steps == 7
    summary = json.loads((Path(result.run_dir) / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 7
    assert summary["stopped_early_at"] == 6 and summary["best_val_step"] == 0
    assert metrics(result).step.iloc[-1] == 6


def test_patience_that_runs_out_at_the_last_step_is_no_early_stop(tmp_path):
    """The same run as above, 7 steps long: its patience runs out at step 6, where the run ends anyway."""
    cfg = config(tmp_path, "train.early_stop={patience: 3, min_delta: 0.001}", "log.val_every=2",
                 lr=1e-9, steps=7)
    result = gradlab.train(cfg)
    assert result.steps == 7 and result.stopped_early_at is None
    assert json.loads((Path(result.run_dir) / "summary.json").read_text())["stopped_early_at"] is None


def test_early_stop_stops_where_the_logged_validation_losses_say(tmp_path):
    """A run that learns, then overfits a tiny training set at a large rate: the stop recomputed from the
    logged validation losses by the documented rule is where it stopped."""
    cfg = config(tmp_path, "train.early_stop={patience: 2, min_delta: 0.0}", "log.val_every=3",
                 "data.n_samples=40", "model.width=32", lr=1.0, steps=300, batch_size="full")
    result = gradlab.train(cfg)
    m = metrics(result)
    evaluated = m[m.val_loss.notna()]
    stop, best = expected_stop(evaluated.val_loss.tolist(), 2, 0.0)
    assert stop is not None and 0 < best < stop  # it improved for a while, then stopped
    assert result.stopped_early_at == evaluated.step.iloc[stop] < 299
    assert result.best_val_step == evaluated.step.iloc[best]
    assert result.steps == result.stopped_early_at + 1 and m.step.iloc[-1] == result.stopped_early_at


def test_without_early_stop_the_summary_says_no_stop(tmp_path):
    result = gradlab.train(config(tmp_path, steps=3))
    summary = json.loads((Path(result.run_dir) / "summary.json").read_text())
    assert summary["stopped_early_at"] is None and result.steps == 3


def test_the_closing_line_says_the_run_stopped_early(tmp_path):
    path = tmp_path / "c.yaml"
    raw = raw_config(tmp_path / "runs", lr=1e-9, steps=40, early_stop={"patience": 2, "min_delta": 0.01})
    path.write_text(json.dumps(raw))
    out = CliRunner().invoke(app, ["train", str(path), "--quiet"])
    assert out.exit_code == 0, out.output
    assert "completed: 3 steps" in out.stdout
    assert "stopped early at step 2: no better validation loss since step 0" in out.stdout


# --------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("setting, fragments", [
    ("train.schedule=linear", ["'train.schedule.name'", "'constant', 'step' or 'cosine'"]),
    ("train.schedule={name: step}", ["'train.schedule.every'", "schedule step needs a value", ">= 1"]),
    ("train.schedule={name: cosine, gamma: 0.5}", ["'train.schedule.gamma'", "does not apply to schedule cosine",
                                                   "it takes warmup, floor"]),
    ("train.schedule={name: constant, every: 5}", ["'train.schedule.every'", "does not apply to schedule constant"]),
    ("train.schedule={name: cosine, floor: 1}", ["'train.schedule.floor'", "less than 1"]),
    ("train.schedule={name: step, every: 2, gamma: 0}", ["'train.schedule.gamma'", "greater than 0"]),
    ("train.schedule.warmup=-1", ["'train.schedule.warmup'", "greater than or equal to 0"]),
    ("train.schedule.warmup=12", ["error: --set train.schedule.warmup=12: 'train.schedule.warmup' is 12, but the "
                                  "run has 12 steps", "allowed: 0 to 11"]),
    ("train.early_stop={patience: 0}", ["'train.early_stop.patience'", "greater than or equal to 1"]),
    ("train.early_stop={min_delta: 0.1}", ["'train.early_stop.patience'"]),
    ("train.early_stop={patience: 2, min_delta: -1}", ["'train.early_stop.min_delta'", "greater than or equal to 0"]),
])
def test_bad_schedules_and_early_stops_exit_2_naming_the_key(tmp_path, setting, fragments):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(raw_config(tmp_path / "runs")))
    out = CliRunner().invoke(app, ["train", str(path), "--set", setting])
    assert_bad_input(out, *fragments)
    assert not (tmp_path / "runs").exists()


def test_early_stop_without_a_validation_set_exits_2(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(json.dumps(raw_config(tmp_path / "runs", early_stop={"patience": 2})))
    out = CliRunner().invoke(app, ["train", str(path), "--set", "data.val_fraction=0"])
    assert_bad_input(out, "error: --set data.val_fraction=0: 'train.early_stop' watches the validation loss",
                     "validation set is empty", "train.early_stop: null")


def test_a_sweep_whose_warmup_outlasts_a_combination_is_refused_before_anything_runs(tmp_path):
    base = raw_config(tmp_path, steps=6)
    base["log"]["out"] = str(tmp_path / "sweeps")
    (tmp_path / "base.yaml").write_text(json.dumps(base))
    (tmp_path / "s.yaml").write_text("base: base.yaml\ngrid: {train.steps: [3, 8]}\n")
    out = CliRunner().invoke(app, ["sweep", str(tmp_path / "s.yaml"), "--set", "train.schedule.warmup=5"])
    assert_bad_input(out, "error: --set train.schedule.warmup=5: 'train.schedule.warmup' is 5, but the run has 3 "
                          "steps", "allowed: 0 to 2")
    assert not (tmp_path / "sweeps").exists()


def test_a_sweep_run_that_fails_before_its_first_step_says_why_in_summary_csv(tmp_path):
    """8 samples at val_fraction 0.05 leave no validation sample: known only once the data is made."""
    base = raw_config(tmp_path, steps=4, early_stop={"patience": 2})
    base["log"]["out"] = str(tmp_path / "sweeps")
    base["data"] = {**base["data"], "n_samples": 8, "val_fraction": 0.05}
    (tmp_path / "base.yaml").write_text(json.dumps(base))
    (tmp_path / "s.yaml").write_text("base: base.yaml\ngrid: {model.width: [3]}\n")
    out = CliRunner().invoke(app, ["sweep", str(tmp_path / "s.yaml"), "-q", "--workers", "1"])
    assert out.exit_code == 0, out.output
    (folder,) = (tmp_path / "sweeps").iterdir()
    row = pd.read_csv(folder / "summary.csv").iloc[0]
    assert row.status == "failed"
    assert row.error.startswith("ConfigError: ") and "validation set is empty" in row.error


# --------------------------------------------------------------------------- sweeps

def test_a_sweep_grid_takes_schedules(tmp_path):
    base = raw_config(tmp_path, steps=6)
    base["log"]["out"] = str(tmp_path / "sweeps")
    sweep = sweep_from_dict({"name": "sched", "base": base,
                             "grid": {"train.schedule": ["constant", {"name": "cosine", "warmup": 2}]}})
    assert [c.config.train.schedule.name for c in sweep.combos] == ["constant", "cosine"]
    result = run_sweep(sweep, workers=0)
    assert result.status == "completed"
    lrs = {}
    for combo in sweep.combos:
        lrs[combo.config.train.schedule.name] = pd.read_csv(result.dir / combo.label / "metrics.csv").lr.tolist()
    assert lrs["constant"] == [0.2] * 6
    assert lrs["cosine"][:2] == [0.1, 0.2] and lrs["cosine"][-1] == pytest.approx(0.2 * (1 + math.cos(math.pi * 3 / 4)) / 2)


def test_report_try_takes_schedule_and_early_stop_options(tmp_path):
    """A remedy's --set options on a run's recorded config (what `gradlab report RUN --try` trains)."""
    from gradlab.report.trial import trial_config

    result = gradlab.train(config(tmp_path, steps=3))
    raw = yaml.safe_load((Path(result.run_dir) / "config.yaml").read_text())
    tried = trial_config(raw, ["train.schedule={name: cosine, warmup: 10}", "train.early_stop.patience=4"], 50,
                         "config.yaml")
    assert tried.train.schedule.name == "cosine" and tried.train.schedule.warmup == 10
    assert tried.train.early_stop.patience == 4 and tried.train.early_stop.min_delta == 0.0
    assert tried.train.steps == 50


def test_the_diagnosis_of_an_early_stopped_run_does_not_ask_for_more_steps(tmp_path):
    """The run stopped because its validation loss had stopped falling: more steps is no remedy for that."""
    import gradlab

    text = ("name: es\ndata: {kind: spirals, n_samples: 128}\nmodel: {depth: 2, width: 8, activation: tanh}\n"
            "train: {steps: 40, lr: 1.0e-6, early_stop: {patience: 2, min_delta: 0.01}}\n"
            "log: {every: 1, val_every: 1, out: %s}\n" % (tmp_path / "runs"))
    (tmp_path / "es.yaml").write_text(text, encoding="utf-8")
    stopped = gradlab.train(gradlab.load_config(tmp_path / "es.yaml"))
    assert stopped.status == "completed" and stopped.steps == 3  # patience 2 after the evaluation at step 0
    finding = gradlab.report(stopped.run_dir, write=False).findings[0]
    assert finding["kind"] == "not_learning"
    assert not any("train.steps" in r for r in finding["remedies"]), finding["remedies"]
    assert any("train.lr" in r for r in finding["remedies"])
