"""``gradlab report RUN --try``: each remedy run as a trial of the same config, the table, resume, bad input."""
from __future__ import annotations

import json
import math
import re
import shutil

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

import gradlab
from gradlab.cli import app
from gradlab.report.diagnose import Finding
from gradlab.report.trial import plan, sets_of, sort_rows, try_remedies
from cli_helpers import assert_bad_input

# configs/relu_rnn_exploding.yaml, small: a ReLU RNN with U = 1.1 I and no clipping. In 60 steps its loss
# reaches 6.7e36; clipped at 1.0 (Pascanu et al. 2013) it ends at 0.146, below the 1/6 that predicting
# the mean gives on the adding problem.
TINY = {"name": "tiny", "seed": 0, "data": {"kind": "adding", "T": 20, "n_samples": 256, "val_fraction": 0.25},
        "model": {"kind": "rnn", "cell": "vanilla", "hidden": 8, "activation": "relu", "init": "xavier_normal",
                  "recurrent_init": {"scheme": "identity", "scale": 1.1}},
        "loss": "mse", "train": {"optimizer": "sgd", "lr": 0.05, "batch_size": 32, "steps": 60},
        "log": {"every": 5}}
CLIP, SLOW, WILD = "train.clip=1.0", "train.lr=1.0e-04", "train.lr=1000.0"  # WILD overflows at step 2
FINDINGS = [Finding("exploding", 1, "test", remedies=[f"clipping: --set {CLIP}", f"a lower lr: --set {SLOW}",
                                                      "advice without an option"]),
            Finding("dead_units", 1, "test", remedies=[f"again: --set {CLIP}", f"a higher lr: --set {WILD}"])]
ONE = [Finding("exploding", 1, "test", remedies=[f"--set {CLIP}", "not for this config: --set train.lr=-1.0",
                                                 "valid, but not for this data: --set loss=cross_entropy"])]
ADDING_BASELINE = 1 / 6  # the variance of the sum of two U(0, 1) numbers: the loss of predicting the mean


def final_loss(*sets: str) -> float:
    """The final training loss of TINY with ``sets``, trained here, in this process, without a folder."""
    result = gradlab.train(gradlab.config_from_dict(TINY, list(sets)), write=False)
    return result.final.get("final_train_loss", math.inf) if result.status == "completed" else math.inf


@pytest.fixture(scope="module")
def tried(tmp_path_factory):
    """A tiny exploding run and its three remedies tried (in one worker process, as the command runs them;
    the other tests run theirs in this process, workers=0, which gives the same files without start-up)."""
    run = tmp_path_factory.mktemp("trial") / "run"
    gradlab.train(gradlab.config_from_dict(TINY), run_dir=run)
    return run, try_remedies(run, workers=1, findings=FINDINGS)


def test_remedies_are_read_from_their_set_options():
    assert sets_of("clipping at 1: --set train.clip=1.0") == ["train.clip=1.0"]
    assert sets_of("a gated cell: --set model.cell=lstm --set model.activation=null") == \
        ["model.cell=lstm", "model.activation=null"]
    assert sets_of("quoted: --set 'model.layers[2].units=32'") == ["model.layers[2].units=32"]
    assert sets_of("a {type: batchnorm} item after each dense item of model.layers") == []
    assert sets_of(["--set a.b=1", "--set c=2"]) == ["a.b=1", "c=2"]
    trials = plan(FINDINGS)  # in the findings' order; the repeated clip and the advice without --set dropped
    assert [t.sets for t in trials] == [[CLIP], [SLOW], [WILD]]
    assert trials[0].description == f"clipping: --set {CLIP}"


def test_the_table_has_the_original_first_then_the_remedies_best_first(tried):
    run, result = tried
    rows = result.rows
    assert rows[0]["remedy"] == "original" and rows[0]["run"] == "."
    assert sorted(r["remedy"] for r in rows[1:]) == sorted(f"--set {s}" for s in (CLIP, SLOW, WILD))
    own = json.loads((run / "summary.json").read_text())
    assert rows[0]["status"] == own["status"] and rows[0]["final_loss"] == own["final_train_loss"]
    # each trial's loss is that of the same config with the remedy, trained here independently
    for row in rows[1:]:
        expected = final_loss(row["remedy"].removeprefix("--set "))
        assert row["final_loss"] == expected if math.isfinite(expected) else math.isnan(row["final_loss"])
    done = [r for r in rows[1:] if r["status"] == "completed"]
    assert [r["final_loss"] for r in done] == sorted(r["final_loss"] for r in done)
    assert all(r["status"] != "completed" for r in rows[1 + len(done):])


