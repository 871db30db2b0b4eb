"""torch as an oracle: gradlab trains a small net and writes its run folder; the same net, rebuilt in torch
float64 from params_init.npz (tests/torch_replay.py: torch primitives, torch.autograd, torch.optim), replays
the same steps on the same batches; every number gradlab logged must agree.

Compared at every logged step: metrics.csv (loss, grad_norm, grad_norm_clipped, clipped, lr, epoch,
val_loss, val_accuracy), grad_norms.csv (grad_norm, weight_norm and layer of every tensor), layer_stats.csv
(delta_norm, act_mean, act_std), and for recurrent nets time_grad_norms.csv (||dL/dh_t||) and gate_stats.csv;
then params_final.npz. From gradlab come only the data set, the batch order and the dropout masks.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import yaml

import gradlab
from gradlab.nn.dropout import Dropout
from gradlab.train import batches
from optional import need_torch

# float64 carries 16 digits. gradlab and torch add in different orders (BLAS blocking, pairwise sums,
# hypot against a sum of squares, sigmoid through tanh, fused multiply-adds), which costs a few ulps per
# operation, and a few steps of a small net amplify that by its conditioning: measured at most ~1e-13. A
# formula that differs (Adam's bias correction or eps, a running variance, a gate, a clipping rule, a missing
# L2 term) moves these numbers by 1e-6 or more at these sizes. 1e-10 leaves a factor 1000 for other BLAS
# builds and CPUs and still sits far below any real error.
RTOL = 1e-10
# The CSV files hold 10 significant digits: what gradlab computed is off by at most half a unit of the 10th
# digit there, 5e-10 of the value; params_final.npz holds every bit.
WRITTEN = 5e-10
# Values below FLOOR are compared absolutely, to RTOL * FLOOR = 1e-15: a sum that cancels to exactly 0 on one
# side (an output bias after two value-clipped steps of opposite sign) is a few ulps of its terms on the other.
# Every other logged value of these runs is far above it.
FLOOR = 1e-5

MLP = {
    "name": "replay", "seed": 0,
    "data": {"kind": "spirals", "n_samples": 90, "noise": 0.1, "val_fraction": 0.2},  # 72 train: 4 batches + 8
    "model": {"depth": 3, "width": 8, "activation": "tanh", "init": "xavier_normal"},
    "loss": "cross_entropy",
    "train": {"optimizer": "sgd", "lr": 0.3, "batch_size": 16, "steps": 6},  # step 5 starts epoch 1
    "log": {"every": 1, "val_every": 1},
}
RNN = {
    "name": "replay", "seed": 0,
    "data": {"kind": "adding", "T": 8, "n_samples": 60, "val_fraction": 0.2},  # 48 train: 3 batches an epoch
    "model": {"kind": "rnn", "cell": "vanilla", "hidden": 5},
    "loss": "mse",
    "train": {"optimizer": "adam", "lr": 0.02, "batch_size": 16, "steps": 4},
    "log": {"every": 1, "val_every": 1},
}
COPY = {"kind": "copy", "T": 8, "length": 2, "n_symbols": 3, "n_samples": 60, "val_fraction": 0.2}


def case(name: str, base: dict, loss: str | None = None, **sections) -> pytest.param:
    """``base`` with each section updated by ``sections`` (``data`` with a new kind replaces the section)."""
    raw = {k: (dict(v) if isinstance(v, dict) else v) for k, v in base.items()}
    for key, value in sections.items():
        replace = key == "data" and value.get("kind", raw["data"]["kind"]) != raw["data"]["kind"]
        raw[key] = dict(value) if replace else {**raw[key], **value}
    raw["loss"] = loss or raw["loss"]
    return pytest.param(raw, id=name)


ACTIVATIONS = [
    case("activation-linear", MLP, model={"activation": "linear"}),
    case("activation-sigmoid", MLP, model={"activation": "sigmoid"}, train={"lr": 1.0}),
    case("activation-tanh", MLP),
    case("activation-relu", MLP, model={"activation": "relu", "init": "he_normal"}),
    case("activation-leaky_relu", MLP, model={"activation": {"name": "leaky_relu", "alpha": 0.2}, "init": "he_normal"}),
    case("activation-prelu", MLP, model={"activation": {"name": "prelu", "alpha": 0.1}, "init": "he_normal"}),
    case("activation-elu", MLP, model={"activation": {"name": "elu", "alpha": 0.7}}),
    case("activation-softplus", MLP, model={"activation": "softplus"}),
    case("activation-softsign", MLP, model={"activation": "softsign"}),
]
LAYERS = [
    case("batchnorm", MLP, model={"activation": "sigmoid", "batchnorm": True}),
    case("dropout", MLP, model={"activation": "relu", "init": "he_normal", "dropout": 0.3}),
    case("residual-true", MLP, model={"activation": "relu", "depth": 4, "residual": True,
                                      "init": {"scheme": "he_normal", "gain": 0.5}}),
    case("residual-3", MLP, model={"activation": "tanh", "depth": 5, "residual": 3}),
]
LOSSES = [
    case("loss-bce", MLP, loss="bce", data={"kind": "moons", "n_samples": 90, "val_fraction": 0.2}),
    case("loss-cross_entropy", MLP, data={"kind": "blobs", "n_features": 3, "n_classes": 3, "n_samples": 90}),
    case("loss-mse-regression", MLP, loss="mse", train={"lr": 0.05},
         data={"kind": "teacher", "n_features": 4, "n_outputs": 2, "n_samples": 90}),
]
OPTIMIZERS = [
    case("optimizer-sgd", MLP),
    case("optimizer-momentum", MLP, train={"optimizer": {"name": "momentum", "momentum": 0.8}}),
    # eps 1e-3 is comparable to sqrt(v_hat) here, so where eps sits in the formula shows
    case("optimizer-adam", MLP, train={"lr": 0.02,
                                       "optimizer": {"name": "adam", "beta1": 0.8, "beta2": 0.99, "eps": 1e-3}}),
]
CLIPPING = [  # thresholds below the gradient norms of these runs, so clipping acts
    case("clip-norm-global", MLP, train={"clip": {"mode": "norm", "threshold": 0.2, "scope": "global"}}),
    case("clip-norm-layer", MLP, train={"clip": {"mode": "norm", "threshold": 0.1, "scope": "layer"}}),
    case("clip-value", MLP, train={"clip": {"mode": "value", "threshold": 0.02}}),
    case("l2", MLP, train={"l2": 0.05, "optimizer": {"name": "momentum", "momentum": 0.9}}),
]
RECURRENT = [
    case("rnn-tanh-full", RNN),
    case("rnn-relu-truncated", RNN, model={"activation": "relu"}, train={"bptt": {"truncate": 3}, "clip": 0.5}),
    case("lstm-full", RNN, model={"cell": "lstm", "forget_bias": 0.5}),
    case("lstm-truncated-copy", RNN, loss="cross_entropy", data=COPY, model={"cell": "lstm"},
         train={"bptt": {"truncate": 3}}),
    case("gru-full", RNN, model={"cell": "gru"}),
    case("gru-truncated-copy", RNN, loss="cross_entropy", data=COPY, model={"cell": "gru"},
         train={"bptt": {"truncate": 3}}),
    case("rnn-tanh-copy", RNN, loss="cross_entropy", data=COPY, train={"optimizer": "momentum", "lr": 0.1}),
    case("gru-two-layers-truncated", RNN, model={"cell": "gru", "num_layers": 2}, train={"bptt": {"truncate": 3}}),
    case("lstm-two-layers-copy", RNN, loss="cross_entropy", data=COPY, model={"cell": "lstm", "num_layers": 2},
         train={"clip": {"mode": "norm", "threshold": 0.3, "scope": "layer"}}),
    # L2 covers every weight matrix of a recurrent net too (W and U of every gate), never biases
    case("lstm-l2", RNN, model={"cell": "lstm"}, train={"l2": 0.05}),
    case("rnn-l2", RNN, train={"l2": 0.05, "optimizer": "sgd", "lr": 0.1}),
]


@pytest.fixture
def dropout_masks(monkeypatch) -> dict[str, list[np.ndarray]]:
    """The keep masks gradlab's Dropout draws in training, by layer name, one per step."""
    masks: dict[str, list[np.ndarray]] = {}
    forward = Dropout.forward

    def recording(self, x, train=True):
        out = forward(self, x, train)
        if train and self.scale is not None:
            masks.setdefault(self.name, []).append(self.scale != 0)
        return out

    monkeypatch.setattr(Dropout, "forward", recording)
    return masks


