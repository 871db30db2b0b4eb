"""The gradient check's grading rules at their edges, on hand-made entries: the subgradient test's interval
and its tolerance (10 eps plus 1e-6 of the one-sided derivatives' size, since those carry O(eps) error).
"""
import numpy as np

from gradlab.check import Entries, subgradient_ok


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
