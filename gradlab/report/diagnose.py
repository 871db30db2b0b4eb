"""The diagnosis of a run, judged over the whole run and saying when.

Findings come in this order: what is wrong at the end of the run (exploding, vanishing, dead units,
saturation, or not learning while the gradients look fine), then ``healthy`` for a run that learned well
(:func:`learned_well`), then notes that are not failures: a loss spike the run recovered from (``spike``) and a
problem at initialisation that was gone by the end (cured by training when the run learned well; an explosion
at initialisation in a run that did not stays a problem). Each finding carries the numbers behind it (``evidence``, with
``when`` and ``step``) and remedies as ``--set`` options valid for this config, the one most likely
to work first.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ..nn.init import expected_std
from .load import RunData
from .progress import SPIKE, Progress, learning_steps, oscillation, progress, spikes
from .theory import SATURATING, fitted_gain, init_vs_prescribed, layer_names, prescribed

VANISH = 1e-3  # delta_norm of the first hidden layer below this fraction of the last's
EXPLODE = 1e3
DEAD = 0.5  # fraction of a layer's units
SATURATED = 0.5
GROWTH = 100.0  # global norm in the last fifth of the run over the first fifth
UPDATE_RATIO = 1e-3  # ||lr * update|| / ||weights|| per step (CS231n's rule of thumb: about 1e-3)
RNN_CLIP = 1.0  # the threshold of Pascanu et al. 2013's recurrent experiments
WELL = 0.5  # learned well: accuracy above chance by this share of 1 - chance (else the loss below this share of
# min(first loss, chance)); only such a run is healthy, and only there is a problem gone by the end cured by training

KINDS = ("vanishing", "exploding", "dead_units", "saturation", "not_learning", "spike", "healthy")
PROBLEMS = ("exploding", "vanishing", "dead_units", "saturation", "not_learning")  # headline order


@dataclass
class Finding:
    kind: str  # one of KINDS
    layer: int | None  # where it applies (the layer where it starts, or the first layer affected)
    message: str
    evidence: dict = field(default_factory=dict)  # the numbers; 'when', 'step' and 'at_end' say when
    remedies: list[str] = field(default_factory=list)  # "what: --set key=value [--set ...]", best first

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def at_end(self) -> bool:
        """Still there at the end of the run (a problem), not cured on the way (a note)."""
        return bool(self.evidence.get("at_end", True))


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


def delta_ratios(run: RunData) -> pd.Series:
    """delta_ratio at every logged step with finite statistics, by step."""
    steps = _finite_steps(run)
    table = run.layers.pivot_table(index="step", columns="layer", values="delta_norm", aggfunc="first")
    first, last = table[run.hidden[0]].astype(float), table[run.hidden[-1]].astype(float)
    return (first / last.where(last > 0)).reindex(steps)


def truncation(run: RunData) -> int | None:
    bptt = (run.raw.get("train") or {}).get("bptt")
    return int(bptt["truncate"]) if isinstance(bptt, dict) and bptt.get("truncate") else None


def _full_column(times: pd.DataFrame) -> str:
    """full_grad_norm (the untruncated gradient) where the run logged it, else grad_norm."""
    if "full_grad_norm" in times.columns and times.full_grad_norm.notna().any():
        return "full_grad_norm"
    return "grad_norm"


def _top_times(run: RunData, step: int) -> pd.DataFrame:
    t = run.times[run.times.step == step]
    return t[t.layer == t.layer.max()].sort_values("t") if not t.empty else t


def time_ratio(run: RunData, step: int) -> tuple[float, int, int]:
    """(||dL/dh_1|| / ||dL/dh_T||, T, layer) of the top recurrent layer at ``step``, over the full sequence
    (full_grad_norm, also under truncated BPTT). A run logged before that column existed has only the
    truncated norms: the ratio is then over the last chunk, the only one the gradient reaches."""
    t = _top_times(run, step)
    if t.empty:
        return math.nan, 0, 0
    layer, column = int(t.layer.iloc[0]), _full_column(run.times)
    k = truncation(run)
    if k and column == "grad_norm":  # chunks start at t = 1, k + 1, 2k + 1, ...
        t = t[t.t > k * ((len(t) - 1) // k)]
        if len(t) < 2:
            return math.nan, len(t), layer
    return _ratio(t[column].iloc[0], t[column].iloc[-1]), len(t), layer


def time_ratios(run: RunData) -> pd.Series:
    steps = _finite_steps(run)
    return pd.Series({s: time_ratio(run, s)[0] for s in steps}, dtype=float)


def what_truncation_hides(run: RunData, step: int) -> tuple[str, dict]:
    """With truncated BPTT: how many of the T steps the loss at the last step reaches, and how much of
    the full-sequence gradient reaches the steps before that chunk. ('', {}) without truncation."""
    k = truncation(run)
    t = _top_times(run, step) if run.recurrent else None
    if not k or t is None or t.empty:
        return "", {}
    T = len(t)
    reach = T - k * ((T - 1) // k)  # the last chunk: t = T - reach + 1 .. T
    ev = {"truncate": k, "T": T, "steps_the_truncated_gradient_reaches": reach}
    text = (f"truncated BPTT (k = {k}) cuts the gradient at every chunk's start, so the loss at the last step "
            f"trains on the last {reach} of T = {T} steps only; any dependence on steps 1..{T - reach} is never "
            "trained")
    if _full_column(run.times) == "full_grad_norm":
        g = t.full_grad_norm.to_numpy(dtype=float)
        before = _ratio(g[T - reach - 1], g[-1]) if T > reach else math.nan
        ev.update(full_time_ratio_first_last=_ratio(g[0], g[-1]), full_ratio_before_last_chunk=before)
        text += (f" (the full-sequence gradient, not used for training, reaches step {T - reach} with "
                 f"{before:.2g} and step 1 with {ev['full_time_ratio_first_last']:.2g} of ||dL/dh_T|| at step {step})")
    return text, ev


def crossing(run: RunData, step: int, below: bool) -> int:
    """The highest hidden layer whose delta_norm is beyond the threshold relative to the last hidden layer:
    where the vanishing (or explosion) has become severe, counting down from the top."""
    at, hidden = run.at(step), run.hidden
    rel = at.delta_norm.reindex(hidden) / at.delta_norm.get(hidden[-1])
    beyond = rel[rel < VANISH] if below else rel[rel > EXPLODE]
    return int(beyond.index.max()) if len(beyond) else hidden[0]


def when(series: pd.Series, bad: pd.Series) -> dict | None:
    """When a condition held over the logged steps: {'when', 'step', 'at_end'} or None if never.
    ``step`` is the last step when it lasts to the end, else the first step it held."""
    if not len(series) or not bad.any():
        return None
    steps = list(series.index)
    flags = list(bad.to_numpy(dtype=bool))
    if flags[-1]:
        start = len(flags) - 1
        while start > 0 and flags[start - 1]:
            start -= 1
        text = "from the first logged step to the end" if start == 0 else f"from step {steps[start]} to the end"
        return {"when": text, "step": int(steps[-1]), "since": int(steps[start]), "at_end": True}
    first = flags.index(True)
    gone = next(i for i in range(first, len(flags)) if not flags[i])
    text = (f"at initialisation (step {steps[0]}), cured by training by step {steps[gone]}" if first == 0
            else f"from step {steps[first]}, gone by step {steps[gone]}")
    return {"when": text, "step": int(steps[first]), "gone_by": int(steps[gone]), "at_end": False}


def global_norms(run: RunData) -> np.ndarray:
    g = run.metrics.grad_norm.to_numpy(dtype=float)
    return g[np.isfinite(g) & (g > 0)]


def suggest_clip(run: RunData) -> tuple[float, str]:
    """(threshold, where it comes from): the median global norm of the steps that were still learning
    (Pascanu et al. 2013: the average norm over many updates), not of the explosion; 1, their
    recurrent experiments' threshold, for recurrent nets or when no logged step lowered the loss."""
    g = learning_steps(run)
    if run.recurrent or not len(g):
        why = "recurrent nets" if run.recurrent else "no logged step lowered the loss before the blow-up"
        return RNN_CLIP, f"{RNN_CLIP:g}, the threshold of Pascanu et al. 2013 ({why})"
    clip = float(np.median(g))
    return clip, f"{clip:.3g}, the median norm of the {len(g)} logged step(s) that still lowered the loss"


