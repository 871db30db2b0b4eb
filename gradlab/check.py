"""Numerical gradients by centred differences and the seeds' relative error.

This is the kernel that ``gradlab check`` builds on; the tests use it to check every
backward pass in float64.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


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


def rel_error(a: np.ndarray, n: np.ndarray) -> float:
    """||a - n||_2 / (||a||_2 + ||n||_2) (seed 000); 0 when both are exactly zero."""
    denom = np.linalg.norm(a) + np.linalg.norm(n)
    return float(np.linalg.norm(a - n) / denom) if denom > 0 else 0.0
