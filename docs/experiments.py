#!/usr/bin/env python
"""Regenerate every figure and every number of docs/EXPERIMENTS.md.

    python docs/experiments.py                 # all experiments (about 3 minutes on 2 cores)
    python docs/experiments.py --only clipping # one experiment (repeat --only for more)
    python docs/experiments.py --list          # the experiments and the commands behind them
    python docs/experiments.py --runs runs/experiments   # keep the run folders (default: a temp folder)

Run it from anywhere; it reads configs/ and writes docs/figures/<experiment>.png and
docs/figures/numbers.json (the numbers the document quotes, by experiment). Every run is made
through the public API (gradlab.load_config + gradlab.train, gradlab.sweeps.run_sweep), with the
same config and --set overrides as the command printed for it, so `gradlab train ...` at the
command line writes the same run folder.
"""
from __future__ import annotations

import os

# One BLAS thread per process, before NumPy is imported: on a 2-core machine BLAS threads that
# compete with the second worker stall the runs (configs/lstm_adding.yaml measures it).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shlex  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import yaml  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
FIGURES = ROOT / "docs" / "figures"
NUMBERS = FIGURES / "numbers.json"
WORKERS = 2
LN10 = math.log(10.0)


# --------------------------------------------------------------------------- what is run

@dataclass(frozen=True)
class Job:
    """One `gradlab train` or `gradlab sweep` invocation: a config of configs/ and its --set overrides."""

    label: str
    config: str
    overrides: tuple[str, ...] = ()
    kind: str = "train"  # or "sweep"

    @property
    def command(self) -> str:
        sets = "".join(f" --set {shlex.quote(o)}" for o in self.overrides)
        return f"gradlab {self.kind} configs/{self.config}{sets}"


@dataclass
class Experiment:
    name: str  # also the figure's file name: docs/figures/<name>.png
    title: str
    jobs: list[Job]
    make: Callable[["Runs"], dict] = field(repr=False, default=None)  # type: ignore[assignment]

    @property
    def figure(self) -> str:
        return f"{self.name}.png"

    @property
    def commands(self) -> list[str]:
        return [j.command for j in self.jobs]


def train_job(job: Job, out: str) -> str:
    """Run one train job into ``out/<label>`` (in a worker process); return the run's status."""
    import gradlab

    cfg = gradlab.load_config(CONFIGS / job.config, list(job.overrides))
    return gradlab.train(cfg, run_dir=Path(out) / job.label).status


class Run:
    """A finished run folder, its CSV files read on demand."""

    def __init__(self, path: Path, status: str) -> None:
        self.path, self.status = Path(path), status
        self._tables: dict[str, pd.DataFrame] = {}

    def table(self, name: str) -> pd.DataFrame:
        if name not in self._tables:
            self._tables[name] = pd.read_csv(self.path / f"{name}.csv")
        return self._tables[name]

    @property
    def metrics(self) -> pd.DataFrame:
        return self.table("metrics")

    @property
    def summary(self) -> dict:
        return json.loads((self.path / "summary.json").read_text())

    def layers(self, step: int = 0) -> pd.DataFrame:
        """layer_stats.csv of the hidden layers (not the output layer) at ``step`` (-1: the last)."""
        ls = self.table("layer_stats")
        step = ls.step.max() if step == -1 else step
        at = ls[ls.step == step]
        return at[at.layer < at.layer.max()].sort_values("layer").reset_index(drop=True)

    def weight_grads(self, step: int = 0) -> pd.Series:
        """grad_norm of dense<l>.W for the hidden layers at ``step``, indexed by layer."""
        g = self.table("grad_norms")
        at = g[(g.step == step) & g.param.str.fullmatch(r"dense\d+\.W")].set_index("layer").grad_norm.sort_index()
        return at.iloc[:-1]

    def time_ratio(self) -> pd.Series:
        """||dL/dh_1|| / ||dL/dh_T|| of layer 1, by logged step."""
        tg = self.table("time_grad_norms")
        tg = tg[tg.layer == 1]
        first = tg[tg.t == 1].set_index("step").grad_norm
        last = tg[tg.lag == 0].set_index("step").grad_norm
        return first / last

    def time_norms(self, step: int = 0) -> pd.Series:
        tg = self.table("time_grad_norms")
        return tg[(tg.layer == 1) & (tg.step == step)].set_index("t").grad_norm.sort_index()

    def params_init(self) -> dict[str, np.ndarray]:
        with np.load(self.path / "params_init.npz") as z:
            return {k: z[k] for k in z.files}


class Runs:
    """Where the runs go and how they are executed (train jobs on a pool of 2 processes). With ``reuse``,
    a run folder already in ``out`` (a finished train run, a sweep folder) is read instead of run again."""

    def __init__(self, out: Path, pool: ProcessPoolExecutor, reuse: bool = False) -> None:
        self.out, self.pool, self.reuse = out, pool, reuse

    def train(self, jobs: list[Job]) -> dict[str, Run]:
        todo = [j for j in jobs if j.kind == "train"]
        done = {j.label: status for j in todo if (status := self.finished(j.label)) is not None}
        futures = {j.label: self.pool.submit(train_job, j, str(self.out)) for j in todo if j.label not in done}
        got = {label: Run(self.out / label, status) for label, status in done.items()}
        got.update({label: Run(self.out / label, f.result()) for label, f in futures.items()})
        return {j.label: got[j.label] for j in todo}

    def finished(self, label: str) -> str | None:
        """The status of a run folder ``out/<label>`` that ended (None without ``reuse``, or if it did not)."""
        path = self.out / label / "summary.json"
        if not (self.reuse and path.is_file()):
            return None
        status = json.loads(path.read_text())["status"]
        return status if status in ("completed", "diverged") else None

    def sweep(self, job: Job) -> tuple[pd.DataFrame, Path]:
        """Run a sweep file with ``--set log.out=<out>`` into ``out/<label>``; return summary.csv and that folder."""
        from gradlab import sweeps

        folder = self.out / job.label
        if not (self.reuse and (folder / "summary.csv").is_file()):
            spec = sweeps.load_sweep(CONFIGS / job.config, [*job.overrides, f"log.out={self.out}"])
            shutil.rmtree(folder, ignore_errors=True)
            sweeps.run_sweep(spec, workers=WORKERS).dir.rename(folder)
        return pd.read_csv(folder / "summary.csv"), folder


# --------------------------------------------------------------------------- figures

def figure(ncols: int, nrows: int = 1, width: float = 4.4, height: float = 3.4) -> tuple[Figure, list]:
    fig = Figure(figsize=(width * ncols, height * nrows), dpi=100)
    FigureCanvasAgg(fig)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(ncols * nrows)]
    for ax in axes:
        ax.grid(True, which="major", alpha=0.3)
    return fig, axes


def save(fig: Figure, name: str, title: str) -> None:
    fig.suptitle(title, fontsize=12)
    fig.tight_layout()
    FIGURES.mkdir(parents=True, exist_ok=True)
    fig.savefig(FIGURES / f"{name}.png", dpi=100, metadata={"Software": None})