def update_ratio(run: RunData, facts: dict, step: int | None = None) -> float | None:
    """||lr * update|| / ||weights|| at ``step`` (default: the first logged step): lr * ||g|| for SGD,
    lr * sqrt(number of weights) for Adam, whose step is about lr per weight."""
    lr = facts.get("lr")
    if not lr or run.grads.empty or "weight_norm" not in run.grads.columns:
        return None
    step = int(run.grads.step.min()) if step is None else step
    at = run.grads[run.grads.step == step]
    w = float(np.sqrt(np.sum(at.weight_norm.to_numpy(dtype=float) ** 2)))
    if facts.get("optimizer") == "adam":
        size = facts.get("n_weights")
        u = lr * math.sqrt(size) if size else None
    else:
        g = float(np.sqrt(np.sum(at.grad_norm.to_numpy(dtype=float) ** 2)))
        u = lr * g
    return _ratio(u, w) if u is not None else None


def norm_spread(g: np.ndarray) -> dict:
    q = np.percentile(g, [0, 10, 50, 90, 100])
    return dict(zip(("min", "p10", "median", "p90", "max"), map(float, q)))


# --------------------------------------------------------------------------- the model, from its config

def model_facts(run: RunData) -> dict:
    """What the remedies depend on: the model's shape (a depth x width stack, a layers list, or a recurrent
    net), activation, init std against the std the activation wants, clipping, optimizer, learning rate."""
    cfg = run.config
    facts = {"depth": len(run.hidden), "shape": None, "per_step": bool(run.summary.get("per_step"))}
    if cfg is None:
        return facts
    clip = cfg.train.clip
    facts.update(lr=cfg.train.lr, optimizer=cfg.train.optimizer.name, loss=cfg.loss, dtype=str(cfg.train.dtype),
                 clip=clip.threshold if clip is not None and clip.mode == "norm" else None,
                 truncate=cfg.train.bptt.truncate if cfg.train.bptt else None, T=getattr(cfg.data, "T", None),
                 standardize=getattr(cfg.data, "standardize", None), n_weights=_n_weights(run))
    model = cfg.model
    if model.kind == "rnn":
        rec = model.recurrent_init
        facts.update(shape="rnn", cell=model.cell, activation=model.activation, bias_init=model.bias_init,
                     forget_bias=model.forget_bias,
                     recurrent=rec.scheme, recurrent_gain=rec.gain * (rec.scale if rec.scheme == "identity" else 1.0))
        return facts
    facts["bias_init"] = model.bias_init
    if model.kind == "cnn":
        facts.update(_cnn_facts(run, model))
        return facts
    if model.layers is not None:
        facts["shape"] = "layers"
        return facts
    std, scheme, want = init_vs_prescribed(model)
    facts.update(shape="stack", depth=model.depth, activation=model.activation.name, init=model.init.scheme,
                 init_std=std, prescribed=scheme, prescribed_std=want, residual=bool(model.block),
                 batchnorm=bool(model.batchnorm))
    return facts


