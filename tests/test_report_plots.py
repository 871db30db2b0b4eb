"""gradlab.report.plots and gradlab.report.html: PNGs for runs and sweeps, a self-contained report.html."""
from __future__ import annotations

import base64
import math
import dataclasses
import re
import warnings
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

import gradlab
from gradlab import sweeps
from gradlab.report import plots, sweep_plots
from gradlab.report.html import Section, findings_table, write_html
from gradlab.report.load import load_run, load_sweep_dir

from browser import measure

PNG = b"\x89PNG\r\n\x1a\n"
RUN_PNGS = ["gradient_flow.png", "grad_heatmap.png", "loss_grad_norm.png", "activations.png"]
RNN_PNGS = ["grad_heatmap.png", "loss_grad_norm.png", "activations.png", "time_grad_norms.png"]  # one layer: no flow
SWEEP_PNGS = ["sweep_loss_curves.png", "sweep_final.png", "sweep_gradient_flow.png", "sweep_ratio_heatmap.png"]
MLP = {"name": "mlp", "seed": 0, "data": {"kind": "spirals", "n_samples": 128},
       "model": {"depth": 4, "width": 12, "activation": "tanh"},
       "train": {"steps": 30, "batch_size": 32}, "log": {"every": 1}}
CLIPPED = {**MLP, "name": "clipped", "model": {"depth": 4, "width": 12, "activation": "relu"},
           "train": {"steps": 30, "batch_size": 32, "clip": {"mode": "norm", "threshold": 0.5}}}
RNN = {"name": "rnn", "seed": 0, "data": {"kind": "adding", "T": 10, "n_samples": 128},
       "model": {"kind": "rnn", "cell": "vanilla", "hidden": 8}, "loss": "mse",
       "train": {"steps": 20, "batch_size": 32}, "log": {"every": 1}}
DIVERGING = {"name": "diverging", "seed": 0, "data": {"kind": "blobs", "n_samples": 256, "n_features": 32, "n_classes": 10},
             "model": {"depth": 50, "width": 32, "activation": "linear", "init": {"scheme": "identity", "scale": 1.2}},
             "train": {"steps": 20, "batch_size": 64}, "log": {"every": 1}}


def strict(fn, *args):
    """Call ``fn`` with every warning raised as an error (masked NaN/inf must not reach numpy or matplotlib)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn(*args)


def assert_png(path: Path) -> None:
    """A PNG file matplotlib reads back, of a sensible pixel size."""
    assert path.read_bytes()[:8] == PNG, path
    pixels = matplotlib.image.imread(path)
    height, width = pixels.shape[:2]
    assert 300 <= width <= 2500 and 150 <= height <= 2000, (path.name, width, height)
    assert pixels.std() > 0.01, f"{path.name} is blank"


def width(path: Path) -> int:
    return matplotlib.image.imread(path).shape[1]


def height(path: Path) -> int:
    return matplotlib.image.imread(path).shape[0]


def names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Four small run folders: MLP, clipped ReLU MLP, vanilla RNN, diverging deep linear net."""
    root = tmp_path_factory.mktemp("runs")
    for raw in (MLP, CLIPPED, RNN, DIVERGING):
        gradlab.train(gradlab.config_from_dict(raw), run_dir=root / raw["name"])
    return {raw["name"]: load_run(root / raw["name"]) for raw in (MLP, CLIPPED, RNN, DIVERGING)}


@pytest.fixture(scope="module")
def mlp_pngs(runs, tmp_path_factory):
    """The MLP run's figures, written once."""
    return strict(plots.write_run_plots, runs["mlp"], tmp_path_factory.mktemp("mlp_plots"))


def make_sweep(out: Path, name: str, grid: dict, seeds: list[int]) -> Path:
    """Run a tiny sweep (5 steps per run) on one worker; return its folder."""
    base = {**MLP, "train": {"steps": 5, "batch_size": 32}, "log": {"every": 1, "out": str(out)}}
    spec = sweeps.sweep_from_dict({"name": name, "base": base, "grid": grid, "seeds": seeds}, "<test>")
    return sweeps.run_sweep(spec, workers=1).dir


