"""Clipping and the norms it reads, at the edges: a threshold that is met exactly, no clipping at all, a
clip that acts on one tensor only, and entries whose squares overflow.

The expected numbers are exact here: 3-4-5 triangles give norms without rounding.
"""
import math

import numpy as np
import pytest

from gradlab.config import ClipConfig
from gradlab.optim import ClipResult, clip_grads, norm


def grads_345():
    """||a|| = 5, ||b|| = 1 exactly; the global norm is sqrt(26)."""
    return {"a": np.array([[3.0, 0.0], [0.0, -4.0]]), "b": np.array([0.6, 0.8])}


def norms_of(grads):
    return {k: norm(g) for k, g in grads.items()}


def test_norm_is_exact_where_the_squares_of_finite_entries_overflow():
    assert norm(np.array([3.0, -4.0])) == 5.0
    with np.errstate(over="ignore"):  # as in training: the overflow is handled, not warned about
        # 3e200^2 overflows to inf: the norm is rescaled by the largest entry, not reported as inf
        assert norm(np.array([[3e200], [-4e200]])) == pytest.approx(5e200, rel=1e-15)
        assert norm(np.array([1e300, 1e300, 1e300, 1e300])) == pytest.approx(2e300, rel=1e-15)
        assert norm(np.array([np.inf, 1.0])) == math.inf  # a truly infinite entry stays infinite


def test_without_a_clip_config_nothing_changes_and_the_norm_after_is_the_norm_before():
    grads = grads_345()
    res = clip_grads(grads, norms_of(grads), None)
    assert res == ClipResult(math.sqrt(26.0), math.sqrt(26.0), False)
    for k, g in grads_345().items():
        np.testing.assert_array_equal(grads[k], g)


def test_a_non_finite_gradient_is_never_clipped():
    grads = {"a": np.array([np.nan, 1e3]), "b": np.array([5.0])}
    res = clip_grads(grads, norms_of(grads), ClipConfig(threshold=1.0))
    assert math.isnan(res.norm_before) and math.isnan(res.norm_after) and res.clipped is False
    assert grads["b"][0] == 5.0 and grads["a"][1] == 1e3


@pytest.mark.parametrize("clip", [
    {"threshold": math.sqrt(26.0)},  # global: ||g|| equals the threshold
    {"threshold": 5.0, "scope": "layer"},  # layer: ||a|| equals it, ||b|| is below
    {"threshold": 4.0, "mode": "value"},  # value: max |entry| equals it
], ids=["global", "layer", "value"])
def test_a_threshold_met_exactly_does_not_clip(clip):
    """The rule is 'clip if ||g|| > threshold' (value: if an entry exceeds it): equality leaves g alone."""
    grads = grads_345()
    norms = norms_of(grads)
    res = clip_grads(grads, norms, ClipConfig(**clip))
    before = math.hypot(*norms.values())
    assert res == ClipResult(before, before, False)
    for k, g in grads_345().items():
        np.testing.assert_array_equal(grads[k], g)


@pytest.mark.parametrize("clip", [
    {"threshold": 10.0},
    {"threshold": 10.0, "scope": "layer"},
    {"threshold": 10.0, "mode": "value"},
], ids=["global", "layer", "value"])
def test_a_threshold_above_every_norm_reports_the_unclipped_norm(clip):
    grads = grads_345()
    res = clip_grads(grads, norms_of(grads), ClipConfig(**clip))
    assert res == ClipResult(math.sqrt(26.0), math.sqrt(26.0), False)


def test_layer_clip_that_acts_on_one_tensor_reports_the_norm_of_what_is_left():
    grads = grads_345()
    res = clip_grads(grads, norms_of(grads), ClipConfig(threshold=2.0, scope="layer"))
    np.testing.assert_allclose(grads["a"], [[1.2, 0.0], [0.0, -1.6]], rtol=1e-15)  # 2/5 of a
    np.testing.assert_array_equal(grads["b"], [0.6, 0.8])  # ||b|| = 1 < 2: untouched
    assert res.clipped is True and res.norm_before == pytest.approx(math.sqrt(26.0), rel=1e-15)
    assert res.norm_after == pytest.approx(math.sqrt(2.0**2 + 1.0**2), rel=1e-15)
    assert res.norm_after == pytest.approx(math.hypot(norm(grads["a"]), norm(grads["b"])), rel=1e-15)


def test_value_clip_reports_the_norm_of_the_clipped_entries():
    grads = grads_345()
    res = clip_grads(grads, norms_of(grads), ClipConfig(threshold=0.7, mode="value"))
    np.testing.assert_array_equal(grads["a"], [[0.7, 0.0], [0.0, -0.7]])
    np.testing.assert_array_equal(grads["b"], [0.6, 0.7])
    assert res.clipped is True
    assert res.norm_after == pytest.approx(math.sqrt(0.49 + 0.49 + 0.36 + 0.49), rel=1e-15)
