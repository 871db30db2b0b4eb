"""A convolutional net of logged layers, built from a ``CNNConfig`` (``model.kind: cnn``).

Each conv item and residual block starts a logged layer (what every log counts); the batch norm, activation,
pooling and dropout after it belong to it. The global pool or flatten starts the layer of the first dense item
after it (the output layer ``dense<L>`` by default): so the last conv layer's delta_norm is, as every other
conv layer's, the gradient of an image, not of the pooled vector (which is about sqrt(H*W) times larger per
entry and would skew the first/last layer ratio the diagnosis reads). Each later dense item starts a layer of
its own. Names: conv<l>, bn<l>, relu<l>, maxpool<l>, avgpool<l>,
gap<l>, flatten<l>, res<l>, dropout<l>, dense<l>. The net is gradlab's ``MLP`` of ``Sequential`` layers, so
training, logging, the check and the report treat it as any other.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ..config import ConfigError
from .activations import make_activation
from .conv import AvgPool2d, Conv2d, Flatten, GlobalAvgPool, MaxPool2d, out_size
from .dense import Dense
from .dropout import Dropout
from .init import init_weight
from .mlp import MLP, Sequential, _unique
from .module import Module
from .norm import BatchNorm

STARTS = ("conv", "residual", "dense")  # the items that start a logged layer (a dense one: unless it ends a head)
HEADS = ("gap", "flatten")  # start the logged layer of the dense item after them


def same(kernel: int) -> int:
    """The padding that keeps an image's size at stride 1: (k - 1) / 2 for an odd kernel."""
    return (kernel - 1) // 2


@dataclass
class Step:
    """One item of the plan with the logged layer it belongs to and the shapes it takes and gives:
    (H, W, C) for an image, (D,) for a vector."""

    item: Any
    where: str  # the key path naming it (model.channels[1], model.layers[3])
    layer: int  # 1-based logged layer
    shape_in: tuple[int, ...]
    shape_out: tuple[int, ...]
    bias: bool = True  # conv and dense: False when batch norm follows (its beta replaces the bias)

    @property
    def fan_in(self) -> int:
        """k * k * C_in for a conv or residual item (its first convolution), D_in for a dense one."""
        k = getattr(self.item, "kernel", 1)
        return k * k * self.shape_in[-1]


def walk(cfg, input_shape: tuple[int, ...]) -> Iterator[Step]:
    """The plan's items in order, with their logged layer and shapes; a ConfigError naming the key where an
    image would shrink below one pixel (the schema has already checked the items' order)."""
    shape = tuple(int(n) for n in input_shape)
    plan = cfg.plan()
    layer, head = 0, False
    for i, (item, where) in enumerate(plan):
        if item.type in HEADS or (item.type in STARTS and not head):
            layer += 1
        head = item.type in HEADS or (head and item.type not in STARTS)
        after = plan[i + 1][0].type if i + 1 < len(plan) else None
        out = _out_shape(item, shape, where, layer, input_shape, cfg)
        yield Step(item, where, layer, shape, out, bias=after != "batchnorm")
        shape = out


def _out_shape(item, shape: tuple[int, ...], where: str, layer: int, input_shape, cfg) -> tuple[int, ...]:
    """The shape an item gives for ``shape``: Ho = (H + 2p - k) // s + 1 for a conv, a block or a pool."""
    t = item.type
    if t in ("gap", "flatten"):
        return (shape[-1],) if t == "gap" else (int(np.prod(shape)),)
    if t == "dense":
        return (item.units,)
    if t not in ("conv", "residual", "maxpool", "avgpool"):
        return shape  # batch norm, activation, dropout
    h, w = shape[0], shape[1]
    if t in ("conv", "residual"):
        k, s = item.kernel, item.stride
        p = same(k) if t == "residual" or item.padding == "same" else item.padding
        what = f"a {k}x{k} kernel" + (f" with padding {p}" if p else "") + (f" at stride {s}" if s > 1 else "")
        size, channels = (out_size(h, k, s, p), out_size(w, k, s, p)), item.channels
    else:
        k, s = item.size, item.stride or item.size
        what = f"a {k}x{k} {t[:3]} pool" + (f" at stride {s}" if s != k else "")
        size, channels = (out_size(h, k, s), out_size(w, k, s)), shape[2]
    if min(size) < 1:
        raise ConfigError(_too_small(where, what, h, w, layer, input_shape, cfg))
    return (*size, channels)


def _too_small(where: str, what: str, h: int, w: int, layer: int, input_shape, cfg) -> str:
    H, W, C = input_shape
    if where.startswith("model.layers"):
        fix = "a smaller kernel or window, padding, fewer pooling items before it, or larger images"
    else:
        fix = f"fewer stages (model.channels has {len(cfg.channels)}; each pools the image by 2), or larger images"
    return (f"'{where}': {what} does not fit the {h}x{w} image of layer {layer} (the input is {H}x{W}x{C}): "
            f"it would shrink the image below one pixel; allowed: {fix}.")


# (H, W, C) of the images a data config gives, where the config says it without reading the data
KNOWN_SHAPES = {"shapes": lambda d: (d.size, d.size, d.channels), "digits": lambda d: (8, 8, 1)}


