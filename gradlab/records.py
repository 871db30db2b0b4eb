"""What the training loop tells its observers: one record per logged step.

The dataclass fields are the CSV columns, in order; nothing else names them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class ParamStat:
    """One row of grad_norms.csv (after step, epoch)."""

    layer: int
    param: str
    grad_norm: float
    weight_norm: float
    update_norm: float | None = None  # ||tensor after the update - before||; blank where no update followed


@dataclass
class LayerStat:
    """One row of layer_stats.csv (after step). frac_* are None where they do not apply."""

    layer: int
    act_mean: float
    act_std: float
    frac_saturated: float | None
    frac_dead: float | None
    delta_norm: float


@dataclass
class TimeStat:
    """One row of time_grad_norms.csv (after step): the gradient norm reaching step t of a recurrent layer."""

    layer: int
    t: int  # 1..T
    lag: int  # T - t
    grad_norm: float  # ||dL / dh_t||


@dataclass
class GateStat:
    """One row of gate_stats.csv (after step): the mean of a gate over batch, units and time."""

    layer: int
    gate: str
    mean: float


@dataclass
class StepRecord:
    """One row of metrics.csv, plus the per-parameter and per-layer rows of that step.

    Everything is measured at the parameters before update ``step``, but for ``update_norm`` (the norm of
    that update, over all tensors: None when no update followed) and ``time`` (seconds from the start of
    training to the end of the step). ``train_accuracy`` is the step's batch's, in train mode as ``loss``
    (None for regression).
    """

    step: int
    epoch: int
    loss: float
    grad_norm: float
    grad_norm_clipped: float
    clipped: bool
    lr: float
    val_loss: float | None = None
    val_accuracy: float | None = None
    time: float | None = None
    train_accuracy: float | None = None
    update_norm: float | None = None
    params: list[ParamStat] = field(default_factory=list, repr=False)
    layers: list[LayerStat] = field(default_factory=list, repr=False)
    times: list[TimeStat] = field(default_factory=list, repr=False)  # recurrent layers only
    gates: list[GateStat] = field(default_factory=list, repr=False)  # LSTM and GRU only

    METRICS = ("step", "epoch", "time", "loss", "train_accuracy", "grad_norm", "grad_norm_clipped", "clipped", "lr",
               "update_norm", "val_loss", "val_accuracy")

    def metrics(self) -> list:
        return [getattr(self, k) for k in self.METRICS]

    def layer_grad_norms(self) -> dict[int, float]:
        """L2 norm of all of a layer's parameter gradients, by layer (hypot: finite norms of 1e200 and
        more are not squared, so they do not overflow)."""
        norms: dict[int, list[float]] = {}
        for p in self.params:
            norms.setdefault(p.layer, []).append(p.grad_norm)
        return {layer: math.hypot(*g) for layer, g in norms.items()}


@dataclass
class RunResult:
    """What a finished (or stopped) run leaves behind."""

    status: str  # completed, diverged, interrupted or failed (running while it runs)
    steps: int  # updates done
    run_dir: str | None
    final: dict = field(default_factory=dict)  # train/val loss and accuracy, in eval mode
    diverged_at: int | None = None
    diverged_layer: int | None = None
    diverged_where: str | None = None  # params, forward, loss, backward, statistics or final loss
    wall_time: float = 0.0
    first: StepRecord | None = None
    last: StepRecord | None = None
    error: dict | None = None  # a failed run's: type, message and where (the layer of the user's that raised)
    stopped_early_at: int | None = None  # train.early_stop: the step whose evaluation stopped the run
    best_val_step: int | None = None  # the step of the best validation loss, when it stopped early

    def early_stop_note(self) -> str | None:
        """'stopped early at step 420: no better validation loss since step 300', or None."""
        if self.stopped_early_at is None:
            return None
        return f"stopped early at step {self.stopped_early_at}: no better validation loss since step {self.best_val_step}"

    @property
    def exit_code(self) -> int:
        """0 completed, 3 diverged, 4 failed (code of the user's raised), 130 interrupted (the command
        line gives 143 when SIGTERM interrupted it)."""
        return {"completed": 0, "diverged": 3, "failed": 4, "interrupted": 130}[self.status]


class RunFailed(Exception):
    """Code of the user's (a layer or cell of their own) raised mid-run; the run folder records it as
    failed (summary.json, and the traceback in error.txt). ``__cause__`` is what the code raised."""

    def __init__(self, message: str, result: RunResult) -> None:
        super().__init__(message)
        self.result = result
