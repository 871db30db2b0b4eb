"""The gradient check's grading rules at their edges, on hand-made entries: the subgradient test's interval
and its tolerance (10 eps plus 1e-6 of the one-sided derivatives' size, since those carry O(eps) error).
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

from gradlab.check import grade, overall, rel_error, resolution  # noqa: E402


def entries(analytic, numeric, kink=None, left=None, right=None, shape=None, param="dense1.W") -> Entries:
    n = len(analytic)
    kink = np.zeros(n, dtype=bool) if kink is None else np.array(kink)
    zeros = np.zeros(n)
    return Entries(param, shape or (n,), np.arange(n), np.array(analytic, dtype=float),
                   np.array(numeric, dtype=float), kink, zeros if left is None else np.array(left, dtype=float),
                   zeros if right is None else np.array(right, dtype=float))


def test_resolution_is_a_few_last_bits_of_the_loss_over_the_step():
    u = np.finfo(np.float64).eps
    assert resolution(2.0, 1e-7) == 4 * u * 2.0 / 2e-7  # centred: the step is 2 eps
    assert resolution(-2.0, 1e-7) == resolution(2.0, 1e-7)
    assert resolution(2.0, 1e-7, one_sided=True) == 4 * u * 2.0 / 1e-7
    assert resolution(0.0, 1e-7) == 4 * u * np.finfo(np.float64).tiny / 2e-7  # never 0


def test_grade_names_the_worst_entry_and_its_values():
    e = entries([1.0, 2.0, 3.0, 4.0], [1.0, 2.0 + 1e-6, 3.0 - 4e-6, 4.0], shape=(2, 2))
    r = grade("dense1.W", 1, (2, 2), e, 1e-7, strict_smooth=False)
    assert (r.name, r.layer, r.shape, r.checked) == ("dense1.W", 1, (2, 2), 4)
    assert r.tier == "acceptable" and r.passed and r.rel_error == rel_error(e.analytic, e.numeric)
    assert (r.worst_index, r.worst_analytic, r.worst_numeric) == ("1,0", 3.0, 3.0 - 4e-6)
    assert (r.max_analytic, r.max_numeric) == (4.0, 4.0)
    assert (r.kinks, r.kink_failures, r.tiny, r.unresolved) == (0, 0, False, False)


def test_kink_entries_are_graded_apart_by_the_subgradient_test():
    # the kink entry's numeric value is far off, but its analytic value lies between left and right
    e = entries([1.0, 0.5, 2.0], [1.0, 0.0, 2.0], kink=[False, True, False], left=[0, 0.0, 0], right=[0, 1.0, 0])
    r = grade("dense1.W", 1, (3,), e, 1e-7, strict_smooth=False)
    assert (r.tier, r.rel_error, r.kinks, r.kink_failures, r.passed) == ("good", 0.0, 1, 0, True)
    outside = entries([1.0, 1.5, 2.0], [1.0, 0.0, 2.0], kink=[False, True, False], left=[0, 0.0, 0],
                      right=[0, 1.0, 0])
    r = grade("dense1.W", 1, (3,), outside, 1e-7, strict_smooth=False)
    assert (r.tier, r.kink_failures, r.passed) == ("good", 1, False)


def test_a_tensor_below_the_resolution_is_unresolved_and_passes():
    e = entries([1e-9, -2e-9], [3e-9, 0.0])  # wrong, but both below the floor
    r = grade("dense1.W", 1, (2,), e, 1e-7, strict_smooth=False, floor=5e-9)
    assert r.tier == "wrong" and r.unresolved and r.passed
    r = grade("dense1.W", 1, (2,), e, 1e-7, strict_smooth=False, floor=2e-9)  # 3e-9 is above it
    assert not r.unresolved and not r.passed


def test_gradients_below_1e_10_are_flagged_tiny():
    assert grade("w", 1, (2,), entries([5e-11, 1e-11], [5e-11, 1e-11]), 1e-7, False).tiny
    assert not grade("w", 1, (2,), entries([5e-11, 2e-10], [5e-11, 2e-10]), 1e-7, False).tiny
    assert not grade("w", 1, (2,), entries([0.0, 0.0], [0.0, 0.0]), 1e-7, False).tiny  # exactly 0 is not tiny


def test_strict_fails_an_acceptable_error_that_round_off_does_not_explain():
    e = entries([1.0, 1.0], [1.0, 1.0 + 4e-6])  # rel_error 1e-6: acceptable
    err = rel_error(e.analytic, e.numeric)
    assert grade("w", 1, (2,), e, 1e-7, strict_smooth=False, floor=0.0).passed
    assert not grade("w", 1, (2,), e, 1e-7, strict_smooth=True, floor=1e-9).passed  # round-off ~1e-9
    # within 10x of what round-off explains (floor / rms = err / 5): still passes under strict
    assert grade("w", 1, (2,), e, 1e-7, strict_smooth=True, floor=err / 5).passed


def test_overall_error_leaves_out_the_kink_entries():
    smooth = entries([3.0, 0.0], [0.0, 4.0], param="dense1.W")
    kinked = entries([1.0, 7.0], [1.0, -7.0], kink=[False, True], param="dense1.b")
    assert overall([smooth, kinked]) == rel_error(np.array([3.0, 0.0, 1.0]), np.array([0.0, 4.0, 1.0]))


def test_a_tensor_with_no_checked_entry_passes_with_empty_figures():
    r = grade("dense1.W", 1, (0,), entries([], []), 1e-7, strict_smooth=False, floor=1e-9)
    assert (r.checked, r.worst_index, r.worst_analytic, r.worst_numeric) == (0, "", 0.0, 0.0)
    assert (r.max_analytic, r.max_numeric, r.rel_error, r.tier) == (0.0, 0.0, 0.0, "good")
    assert r.passed and not r.unresolved and not r.tiny


def test_a_tensor_whose_entries_all_crossed_kinks_has_no_smooth_error():
    e = entries([0.5, 0.2], [0.0, 1.0], kink=[True, True], left=[0.0, 0.0], right=[1.0, 1.0])
    r = grade("dense1.W", 1, (2,), e, 1e-7, strict_smooth=True, floor=1e-9)
    assert (r.rel_error, r.tier, r.kinks, r.kink_failures, r.passed) == (0.0, "good", 2, 0, True)


@pytest.mark.parametrize("analytic, numeric, floor, unresolved", [
    ([1e-9], [1e-9], 2e-9, True),  # a single entry, both below
    ([3e-9], [1e-9], 2e-9, False),  # analytic above the floor
    ([1e-9], [3e-9], 2e-9, False),  # numeric above the floor
    ([2e-9], [1e-9], 2e-9, False),  # analytic at the floor is resolved
    ([1e-9], [2e-9], 2e-9, False),  # numeric at the floor is resolved
])
def test_unresolved_means_both_strictly_below_the_floor(analytic, numeric, floor, unresolved):
    assert grade("w", 1, (1,), entries(analytic, numeric), 1e-7, False, floor=floor).unresolved is unresolved


@pytest.mark.parametrize("analytic, numeric, tiny", [
    ([1e-10], [1e-11], False),  # at TINY is not below it
    ([5e-11], [1e-10], False),
    ([5e-11], [9e-11], True),
])
def test_tiny_means_below_1e_10_on_both_sides(analytic, numeric, tiny):
    assert grade("w", 1, (1,), entries(analytic, numeric), 1e-7, False).tiny is tiny


@pytest.mark.parametrize("factor, passes", [(9.0, True), (10.5, False), (11.5, False)])
def test_strict_allows_ten_times_the_round_off_relative_to_the_rms_gradient(factor, passes):
    """Under --strict an acceptable error passes if err <= 10 * floor / rms(analytic); rms here is 3."""
    e = entries([3.0, -3.0], [3.0, -3.0 - 1.2e-5])
    err = rel_error(e.analytic, e.numeric)
    assert tier(err) == "acceptable"
    floor = err * 3.0 / factor  # roundoff = floor / rms = err / factor
    assert grade("w", 1, (2,), e, 1e-7, strict_smooth=True, floor=floor).passed is passes


def test_strict_at_exactly_ten_times_the_round_off_passes():
    e = entries([3.0, -3.0], [3.0, -3.0 - 1.2e-5])
    err = rel_error(e.analytic, e.numeric)
    floor = err * 3.0 / 10.0
    while 10 * (floor / 3.0) != err:  # the floor whose roundoff is exactly err / 10 in floating point
        floor = np.nextafter(floor, np.inf if 10 * (floor / 3.0) < err else 0.0)
    assert grade("w", 1, (2,), e, 1e-7, strict_smooth=True, floor=floor).passed


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
