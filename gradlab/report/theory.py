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
        for s in steps:
            at = run.at(s).delta_norm
            row[f"measured gain, step {s}"] = float(at.get(th.layer - 1) / at.get(th.layer)) if at.get(th.layer) else math.nan
        rows.append(row)
    product = float(np.prod([th.gain for th in theory[1:]]))
    fits["predicted delta_norm ratio first/last hidden"] = product
    fits["predicted gain per layer (geometric mean)"] = product ** (1.0 / max(1, len(theory) - 1))
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
# The same recursion, module by module through a built net (model.kind cnn): each tensor is described by the
# mean and second moment of its entries, and each module multiplies the squared norm of the gradient passing
# it down by a factor (the chi of a logged layer is their product):
#   conv   k x k, C_in -> C_out: Var(z) = rho k^2 C_in Var(W) E[a^2], factor rho k^2 C_in Var(W). fan_in = k^2 C_in
#          as He et al. 2015 count it; rho, the share of the kernel's taps that fall inside the image rather than
#          on the zero padding (1 without padding; 22/24 squared for a 3x3 kernel on 8x8 with padding 1), is the
#          border's loss, forward and backward alike (it compounds: 0.84 per layer on 8x8 images).
#   dense  the same with k = 1 and rho = 1.
#   batch norm (training mode, gamma 1, beta 0): out to mean 0 and variance 1; factor 1 / Var(input).
#   activation: E[phi(z)], E[phi(z)^2] and the factor E[phi'(z)^2] for z ~ N(mean, variance) of its input.
#   max pool s x s: the gradient goes to one winner per window (non-overlapping windows: factor 1), where an
#          activation before it has the derivative phi'(max z) rather than phi'(z): relu' is 1 there with probability
#          1 - 2^-(s^2), not 1/2, so the factor is E[phi'(max z)^2] / E[phi'(z)^2] (15/8 for relu, 2x2); forward,
#          the largest of s^2 independent inputs.
#   avg pool s x s, global average pooling over H x W: factor 1 / s^2 (1 / (H W)); forward, the variance over
#          s^2 (H W) as for uncorrelated inputs. Neighbouring pixels of an image are correlated: the forward
#          prediction after pooling is then too small, the backward factor is exact all the same.
#   dropout p: factor 1 / (1 - p), E[a^2] / (1 - p) (inverted dropout).
#   residual block: F(x) + shortcut(x): second moments add (F(x) and x taken uncorrelated), and so do the
#          squared gradients of the two paths (identity: factor 1; a 1x1 projection: its conv and batch norm).
# The first layer starts from the data's own mean and second moment (the training images, rebuilt from the
# config), not from unit variance.

class NotCovered(Exception):
    """A module the convolutional theory has no rule for (a layer of your own): it says so, predicting nothing."""


@dataclass
class Stats:
    """The entries of a tensor: mean, second moment, and the image shape (H, W, C) or (D,) of one sample."""

    mean: float
    m2: float
    shape: tuple[int, ...]
    act: tuple[str, float | None, float, float] | None = None  # entries are phi(z), z ~ N(mean, var): (phi, alpha, .)

    @property
    def var(self) -> float:
        return max(self.m2 - self.mean**2, 0.0)


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
    border: float  # rho of its (first) convolution; 1 for a dense layer
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


def border(n: int, k: int, stride: int, padding: int) -> float:
    """The share of a k-tap kernel's reads along an axis of n that fall inside it (not on the zero padding),
    over the output positions: floor((n + 2p - k) / s) + 1 of them, as Conv2d computes."""
    out = (n + 2 * padding - k) // stride + 1
    starts = np.arange(out) * stride - padding
    taps = starts[:, None] + np.arange(k)[None, :]
    return float(np.count_nonzero((taps >= 0) & (taps < n)) / taps.size)


