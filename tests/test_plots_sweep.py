"""A sweep's figures compare its runs: loss curves and the gradient flow at the first and the last logged
step as small multiples (a line per value of one key, a panel per combination of the others), the final
metric and the delta ratio against each key. Each test reads the Figure a plot function saved."""
from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from test_report_plots import assert_png, make_sweep, strict

from gradlab.report import plots, sweep_plots
from gradlab.report.load import load_sweep_dir


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Depth (numbers: the lines) x init (the panels), two seeds: 8 runs of 5 steps."""
    grid = {"model.depth": [2, 3], "model.init": ["xavier_normal", "he_normal"]}
    return load_sweep_dir(make_sweep(tmp_path_factory.mktemp("sweep"), "lines", grid, [0, 1]))


@pytest.fixture
def saved(monkeypatch):
    """The Figures sweep_plots saves, in order (each still written, as a PNG)."""
    figures = []
    original = sweep_plots._save

    def keep(fig, path):
        figures.append(fig)
        return original(fig, path)

    monkeypatch.setattr(sweep_plots, "_save", keep)
    return figures


def visible(fig) -> list:
    return [ax for ax in fig.axes if ax.get_visible()]


def test_numbers_are_lines_on_a_sequential_colormap_and_categories_get_hues(sweep):
    f = sweep_plots.facets(sweep)
    assert f.line == "model.depth" and f.values == [2, 3]
    assert f.combos == [{"model.init": "xavier_normal"}, {"model.init": "he_normal"}]
    viridis = colormaps["viridis"]
    assert f.colors == [viridis(0.0), viridis(0.85)]  # ordered: dark to light
    summary = sweep.summary.assign(**{"model.depth": sweep.summary["model.depth"].map({2: "null", 3: 1.0})})
    clip = sweep_plots.facets(dataclasses.replace(sweep, summary=summary))
    assert clip.line == "model.depth" and clip.values == ["null", 1.0]  # no numeric key: the first one
    assert clip.colors == [colormaps["tab10"](0), colormaps["tab10"](1)]


def test_loss_curves_are_the_smoothed_median_over_seeds_a_panel_per_init(sweep, saved, tmp_path):
    assert_png(strict(sweep_plots.plot_sweep_loss_curves, sweep, tmp_path / "l.png"))
    axes = visible(saved[0])
    assert [ax.get_title() for ax in axes] == ["init=xavier_normal", "init=he_normal"]
    assert [len(ax.get_lines()) for ax in axes] == [2, 2]
    runs = sweep.summary[(sweep.summary["model.depth"] == 3) & (sweep.summary["model.init"] == "he_normal")].run
    assert len(runs) == 2  # two seeds
    losses = [pd.read_csv(sweep.dir / run / "metrics.csv").set_index("step").loss for run in runs]
    want = plots.smooth(pd.concat(losses, axis=1).median(axis=1).to_numpy())
    line = axes[1].get_lines()[1]  # he_normal, depth 3
    assert list(line.get_xdata()) == list(range(5)) and np.allclose(line.get_ydata(), want, rtol=1e-12)
    assert not np.allclose(axes[0].get_lines()[1].get_ydata(), want)


def test_gradient_flow_shows_the_first_and_the_last_step_side_by_side(sweep, saved, tmp_path):
    assert_png(strict(sweep_plots.plot_sweep_gradient_flow, sweep, tmp_path / "g.png"))
    axes = visible(saved[0])
    assert [ax.get_title() for ax in axes] == [f"init={init}\n{end} logged step" for init in
                                               ("xavier_normal", "he_normal") for end in ("first", "last")]
    prof = pd.read_csv(sweep.dir / "profile.csv")
    part = prof[(prof["model.depth"] == 3) & (prof["model.init"] == "xavier_normal")]
    for ax, step in ((axes[0], 0), (axes[1], 4)):
        want = part[part.step == step].groupby("layer").delta_norm.median()
        line = ax.get_lines()[1]  # depth 3
        assert list(line.get_xdata()) == [1, 2, 3, 4] and np.allclose(line.get_ydata(), want, rtol=1e-12)
    assert not np.allclose(axes[0].get_lines()[1].get_ydata(), axes[1].get_lines()[1].get_ydata())


def test_final_figure_plots_the_median_val_accuracy_and_ratios_against_each_key(sweep, saved, tmp_path):
    assert_png(strict(sweep_plots.plot_sweep_final, sweep, tmp_path / "f.png"))
    top_depth, _, bottom_depth, bottom_init = saved[0].axes
    assert [ax.get_xlabel() for ax in (bottom_depth, bottom_init)] == ["model.depth", "model.init"]
    want = sweep.summary.groupby("model.depth").final_val_accuracy.median()
    median = top_depth.get_lines()[-1]
    assert list(median.get_xdata()) == [0, 1] and np.allclose(median.get_ydata(), want.loc[[2, 3]], rtol=1e-12)
    assert top_depth.get_ylabel() == "final validation accuracy"
    ratios = sweep.summary.groupby("model.init", sort=False)[sweep_plots.LAST_RATIO].median()
    (last,) = [line for line in bottom_init.get_lines() if line.get_color() == "tab:red"]  # the median line
    assert np.allclose(last.get_ydata(), ratios.loc[["xavier_normal", "he_normal"]], rtol=1e-12)
    assert bottom_init.get_yscale() == "log"


def test_a_diverged_line_leaving_the_scale_is_cut_with_a_note(tmp_path):
    fig, (ax,) = plots._figure()
    kept, diverged = np.array([1.0, 2.0, 3.0]), np.array([1.0, 1e50, 1e180])
    ax.plot(range(3), kept)
    ax.plot(range(3), diverged)
    plots.set_log(ax)
    sweep_plots._fit_scale([ax], [(ax, kept, "k", "10.0", False), (ax, diverged, "r", "null", True)], "loss")
    assert ax.get_ylim() == pytest.approx((0.1, 30.0))
    assert [t.get_text() for t in ax.texts] == ["\u2191 null: diverged, loss up to 1e+180"]
    assert_png(strict(plots._save, fig, tmp_path / "cut.png"))
    fig, (ax,) = plots._figure()  # a loss on a linear axis: 0.6 to 0.7, a diverged run up to 40, one all NaN
    kept, diverged, lost = np.array([0.7, 0.6]), np.array([0.7, 40.0]), np.array([np.nan, np.nan])
    strict(sweep_plots._fit_linear, [ax], [(ax, kept, "k", "1.0", False), (ax, diverged, "r", "null", True),
                                          (ax, lost, "b", "10.0", True)], kept)
    assert ax.get_ylim() == pytest.approx((0.0, 0.875))
    assert [t.get_text() for t in ax.texts] == ["\u2191 null: diverged, loss up to 40"]


def test_old_summary_names_and_a_run_without_metrics_still_plot(sweep, tmp_path):
    old = sweep.summary.rename(columns={sweep_plots.RATIO: "delta_ratio_first", "final_train_loss": "final_loss",
                                        sweep_plots.LAST_RATIO: "delta_ratio_last"})
    summary = old.assign(run=["../elsewhere", *old.run[1:]])  # a name outside the sweep is not read
    runs = sweep_plots.run_losses(dataclasses.replace(sweep, summary=summary))
    assert sorted(runs) == sorted(old.run[1:])
    paths = strict(sweep_plots.write_sweep_plots, dataclasses.replace(sweep, summary=old), tmp_path)
    assert [p.name for p in paths] == list(sweep_plots.SWEEP_PLOTS)


def test_ratio_heatmap_shows_the_first_and_the_last_step_side_by_side(sweep, saved, tmp_path):
    assert_png(strict(sweep_plots.plot_sweep_ratio_heatmap, sweep, tmp_path / "h.png"))
    first, last = saved[0].axes[:2]
    assert [first.get_title(), last.get_title()] == ["first logged step", "last logged step"]
    for ax, col in ((first, sweep_plots.RATIO), (last, sweep_plots.LAST_RATIO)):
        med = sweep.summary.groupby(["model.init", "model.depth"], sort=False)[col].median()
        want = [f"{med.loc[(init, depth)]:.1e}" for init in ("xavier_normal", "he_normal") for depth in (2, 3)]
        assert [t.get_text() for t in ax.texts] == want  # row by row from the bottom: init (y) by depth (x)
