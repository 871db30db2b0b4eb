"""The training loop. It emits step records to observers and prints nothing."""
from __future__ import annotations

import math
import platform
import signal
import threading
import time
import traceback
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Iterator, Protocol


import numpy as np

from .config import Config, ConfigError
from .errors import interrupt_in, interrupts_unwrapped, stop_if_signalled
from .data import Dataset, load_data
from .files import NoSpace, fresh_dir, no_space, no_space_error, write_atomic
from .logging import RunWriter, full_sequence_times, summary_of
from .nn import MLP, Loss, build_mlp, make_loss
from .nn.cnn import build_cnn
from .nn.recurrent import build_rnn
from .optim import clip_grads, global_norm, make_optimizer, norms
from .records import GateStat, LayerStat, ParamStat, RunFailed, RunResult, StepRecord, TimeStat
from .schedule import rate
from .threads import limited


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
    if config.train.early_stop is not None and len(data.X_val) == 0:
        raise ConfigError(f"{source}: 'train.early_stop' watches the validation loss, but the validation set is "
                          f"empty (data.val_fraction {config.data.val_fraction:g}); allowed: a data.val_fraction that "
                          "leaves at least one sample, or train.early_stop: null.")
    n_steps, warmup = total_steps(config, len(data.X_train)), config.train.schedule.warmup
    if warmup >= n_steps:
        raise ConfigError(f"{source}: 'train.schedule.warmup' is {warmup}, but the run has {n_steps} steps; allowed: "
                          f"0 to {n_steps - 1} (the warm-up ends before the run does).")
    n_out = 1 if config.loss == "bce" else data.n_outputs
    data = model_inputs(config, data)
    model = build_model(config, data, n_out, rng, dtype, source)
    data = replace(data, X_train=cast(data.X_train, dtype, "features", source),
                   X_val=cast(data.X_val, dtype, "features", source))
    if data.task == "regression":
        data.y_train, data.y_val = (cast(y, dtype, "targets", source) for y in (data.y_train, data.y_val))
    return Setup(config, data, model, loss, dtype, rng["batches"])


def cast(a: np.ndarray, dtype, what: str, source: str) -> np.ndarray:
    """``a`` in ``dtype``; a finite value beyond the dtype's range is bad input, not an overflow warning
    followed by a run that diverges at step 0."""
    with np.errstate(over="ignore"):
        b = a.astype(dtype)
    if np.isfinite(b).all() or not np.isfinite(a).all():
        return b
    big = float(np.max(np.abs(a)))
    raise ConfigError(f"{source}: the data's {what} reach {big:.3g}, beyond {np.dtype(dtype).name}'s largest value "
                      f"{float(np.finfo(dtype).max):.3g} (train.dtype, or check.dtype for a check); allowed: float64, "
                      "or data.standardize: true (features), or data rescaled below that.")


IMAGE_KINDS = "shapes, digits or images (an .npz with X (N, H, W, C), MNIST's IDX files, CIFAR-10's batches)"


def build_model(config: Config, data: Dataset, n_out: int, rng: dict, dtype, source: str) -> MLP:
    """An MLP, a recurrent net for sequences or a conv net for images; says so when the data and the model do
    not fit."""
    sequence = getattr(data, "sequence", False)
    if config.model.kind == "cnn":
        if not getattr(data, "image", False):
            shape = "sequences (n, T, features)" if sequence else "vectors (n, features)"
            raise ConfigError(f"{source}: 'model.kind' is cnn, but data.kind {config.data.kind} gives {shape}, not "
                              f"images; allowed: data.kind {IMAGE_KINDS}, or model.kind mlp.")
        try:
            return build_cnn(config.model, data.input_shape, n_out, rng["init"], rng["dropout"], dtype)
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from None
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