def sig(x: float | None, n: int = 4) -> float | None:
    """``x`` to ``n`` significant digits; None for a missing or non-finite value (JSON has no NaN)."""
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{n}g}")


def smooth(y: pd.Series, k: int) -> pd.Series:
    return y.rolling(k, min_periods=1, center=True).mean()


def first_step_below(m: pd.DataFrame, col: str, level: float) -> int | None:
    hit = m[m[col] < level]
    return int(hit.step.iloc[0]) if len(hit) else None


# --------------------------------------------------------------------------- 1. c^150

C150 = [Job("c150_gain0.9", "linear_rnn_c150.yaml", ("model.recurrent_init.gain=0.9",)),
        Job("c150_gain1.0", "linear_rnn_c150.yaml", ("model.recurrent_init.gain=1.0",)),
        Job("c150_gain1.1", "linear_rnn_c150.yaml")]


def exp_c150(runs: Runs) -> dict:
    got = runs.train(C150)
    fig, (ax,) = figure(1, width=7.0, height=4.2)
    out: dict = {"scalar_1.1^150": sig(1.1 ** 150, 5), "scalar_0.9^150": sig(0.9 ** 150, 5)}
    for job, c, color in zip(C150, (0.9, 1.0, 1.1), ("tab:blue", "tab:green", "tab:red")):
        g = got[job.label].time_norms(0)
        T = int(g.index.max())
        ratio = g.loc[1] / g.loc[T]
        out[f"gain{c}"] = {"T": T, "steps_back": T - 1, "ratio_h1_over_hT": sig(ratio, 6),
                           "c^(T-1)": sig(c ** (T - 1), 6), "rel_diff": float(f"{abs(ratio / c ** (T - 1) - 1):.1e}")}
        t = np.asarray(g.index)
        ax.semilogy(t, g.values / g.loc[T], color=color, lw=2.5, alpha=0.6, label=f"measured, U = {c} Q")
        ax.semilogy(t, c ** (T - t), color="k", lw=0.8, ls="--")
        ax.annotate(f"{ratio:.4g}", (1, ratio), xytext=(-5, 0), textcoords="offset points", va="center",
                    ha="right", fontsize=9, color=color)
    ax.plot([], [], color="k", lw=0.8, ls="--", label="c^(T - t)")
    ax.set_xlabel("time step t (the loss is at t = T = 151)")
    ax.set_ylabel("||dL/dh_t|| / ||dL/dh_T||")
    ax.set_xlim(-45, 155)
    ax.legend(fontsize=9, loc="lower center")
    ax.set_xticks([1, 25, 50, 75, 100, 125, 151])
    save(fig, "c150", "Linear RNN, U = c Q (Q orthogonal):\n150 steps back multiply the gradient by c^150")
    return out


# --------------------------------------------------------------------------- 2. 1.2 I and 0.5 I

LINEAR = [Job("linear_1.2I", "linear_identity_exploding.yaml"), Job("linear_0.5I", "linear_identity_vanishing.yaml")]


def exp_linear_identity(runs: Runs) -> dict:
    got = runs.train(LINEAR)
    fig, (a1, a2) = figure(2)
    out = {}
    for job, c, color in zip(LINEAR, (1.2, 0.5), ("tab:red", "tab:blue")):
        run = got[job.label]
        ls = run.layers(0)
        L = len(ls)
        l = ls.layer.to_numpy()
        act, delta = ls.act_std.to_numpy(), ls.delta_norm.to_numpy()
        act_ratio, delta_ratio = act[-1] / act[0], delta[0] / delta[-1]
        theory_act = np.max(np.abs(act / act[0] / c ** (l - 1) - 1))
        out[f"W={c}I"] = {
            "depth": L, "status": run.status, "diverged_at": run.summary.get("diverged_at"),
            "act_std_layer1": sig(act[0]), f"act_std_layer{L}": sig(act[-1]),
            "act_ratio_last_over_first": sig(act_ratio, 5), "delta_ratio_first_over_last": sig(delta_ratio, 5),
            f"{c}^{L - 1}": sig(c ** (L - 1), 5), "max_rel_dev_act_from_c^(l-1)": float(f"{theory_act:.1e}"),
            "weight_grad_norm_min": sig(run.weight_grads(0).min()), "weight_grad_norm_max": sig(run.weight_grads(0).max()),
            "loss_step0": sig(run.metrics.loss.iloc[0]),
        }
        if run.status == "completed":
            out[f"W={c}I"]["final_train_loss"] = sig(run.summary["final_train_loss"])
        a1.semilogy(l, act, "o", ms=3.5, color=color, label=f"W = {c} I ({L} layers)")
        a1.semilogy(l, act[0] * c ** (l - 1), color="k", lw=0.8, ls="--")
        a2.semilogy(l, delta, "o", ms=3.5, color=color, label=f"W = {c} I ({L} layers)")
        a2.semilogy(l, delta[-1] * c ** (L - l), color="k", lw=0.8, ls="--")
    for ax in (a1, a2):
        ax.plot([], [], color="k", lw=0.8, ls="--", label="c^(distance in layers)")
        ax.set_xlabel("hidden layer l")
        ax.legend(fontsize=9)
    a1.set_ylabel("activation std of layer l (step 0)")
    a1.set_title("forward: c^(l-1)", fontsize=10)
    a2.set_ylabel("||dL/d output of layer l|| (step 0)")
    a2.set_title("backward: c^(L-l)", fontsize=10)
    save(fig, "linear_identity", "Deep linear nets with every W = 1.2 I or 0.5 I")
    return out


# --------------------------------------------------------------------------- 3. sigmoid' <= 1/4

SIGMOID = [Job("sigmoid_small", "deep_sigmoid_vanishing.yaml"),
           Job("sigmoid_xavier", "deep_sigmoid_vanishing.yaml", ("model.init=xavier_normal",)),
           Job("sigmoid_xavier_lr0.1", "deep_sigmoid_vanishing.yaml", ("model.init=xavier_normal", "train.lr=0.1")),
           Job("tanh_xavier_lr0.1", "deep_sigmoid_vanishing.yaml",
               ("model.init=xavier_normal", "model.activation=tanh", "train.lr=0.1"))]