@pytest.fixture(scope="module")
def sweep2(tmp_path_factory):
    """Depth x init, one seed."""
    grid = {"model.depth": [2, 4], "model.init": ["xavier_normal", {"scheme": "normal", "std": 0.01}]}
    return load_sweep_dir(make_sweep(tmp_path_factory.mktemp("sw2"), "two", grid, [0]))


@pytest.fixture(scope="module")
def sweep3(tmp_path_factory):
    """Depth x init x activation, two seeds (facets, medians)."""
    grid = {"model.depth": [2, 4], "model.init": ["xavier_normal", "he_normal"], "model.activation": ["tanh", "relu"]}
    return load_sweep_dir(make_sweep(tmp_path_factory.mktemp("sw3"), "three", grid, [0, 1]))


# --------------------------------------------------------------------------- run plots

def test_mlp_run_writes_the_four_figures_as_valid_pngs(runs, mlp_pngs):
    assert names(mlp_pngs) == RUN_PNGS
    assert sorted(p.name for p in mlp_pngs[0].parent.iterdir()) == sorted(RUN_PNGS)
    for path in mlp_pngs:
        assert_png(path)


def test_recurrent_run_adds_the_time_plot(runs, tmp_path):
    assert runs["rnn"].recurrent
    paths = strict(plots.write_run_plots, runs["rnn"], tmp_path)
    assert names(paths) == RNN_PNGS
    for path in paths:
        assert_png(path)


def test_clipped_run_plots_threshold_and_clipped_steps(runs, tmp_path):
    run = runs["clipped"]
    assert run.clip_threshold() == 0.5 and (run.metrics.clipped == 1).any()
    assert_png(strict(plots.plot_loss_grad_norm, run, tmp_path / "loss_grad_norm.png"))


def test_diverged_run_still_plots(runs, tmp_path):
    run = runs["diverging"]
    assert run.summary["status"] == "diverged" and not np.isfinite(run.metrics.loss.iloc[-1])
    paths = strict(plots.write_run_plots, run, tmp_path)
    assert names(paths) == RUN_PNGS
    for path in paths:
        assert_png(path)


def test_zero_negative_and_infinite_values_are_masked(runs, tmp_path):
    layers = runs["mlp"].layers.copy()
    layers.loc[layers.index[::3], "grad_norm"] = 0.0
    layers.loc[layers.index[1::3], "grad_norm"] = -1.0
    layers.loc[layers.index[2::5], "delta_norm"] = np.inf
    layers[["frac_saturated", "frac_dead"]] = np.nan
    run = dataclasses.replace(runs["mlp"], layers=layers)
    for fn, name in ((plots.plot_grad_heatmap, "h.png"), (plots.plot_gradient_flow, "g.png"),
                     (plots.plot_activations, "a.png")):
        assert_png(strict(fn, run, tmp_path / name))


def test_all_missing_grad_norms_still_give_a_figure(runs, tmp_path):
    run = dataclasses.replace(runs["mlp"], layers=runs["mlp"].layers.assign(grad_norm=np.nan))
    assert_png(strict(plots.plot_grad_heatmap, run, tmp_path / "h.png"))


def test_plots_that_do_not_apply_return_none(runs, tmp_path):
    assert plots.plot_time_grad_norms(runs["mlp"], tmp_path / "t.png") is None
    empty = dataclasses.replace(runs["mlp"], layers=runs["mlp"].layers.iloc[:0])
    assert plots.plot_gradient_flow(empty, tmp_path / "g.png") is None
    assert not (tmp_path / "t.png").exists() and not (tmp_path / "g.png").exists()


def test_pick_steps_spans_first_to_last():
    assert plots.pick_steps(list(range(100))) == [0, 25, 50, 74, 99]
    assert plots.pick_steps([0, 50, 99]) == [0, 50, 99]
    assert plots.pick_steps([]) == []


# --------------------------------------------------------------------------- sweep plots

def test_two_key_sweep_writes_both_figures(sweep2, tmp_path):
    assert sweep2.keys == ["model.depth", "model.init"]
    paths = strict(sweep_plots.write_sweep_plots, sweep2, tmp_path)
    assert names(paths) == SWEEP_PNGS
    for path in paths:
        assert_png(path)