def _cnn_facts(run: RunData, model) -> dict:
    """A conv net's: by stages or a layers list, its activation, batch norm and residual blocks, and the init std
    against the one the activation prescribes for the median conv weight (each judged by its own fans)."""
    from .lint import _any, conv_weights

    shapes = run.init_shapes or {}
    first = next((s for s in shapes.values() if len(s) == 4), None)
    weights = conv_weights(model, first[2] if first else None)
    facts = {"shape": "cnn", "stages": model.layers is None, "init": model.init.scheme,
             "residual": _any(model, "residual"), "batchnorm": _any(model, "batchnorm"),
             "activation": model.activation.name if model.layers is None else
             next((i.name for i in model.layers if i.type == "activation"), "linear"),
             "stage_depth": model.depth}
    rows = []
    for name, shape, act in weights:
        fan_in, fan_out = shape[0] * shape[1] * shape[2], shape[0] * shape[1] * shape[3]
        scheme, want = prescribed(act, fan_in, fan_out)
        rows.append((float(expected_std(model.init, shape)) / want, name, float(expected_std(model.init, shape)),
                     scheme, want))
    if rows:
        _, name, std, scheme, want = sorted(rows)[len(rows) // 2]
        facts.update(init_std=std, prescribed=scheme, prescribed_std=want, weight=name)
    else:
        facts.update(prescribed=facts["init"])
    return facts


def _n_weights(run: RunData) -> int | None:
    return None if run.init_shapes is None else sum(math.prod(shape) for shape in run.init_shapes.values())


# --------------------------------------------------------------------------- remedies, valid for the config

def init_remedies(facts: dict, kind: str = "") -> list[str]:
    """The init the activation wants (stacks; orthogonal for a linear stack), or a recurrent gain of 1 (RNNs)."""
    if facts["shape"] == "stack" and facts["activation"] == "linear" and facts["init"] != "orthogonal":
        return [("orthogonal weights keep every singular value of a linear net's product at 1 (Saxe et al. 2014): "
                 "--set model.init=orthogonal")]
    if facts["shape"] == "stack" and facts["init"] != facts["prescribed"]:
        name = "He" if facts["prescribed"].startswith("he") else "Xavier"
        return [(f"{name} init for {facts['activation']} (std {facts['prescribed_std']:.3g} instead of "
                 f"{facts['init_std']:.3g}): --set model.init={facts['prescribed']}")]
    if facts["shape"] == "layers":
        return ["He init for relu layers, Xavier for tanh/sigmoid: --set model.init=he_normal (or xavier_normal)"]
    if facts["shape"] == "cnn" and facts["init"] != facts["prescribed"] and "init_std" in facts:
        name = "He" if facts["prescribed"].startswith("he") else "Xavier"
        fans = "2/(k^2 C_in)" if name == "He" else "2/(k^2 (C_in + C_out))"
        return [(f"{name} init for {facts['activation']} conv layers, Var(W) = {fans} (std {facts['prescribed_std']:.3g} "
                 f"instead of {facts['init_std']:.3g} for {facts['weight']}): --set model.init={facts['prescribed']}")]
    if facts["shape"] == "rnn":
        if facts["recurrent"] not in ("orthogonal", "identity"):
            return ["an orthogonal recurrent matrix (gain 1, Saxe et al. 2014): --set model.recurrent_init=orthogonal"]
        gain = facts["recurrent_gain"]
        if (gain > 1.0 and kind != "vanishing") or (gain < 1.0 and kind == "vanishing"):
            return [(f"an orthogonal recurrent matrix (gain 1) instead of gain {gain:g}: "
                     "--set model.recurrent_init=orthogonal")]
    return []


def structure_remedies(facts: dict, kind: str) -> list[str]:
    """Residual connections, batch norm, a gated cell: whichever the config can take."""
    out = []
    if facts["shape"] == "stack":
        if not facts["residual"]:
            out.append("residual connections, an identity path for the gradient: --set model.residual=true")
        if not facts["batchnorm"]:
            # BN(aWu) = BN(Wu), but the weight gradient scales by 1/a (Ioffe & Szegedy 2015): with weights
            # far below the prescribed scale every update is far too long, so the init comes with it
            far = facts["init"] != facts["prescribed"] and facts["init_std"] < 0.5 * facts["prescribed_std"]
            out.append("batch norm" + (f" with {facts['prescribed']} weights (batch norm makes the output "
                                       "independent of the weights' scale, not their gradient)" if far else "")
                       + ": --set model.batchnorm=true" + (f" --set model.init={facts['prescribed']}" if far else ""))
    elif facts["shape"] == "layers":
        out.append("a {type: batchnorm} item after each dense item of model.layers")
    elif facts["shape"] == "cnn":
        out += _cnn_structure(facts)
    elif facts["shape"] == "rnn" and facts["cell"] == "lstm" and kind == "vanishing" and facts["forget_bias"] < 3:
        out.append(f"a larger forget-gate bias keeps the cell state over longer lags (sigmoid({facts['forget_bias']:g}) "
                   f"= {1 / (1 + math.exp(-facts['forget_bias'])):.2f} per step at the start): "
                   "--set model.forget_bias=3.0")
    elif facts["shape"] == "rnn" and facts["cell"] == "vanilla":
        out.append("a gated cell (LSTM, Hochreiter & Schmidhuber 1997) carries the gradient over long lags: "
                   "--set model.cell=lstm --set model.activation=null" + _rnn_clip(facts))
        if kind == "vanishing" and facts["activation"] == "tanh":
            out.append("relu with an identity recurrent matrix (IRNN, Le et al. 2015): --set model.activation=relu "
                       "--set model.recurrent_init=identity" + _rnn_clip(facts))
    return out


def _far(facts: dict) -> bool:
    """The init's std is more than 2x from the one the activation prescribes, either way."""
    return ("init_std" in facts and facts["init"] != facts["prescribed"]
            and not 0.5 < facts["init_std"] / facts["prescribed_std"] < 2.0)


def _cnn_lr(facts: dict) -> list[str]:
    """A tenth of the rate, for a conv net whose units the first updates killed (its init near the prescribed
    one): at lr 2.0 a He-initialised conv net ended at 1.12 with its units dead, at 0.2 healthy at 0.28; the
    rate that makes the update 1e-3 of the weights (0.0021) left it at 1.08, and batch norm, residual blocks or
    leaky relu made it explode."""
    lr = facts.get("lr")
    return [f"a tenth of the learning rate, so the first updates do not kill units: --set train.lr={num(lr / 10)}"
            ] if lr else []


def _cnn_structure(facts: dict) -> list[str]:
    """Batch norm and residual blocks for a conv net, by the stage keys or as items of its layers list; in the
    order they did best on a 14-layer plain conv net with a tenth of He's std (final loss 0.014 and 0.11 with He
    weights, against 0.58 for He init alone and 1.10 for the run)."""
    out = []
    # weights far from the prescribed scale, either way, come back to it with batch norm or residual blocks: alone,
    # batch norm ended at 0.11 (std 3.4x He's) and residual blocks diverged, against 0.014 and 0.11 with He weights
    far = _far(facts)
    if not facts["batchnorm"]:
        if facts["stages"]:
            out.append("batch norm over each conv layer's channels" + (
                f" with {facts['prescribed']} weights (batch norm makes the output independent of the weights' "
                "scale, not their gradient, which scales by 1/scale)" if far else "") + ": --set model.batchnorm=true"
                + (f" --set model.init={facts['prescribed']}" if far else ""))
        else:
            out.append("a {type: batchnorm} item after each conv item of model.layers")
    if not facts["residual"]:
        if facts["stages"]:
            depth = facts["stage_depth"]
            even = "" if depth % 2 == 0 else f" --set model.depth={depth + 1}"
            # with weights far below the prescribed scale each block's F(x) is near 0: the net is its first layer
            out.append("residual blocks of two conv layers with an identity shortcut (He et al. 2016)"
                       + (f", with {facts['prescribed']} weights (blocks of weights far from them add almost "
                          "nothing to their input, or blow it up)" if far else "")
                       + f": --set model.residual=true{even}" + (f" --set model.init={facts['prescribed']}" if far else ""))
        else:
            out.append("{type: residual, channels: C} items (two conv layers and a shortcut, He et al. 2016) in "
                       "place of pairs of conv items of model.layers")
    return out


def _rnn_clip(facts: dict) -> str:
    """A recurrent remedy also clips at 1 when the config does not clip yet."""
    return "" if facts.get("clip") else f" --set train.clip={num(RNN_CLIP)}"


def activation_remedies(facts: dict, want: str) -> list[str]:
    """Switch to ``want`` (leaky_relu, or relu for saturation) where the config can."""
    if facts["shape"] == "stack":
        init = "" if want == "leaky_relu" or facts["init"].startswith("he") else " --set model.init=he_normal"
        return [f"{want}, which does not saturate for positive inputs: --set model.activation={want}{init}"
                if want == "relu" else
                "leaky relu keeps a small gradient where relu is 0: --set model.activation=leaky_relu"]
    if facts["shape"] == "layers" or (facts["shape"] == "cnn" and not facts["stages"]):
        return [f"{{type: activation, name: {want}}} items in model.layers"]
    if facts["shape"] == "cnn":  # leaky relu did not revive a conv net whose init was the cause: not offered
        init = "" if facts["init"].startswith("he") else " --set model.init=he_normal"
        return [f"{want}, which does not saturate for positive inputs: --set model.activation={want}{init}"
                ] if want == "relu" else []
    if facts["shape"] == "rnn" and facts["cell"] == "vanilla":
        other = "tanh" if facts["activation"] == "relu" else "relu"
        return ["a gated cell: --set model.cell=lstm --set model.activation=null" + _rnn_clip(facts),
                f"another activation: --set model.activation={other}"]
    return []


def lr_factor(run: RunData, facts: dict) -> float:
    """UPDATE_RATIO over the measured ||lr * update|| / ||weights||: what the learning rate must be
    multiplied by for the rule of thumb (nan when it cannot be measured)."""
    u = update_ratio(run, facts)
    return UPDATE_RATIO / u if u and math.isfinite(u) else math.nan


def lr_remedy(run: RunData, facts: dict, direction: str) -> list[str]:
    """A learning rate scaled to the measured gradient norm: the one that makes ||lr * update|| / ||weights||
    about UPDATE_RATIO at the first logged step (CS231n's rule of thumb), when it lies in ``direction``
    ('up' or 'down') from the current one by more than 3x; else a tenth of it ('down') or nothing ('up')."""
    lr = facts.get("lr")
    if not lr:
        return []
    u = update_ratio(run, facts)
    factor = lr_factor(run, facts)
    ok = math.isfinite(factor) and (factor > 3 if direction == "up" else factor < 1 / 3)
    if direction == "up" and not ok:
        return []
    new = lr * factor if ok else lr * 0.1
    why = (f"the update is {u:.2g} of the weights' norm per step; about {UPDATE_RATIO:g} is the rule of thumb"
           if u and math.isfinite(u) else "")
    word = "higher" if direction == "up" else "lower"
    return [f"a {word} learning rate" + (f" ({why})" if why else "") + f": --set train.lr={num(new)}"]


def clip_remedy(run: RunData, facts: dict) -> list[str]:
    current = facts.get("clip")
    clip, why = suggest_clip(run)
    if current is not None and current <= clip:
        clip, why = current / 10, f"a tenth of the current {current:g}"
    return [f"gradient clipping by global norm (g <- g * threshold / ||g||) at {why}: --set train.clip={num(clip)}"]


def _ordered(remedies: list[str]) -> list[str]:
    """Drop repeats, keep the order."""
    return list(dict.fromkeys(remedies))


# --------------------------------------------------------------------------- findings

def is_problem(f: Finding) -> bool:
    """A failure to headline: a problem kind, still there at the end, and not a ratio the run learned despite."""
    return f.kind in PROBLEMS and f.at_end and not f.evidence.get("learned_regardless")


def learned_well(prog: Progress) -> bool:
    """Learned, and far from chance: for classification the accuracy above chance by WELL of the room left
    (1 - chance), else the final loss below WELL of min(first loss, chance). A 56-layer plain conv net ending
    at 0.8 of chance with accuracy 0.26 (chance 0.10) learned, but not well: what went wrong on its way was
    not cured."""
    if not prog.learned:
        return False
    if prog.accuracy is not None and prog.chance_accuracy is not None:
        return prog.accuracy > prog.chance_accuracy + WELL * (1.0 - prog.chance_accuracy)
    return prog.end < WELL * prog.reference


def _note(finding: Finding, prog: Progress, cured: bool) -> Finding:
    """A finding that is not a failure: cured by training (gone by the end of a run that learned well; of one
    that did not, only gone), or there at the end of a run that learned anyway."""
    if cured and learned_well(prog):
        finding.message += f"; training cured it ({prog.describe()})"
    elif cured:
        finding.evidence["learned_well"] = False
        finding.message += f"; it went away, but the run did not learn well ({prog.describe()})"
    else:
        finding.evidence["learned_regardless"] = True
        finding.message += f"; the run learned regardless ({prog.describe()})"
    finding.remedies = []
    return finding


def vanishing(run: RunData, facts: dict, prog: Progress) -> Finding | None:
    if run.recurrent:
        return None if facts["per_step"] else _vanishing_in_time(run, facts, prog)
    if len(run.hidden) < 2 or not _finite_steps(run):
        return None
    series = delta_ratios(run)
    w = when(series, series < VANISH)
    if w is None:
        return None
    step, hidden = w["step"], run.hidden
    r, at = float(series[step]), run.at(step)
    first, last = series.index[0], series.index[-1]
    ev = {**w, "delta_ratio_first_last_hidden": r, f"delta_ratio_at_step_{first}": float(series[first]),
          f"delta_ratio_at_step_{last}": float(series[last]),
          "first_hidden_delta_norm": float(at.delta_norm[hidden[0]]),
          "last_hidden_delta_norm": float(at.delta_norm[hidden[-1]]),
          "fitted_gain_per_layer": fitted_gain(hidden, [at.delta_norm[l] for l in hidden]),
          "depth": facts["depth"], **prog.evidence()}
    causes, remedies = [], []
    act, depth = facts.get("activation"), facts["depth"]
    if w["at_end"] and w["since"] != first:
        causes.append(f"it appeared during training (the ratio was {series[first]:.3g} at step {first}): "
                      "large updates can push units into saturation or kill them")
        if facts.get("shape") != "cnn":
            remedies += lr_remedy(run, facts, "down")
        elif not _far(facts):  # with an init far off, the init is the cause (and a scaled rate did not help)
            remedies += _cnn_lr(facts)
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
    if "init_std" in facts:
        ev.update(init_std=facts["init_std"], prescribed_std=facts["prescribed_std"])
        if facts["init_std"] < 0.7 * facts["prescribed_std"]:
            causes.append(f"init std {facts['init_std']:.3g} is {facts['init_std'] / facts['prescribed_std']:.2g}x "
                          f"the {facts['prescribed_std']:.3g} that {facts['prescribed']} prescribes for {act}")
    # structure first: a better init alone does not rescue a deep sigmoid stack; in a conv net batch norm and
    # residual blocks, with He weights, did better than He alone
    if facts.get("shape") == "cnn" and remedies and not _far(facts):
        pass  # units the updates killed: batch norm, residual blocks and leaky relu made that conv net explode
    elif act == "sigmoid" or facts.get("shape") == "cnn":
        remedies += structure_remedies(facts, "vanishing") + init_remedies(facts, "vanishing")
    else:
        remedies += init_remedies(facts, "vanishing")
        remedies += activation_remedies(facts, "leaky_relu") if dead else []
        remedies += structure_remedies(facts, "vanishing")
    if act in SATURATING:
        remedies += activation_remedies(facts, "relu")
    layer = crossing(run, w.get("since", step), below=True)  # where it starts, at the step it starts
    message = (f"{w['when']}: delta_norm of hidden layer {hidden[0]} is {r:.2e} of layer "
               f"{hidden[-1]}'s at step {step} (below {VANISH:g} from layer {layer} down at step "
               f"{w.get('since', step)})")
    if causes:
        message += "; likely cause: " + "; ".join(causes)
    finding = Finding("vanishing", layer, message, ev, _ordered(remedies))
    if not w["at_end"]:
        return _note(finding, prog, cured=True)
    return _note(finding, prog, cured=False) if learned_well(prog) else _not_learned(finding, prog)


def _not_learned(finding: Finding, prog: Progress) -> Finding:
    if math.isfinite(prog.end):
        finding.message += f"; the run did not learn{' well' if prog.learned else ''} ({prog.describe()})"
    return finding


def _vanishing_in_time(run: RunData, facts: dict, prog: Progress) -> Finding | None:
    series = time_ratios(run)
    w = when(series, series < VANISH)
    if w is None:
        return None
    step = w["step"]
    r, T, layer = time_ratio(run, step)
    t = _top_times(run, step)
    column = _full_column(run.times)
    ev = {**w, "T": T, "time_ratio_first_last": r,
          "fitted_gain_per_step": fitted_gain(list(-t.lag), list(t[column])), **prog.evidence()}
    remedies = [*structure_remedies(facts, "vanishing"), *init_remedies(facts, "vanishing"),
                "shorter sequences first, then longer (curriculum)"]
    cell = facts.get("cell", "recurrent")
    msg = (f"through time, {w['when']}: ||dL/dh_1|| is {r:.2e} of ||dL/dh_T|| over T = {T} steps at "
           f"step {step} (layer {layer}, {cell} cell)")
    if truncation(run) and column == "grad_norm":
        msg = msg.replace("||dL/dh_1||", f"||dL/dh_(T-{T - 1})||") + ", within the last truncated-BPTT chunk"
    hidden, hidden_ev = what_truncation_hides(run, step)
    if hidden:
        msg += f"; {hidden}"
        ev.update(hidden_ev)
        remedies.insert(0, "full BPTT, so the gradient reaches every step: --set train.bptt=null")
    finding = Finding("vanishing", layer, msg, ev, _ordered(remedies))
    if not w["at_end"]:
        return _note(finding, prog, cured=True)
    return _note(finding, prog, cured=False) if learned_well(prog) else _not_learned(finding, prog)


def _ratio_explosion(run: RunData, facts: dict) -> tuple[dict | None, int | None, str]:
    """When the layer (or time) ratio was above EXPLODE: (when, layer, what was measured)."""
    if run.recurrent:
        if facts["per_step"]:
            return None, None, ""
        series = time_ratios(run)
        w = when(series, series > EXPLODE)
        if w is None:
            return None, None, ""
        r, T, layer = time_ratio(run, w["step"])
        return ({**w, "time_ratio_first_last": r, "T": T}, layer,
                f"||dL/dh_1|| is {r:.2e} times ||dL/dh_T|| over T = {T} steps at step {w['step']} ({w['when']})")
    if len(run.hidden) < 2 or not _finite_steps(run):
        return None, None, ""
    series = delta_ratios(run)
    w = when(series, series > EXPLODE)
    if w is None:
        return None, None, ""
    r = float(series[w["step"]])
    ends = {f"delta_ratio_at_step_{s}": float(series[s]) for s in (series.index[0], series.index[-1])}
    text = (f"delta_norm of hidden layer {run.hidden[0]} is {r:.2e} times layer {run.hidden[-1]}'s at step "
            f"{w['step']} ({w['when']})")
    return {**w, "delta_ratio_first_last_hidden": r, **ends}, crossing(run, w.get("since", w["step"]), below=False), text


def exploding(run: RunData, facts: dict, prog: Progress) -> Finding | None:
    """Exploding at the end: NaN/Inf, a loss that rose and stayed up, a growing norm, oscillation, or a
    layer/time ratio above EXPLODE at the end. A ratio only at initialisation is a note; spikes the
    run recovered from are ``spike`` notes (see :func:`spike_notes`)."""
    ev, reasons = {}, []
    ratio_w, layer, ratio_text = _ratio_explosion(run, facts)
    first_step = (_finite_steps(run) or [None])[0]
    at_init = ratio_w is not None and ratio_w.get("since", ratio_w["step"]) == first_step
    if ratio_w is not None and ratio_w["at_end"]:
        ev.update(ratio_w)
        reasons.append(ratio_text)
    g = global_norms(run)
    if len(g) >= 8:
        k = max(1, len(g) // 5)
        growth = float(np.median(g[-k:]) / np.median(g[:k]))
        if growth > GROWTH:
            ev["global_norm_growth"] = growth
            reasons.append(f"the global gradient norm grew {growth:.3g}x from the first to the last fifth of the run")
    kept = [s for s in spikes(run) if not s[3]]
    if kept:
        step, value, factor, _ = kept[0]
        ev.update(step=step, loss_max=value, spike_factor=factor)
        reasons.append(f"the loss rose to {value:.3g} at step {step}, {factor:.3g}x the losses before it, and did not "
                       "come back")
    elif math.isfinite(prog.end) and prog.first > 0 and prog.end > SPIKE * prog.first:
        ev.update(loss_end=prog.end, loss_first=prog.first)
        reasons.append(f"the run ended at loss {prog.end:.3g}, {prog.end / prog.first:.3g}x its first value")
    swings = oscillation(run.metrics.loss.to_numpy(dtype=float))
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
        ev.setdefault("step", at)
    if len(g):
        ev["global_norms"] = norm_spread(g)
    if diverged and run.summary.get("diverged_at") == 0 and run.summary.get("diverged_where") == "forward":
        # the first forward pass overflowed, before any gradient or update: clipping and the rate cannot help
        reasons[-1] += (": the first forward pass overflowed, before any update, so neither clipping nor the "
                        "learning rate can help")
        ev.update(prog.evidence(), at_end=True, when="at initialisation (step 0), in the forward pass")
        return Finding("exploding", layer, "; ".join(reasons), ev, _forward_remedies(facts))
    if not reasons:
        if ratio_w is None:
            return None
        if at_init and not learned_well(prog):
            return _not_cured(run, facts, prog, layer, {**ev, **ratio_w}, ratio_text)
        finding = Finding("exploding", layer, ratio_text, {**ev, **ratio_w}, [])
        return _note(finding, prog, cured=True)
    ev.update(prog.evidence(), at_end=True, when=ev.get("when") or "at the end")
    remedies = _exploding_remedies(run, facts, ev, at_init)
    return Finding("exploding", layer, "; ".join(reasons), ev, remedies)


def weight_norms(run: RunData) -> pd.Series:
    """The norm of all weight matrices (the params named W, W_a, ...; every param where none is) by logged step."""
    g = run.grads
    if g.empty or "weight_norm" not in g.columns:
        return pd.Series(dtype=float)
    w = g[g.param.astype(str).str.rsplit(".", n=1).str[-1].str.startswith("W")]
    w = g if w.empty else w
    sq = w.weight_norm.astype(float) ** 2
    return np.sqrt(sq.groupby(w.step).sum())


def first_update(run: RunData, facts: dict) -> tuple[float, float, float]:
    """(||update||, ||W||, their ratio) at the first logged step: the logged update_norm (lr times the step's
    update) where metrics.csv has it, else lr * ||g||."""
    w = weight_norms(run)
    wn = float(w.iloc[0]) if len(w) else math.nan
    m = run.metrics
    if "update_norm" in m.columns and len(m) and math.isfinite(float(m.update_norm.iloc[0])):
        u = float(m.update_norm.iloc[0])
    else:
        r = update_ratio(run, facts)
        u = r * wn if r is not None else math.nan
    return u, wn, _ratio(u, wn)


def _not_cured(run: RunData, facts: dict, prog: Progress, layer: int | None, ev: dict, ratio_text: str) -> Finding:
    """An explosion at the first logged step of a run that did not learn well: its first updates blew the weights
    up (batch norm then shrinks every later step by the weights' norm, Ioffe & Szegedy 2015, section 3.3) and the
    run never recovered: a problem, with the first update, the weights' growth and the final loss beside chance."""
    u, wn, r = first_update(run, facts)
    w = weight_norms(run)
    finite = w[np.isfinite(w)]
    growth = _ratio(float(finite.iloc[-1]), float(finite.iloc[0])) if len(finite) else math.nan
    ev = {k: v for k, v in ev.items() if k != "gone_by"}  # the ratio fell below EXPLODE as the weights blew up
    ev = {**ev, **prog.evidence(), "learned_well": False, "first_update_norm": u, "first_weight_norm": wn,
          "first_update_ratio": r, "weight_growth": growth, "at_end": True, "cured": False,
          "when": f"at initialisation (step {ev['step']}), not cured"}
    parts = [f"at initialisation (step {ev['step']}), not cured: {ratio_text.split(' (', 1)[0]}"]
    if math.isfinite(r):
        parts.append(f"the first update was {u:.3g}, {r:.3g}x the weights' norm {wn:.3g} "
                     f"(about {UPDATE_RATIO:g} is the rule of thumb)")
    if math.isfinite(growth):
        parts.append(f"the weights ended {growth:.3g}x their initial norm")
    end = [f"the loss ended at {prog.end:.3g}"]
    if prog.chance:
        ev["loss_end_over_chance"] = prog.end / prog.chance
        end.append(f"{prog.end / prog.chance:.2f} of chance {prog.chance:.3g}")
    if prog.accuracy is not None and prog.chance_accuracy is not None:
        end.append(f"accuracy {prog.accuracy:.3g} against chance {prog.chance_accuracy:.3g}")
    parts.append(", ".join(end) + f" (first logged loss {prog.first:.3g}, {prog.steps} steps)")
    return Finding("exploding", layer, "; ".join(parts), ev, _not_cured_remedies(run, facts, ev))


def _not_cured_remedies(run: RunData, facts: dict, ev: dict) -> list[str]:
    """A conv net gets residual blocks, the one remedy that helped: a 46-layer plain conv net with batch norm on
    300 of the 8x8 digits (step-0 ratio 3.2e3, first update 5.9x the weights), 120 steps, ended at 1.51 (healthy)
    with them against 2.09; clipping at 1 ended at 2.59 and at 10 at 2.14, a tenth and a hundredth of the rate at
    2.30 and 2.33, a warm-up over 8 and 60 steps at 6.77 and 2.30: none of those is offered. Other nets, or a conv
    net that has the blocks, get what an explosion at initialisation gets (clipping first)."""
    if facts.get("shape") == "cnn":
        residual = [r.replace("(He et al. 2016)", "(He et al. 2016: a 56-layer plain conv net with batch norm whose "
                              "gradient exploded at step 0 ended at loss 1.84 on the 8x8 digits, the same net with "
                              "the blocks at 0.112, configs/sweep_resnet_depth.yaml)")
                    for r in structure_remedies(facts, "exploding") if "residual" in r]
        if residual:
            return residual
    return _exploding_remedies(run, facts, ev, at_init=True)


def _forward_remedies(facts: dict) -> list[str]:
    """A net whose first forward pass overflows needs activations that stay in range: the prescribed init, then
    batch norm or the structure that carries it (a conv net with std 1e10 overflowed float32 at step 0; clipping at
    1 still overflowed at step 0, He init, and batch norm with it, trained). float64 only when nothing else fits."""
    out = _ordered([*init_remedies(facts, "exploding"), *structure_remedies(facts, "exploding")])
    if not out and facts.get("dtype") == "float32":
        out = ["float64, whose range the activations may fit in: --set train.dtype=float64"]
    return out


def _exploding_remedies(run: RunData, facts: dict, ev: dict, at_init: bool) -> list[str]:
    """Best first: clipping, at the norm of the steps that still learned (or about 1), caps every step
    whatever the cause; then, for recurrent nets, a recurrent matrix of gain 1 and a gated cell; for a
    stack whose layer ratio explodes before any update, the init; then a learning rate scaled to the
    measured norm."""
    clip = clip_remedy(run, facts)
    ev["suggested_clip"] = float(clip[0].rsplit("train.clip=", 1)[1])
    # a conv net that diverged at lr 0.5 ended at chance with the rate scaled to its norm (1.10), at 0.12 clipped
    lr = lr_remedy(run, facts, "down") if facts.get("shape") != "cnn" else []
    if facts.get("shape") == "rnn":
        return _ordered([*clip, *init_remedies(facts, "exploding"), *structure_remedies(facts, "exploding"), *lr])
    if at_init:  # clipping still first: a better init alone can leave the step too long for a deep net
        return _ordered([*clip, *init_remedies(facts, "exploding"), *lr, *structure_remedies(facts, "exploding")])
    return _ordered([*clip, *lr])


def _fraction_finding(run: RunData, column: str, limit: float) -> tuple[int, dict, bool] | None:
    """(step, {layer: fraction}, at the end) for the hidden layers above ``limit`` at the last finite
    logged step, or else at the first one (a state training left)."""
    steps = end_steps(run)
    for step, at_end in ((steps[-1], True), (steps[0], False)) if steps else ():
        frac = run.at(step)[column].reindex(run.hidden).dropna()
        over = {int(l): float(v) for l, v in frac.items() if v > limit}
        if over:
            return step, over, at_end
    return None


def _cured_at(run: RunData, found: tuple[int, dict, bool]) -> dict:
    step, _, at_end = found
    if at_end:
        return {"when": "at the end", "at_end": True}
    return {"when": f"at initialisation (step {step}), gone by the end", "at_end": False}


def dead_units(run: RunData, facts: dict, prog: Progress) -> Finding | None:
    found = _fraction_finding(run, "frac_dead", DEAD)
    if found is None:
        return None
    step, over, at_end = found
    first = min(over)
    ev = {"step": step, "frac_dead": over, "layers_over_half": len(over), "hidden_layers": len(run.hidden),
          **_cured_at(run, found), **prog.evidence()}
    remedies = []
    if facts.get("bias_init", 0) < 0:
        ev["bias_init"] = facts["bias_init"]
        remedies.append(f"bias_init {facts['bias_init']:g} pushes units below 0 from the start: --set model.bias_init=0")
    remedies += init_remedies(facts)
    remedies += activation_remedies(facts, "leaky_relu")
    if facts.get("shape") == "cnn" and _far(facts):  # what revived a conv net's dead units: its init, batch norm with it
        remedies += [r for r in structure_remedies(facts, "dead_units") if "batchnorm" in r]
    elif facts.get("shape") == "cnn":  # an init near the prescribed one: the rate killed them
        remedies += _cnn_lr(facts)
    else:
        remedies += lr_remedy(run, facts, "down")
    msg = (f"{len(over)} of {len(run.hidden)} hidden layers have more than {DEAD:.0%} dead relu units at "
           f"step {step} (layer {first}: {over[first]:.0%})")
    finding = Finding("dead_units", first, msg, ev, _ordered(remedies))
    return _note(finding, prog, cured=not at_end) if not at_end or learned_well(prog) else _not_learned(finding, prog)


def saturation(run: RunData, facts: dict, prog: Progress) -> Finding | None:
    found = _fraction_finding(run, "frac_saturated", SATURATED)
    if found is None:
        return None
    step, over, at_end = found
    first = min(over)
    ev = {"step": step, "frac_saturated": over, "layers_over_half": len(over), **_cured_at(run, found),
          **prog.evidence()}
    remedies = []
    if facts.get("shape") in ("stack", "cnn") and not facts["batchnorm"] and facts.get("stages", True):
        remedies.append("batch norm keeps pre-activations near 0: --set model.batchnorm=true")
    elif facts.get("shape") in ("layers", "cnn") and not facts.get("batchnorm"):
        remedies.append("a {type: batchnorm} item before each activation item of model.layers")
    if facts.get("init_std") and facts["init_std"] > 1.4 * facts["prescribed_std"]:
        ev.update(init_std=facts["init_std"], prescribed_std=facts["prescribed_std"])
    remedies += init_remedies(facts)
    remedies += activation_remedies(facts, "relu")
    msg = (f"{len(over)} hidden layer(s) have more than {SATURATED:.0%} of their units saturated "
           f"(derivative below 5% of its maximum) at step {step} (layer {first}: {over[first]:.0%})")
    finding = Finding("saturation", first, msg, ev, _ordered(remedies))
    return _note(finding, prog, cured=not at_end) if not at_end or learned_well(prog) else _not_learned(finding, prog)


def _gradient_summary(run: RunData, facts: dict) -> tuple[str, dict]:
    """The ratio that says the gradient reaches the bottom (first and last step), in words and as evidence."""
    steps, ev = end_steps(run), {}
    if run.recurrent:
        if facts["per_step"]:
            return ("a loss at every time step: ||dL/dh_1|| holds step 1's own loss, so the ratio through time "
                    "does not show the long-range gradient (time_grad_norms.csv has it per step)"), {}
        for s in steps:
            ev[f"time_ratio_at_step_{s}"] = time_ratio(run, s)[0]
        what = "||dL/dh_1|| / ||dL/dh_T||"
        if truncation(run) and _full_column(run.times) == "grad_norm":
            what += f" over the last truncated-BPTT chunk ({time_ratio(run, steps[0])[1] if steps else 0} step(s))"
    else:
        for s in steps:
            ev[f"delta_ratio_at_step_{s}"] = delta_ratio(run, s)
        what = "delta_norm ratio first/last hidden layer"
        if steps:
            at = run.at(steps[0])
            ev["fitted_gain_per_layer"] = fitted_gain(run.hidden, [at.delta_norm[l] for l in run.hidden])
    shown = ", ".join(f"{v:.3g} at step {k.rsplit('_', 1)[1]}" for k, v in ev.items() if "_at_step_" in k)
    return f"{what} {shown}; no layer dead or saturated", ev


def _clipping(run: RunData, ev: dict) -> str:
    threshold = run.clip_threshold()
    if threshold is None or not len(run.metrics):
        return ""
    clipped = int(run.metrics.clipped.sum())
    ev.update(clip_threshold=threshold, clipped_steps=clipped, logged_steps=len(run.metrics))
    return f"; clipping at {threshold:g} acted on {clipped} of {len(run.metrics)} logged steps"


def not_learning(run: RunData, facts: dict, prog: Progress) -> Finding:
    """The loss stayed near its first value (or chance) while the gradients look fine."""
    grads, ev = _gradient_summary(run, facts)
    ev.update(prog.evidence(), learned_well=False, when="over the whole run", at_end=True)
    what = "learned too little: " if prog.learned else ""  # learned, but not well: see learned_well
    message = f"{what}{prog.describe()}, while the gradients look fine ({grads})"
    remedies = []
    steps = end_steps(run)
    hidden, hidden_ev = what_truncation_hides(run, steps[-1]) if steps else ("", {})
    if hidden:
        message += f"; {hidden}"
        ev.update(hidden_ev)
        remedies.append("full BPTT, so the gradient reaches every step: --set train.bptt=null")
    u = update_ratio(run, facts)
    if u is not None and math.isfinite(u):
        ev["update_ratio"] = u
    # a conv net at chance after 30 SGD steps: 120 steps ended at 0.39 (healthy), Adam at 1e-3 at 1.02 (the run
    # 0.96): for conv nets more steps, without the rate and Adam
    if facts.get("shape") != "cnn":
        remedies += lr_remedy(run, facts, "down" if u and u > 30 * UPDATE_RATIO else "up")
        if facts.get("optimizer") in ("sgd", "momentum"):
            remedies.append("Adam, whose step is about lr per weight whatever the scale of the gradient (Kingma & "
                            f"Ba 2015): --set train.optimizer=adam --set train.lr={num(1e-3)}")
    if facts.get("loss") == "mse" and prog.chance_accuracy is not None:
        remedies.append("cross-entropy for class labels (MSE on one-hot targets gives small gradients near "
                        "0 and 1): --set loss=cross_entropy")
    if facts.get("standardize") is False and not run.recurrent:
        remedies.append("standardized inputs (zero mean, unit variance per feature): --set data.standardize=true")
    if prog.steps and run.summary.get("stopped_early_at") is None:  # an early stop: the loss was not falling
        remedies.append(f"more steps (the loss may still be on a plateau): --set train.steps={4 * prog.steps}")
    remedies.append("check the data: targets that do not depend on the inputs (or are shuffled apart from them) "
                    "cannot be learnt; train on a few examples first: the loss must go to 0")
    return Finding("not_learning", None, message + _clipping(run, ev), ev, _ordered(remedies))


def healthy(run: RunData, facts: dict, prog: Progress) -> Finding:
    grads, ev = _gradient_summary(run, facts)
    ev.update(prog.evidence(), learned_well=True)
    message = f"{grads}; {prog.describe()}"
    steps = end_steps(run)
    hidden, hidden_ev = what_truncation_hides(run, steps[-1]) if steps else ("", {})
    if hidden:
        message += f"; {hidden}"
        ev.update(hidden_ev)
    return Finding("healthy", None, message + _clipping(run, ev), ev, [])


def spike_notes(run: RunData, prog: Progress) -> list[Finding]:
    """Loss spikes the run recovered from: notes with their step, not failures."""
    out = []
    for step, value, factor, recovered in spikes(run):
        if recovered:
            ev = {"step": step, "loss": value, "factor": factor, "when": f"at step {step}", "at_end": False,
                  **prog.evidence()}
            out.append(Finding("spike", None, f"a loss spike at step {step}: {value:.3g}, {factor:.3g}x the "
                               f"losses before it, and the run recovered ({prog.describe()})", ev, []))
    return out


def _rank(f: Finding, hidden: int) -> float:
    """Headline order: PROBLEMS', but dead units come before vanishing when most hidden layers are
    dead: then they are why the gradient vanishes."""
    if f.kind == "dead_units" and f.evidence["layers_over_half"] > hidden / 2:
        return PROBLEMS.index("vanishing") - 0.5
    return PROBLEMS.index(f.kind) if f.kind in PROBLEMS else len(PROBLEMS)


def diagnose(run: RunData) -> list[Finding]:
    """What is wrong at the end first (the headline), then 'healthy' for a run that learned with nothing
    wrong, then notes (spikes it recovered from, problems training cured or learned despite);
    nothing before the first logged step."""
    if run.layers.empty:
        return []
    facts = model_facts(run)
    prog = progress(run)
    found = [f(run, facts, prog) for f in (exploding, vanishing, dead_units, saturation)]
    found = [f for f in found if f is not None]
    problems = [f for f in found if is_problem(f)]
    notes = [f for f in found if not is_problem(f)]
    if not problems:
        problems = [healthy(run, facts, prog) if learned_well(prog) else not_learning(run, facts, prog)]
    problems.sort(key=lambda f: _rank(f, len(run.hidden)))
    spiking = [] if any(f.kind == "exploding" for f in problems) else spike_notes(run, prog)
    names = layer_names(run)
    for f in (*problems, *notes):
        if f.layer in names:  # a conv net's layer by name too: 'from layer 7 (conv7) down'
            f.evidence["layer_name"] = names[f.layer]
    return [*problems, *spiking, *notes]
