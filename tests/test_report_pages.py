"""The report pages as a reader sees them: the model in one line, evidence with labels and 3 significant digits,
the theory table over runs of layers, the sweep's pivot; and in headless Chromium, report.html and the
page of configs/sweep_depth_init.yaml: every image decodes, nothing is wider than a 1400 px window."""
from __future__ import annotations

import re
import sys
from pathlib import Path

import pandas as pd
import pytest
from browser import assert_readable
from typer.testing import CliRunner

import gradlab
from gradlab.cli import app
from gradlab.describe import model_line, run_model_line
from gradlab.report import load_run, load_sweep_dir
from gradlab.report.html import evidence_items, findings_table, theory_table, where
from gradlab.report.sweep import combinations
from gradlab.report.theory import collapse

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
BLOBS = {"kind": "blobs", "n_samples": 128, "n_features": 16, "n_classes": 4}
SIGMOID = {"depth": 12, "width": 32, "activation": "sigmoid", "init": {"scheme": "normal", "std": 0.01}}


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def config(out: Path, model: dict, data: dict | None = None, steps: int = 5, **top) -> gradlab.config.Config:
    raw = {"name": top.pop("name", "r"), "seed": 0, "data": data or BLOBS, "model": model,
           "train": {"steps": steps, "batch_size": 32}, "log": {"every": 1, "out": str(out)}, **top}
    return gradlab.config_from_dict(raw)


def trained(tmp_path: Path, cfg) -> Path:
    folder = tmp_path / cfg.name
    gradlab.train(cfg, run_dir=folder)
    return folder


def n_dense(fan_in: int, fan_out: int, bias: bool = True) -> int:
    return fan_in * fan_out + (fan_out if bias else 0)


# --------------------------------------------------------------------------- the model in one line

def test_model_line_of_an_mlp_groups_equal_layers_and_counts_every_parameter(tmp_path):
    cfg = config(tmp_path, {"depth": 3, "width": 5, "activation": "tanh", "init": "he_normal"},
                 {**BLOBS, "n_features": 3})
    model = gradlab.setup(cfg).model
    n = n_dense(3, 5) + 2 * n_dense(5, 5) + n_dense(5, 4)  # 104
    assert n == sum(p.size for p in model.params.values()) == 104
    assert model_line(model, cfg) == "MLP 3 -> 5 x 3 tanh (he_normal) -> 4, 104 parameters"
    assert model_line(model) == "MLP 3 -> 5 x 3 tanh -> 4, 104 parameters"  # no config: no init to name
    residual = config(tmp_path, {"depth": 4, "width": 8, "activation": "relu", "residual": True,
                                 "batchnorm": True, "init": {"scheme": "normal", "std": 0.05}})
    assert model_line(gradlab.setup(residual).model, residual) == (
        "MLP 16 -> 8 x 4 batchnorm relu (normal std=0.05) -> 4, residual blocks of 2, "
        f"{n_dense(16, 8, False) + 3 * n_dense(8, 8, False) + 4 * 16 + n_dense(8, 4):,} parameters")


LAYERS = [
    {"type": "dense", "units": 6},
    {"type": "activation", "name": "tanh"},
    {"type": "dense", "units": 5},
    {"type": "batchnorm"},
    {"type": "custom", "class": "custom_layer:Swish", "args": {"beta": 0.5}},
    {"type": "dropout", "p": 0.1},
    {"type": "dense", "units": 4},
    {"type": "activation", "name": "leaky_relu", "alpha": 0.1},
    {"type": "custom", "class": "custom_layer:Swish"},
]


def test_a_run_folder_is_described_as_its_built_model_without_importing_its_custom_layers(tmp_path):
    raw = {"name": "custom", "seed": 0, "data": {"kind": "spirals", "n_samples": 64},
           "model": {"layers": LAYERS, "import_dir": str(EXAMPLES)}, "train": {"steps": 1, "batch_size": 16},
           "log": {"out": str(tmp_path)}}
    cfg = gradlab.config_from_dict(raw)
    folder = tmp_path / "custom"
    gradlab.train(cfg, run_dir=folder)
    built = gradlab.setup(cfg).model
    # dense 2->6, dense 6->5 without bias (batch norm follows), gamma and beta, Swish's beta, dense 5->4, beta, read-out
    n = n_dense(2, 6) + n_dense(6, 5, False) + 2 * 5 + 5 + n_dense(5, 4) + 4 + n_dense(4, 2)
    expected = (f"MLP 2 -> 6 tanh -> 5 batchnorm Swish dropout 0.1 -> 4 leaky_relu Swish (xavier_normal) -> 2, "
                f"{n} parameters")
    assert model_line(built, cfg) == expected
    sys.modules.pop("custom_layer", None)
    assert run_model_line(load_run(folder)) == expected
    assert "custom_layer" not in sys.modules  # named from config.yaml as text, never imported


