"""Config lint: known mismatches, printed before a run starts. Advice, never an error."""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..config import Config
from ..nn.init import expected_std
from .theory import (
    RELU_LIKE,
    SATURATING,
    applies,
    init_vs_prescribed,
    predict,
    prescribed,
)

LONG_SEQUENCE = 50  # vanilla RNNs over this many steps lose (or blow up) the gradient (Pascanu 2013)
DEEP = 8


@dataclass
class Lint:
    key: str  # the config key path it is about
    message: str

    def __str__(self) -> str:
        return f"{self.key}: {self.message}"


def lint(config: Config, n_features: int | tuple[int, ...] | None = None) -> list[Lint]:
    """Every known mismatch in ``config``; ``n_features`` (when known) enables the theory's prediction. For a
    conv net it is the images' channels C, or their shape (H, W, C)."""
    model = config.model
    found = {"rnn": _recurrent, "cnn": _cnn}.get(model.kind, _mlp)(config, n_features)
    clip = config.train.clip
    if clip is not None and clip.mode == "value":
        found.append(Lint("train.clip.mode", "clipping by value changes the gradient's direction; clipping by "
                          "norm only shortens it (Pascanu et al. 2013): mode: norm"))
    return found


def _mlp(config: Config, n_features: int | None) -> list[Lint]:
    model = config.model
    if model.layers is not None or model.activation.spec:
        return []
    act, scheme, depth = model.activation.name, model.init.scheme, model.depth
    found = []
    if scheme.startswith("he_") and act in SATURATING:
        found.append(Lint("model.init", f"{scheme} with {act}: He's Var(W) = 2/n is derived for relu, whose "
                          f"derivative is 0 on half the inputs; {act} saturates with it. Use xavier_normal."))
    if act in RELU_LIKE and act != "elu" and scheme in ("xavier_normal", "xavier_uniform", "lecun_normal",
                                                        "lecun_uniform") and depth >= DEEP:
        found.append(Lint("model.init", f"{scheme} with {act} at depth {depth}: each relu layer keeps half of "
                          f"the second moment, about 2^-{depth - 1} = {2.0 ** -(depth - 1):.1e} over the net "
                          "(He et al. 2015). Use he_normal."))
    if scheme in ("normal", "uniform", "truncated_normal", "variance_scaling", "identity", "orthogonal") \
            and depth >= 3 and not model.batchnorm and not model.block:
        std, name, want = init_vs_prescribed(model)
        if not 0.5 < std / want < 2.0:
            found.append(Lint("model.init", f"std {std:.3g} is {std / want:.2g}x the {want:.3g} that {name} "
                              f"prescribes for {act} at width {model.width}."))
    if act == "sigmoid" and depth >= 5 and not model.batchnorm and not model.block:
        found.append(Lint("model.activation", f"sigmoid in {depth} layers: its derivative is at most 0.25, so "
                          f"the gradient reaching layer 1 is at most 0.25^{depth - 1} = {0.25 ** (depth - 1):.1e} "
                          f"of layer {depth}'s, times the weights' gains. Batch norm or relu help."))
    if act in RELU_LIKE and model.bias_init < -1.0:
        found.append(Lint("model.bias_init", f"{model.bias_init:g} with {act}: most pre-activations start below "
                          "0, so units start dead (zero gradient). Use 0."))
    if n_features and applies(model) is None and depth >= 2:
        gains = [th.gain for th in predict(model, n_features)[1:]]
        ratio = math.prod(gains)
        if not 1e-3 <= ratio <= 1e3:
            what = "vanishes" if ratio < 1e-3 else "explodes"
            found.append(Lint("model", f"theory predicts the gradient {what} with depth: delta_norm of layer 1 "
                              f"about {ratio:.1e} of layer {depth}'s (gain {gains[-1]:.3g} per layer = sqrt(n Var(W) "
                              "E[phi'(z)^2]))."))
    if model.batchnorm and config.train.batch_size != "full" and int(config.train.batch_size) < 16:
        found.append(Lint("train.batch_size", f"{config.train.batch_size} with batch norm: the batch statistics "
                          "are noisy below about 16 samples."))
    return found


def conv_weights(model, c_in: int | None) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, activation after it) of every convolution weight a cnn config builds, in order: conv<l>.W
    (k, k, C_in, C_out), res<l>.W_a and W_b; the first one's C_in is ``c_in`` (left out when None)."""
    out, c, layer, pending = [], c_in, 0, []
    for item, _ in model.plan():
        if item.type in ("conv", "residual", "dense"):
            layer += 1
            pending = []
        if item.type == "conv":
            pending = [len(out)]
            out.append((f"conv{layer}.W", (item.kernel, item.kernel, c, item.channels), ""))
        elif item.type == "residual":
            out.append((f"res{layer}.W_a", (item.kernel, item.kernel, c, item.channels), item.activation.name))
            pending = [len(out)]
            out.append((f"res{layer}.W_b", (item.kernel, item.kernel, item.channels, item.channels), ""))
        elif item.type == "activation":
            for i in pending:
                out[i] = (*out[i][:2], item.name)
            pending = []
        c = getattr(item, "channels", c)
    return [(name, shape, act or "linear") for name, shape, act in out if shape[2] is not None]


