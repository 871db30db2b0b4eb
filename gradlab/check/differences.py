"""Numerical differences: centred and one-sided, entry by entry or along random directions, on K
perturbed copies at once; and the step-size studies (eps sweep, Taylor test)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .grading import CS231N_FLOOR, overall

CHUNK_FLOATS = 2**21  # at most about 16 MB of float64 stacked copies of a tensor
CHUNK_ROWS = 16384  # rows (copies x batch) per batched evaluation


def centred_difference(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """dJ/dx by (J(x + eps e_i) - J(x - eps e_i)) / (2 eps), perturbing ``x`` in place.

    ``f`` evaluates J reading the current ``x``; every entry is restored exactly.
    """
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):  # x[i] writes to x whatever its layout (a gate's view of a fused matrix)
        old = x[i]
        x[i] = old + eps
        plus = f()
        x[i] = old - eps
        minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * eps)
    return grad


def one_sided_difference(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """dJ/dx by (J(x + eps e_i) - J(x)) / eps: error O(eps), against O(eps^2) centred."""
    grad = np.zeros_like(x)
    J0 = f()
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        grad[i] = (f() - J0) / eps
        x[i] = old
    return grad


def stack_at(arr: np.ndarray, flat: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """K copies of ``arr``, copy k with entry ``flat[k]`` moved by ``delta[k]``: (K, *arr.shape)."""
    stack = np.repeat(arr[None], len(flat), axis=0)
    stack.reshape(len(flat), -1)[np.arange(len(flat)), flat] += delta
    return stack



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
    cs231n_rel_error: float = 0.0  # |a - n| / max(1e-8, |a| + |n|), CS231n's rel_error of this entry
    bound: float = 0.0  # what round-off and truncation can explain of |a - n|
    step: float = 0.0  # the realised step h



def entry_indices(shape: tuple, mode: str, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Flat indices to check: all of them, or ``samples`` distinct random ones."""
    size = int(np.prod(shape))
    if mode == "sample" and samples < size:
        return np.sort(rng.choice(size, samples, replace=False))
    return np.arange(size)


def chunks(n: int, per: int) -> Iterator[slice]:
    for start in range(0, n, per):
        yield slice(start, min(start + per, n))


