"""Weight initialisation schemes (Glorot & Bengio 2010, He et al. 2015, orthogonal: Saxe et al. 2014,
identity: Le et al. 2015), each scaled by ``gain``.

W has shape (fan_in, fan_out). The named schemes are presets of variance scaling:
Var(W) = gain^2 * scale / n, with n = fan_in, fan_out or their mean.
"""
from __future__ import annotations

import numpy as np

# std of a unit normal truncated at +-2: variance scaling divides by it so Var(W) is exact
TRUNC_STD = 0.87962566103423978

# name -> (scale, mode, distribution); mode None means "the config's mode"
PRESETS: dict[str, tuple[float, str | None, str]] = {
    "lecun_normal": (1.0, "fan_in", "normal"),
    "lecun_uniform": (1.0, "fan_in", "uniform"),
    "xavier_normal": (1.0, "fan_avg", "normal"),
    "xavier_uniform": (1.0, "fan_avg", "uniform"),
    "he_normal": (2.0, None, "normal"),
    "he_uniform": (2.0, None, "uniform"),
}


def truncated_normal(rng: np.random.Generator, std: float, shape: tuple[int, ...]) -> np.ndarray:
    """N(0, std^2) with draws beyond 2 std redrawn."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return std * out


def variance_scaling(rng, shape, scale: float, mode: str, distribution: str, gain: float = 1.0) -> np.ndarray:
    """Draw W with Var(W) = gain^2 * scale / n."""
    fan_in, fan_out = shape[0], shape[-1]
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    std = gain * np.sqrt(scale / n)
    if distribution == "normal":
        return std * rng.standard_normal(shape)
    if distribution == "truncated_normal":
        return truncated_normal(rng, std / TRUNC_STD, shape)
    limit = np.sqrt(3.0) * std  # Var U[-a, a] = a^2 / 3
    return rng.uniform(-limit, limit, shape)


def orthogonal(rng, shape, gain: float = 1.0) -> np.ndarray:
    """gain * Q with orthonormal columns (or rows, when fan_in < fan_out)."""
    rows, cols = shape
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # make Q uniformly distributed (Haar)
    return gain * (q if rows >= cols else q.T)


def init_weight(cfg, shape: tuple[int, int], rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
    """Draw a weight matrix from an ``InitConfig``."""
    s, g = cfg.scheme, cfg.gain
    if s in PRESETS:
        scale, mode, dist = PRESETS[s]
        W = variance_scaling(rng, shape, scale, mode or cfg.mode, dist, g)
    elif s == "variance_scaling":
        W = variance_scaling(rng, shape, cfg.scale, cfg.mode, cfg.distribution, g)
    elif s == "normal":
        W = g * cfg.std * rng.standard_normal(shape)
    elif s == "truncated_normal":
        W = truncated_normal(rng, g * cfg.std, shape)
    elif s == "uniform":
        W = rng.uniform(-g * cfg.limit, g * cfg.limit, shape)
    elif s == "identity":
        W = g * cfg.scale * np.eye(*shape)
    elif s == "orthogonal":
        W = orthogonal(rng, shape, g)
    else:  # the config schema lists every scheme; reaching here is a bug
        raise KeyError(f"unknown init scheme {s!r}")
    return np.ascontiguousarray(W, dtype=dtype)


def expected_std(cfg, shape: tuple[int, int]) -> float:
    """The std of W that the scheme prescribes (what the lint and the theory columns compare)."""
    fan_in, fan_out = shape
    s, g = cfg.scheme, cfg.gain
    if s in PRESETS or s == "variance_scaling":
        scale, mode, _ = PRESETS.get(s, (cfg.scale, cfg.mode, None))
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode or cfg.mode]
        return g * float(np.sqrt(scale / n))
    if s == "normal":
        return g * cfg.std
    if s == "truncated_normal":
        return g * cfg.std * TRUNC_STD
    if s == "uniform":
        return g * cfg.limit / np.sqrt(3.0)
    if s == "identity":
        return g * cfg.scale * float(np.sqrt(min(shape) / (fan_in * fan_out)))
    return g / float(np.sqrt(max(shape)))  # orthogonal: entries of an orthonormal frame