def exp_sigmoid(runs: Runs) -> dict:
    from gradlab.nn.activations import Sigmoid, Tanh

    x = np.linspace(-8, 8, 16001)
    derivs = {}
    for name, act in (("sigmoid", Sigmoid()), ("tanh", Tanh())):
        act.forward(x)
        derivs[name] = act.backward(np.ones_like(x))  # phi'(x), as the library back-propagates it
    got = runs.train(SIGMOID)
    fig, (a1, a2, a3) = figure(3)
    a1.plot(x, derivs["sigmoid"], color="tab:purple", label="sigmoid'(x)")
    a1.plot(x, derivs["tanh"], color="tab:orange", label="tanh'(x)")
    a1.axhline(0.25, color="k", lw=0.8, ls="--")
    a1.text(-7.8, 0.27, "1/4", fontsize=9)
    a1.set_xlabel("x")
    a1.set_ylabel("derivative (gradlab's backward of ones)")
    a1.set_title("sigmoid' <= 1/4, tanh' <= 1", fontsize=10)
    a1.legend(fontsize=9)
    out: dict = {"max_sigmoid_prime": sig(float(derivs["sigmoid"].max()), 6),
                 "argmax_sigmoid_prime": float(x[derivs["sigmoid"].argmax()]),
                 "max_tanh_prime": sig(float(derivs["tanh"].max()), 6)}
    labels = {"sigmoid_small": "sigmoid, N(0, 0.01^2)", "sigmoid_xavier": "sigmoid, xavier_normal",
              "sigmoid_xavier_lr0.1": "sigmoid, xavier_normal, lr 0.1", "tanh_xavier_lr0.1": "tanh, xavier_normal, lr 0.1"}
    colors = {"sigmoid_small": "tab:gray", "sigmoid_xavier": "tab:purple", "sigmoid_xavier_lr0.1": "tab:pink",
              "tanh_xavier_lr0.1": "tab:orange"}
    for job in SIGMOID:
        run = got[job.label]
        ls = run.layers(0)
        L = len(ls)
        d = ls.delta_norm.to_numpy()
        ratio = d[0] / d[-1]
        if job.label != "sigmoid_xavier_lr0.1":  # step 0 does not depend on lr: same as sigmoid_xavier
            a2.semilogy(ls.layer, d / d[-1], "o-", ms=3, color=colors[job.label], label=labels[job.label])
        m = run.metrics
        a3.plot(m.step, smooth(m.loss, 10), color=colors[job.label], label=labels[job.label])
        out[job.label] = {"delta_ratio_layer1_over_layer20": sig(ratio), "factor_per_layer": sig(ratio ** (1 / (L - 1)), 3),
                          "weight_grad_dense1": sig(run.weight_grads(0).iloc[0]),
                          f"weight_grad_dense{L}": sig(run.weight_grads(0).iloc[-1]),
                          "loss_step0": sig(m.loss.iloc[0]), "final_train_loss": sig(run.summary["final_train_loss"]),
                          "final_val_accuracy": sig(run.summary["final_val_accuracy"], 3)}
    l = np.arange(1, L + 1)
    a2.semilogy(l, 0.25 ** (L - l), color="k", lw=0.8, ls="--", label="0.25^(20 - l)")
    out["0.25^19"] = sig(0.25 ** 19)
    a2.set_xlabel("hidden layer l")
    a2.set_ylabel("||dL/d output of layer l|| / same at layer 20")
    a2.set_title("step 0: the gradient going down 20 layers", fontsize=10)
    a2.legend(fontsize=8)
    a3.axhline(LN10, color="k", lw=0.8, ls="--")
    a3.text(300, LN10 - 0.05, "ln 10", fontsize=9, ha="right", va="top")
    a3.set_xlabel("step")
    a3.set_ylabel("training loss (batch, smoothed over 10)")
    a3.set_title("training", fontsize=10)
    a3.legend(fontsize=8)
    save(fig, "sigmoid", "sigmoid' <= 1/4: a 20-layer sigmoid net loses the gradient on the way down")
    return out


# --------------------------------------------------------------------------- 4. Xavier / He by depth

DEPTH_SWEEP = Job("depth_init", "sweep_depth_init.yaml", kind="sweep")


def exp_init_depth(runs: Runs) -> dict:
    s, _ = runs.sweep(DEPTH_SWEEP)
    s["init"] = s["model.init"].replace({"normal(std=0.01)": "N(0, 0.01^2)"})
    fig, (a1, a2) = figure(2, width=5.0, height=3.8)
    style = {("relu", "he_normal"): ("tab:red", "-"), ("tanh", "xavier_normal"): ("tab:blue", "-"),
             ("relu", "xavier_normal"): ("tab:red", "--"), ("tanh", "he_normal"): ("tab:blue", "--"),
             ("relu", "N(0, 0.01^2)"): ("tab:red", ":"), ("tanh", "N(0, 0.01^2)"): ("tab:blue", ":")}
    out: dict = {"delta_ratio_first": {}, "final_loss": {}, "final_val_accuracy": {}}
    for (act, init), (color, ls) in style.items():
        rows = s[(s["model.activation"] == act) & (s.init == init)].sort_values("model.depth")
        key = f"{act} {init}"
        out["delta_ratio_first"][key] = {int(d): sig(v, 2) for d, v in zip(rows["model.depth"], rows.delta_ratio_at_first_step)}
        out["final_loss"][key] = {int(d): sig(v, 2) for d, v in zip(rows["model.depth"], rows.final_train_loss)}
        out["final_val_accuracy"][key] = {int(d): sig(v, 2) for d, v in zip(rows["model.depth"], rows.final_val_accuracy)}
        a1.semilogy(rows["model.depth"], rows.delta_ratio_at_first_step, ls, marker="o", color=color, label=key)
        a2.plot(rows["model.depth"], rows.final_val_accuracy, ls, marker="o", color=color, label=key)
    out["runs"] = int(len(s))
    out["all_completed"] = bool((s.status == "completed").all())
    a1.axhline(1.0, color="k", lw=0.8)
    a1.set_xlabel("depth (hidden layers)")
    a1.set_ylabel("delta_norm of layer 1 / of layer depth (step 0)")
    a1.set_title("the gradient reaching layer 1", fontsize=10)
    a1.legend(fontsize=8)
    a2.set_xlabel("depth (hidden layers)")
    a2.set_ylabel("validation accuracy after 100 steps")
    a2.set_title("two spirals, 100 SGD steps", fontsize=10)
    a2.set_ylim(0.35, 1.02)
    save(fig, "init_depth", "Xavier for tanh, He for ReLU: width-64 MLPs of depth 5 to 50")
    return out


# --------------------------------------------------------------------------- 5. residual, 6. batch norm

RESIDUAL = [Job("residual", "residual_deep_healthy.yaml"),
            Job("plain", "residual_deep_healthy.yaml", ("model.residual=false",))]
BATCHNORM = [Job("batchnorm", "batchnorm_deep_sigmoid.yaml"),
             Job("no_batchnorm", "batchnorm_deep_sigmoid.yaml", ("model.batchnorm=false",))]


