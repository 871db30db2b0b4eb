"""The gradient check's grading rules at their edges, on hand-made entries: the subgradient test's interval
and its tolerance (10 eps plus 1e-6 of the one-sided derivatives' size, since those carry O(eps) error); the
verdict from the error, its bound and the tier (pass, explained, fail, unresolved); CS231n's element-wise
rel_error; and the measured round-off against a known noise level and a loss computed by cancellation.
"""
import math

import numpy as np
import pytest

from gradlab.check import Entries, subgradient_ok, tier


def kink_entries(analytic, left, right) -> Entries:
    n = len(analytic)
    return Entries("dense1.W", (n,), np.arange(n), np.array(analytic, dtype=float), np.zeros(n),
                   np.ones(n, dtype=bool), np.array(left, dtype=float), np.array(right, dtype=float))


def test_a_subgradient_lies_between_the_one_sided_derivatives_in_either_order():
    e = kink_entries([0.0, 0.5, 1.0, -0.1, 1.1, 0.5], [0.0, 0.0, 1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0, 1.0, 0.0])
    np.testing.assert_array_equal(subgradient_ok(e, 1e-9), [True, True, True, False, False, True])


def test_the_tolerance_is_ten_eps_plus_a_millionth_of_the_derivatives():
    eps = 1e-3
    slack = 10 * eps + 1e-6 * (1.0 + 3.0)  # left 1, right 3: 0.010004
    inside = [3.0 + 0.010003, 1.0 - 0.010003, 3.0 + 0.0100039]
    outside = [3.0 + 0.0100041, 1.0 - 0.0100041, 3.0 + 0.0105, 1.0 - 0.0105]
    e = kink_entries(inside + outside, [1.0] * 7, [3.0] * 7)
    np.testing.assert_array_equal(subgradient_ok(e, eps), [True] * 3 + [False] * 4)
    # the interval's ends, widened by the slack, still count as inside
    edges = kink_entries([1.0 - slack, 3.0 + slack], [1.0, 3.0], [3.0, 1.0])
    np.testing.assert_array_equal(subgradient_ok(edges, eps), [True, True])


def test_the_tolerance_grows_with_the_size_of_the_derivatives():
    # left 1e6, right 3e6: the relative part, 1e-6 * 4e6 = 4, dwarfs 10 eps
    e = kink_entries([3e6 + 3.9, 3e6 + 4.1, 1e6 - 3.9, 1e6 - 4.1], [1e6] * 4, [3e6] * 4)
    np.testing.assert_array_equal(subgradient_ok(e, 1e-9), [True, False, True, False])


# --------------------------------------------------------------------------- grade and resolution

from gradlab.check import (RESOLVE, SAFETY, LossObjective, check_entries, grade, judge, max_rel_error,  # noqa: E402
                           noise, overall, rel_bound, rel_error, resolution)
from gradlab.nn.losses import CrossEntropy  # noqa: E402


def entries(analytic, numeric, kink=None, left=None, right=None, shape=None, param="dense1.W", bound=None) -> Entries:
    n = len(analytic)
    kink = np.zeros(n, dtype=bool) if kink is None else np.array(kink)
    zeros = np.zeros(n)
    return Entries(param, shape or (n,), np.arange(n), np.array(analytic, dtype=float),
                   np.array(numeric, dtype=float), kink, zeros if left is None else np.array(left, dtype=float),
                   zeros if right is None else np.array(right, dtype=float),
                   bound=None if bound is None else np.array(bound, dtype=float))


def test_resolution_is_a_few_last_bits_of_the_loss_over_the_step():
    u = np.finfo(np.float64).eps
    assert resolution(2.0, 1e-7) == 4 * u * 2.0 / 2e-7  # centred: the step is 2 eps
    assert resolution(-2.0, 1e-7) == resolution(2.0, 1e-7)
    assert resolution(2.0, 1e-7, one_sided=True) == 4 * u * 2.0 / 1e-7
    assert resolution(0.0, 1e-7) == 4 * u * np.finfo(np.float64).tiny / 2e-7  # never 0


def test_grade_names_the_worst_entry_and_its_values():
    e = entries([1.0, 2.0, 3.0, 4.0], [1.0, 2.0 + 1e-6, 3.0 - 4e-6, 4.0], shape=(2, 2), bound=[0, 2e-6, 5e-6, 0])
    r = grade("dense1.W", 1, (2, 2), e)
    assert (r.name, r.layer, r.shape, r.checked) == ("dense1.W", 1, (2, 2), 4)
    assert r.tier == "acceptable" and r.rel_error == rel_error(e.analytic, e.numeric)
    assert r.passed and r.explained and r.verdict == "pass"  # 5.8e-7 is above 1e-7 but within the bound
    assert (r.worst_index, r.worst_analytic, r.worst_numeric) == ("1,0", 3.0, 3.0 - 4e-6)
    assert (r.max_analytic, r.max_numeric) == (4.0, 4.0)
    assert (r.kinks, r.kink_failures, r.tiny, r.unresolved) == (0, 0, False, False)
    # CS231n's element-wise rel_error: the worst entry is 4e-6 / (6 - 4e-6)
    assert r.max_rel_error == pytest.approx(4e-6 / (6.0 - 4e-6), rel=1e-9)


