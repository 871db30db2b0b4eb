"""Inverted dropout with its own seeded generator."""
from __future__ import annotations

import numpy as np

from .module import Module


class Dropout(Module):
    """Train: out = x * mask / (1 - p) with mask ~ Bernoulli(1 - p); eval: identity.

    ``frozen = True`` reuses the last mask, so a gradient check can check dropout's
    backward with one fixed mask instead of switching it off.
    """

    columnwise = True

    def __init__(self, p: float, rng: np.random.Generator, name: str = "dropout") -> None:
        super().__init__()
        self.name = name
        self.p, self.rng = p, rng
        self.scale: np.ndarray | None = None  # mask / (1 - p), saved for backward
        self.frozen = False

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        if not train or self.p == 0.0:
            self.scale = None
            return x
        if not (self.frozen and self.scale is not None and self.scale.shape == x.shape[x.ndim - self.scale.ndim:]):
            keep = self.rng.random(x.shape) >= self.p
            self.scale = keep.astype(x.dtype) / (1.0 - self.p)
        return x * self.scale

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout if self.scale is None else dout * self.scale
