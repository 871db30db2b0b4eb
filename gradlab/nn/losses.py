"""Losses from logits, each with its gradient dL/dlogits. Averaged over the batch."""
from __future__ import annotations

import numpy as np


class Loss:
    """``forward(z, y) -> float`` caches; ``backward() -> dL/dz`` of the same shape as z.

    ``value(z, y)`` evaluates without caching and takes K stacked copies, z: (K, N, C) -> (K,).
    """

    name = ""
    classification = True

    def terms(self, z: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Per-sample losses, z: (..., N, C) -> (..., N)."""
        raise NotImplementedError

    def value(self, z: np.ndarray, y: np.ndarray) -> np.ndarray | float:
        return self.terms(z, y).mean(axis=-1)

    def forward(self, z: np.ndarray, y: np.ndarray) -> float:
        raise NotImplementedError

    def backward(self) -> np.ndarray:
        raise NotImplementedError


class BCE(Loss):
    """The binary cross-entropy J = -1/m sum y log(yhat) + (1 - y) log(1 - yhat), yhat = sigmoid(z).

    z: (N, 1), y: (N,) of 0/1. Computed as max(z, 0) - z y + log(1 + e^-|z|), which
    never takes the log of 0.
    """

    name = "bce"

    def terms(self, z, y):
        z = z[..., 0]
        return np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))

    def forward(self, z, y):
        self.z, self.y = z[:, 0], y.astype(z.dtype)
        return float(np.mean(self.terms(z, self.y)))

    def backward(self):
        # dJ/dz = (sigmoid(z) - y) / m
        p = 0.5 * (1.0 + np.tanh(0.5 * self.z))
        return ((p - self.y) / self.z.shape[0])[:, None]


class CrossEntropy(Loss):
    """Softmax cross-entropy. z: (N, C), y: (N,) integer classes."""

    name = "cross_entropy"

    @staticmethod
    def log_softmax(z):
        shifted = z - z.max(axis=-1, keepdims=True)  # exact: the shift cancels, exp never overflows
        return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))

    def terms(self, z, y):
        idx = np.broadcast_to(y.astype(np.intp)[:, None], z.shape[:-1] + (1,))
        return -np.take_along_axis(self.log_softmax(z), idx, axis=-1)[..., 0]

    def forward(self, z, y):
        self.logp = self.log_softmax(z)
        self.y = y.astype(np.intp)
        return float(-np.mean(self.logp[np.arange(z.shape[0]), self.y]))

    def backward(self):
        # dJ/dz = (softmax(z) - onehot(y)) / N
        g = np.exp(self.logp)
        g[np.arange(g.shape[0]), self.y] -= 1.0
        return g / g.shape[0]


class MSE(Loss):
    """Mean over the batch of the summed squared error: 1/N sum ||z - y||^2.

    z: (N, K), y: (N, K) for regression, or (N,) classes (compared with one-hot).
    """

    name = "mse"
    classification = False

    @staticmethod
    def targets(z, y):
        if y.ndim == 1 and z.shape[-1] > 1:  # class labels against one-hot targets
            return np.eye(z.shape[-1], dtype=z.dtype)[y.astype(np.intp)]
        return y.reshape(z.shape[-2:])

    def terms(self, z, y):
        d = z - self.targets(z, y)
        return np.sum(d * d, axis=-1)

    def forward(self, z, y):
        self.diff = z - self.targets(z, y)
        return float(np.sum(self.diff * self.diff) / z.shape[0])

    def backward(self):
        return 2.0 * self.diff / self.diff.shape[0]


LOSSES: dict[str, type[Loss]] = {cls.name: cls for cls in (BCE, CrossEntropy, MSE)}


def make_loss(name: str) -> Loss:
    return LOSSES[name]()
