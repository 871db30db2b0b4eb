"""Grading: the relative error of a tensor's analytic gradient against its numerical one, judged against
the tiers of CS231n's gradient-check notes and against what the arithmetic can resolve.

Every numerical entry carries an error bound (see ``differences``): the round-off of J, measured, over the
realised step, plus the truncation error, estimated from a second step. A tensor's bound is aggregated as
its relative error is, ||bound|| / (||a|| + ||n||). The verdict of a tensor:

* pass: the error is within the tier (below 1e-7 without kinks, 1e-4 with them), or the bound explains it
  and is small enough (below ``RESOLVE``) that a gradient the notes call wrong would have shown;
* fail: the error is above the tier and the bound does not explain it (or a crossed kink fails the
  subgradient test);
* unresolved: the bound explains the error but is too large to tell right from wrong.
"""
from __future__ import annotations

import math

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from .differences import Entries

TIERS = ((1e-2, "wrong"), (1e-4, "uncomfortable"), (1e-7, "acceptable"))
TINY = 1e-10  # CS231n's notes: compare numbers above about this in absolute value
SMOOTH_LIMIT = 1e-7  # without kinks, "1e-7 and less you should be happy"; above it a gradient fails unless explained
KINK_LIMIT = 1e-4  # "1e-4 > relative error is usually okay for objectives with kinks"
RESOLVE = 1e-2  # a bound above the notes' "probably wrong" line cannot tell a right gradient from a wrong one
CS231N_FLOOR = 1e-8  # rel_error's denominator floor in CS231n's assignments


def rel_error(a: np.ndarray, n: np.ndarray) -> float:
    """||a - n||_2 / (||a||_2 + ||n||_2), the usual gradient-check relative error; 0 when both are
    exactly zero."""
    a, n = np.asarray(a, dtype=np.float64), np.asarray(n, dtype=np.float64)
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(n).max(initial=0.0)))
    if not scale > 0 or not np.isfinite(scale):
        return 0.0 if scale == 0 else float("nan")
    a, n = a / scale, n / scale  # the norms' squares neither underflow (1e-160) nor overflow (1e160)
    return float(np.linalg.norm(a - n) / (np.linalg.norm(a) + np.linalg.norm(n)))


def max_rel_error(a: np.ndarray, n: np.ndarray) -> float:
    """CS231n's ``rel_error``: max_i |a_i - n_i| / max(1e-8, |a_i| + |n_i|), element by element; 0 for
    no entries."""
    a, n = np.asarray(a, dtype=np.float64), np.asarray(n, dtype=np.float64)
    if a.size == 0:
        return 0.0
    with np.errstate(invalid="ignore"):
        err = np.abs(a - n) / np.maximum(CS231N_FLOOR, np.abs(a) + np.abs(n))
    return float("nan") if np.isnan(err).any() else float(err.max())


def rel_bound(bound: np.ndarray, a: np.ndarray, n: np.ndarray) -> float:
    """A tensor's bound, aggregated as its relative error is: ||bound||_2 / (||a||_2 + ||n||_2).

    0 when every entry's bound is 0; infinite when a and n are 0 but the bound is not (nothing resolved)."""
    b, a, n = (np.asarray(v, dtype=np.float64) for v in (bound, a, n))
    scale = max(float(np.abs(a).max(initial=0.0)), float(np.abs(n).max(initial=0.0)),
                float(np.abs(b).max(initial=0.0)))
    if not scale > 0 or not np.isfinite(scale):
        return 0.0 if scale == 0 else float("nan")
    b, a, n = b / scale, a / scale, n / scale
    denom = np.linalg.norm(a) + np.linalg.norm(n)
    return float(np.linalg.norm(b) / denom) if denom > 0 else float("inf")


def tier(err: float) -> str:
    """CS231n's notes: > 1e-2 wrong; 1e-2..1e-4 uncomfortable; 1e-4..1e-7 acceptable (with kinks); < 1e-7 good."""
    for bound, name in TIERS:
        if not err <= bound:  # NaN is wrong too
            return name
    return "good"


def judge(err: float, bound: float, limit: float, resolve: float = RESOLVE) -> str:
    """pass | fail | unresolved for a relative error, its bound and the tier's limit (see the module doc)."""
    if err <= limit:
        return "pass"
    if not err <= bound:  # a NaN error fails (the backward returned NaN) ...
        return "unresolved" if bound == math.inf else "fail"  # ... unless the step vanished (bound inf)
    return "pass" if bound <= resolve else "unresolved"