@pytest.mark.parametrize("raw", ACTIVATIONS + LAYERS + LOSSES + OPTIMIZERS + CLIPPING + RECURRENT)
def test_every_logged_number_matches_a_torch_replay(tmp_path, raw, dropout_masks):
    need_torch()
    from torch_replay import replay

    config = load(tmp_path, raw)
    result = gradlab.train(config)
    assert result.status == "completed"
    run = Path(result.run_dir)
    s = gradlab.setup(config)  # the data set and a fresh batch generator, as the run had them
    order = batches(len(s.data.X_train), config.train.batch_size, config.train.shuffle, s.batch_rng)
    init = dict(np.load(run / "params_init.npz"))
    ours, final = replay(config, s.data, order, init, dropout_masks)
    theirs = logged(run)

    rows = differences(theirs, ours) + param_differences(dict(np.load(run / "params_final.npz")), final)
    worst = max(r[0] for r in rows)
    print(f"largest relative difference from torch: {worst:.1e}")  # shown with -rP
    bad = sorted((r for r in rows if not r[0] <= RTOL + (r[1][0] != "params_final.npz") * WRITTEN),
                 key=lambda r: (step_order(r[1][1]), -r[0]))
    assert not bad, f"{len(bad)} of {len(rows)} logged values differ from torch by more than {RTOL} " + \
        f"(+ {WRITTEN} in a CSV):\n" + \
        "\n".join(map(shown, bad[:15]))
    assert_case_is_exercised(config, theirs, init, dropout_masks)