def model_inputs(config: Config, data: Dataset) -> Dataset:
    """The data as the model reads it: a conv net reads images (N, H, W, C) as they are, an MLP reads each as
    the H * W * C numbers of its pixels, in the array's (row, column, channel) order."""
    if not getattr(data, "image", False) or config.model.kind == "cnn":
        return data
    flat = lambda X: X.reshape(len(X), -1)
    return replace(data, X_train=flat(data.X_train), X_val=flat(data.X_val), image=False)


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


EVAL_BATCH = 64  # samples per forward pass of an evaluation: its memory is a batch's, never the whole set's


def evaluate(model: MLP, loss: Loss, X: np.ndarray, y: np.ndarray, batch: int | None = None) -> tuple[float, float | None]:
    """(loss, accuracy) over the whole set in eval mode, ``batch`` (default ``EVAL_BATCH``) samples per forward
    pass; accuracy is None for regression.

    The loss is the mean of the per-row terms over the whole set, as one pass would give it (each batch's
    mean weighted by its rows; eval mode couples no samples, batch norm uses its running statistics).
    When the loss is not finite, the model's caches are left at the first batch whose loss was not, so
    ``MLP.first_nonfinite`` looks at the pass that overflowed."""
    if len(X) == 0:
        return float("nan"), None
    batch = batch or EVAL_BATCH
    losses, rows, correct, bad = [], [], 0, None
    for start in range(0, len(X), batch):
        z = model.forward(X[start:start + batch], train=False)
        t = model.targets(y[start:start + batch])
        losses.append(loss.forward(z, t))
        rows.append(len(z))  # every loss averages over the rows of z
        scored = loss.classification or t.ndim == 1
        if scored:
            correct += int(np.count_nonzero(predictions(z) == t))
        if bad is None and not math.isfinite(losses[-1]):
            bad = start
    if bad is not None and bad + batch < len(X):
        model.forward(X[bad:bad + batch], train=False)
    J = losses[0] if len(losses) == 1 else sum(J * m for J, m in zip(losses, rows)) / sum(rows)
    return J, correct / sum(rows) if scored else None


def predictions(z: np.ndarray) -> np.ndarray:
    """Classes from logits: z > 0 for one output (bce), the argmax otherwise."""
    return (z[:, 0] > 0).astype(np.int64) if z.shape[1] == 1 else z.argmax(axis=1)


def layer_stats(model: MLP) -> list[LayerStat]:
    """Activation statistics and delta_norm = ||dL / d output|| of every layer, from the last pass."""
    delta_norms = norms(dict(enumerate(model.deltas[1:], 1)))
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
            delta_norm=delta_norms[l],
        ))
    return stats


def moments(a: np.ndarray) -> tuple[float, float]:
    """(mean, std) of a flat array, centred first (exact even when std << mean, sigmoid near 0.5) and
    rescaled where the sum or the squares overflow, so finite activations of 1e200 give finite figures."""
    with np.errstate(over="ignore", invalid="ignore"):
        mean = float(a.sum()) / a.size
        d = a - mean  # a new array: faster than centring into a kept one (the allocator hands back a warm block)
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


def fit(s: Setup, observers: "list[Observer]" = (), result: RunResult | None = None) -> RunResult:
    """Train ``s.model`` for the configured steps, calling ``observer.on_step`` at logged steps.

    Ctrl-C (KeyboardInterrupt) stops it as "interrupted", during the steps or the final metrics alike."""
    result = result if result is not None else RunResult(status="running", steps=0, run_dir=None)
    t0 = time.perf_counter()
    # a diverging run is detected and reported, not warned about
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            with interrupts_unwrapped():
                _loop(s, observers, result, t0)
            if result.status == "running":
                result.status = "completed"
        except KeyboardInterrupt:
            result.status = "interrupted"
        result.wall_time = time.perf_counter() - t0
        if result.status != "diverged":
            try:
                with interrupts_unwrapped():
                    result.final = final_metrics(s)
                    stop_if_signalled()
            except KeyboardInterrupt:  # a second Ctrl-C, or the first during the final metrics: none then
                result.status = "interrupted"
            else:
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


