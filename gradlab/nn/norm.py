"""Batch normalisation over the batch axis, with running statistics as buffers."""
from __future__ import annotations

import numpy as np

from .module import Module


class BatchNorm(Module):
    """out = gamma * (x - mu) / sqrt(var + eps) + beta, per feature. x: (N, D).

    ``spatial=True``: per channel of images x (N, H, W, C), mu and var taken over N, H and W (Ioffe &
    Szegedy 2015's convolutional batch norm; torch's BatchNorm2d); the running variance is corrected with
    n = N * H * W.

    Train mode normalises with the batch statistics and updates the running ones;
    eval mode uses the running ones. Running statistics are buffers, not parameters,
    so a gradient check never perturbs them.
    """

    columnwise = True
    couples_samples = True  # mu and var are taken over the batch

    def __init__(self, width: int, dtype=np.float64, name: str = "bn", momentum: float = 0.1, eps: float = 1e-5,
                 spatial: bool = False) -> None:
        super().__init__()
        self.name, self.spatial = name, spatial
        self.momentum, self.eps = momentum, eps
        self.add_param("gamma", np.ones(width, dtype=dtype))
        self.add_param("beta", np.zeros(width, dtype=dtype))
        self.running_mean = np.zeros(width, dtype=dtype)
        self.running_var = np.ones(width, dtype=dtype)

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        if self.spatial:
            return self._forward_spatial(x, train)
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
        if self.spatial:
            return self._backward_spatial(dout)
        xhat = self.xhat
        dout.sum(axis=0, out=self.grads["beta"])
        np.sum(dout * xhat, axis=0, out=self.grads["gamma"])
        dxhat = dout * self.params["gamma"]
        if not self.train:  # fixed statistics: a per-feature affine map
            return dxhat * self.inv_std
        # through mu and var: dx = inv_std/N * (N dxhat - sum dxhat - xhat sum(dxhat xhat))
        n = dout.shape[0]
        return (self.inv_std / n) * (n * dxhat - dxhat.sum(axis=0) - xhat * np.sum(dxhat * xhat, axis=0))

    def _affine(self, key: str) -> np.ndarray:
        """gamma or beta, K copies of it ((K, 1, C) or (K, C)) shaped (K, 1, 1, 1, C) for (K, N, H, W, C)."""
        v = self.params[key]
        return v if v.ndim == 1 else v.reshape(-1, 1, 1, 1, v.shape[-1])

    def _forward_spatial(self, x: np.ndarray, train: bool) -> np.ndarray:
        """x (N, H, W, C), or (K, N, H, W, C) for K copies: statistics over the axes N, H, W."""
        self.train = train
        if train:
            axes = (-4, -3, -2)
            mu = x.mean(axis=axes, keepdims=True)
            var = x.var(axis=axes, keepdims=True)
            if x.ndim == 4:
                n, m = x.shape[0] * x.shape[1] * x.shape[2], self.momentum
                self.running_mean *= 1 - m
                self.running_mean += m * mu.reshape(-1)
                self.running_var *= 1 - m
                self.running_var += m * var.reshape(-1) * (n / max(n - 1, 1))
        else:
            mu, var = self.running_mean, self.running_var
        self.inv_std = 1.0 / np.sqrt(var + self.eps)
        self.xhat = (x - mu) * self.inv_std
        return self._affine("gamma") * self.xhat + self._affine("beta")

    def _backward_spatial(self, dout: np.ndarray) -> np.ndarray:
        xhat, axes = self.xhat, (0, 1, 2)
        dout.sum(axis=axes, out=self.grads["beta"])
        np.sum(dout * xhat, axis=axes, out=self.grads["gamma"])
        dxhat = dout * self.params["gamma"]
        if not self.train:
            return dxhat * self.inv_std
        n = dout.shape[0] * dout.shape[1] * dout.shape[2]
        return (self.inv_std / n) * (n * dxhat - dxhat.sum(axis=axes, keepdims=True)
                                     - xhat * np.sum(dxhat * xhat, axis=axes, keepdims=True))
