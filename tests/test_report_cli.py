"""``gradlab report``, ``train --report`` and ``sweep --report``: files, JSON findings, exit statuses."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from cli_helpers import assert_bad_input
from typer.testing import CliRunner

from gradlab.cli import app
from gradlab.report import KINDS

SIGMOID = ("name: sig\nseed: 0\ndata: {kind: blobs, n_samples: 256, n_features: 16, n_classes: 4}\n"
           "model: {depth: 12, width: 32, activation: sigmoid, init: {scheme: normal, std: 0.01}}\n"
           "train: {steps: 5}\nlog: {every: 1, out: OUT}\n")
RUN_PNGS = {"gradient_flow.png", "grad_heatmap.png", "loss_grad_norm.png", "activations.png"}


def invoke(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args])


def config(tmp_path: Path, text: str = SIGMOID) -> Path:
    path = tmp_path / "exp.yaml"
    path.write_text(text.replace("OUT", str(tmp_path / "runs")), encoding="utf-8")
    return path


def only_run(tmp_path: Path) -> Path:
    (folder,) = (tmp_path / "runs").iterdir()
    return folder


def test_train_prints_lint_first_and_the_diagnosis_at_the_end(tmp_path):
    result = invoke("train", config(tmp_path))
    assert result.exit_code == 0, result.output
    assert "lint: model.init: std 0.01 is 0.057x the 0.177 that xavier_normal prescribes for sigmoid" in result.stderr
    assert "sqrt(n Var(W) E[phi'(z)^2])" in result.stderr  # not swallowed as markup
    out = result.stdout
    assert "Diagnosis" in out and "vanishing" in out and "try Xavier init" in out
    assert out.index("Diagnosis") < out.index("completed: 5 steps")
    assert not (only_run(tmp_path) / "report.html").exists()  # only with --report


def test_train_report_writes_plots_and_html(tmp_path):
    result = invoke("train", config(tmp_path), "--report", "-q")
    assert result.exit_code == 0, result.output
    folder = only_run(tmp_path)
    assert RUN_PNGS <= {p.name for p in folder.glob("*.png")}
    assert (folder / "report.html").stat().st_size > 10_000
    assert f"report: {folder / 'report.html'}" in result.stdout.replace("\n", "")
    assert "lint" not in result.stderr and "Diagnosis" not in result.stdout  # --quiet


def test_report_json_holds_the_findings_as_data(tmp_path):
    invoke("train", config(tmp_path), "-q")
    result = invoke("report", only_run(tmp_path), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (finding,) = data["findings"]
    assert set(finding) >= {"kind", "layer", "evidence", "remedies"}
    assert finding["kind"] == "vanishing" and finding["kind"] in KINDS
    assert isinstance(finding["layer"], int) and 1 <= finding["layer"] <= 12
    assert finding["evidence"]["delta_ratio_first_last_hidden"] < 1e-10
    assert any("xavier_normal" in r for r in finding["remedies"])
    assert data["theory"]["predicted gain per layer (geometric mean)"] < 0.05
    assert (only_run(tmp_path) / "report.html").exists()


def test_report_prints_the_diagnosis_and_the_html_path(tmp_path):
    invoke("train", config(tmp_path), "-q")
    result = invoke("report", only_run(tmp_path))
    assert result.exit_code == 0, result.output
    assert "vanishing" in result.stdout and "report.html" in result.stdout


def test_sweep_report(tmp_path):
    base = SIGMOID.replace("OUT", str(tmp_path / "runs")).replace("\n", "\n  ")
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"name: s\nbase:\n  {base}\ngrid:\n  model.depth: [2, 6]\n  model.init: [xavier_normal, "
                     "{scheme: normal, std: 0.01}]\n", encoding="utf-8")
    result = invoke("sweep", sweep, "--workers", "1", "--report", "-q")
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "runs").iterdir()
    assert {"sweep_ratio_heatmap.png", "sweep_gradient_flow.png"} <= {p.name for p in folder.glob("*.png")}
    page = (folder / "report.html").read_text(encoding="utf-8")
    head = page[page.index('<table class="compact summary">'):].split("</tr>", 1)[0].replace("<wbr>", "")
    assert re.findall(r"<th class=\"text\">(.*?)</th>", head)[:4] == ["run", "model.depth", "model.init", "status"]
    pivot = page[page.index('<table class="compact pivot">'):page.index("<h2>Sweep</h2>")]
    assert pivot.count('<details><summary><span class="word') == 4  # a row a combination, its findings folded
    assert '<summary><span class="word bad">vanishing</span></summary>' in pivot
    data = json.loads(invoke("report", folder, "--json").stdout)
    runs = {f["run"] for f in data["findings"]}
    assert len(runs) == 4
    assert {f["kind"] for f in data["findings"] if "std=0.01" in f["run"] and "depth=6" in f["run"]} == {"vanishing"}


def test_report_of_a_missing_or_wrong_folder_is_bad_input(tmp_path):
    assert_bad_input(invoke("report", tmp_path / "nope"), "nope", "no such folder", "run folder")
    assert_bad_input(invoke("report", tmp_path), "neither a run folder", "summary.csv")
    (tmp_path / "metrics.csv").write_text("not,a\n\"table", encoding="utf-8")
    assert_bad_input(invoke("report", tmp_path), "metrics.csv")
    (tmp_path / "metrics.csv").write_text("step,loss\n0,1.0\n", encoding="utf-8")
    assert_bad_input(invoke("report", tmp_path), "metrics.csv", "missing column(s) grad_norm, clipped")


def test_report_of_corrupt_run_files_is_bad_input(tmp_path):
    invoke("train", config(tmp_path), "-q")
    folder = only_run(tmp_path)
    (folder / "summary.json").write_text('{"status": "compl', encoding="utf-8")
    assert_bad_input(invoke("report", folder), "summary.json", "not readable")
    (folder / "summary.json").write_text("[1, 2]", encoding="utf-8")
    assert_bad_input(invoke("report", folder), "summary.json", "mapping")
    (folder / "summary.json").unlink()
    (folder / "config.yaml").write_text("model: [unclosed", encoding="utf-8")
    assert_bad_input(invoke("report", folder), "config.yaml", "YAML error at line 1")


def test_report_of_a_run_killed_before_its_first_logged_step(tmp_path):
    invoke("train", config(tmp_path), "-q")
    folder = only_run(tmp_path)
    for name in ("metrics.csv", "grad_norms.csv", "layer_stats.csv"):
        path = folder / name
        path.write_text(path.read_text(encoding="utf-8").splitlines()[0] + "\n", encoding="utf-8")
    (folder / "summary.json").unlink()
    result = invoke("report", folder)
    assert result.exit_code == 0, result.output
    assert "no step logged yet" in result.stdout


def test_sweep_report_with_a_null_grid_value_and_a_failed_run(tmp_path):
    base = SIGMOID.replace("OUT", str(tmp_path / "runs")).replace("\n", "\n  ")
    sweep = tmp_path / "s.yaml"
    sweep.write_text(f"name: s\nbase:\n  {base}\ngrid:\n  train.clip: [null, 1.0]\n  model.depth: [2, 3]\n",
                     encoding="utf-8")
    assert invoke("sweep", sweep, "--workers", "1", "-q").exit_code == 0
    (folder,) = (tmp_path / "runs").iterdir()
    summary = folder / "summary.csv"
    lines = summary.read_text(encoding="utf-8").splitlines()
    lines[1] = lines[1].replace("completed", "failed")
    summary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = invoke("report", folder, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert len(data["notes"]) == 1 and "failed, not diagnosed" in data["notes"][0]
    assert len({f["run"] for f in data["findings"]}) == 3
    assert (folder / "sweep_ratio_heatmap.png").exists()


RELU_RNN = ("name: relu_rnn\nseed: 0\ndata: {kind: adding, T: 50, n_samples: 512, val_fraction: 0.1}\n"
            "model: {kind: rnn, cell: vanilla, hidden: 32, activation: relu, init: xavier_normal, "
            "recurrent_init: {scheme: identity, scale: 1.1}}\nloss: mse\n"
            "train: {optimizer: sgd, lr: 0.05, batch_size: 64, steps: 200}\nlog: {every: 10, out: OUT}\n")


def test_train_of_an_exploding_rnn_ends_with_its_status_not_a_traceback(tmp_path):
    """configs/relu_rnn_exploding.yaml, smaller: step 1 logs a bias gradient norm near 1e242, whose square
    overflowed in the end-of-run table; now the table, the diagnosis and the closing line print."""
    result = invoke("train", config(tmp_path, RELU_RNN))
    assert result.exit_code == 3, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output, result.exception
    assert "Gradients by layer" in result.stdout and "Diagnosis" in result.stdout
    assert "diverged: 1 steps, non-finite at step 1" in result.stdout
    grads = (only_run(tmp_path) / "grad_norms.csv").read_text()
    assert any(float(row.split(",")[4]) > 1e154 for row in grads.splitlines()[1:] if row.split(",")[4] != "nan")


HUGE_SWEEP = ("name: huge\nbase: {name: huge, seed: 0, data: {kind: blobs, n_samples: 256, n_features: 32, "
              "n_classes: 10}, model: {depth: 50, width: 32, activation: linear, init: {scheme: identity, "
              "scale: 1.2}}, train: {steps: 30, batch_size: 64}, log: {every: 1, out: OUT}}\n"
              "grid: {train.clip: [null, 1.02e+05]}\n")


@pytest.mark.slow  # a worker process (spawn, then imports) and the sweep's plots: several seconds on 2 cores
def test_a_sweep_whose_runs_reach_1e168_or_diverge_reports_each_status(tmp_path):
    """The deep 1.2 I linear net: unclipped it diverges at step 2; clipped at 1.02e5 it completes with
    activations and losses near 1e168. summary.csv, the closing table and report.html say which is which."""
    result = invoke("sweep", config(tmp_path, HUGE_SWEEP), "--workers", "1", "--report")
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    (folder,) = (tmp_path / "runs").iterdir()
    import pandas as pd

    summary = pd.read_csv(folder / "summary.csv").set_index("run")
    assert summary.status.to_dict() == {"clip=null,seed=0": "diverged", "clip=102000.0,seed=0": "completed"}
    assert 1e100 < summary.final_train_loss["clip=102000.0,seed=0"] < float("inf")
    assert summary.diverged_at["clip=null,seed=0"] == 2
    assert "1 not completed" in result.stdout and (folder / "report.html").exists()
