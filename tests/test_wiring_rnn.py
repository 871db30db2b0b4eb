"""The wiring around recurrent nets: truncated BPTT carries the state and cuts only the gradient, the
recurrent CSV files (time_grad_norms.csv, gate_stats.csv) hold what a hand computation gives, and
``train.l2`` reaches every weight matrix of every cell (W and U of each gate, the read-out's W), never
a bias, both in training and in the gradient check.

A vanilla tanh RNN and the forward passes of an LSTM and a GRU are written out here in plain NumPy,
from the run's own initial parameters; with ``batch_size: full`` the batch is the training set in order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gradlab

T, H = 9, 5
GATES = {"vanilla": ("",), "lstm": ("i", "f", "o", "g"), "gru": ("r", "z", "n")}
WRITTEN = 5e-10  # the CSVs hold 10 significant digits: a value there is off by half a unit of the 10th at most


def rnn_config(tmp_path: Path, cell: str = "vanilla", truncate: int | None = None, **train):
    raw = {
        "name": "wiring-rnn", "seed": 2,
        "data": {"kind": "adding", "T": T, "n_samples": 40, "val_fraction": 0.25},
        "model": {"kind": "rnn", "cell": cell, "hidden": H, "init": {"scheme": "normal", "std": 0.7},
                  "recurrent_init": {"scheme": "normal", "std": 0.7}, "bias_init": 0.1},
        "loss": "mse",
        "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": "full", "steps": 1,
                  "bptt": {"truncate": truncate} if truncate else None, **train},
        "log": {"every": 1, "out": str(tmp_path)},
    }
    return gradlab.config_from_dict(raw)


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def names(cell: str) -> tuple[str, ...]:
    """The parameters of a one-layer net of ``cell``, written out: the cell's W, U and b per gate, the read-out."""
    prefix = "rnn1" if cell == "vanilla" else f"{cell}1"
    return (*(f"{prefix}.{k}{'_' + g if g else ''}" for k in "WUb" for g in GATES[cell]), "dense2.W", "dense2.b")


def weight_matrices(cell: str) -> set[str]:
    """What train.l2 penalises: every W and U (each gate's), and the read-out's W."""
    return {n for n in names(cell) if n.split(".")[1][0] in "WU"}


# --------------------------------------------------------------------------- a vanilla RNN by hand

def vanilla_by_hand(P: dict, X: np.ndarray, y: np.ndarray, truncate: int | None = None) -> dict:
    """h_t = tanh(x_t W + h_{t-1} U + b), z = h_T Wd + bd, J = mean (z - y)^2 with y (N, 1); BPTT written
    out, with dL/dh_t cut at every chunk start t = k, 2k, ... when truncated."""
    W, U, b, Wd, bd = (P[k] for k in ("rnn1.W", "rnn1.U", "rnn1.b", "dense2.W", "dense2.b"))
    N, steps, _ = X.shape
    hs = [np.zeros((N, U.shape[0]))]
    for t in range(steps):
        hs.append(np.tanh(X[:, t] @ W + hs[-1] @ U + b))
    z = hs[-1] @ Wd + bd
    J = float(np.mean((z - y) ** 2))
    dz = 2.0 * (z - y) / N
    g = {"dense2.W": hs[-1].T @ dz, "dense2.b": dz.sum(axis=0),
         "rnn1.W": np.zeros_like(W), "rnn1.U": np.zeros_like(U), "rnn1.b": np.zeros_like(b)}
    from_above = np.zeros((N, steps, U.shape[0]))
    from_above[:, -1] = dz @ Wd.T  # the read-out sees the last step only
    norms = np.zeros(steps)
    dh_next = np.zeros_like(hs[0])
    for t in range(steps - 1, -1, -1):
        dh = from_above[:, t] + dh_next  # dL/dh_t: from the read-out and from step t+1
        norms[t] = np.linalg.norm(dh)
        da = dh * (1.0 - hs[t + 1] ** 2)
        g["rnn1.W"] += X[:, t].T @ da
        g["rnn1.U"] += hs[t].T @ da
        g["rnn1.b"] += da.sum(axis=0)
        dh_next = da @ U.T
        if truncate and t > 0 and t % truncate == 0:
            dh_next = np.zeros_like(dh_next)
    return {"J": J, "h": np.stack(hs[1:], axis=1), "grads": g, "time_norms": norms, "dout": from_above, "z": z}


