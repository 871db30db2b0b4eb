"""What the init and the activation predict, beside what a run measured.

Going down one layer, delta = ||dL/d output|| is multiplied on average by sqrt(chi), with
chi = n Var(W) E[phi'(z)^2] (n = fan_in of the weight it passes through): the quantity that Xavier
(chi = 1 for a linear-regime tanh) and He (chi = 1 for relu: n Var(W) = 2, E[relu'^2] = 1/2) set
to 1 (Glorot & Bengio 2010, He et al. 2015; Schoenholz et al. 2017 call it chi_1). The variance of
the pre-activation z follows the forward recursion q_l = n Var(W) E[phi(z_{l-1})^2] + b^2,
started from inputs of unit second moment (standardised data), with b = bias_init as the mean of z.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..nn.activations import make_activation
from ..nn.init import expected_std

# z = mean + sqrt(var) u at the midpoints of a fine grid, with Gaussian weights: no node sits on a kink
# (relu's at 0), so E[relu'(z)^2] = 1/2 to 1e-8
_EDGES = np.linspace(-12.0, 12.0, 48001)
_U = 0.5 * (_EDGES[1:] + _EDGES[:-1])
_W = np.exp(-0.5 * _U**2) * (_EDGES[1] - _EDGES[0]) / math.sqrt(2.0 * math.pi)

SATURATING = ("sigmoid", "tanh", "softsign")
RELU_LIKE = ("relu", "leaky_relu", "prelu", "elu", "softplus")


def moments(name: str, alpha: float | None, mean: float, var: float) -> tuple[float, float]:
    """(E[phi(z)^2], E[phi'(z)^2]) for z ~ N(mean, var), using the registered activation itself."""
    act = make_activation(name, alpha, width=1)
    z = (mean + math.sqrt(max(var, 0.0)) * _U)[:, None]
    with np.errstate(over="ignore"):
        a = act.forward(z, train=False)[:, 0]
        d = act.backward(np.ones_like(z))[:, 0]
    return float(_W @ (a * a)), float(_W @ (d * d))


def prescribed(activation: str, fan_in: int, fan_out: int) -> tuple[str, float]:
    """The init a plain stack of this activation wants, and its std: He for relu-like, Xavier otherwise."""
    if activation in RELU_LIKE:
        return "he_normal", math.sqrt(2.0 / fan_in)
    return "xavier_normal", math.sqrt(2.0 / (fan_in + fan_out))


def init_vs_prescribed(model) -> tuple[float, str, float]:
    """(std of a width x width W from the config's init, the scheme the activation wants, its std)."""
    std = float(expected_std(model.init, (model.width, model.width)))
    return (std, *prescribed(model.activation.name, model.width, model.width))


@dataclass
class LayerTheory:
    """One hidden layer l: what its weights and activation predict for the gradient entering it."""

    layer: int
    fan_in: int
    std_W: float  # what the config's init gives
    prescribed: str  # the scheme that fits the activation
    prescribed_std: float
    q: float  # Var(z_l) predicted by the forward recursion (its mean is bias_init)
    E_dphi2: float  # E[phi'(z_l)^2]
    chi: float  # fan_in(l) Var(W_l) E[phi'(z_l)^2]: delta's squared gain through layer l

    @property
    def gain(self) -> float:
        """Predicted ||delta_{l-1}|| / ||delta_l||, the norm gain through layer l."""
        return math.sqrt(self.chi)


def applies(model) -> str | None:
    """None when the plain-stack theory applies to this model config, else why not."""
    if getattr(model, "kind", "mlp") == "cnn":
        return "a conv net: its theory walks the built net's modules (predict_cnn)"
    if getattr(model, "kind", "mlp") != "mlp":
        return "recurrent nets: see the decay per time step instead"
    if model.layers is not None:
        return "a model.layers list: the theory covers depth x width stacks"
    if model.block:
        return "residual blocks add the identity to each block's gain"
    if model.batchnorm:
        return "batch norm rescales every layer to unit variance"
    if model.activation.spec:
        return f"a custom activation ({model.activation.spec})"  # its name, as text: never imported here
    return None


def predict(model, n_features: int) -> list[LayerTheory]:
    """Per hidden layer, the predicted chi from the init scheme and the activation (empty if it does not apply)."""
    if applies(model) is not None:
        return []
    act, alpha = model.activation.name, model.activation.alpha
    keep = 1.0 / (1.0 - model.dropout)  # inverted dropout: E[m^2] = 1/(1-p)
    rows, m, fan_in = [], 1.0, n_features
    for l in range(1, model.depth + 1):
        std = expected_std(model.init, (fan_in, model.width))
        q = fan_in * std**2 * m
        E_phi2, E_dphi2 = moments(act, alpha, model.bias_init, q)
        name, want = prescribed(act, fan_in, model.width)
        rows.append(LayerTheory(l, fan_in, std, name, want, q, E_dphi2, fan_in * std**2 * E_dphi2 * keep))
        m, fan_in = E_phi2 * keep, model.width
    return rows


NAMED = ("conv", "res")  # a net with layers of these is labelled by name: where the convs end, the head begins


def layer_names(run) -> dict[int, str]:
    """Each logged layer's name (conv3, res5, dense10: the module that starts it) from grad_norms.csv's tensor
    names, for a conv net; {} for any other net (its layers are numbered, as before)."""
    g = run.grads
    if g is None or g.empty or not {"layer", "param"} <= set(g.columns):
        return {}
    first = g.drop_duplicates("layer")
    names = {int(l): str(p).split(".", 1)[0] for l, p in zip(first.layer, first.param)}
    return names if any(n.startswith(NAMED) for n in names.values()) else {}


def fitted_gain(layers: list[int], norms: list[float]) -> float | None:
    """exp(-slope) of log norm over layer index: the average factor per layer going down toward the input
    (< 1: the norm shrinks on the way down), comparable with sqrt(chi). None without two usable points."""
    x = np.asarray(layers, dtype=float)
    y = np.asarray(norms, dtype=float)
    ok = np.isfinite(y) & (y > 0)
    if ok.sum() < 2:
        return None
    slope = np.polyfit(x[ok], np.log(y[ok]), 1)[0]
    return float(np.exp(-slope))


def n_inputs(run) -> int | None:
    """Fan-in of the first dense layer (a conv net's: C_in of its first convolution), from the shapes of the
    run's saved initial parameters."""
    shapes = run.init_shapes or {}
    if getattr(getattr(run.config, "model", None), "kind", "mlp") == "cnn":
        return next((int(shape[2]) for shape in shapes.values() if len(shape) == 4), None)
    return next((int(shape[0]) for k, shape in shapes.items() if k.endswith(".W") and len(shape) == 2), None)


def _measured(run, layer: int, steps: list[int]) -> dict[str, float]:
    """delta_norm(layer - 1) / delta_norm(layer) at each step, the gain the theory's row is compared with."""
    out = {}
    for s in steps:
        at = run.at(s).delta_norm
        out[f"measured gain, step {s}"] = float(at.get(layer - 1) / at.get(layer)) if at.get(layer) else math.nan
    return out


def _predicted(fits: dict, gains: list[float]) -> None:
    """The predicted ratio first/last hidden layer (the gains' product) and its geometric mean per layer."""
    product = float(np.prod(gains))
    fits["predicted delta_norm ratio first/last hidden"] = product
    fits["predicted gain per layer (geometric mean)"] = product ** (1.0 / max(1, len(gains)))


def compare(run) -> tuple[pd.DataFrame | None, dict]:
    """Per hidden layer l >= 2: the predicted gain through layer l, sqrt(chi_l), beside the measured
    delta_norm(l-1) / delta_norm(l) at the first and last logged step; plus the fitted gains per layer."""
    from .diagnose import end_steps

    steps = end_steps(run)
    fits = {}
    for s in steps:
        at = run.at(s).reindex(run.hidden)
        fits[f"fitted gain of delta_norm per layer, step {s}"] = fitted_gain(run.hidden, list(at.delta_norm))
        fits[f"fitted gain of grad_norm per layer, step {s}"] = fitted_gain(run.hidden, list(at.grad_norm))
    model = run.config.model if run.config is not None else None
    if getattr(model, "kind", "mlp") == "cnn":
        return _compare_cnn(run, steps, fits)
    why = applies(model) if model is not None else "no readable config.yaml"
    n = n_inputs(run)
    if why is None and n is None:
        why = "params_init.npz not readable" if (run.dir / "params_init.npz").exists() else "no params_init.npz"
    if why is not None or len(run.hidden) < 2:
        fits["theory"] = why or "fewer than two hidden layers"
        return None, fits
    theory = predict(model, n)
    rows = []
    for th in theory[1:]:
        row = {"layer": th.layer, "init std": th.std_W, "prescribed std": th.prescribed_std,
               "prescribed": th.prescribed, "Var(z)": th.q, "E[phi'(z)^2]": th.E_dphi2, "chi": th.chi,
               "predicted gain": th.gain}
        row.update(_measured(run, th.layer, steps))
        rows.append(row)
    _predicted(fits, [th.gain for th in theory[1:]])
    return pd.DataFrame(rows), fits


FAR = 2.0  # a measured gain more than this factor off the predicted one, either way, is marked
PREDICTED = ("init std", "prescribed std", "prescribed", "Var(z)", "E[phi'(z)^2]", "chi", "predicted gain")
SAME = tuple(c for c in PREDICTED if c != "Var(z)")  # what decides the gain; Var(z) may drift (a linear net's)


def _sig(value) -> object:
    """A value to 3 significant digits, for telling layers whose prediction is the same."""
    return f"{value:.3g}" if isinstance(value, float) else value


def collapse(table: pd.DataFrame) -> list[dict]:
    """compare's table with consecutive layers whose predicted gain (and what decides it) agrees to 3
    significant digits as one row: 'layers' ('2-19'), the predicted columns (Var(z) as (first, last) over those
    layers), and per measured column (geometric mean, least, greatest) over them; 'far' lists the measured
    columns whose mean is more than FAR off the predicted gain."""
    measured = [c for c in table.columns if c.startswith("measured")]
    predicted = [c for c in table.columns if c not in ("layer", "name") and c not in measured]
    same = [c for c in predicted if c != "Var(z)"]
    groups: list[list[dict]] = []
    for row in table.to_dict("records"):
        if groups and [_sig(groups[-1][0][c]) for c in same] == [_sig(row[c]) for c in same]:
            groups[-1].append(row)
        else:
            groups.append([row])
    return [_group(rows, measured, predicted) for rows in groups]


def _group(rows: list[dict], measured: list[str], predicted: list[str] = PREDICTED) -> dict:
    a, b = int(rows[0]["layer"]), int(rows[-1]["layer"])
    span = f"{a}-{b}" if a != b else str(a)
    if "name" in rows[0]:  # a conv net's layers by name too: 2-5 (conv2-conv5)
        names = rows[0]["name"] if a == b else f"{rows[0]['name']}-{rows[-1]['name']}"
        span += f" ({names})"
    item = {"layers": span, **{c: rows[0][c] for c in predicted}, "far": []}
    item["Var(z)"] = (float(rows[0]["Var(z)"]), float(rows[-1]["Var(z)"]))
    for c in measured:
        values = np.array([r[c] for r in rows], dtype=float)
        ok = values[np.isfinite(values) & (values > 0)]
        mean = float(np.exp(np.log(ok).mean())) if len(ok) else math.nan
        item[c] = (mean, float(ok.min()) if len(ok) else math.nan, float(ok.max()) if len(ok) else math.nan)
        off = mean / item["predicted gain"] if item["predicted gain"] else math.nan
        if math.isfinite(off) and not 1.0 / FAR <= off <= FAR:
            item["far"].append(c)
    return item


# --------------------------------------------------------------------------- convolutional nets
#
# The same recursion, module by module through a built net (model.kind cnn). Forward, each tensor is described
# by the mean and second moment of its entries and by its profile over the image (the second moment at each
# pixel over the mean of them); backward, by the map of the gradient's expected square at each pixel (per
# entry), propagated top-down from a uniform map at the net's output (what a dense layer, the global pool or
# flatten feed back). A logged layer's chi is its squared-norm ratio: C_in sum(map below) / (C_out sum(map
# above)), the map below being the map above carried through the layer's modules:
#   conv   k x k, C_in -> C_out, stride s, zero padding p: the map below is the transposed convolution of the map
#          above with a k x k kernel of ones, the taps that fall on the padding dropped, times Var(W) C_out. Without
#          padding every output reads k^2 inputs and the factor is k^2 C_in Var(W) = fan_in Var(W) (He et al. 2015);
#          with it, an output pixel near the border reads fewer, so the border pixels below get less gradient and the
#          map concentrates in the centre going down: the layer's `border` rho, the share of the kernel's reads
#          inside the image weighted by the map above (22/24 squared for 3x3 on 8x8 only where the map is uniform,
#          at the top), rises toward 1 with depth below the top. Forward, z's second moment at a pixel is the sum
#          of E[a^2] over the in-bounds taps times Var(W) C_in (the same matrix, transposed).
#   dense  the same with k = 1 and no padding (the map stays uniform).
#   batch norm (training mode, gamma 1, beta 0): out to mean 0 and variance 1 over N, H, W (the profile kept);
#          factor 1 / Var(input).
#   activation: E[phi(z)], E[phi(z)^2] and the factor E[phi'(z)^2] for z ~ N(mean, variance) of its input, at
#          the variance averaged over the pixels (the profile kept: exact for relu-like at mean 0).
#   max pool s x s: the gradient goes to one winner per window (each of the s^2 pixels with probability 1/s^2),
#          where an activation before it has the derivative phi'(max z) rather than phi'(z): relu' is 1 there with
#          probability 1 - 2^-(s^2), not 1/2, so the factor is E[phi'(max z)^2] / E[phi'(z)^2] (15/8 for relu,
#          2x2); forward, the largest of s^2 independent inputs.
#   avg pool s x s, global average pooling over H x W: each pixel of the window gets 1/s^2 (1/(H W)) of the
#          gradient: factor 1 / s^2 (1 / (H W)); forward, the variance over s^2 (H W) as for uncorrelated inputs.
#          Neighbouring pixels of an image are correlated: the forward prediction after pooling is then too
#          small, the backward factor is exact all the same.
#   dropout p: factor 1 / (1 - p), E[a^2] / (1 - p) (inverted dropout).
#   residual block: F(x) + shortcut(x): second moments add (F(x) and x taken uncorrelated), and so do the maps
#          of the two paths below the block (identity: the map itself; a 1x1 projection: its conv and batch norm).
# The first layer starts from the data's own mean and second moment (the training images, rebuilt from the
# config), uniform over the pixels, not from unit variance.

class NotCovered(Exception):
    """A module the convolutional theory has no rule for (a layer of your own): it says so, predicting nothing."""


@dataclass
class Stats:
    """The entries of a tensor: mean, second moment, and the image shape (H, W, C) or (D,) of one sample;
    prof (H, W), mean 1: the second moment at each pixel over m2 (None: uniform)."""

    mean: float
    m2: float
    shape: tuple[int, ...]
    act: tuple[str, float | None, float, float] | None = None  # entries are phi(z), z ~ N(mean, var): (phi, alpha, .)
    prof: np.ndarray | None = None

    @property
    def var(self) -> float:
        return max(self.m2 - self.mean**2, 0.0)

    def profile(self) -> np.ndarray:
        return self.prof if self.prof is not None else np.ones(self.shape[:2])


@dataclass
class ConvTheory:
    """One logged layer of a conv net: its weight's fans, what its modules predict, and the product chi."""

    layer: int
    name: str
    fan_in: int
    fan_out: int
    std_W: float
    prescribed: str
    prescribed_std: float
    q: float  # Var(z) at the layer's activation (after the sum, for a residual block): NaN without one
    E_dphi2: float
    border: float  # rho of its (first) convolution, weighted by the gradient's map above it; 1 for a dense layer
    pool: float  # the squared-norm factor of its pooling (1 without)
    chi: float

    @property
    def gain(self) -> float:
        return math.sqrt(self.chi)


def _grid_moments(act: str, alpha: float | None, mean: float, var: float, n: int = 1) -> tuple[float, float, float]:
    """(E[phi(z)], E[phi(z)^2], E[phi'(z)^2]) for z ~ N(mean, var); with n > 1, of the largest of n independent
    such z (phi is nondecreasing for every built-in activation, so max phi(z_i) = phi(max z_i))."""
    w = _W
    if n > 1:  # the density of the max of n: n phi(u) Phi(u)^(n-1)
        cdf = np.cumsum(_W) - 0.5 * _W
        w = n * _W * cdf ** (n - 1)
    a_fn = make_activation(act, alpha, width=1)
    z = (mean + math.sqrt(max(var, 0.0)) * _U)[:, None]
    with np.errstate(over="ignore"):
        a = a_fn.forward(z, train=False)[:, 0]
        d = a_fn.backward(np.ones_like(z))[:, 0]
    return float(w @ a), float(w @ (a * a)), float(w @ (d * d))


def taps(n: int, k: int, stride: int, padding: int) -> np.ndarray:
    """(out, n) 0/1: which of the n inputs along an axis each of the out = floor((n + 2p - k) / s) + 1 output
    positions reads (its taps on the zero padding dropped), as Conv2d and the pools compute."""
    out = (n + 2 * padding - k) // stride + 1
    t = (np.arange(out) * stride - padding)[:, None] + np.arange(k)[None, :]
    return (t[:, :, None] == np.arange(n)[None, None, :]).any(axis=1).astype(float)


def border(n: int, k: int, stride: int, padding: int) -> float:
    """The share of a k-tap kernel's reads along an axis of n that fall inside it (not on the zero padding),
    over the output positions: floor((n + 2p - k) / s) + 1 of them, as Conv2d computes."""
    return float(taps(n, k, stride, padding).mean() * n / k)


def down(g: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """The map above (out_h, out_w) carried to the pixels below by the transposed sum over the taps."""
    return rows.T @ g @ cols


def up(p: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """A map below summed over each output's in-bounds taps."""
    return rows @ p @ cols.T


def total(g, shape: tuple[int, ...]) -> float:
    """The expected squared norm of a gradient with per-entry map g (a number: uniform) over one sample."""
    if np.ndim(g) == 0:
        return float(g) * math.prod(shape)
    return float(np.sum(g)) * shape[-1]


def _conv(x: Stats, W: np.ndarray, stride: int, padding: int, init, bias: float):
    """(pre-activation stats, Var(W), the taps along rows and columns or None for a dense W) after a conv (W
    4-D) or dense (W 2-D) weight."""
    var_W = float(expected_std(init, W.shape)) ** 2
    if W.ndim == 2:
        q = W.shape[0] * var_W * x.m2
        return Stats(bias, q + bias**2, (W.shape[1],)), var_W, None
    k, c_out = W.shape[0], W.shape[-1]
    if len(x.shape) != 3:
        raise NotCovered("a conv layer after the image was flattened")
    rows, cols = taps(x.shape[0], k, stride, padding), taps(x.shape[1], k, stride, padding)
    z = up(x.profile(), rows, cols) * (W.shape[2] * var_W * x.m2)  # Var(z) at each output pixel
    q = float(z.mean())
    prof = (z + bias**2) / (q + bias**2) if q + bias**2 > 0 else None
    return Stats(bias, q + bias**2, (rows.shape[0], cols.shape[0], c_out), prof=prof), var_W, (rows, cols)


def _fans(W: np.ndarray) -> tuple[int, int]:
    if W.ndim == 2:
        return int(W.shape[0]), int(W.shape[1])
    k2 = W.shape[0] * W.shape[1]
    return int(k2 * W.shape[2]), int(k2 * W.shape[3])


def _pool_profile(x: Stats, size: int, stride: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, cols = taps(x.shape[0], size, stride, 0), taps(x.shape[1], size, stride, 0)
    p = up(x.profile(), rows, cols)
    return rows, cols, p / p.mean()


class _Walk:
    """The forward statistics through one logged layer's modules, and the steps that carry the gradient's map
    back down through them (self.steps, in forward order: each maps the map above a module to the map below)."""

    def __init__(self, init, bias_init: float) -> None:
        self.init, self.bias_init = init, bias_init
        self.q, self.E_dphi2, self.rho, self.pool, self.W = math.nan, math.nan, 1.0, 1.0, None
        self.steps: list = []

    def back(self, g):
        """The map below the walked modules from the map g above them (a number: uniform over a vector)."""
        for step in reversed(self.steps):
            g = step(g)
        return g

    def module(self, m, x: Stats) -> Stats:
        from ..nn import (
            Activation,
            AvgPool2d,
            BatchNorm,
            Conv2d,
            Dense,
            Dropout,
            Flatten,
            GlobalAvgPool,
            MaxPool2d,
        )

        if isinstance(m, (Conv2d, Dense)):
            W = m.params["W"]
            stride, padding = (m.stride, m.padding) if isinstance(m, Conv2d) else (1, 0)
            bias = self.bias_init if "b" in m.params else 0.0
            out, var_W, rc = _conv(x, W, stride, padding, self.init, bias)
            first = self.W is None
            if first:
                self.W = W
            c_out = W.shape[-1]
            if rc is None:  # dense: uniform in, uniform out
                self.steps.append(lambda g, d=c_out: var_W * d * float(np.mean(g)))
                return out
            rows, cols = rc
            k = W.shape[0]

            def step(g, first=first):
                g = g * np.ones((rows.shape[0], cols.shape[0])) if np.ndim(g) == 0 else g
                if first:  # the share of the reads inside the image, weighted by the map above
                    self.rho = float(np.sum(g * up(np.ones((rows.shape[1], cols.shape[1])), rows, cols))
                                     / (k * k * np.sum(g))) if np.sum(g) > 0 else 1.0
                return var_W * c_out * down(g, rows, cols)

            self.steps.append(step)
            return out
        if isinstance(m, BatchNorm):
            var = max(x.var, 1e-300)
            self.steps.append(lambda g: g / var)
            prof = None
            if x.prof is not None:  # the variance at each pixel over its mean
                v = x.m2 * x.prof - x.mean**2
                prof = v / v.mean() if v.mean() > 0 else None
            return Stats(0.0, 1.0, x.shape, prof=prof)
        if isinstance(m, Activation) and m.kind:
            alpha = float(m.params["alpha"].reshape(-1)[0]) if "alpha" in m.params else m.alpha
            mean, m2, dphi2 = _grid_moments(m.kind, alpha, x.mean, x.var)
            self.steps.append(lambda g: g * dphi2)
            self.q, self.E_dphi2 = x.var, dphi2
            return Stats(mean, m2, x.shape, (m.kind, alpha, x.mean, x.var), x.prof)
        if isinstance(m, Dropout):
            self.steps.append(lambda g: g / (1.0 - m.p))
            return Stats(x.mean, x.m2 / (1.0 - m.p), x.shape, prof=x.prof)
        if isinstance(m, MaxPool2d):
            n = m.size * m.size
            act = x.act or ("linear", None, x.mean, x.var)
            mean, m2, dphi2_max = _grid_moments(act[0], act[1], act[2], act[3], n)
            ratio = dphi2_max / max(_grid_moments(*act)[2], 1e-300) if x.act is not None else 1.0
            # the gradient reaches the winners only, where phi' is phi'(max z), not phi'(z)
            self.pool *= ratio
            rows, cols, prof = _pool_profile(x, m.size, m.stride)
            self.steps.append(lambda g: ratio * down(g * np.ones((rows.shape[0], cols.shape[0])), rows, cols) / n)
            return Stats(mean, m2, (rows.shape[0], cols.shape[0], x.shape[2]), prof=prof)
        if isinstance(m, AvgPool2d):
            s2 = m.size * m.size
            self.pool /= s2
            rows, cols, prof = _pool_profile(x, m.size, m.stride)
            self.steps.append(lambda g: down(g * np.ones((rows.shape[0], cols.shape[0])), rows, cols) / s2**2)
            return Stats(x.mean, x.mean**2 + x.var / s2, (rows.shape[0], cols.shape[0], x.shape[2]), prof=prof)
        if isinstance(m, GlobalAvgPool):
            hw = x.shape[0] * x.shape[1]
            self.pool /= hw
            self.steps.append(lambda g, s=x.shape[:2]: float(np.mean(g)) / hw**2 * np.ones(s))
            return Stats(x.mean, x.mean**2 + x.var / hw, (x.shape[-1],))
        if isinstance(m, Flatten):
            self.steps.append(lambda g, s=x.shape[:2]: float(np.mean(g)) * np.ones(s))
            return Stats(x.mean, x.m2, (math.prod(x.shape),))
        if type(m).__name__ == "ResBlock":
            return self.residual(m, x)
        raise NotCovered(f"{getattr(m, 'name', '') or type(m).__name__} ({type(m).__name__}): no rule for it")

    def residual(self, m, x: Stats) -> Stats:
        """F(x) + shortcut(x): second moments add, and so do the two paths' maps below the block."""
        from ..nn import BatchNorm, Conv2d

        p, bn = m.params, "gamma_a" in m.params
        path = _Walk(self.init, self.bias_init)
        k = p["W_a"].shape[0]
        f = path.module(Conv2d(p["W_a"], p.get("b_a"), m.stride, (k - 1) // 2), x)
        f = path.module(BatchNorm(1), f) if bn else f
        f = path.module(m.activation, f)
        f = path.module(Conv2d(p["W_b"], p.get("b_b"), 1, (k - 1) // 2), f)
        f = path.module(BatchNorm(1), f) if bn else f
        short = _Walk(self.init, self.bias_init)
        s = x
        if "W_proj" in p:
            s = short.module(Conv2d(p["W_proj"], p.get("b_proj"), m.stride, 0), x)
            s = short.module(BatchNorm(1), s) if "gamma_proj" in p else s
        self.W = p["W_a"]

        def step(g):
            below = path.back(g) + short.back(g)
            self.rho = path.rho
            return below

        self.steps.append(step)
        prof = None
        if f.prof is not None or s.prof is not None:
            prof = (f.m2 * f.profile() + s.m2 * s.profile()) / (f.m2 + s.m2) if f.m2 + s.m2 > 0 else None
        return Stats(f.mean + s.mean, f.m2 + s.m2 + 2 * f.mean * s.mean, f.shape, prof=prof)


def predict_cnn(model, init, bias_init: float, mean: float, m2: float, input_shape: tuple[int, ...]) -> list[ConvTheory]:
    """Per logged layer of a built conv net, what its init and modules predict (raises NotCovered): forward
    from the inputs' moments, then the gradient's map top-down from uniform at the output."""
    from ..nn.custom import CustomModule

    walks, shapes, x = [], [tuple(input_shape)], Stats(mean, m2, tuple(input_shape))
    for layer in model.layers:
        walk = _Walk(init, bias_init)
        for m in layer.modules:
            if isinstance(m, CustomModule):
                raise NotCovered(f"a layer of your own ({m.name}): the theory has no rule for it")
            x = walk.module(m, x)
        walks.append(walk)
        shapes.append(x.shape)
    chis, g = [0.0] * len(walks), 1.0
    for i in reversed(range(len(walks))):
        above = total(g, shapes[i + 1])
        g = walks[i].back(g)
        below = total(g, shapes[i])
        chis[i] = below / above if above > 0 else math.nan
        g = g / (below / math.prod(shapes[i])) if below > 0 else g  # a mean entry of 1: no underflow with depth
    rows = []
    for l, (layer, walk, chi) in enumerate(zip(model.layers, walks, chis), 1):
        W = walk.W
        fan_in, fan_out = _fans(W) if W is not None else (0, 0)
        act = layer.activation
        name, want = prescribed(act.kind if act is not None else "linear", fan_in, fan_out) if W is not None \
            else ("", math.nan)
        std = float(expected_std(init, W.shape)) if W is not None else math.nan
        rows.append(ConvTheory(l, layer.modules[0].name, fan_in, fan_out, std, name, want, walk.q, walk.E_dphi2,
                               walk.rho, walk.pool, chi))
    return rows


CONV_ASSUMES = ("conv layers: fan_in = k^2 C_in (He et al. 2015); border = the share of the kernel's reads inside the "
                "image, not on the zero padding, weighted by the gradient's expected square at each pixel above the "
                "layer (carried down from uniform at the net's output: below padded layers the gradient leaves the "
                "border pixels, so border rises toward 1 with depth); pool = the squared-norm factor of the layer's pooling (avg s x s: "
                "1/s^2, global average: 1/(H W); max: the gradient goes to one winner per window, where relu's "
                "derivative is 1 with probability 1 - 2^-(s^2) rather than 1/2: 15/8 for 2x2); batch norm "
                "divides the gradient by the std of its input; a residual block adds its two paths' second moments "
                "and squared gains (F(x) and x uncorrelated); pooling's forward variance assumes uncorrelated "
                "neighbouring pixels (they are correlated in images: after a max pool the second moment is "
                "smaller than predicted, and a batch norm after it passes more); batch norm divides each channel by "
                "its own std, which varies over the channels where the inputs under the kernel are correlated, and "
                "the mean of 1/Var is then above 1/(the mean Var): measured gains through a batch norm run 10-25% "
                "above the prediction; the first layer starts from the training images' own mean and second moment")


def rebuilt(run):
    """(the run's net at its initial weights, its training inputs X), built again from config.yaml and its seed;
    raises ConfigError, OSError or ValueError when the data cannot be read again."""
    from ..data import load_data
    from ..train import build_model, streams

    cfg = run.config
    rng = streams(cfg.seed)
    with np.errstate(all="ignore"):
        data = load_data(cfg.data, rng["data"])
    shapes = run.init_shapes or {}
    heads = [s for k, s in shapes.items() if k.startswith("dense") and k.endswith(".W")]
    n_out = int(heads[-1][-1]) if heads else (1 if cfg.loss == "bce" else data.n_outputs)
    return build_model(cfg, data, n_out, rng, np.float64, str(run.dir / "config.yaml")), data.X_train


def _compare_cnn(run, steps: list[int], fits: dict) -> tuple[pd.DataFrame | None, dict]:
    """compare for a conv net: the prediction of every hidden logged layer l >= 2 from its modules."""
    from ..config import ConfigError

    cfg = run.config.model
    try:
        model, X = rebuilt(run)
    except (ConfigError, OSError, ValueError) as exc:
        fits["theory"] = f"the images cannot be read again from config.yaml ({str(exc).splitlines()[0]})"
        return None, fits
    try:
        theory = predict_cnn(model, cfg.init, cfg.bias_init, float(X.mean()), float(np.mean(X * X)), X.shape[1:])
    except NotCovered as exc:
        fits["theory"] = str(exc)
        return None, fits
    rows = [th for th in theory if th.layer >= 2 and th.layer in run.hidden]
    if not rows:
        fits["theory"] = "fewer than two hidden layers"
        return None, fits
    table = []
    for th in rows:
        row = {"layer": th.layer, "name": th.name, "fan_in": th.fan_in, "init std": th.std_W,
               "prescribed std": th.prescribed_std, "prescribed": th.prescribed, "Var(z)": th.q,
               "E[phi'(z)^2]": th.E_dphi2, "border": th.border, "pool": th.pool, "chi": th.chi,
               "predicted gain": th.gain}
        row.update(_measured(run, th.layer, steps))
        table.append(row)
    _predicted(fits, [th.gain for th in rows])
    fits["assumes"] = CONV_ASSUMES
    return pd.DataFrame(table), fits
