"""The wiring around the maths, through gradlab.train: what the optimizer receives (clipped gradients,
the L2 term), how the optimizers carry their state between steps, and what the CSV files hold.

Every expected number comes from a plain NumPy MLP written out below (forward, backward, clipping and
the update rules by hand), started from the run's own params_init.npz on its first batch. With
``batch_size: full`` the batch is the whole training set in order, so no batch sampling is involved.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gradlab
from gradlab.optim import Adam, Momentum

ACTS = ("tanh", "relu", "sigmoid")  # the hidden layers, in order; the output layer is linear
WIDTHS = (6, 8, 5)
RTOL = 1e-10
CSV_RTOL = RTOL + 5e-10  # the CSVs hold 10 significant digits: half a unit of the 10th is 5e-10 of a value at most


def mlp_config(tmp_path: Path, **train):
    raw = {
        "name": "wiring", "seed": 3,
        "data": {"kind": "spirals", "n_samples": 60, "val_fraction": 0.25},
        # std 1 and bias -0.5: some tanh and sigmoid units saturate and one ReLU unit of 8 is dead
        "model": {"init": {"scheme": "normal", "std": 1.0}, "bias_init": -0.5,
                  "layers": [item for units, act in zip(WIDTHS, ACTS)
                             for item in ({"type": "dense", "units": units}, {"type": "activation", "name": act})]},
        "loss": "cross_entropy",
        "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": "full", "steps": 1, **train},
        "log": {"every": 1, "out": str(tmp_path)},
    }
    return gradlab.config_from_dict(raw)


# --------------------------------------------------------------------------- the MLP by hand

def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


PHI = {"tanh": (np.tanh, lambda a: 1.0 - a * a),
       "relu": (lambda z: np.maximum(z, 0.0), lambda a: (a > 0).astype(float)),
       "sigmoid": (sigmoid, lambda a: a * (1.0 - a))}


def log_softmax(z):
    s = z - z.max(axis=1, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


def forward(P: dict, X: np.ndarray) -> list[np.ndarray]:
    """[x, a_1, ..., a_L, logits]: every layer's output."""
    h = [X]
    for l in range(1, len(ACTS) + 2):
        z = h[-1] @ P[f"dense{l}.W"] + P[f"dense{l}.b"]
        h.append(PHI[ACTS[l - 1]][0](z) if l <= len(ACTS) else z)
    return h


def cross_entropy(logits, y) -> float:
    return float(-np.mean(log_softmax(logits)[np.arange(len(y)), y]))


def reference(P: dict, X: np.ndarray, y: np.ndarray) -> dict:
    """Loss, gradients, deltas (dL/d output of each layer) and outputs, by the chain rule written out."""
    h = forward(P, X)
    L = len(ACTS) + 1
    onehot = np.eye(h[-1].shape[1])[y]
    delta = {L: (np.exp(log_softmax(h[-1])) - onehot) / len(X)}
    grads = {}
    for l in range(L, 0, -1):
        dz = delta[l] * PHI[ACTS[l - 1]][1](h[l]) if l <= len(ACTS) else delta[l]
        grads[f"dense{l}.W"] = h[l - 1].T @ dz
        grads[f"dense{l}.b"] = dz.sum(axis=0)
        if l > 1:
            delta[l - 1] = dz @ P[f"dense{l}.W"].T
    return {"loss": cross_entropy(h[-1], y), "grads": grads, "h": h, "delta": delta}


def global_norm(g: dict) -> float:
    return math.sqrt(sum(float(np.sum(v * v)) for v in g.values()))


def clip_by_hand(g: dict, clip: dict | None) -> dict:
    if clip is None:
        return g
    t = clip["threshold"]
    if clip.get("mode") == "value":
        return {k: np.minimum(np.maximum(v, -t), t) for k, v in g.items()}
    if clip.get("scope") == "layer":
        return {k: v * (t / np.linalg.norm(v)) if np.linalg.norm(v) > t else v for k, v in g.items()}
    total = global_norm(g)
    return {k: v * (t / total) for k, v in g.items()} if total > t else g


def data_of(cfg):
    d = gradlab.setup(cfg).data
    return d.X_train, d.y_train, d.X_val, d.y_val


def params_at_init(cfg) -> dict:
    """The initial parameters, from a fresh model of the same seed."""
    return {k: v.copy() for k, v in gradlab.setup(cfg).model.params.items()}


def load(run_dir, name: str) -> dict:
    with np.load(Path(run_dir) / name) as f:
        return {k: f[k] for k in f.files}


def read(run_dir, name: str) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / name)


