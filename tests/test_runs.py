"""``gradlab runs`` lists the run folders newest first with what each one ended as, and ``gradlab report``
without a folder reports on the newest run."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import gradlab
from gradlab.cli import app
from gradlab.runs import list_runs, logged_steps, newest_run, run_folders
from cli_helpers import assert_bad_input

TINY = "name: tiny\ndata: {kind: spirals, n_samples: 64}\nmodel: {depth: 2, width: 8, activation: tanh}\ntrain: {steps: 3}\n"
# relu + He init with a huge learning rate on a regression teacher: the loss overflows within a few steps
DIVERGING = ("name: boom\ndata: {kind: teacher, n_samples: 128}\n"
             "model: {depth: 3, width: 16, activation: relu, init: he_normal}\n"
             "loss: mse\ntrain: {optimizer: sgd, lr: 1.0e+6, steps: 50}\n")


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], prog_name="gradlab")


def trained(tmp_path: Path, text: str, started: float) -> Path:
    """A real run under tmp_path/runs, its config.yaml dated ``started`` (what orders the listing)."""
    config = tmp_path / "exp.yaml"
    config.write_text(text, encoding="utf-8")
    result = cli("train", config, "-q", "--set", f"log.out={tmp_path / 'runs'}")
    assert result.exit_code in (0, 3), result.output
    run = Path(result.stdout.strip().rsplit("-> ", 1)[1])
    os.utime(run / "config.yaml", (started, started))
    return run


def hand_made(root: Path, name: str, started: float, summary: dict | None, written: float | None = None) -> Path:
    """A run folder as a killed or running run leaves it: config.yaml, maybe summary.json and metrics.csv."""
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("name: x\n", encoding="utf-8")
    (run / "metrics.csv").write_text("step,loss\n0,1.0\n", encoding="utf-8")
    if summary is not None:
        (run / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    for file in run.iterdir():
        os.utime(file, (written or started, written or started))
    os.utime(run / "config.yaml", (started, started))
    return run


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """A completed run started an hour ago and a diverged one started a minute ago."""
    tmp_path = tmp_path_factory.mktemp("runs")
    now = time.time()
    old = trained(tmp_path, TINY, now - 3600)
    new = trained(tmp_path, DIVERGING, now - 60)
    return tmp_path / "runs", old, new


def test_run_folders_are_newest_first_and_only_runs(tmp_path):
    now = time.time()
    a = hand_made(tmp_path, "a", now - 30, {"status": "completed", "steps": 1})
    b = hand_made(tmp_path, "b", now - 10, {"status": "completed", "steps": 1})
    (tmp_path / "notes").mkdir()  # no config.yaml, no summary.json: not a run
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "link").symlink_to(a)
    assert run_folders(tmp_path) == [b, a]
    assert newest_run(tmp_path) == b
    assert run_folders(tmp_path / "missing") == [] and newest_run(tmp_path / "missing") is None


def test_runs_lists_real_runs_newest_first_with_their_verdicts(two_runs):
    root, old, new = two_runs
    result = cli("runs", "--root", root, "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["run"] for r in rows] == [new.name, old.name]
    for row, run in zip(rows, (new, old)):
        summary = json.loads((run / "summary.json").read_text())
        assert row["path"] == str(run) and row["status"] == summary["status"] and row["steps"] == summary["steps"]
        assert row["final_train_loss"] == summary.get("final_train_loss")
        assert row["verdict"] == gradlab.reports.diagnose_dir(run)[0].kind and row["verdict_from"] == "diagnosis"
    assert rows[0]["status"] == "diverged" and rows[0]["final_train_loss"] is None
    assert rows[1]["status"] == "completed" and rows[1]["steps"] == 3 and rows[1]["final_train_loss"] > 0


def test_runs_prints_a_table(two_runs):
    root, old, new = two_runs
    result = CliRunner().invoke(app, ["runs", "--root", str(root)], prog_name="gradlab", terminal_width=200)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    title = "".join(line.strip() for line in lines[:top])  # a long --root folds the title over the table's width
    assert title.replace(" ", "") == f"2 runs under {root}/, newest first".replace(" ", "")
    [first] = [i for i, line in enumerate(lines) if new.name in line]
    [second] = [i for i, line in enumerate(lines) if old.name in line]
    assert first < second
    cells = [c.strip() for c in lines[second].strip("│ ").split("│")]
    loss = json.loads((old / "summary.json").read_text())["final_train_loss"]
    assert cells[:4] == [old.name, "completed", "3", f"{loss:.4g}"]
    assert cells[4] == gradlab.reports.diagnose_dir(old)[0].kind


def test_an_unfinished_run_and_a_running_one(tmp_path):
    now = time.time()
    hand_made(tmp_path, "killed", now - 3600, {"status": "running", "steps": 0})  # silent for an hour
    hand_made(tmp_path, "live", now - 30, {"status": "running", "steps": 0}, written=now)
    hand_made(tmp_path, "no-summary", now - 7200, None)
    rows = {r["run"]: r for r in list_runs(tmp_path)}
    assert [r["run"] for r in list_runs(tmp_path)] == ["live", "killed", "no-summary"]
    assert rows["live"]["status"] == "running" and rows["live"]["verdict"] == "running"
    assert rows["killed"]["status"] == "unfinished" and rows["killed"]["verdict_from"] == "status"
    assert rows["no-summary"]["status"] == "unfinished" and rows["no-summary"]["steps"] == 1  # its one row


def test_without_time_to_diagnose_the_verdict_is_the_status(two_runs):
    root, _, _ = two_runs
    rows = list_runs(root, budget=0.0)
    assert [(r["verdict"], r["verdict_from"]) for r in rows] == [("diverged", "status"), ("completed", "status")]


def test_runs_with_nothing_to_list(tmp_path):
    result = cli("runs", "--root", tmp_path / "none")
    assert result.exit_code == 0 and result.stdout.replace("\n", "") == (
        f"no runs under {tmp_path / 'none'}/ (gradlab train CONFIG writes one there; --root DIR looks elsewhere).")
    assert json.loads(cli("runs", "--root", tmp_path, "--json").stdout) == []
    (tmp_path / "f").write_text("x")
    assert assert_bad_input(cli("runs", "--root", tmp_path / "f")) == (
        f"error: --root {tmp_path / 'f'}: not a folder; allowed: a folder of run folders (a config's log.out).")


def test_runs_defaults_to_runs_in_the_current_folder(two_runs, monkeypatch):
    root, old, new = two_runs
    monkeypatch.chdir(root.parent)
    rows = json.loads(cli("runs", "--json").stdout)
    assert [r["path"] for r in rows] == [f"runs/{new.name}", f"runs/{old.name}"]


def test_report_without_a_folder_takes_the_newest_run(two_runs, monkeypatch):
    root, _, new = two_runs
    monkeypatch.chdir(root.parent)
    reported = []

    def report(path, write=True):  # the plots take seconds; which folder it is handed is what matters here
        reported.append(Path(path))
        raise gradlab.ConfigError(f"{path}: stop here")

    monkeypatch.setattr(gradlab, "report", report)
    result = cli("report", "--json")
    assert result.exit_code == 2 and reported == [Path("runs") / new.name]
    assert result.stderr == f"newest run: runs/{new.name}\nerror: runs/{new.name}: stop here\n"


def test_report_without_a_folder_and_no_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert assert_bad_input(cli("report")) == (
        "error: runs: no run folder here (runs go under log.out, default runs, relative to the current folder); "
        "give one: gradlab report RUN.")


def test_a_running_or_unfinished_run_shows_the_steps_logged_so_far_not_summary_json_s_0(tmp_path):
    now = time.time()
    rows = "".join(f"{i},{1 / (i + 1):.4f}\n" for i in range(3233))
    for name, written in (("live", now), ("killed", now - 3600)):
        run = hand_made(tmp_path, name, written - 10, {"status": "running", "steps": 0}, written=written)
        with open(run / "metrics.csv", "a", encoding="utf-8") as file:  # a row being written is not counted
            file.write(rows[len("0,1.0000\n"):] + "3233,0.00")
        os.utime(run / "metrics.csv", (written, written))
    empty = hand_made(tmp_path, "empty", now - 7200, {"status": "running", "steps": 0})
    (empty / "metrics.csv").write_text("step,loss\n", encoding="utf-8")
    os.utime(empty / "metrics.csv", (now - 7200, now - 7200))
    listed = {r["run"]: (r["status"], r["steps"]) for r in list_runs(tmp_path)}
    assert listed == {"live": ("running", 3233), "killed": ("unfinished", 3233), "empty": ("unfinished", 0)}
    assert logged_steps(tmp_path / "live") == 3233 and logged_steps(empty) is None
    assert logged_steps(tmp_path / "missing") is None


def sweep_folder(root: Path, name: str, started: float, runs: list[str]) -> Path:
    """A sweep folder as gradlab sweep leaves it: sweep.yaml, summary.csv and a run folder per run."""
    sweep = root / name
    sweep.mkdir(parents=True)
    (sweep / "sweep.yaml").write_text("name: grid\n", encoding="utf-8")
    (sweep / "summary.csv").write_text("run,status,steps\n", encoding="utf-8")
    for i, run in enumerate(runs):
        hand_made(sweep, run, started + i, {"status": "completed", "steps": 1})
    return sweep


def test_the_runs_in_sweep_folders_are_listed_as_sweep_slash_run(tmp_path):
    now = time.time()
    sweep_folder(tmp_path / "runs", "grid-1", now - 100, ["depth=2", "depth=3"])
    result = cli("runs", "--root", tmp_path / "runs", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [(r["run"], r["path"], r["status"], r["steps"]) for r in rows] == [
        ("grid-1/depth=3", str(tmp_path / "runs" / "grid-1" / "depth=3"), "completed", 1),
        ("grid-1/depth=2", str(tmp_path / "runs" / "grid-1" / "depth=2"), "completed", 1)]
    table = CliRunner().invoke(app, ["runs", "--root", str(tmp_path / "runs")], terminal_width=200).stdout
    assert "no runs" not in table and "grid-1/depth=3" in table and "grid-1/depth=2" in table
    # a run of its own, older than the sweep, is listed among them; the newest run is still a run of its own
    own = hand_made(tmp_path / "runs", "own", now - 1000, {"status": "completed", "steps": 1})
    assert [r["run"] for r in list_runs(tmp_path / "runs")] == ["grid-1/depth=3", "grid-1/depth=2", "own"]
    assert run_folders(tmp_path / "runs") == [own] and newest_run(tmp_path / "runs") == own


def test_one_run_is_counted_in_the_singular(tmp_path):
    hand_made(tmp_path, "only", time.time() - 3600, {"status": "completed", "steps": 1})
    result = CliRunner().invoke(app, ["runs", "--root", str(tmp_path)], prog_name="gradlab", terminal_width=200)
    assert result.exit_code == 0, result.output
    assert result.stdout.lstrip().startswith("1 run under ")
