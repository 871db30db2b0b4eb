"""Layers of the gradient-check corpus, used through ``model.layers`` / ``model.activation`` as
``corpus_layers:Class`` with ``model.import_dir`` set to this folder.

Each wrong layer is the twin of a correct one: same forward, a backward with one realistic mistake
whose size is stated, so the corpus can require that the check passes the twin and fails the mistake.
"""
import numpy as np


def sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # 1 / (1 + e^-z) without overflow


class LayerNorm:
    """Layer normalisation over the features of each sample (Ba et al. 2016), keeps the width.

    out = gamma * (x - mu) / sqrt(var + eps) + beta, mu and var over the last axis. x: (N, D).
    """

    def __init__(self, width, eps=1e-5, dtype=np.float64):
        self.eps = eps
        self.params = {"gamma": np.ones(width, dtype=dtype), "beta": np.zeros(width, dtype=dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def forward(self, x, train=True):
        mu = x.mean(axis=-1, keepdims=True)
        self.var = x.var(axis=-1, keepdims=True)
        self.centred = x - mu
        self.inv_std = 1.0 / np.sqrt(self.var + self.eps)
        self.xhat = self.centred * self.inv_std
        return self.params["gamma"] * self.xhat + self.params["beta"]

    def backward(self, grad_out):
        self.grads["gamma"][...] = np.sum(grad_out * self.xhat, axis=0)
        self.grads["beta"][...] = np.sum(grad_out, axis=0)
        return self.input_grad(grad_out * self.params["gamma"], self.xhat, self.inv_std)

    @staticmethod
    def input_grad(dxhat, xhat, inv_std):
        # dx = inv_std * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)), means over the features
        return inv_std * (dxhat - dxhat.mean(axis=-1, keepdims=True)
                          - xhat * np.mean(dxhat * xhat, axis=-1, keepdims=True))


class LayerNormNoEps(LayerNorm):
    """LayerNorm whose backward drops eps: it uses 1 / sqrt(var), the forward 1 / sqrt(var + eps).

    Every gradient below it is off by a factor of about 1 + eps / (2 var): 1e-5-ish for var near 0.3,
    the size CS231n's notes call too high for a net without kinks (expect below 1e-7).
    """

    def backward(self, grad_out):
        inv_std = 1.0 / np.sqrt(self.var)  # bug: eps dropped
        xhat = self.centred * inv_std
        self.grads["gamma"][...] = np.sum(grad_out * xhat, axis=0)
        self.grads["beta"][...] = np.sum(grad_out, axis=0)
        return self.input_grad(grad_out * self.params["gamma"], xhat, inv_std)


class Sigmoid:
    """The logistic sigmoid as an activation of your own (no parameters)."""

    def __init__(self, width=None, dtype=np.float64):
        self.params, self.grads = {}, {}

    def forward(self, x, train=True):
        self.s = sigmoid(x)
        return self.s

    def backward(self, grad_out):
        s = self.s
        return grad_out * s * (1.0 - s)


class SigmoidSmallTerm(Sigmoid):
    """sigma' written as s (1 - s) - 1e-5 s^2: a relative error of 1e-5 s / (1 - s), about 1e-5 near 0."""

    def backward(self, grad_out):
        s = self.s
        return grad_out * (s * (1.0 - s) - 1e-5 * s * s)
