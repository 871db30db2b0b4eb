"""A run's figures say what the run did: the loss smoothed beside the raw one with a chance line, the
accuracy, an exploding run's steps each on its own scale, the gates of a one-layer LSTM, activation
panels that apply. Each test reads the Figure a plot function saved (tiny real runs, a few steps)."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from test_report_plots import assert_png, strict

import gradlab
from gradlab.report import plots
from gradlab.report.load import load_run
from gradlab.train import setup

MLP = {"name": "tanh", "seed": 0, "data": {"kind": "blobs", "n_samples": 400, "n_features": 4, "n_classes": 4},
       "model": {"depth": 3, "width": 8, "activation": "tanh"}, "train": {"steps": 6, "batch_size": 32},
       "log": {"every": 1}}
RELU = {**MLP, "name": "relu", "model": {"depth": 3, "width": 8, "activation": "relu"}}
ONE = {**MLP, "name": "one", "model": {"depth": 1, "width": 8, "activation": "sigmoid"}}
EXPLODING = {"name": "exploding", "seed": 0,
             "data": {"kind": "blobs", "n_samples": 128, "n_features": 32, "n_classes": 10},
             "model": {"depth": 50, "width": 32, "activation": "linear", "init": {"scheme": "identity", "scale": 1.2}},
             "train": {"steps": 4, "batch_size": 64}, "log": {"every": 1}}
LSTM = {"name": "lstm", "seed": 0, "data": {"kind": "adding", "T": 8, "n_samples": 600},
        "model": {"kind": "rnn", "cell": "lstm", "hidden": 4}, "loss": "mse",
        "train": {"steps": 4, "batch_size": 32}, "log": {"every": 1}}
DEAD = {**RELU, "name": "dead",  # every hidden ReLU unit dead from step 0: exact zeros below the read-out
        "model": {"depth": 3, "width": 8, "activation": "relu", "init": {"scheme": "normal", "std": 0.01},
                  "bias_init": -0.5}, "train": {"steps": 4, "batch_size": 32}}
CONFIGS = (MLP, RELU, ONE, EXPLODING, LSTM, DEAD)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for raw in CONFIGS:
        gradlab.train(gradlab.config_from_dict(raw), run_dir=root / raw["name"])
    return {raw["name"]: load_run(root / raw["name"]) for raw in CONFIGS}


@pytest.fixture
def saved(monkeypatch):
    """The Figures the plot functions save, in order (each still written, as a PNG)."""
    figures = []
    original = plots._save

    def keep(fig, path):
        figures.append(fig)
        return original(fig, path)

    monkeypatch.setattr(plots, "_save", keep)
    return figures


def lines(ax) -> dict:
    """The labelled lines of an axes by label."""
    return {line.get_label(): line for line in ax.get_lines() if not line.get_label().startswith("_")}


def run_targets(raw: dict) -> np.ndarray:
    """The training targets the run saw, from its own set-up (the data stream of its seed)."""
    return setup(gradlab.config_from_dict(raw)).data.y_train


# --------------------------------------------------------------------------- chance

def test_chance_of_balanced_classes_is_the_entropy_of_the_training_labels(runs):
    loss, accuracy = plots.chance(runs["tanh"])
    counts = np.bincount(run_targets(MLP), minlength=4)
    p = counts / counts.sum()
    assert loss == pytest.approx(-(p * np.log(p)).sum(), rel=1e-12)
    assert accuracy == pytest.approx(p.max(), rel=1e-12)
    assert math.log(4) - 0.01 < loss <= math.log(4)  # 400 balanced samples, 80% of them in the training split
    assert 0.25 <= accuracy < 0.28


def test_chance_of_mse_is_the_variance_of_the_targets(runs):
    loss, accuracy = plots.chance(runs["lstm"])
    y = run_targets(LSTM)
    assert accuracy is None and loss == pytest.approx(float(np.var(y)), rel=1e-12)
    assert loss == pytest.approx(1 / 6, abs=0.03)  # the sum of two U(0, 1): variance 2/12


def test_no_chance_line_without_a_valid_config(runs):
    assert plots.chance(dataclasses.replace(runs["tanh"], config=None)) == (None, None)


# --------------------------------------------------------------------------- loss and accuracy

def test_smooth_is_a_debiased_moving_average_that_skips_non_finite_values():
    assert np.array_equal(plots.smooth([2.0] * 50), [2.0] * 50)
    got = plots.smooth([0.0, 2.0, np.nan, np.inf, 2.0], span=3)  # alpha 0.5
    assert got[:2] == pytest.approx([0.0, 1.0 / 0.75]) and np.isnan(got[2:4]).all()
    assert got[4] == pytest.approx(1.5 / 0.875)
    assert np.isfinite(strict(plots.smooth, [1.7e308, 1.7e308, 1e300])).all()


def test_classification_loss_figure_has_smoothed_loss_chance_lines_and_accuracy(runs, saved, tmp_path):
    run = runs["tanh"]
    assert_png(strict(plots.plot_loss_grad_norm, run, tmp_path / "l.png"))
    loss_ax, acc_ax, norm_ax = saved[0].axes
    chance_loss, chance_accuracy = plots.chance(run)
    loss = lines(loss_ax)
    assert np.array_equal(loss["train loss (batch)"].get_ydata(), run.metrics.loss)
    assert np.allclose(loss["train loss (smoothed)"].get_ydata(), plots.smooth(run.metrics.loss))
    assert list(loss[f"chance = {chance_loss:.3g}"].get_ydata()) == [chance_loss] * 2
    acc = lines(acc_ax)
    assert list(acc[f"chance = {chance_accuracy:.3g}"].get_ydata()) == [chance_accuracy] * 2
    val = acc["validation accuracy"].get_ydata()
    assert np.isfinite(val).sum() == run.metrics.val_accuracy.notna().sum() >= 1
    if "train_accuracy" in run.metrics:  # metrics.csv of this version logs it
        assert np.allclose(acc["train accuracy (batch)"].get_ydata(), run.metrics.train_accuracy, equal_nan=True)
    assert norm_ax.get_yscale() == "log"


def test_regression_and_older_folders_have_no_accuracy_panel(runs, saved, tmp_path):
    strict(plots.plot_loss_grad_norm, runs["lstm"], tmp_path / "r.png")
    old = runs["tanh"].metrics.drop(columns=[c for c in ("train_accuracy", "val_accuracy", "time", "update_norm")
                                             if c in runs["tanh"].metrics])
    strict(plots.plot_loss_grad_norm, dataclasses.replace(runs["tanh"], metrics=old), tmp_path / "o.png")
    assert [len(fig.axes) for fig in saved] == [2, 2]
    assert "chance = 0.1" in "".join(lines(saved[0].axes[0]))  # the MSE chance: about 1/6



def test_a_run_that_diverged_after_its_first_step_shows_that_step_as_a_point(runs, saved, tmp_path):
    run = runs["tanh"]
    m = run.metrics.iloc[:2].copy()  # step 0 finite, then inf: what an exploding run leaves after one update
    m.loc[0, ["loss", "grad_norm"]] = [18518.58, 5.38e6]
    m.loc[1, ["loss", "grad_norm", "val_loss"]] = [math.inf, math.inf, math.nan]
    diverged = dataclasses.replace(run, metrics=m, summary={**run.summary, "status": "diverged", "diverged_at": 1})
    assert_png(strict(plots.plot_loss_grad_norm, diverged, tmp_path / "d.png"))
    loss_ax, *_, norm_ax = saved[0].axes
    for ax, label, value in ((loss_ax, "train loss (smoothed)", 18518.58),
                             (norm_ax, "||gradient|| before clipping", 5.38e6)):
        line = lines(ax)[label]
        assert line.get_linestyle() == "-" and line.get_marker() == "o" and line.get_markevery() == [0]
        assert line.get_markersize() >= 5 and line.get_ydata()[0] == pytest.approx(value)
        assert lines(ax)["diverged at step 1"].get_marker() in (None, "None", "")  # the line across the axes
    assert_png(strict(plots.plot_loss_grad_norm, run, tmp_path / "l.png"))  # 6 finite steps: lines alone
    assert all(line.get_marker() in (None, "None", "") for line in saved[1].axes[-1].get_lines())

# --------------------------------------------------------------------------- gradient flow

def test_an_exploding_run_gives_each_logged_step_its_own_scale(runs, saved, tmp_path):
    run = runs["exploding"]
    steps = plots._shown_steps(run, ["grad_norm", "delta_norm"])
    assert steps[:2] == [0, 1] and np.nanmax(run.at(1).delta_norm) > 1e100  # the run explodes at step 1
    assert_png(strict(plots.plot_gradient_flow, run, tmp_path / "g.png"))
    axes = saved[0].axes
    assert len(axes) == 2 * len(steps)
    step0 = axes[0], axes[len(steps)]  # grad_norm, delta_norm of step 0
    for ax in step0:
        assert ax.get_ylim()[1] < 1e8  # its own scale: ~1e4 at most, not 1e137
    assert np.array_equal(step0[1].get_lines()[0].get_ydata(), plots._positive(run.at(0).delta_norm))


def test_a_healthy_run_keeps_its_steps_on_one_scale(runs, saved, tmp_path):
    strict(plots.plot_gradient_flow, runs["tanh"], tmp_path / "g.png")
    _, right = saved[0].axes
    assert len(right.get_lines()) == len(plots._shown_steps(runs["tanh"], ["grad_norm", "delta_norm"]))


def test_one_layer_lstm_plots_its_gates_not_a_two_point_flow(runs, saved, tmp_path):
    run = runs["lstm"]
    assert run.layer_ids == [1, 2] and "gate_stats.png" in plots.RUN_PLOTS
    assert plots.plot_gradient_flow(run, tmp_path / "g.png") is None and not (tmp_path / "g.png").exists()
    assert_png(strict(plots.plot_gate_stats, run, tmp_path / "gate_stats.png"))
    (ax,) = saved[-1].axes
    got = lines(ax)
    assert set(got) == {"forget gate f", "input gate i", "output gate o"}
    forget = run.gates[run.gates.gate == "f"].sort_values("step")
    assert np.array_equal(got["forget gate f"].get_ydata(), forget["mean"]) and len(forget) == 4
    assert plots.plot_gate_stats(runs["tanh"], tmp_path / "none.png") is None


# --------------------------------------------------------------------------- activations

@pytest.mark.parametrize("name, panels", [("tanh", ["activation std", "fraction saturated"]),
                                          ("relu", ["activation std", "fraction dead (output 0)"])])
def test_activation_panels_are_those_the_activation_has_over_hidden_layers(runs, saved, tmp_path, name, panels):
    run = runs[name]
    assert_png(strict(plots.plot_activations, run, tmp_path / "a.png"))
    axes = saved[0].axes
    assert [ax.get_title() for ax in axes] == panels
    std = axes[0].get_lines()
    assert run.layer_ids == [1, 2, 3, 4] and all(list(line.get_xdata()) == [1, 2, 3] for line in std)  # no logits
    step0 = run.at(0).loc[[1, 2, 3]]
    assert np.array_equal(std[0].get_ydata(), step0.act_std)


def test_one_hidden_layer_plots_its_activations_against_the_step(runs, saved, tmp_path):
    run = runs["one"]
    strict(plots.plot_activations, run, tmp_path / "a.png")
    std, saturated = saved[0].axes
    assert saturated.get_title() == "fraction saturated"
    (line,) = std.get_lines()
    rows = run.layers[run.layers.layer == 1].sort_values("step")
    assert list(line.get_xdata()) == list(rows.step) == list(range(6))
    assert np.array_equal(line.get_ydata(), rows.act_std)


def test_gradient_through_time_of_an_exploding_run_gives_each_step_its_own_scale(runs, saved, tmp_path):
    run = runs["lstm"]
    times = run.times.assign(grad_norm=run.times.grad_norm * np.where(run.times.step > 0, 1e200, 1.0))
    assert_png(strict(plots.plot_time_grad_norms, dataclasses.replace(run, times=times), tmp_path / "t.png"))
    axes = saved[0].axes
    assert [ax.get_title() for ax in axes] == ["step 0", "step 1", "step 2", "step 3"]
    assert axes[0].get_ylim()[1] < 1e10 and axes[1].get_ylim()[0] > 1e150
    strict(plots.plot_time_grad_norms, run, tmp_path / "one.png")  # as logged: one scale, a line per step
    (ax,) = saved[1].axes
    assert len(ax.get_lines()) == 4


# --------------------------------------------------------------------------- exact zeros

def dead_with_missing(run):
    """The dead run as logged (grad_norm exactly 0 in layers 1-3 at every step), with two cells made missing:
    layer 4 at step 1 NaN, layer 1 at step 2 (a 0) inf."""
    layers = run.layers.copy()
    at = lambda step, layer: (layers.step == step) & (layers.layer == layer)
    layers.loc[at(1, 4), "grad_norm"] = np.nan
    layers.loc[at(2, 1), "grad_norm"] = np.inf
    return dataclasses.replace(run, layers=layers)


def cell_colors(ax) -> np.ndarray:
    """The RGBA each heatmap cell is drawn in: the top mesh's colour where it is not transparent."""
    colors = None
    for mesh in ax.collections:
        rgba = mesh.to_rgba(mesh.get_array())
        colors = rgba if colors is None else np.where(rgba[..., 3:] > 0, rgba, colors)
    return colors


