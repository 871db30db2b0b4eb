"""``gradlab compare RUN RUN ...``: the table of differing keys and final figures, the figures of runs of any
shape (depths, an RNN beside an MLP, a diverged run), the folder it writes, and bad input."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from browser import assert_readable
from cli_helpers import assert_bad_input
from matplotlib.image import imread
from typer.testing import CliRunner

import gradlab
from gradlab.cli import app
from gradlab.compare_cli import render
from gradlab.report import compare as compare_module
from gradlab.report.compare import PLOTS, ceiling, chance_line, compare, legend_labels
from gradlab.report.load import load_run

BLOBS = {"kind": "blobs", "n_samples": 96, "n_features": 8, "n_classes": 3}
CONFIGS = {
    "sig": {"data": BLOBS, "model": {"depth": 4, "width": 8, "activation": "sigmoid"}},
    "sig_bn": {"data": BLOBS, "model": {"depth": 4, "width": 8, "activation": "sigmoid", "batchnorm": True}},
    "deep": {"data": BLOBS, "model": {"depth": 7, "width": 8, "activation": "tanh"}},
    "rnn": {"data": {"kind": "adding", "T": 6, "n_samples": 96, "val_fraction": 0.25}, "loss": "mse",
            "model": {"kind": "rnn", "cell": "vanilla", "hidden": 8},
            "train": {"clip": {"mode": "norm", "threshold": 0.5}}},
    # He-scaled weights times 3 and lr 1: the loss passes 1e200 by step 4 and is nan at step 5
    "boom": {"data": BLOBS, "model": {"depth": 5, "width": 16, "activation": "relu",
                                      "init": {"scheme": "normal", "std": 3.0}}, "train": {"lr": 1.0}},
}


def train(out: Path, name: str) -> Path:
    raw = {"name": "exp", "seed": 0, **CONFIGS[name], "log": {"every": 1, "out": str(out)}}
    raw["train"] = {"steps": 6, "batch_size": 32, **raw.get("train", {})}
    return Path(gradlab.train(gradlab.config_from_dict(raw)).run_dir)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """One tiny run of each config (a few steps each), side by side in one folder (exp-<stamp>, exp-<stamp>-2...)."""
    out = tmp_path_factory.mktemp("runs")
    return {name: train(out, name) for name in CONFIGS}


def invoke(*args):
    return CliRunner().invoke(app, ["compare", *map(str, args)])


def as_json(*args) -> dict:
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def files(folder: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime for p in folder.iterdir()}


def layer_ratio(run: Path, step: int) -> float:
    """delta_norm of the first hidden layer over the last, read from layer_stats.csv itself."""
    stats = pd.read_csv(run / "layer_stats.csv")
    at = stats[stats.step == step].set_index("layer").delta_norm
    hidden = sorted(at.index)[:-1]
    return at[hidden[0]] / at[hidden[-1]]


@pytest.fixture(scope="module")
def mixed(runs, tmp_path_factory):
    """sig (depth 4), deep (depth 7), an RNN and a diverged run with 1e300, inf and nan written into its
    metrics.csv, compared once (every figure) with every warning an error."""
    folder = tmp_path_factory.mktemp("mixed")
    huge = folder / "huge"
    shutil.copytree(runs["boom"], huge)
    metrics = pd.read_csv(huge / "metrics.csv")
    metrics.loc[1, "loss"], metrics.loc[2, "grad_norm"], metrics.loc[3, "loss"] = 1e300, 1e300, math.inf
    metrics.to_csv(huge / "metrics.csv", index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return compare([runs["sig"], runs["deep"], runs["rnn"], huge], folder / "out")


def test_runs_that_differ_in_batchnorm_alone_show_that_key_and_their_figures(runs):
    before = [files(runs[n]) for n in ("sig", "sig_bn")]
    data = as_json(runs["sig"], runs["sig_bn"])
    out = Path(data["html"])
    assert out.name == "compare.html" and out.parent.name.startswith("compare-")
    assert out.parent.parent == runs["sig"].parent  # beside the first run, never inside it
    assert [files(runs[n]) for n in ("sig", "sig_bn")] == before
    page = out.read_text(encoding="utf-8")
    assert "model.<wbr>batchnorm" in page and "config keys are the same in every run" in page

    assert data["differing_keys"] == ["model.batchnorm"] and data["same_keys"] > 40
    first, second = data["runs"]
    assert list(first)[:2] == ["run", "model.batchnorm"]
    assert (first["model.batchnorm"], second["model.batchnorm"]) == (False, True)
    for row, name in ((first, "sig"), (second, "sig_bn")):
        summary = json.loads((runs[name] / "summary.json").read_text())
        assert row["run"] == runs[name].name
        assert (row["status"], row["steps"], row["diverged_at"]) == ("completed", 6, None)
        assert row["final_train_loss"] == summary["final_train_loss"] > 0
        assert row["final_val_accuracy"] == summary["final_val_accuracy"]
        assert row["delta_ratio_at_first_step"] == pytest.approx(layer_ratio(runs[name], 0), rel=1e-12)
        assert row["delta_ratio_at_last_step"] == pytest.approx(layer_ratio(runs[name], 5), rel=1e-12)
        assert "time_ratio_at_first_step" not in row  # no recurrent run
    # a sigmoid net loses gradient on the way down; batch norm gives it back (Ioffe & Szegedy 2015)
    assert second["delta_ratio_at_first_step"] > 3 * first["delta_ratio_at_first_step"]
    assert sorted(Path(p).name for p in data["images"]) == sorted(PLOTS[:3])  # no recurrent run: no time plot
    for path in data["images"]:
        pixels = imread(path)
        assert pixels.ndim == 3 and pixels.shape[0] > 200 and pixels.shape[1] > 400
        assert pixels[..., :3].std() > 0.05  # drawn, not blank


def test_depths_and_an_rnn_beside_an_mlp_leave_out_what_does_not_apply(runs, mixed):
    data = mixed.as_dict()
    assert {Path(p).name for p in data["images"]} == set(PLOTS)
    sig, deep, rnn, _ = data["runs"]
    assert (sig["model.depth"], deep["model.depth"], "model.depth" not in rnn) == (4, 7, True)
    assert rnn["model.kind"] == "rnn" and sig["model.kind"] == "mlp"
    assert rnn["delta_ratio_at_first_step"] is None  # one hidden layer: no ratio between layers
    assert sig["time_ratio_at_first_step"] is None and deep["time_ratio_at_last_step"] is None
    times = pd.read_csv(runs["rnn"] / "time_grad_norms.csv").query("step == 0").sort_values("t").grad_norm
    assert rnn["time_ratio_at_first_step"] == pytest.approx(times.iloc[0] / times.iloc[-1], rel=1e-12)
    assert deep["delta_ratio_at_last_step"] == pytest.approx(layer_ratio(runs["deep"], 5), rel=1e-12)
    notes = "\n".join(data["notes"])
    assert f"Back-propagated gradient by layer: {runs['rnn'].name} (one hidden layer" in notes
    assert f"Gradient through time: {runs['deep'].name} (not recurrent)" in notes
    page = mixed.html.read_text(encoding="utf-8")
    assert page.count("Left out: ") == 4  # the RNN by layer; the three MLPs through time
    assert page.count("<img ") == 4 and 'src="data:image/png;base64,' in page


def test_a_diverged_run_with_huge_and_non_finite_values_plots_without_a_warning(runs, mixed):
    for path in mixed.images:
        pixels = imread(path)
        assert pixels.shape[0] > 200 and pixels[..., :3].std() > 0.05
    row = mixed.as_dict()["runs"][3]
    at = json.loads((runs["boom"] / "summary.json").read_text())["diverged_at"]
    assert row["run"] == "huge" and 2 <= at <= 5
    assert (row["status"], row["diverged_at"], row["steps"]) == ("diverged", at, at)
    assert row["delta_ratio_at_last_step"] is None  # nan at the step that diverged: null in JSON
    assert math.isfinite(row["delta_ratio_at_first_step"])
    # 1e300 beside losses near 1 would flatten them: the axis ends at 100x the largest of the runs that did not
    # diverge, and the diverged run leaves it (said in its label)
    calm = max(pd.read_csv(runs[n] / "metrics.csv")[["loss", "val_loss"]].max().max() for n in ("sig", "deep", "rnn"))
    shown = [(run, "", None) for run in mixed.runs]
    assert ceiling(shown, ("loss", "val_loss")) == pytest.approx(100 * calm, rel=1e-12)
    assert ceiling(shown[:3], ("loss", "val_loss")) is None  # no diverged run


def test_compare_html_reads_in_a_browser_without_sideways_scroll(mixed, tmp_path):
    facts = assert_readable(mixed.html, tmp_path)
    assert facts["images"] == 4


def test_same_folder_names_are_told_apart_by_their_parents(runs, tmp_path, capsys):
    a, b = tmp_path / "a" / "exp", tmp_path / "b" / "exp"
    shutil.copytree(runs["sig"], a)
    shutil.copytree(runs["deep"], b)
    cmp = compare([a, b], write=False)
    assert (cmp.labels, cmp.keys, cmp.html) == (["a/exp", "b/exp"], ["model.depth", "model.activation.name"], None)
    assert legend_labels(cmp) == ["a/exp: depth=4, activation.name=sigmoid", "b/exp: depth=7, activation.name=tanh"]
    assert not list(tmp_path.glob("compare-*"))
    render(cmp)
    shown = capsys.readouterr().out
    assert "a/exp" in shown and "b/exp" in shown and "2 config keys differ" in shown
    rows = [[cell.strip() for cell in line.split("\u2502")[1:4]] for line in shown.splitlines() if "depth" in line]
    assert rows == [["model.depth", "4", "7"]]  # one column per run


@pytest.fixture
def not_a_run(tmp_path) -> Path:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("hello", encoding="utf-8")
    return tmp_path / "notes"


def test_bad_input_is_one_paragraph_naming_the_folder(runs, tmp_path, not_a_run):
    a, b = runs["sig"], runs["sig_bn"]
    assert_bad_input(invoke(a), "at least two run folders", f"(only {a})")
    assert_bad_input(invoke(a, b, Path(str(a) + "/")), f"{a}: the same run given twice")
    assert_bad_input(invoke(a, not_a_run), f"{not_a_run}: neither a run folder")
    assert_bad_input(invoke(a, tmp_path / "nowhere"), f"{tmp_path / 'nowhere'}: no such folder")
    assert_bad_input(invoke(a, b, "--out", a / "cmp"), f"--out {a / 'cmp'}: inside the run {a}")
    assert not (a / "cmp").exists()
    torn = tmp_path / "torn"
    shutil.copytree(b, torn)
    text = (torn / "layer_stats.csv").read_text().splitlines()
    text[2] = text[2].replace(text[2].split(",")[-1], "lots")
    (torn / "layer_stats.csv").write_text("\n".join(text) + "\n")
    assert_bad_input(invoke(a, torn), f"{torn / 'layer_stats.csv'}: column 'delta_norm', line 3")


def test_the_printed_count_of_differing_keys_reads_in_the_singular_too(runs, tmp_path):
    result = invoke(runs["sig"], runs["sig_bn"], "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert "1 config key differs, " in result.stdout and "are the same in every run." in result.stdout


def test_a_run_written_before_schedule_and_early_stop_existed_matches_their_defaults(runs, tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    shutil.copytree(runs["sig"], old)
    shutil.copytree(runs["sig"], new)
    config = yaml.safe_load((old / "config.yaml").read_text(encoding="utf-8"))
    assert config["train"]["schedule"]["name"] == "constant" and config["train"]["early_stop"] is None
    del config["train"]["schedule"], config["train"]["early_stop"]  # what an older gradlab wrote
    (old / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    cmp = compare([old, new], write=False)
    assert cmp.keys == [] and cmp.same > 40
    assert not any("compared as written" in note for note in cmp.notes)
    # a config that does not validate is compared as written, and the notes say so
    config["train"]["lr"] = "fast"
    (old / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    cmp = compare([old, new], write=False)
    assert "train.schedule.name" in cmp.keys and "train.lr" in cmp.keys
    assert any(note.startswith("old: its config.yaml does not validate") for note in cmp.notes)


def test_a_run_with_one_finite_step_is_drawn_as_a_point_beside_the_others(runs, tmp_path, monkeypatch):
    figures = []
    original = compare_module._save
    monkeypatch.setattr(compare_module, "_save", lambda fig, path: figures.append(fig) or original(fig, path))
    sig, boom = load_run(runs["sig"]), load_run(runs["boom"])
    m = boom.metrics.iloc[:2].copy()  # the loss at step 0, inf from step 1 (not so far up that it leaves the axis)
    m.loc[0, ["loss", "grad_norm"]] = [18518.58, 5.38e4]
    m.loc[1, ["loss", "grad_norm", "val_loss"]] = [math.inf, math.inf, math.nan]
    one = dataclasses.replace(boom, metrics=m, summary={**boom.summary, "diverged_at": 1})
    compare_module.plot_loss([sig, one], ["sig", "one"], tmp_path / "loss.png")
    compare_module.plot_grad_norm([sig, one], ["sig", "one"], tmp_path / "norm.png")
    for fig in figures:
        (ax,) = fig.axes
        drawn = {line.get_label(): line for line in ax.get_lines() if line.get_label().startswith(("sig", "one"))}
        one_line = next(line for label, line in drawn.items() if label.startswith("one"))
        sig_line = drawn["sig"]
        assert one_line.get_marker() == "o" and one_line.get_markevery() == [0]
        assert np.isfinite(one_line.get_ydata()[0]) and one_line.get_ydata()[0] > 1e4
        assert sig_line.get_marker() in (None, "None", "") and len(sig_line.get_xdata()) == 6


def test_the_chance_line_is_drawn_for_the_classification_runs_and_says_whose_it_is(runs, tmp_path, monkeypatch):
    figures = []
    original = compare_module._save
    monkeypatch.setattr(compare_module, "_save", lambda fig, path: figures.append(fig) or original(fig, path))
    sig, deep, rnn = (load_run(runs[n]) for n in ("sig", "deep", "rnn"))  # 3 classes, 3 classes, mse
    ten = dataclasses.replace(sig, config=sig.config.model_copy(
        update={"data": sig.config.data.model_copy(update={"n_classes": 10})}))
    assert chance_line([(sig, "a"), (deep, "b: depth=7")]) == (math.log(3), "")  # every run's
    assert chance_line([(sig, "a"), (rnn, "r"), (deep, "b: depth=7")]) == (math.log(3), " of a, b")
    assert chance_line([(sig, "a"), (rnn, "r"), (deep, "b"), (sig, "c")]) == (math.log(3), " of 3 runs")
    assert chance_line([(rnn, "r"), (rnn, "s")]) == (None, "")  # regression: no chance loss
    assert chance_line([(sig, "a"), (ten, "t"), (rnn, "r")]) == (None, "")  # ln 3 and ln 10: none drawn
    for shown in ([sig, rnn, deep], [sig, ten, rnn]):
        compare_module.plot_loss(shown, ["a", "r", "b"], tmp_path / "loss.png")
    said = [[t.get_text() for t in fig.axes[0].texts] for fig in figures]
    assert said == [["chance of a, b: ln 3 = 1.1"], []]
    dashed = [line for line in figures[0].axes[0].get_lines() if line.get_linestyle() not in ("-", "None")]
    assert [line.get_ydata()[0] for line in dashed] == [pytest.approx(math.log(3))]


def test_ten_runs_from_different_folders_fit_the_window(runs, tmp_path):
    """Ten runs with seven differing keys (a table with one column per run), each written into a folder of its
    own (log.out: a long path without spaces in every column): no element passes a 1400 px window."""
    folders = []
    for k in range(10):
        run = tmp_path / f"group-{k}" / "exp"
        shutil.copytree(runs["sig"], run)
        config = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
        config["seed"], config["log"]["out"] = k, f"/home/someone/projects/vanishing-gradients/runs/group-{k}"
        config["train"].update(lr=0.01 * (k + 1), batch_size=16 + k, l2=0.001 * k)
        config["data"]["n_samples"], config["model"]["width"] = 96 + k, 8 + k
        (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
        folders.append(run)
    cmp = compare(folders, tmp_path / "out")
    assert len(cmp.keys) == 7 and cmp.labels[9] == "group-9/exp"
    facts = assert_readable(cmp.html, tmp_path)
    assert facts["too_wide"] == [], facts