def test_three_key_sweep_with_seeds_writes_facets(sweep2, sweep3, tmp_path):
    assert sweep3.keys == ["model.depth", "model.init", "model.activation", "seed"]
    assert sweep_plots.main_keys(sweep3) == ["model.depth", "model.init", "model.activation"]
    paths = strict(sweep_plots.write_sweep_plots, sweep3, tmp_path)
    assert names(paths) == SWEEP_PNGS
    for path in paths:
        assert_png(path)
    two_keys = sweep_plots.plot_sweep_ratio_heatmap(sweep2, tmp_path / "two_keys.png")
    three_keys = tmp_path / "sweep_ratio_heatmap.png"  # a row of panels (first and last step) per activation
    assert height(three_keys) > 1.5 * height(two_keys) and width(three_keys) == pytest.approx(width(two_keys), rel=0.1)


def test_failed_runs_and_a_single_key(sweep2, tmp_path):
    summary = sweep2.summary.copy()
    summary.loc[0, sweep_plots.RATIO] = np.nan
    failed = dataclasses.replace(sweep2, summary=summary)
    assert_png(strict(sweep_plots.plot_sweep_ratio_heatmap, failed, tmp_path / "failed.png"))
    one_key = dataclasses.replace(sweep2, spec={**sweep2.spec, "grid": {"model.depth": [2, 4]}},
                                  summary=sweep2.summary[sweep2.summary["model.init"] == "xavier_normal"],
                                  profile=sweep2.profile[sweep2.profile["model.init"] == "xavier_normal"])
    assert one_key.keys == ["model.depth"]
    assert names(strict(sweep_plots.write_sweep_plots, one_key, tmp_path / "one")) == SWEEP_PNGS


# --------------------------------------------------------------------------- report.html

