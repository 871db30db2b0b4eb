"""The recurrent cells' fused gate matrices: one W (D, G), U (H, G), b (G,) per layer, the per-gate tensors
views into them; a forward pass over a leading axis of K copies (what a gradient check pushes through in one
pass) equal to K separate passes."""
import importlib.util
import os
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from gradlab.config import InitConfig
from gradlab.nn.recurrent import GRU, LSTM, VanillaRNN, sigmoid
from gradlab.optim import SGD, Adam, Momentum
from optional import need_torch

CELLS = {
    "lstm": (LSTM, {"forget_bias": 1.0}),
    "gru": (GRU, {}),
    "vanilla-tanh": (VanillaRNN, {"activation": "tanh"}),
    "vanilla-relu": (VanillaRNN, {"activation": "relu"}),
}


def cell(name, D=3, H=4, truncate=None, seed=0):
    cls, kw = CELLS[name]
    rng = np.random.default_rng(seed)
    layer = cls("cell1", D, H, InitConfig(scheme="normal", std=0.5), InitConfig(scheme="normal", std=0.5), rng,
                truncate=truncate, **kw)
    layer.b += rng.normal(0, 0.1, layer.b.shape)
    return layer


FUSED = [("W", "dW"), ("U", "dU"), ("b", "db")]


@pytest.mark.parametrize("name", CELLS)
def test_per_gate_params_and_grads_are_views_of_the_fused_arrays(name):
    layer = cell(name)
    G = len(layer.gates) * layer.H
    assert (layer.W.shape, layer.U.shape, layer.b.shape) == ((3, G), (4, G), (G,))
    for kind, grad in FUSED:
        for i, g in enumerate(layer.gates):
            key = layer.key(kind, g)
            p, d = layer.params[key], layer.grads[key]
            assert np.shares_memory(p, getattr(layer, kind)) and np.shares_memory(d, getattr(layer, grad))
            np.testing.assert_array_equal(p, getattr(layer, kind)[..., i * 4:(i + 1) * 4])
            p[...] = 7.0 + i  # through the view: the fused array changes
            assert np.all(getattr(layer, kind)[..., i * 4:(i + 1) * 4] == 7.0 + i)
        getattr(layer, kind)[...] = -1.0  # through the fused array: every view changes
        assert all(np.all(layer.params[layer.key(kind, g)] == -1.0) for g in layer.gates)


@pytest.mark.parametrize("name", CELLS)
def test_a_deep_copied_layer_keeps_its_gate_tensors_views_of_its_own_fused_arrays(name):
    import copy

    layer = cell(name)
    twin = copy.deepcopy(layer)
    for kind, grad in FUSED:
        assert not np.shares_memory(getattr(twin, kind), getattr(layer, kind))
        np.testing.assert_array_equal(getattr(twin, kind), getattr(layer, kind))
        for g in layer.gates:
            key = layer.key(kind, g)
            assert np.shares_memory(twin.params[key], getattr(twin, kind))
            assert np.shares_memory(twin.grads[key], getattr(twin, grad))
    twin.params[twin.key("U", twin.gates[-1])][...] += 1.0  # an update through the copy's view moves its U
    x = np.random.default_rng(2).normal(size=(2, 5, 3))
    assert not np.allclose(twin.forward(x), layer.forward(x))


@pytest.mark.parametrize("name", CELLS)
def test_backward_fills_the_fused_grads_the_views_show(name):
    layer = cell(name)
    x = np.random.default_rng(1).normal(size=(2, 5, 3))
    layer.backward(np.ones_like(layer.forward(x)))
    for kind, grad in FUSED:
        assert np.any(getattr(layer, grad) != 0)
        joined = np.concatenate([layer.grads[layer.key(kind, g)] for g in layer.gates], axis=-1)
        np.testing.assert_array_equal(joined, getattr(layer, grad))


@pytest.mark.parametrize("name", CELLS)
def test_a_second_backward_of_one_forward_gives_the_same_gradients(name):
    """Backward reads what forward kept (and the LSTM's local derivatives, made a few steps at a time) without
    changing it: a second backward of the same pass, as a check makes, gives the same numbers."""
    layer = cell(name, H=5)
    rng = np.random.default_rng(4)
    layer.forward(rng.normal(size=(3, 40, 3)))
    dout = rng.normal(size=(3, 40, 5))
    first = [layer.backward(dout).copy()] + [getattr(layer, g).copy() for _, g in FUSED]
    second = [layer.backward(dout)] + [getattr(layer, g) for _, g in FUSED]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("opt", [SGD(0.1), Momentum(0.1), Adam(0.1)], ids=["sgd", "momentum", "adam"])
