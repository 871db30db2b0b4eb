"""Two layers of your own for gradlab: a correct Swish and a subtly wrong one.

A layer needs dicts ``params`` and ``grads`` (same keys and shapes), ``forward(x, train=True)``
that caches what backward needs, and ``backward(grad_out)`` that fills ``grads`` and returns
dL/dx. Name it in a config as ``custom_layer:Swish``; ``gradlab check`` compares its backward
with centred differences.
"""
import numpy as np


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # 1 / (1 + e^-z) without overflow


class Swish:
    """out = x * sigmoid(beta * x), with a learned beta per unit. x: (N, D) -> out: (N, D), beta: (D,)."""

    def __init__(self, width, beta=1.0, dtype=np.float64):
        self.params = {"beta": np.full(width, beta, dtype=dtype)}
        self.grads = {"beta": np.zeros(width, dtype=dtype)}

    def forward(self, x, train=True):
        self.x = x
        self.s = sigmoid(self.params["beta"] * x)
        return x * self.s

    def backward(self, grad_out):
        x, s, beta = self.x, self.s, self.params["beta"]
        ds = s * (1.0 - s)  # sigmoid'(beta x)
        # d out / d beta = x * sigmoid'(beta x) * x, summed over the batch (assigning a new array is fine)
        self.grads["beta"] = np.sum(grad_out * x * x * ds, axis=0)
        # d out / d x = sigmoid(beta x) + x * sigmoid'(beta x) * beta  (product rule, then chain rule)
        return grad_out * (s + beta * x * ds)


class SwishWrong(Swish):
    """Swish's forward with two realistic backward bugs; ``gradlab check`` should call both wrong."""

    def backward(self, grad_out):
        x, s = self.x, self.s
        ds = s * (1.0 - s)
        # bug: the chain rule's inner factor d(beta x)/d beta = x is dropped
        self.grads["beta"][...] = np.sum(grad_out * x * ds, axis=0)
        # bug: the product rule's second term (x * sigmoid'(beta x) * beta) is dropped
        return grad_out * s
