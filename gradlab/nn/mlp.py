"""A feed-forward net of logged layers, with optional residual blocks.

A *layer* (what every log counts) is one dense layer with its batch norm, activation
and dropout: layers 1..depth are hidden, layer depth+1 is the output layer.
"""
from __future__ import annotations

import numpy as np

from .activations import Activation, make_activation
from .dense import Dense
from .dropout import Dropout
from .init import init_weight
from .losses import Loss
from .module import Module
from .norm import BatchNorm


class Sequential(Module):
    """Modules applied in order; params and grads are the union of theirs, by dotted name."""

    def __init__(self, modules: list[Module]) -> None:
        super().__init__()
        self.modules = modules
        self.params = {k: v for m in modules for k, v in m.named_params().items()}
        self.grads = {k: v for m in modules for k, v in m.named_grads().items()}
        self.activation = next((m for m in modules if isinstance(m, Activation)), None)

    def named_params(self):
        return self.params

    def named_grads(self):
        return self.grads

    def forward(self, x, train=True):
        self.inputs = []  # each module's input, for checking a module alone
        for m in self.modules:
            self.inputs.append(x)
            x = m.forward(x, train)
        return x

    def backward(self, dout):
        for m in reversed(self.modules):
            dout = m.backward(dout)
        return dout


class MLP:
    """x: (N, n_in) -> logits: (N, n_out). ``block`` > 0 adds x to the output of every k hidden layers."""

    def __init__(self, layers: list[Sequential], block: int = 0) -> None:
        self.layers = layers
        depth = len(layers) - 1
        # residual blocks over hidden layers 2..depth (layer 1 changes the width)
        starts = range(2, depth + 1, block) if block else ()
        self.block_start = {s: min(s + block - 1, depth) for s in starts}
        self.block_end = {e: s for s, e in self.block_start.items()}
        self.params = {k: v for layer in layers for k, v in layer.params.items()}
        self.grads = {k: v for layer in layers for k, v in layer.grads.items()}
        self.param_layer = {k: i for i, layer in enumerate(layers, 1) for k in layer.params}
        self.outputs: list[np.ndarray | None] = [None] * (len(layers) + 1)  # 1-based
        self.deltas: list[np.ndarray | None] = [None] * (len(layers) + 1)  # dL / d outputs[l]
        self.states: list[tuple | None] = [None] * (len(layers) + 1)  # (input, pending skips) of layer l

    @property
    def depth(self) -> int:
        return len(self.layers) - 1

    def modules(self):
        for layer in self.layers:
            yield from layer.modules

    def forward(self, x: np.ndarray, train: bool = True, start: int = 1, skip: dict | None = None) -> np.ndarray:
        """Layers ``start``.. on ``x``; ``skip`` holds the residual inputs still pending there.

        Starting past layer 1 with ``self.states[start]`` re-runs only the tail of the net.
        """
        h, skip = x, dict(skip or {})
        for l in range(start, len(self.layers) + 1):
            self.states[l] = (h, dict(skip))
            if l in self.block_start:
                skip[self.block_start[l]] = h
            h = self.layers[l - 1].forward(h, train)
            if l in self.block_end:
                h = h + skip.pop(l)  # F(x) + x
            self.outputs[l] = h
        return h

    def backward(self, dlogits: np.ndarray) -> np.ndarray:
        """Fill every grad; returns dL/dx. deltas[l] holds dL/d(output of layer l)."""
        g, skip = dlogits, {}
        for l in range(len(self.layers), 0, -1):
            self.deltas[l] = g
            if l in self.block_end:
                skip[self.block_end[l]] = g  # the identity path carries g unchanged
            g = self.layers[l - 1].backward(g)
            if l in self.block_start:
                g = g + skip.pop(l)
        return g

    def first_nonfinite(self) -> tuple[int, str]:
        """(layer, where) of the first non-finite value after a pass: in the parameters, the
        forward pass (from the input up) or the backward pass (from the output down)."""
        for name, p in self.params.items():
            if not np.isfinite(p).all():
                return self.param_layer[name], "params"
        for l in range(1, len(self.layers) + 1):
            if self.outputs[l] is not None and not np.isfinite(self.outputs[l]).all():
                return l, "forward"
        for l in range(len(self.layers), 0, -1):
            grads = [g for g in self.layers[l - 1].grads.values()]
            if self.deltas[l] is not None and not (np.isfinite(self.deltas[l]).all()
                                                   and all(np.isfinite(g).all() for g in grads)):
                return l, "backward"
        return len(self.layers), "loss"

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray, loss: Loss, l2: float = 0.0, train: bool = True) -> float:
        """J = loss(f(x), y) + l2/2 sum ||W||^2; fills grads with dJ/dtheta and returns J."""
        J = loss.forward(self.forward(x, train), y)
        self.backward(loss.backward())
        if l2:
            for name, W in self.params.items():
                if name.endswith(".W"):
                    J += 0.5 * l2 * float(np.vdot(W, W))
                    self.grads[name] += l2 * W
        return J


def build_mlp(cfg, n_in: int, n_out: int, rng: np.random.Generator, dropout_rng: np.random.Generator,
              dtype=np.float64) -> MLP:
    """Build an MLP from an ``MLPConfig``; draws weights from ``rng``."""
    layers = []
    widths = [n_in] + [cfg.width] * cfg.depth + [n_out]
    for l in range(1, cfg.depth + 2):
        fan_in, fan_out = widths[l - 1], widths[l]
        hidden = l <= cfg.depth
        W = init_weight(cfg.init, (fan_in, fan_out), rng, dtype)
        use_bias = not (hidden and cfg.batchnorm)  # batch norm's beta replaces the bias
        b = np.full(fan_out, cfg.bias_init, dtype=dtype) if use_bias else None
        modules: list[Module] = [Dense(W, b, f"dense{l}")]
        if hidden:
            if cfg.batchnorm:
                modules.append(BatchNorm(fan_out, dtype, f"bn{l}"))
            act = cfg.activation
            modules.append(make_activation(act.name, act.alpha, fan_out, l, dtype))
            if cfg.dropout > 0:
                modules.append(Dropout(cfg.dropout, dropout_rng, f"dropout{l}"))
        layers.append(Sequential(modules))
    return MLP(layers, cfg.block)