def rescue(runs: Runs, jobs: list[Job], labels: dict, name: str, title: str, smooth_k: int) -> dict:
    got = runs.train(jobs)
    fig, (a1, a2) = figure(2)
    out = {}
    for job, color in zip(jobs, ("tab:green", "tab:gray")):
        run = got[job.label]
        ls0, lsN = run.layers(0), run.layers(-1)
        L = len(ls0)
        d = ls0.delta_norm.to_numpy()
        a1.semilogy(ls0.layer, d, "o-", ms=3, color=color, label=labels[job.label])
        m = run.metrics
        a2.semilogy(m.step, smooth(m.loss, smooth_k), color=color, lw=2 if color == "tab:gray" else 1.2,
                    label=labels[job.label])
        wg = run.weight_grads(0)
        out[job.label] = {
            "depth": L, "delta_ratio_first_over_last_step0": sig(d[0] / d[-1], 3),
            "delta_ratio_first_over_last_last_step": sig(lsN.delta_norm.iloc[0] / lsN.delta_norm.iloc[-1], 3),
            "weight_grad_dense1_step0": sig(wg.iloc[0], 3), f"weight_grad_dense{L}_step0": sig(wg.iloc[-1], 3),
            "loss_step0": sig(m.loss.iloc[0], 3), "loss_step100": sig(m.loss[m.step == 100].iloc[0], 3),
            "final_train_loss": sig(run.summary["final_train_loss"], 3),
            "final_val_accuracy": sig(run.summary["final_val_accuracy"], 3),
        }
    a1.set_xlabel("hidden layer l")
    a1.set_ylabel("||dL/d output of layer l|| (step 0)")
    a1.set_title("the gradient going down, at initialization", fontsize=10)
    a1.legend(fontsize=9, loc="lower right")
    a2.axhline(LN10, color="k", lw=0.8, ls=":", zorder=3)
    a2.text(a2.get_xlim()[1], LN10 * 0.85, "ln 10 ", fontsize=9, ha="right", va="top")
    a2.set_xlabel("step")
    a2.set_ylabel(f"training loss (batch, smoothed over {smooth_k})")
    a2.set_title("training", fontsize=10)
    a2.legend(fontsize=9, loc="lower left")
    save(fig, name, title)
    return out


def exp_residual(runs: Runs) -> dict:
    return rescue(runs, RESIDUAL, {"residual": "residual (x + F(x) every 2 layers)", "plain": "plain"},
                  "residual", "Skip connections: a 50-layer ReLU net with N(0, 0.05^2) weights", 10)


def exp_batchnorm(runs: Runs) -> dict:
    return rescue(runs, BATCHNORM, {"batchnorm": "batch norm", "no_batchnorm": "no batch norm"},
                  "batchnorm", "Batch norm: a 10-layer sigmoid net (Xavier init)", 20)


# --------------------------------------------------------------------------- 7. clipping

CLIP_SWEEP = Job("clip_threshold", "sweep_clip_threshold.yaml", kind="sweep")
CLIP_RNN = [Job("rnn_noclip", "relu_rnn_exploding.yaml"),
            Job("rnn_clip1", "relu_rnn_exploding.yaml", ("train.clip=1.0",))]


def exp_clipping(runs: Runs) -> dict:
    s, sdir = runs.sweep(CLIP_SWEEP)
    rnn = runs.train(CLIP_RNN)
    fig, (a1, a2, a3) = figure(3)
    out: dict = {"mlp": {}, "rnn": {}}
    colors = {"null": "tab:red", "10.0": "tab:orange", "1.0": "tab:green", "0.1": "tab:blue"}
    for _, row in s.iterrows():
        thr = "null" if pd.isna(row["train.clip"]) else str(row["train.clip"])
        m = Run(sdir / row.run, row.status).metrics
        label = "no clipping" if thr == "null" else f"clip at {thr}"
        fin = m[np.isfinite(m.loss)]
        if thr == "null":  # 4 finite steps, then overflow: points, not a smoothed line
            a1.semilogy(fin.step, fin.grad_norm, "x-", color=colors[thr], ms=7, label=label)
            a2.semilogy(fin.step, fin.loss, "x-", color=colors[thr], ms=7, label=label)
            last = fin.iloc[-1]
            a1.annotate(f"{last.grad_norm:.1e} at step {int(last.step)},\nthen overflow", (last.step, 1e5),
                        xytext=(8, -28), textcoords="offset points", fontsize=8, color=colors[thr],
                        arrowprops={"arrowstyle": "->", "color": colors[thr]})
            a2.annotate(f"{last.loss:.1e} at step {int(last.step)}", (last.step, 1e3), xytext=(8, -20),
                        textcoords="offset points", fontsize=8, color=colors[thr],
                        arrowprops={"arrowstyle": "->", "color": colors[thr]})
        else:
            a1.semilogy(fin.step, fin.grad_norm, color=colors[thr], lw=1, label=label)
            a2.semilogy(fin.step, fin.loss, color=colors[thr], lw=0.8, label=label)
        out["mlp"][f"clip={thr}"] = {
            "status": row.status, "diverged_at": None if pd.isna(row.diverged_at) else int(row.diverged_at),
            "grad_norm_steps_0_to_3": [sig(v, 2) for v in m.grad_norm.iloc[:4]],
            "clipped_steps": int(m.clipped.sum()), "steps_logged": int(len(m)),
            "loss_step200": sig(m.loss[m.step == 200].iloc[0], 2) if (m.step == 200).any() else None,
            "final_train_loss": sig(row.final_train_loss, 2), "final_val_loss": sig(row.final_val_loss, 2),
        }
    import gradlab

    base = gradlab.setup(gradlab.load_config(CONFIGS / "clipping_tames_exploding.yaml"))
    for part, y in (("train", base.data.y_train), ("val", base.data.y_val)):  # the loss of predicting 0
        out["mlp"][f"loss_predicting_0_{part}"] = sig(base.loss.forward(np.zeros((len(y), base.data.n_outputs)), y), 2)
    a1.set_ylim(0.1, 1e5)
    a1.set_ylabel("global gradient norm before clipping")
    a1.set_title("10-layer ReLU MLP, lr 0.1: gradient norm", fontsize=10)
    a2.set_ylim(1e-3, 1e3)
    a2.set_ylabel("training loss (batch)")
    a2.set_title("... and its loss", fontsize=10)
    for ax in (a1, a2):
        ax.set_xlabel("step (symlog axis)")
        ax.set_xscale("symlog", linthresh=10)
        ax.set_xlim(0, 500)
        ax.legend(fontsize=8, loc="upper right")
    for job, color, label in zip(CLIP_RNN, ("tab:red", "tab:green"), ("no clipping", "clip at 1.0")):
        run = rnn[job.label]
        m = run.metrics
        fin = m[np.isfinite(m.loss)]
        if run.status == "completed":
            a3.semilogy(fin.step, fin.loss, color=color, lw=0.8, alpha=0.5, label=f"{label}: training batch")
            v = m.dropna(subset=["val_loss"])
            a3.semilogy(v.step, v.val_loss, color=color, lw=1.8, label=f"{label}: validation")
        else:
            a3.semilogy(fin.step, fin.loss, "x", color=color, ms=9, mew=2,
                        label=f"{label}: diverged at step {run.summary.get('diverged_at')}")
        info = {"status": run.status, "diverged_at": run.summary.get("diverged_at"),
                "loss_step0": sig(m.loss.iloc[0], 3), "grad_norm_step0": sig(m.grad_norm.iloc[0], 2),
                "time_ratio_step0": sig(run.time_ratio().iloc[0], 2)}
        if run.status == "completed":
            v = m.dropna(subset=["val_loss"])
            info.update(clipped_logged=int(m.clipped.sum()), logged=int(len(m)),
                        loss_step30=sig(m.loss[m.step == 30].iloc[0], 2),
                        val_loss_step1000=sig(v.val_loss[v.step == 1000].iloc[0], 3),
                        final_val_loss=sig(run.summary["final_val_loss"], 3),
                        final_train_loss=sig(run.summary["final_train_loss"], 3))
        out["rnn"][job.label] = info
    a3.axhline(1 / 6, color="k", lw=0.8, ls=":")
    a3.text(300, 0.3, "1/6: predicting\nthe mean", fontsize=8, ha="center")
    a3.set_xlabel("step (symlog axis)")
    a3.set_ylabel("MSE")
    a3.set_title("ReLU RNN, U = 1.1 I, adding T = 50, lr 0.05", fontsize=10)
    a3.set_xscale("symlog", linthresh=10)
    a3.set_xlim(0, 2000)
    a3.legend(fontsize=8, loc="upper right")
    save(fig, "clipping", "Clipping the gradient norm tames exploding gradients")
    return out