def known_input_shape(data) -> tuple[int, int, int] | None:
    """The images' (H, W, C) from a data config alone (shapes, digits), or None (a file's images)."""
    shape = KNOWN_SHAPES.get(getattr(data, "kind", None))
    return shape(data) if shape else None


def plan_shapes(cfg, input_shape: tuple[int, ...]) -> list[Step]:
    """``walk`` as a list: every item of the plan with its layer and shapes (what describe and theory read)."""
    return list(walk(cfg, input_shape))


@dataclass
class _Build:
    """What the item builders share while building one net."""

    cfg: Any  # a CNNConfig
    rng: np.random.Generator
    dropout_rng: np.random.Generator
    dtype: Any

    def weight(self, shape: tuple[int, ...]) -> np.ndarray:
        """A weight drawn from ``cfg.init``: (k, k, C_in, C_out) with fan_in k*k*C_in, or (D_in, D_out)."""
        return init_weight(self.cfg.init, shape, self.rng, self.dtype)

    def bias(self, n: int, wanted: bool) -> np.ndarray | None:
        return np.full(n, self.cfg.bias_init, dtype=self.dtype) if wanted else None


def _conv(step: Step, b: _Build) -> Module:
    item, c_in = step.item, step.shape_in[-1]
    W = b.weight((item.kernel, item.kernel, c_in, item.channels))
    padding = same(item.kernel) if item.padding == "same" else item.padding
    return Conv2d(W, b.bias(item.channels, step.bias), item.stride, padding, f"conv{step.layer}")


def _residual(step: Step, b: _Build) -> Module:
    """Two k x k convolutions and a 1x1 projection where the channels or the size change (He et al. 2016)."""
    from .conv import ResBlock

    item, c_in, c = step.item, step.shape_in[-1], step.item.channels
    k = item.kernel
    W_a, W_b = b.weight((k, k, c_in, c)), b.weight((k, k, c, c))
    W_proj = b.weight((1, 1, c_in, c)) if c_in != c or item.stride != 1 else None
    act = make_activation(item.activation.name, item.activation.alpha, c, f"{step.layer}_a", b.dtype)
    return ResBlock(W_a, W_b, W_proj, stride=item.stride, activation=act, batchnorm=item.batchnorm,
                    dtype=b.dtype, name=f"res{step.layer}", bias_init=b.cfg.bias_init)


def _dense(step: Step, b: _Build) -> Module:
    n = step.item.units
    return Dense(b.weight((step.shape_in[0], n)), b.bias(n, step.bias), f"dense{step.layer}")


def _pool(step: Step, b: _Build) -> Module:
    cls = MaxPool2d if step.item.type == "maxpool" else AvgPool2d
    return cls(step.item.size, step.item.stride, f"{step.item.type}{step.layer}")


def _batchnorm(step: Step, b: _Build) -> Module:
    return BatchNorm(step.shape_in[-1], b.dtype, f"bn{step.layer}", spatial=len(step.shape_in) == 3)


# item type -> builder of its module
BUILDERS = {
    "conv": _conv,
    "residual": _residual,
    "dense": _dense,
    "maxpool": _pool,
    "avgpool": _pool,
    "gap": lambda step, b: GlobalAvgPool(f"gap{step.layer}"),
    "flatten": lambda step, b: Flatten(f"flatten{step.layer}"),
    "batchnorm": _batchnorm,
    "activation": lambda step, b: make_activation(step.item.name, step.item.alpha, step.shape_in[-1], step.layer,
                                                  b.dtype),
    "dropout": lambda step, b: Dropout(step.item.p, b.dropout_rng, f"dropout{step.layer}"),
}


def build_cnn(cfg, input_shape: tuple[int, int, int], n_out: int, rng: np.random.Generator,
              dropout_rng: np.random.Generator, dtype=np.float64) -> MLP:
    """Build a conv net from a ``CNNConfig`` for images of ``input_shape`` (H, W, C); draws weights from ``rng``
    in the order of the plan (each residual block: W_a, W_b, then W_proj). A conv or dense item directly
    followed by batch norm has no bias. Raises ConfigError (naming the key) when an image would shrink below
    one pixel."""
    b = _Build(cfg, rng, dropout_rng, dtype)
    groups: list[list[Module]] = []
    steps = plan_shapes(cfg, input_shape)
    for step in steps:
        if step.layer > len(groups):
            groups.append([])
        groups[-1].append(_unique(BUILDERS[step.item.type](step, b), groups[-1]))
    open_head = not any(isinstance(m, (Dense, Conv2d)) or m.name.startswith("res") for m in groups[-1])
    if not open_head:  # a head of gap or flatten alone takes the output dense layer; else it starts its own
        groups.append([])
    head = Step(None, "", len(groups), steps[-1].shape_out, (n_out,))
    groups[-1].append(Dense(b.weight((head.shape_in[0], n_out)), b.bias(n_out, True), f"dense{head.layer}"))
    net = MLP([Sequential(modules) for modules in groups], block=0)
    net.input_shape = tuple(int(n) for n in input_shape)  # (H, W, C), for the model line
    return net
