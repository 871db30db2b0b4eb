"""Checking what students write: a layer object, or a forward/backward pair of functions, alone.

``check_layer(layer, x)`` takes any object of the layer protocol (``params``/``grads`` dicts,
``forward(x, train=True)``, ``backward(dout)`` returning dx), whatever the shape of its output.
``check_function(forward, backward, inputs)`` takes CS231n's convention: ``forward(*inputs)``
returns ``(out, cache)`` (or ``(out_1, ..., out_k, cache)``) and ``backward(dout, cache)`` (or
``backward(dout_1, ..., dout_k, cache)``) returns one gradient per float-array input, in the order
of the inputs. Either is checked with the objective J = sum_k sum(out_k * r_k) for fixed random r_k,
so dJ/dout_k = r_k, by the same differences and grading as ``gradlab check`` (CS231n's gradient-check
notes). The user's code does not broadcast over a copies axis, so every perturbed copy is one forward
call: the check costs two forward calls per checked entry (O(entries)); keep the shapes small.
"""
from __future__ import annotations

import importlib.util
import inspect
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..nn.custom import CustomError, CustomModule
from .grading import max_rel_error, overall, tier
from .runner import DEFAULT_EPS, EXIT_PASS, CheckReport, coarse_warnings, run_check, unresolved_warnings

MODES = ("full", "sample", "directional")


class CheckInputError(ValueError):
    """What was given cannot be checked; the message says what was found and what is allowed."""


# --------------------------------------------------------------------------- the objectives