# --------------------------------------------------------------------------- 8. LSTM vs vanilla RNN

RECURRENT = [Job("lstm", "lstm_adding.yaml"), Job("rnn_tanh", "rnn_tanh_adding.yaml")]


def exp_lstm_rnn(runs: Runs) -> dict:
    got = runs.train(RECURRENT)
    fig, (a1, a2) = figure(2, width=5.0)
    out = {}
    for job, color, label in zip(RECURRENT, ("tab:green", "tab:blue"), ("LSTM, 32 units", "tanh RNN, 32 units")):
        run = got[job.label]
        m = run.metrics.dropna(subset=["val_loss"])
        r = run.time_ratio()
        a1.semilogy(m.step, m.val_loss, color=color, label=label)
        a2.semilogy(r.index, r.values, "o-", ms=2.5, color=color, label=label)
        out[job.label] = {
            "val_loss_step0": sig(m.val_loss.iloc[0], 3),
            "val_loss_step500": sig(m.val_loss[m.step == 500].iloc[0], 3),
            "val_loss_step1500": sig(m.val_loss[m.step == 1500].iloc[0], 3),
            "first_step_val_below_0.05": first_step_below(m, "val_loss", 0.05),
            "last_step_val_above_0.15": int(m.step[m.val_loss > 0.15].iloc[-1]),
            "final_val_loss": sig(run.summary["final_val_loss"], 3),
            "time_ratio_step0": sig(r.iloc[0], 2), "time_ratio_step1000": sig(r.loc[1000], 2),
            "time_ratio_last": sig(r.iloc[-1], 2), "wall_time_s": sig(run.summary.get("wall_time"), 2),
        }
        gates = run.table("gate_stats")
        f0 = gates[(gates.step == 0) & (gates.gate == "f")]
        if len(f0):
            out[job.label]["forget_gate_mean_step0"] = sig(f0["mean"].iloc[0], 2)
    a1.axhline(1 / 6, color="k", lw=0.8, ls="--")
    a1.text(2000, 0.19, "1/6 (predict the mean)", fontsize=8)
    a1.set_xlabel("step")
    a1.set_ylabel("validation MSE")
    a1.set_title("adding problem, T = 100", fontsize=10)
    a1.legend(fontsize=9)
    a2.set_xlabel("step")
    a2.set_ylabel("||dL/dh_1|| / ||dL/dh_100||")
    a2.set_title("the gradient reaching the first step", fontsize=10)
    a2.legend(fontsize=9)
    save(fig, "lstm_rnn", "LSTM against a vanilla tanh RNN over 100 steps")
    return out


# --------------------------------------------------------------------------- 9. Glorot & Bengio 2010

GLOROT = [Job("glorot_standard", "glorot_tanh_standard.yaml"), Job("glorot_normalized", "glorot_tanh_normalized.yaml")]
GLOROT_SEEDS = Job("glorot_seeds", "sweep_glorot_init.yaml", ("train.steps=1",), kind="sweep")


def mean_singular_value(W: np.ndarray) -> float:
    return float(np.linalg.svd(W, compute_uv=False).mean())


def exp_glorot2010(runs: Runs) -> dict:
    got = runs.train(GLOROT)
    seeds, seeds_dir = runs.sweep(GLOROT_SEEDS)
    fig, axes = figure(2, 2, width=4.7, height=3.3)
    a1, a2, a3, a4 = axes
    out: dict = {}
    for job, color, label in zip(GLOROT, ("tab:red", "tab:blue"),
                                 ("standard U[-1/sqrt(n), 1/sqrt(n)]", "normalized (xavier_uniform)")):
        run = got[job.label]
        ls = run.layers(0)
        L = len(ls)
        d, wg = ls.delta_norm.to_numpy(), run.weight_grads(0).to_numpy()
        l = ls.layer.to_numpy()
        a1.semilogy(l, ls.act_std, "o-", color=color, label=label)
        a2.plot(l, d / d[-1], "o-", color=color, label=label)
        a3.plot(l, wg / wg[-1], "o-", color=color, label=label)
        m = run.metrics
        a4.semilogy(m.step, smooth(m.loss, 20), color=color, label=label)
        p = run.params_init()
        W = [p[f"dense{k}.W"] for k in range(2, L + 1)]  # the square hidden-to-hidden matrices
        n = W[0].shape[0]
        n_var = float(np.mean([w.var() for w in W]) * n)
        out[job.label] = {
            "act_std_by_layer": [sig(v, 3) for v in ls.act_std],
            "delta_norm_by_layer": [sig(v, 3) for v in d],
            "delta_ratio_layer1_over_layer5": sig(d[0] / d[-1], 3),
            "weight_grad_by_layer": [sig(v, 3) for v in wg],
            "weight_grad_max_over_min": sig(wg.max() / wg.min(), 3),
            "n_var_W": sig(n_var, 3),
            "mean_singular_value_W": sig(float(np.mean([mean_singular_value(w) for w in W])), 3),
            "mean_singular_value_theory": sig(8 / (3 * math.pi) * math.sqrt(n_var), 3),
            "loss_step200": sig(m.loss[m.step == 200].iloc[0], 3),
            "final_train_loss": sig(run.summary["final_train_loss"], 3),
            "final_val_accuracy": sig(run.summary["final_val_accuracy"], 3),
        }
    for init, key in (("uniform(limit=0.0625)", "glorot_standard"), ("xavier_uniform", "glorot_normalized")):
        rows = seeds[seeds["model.init"] == init]
        out[key]["seeds"] = sorted(int(v) for v in rows.seed)
        out[key]["delta_ratio_over_seeds"] = [sig(rows.delta_ratio_at_first_step.min(), 3), sig(rows.delta_ratio_at_first_step.max(), 3)]
        wr = [(lambda w: w.iloc[0] / w.iloc[-1])(Run(seeds_dir / r, "completed").weight_grads(0)) for r in rows.run]
        out[key]["weight_grad_ratio_over_seeds"] = [sig(min(wr), 3), sig(max(wr), 3)]
    a1.set_ylabel("activation std (step 0)")
    a1.set_title("activations shrink going up (standard)", fontsize=10)
    a2.set_ylabel("||dL/d out_l|| / ||dL/d out_5||")
    a2.set_title("back-propagated gradients (step 0)", fontsize=10)
    a2.set_ylim(0, 1.1)
    a3.set_ylabel("||dL/dW_l|| / ||dL/dW_5||")
    a3.set_title("weight gradients (step 0): nearly flat", fontsize=10)
    a3.set_ylim(0, 1.3)
    for ax in (a1, a2, a3):
        ax.set_xlabel("hidden layer l (1 = next to the input)")
        ax.set_xticks(range(1, 6))
        ax.legend(fontsize=8)
    a4.set_xlabel("step (minibatch 10)")
    a4.set_ylabel("training loss (batch, smoothed over 20 logs)")
    a4.set_title("training", fontsize=10)
    a4.legend(fontsize=8)
    save(fig, "glorot2010", "Glorot & Bengio 2010, scaled down: tanh, 5 hidden layers of 256")
    return out