def test_above_the_tier_and_beyond_the_bound_fails():
    """A smooth net's tier is 1e-7: an error of 5.8e-7 that round-off (bound 1e-8) does not explain fails."""
    e = entries([1.0, 2.0, 3.0, 4.0], [1.0, 2.0 + 1e-6, 3.0 - 4e-6, 4.0], bound=[1e-8] * 4)
    r = grade("dense1.W", 1, (4,), e)
    assert r.rel_error == pytest.approx(math.sqrt(17e-12) / (2 * math.sqrt(30)), rel=1e-3)  # 3.8e-7
    assert r.bound == pytest.approx(math.sqrt(4e-16) / (2 * math.sqrt(30)), rel=1e-3)
    assert (r.verdict, r.passed, r.unresolved) == ("fail", False, False)
    assert grade("dense1.W", 1, (4,), e, limit=1e-4).passed  # with kinks the tier is 1e-4


def test_a_bound_too_large_to_tell_right_from_wrong_is_unresolved():
    # numeric is pure round-off (1e-9) against a true 1e-20: explained by a bound of about 1, which could hide anything
    e = entries([1e-20, -2e-20], [1e-9, -3e-9], bound=[5e-9, 5e-9])
    r = grade("dense1.W", 1, (2,), e)
    assert r.rel_error == pytest.approx(1.0) and r.bound == pytest.approx(math.sqrt(50) / math.sqrt(10), rel=1e-6)
    assert (r.verdict, r.unresolved, r.passed) == ("unresolved", True, False)
    # the same error with a bound below RESOLVE (1e-2) is resolved: it could have shown a wrong gradient
    assert RESOLVE == 1e-2
    ok = entries([1.0, 2.0], [1.0 + 1e-3, 2.0], bound=[3e-3, 3e-3])
    assert grade("w", 1, (2,), ok).verdict == "pass"


@pytest.mark.parametrize("err, bound, limit, verdict", [
    (1e-7, 0.0, 1e-7, "pass"),  # at the tier
    (1.01e-7, 0.0, 1e-7, "fail"),
    (1.01e-7, 1.01e-7, 1e-7, "pass"),  # explained, and resolved
    (5e-3, 1e-2, 1e-7, "pass"),  # explained by a bound at RESOLVE
    (5e-3, 1.01e-2, 1e-7, "unresolved"),
    (2e-2, 1.01e-2, 1e-7, "fail"),  # beyond even a loose bound
    (5e-5, 0.0, 1e-4, "pass"),  # the kink tier
    (float("nan"), 1.0, 1e-7, "fail"),
    (0.5, float("nan"), 1e-7, "fail"),
    (float("nan"), float("inf"), 1e-7, "unresolved"),  # the step vanished (theta + h == theta): no difference
])
def test_judge_at_its_edges(err, bound, limit, verdict):
    assert judge(err, bound, limit) == verdict


def test_a_tensors_bound_is_aggregated_like_its_relative_error():
    a, n, b = np.array([3.0, 4.0]), np.array([3.0, 4.0 + 1e-6]), np.array([3e-7, 4e-7])
    assert rel_bound(b, a, n) == pytest.approx(5e-7 / (5.0 + np.linalg.norm(n)), rel=1e-12)
    assert rel_bound(np.zeros(2), np.zeros(2), np.zeros(2)) == 0.0
    assert rel_bound(np.array([1e-9]), np.zeros(1), np.zeros(1)) == math.inf  # nothing to compare: not resolved
    # scale-free, like rel_error: 1e-200 and 1e+200 give the same
    assert rel_bound(b * 1e-200, a * 1e-200, n * 1e-200) == pytest.approx(rel_bound(b, a, n), rel=1e-12)


def test_max_rel_error_is_cs231ns_rel_error():
    a, n = np.array([1.0, 1e-9, 0.0, -2.0]), np.array([1.0 + 1e-6, 3e-9, 0.0, -2.0])
    expected = max(1e-6 / (2.0 + 1e-6), 2e-9 / max(1e-8, 4e-9), 0.0, 0.0)  # the 1e-8 floor caps the tiny entry
    assert max_rel_error(a, n) == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.2)
    assert max_rel_error(np.zeros(0), np.zeros(0)) == 0.0
    assert math.isnan(max_rel_error(np.array([np.nan]), np.array([1.0])))


