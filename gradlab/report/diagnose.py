"""The diagnosis of a run: vanishing, exploding, dead units, saturation, or healthy; each finding with
the numbers behind it and the usual remedies, as ``--set`` options valid for this config."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from .load import RunData
from .theory import SATURATING, fitted_gain, init_vs_prescribed

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


def num(x: float) -> str:
    """3 significant digits that YAML reads back as a float (it reads ``5e+03`` as a string: ``5.0e+03``)."""
    text = f"{x:.3g}"
    if "e" not in text:
        return repr(float(text))
    mantissa, exponent = text.split("e")
    return f"{mantissa if '.' in mantissa else mantissa + '.0'}e{exponent}"


# --------------------------------------------------------------------------- measurements

def _finite_steps(run: RunData) -> list[int]:
    """Logged steps whose layer statistics are all finite (a diverged run's last one is not)."""
    if run.layers.empty:
        return []
    ok = {int(s): bool(np.isfinite(d.to_numpy(dtype=float)).all()) for s, d in run.layers.groupby("step").delta_norm}
    return [s for s, good in sorted(ok.items()) if good]


def end_steps(run: RunData) -> list[int]:
    """The first and the last logged step with finite statistics (one step if only one)."""
    steps = _finite_steps(run)
    return sorted({steps[0], steps[-1]}) if steps else []


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b and math.isfinite(a) and math.isfinite(b) else math.nan


def delta_ratio(run: RunData, step: int) -> float:
    """delta_norm of the first hidden layer over the last hidden layer at ``step``."""
    at, hidden = run.at(step), run.hidden
    return _ratio(at.delta_norm.get(hidden[0], math.nan), at.delta_norm.get(hidden[-1], math.nan))


def truncation(run: RunData) -> int | None:
    bptt = (run.raw.get("train") or {}).get("bptt")
    return int(bptt["truncate"]) if isinstance(bptt, dict) and bptt.get("truncate") else None


def time_ratio(run: RunData, step: int) -> tuple[float, int, int]:
    """(||dL/dh_1|| / ||dL/dh_T||, T, layer) of the top recurrent layer at ``step``. With truncated BPTT
    the gradient stops at each chunk's start by design, so the ratio is taken over the chunk holding T."""
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
    return _ratio(t.grad_norm.iloc[0], t.grad_norm.iloc[-1]), len(t), layer


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


def suggest_clip(run: RunData, grew: bool = False) -> float | None:
    """A clipping threshold from the logged global norms: their median (Pascanu et al. 2013: the average
    norm over many updates), over the first quarter of the logged steps when the norm grew or diverged."""
    g = global_norms(run)
    if not len(g):
        return None
    return float(np.median(g[: max(1, len(g) // 4)] if grew else g))


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
    """What the remedies depend on: the model's shape (a depth x width stack, a layers list, or a recurrent
    net), activation, init std against the std the activation wants, clipping, learning rate."""
    cfg = run.config
    facts = {"depth": len(run.hidden), "shape": None, "per_step": bool(run.summary.get("per_step"))}
    if cfg is None:
        return facts
    clip = cfg.train.clip
    facts.update(lr=cfg.train.lr, clip=clip.threshold if clip is not None and clip.mode == "norm" else None,
                 truncate=cfg.train.bptt.truncate if cfg.train.bptt else None, T=getattr(cfg.data, "T", None))
    model = cfg.model
    if model.kind == "rnn":
        rec = model.recurrent_init
        facts.update(shape="rnn", cell=model.cell, activation=model.activation, bias_init=model.bias_init,
                     forget_bias=model.forget_bias,
                     recurrent=rec.scheme, recurrent_gain=rec.gain * (rec.scale if rec.scheme == "identity" else 1.0))
        return facts
    facts["bias_init"] = model.bias_init
    if model.layers is not None:
        facts["shape"] = "layers"
        return facts
    std, scheme, want = init_vs_prescribed(model)
    facts.update(shape="stack", depth=model.depth, activation=model.activation.name, init=model.init.scheme,
                 init_std=std, prescribed=scheme, prescribed_std=want, residual=bool(model.block),
                 batchnorm=bool(model.batchnorm))
    return facts


# --------------------------------------------------------------------------- remedies, valid for the config

def init_remedies(facts: dict, kind: str = "") -> list[str]:
    """The init the activation wants (stacks), or a recurrent gain of 1 (RNNs)."""
    if facts["shape"] == "stack" and facts["init"] != facts["prescribed"]:
        name = "He" if facts["prescribed"].startswith("he") else "Xavier"
        return [f"{name} init for {facts['activation']} (std {facts['prescribed_std']:.3g} instead of "
                f"{facts['init_std']:.3g}): --set model.init={facts['prescribed']}"]
    if facts["shape"] == "layers":
        return ["He init for relu layers, Xavier for tanh/sigmoid: --set model.init=he_normal (or xavier_normal)"]
    if facts["shape"] == "rnn":
        if facts["recurrent"] not in ("orthogonal", "identity"):
            return ["an orthogonal recurrent matrix (gain 1, Saxe et al. 2014): --set model.recurrent_init=orthogonal"]
        gain = facts["recurrent_gain"]
        if (gain > 1.0 and kind != "vanishing") or (gain < 1.0 and kind == "vanishing"):
            return [f"a recurrent gain of 1 instead of {facts['recurrent_gain']:g}: "
                    f"--set model.recurrent_init={facts['recurrent']}"]
    return []


def structure_remedies(facts: dict, kind: str) -> list[str]:
    """Residual connections, batch norm, a gated cell: whichever the config can take."""
    out = []
    if facts["shape"] == "stack":
        if not facts["residual"]:
            out.append("residual connections: --set model.residual=true")
        if not facts["batchnorm"]:
            out.append("batch norm: --set model.batchnorm=true")
    elif facts["shape"] == "layers":
        out.append("a {type: batchnorm} item after each dense item of model.layers")
    elif facts["shape"] == "rnn" and facts["cell"] == "lstm" and kind == "vanishing" and facts["forget_bias"] < 3:
        out.append(f"a larger forget-gate bias keeps the cell state over longer lags (sigmoid({facts['forget_bias']:g}) "
                   f"= {1 / (1 + math.exp(-facts['forget_bias'])):.2f} per step at the start): "
                   "--set model.forget_bias=3.0")
    elif facts["shape"] == "rnn" and facts["cell"] == "vanilla":
        out.append("a gated cell (lstm or gru) carries the gradient over long lags: --set model.cell=lstm "
                   "--set model.activation=null")
        if kind == "vanishing" and facts["activation"] == "tanh":
            out.append("relu with an identity recurrent matrix (IRNN, Le et al. 2015): --set model.activation=relu "
                       "--set model.recurrent_init=identity")
    return out


def activation_remedies(facts: dict, want: str) -> list[str]:
    """Switch to ``want`` (leaky_relu, or relu for saturation) where the config can."""
    if facts["shape"] == "stack":
        init = "" if want == "leaky_relu" or facts["init"].startswith("he") else " --set model.init=he_normal"
        return [f"{want}, which does not saturate for positive inputs: --set model.activation={want}{init}"
                if want == "relu" else
                "leaky relu keeps a small gradient where relu is 0: --set model.activation=leaky_relu"]
    if facts["shape"] == "layers":
        return [f"{{type: activation, name: {want}}} items in model.layers"]
    if facts["shape"] == "rnn" and facts["cell"] == "vanilla":
        other = "tanh" if facts["activation"] == "relu" else "relu"
        return ["a gated cell: --set model.cell=lstm --set model.activation=null",
                f"another activation: --set model.activation={other}"]
    return []


# --------------------------------------------------------------------------- findings

def _headline(ratios: dict[int, float], beyond) -> int | None:
    """The first step (of first and last) whose ratio is beyond the threshold; None if none is."""
    return next((s for s, r in sorted(ratios.items()) if math.isfinite(r) and beyond(r)), None)


def vanishing(run: RunData, facts: dict) -> Finding | None:
    if run.recurrent:
        return None if facts["per_step"] else _vanishing_in_time(run, facts)
    steps = end_steps(run)
    if len(run.hidden) < 2 or not steps:
        return None
    ratios = {s: delta_ratio(run, s) for s in steps}
    step = _headline(ratios, lambda r: r < VANISH)
    if step is None:
        return None
    r, hidden, at = ratios[step], run.hidden, run.at(step)
    ev = {"step": step, "delta_ratio_first_last_hidden": r,
          **{f"delta_ratio_at_step_{s}": v for s, v in ratios.items()},
          "first_hidden_delta_norm": float(at.delta_norm[hidden[0]]),
          "last_hidden_delta_norm": float(at.delta_norm[hidden[-1]]),
          "fitted_gain_per_layer": fitted_gain(hidden, [at.delta_norm[l] for l in hidden]),
          "depth": facts["depth"]}
    causes, remedies = [], []
    act, depth = facts.get("activation"), facts["depth"]
    if step != steps[0] and math.isfinite(ratios[steps[0]]) and ratios[steps[0]] >= VANISH:
        causes.append(f"it appeared during training (the ratio was {ratios[steps[0]]:.3g} at step {steps[0]}): "
                      "large updates can push units into saturation or kill them")
        if facts.get("lr"):
            remedies.append(f"a lower learning rate: --set train.lr={num(facts['lr'] / 10)}")
    if act in SATURATING:
        causes.append(f"a saturating activation ({act}) in a {depth}-layer net")
    if act == "sigmoid":
        ev.update(sigmoid_derivative_max=0.25, sigmoid_bound_over_net=0.25 ** (depth - 1))
        causes.append(f"sigmoid's derivative is at most 0.25, so {depth - 1} layers can pass at most "
                      f"0.25^{depth - 1} = {0.25 ** (depth - 1):.1e} of the gradient")
    frac = at.frac_dead.reindex(hidden).dropna()
    dead = [int(l) for l, v in frac.items() if v > DEAD]
    if dead:
        causes.append(f"dead relu units (more than {DEAD:.0%} in {len(dead)} layer(s), see dead_units)")
        remedies += activation_remedies(facts, "leaky_relu")
    if "init_std" in facts:
        ev.update(init_std=facts["init_std"], prescribed_std=facts["prescribed_std"])
        if facts["init_std"] < 0.7 * facts["prescribed_std"]:
            causes.append(f"init std {facts['init_std']:.3g} is {facts['init_std'] / facts['prescribed_std']:.2g}x "
                          f"the {facts['prescribed_std']:.3g} that {facts['prescribed']} prescribes for {act}")
    remedies += init_remedies(facts, "vanishing")
    if act in SATURATING:
        remedies += activation_remedies(facts, "relu")
    remedies += structure_remedies(facts, "vanishing")
    layer = crossing(run, step, below=True)
    message = (f"delta_norm of hidden layer {hidden[0]} is {r:.2e} of layer {hidden[-1]}'s at step {step}"
               f" (below {VANISH:g} from layer {layer} down)")
    if causes:
        message += "; likely cause: " + "; ".join(causes)
    return Finding("vanishing", layer, message, ev, remedies)


def _vanishing_in_time(run: RunData, facts: dict) -> Finding | None:
    ratios = {s: time_ratio(run, s) for s in end_steps(run)}
    step = _headline({s: v[0] for s, v in ratios.items()}, lambda r: r < VANISH)
    if step is None:
        return None
    r, T, layer = ratios[step]
    t = run.times[(run.times.step == step) & (run.times.layer == layer)].sort_values("t").tail(T)
    ev = {"step": step, "T": T, "time_ratio_first_last": r,
          "fitted_gain_per_step": fitted_gain(list(-t.lag), list(t.grad_norm))}
    remedies = [*structure_remedies(facts, "vanishing"), *init_remedies(facts, "vanishing"),
                "shorter sequences first, then longer (curriculum)"]
    cell = facts.get("cell", "recurrent")
    msg = (f"through time: ||dL/dh_1|| is {r:.2e} of ||dL/dh_T|| over T = {T} steps at step {step} "
           f"(layer {layer}, {cell} cell)")
    if truncation(run):
        msg = msg.replace("||dL/dh_1||", f"||dL/dh_(T-{T - 1})||") + ", within the last truncated-BPTT chunk"
    return Finding("vanishing", layer, msg, ev, remedies)


def _explosion_at_init(run: RunData, facts: dict, ev: dict, reasons: list) -> tuple[int | None, bool]:
    """The layer (or time) ratio above EXPLODE; (layer, present at the first logged step)."""
    steps = end_steps(run)
    if not steps:
        return None, False
    if run.recurrent:
        if facts["per_step"]:
            return None, False
        ratios = {s: time_ratio(run, s) for s in steps}
        step = _headline({s: v[0] for s, v in ratios.items()}, lambda r: r > EXPLODE)
        if step is None:
            return None, False
        r, T, layer = ratios[step]
        ev.update(step=step, time_ratio_first_last=r, T=T)
        reasons.append(f"||dL/dh_1|| is {r:.2e} times ||dL/dh_T|| over T = {T} steps at step {step}")
        return layer, step == steps[0]
    if len(run.hidden) < 2:
        return None, False
    ratios = {s: delta_ratio(run, s) for s in steps}
    step = _headline(ratios, lambda r: r > EXPLODE)
    if step is None:
        return None, False
    ev.update(step=step, delta_ratio_first_last_hidden=ratios[step])
    reasons.append(f"delta_norm of hidden layer {run.hidden[0]} is {ratios[step]:.2e} times layer "
                   f"{run.hidden[-1]}'s at step {step}")
    return crossing(run, step, below=False), step == steps[0]


def exploding(run: RunData, facts: dict) -> Finding | None:
    ev, reasons = {}, []
    layer, at_init = _explosion_at_init(run, facts, ev, reasons)
    g = global_norms(run)
    grew = False
    if len(g) >= 8:
        k = max(1, len(g) // 5)
        growth = float(np.median(g[-k:]) / np.median(g[:k]))
        if growth > GROWTH:
            grew = True
            ev["global_norm_growth"] = growth
            reasons.append(f"the global gradient norm grew {growth:.3g}x from the first to the last fifth of the run")
    loss = run.metrics.loss.to_numpy(dtype=float)
    if len(loss) > 1 and math.isfinite(loss[0]) and loss[0] > 0:
        later = loss[1:][np.isfinite(loss[1:])]
        if len(later) and later.max() > SPIKE * loss[0]:
            grew = True
            ev.update(loss_first=float(loss[0]), loss_max=float(later.max()))
            reasons.append(f"the loss rose to {later.max():.3g}, {later.max() / loss[0]:.3g}x its first value")
    swings = oscillation(loss)
    if swings is not None:
        ev["loss_swings"] = swings
        reasons.append(f"the loss oscillates: {swings:.0%} of steps change it by more than 2x, up and down, "
                       "without progress")
    diverged = run.summary.get("status") == "diverged" or not np.isfinite(run.metrics.grad_norm.to_numpy(float)).all()
    if diverged:
        at, where = run.summary.get("diverged_at"), run.summary.get("diverged_where")
        ev.update(diverged_at=at, diverged_layer=run.summary.get("diverged_layer"), diverged_where=where)
        reasons.append(f"NaN/Inf at step {at}" + (f", first in layer {run.summary.get('diverged_layer')} ({where})"
                                                     if where else ""))
        layer = layer if layer is not None else run.summary.get("diverged_layer")
        at_init = at_init or at == 0
    if not reasons:
        return None
    if len(g):
        ev["global_norms"] = norm_spread(g)
    remedies = _exploding_remedies(run, facts, ev, at_init, grew or diverged or swings is not None)
    return Finding("exploding", layer, "; ".join(reasons), ev, remedies)


def _exploding_remedies(run: RunData, facts: dict, ev: dict, at_init: bool, unstable: bool) -> list[str]:
    """Init first when the explosion is there before any update; clipping and the learning rate when
    training itself blows up (a ratio between layers is a property of the weights, not of the step size)."""
    remedies = []
    if at_init:
        remedies += init_remedies(facts, "exploding") or ["a smaller init scale (gain or identity scale at most 1)"]
    clip = suggest_clip(run, grew=unstable)
    ev["suggested_clip"] = clip
    if clip is not None:
        current = facts.get("clip")
        if current is None:
            source = "before they grew" if unstable else "over the run"
            cause = " (it caps each step; the init is the cause)" if at_init else ""
            remedies.append(f"gradient clipping by global norm{cause}; pick the highest threshold that tames "
                            f"the curve of the norm; the median of the logged norms {source} is {clip:.3g}: "
                            f"--set train.clip={num(clip)}")
        elif unstable:
            ev["clip_threshold"] = current
            remedies.append(f"a lower clipping threshold than {current:g}: --set train.clip={num(current / 10)}")
    if facts.get("lr") and unstable and not (at_init and run.summary.get("diverged_at") == 0):
        remedies.append(f"a lower learning rate: --set train.lr={num(facts['lr'] / 10)}")
    if facts.get("shape") == "rnn" and not facts.get("truncate") and (facts.get("T") or 0) > 20:
        remedies.append("truncated BPTT (Williams & Peng 1990): --set train.bptt.truncate=20")
    return remedies


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
    remedies = activation_remedies(facts, "leaky_relu")
    if facts.get("bias_init", 0) < 0:
        ev["bias_init"] = facts["bias_init"]
        remedies.append(f"bias_init {facts['bias_init']:g} pushes units below 0 from the start: --set model.bias_init=0")
    remedies += init_remedies(facts)
    if facts.get("lr"):
        remedies.append(f"a lower learning rate (a large step can kill a unit for good): "
                        f"--set train.lr={num(facts['lr'] / 10)}")
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
    remedies = []
    if facts.get("shape") == "stack" and not facts["batchnorm"]:
        remedies.append("batch norm keeps pre-activations near 0: --set model.batchnorm=true")
    elif facts.get("shape") == "layers":
        remedies.append("a {type: batchnorm} item before each activation item of model.layers")
    if facts.get("init_std") and facts["init_std"] > 1.4 * facts["prescribed_std"]:
        ev.update(init_std=facts["init_std"], prescribed_std=facts["prescribed_std"])
    remedies += init_remedies(facts)
    remedies += activation_remedies(facts, "relu")
    msg = (f"{len(over)} hidden layer(s) have more than {SATURATED:.0%} of their units saturated "
           f"(derivative below 5% of its maximum) at step {step} (layer {first}: {over[first]:.0%})")
    return Finding("saturation", first, msg, ev, remedies)


def healthy(run: RunData, facts: dict) -> Finding:
    steps = end_steps(run)
    ev: dict = {}
    if run.recurrent:
        for s in steps:
            ev[f"time_ratio_at_step_{s}"] = time_ratio(run, s)[0]
        what = "||dL/dh_1|| / ||dL/dh_T||"
        if truncation(run):
            T = time_ratio(run, steps[0])[1] if steps else 0
            what += f" over the last truncated-BPTT chunk ({T} step(s) back from T)"
    else:
        for s in steps:
            ev[f"delta_ratio_at_step_{s}"] = delta_ratio(run, s)
        what = "delta_norm ratio first/last hidden layer"
        if steps:
            at = run.at(steps[0])
            ev["fitted_gain_per_layer"] = fitted_gain(run.hidden, [at.delta_norm[l] for l in run.hidden])
    shown = ", ".join(f"{v:.3g} at step {k.rsplit('_', 1)[1]}" for k, v in ev.items() if "_at_step_" in k)
    message = f"{what} {shown}; no layer dead or saturated"
    if run.recurrent and facts["per_step"]:
        ev = {}
        message = ("a loss at every time step: ||dL/dh_1|| holds step 1's own loss, so the ratio through time "
                   "does not show the long-range gradient (time_grad_norms.csv has it per step); no layer dead "
                   "or saturated")
    threshold = run.clip_threshold()
    if threshold is not None and len(run.metrics):
        clipped = int(run.metrics.clipped.sum())
        ev.update(clip_threshold=threshold, clipped_steps=clipped, logged_steps=len(run.metrics))
        message += f"; clipping at {threshold:g} acted on {clipped} of {len(run.metrics)} logged steps"
    return Finding("healthy", None, message, ev, [])


def diagnose(run: RunData) -> list[Finding]:
    """Every finding that applies; 'healthy' when none does; nothing before the first logged step."""
    if run.layers.empty:
        return []
    facts = model_facts(run)
    found = [f(run, facts) for f in (vanishing, exploding, dead_units, saturation)]
    found = [f for f in found if f is not None]
    return found or [healthy(run, facts)]