def test_an_optimizer_step_on_the_views_updates_the_fused_arrays(opt):
    """The optimizers update params in place: the fused arrays move, and the views still alias them after."""
    layer = cell("lstm")
    x = np.random.default_rng(1).normal(size=(2, 5, 3))
    before = {k: getattr(layer, k).copy() for k in "WUb"}
    for _ in range(2):
        layer.backward(np.ones_like(layer.forward(x)))
        expected = {k: getattr(layer, k) - 0.1 * getattr(layer, d) for k, d in FUSED} if isinstance(opt, SGD) else None
        opt.step(layer.params, layer.grads)
        if expected:
            for k in "WUb":
                np.testing.assert_allclose(getattr(layer, k), expected[k], rtol=0, atol=1e-15)
    for kind, _ in FUSED:
        assert np.all(getattr(layer, kind) != before[kind])
        assert all(np.shares_memory(layer.params[layer.key(kind, g)], getattr(layer, kind)) for g in layer.gates)


def test_forward_reads_the_fused_arrays_and_a_rebound_gate_tensor_too():
    """Forward reads W, U, b; a per-gate entry of params rebound to an array of its own is used for the pass."""
    layer = cell("lstm")
    x = np.random.default_rng(1).normal(size=(2, 5, 3))
    h0 = layer.forward(x).copy()
    layer.U[:, 4:8] += 0.3  # U_f, through the fused array
    h1 = layer.forward(x).copy()
    assert np.abs(h1 - h0).max() > 1e-3
    saved = layer.params["U_f"]
    layer.params["U_f"] = saved - 0.3  # rebound: back to the first U_f for this pass
    np.testing.assert_allclose(layer.forward(x), h0, rtol=0, atol=1e-14)
    layer.params["U_f"] = saved
    np.testing.assert_array_equal(layer.forward(x), h1)


def copies(layer, K, rng):
    """K perturbed copies of W, U, b: (K, D, G), (K, H, G), (K, G)."""
    return [getattr(layer, k) + rng.normal(0, 0.05, (K, *getattr(layer, k).shape)) for k in "WUb"]


def one_pass(layer, x, W, U, b):
    saved = layer.W, layer.U, layer.b
    layer.W, layer.U, layer.b = W, U, b
    try:
        return layer.forward(x).copy()
    finally:
        layer.W, layer.U, layer.b = saved


@pytest.mark.parametrize("truncate", [None, 2])
@pytest.mark.parametrize("name", CELLS)
def test_a_leading_copy_axis_gives_each_copy_its_own_forward(name, truncate):
    """W, U, b rebound to (K, D, G), (K, H, G), (K, G) and/or x (K, N, T, D): (K, N, T, H), copy k equal to
    a forward pass with copy k alone to 1e-12; held truncation states (frozen) broadcast over the copies."""
    K, rng = 3, np.random.default_rng(2)
    layer = cell(name, truncate=truncate)
    x = rng.normal(size=(2, 5, 3))
    layer.forward(x)
    layer.frozen = bool(truncate)
    W, U, b = copies(layer, K, rng)
    xs = x + rng.normal(0, 0.05, (K, *x.shape))
    cases = {  # what carries the copy axis -> (x, W, U, b) of copy k
        "params": ((x, W, U, b), lambda k: (x, W[k], U[k], b[k])),
        "x": ((xs, layer.W, layer.U, layer.b), lambda k: (xs[k], layer.W, layer.U, layer.b)),
        "both": ((xs, W, U, b), lambda k: (xs[k], W[k], U[k], b[k])),
        "U only": ((x, layer.W, U, layer.b), lambda k: (x, layer.W, U[k], layer.b)),
    }
    for what, (together, alone) in cases.items():
        out = one_pass(layer, *together)
        assert out.shape == (K, 2, 5, 4), what
        for k in range(K):
            np.testing.assert_allclose(out[k], one_pass(layer, *alone(k)), rtol=0, atol=1e-12, err_msg=what)


def test_the_relu_mask_has_the_copy_axis_first():
    layer = cell("vanilla-relu")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 5, 3))
    W, U, b = copies(layer, 3, rng)
    out = one_pass(layer, x, W, U, b)
    assert layer.mask.shape == out.shape == (3, 2, 5, 4)
    np.testing.assert_array_equal(layer.mask[1], one_pass(layer, x, W[1], U[1], b[1]) > 0)


