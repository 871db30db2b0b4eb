"""Gradient checking: analytic gradients against centred differences, graded by the tiers of
CS231n's gradient-check notes.

The numerical gradient of entry i is (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps).
Rather than a full forward pass per entry, an *objective* re-runs only the layers from the
perturbed one to the loss, on K perturbed copies at once (every built-in layer broadcasts
over a leading axis of copies). Kinks are found by comparing the "winners" (ReLU masks) of
every perturbed copy with those at theta.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np

from .nn import Dense, Dropout, MLP, Loss, Module
from .nn.module import l2_applies

TIERS = ((1e-2, "wrong"), (1e-4, "uncomfortable"), (1e-7, "acceptable"))
TINY = 1e-10  # below this in absolute value, floats are sparse (CS231n's gradient-check notes)
CHUNK_FLOATS = 2**21  # at most about 16 MB of float64 stacked copies of a tensor
CHUNK_ROWS = 4096  # rows (copies x batch) per batched evaluation


def centred_difference(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """dJ/dx by (J(x + eps e_i) - J(x - eps e_i)) / (2 eps), perturbing ``x`` in place.

    ``f`` evaluates J reading the current ``x``; every entry is restored exactly.
    """
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)  # views: writes go to x
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = f()
        flat[i] = old - eps
        minus = f()
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def one_sided_difference(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """dJ/dx by (J(x + eps e_i) - J(x)) / eps: error O(eps), against O(eps^2) centred."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    J0 = f()
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        gflat[i] = (f() - J0) / eps
        flat[i] = old
    return grad


def rel_error(a: np.ndarray, n: np.ndarray) -> float:
    """||a - n||_2 / (||a||_2 + ||n||_2), the usual gradient-check relative error; 0 when both are
    exactly zero."""
    a, n = np.asarray(a, dtype=np.float64), np.asarray(n, dtype=np.float64)
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(n).max(initial=0.0)))
    if not scale > 0 or not np.isfinite(scale):
        return 0.0 if scale == 0 else float("nan")
    a, n = a / scale, n / scale  # the norms' squares neither underflow (1e-160) nor overflow (1e160)
    return float(np.linalg.norm(a - n) / (np.linalg.norm(a) + np.linalg.norm(n)))


def tier(err: float) -> str:
    """Seed 000: > 1e-2 wrong; 1e-2..1e-4 uncomfortable; 1e-4..1e-7 acceptable (with kinks); < 1e-7 good."""
    for bound, name in TIERS:
        if not err <= bound:  # NaN is wrong too
            return name
    return "good"


# --------------------------------------------------------------------------- objectives

def _batched(stack: np.ndarray) -> np.ndarray:
    """K copies of a parameter, shaped to broadcast against (K, N, D) activations."""
    return stack[:, None, :] if stack.ndim == 2 else stack


