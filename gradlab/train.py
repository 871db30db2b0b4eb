"""The training loop. It emits step records to observers and prints nothing."""
from __future__ import annotations

import math
import platform
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Iterator, Protocol


import numpy as np

from .config import Config, ConfigError
from .data import Dataset, load_data
from .logging import RunWriter, full_sequence_times, summary_of
from .nn import MLP, Loss, build_mlp, make_loss
from .nn.recurrent import build_rnn
from .optim import clip_grads, make_optimizer, norm
from .records import GateStat, LayerStat, ParamStat, RunResult, StepRecord, TimeStat


class Observer(Protocol):
    """Anything with ``on_step(record)``; ``on_start(info)`` and ``on_end(result)`` are optional."""

    def on_step(self, record: StepRecord) -> None: ...


@dataclass
class Setup:
    """Everything a run is built from, derived from a config and its seed."""

    config: Config
    data: Dataset
    model: MLP
    loss: Loss
    dtype: type
    batch_rng: np.random.Generator


def streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators per use, so changing dropout never changes the data or the init."""
    names = ("data", "init", "batches", "dropout")
    return dict(zip(names, map(np.random.default_rng, np.random.SeedSequence(seed).spawn(len(names)))))


def setup(config: Config, source: str = "<config>") -> Setup:
    """Build data, model and loss from a config (raises ConfigError on a mismatch)."""
    rng = streams(config.seed)
    dtype = np.dtype(config.train.dtype).type
    data = load_data(config.data, rng["data"], source)
    loss = make_loss(config.loss)
    if loss.classification != (data.task == "classification"):
        allowed = "bce or cross_entropy" if data.task == "classification" else "mse"
        if not (config.loss == "mse" and data.task == "classification"):
            raise ConfigError(f"{source}: 'loss' is {config.loss}, but data.kind {config.data.kind} is a "
                              f"{data.task} task; allowed: {allowed}.")
    if config.loss == "bce" and data.n_classes != 2:
        raise ConfigError(f"{source}: 'loss' bce needs 2 classes, data has {data.n_classes}; "
                          "use cross_entropy.")
    n_out = 1 if config.loss == "bce" else data.n_outputs
    model = build_model(config, data, n_out, rng, dtype, source)
    data = replace(data, X_train=data.X_train.astype(dtype), X_val=data.X_val.astype(dtype))
    if data.task == "regression":
        data.y_train, data.y_val = data.y_train.astype(dtype), data.y_val.astype(dtype)
    return Setup(config, data, model, loss, dtype, rng["batches"])


def build_model(config: Config, data: Dataset, n_out: int, rng: dict, dtype, source: str) -> MLP:
    """An MLP, or a recurrent net for sequences; says so when the data and the model do not fit."""
    sequence = getattr(data, "sequence", False)
    if config.model.kind == "rnn":
        if not sequence:
            raise ConfigError(f"{source}: 'model.kind' is rnn, but data.kind {config.data.kind} is not a sequence "
                              "task; allowed: adding, copy, temporal_order, parity with T, npz with X of shape "
                              "(n, T, features).")
        truncate = config.train.bptt.truncate if config.train.bptt else None
        return build_rnn(config.model, data.n_features, n_out, rng["init"], data.per_step, dtype, truncate)
    if sequence:
        raise ConfigError(f"{source}: data.kind {config.data.kind} gives sequences (n, T, features); "
                          "use 'model.kind: rnn'.")
    return build_mlp(config.model, data.n_features, n_out, rng["init"], rng["dropout"], dtype)


def batches(n: int, batch_size: int | str, shuffle: bool, rng: np.random.Generator) -> Iterator[tuple[int, np.ndarray]]:
    """Endless (epoch, indices) pairs; the last batch of an epoch may be smaller."""
    bs = n if batch_size == "full" else min(int(batch_size), n)
    epoch = 0
    while True:
        order = rng.permutation(n) if shuffle and bs < n else np.arange(n)
        for start in range(0, n, bs):
            yield epoch, order[start:start + bs]
        epoch += 1


def total_steps(config: Config, n: int) -> int:
    if config.train.steps is not None:
        return config.train.steps
    bs = n if config.train.batch_size == "full" else min(int(config.train.batch_size), n)
    return config.train.epochs * math.ceil(n / bs)


def evaluate(model: MLP, loss: Loss, X: np.ndarray, y: np.ndarray) -> tuple[float, float | None]:
    """(loss, accuracy) in eval mode; accuracy is None for regression."""
    if len(X) == 0:
        return float("nan"), None
    z = model.forward(X, train=False)
    y = model.targets(y)
    J = loss.forward(z, y)
    if not loss.classification and y.ndim > 1:
        return J, None
    pred = (z[:, 0] > 0).astype(np.int64) if z.shape[1] == 1 else z.argmax(axis=1)
    return J, float(np.mean(pred == y))


def layer_stats(model: MLP) -> list[LayerStat]:
    """Activation statistics and delta_norm = ||dL / d output|| of every layer, from the last pass."""
    stats = []
    for l, layer in enumerate(model.layers, 1):
        act = layer.activation
        a = (act.out if act is not None else model.outputs[l]).reshape(-1)
        mean, std = moments(a)
        stats.append(LayerStat(
            layer=l,
            act_mean=mean,
            act_std=std,
            frac_saturated=act.saturated() if act is not None else None,
            frac_dead=act.dead() if act is not None else None,
            delta_norm=norm(model.deltas[l]),
        ))
    return stats


def moments(a: np.ndarray) -> tuple[float, float]:
    """(mean, std) of a flat array, centred first (exact even when std << mean, sigmoid near 0.5) and
    rescaled where the sum or the squares overflow, so finite activations of 1e200 give finite figures."""
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(a.sum()) / a.size
        d = a - mean
        std = float(np.sqrt(np.dot(d, d) / a.size))
    if math.isfinite(mean) and math.isfinite(std):
        return mean, std
    m = float(np.abs(a).max())
    if not math.isfinite(m) or m == 0.0:
        return mean, std
    u = a / m
    mean_u = float(u.sum()) / u.size
    d = u - mean_u
    return m * mean_u, m * float(np.sqrt(np.dot(d, d) / u.size))


def nonfinite_in(rec: StepRecord) -> tuple[int | None, str] | None:
    """(layer, what) of the first non-finite value a record would log, or None when all are finite:
    a run whose logged figures are NaN or Inf did not complete, even if its loss and gradients did not say so."""
    if not all(math.isfinite(x) for x in (rec.loss, rec.val_loss) if x is not None):
        return None, "loss"
    if not math.isfinite(rec.grad_norm):  # each tensor's norm finite, their global norm beyond 1.8e308
        return None, "backward"
    for s in rec.layers:
        if not all(math.isfinite(x) for x in (s.act_mean, s.act_std, s.delta_norm)):
            return s.layer, "statistics"
    for p in rec.params:
        if not (math.isfinite(p.grad_norm) and math.isfinite(p.weight_norm)):
            return p.layer, "statistics"
    for t in (*rec.times, *rec.gates):
        if not math.isfinite(getattr(t, "grad_norm", getattr(t, "mean", 0.0))):
            return t.layer, "statistics"
    return None


def fit(s: Setup, observers: "list[Observer]" = ()) -> RunResult:
    """Train ``s.model`` for the configured steps, calling ``observer.on_step`` at logged steps."""
    result = RunResult(status="completed", steps=0, run_dir=None)
    t0 = time.perf_counter()
    # a diverging run is detected and reported, not warned about
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            _loop(s, observers, result)
        except KeyboardInterrupt:
            result.status = "interrupted"
        result.wall_time = time.perf_counter() - t0
        if result.status != "diverged":
            result.final = final_metrics(s)
            _nonfinite_final(s, result)
    return result


def _nonfinite_final(s: Setup, result: RunResult) -> None:
    """A run whose last update left a loss of NaN or Inf on the training or validation set diverged
    after its last step (an empty validation set's NaN is no such value)."""
    f = result.final
    losses = [f["final_train_loss"], *([f["final_val_loss"]] if len(s.data.X_val) else [])]
    if result.status == "completed" and not all(map(math.isfinite, losses)):
        result.status, result.diverged_at = "diverged", result.steps
        result.diverged_layer, result.diverged_where = len(s.model.layers), "final loss"


def time_stats(model: MLP) -> list[TimeStat]:
    """||dL/dh_t|| of every recurrent layer at every step t, from the last backward pass."""
    out = []
    for l, layer in enumerate(model.layers, 1):
        for m in layer.modules:
            norms = getattr(m, "time_norms", None)
            if norms is not None:
                T = len(norms)
                out.extend(TimeStat(l, t + 1, T - t - 1, float(norms[t])) for t in range(T))
    return out


def gate_stats(model: MLP) -> list[GateStat]:
    """Mean of each LSTM/GRU gate (the forget gate above all) over the last forward pass."""
    return [GateStat(l, gate, mean) for l, layer in enumerate(model.layers, 1) for m in layer.modules
            if hasattr(m, "gate_means") for gate, mean in m.gate_means().items()]


def _loop(s: Setup, observers: list, result: RunResult) -> None:
    cfg, model, loss, data, log = s.config.train, s.model, s.loss, s.data, s.config.log
    optimizer = make_optimizer(cfg.optimizer, cfg.lr)
    n_steps = total_steps(s.config, len(data.X_train))
    it = batches(len(data.X_train), cfg.batch_size, cfg.shuffle, s.batch_rng)
    for step in range(n_steps):
        epoch, idx = next(it)
        J = model.loss_and_grads(data.X_train[idx], data.y_train[idx], loss, cfg.l2, train=True)
        norms = {k: norm(g) for k, g in model.grads.items()}
        finite = math.isfinite(J) and all(map(math.isfinite, norms.values()))
        logged = step % log.every == 0 or step == n_steps - 1 or not finite
        if logged:  # statistics of this pass, before anything else runs the model
            stats = layer_stats(model)
            pstats = [ParamStat(model.param_layer[k], k, norms[k], norm(p)) for k, p in model.params.items()]
        if not finite:
            result.status, result.diverged_at = "diverged", step
            result.diverged_layer, result.diverged_where = model.first_nonfinite(math.isfinite(J))
        clip = clip_grads(model.grads, norms, cfg.clip if finite else None)
        if logged:
            rec = StepRecord(step, epoch, J, clip.norm_before, clip.norm_after, clip.clipped, cfg.lr,
                             params=pstats, layers=stats, gates=gate_stats(model),
                             times=full_sequence_times(time_stats(model), model, loss, data.X_train[idx], data.y_train[idx]))
            if finite and len(data.X_val) and (step % log.val_every == 0 or step == n_steps - 1):
                rec.val_loss, rec.val_accuracy = evaluate(model, loss, data.X_val, data.y_val)
            result.first = result.first or rec
            result.last = rec
            bad = nonfinite_in(rec) if finite else None
            if bad is not None:
                finite = False
                result.status, result.diverged_at = "diverged", step
                result.diverged_layer = bad[0] if bad[0] is not None else model.first_nonfinite(True)[0]
                result.diverged_where = bad[1]
            for obs in observers:
                obs.on_step(rec)
        if not finite:
            return
        optimizer.step(model.params, model.grads)
        result.steps = step + 1


def final_metrics(s: Setup) -> dict:
    """Loss and accuracy on the whole training and validation sets, in eval mode."""
    train_loss, train_acc = evaluate(s.model, s.loss, s.data.X_train, s.data.y_train)
    val_loss, val_acc = evaluate(s.model, s.loss, s.data.X_val, s.data.y_val)
    return {"final_train_loss": train_loss, "final_train_accuracy": train_acc,
            "final_val_loss": val_loss, "final_val_accuracy": val_acc}


def versions() -> dict:
    from . import __version__

    return {"python": platform.python_version(), "numpy": np.__version__, "gradlab": __version__}


def new_run_dir(out: str | Path, name: str, source: str = "<config>") -> Path:
    """``out/<name>-<YYYYmmdd-HHMMSS>``; never an existing folder (a suffix -2, -3... is added)."""
    try:
        return _new_dir(Path(out), name)
    except OSError as exc:
        raise ConfigError(f"{source}: log.out: cannot make a run folder under '{out}' "
                          f"({exc.strerror or exc}); allowed: a writable folder path.") from None


def _new_dir(out: Path, name: str) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = out / f"{name}-{stamp}"
    path, k = base, 1
    while True:
        try:
            path.mkdir()
            return path
        except FileExistsError:
            k += 1
            path = Path(f"{base}-{k}")


def train(config: Config, observers: "list[Observer]" = (), source: str = "<config>", write: bool = True,
          run_dir: str | Path | None = None) -> RunResult:
    """Build and train a model from a config; write its run folder under ``config.log.out``
    (or into ``run_dir``, a new folder of the caller's naming, as a sweep does)."""
    s = setup(config, source)
    observers = list(observers)
    writer = None
    if write:
        run_dir = Path(run_dir) if run_dir else new_run_dir(config.log.out, config.name, source)
        run_dir.mkdir(parents=True, exist_ok=True)
        writer = RunWriter(run_dir, recurrent=config.model.kind == "rnn")
        writer.write_config(config.resolved())
        writer.save_params("params_init.npz", s.model.params)
        writer.write_summary({"status": "running", "steps": 0, "versions": versions()})
        observers.insert(0, writer)
    for obs in observers:
        if hasattr(obs, "on_start"):
            obs.on_start({"steps": total_steps(config, len(s.data.X_train)), "run_dir": run_dir, "setup": s})
    try:
        result = fit(s, observers)
    finally:
        if writer is not None:
            writer.close()
    result.run_dir = str(run_dir) if run_dir else None
    if writer is not None:
        writer.save_params("params_final.npz", s.model.params)
        # per_step: a loss at every time step, so ||dL/dh_1|| holds step 1's own loss term (the report says so)
        writer.write_summary({**summary_of(result, versions()), "per_step": bool(s.data.per_step)})
    for obs in observers:
        if hasattr(obs, "on_end"):
            obs.on_end(result)
    return result
