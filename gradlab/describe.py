"""A model in one line, as Keras' ``model.summary()`` would say it: layers, shapes, parameter count.

    MLP 2 -> 64 x 10 tanh (he_normal) -> 3, 38,211 parameters
    LSTM 2 -> 128 -> 1, T 100, 67,713 parameters

``model_line(model, config)`` describes a built net (gradlab.nn's MLP of Sequential layers, recurrent
cells and layers of your own included); ``run_model_line(run)`` describes a run folder's net from its
config.yaml and the shapes in params_init.npz, without importing any ``module:Class`` the config names.
Consecutive hidden layers alike are written once with their count (``64 x 10``). Imports nothing heavy.
"""
from __future__ import annotations

import math
import re
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

    n_params = sum(int(p.size) for p in model.params.values())
    cells = [m for layer in model.layers for m in layer.modules if isinstance(m, Recurrent)]
    if cells:
        return _recurrent_model(model, cells, config, n_params)
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
    if getattr(model, "kind", (run.raw.get("model") or {}).get("kind")) == "rnn":
        return _recurrent_run(run, model, by_layer, n_out, n_params)
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
