"""The one protocol every layer speaks."""
from __future__ import annotations

import numpy as np


class Module:
    """A layer: ``params`` and ``grads`` dicts with the same keys and shapes.

    ``forward(x, train)`` caches what ``backward`` needs; ``backward(dout)`` fills
    ``grads`` (in place, so references stay valid) and returns dL/dx. Backward never
    recomputes the forward pass and never changes its input array.
    Buffers (running statistics, masks) are attributes, never parameters.
    """

    name: str = ""
    kinks: bool = False  # has max-like ops whose "winners" (``self.mask``) a gradient check must watch
    # forward broadcasts over a leading axis of K perturbed copies: x (K, N, D), a parameter of
    # shape (D,) given as (K, 1, D) and one of shape (A, B) as (K, A, B). A gradient check then
    # evaluates many perturbations in one call; a module without it is evaluated one copy at a time.
    batched: bool = True
    # output column j depends on input column j only (activations, batch norm, dropout): a change
    # confined to one column stays in that column, which lets a gradient check skip a matrix product
    columnwise: bool = False
    # mixes samples of the batch (batch norm in training mode): sample n's loss then depends on others
    couples_samples: bool = False

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}

    def add_param(self, key: str, value: np.ndarray) -> None:
        self.params[key] = value
        self.grads[key] = np.zeros_like(value)

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dout: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def named_params(self) -> dict[str, np.ndarray]:
        """``{"dense3.W": array, ...}``: the dotted names used in every log and .npz."""
        return {f"{self.name}.{k}": v for k, v in self.params.items()}

    def named_grads(self) -> dict[str, np.ndarray]:
        return {f"{self.name}.{k}": v for k, v in self.grads.items()}


def l2_applies(name: str) -> bool:
    """Whether ``train.l2`` penalises the parameter ``name`` (``dense3.W``, ``lstm1.U_f``): every weight
    matrix -- a dense W, each gate's W and U of a recurrent cell -- and no bias, gamma, beta or alpha."""
    return name.rsplit(".", 1)[-1].split("_", 1)[0] in ("W", "U")
