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
    """Fan-in of the first dense layer, from the shapes of the run's saved initial parameters."""
    shapes = run.init_shapes or {}
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
    groups: list[list[dict]] = []
    for row in table.to_dict("records"):
        if groups and [_sig(groups[-1][0][c]) for c in SAME] == [_sig(row[c]) for c in SAME]:
            groups[-1].append(row)
        else:
            groups.append([row])
    return [_group(rows, measured) for rows in groups]


def _group(rows: list[dict], measured: list[str]) -> dict:
    a, b = int(rows[0]["layer"]), int(rows[-1]["layer"])
    item = {"layers": f"{a}-{b}" if a != b else str(a), **{c: rows[0][c] for c in PREDICTED}, "far": []}
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