def assert_params(actual: dict, expected: dict, rtol: float = RTOL) -> None:
    assert sorted(actual) == sorted(expected)
    for k in expected:
        np.testing.assert_allclose(actual[k], expected[k], rtol=rtol, atol=1e-14, err_msg=k)


# --------------------------------------------------------------------------- 1. clipping reaches the update

def thresholds(g: dict) -> dict[str, dict]:
    """A threshold that acts, per clipping mode: half the global norm, the median tensor norm, the median |entry|."""
    norms = sorted(float(np.linalg.norm(v)) for v in g.values())
    entries = np.abs(np.concatenate([v.ravel() for v in g.values()]))
    return {"global": {"threshold": 0.5 * global_norm(g)},
            "layer": {"mode": "norm", "scope": "layer", "threshold": norms[len(norms) // 2]},
            "value": {"mode": "value", "threshold": float(np.median(entries))}}


@pytest.mark.parametrize("kind", ["global", "layer", "value"])
def test_one_step_applies_the_clipped_gradient(tmp_path, kind):
    probe = mlp_config(tmp_path)
    X, y, _, _ = data_of(probe)
    P0 = params_at_init(probe)
    g = reference(P0, X, y)["grads"]
    clip = thresholds(g)[kind]
    clipped = clip_by_hand(g, clip)
    changed = sum(int(np.count_nonzero(clipped[k] != g[k])) for k in g)
    nonzero = sum(int(np.count_nonzero(v)) for v in g.values())
    assert changed == nonzero if kind == "global" else 0 < changed < nonzero  # it acts (layer, value: on a part)

    lr = 0.1
    result = gradlab.train(mlp_config(tmp_path, clip=clip, lr=lr))
    assert_params(load(result.run_dir, "params_init.npz"), P0, rtol=0)
    assert_params(load(result.run_dir, "params_final.npz"), {k: P0[k] - lr * clipped[k] for k in P0})


# --------------------------------------------------------------------------- 2. L2 reaches the update

def test_l2_moves_weights_by_lr_g_plus_l2_w_and_biases_by_lr_g(tmp_path):
    lr, l2 = 0.1, 0.3
    cfg = mlp_config(tmp_path, lr=lr, l2=l2)
    X, y, _, _ = data_of(cfg)
    P0 = params_at_init(cfg)
    g = reference(P0, X, y)["grads"]  # the data loss's gradient alone
    result = gradlab.train(cfg)
    expected = {k: P0[k] - lr * (g[k] + l2 * P0[k]) if k.endswith(".W") else P0[k] - lr * g[k] for k in P0}
    assert_params(load(result.run_dir, "params_final.npz"), expected)
    data_loss = reference(P0, X, y)["loss"]
    penalty = 0.5 * l2 * sum(float(np.sum(P0[k] ** 2)) for k in P0 if k.endswith(".W"))
    assert read(result.run_dir, "metrics.csv").loss[0] == pytest.approx(data_loss + penalty, rel=CSV_RTOL)


def test_l2_leaves_batchnorm_and_prelu_parameters_alone(tmp_path):
    lr, l2 = 0.1, 0.3
    cfg = gradlab.config_from_dict({
        "name": "wiring-bn", "seed": 1, "data": {"kind": "spirals", "n_samples": 40},
        "model": {"depth": 2, "width": 6, "activation": "prelu", "batchnorm": True},
        "train": {"optimizer": "sgd", "lr": lr, "batch_size": "full", "steps": 1, "l2": l2},
        "log": {"out": str(tmp_path)}})
    s = gradlab.setup(cfg)
    P0 = {k: v.copy() for k, v in s.model.params.items()}
    s.model.loss_and_grads(s.data.X_train, s.data.y_train, s.loss, 0.0)  # the data loss's gradient alone
    g = s.model.grads
    weights = {"dense1.W", "dense2.W", "dense3.W"}
    assert weights < set(P0) and {"bn1.gamma", "bn1.beta", "prelu1.alpha", "dense3.b"} < set(P0)
    result = gradlab.train(cfg)
    expected = {k: P0[k] - lr * (g[k] + l2 * P0[k]) if k in weights else P0[k] - lr * g[k] for k in P0}
    assert_params(load(result.run_dir, "params_final.npz"), expected)


# --------------------------------------------------------------------------- 3, 4. optimizers over several steps

def adam_by_hand(lr, b1, b2, eps):
    """Kingma & Ba 2015, with bias correction; eps added to sqrt(v_hat), outside the correction."""
    state = {"t": 0, "m": {}, "v": {}}

    def step(P, g):
        state["t"] += 1
        t = state["t"]
        out = {}
        for k in P:
            m = b1 * state["m"].get(k, 0.0) + (1 - b1) * g[k]
            v = b2 * state["v"].get(k, 0.0) + (1 - b2) * g[k] ** 2
            state["m"][k], state["v"][k] = m, v
            out[k] = P[k] - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
        return out

    return step


def momentum_by_hand(lr, mu):
    """v <- mu v - lr g ; p <- p + v."""
    vel = {}

    def step(P, g):
        out = {}
        for k in P:
            vel[k] = mu * vel.get(k, 0.0) - lr * g[k]
            out[k] = P[k] + vel[k]
        return out

    return step


def changing_gradients(n_steps: int) -> list[dict]:
    """Gradients of two tensors whose size and sign change from step to step."""
    rng = np.random.default_rng(7)
    return [{"w": rng.standard_normal((3, 2)) * 10.0 ** rng.uniform(-3, 0), "b": rng.standard_normal(2) * (k - 2)}
            for k in range(n_steps)]


@pytest.mark.parametrize("make, by_hand", [
    (lambda: Adam(0.05, beta1=0.5, beta2=0.99, eps=1e-3), lambda: adam_by_hand(0.05, 0.5, 0.99, 1e-3)),
    (lambda: Adam(0.01, beta1=0.95, beta2=0.6, eps=1e-8), lambda: adam_by_hand(0.01, 0.95, 0.6, 1e-8)),
    (lambda: Momentum(0.1, momentum=0.8), lambda: momentum_by_hand(0.1, 0.8)),
], ids=["adam-b1<b2", "adam-b1>b2", "momentum"])
def test_optimizer_state_over_six_steps_matches_the_update_rule(make, by_hand):
    opt, step = make(), by_hand()
    P = {"w": np.arange(6.0).reshape(3, 2) / 7, "b": np.array([0.3, -0.2])}
    expected = {k: v.copy() for k, v in P.items()}
    for g in changing_gradients(6):
        opt.step(P, {k: v.copy() for k, v in g.items()})
        expected = step(expected, g)
        assert_params(P, expected, rtol=1e-13)


@pytest.mark.parametrize("optimizer, by_hand", [
    ({"name": "adam", "beta1": 0.5, "beta2": 0.99, "eps": 1e-3}, lambda lr: adam_by_hand(lr, 0.5, 0.99, 1e-3)),
    ({"name": "momentum", "momentum": 0.7}, lambda lr: momentum_by_hand(lr, 0.7)),
], ids=["adam", "momentum"])
def test_training_with_stateful_optimizers_matches_a_hand_loop(tmp_path, optimizer, by_hand):
    lr, steps = 0.05, 5
    cfg = mlp_config(tmp_path, optimizer=optimizer, lr=lr, steps=steps)
    X, y, _, _ = data_of(cfg)
    result = gradlab.train(cfg)
    P = load(result.run_dir, "params_init.npz")
    step = by_hand(lr)
    losses = []
    for _ in range(steps):  # full batch: the gradient changes only because the parameters do
        ref = reference(P, X, y)
        losses.append(ref["loss"])
        P = step(P, ref["grads"])
    assert_params(load(result.run_dir, "params_final.npz"), P, rtol=1e-9)
    np.testing.assert_allclose(read(result.run_dir, "metrics.csv").loss, losses, rtol=1e-10)


# --------------------------------------------------------------------------- 7. the CSV files

def layer_rows(ref: dict) -> list[dict]:
    """What layer_stats.csv should hold for one pass: statistics of each layer's output, and delta_norm."""
    rows = []
    for l in range(1, len(ACTS) + 2):
        a = ref["h"][l]
        act = ACTS[l - 1] if l <= len(ACTS) else None
        saturated = {"tanh": np.mean(np.abs(a) > np.sqrt(0.95)), "sigmoid": np.mean(a * (1 - a) < 0.05 * 0.25)}
        rows.append({"layer": l, "act_mean": a.mean(), "act_std": a.std(),
                     "frac_saturated": saturated.get(act, np.nan),
                     "frac_dead": np.mean(~(a > 0).any(axis=0)) if act == "relu" else np.nan,
                     "delta_norm": np.linalg.norm(ref["delta"][l])})
    return rows


def test_csv_values_are_those_of_a_hand_computation(tmp_path):
    lr = 0.1
    probe = mlp_config(tmp_path)
    X, y, X_val, y_val = data_of(probe)
    P = params_at_init(probe)
    clip = {"threshold": 0.5 * global_norm(reference(P, X, y)["grads"])}  # acts at step 0
    result = gradlab.train(mlp_config(tmp_path, lr=lr, steps=2, clip=clip))
    run = result.run_dir
    metrics, grads, stats = read(run, "metrics.csv"), read(run, "grad_norms.csv"), read(run, "layer_stats.csv")
    assert_params(load(run, "params_init.npz"), P, rtol=0)
    for step in (0, 1):  # the row of step s: computed at the parameters before update s
        ref = reference(P, X, y)
        g = ref["grads"]
        clipped = clip_by_hand(g, clip)
        m = metrics[metrics.step == step].iloc[0]
        assert m.loss == pytest.approx(ref["loss"], rel=CSV_RTOL)
        assert m.grad_norm == pytest.approx(global_norm(g), rel=CSV_RTOL)
        assert m.grad_norm_clipped == pytest.approx(global_norm(clipped), rel=CSV_RTOL)
        assert m.clipped == int(global_norm(g) > clip["threshold"])
        assert m.val_loss == pytest.approx(cross_entropy(forward(P, X_val)[-1], y_val), rel=CSV_RTOL)
        assert m.val_accuracy == pytest.approx(np.mean(forward(P, X_val)[-1].argmax(axis=1) == y_val), rel=CSV_RTOL)
        rows = grads[grads.step == step].set_index("param")
        assert sorted(rows.index) == sorted(g)
        for k in g:
            assert rows.grad_norm[k] == pytest.approx(np.linalg.norm(g[k]), rel=CSV_RTOL), k
            assert rows.weight_norm[k] == pytest.approx(np.linalg.norm(P[k]), rel=CSV_RTOL), k
            assert rows.layer[k] == int(k[len("dense"):].split(".")[0])
        got = stats[stats.step == step].sort_values("layer").reset_index(drop=True)
        want = pd.DataFrame(layer_rows(ref))
        for col in want.columns:
            np.testing.assert_allclose(got[col], want[col], rtol=CSV_RTOL, atol=0, err_msg=f"step {step}: {col}")
        P = {k: P[k] - lr * clipped[k] for k in P}
    assert metrics.clipped[0] == 1
    # the run is one where the statistics are not degenerate, so a swap or a slip shows
    s0 = stats[stats.step == 0].set_index("layer")
    assert 0 < s0.frac_dead[2] < 1 and 0 < s0.frac_saturated[1] < 1 and 0 < s0.frac_saturated[3] < 1
    assert (s0.act_mean - s0.act_std).abs().min() > 1e-3


# --------------------------------------------------------------------------- logging only observes

@pytest.mark.parametrize("model, data", [
    ({"depth": 3, "width": 8, "activation": "tanh", "batchnorm": True, "dropout": 0.2, "residual": 1},
     {"kind": "spirals", "n_samples": 80, "val_fraction": 0.25}),
    ({"kind": "rnn", "cell": "lstm", "hidden": 6}, {"kind": "adding", "T": 9, "n_samples": 80, "val_fraction": 0.25}),
], ids=["mlp_batchnorm_dropout", "lstm"])
def test_what_is_logged_never_changes_the_run(tmp_path, model, data):
    """A step that is logged runs the statistics, the time norms and the validation pass on top of the
    update; none of it may move the weights, the batch-norm running statistics or a random stream. So a
    run logged at every step and the same run logged only at its first and last step end bit for bit
    alike: a test that reads only a run's end may log it sparsely (tests/test_configs.py does)."""
    finals, params = [], []
    for every in (1, 10**6):
        raw = {"name": f"every{every}", "seed": 5, "data": data, "model": model, "loss": "mse" if data["kind"] ==
               "adding" else "cross_entropy", "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 16, "steps": 12,
               "bptt": {"truncate": 4} if model.get("kind") == "rnn" else None},
               "log": {"every": every, "val_every": 1, "out": str(tmp_path)}}
        result = gradlab.train(gradlab.config_from_dict(raw))
        assert result.status == "completed" and result.steps == 12
        finals.append(result.final)
        with np.load(Path(result.run_dir) / "params_final.npz") as saved:
            params.append({k: saved[k] for k in saved.files})
    logged = [len(pd.read_csv(next(Path(tmp_path).glob(f"every{e}-*")) / "metrics.csv")) for e in (1, 10**6)]
    assert logged == [12, 2]
    assert finals[0] == finals[1] and all(math.isfinite(v) for v in finals[0].values() if v is not None)
    assert params[0].keys() == params[1].keys()
    for k in params[0]:
        np.testing.assert_array_equal(params[0][k], params[1][k], err_msg=k)
