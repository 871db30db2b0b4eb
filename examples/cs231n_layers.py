"""Layers written the CS231n way, to check with gradlab.

Functions: ``forward(*inputs) -> (out, cache)`` (or ``(out_1, ..., out_k, cache)``) and
``backward(dout, cache) -> one gradient per array input, in their order``. Check one pair with

    gradlab.check_function(affine_forward, affine_backward, [x, w, b])
    gradlab check examples/cs231n_layers.py:affine --shape 4,5 --shape 5,3 --shape 3

Classes: ``Affine`` (a layer that changes the width, for ``model.layers``) and ``LSTMCell`` (a
recurrent cell of gradlab's step protocol, for ``model.cell``). Every ``*_wrong`` name carries one
realistic bug that the check names.
"""
import numpy as np


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # 1 / (1 + e^-z) without overflow


# --------------------------------------------------------------------------- affine

def affine_forward(x, w, b):
    """x: (N, d_1, ..., d_k), w: (D, M) with D = d_1 ... d_k, b: (M,) -> out (N, M)."""
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w)


def affine_backward(dout, cache):
    """dout: (N, M) -> dx (N, d_1, ..., d_k), dw (D, M), db (M,)."""
    x, w = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    db = dout.sum(axis=0)
    return dx, dw, db


def affine_wrong_forward(x, w, b):
    return affine_forward(x, w, b)


def affine_wrong_backward(dout, cache):
    """The bug: db averages over the batch instead of summing (out = x w + b adds b to every row)."""
    dx, dw, _ = affine_backward(dout, cache)
    return dx, dw, dout.mean(axis=0)


# --------------------------------------------------------------------------- relu: a function with kinks

def relu_forward(x):
    out = np.maximum(x, 0.0)
    return out, x


def relu_backward(dout, cache):
    return dout * (cache > 0)


def relu_mask(cache):
    """The winners of max(x, 0): which entries passed. ``check_function(..., mask=relu_mask)``."""
    return cache > 0


# --------------------------------------------------------------------------- convolution (naive)

def conv_forward_naive(x, w, b, conv_param):
    """x: (N, C, H, W), w: (F, C, HH, WW), b: (F,) -> out (N, F, H', W'); conv_param: stride, pad."""
    stride, pad = conv_param["stride"], conv_param["pad"]
    N, C, H, W = x.shape
    F, _, HH, WW = w.shape
    Ho, Wo = 1 + (H + 2 * pad - HH) // stride, 1 + (W + 2 * pad - WW) // stride
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((N, F, Ho, Wo))
    for i in range(Ho):
        for j in range(Wo):
            patch = xp[:, :, i * stride:i * stride + HH, j * stride:j * stride + WW]  # (N, C, HH, WW)
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3])) + b
    return out, (x, w, conv_param)


def conv_backward_naive(dout, cache):
    """dout: (N, F, H', W') -> dx (N, C, H, W), dw (F, C, HH, WW), db (F,)."""
    x, w, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    _, _, HH, WW = w.shape
    _, _, Ho, Wo = dout.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for i in range(Ho):
        for j in range(Wo):
            rows, cols = slice(i * stride, i * stride + HH), slice(j * stride, j * stride + WW)
            d = dout[:, :, i, j]  # (N, F): each output pixel is a dot product of one patch with each filter
            dw += np.tensordot(d, xp[:, :, rows, cols], axes=([0], [0]))
            dxp[:, :, rows, cols] += np.tensordot(d, w, axes=([1], [0]))
    db = dout.sum(axis=(0, 2, 3))
    dx = dxp[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]]
    return dx, dw, db


def conv_wrong_forward(x, w, b, conv_param):
    return conv_forward_naive(x, w, b, conv_param)


def conv_wrong_backward(dout, cache):
    """The bug: dx is assigned, not accumulated, where patches overlap (``=`` for ``+=``)."""
    x, w, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    _, _, HH, WW = w.shape
    _, _, Ho, Wo = dout.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for i in range(Ho):
        for j in range(Wo):
            rows, cols = slice(i * stride, i * stride + HH), slice(j * stride, j * stride + WW)
            d = dout[:, :, i, j]
            dw += np.tensordot(d, xp[:, :, rows, cols], axes=([0], [0]))
            dxp[:, :, rows, cols] = np.tensordot(d, w, axes=([1], [0]))  # bug: overwrites the overlap
    db = dout.sum(axis=(0, 2, 3))
    return dxp[:, :, pad:pad + x.shape[2], pad:pad + x.shape[3]], dw, db


# --------------------------------------------------------------------------- one LSTM step