class _Objective:
    """What both objectives share: J = sum_k sum(out_k * r_k), evaluated one perturbed copy at a time."""

    label: str
    winners: Callable[[], np.ndarray | None]

    def layer(self, name: str) -> int | None:
        return None

    @property
    def x(self) -> np.ndarray:
        """The first checked array, whose leading axis sizes the chunks of copies (see ``chunk_size``)."""
        first = next(iter(self.targets.values()))
        return first if first.ndim else first.reshape(1)

    def _J(self, outs: tuple[np.ndarray, ...]) -> float:
        return float(sum(np.sum(o * r) for o, r in zip(outs, self.r)))

    def values(self, name: str, stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """J at K perturbed copies of tensor ``name``, stack: (K, *shape) -> (J (K,), kink crossed (K,))."""
        pairs = [self._one(name, np.array(s)) for s in stack]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs], dtype=bool)

    def values_at(self, name: str, flat: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """J at K copies, copy k with entry ``flat[k]`` of the tensor moved by ``delta[k]``: one working
        copy, moved and put back entry by entry (the K copies are never stacked)."""
        base = self.targets[name]
        work = np.array(base, copy=True)
        view, orig = work.reshape(-1), base.reshape(-1)
        J, kinked = np.empty(len(flat)), np.zeros(len(flat), dtype=bool)
        for k, (i, d) in enumerate(zip(flat, delta)):
            view[i] = orig[i] + d
            J[k], kinked[k] = self._one(name, work)
            view[i] = orig[i]
        return J, kinked

    def _one(self, name: str, value: np.ndarray) -> tuple[float, bool]:
        J = self._J(self._outputs(name, value))
        if self.mask0 is None:
            return J, False
        now = self.winners()
        return J, bool(np.shape(now) != np.shape(self.mask0) or np.any(now != self.mask0))

    def _outputs(self, name: str, value: np.ndarray) -> tuple[np.ndarray, ...]:
        raise NotImplementedError


class FunctionObjective(_Objective):
    """A pair ``forward(*inputs) -> (*outs, cache)``, ``backward(*douts, cache) -> grads``, alone."""

    def __init__(self, forward: Callable, backward: Callable, inputs: Sequence[Any], names: Sequence[str] | None,
                 rng: np.random.Generator, mask: Callable[[Any], np.ndarray] | None = None, label: str | None = None):
        self.forward, self.backward, self.mask = forward, backward, mask
        self.label = label or _label(forward)
        self.args = [_as_float64(a) for a in inputs]
        self.checked = [i for i, a in enumerate(self.args) if _is_float_array(a)]
        if not self.checked:
            raise CheckInputError(f"{self.label}: no input is a float NumPy array; allowed: inputs such as "
                                  "(x, w, b), the float arrays checked, anything else (a dict of options) passed as is")
        arg_names = _names(forward, len(self.args), names, self.label)
        self.names = {f"{self.label}.{arg_names[i]}": i for i in self.checked}
        outs, cache, self.packed = self._call(self.args)
        self.r = tuple(rng.standard_normal(o.shape) for o in outs)
        self.mask0 = None if mask is None else np.array(mask(cache), copy=True)
        self.winners = lambda: self._last_mask

    @property
    def targets(self) -> dict[str, np.ndarray]:
        return {name: self.args[i] for name, i in self.names.items()}

    def _call(self, args: list) -> tuple[tuple[np.ndarray, ...], Any, bool]:
        """(outputs, cache, packed): forward on fresh copies of the inputs, so it cannot change ours."""
        result = self.forward(*[np.array(a) if isinstance(a, np.ndarray) else a for a in args])
        if not isinstance(result, tuple) or len(result) < 2:
            raise CheckInputError(f"{self.label}: forward returned {_kind(result)}; allowed: a tuple (out, cache) "
                                  "or (out_1, ..., out_k, cache), as CS231n's layers do")
        *outs, cache = result
        packed = len(outs) == 1 and isinstance(outs[0], (tuple, list))
        outs = list(outs[0]) if packed else outs
        bad = [i for i, o in enumerate(outs) if not _is_float_array(np.asarray(o) if np.isscalar(o) else o)]
        if bad:
            raise CheckInputError(f"{self.label}: forward's output {bad[0]} is {_kind(outs[bad[0]])}; allowed: float "
                                  "NumPy arrays of any shape, followed by the cache")
        return tuple(np.asarray(o, dtype=np.float64) for o in outs), cache, packed

    def _outputs(self, name: str, value: np.ndarray) -> tuple[np.ndarray, ...]:
        args = list(self.args)
        args[self.names[name]] = value
        outs, cache, _ = self._call(args)
        self._last_mask = None if self.mask is None else np.asarray(self.mask(cache))
        return outs

    def analytic(self) -> dict[str, np.ndarray]:
        """One forward at the inputs, one backward of r: the gradients backward returns, by input name."""
        outs, cache, _ = self._call(self.args)
        self.J = self._J(outs)
        douts = [r.copy() for r in self.r]
        grads = self.backward(tuple(douts), cache) if self.packed else self.backward(*douts, cache)
        grads = _as_tuple(grads)
        names = list(self.names)
        if len(grads) != len(names):
            raise CheckInputError(f"{self.label}: backward returned {len(grads)} gradient(s) for {len(names)} float "
                                  f"input(s) ({', '.join(n.split('.', 1)[1] for n in names)}); allowed: one gradient "
                                  "per float-array input, in the order of the inputs")
        out = {}
        for name, g in zip(names, grads):
            want = self.targets[name].shape
            if np.shape(g) != want:
                raise CheckInputError(f"{self.label}: backward's gradient for {name.split('.', 1)[1]} has shape "
                                      f"{np.shape(g)}, the input has {want}; allowed: a gradient of the input's shape")
            out[name] = np.array(g, dtype=np.float64)
        return out


class LayerObjective(_Objective):
    """A layer object alone, on input x: J = sum(forward(x) * r), whatever the output's shape."""

    def __init__(self, layer: Any, x: np.ndarray, rng: np.random.Generator, label: str | None = None):
        self.label = label or type(layer).__name__.lower()
        if not callable(getattr(layer, "forward", None)) and callable(getattr(layer, "step", None)):
            from ..nn.recurrent import CustomCell  # a cell of the step protocol: run it over x's T steps

            layer = CustomCell(layer, self.label, int(getattr(layer, "hidden", 0)))
        try:
            self.module = CustomModule(layer, self.label)
        except CustomError as exc:
            raise CheckInputError(str(exc)) from None
        self.x0 = _as_float64(x)
        if not _is_float_array(self.x0):
            raise CheckInputError(f"{self.label}: x is {_kind(x)}; allowed: a float NumPy array")
        out = self._forward(self.x0)
        self.r = (rng.standard_normal(out.shape),)
        kinks = bool(getattr(layer, "kinks", False))
        self.winners = lambda: np.array(self.module.mask, copy=True)
        if kinks and getattr(layer, "mask", None) is None:
            raise CheckInputError(f"{self.label}: kinks = True but no 'mask' after forward; allowed: a layer with "
                                  "kinks keeps its winners (e.g. x > 0 for a ReLU) in self.mask")
        self.mask0 = self.winners() if kinks else None

    @property
    def targets(self) -> dict[str, np.ndarray]:
        return {**{f"{self.label}.{k}": v for k, v in self.module.params.items()}, f"{self.label}.input": self.x0}

    def _forward(self, x: np.ndarray) -> np.ndarray:
        out = self.module.forward(np.array(x), True)
        if not _is_float_array(np.asarray(out)):
            raise CheckInputError(f"{self.label}: forward returned {_kind(out)}; allowed: a float NumPy array")
        return np.asarray(out, dtype=np.float64)

    def _outputs(self, name: str, value: np.ndarray) -> tuple[np.ndarray, ...]:
        if name.endswith(".input") and name == f"{self.label}.input":
            return (self._forward(value),)
        key = name.split(".", 1)[1]
        saved = self.module.params[key]
        self.module.params[key] = value
        try:
            return (self._forward(self.x0),)
        finally:
            self.module.params[key] = saved

    def analytic(self) -> dict[str, np.ndarray]:
        out = self._forward(self.x0)
        self.J = self._J((out,))
        dx = self.module.backward(self.r[0].copy())
        if np.shape(dx) != self.x0.shape:
            raise CheckInputError(f"{self.label}: backward returned dx of shape {np.shape(dx)}, x has "
                                  f"{self.x0.shape}; allowed: dL/dx, of x's shape")
        grads = {f"{self.label}.{k}": np.array(g, dtype=np.float64) for k, g in self.module.grads.items()}
        grads[f"{self.label}.input"] = np.array(dx, dtype=np.float64)
        return grads


# --------------------------------------------------------------------------- the checks

def check_function(forward: Callable, backward: Callable, inputs: Sequence[Any], *, names: Sequence[str] | None = None,
                   mask: Callable[[Any], np.ndarray] | None = None, eps: float | None = None, mode: str = "full",
                   samples: int = 10, directions: int = 4, seed: int = 0, one_sided: bool = False,
                   strict: bool = False, label: str | None = None) -> CheckReport:
    """Check ``backward`` against centred differences of ``forward``, CS231n's (out, cache) convention.

    inputs: the positional arguments of forward; every float array among them is checked (others,
    such as CS231n's conv_param dict or integer word indices, are passed as they are). backward returns one gradient per
    float-array input, in their order (a single array when there is one). ``mask(cache)`` returns
    the winners of a max-like function (e.g. ``cache > 0`` for relu_forward), so entries whose
    winners change between theta - eps and theta + eps are graded as kinks. Two forward calls per
    checked entry.
    """
    rng = np.random.default_rng(seed)
    return _run(lambda: FunctionObjective(forward, backward, inputs, names, rng, mask, label), mode, eps, samples,
                directions, rng, one_sided, strict)


def check_layer(layer: Any, x: np.ndarray, *, eps: float | None = None, mode: str = "full", samples: int = 10,
                directions: int = 4, seed: int = 0, one_sided: bool = False, strict: bool = False,
                label: str | None = None) -> CheckReport:
    """Check a layer object's backward (every param and the input x) against centred differences.

    layer: ``params``/``grads`` dicts, ``forward(x, train=True)`` (any output shape), ``backward(dout)``
    filling grads and returning dx. A max-like layer sets ``kinks = True`` and keeps its winners in
    ``self.mask`` after every forward. A recurrent cell of the step protocol (``model.cell``) is run
    over the T steps of x (N, T, D), as in a net, and checked through time. Two forward calls per
    checked entry.
    """
    rng = np.random.default_rng(seed)
    return _run(lambda: LayerObjective(layer, x, rng, label), mode, eps, samples, directions, rng, one_sided, strict)


def _run(make: Callable[[], _Objective], mode: str, eps: float | None, samples: int, directions: int,
         rng: np.random.Generator, one_sided: bool, strict: bool) -> CheckReport:
    if mode not in MODES:
        raise CheckInputError(f"mode {mode!r}; allowed: {', '.join(MODES)}")
    if eps is not None and not float(eps) > 0:
        raise CheckInputError(f"eps {eps!r}; allowed: a relative step > 0 (e.g. 1e-5)")
    step = DEFAULT_EPS["float64"] if eps is None else float(eps)
    t0 = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        obj = make()
        J1, J2 = obj._J(obj._outputs(*_first(obj))), obj._J(obj._outputs(*_first(obj)))
        if J1 != J2:
            raise CheckInputError(f"{obj.label}: the output differs between two calls on the same inputs ({J1!r} vs "
                                  f"{J2!r}): something random is on; fix its seed or mask (CS231n checks dropout "
                                  "with a fixed seed)")
        kinky = obj.mask0 is not None
        # as gradlab check grades: the kink tier when winners are given, a retried step unless eps was given
        results, blocks = run_check(obj, list(obj.targets), mode=mode, eps=step, rng=rng, samples=samples,
                                    directions=directions, one_sided=one_sided, kinks=kinky, strict=strict,
                                    adapt=eps is None)
    a = np.concatenate([b.analytic[~b.kink] for b in blocks]) if blocks else np.zeros(0)
    n = np.concatenate([b.numeric[~b.kink] for b in blocks]) if blocks else np.zeros(0)
    err = overall(blocks)
    entries = sum(len(b.index) for b in blocks)
    report = CheckReport(mode=mode, eps=step, dtype="float64", n_params=int(sum(v.size for v in obj.targets.values())),
                         tensors=results, layers=[], rel_error=err, tier=tier(err), has_kinks=kinky, passed=True,
                         blocks=blocks, max_rel_error=max_rel_error(a, n))
    report.passed = report.exit_code == EXIT_PASS
    report.warnings += unresolved_warnings(report) + coarse_warnings(obj.targets, step)
    report.notes.append(f"J = sum(out * r) for fixed random r (dJ/dout = r); {entries} entries, about "
                        f"{2 * entries} forward calls, in float64; eps {step:g} relative: each tensor moves by "
                        "h = eps * max(1, rms(tensor))")
    if kinky:
        report.notes.append("entries whose winners changed between theta - h and theta + h are graded apart, by the "
                            "one-sided derivatives; the tier is " + ("1e-7 (strict)" if strict else
                                                                     "1e-4 with kinks (CS231n's gradient-check notes)"))
    report.seconds = time.perf_counter() - t0
    return report


def _first(obj: _Objective) -> tuple[str, np.ndarray]:
    name, value = next(iter(obj.targets.items()))
    return name, value


def failed_names(report: CheckReport) -> list[str]:
    """The tensors (inputs, params) whose gradient is wrong."""
    return [t.name for t in report.failed]


# --------------------------------------------------------------------------- a file of the user's

FIND_RULE = ("NAME is a class of the layer protocol (or a cell of the step protocol, x of shape N,T,D) that takes "
             "no arguments, or a pair of functions: "
             "NAME_forward and NAME_backward (CS231n's affine_forward/affine_backward as NAME affine), NAME and "
             "NAME_backward, or a NAME containing _forward and the same name with _backward "
             "(conv_forward_naive/conv_backward_naive); a function NAME_mask(cache), if there is one, gives the "
             "winners of a max-like forward")


def load_file(path: str | Path):
    """Import a .py file of the user's as a module (its folder importable while it loads)."""
    path = Path(path)
    if path.suffix != ".py":
        raise CheckInputError(f"{path}: not a .py file; allowed: FILE.py:NAME, where {FIND_RULE}")
    if not path.is_file():
        raise CheckInputError(f"{path}: no such file; allowed: FILE.py:NAME with an existing Python file")
    spec = importlib.util.spec_from_file_location(f"gradlab_user_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    folder = str(path.resolve().parent)
    sys.path.insert(0, folder)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # noqa: BLE001 - whatever the user's module raises on import
        raise CheckInputError(f"{path}: importing it failed: {type(exc).__name__}: {exc}") from None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    return module


def find_target(module, name: str, path: str | Path) -> tuple:
    """``("layer", cls)`` or ``("function", forward, backward)`` for NAME in the module (see FIND_RULE)."""
    found = getattr(module, name, None)
    if isinstance(found, type):
        missing = [m for m in ("forward", "backward") if not callable(getattr(found, m, None))]
        if missing and all(callable(getattr(found, m, None)) for m in ("step", "step_backward")):
            return ("layer", found)  # a cell: check_layer runs it over the T steps of x (N, T, D)
        if missing:
            raise CheckInputError(f"{path}: class {name} has no {' or '.join(missing)}(); allowed: {FIND_RULE}")
        return ("layer", found)
    pairs = [(f"{name}_forward", f"{name}_backward"), (name, f"{name}_backward")]
    if "_forward" in name[1:]:
        pairs.append((name, name.replace("_forward", "_backward", 1)))
    for f, b in pairs:
        forward, backward = getattr(module, f, None), getattr(module, b, None)
        if callable(forward) and callable(backward) and not isinstance(forward, type):
            stem = f[: -len("_forward")] if f.endswith("_forward") else f
            mask = getattr(module, f"{stem}_mask", None)  # relu_forward's winners: relu_mask(cache)
            return ("function", forward, backward, mask if callable(mask) else None)
    what = "no backward for it" if callable(found) or callable(getattr(module, f"{name}_forward", None)) else \
        f"no {name}"
    raise CheckInputError(f"{path}: {what} (looked for {', '.join(f'{f}/{b}' for f, b in pairs)}); allowed: "
                          f"{FIND_RULE}; found here: {', '.join(checkable(module)) or 'nothing checkable'}")


def checkable(module) -> list[str]:
    """The NAMEs of a module that ``find_target`` accepts (pairs NAME_forward/NAME_backward and classes)."""
    names = vars(module)
    pairs = [k[: -len("_forward")] for k, v in names.items() if k.endswith("_forward") and callable(v)
             and callable(names.get(k[: -len("_forward")] + "_backward"))]
    pairs += [k for k, v in names.items() if "_forward" in k[1:] and not k.endswith("_forward") and callable(v)
              and callable(names.get(k.replace("_forward", "_backward", 1)))]
    classes = [k for k, v in names.items() if isinstance(v, type) and v.__module__ == module.__name__
               and (all(callable(getattr(v, m, None)) for m in ("forward", "backward"))
                    or all(callable(getattr(v, m, None)) for m in ("step", "step_backward")))]
    return pairs + classes


def check_file(target: str, shapes: Sequence[tuple[int, ...]], seed: int = 0, **kw) -> CheckReport:
    """``FILE.py:NAME`` on random standard-normal inputs of the given shapes (seeded): see FIND_RULE.

    A function pair takes one shape per input; a class, built with no arguments, one shape (x's).
    Whatever the user's code raises on these inputs is a CheckInputError naming the file.
    """
    path, _, name = target.rpartition(":")
    module = load_file(path)
    found = find_target(module, name, path)
    rng = np.random.default_rng(seed)
    inputs = [rng.standard_normal(s) for s in shapes]
    shown = ", ".join("(" + ",".join(map(str, s)) + ")" for s in shapes) or "none"
    try:
        if found[0] == "layer":
            if len(shapes) != 1:
                raise CheckInputError(f"{name} is a layer class: give one --shape, x's (e.g. --shape 4,5), not "
                                      f"{len(shapes)}")
            try:
                layer = found[1]()
            except Exception as exc:  # noqa: BLE001 - whatever the user's __init__ raises
                raise CheckInputError(f"{name}() failed: {type(exc).__name__}: {exc}; allowed: a class that "
                                      "builds with no arguments (give its arguments defaults), or "
                                      "gradlab.check_layer(layer, x) from Python") from None
            if callable(getattr(layer, "step", None)) and len(shapes[0]) != 3:
                raise CheckInputError(f"{name} is a recurrent cell: its --shape is x's, N,T,D (e.g. 2,5,3), not "
                                      f"{shown}")
            return check_layer(layer, inputs[0], seed=seed, **kw)
        forward, backward, mask = found[1:]
        need = _required(forward)
        if need is not None and not (need[0] <= len(shapes) <= need[1]):
            raise CheckInputError(f"{forward.__name__} takes {need[0]} input(s) ({', '.join(need[2])}), but "
                                  f"{len(shapes)} --shape given; allowed: one --shape per input, in order "
                                  "(inputs that are not arrays need defaults, or use gradlab.check_function)")
        return check_function(forward, backward, inputs, mask=mask, seed=seed, **kw)
    except CheckInputError as exc:
        raise CheckInputError(f"{path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the user's forward or backward raised
        raise CheckInputError(f"{path}: {name} raised {type(exc).__name__}: {exc} on inputs of shape {shown}; "
                              "allowed: shapes its forward accepts, one --shape per array input") from None


def _required(fn: Callable) -> tuple[int, int, list[str]] | None:
    """(required, at most, names) of fn's positional parameters, or None if it cannot be read."""
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return None
    required = [p.name for p in params if p.default is p.empty]
    return len(required), len(params), [p.name for p in params]


# --------------------------------------------------------------------------- helpers

def _is_float_array(a: Any) -> bool:
    return isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.floating)


def _as_float64(a: Any) -> Any:
    """Float arrays in float64, copied; anything else (integer indices, options) as it is, unchecked."""
    if isinstance(a, np.ndarray) and np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float64)
    return a


def _as_tuple(grads: Any) -> tuple:
    if isinstance(grads, np.ndarray) or np.isscalar(grads):
        return (grads,)
    if isinstance(grads, (tuple, list)):
        return tuple(grads)
    return (grads,)


def _kind(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    if isinstance(value, tuple):
        return f"a tuple of {len(value)}"
    return f"a {type(value).__name__}"


def _label(fn: Callable) -> str:
    """``affine_forward`` -> ``affine``; ``conv_forward_naive`` -> ``conv_naive``."""
    name = getattr(fn, "__name__", "function")
    return name.replace("_forward", "", 1) if "_forward" in name[1:] else name


def _names(fn: Callable, n: int, given: Sequence[str] | None, label: str) -> list[str]:
    """The inputs' names: ``given``, else forward's own parameter names, else input0, input1, ..."""
    if given is not None:
        if len(given) != n:
            raise CheckInputError(f"{label}: {len(given)} names for {n} inputs; allowed: one name per input")
        return list(given)
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        params = []
    found = [p.name for p in params[:n]]
    return found + [f"input{i}" for i in range(len(found), n)]