def load(tmp_path: Path, raw: dict) -> gradlab.Config:
    raw = {**raw, "log": {**raw["log"], "out": str(tmp_path / "runs")}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return gradlab.load_config(path)


def assert_case_is_exercised(config, theirs: dict, init: dict, masks: dict) -> None:
    """What a case is for did happen: clipping acted, dropout dropped, the forget-gate bias was set."""
    steps = range(config.train.steps)
    if config.train.clip is not None:
        assert any(theirs[("metrics.csv", s, "clipped")] for s in steps), "the clip threshold never acted"
    if getattr(config.model, "dropout", 0):
        layers = range(1, config.model.depth + 1)
        assert {k: len(v) for k, v in masks.items()} == {f"dropout{l}": len(steps) for l in layers}
        assert 0 < np.mean([m.mean() for v in masks.values() for m in v]) < 1
    if getattr(config.model, "cell", None) == "lstm":
        assert np.all(init["lstm1.b_f"] == config.model.forget_bias) and np.all(init["lstm1.b_i"] == 0)


# --------------------------------------------------------------------------- gradlab's logs, keyed like the replay

def csv_rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def number(text: str) -> float | None:
    return None if text == "" else float(text)


def logged(run: Path) -> dict:
    """Every number of the run's CSV files, keyed (file, step, [layer | param | layer, t | layer, gate], column)."""
    out = {}
    for r in csv_rows(run / "metrics.csv"):
        s = int(r["step"])
        out[("metrics.csv", s, "epoch")] = int(r["epoch"])
        out[("metrics.csv", s, "clipped")] = r["clipped"] == "1"
        for col in ("loss", "grad_norm", "grad_norm_clipped", "lr", "val_loss", "val_accuracy"):
            out[("metrics.csv", s, col)] = number(r[col])
    for r in csv_rows(run / "grad_norms.csv"):
        s, p = int(r["step"]), r["param"]
        out[("grad_norms.csv", s, p, "layer")] = int(r["layer"])
        out.update({("grad_norms.csv", s, p, col): float(r[col]) for col in ("grad_norm", "weight_norm")})
    for r in csv_rows(run / "layer_stats.csv"):
        s, l = int(r["step"]), int(r["layer"])
        out.update({("layer_stats.csv", s, l, col): float(r[col]) for col in ("delta_norm", "act_mean", "act_std")})
    if (run / "time_grad_norms.csv").exists():
        for r in csv_rows(run / "time_grad_norms.csv"):
            key = ("time_grad_norms.csv", int(r["step"]), int(r["layer"]), int(r["t"]), "grad_norm")
            out[key] = float(r["grad_norm"])
        for r in csv_rows(run / "gate_stats.csv"):
            out[("gate_stats.csv", int(r["step"]), int(r["layer"]), r["gate"], "mean")] = float(r["mean"])
    return out


def relative(key: tuple, a, b, theirs: dict) -> float:
    """|a - b| / max(|a|, |b|, FLOOR) for floats (a mean against the spread of what it averages too: a mean
    near 0 of entries near 1 is a cancelling sum); 0 or inf for integers, flags and blanks."""
    if not (isinstance(a, float) and isinstance(b, float)):
        return 0.0 if a == b and type(a) is type(b) else math.inf
    scale = max(abs(a), abs(b), FLOOR)
    if key[-1] == "act_mean":
        scale = max(scale, theirs[key[:-1] + ("act_std",)])
    return abs(a - b) / scale


def differences(theirs: dict, ours: dict) -> list[tuple]:
    """(relative difference, key, gradlab's value, torch's value) of every logged value."""
    missing, extra = set(ours) - set(theirs), set(theirs) - set(ours)
    assert not missing and not extra, (f"not logged by gradlab: {sorted(missing, key=str)[:5]}; "
                                       f"not computed by the replay: {sorted(extra, key=str)[:5]}")
    return [(relative(k, a, ours[k], theirs), k, a, ours[k]) for k, a in theirs.items()]


def param_differences(saved: dict, final: dict) -> list[tuple]:
    """||W_gradlab - W_torch|| / max(||W_gradlab||, FLOOR) of every final tensor."""
    assert sorted(saved) == sorted(final)
    rows = []
    for k, W in saved.items():
        gap = float(np.linalg.norm(W - final[k]))
        rows.append((gap / max(float(np.linalg.norm(W)), FLOOR), ("params_final.npz", "end", k),
                     f"||W|| {np.linalg.norm(W):.6g}", f"||W - W_torch|| {gap:.3g}"))
    return rows


def step_order(step: int | str) -> float:
    return math.inf if step == "end" else step  # params_final.npz comes after every step


def shown(row: tuple) -> str:
    rel, key, a, b = row
    if key[0] == "params_final.npz":
        return f"  params_final.npz {key[2]}: {a}, {b} (rel {rel:.2e})"
    return f"  {key[0]} step {key[1]} {' '.join(map(str, key[2:]))}: gradlab {a!r}, torch {b!r} (rel {rel:.2e})"