def test_sigmoid_keeps_tiny_values_and_never_warns():
    """1 / (1 + e^-z): sigma(-40) = 4.25e-18 (0.5 (1 + tanh(z / 2)) gives 0 there), 0 and 1 at +-1e16, no warning."""
    z = np.array([-1e16, -745.0, -40.0, -1e-9, 0.0, 40.0, 1e16])
    with warnings.catch_warnings(), np.errstate(over="ignore"):
        warnings.simplefilter("error")
        s = sigmoid(z)
    np.testing.assert_allclose(s[2], 4.248354255291589e-18, rtol=1e-14)
    assert s[0] == 0.0 and s[1] == 0.0 and s[4] == 0.5 and s[-1] == 1.0 and s[-2] == 1.0


@pytest.mark.parametrize("name", ["lstm", "gru", "vanilla-tanh"])
def test_inputs_of_1e16_give_no_warning(name):
    layer = cell(name)
    x = np.full((2, 4, 3), 1e16)
    x[0] *= -1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        h = layer.forward(x)
        layer.backward(np.ones_like(h))
    assert np.isfinite(h).all() and np.isfinite(layer.dW).all()


# --------------------------------------------------------------------------- benchmarks/bench_lstm.py

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
BLAS_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


@pytest.fixture
def bench(monkeypatch):
    """benchmarks/bench_lstm.py as a module; the thread limits it sets are undone after the test."""
    for var in BLAS_VARS:
        monkeypatch.setenv(var, os.environ.get(var, "1"))
    monkeypatch.syspath_prepend(str(BENCH))  # the script imports protocol from its own folder
    spec = importlib.util.spec_from_file_location("bench_lstm_under_test", BENCH / "bench_lstm.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    yield module
    module.protocol.release()


def test_bench_lstm_quick_reaches_the_minimal_loops_loss(bench, capsys):
    """gradlab's step, logged and sparse, and the hand-written fused LSTM reach the same loss: what is timed is the same work."""
    assert bench.main(["--quick", "--sides", "logged,sparse,minimal"]) == 0
    out = capsys.readouterr().out
    for side in ("logged", "sparse", "minimal"):
        assert f"ok: {side}: the last loss of 2 of 2 calls" in out
    assert "summary (logged): " in out and "target at most 1.15x" in out and "peak RSS of this process:" in out
    assert out.count("load average") == 2


@pytest.mark.slow
def test_bench_lstm_quick_with_torch_reaches_the_same_loss(bench, capsys):
    """torch.nn.LSTM from gradlab's weights (gates reordered, one bias) reaches the same loss. Slow only for
    importing torch: 3 CPU-s, up to 30 s of wall time on a loaded machine; the run itself is under a second."""
    need_torch("bench_lstm's torch.nn.LSTM side")
    assert bench.main(["--quick", "--sides", "sparse,minimal,torch"]) == 0
    out = capsys.readouterr().out
    assert "ok: torch: the last loss of 2 of 2 calls" in out and "summary (sparse / torch)" in out


def test_bench_lstm_exits_1_when_a_loss_differs(bench, capsys, monkeypatch):
    minimal, calls = bench.run_minimal, []

    def off_on_second_call(config, steps):  # the timed call differs in the 7th digit
        seconds, J = minimal(config, steps)
        calls.append(J)
        return seconds, J * (1 + 1e-6) if len(calls) == 2 else J

    monkeypatch.setattr(bench, "run_minimal", off_on_second_call)
    assert bench.main(["--quick", "--sides", "sparse,minimal"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH: minimal: the last loss of 1 of 2 calls" in out and "exit 1" in out


def test_a_deep_copied_net_trains_its_gates_like_the_original():
    """The net's params and grads dicts of a copy are its cell's views, so an optimizer stepping the dicts
    moves the copy's fused arrays, and backward fills what the dicts show."""
    import copy

    import gradlab

    s = gradlab.setup(gradlab.config_from_dict({
        "seed": 0, "data": {"kind": "adding", "T": 6, "n_samples": 64},
        "model": {"kind": "rnn", "cell": "lstm", "hidden": 4}, "loss": "mse", "train": {"steps": 1}}))
    twin = copy.deepcopy(s.model)
    x, y = s.data.X_train[:16], s.data.y_train[:16]
    for net in (s.model, twin):
        for _ in range(3):
            net.loss_and_grads(x, y, s.loss, 0.0, True)
            SGD(lr=0.5).step(net.params, net.grads)
    lstm = next(m for layer in twin.layers for m in layer.modules if isinstance(m, LSTM))
    assert np.shares_memory(twin.params["lstm1.W_f"], lstm.W) and np.shares_memory(twin.grads["lstm1.W_f"], lstm.dW)
    assert np.linalg.norm(twin.grads["lstm1.W_f"]) > 0
    for k, v in s.model.params.items():
        np.testing.assert_array_equal(twin.params[k], v, err_msg=k)