def test_recurrent_nets_in_one_line_with_their_sequence_length(tmp_path):
    adding = {"kind": "adding", "T": 10, "n_samples": 64}
    lstm = config(tmp_path, {"kind": "rnn", "cell": "lstm", "hidden": 4}, adding, steps=1, loss="mse", name="lstm")
    # four gates, each W (2, 4), U (4, 4) and b (4,); the read-out 4 -> 1
    assert model_line(gradlab.setup(lstm).model, lstm) == "LSTM 2 -> 4 -> 1, T 10, 117 parameters"
    assert run_model_line(load_run(trained(tmp_path, lstm))) == "LSTM 2 -> 4 -> 1, T 10, 117 parameters"
    irnn = config(tmp_path, {"kind": "rnn", "hidden": 4, "num_layers": 2, "activation": "relu",
                             "recurrent_init": {"scheme": "identity", "scale": 1.1}}, adding, steps=1, loss="mse",
                  name="irnn")
    n = (2 * 4 + 16 + 4) + (4 * 4 + 16 + 4) + 5
    line = f"RNN 2 -> 4 x 2 relu (recurrent identity scale=1.1) -> 1, T 10, {n} parameters"
    assert model_line(gradlab.setup(irnn).model, irnn) == line
    assert run_model_line(load_run(trained(tmp_path, irnn))) == line


# --------------------------------------------------------------------------- evidence, where, theory

def test_evidence_reads_as_labelled_numbers_with_3_significant_digits():
    ev = {"when": "from the first logged step to the end", "step": 59, "at_end": True,
          "delta_ratio_first_last_hidden": 1.898126395698839e-32, "delta_ratio_at_step_0": 5.170384067592999e-33,
          "fitted_gain_per_layer": 0.01994988345257006, "frac_dead": {2: 0.6, 3: 0.8125, 4: 0.7, 7: 1.0},
          "global_norms": {"min": 101645.30078833814, "p10": 6.4e132, "median": 3.2194920559234793e+133,
                           "p90": 5.8e133, "max": 6.438984111846959e+133},
          "loss_end": None, "learned": False, "loss_swings": 0.25, "some_new_key": 0.123456}
    assert evidence_items(ev, (1, 20)) == [
        ("at step", "59"), ("still there at the end", "yes"),
        ("gradient reaching layer 1 / layer 20", "1.9e-32"),
        ("gradient reaching layer 1 / layer 20, step 0", "5.17e-33"),
        ("average gain per layer, going down", "0.0199"),
        ("dead units", "layers 2-4: 60-81%, layer 7: 100%"),
        ("global gradient norm over the run", "min 1.02e+05, median 3.22e+133, max 6.44e+133"),
        ("loss at the end", "not finite"), ("learned", "no"), ("steps where the loss swings 2x", "25%"),
        ("some_new_key", "0.123"),
    ]
    page = findings_table([{"kind": "vanishing", "layer": 18, "message": "m", "remedies": [], "evidence": ev}],
                          (1, 20))
    assert "gradient reaching layer 1 / layer 20 = 1.9e-32" in page and "{" not in page
    assert not re.search(r"\d\.\d{5,}", page)  # no 17-digit floats


def test_the_evidence_of_an_explosion_not_cured_and_of_unwarmed_batch_norm_has_labels():
    """The keys of an explosion at initialisation that training did not cure, and of a batch-norm run too short
    for its running statistics, read as words, not as their names."""
    ev = {"learned_well": False, "cured": False, "first_update_norm": 164.2, "first_weight_norm": 63.1,
          "first_update_ratio": 2.602, "weight_growth": 25.04, "loss_end_over_chance": 0.799,
          "loss_end_from": "the last logged batch losses", "eval_loss_end": 17120.4, "running_stats_steps": 3,
          "running_stats_warmup": 10}
    assert evidence_items(ev, (1, 55)) == [
        ("learned well", "no"), ("cured by training", "no"), ("first update (lr x step)", "164"),
        ("weights' norm at the first step", "63.1"), ("first update / weights (about 1e-3 is usual)", "2.6"),
        ("weights' norm, last / first logged step", "25"), ("loss at the end / chance", "0.799"),
        ("loss at the end, from", "the last logged batch losses"),
        ("eval-mode loss at the end (does not compare)", "1.71e+04"),
        ("steps of batch norm's running statistics", "3"), ("steps they need (1 / momentum)", "10"),
    ]


