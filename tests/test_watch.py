"""``gradlab watch``: a run followed while a background thread writes it, whole rows only, huge and
non-finite values drawn as such, --once, the newest run by default, Ctrl-C, bad input; and WatchView,
the same view for ``gradlab train --watch``."""
from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from rich.console import Console
from typer.testing import CliRunner

from gradlab import watch as W
from gradlab.cli import app
from gradlab.config import validate
from gradlab.report.load import TableTail
from cli_helpers import assert_bad_input

STEPS = 12
CONFIG = {"name": "w", "seed": 0, "data": {"kind": "spirals", "n_samples": 64},
          "model": {"depth": 3, "width": 8, "activation": "tanh"},
          "train": {"steps": STEPS, "batch_size": 16, "lr": 0.5, "clip": {"mode": "norm", "threshold": 0.3}},
          "log": {"every": 1, "val_every": 4}}
TABLES = ("metrics.csv", "grad_norms.csv", "layer_stats.csv")


def train(observers=(), run_dir: Path | None = None):
    return importlib.import_module("gradlab.train").train(validate(CONFIG), list(observers), "<test>",
                                                           write=run_dir is not None, run_dir=run_dir)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A real run folder of a tiny clipped MLP (12 steps), written in this process."""
    folder = tmp_path_factory.mktemp("watch") / "w-20260101-000000"
    assert train(run_dir=folder).status == "completed"
    return folder


def watch(*args: str):
    return CliRunner().invoke(app, ["watch", *map(str, args)])


def replay(source: Path, folder: Path, pause: float = 0.01) -> None:
    """Write ``source``'s tables into ``folder`` step by step, each step's last row in two writes (torn in
    between), as a run does; summary.json says running until the last step is written."""
    tables = {name: (source / name).read_text().splitlines(keepends=True) for name in TABLES}
    with contextlib.ExitStack() as stack:
        files = {name: stack.enter_context(open(folder / name, "w", encoding="utf-8")) for name in TABLES}
        for name, lines in tables.items():
            files[name].write(lines[0])
            files[name].flush()
        for step in range(STEPS):
            for name, lines in tables.items():
                rows = [line for line in lines[1:] if line.split(",", 1)[0] == str(step)]
                files[name].write("".join(rows)[:-7])
                files[name].flush()
                time.sleep(pause / 2)
                files[name].write("".join(rows)[-7:])
                files[name].flush()
            time.sleep(pause)
    (folder / "summary.json").write_text((source / "summary.json").read_text())


def started(source: Path, folder: Path) -> Path:
    """A run folder as gradlab train leaves it right after its start: config.yaml, summary.json running."""
    folder.mkdir()
    shutil.copy(source / "config.yaml", folder / "config.yaml")
    (folder / "summary.json").write_text(json.dumps({"status": "running", "steps": 0}))
    return folder


# --------------------------------------------------------------------------- following a run

def test_watch_follows_a_run_written_by_a_thread_until_summary_json_says_it_ended(finished, tmp_path, monkeypatch):
    folder = started(finished, tmp_path / "live")
    seen = []  # the state at each drawing: the step and the rows so far
    view = W.view

    def recording(state, width=80):
        seen.append((state.step, state.status, {n: len(state.rows[n]) for n in TABLES},
                     [r["loss"] for r in state.rows["metrics.csv"]]))
        return view(state, width)

    monkeypatch.setattr(W, "view", recording)
    writer = threading.Thread(target=replay, args=(finished, folder, 0.03))
    writer.start()
    result = watch(folder, "--interval", "0.05")
    writer.join()
    assert result.exit_code == 0, result.output
    own = json.loads((finished / "summary.json").read_text())
    last_line = result.stdout.strip().splitlines()[-1]
    assert last_line == f"completed: {STEPS} steps, train loss {own['final_train_loss']:.4g}, val accuracy " \
                        f"{own['final_val_accuracy']:.3g} -> {folder}"
    # it drew the run as it grew: several steps in between, each with whole rows only
    steps = [s for s, status, _, _ in seen if s is not None and status == "running"]
    assert len(set(steps)) >= 3 and steps == sorted(steps) and max(steps) < STEPS
    metrics = pd.read_csv(finished / "metrics.csv")
    for step, _, counts, losses in seen:
        assert counts["metrics.csv"] == len(losses) == (0 if step is None else step + 1)
        assert losses == pytest.approx(metrics.loss.iloc[:len(losses)].tolist(), rel=1e-9)
        assert 4 * (len(losses) - 1) <= counts["layer_stats.csv"] <= 4 * (len(losses) + 1)  # tables in turn
    # the end: every row of every table, read once
    assert seen[-1][1] == "completed"
    assert seen[-1][2] == {n: len(pd.read_csv(finished / n)) for n in TABLES}
    assert f"{STEPS} of {STEPS} steps" in result.stdout


def test_only_whole_rows_are_read_and_a_rewritten_table_says_so(tmp_path):
    path = tmp_path / "metrics.csv"
    tail = TableTail(path)
    assert tail.read() == []  # not there yet
    path.write_text("step,loss,grad_norm,val_loss\n0,0.5,1e+300,\n1,inf,na")
    assert tail.read() == [{"step": 0.0, "loss": 0.5, "grad_norm": 1e300, "val_loss": None}]
    with open(path, "a") as f:
        f.write("n,0.25\n2,0.1,1,")
    rows = tail.read()
    assert len(rows) == 1 and rows[0]["step"] == 1 and rows[0]["loss"] == float("inf") and rows[0]["val_loss"] == 0.25
    assert rows[0]["grad_norm"] != rows[0]["grad_norm"]  # nan
    with open(path, "a") as f:
        f.write("\n3,0.1,1,2,extra\n")  # row 2 ends; a row of the wrong length is left out
    assert [r["step"] for r in tail.read()] == [2.0]
    path.write_text("step,loss\n")
    assert tail.read() is None


# --------------------------------------------------------------------------- drawing

def test_sparkline_is_log_scaled_when_the_range_is_wide_and_marks_inf_and_nan():
    assert W.sparkline([1.0, 10.0, 100.0, 1000.0], 10).plain == "▁▃▆█"  # log10: 0, 1, 2, 3
    assert W.sparkline([1.0, 2.0, 3.0], 10).plain == "▁▅█"  # linear: two decades or less
    assert W.sparkline([0.5, 1e136, float("inf"), float("nan")], 10).plain == "▁█" + W.INF_MARK + W.NAN_MARK
    assert W.sparkline([1.0] * 5, 10).plain == "▅" * 5
    squeezed = W.sparkline(list(range(1, 101)), 10).plain  # 100 values in 10 characters, group means
    assert len(squeezed) == 10 and squeezed[0] == "▁" and squeezed[-1] == "█"
    assert [W.fmt(x) for x in (0.69314718, 1.2345e-5, 3.4e136, float("inf"), float("nan"), None)] == \
        ["0.6931", "1.234e-05", "3.4e+136", "inf", "nan", "nan"]


def huge_state() -> W.RunState:
    state = W.RunState(Path("runs/boom"), {"train": {"steps": 4, "clip": {"mode": "norm", "threshold": 5.0}}})
    state.add("metrics.csv", [{"step": i, "loss": loss, "grad_norm": g, "clipped": 0}
                              for i, (loss, g) in enumerate([(0.7, 1.0), (1e136, 1e150), (float("inf"), float("inf")),
                                                             (float("nan"), float("nan"))])])
    state.add("layer_stats.csv", [{"step": 3, "layer": i + 1, "delta_norm": d, "frac_dead": None, "frac_saturated": s}
                                  for i, (d, s) in enumerate([(float("nan"), 0.5), (float("inf"), 1.0), (1e-300, 0.0),
                                                              (0.0, None), (2.0, None)])])
    return state


def test_huge_and_non_finite_values_are_drawn_as_such():
    console = Console(file=io.StringIO(), width=80, record=True)
    console.print(W.view(huge_state(), 80))
    text = console.export_text()
    loss = next(line for line in text.splitlines() if "loss" in line)
    assert "▁█!?" in loss and " nan " in loss and "(0.7 .. 1e+136)" in loss and "log" in loss
    gnorm = next(line for line in text.splitlines() if "grad norm" in line)
    assert "(1 .. 1e+150)" in gnorm
    # 2 of the 3 logged steps with a number had a norm over 5 (1e150 and inf), the nan one is not counted
    assert "50% of 4 logged steps had a grad norm over the threshold 5" in text
    rows = {line.split()[1]: line for line in text.splitlines() if line.split()[1:2] and line.split()[1].isdigit()}
    assert "nan" in rows["1"] and "inf" in rows["2"] and "1e-300" in rows["3"] and " 0 " in rows["4"]
    assert "0.50" in rows["1"] and "1.00" in rows["2"] and "5 out" in text


def test_a_run_folder_holding_huge_values_draws_without_a_traceback(tmp_path):
    folder = tmp_path / "boom"
    folder.mkdir()
    (folder / "metrics.csv").write_text("step,epoch,loss,grad_norm,clipped\n0,0,0.7,1\n1,0,1e+300,inf\n2,0,nan,nan\n"
                                        .replace("1\n1,", "1,0\n1,").replace("inf\n", "inf,0\n").replace("nan\n", "nan,0\n"))
    (folder / "layer_stats.csv").write_text("step,layer,act_mean,act_std,frac_saturated,frac_dead,delta_norm\n"
                                            "2,1,nan,nan,,,nan\n2,2,inf,inf,,,inf\n")
    result = watch(folder, "--once")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert "─ boom ─" in result.stdout and "running, 3 steps" in result.stdout and "1e+300" in result.stdout
    assert "completed" not in result.stdout  # no summary.json: still running, no final line


# --------------------------------------------------------------------------- the command

def test_once_draws_a_finished_run_and_its_final_line(finished):
    result = watch(finished, "--once")
    assert result.exit_code == 0, result.output
    metrics = pd.read_csv(finished / "metrics.csv")
    over = int((metrics.grad_norm > 0.3).sum())
    assert 0 < over < STEPS and metrics.clipped.sum() == over
    out = result.stdout
    assert f"─ {finished.name} ─" in out and f"completed, {STEPS} of {STEPS} steps" in out
    assert f"{over / STEPS:.0%} of {STEPS} logged steps had a grad norm over the threshold 0.3" in out
    assert "4 out" in out and "diagnosis" in out
    assert out.strip().splitlines()[-1].startswith(f"completed: {STEPS} steps, train loss ")


def test_without_a_folder_it_watches_the_newest_run(finished, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for i, name in enumerate(("w-older", "w-newer", "w-oldest")):
        shutil.copytree(finished, tmp_path / "runs" / name)
        os.utime(tmp_path / "runs" / name / "config.yaml", (1e9 + [10, 20, 0][i],) * 2)
    result = watch("--once")
    assert result.exit_code == 0, result.output
    assert "─ w-newer ─" in result.stdout and "w-older" not in result.stdout


def test_ctrl_c_ends_the_watch_with_130_and_leaves_the_run_alone(finished, tmp_path, monkeypatch):
    folder = started(finished, tmp_path / "live")
    for name in TABLES:
        shutil.copy(finished / name, folder / name)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def ctrl_c(seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(W.time, "sleep", ctrl_c)
    result = watch(folder)
    assert result.exit_code == 130 and "interrupted" in result.stderr and "Traceback" not in result.output
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.parametrize("make, fragments", [
    (lambda p: p / "missing", ["no such folder", "a run folder written by gradlab train"]),
    (lambda p: p, ["not a run folder", "config.yaml, metrics.csv or summary.json"]),
    (lambda p: (p / "sweep.yaml").write_text("name: s\n") and p, ["a sweep folder", "watch one of its runs"]),
])
def test_a_folder_that_is_not_a_run_is_bad_input(tmp_path, make, fragments):
    assert_bad_input(watch(make(tmp_path), "--once"), *fragments)


def test_no_run_under_runs_is_bad_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert_bad_input(watch(), "no run folder under runs/", "gradlab train CONFIG")


# --------------------------------------------------------------------------- gradlab train --watch

def test_watch_view_draws_a_training_run_from_its_records():
    file = io.StringIO()
    view = W.WatchView(console=Console(file=file, width=80), interval=0.0)
    result = train([view])
    view.stop()  # a second stop (the command's finally) does nothing
    assert result.status == "completed"
    text = file.getvalue()
    assert "─ w ─" in text and f"completed, {STEPS} of {STEPS} steps" in text
    assert view.state.rows["metrics.csv"][-1]["step"] == STEPS - 1
    assert len(view.state.rows["layer_stats.csv"]) == 4 * STEPS and "4 out" in text
    over = sum(r["grad_norm"] > 0.3 for r in view.state.rows["metrics.csv"])
    assert 0 < over < STEPS
    assert f"{over / STEPS:.0%} of {STEPS} logged steps" in text


def test_the_diagnosis_runs_at_most_every_few_seconds(finished):
    state = W.Follower(finished).poll()
    state.diagnose(now=100.0)
    assert state.findings and state.diagnosed_rows == len(state.rows["layer_stats.csv"])
    first = state.findings
    state.add("layer_stats.csv", [dict(state.rows["layer_stats.csv"][-1], step=STEPS)])
    assert state.gap >= W.DIAGNOSE_EVERY  # longer if the diagnosis took over a tenth of that
    state.diagnose(now=100.0 + state.gap / 2)
    assert state.findings is first  # too soon
    state.diagnose(now=100.0 + state.gap)
    assert state.findings is not first and state.diagnosed_rows == len(state.rows["layer_stats.csv"])


def test_a_run_that_stopped_writing_is_said_to_and_a_diverged_end_says_where():
    state = huge_state()
    console = Console(file=io.StringIO(), width=80, record=True)
    state.grew -= W.STALE + 5  # no row for over a minute, and summary.json still says running
    console.print(W.view(state, 80))
    assert "no new row for 65 s: the run may have stopped" in " ".join(console.export_text().split())
    state.summary = {"status": "diverged", "steps": 2, "diverged_at": 2, "final_train_loss": None}
    assert W.final_line(state) == f"diverged: 2 steps, non-finite at step 2 -> {Path('runs', 'boom')}"


# --------------------------------------------------------------------------- how far a run got, and whether it still runs

DIVERGING = ("name: boom\ndata: {kind: teacher, n_samples: 128}\n"
             "model: {depth: 3, width: 16, activation: relu, init: he_normal}\n"
             "loss: mse\ntrain: {optimizer: sgd, lr: 1.0e+6, steps: 50}\n")


def test_a_diverged_run_counts_the_steps_summary_json_does_not_its_non_finite_row(tmp_path):
    config = tmp_path / "boom.yaml"
    config.write_text(DIVERGING, encoding="utf-8")
    trained = CliRunner().invoke(app, ["train", str(config), "-q", "--set", f"log.out={tmp_path / 'runs'}"])
    assert trained.exit_code == 3, trained.output
    run = Path(trained.stdout.strip().rsplit("-> ", 1)[1])
    summary = json.loads((run / "summary.json").read_text())
    last = int(pd.read_csv(run / "metrics.csv").step.iloc[-1])  # the non-finite step is logged, not counted
    assert summary["status"] == "diverged" and last == summary["steps"] == summary["diverged_at"] == 7
    result = watch(run, "--once")
    assert result.exit_code == 0, result.output
    assert "diverged, 7 of 50 steps" in result.stdout and "8 of 50" not in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("diverged: 7 steps, non-finite at step 7")


def killed(source: Path, folder: Path, rows: int, silent: float) -> Path:
    """A run folder as a killed run leaves it: ``rows`` steps logged, summary.json still running, nothing
    written for ``silent`` seconds."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    started(source, folder)
    for name in TABLES:
        lines = (source / name).read_text().splitlines(keepends=True)
        (folder / name).write_text(lines[0] + "".join(l for l in lines[1:] if int(l.split(",", 1)[0]) < rows))
    then = time.time() - silent
    for file in folder.iterdir():
        os.utime(file, (then, then))
    return folder


