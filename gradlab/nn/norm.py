"""Batch normalisation over the batch axis, with running statistics as buffers."""
from __future__ import annotations

import numpy as np

from .module import Module


class BatchNorm(Module):
    """out = gamma * (x - mu) / sqrt(var + eps) + beta, per feature. x: (N, D).

    Train mode normalises with the batch statistics and updates the running ones;
    eval mode uses the running ones. Running statistics are buffers, not parameters,
    so a gradient check never perturbs them.
    """

    columnwise = True
    couples_samples = True  # mu and var are taken over the batch

    def __init__(self, width: int, dtype=np.float64, name: str = "bn", momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.name = name
        self.momentum, self.eps = momentum, eps
        self.add_param("gamma", np.ones(width, dtype=dtype))
        self.add_param("beta", np.zeros(width, dtype=dtype))
        self.running_mean = np.zeros(width, dtype=dtype)
        self.running_var = np.ones(width, dtype=dtype)

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        self.train = train
        if train:  # statistics over the batch axis, -2, so (K, N, D) stacks of batches work too
            mu = x.mean(axis=-2, keepdims=True)
            var = x.var(axis=-2, keepdims=True)
            if x.ndim == 2:
                n, m = x.shape[0], self.momentum
                self.running_mean *= 1 - m
                self.running_mean += m * mu[0]
                self.running_var *= 1 - m
                self.running_var += m * var[0] * (n / max(n - 1, 1))
        else:
            mu, var = self.running_mean, self.running_var
        self.inv_std = 1.0 / np.sqrt(var + self.eps)
        self.xhat = (x - mu) * self.inv_std
        return self.params["gamma"] * self.xhat + self.params["beta"]

    def backward(self, dout: np.ndarray) -> np.ndarray:
        xhat = self.xhat
        dout.sum(axis=0, out=self.grads["beta"])
        np.sum(dout * xhat, axis=0, out=self.grads["gamma"])
        dxhat = dout * self.params["gamma"]
        if not self.train:  # fixed statistics: a per-feature affine map
            return dxhat * self.inv_std
        # through mu and var: dx = inv_std/N * (N dxhat - sum dxhat - xhat sum(dxhat xhat))
        n = dout.shape[0]
        return (self.inv_std / n) * (n * dxhat - dxhat.sum(axis=0) - xhat * np.sum(dxhat * xhat, axis=0))
