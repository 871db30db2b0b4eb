"""Layers and recurrent cells of your own, named by import path ``module:Class`` in a config.

A layer class needs ``forward(x, train=True)`` (caching what backward needs),
``backward(grad_out)`` (filling ``grads``, in place or by assignment, and returning dL/dx)
and dicts ``params`` and ``grads`` of NumPy arrays with the same keys and shapes. It need
not subclass Module: ``CustomModule`` wraps it and names its params ``<class><layer>.<key>``.
It may change the width, (N, D) -> (N, D'): ``output_width`` reads D' from ``out_width`` or
measures it with one forward pass on a dummy batch.

A cell class (``model.cell``) speaks the step protocol of ``CELL_PROTOCOL``; ``recurrent.CustomCell``
runs it over time.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import inspect
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from ..config import ALLOW_FLAG
from .activations import Activation
from .module import Module

PROTOCOL = ("a layer class needs forward(x, train=True), backward(grad_out) and dicts params and grads "
            "of float NumPy arrays with the same keys and shapes")


class CustomError(ValueError):
    """A class of your own cannot be used; the message says what was looked up and what is allowed."""


# --------------------------------------------------------------------------- finding the class

def find_class(spec: str, folder: str | Path | None = None, allowed: Sequence[str | Path] | None = None) -> type:
    """``'module:Class'`` -> the class, importing the module with ``folder`` first on sys.path; with
    ``allowed``, only a module whose files lie under one of those folders (see ``_import``)."""
    return _find(spec, folder, ("forward", "backward"), PROTOCOL, allowed)


def _find(spec: str, folder: str | Path | None, methods: tuple[str, ...], protocol: str,
          allowed: Sequence[str | Path] | None = None) -> type:
    """The class ``spec`` names, which must have ``methods``; the message quotes ``protocol``."""
    module_name, _, qualname = spec.partition(":")
    module = _import(module_name, str(Path(folder or ".").resolve()), allowed)
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if obj is None:
        found = sorted(k for k, v in vars(module).items() if isinstance(v, type) and v.__module__ == module.__name__)
        raise CustomError(f"module '{module_name}' ({module.__file__}) has no '{qualname}'; "
                          f"classes defined there: {', '.join(found) or 'none'}")
    if not isinstance(obj, type):
        raise CustomError(f"{spec} is a {type(obj).__name__}, not a class; {protocol}")
    missing = [f"{m}()" for m in methods if not callable(getattr(obj, m, None))]
    if missing:
        raise CustomError(f"{spec} has no {' or '.join(missing)}; {protocol}")
    return obj


def _import(name: str, folder: str, allowed: Sequence[str | Path] | None = None):
    """Import ``name`` with ``folder`` on sys.path for the duration; refuse a module it shadows.

    With ``allowed`` (folders), the files importing ``name`` would run (each package on the way and the
    module) are found first, without running any, and a file outside every allowed folder is refused:
    naming ``module:Class`` in a config runs that module's code.
    """
    roots = None if allowed is None else [Path(r).resolve() for r in allowed]
    if name in sys.modules:
        _refuse_hidden(name, sys.modules[name], folder)
    sys.path.insert(0, folder)
    try:
        if roots is not None:
            for part, file in _sources(name):
                _refuse_outside(name, part, file, roots)
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name.split(".")[0] and exc.name != name:
            raise CustomError(f"importing module '{name}' failed: {exc}") from None
        raise CustomError(f"no module '{name}' in {folder} or on sys.path; allowed: a file {name.replace('.', '/')}"
                          ".py next to the config (or in model.import_dir), or an installed module under an "
                          f"{ALLOW_FLAG} folder") from None
    except CustomError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever the user's module raises on import
        raise CustomError(f"importing module '{name}' failed: {type(exc).__name__}: {exc}") from None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    _refuse_hidden(name, module, folder)
    loaded = getattr(module, "__file__", None)
    if roots is not None and loaded is not None:  # a package's __init__ may have moved where its modules come from
        _refuse_outside(name, name, loaded, roots)
    return module


def _sources(name: str) -> list[tuple[str, str | None]]:
    """(module, file) for each package on the way to ``name`` and for ``name`` itself, found the way an
    import finds them (sys.meta_path, a package's __path__) but without running any; file None: built into
    Python. Namespace packages (no code) are left out; the walk stops at the first part not found."""
    out: list[tuple[str, str | None]] = []
    parts = name.split(".")
    locations = None
    for i in range(len(parts)):
        full = ".".join(parts[: i + 1])
        module = sys.modules.get(full)
        spec = getattr(module, "__spec__", None) if module is not None else _find_spec(full, locations)
        if module is None and spec is None:
            break
        file = getattr(module, "__file__", None) if module is not None else (spec.origin if spec.has_location else None)
        locations = getattr(module, "__path__", None) if module is not None else spec.submodule_search_locations
        if file is None and locations is not None:  # a namespace package: no file, no code
            continue
        out.append((full, file))
    return out


def _find_spec(name: str, locations) -> importlib.machinery.ModuleSpec | None:
    """What ``import name`` would load, asking the finders as the import system does, importing nothing."""
    for finder in sys.meta_path:
        find = getattr(finder, "find_spec", None)
        spec = find(name, locations) if callable(find) else None
        if spec is not None:
            return spec
    return None


def _refuse_outside(name: str, part: str, file: str | None, roots: list[Path]) -> None:
    """CustomError unless ``file`` (of module ``part``, on the way to ``name``) lies under one of ``roots``."""
    if file is not None and any(Path(file).resolve().is_relative_to(r) for r in roots):
        return
    where = ", ".join(str(r) for r in roots)
    risk = "naming module:Class in a config runs that module's code"
    if file is None:
        raise CustomError(f"module '{part}' is built into Python, not a file under the folders a config may "
                            f"import from ({where}); {risk}, so only modules there are imported")
    what = f"module '{name}'" if part == name else f"module '{name}' (its package '{part}')"
    raise CustomError(f"{what} is {Path(file).resolve()}, outside the folders a config may import from ({where}); "
                        f"{risk}: pass {ALLOW_FLAG} {Path(file).resolve().parent} to allow it")


def _refuse_hidden(name: str, module, folder: str) -> None:
    """CustomError if ``module`` (imported as ``name``) is not the file of that name in ``folder``."""
    local = _local_file(name, folder)
    loaded = getattr(module, "__file__", None)
    if local is not None and (loaded is None or Path(loaded).resolve() != local):
        raise CustomError(f"module '{name}' is already imported from {loaded}, which hides {local}; rename {local.name}")


def _local_file(name: str, folder: str) -> Path | None:
    """``folder/pkg/mod.py`` or ``folder/pkg/mod/__init__.py`` if it exists."""
    base = Path(folder, *name.split("."))
    found = [p for p in (base.with_name(base.name + ".py"), base / "__init__.py") if p.is_file()]
    return found[0].resolve() if found else None


# --------------------------------------------------------------------------- constructing and checking

def _takes(fn, key: str) -> bool:
    """Whether ``fn`` has a parameter called ``key``."""
    try:
        return key in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def construct(cls: type, args: dict, width: int | None, dtype) -> object:
    """``cls(**args)``, adding ``width=`` and ``dtype=`` when __init__ takes them and args do not."""
    extra = {k: v for k, v in (("width", width), ("dtype", dtype)) if k not in args and _takes(cls, k)}
    try:
        layer = cls(**args, **extra)
    except Exception as exc:  # noqa: BLE001 - whatever the user's __init__ raises
        shown = ", ".join(f"{k}={v!r}" for k, v in {**args, **extra}.items())
        raise CustomError(f"{cls.__name__}({shown}) failed: {type(exc).__name__}: {exc}") from None
    check_layer(layer, cls.__name__)
    return layer


def check_layer(layer: object, what: str) -> None:
    """Raise CustomError unless ``layer`` has dicts params/grads of float arrays with matching shapes."""
    params, grads = getattr(layer, "params", None), getattr(layer, "grads", None)
    for key, d in (("params", params), ("grads", grads)):
        if not isinstance(d, dict):
            raise CustomError(f"{what}: an instance's '{key}' is {type(d).__name__}, not a dict; {PROTOCOL}")
    for k, p in params.items():
        if not (isinstance(k, str) and isinstance(p, np.ndarray) and np.issubdtype(p.dtype, np.floating)):
            raise CustomError(f"{what}: params[{k!r}] is {type(p).__name__} {getattr(p, 'dtype', '')}; {PROTOCOL}")
    for k, g in grads.items():
        if k not in params or np.shape(g) != params[k].shape:
            shape = params[k].shape if k in params else "no such param"
            raise CustomError(f"{what}: grads[{k!r}] has shape {np.shape(g)}, params: {shape}; {PROTOCOL}")


def output_width(module: "CustomModule", width: int, dtype) -> int:
    """The width D' a layer maps (N, width) to: its ``out_width`` if it says, else measured with
    one forward pass (train=False) on a dummy batch of 2 rows."""
    said = getattr(module.layer, "out_width", None)
    if isinstance(said, (int, np.integer)) and not isinstance(said, bool) and said >= 1:
        return int(said)
    x = np.random.default_rng(0).standard_normal((2, width)).astype(dtype)
    try:
        out = module.forward(x, False)
    except Exception as exc:  # noqa: BLE001 - whatever the user's forward raises
        raise CustomError(f"{type(module.layer).__name__}.forward on a dummy batch of shape (2, {width}) failed: "
                          f"{type(exc).__name__}: {exc}; a layer in the net maps (N, {width}) to (N, D') for any "
                          "N") from None
    if np.ndim(out) != 2 or np.shape(out)[0] != 2 or np.shape(out)[1] < 1:
        raise CustomError(f"{type(module.layer).__name__}.forward maps a batch of shape (2, {width}) to "
                          f"{np.shape(out)}; a layer in the net maps (N, {width}) to (N, D') with D' >= 1 (set "
                          "out_width, or use gradlab.check_layer for layers of other shapes)")
    return int(np.shape(out)[1])


# --------------------------------------------------------------------------- cells of your own

CELL_PROTOCOL = ("a cell class needs dicts params and grads (same keys and shapes), step(x_t, state) -> "
                 "(h_t, state, cache) and step_backward(dh_t, dstate, cache) -> (dx_t, dstate_prev) adding the "
                 "step's gradients to grads; state is a tuple of arrays, initial_state(N) gives it (default: one "
                 "(N, hidden) array of zeros); __init__ gets input_size=, hidden=, rng= and dtype= if it takes them")


def find_cell(spec: str, folder: str | Path | None = None, allowed: Sequence[str | Path] | None = None) -> type:
    """``'module:Class'`` -> a cell class with step() and step_backward()."""
    return _find(spec, folder, ("step", "step_backward"), CELL_PROTOCOL, allowed)


def make_cell(spec: str, folder: str | Path | None, args: dict, input_size: int, hidden: int,
              rng: np.random.Generator, dtype, allowed: Sequence[str | Path] | None = None) -> object:
    """Build the cell ``Class(**args)`` (adding input_size, hidden, rng, dtype when it takes them) and try one
    step and its backward on a dummy batch, so a cell that does not fit fails here, with a message.
    ``allowed``: the folders its module may come from (None: any)."""
    cls = find_cell(spec, folder, allowed)
    given = {"input_size": input_size, "hidden": hidden, "rng": rng, "dtype": dtype}
    extra = {k: v for k, v in given.items() if k not in args and _takes(cls, k)}
    try:
        cell = cls(**args, **extra)
    except Exception as exc:  # noqa: BLE001 - whatever the user's __init__ raises
        shown = ", ".join(f"{k}={v!r}" for k, v in {**args, **extra}.items() if k != "rng")
        raise CustomError(f"{cls.__name__}({shown}) failed: {type(exc).__name__}: {exc}") from None
    check_layer(cell, cls.__name__)
    if getattr(cell, "kinks", False) and not callable(getattr(cell, "winners", None)):
        raise CustomError(f"{cls.__name__}: kinks = True but no winners(cache); a cell with kinks returns the "
                          "winners of its max-like units at one step (e.g. a > 0) from winners(cache)")
    try:
        state = initial_state(cell, 2, hidden, dtype)
        h, state, cache = cell.step(np.zeros((2, input_size), dtype=dtype), state)
        dx, dstate = cell.step_backward(np.zeros_like(h), tuple(np.zeros_like(s) for s in state), cache)
    except Exception as exc:  # noqa: BLE001 - whatever the user's step raises
        raise CustomError(f"{cls.__name__}: one step on a dummy batch of shape (2, {input_size}) failed: "
                          f"{type(exc).__name__}: {exc}; {CELL_PROTOCOL}") from None
    if np.shape(h) != (2, hidden) or np.shape(dx) != (2, input_size):
        raise CustomError(f"{cls.__name__}: a step on x_t of shape (2, {input_size}) gave h_t {np.shape(h)} and "
                          f"dx_t {np.shape(dx)}; allowed: h_t (N, hidden) = (2, {hidden}), dx_t of x_t's shape")
    for k, g in cell.grads.items():  # the dummy backward must leave no trace in the gradients
        g[...] = 0
    return cell


def initial_state(cell: object, N: int, hidden: int, dtype) -> tuple:
    """The cell's ``initial_state(N)`` as a tuple of arrays, or ``(zeros (N, hidden),)``."""
    make = getattr(cell, "initial_state", None)
    if not callable(make):
        return (np.zeros((N, hidden), dtype=dtype),)
    state = make(N)
    return tuple(state) if isinstance(state, (tuple, list)) else (state,)


# --------------------------------------------------------------------------- the adapter

class CustomModule(Module):
    """A user layer as a Module: ``params``/``grads`` are the layer's own dicts, read live.

    Each gradient lives in one fixed array for the module's lifetime (the net's flat ``grads``
    dict holds it): after every backward, a gradient the layer *assigned* as a new array is
    copied into the fixed one, which is put back in the layer's dict.
    """

    # what a gradient check may assume about a layer: a user layer promises none of it unless it says so
    FLAGS = ("kinks", "batched", "columnwise")
    kinks, batched, columnwise = False, False, False  # also over Activation's columnwise = True

    def __init__(self, layer: object, name: str) -> None:  # no Module.__init__: params/grads are the layer's
        check_layer(layer, type(layer).__name__)
        self.layer, self.name, self.out, self.alpha = layer, name, None, None
        for flag in self.FLAGS:
            setattr(self, flag, bool(getattr(layer, flag, False)))
        self._pass_train = _takes(layer.forward, "train") or _positional(layer.forward) >= 2
        self._fixed = {k: self._fixed_grad(k, p) for k, p in layer.params.items()}
        layer.grads.update(self._fixed)

    def _fixed_grad(self, key: str, p: np.ndarray) -> np.ndarray:
        g = self.layer.grads.get(key)
        usable = isinstance(g, np.ndarray) and g.shape == p.shape and g.dtype == p.dtype and g.flags.writeable
        return g if usable else np.zeros_like(p)

    params = property(lambda self: self.layer.params)
    grads = property(lambda self: self.layer.grads)
    mask = property(lambda self: self.layer.mask)  # the "winners", for a layer that declares kinks

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        self.out = self.layer.forward(x, train) if self._pass_train else self.layer.forward(x)
        return self.out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        dx = self.layer.backward(dout)
        self._settle()
        return dx

    def _settle(self) -> None:
        """Copy gradients the layer assigned as new arrays into the fixed ones (the net holds those)."""
        grads = self.layer.grads
        for k, fixed in self._fixed.items():
            g = grads.get(k)
            if g is fixed:
                continue
            if np.shape(g) != fixed.shape:
                raise ValueError(f"{self.name}: backward left grads[{k!r}] of shape {np.shape(g)}, "
                                 f"but params[{k!r}] has shape {fixed.shape}")
            np.copyto(fixed, g)
            grads[k] = fixed

    def saturated(self) -> float | None:
        """The layer's own ``saturated()`` if it has one, else None (the statistic does not apply)."""
        fn = getattr(self.layer, "saturated", None)
        return fn() if callable(fn) else None

    def dead(self) -> float | None:
        fn = getattr(self.layer, "dead", None)
        return fn() if callable(fn) else None


class CustomActivation(CustomModule, Activation):
    """A user layer used as an activation: the logged layer's activation statistics come from its output."""

    kind = "custom"


def _positional(fn) -> int:
    """How many positional arguments ``fn`` takes (a large number for ``*args``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 99
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def make_custom(spec: str, folder: str | Path | None, args: dict, width: int | None, dtype, index: int | str,
                activation: bool = False, allowed: Sequence[str | Path] | None = None) -> CustomModule:
    """``'module:Class'`` -> the wrapped layer named ``<class lowercased><index>``; ``allowed``: the folders
    its module may come from (None: any)."""
    cls = find_class(spec, folder, allowed)
    wrapper = CustomActivation if activation else CustomModule
    return wrapper(construct(cls, args, width, dtype), f"{cls.__name__.lower()}{index}")