def _loop(s: Setup, observers: list, result: RunResult, t0: float) -> None:
    cfg, model, loss, data, log = s.config.train, s.model, s.loss, s.data, s.config.log
    optimizer = make_optimizer(cfg.optimizer, cfg.lr)
    n_steps = total_steps(s.config, len(data.X_train))
    it = batches(len(data.X_train), cfg.batch_size, cfg.shuffle, s.batch_rng)
    stopper = EarlyStop(cfg.early_stop.patience, cfg.early_stop.min_delta) if cfg.early_stop else None
    for step in range(n_steps):
        stop_if_signalled()
        epoch, idx = next(it)
        optimizer.lr = rate(cfg.schedule, cfg.lr, step, n_steps)
        J = model.loss_and_grads(data.X_train[idx], data.y_train[idx], loss, cfg.l2, train=True)
        g_norms = norms(model.grads)
        finite = math.isfinite(J) and all(map(math.isfinite, g_norms.values()))
        logged = step % log.every == 0 or step == n_steps - 1 or not finite
        if logged:  # statistics of this pass, before anything else runs the model
            stats = layer_stats(model)
            w_norms = norms(model.params)
            pstats = [ParamStat(model.param_layer[k], k, g_norms[k], w_norms[k]) for k in model.params]
            accuracy = batch_accuracy(model, loss, data.y_train[idx])
        if not finite:
            result.status, result.diverged_at = "diverged", step
            result.diverged_layer, result.diverged_where = model.first_nonfinite(math.isfinite(J))
        clip = clip_grads(model.grads, g_norms, cfg.clip if finite else None)
        if logged:
            rec = StepRecord(step, epoch, J, clip.norm_before, clip.norm_after, clip.clipped, optimizer.lr,
                             train_accuracy=accuracy, params=pstats, layers=stats, gates=gate_stats(model),
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
        if finite:
            changes = optimizer.step(model.params, model.grads, measure=logged)
            result.steps = step + 1
        if logged:  # the record, with the update it led to, once that update is done
            if finite:
                record_update(rec, changes)
            rec.time = time.perf_counter() - t0
            if (finite and stopper is not None and rec.val_loss is not None and stopper.stops(step, rec.val_loss)
                    and step < n_steps - 1):  # the last step ends the run anyway
                result.stopped_early_at, result.best_val_step = step, stopper.best_step
            for obs in observers:
                obs.on_step(rec)
        if not finite or result.stopped_early_at is not None:
            return


class EarlyStop:
    """Stop when the validation loss has not fallen below the best so far minus ``min_delta`` for ``patience``
    evaluations in a row (Keras' EarlyStopping, without restore_best_weights: the run keeps its last
    parameters)."""

    def __init__(self, patience: int, min_delta: float) -> None:
        self.patience, self.min_delta = patience, min_delta
        self.best, self.best_step, self.waited = math.inf, None, 0

    def stops(self, step: int, val_loss: float) -> bool:
        """True when the evaluation at ``step`` ends the run."""
        if val_loss < self.best - self.min_delta:
            self.best, self.best_step, self.waited = val_loss, step, 0
        else:
            self.waited += 1
        return self.waited >= self.patience


def record_update(rec: StepRecord, changes: dict[str, float]) -> None:
    """The update's norm in ``rec``: per tensor, and over all of them."""
    for p in rec.params:
        p.update_norm = changes[p.param]
    rec.update_norm = global_norm(changes)


def batch_accuracy(model: MLP, loss: Loss, y: np.ndarray) -> float | None:
    """Accuracy of the last forward pass's logits on targets ``y`` (as ``evaluate`` scores); None for
    regression."""
    t = model.targets(y)
    if not (loss.classification or t.ndim == 1):
        return None
    z = model.outputs[len(model.layers)]
    return int(np.count_nonzero(predictions(z) == t)) / len(t) if len(t) else None


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
    return fresh_dir(out / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}")


@limited  # BLAS on train.threads threads (one by default) for the whole run
def train(config: Config, observers: "list[Observer]" = (), source: str = "<config>", write: bool = True,
          run_dir: str | Path | None = None) -> RunResult:
    """Build and train a model from a config; write its run folder under ``config.log.out``
    (or into ``run_dir``, a new folder of the caller's naming, as a sweep does).

    However the run ends, summary.json ends at its status and every CSV at whole rows: Ctrl-C gives
    "interrupted" (returned); a full disk "failed" (``NoSpace`` raised: exit 2); code of the user's that
    raised "failed" (``RunFailed`` raised, its traceback in error.txt: exit 4). Anything else that raises
    is recorded as "failed" too and raised as it was (a bug of gradlab's).
    """
    s = setup(config, source)
    folder = (Path(run_dir) if run_dir else new_run_dir(config.log.out, config.name, source)) if write else None
    result = RunResult(status="running", steps=0, run_dir=str(folder) if folder else None)
    observers, writer, t0 = list(observers), None, time.perf_counter()
    try:
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
            writer = RunWriter(folder, recurrent=config.model.kind == "rnn")
            start_run(writer, s)
            observers.insert(0, writer)
        for obs in observers:
            if hasattr(obs, "on_start"):
                obs.on_start({"steps": total_steps(config, len(s.data.X_train)), "run_dir": folder, "setup": s})
        fit(s, observers, result)  # sets wall_time, unless it raises
        if writer is not None:
            writer.close()
            writer.save_params("params_final.npz", s.model.params)
    except BaseException as exc:  # noqa: BLE001 - recorded in the run folder, then raised again (Ctrl-C: returned)
        with signals_held():  # a second signal waits until the run folder says why the first stopped it
            result.wall_time = result.wall_time or time.perf_counter() - t0
            error = stopped(exc, result, s, folder, source)
            summarised = writer is not None and close_run(writer, s, result)
        if error is exc:
            raise
        if error is not None:
            raise _with_summary(error, summarised, folder) from (exc if isinstance(error, RunFailed) else None)
    else:
        if writer is not None and not close_run(writer, s, result):
            raise _with_summary(no_space_error(folder), False, folder)
    for obs in observers:
        if hasattr(obs, "on_end"):
            obs.on_end(result)
    return result


def start_run(writer: RunWriter, s: Setup) -> None:
    """config.yaml, params_init.npz and a summary.json that says "running"."""
    writer.write_config(s.config.resolved())
    writer.save_params("params_init.npz", s.model.params)
    writer.write_summary({"status": "running", "steps": 0, "versions": versions()})


def close_run(writer: RunWriter, s: Setup, result: RunResult) -> bool:
    """Every table closed at its last whole step, and summary.json at the run's status (Ctrl-C and SIGTERM
    wait for it). False when not even summary.json could be written: it still says "running"."""
    with signals_held():
        for _ in range(3):  # a signal already on its way when the block began interrupts once (per signal)
            try:
                writer.close()
                return writer.end_summary({**summary_of(result, versions()), "per_step": bool(s.data.per_step)})
            except KeyboardInterrupt:
                if result.status in ("running", "completed"):
                    result.status = "interrupted"
            except (OSError, ConfigError):
                return False
    return False


def stopped(exc: BaseException, result: RunResult, s: Setup, folder: Path | None, source: str) -> BaseException | None:
    """Record in ``result`` why the run stopped; return what to raise (None for Ctrl-C: the run is
    "interrupted", with what it wrote)."""
    if interrupt_in(exc) is not None:  # a signal, or one a library wrapped (pydantic does, in a model_dump)
        if result.status != "failed":
            result.status = "interrupted"
        return None
    result.status = "failed"
    result.final = {}
    if folder is not None and (isinstance(exc, NoSpace) or no_space(exc)):
        error = no_space_error(folder)
        result.error = {"type": "OSError", "message": f"no space left on device under {folder}"}
        return error
    culprit = blame(exc, s.model)
    result.error = {"type": type(exc).__name__, "message": str(exc),
                    **({"where": f"{culprit[0]}: {culprit[1]}"} if culprit else {})}
    if folder is not None and not isinstance(exc, ConfigError):
        with suppress(OSError, ConfigError):
            write_atomic(folder / "error.txt", "".join(traceback.format_exception(exc)))
    if isinstance(exc, (ConfigError, MemoryError)) or culprit is None or not isinstance(exc, Exception):
        return exc
    return RunFailed(f"{source}: training stopped at step {result.steps}: {raised(exc, culprit)}"
                     + (f"; the run is recorded as failed in {folder / 'summary.json'}, the traceback is in "
                        f"{folder / 'error.txt'}." if folder is not None else "."), result)


def raised(exc: BaseException, culprit: tuple[str, str]) -> str:
    """'layer swish2 (custom_layer:Swish) raised ValueError: ... (in backward, custom_layer.py line 31)'."""
    return f"{culprit[0]} raised {type(exc).__name__}: {exc} (in {culprit[1]})"


def _with_summary(error: BaseException, summarised: bool, folder: Path) -> BaseException:
    """A full disk's message, saying whether summary.json could be marked failed."""
    if not isinstance(error, NoSpace):
        return error
    said = ("summary.json says failed" if summarised else
            "summary.json could not be marked failed either (it still says running)"
            if (folder / "summary.json").exists() else "there was no room for a summary.json either")
    return NoSpace(f"{error} {said}; every CSV ends at its last whole row.")


def blame(exc: BaseException, model=None) -> tuple[str, str] | None:
    """(who, where) of the user's code that raised ``exc``: ('layer swish2 (custom_layer:Swish)', 'backward,
    custom_layer.py line 31'); None when no layer or cell of the user's is on its traceback and ``model``
    (or a net on the traceback) has none either."""
    from .nn.custom import CustomModule
    from .nn.recurrent import CustomCell

    owner = at = net = None
    frames = list(traceback.walk_tb(exc.__traceback__))
    for frame, line in frames:
        me = frame.f_locals.get("self")
        if isinstance(me, (CustomModule, CustomCell)):
            owner, at = me, None
        elif owner is not None and at is None and not _ours(frame.f_code.co_filename):
            at = f"{frame.f_code.co_name}, {Path(frame.f_code.co_filename).name} line {line}"
        if net is None and isinstance(me, MLP):
            net = me
    if owner is not None:
        return _named(owner), at or "gradlab's wrapper around it: what it returned or left in grads"
    net = model if model is not None else net
    theirs = [m for m in net.modules() if isinstance(m, (CustomModule, CustomCell))] if net is not None else []
    if not theirs or not frames:
        return None
    frame, line = frames[-1]
    return (f"a net with code of yours ({', '.join(map(_named, theirs))})",
            f"gradlab's {frame.f_code.co_name}, {Path(frame.f_code.co_filename).name} line {line}, maybe on what "
            f"{'it' if len(theirs) == 1 else 'they'} returned")


def _named(m) -> str:
    """'layer swish2 (custom_layer:Swish)' or 'cell rnn1 (cells:MyCell)'."""
    kind = "cell" if hasattr(m, "cell") else "layer"
    obj = getattr(m, kind)
    return f"{kind} {m.name} ({type(obj).__module__}:{type(obj).__qualname__})"


def _ours(filename: str) -> bool:
    return Path(filename).resolve().is_relative_to(Path(__file__).resolve().parent)


@contextmanager
def signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block ends, then act as they would have (in the main thread;
    elsewhere no Python signal handler runs anyway): a run's last files are written whole."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    before = {n: signal.signal(n, lambda signum, frame: caught.append(signum)) for n in held}
    try:
        yield
    finally:
        for n, handler in before.items():
            signal.signal(n, handler)
        for n in dict.fromkeys(caught):
            handler = before[n]
            if callable(handler):
                handler(n, None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(n)