class Tags(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


FINDINGS = [
    {"kind": "vanishing", "layer": 1, "message": "layer 1 gets 1e-5 of the top's gradient <b>",
     "evidence": {"delta_ratio": 1.23456e-05, "steps": 30, "norms": [0.123456, 2.0]},
     "remedies": ["use he_normal", "add residual connections"]},
    {"kind": "healthy", "layer": None, "message": "gradients flow", "evidence": {}, "remedies": []},
]


def report(pngs: list[Path], path: Path) -> Path:
    """A report with text to escape, a findings table, images, a table and preformatted text."""
    table = pd.DataFrame({"layer": [1, 2], "delta_norm": [1.234567e-5, 0.5], "note": ["<script>x</script>", "ok"]})
    return write_html(path, "Report <script>alert(1)</script>", [
        Section("Findings", text="Look at <script>alert(2)</script> & co.\n\nSecond paragraph.",
                html=findings_table(FINDINGS)),
        Section("Figures", images=[*pngs, None], table=table, pre="a < b\n<script>alert(3)</script>"),
    ])


def test_report_embeds_images_as_data_uris_and_refers_to_nothing_outside(mlp_pngs, tmp_path):
    path = report(mlp_pngs, tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    parser = Tags()
    parser.feed(text)
    images = [attrs for tag, attrs in parser.tags if tag == "img"]
    assert len(images) == len(mlp_pngs) == 4
    for attrs in images:
        assert attrs["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(attrs["src"].split(",", 1)[1], validate=True)[:8] == PNG
    assert not [tag for tag, attrs in parser.tags if tag in ("script", "link", "iframe", "object", "embed")]
    assert not [(tag, a) for tag, attrs in parser.tags for a in attrs if a in ("href", "srcset", "action")]
    for bad in ("http://", "https://", "file:", "<link", "<script", "url("):
        assert bad not in text, bad
    assert len(re.findall(r'src="', text)) == len(re.findall(r'src="data:image/png;base64,', text)) == 4
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&lt;script&gt;alert(3)&lt;/script&gt;" in text
    assert "&lt;script&gt;x&lt;/script&gt;" in text and "Look at &lt;script&gt;" in text


def test_findings_table_colours_kinds_and_formats_evidence():
    html = findings_table(FINDINGS)
    assert '<span class="kind bad">vanishing</span>' in html and '<span class="kind ok">healthy</span>' in html
    assert "delta_ratio = 1.23e-05" in html and "steps = 30" in html and "norms = [0.123, 2]" in html
    assert "<li>use he_normal</li>" in html and "&lt;b&gt;" in html and "<b>" not in html
    assert findings_table([]) == "<p>No findings.</p>"
    assert '<th class="text">run</th>' not in html
    by_run = findings_table([{"run": "depth=4,init=<x>", **FINDINGS[0]}])
    assert '<th class="text">run</th>' in by_run and "depth=4,init=&lt;x&gt;" in by_run


def test_report_images_decode_in_headless_chromium(mlp_pngs, sweep2, tmp_path):
    pngs = [*mlp_pngs, *sweep_plots.write_sweep_plots(sweep2, tmp_path / "sweep")]
    page = report(pngs, tmp_path / "report.html")
    facts = measure(page, tmp_path)
    assert facts["decoded"] == facts["images"] == len(pngs) >= 4


# --------------------------------------------------------------------------- huge finite values

HUGE_COLUMNS = ("loss", "grad_norm", "grad_norm_clipped", "val_loss", "weight_norm", "act_mean", "act_std",
                "delta_norm")


def with_huge_values(src: Path, dst: Path) -> Path:
    """A copy of a run folder whose later logged rows hold 1e200, then 1e291, then inf and nan in every
    column of norms, losses and activation statistics (what an exploding run logs on its way). Values up
    to the largest float are the next test's: with 1e308 here matplotlib's autoscale gives up and the
    1e291 case passes unseen."""
    import shutil

    shutil.copytree(src, dst)
    for name in ("metrics.csv", "grad_norms.csv", "layer_stats.csv", "time_grad_norms.csv"):
        table = pd.read_csv(dst / name)
        steps = sorted(table.step.unique())
        for step, value in zip(steps[len(steps) // 2:], [1e200, 1e291, 1e291, np.inf, np.nan]):
            for col in HUGE_COLUMNS:
                if col in table:
                    table.loc[table.step == step, col] = value
        table.to_csv(dst / name, index=False)
    return dst


def test_huge_and_non_finite_values_give_every_figure_and_the_html(runs, tmp_path):
    """Values of 1e291 made matplotlib's log ticks pass the largest float (an OverflowError in its tick
    labels); every figure and report.html must still be written, for a recurrent run (all four figures)."""
    folder = with_huge_values(runs["rnn"].dir, tmp_path / "run")
    assert (pd.read_csv(folder / "metrics.csv").loss == 1e291).sum() == 2
    run = load_run(folder)  # a layer's norm over its tensors of 1e200 each: 1e200 sqrt(k), not inf
    grads = run.grads[run.grads.grad_norm == 1e200]
    for (step, layer), part in grads.groupby(["step", "layer"]):
        got = run.layers[(run.layers.step == step) & (run.layers.layer == layer)].grad_norm.item()
        assert got == pytest.approx(math.hypot(*part.grad_norm), rel=1e-14) and got > 1e200
    rep = gradlab.report(folder)
    assert names(rep.images) == RNN_PNGS
    for path in rep.images:
        assert_png(path)
    assert rep.html.read_text(encoding="utf-8").count("data:image/png;base64,") == 4


@pytest.mark.parametrize("top", [1e250, 1e291, 1e308, float(np.finfo(float).max)])
def test_a_log_axis_spans_values_up_to_the_largest_float(tmp_path, top):
    fig, (ax,) = plots._figure()
    ax.plot([0, 1, 2], [0.1, 1.0, top])
    with np.errstate(over="ignore"):  # matplotlib's log scale of a 1e308 line overflows 10 ** x until _save
        ax.set_yscale("log")
    assert_png(strict(plots._save, fig, tmp_path / "a.png"))
    low, high = ax.get_ylim()
    assert low <= 0.1 and top <= high <= np.finfo(float).max
    ticks = ax.get_yticks()
    assert np.isfinite(ticks).all() and len(ticks) >= 3