def test_the_where_column_says_what_the_layer_means():
    vanishing = {"kind": "vanishing", "layer": 18, "evidence": {"delta_ratio_first_last_hidden": 1e-30}}
    assert where(vanishing) == "from layer 18 down"
    assert where({"kind": "dead_units", "layer": 2, "evidence": {"frac_dead": {2: 0.6, 3: 0.9, 5: 0.7}}}) == \
        "layers 2-3, 5 (over 50%)"
    assert where({"kind": "exploding", "layer": 3, "evidence": {"diverged_layer": 3}}) == "layer 3, first NaN/Inf"
    assert where({"kind": "vanishing", "layer": 1, "evidence": {"T": 100}}) == "recurrent layer 1, through time"
    assert where({"kind": "healthy", "layer": None, "evidence": {}}) == "whole net"
    assert "<th class=\"text\">where</th>" in findings_table([vanishing])


def test_theory_rows_collapse_over_layers_with_the_same_prediction_and_mark_far_gains():
    def row(layer, chi, var, measured):
        return {"layer": layer, "init std": 0.01, "prescribed std": 0.125, "prescribed": "xavier_normal",
                "Var(z)": var, "E[phi'(z)^2]": chi / 0.0064, "chi": chi, "predicted gain": chi ** 0.5,
                "measured gain, step 0": measured}

    table = pd.DataFrame([row(2, 0.0004, 0.0064, 0.01), row(3, 0.0004, 0.0065, 0.04), row(4, 0.0004, 0.0066, 0.02),
                          row(5, 0.01, 0.0066, 0.5)])
    first, second = collapse(table)
    assert first["layers"] == "2-4" and second["layers"] == "5"
    mean, lo, hi = first["measured gain, step 0"]
    assert mean == pytest.approx((0.01 * 0.04 * 0.02) ** (1 / 3)) and (lo, hi) == (0.01, 0.04)
    assert first["Var(z)"] == (0.0064, 0.0066)
    assert first["far"] == [] and second["far"] == ["measured gain, step 0"]  # 0.02 against 0.02; 0.5 against 0.1: 5x
    page = theory_table([first, second])
    assert "<td>2-4</td>" in page and "<td>0.02 (0.01 to 0.04)</td>" in page and '<td class="far">0.5</td>' in page
    assert "<td>0.0064 to 0.0066</td>" in page


# --------------------------------------------------------------------------- the pages

@pytest.fixture(scope="module")
def sigmoid_run(tmp_path_factory) -> Path:
    """A 12-layer sigmoid net with std 0.01 (vanishing), 5 steps, and its report.html."""
    tmp = tmp_path_factory.mktemp("pages")
    folder = trained(tmp, config(tmp, SIGMOID, name="sigmoid"))
    assert invoke("report", folder).exit_code == 0
    return folder


def test_run_page_has_the_model_line_readable_evidence_and_collapsed_theory(sigmoid_run):
    page = (sigmoid_run / "report.html").read_text(encoding="utf-8")
    n = n_dense(16, 32) + 11 * n_dense(32, 32) + n_dense(32, 4)
    assert f'<p class="model">MLP 16 -&gt; 32 x 12 sigmoid (normal std=0.01) -&gt; 4, {n:,} parameters</p>' in page
    found = load_run(sigmoid_run)
    ratio = found.at(4).delta_norm[1] / found.at(4).delta_norm[12]
    assert f"<div>gradient reaching layer 1 / layer 12 = {ratio:.3g}</div>" in page
    assert re.search(r"<td class=\"text\">from layer \d+ down</td>", page)
    assert "<td>2-12</td>" in page  # one prediction for layers 2..12: one row
    assert '<ul class="lint"><li><code>model.init</code>: std 0.01 is 0.057x' in page
    text = re.sub(r'src="data:[^"]*"', "", page)
    assert not re.search(r"\d\.\d{6,}", text), re.search(r".{40}\d\.\d{6,}.{10}", text)


