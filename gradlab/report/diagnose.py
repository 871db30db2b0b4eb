"""The diagnosis of a run: vanishing, exploding, dead units, saturation, or healthy; each finding with
the numbers behind it and the remedies the seeds give."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from .load import RunData
from .theory import RELU_LIKE, SATURATING, fitted_gain, prescribed

VANISH = 1e-3  # delta_norm of the first hidden layer below this fraction of the last's
EXPLODE = 1e3
DEAD = 0.5  # fraction of a layer's units
SATURATED = 0.5
GROWTH = 100.0  # global norm at the end over the start
SPIKE = 10.0  # loss above its first value by this factor
OSCILLATION = 0.2  # fraction of steps where the loss jumps 2x up then down (or down then up)

KINDS = ("vanishing", "exploding", "dead_units", "saturation", "healthy")


@dataclass
class Finding:
    kind: str  # one of KINDS
    layer: int | None  # where it applies (the layer where it starts, or the first layer affected)
    message: str
    evidence: dict = field(default_factory=dict)
    remedies: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- measurements

def _finite_steps(run: RunData) -> list[int]:
    """Logged steps whose layer statistics are all finite (a diverged run's last one is not)."""
    ok = run.layers.groupby("step").delta_norm.apply(lambda d: bool(np.isfinite(d).all()))
    return [int(s) for s in ok.index[ok.values]]


def end_steps(run: RunData) -> list[int]:
    """The first and the last logged step with finite statistics (one step if only one)."""
    steps = _finite_steps(run)
    return sorted({steps[0], steps[-1]}) if steps else []


def delta_ratio(run: RunData, step: int) -> float:
    """delta_norm of the first hidden layer over the last hidden layer at ``step``."""
    at, hidden = run.at(step), run.hidden
    top = at.delta_norm.get(hidden[-1], math.nan)
    return float(at.delta_norm.get(hidden[0], math.nan) / top) if top else math.nan


def truncation(run: RunData) -> int | None:
    bptt = (run.raw.get("train") or {}).get("bptt")
    return int(bptt["truncate"]) if isinstance(bptt, dict) and bptt.get("truncate") else None


def time_ratio(run: RunData, step: int) -> tuple[float, int, int]:
    """(||dL/dh_1|| / ||dL/dh_T||, T, layer) of the top recurrent layer at ``step``. With truncated BPTT
    the gradient stops at each chunk's start by design, so the ratio is taken over the last chunk only."""
    t = run.times[run.times.step == step]
    if t.empty:
        return math.nan, 0, 0
    layer = int(t.layer.max())
    t = t[t.layer == layer].sort_values("t")
    k = truncation(run)
    if k:  # chunks start at t = 1, k + 1, 2k + 1, ...
        t = t[t.t > k * ((len(t) - 1) // k)]
        if len(t) < 2:
            return math.nan, len(t), layer
    last = t.grad_norm.iloc[-1]
    return (float(t.grad_norm.iloc[0] / last) if last else math.nan), len(t), layer


def crossing(run: RunData, step: int, below: bool) -> int:
    """The highest hidden layer whose delta_norm is beyond the threshold relative to the last hidden layer:
    where the vanishing (or explosion) has become severe, counting down from the top."""
    at, hidden = run.at(step), run.hidden
    rel = at.delta_norm.reindex(hidden) / at.delta_norm.get(hidden[-1])
    beyond = rel[rel < VANISH] if below else rel[rel > EXPLODE]
    return int(beyond.index.max()) if len(beyond) else hidden[0]


def global_norms(run: RunData) -> np.ndarray:
    g = run.metrics.grad_norm.to_numpy(dtype=float)
    return g[np.isfinite(g) & (g > 0)]


def suggest_clip(run: RunData, exploding: bool = False) -> float | None:
    """A clipping threshold from the logged global norms: their median (Pascanu et al. 2013: the average
    norm over many updates), taken over the first quarter of the logged steps when the norm grows."""
    g = global_norms(run)
    if not len(g):
        return None
    return float(np.median(g[: max(1, len(g) // 4)] if exploding else g))


def oscillation(loss: np.ndarray) -> float | None:
    """The fraction of steps whose loss differs from the previous one by more than 2x, alternating in sign,
    when that is over OSCILLATION and the last quarter's median loss is not below half the first quarter's."""
    loss = loss[np.isfinite(loss) & (loss > 0)]
    if len(loss) < 8:
        return None
    step = np.diff(np.log(loss))
    big = np.abs(step) > math.log(2.0)
    alternating = big[1:] & big[:-1] & (np.sign(step[1:]) != np.sign(step[:-1]))
    frac = float(alternating.mean())
    k = len(loss) // 4
    stuck = np.median(loss[-k:]) >= 0.5 * np.median(loss[:k])
    return frac if frac > OSCILLATION and stuck else None


def norm_spread(g: np.ndarray) -> dict:
    q = np.percentile(g, [0, 10, 50, 90, 100])
    return dict(zip(("min", "p10", "median", "p90", "max"), map(float, q)))


# --------------------------------------------------------------------------- the model, from its config

def model_facts(run: RunData) -> dict:
    """depth, activation, init std against the std the activation wants, and the model's extras."""
    model = run.config.model if run.config is not None else None
    if model is None or getattr(model, "kind", "mlp") != "mlp" or model.layers is not None:
        return {"depth": len(run.hidden), "kind": getattr(model, "kind", "mlp"), "cell": getattr(model, "cell", None)}
    width = model.width
    std = _init_std(run, model)
    scheme, want = prescribed(model.activation.name, width, width)
    return {"depth": model.depth, "kind": "mlp", "activation": model.activation.name, "init": model.init.scheme,
            "init_std": std, "prescribed": scheme, "prescribed_std": want, "residual": bool(model.block),
            "batchnorm": bool(model.batchnorm), "bias_init": model.bias_init}


def _init_std(run: RunData, model) -> float:
    from ..nn.init import expected_std
    return float(expected_std(model.init, (model.width, model.width)))


# --------------------------------------------------------------------------- findings

def _headline(ratios: dict[int, float], beyond) -> int | None:
    """The first step (of first and last) whose ratio is beyond the threshold; None if none is."""
    return next((s for s, r in sorted(ratios.items()) if math.isfinite(r) and beyond(r)), None)


def vanishing(run: RunData, facts: dict) -> Finding | None:
    if run.recurrent:
        return _vanishing_in_time(run)
    steps = end_steps(run)
    if len(run.hidden) < 2 or not steps:
        return None
    ratios = {s: delta_ratio(run, s) for s in steps}
    step = _headline(ratios, lambda r: r < VANISH)
    if step is None:
        return None
    r = ratios[step]
    at = run.at(step)
    hidden = run.hidden
    ev = {"step": step, "delta_ratio_first_last_hidden": r,
          **{f"delta_ratio_at_step_{s}": v for s, v in ratios.items()},
          "first_hidden_delta_norm": float(at.delta_norm[hidden[0]]),
          "last_hidden_delta_norm": float(at.delta_norm[hidden[-1]]),
          "fitted_gain_per_layer": fitted_gain(hidden, [at.delta_norm[l] for l in hidden]),
          "depth": facts["depth"]}
    causes, remedies = [], []
    act = facts.get("activation")
    if act in SATURATING:
        causes.append(f"a saturating activation ({act}) in a {facts['depth']}-layer net")
    if act == "sigmoid":
        ev["sigmoid_derivative_max"] = 0.25
        ev["sigmoid_bound_over_net"] = 0.25 ** (facts["depth"] - 1)
        causes.append(f"sigmoid's derivative is at most 0.25, so {facts['depth'] - 1} layers can pass at most "
                      f"0.25^{facts['depth'] - 1} = {0.25 ** (facts['depth'] - 1):.1e} of the gradient")
    dead = run.at(step).frac_dead.reindex(hidden).dropna()
    dead = [int(l) for l, v in dead.items() if v > DEAD]
    if dead:
        causes.append(f"dead relu units (more than {DEAD:.0%} in {len(dead)} layer(s), see dead_units)")
        remedies.append("leaky relu, which never has a zero derivative: --set model.activation=leaky_relu")
    if "init_std" in facts:
        ev.update(init_std=facts["init_std"], prescribed_std=facts["prescribed_std"])
        if facts["init_std"] < 0.7 * facts["prescribed_std"]:
            causes.append(f"init std {facts['init_std']:.3g} is {facts['init_std'] / facts['prescribed_std']:.2g}x "
                          f"the {facts['prescribed_std']:.3g} that {facts['prescribed']} prescribes for {act}")
    if act in RELU_LIKE and facts.get("init") != "he_normal":
        remedies.append("He init for relu: --set model.init=he_normal")
    if act in SATURATING:
        if facts.get("init") not in ("xavier_normal", "xavier_uniform"):
            remedies.append(f"Xavier init for {act}: --set model.init=xavier_normal")
        remedies.append("a non-saturating activation: --set model.activation=relu (or leaky_relu) with he_normal")
    if facts.get("kind") == "mlp" and not facts.get("residual"):
        remedies.append("residual connections: --set model.residual=true")
    if facts.get("kind") == "mlp" and not facts.get("batchnorm"):
        remedies.append("batch norm: --set model.batchnorm=true")
    layer = crossing(run, step, below=True)
    message = (f"delta_norm of hidden layer {hidden[0]} is {r:.2e} of layer {hidden[-1]}'s at step {step}"
               f" (below {VANISH:g} from layer {layer} down)")
    if causes:
        message += "; likely cause: " + "; ".join(causes)
    return Finding("vanishing", layer, message, ev, remedies)


def _vanishing_in_time(run: RunData) -> Finding | None:
    steps = end_steps(run)
    ratios = {s: time_ratio(run, s) for s in steps}
    if not ratios:
        return None
    step = _headline({s: v[0] for s, v in ratios.items()}, lambda r: r < VANISH)
    if step is None:
        return None
    r, T, layer = ratios[step]
    t = run.times[(run.times.step == step) & (run.times.layer == layer)]
    ev = {"step": step, "T": T, "time_ratio_first_last": r,
          "fitted_gain_per_step": fitted_gain(list(-t.lag), list(t.grad_norm))}
    cell = (run.raw.get("model") or {}).get("cell", "vanilla")
    remedies = ["gated cells carry the gradient over long lags: --set model.cell=lstm (or gru)"] if cell == "vanilla" else []
    remedies += ["an orthogonal recurrent init (model.recurrent_init: orthogonal), or relu with identity "
                 "(IRNN, Le et al. 2015)", "shorter sequences first, then longer (curriculum)"]
    msg = (f"through time: ||dL/dh_1|| is {r:.2e} of ||dL/dh_T|| over T = {T} steps at step {step} "
           f"(layer {layer}, {cell} cell)")
    if truncation(run):
        msg = msg.replace("||dL/dh_1||", f"||dL/dh_(T-{T - 1})||") + ", within the last truncated-BPTT chunk"
    return Finding("vanishing", layer, msg, ev, remedies)


def exploding(run: RunData, facts: dict) -> Finding | None:
    ev, reasons, layer = {}, [], None
    steps = end_steps(run)
    if run.recurrent and steps:
        ratios = {s: time_ratio(run, s) for s in steps}
        step = _headline({s: v[0] for s, v in ratios.items()}, lambda r: r > EXPLODE)
        if step is not None:
            r, T, lay = ratios[step]
            ev.update(time_ratio_first_last=r, T=T)
            reasons.append(f"||dL/dh_1|| is {r:.2e} times ||dL/dh_T|| over T = {T} steps")
            layer = lay
    elif len(run.hidden) >= 2 and steps:
        ratios = {s: delta_ratio(run, s) for s in steps}
        step = _headline(ratios, lambda r: r > EXPLODE)
        if step is not None:
            ev.update(step=step, delta_ratio_first_last_hidden=ratios[step])
            reasons.append(f"delta_norm of hidden layer {run.hidden[0]} is {ratios[step]:.2e} times layer "
                           f"{run.hidden[-1]}'s at step {step}")
            layer = crossing(run, step, below=False)
    g = global_norms(run)
    if len(g) >= 8:
        k = max(1, len(g) // 5)
        growth = float(np.median(g[-k:]) / np.median(g[:k]))
        if growth > GROWTH:
            ev["global_norm_growth"] = growth
            reasons.append(f"the global gradient norm grew {growth:.3g}x from the first to the last fifth of the run")
    loss = run.metrics.loss.to_numpy(dtype=float)
    if len(loss) > 1 and math.isfinite(loss[0]) and loss[0] > 0:
        later = loss[1:][np.isfinite(loss[1:])]
        if len(later) and later.max() > SPIKE * loss[0]:
            ev.update(loss_first=float(loss[0]), loss_max=float(later.max()))
            reasons.append(f"the loss rose to {later.max():.3g}, {later.max() / loss[0]:.3g}x its first value")
    swings = oscillation(loss)
    if swings is not None:
        ev["loss_swings"] = swings
        reasons.append(f"the loss oscillates: {swings:.0%} of steps change it by more than 2x, up and down, "
                       "without progress")
    if run.summary.get("status") == "diverged" or not np.isfinite(run.metrics.grad_norm.to_numpy(dtype=float)).all():
        at, where = run.summary.get("diverged_at"), run.summary.get("diverged_where")
        ev.update(diverged_at=at, diverged_layer=run.summary.get("diverged_layer"), diverged_where=where)
        reasons.append(f"NaN/Inf at step {at}" + (f", first in layer {run.summary.get('diverged_layer')} ({where})"
                                                     if where else ""))
        layer = layer if layer is not None else run.summary.get("diverged_layer")
    if not reasons:
        return None
    clip = suggest_clip(run, exploding=True)
    if len(g):
        ev["global_norms"] = norm_spread(g)
    ev["suggested_clip"] = clip
    lr = (run.raw.get("train") or {}).get("lr")
    remedies = []
    if clip is not None:
        remedies.append(f"gradient clipping by global norm at about {clip:.3g} (the median of the logged norms "
                        f"before they grew): --set train.clip={clip:.3g}")
    remedies.append("a smaller init scale (Xavier for tanh, He for relu; gain or identity scale at most 1)")
    if lr:
        remedies.append(f"a lower learning rate: --set train.lr={lr / 10:g}")
    if run.recurrent:
        remedies.append("truncated BPTT: --set train.bptt.truncate=20")
    return Finding("exploding", layer, "; ".join(reasons), ev, remedies)


def _fraction_finding(run: RunData, column: str, limit: float) -> tuple[int, dict] | None:
    """(step, {layer: fraction}) at the last finite logged step, for the hidden layers above ``limit``:
    units that trained into (or stayed in) that state, not a batch's passing look at initialisation."""
    steps = end_steps(run)
    if not steps:
        return None
    frac = run.at(steps[-1])[column].reindex(run.hidden).dropna()
    over = {int(l): float(v) for l, v in frac.items() if v > limit}
    return (steps[-1], over) if over else None


def dead_units(run: RunData, facts: dict) -> Finding | None:
    found = _fraction_finding(run, "frac_dead", DEAD)
    if found is None:
        return None
    step, over = found
    first = min(over)
    ev = {"step": step, "frac_dead": over, "layers_over_half": len(over), "hidden_layers": len(run.hidden)}
    remedies = ["leaky relu keeps a small gradient where relu is 0 (seed 002): --set model.activation=leaky_relu"]
    if facts.get("bias_init", 0) < 0:
        ev["bias_init"] = facts["bias_init"]
        remedies.append(f"bias_init {facts['bias_init']:g} pushes units below 0 from the start: --set model.bias_init=0")
    remedies += ["He init: --set model.init=he_normal", "a lower learning rate (a large step can kill a unit for good)"]
    msg = (f"{len(over)} of {len(run.hidden)} hidden layers have more than {DEAD:.0%} dead relu units at "
           f"step {step} (layer {first}: {over[first]:.0%})")
    return Finding("dead_units", first, msg, ev, remedies)


def saturation(run: RunData, facts: dict) -> Finding | None:
    found = _fraction_finding(run, "frac_saturated", SATURATED)
    if found is None:
        return None
    step, over = found
    first = min(over)
    ev = {"step": step, "frac_saturated": over, "layers_over_half": len(over)}
    remedies = ["batch norm keeps pre-activations near 0: --set model.batchnorm=true"]
    if facts.get("init_std") and facts["init_std"] > 1.4 * facts["prescribed_std"]:
        ev.update(init_std=facts["init_std"], prescribed_std=facts["prescribed_std"])
        remedies.append(f"a smaller init: std {facts['init_std']:.3g} is {facts['init_std'] / facts['prescribed_std']:.2g}x "
                        f"what {facts['prescribed']} prescribes: --set model.init={facts['prescribed']}")
    else:
        remedies.append("Xavier init: --set model.init=xavier_normal")
    remedies.append("relu or leaky_relu, which do not saturate for positive inputs")
    msg = (f"{len(over)} hidden layer(s) have more than {SATURATED:.0%} of their units saturated "
           f"(derivative below 5% of its maximum) at step {step} (layer {first}: {over[first]:.0%})")
    return Finding("saturation", first, msg, ev, remedies)


def healthy(run: RunData) -> Finding:
    steps = end_steps(run)
    ev: dict = {}
    if run.recurrent:
        for s in steps:
            ev[f"time_ratio_at_step_{s}"] = time_ratio(run, s)[0]
        what = "||dL/dh_1|| / ||dL/dh_T||"
    else:
        for s in steps:
            ev[f"delta_ratio_at_step_{s}"] = delta_ratio(run, s)
        what = "delta_norm ratio first/last hidden layer"
        if steps:
            at = run.at(steps[0])
            ev["fitted_gain_per_layer"] = fitted_gain(run.hidden, [at.delta_norm[l] for l in run.hidden])
    shown = ", ".join(f"{v:.3g} at step {k.rsplit('_', 1)[1]}" for k, v in ev.items() if "_at_step_" in k)
    message = f"{what} {shown}; no layer dead or saturated"
    threshold = run.clip_threshold()
    if threshold is not None and len(run.metrics):
        clipped = int(run.metrics.clipped.sum())
        ev.update(clip_threshold=threshold, clipped_steps=clipped, logged_steps=len(run.metrics))
        message += f"; clipping at {threshold:g} acted on {clipped} of {len(run.metrics)} logged steps"
    return Finding("healthy", None, message, ev, [])


def diagnose(run: RunData) -> list[Finding]:
    """Every finding that applies; 'healthy' when none does."""
    if run.layers.empty:
        return []
    facts = model_facts(run)
    found = [f(run, facts) for f in (vanishing, exploding, dead_units, saturation)]
    found = [f for f in found if f is not None]
    return found or [healthy(run)]


def findings_frame(findings: list[Finding]) -> pd.DataFrame:
    return pd.DataFrame([{"kind": f.kind, "layer": f.layer, "message": f.message} for f in findings])