# --------------------------------------------------------------------------- 10. He et al. 2015

HE_SWEEP = Job("he_xavier_30", "sweep_he_xavier_30.yaml", kind="sweep")


def exp_he2015(runs: Runs) -> dict:
    s, sdir = runs.sweep(HE_SWEEP)
    fig, (a1, a2, a3) = figure(3)
    out: dict = {}
    colors = {"he_normal": "tab:green", "xavier_normal": "tab:red"}
    for init in ("he_normal", "xavier_normal"):
        rows = s[s["model.init"] == init].sort_values("seed")
        per_seed = {}
        for _, row in rows.iterrows():
            run = Run(sdir / row.run, row.status)
            m = run.metrics
            a1.plot(m.step, smooth(m.loss, 10), color=colors[init], lw=1.5 if init == "xavier_normal" else 1,
                    label=f"{init}" if row.seed == rows.seed.min() else None)
            after = m[m.step >= 100].loss
            per_seed[int(row.seed)] = {
                "loss_step0": sig(m.loss.iloc[0], 3), "first_step_loss_below_0.2": first_step_below(m, "loss", 0.2),
                "loss_after_step100_min": sig(after.min(), 3), "loss_after_step100_max": sig(after.max(), 3),
                "final_train_loss": sig(row.final_train_loss, 3), "final_val_accuracy": sig(row.final_val_accuracy, 3),
                "delta_ratio_layer1_over_layer30_step0": sig(row.delta_ratio_at_first_step, 2),
                "weight_grad_dense1_step0": sig(run.weight_grads(0).iloc[0], 2),
            }
            low = first_step_below(m, "loss", 0.2)
            if low is not None:  # the spikes after the loss first fell below 0.2
                later = m[m.step > low]
                per_seed[int(row.seed)]["max_loss_after_first_below_0.2"] = sig(later.loss.max(), 2)
                per_seed[int(row.seed)]["step_of_that_max"] = int(later.step[later.loss.idxmax()])
            if row.seed == rows.seed.min():
                ls = run.layers(0)
                l = ls.layer.to_numpy()
                a2.semilogy(l, ls.act_std, "o", ms=3, color=colors[init], label=init)
                a3.semilogy(l, ls.delta_norm / ls.delta_norm.iloc[-1], "o", ms=3, color=colors[init], label=init)
                per_seed[int(row.seed)]["act_std_hidden_min"] = sig(ls.act_std.min(), 2)
                per_seed[int(row.seed)]["act_std_hidden_max"] = sig(ls.act_std.max(), 2)
                if init == "xavier_normal":
                    a2.semilogy(l, ls.act_std.iloc[0] * 0.5 ** ((l - 1) / 2), color="k", lw=0.8, ls="--",
                                label="(1/sqrt 2)^(l-1)")
                    a3.semilogy(l, 0.5 ** ((l.max() - l) / 2), color="k", lw=0.8, ls="--", label="(1/sqrt 2)^(30-l)")
                    per_seed[int(row.seed)]["act_std_layer1"] = sig(ls.act_std.iloc[0], 2)
                    per_seed[int(row.seed)]["act_std_layer30"] = sig(ls.act_std.iloc[-1], 2)
        out[init] = per_seed
    out["(1/sqrt2)^29"] = sig(0.5 ** 14.5, 2)
    out["ln10"] = sig(LN10, 4)
    a1.axhline(LN10, color="k", lw=0.8, ls=":", zorder=3)
    a1.text(600, LN10 + 0.1, "ln 10", fontsize=9, ha="right")
    a1.set_xlabel("step")
    a1.set_ylabel("training loss (batch, smoothed over 10)")
    a1.set_title("30 ReLU layers, 3 seeds each", fontsize=10)
    a1.legend(fontsize=9)
    a2.set_xlabel("hidden layer l")
    a2.set_ylabel("activation std (step 0)")
    a2.set_title("forward", fontsize=10)
    a2.legend(fontsize=8)
    a3.set_xlabel("hidden layer l")
    a3.set_ylabel("||dL/d output of l|| / same at layer 30")
    a3.set_title("backward (step 0)", fontsize=10)
    a3.legend(fontsize=8)
    save(fig, "he2015", "He et al. 2015, scaled down: a 30-layer ReLU MLP, he_normal vs xavier_normal")
    return out


# --------------------------------------------------------------------------- 11. He et al. 2015 on images

CONV30 = Job("conv30", "sweep_he2015_conv30.yaml", kind="sweep")
CONV30_LR = [Job(f"conv30_he_lr0.003_seed{seed}", "he2015_conv30.yaml", (f"seed={seed}", "train.lr=0.003"))
             for seed in (0, 1, 2)]  # He's seeds again at a third of the rate


def padded_conv_gain(size: int, kernel: int, layers: int) -> np.ndarray:
    """Mean-field factor that zero padding ('same') puts on the gradient's norm going down ``layers`` conv
    layers of a ``size`` x ``size`` image, for 0..layers: the gradient's expected square at each pixel is the
    average over the kernel's in-bounds offsets of the square one layer up (the out-of-bounds taps feed the
    padding, not an input pixel), starting uniform at the top. The kernel is separable, so one axis squared."""
    r = kernel // 2
    A = sum(np.eye(size, k=k) for k in range(-r, r + 1)) / kernel
    u, out = np.ones(size), []
    for _ in range(layers + 1):
        out.append(u.mean())
        u = A @ u
    return np.array(out)  # the norm's factor over d layers: out[d] (the square of a 1-D mean is the 2-D one's)


def conv_weight_grad(run: Run, param: str, step: int = 0) -> float:
    g = run.table("grad_norms")
    return float(g[(g.step == step) & (g.param == param)].grad_norm.iloc[0])