def gates_by_hand(cell: str, P: dict, X: np.ndarray) -> dict[str, np.ndarray]:
    """The gates of an LSTM or GRU forward pass, (N, T, H) each."""
    p = {k.split(".")[1]: v for k, v in P.items() if k.startswith(cell)}
    N = len(X)
    h, c = np.zeros((N, H)), np.zeros((N, H))
    seen = {g: [] for g in GATES[cell]}

    def pre(g, x, hh):
        return x @ p[f"W_{g}"] + hh @ p[f"U_{g}"] + p[f"b_{g}"]

    for t in range(X.shape[1]):
        x = X[:, t]
        if cell == "lstm":
            i, f, o, g = sigmoid(pre("i", x, h)), sigmoid(pre("f", x, h)), sigmoid(pre("o", x, h)), np.tanh(pre("g", x, h))
            c = f * c + i * g
            h = o * np.tanh(c)
            now = {"i": i, "f": f, "o": o, "g": g}
        else:
            r, z = sigmoid(pre("r", x, h)), sigmoid(pre("z", x, h))
            n = np.tanh(x @ p["W_n"] + (r * h) @ p["U_n"] + p["b_n"])
            h = (1.0 - z) * n + z * h
            now = {"r": r, "z": z, "n": n}
        for k in seen:
            seen[k].append(now[k])
    return {k: np.stack(v, axis=1) for k, v in seen.items()}


def train_batch(cfg):
    s = gradlab.setup(cfg)
    return s, s.data.X_train, s.data.y_train


def load(run_dir, name: str) -> dict:
    with np.load(Path(run_dir) / name) as f:
        return {k: f[k] for k in f.files}


def read(run_dir, name: str) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / name)


def assert_params(actual: dict, expected: dict, rtol: float = 1e-10) -> None:
    assert sorted(actual) == sorted(expected)
    for k in expected:
        np.testing.assert_allclose(actual[k], expected[k], rtol=rtol, atol=1e-14, err_msg=k)


# --------------------------------------------------------------------------- 6. truncated BPTT

