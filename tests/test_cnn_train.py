"""A conv net from model.kind cnn trains as any net does: its backward pass, end to end, against centred
differences; its loss falls on a tiny image task; its logs name conv and residual tensors and hold a row per
logged layer."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

import gradlab
from gradlab.check import centred_difference, rel_error
from gradlab.config import config_from_dict
from gradlab.describe import run_model_line
from gradlab.nn import make_loss
from gradlab.nn.cnn import build_cnn
from gradlab.report.load import load_run

TOL = 1e-7


def config(tmp_path, steps: int = 40, **model) -> gradlab.config.Config:
    return config_from_dict({
        "name": "tiny_cnn", "seed": 3,
        "data": {"kind": "shapes", "size": 6, "n_samples": 96, "noise": 0.1},
        "model": {"kind": "cnn", "channels": [4, 6], "depth": 1, **model},
        "train": {"steps": steps, "lr": 0.05, "batch_size": 32, "optimizer": "adam"},
        "log": {"out": str(tmp_path / "runs"), "val_every": 10},
    })


def rows(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("model", [
    {"channels": [2, 3], "depth": 2, "pool": "avg", "activation": "tanh", "head": "flatten", "bias_init": 0.1},
    {"channels": [2, 3], "depth": 2, "residual": True, "batchnorm": True, "pool": "none", "activation": "softplus"},
    {"channels": [2, 3], "depth": 2, "residual": True, "batchnorm": False, "activation": "elu"},
    {"layers": [{"type": "conv", "channels": 3, "stride": 2}, {"type": "batchnorm"},
                {"type": "activation", "name": "sigmoid"}, {"type": "residual", "channels": 2, "activation": "tanh"},
                {"type": "activation", "name": "tanh"}, {"type": "gap"}, {"type": "dense", "units": 4},
                {"type": "batchnorm"}, {"type": "activation", "name": "tanh"}], "init": "xavier_normal"},
])
def test_built_net_backward_matches_centred_differences(model):
    """The whole net's gradients (every tensor, and the input's) from build_cnn's wiring, in float64: smooth
    activations and no max pool, so no kink sits within a step of any entry."""
    cfg = config_from_dict({"data": {"kind": "shapes"}, "model": {"kind": "cnn", **model}}).model
    rng = np.random.default_rng(0)
    net = build_cnn(cfg, (5, 5, 2), 3, rng, np.random.default_rng(1))
    for p in net.params.values():  # away from the defaults (gamma 1, beta 0, zero biases)
        p += 0.1 * rng.standard_normal(p.shape)
    x, y, loss = rng.standard_normal((3, 5, 5, 2)), np.array([0, 2, 1]), make_loss("cross_entropy")

    def J() -> float:
        return loss.forward(net.forward(x), y)

    J()
    dx = net.backward(loss.backward())
    analytic = {k: g.copy() for k, g in net.grads.items()}
    assert rel_error(dx, centred_difference(J, x)) < TOL
    for name, p in net.params.items():
        assert rel_error(analytic[name], centred_difference(J, p)) < TOL, name


def test_a_tiny_cnn_learns_the_shapes(tmp_path):
    result = gradlab.train(config(tmp_path, steps=60))
    assert result.status == "completed"
    metrics = rows(Path(result.run_dir) / "metrics.csv")
    first, last = float(metrics[0]["loss"]), result.final["final_train_loss"]
    assert last < 0.7 * first, (first, last)
    assert result.final["final_train_accuracy"] > 0.6  # three classes: chance is 1/3


def test_logs_name_conv_tensors_and_hold_a_row_per_logged_layer(tmp_path):
    result = gradlab.train(config(tmp_path, steps=3, batchnorm=True))
    grads = rows(Path(result.run_dir) / "grad_norms.csv")
    step0 = [(r["layer"], r["param"]) for r in grads if r["step"] == "0"]
    assert step0 == [("1", "conv1.W"), ("1", "bn1.gamma"), ("1", "bn1.beta"), ("2", "conv2.W"), ("2", "bn2.gamma"),
                     ("2", "bn2.beta"), ("3", "conv3.W"), ("3", "bn3.gamma"), ("3", "bn3.beta"), ("4", "dense4.W"),
                     ("4", "dense4.b")]
    assert all(float(r["grad_norm"]) > 0 for r in grads)
    stats = rows(Path(result.run_dir) / "layer_stats.csv")
    assert [(r["step"], r["layer"]) for r in stats] == [(str(s), str(l)) for s in range(3) for l in range(1, 5)]
    for r in stats:
        if r["layer"] != "4":  # relu: dead is a fraction of (position, channel) units, saturation does not apply
            assert 0.0 <= float(r["frac_dead"]) <= 1.0 and r["frac_saturated"] == ""
        assert float(r["delta_norm"]) > 0


def test_a_residual_run_logs_its_blocks_and_their_projections(tmp_path):
    result = gradlab.train(config(tmp_path, steps=2, channels=[4, 6], depth=2, residual=True, batchnorm=True))
    names = {r["param"] for r in rows(Path(result.run_dir) / "grad_norms.csv")}
    assert {"res2.W_a", "res2.W_b", "res3.W_proj", "res3.gamma_proj", "res3.W_b"} <= names
    assert "res2.W_proj" not in names and "dense4.W" in names
    init = np.load(Path(result.run_dir) / "params_init.npz")
    assert init["res3.W_proj"].shape == (1, 1, 4, 6) and init["res3.W_a"].shape == (3, 3, 4, 6)
    assert "CNN 6x6x1 -> conv3x3 4 bn -> res3x3 4 bn -> maxpool -> res3x3 6 bn -> gap -> 3" in \
        run_model_line(load_run(Path(result.run_dir)))
