"""Did a run learn, and how did its loss move: the loss against chance, spikes, oscillation, and the
steps that were still learning (whose gradient norms a clipping threshold is taken from)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..config import ConfigError
from .load import RunData

SPIKE = 10.0  # loss above the median of the few logged losses before it by this factor
OSCILLATION = 0.2  # fraction of steps where the loss jumps 2x up then down (or down then up)
LEARNED = 0.9  # a run learned when its final loss is below this fraction of min(first loss, chance loss)
ABOVE_CHANCE = 0.1  # ... and, for classification, its accuracy above chance by this fraction of 1 - chance
# (or by half of 1 - chance whatever the loss)
BN_MOMENTUM = 0.1  # batch norm's running averages: mean <- (1 - m) mean + m batch mean (gradlab.nn.norm)
WARMUP = round(1 / BN_MOMENTUM)  # steps before they stand for the data: after fewer, eval mode is another net


def chance(run: RunData) -> tuple[float | None, float | None]:
    """(loss, accuracy) of the best constant prediction on the training set (class frequencies for
    cross-entropy and BCE, the target mean for MSE): what a net that learnt nothing from the inputs
    reaches. (None, None) when the data cannot be rebuilt from the config."""
    cfg = run.config
    if cfg is None:
        return None, None
    from ..data import load_data
    from ..train import streams

    try:
        with np.errstate(all="ignore"):
            data = load_data(cfg.data, streams(cfg.seed)["data"])
    except (ConfigError, OSError, ValueError):  # a user's file moved since the run: the first loss still judges
        return None, None
    y = np.asarray(data.y_train)
    if data.task != "classification":
        return float(np.sum(np.var(y.reshape(len(y), -1), axis=0))), None
    p = np.bincount(y.reshape(-1).astype(np.int64)) / y.size
    p = p[p > 0]
    acc = float(p.max())
    if cfg.loss == "mse":  # one-hot targets: sum_k p_k (1 - p_k)
        return float(np.sum(p * (1.0 - p))), acc
    return float(-np.sum(p * np.log(p))), acc


@dataclass
class Progress:
    """The loss at the first logged step and at the end, beside chance."""

    first: float
    end: float  # the final training loss over the whole set (summary.json), inf for a diverged run
    chance: float | None
    chance_accuracy: float | None
    accuracy: float | None  # final validation accuracy (training accuracy without a validation set)
    steps: int
    eval_end: float | None = None  # a batch-norm net too short for its running statistics: the final
    # eval-mode loss, which does not compare with the first batch loss; ``end`` is then the last batch losses'

    @property
    def unwarmed(self) -> bool:
        return self.eval_end is not None

    @property
    def reference(self) -> float:
        """What the loss must fall below: its first value, or chance where that is lower."""
        return min(self.first, self.chance) if self.chance is not None else self.first

    @property
    def learned(self) -> bool:
        if not (math.isfinite(self.end) and math.isfinite(self.reference)):
            return False
        fell = self.end < LEARNED * self.reference
        if self.accuracy is None or self.chance_accuracy is None:
            return fell
        room = 1.0 - self.chance_accuracy
        # accuracy far above chance counts even when a few confident mistakes keep the loss up
        return self.accuracy > self.chance_accuracy + (ABOVE_CHANCE if fell else 0.5) * room

    def describe(self) -> str:
        if self.unwarmed:
            text = (f"the batch loss went from {self.first:.3g} (first logged step) to {self.end:.3g} at the last "
                    f"logged steps ({self.steps} steps; batch norm's running statistics had {self.steps} of the "
                    f"~{WARMUP} steps they need at momentum {BN_MOMENTUM:g}, so the eval-mode loss at the end, "
                    f"{self.eval_end:.3g}, does not compare)")
        else:
            text = (f"the loss went from {self.first:.3g} (first logged step) to {self.end:.3g} at the end "
                    f"({self.steps} steps)")
        if self.chance is not None:
            text += f"; chance is {self.chance:.3g}"
        if self.accuracy is not None and self.chance_accuracy is not None:
            text += f", accuracy {self.accuracy:.3g} against chance {self.chance_accuracy:.3g}"
        return text

    def evidence(self) -> dict:
        ev = {"loss_first": self.first, "loss_end": self.end, "learned": self.learned}
        if self.unwarmed:
            ev.update(loss_end_from="the last logged batch losses", eval_loss_end=self.eval_end,
                      running_stats_steps=self.steps, running_stats_warmup=WARMUP)
        if self.chance is not None:
            ev["chance_loss"] = self.chance
        if self.accuracy is not None:
            ev.update(accuracy=self.accuracy, chance_accuracy=self.chance_accuracy)
        return ev


def progress(run: RunData) -> Progress:
    loss = run.metrics.loss.to_numpy(dtype=float)
    first = float(loss[0]) if len(loss) else math.nan
    end = run.summary.get("final_train_loss")
    if run.summary.get("status") == "diverged" or (len(loss) and not math.isfinite(loss[-1])):
        end = math.inf
    elif end is None or not math.isfinite(end):  # a run still going or killed: the last logged fifth
        finite = loss[np.isfinite(loss)]
        end = float(np.median(finite[-max(1, len(finite) // 5):])) if len(finite) else math.nan
    acc = run.summary.get("final_val_accuracy")
    acc = run.summary.get("final_train_accuracy") if acc is None else acc
    loss_c, acc_c = chance(run)
    steps = int(run.summary.get("steps") or (int(run.metrics.step.max()) + 1 if len(run.metrics) else 0))
    eval_end = None
    if math.isfinite(end) and steps < WARMUP and _batchnorm(run) and run.summary.get("final_train_loss") is not None:
        # the first loss is a batch's in training mode (batch statistics), the final one the whole set's in eval
        # mode (running statistics still near their start of 0 and 1): compare the batch losses' trend instead,
        # and no eval-mode accuracy either
        finite = loss[np.isfinite(loss)]
        if len(finite):
            eval_end, end, acc = float(end), float(np.median(finite[-max(1, len(finite) // 5):])), None
    return Progress(first, float(end), loss_c, acc_c, acc, steps, eval_end)


def _batchnorm(run: RunData) -> bool:
    """Whether the net has batch norm (a stage key or the model's own flag, or items of its layers list)."""
    model = getattr(run.config, "model", None)
    if model is None:
        return False
    items = getattr(model, "layers", None)
    if items is not None:
        return any(getattr(i, "type", None) == "batchnorm" or (getattr(i, "type", None) == "residual"
                                                               and getattr(i, "batchnorm", False)) for i in items)
    return bool(getattr(model, "batchnorm", False))


def spikes(run: RunData) -> list[tuple[int, float, float, bool]]:
    """Loss spikes: (step, loss, factor over the median of up to 5 logged losses before it, recovered).
    A run of consecutive high steps counts once, at its highest; recovered when a later logged loss is
    back within 2x of that median and none after it is NaN/Inf. Finite losses only, up to the first
    non-finite one."""
    steps = run.metrics.step.to_numpy(dtype=int)
    loss = run.metrics.loss.to_numpy(dtype=float)
    out, i = [], 1
    while i < len(loss):
        if not math.isfinite(loss[i]):  # NaN/Inf is divergence, not a spike
            break
        base = np.median(loss[max(0, i - 5):i])
        if not (math.isfinite(base) and base > 0 and loss[i] > SPIKE * base):
            i += 1
            continue
        j = i
        while j + 1 < len(loss) and math.isfinite(loss[j + 1]) and loss[j + 1] > SPIKE * base:
            j += 1
        top = i + int(np.argmax(loss[i:j + 1]))
        rest = loss[j + 1:]
        recovered = len(rest) > 0 and bool(np.isfinite(rest).all()) and rest.min() <= 2 * base
        out.append((int(steps[top]), float(loss[top]), float(loss[top] / base), bool(recovered)))
        i = j + 1
    return out


def learning_steps(run: RunData) -> np.ndarray:
    """The global gradient norms of the logged steps that were still learning: before the first spike
    or non-finite value, the steps after which the loss fell."""
    loss = run.metrics.loss.to_numpy(dtype=float)
    g = run.metrics.grad_norm.to_numpy(dtype=float)
    stop = len(loss)
    for step, *_ in spikes(run):
        stop = min(stop, int(np.searchsorted(run.metrics.step.to_numpy(dtype=int), step)))
    bad = np.flatnonzero(~(np.isfinite(loss) & np.isfinite(g)))
    stop = min(stop, int(bad[0]) if len(bad) else stop)
    fell = np.flatnonzero(loss[1:stop] < loss[:stop - 1]) if stop > 1 else np.array([], dtype=int)
    return g[fell]


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