def test_the_clip_remedy_of_an_exploding_rnn_works_and_says_so(tried):
    _, result = tried
    (clip,) = [r for r in result.rows if r["remedy"] == f"--set {CLIP}"]
    original = result.rows[0]
    assert original["final_loss"] > 1e30 and "exploding" in original["verdict"]
    assert clip["status"] == "completed" and clip["final_loss"] < ADDING_BASELINE
    assert "exploding" not in clip["verdict"] and clip["verdict"]
    assert result.rows[1] is clip  # the best remedy comes first after the original
    (wild,) = [r for r in result.rows if r["remedy"] == f"--set {WILD}"]
    assert wild["status"] == "diverged" and wild is result.rows[-1] and wild["diverged_at"] >= 1


def test_each_trial_is_a_run_folder_and_the_table_is_on_disk(tried):
    run, result = tried
    assert result.dir == run / "try" and result.table == run / "remedies.csv"
    table = pd.read_csv(result.table)
    assert list(table.remedy) == [r["remedy"] for r in result.rows]
    assert list(table.columns[:5]) == ["remedy", "status", "final_loss", "delta_ratio", "verdict"]
    for row in result.rows[1:]:
        folder = run / row["run"]
        config = yaml.safe_load((folder / "config.yaml").read_text())
        key, value = row["remedy"].removeprefix("--set ").split("=")
        section, name = key.split(".")
        clip = config["train"]["clip"]
        assert (clip["threshold"] if name == "clip" else config[section][name]) == float(value)
        assert json.loads((folder / "summary.json").read_text())["status"] == row["status"]
    spec = yaml.safe_load((result.dir / "sweep.yaml").read_text())
    assert [t["set"] for t in spec["trials"]] == [CLIP, SLOW, WILD]
    summary = pd.read_csv(result.dir / "summary.csv")
    assert sorted(summary.run) == sorted(p.name for p in result.dir.iterdir() if p.is_dir())


def test_a_second_try_reuses_the_finished_trials_and_reruns_what_changed(tried):
    run, first = tried
    again = try_remedies(run, workers=0, findings=FINDINGS)  # 0: in this process, no start-up
    assert (again.ran, again.reused) == (0, 3)
    assert again.rows == first.rows
    (wild,) = [r for r in first.rows if r["remedy"] == f"--set {WILD}"]
    written = run / wild["run"] / "config.yaml"  # a trial of another config (an older remedy): run again
    text = written.read_text()
    assert "lr: 1000.0" in text
    written.write_text(text.replace("lr: 1000.0", "lr: 4.0"))
    third = try_remedies(run, workers=0, findings=FINDINGS)
    assert (third.ran, third.reused) == (1, 2)
    assert third.rows == first.rows


def test_an_interrupted_try_keeps_the_trials_that_finished(tmp_path):
    class StopAfterOne:
        def on_run(self, res):
            raise KeyboardInterrupt

    run = tmp_path / "run"
    gradlab.train(gradlab.config_from_dict(TINY), run_dir=run)
    result = try_remedies(run, workers=0, findings=FINDINGS[:1], observers=[StopAfterOne()])
    assert result.status == "interrupted" and result.ran == 1
    table = pd.read_csv(run / "remedies.csv")  # written from what is on disk: the original and one trial
    assert len(table) == len(result.rows) == 2 and table.remedy[0] == "original"
    resumed = try_remedies(run, workers=0, findings=FINDINGS[:1])
    assert (resumed.status, resumed.ran, resumed.reused) == ("completed", 1, 1)
    assert len(resumed.rows) == 3


