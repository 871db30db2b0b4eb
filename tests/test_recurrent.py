"""Recurrent cells: BPTT and truncated BPTT against centred differences, and gradient flow over time."""
import numpy as np
import pytest

from gradlab.check import centred_difference, rel_error
from gradlab.config import InitConfig
from gradlab.nn.recurrent import GRU, LSTM, EveryStep, LastStep, VanillaRNN

TOL = 1e-7

CELLS = [
    ("vanilla-tanh", VanillaRNN, {"activation": "tanh"}),
    ("vanilla-sigmoid", VanillaRNN, {"activation": "sigmoid"}),
    ("vanilla-linear", VanillaRNN, {"activation": "linear"}),
    ("vanilla-relu", VanillaRNN, {"activation": "relu"}),
    ("lstm", LSTM, {"forget_bias": 1.0}),
    ("gru", GRU, {}),
]


def cell(cls, kw, D=3, H=4, truncate=None, seed=0, recurrent=None):
    rng = np.random.default_rng(seed)
    rec = recurrent or InitConfig(scheme="normal", std=0.5)
    layer = cls("cell1", D, H, InitConfig(scheme="normal", std=0.5), rec, rng, truncate=truncate, **kw)
    for k, b in layer.params.items():
        if k.startswith("b"):
            b += rng.normal(0, 0.1, b.shape)
    return layer


def gradient_errors(layer, x, R):
    """Relative error of dx and every parameter gradient, J = sum(h * R)."""
    J = lambda: float(np.sum(layer.forward(x) * R))  # noqa: E731
    layer.forward(x)
    if layer.truncate:
        layer.frozen = True  # J with the chunk-start states held: its gradient is the truncated one
    dx = layer.backward(R.copy())
    errors = {"x": rel_error(dx, centred_difference(J, x))}
    analytic = {k: g.copy() for k, g in layer.grads.items()}
    for key, p in layer.params.items():
        errors[key] = rel_error(analytic[key], centred_difference(J, p))
    return errors


@pytest.mark.parametrize("truncate", [None, 3])
@pytest.mark.parametrize("name, cls, kw", CELLS, ids=[c[0] for c in CELLS])
def test_bptt_matches_centred_differences(name, cls, kw, truncate):
    rng = np.random.default_rng(1)
    layer = cell(cls, kw, truncate=truncate)
    x = rng.normal(0, 1, (2, 7, 3))
    if name.endswith("relu"):
        x = x + 0.5  # keep pre-activations away from the kink
    errors = gradient_errors(layer, x, rng.standard_normal((2, 7, 4)))
    assert max(errors.values()) < TOL, errors


def test_per_gate_parameter_names():
    assert list(cell(LSTM, {}).params) == [f"{k}_{g}" for k in "WUb" for g in "ifog"]
    assert list(cell(GRU, {}).params) == [f"{k}_{g}" for k in "WUb" for g in "rzn"]
    assert list(cell(VanillaRNN, {}).params) == ["W", "U", "b"]
    lstm = LSTM("lstm1", 3, 4, InitConfig(scheme="normal"), InitConfig(scheme="orthogonal"),
                np.random.default_rng(0), forget_bias=1.0)
    assert np.all(lstm.params["b_f"] == 1.0) and np.all(lstm.params["b_i"] == 0.0)


def test_truncation_cuts_the_gradient_at_chunk_starts():
    """With truncate = k, dL/dh_t is zero for every step before the last chunk when the loss is at T only."""
    rng = np.random.default_rng(0)
    for truncate, reached in ((None, 12), (5, 2)):  # T = 12: chunks start at 5 and 10
        layer = cell(VanillaRNN, {"activation": "tanh"}, truncate=truncate)
        x = rng.normal(0, 1, (2, 12, 3))
        layer.forward(x)
        dout = np.zeros((2, 12, 4))
        dout[:, -1] = 1.0
        layer.backward(dout)
        assert np.count_nonzero(layer.time_norms) == reached


@pytest.mark.parametrize("c", [0.9, 1.0, 1.1])
def test_linear_rnn_gradient_scales_as_c_to_the_lag(c):
    """W = c Q with Q orthogonal and no input: ||dL/dh_1|| / ||dL/dh_T|| = c^(T-1) (the lecture example: 0.9^150, 1.1^150)."""
    T, H = 150, 16
    rec = InitConfig(scheme="orthogonal", gain=c)
    layer = cell(VanillaRNN, {"activation": "linear"}, D=2, H=H, recurrent=rec)
    layer.forward(np.zeros((3, T, 2)))
    dout = np.zeros((3, T, H))
    dout[:, -1] = np.random.default_rng(0).standard_normal((3, H))
    layer.backward(dout)
    ratio = layer.time_norms[0] / layer.time_norms[-1]
    assert ratio == pytest.approx(c ** (T - 1), rel=1e-6)


def test_readouts_route_the_gradient():
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    last, every = LastStep(), EveryStep()
    np.testing.assert_array_equal(last.forward(x), x[:, -1])
    dx = last.backward(np.ones((2, 3)))
    assert dx[:, -1].sum() == 6 and dx[:, :-1].sum() == 0
    assert every.forward(x).shape == (10, 3)
    np.testing.assert_array_equal(every.backward(every.forward(x)), x)


def test_time_norms_of_huge_finite_gradients_are_finite():
    """dL/dh_t of 1e200 (an exploding RNN) has a finite norm: its squares overflow, the rescaled norm does not."""
    layer = cell(VanillaRNN, {"activation": "linear"}, D=2, H=4)
    layer.forward(np.zeros((3, 5, 2)))
    dout = np.zeros((3, 5, 4))
    dout[:, -1] = 1e200
    layer.backward(dout)
    assert layer.time_norms[-1] == pytest.approx(1e200 * np.sqrt(12), rel=1e-12)
    assert np.isfinite(layer.time_norms).all()
