"""A model in one line, as Keras' ``model.summary()`` would say it: layers, shapes, parameter count.

    MLP 2 -> 64 x 10 tanh (he_normal) -> 3, 38,211 parameters
    LSTM 2 -> 128 -> 1, T 100, 67,713 parameters
    CNN 28x28x1 -> conv3x3 16 x3 -> maxpool -> conv3x3 32 x3 -> gap -> 10, relu (he_normal), 23,466 parameters

``model_line(model, config)`` describes a built net (gradlab.nn's MLP of Sequential layers, recurrent
cells and layers of your own included); ``run_model_line(run)`` describes a run folder's net from its
config.yaml and the shapes in params_init.npz, without importing any ``module:Class`` the config names.
Consecutive hidden layers alike are written once with their count (``64 x 10``). Imports nothing heavy.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .report.load import RunData

CELL_NAMES = {"vanilla": "RNN", "lstm": "LSTM", "gru": "GRU", "VanillaRNN": "RNN"}
DEFAULT_RECURRENT_INIT = "orthogonal"


# --------------------------------------------------------------------------- the line

def line(kind: str, n_in: int | None, hidden: list[tuple[int | None, list[str]]], n_out: int | None,
         n_params: int, extras: list[str] = ()) -> str:
    """``kind n_in -> hidden groups -> n_out, extras, N parameters``; ``hidden`` is (units, ops) per layer."""
    parts = [_dim(n_in), *(_group(units, ops, n) for units, ops, n in runs(hidden)), _dim(n_out)]
    return ", ".join([f"{kind} " + " -> ".join(parts), *extras, f"{n_params:,} parameters"])


def runs(hidden: list[tuple[int | None, list[str]]]) -> list[tuple[int | None, list[str], int]]:
    """Consecutive equal (units, ops) as (units, ops, count)."""
    out: list[tuple[int | None, list[str], int]] = []
    for units, ops in hidden:
        if out and out[-1][:2] == (units, ops):
            out[-1] = (units, ops, out[-1][2] + 1)
        else:
            out.append((units, ops, 1))
    return out


def _group(units: int | None, ops: list[str], n: int) -> str:
    text = _dim(units) + (f" x {n}" if n > 1 else "")
    return " ".join([text, *ops])


def _dim(n: int | None) -> str:
    return "?" if n is None else str(n)


def init_text(init: Any) -> str:
    """An InitConfig as its scheme and the numbers given to it: ``normal std=0.01``, ``he_normal``."""
    if init is None:
        return ""
    given = [f"{k}={getattr(init, k):g}" for k in ("std", "limit", "scale") if getattr(init, k, None) is not None]
    if getattr(init, "gain", 1.0) != 1.0:
        given.append(f"gain={init.gain:g}")
    return " ".join([init.scheme, *given])


def _class_name(spec: str) -> str:
    """``pkg.layers:Swish`` -> ``Swish`` (text only: never imported here)."""
    return spec.rsplit(":", 1)[-1]


# --------------------------------------------------------------------------- a built model

def model_line(model, config=None) -> str:
    """One line for a built net (``setup.model``); with its ``config``, the init scheme and T too."""
    from .nn.recurrent import Recurrent

    from .nn.conv import Conv2d, ResBlock

    n_params = sum(int(p.size) for p in model.params.values())
    cells = [m for layer in model.layers for m in layer.modules if isinstance(m, Recurrent)]
    if cells:
        return _recurrent_model(model, cells, config, n_params)
    if isinstance(model.layers[0].modules[0], (Conv2d, ResBlock)):
        return _conv_model(model, config, n_params)
    hidden = [_layer_of(layer) for layer in model.layers[:-1]]
    W = model.layers[0].modules[0].params.get("W")
    head = model.layers[-1].modules[0].params.get("W")
    extras = []
    if model.block_start:
        start, end = next(iter(model.block_start.items()))
        extras.append(f"residual blocks of {end - start + 1}")
    text = line("MLP", _rows(W), hidden, _cols(head), n_params, extras)
    init = init_text(getattr(getattr(config, "model", None), "init", None))
    return _with_init(text, init) if init else text


def _layer_of(layer) -> tuple[int | None, list[str]]:
    """(units of its dense layer, what follows it) for one logged layer of a built MLP."""
    dense, *rest = layer.modules
    return _cols(dense.params.get("W")), [op for op in map(_module_op, rest) if op]


def _module_op(module) -> str:
    from .nn import Activation, BatchNorm, CustomModule, Dropout

    if isinstance(module, CustomModule):
        return type(module.layer).__name__
    if isinstance(module, BatchNorm):
        return "batchnorm"
    if isinstance(module, Dropout):
        return f"dropout {module.p:g}"
    if isinstance(module, Activation):
        return module.kind or module.name
    return type(module).__name__


def _recurrent_model(model, cells: list, config, n_params: int) -> str:
    from .nn.recurrent import CustomCell, VanillaRNN

    first = cells[0]
    kind = type(first.cell).__name__ if isinstance(first, CustomCell) else CELL_NAMES.get(type(first).__name__,
                                                                                         type(first).__name__)
    ops = [first.activation] if isinstance(first, VanillaRNN) and getattr(first, "activation", None) else []
    n_in = _rows(getattr(first, "W", None)) if not isinstance(first, CustomCell) else _first_rows(first.params)
    head = model.layers[-1].modules[-1].params.get("W")
    model_cfg = getattr(config, "model", None)
    return line(kind, n_in, [(c.H, _recurrent_ops(ops, model_cfg)) for c in cells], _cols(head), n_params,
                _sequence_extras(config))


def _rows(W) -> int | None:
    return int(W.shape[-2]) if W is not None and len(W.shape) >= 2 else None


def _cols(W) -> int | None:
    return int(W.shape[-1]) if W is not None and len(W.shape) >= 2 else None


def _first_rows(params: dict) -> int | None:
    """The input width of a cell of your own: the rows of its first matrix (Wx of shape (D, .) by convention)."""
    return next((int(v.shape[0]) for v in params.values() if len(getattr(v, "shape", ())) == 2), None)


def _recurrent_ops(ops: list[str], model_cfg) -> list[str]:
    """The vanilla cell's activation, and a recurrent init other than the default (identity: an IRNN)."""
    init = getattr(model_cfg, "recurrent_init", None)
    if init is not None and init.scheme != DEFAULT_RECURRENT_INIT:
        return [*ops, f"(recurrent {init_text(init)})"]
    return ops


