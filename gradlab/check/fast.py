"""Fast paths of the gradient check, kept beside it and keyed by layer type, so a layer speaks only
params/grads/forward/backward.

For a dense layer z = x W + b, moving one entry moves one output column (W[i, j] and b[j]) or one row
(x[n, i]) by a known amount: K perturbed copies of z are rank-1 updates of z at theta, computed without
K matrix products. A convolution is the same product over im2col patches: moving W[i, j, c, o] or b[o]
moves output channel o only (by delta times the patches' column (i, j, c), or by delta), and moving an
input pixel moves the outputs whose windows hold it; and a change confined to one channel of the next
convolution's input is a convolution of that channel alone (k*k inputs per position, not k*k*C_in).

A built-in recurrent cell (vanilla RNN, LSTM, GRU) holds one fused array per kind, W (D, G), U (H, G) and
b (G,), its per-gate tensors views into them, and its forward takes them with a leading copy axis (K, D, G),
(K, H, G), (K, G), and x as (K, N, T, D) (gradlab.nn.recurrent): K perturbed copies of a gate's tensor are
K fused copies with that gate's columns replaced, through one pass over time.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np

from ..nn import BatchNorm, Dense, Dropout
from ..nn.conv import AvgPool2d, Conv2d, Flatten, GlobalAvgPool, MaxPool2d, ResBlock
from ..nn.activations import ACTIVATIONS
from ..nn.recurrent import GRU, LSTM, VanillaRNN, EveryStep, LastStep


def dense_perturb(layer: Dense, key: str, flat: np.ndarray, delta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Outputs of K copies, copy k with ``params[key].flat[flat[k]] += delta[k]``: (K, N, fan_out).

    One entry W[i, j] moves column j by delta * x[:, i]; an input entry x[n, i] moves row n by delta * W[i, :].
    """
    if key == "b":
        return dense_shift(layer, flat, delta, x)
    out = np.repeat(layer.forward(x)[None], len(flat), axis=0)
    k = np.arange(len(flat))
    W = layer.params["W"]
    if key == "W":
        i, j = np.unravel_index(flat, W.shape)
        out[k, :, j] += delta[:, None] * x[:, i].T
    else:  # "input"
        n, i = np.unravel_index(flat, x.shape)
        out[k, n, :] += delta[:, None] * W[i, :]
    return out