def exp_he2015_conv(runs: Runs) -> dict:
    s, sdir = runs.sweep(CONV30)
    low = runs.train(CONV30_LR)
    fig, (a1, a2, a3) = figure(3)
    colors = {"he_normal": "tab:green", "xavier_normal": "tab:red"}
    dashes = {0: "-", 1: "--", 2: ":"}
    L = 30
    pad = padded_conv_gain(8, 3, L - 1)  # 8x8 digits, 3x3 kernels, 29 layers between layer 30 and layer 1
    out: dict = {"theory": {"(1/sqrt2)^29": sig(0.5 ** 14.5, 3), "padding_factor_29_layers": sig(pad[-1], 3),
                            "he_normal_with_padding": sig(pad[-1], 3),
                            "xavier_normal_with_padding": sig(pad[-1] * 0.5 ** 14.5, 3)}}
    ratio0 = {}
    for init in ("he_normal", "xavier_normal"):
        per_seed = {}
        for row in s[s["model.init"] == init].sort_values("seed").itertuples():
            run = Run(sdir / row.run, row.status)
            m = run.metrics
            ls = run.layers(0)
            l = ls.layer.to_numpy()
            d = ls.delta_norm.to_numpy()
            seed = int(row.seed)
            a1.plot(m.step, m.loss, color=colors[init], ls=dashes[seed], lw=1.2, label=f"{init}, seed {seed}")
            last = run.layers(-1)
            v = m.dropna(subset=["val_accuracy"])
            ratio0[(init, seed)] = d[0] / d[-1]
            per_seed[seed] = {
                "delta_ratio_layer1_over_layer30_step0": sig(d[0] / d[-1], 3),
                "weight_grad_conv1_step0": sig(conv_weight_grad(run, "conv1.W"), 2),
                "grad_norm_step0": sig(m.grad_norm.iloc[0], 3),
                "loss_step0": sig(m.loss.iloc[0], 4),
                "loss_by_step": {int(st): sig(x, 3) for st, x in zip(m.step, m.loss) if st % 25 == 0 or st == m.step.max()},
                "loss_min_max": [sig(m.loss.min(), 3), sig(m.loss.max(), 3)],
                "step_of_largest_grad_norm": int(m.step[m.grad_norm.idxmax()]),
                "largest_grad_norm": sig(m.grad_norm.max(), 3),
                "first_logged_step_loss_below_1": first_step_below(m, "loss", 1.0),
                "highest_val_accuracy": sig(v.val_accuracy.max(), 3),
                "frac_dead_layer30_last_step": sig(last.frac_dead.iloc[-1], 3),
                "final_train_loss": sig(row.final_train_loss, 3),
                "final_val_accuracy": sig(row.final_val_accuracy, 3),
                "wall_time_s": sig(run.summary.get("wall_time"), 2),
            }
            if seed == 0:
                per_seed[seed]["act_std_layer1"] = sig(ls.act_std.iloc[0], 2)
                per_seed[seed]["act_std_layer30"] = sig(ls.act_std.iloc[-1], 2)
                a2.semilogy(l, ls.act_std, "o", ms=3.5, color=colors[init], label=init)
                a3.semilogy(l, d / d[-1], "o", ms=3.5, color=colors[init], label=f"{init}, measured")
                g = 1.0 if init == "he_normal" else 0.5
                a3.semilogy(l, pad[L - l] * g ** ((L - l) / 2), color=colors[init], lw=1, ls="--",
                            label=f"{init}: mean field with padding")
        out[init] = per_seed
    out["he_normal_lr0.003"] = {}
    for seed, job in enumerate(CONV30_LR):
        run = low[job.label]
        m = run.metrics
        out["he_normal_lr0.003"][seed] = {
            "loss_by_step": {int(st): sig(x, 3) for st, x in zip(m.step, m.loss) if st % 25 == 0 or st == m.step.max()},
            "first_logged_step_loss_below_1": first_step_below(m, "loss", 1.0),
            "final_train_loss": sig(run.summary["final_train_loss"], 3),
            "final_val_accuracy": sig(run.summary["final_val_accuracy"], 3),
        }
    out["xavier_over_he_ratio_by_seed"] = {seed: sig(ratio0[("xavier_normal", seed)] / ratio0[("he_normal", seed)], 3)
                                           for seed in sorted({k[1] for k in ratio0})}
    a3.semilogy(np.arange(1, L + 1), 0.5 ** ((L - np.arange(1, L + 1)) / 2), color="k", lw=0.8, ls=":",
                label="(1/sqrt 2)^(30-l), no padding")
    a1.axhline(LN10, color="k", lw=0.8, ls=":")
    a1.text(150, LN10 + 0.08, "ln 10", fontsize=9, ha="right")
    a1.set_xlabel("step")
    a1.set_ylabel("training loss (batch, every 5th step)")
    a1.set_title("30 conv layers, 8x8 digits, 3 seeds each", fontsize=10)
    a1.set_ylim(0, 3.0)
    a1.legend(fontsize=7, loc="lower left")
    a2.set_xlabel("conv layer l")
    a2.set_ylabel("activation std (step 0, seed 0)")
    a2.set_title("forward", fontsize=10)
    a2.legend(fontsize=9)
    a3.set_xlabel("conv layer l")
    a3.set_ylabel("||dL/d output of l|| / same at layer 30")
    a3.set_title("backward (step 0, seed 0)", fontsize=10)
    a3.legend(fontsize=7, loc="lower right")
    save(fig, "he2015_conv", "He et al. 2015 on real images: a 30-layer plain ReLU conv net, he_normal vs xavier_normal")
    return out


# --------------------------------------------------------------------------- 12. He et al. 2016 on images

RESNET = Job("resnet_depth", "sweep_resnet_depth.yaml", kind="sweep")


def resnet_name(row) -> str:
    return f"{'ResNet' if row['model.residual'] else 'plain'}-{2 + 3 * int(row['model.depth'])}"


def l2_penalty(path: Path, l2: float) -> float:
    """l2/2 sum ||W||^2 over the weights L2 applies to, from a params .npz: the part of a batch loss in
    metrics.csv that is not the data's."""
    from gradlab.nn.module import l2_applies

    with np.load(path) as z:
        return 0.5 * l2 * sum(float(np.vdot(z[k], z[k])) for k in z.files if l2_applies(k))


def l2_penalty_by_step(run: Run, l2: float) -> pd.Series:
    """l2/2 sum ||W||^2 at each logged step, from the weight norms in grad_norms.csv."""
    from gradlab.nn.module import l2_applies

    g = run.table("grad_norms")
    g = g[g.param.map(l2_applies)]
    return 0.5 * l2 * (g.weight_norm ** 2).groupby(g.step).sum()