def _sequence_extras(config) -> list[str]:
    T = getattr(getattr(config, "data", None), "T", None)
    return [f"T {T}"] if T else []


# --------------------------------------------------------------------------- a run folder

LAYER_OF = re.compile(r"^[A-Za-z_]*?(\d+)(?:_\d+)?\.")  # dense3.W, bn3.gamma, tanh3_2.alpha, lstm1.W_i -> 3, 3, 3, 1


def run_model_line(run: RunData) -> str:
    """One line for a run folder's net, from config.yaml and the shapes in params_init.npz ('' if neither)."""
    shapes = run.init_shapes or {}
    if not shapes and run.config is None:
        return ""
    n_params = sum(math.prod(s) for s in shapes.values())
    by_layer: dict[int, dict[str, tuple]] = {}
    for name, shape in shapes.items():
        found = LAYER_OF.match(name)
        if found:
            by_layer.setdefault(int(found.group(1)), {})[name] = shape
    model = run.config.model if run.config is not None else None
    L = max(by_layer, default=0)
    dense = lambda l: by_layer.get(l, {}).get(f"dense{l}.W")
    n_out = dense(L)[-1] if dense(L) else None
    kind = getattr(model, "kind", (run.raw.get("model") or {}).get("kind"))
    if kind == "rnn":
        return _recurrent_run(run, model, by_layer, n_out, n_params)
    if kind == "cnn":
        return _conv_run(run, model, by_layer, n_out, n_params)
    n_in = dense(1)[0] if dense(1) else None
    plan = _plan_ops(model)
    hidden = [((dense(l) or (None, None))[-1], plan[l - 1] if l - 1 < len(plan) else []) for l in range(1, L)]
    if not hidden and model is not None:  # no params_init.npz: the config's widths
        hidden = list(zip(_dense_widths(model), plan))
    extras = [f"residual blocks of {model.block}"] if model is not None and model.block else []
    text = line("MLP", n_in, hidden, n_out, n_params, extras)
    init = init_text(getattr(model, "init", None))
    return _with_init(text, init) if init else text