def test_run_page_in_chromium_decodes_its_images_and_fits_1400_px(sigmoid_run, tmp_path):
    facts = assert_readable(sigmoid_run / "report.html", tmp_path)
    assert facts["images"] >= 4 and facts["too_wide"] == []


SWEEP = """name: pivot
base: {seed: 0, data: {kind: blobs, n_samples: 128, n_features: 16, n_classes: 4},
       model: {depth: 6, width: 16, activation: sigmoid, init: xavier_normal},
       train: {steps: 4, batch_size: 32}, log: {every: 1, out: OUT}}
grid:
  model.depth: [2, 6]
  model.init: [xavier_normal, {scheme: normal, std: 0.01}]
seeds: [0, 1]
"""


@pytest.mark.slow  # 8 runs and the sweep's figures: about 10 s alone, more on a busy machine
def test_sweep_page_is_a_pivot_with_seed_counts_and_the_run_and_swept_keys_first(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(SWEEP.replace("OUT", str(tmp_path / "runs")), encoding="utf-8")
    result = invoke("sweep", spec, "--workers", "1", "--report", "-q")
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "runs").iterdir()
    page = (folder / "report.html").read_text(encoding="utf-8")
    head = re.search(r'<table class="compact summary">\s*<thead><tr>(.*?)</tr>', page).group(1)
    titles = re.findall(r"<th[^>]*>(.*?)</th>", head)
    assert [t.replace("<wbr>", "") for t in titles[:5]] == ["run", "model.depth", "model.init", "seed", "status"]
    sweep = load_sweep_dir(folder)
    assert [values for values, _ in combinations(sweep)] == [(2, "normal(std=0.01)"), (2, "xavier_normal"),
                                                            (6, "normal(std=0.01)"), (6, "xavier_normal")]
    rows = re.findall(r"<tr><td class=\"text\">(\d)</td><td class=\"text\">([^<]*)</td>", page)
    assert rows == [("2", "normal(std=0.01)"), ("2", "xavier_normal"), ("6", "normal(std=0.01)"),
                    ("6", "xavier_normal")]
    assert page.count("completed</span> 2/2") == 4  # two seeds per combination
    assert re.search(r'<span class="word bad">vanishing</span> 2/2', page)  # depth 6 at std 0.01, both seeds
    assert page.count("<details>") >= 4 + 2  # each combination's findings, the other columns, sweep.yaml
    assert "The same in every run: model.kind mlp, model.width 16" in page


@pytest.mark.slow  # 24 runs (depth up to 50) and the report's figures: 20-90 s on 2 shared cores
def test_the_page_of_sweep_depth_init_is_under_5000_px_at_1400_px_wide(tmp_path):
    """configs/sweep_depth_init.yaml with its 24 combinations, 3 steps on 64 samples instead of 100 on 512:
    the page's length is set by its 24 rows, its figures and the folded diagnosis, not by the steps."""
    result = invoke("sweep", ROOT / "configs" / "sweep_depth_init.yaml", "--set", f"log.out={tmp_path / 'runs'}",
                    "--set", "train.steps=3", "--set", "data.n_samples=64", "--workers", "2", "--report", "-q")
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "runs").iterdir()
    assert len(combinations(load_sweep_dir(folder))) == 24
    facts = assert_readable(folder / "report.html", tmp_path, max_height=5000)
    assert facts["images"] >= 2 and facts["too_wide"] == [], facts


def test_a_run_whose_summary_json_still_says_running_is_reported_as_not_finished(tmp_path):
    folder = trained(tmp_path, config(tmp_path, {"depth": 2, "width": 8, "activation": "tanh"}, name="killed"))
    for name in ("metrics.csv", "grad_norms.csv", "layer_stats.csv"):  # killed after its third step
        lines = (folder / name).read_text().splitlines(keepends=True)
        (folder / name).write_text(lines[0] + "".join(l for l in lines[1:] if int(l.split(",", 1)[0]) < 3))
    (folder / "summary.json").write_text('{"status": "running", "steps": 0}')
    note = ("summary.json still says running: the run is still running, or was stopped without finishing "
            "(killed); this diagnosis is of the 3 of 5 steps logged so far, not of a finished run.")
    result = invoke("report", folder)
    assert result.exit_code == 0, result.output
    assert note in " ".join(result.stdout.split())
    assert note in (folder / "report.html").read_text()
    finished = trained(tmp_path, config(tmp_path, {"depth": 2, "width": 8, "activation": "tanh"}, name="done"))
    assert not any("still says running" in n for n in gradlab.report(finished, write=False).notes)