@dataclass
class TensorResult:
    name: str
    layer: int | None
    shape: tuple
    checked: int
    max_analytic: float
    max_numeric: float
    rel_error: float  # ||a - n|| / (||a|| + ||n||) over the entries that crossed no kink
    tier: str
    kinks: int  # entries whose winners changed between theta - h e_i and theta + h e_i
    kink_failures: int  # of those, entries whose analytic value is not between the one-sided ones
    worst_index: str
    worst_analytic: float
    worst_numeric: float
    tiny: bool  # every value below 1e-10 (CS231n's notes); informative only, the bound decides
    passed: bool = True
    unresolved: bool = False  # the bound cannot tell right from wrong (not a pass, not a failure)
    max_rel_error: float = 0.0  # CS231n's element-wise rel_error, over the entries that crossed no kink
    bound: float = 0.0  # what round-off and truncation can explain, aggregated like rel_error
    limit: float = SMOOTH_LIMIT  # the tier's limit this tensor is held to
    step: float = 0.0  # the step h used for this tensor (eps times the tensor's scale)
    verdict: str = "pass"  # pass | fail | unresolved
    explained: bool = False  # passes above the tier because the bound explains the error
    covered: bool = False  # unresolved end to end, but every module it passes through passes alone
    cure: str = ""  # for an unresolved tensor: what resolves it
    restepped: int = 0  # entries that crossed a kink at the step and none at a smaller step (graded as smooth)


def subgradient_ok(e: Entries, eps: float) -> np.ndarray:
    """At a crossed kink: is the analytic value between the left and right one-sided derivatives?

    The one-sided values carry O(h) truncation error and round-off: the slack is 10 eps (or 10 times each
    entry's own step), a millionth of their size and twice each entry's bound."""
    lo, hi = np.minimum(e.left, e.right), np.maximum(e.left, e.right)
    step = e.step if e.step is not None else eps
    slack = 1e-6 * (np.abs(lo) + np.abs(hi)) + 10 * np.maximum(step, eps) + 2 * e.bound
    return (lo - slack <= e.analytic) & (e.analytic <= hi + slack)


def resolution(J: float, eps: float, one_sided: bool = False, dtype=np.float64) -> float:
    """The smallest derivative a difference of J can show if J carried only its own last bits of round-off:
    a few float spacings of J over the step. A lower limit: the measured round-off (``differences.noise``)
    is larger when J comes out of a cancellation (-log p with p near 1)."""
    u = np.finfo(dtype).eps
    return 4 * u * max(abs(J), np.finfo(np.float64).tiny) / (eps if one_sided else 2 * eps)


def grade(name: str, layer: int | None, shape: tuple, e: Entries, limit: float = SMOOTH_LIMIT,
          resolve: float = RESOLVE, step: float = 0.0) -> TensorResult:
    """The verdict of one tensor from its entries (and their bounds); kink entries are graded apart by the
    subgradient test."""
    smooth = ~e.kink
    a, n, b = e.analytic[smooth], e.numeric[smooth], e.bound[smooth]
    err, bound = rel_error(a, n), rel_bound(b, a, n)
    failures = int(np.count_nonzero(~subgradient_ok(e, step)[e.kink]))
    verdict = judge(err, bound, limit, resolve)
    if failures:
        verdict = "fail"
    count = len(e.index)
    worst = int(np.argmax(np.abs(e.analytic - e.numeric))) if count else None
    max_a = float(np.abs(e.analytic).max()) if count else 0.0
    max_n = float(np.abs(e.numeric).max()) if count else 0.0
    return TensorResult(
        name=name, layer=layer, shape=tuple(shape), checked=count, max_analytic=max_a, max_numeric=max_n,
        rel_error=err, tier=tier(err), kinks=int(np.count_nonzero(e.kink)), kink_failures=failures,
        worst_index=e.label(worst) if count else "", worst_analytic=float(e.analytic[worst]) if count else 0.0,
        worst_numeric=float(e.numeric[worst]) if count else 0.0, tiny=0 < max_a < TINY and max_n < TINY,
        passed=verdict == "pass", unresolved=verdict == "unresolved", max_rel_error=max_rel_error(a, n),
        bound=bound, limit=limit, step=step, verdict=verdict, explained=verdict == "pass" and err > limit,
        restepped=int(np.count_nonzero(e.restepped)),
    )


def flatten(tensors: dict[str, np.ndarray]) -> tuple[np.ndarray, Callable[[np.ndarray], dict[str, np.ndarray]]]:
    """CS231n's steps 1-2: every tensor into one vector theta, in a fixed order, and the way back."""
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