def exp_resnet_depth(runs: Runs) -> dict:
    s, sdir = runs.sweep(RESNET)
    fig, (a1, a2, a3) = figure(3)
    out: dict = {}
    style = {"plain-20": ("tab:blue", "-"), "plain-56": ("tab:red", "-"),
             "ResNet-20": ("tab:blue", "--"), "ResNet-56": ("tab:red", "--")}
    for _, row in s.iterrows():
        name = resnet_name(row)
        color, ls_ = style[name]
        run = Run(sdir / row.run, row.status)
        m = run.metrics
        v = m.dropna(subset=["val_accuracy"])
        l2 = float(yaml.safe_load((run.path / "config.yaml").read_text())["train"]["l2"])
        penalty = l2_penalty_by_step(run, l2)
        data_loss = m.loss - penalty.reindex(m.step).to_numpy()  # the batch loss without its L2 term
        a1.semilogy(m.step, smooth(data_loss, 3), color=color, ls=ls_, label=name)
        a2.plot(v.step, v.val_accuracy, "o", color=color, ls=ls_, ms=3, label=name)
        lay = run.layers(0)
        # the last hidden layer is left out: whether the global pool is logged in it or in the output layer
        # changes its delta_norm by sqrt(H*W), not the layers below it
        below = lay.iloc[:-1]
        d = below.delta_norm / below.delta_norm.iloc[-1]
        a3.semilogy(below.layer, d, "o", color=color, ls=ls_, ms=3, label=name)
        late = m.step >= m.step.max() - 50
        out[name] = {
            "status": row.status, "logged_layers": len(lay) + 1,
            "loss_step0": sig(m.loss.iloc[0], 3),
            "loss_by_step": {int(st): sig(x, 3) for st, x in zip(m.step, m.loss) if st % 25 == 0 or st == m.step.max()},
            "data_loss_by_step": {int(st): sig(x, 3) for st, x in zip(m.step, data_loss)
                                  if st % 25 == 0 or st == m.step.max()},
            "batch_loss_mean_last_50_steps": sig(m.loss[late].mean(), 3),
            "data_loss_mean_last_50_steps": sig(data_loss[late].mean(), 3),
            "l2_penalty_logged_step0": sig(penalty.iloc[0], 3),
            "final_train_loss": sig(row.final_train_loss, 3),
            "final_train_accuracy": sig(run.summary.get("final_train_accuracy"), 3),
            "final_val_accuracy": sig(row.final_val_accuracy, 3),
            "delta_ratio_first_over_last_step0": sig(lay.delta_norm.iloc[0] / lay.delta_norm.iloc[-1], 3),
            "delta_ratio_first_over_second_to_last_step0": sig(d.iloc[0], 3),
            "delta_growth_per_layer_step0": sig(d.iloc[0] ** (1 / (len(d) - 1)), 3),
            "wall_time_s": sig(run.summary.get("wall_time"), 3),
            "l2_penalty_step0": sig(l2_penalty(run.path / "params_init.npz", l2), 3),
            "l2_penalty_final": sig(l2_penalty(run.path / "params_final.npz", l2), 3),
        }
    a1.set_xlabel("step")
    a1.set_ylabel("batch loss without the L2 term\n(every 5th step, smoothed over 3)")
    a1.set_title("training", fontsize=10)
    a2.set_xlabel("step")
    a2.set_ylabel("validation accuracy")
    a2.set_title("validation", fontsize=10)
    a3.set_xlabel("logged layer l (a residual block is one)")
    a3.set_ylabel("||dL/d output of l|| / same at the\nlast but one hidden layer")
    a3.set_title("backward (step 0)", fontsize=10)
    for ax in (a1, a2, a3):
        ax.legend(fontsize=8)
    save(fig, "resnet_depth", "He et al. 2016 on real images: plain and residual conv nets of 20 and 56 layers")
    return out


# --------------------------------------------------------------------------- the list

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in [
    Experiment("c150", "1.1^150 and 0.9^150", C150, exp_c150),
    Experiment("linear_identity", "1.2 I and 0.5 I deep linear nets", LINEAR, exp_linear_identity),
    Experiment("sigmoid", "sigmoid' <= 1/4 and the vanishing it causes", SIGMOID, exp_sigmoid),
    Experiment("init_depth", "Xavier for tanh, He for ReLU", [DEPTH_SWEEP], exp_init_depth),
    Experiment("residual", "Residual connections", RESIDUAL, exp_residual),
    Experiment("batchnorm", "Batch normalization", BATCHNORM, exp_batchnorm),
    Experiment("clipping", "Gradient clipping", [CLIP_SWEEP, *CLIP_RNN], exp_clipping),
    Experiment("lstm_rnn", "LSTM against a vanilla RNN", RECURRENT, exp_lstm_rnn),
    Experiment("glorot2010", "Glorot & Bengio 2010", [*GLOROT, GLOROT_SEEDS], exp_glorot2010),
    Experiment("he2015", "He et al. 2015", [HE_SWEEP], exp_he2015),
    Experiment("he2015_conv", "He et al. 2015 on real images", [CONV30, *CONV30_LR], exp_he2015_conv),
    Experiment("resnet_depth", "He et al. 2016 on real images", [RESNET], exp_resnet_depth),
]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", action="append", choices=list(EXPERIMENTS), metavar="NAME",
                    help=f"run only this experiment (repeatable): {', '.join(EXPERIMENTS)}")
    ap.add_argument("--runs", metavar="DIR", help="keep the run folders here (default: a temporary folder, removed)")
    ap.add_argument("--reuse", action="store_true",
                    help="with --runs: read the run folders already there instead of running them again")
    ap.add_argument("--list", action="store_true", help="list the experiments and their commands, run nothing")
    args = ap.parse_args(argv)
    if args.list:
        for e in EXPERIMENTS.values():
            print(f"{e.name}: {e.title} -> docs/figures/{e.figure}")
            for c in e.commands:
                print(f"    {c}")
        return 0
    chosen = args.only or list(EXPERIMENTS)
    numbers = json.loads(NUMBERS.read_text()) if NUMBERS.exists() and args.only else {}
    out = Path(args.runs).resolve() if args.runs else Path(tempfile.mkdtemp(prefix="gradlab-experiments-"))
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    timings = {}
    try:
        with ProcessPoolExecutor(WORKERS) as pool:
            runs = Runs(out, pool, reuse=bool(args.runs and args.reuse))
            for name in chosen:
                e = EXPERIMENTS[name]
                t0 = time.perf_counter()
                print(f"== {name}: {e.title}", flush=True)
                for c in e.commands:
                    print(f"   $ {c}")
                result = e.make(runs)
                timings[name] = round(time.perf_counter() - t0, 1)
                numbers[name] = {"figure": f"figures/{e.figure}", "commands": e.commands, **result}
                print(json.dumps(result, indent=1))
                print(f"   -> docs/figures/{e.figure} ({timings[name]} s)", flush=True)
    finally:
        if not args.runs:
            shutil.rmtree(out, ignore_errors=True)
    FIGURES.mkdir(parents=True, exist_ok=True)
    ordered = {k: numbers[k] for k in EXPERIMENTS if k in numbers}
    NUMBERS.write_text(json.dumps(ordered, indent=1) + "\n")
    total = time.perf_counter() - t_all
    print(f"done: {len(chosen)} experiment(s) in {total:.0f} s "
          f"({', '.join(f'{k} {v} s' for k, v in timings.items())}); numbers in docs/figures/numbers.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