def _with_init(text: str, init: str) -> str:
    """The init scheme after the hidden layers: ``MLP 2 -> 64 x 10 tanh (he_normal) -> 3, ...``."""
    head, sep, tail = text.rpartition(" -> ")
    return f"{head} ({init}){sep}{tail}" if sep else text


def _plan_ops(model) -> list[list[str]]:
    """What follows each dense item of the config, per logged hidden layer."""
    if model is None:
        return []
    groups: list[list[str]] = []
    for item, _, _ in model.plan():
        if item.type == "dense":
            groups.append([])
        elif groups:
            groups[-1].append(_item_op(item))
    return groups


def _dense_widths(model) -> list[int]:
    return [item.units for item, _, _ in model.plan() if item.type == "dense"]


def _item_op(item) -> str:
    if item.type == "batchnorm":
        return "batchnorm"
    if item.type == "dropout":
        return f"dropout {item.p:g}"
    if getattr(item, "spec", None):
        return _class_name(item.spec)
    return item.name if item.type == "activation" else item.type


def _recurrent_run(run: RunData, model, by_layer: dict[int, dict[str, tuple]], n_out: int | None,
                   n_params: int) -> str:
    raw = run.raw.get("model") or {}
    cell = getattr(model, "cell", raw.get("cell", "vanilla"))
    kind = _class_name(cell) if ":" in str(cell) else CELL_NAMES.get(cell, str(cell))
    L = max(by_layer, default=1)
    firsts = [s for s in by_layer.get(1, {}).values() if len(s) == 2]
    n_in = firsts[0][0] if firsts else None
    H = getattr(model, "hidden", raw.get("hidden"))
    ops = [model.activation] if model is not None and cell == "vanilla" and model.activation else []
    layers = getattr(model, "num_layers", max(1, L - 1))
    return line(kind, n_in, [(H, _recurrent_ops(ops, model))] * layers, n_out, n_params,
                _sequence_extras(run.config))


# --------------------------------------------------------------------------- conv nets

@dataclass
class _ConvLayer:
    """One logged layer of a conv net, as the line writes it: its start (``conv3x3 16/2``), its batch norm,
    activation and dropout, and the pooling, gap or flatten after it (written between arrows)."""

    start: str
    bn: bool = False
    act: str = ""
    dropout: float = 0.0
    after: list[str] = field(default_factory=list)


def conv_line(shape: tuple | None, layers: list[_ConvLayer], n_out: int | None, n_params: int, init: str) -> str:
    """``CNN HxWxC -> conv3x3 16 x2 -> maxpool -> ... -> gap -> n_out, relu (he_normal), N parameters``: equal
    layers in a row are written once with their count; the commonest activation is written once at the end
    (a layer with another one names its own)."""
    acts = [x.act for x in layers if x.act]
    common = max(set(acts), key=acts.count) if acts else ""
    parts = ["x".join(_dim(n) for n in shape) if shape else "?"]
    texts, count = [_text(x, common) for x in layers], 0
    for i, (x, text) in enumerate(zip(layers, texts)):
        count += 1
        if i + 1 < len(layers) and not x.after and texts[i + 1] == text:
            continue
        parts.append(text + (f" x{count}" if count > 1 else ""))
        parts.extend(x.after)
        count = 0
    parts.append(_dim(n_out))
    extras = " ".join([common, *([f"({init})"] if init else [])])
    return ", ".join(["CNN " + " -> ".join(parts), *([extras] if extras else []), f"{n_params:,} parameters"])


def _text(x: _ConvLayer, common: str) -> str:
    """A layer's text: its start, then bn, its activation where it is not the commonest, dropout."""
    return " ".join([x.start, *(["bn"] if x.bn else []), *([x.act] if x.act and x.act != common else []),
                     *([f"dropout {x.dropout:g}"] if x.dropout else [])])


def _start(kind: str, k: int | None = None, channels: int | None = None, stride: int = 1) -> str:
    """``conv3x3 16``, ``res3x3 32/2`` (stride 2), ``dense 64``."""
    if kind == "dense":
        return f"dense {_dim(channels)}"
    return f"{kind}{k}x{k} {_dim(channels)}" + (f"/{stride}" if stride > 1 else "")