class NetObjective:
    """J(theta, x) = scale * loss(model(x), y) + l2/2 sum ||W||^2, in training mode with frozen dropout."""

    def __init__(self, model: MLP, loss: Loss, x: np.ndarray, y: np.ndarray, l2: float = 0.0, scale: float = 1.0):
        self.model, self.loss, self.x, self.l2, self.scale = model, loss, x, l2, scale
        self.y = model.targets(y)
        self.owner = {f"{m.name}.{k}": (m, k) for m in model.modules() for k in m.params}
        self.layer_of = dict(model.param_layer)
        self.kink_modules = [(l, m) for l, layer in enumerate(model.layers, 1) for m in layer.modules if m.kinks]
        freeze(model, x)
        self.analytic()  # the reference pass at theta

    @property
    def targets(self) -> dict[str, np.ndarray]:
        return {**self.model.params, "input": self.x}

    def layer(self, name: str) -> int | None:
        return self.layer_of.get(name)

    def value(self) -> float:
        return float(self.values("input", self.x[None])[0][0])

    def analytic(self) -> dict[str, np.ndarray]:
        """dJ/dtheta for every parameter and dJ/dx, from the model's backward pass."""
        J = self.model.loss_and_grads(self.x, self.y, self.loss, self.l2, train=True)
        self.J = self.scale * J
        grads = {k: self.scale * g for k, g in self.model.grads.items()}
        grads["input"] = self.scale * self.model.input_grad
        self._reference()
        return grads

    def _reference(self) -> None:
        """Winners and layer states at theta (the last forward pass was at theta)."""
        self.states = list(self.model.states)
        self.dense_out: dict[int, np.ndarray] = {}
        self.masks = {id(m): m.mask.copy() for _, m in self.kink_modules}
        self.sq = {k: float(np.vdot(W, W)) for k, W in self.model.params.items() if l2_applies(k)}

    def values(self, name: str, stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """J at K perturbed copies of one tensor, stack: (K, *shape) -> (J (K,), kink crossed (K,))."""
        start = 1 if name == "input" else self.layer_of[name]
        tail = [m for layer in self.model.layers[start - 1:] for m in layer.modules]
        if all(m.batched for m in tail):
            z = self._forward(name, stack, start)
            J = self.loss.value(z, self.y)
            kinked = self._kinked(start, len(stack))
        else:  # a module that cannot take K copies at once: one copy at a time
            pairs = [self.values_one(name, s, start) for s in stack]
            J, kinked = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        J = self.scale * J
        if self.l2:
            J = J + 0.5 * self.l2 * self._sum_sq(name, stack)
        return J, kinked

    def values_at(self, name: str, flat: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """J at K copies, copy k with entry ``flat[k]`` of the tensor moved by ``delta[k]``."""
        module, key = self.owner.get(name, (None, None))
        start = self.layer_of.get(name, 1)
        tail = [m for layer in self.model.layers[start - 1:] for m in layer.modules]
        if not (hasattr(module, "perturb") and module is tail[0] and all(m.batched for m in tail)):
            return self.values(name, stack_at(self.targets[name], flat, delta))
        h = self.states[start][0]
        z = self._tail_after(start, module.perturb(key, flat, delta, h), module.column(key, flat))
        J = self.scale * self.loss.value(z, self.y)
        if self.l2:
            J = J + 0.5 * self.l2 * self._sum_sq_at(name, flat, delta)
        return J, self._kinked(start, len(flat))

    def _tail_after(self, l: int, dense_out: np.ndarray, j: np.ndarray | None) -> np.ndarray:
        """Logits of K copies whose layer-l dense outputs are ``dense_out`` (K, N, D).

        When copy k moved only column ``j[k]`` of them, layer l's other modules keep the change
        in that column, so layer l+1's product is a rank-1 update of its value at theta.
        """
        model = self.model
        skip = self.states[l][1]
        layer = model.layers[l - 1]
        out = layer.forward(dense_out, True, start=1)
        if l in model.block_end:
            out = out + skip[l]
        if l == len(model.layers):
            return out
        nxt = model.layers[l]
        h_next, skip_next = self.states[l + 1]
        skip_next = dict(skip_next)
        if l + 1 in model.block_start:  # the block starting at l+1 keeps the perturbed input
            skip_next[model.block_start[l + 1]] = out
        if isinstance(nxt.modules[0], Dense) and j is not None and all(m.columnwise for m in layer.modules[1:]):
            z0 = self._dense_out(l + 1)
            W = nxt.modules[0].params["W"]
            k = np.arange(len(j))
            change = out[k, :, j] - h_next[:, j].T  # (K, N): the one column that moved
            z = z0[None] + change[:, :, None] * W[j][:, None, :]
            return model.forward(z, True, start=l + 1, skip=skip_next, module=1)
        return model.forward(out, True, start=l + 1, skip=skip_next)

    def column_numeric(self, name: str, eps: float, one_sided: bool = False) -> np.ndarray | None:
        """The numerical gradient of a whole dense W or b, from two evaluations per output column.

        W[i, j] and b[j] move only column j of z = x W + b, by eps x[:, i] and eps. When every
        sample's loss depends on its own row only (no batch norm in training mode) and the tail
        is smooth (no kinks), sample n's centred difference in z[n, j], D[n, j], gives
        dJ/db[j] = sum_n D[n, j] exactly as entry-by-entry differences of J would, and
        dJ/dW[i, j] = sum_n x[n, i] D[n, j] up to O(eps^2), the centred difference's own
        truncation error. None where that does not hold: use the entries.
        """
        module, key = self.owner.get(name, (None, None))
        if not isinstance(module, Dense) or key not in ("W", "b"):
            return None
        l = self.layer_of[name]
        tail = [m for layer in self.model.layers[l - 1:] for m in layer.modules]
        if module is not tail[0] or not all(m.batched and not m.kinks and not m.couples_samples for m in tail):
            return None
        h = self.states[l][0]
        cols = np.arange(module.params["W"].shape[1])
        signs = (eps,) if one_sided else (eps, -eps)
        flat, delta = np.tile(cols, len(signs)), np.repeat(signs, len(cols))
        terms = np.concatenate([self._sample_losses(l, module.shift(flat[c], delta[c], h), flat[c])
                                for c in chunks(len(flat), max(1, CHUNK_ROWS // len(h)))])
        if one_sided:
            base = self.loss.terms(self.model.forward(self.x, True), self.y)
            D = (terms - base) / eps
        else:
            D = (terms[: len(cols)] - terms[len(cols):]) / (2 * eps)
        D = self.scale * D.T / len(h)  # (N, D): sample n's share of dJ/dz[n, j]
        if key == "b":
            return D.sum(axis=0)
        numeric = h.T @ D
        if self.l2 and l2_applies(name):  # the penalty, centred: l2/2 ((w + eps)^2 - (w - eps)^2) / (2 eps)
            W = module.params["W"]
            numeric = numeric + 0.5 * self.l2 * ((W + eps) ** 2 - (W - eps) ** 2) / (2 * eps)
        return numeric

    def _sample_losses(self, l: int, dense_out: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Per-sample losses (K, N) of K copies whose layer-l dense outputs are ``dense_out``."""
        return self.loss.terms(self._tail_after(l, dense_out, j), self.y)

    def _dense_out(self, l: int) -> np.ndarray:
        """Layer l's dense output at theta, (N, fan_out), computed once."""
        if l not in self.dense_out:
            dense = self.model.layers[l - 1].modules[0]
            W, b = dense.params["W"], dense.params.get("b")
            self.dense_out[l] = self.states[l][0] @ W + (b if b is not None else 0.0)
        return self.dense_out[l]

    def _sum_sq_at(self, name: str, flat: np.ndarray, delta: np.ndarray) -> np.ndarray:
        total = sum(self.sq.values())
        if name not in self.sq:
            return np.full(len(flat), total)
        w = self.targets[name].reshape(-1)[flat]
        return total + 2 * w * delta + delta * delta  # (w + d)^2 - w^2

    def values_one(self, name: str, value: np.ndarray, start: int) -> tuple[float, bool]:
        z = self._forward(name, value, start, batched=False)
        return float(self.loss.value(z, self.y)), bool(self._kinked(start, 1)[0])

    def _forward(self, name: str, stack: np.ndarray, start: int, batched: bool = True) -> np.ndarray:
        if name == "input":
            return self.model.forward(stack, True)
        module, key = self.owner[name]
        saved = module.params[key]
        module.params[key] = _batched(stack) if batched else stack
        try:
            h, skip = self.states[start]
            return self.model.forward(h, True, start=start, skip=skip)
        finally:
            module.params[key] = saved

    def _kinked(self, start: int, k: int) -> np.ndarray:
        crossed = np.zeros(k, dtype=bool)
        for l, m in self.kink_modules:
            if l >= start:
                changed = m.mask != self.masks[id(m)]
                crossed |= changed.reshape(k, -1).any(axis=1) if changed.ndim == 3 else changed.any()
        return crossed

    def _sum_sq(self, name: str, stack: np.ndarray) -> np.ndarray:
        total = sum(self.sq.values())
        if name not in self.sq:
            return np.full(len(stack), total)
        return total - self.sq[name] + np.sum(stack * stack, axis=tuple(range(1, stack.ndim)))


class ModuleObjective:
    """A module alone: J = sum(forward(x) * r) for a fixed random r, so dJ/dout = r."""

    def __init__(self, module: Module, x: np.ndarray, rng: np.random.Generator, layer: int | None = None):
        self.module, self.x, self.layer_index = module, x, layer
        self.r = rng.standard_normal(module.forward(x, True).shape)
        self.kink = module.kinks

    @property
    def targets(self) -> dict[str, np.ndarray]:
        return {**{f"{self.module.name}.{k}": v for k, v in self.module.params.items()},
                f"{self.module.name}.input": self.x}

    def layer(self, name: str) -> int | None:
        return self.layer_index

    def analytic(self) -> dict[str, np.ndarray]:
        out = self.module.forward(self.x, True)
        self.J = float(np.sum(out * self.r))
        dx = self.module.backward(self.r.copy())
        self.mask = self.module.mask.copy() if self.kink else None
        grads = {f"{self.module.name}.{k}": g.copy() for k, g in self.module.grads.items()}
        grads[f"{self.module.name}.input"] = dx
        return grads

    def values(self, name: str, stack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.module.batched:
            pairs = [self._one(name, s) for s in stack]
            return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
        out = self._forward(name, stack, batched=True)
        J = np.sum(out * self.r, axis=(-2, -1))
        return J, self._kinked(len(stack))

    def values_at(self, name: str, flat: np.ndarray, delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        key = name.split(".", 1)[1]
        if not hasattr(self.module, "perturb"):
            return self.values(name, stack_at(self.targets[name], flat, delta))
        out = self.module.perturb(key, flat, delta, self.x)
        return np.sum(out * self.r, axis=(-2, -1)), self._kinked(len(flat))

    def _one(self, name, value):
        out = self._forward(name, value, batched=False)
        return float(np.sum(out * self.r)), bool(self._kinked(1)[0])

    def _forward(self, name: str, stack: np.ndarray, batched: bool) -> np.ndarray:
        if name.endswith(".input"):
            return self.module.forward(stack, True)
        key = name.split(".", 1)[1]
        saved = self.module.params[key]
        self.module.params[key] = _batched(stack) if batched else stack
        try:
            return self.module.forward(self.x, True)
        finally:
            self.module.params[key] = saved

    def _kinked(self, k: int) -> np.ndarray:
        if not self.kink:
            return np.zeros(k, dtype=bool)
        changed = self.module.mask != self.mask
        return changed.reshape(k, -1).any(axis=1) if changed.ndim == 3 else np.full(k, changed.any())


def stack_at(arr: np.ndarray, flat: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """K copies of ``arr``, copy k with entry ``flat[k]`` moved by ``delta[k]``: (K, *arr.shape)."""
    stack = np.repeat(arr[None], len(flat), axis=0)
    stack.reshape(len(flat), -1)[np.arange(len(flat)), flat] += delta
    return stack


def freeze(model: MLP, x: np.ndarray) -> bool:
    """Hold what a forward pass draws or cuts at its values at theta: dropout masks, and the
    chunk-start states of truncated BPTT (so J's gradient is the truncated one backward computes).
    Returns True if anything was frozen."""
    held = [m for m in model.modules() if hasattr(m, "frozen")]
    for m in held:
        m.frozen = False
    if held:
        model.forward(x, True)
        for m in held:
            m.frozen = True
    return bool(held)


# --------------------------------------------------------------------------- checking

@dataclass
class Entry:
    """One checked entry (or direction): a row of ``--csv``."""

    param: str
    index: str
    analytic: float
    numeric: float
    abs_diff: float
    rel_error: float
    kink: bool
    left: float | None = None  # one-sided derivatives, at a crossed kink
    right: float | None = None


@dataclass
class TensorResult:
    name: str
    layer: int | None
    shape: tuple
    checked: int
    max_analytic: float
    max_numeric: float
    rel_error: float  # over the entries that crossed no kink
    tier: str
    kinks: int  # entries whose winners changed between theta - eps e_i and theta + eps e_i
    kink_failures: int  # of those, entries whose analytic value is not between the one-sided ones
    worst_index: str
    worst_analytic: float
    worst_numeric: float
    tiny: bool
    passed: bool = True
    unresolved: bool = False  # every value below what differences of J can resolve (see ``resolution``)


def entry_indices(shape: tuple, mode: str, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices to check: all of them, or ``samples`` distinct random ones."""
    size = int(np.prod(shape))
    if mode == "sample" and samples < size:
        return np.sort(rng.choice(size, samples, replace=False))
    return np.arange(size)


def chunks(n: int, per: int) -> Iterator[slice]:
    for start in range(0, n, per):
        yield slice(start, min(start + per, n))


def chunk_size(obj, arr: np.ndarray) -> int:
    """Entries per batched evaluation (2 copies each): about CHUNK_ROWS rows of activations, which
    keeps every array in cache, and at most CHUNK_FLOATS floats of stacked tensors."""
    n = obj.x.shape[0]
    return max(1, min(CHUNK_ROWS // (2 * n), CHUNK_FLOATS // (2 * arr.size)))


@dataclass
class Entries:
    """The checked entries (or directions) of one tensor, as arrays of equal length."""

    param: str
    shape: tuple
    index: np.ndarray  # flat indices into the tensor, or direction numbers when ``directional``
    analytic: np.ndarray
    numeric: np.ndarray
    kink: np.ndarray  # bool: the winners changed between theta - eps and theta + eps
    left: np.ndarray  # one-sided derivatives (J(theta) - J(theta - eps)) / eps
    right: np.ndarray  # and (J(theta + eps) - J(theta)) / eps
    directional: bool = False

    def label(self, i: int) -> str:
        if self.directional:
            return f"v{int(self.index[i])}"
        return ",".join(str(int(k)) for k in np.unravel_index(int(self.index[i]), self.shape))

    def rows(self) -> Iterator[Entry]:
        """One ``Entry`` per checked entry, for the CSV."""
        diff = np.abs(self.analytic - self.numeric)
        denom = np.abs(self.analytic) + np.abs(self.numeric)
        err = np.divide(diff, denom, out=np.zeros_like(diff), where=denom > 0)
        for i in range(len(self.index)):
            kink = bool(self.kink[i])
            yield Entry(self.param, self.label(i), float(self.analytic[i]), float(self.numeric[i]), float(diff[i]),
                        float(err[i]), kink, float(self.left[i]) if kink else None,
                        float(self.right[i]) if kink else None)


def _differences(J0: float, J: np.ndarray, kinked: np.ndarray, eps: float, one_sided: bool):
    """(numeric, kink, left, right) from J at the +eps copies followed by the -eps copies."""
    k = len(J) // 2
    plus, minus = J[:k], J[k:]
    numeric = (plus - J0) / eps if one_sided else (plus - minus) / (2 * eps)
    return numeric, kinked[:k] | kinked[k:], (J0 - minus) / eps, (plus - J0) / eps


def check_entries(obj, name: str, g: np.ndarray, idx: np.ndarray, eps: float, one_sided: bool = False) -> Entries:
    """Centred (or one-sided) differences at the flat indices ``idx`` of tensor ``name``."""
    arr = obj.targets[name]
    by_column = getattr(obj, "column_numeric", lambda *a: None)(name, eps, one_sided)
    if by_column is not None:
        zeros = np.zeros(len(idx))
        return Entries(name, arr.shape, idx, g.reshape(-1)[idx], by_column.reshape(-1)[idx], zeros.astype(bool),
                       zeros, zeros)
    J0 = obj.values(name, arr[None])[0][0]
    parts = []
    for sl in chunks(len(idx), chunk_size(obj, arr)):
        part = idx[sl]
        k = len(part)
        J, kinked = obj.values_at(name, np.concatenate([part, part]), np.repeat([eps, -eps], k))
        parts.append(_differences(J0, J, kinked, eps, one_sided))
    numeric, kink, left, right = (np.concatenate(c) for c in zip(*parts)) if parts else (np.zeros(0),) * 4
    return Entries(name, arr.shape, idx, g.reshape(-1)[idx], numeric, kink.astype(bool), left, right)


def check_directions(obj, name: str, g: np.ndarray, n_dirs: int, eps: float, rng: np.random.Generator,
                     one_sided: bool = False) -> Entries:
    """v . g against (J(theta + eps v) - J(theta - eps v)) / (2 eps) for random unit directions v."""
    arr = obj.targets[name]
    v = rng.standard_normal((n_dirs,) + arr.shape)
    v /= np.sqrt(np.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))
    J0 = obj.values(name, arr[None])[0][0]
    J, kinked = obj.values(name, np.concatenate([arr + eps * v, arr - eps * v]))
    numeric, kink, left, right = _differences(J0, J, kinked, eps, one_sided)
    analytic = np.tensordot(v, g, axes=g.ndim) if g.ndim else v * g
    return Entries(name, arr.shape, np.arange(n_dirs), analytic, numeric, kink, left, right, directional=True)


def subgradient_ok(e: Entries, eps: float) -> np.ndarray:
    """At a crossed kink: is the analytic value between the left and right one-sided derivatives?"""
    lo, hi = np.minimum(e.left, e.right), np.maximum(e.left, e.right)
    slack = 1e-6 * (np.abs(lo) + np.abs(hi)) + 10 * eps  # the one-sided values carry O(eps) error
    return (lo - slack <= e.analytic) & (e.analytic <= hi + slack)


def resolution(J: float, eps: float, one_sided: bool = False) -> float:
    """The smallest derivative a difference of J can show: the last bits of J over the step.

    Below it the numerical gradient is round-off, whatever the code; a loss scale does not help
    (it scales J's round-off too). Such tensors are judged by the checks of each layer alone.
    """
    return 4 * np.finfo(np.float64).eps * max(abs(J), np.finfo(np.float64).tiny) / (eps if one_sided else 2 * eps)


def grade(name: str, layer: int | None, shape: tuple, e: Entries, eps: float, strict_smooth: bool,
          floor: float = 0.0) -> TensorResult:
    """Tier of one tensor from its entries; kink entries are graded apart by the subgradient test.

    ``floor`` is the resolution of the numerical gradient: a tensor entirely below it is
    unresolved (it passes, with a warning), and under --strict an 'acceptable' error within
    10x of what round-off alone explains still passes.
    """
    smooth = ~e.kink
    err = rel_error(e.analytic[smooth], e.numeric[smooth])
    t = tier(err)
    rms = float(np.sqrt(np.mean(e.analytic[smooth] ** 2))) if smooth.any() else 0.0
    roundoff = floor / rms if rms > 0 else np.inf
    failures = int(np.count_nonzero(~subgradient_ok(e, eps)[e.kink]))
    n = len(e.index)
    worst = int(np.argmax(np.abs(e.analytic - e.numeric))) if n else None
    max_a = float(np.abs(e.analytic).max()) if n else 0.0
    max_n = float(np.abs(e.numeric).max()) if n else 0.0
    tiny = 0 < max_a < TINY and max_n < TINY
    unresolved = bool(n > 0 and max_a < floor and max_n < floor)
    strict_fail = strict_smooth and t == "acceptable" and err > 10 * roundoff
    passed = bool(unresolved or (t in ("good", "acceptable") and failures == 0 and not strict_fail))
    return TensorResult(
        name=name, layer=layer, shape=tuple(shape), checked=n, max_analytic=max_a, max_numeric=max_n,
        rel_error=err, tier=t, kinks=int(np.count_nonzero(e.kink)), kink_failures=failures,
        worst_index=e.label(worst) if n else "", worst_analytic=float(e.analytic[worst]) if n else 0.0,
        worst_numeric=float(e.numeric[worst]) if n else 0.0, tiny=tiny, passed=passed, unresolved=unresolved,
    )


@dataclass
class CheckReport:
    mode: str
    eps: float
    dtype: str
    n_params: int
    tensors: list[TensorResult]  # the whole network, each parameter and the input
    layers: list[TensorResult]  # each module alone: its input and parameters
    rel_error: float  # over every smooth entry of the whole network
    tier: str
    has_kinks: bool
    passed: bool
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    blocks: list[Entries] = field(default_factory=list, repr=False)
    seconds: float = 0.0

    @property
    def failed(self) -> list[TensorResult]:
        return [t for t in self.tensors + self.layers if not t.passed]

    @property
    def entries(self) -> list[Entry]:
        """Every checked entry of the whole-network check, one ``Entry`` each."""
        return [row for b in self.blocks for row in b.rows()]


def run_check(obj, names: list[str], mode: str, eps: float, rng: np.random.Generator, samples: int = 10,
              directions: int = 4, one_sided: bool = False, strict_smooth: bool = False) -> tuple[list[TensorResult], list[Entries]]:
    """Check the tensors ``names`` of an objective; returns their grades and their entries."""
    grads = obj.analytic()
    results, blocks = [], []
    for name in names:
        g = grads[name]
        if mode == "directional":
            e = check_directions(obj, name, g, directions, eps, rng, one_sided)
        else:
            e = check_entries(obj, name, g, entry_indices(g.shape, mode, samples, rng), eps, one_sided)
        results.append(grade(name, obj.layer(name), g.shape, e, eps, strict_smooth, resolution(obj.J, eps, one_sided)))
        blocks.append(e)
    return results, blocks


def flatten(tensors: dict[str, np.ndarray]) -> tuple[np.ndarray, Callable[[np.ndarray], dict[str, np.ndarray]]]:
    """Seed 000's steps 1-2: every tensor into one vector theta, in a fixed order, and the way back."""
    names = list(tensors)
    shapes = [tensors[k].shape for k in names]
    sizes = [int(np.prod(sh)) for sh in shapes]
    theta = np.concatenate([np.ravel(tensors[k]) for k in names]) if names else np.zeros(0)

    def unflatten(vector: np.ndarray) -> dict[str, np.ndarray]:
        parts = np.split(vector, np.cumsum(sizes)[:-1]) if names else []
        return {k: p.reshape(sh) for k, p, sh in zip(names, parts, shapes)}

    return theta, unflatten


def overall(blocks: list[Entries]) -> float:
    """Relative error of d_theta over every checked entry that crossed no kink."""
    a, _ = flatten({b.param: b.analytic[~b.kink] for b in blocks})
    n, _ = flatten({b.param: b.numeric[~b.kink] for b in blocks})
    return rel_error(a, n)


def has_kinks(model: MLP) -> bool:
    return any(m.kinks for m in model.modules())


def n_params(model: MLP) -> int:
    return int(sum(p.size for p in model.params.values()))


def is_finite_pass(model: MLP, x, y, loss, l2) -> tuple[bool, str]:
    """Pre-flight: forward and backward give finite numbers, or the first layer that did not."""
    with np.errstate(all="ignore"):
        J = model.loss_and_grads(x, y, loss, l2, train=True)
    finite = math.isfinite(J) and all(np.isfinite(g).all() for g in model.grads.values())
    if finite:
        return True, ""
    layer, where = model.first_nonfinite(math.isfinite(J))
    return False, f"layer {layer} ({where})"


# --------------------------------------------------------------------------- step-size studies

def eps_sweep(obj, names: list[str], rng: np.random.Generator, epsilons=tuple(10.0 ** -k for k in range(1, 11)),
              directions: int = 4) -> list[dict]:
    """Overall relative error against eps, centred and one-sided: truncation error O(eps^2) or
    O(eps) on the left, round-off O(1/eps) on the right."""
    grads = obj.analytic()
    seeds = rng.integers(2**31, size=len(names))
    out = []
    for eps in epsilons:
        row = {"eps": eps}
        for label, one in (("centred", False), ("one_sided", True)):
            blocks = [check_directions(obj, name, grads[name], directions, eps, np.random.default_rng(sd), one)
                      for name, sd in zip(names, seeds)]
            row[label] = overall(blocks)
        out.append(row)
    return out


def taylor_test(obj, names: list[str], rng: np.random.Generator, h0: float = 1e-1, halvings: int = 8) -> list[dict]:
    """Step-size-free test per tensor: r(h) = |J(theta + h v) - J(theta) - h v.g| shrinks as h^2 when
    g is right (observed rate about 2) and as h when it is wrong (rate about 1)."""
    grads = obj.analytic()
    out = []
    for name in names:
        arr, g = obj.targets[name], grads[name]
        v = rng.standard_normal(arr.shape)
        v /= np.linalg.norm(v)
        hs = h0 * 0.5 ** np.arange(halvings)
        J, _ = obj.values(name, np.concatenate([arr[None], arr + hs.reshape((-1,) + (1,) * arr.ndim) * v]))
        r = np.abs(J[1:] - J[0] - hs * float(np.vdot(v, g)))
        floor = 1e-13 * max(abs(J[0]), 1.0)  # below this the residual is round-off
        rates = [math.log2(r[i] / r[i + 1]) for i in range(halvings - 1) if r[i + 1] > floor]
        rate = float(np.median(rates)) if rates else float("nan")
        out.append({"param": name, "rate": rate, "residuals": r.tolist(), "h": hs.tolist()})
    return out


# --------------------------------------------------------------------------- the whole check

AUTO_FULL_LIMIT = 100_000  # mode auto: every entry up to this many parameters, else a sample


@dataclass
class CheckSetup:
    """A model at the parameters to check, on its fixed batch, with its objective."""

    model: MLP
    objective: NetObjective
    notes: list[str]
    warnings: list[str]


def prepare(config, source: str = "<config>", after_steps: int = 0) -> CheckSetup:
    """Build the model in the check's dtype, optionally train it, freeze what is random, pre-flight."""
    from dataclasses import replace

    from .config import ConfigError
    from .train import fit, setup

    cc = config.check
    train_cfg = config.train.model_copy(update={"dtype": cc.dtype})
    s = setup(config.model_copy(update={"train": train_cfg}), source)
    notes, warnings = [], []
    if cc.dtype == "float32":
        warnings.append("checking in float32: with correct code the relative error can reach 1e-2 in single "
                        "precision (CS231n's gradient-check notes); use check.dtype float64 unless you mean to "
                        "test float32.")
    if after_steps:
        steps_cfg = s.config.model_copy(update={"train": train_cfg.model_copy(update={"steps": after_steps, "epochs": None})})
        result = fit(replace(s, config=steps_cfg))
        if result.status == "diverged":
            raise ConfigError(f"{source}: --after-steps {after_steps}: training diverged at step "
                              f"{result.diverged_at}; nothing finite to check.")
        notes.append(f"checked after {result.steps} training steps")
    x, y = s.data.X_train[: cc.batch], s.data.y_train[: cc.batch]
    model = s.model
    ok, where = is_finite_pass(model, x, y, s.loss, config.train.l2)
    if not ok:
        raise ConfigError(f"{source}: the forward or backward pass is not finite at the checked parameters: "
                          f"first non-finite value in {where}. Lower the init scale or check that layer.")
    obj = NetObjective(model, s.loss, x, y, config.train.l2, cc.loss_scale)
    if any(isinstance(m, Dropout) and m.p > 0 for m in model.modules()):
        notes.append("dropout: one fixed mask per layer, so dropout's backward is checked, not skipped")
    if any(getattr(m, "truncate", None) for m in model.modules()):
        notes.append("truncated BPTT: the chunk-start states are held at their values at theta, so the "
                     "numerical gradient is the truncated one")
    if any(m.kinks for m in model.modules()):
        notes.append("the net has kinks (ReLU-like units): entries whose winners change between theta - eps "
                     "and theta + eps are graded apart, by the one-sided derivatives")
    J1, J2 = obj.value(), obj.value()
    if J1 != J2:
        raise ConfigError(f"{source}: the loss differs between two evaluations at the same parameters "
                          f"({J1!r} vs {J2!r}): something random is still on.")
    notes.append(f"batch of {len(x)} training samples, eps {cc.eps:g}, {cc.dtype}, loss in training mode")
    return CheckSetup(model, obj, notes, warnings)


def check(config, source: str = "<config>", after_steps: int = 0, one_sided: bool = False) -> CheckReport:
    """Check every parameter and the input end to end, and every module alone; grade by the tiers."""
    import time

    t0 = time.perf_counter()
    with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
        report = _check(config, source, after_steps, one_sided)
    report.seconds = time.perf_counter() - t0
    return report


def _check(config, source: str, after_steps: int, one_sided: bool) -> CheckReport:
    cc = config.check
    cs = prepare(config, source, after_steps)
    model, obj = cs.model, cs.objective
    rng = np.random.default_rng(config.seed)
    mode = cc.mode if cc.mode != "auto" else ("full" if n_params(model) <= AUTO_FULL_LIMIT else "sample")
    strict_smooth = cc.strict and not has_kinks(model)
    kw = dict(mode=mode, eps=cc.eps, rng=rng, samples=cc.samples, directions=cc.directions,
              one_sided=one_sided, strict_smooth=strict_smooth)
    layers = check_modules(model, obj.x, rng, kw)
    tensors, blocks = run_check(obj, [*model.params, "input"], **kw)
    err = overall(blocks)
    report = CheckReport(mode=mode, eps=cc.eps, dtype=cc.dtype, n_params=n_params(model), tensors=tensors,
                         layers=layers, rel_error=err, tier=tier(err), has_kinks=has_kinks(model), passed=True,
                         warnings=cs.warnings, notes=cs.notes, blocks=blocks)
    report.passed = not report.failed
    report.warnings += tiny_warnings(tensors + layers)
    smooth_acceptable = [t.name for t in tensors + layers if t.tier == "acceptable" and not report.has_kinks]
    if smooth_acceptable:
        report.notes.append(f"'acceptable' ({listed(smooth_acceptable)}) is too high for a net without kinks "
                            "(CS231n's gradient-check notes): expect below 1e-7; --strict fails it unless round-off "
                            "explains it")
    if model.depth >= 10 and report.tier in ("acceptable", "uncomfortable"):
        report.notes.append(f"a {model.depth}-layer net accumulates rounding error end to end "
                            "(CS231n's gradient-check notes); every "
                            "layer is also checked alone, so a wrong layer is still named")
    report.warnings += coarse_warnings(obj.targets, cc.eps)
    return report


def coarse_warnings(targets: dict[str, np.ndarray], eps: float) -> list[str]:
    """Tensors with values so large that theta +- eps rounds back to theta (or nearly)."""
    coarse = [k for k, v in targets.items() if v.size and float(np.spacing(np.abs(v).max())) * 4 > eps]
    if not coarse:
        return []
    return [f"eps {eps:g} is within a few float spacings of the largest values of {listed(coarse)}: theta +- eps "
            "rounds, so their numerical gradient is unreliable; use a larger check.eps or a smaller init"]


def check_modules(model: MLP, x: np.ndarray, rng: np.random.Generator, kw: dict) -> list[TensorResult]:
    """Each module alone on the input it sees at theta: names the layer whose backward is wrong,
    even one without parameters of its own."""
    model.forward(x, True)
    inputs = [(l, m, layer.inputs[i]) for l, layer in enumerate(model.layers, 1) for i, m in enumerate(layer.modules)]
    results = []
    for l, m, inp in inputs:
        obj = ModuleObjective(m, inp, rng, l)
        names = list(obj.targets)
        results.extend(run_check(obj, names, **kw)[0])
    return results


def listed(names: list[str]) -> str:
    return ", ".join(names[:6]) + (" ..." if len(names) > 6 else "")


def tiny_warnings(results: list[TensorResult]) -> list[str]:
    out = []
    unresolved = [t.name for t in results if t.unresolved]
    if unresolved:
        out.append(f"unresolved: every gradient of {listed(unresolved)} is below what differences of the loss "
                   "can resolve (its last bits over eps), so those tensors are judged by the checks of each "
                   "layer alone; they pass here")
    tiny = [t.name for t in results if t.tiny and not t.unresolved]
    if not tiny:
        return out
    return out + [f"tiny gradients (|analytic| and |numeric| below {TINY:g}) in {listed(tiny)}"
            f": floats are sparse there (CS231n's gradient-check notes); scale the loss up "
            "with --loss-scale (e.g. 1e6) to bring them near 1"]


def taylor(config, source: str = "<config>", after_steps: int = 0) -> list[dict]:
    """The Taylor test for every parameter tensor and the input (see ``taylor_test``)."""
    cs = prepare(config, source, after_steps)
    return taylor_test(cs.objective, [*cs.model.params, "input"], np.random.default_rng(config.seed))


def sweep_eps(config, source: str = "<config>", after_steps: int = 0) -> list[dict]:
    """The overall relative error for eps = 1e-1 ... 1e-10, centred and one-sided."""
    cs = prepare(config, source, after_steps)
    return eps_sweep(cs.objective, [*cs.model.params, "input"], np.random.default_rng(config.seed),
                     directions=config.check.directions)


def report_dict(report: CheckReport) -> dict:
    """The summary as JSON-ready data (``gradlab check --json``)."""
    from dataclasses import asdict

    keep = ("mode", "eps", "dtype", "n_params", "rel_error", "tier", "has_kinks", "passed", "warnings", "notes",
            "seconds")
    return {**{k: getattr(report, k) for k in keep},
            "tensors": [asdict(t) for t in report.tensors], "layers": [asdict(t) for t in report.layers],
            "failed": [t.name for t in report.tensors if not t.passed],
            "failed_alone": [t.name for t in report.layers if not t.passed]}


def write_entries(report: CheckReport, path) -> None:
    """One row per checked entry of the whole-network check (``--csv``)."""
    import csv

    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["param", "index", "analytic", "numeric", "abs_diff", "rel_error", "kink"])
        for e in report.entries:
            w.writerow([e.param, e.index, repr(e.analytic), repr(e.numeric), repr(e.abs_diff), repr(e.rel_error),
                        int(e.kink)])
