"""A feed-forward net of logged layers, with optional residual blocks.

A *layer* (what every log counts) is one dense layer with its batch norm, activation
and dropout: layers 1..depth are hidden, layer depth+1 is the output layer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import ConfigError, allowed_imports
from .activations import Activation, make_activation
from .recurrent import Recurrent
from .custom import CustomError, CustomModule, make_custom, output_width
from .dense import Dense
from .dropout import Dropout
from .init import init_weight
from .losses import Loss
from .module import Module, l2_applies
from .norm import BatchNorm


class Sequential(Module):
    """Modules applied in order; params and grads are the union of theirs, by dotted name."""

    def __init__(self, modules: list[Module]) -> None:
        super().__init__()
        self.modules = modules
        self.params = {k: v for m in modules for k, v in m.named_params().items()}
        self.grads = {k: v for m in modules for k, v in m.named_grads().items()}
        # the module whose output the activation statistics describe (an activation, a recurrent cell)
        self.activation = next((m for m in modules if isinstance(m, (Activation, Recurrent))), None)

    def __setstate__(self, state: dict) -> None:
        """A deep copy's (or unpickled) params and grads are its modules' own arrays again: copied on their
        own, the union's entries would be arrays apart from the modules' (a recurrent cell's gate views)."""
        self.__dict__.update(state)
        self.params = {k: v for m in self.modules for k, v in m.named_params().items()}
        self.grads = {k: v for m in self.modules for k, v in m.named_grads().items()}

    def named_params(self):
        return self.params

    def named_grads(self):
        return self.grads

    def forward(self, x, train=True, start: int = 0):
        """Modules ``start``.. on x; ``inputs`` keeps each module's input (for checking it alone)."""
        self.inputs = [None] * start
        for m in self.modules[start:]:
            self.inputs.append(x)
            x = m.forward(x, train)
        return x

    def backward(self, dout):
        for m in reversed(self.modules):
            dout = m.backward(dout)
        return dout


class MLP:
    """x: (N, n_in) -> logits: (N, n_out). ``block`` > 0 adds x to the output of every k hidden layers.

    Recurrent nets are built as the same chain of logged layers (see ``recurrent.build_rnn``).
    """

    per_step = False  # logits for every time step: targets (N, T) are compared as (N * T,)

    def targets(self, y: np.ndarray) -> np.ndarray:
        """y as the loss compares it with the logits."""
        return y.reshape(-1) if self.per_step else y

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

    def __setstate__(self, state: dict) -> None:
        """As ``Sequential.__setstate__``: the copy's params and grads are its layers' own arrays."""
        self.__dict__.update(state)
        self.params = {k: v for layer in self.layers for k, v in layer.params.items()}
        self.grads = {k: v for layer in self.layers for k, v in layer.grads.items()}

    @property
    def depth(self) -> int:
        return len(self.layers) - 1

    def modules(self):
        for layer in self.layers:
            yield from layer.modules

    def forward(self, x: np.ndarray, train: bool = True, start: int = 1, skip: dict | None = None,
                module: int = 0) -> np.ndarray:
        """Layers ``start``.. on ``x``: x: (N, n_in) -> logits (N, n_out), or (K, N, .) for K copies.

        Resuming at ``start`` with ``(x, skip) = self.states[start]`` (the layer's input and the
        residual inputs pending there) re-runs only the tail of the net; ``module`` > 0 resumes
        inside layer ``start``, with x the output of its module ``module - 1``.
        """
        resumed = skip is not None
        h, skip = x, dict(skip or {})
        for l in range(start, len(self.layers) + 1):
            if l in self.block_start and not (resumed and l == start):
                skip[self.block_start[l]] = h
            self.states[l] = (h, dict(skip))
            h = self.layers[l - 1].forward(h, train, module if l == start else 0)
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

    def first_nonfinite(self, loss_finite: bool = True) -> tuple[int, str]:
        """(layer, where) of the first non-finite value after a pass: in the parameters, the
        forward pass (from the input up), the loss itself, or the backward pass (from the output down)."""
        for name, p in self.params.items():
            if not np.isfinite(p).all():
                return self.param_layer[name], "params"
        for l in range(1, len(self.layers) + 1):
            if self.outputs[l] is not None and not np.isfinite(self.outputs[l]).all():
                return l, "forward"
        if not loss_finite:  # finite outputs whose loss overflows (e.g. a squared 1e200)
            return len(self.layers), "loss"
        for l in range(len(self.layers), 0, -1):
            grads = [g for g in self.layers[l - 1].grads.values()]
            if self.deltas[l] is not None and not (np.isfinite(self.deltas[l]).all()
                                                   and all(np.isfinite(g).all() for g in grads)):
                return l, "backward"
        return len(self.layers), "loss"

    def loss_and_grads(self, x: np.ndarray, y: np.ndarray, loss: Loss, l2: float = 0.0, train: bool = True) -> float:
        """J = loss(f(x), y) + l2/2 sum ||W||^2 over the weight matrices (``l2_applies``); fills grads with
        dJ/dtheta and returns J."""
        J = loss.forward(self.forward(x, train), self.targets(y))
        self.input_grad = self.backward(loss.backward())  # dJ/dx, which a gradient check compares too
        if l2:
            for name, W in self.params.items():
                if l2_applies(name):
                    J += 0.5 * l2 * float(np.vdot(W, W))
                    self.grads[name] += l2 * W
        return J


@dataclass
class _Build:
    """What the item builders share while building one net."""

    cfg: Any  # an MLPConfig
    rng: np.random.Generator
    dropout_rng: np.random.Generator
    dtype: Any
    fan_in: int


def _dense(b: _Build, units: int, l: int, bias: bool) -> Dense:
    """Dense layer ``dense<l>``: (fan_in, units), drawn from ``b.rng``."""
    W = init_weight(b.cfg.init, (b.fan_in, units), b.rng, b.dtype)
    b.fan_in = units
    return Dense(W, np.full(units, b.cfg.bias_init, dtype=b.dtype) if bias else None, f"dense{l}")


def _custom(item, b: _Build, l: int, width: int, where: str) -> Module:
    """A class of your own (``module:Class``), wrapped and named ``<class><l>``."""
    try:
        return make_custom(item.spec, b.cfg.import_dir, getattr(item, "args", {}), width, b.dtype, l,
                           activation=item.type == "activation", allowed=allowed_imports(b.cfg))
    except CustomError as exc:
        raise ConfigError(f"'{where}': {exc}.") from None


def _output_width(module: CustomModule, width: int, dtype, where: str) -> int:
    try:
        return output_width(module, width, dtype)
    except CustomError as exc:
        raise ConfigError(f"'{where}': {exc}.") from None


def _activation(item, b: _Build, l: int, width: int, where: str) -> Module:
    if item.spec:
        return _custom(item, b, l, width, where)
    return make_activation(item.name, item.alpha, width, l, b.dtype)


# layer item type -> builder (dense items start a logged layer and are built apart)
BUILDERS = {
    "activation": _activation,
    "batchnorm": lambda item, b, l, width, where: BatchNorm(width, b.dtype, f"bn{l}"),
    "dropout": lambda item, b, l, width, where: Dropout(item.p, b.dropout_rng, f"dropout{l}"),
    "custom": _custom,
}


def _unique(module: Module, group: list[Module]) -> Module:
    """Rename ``tanh3`` to ``tanh3_2`` (and so on) if its logged layer already has one."""
    names = {m.name for m in group}
    k, base = 1, module.name
    while module.name in names:
        k += 1
        module.name = f"{base}_{k}"
    return module


def build_mlp(cfg, n_in: int, n_out: int, rng: np.random.Generator, dropout_rng: np.random.Generator,
              dtype=np.float64) -> MLP:
    """Build an MLP from an ``MLPConfig`` (depth/width or a ``layers`` list); draws weights from ``rng``.

    Each dense item starts a logged layer; the output dense layer (to n_out) is appended.
    A dense item directly followed by batch norm has no bias (batch norm's beta replaces it).
    """
    b = _Build(cfg, rng, dropout_rng, dtype, n_in)
    plan = cfg.plan()
    groups: list[list[Module]] = []
    for i, (item, where, _) in enumerate(plan):
        if item.type == "dense":
            after = plan[i + 1][0].type if i + 1 < len(plan) else None
            groups.append([_dense(b, item.units, len(groups) + 1, bias=after != "batchnorm")])
        else:
            module = BUILDERS[item.type](item, b, len(groups), b.fan_in, where)
            if isinstance(module, CustomModule):  # it may change the width: the next layer takes what it gives
                b.fan_in = _output_width(module, b.fan_in, dtype, where)
            groups[-1].append(_unique(module, groups[-1]))
    groups.append([_dense(b, n_out, len(groups) + 1, bias=True)])
    return MLP([Sequential(modules) for modules in groups], cfg.block)
