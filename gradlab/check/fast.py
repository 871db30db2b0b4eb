"""Fast paths of the gradient check, kept beside it and keyed by layer type, so a layer speaks only
params/grads/forward/backward.

For a dense layer z = x W + b, moving one entry moves one output column (W[i, j] and b[j]) or one row
(x[n, i]) by a known amount: K perturbed copies of z are rank-1 updates of z at theta, computed without
K matrix products.
"""
from __future__ import annotations

import numpy as np

from ..nn import Dense


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


def dense_column(layer: Dense, key: str, flat: np.ndarray) -> np.ndarray | None:
    """The output column that entry ``flat`` of ``key`` moves (None: it moves a whole row)."""
    if key == "W":
        return flat % layer.params["W"].shape[1]
    return flat if key == "b" else None


def dense_moves(layer: Dense, key: str) -> str | None:
    """What a step in ``key`` is added to: b to every row of z = x W + b, so b's step is taken relative to z's
    scale (a b of 0 beside z of 1e16 moved by 1e-5 would not move z at all)."""
    return "output" if key == "b" else None


MOVES = {Dense: dense_moves}


def moves(module, key: str) -> str | None:
    """"output" when a step in ``key`` is added to the module's output as it is, else None."""
    rule = MOVES.get(type(module))
    return rule(module, key) if rule else None


# layer type -> (perturb, shift, column); exact types only, so a subclass that changes forward is not assumed
FAST = {Dense: (dense_perturb, dense_shift, dense_column)}


def fast_path(module):
    """The fast path of a module's type, or None."""
    return FAST.get(type(module))


def perturb(module, key: str, flat: np.ndarray, delta: np.ndarray, x: np.ndarray) -> np.ndarray:
    return FAST[type(module)][0](module, key, flat, delta, x)


def shift(module, cols: np.ndarray, delta: np.ndarray, x: np.ndarray) -> np.ndarray:
    return FAST[type(module)][1](module, cols, delta, x)


def column(module, key: str, flat: np.ndarray) -> np.ndarray | None:
    return FAST[type(module)][2](module, key, flat)
