"""Weight initialisation schemes (Glorot & Bengio 2010, He et al. 2015, orthogonal: Saxe et al. 2014,
identity: Le et al. 2015), each scaled by ``gain``.

W has shape (fan_in, fan_out), or (k, k, C_in, C_out) for a convolution, whose fans count its receptive
field: fan_in = k*k*C_in, fan_out = k*k*C_out (He et al. 2015's n = k^2 c; TensorFlow's and torch's fans for
Glorot). The named schemes are presets of variance scaling: Var(W) = gain^2 * scale / n, with n = fan_in,
fan_out or their mean.
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


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out): (rows, columns) of a matrix; (k*k*C_in, k*k*C_out) of a (k, k, C_in, C_out) kernel."""
    field = int(np.prod(shape[:-2], dtype=np.int64))  # the receptive field, 1 for a matrix
    return field * shape[-2], field * shape[-1]


def variance_scaling(rng, shape, scale: float, mode: str, distribution: str, gain: float = 1.0) -> np.ndarray:
    """Draw W with Var(W) = gain^2 * scale / n."""
    fan_in, fan_out = fans(shape)
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    std = gain * np.sqrt(scale / n)
    if distribution == "normal":
        return std * rng.standard_normal(shape)
    if distribution == "truncated_normal":
        return truncated_normal(rng, std / TRUNC_STD, shape)
    limit = np.sqrt(3.0) * std  # Var U[-a, a] = a^2 / 3
    return rng.uniform(-limit, limit, shape)


def orthogonal(rng, shape, gain: float = 1.0) -> np.ndarray:
    """gain * Q with orthonormal columns (or rows, when fan_in < fan_out); a kernel (k, k, C_in, C_out) is
    the (k*k*C_in, C_out) matrix of its im2col product, reshaped (Saxe et al. 2014, as TensorFlow does)."""
    rows, cols = int(np.prod(shape[:-1], dtype=np.int64)), shape[-1]
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))  # make Q uniformly distributed (Haar)
    return gain * (q if rows >= cols else q.T).reshape(shape)


def identity(shape) -> np.ndarray:
    """The identity map: eye(fan_in, fan_out) for a matrix; for a kernel (k, k, C_in, C_out) the Dirac kernel,
    eye(C_in, C_out) at the tap (k-1)//2 -- the centre, which "same" padding (k-1)//2 puts on the output pixel
    itself -- and zero elsewhere (torch's dirac_)."""
    if len(shape) == 2:
        return np.eye(*shape)
    W = np.zeros(shape)
    c = (shape[0] - 1) // 2
    W[c, c] = np.eye(shape[-2], shape[-1])
    return W


def init_weight(cfg, shape: tuple[int, ...], rng: np.random.Generator, dtype=np.float64) -> np.ndarray:
    """Draw a weight matrix (fan_in, fan_out) or a kernel (k, k, C_in, C_out) from an ``InitConfig``."""
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
        W = g * cfg.scale * identity(shape)
    elif s == "orthogonal":
        W = orthogonal(rng, shape, g)
    else:  # the config schema lists every scheme; reaching here is a bug
        raise KeyError(f"unknown init scheme {s!r}")
    return np.ascontiguousarray(W, dtype=dtype)


def expected_std(cfg, shape: tuple[int, ...]) -> float:
    """The std of W that the scheme prescribes (what the lint and the theory columns compare); a kernel
    (k, k, C_in, C_out) with the fans k*k*C_in and k*k*C_out."""
    fan_in, fan_out = fans(shape)
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
    if s == "identity":  # min(C_in, C_out) ones among all the entries
        return g * cfg.scale * float(np.sqrt(min(shape[-2:]) / np.prod(shape, dtype=np.float64)))
    # orthogonal: entries of an orthonormal frame of the (k*k*C_in, C_out) matrix
    return g / float(np.sqrt(max(np.prod(shape[:-1], dtype=np.int64), shape[-1])))