def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    """x: (N, D), prev_h, prev_c: (N, H), Wx: (D, 4H), Wh: (H, 4H), b: (4H,) -> next_h, next_c (N, H).

    Gates i, f, o, g side by side (Hochreiter & Schmidhuber 1997, with a forget gate)."""
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f, o = sigmoid(a[:, :H]), sigmoid(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H])
    g = np.tanh(a[:, 3 * H:])
    next_c = f * prev_c + i * g
    tc = np.tanh(next_c)
    next_h = o * tc
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, tc)


def lstm_step_backward(dnext_h, dnext_c, cache):
    """-> dx, dprev_h, dprev_c, dWx, dWh, db, in the order of lstm_step_forward's inputs."""
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, tc = cache
    dc = dnext_c + dnext_h * o * (1.0 - tc * tc)  # next_h = o tanh(next_c) also feeds next_c
    da = np.hstack([dc * g * i * (1.0 - i),  # through the sigmoid of each gate
                    dc * prev_c * f * (1.0 - f),
                    dnext_h * tc * o * (1.0 - o),
                    dc * i * (1.0 - g * g)])
    return da @ Wx.T, da @ Wh.T, dc * f, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def lstm_step_wrong_forward(x, prev_h, prev_c, Wx, Wh, b):
    return lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b)


def lstm_step_wrong_backward(dnext_h, dnext_c, cache):
    """The bug: dprev_c forgets the forget gate (dc instead of dc * f): the cell path of BPTT is wrong."""
    dx, dprev_h, dprev_c, dWx, dWh, db = lstm_step_backward(dnext_h, dnext_c, cache)
    f = cache[6]
    return dx, dprev_h, dprev_c / f, dWx, dWh, db


# --------------------------------------------------------------------------- classes

class Affine:
    """A layer that changes the width: x (N, D) -> x W + b (N, units). ``{type: custom, class:
    "cs231n_layers:Affine", args: {units: 8}}`` in model.layers; the next layer gets width ``units``."""

    def __init__(self, width, units, rng=None, dtype=np.float64):
        rng = rng if rng is not None else np.random.default_rng(0)
        self.params = {"W": (rng.standard_normal((width, units)) / np.sqrt(width)).astype(dtype),
                       "b": np.zeros(units, dtype=dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def forward(self, x, train=True):
        out, self.cache = affine_forward(x, self.params["W"], self.params["b"])
        return out

    def backward(self, dout):
        dx, self.grads["W"][...], self.grads["b"][...] = affine_backward(dout, self.cache)
        return dx


class LSTMCell:
    """An LSTM cell in gradlab's step protocol (``model.cell: "cs231n_layers:LSTMCell"``).

    Params W_x, W_h, b (named W_* so that train.l2 penalises the weight matrices). state = (h, c);
    step(x_t, state) -> (h_t, state, cache);
    step_backward(dh_t, dstate, cache) -> (dx_t, dstate_prev), adding the step's gradients to grads.
    """

    def __init__(self, input_size, hidden, rng=None, dtype=np.float64):
        rng = rng if rng is not None else np.random.default_rng(0)
        D, H = input_size, hidden
        self.hidden = H
        b = np.zeros(4 * H, dtype=dtype)
        b[H:2 * H] = 1.0  # forget bias 1: remember by default (Gers et al. 2000)
        self.params = {"W_x": (rng.standard_normal((D, 4 * H)) / np.sqrt(D)).astype(dtype),
                       "W_h": (rng.standard_normal((H, 4 * H)) / np.sqrt(H)).astype(dtype), "b": b}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def initial_state(self, N):
        return (np.zeros((N, self.hidden)), np.zeros((N, self.hidden)))

    def step(self, x_t, state):
        h, c, cache = lstm_step_forward(x_t, *state, self.params["W_x"], self.params["W_h"], self.params["b"])
        return h, (h, c), cache

    def step_backward(self, dh_t, dstate, cache):
        dh_next, dc_next = dstate
        dx, dh, dc, dWx, dWh, db = lstm_step_backward(dh_t + dh_next, dc_next, cache)  # h_t is also state[0]
        self.grads["W_x"] += dWx
        self.grads["W_h"] += dWh
        self.grads["b"] += db
        return dx, (dh, dc)


class LSTMCellWrong(LSTMCell):
    """LSTMCell with lstm_step_wrong_backward: the gradient through the cell state is wrong."""

    def step_backward(self, dh_t, dstate, cache):
        dh_next, dc_next = dstate
        dx, dh, dc, dWx, dWh, db = lstm_step_wrong_backward(dh_t + dh_next, dc_next, cache)
        self.grads["W_x"] += dWx
        self.grads["W_h"] += dWh
        self.grads["b"] += db
        return dx, (dh, dc)