def test_steps_runs_the_original_again_as_long_as_the_trials_and_bad_remedies_are_rows(tried):
    run, _ = tried
    result = try_remedies(run, steps=12, workers=0, findings=ONE)
    assert result.dir == run / "try-12steps"
    assert [r["run"] for r in result.rows] == ["try-12steps/remedy=original", "try-12steps/remedy=train.clip=1.0",
                                               "try-12steps/remedy=loss=cross_entropy", ""]
    failed, invalid = result.rows[-2:]  # remedies that cannot run are rows that say so, not errors
    assert failed["status"] == "failed" and (run / failed["run"] / "error.txt").exists()
    assert invalid["status"] == "invalid" and "'train.lr': Input should be greater than 0" in invalid["verdict"]
    original = json.loads((run / result.rows[0]["run"] / "summary.json").read_text())
    assert original["steps"] == 12 and yaml.safe_load((run / result.rows[1]["run"] / "config.yaml").read_text())[
        "train"]["steps"] == 12
    assert (run / "try").is_dir()  # the full-length trials are kept beside


def test_sort_puts_completed_by_loss_then_the_rest():
    rows = [{"remedy": r, "status": s, "final_loss": l} for r, s, l in
            [("e", "invalid", math.nan), ("a", "diverged", math.nan), ("original", "diverged", math.nan),
             ("b", "completed", 2.0), ("c", "failed", math.nan), ("d", "completed", 0.5),
             ("f", "diverged", math.nan)]]
    assert [r["remedy"] for r in sort_rows(rows)] == ["original", "d", "b", "a", "f", "c", "e"]


# --------------------------------------------------------------------------- the command

def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.slow  # every remedy of the real diagnosis in a worker process, then the plots: ~10 s idle
def test_the_command_tries_the_diagnosis_remedies_and_prints_the_table(tried):
    run, _ = tried
    result = invoke("report", run, "--try", "--steps", "8", "--workers", "1")
    assert result.exit_code == 0, result.output
    findings = gradlab.reports.diagnose_dir(run)
    sets = {" ".join(re.findall(r"--set (\S+)", r)) for f in findings for r in f.remedies} - {""}
    table = pd.read_csv(run / "remedies.csv")
    assert table.remedy[0] == "original" and len(table) == 1 + len(sets)
    assert {r.replace("--set ", "") for r in table.remedy[1:]} == sets
    assert "Remedies tried" in result.stdout and "8 steps each" in result.stdout
    assert "Remedies tried" in (run / "report.html").read_text(encoding="utf-8")


def test_bad_input_to_try(tmp_path, tried):
    run, _ = tried
    assert_bad_input(invoke("report", tmp_path / "nope", "--try"), "no such folder")
    assert_bad_input(invoke("report", run, "--steps", "5"), "--try")
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    (sweep / "sweep.yaml").write_text("name: s\n")
    (sweep / "summary.csv").write_text("status,run\n")
    assert_bad_input(invoke("report", sweep, "--try"), "a sweep folder", "one of its run folders")
    bare = tmp_path / "bare"
    shutil.copytree(run, bare, ignore=shutil.ignore_patterns("config.yaml", "try*", "remedies.csv"))
    assert_bad_input(invoke("report", bare, "--try"), "config.yaml", "missing")


def test_a_run_with_nothing_to_try_says_so(tmp_path):
    """A run stopped before its first logged step has no diagnosis, hence no remedy: exit 0, a message."""
    run = tmp_path / "run"
    gradlab.train(gradlab.config_from_dict(TINY), run_dir=run)
    for name in ("metrics.csv", "grad_norms.csv", "layer_stats.csv", "time_grad_norms.csv", "gate_stats.csv"):
        lines = (run / name).read_text().splitlines()
        (run / name).write_text(lines[0] + "\n")
    result = invoke("report", run, "--try")
    assert result.exit_code == 0, result.output
    assert "no remedy" in result.stdout and "nothing was run" in result.stdout
    assert not (run / "try").exists() and not (run / "remedies.csv").exists()


def test_sweep_resume_of_a_try_folder_points_to_report_try(tried):
    run, result = tried
    message = assert_bad_input(invoke("sweep", "--resume", result.dir), "gradlab report", "--try")
    assert str(run) in message