def dense_shift(layer: Dense, cols: np.ndarray, delta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Outputs of K copies, copy k with output column ``cols[k]`` moved by ``delta[k]`` for every sample
    (what moving b[cols[k]] does): (K, N, fan_out)."""
    out = np.repeat(layer.forward(x)[None], len(cols), axis=0)
    out[np.arange(len(cols)), :, cols] += delta[:, None]
    return out


def dense_moved_column(layer: Dense, key: str, flat: np.ndarray, delta: np.ndarray, x: np.ndarray,
                       out: np.ndarray) -> np.ndarray:
    """The one output column each of K copies moves (key W or b), from the output ``out`` at theta:
    (K, N), copy k's column ``dense_column(flat)[k]``. Same numbers as ``dense_perturb``'s, without the
    columns that do not move."""
    j = dense_column(layer, key, flat)
    col = out[:, j].T.copy()
    if key == "b":
        col += delta[:, None]
    else:
        i = flat // layer.params["W"].shape[1]
        col += delta[:, None] * x[:, i].T
    return col


def dense_column(layer: Dense, key: str, flat: np.ndarray) -> np.ndarray | None:
    """The output column that entry ``flat`` of ``key`` moves (None: it moves a whole row)."""
    if key == "W":
        return flat % layer.params["W"].shape[1]
    return flat if key == "b" else None


def dense_moves(layer: Dense, key: str) -> str | None:
    """What a step in ``key`` is added to: b to every row of z = x W + b, so b's step is taken relative to z's
    scale (a b of 0 beside z of 1e16 moved by 1e-5 would not move z at all)."""
    return "output" if key == "b" else None


def conv_perturb(layer: Conv2d, key: str, flat: np.ndarray, delta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Outputs of K copies, copy k with ``params[key].flat[flat[k]] += delta[k]``: (K, N, Ho, Wo, C_out).

    W[i, j, c, o] moves channel o by delta times column (i, j, c) of the im2col patches (the products at
    theta are made once); an input pixel x[n, h, w, c] moves out[n, y, x', :] by delta W[i, j, c, :] for each
    kernel offset (i, j) whose window at (y, x') holds it (a loop over the k*k offsets, never over pixels)."""
    if key == "b":
        return conv_shift(layer, flat, delta, x)
    out0 = layer.forward(x)
    out = np.repeat(out0[None], len(flat), axis=0)
    k = np.arange(len(flat))
    W = layer.params["W"]
    if key == "W":
        r, o = np.divmod(flat, W.shape[-1])
        cols = layer.cols.reshape(out0.shape[:-1] + (-1,))  # (N, Ho, Wo, k*k*C_in), W's (i, j, c) order
        out[k, ..., o] += delta[:, None, None, None] * np.moveaxis(cols[..., r], -1, 0)
        return out
    n, h, w, c = np.unravel_index(flat, x.shape)  # "input"
    ho, wo = out0.shape[1:3]
    s, p = layer.stride, layer.padding
    for i in range(W.shape[0]):
        for j in range(W.shape[1]):
            y, ry = np.divmod(h + p - i, s)
            xx, rx = np.divmod(w + p - j, s)
            ok = (ry == 0) & (rx == 0) & (y >= 0) & (y < ho) & (xx >= 0) & (xx < wo)
            out[k[ok], n[ok], y[ok], xx[ok], :] += delta[ok, None] * W[i, j, c[ok], :]
    return out


def conv_shift(layer: Conv2d, cols: np.ndarray, delta: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Outputs of K copies, copy k with output channel ``cols[k]`` moved by ``delta[k]`` at every sample and
    position (what moving b[cols[k]] does): (K, N, Ho, Wo, C_out)."""
    out = np.repeat(layer.forward(x)[None], len(cols), axis=0)
    out[np.arange(len(cols)), ..., cols] += delta[:, None, None, None]
    return out


def conv_column(layer: Conv2d, key: str, flat: np.ndarray) -> np.ndarray | None:
    """The output channel that entry ``flat`` of ``key`` moves (None: an input pixel moves every channel)."""
    if key == "W":
        return flat % layer.params["W"].shape[-1]
    return flat if key == "b" else None


def one_channel(conv: Conv2d, change: np.ndarray, c: np.ndarray) -> np.ndarray:
    """conv(x + d) - conv(x) for K copies whose input changes by ``change`` (K, N, H, W) in channel ``c[k]``
    only: copy k convolved with W[:, :, c[k], :] alone, one batched product of k*k columns (no bias)."""
    W = conv.params["W"]
    Wc = np.moveaxis(W[:, :, c, :], 2, 0)[:, :, :, None, :]  # (K, k, k, 1, C_out)
    alone = Conv2d(W[:, :, :1, :], None, conv.stride, conv.padding, conv.name)
    alone.params["W"] = Wc
    return alone.forward(change[..., None], True)


MOVES = {Dense: dense_moves, Conv2d: dense_moves}


def moves(module, key: str) -> str | None:
    """"output" when a step in ``key`` is added to the module's output as it is, else None."""
    rule = MOVES.get(type(module))
    return rule(module, key) if rule else None


# layer type -> (perturb, shift, column); exact types only, so a subclass that changes forward is not assumed
FAST = {Dense: (dense_perturb, dense_shift, dense_column), Conv2d: (conv_perturb, conv_shift, conv_column)}


def fast_path(module):
    """The fast path of a module's type, or None."""
    return FAST.get(type(module))


def perturb(module, key: str, flat: np.ndarray, delta: np.ndarray, x: np.ndarray) -> np.ndarray:
    return FAST[type(module)][0](module, key, flat, delta, x)


def shift(module, cols: np.ndarray, delta: np.ndarray, x: np.ndarray) -> np.ndarray:
    return FAST[type(module)][1](module, cols, delta, x)


def column(module, key: str, flat: np.ndarray) -> np.ndarray | None:
    return FAST[type(module)][2](module, key, flat)


# --------------------------------------------------------------------------- K copies through one forward

RECURRENT = (VanillaRNN, LSTM, GRU)  # exact types: a subclass may change forward


def takes_copies(module) -> bool:
    """Whether a module's forward takes K perturbed copies at once (a leading axis on its input and its
    parameters): ``Module.batched``, or a built-in recurrent cell's own contract."""
    return bool(module.batched) or type(module) in RECURRENT


def _as_copies(stack: np.ndarray) -> np.ndarray:
    """K copies of a parameter, shaped to broadcast against (K, N, D) activations."""
    return stack[:, None, :] if stack.ndim == 2 else stack


@contextmanager
def rebound(module, key: str, stack: np.ndarray) -> Iterator[None]:
    """Within: ``module`` computes with K copies ``stack`` (K, *shape) of ``params[key]``.

    A recurrent cell gets fused copies: its fused array repeated K times with the gate's columns replaced
    (the per-gate views in ``params`` are left alone, so its forward reads only the fused arrays)."""
    if type(module) in RECURRENT:
        kind, _, gate = key.partition("_")
        fused = getattr(module, kind)
        H, g = module.H, module.gates.index(gate)
        one = stack.ndim == module.params[key].ndim  # a single copy, not K
        copies = fused.copy() if one else np.repeat(fused[None], len(stack), axis=0)
        copies[..., g * H:(g + 1) * H] = stack
        setattr(module, kind, copies)
        try:
            yield
        finally:
            setattr(module, kind, fused)
        return
    saved = module.params[key]
    module.params[key] = _as_copies(stack) if stack.ndim == saved.ndim + 1 else stack
    try:
        yield
    finally:
        module.params[key] = saved


def copies_crossed(mask: np.ndarray, at_theta: np.ndarray, k: int) -> np.ndarray:
    """(K,) bool: which of K copies changed a winner, from a mask of K copies (one more axis than the mask
    at theta) or of one copy."""
    changed = mask != at_theta
    if changed.ndim > at_theta.ndim:
        return changed.reshape(k, -1).any(axis=1)
    return np.full(k, bool(changed.any()))


# --------------------------------------------------------------------------- entries of different samples, one copy

# built-in types whose output row n depends on input row n only (for a recurrent cell, sample n's time steps),
# rows sample-major; exact types, so a subclass (or a layer of yours) is never assumed to keep samples apart
SEPARABLE = (Dense, Dropout, LastStep, EveryStep, *RECURRENT, *ACTIVATIONS.values(), Conv2d, MaxPool2d, AvgPool2d,
             GlobalAvgPool, Flatten)


def separable(modules) -> bool:
    """Whether every sample's output depends on that sample's input only, through all of ``modules`` (a residual
    block without batch norm: its convolutions, activation and projection)."""
    return all(type(m) in SEPARABLE or (type(m) is ResBlock and not m.batchnorm and separable([m.activation]))
               for m in modules)


def packing(group: np.ndarray) -> tuple[np.ndarray, int]:
    """Entries packed into few copies, at most one entry of each group (a sample, or a column) per copy:
    (slot (K,), copies). Entry k is moved in copy ``slot[k]`` and read from its group's share of J there; its J
    is J at theta with that group's share replaced, which is J at the copy that moves entry k alone (the other
    groups' shares are the same floats)."""
    order = np.argsort(group, kind="stable")
    counts = np.bincount(group)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.empty(len(group), dtype=np.intp)
    slot[order] = np.arange(len(group)) - np.repeat(starts, counts)
    return slot, int(slot.max()) + 1 if len(group) else 0


def packed_stack(x: np.ndarray, flat: np.ndarray, delta: np.ndarray, slot: np.ndarray, copies: int) -> np.ndarray:
    """``copies`` copies of x, entry ``flat[k]`` moved by ``delta[k]`` in copy ``slot[k]``."""
    stack = np.repeat(x[None], copies, axis=0)
    stack.reshape(copies, -1)[slot, flat] += delta
    return stack


def sample_crossed(mask: np.ndarray, at_theta: np.ndarray, copies: int, n: int) -> np.ndarray:
    """(copies, N) bool: which sample of which copy changed a winner (rows sample-major)."""
    changed = mask != at_theta
    if changed.ndim == at_theta.ndim:  # one copy
        changed = changed[None]
    return changed.reshape(copies, n, -1).any(axis=2)


# built-in types whose output column j depends on input column j only (and on their parameters' entry j):
# moving entry (n, j) of every column at once moves each column as if alone
COLUMNWISE = (BatchNorm, Dropout, *ACTIVATIONS.values())


def columnwise(modules) -> bool:
    return all(type(m) in COLUMNWISE for m in modules)


# built-in types whose output channel (last axis) j depends on input channel j only, whatever the axes before it
# (an image's positions, or none): a change confined to channel j stays there, through pooling too; Flatten
# mixes channels into columns and is not one
CHANNELWISE = (*COLUMNWISE, MaxPool2d, AvgPool2d, GlobalAvgPool)


def keeps_channel(modules) -> bool:
    """Whether a change confined to one channel (column) stays in that channel through all of ``modules``:
    built-in channelwise types, or a layer that says it is ``columnwise``."""
    return all(type(m) in CHANNELWISE or m.columnwise for m in modules)