def test_a_killed_run_is_unfinished_as_gradlab_runs_says_and_its_silence_is_its_files(finished, tmp_path):
    folder = killed(finished, tmp_path / "runs" / "killed", rows=5, silent=120)
    result = watch(folder, "--once")
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.replace("│", " ").split())
    assert f"unfinished, 5 of {STEPS} steps" in text and "running" not in text
    assert "no new row for 120 s: the run may have stopped without saying so (killed)" in text
    assert "completed" not in text and "unfinished:" not in text  # no final line: it did not end
    listed = json.loads(CliRunner().invoke(app, ["runs", "--root", str(tmp_path / "runs"), "--json"]).stdout)
    assert [(r["run"], r["status"]) for r in listed] == [("killed", "unfinished")]
    # the silence is counted from the run's last write, not from when the watch started
    state = W.Follower(folder).poll()
    assert state.status == "unfinished" and not state.ended and 119 < state.silence() < 130
    # a run that writes again runs again
    (folder / "metrics.csv").write_text((folder / "metrics.csv").read_text())
    state = W.Follower(folder).poll()
    assert state.status == "running" and state.silence() < 5


def test_a_live_watch_says_when_the_run_went_silent(finished, tmp_path, monkeypatch):
    folder = killed(finished, tmp_path / "killed", rows=3, silent=90)
    naps = []

    def nap(seconds):  # the watch goes on (the run may write again); Ctrl-C ends it
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(W.time, "sleep", nap)
    result = CliRunner().invoke(app, ["watch", str(folder)], terminal_width=100)
    assert result.exit_code == 130 and len(naps) == 2, result.output
    text = " ".join(result.stdout.replace("│", " ").split())
    assert f"unfinished, 3 of {STEPS} steps" in text and "no new row for 90 s" in text