def test_noise_recovers_a_known_round_off_level():
    """Moré and Wild's estimate: a smooth cubic plus N(0, sigma^2) noise gives back sigma within a factor 2,
    and the smooth cubic alone gives the floor of one rounding of J."""
    rng = np.random.default_rng(0)
    t = np.linspace(-4e-5, 4e-5, 9)
    smooth = 2.0 + 3.0 * t + 5.0 * t ** 2 - 7.0 * t ** 3
    for sigma in (1e-14, 1e-12, 1e-10):
        table = smooth[None] + sigma * rng.standard_normal((40, 9))
        assert sigma / 2 < noise(table) < 2 * sigma, sigma
    assert noise(smooth) == pytest.approx(0.5 * np.finfo(np.float64).eps * np.abs(smooth).max())
    # the bound is SAFETY standard deviations
    assert SAFETY == 3.0


def test_a_loss_near_zero_has_round_off_far_above_its_own_spacing_and_the_bound_covers_it():
    """Cross-entropy at p = 1 - 1e-12 is computed as log(1 + 1e-12): J is about 1e-12, but its round-off is
    that of the 1 it was computed from (2e-16), 10^4 spacings of J. The bound measures it: the observed error
    of the (right) loss backward stays below the bound at every entry, and the bound is within 100x of the
    largest observed error (it is not a blanket)."""
    z = np.array([[27.6, 0.0, 0.0], [0.0, 27.6, 0.0]])  # e^-27.6 ~ 1e-12
    y = np.array([0, 1])
    lo = LossObjective(CrossEntropy(), z, y)
    g = lo.analytic()["loss(cross_entropy).input"]
    J = lo.J
    assert 1e-12 < J < 1e-11
    e = check_entries(lo, "loss(cross_entropy).input", g, np.arange(6), 1e-5)
    observed = np.abs(e.analytic - e.numeric)
    sigma = (e.bound * e.step / SAFETY)[0]  # the measured round-off of J
    assert sigma > 100 * np.spacing(J) and sigma < 1e-15
    assert np.all(observed <= e.bound) and observed.max() > e.bound.max() / 100
    # the same check graded: the tensor's gradients are ~1e-13, its bound about 1e-2 of them at h = 1e-5
    r = grade("z", None, z.shape, e)
    assert r.rel_error <= r.bound


def test_overall_error_leaves_out_the_kink_entries():
    smooth = entries([3.0, 0.0], [0.0, 4.0], param="dense1.W")
    kinked = entries([1.0, 7.0], [1.0, -7.0], kink=[False, True], param="dense1.b")
    assert overall([smooth, kinked]) == rel_error(np.array([3.0, 0.0, 1.0]), np.array([0.0, 4.0, 1.0]))


def test_a_tensor_with_no_checked_entry_passes_with_empty_figures():
    r = grade("dense1.W", 1, (0,), entries([], []))
    assert (r.checked, r.worst_index, r.worst_analytic, r.worst_numeric) == (0, "", 0.0, 0.0)
    assert (r.max_analytic, r.max_numeric, r.rel_error, r.tier) == (0.0, 0.0, 0.0, "good")
    assert r.passed and not r.unresolved and not r.tiny


def test_a_tensor_whose_entries_all_crossed_kinks_has_no_smooth_error():
    e = entries([0.5, 0.2], [0.0, 1.0], kink=[True, True], left=[0.0, 0.0], right=[1.0, 1.0])
    r = grade("dense1.W", 1, (2,), e)
    assert (r.rel_error, r.tier, r.kinks, r.kink_failures, r.passed) == (0.0, "good", 2, 0, True)


@pytest.mark.parametrize("analytic, numeric, tiny", [
    ([1e-10], [1e-11], False),  # at TINY is not below it
    ([5e-11], [1e-10], False),
    ([5e-11], [9e-11], True),
])
def test_tiny_means_below_1e_10_on_both_sides(analytic, numeric, tiny):
    assert grade("w", 1, (1,), entries(analytic, numeric)).tiny is tiny


def test_rel_error_of_nothing_is_zero_and_of_non_finite_values_is_nan():
    assert rel_error(np.zeros(0), np.zeros(0)) == 0.0
    assert math.isnan(rel_error(np.array([np.nan, 1.0]), np.array([1.0, 1.0])))
    assert math.isnan(rel_error(np.array([1.0]), np.array([np.inf])))
    assert tier(rel_error(np.array([np.nan]), np.array([1.0]))) == "wrong"


def test_rel_error_is_computed_in_float64_whatever_the_inputs():
    a = np.array([1.0, 2.0, 3.0], dtype=np.float32) / np.float32(7.0)
    n = a * np.float32(1.0 + 2**-20)
    assert rel_error(a, n) == rel_error(a.astype(np.float64), n.astype(np.float64))
    assert rel_error(n, a) == rel_error(n.astype(np.float64), a.astype(np.float64))