def test_truncated_bptt_carries_the_state_and_cuts_only_the_gradient(tmp_path):
    k = 3  # 9 steps: chunks start at steps 4 and 7 (t = 3 and 6 counted from 0)
    full, X, y = train_batch(rnn_config(tmp_path))
    cut, _, _ = train_batch(rnn_config(tmp_path, truncate=k))
    P = {n: v.copy() for n, v in full.model.params.items()}
    assert_params(cut.model.params, P, rtol=0)  # truncation changes nothing of the init
    J_full = full.model.loss_and_grads(X, y, full.loss)
    J_cut = cut.model.loss_and_grads(X, y, cut.loss)

    # the forward pass is the same: the state is carried across chunk starts
    h_full, h_cut = full.model.layers[0].modules[0].out, cut.model.layers[0].modules[0].out
    np.testing.assert_array_equal(h_cut, h_full)
    assert J_cut == J_full
    by_hand, by_hand_cut = vanilla_by_hand(P, X, y), vanilla_by_hand(P, X, y, truncate=k)
    np.testing.assert_allclose(h_full, by_hand["h"], rtol=1e-12)
    assert J_full == pytest.approx(by_hand["J"], rel=1e-12)

    # the gradient is not: each equals its own hand computation, and they differ
    assert_params(full.model.grads, by_hand["grads"])
    assert_params(cut.model.grads, by_hand_cut["grads"])
    for n in ("rnn1.W", "rnn1.U", "rnn1.b"):
        gap = np.linalg.norm(by_hand["grads"][n] - by_hand_cut["grads"][n]) / np.linalg.norm(by_hand["grads"][n])
        assert gap > 1e-3, n

    # and through gradlab.train: the same logged loss, the update by the truncated gradient
    lr = 0.1
    runs = {trunc: gradlab.train(rnn_config(tmp_path / str(trunc), truncate=trunc, lr=lr)) for trunc in (None, k)}
    assert read(runs[k].run_dir, "metrics.csv").loss[0] == read(runs[None].run_dir, "metrics.csv").loss[0]
    assert_params(load(runs[k].run_dir, "params_final.npz"), {n: P[n] - lr * by_hand_cut["grads"][n] for n in P})


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_truncation_leaves_every_cells_forward_pass_unchanged(tmp_path, cell):
    full, X, y = train_batch(rnn_config(tmp_path, cell))
    cut, _, _ = train_batch(rnn_config(tmp_path, cell, truncate=3))
    J_full = full.model.loss_and_grads(X, y, full.loss)
    J_cut = cut.model.loss_and_grads(X, y, cut.loss)
    np.testing.assert_array_equal(cut.model.layers[0].modules[0].out, full.model.layers[0].modules[0].out)
    assert J_cut == J_full
    U = f"{cell}1.U_{GATES[cell][0]}"
    assert not np.allclose(cut.model.grads[U], full.model.grads[U], rtol=1e-3)


# --------------------------------------------------------------------------- 7. the recurrent CSV files

@pytest.mark.parametrize("truncate", [None, 3], ids=["full", "truncated"])
def test_recurrent_csvs_hold_the_hand_computed_values(tmp_path, truncate):
    cfg = rnn_config(tmp_path, truncate=truncate)
    _, X, y = train_batch(cfg)
    result = gradlab.train(cfg)
    P = load(result.run_dir, "params_init.npz")
    ref = vanilla_by_hand(P, X, y, truncate)

    times = read(result.run_dir, "time_grad_norms.csv")
    t0 = times[times.step == 0].sort_values("t")
    assert t0.layer.tolist() == [1] * T and t0.t.tolist() == list(range(1, T + 1))
    assert t0.lag.tolist() == list(range(T - 1, -1, -1))
    np.testing.assert_allclose(t0.grad_norm, ref["time_norms"], rtol=1e-10 + WRITTEN, atol=0)
    if truncate:  # the loss is at the last step: nothing reaches the steps before the last chunk (7..9)
        assert (t0.grad_norm.iloc[:6] == 0).all() and (t0.grad_norm.iloc[6:] > 0).all()
    else:
        assert (t0.grad_norm > 0).all()

    metrics = read(result.run_dir, "metrics.csv")
    assert metrics.loss[0] == pytest.approx(ref["J"], rel=1e-12 + WRITTEN)
    assert metrics.grad_norm[0] == pytest.approx(
        np.sqrt(sum(np.sum(g * g) for g in ref["grads"].values())), rel=1e-10 + WRITTEN)
    stats = read(result.run_dir, "layer_stats.csv").set_index("layer")
    h = ref["h"]
    assert stats.act_mean[1] == pytest.approx(h.mean(), rel=1e-10 + WRITTEN)
    assert stats.act_std[1] == pytest.approx(h.std(), rel=1e-10 + WRITTEN)
    assert stats.frac_saturated[1] == pytest.approx(np.mean(1.0 - h * h < 0.05), rel=1e-12 + WRITTEN)
    assert stats.delta_norm[1] == pytest.approx(np.linalg.norm(ref["dout"]), rel=1e-10 + WRITTEN)
    assert stats.act_mean[2] == pytest.approx(ref["z"].mean(), rel=1e-10 + WRITTEN)
    assert stats.delta_norm[2] == pytest.approx(np.linalg.norm(2.0 * (ref["z"] - y) / len(y)), rel=1e-10 + WRITTEN)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_gate_stats_hold_the_mean_of_each_gate(tmp_path, cell):
    cfg = rnn_config(tmp_path, cell, steps=2)
    _, X, _ = train_batch(cfg)
    result = gradlab.train(cfg)
    P = load(result.run_dir, "params_init.npz")
    gates = gates_by_hand(cell, P, X)
    logged = read(result.run_dir, "gate_stats.csv")
    at0 = logged[logged.step == 0].set_index("gate")
    watched = {"lstm": ("i", "f", "o"), "gru": ("r", "z")}[cell]
    assert sorted(at0.index) == sorted(watched) and (at0.layer == 1).all()
    for g in watched:
        assert at0["mean"][g] == pytest.approx(gates[g].mean(), rel=1e-12 + WRITTEN), g
    assert len(logged[logged.step == 1]) == len(watched)
    assert not np.allclose(logged[logged.step == 1]["mean"], at0["mean"], rtol=1e-12, atol=0)  # after an update


