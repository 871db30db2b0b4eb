"""Optimizers and gradient clipping. Both act on ``params``/``grads`` dicts in place;
clipping happens here, between backward and the update, never inside a backward pass."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


class Optimizer:
    """``step(params, grads)`` updates every array of ``params`` in place (a view of a fused array moves
    the array it views). The arithmetic is the textbook one, in the same order, written into work arrays
    that are reused, so that a step allocates nothing.

    ``step(params, grads, measure=True)`` also returns the norm of the change it applied to each tensor,
    by key: the norm of the array it added to (or took from) the tensor, one BLAS dot product each, no copy
    of the parameters (it is ||after - before|| up to the rounding of the parameter's dtype)."""

    def __init__(self, lr: float) -> None:
        self.lr = lr
        self._work: dict = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray],
             measure: bool = False) -> dict[str, float] | None:
        self.begin()
        if not measure:
            for k, p in params.items():
                self.change(k, p, grads[k])
            return None
        with np.errstate(over="ignore"):
            return {k: _norm(self.change(k, p, grads[k])) for k, p in params.items()}

    def begin(self) -> None:
        """What a step computes once for all tensors."""

    def change(self, k: str, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        """Update tensor ``k`` in place; returns the array added to it or taken from it (valid until the
        next call)."""
        raise NotImplementedError

    def work(self, like: np.ndarray, i: int = 0, dtype=None) -> np.ndarray:
        """Work array ``i``, shaped like ``like`` (in ``dtype``, default its dtype), shared by every tensor."""
        dtype = np.dtype(dtype or like.dtype)
        flat = self._work.get((i, dtype))
        if flat is None or flat.size < like.size:
            flat = self._work[i, dtype] = np.empty(like.size, dtype)
        return flat[:like.size].reshape(like.shape)


class SGD(Optimizer):
    """W_new = W_old - lr * dL/dW."""

    def change(self, k, p, g):
        d = np.multiply(g, self.lr, out=self.work(p))
        p -= d
        return d


class Momentum(Optimizer):
    """v = mu v - lr g ; W += v."""

    def __init__(self, lr: float, momentum: float = 0.9) -> None:
        super().__init__(lr)
        self.mu = momentum
        self.v: dict[str, np.ndarray] = {}

    def change(self, k, p, g):
        v = self.v.setdefault(k, np.zeros_like(p))
        v *= self.mu
        v -= np.multiply(g, self.lr, out=self.work(p))
        p += v
        return v


class Adam(Optimizer):
    """Kingma & Ba 2015, with bias correction."""

    def __init__(self, lr: float, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> None:
        super().__init__(lr)
        self.b1, self.b2, self.eps = beta1, beta2, eps
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}
        self.t = 0

    def begin(self):
        self.t += 1
        # bias-corrected m / (sqrt(v_hat) + eps), with eps outside the correction as in PyTorch
        self.rate = self.lr / (1 - self.b1**self.t)
        self.root_bc2 = np.sqrt(1 - self.b2**self.t)  # a NumPy float64: float32 tensors divide by it in float64

    def change(self, k, p, g):
        m = self.m.setdefault(k, np.zeros_like(p))
        v = self.v.setdefault(k, np.zeros_like(p))
        work = self.work(p)
        m *= self.b1
        m += np.multiply(g, 1 - self.b1, out=work)
        v *= self.b2
        v += np.multiply(np.multiply(g, g, out=work), 1 - self.b2, out=work)
        den = np.sqrt(v, out=self.work(p, 1, np.result_type(p.dtype, self.root_bc2)))  # sqrt(v) / root_bc2 + eps
        den /= self.root_bc2
        den += self.eps
        d = np.divide(np.multiply(m, self.rate, out=work), den, out=den)  # rate * m / den
        p -= d
        return d


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "adam": Adam}


def make_optimizer(cfg, lr: float) -> Optimizer:
    """``OptimizerConfig`` -> optimizer; only the keys the optimizer takes are passed."""
    extra = {k: v for k, v in cfg.model_dump().items() if k != "name" and v is not None}
    return OPTIMIZERS[cfg.name](lr, **extra)


def norm(a: np.ndarray) -> float:
    """L2 norm of any array, through one BLAS dot product (rescaled where the squares overflow)."""
    with np.errstate(over="ignore"):  # an overflow is expected here, and handled below
        return _norm(a)


def norms(arrays: dict[str, np.ndarray]) -> dict[str, float]:
    """``norm`` of every array, by key (one error-state switch for them all)."""
    with np.errstate(over="ignore"):
        return {k: _norm(a) for k, a in arrays.items()}


def _norm(a: np.ndarray) -> float:
    flat = a.reshape(-1)
    n = float(np.sqrt(np.dot(flat, flat)))
    if math.isinf(n):  # finite entries whose squares overflow, e.g. 1e200
        m = float(np.abs(flat).max())
        if math.isfinite(m):
            n = m * float(np.sqrt(np.dot(flat / m, flat / m)))
    return n


def global_norm(norms: dict[str, float]) -> float:
    """||g|| over all tensors, from their norms."""
    return math.hypot(*norms.values())  # scaled: no overflow for norms near 1e200


@dataclass
class ClipResult:
    norm_before: float
    norm_after: float
    clipped: bool


def clip_grads(grads: dict[str, np.ndarray], norms: dict[str, float], cfg) -> ClipResult:
    """Clip ``grads`` in place by a ``ClipConfig`` (or None); ``norms`` are their L2 norms.

    norm/global: if ||g|| > threshold, g <- threshold / ||g|| * g (Pascanu et al. 2013):
    the direction is unchanged. norm/layer: the same per tensor. value: each entry to
    [-threshold, threshold].
    """
    before = global_norm(norms)
    if cfg is None or not np.isfinite(before):
        return ClipResult(before, before, False)
    t = cfg.threshold
    clipped = False
    if cfg.mode == "value":
        for g in grads.values():
            if g.size and np.abs(g).max() > t:
                np.clip(g, -t, t, out=g)
                clipped = True
        after = global_norm({k: norm(g) for k, g in grads.items()}) if clipped else before
    elif cfg.scope == "layer":
        after_norms = dict(norms)
        for k, g in grads.items():
            if norms[k] > t:
                g *= t / norms[k]
                clipped, after_norms[k] = True, t
        after = global_norm(after_norms)
    else:
        if before > t:
            for g in grads.values():
                g *= t / before
            clipped = True
        after = t if clipped else before
    return ClipResult(before, after, clipped)