def test_exact_zero_gradients_are_not_drawn_as_missing_in_the_heatmap(runs, saved, tmp_path):
    logged = runs["dead"].layers.pivot(index="layer", columns="step", values="grad_norm")
    assert (logged.loc[[1, 2, 3]] == 0).all().all() and (logged.loc[4] > 0.01).all()  # a real run's zeros
    run = dead_with_missing(runs["dead"])
    assert_png(strict(plots.plot_grad_heatmap, run, tmp_path / "h.png"))
    ax = saved[0].axes[0]
    table = run.layers.pivot(index="layer", columns="step", values="grad_norm").to_numpy()
    colors = cell_colors(ax)
    assert colors.shape == (4, 4, 4)
    zero, missing = table == 0, ~np.isfinite(table)
    assert zero.sum() == 11 and missing.sum() == 2
    red, grey = to_rgba(plots.ZERO), to_rgba(plots.MISSING)
    assert np.array_equal(colors[zero], [red] * 11)
    assert np.array_equal(colors[missing], [grey] * 2)
    others = colors[~zero & ~missing]
    assert len(others) == 3 and not any(tuple(c) in (red, grey) for c in others)
    assert np.allclose(others, ax.collections[0].to_rgba(np.log10(table[~zero & ~missing])))
    assert "red = exactly 0; grey = missing or non-finite" in ax.get_title()
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["grad_norm = 0 exactly", "missing or non-finite"]