# --------------------------------------------------------------------------- L2 on every weight matrix

@pytest.mark.parametrize("cell", ["vanilla", "lstm", "gru"])
def test_l2_moves_every_weight_matrix_of_a_recurrent_net_and_no_bias(tmp_path, cell):
    lr, l2 = 0.1, 0.25
    cfg = rnn_config(tmp_path, cell, lr=lr, l2=l2)
    s, X, y = train_batch(cfg)
    P0 = {n: v.copy() for n, v in s.model.params.items()}
    assert sorted(P0) == sorted(names(cell))
    s.model.loss_and_grads(X, y, s.loss, 0.0)  # the data loss's gradient alone, at the initial parameters
    g = {n: v.copy() for n, v in s.model.grads.items()}
    if cell == "vanilla":
        assert_params(g, vanilla_by_hand(P0, X, y)["grads"])
    result = gradlab.train(cfg)
    decayed = weight_matrices(cell)
    expected = {n: P0[n] - lr * (g[n] + l2 * P0[n]) if n in decayed else P0[n] - lr * g[n] for n in P0}
    assert_params(load(result.run_dir, "params_final.npz"), expected)
    penalty = 0.5 * l2 * sum(float(np.sum(P0[n] ** 2)) for n in decayed)
    data_loss = float(np.mean((s.model.forward(X) - y) ** 2))
    assert read(result.run_dir, "metrics.csv").loss[0] == pytest.approx(data_loss + penalty, rel=1e-12 + WRITTEN)


@pytest.mark.parametrize("cell", ["vanilla", "lstm", "gru"])
def test_gradient_check_with_l2_checks_the_penalty_on_every_weight_matrix(tmp_path, cell):
    l2 = 0.5
    reports = {}
    for penalty in (0.0, l2):
        cfg = rnn_config(tmp_path, cell, truncate=4, l2=penalty)
        reports[penalty] = gradlab.check(cfg.model_copy(update={"check": cfg.check.model_copy(update={"mode": "full"})}))
        assert reports[penalty].passed and reports[penalty].tier == "good", [(t.name, t.tier) for t in
                                                                              reports[penalty].failed]
    P = gradlab.setup(rnn_config(tmp_path, cell)).model.params
    with_l2 = {b.param: b for b in reports[l2].blocks}
    without = {b.param: b for b in reports[0.0].blocks}
    decayed = weight_matrices(cell)
    for n in names(cell):  # the analytic gradient the check compared grew by l2 W exactly where it should
        shift = with_l2[n].analytic - without[n].analytic
        np.testing.assert_allclose(shift, l2 * P[n].ravel() if n in decayed else 0.0, rtol=1e-9, atol=1e-12,
                                   err_msg=n)
        np.testing.assert_allclose(with_l2[n].numeric - without[n].numeric, shift, rtol=1e-5, atol=1e-7,
                                   err_msg=n)
