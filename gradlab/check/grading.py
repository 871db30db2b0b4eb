"""Grading: the relative error of a tensor's analytic gradient against its numerical one, the tiers of
CS231n's gradient-check notes, the subgradient test at kinks and the round-off floor of a difference."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from .differences import Entries

TIERS = ((1e-2, "wrong"), (1e-4, "uncomfortable"), (1e-7, "acceptable"))
TINY = 1e-10  # below this in absolute value, floats are sparse (CS231n's gradient-check notes)


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