def chunk_size(obj, arr: np.ndarray, name: str = "") -> int:
    """Entries per batched evaluation (2 copies each): about CHUNK_ROWS rows of activations (a sample's
    time steps are rows each), which keeps every array in cache, and at most CHUNK_FLOATS floats of
    stacked tensors."""
    rows = int(np.prod(obj.x.shape[:-1])) if obj.x.ndim > 1 else 1
    groups = getattr(obj, "packs", lambda name: 0)(name)
    if groups:  # a copy carries an entry of each group (sample or column)
        return max(1, CHUNK_ROWS // (2 * rows) * groups)
    return max(1, min(CHUNK_ROWS // (2 * rows), CHUNK_FLOATS // (2 * arr.size)))


@dataclass
class Entries:
    """The checked entries (or directions) of one tensor, as arrays of equal length."""

    param: str
    shape: tuple
    index: np.ndarray  # flat indices into the tensor, or direction numbers when ``directional``
    analytic: np.ndarray
    numeric: np.ndarray
    kink: np.ndarray  # bool: the winners changed between theta - h and theta + h
    left: np.ndarray  # one-sided derivatives (J(theta) - J(theta - h)) / h
    right: np.ndarray  # and (J(theta + h) - J(theta)) / h
    directional: bool = False
    bound: np.ndarray | None = None  # what round-off and truncation can explain of |analytic - numeric|
    step: np.ndarray | None = None  # the realised step of each entry
    truncation: np.ndarray | None = None  # |n(2h) - n(h)|, the part of the bound that is truncation error
    restepped: np.ndarray | None = None  # bool: crossed a kink at the tensor's step, none at a smaller one

    def __post_init__(self) -> None:
        for key in ("bound", "step", "truncation"):
            if getattr(self, key) is None:
                setattr(self, key, np.zeros(len(self.index)))
        if self.restepped is None:
            self.restepped = np.zeros(len(self.index), dtype=bool)

    def label(self, i: int) -> str:
        if self.directional:
            return f"v{int(self.index[i])}"
        return ",".join(str(int(k)) for k in np.unravel_index(int(self.index[i]), self.shape))

    def rows(self) -> Iterator[Entry]:
        """One ``Entry`` per checked entry, for the CSV."""
        diff = np.abs(self.analytic - self.numeric)
        denom = np.abs(self.analytic) + np.abs(self.numeric)
        err = np.divide(diff, denom, out=np.zeros_like(diff), where=denom > 0)
        cs231n = diff / np.maximum(CS231N_FLOOR, denom)
        for i in range(len(self.index)):
            kink = bool(self.kink[i])
            yield Entry(self.param, self.label(i), float(self.analytic[i]), float(self.numeric[i]), float(diff[i]),
                        float(err[i]), kink, float(self.left[i]) if kink else None,
                        float(self.right[i]) if kink else None, float(cs231n[i]), float(self.bound[i]),
                        float(self.step[i]))


# --------------------------------------------------------------------------- round-off, measured

NOISE_POINTS = 9  # J at theta + k h v, k = -4..4: a difference table of order up to 8
NOISE_ORDERS = (4, 5, 6)  # orders where h^k J^(k) is far below round-off for any sensible h
SAFETY = 3.0  # bounds are 3 standard deviations of the measured round-off


def noise(table: np.ndarray, dtype=np.float64) -> float:
    """The standard deviation of the round-off in J, from rows of J at equally spaced points.

    Moré and Wild, "Estimating computational noise" (SIAM J. Sci. Comput. 2011): the k-th differences of
    a smooth function at a small spacing vanish like h^k, those of its round-off do not; with
    gamma_k = (k!)^2 / (2k)!, sigma_k^2 = gamma_k mean((Delta^k f)^2) estimates the noise's variance.
    The median over orders 4-6 is taken, and never less than a unit round-off of J (J is one rounded
    number at least).
    """
    table = np.atleast_2d(np.asarray(table, dtype=np.float64))
    floor = 0.5 * float(np.finfo(dtype).eps) * float(np.abs(table).max(initial=0.0))
    if table.shape[-1] <= max(NOISE_ORDERS) or table.size == 0:
        return floor  # too few points for a difference table: one rounding of J
    levels, d = [], table
    for k in range(1, max(NOISE_ORDERS) + 1):
        d = np.diff(d, axis=-1)
        if k in NOISE_ORDERS:
            gamma = math.factorial(k) ** 2 / math.factorial(2 * k)
            levels.append(math.sqrt(gamma * float(np.mean(d * d))))
    return max(float(np.median(levels)), floor)


def _ladder(h: float) -> np.ndarray:
    k = NOISE_POINTS // 2
    return np.arange(-k, k + 1) * h


def entry_noise(obj, name: str, idx: np.ndarray, h: float, probes: int = 3) -> float:
    """Round-off of J when entries of ``name`` move: ``noise`` of J along a few of the checked entries."""
    if not len(idx):
        return 0.0
    pick = idx[np.linspace(0, len(idx) - 1, min(probes, len(idx))).astype(int)]
    arr = obj.targets[name]
    steps = _ladder(h)
    flat = np.repeat(pick, len(steps))
    delta = _realised(arr.reshape(-1)[flat], np.tile(steps, len(pick)))
    J, kinked = _values_at(obj, name, flat, delta)
    table = np.asarray(J, dtype=np.float64).reshape(len(pick), len(steps))
    smooth = ~np.asarray(kinked).reshape(len(pick), len(steps)).any(axis=1)  # a kink is no round-off
    return noise(table[smooth] if smooth.any() else table[:, NOISE_POINTS // 2:NOISE_POINTS // 2 + 1], arr.dtype)


def _values_at(obj, name: str, flat: np.ndarray, delta: np.ndarray):
    """J at K copies, copy k with entry ``flat[k]`` moved by ``delta[k]`` (through the objective's fast
    path when it has one)."""
    if hasattr(obj, "values_at"):
        return obj.values_at(name, flat, delta)
    return obj.values(name, stack_at(obj.targets[name], flat, delta))


def _realised(theta: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The step a float can take: (theta + h) - theta, in theta's precision (exact: both are floats of it)."""
    theta = np.asarray(theta)
    moved = (theta + np.asarray(h).astype(theta.dtype)).astype(theta.dtype)
    return moved.astype(np.float64) - theta.astype(np.float64)


def _differences(J0: float, J: np.ndarray, kinked: np.ndarray, up: np.ndarray, down: np.ndarray, one_sided: bool):
    """(numeric, kink, left, right) from J at the +h copies followed by the -h copies; ``up`` and ``down``
    are the realised steps (down > 0)."""
    k = len(J) // 2
    plus, minus = J[:k], J[k:]
    numeric = (plus - J0) / up if one_sided else (plus - minus) / (up + down)
    return numeric, kinked[:k] | kinked[k:], (J0 - minus) / down, (plus - J0) / up


def _interleaved(obj, name: str, arr: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The order to evaluate entries in: as given, or, where entries of different samples share a copy
    (``obj.packs``), round-robin over the groups, so that each chunk packs into few copies."""
    if not getattr(obj, "packs", lambda name: 0)(name):
        return np.arange(len(idx))
    group = obj.group_of(name, idx)
    by_group = np.argsort(group, kind="stable")
    rank = np.empty(len(idx), dtype=np.intp)  # each entry's rank among its group's entries
    rank[by_group] = np.arange(len(idx)) - np.searchsorted(group[by_group], group[by_group])
    return np.lexsort((group, rank))


def check_entries(obj, name: str, g: np.ndarray, idx: np.ndarray, eps: float, one_sided: bool = False,
                  tick: Callable[[float], None] | None = None) -> Entries:
    """Centred (or one-sided) differences at the flat indices ``idx`` of tensor ``name``, step ``eps``, with
    each entry's bound: SAFETY standard deviations of J's measured round-off over the realised step.

    Where the objective reads a whole tensor from its columns (``column_numeric``), those numbers are taken,
    and the entries it cannot vouch for (a sample crossed a kink) are differenced one by one. ``tick(f)``
    is told the fraction f of the entries done, as they are."""
    arr = obj.targets[name]
    by_column = getattr(obj, "column_numeric", lambda *a, **k: None)(name, eps, one_sided, entries=len(idx))
    if by_column is None:
        return _entry_by_entry(obj, name, g, idx, eps, one_sided, tick)
    numeric, bound, unsure = (a.reshape(-1)[idx] if a is not None else None for a in by_column)
    if bound is None:  # J's round-off over the step, measured as entry by entry
        bound = np.full(len(idx), SAFETY * entry_noise(obj, name, idx, eps) / eps)
    zeros = np.zeros(len(idx))
    e = Entries(name, arr.shape, idx, g.reshape(-1)[idx], numeric, zeros.astype(bool), zeros.copy(), zeros.copy(),
                bound=bound, step=np.full(len(idx), float(eps)))
    where = np.flatnonzero(unsure)
    if len(where):
        apart = _entry_by_entry(obj, name, g, idx[where], eps, one_sided)
        for key in ("numeric", "kink", "left", "right", "bound", "step"):
            getattr(e, key)[where] = getattr(apart, key)
    if tick:
        tick(1.0)
    return e


def _entry_by_entry(obj, name: str, g: np.ndarray, idx: np.ndarray, eps: float, one_sided: bool = False,
                    tick: Callable[[float], None] | None = None) -> Entries:
    arr = obj.targets[name]
    theta = arr.reshape(-1)[idx]
    up, down = _realised(theta, np.full(len(idx), eps)), -_realised(theta, np.full(len(idx), -eps))
    J0 = float(obj.values(name, arr[None])[0][0])
    numeric, kink, left, right = (np.zeros(len(idx)) for _ in range(4))
    kink = kink.astype(bool)
    order = _interleaved(obj, name, arr, idx)
    for sl in chunks(len(idx), chunk_size(obj, arr, name)):
        at = order[sl]
        part = idx[at]
        J, kinked = _values_at(obj, name, np.concatenate([part, part]), np.concatenate([up[at], -down[at]]))
        numeric[at], kink[at], left[at], right[at] = _differences(
            J0, np.asarray(J, dtype=np.float64), np.asarray(kinked), up[at], down[at], one_sided)
        if tick:
            tick(sl.stop / len(idx))
    sigma = entry_noise(obj, name, idx, eps)
    bound = SAFETY * sigma * ((1.0 / up) if one_sided else 2.0 / (up + down)) * (math.sqrt(2) if one_sided else 1.0)
    return Entries(name, arr.shape, idx, g.reshape(-1)[idx], numeric, kink.astype(bool), left, right,
                   bound=bound, step=0.5 * (up + down))


def check_directions(obj, name: str, g: np.ndarray, n_dirs: int, eps: float, rng: np.random.Generator,
                     one_sided: bool = False) -> Entries:
    """v . g against (J(theta + h v) - J(theta - h v)) / (2 h) for random unit directions v.

    The bound adds to J's measured round-off what rounding theta + h v to floats can move J by:
    sum_i |g_i| spacing(theta_i) / 2 on each side."""
    arr = obj.targets[name]
    v = rng.standard_normal((n_dirs,) + arr.shape)
    v /= np.sqrt(np.sum(v * v, axis=tuple(range(1, v.ndim)), keepdims=True))
    J0 = float(obj.values(name, arr[None])[0][0])
    J, kinked = obj.values(name, np.concatenate([arr + eps * v, arr - eps * v]))
    steps = np.full(n_dirs, float(eps))
    numeric, kink, left, right = _differences(J0, np.asarray(J, dtype=np.float64), np.asarray(kinked), steps, steps,
                                              one_sided)
    analytic = np.tensordot(v, g, axes=g.ndim) if g.ndim else v * g
    ladder = _ladder(eps).reshape((-1,) + (1,) * arr.ndim)
    sigma = noise(np.asarray(obj.values(name, arr + ladder * v[0])[0], dtype=np.float64), arr.dtype)
    rounding = float(np.sum(np.abs(g) * np.spacing(np.abs(arr).astype(arr.dtype)).astype(np.float64)))
    bound = (SAFETY * sigma + rounding) / (eps if one_sided else 2 * eps) * np.ones(n_dirs)
    e = Entries(name, arr.shape, np.arange(n_dirs), analytic, numeric, kink, left, right, directional=True,
                bound=bound, step=steps)
    for k in np.flatnonzero(kink):
        _off_kinks(obj, name, g, arr, v[k], eps, J0, one_sided, e, k, SAFETY * sigma + rounding)
    return e


KINK_FRACTIONS = (1.0, 1e-2, 1e-4)  # steps a direction that crossed a kink is tried at, as fractions of h


def _crossed(obj, name: str, arr: np.ndarray, vs: list[np.ndarray], h: float) -> np.ndarray:
    """(len(vs),) bool: whether theta + h v or theta - h v changes a winner, for each v (in chunks)."""
    out = np.zeros(len(vs), dtype=bool)
    for sl in chunks(len(vs), chunk_size(obj, arr, name)):
        part = np.stack(vs[sl])
        _, kinked = obj.values(name, np.concatenate([arr + h * part, arr - h * part]))
        kinked = np.asarray(kinked, dtype=bool)
        out[sl] = kinked[:len(part)] | kinked[len(part):]
    return out


def _quiet_step(obj, name: str, arr: np.ndarray, v: np.ndarray, h: float) -> float | None:
    """The largest of h's KINK_FRACTIONS at which theta +- step v changes no winner, or None."""
    for fraction in KINK_FRACTIONS:
        if not _crossed(obj, name, arr, [v], h * fraction)[0]:
            return h * fraction
    return None


def tied_values(arr: np.ndarray) -> np.ndarray:
    """Flat indices of the entries equal to another entry or to 0: where a tie of a max or a ReLU's kink can
    sit exactly (after a ReLU, a max-pool window of zeros); random values are never equal."""
    flat = arr.reshape(-1)
    _, inverse, counts = np.unique(flat, return_inverse=True, return_counts=True)
    return np.flatnonzero((counts[inverse.reshape(-1)] > 1) | (flat == 0))


KINK_BUDGET = 4096  # at most this many copies to find the entries theta sits on a kink with, by halving


def on_kinks(obj, name: str, arr: np.ndarray, v: np.ndarray, h: float) -> np.ndarray | None:
    """Flat indices of the entries of v's support whose move alone changes a winner at step h: the entries
    theta sits on a kink with (a max-pool window's tied maxima, a ReLU's input at exactly 0). Found by
    halving: a block of entries whose move changes no winner is kept whole, one that does is split; None
    past KINK_BUDGET copies."""
    blocks, tied, spent = [np.flatnonzero(v.reshape(-1))], [], 0
    while blocks:
        spent += 2 * len(blocks)
        if spent > KINK_BUDGET:
            return None
        parts = []
        for b in blocks:
            part = np.zeros(arr.size)
            part[b] = v.reshape(-1)[b]
            parts.append(part.reshape(arr.shape))
        crossed = _crossed(obj, name, arr, parts, h)
        blocks, split = [], [b for b, c in zip(blocks, crossed) if c]
        for b in split:
            if len(b) == 1:
                tied.append(b)
            else:
                blocks += [b[:len(b) // 2], b[len(b) // 2:]]
    return np.concatenate(tied) if tied else np.zeros(0, dtype=np.intp)


def _untied(obj, name: str, arr: np.ndarray, v: np.ndarray, h: float) -> tuple[np.ndarray, float | None]:
    """v without the entries theta sits on a kink with (first the equal values, then those found by halving),
    and a step at which it crosses no kink; (v, None) when there is none."""
    for find in (tied_values, lambda a: on_kinks(obj, name, a, v, h * KINK_FRACTIONS[-1])):
        tied = find(arr)
        if tied is None:
            break
        off = v.copy().reshape(-1)
        off[tied] = 0.0
        if not np.any(off):
            break
        step = _quiet_step(obj, name, arr, off.reshape(arr.shape), h)
        if step is not None:
            return off.reshape(arr.shape), step
    return v, None


def _off_kinks(obj, name: str, g: np.ndarray, arr: np.ndarray, v: np.ndarray, h: float, J0: float,
               one_sided: bool, e: Entries, k: int, noise_part: float) -> None:
    """Direction k crossed a kink. Along a random direction, several kinks are crossed at once (after a ReLU,
    every max-pool window of zeros is a tie), and the one-sided slopes along v, a sum of each kink's slopes
    weighted by gradients of either sign, need not bound v . g of a correct subgradient. So: a smaller step
    that crosses none (theta lies near kinks, not on them), else the direction without the entries theta sits
    on a kink with, which moves no winner: v . g must then be the slope of the piece theta lies on. What still
    crosses is left to the subgradient test."""
    step = _quiet_step(obj, name, arr, v, h)
    if step is None:
        v, step = _untied(obj, name, arr, v, h)
    if step is None:
        return
    J = np.asarray(obj.values(name, np.stack([arr + step * v, arr - step * v]))[0], dtype=np.float64)
    e.numeric[k] = (J[0] - J0) / step if one_sided else (J[0] - J[1]) / (2 * step)
    e.analytic[k] = float(np.tensordot(v, g, axes=g.ndim)) if g.ndim else float(v * g)
    e.left[k], e.right[k] = (J0 - J[1]) / step, (J[0] - J0) / step
    e.kink[k], e.restepped[k] = False, True
    e.step[k] = step
    e.bound[k] = noise_part / (step if one_sided else 2 * step)


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