def _conv(x: Stats, W: np.ndarray, stride: int, padding: int, init, bias: float) -> tuple[Stats, float, float]:
    """(pre-activation stats, rho, Var(W)) after a conv (W 4-D) or dense (W 2-D) weight."""
    var_W = float(expected_std(init, W.shape)) ** 2
    if W.ndim == 2:
        fan_in, rho, shape = W.shape[0], 1.0, (W.shape[1],)
    else:
        k, c_out = W.shape[0], W.shape[-1]
        if len(x.shape) != 3:
            raise NotCovered("a conv layer after the image was flattened")
        h, w = x.shape[0], x.shape[1]
        rho = border(h, k, stride, padding) * border(w, k, stride, padding)
        fan_in = k * k * W.shape[2]
        shape = ((h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1, c_out)
    q = rho * fan_in * var_W * x.m2
    return Stats(bias, q + bias**2, shape), rho, var_W


def _fans(W: np.ndarray) -> tuple[int, int]:
    if W.ndim == 2:
        return int(W.shape[0]), int(W.shape[1])
    k2 = W.shape[0] * W.shape[1]
    return int(k2 * W.shape[2]), int(k2 * W.shape[3])


class _Walk:
    """The forward statistics and squared-norm factors through one logged layer's modules."""

    def __init__(self, init, bias_init: float) -> None:
        self.init, self.bias_init = init, bias_init
        self.factor, self.q, self.E_dphi2, self.rho, self.pool, self.W = 1.0, math.nan, math.nan, 1.0, 1.0, None

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
            out, rho, var_W = _conv(x, W, stride, padding, self.init, bias)
            fan_in = _fans(W)[0]
            self.factor *= rho * fan_in * var_W
            if self.W is None:
                self.W, self.rho = W, rho
            return out
        if isinstance(m, BatchNorm):
            self.factor /= max(x.var, 1e-300)
            return Stats(0.0, 1.0, x.shape)
        if isinstance(m, Activation) and m.kind:
            alpha = float(m.params["alpha"].reshape(-1)[0]) if "alpha" in m.params else m.alpha
            mean, m2, dphi2 = _grid_moments(m.kind, alpha, x.mean, x.var)
            self.factor *= dphi2
            self.q, self.E_dphi2 = x.var, dphi2
            return Stats(mean, m2, x.shape, (m.kind, alpha, x.mean, x.var))
        if isinstance(m, Dropout):
            self.factor /= 1.0 - m.p
            return Stats(x.mean, x.m2 / (1.0 - m.p), x.shape)
        if isinstance(m, MaxPool2d):
            n = m.size * m.size
            act = x.act or ("linear", None, x.mean, x.var)
            mean, m2, dphi2_max = _grid_moments(act[0], act[1], act[2], act[3], n)
            if x.act is not None:  # the gradient reaches the winners only, where phi' is phi'(max z), not phi'(z)
                self.factor *= dphi2_max / max(_grid_moments(*act)[2], 1e-300)
                self.pool *= dphi2_max / max(_grid_moments(*act)[2], 1e-300)
            return Stats(mean, m2, _pooled(x.shape, m.size, m.stride))
        if isinstance(m, AvgPool2d):
            s2 = m.size * m.size
            self.factor /= s2
            self.pool /= s2
            return Stats(x.mean, x.mean**2 + x.var / s2, _pooled(x.shape, m.size, m.stride))
        if isinstance(m, GlobalAvgPool):
            hw = x.shape[0] * x.shape[1]
            self.factor /= hw
            self.pool /= hw
            return Stats(x.mean, x.mean**2 + x.var / hw, (x.shape[-1],))
        if isinstance(m, Flatten):
            return Stats(x.mean, x.m2, (math.prod(x.shape),))
        if type(m).__name__ == "ResBlock":
            return self.residual(m, x)
        raise NotCovered(f"{getattr(m, 'name', '') or type(m).__name__} ({type(m).__name__}): no rule for it")

    def residual(self, m, x: Stats) -> Stats:
        """F(x) + shortcut(x): second moments add, and so do the two paths' squared-norm factors."""
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
        self.factor *= path.factor + short.factor
        self.W, self.rho = p["W_a"], path.rho
        return Stats(f.mean + s.mean, f.m2 + s.m2 + 2 * f.mean * s.mean, f.shape)


def _pooled(shape: tuple[int, ...], size: int, stride: int) -> tuple[int, ...]:
    h, w, c = shape
    return ((h - size) // stride + 1, (w - size) // stride + 1, c)


def predict_cnn(model, init, bias_init: float, mean: float, m2: float, input_shape: tuple[int, ...]) -> list[ConvTheory]:
    """Per logged layer of a built conv net, what its init and modules predict (raises NotCovered)."""
    from ..nn.custom import CustomModule

    rows, x = [], Stats(mean, m2, tuple(input_shape))
    for l, layer in enumerate(model.layers, 1):
        walk = _Walk(init, bias_init)
        for m in layer.modules:
            if isinstance(m, CustomModule):
                raise NotCovered(f"a layer of your own ({m.name}): the theory has no rule for it")
            x = walk.module(m, x)
        W = walk.W
        fan_in, fan_out = _fans(W) if W is not None else (0, 0)
        act = layer.activation
        name, want = prescribed(act.kind if act is not None else "linear", fan_in, fan_out) if W is not None \
            else ("", math.nan)
        std = float(expected_std(init, W.shape)) if W is not None else math.nan
        rows.append(ConvTheory(l, layer.modules[0].name, fan_in, fan_out, std, name, want, walk.q, walk.E_dphi2,
                               walk.rho, walk.pool, walk.factor))
    return rows


CONV_ASSUMES = ("conv layers: fan_in = k^2 C_in (He et al. 2015); border = the share of the kernel's reads inside the "
                "image, not on the zero padding; pool = the squared-norm factor of the layer's pooling (avg s x s: "
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
        for s in steps:
            at = run.at(s).delta_norm
            row[f"measured gain, step {s}"] = float(at.get(th.layer - 1) / at.get(th.layer)) if at.get(th.layer) else math.nan
        table.append(row)
    product = float(np.prod([th.gain for th in rows]))
    fits["predicted delta_norm ratio first/last hidden"] = product
    fits["predicted gain per layer (geometric mean)"] = product ** (1.0 / len(rows))
    fits["assumes"] = CONV_ASSUMES
    return pd.DataFrame(table), fits
