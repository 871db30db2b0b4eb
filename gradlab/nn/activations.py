"""Element-wise activations. Each caches what its derivative needs and reports its own
saturation (derivative below 5% of its maximum) and dead units (ReLU, zero on the whole batch)."""
from __future__ import annotations

import numpy as np

from .module import Module

SATURATION = 0.05  # a unit is saturated where phi'(z) < 5% of max phi'


def times(dout: np.ndarray, d: np.ndarray) -> np.ndarray:
    """dout * d, written into ``d`` (an array of this backward's own) when the product has its shape and dtype."""
    if dout.shape == d.shape and dout.dtype == d.dtype:
        return np.multiply(d, dout, out=d)
    return dout * d


class Activation(Module):
    """phi applied element-wise. x: (N, D) -> out: (N, D)."""

    columnwise = True

    kind = ""

    def __init__(self, name: str = "", alpha: float | None = None, width: int | None = None, dtype=np.float64) -> None:
        super().__init__()
        self.name = name or self.kind
        self.alpha = alpha
        self.out: np.ndarray | None = None

    def saturated(self) -> float | None:
        """Fraction of entries whose derivative is below 5% of its maximum (None: never saturates)."""
        return None

    def dead(self) -> float | None:
        """Fraction of units that are zero on the whole batch (None: cannot die)."""
        return None


class Linear(Activation):
    kind = "linear"

    def forward(self, x, train=True):
        self.out = x
        return x

    def backward(self, dout):
        return dout


class Sigmoid(Activation):
    kind = "sigmoid"

    def forward(self, x, train=True):
        # 1 / (1 + e^-x) written through tanh: no overflow for large |x|; one array, computed in place
        s = np.multiply(x, 0.5)
        np.tanh(s, out=s)
        s += 1.0
        s *= 0.5
        self.out = s
        return s

    def backward(self, dout):
        d = np.subtract(1.0, self.out)
        d *= self.out  # sigma' = sigma (1 - sigma) <= 1/4
        return times(dout, d)

    def saturated(self):
        s = self.out
        return float(np.count_nonzero(s * (1.0 - s) < SATURATION * 0.25) / s.size)


class Tanh(Activation):
    kind = "tanh"

    def forward(self, x, train=True):
        self.out = np.tanh(x)
        return self.out

    def backward(self, dout):
        d = np.multiply(self.out, self.out)
        np.subtract(1.0, d, out=d)  # tanh' = 1 - tanh^2 <= 1
        return times(dout, d)

    def saturated(self):
        # 1 - a^2 < 0.05  <=>  |a| > sqrt(0.95)
        return float(np.count_nonzero(np.abs(self.out) > np.sqrt(1.0 - SATURATION)) / self.out.size)


class Softsign(Activation):
    kind = "softsign"

    def forward(self, x, train=True):
        self.denom = 1.0 + np.abs(x)
        self.out = x / self.denom
        return self.out

    def backward(self, dout):
        d = np.multiply(self.denom, self.denom)  # softsign' = 1 / (1 + |x|)^2 <= 1
        return np.divide(dout, d, out=d) if dout.shape == d.shape and dout.dtype == d.dtype else dout / d

    def saturated(self):
        return float(np.count_nonzero(self.denom * self.denom > 1.0 / SATURATION) / self.denom.size)


class ReLU(Activation):
    kind = "relu"
    kinks = True

    def forward(self, x, train=True):
        self.mask = x > 0  # the "winners" of max(0, x)
        self.out = np.maximum(x, 0.0)
        return self.out

    def backward(self, dout):
        return dout * self.mask

    def dead(self):
        # a unit is a feature of a dense layer, a (position, channel) of a conv layer's (N, H, W, C) output
        alive = self.mask.any(axis=0)
        return float(np.count_nonzero(~alive) / alive.size)


class LeakyReLU(Activation):
    kind = "leaky_relu"
    kinks = True

    def forward(self, x, train=True):
        self.mask = x > 0
        self.out = np.where(self.mask, x, self.alpha * x)
        return self.out

    def backward(self, dout):
        return np.where(self.mask, dout, self.alpha * dout)


class PReLU(Activation):
    """Leaky ReLU with a learned slope per unit: params alpha of shape (D,)."""

    kind = "prelu"
    kinks = True

    def __init__(self, name="", alpha=0.25, width=None, dtype=np.float64):
        super().__init__(name, alpha, width, dtype)
        self.add_param("alpha", np.full(width, alpha, dtype=dtype))

    def forward(self, x, train=True):
        self.x = x
        self.mask = x > 0
        alpha = self.params["alpha"]
        if alpha.ndim > 1 and x.ndim >= 4:  # K copies (K, 1, C) against images x (N, H, W, C) or (K, N, H, W, C)
            alpha = alpha.reshape(len(alpha), 1, 1, 1, alpha.shape[-1])
        self.out = np.where(self.mask, x, alpha * x)
        return self.out

    def backward(self, dout):
        # d out / d alpha = x where x <= 0, summed over the batch (and an image's positions: all but the last axis)
        np.sum(np.where(self.mask, 0.0, dout * self.x), axis=tuple(range(dout.ndim - 1)), out=self.grads["alpha"])
        return np.where(self.mask, dout, self.params["alpha"] * dout)


class ELU(Activation):
    kind = "elu"

    def forward(self, x, train=True):
        self.mask = x > 0
        self.out = np.where(self.mask, x, self.alpha * np.expm1(np.minimum(x, 0.0)))
        return self.out

    def backward(self, dout):
        # elu'(x) = 1 for x > 0, alpha e^x = out + alpha otherwise
        d = np.add(self.out, self.alpha)
        np.copyto(d, 1.0, where=self.mask)
        return times(dout, d)


class Softplus(Activation):
    kind = "softplus"

    def forward(self, x, train=True):
        self.x = x
        self.out = np.logaddexp(0.0, x)  # log(1 + e^x) without overflow
        return self.out

    def backward(self, dout):
        d = np.multiply(self.x, 0.5)  # softplus' = sigmoid = 0.5 (1 + tanh(x / 2))
        np.tanh(d, out=d)
        d += 1.0
        d *= 0.5
        return times(dout, d)


ACTIVATIONS: dict[str, type[Activation]] = {
    cls.kind: cls for cls in (Linear, Sigmoid, Tanh, Softsign, ReLU, LeakyReLU, PReLU, ELU, Softplus)
}


def make_activation(name: str, alpha: float | None = None, width: int | None = None, index: int | str = "",
                    dtype=np.float64) -> Activation:
    """Registry look-up: config name -> activation layer named e.g. ``prelu3``."""
    return ACTIVATIONS[name](f"{name}{index}", alpha, width, dtype)
