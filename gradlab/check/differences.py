"""Numerical differences: centred and one-sided, entry by entry or along random directions, on K
perturbed copies at once; and the step-size studies (eps sweep, Taylor test)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from .grading import overall

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