def _cnn(config: Config, n_features) -> list[Lint]:
    """The stack's lints for a conv net, each weight judged by its own fans: fan_in = k^2 C_in, fan_out = k^2 C_out."""
    model, found = config.model, []
    c_in = n_features[-1] if isinstance(n_features, (tuple, list)) else n_features
    weights = conv_weights(model, c_in)
    acts = {a for _, _, a in weights}
    scheme, depth = model.init.scheme, len(weights) + (c_in is None)
    plain = not _any(model, "batchnorm") and not _any(model, "residual")
    if scheme.startswith("he_") and acts & set(SATURATING):
        act = min(acts & set(SATURATING))
        found.append(Lint("model.init", f"{scheme} with {act}: He's Var(W) = 2/(k^2 C_in) is derived for relu, whose "
                          f"derivative is 0 on half the inputs; {act} saturates with it. Use xavier_normal."))
    if acts & set(RELU_LIKE) - {"elu"} and scheme in ("xavier_normal", "xavier_uniform", "lecun_normal",
                                                      "lecun_uniform") and depth >= DEEP and plain:
        found.append(Lint("model.init", f"{scheme} with relu in {depth} conv layers: each keeps half of the second "
                          f"moment, about 2^-{depth - 1} = {2.0 ** -(depth - 1):.1e} over the net (He et al. 2015, "
                          "whose 30-layer conv net did not learn with Xavier). Use he_normal."))
    if scheme in ("normal", "uniform", "truncated_normal", "variance_scaling", "identity", "orthogonal") \
            and depth >= 3 and plain:
        off = []
        for name, shape, act in weights:
            fan_in, fan_out = shape[0] * shape[1] * shape[2], shape[0] * shape[1] * shape[3]
            want_name, want = prescribed(act, fan_in, fan_out)
            ratio = float(expected_std(model.init, shape)) / want
            if not 0.5 < ratio < 2.0:
                off.append((name, ratio, want_name, want, fan_in, act))
        if off:
            lo, hi = min(o[1] for o in off), max(o[1] for o in off)
            first = off[0]
            found.append(Lint("model.init", f"std {float(expected_std(model.init, weights[0][1])):.3g} is "
                              f"{lo:.2g}x" + (f" to {hi:.2g}x" if f"{lo:.2g}" != f"{hi:.2g}" else "")
                              + f" the std that {first[2]} prescribes for {first[5]} in {len(off)} of {len(weights)} "
                              f"conv weights, each by its own fan_in = k^2 C_in ({first[0]}: {first[3]:.3g} at "
                              f"fan_in = {first[4]})."))
    if "sigmoid" in acts and depth >= 5 and plain:
        found.append(Lint("model.activation", f"sigmoid in {depth} conv layers: its derivative is at most 0.25, so the "
                          f"gradient reaching the first is at most 0.25^{depth - 1} = {0.25 ** (depth - 1):.1e} of the "
                          "last's, times the weights' gains. Batch norm or relu help."))
    if acts & set(RELU_LIKE) and model.bias_init < -1.0:
        found.append(Lint("model.bias_init", f"{model.bias_init:g} with relu: most pre-activations start below 0, so "
                          "units start dead (zero gradient). Use 0."))
    if _any(model, "batchnorm") and config.train.batch_size != "full" and int(config.train.batch_size) < 16:
        found.append(Lint("train.batch_size", f"{config.train.batch_size} with batch norm: the batch statistics "
                          "are noisy below about 16 samples (a conv layer's are over every position too)."))
    return found


def _any(model, key: str) -> bool:
    """Whether a cnn config has batch norm (or residual blocks): the stage key, or items of its layers list."""
    if model.layers is None:
        return bool(getattr(model, key))
    if key == "residual":
        return any(i.type == "residual" for i in model.layers)
    return any(i.type == "batchnorm" or (i.type == "residual" and i.batchnorm) for i in model.layers)


def _recurrent(config: Config, n_features=None) -> list[Lint]:
    model, found = config.model, []
    T = getattr(config.data, "T", None) or 0
    if model.cell == "vanilla" and T >= LONG_SEQUENCE and config.train.clip is None:
        found.append(Lint("train.clip", f"a vanilla RNN over T = {T} steps without clipping: the gradient through "
                          "time vanishes or explodes (Pascanu et al. 2013). Clip by norm (train.clip: 1.0), or "
                          "use cell lstm/gru."))
    init = model.recurrent_init
    gain = init.gain * (init.scale if init.scheme == "identity" else 1.0)
    if init.scheme in ("orthogonal", "identity") and gain > 1.05 and model.activation != "sigmoid":
        found.append(Lint("model.recurrent_init", f"gain {gain:g} > 1: a linear recurrence multiplies the gradient "
                          f"by {gain:g} per step ({gain:g}^{max(T, 2) - 1} = {gain ** (max(T, 2) - 1):.1e} over T)."))
    return found