def _pool_text(kind: str, size: int, stride: int | None) -> str:
    """``maxpool`` (2x2 every 2 pixels), ``avgpool3`` (3x3), ``maxpool3/2`` (3x3 every 2)."""
    stride = stride or size
    return kind + (str(size) if size != 2 or stride != size else "") + (f"/{stride}" if stride != size else "")


def _conv_model(model, config, n_params: int) -> str:
    """The line of a built conv net, from its modules."""
    from .nn import Activation, BatchNorm, Dense, Dropout
    from .nn.conv import AvgPool2d, Conv2d, Flatten, GlobalAvgPool, MaxPool2d, ResBlock

    layers: list[_ConvLayer] = []
    *modules, head = model.modules()  # the last is the output dense layer (after the gap or flatten)
    for m in modules:  # a conv, block or dense module starts a layer of the line; the rest follow it
        W = m.params.get("W_a", m.params.get("W"))
        if isinstance(m, Conv2d):
            layers.append(_ConvLayer(_start("conv", W.shape[0], W.shape[-1], m.stride)))
        elif isinstance(m, ResBlock):
            layers.append(_ConvLayer(_start("res", W.shape[0], W.shape[-1], m.stride), bn=m.batchnorm))
        elif isinstance(m, Dense):
            layers.append(_ConvLayer(_start("dense", channels=_cols(W))))
        elif isinstance(m, BatchNorm):
            layers[-1].bn = True
        elif isinstance(m, Activation):
            layers[-1].act = layers[-1].act or m.kind or m.name
        elif isinstance(m, Dropout):
            layers[-1].dropout = m.p
        elif isinstance(m, (MaxPool2d, AvgPool2d)):
            layers[-1].after.append(_pool_text("maxpool" if isinstance(m, MaxPool2d) else "avgpool", m.size, m.stride))
        elif isinstance(m, (GlobalAvgPool, Flatten)):
            layers[-1].after.append("gap" if isinstance(m, GlobalAvgPool) else "flatten")
    first = model.layers[0].modules[0]
    c_in = first.params.get("W_a", first.params.get("W")).shape[-2]
    shape = getattr(model, "input_shape", None) or _image_shape(config, c_in)
    return conv_line(shape, layers, _cols(head.params.get("W")), n_params,
                     init_text(getattr(getattr(config, "model", None), "init", None)))


def _image_shape(config, channels: int | None) -> tuple:
    """(H, W, C) of the images, as far as the config says (H and W None where it does not); C from the
    first weight."""
    from .nn.cnn import known_input_shape

    h, w, _ = known_input_shape(getattr(config, "data", None)) or (None, None, None)
    return (h, w, channels)


def _config_layers(model) -> list[_ConvLayer]:
    """The logged layers of a ``CNNConfig``'s plan."""
    layers: list[_ConvLayer] = []
    for item, _ in model.plan():
        t = item.type
        if t in ("conv", "residual"):
            layers.append(_ConvLayer(_start("conv" if t == "conv" else "res", item.kernel, item.channels,
                                            item.stride), bn=t == "residual" and item.batchnorm))
        elif t == "dense":
            layers.append(_ConvLayer(_start("dense", channels=item.units)))
        elif t == "batchnorm":
            layers[-1].bn = True
        elif t == "activation":
            layers[-1].act = layers[-1].act or item.name
        elif t == "dropout":
            layers[-1].dropout = item.p
        elif t in ("maxpool", "avgpool"):
            layers[-1].after.append(_pool_text(t, item.size, item.stride))
        else:
            layers[-1].after.append(t)
    return layers


def _conv_run(run: RunData, model, by_layer: dict[int, dict[str, tuple]], n_out: int | None, n_params: int) -> str:
    """A run folder's conv net: the config's plan, the channels of its images from conv1's (or res1's) weight."""
    if model is None:
        return ""
    first = by_layer.get(1, {})
    W = first.get("conv1.W") or first.get("res1.W_a")
    shape = _image_shape(run.config, W[-2] if W else None)
    return conv_line(shape, _config_layers(model), n_out, n_params, init_text(model.init))