def zero_marks(ax) -> list:
    """The markers of exact zeros: lines on the bottom edge of the axes (y in axes coordinates)."""
    return [line for line in ax.get_lines() if line.get_marker() == plots.ZERO_MARK]


def test_gradient_flow_marks_exact_zeros_at_the_bottom_edge_and_leaves_missing_values_out(runs, saved, tmp_path):
    run = dead_with_missing(runs["dead"])
    assert_png(strict(plots.plot_gradient_flow, run, tmp_path / "g.png"))
    left, right = saved[0].axes  # one scale: a line per step in each panel
    for ax, col in ((left, "grad_norm"), (right, "delta_norm")):
        marks = zero_marks(ax)
        assert len(marks) == 4 and ax.get_yscale() == "log"
        for step, mark in zip(range(4), marks):
            rows = run.at(step)
            assert list(mark.get_xdata()) == list(rows.index[rows[col] == 0])
            assert list(mark.get_ydata()) == [0.0] * len(mark.get_xdata())  # the bottom edge
            assert mark.get_transform().contains_branch_seperately(ax.transData) == (True, False)
        assert ax.get_ylim()[0] > 1e-4  # the axis spans the positive values alone
    assert [list(m.get_xdata()) for m in zero_marks(left)] == [[1, 2, 3], [1, 2, 3], [2, 3], [1, 2, 3]]
    assert [list(m.get_xdata()) for m in zero_marks(right)] == [[1, 2]] * 4
    assert "= 0 (at the bottom edge)" in [t.get_text() for t in right.get_legend().get_texts()]
    # decades apart (an exploding run's layout): each step's panel marks its own zeros, one legend for all
    factor = np.where(run.layers.step > 0, 1e10, 1.0)
    scaled = run.layers.assign(grad_norm=run.layers.grad_norm * factor, delta_norm=run.layers.delta_norm * factor)
    assert_png(strict(plots.plot_gradient_flow, dataclasses.replace(run, layers=scaled), tmp_path / "s.png"))
    fig = saved[1]
    assert len(fig.axes) == 8
    assert [len(zero_marks(ax)) for ax in fig.axes] == [1] * 8
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["norm = 0 exactly (at the bottom edge of its panel)"]
