"""PNG figures for a run folder (a sweep folder's: sweep_plots.py) (matplotlib, Agg canvas, no pyplot, no display).

Every ``plot_*`` function returns the Path it wrote, or None when its data does not apply
(no recurrent layers, no logged steps, a column missing). Non-finite and non-positive values
(a diverged run, a layer without parameters) are masked, never plotted on a log axis. A gradient norm of
exactly 0 (a vanished gradient: every unit below dead) is no missing value: grad_heatmap.png draws it in a
colour of its own and gradient_flow.png marks it at the bottom edge of its log axis.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, NullLocator
from matplotlib.transforms import blended_transform_factory

from ..files import save_atomic
from .load import RunData
from .progress import chance  # the diagnosis' chance level: one figure on the page and in the plot
from .theory import NAMED, layer_names

DPI = 100
SIZE = (7.0, 4.0)
N_STEPS = 5  # logged steps shown in the per-step line plots
DELTA = "||dL/d output|| (delta_norm)"
GRAD = "||dL/d params|| (grad_norm)"
RUN_PLOTS = ("gradient_flow.png", "grad_heatmap.png", "loss_grad_norm.png", "activations.png", "time_grad_norms.png",
             "gate_stats.png")
CONV_AXIS = "layer (input side first; dashed: dense head)"
SPREAD = 6.0  # decades between the logged steps' median norms beyond which each step gets a panel of its own
MISSING = "0.85"  # a heatmap cell with no value, or a non-finite one
ZERO, ZERO_NAME = "tab:red", "red"  # a heatmap cell whose norm is exactly 0; the edge of a 0's marker
ZERO_MARK = "v"  # a 0 on a log axis: a triangle on the axis' bottom edge, pointing below it


# --------------------------------------------------------------------------- helpers

def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = SIZE, **kw) -> tuple[Figure, np.ndarray]:
    """A Figure on an Agg canvas and its axes as a flat array."""
    fig = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes.ravel()


LOG_LIMITS = (1e-300, float(np.finfo(float).max))  # a log axis ends inside these: finite ticks
LOG_SAFE = (1e-250, 1e250)  # within these, matplotlib's own log ticks stay finite


def _save(fig: Figure, path: Path) -> Path:
    """Write the figure as PNG (legends outside the axes included); return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for ax in fig.axes:
        mark_lone_points(ax)
        _clamp_log(ax)
    save_atomic(path, lambda f: fig.savefig(f, dpi=DPI, format="png", bbox_inches="tight"))
    return path


def mark_lone_points(ax) -> None:
    """Give each line a marker at its points that have no drawable neighbour: a line through one point draws
    nothing (a run that diverged after its first step; a finite value between masked ones). Drawable: finite,
    and positive on a log axis. Lines with markers of their own, and lines across the axes, are left as they
    are."""
    log = ax.get_yscale() == "log"
    for line in ax.get_lines():
        if line.get_linestyle() in ("None", "none", "", " ") or line.get_marker() not in (None, "None", "none", ""):
            continue
        if line.get_transform() != ax.transData:  # axhline, axvline: drawn across the axes, never one point
            continue
        xy = np.asarray(line.get_xydata(), dtype=float)
        if xy.ndim != 2 or not len(xy):
            continue
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(xy).all(axis=1) & ((xy[:, 1] > 0) if log else True)
        before = np.concatenate([[False], ok[:-1]])
        after = np.concatenate([ok[1:], [False]])
        lone = np.flatnonzero(ok & ~before & ~after)
        if len(lone):
            line.set_marker("o")
            line.set_markersize(max(5.0, 3.0 * line.get_linewidth()))
            line.set_markeredgewidth(0.0)
            line.set_markevery([int(i) for i in lone])


def _clamp_log(ax) -> None:
    """Keep a log y axis and its ticks within LOG_LIMITS. For values near 1e291 matplotlib's margin and
    its decade ticks (one stride past the top) pass the largest float, 1.8e308, where its labels fail;
    there the axis spans the data, 5% of its decades beyond each end up to the largest float, with at
    most 9 decade ticks."""
    if ax.get_yscale() != "log":
        return
    low, high = ax.get_ylim()
    data_low, data_high = ax.dataLim.minposy, ax.dataLim.y1
    if not (math.isfinite(data_low) and math.isfinite(data_high) and 0 < data_low <= data_high):
        return
    if LOG_SAFE[0] <= min(low, data_low) and max(high, data_high) <= LOG_SAFE[1]:
        return
    span = max(math.log10(data_high) - math.log10(data_low), 1.0)
    low = max(LOG_LIMITS[0], 10.0 ** (math.log10(data_low) - 0.05 * span))
    high = min(LOG_LIMITS[1], 10.0 ** min(math.log10(data_high) + 0.05 * span, 308.0))
    high = max(high, data_high)
    ax.set_ylim(low, high)
    first, last = math.ceil(math.log10(low)), math.floor(math.log10(high))
    stride = max(1, math.ceil((last - first) / 8))
    ax.yaxis.set_major_locator(FixedLocator([10.0 ** k for k in range(first, last + 1, stride)]))
    ax.yaxis.set_minor_locator(NullLocator())


def _positive(values) -> np.ndarray:
    """Float array with non-finite and non-positive entries replaced by NaN (safe for a log axis)."""
    arr = np.asarray(values, dtype=float)
    with np.errstate(invalid="ignore"):
        return np.where(np.isfinite(arr) & (arr > 0), arr, np.nan)


def _finite(values) -> np.ndarray:
    """Float array with non-finite entries replaced by NaN."""
    arr = np.asarray(values, dtype=float)
    return np.where(np.isfinite(arr), arr, np.nan)


def _zeros(values) -> np.ndarray:
    """Boolean array: where ``values`` is exactly 0 (a vanished gradient, not a missing value)."""
    return np.asarray(values, dtype=float) == 0.0


def _log_y(ax, *arrays: np.ndarray, zeros: bool = False) -> bool:
    """Use a log y axis when some value is finite and positive; otherwise say there is nothing to show (and
    that every shown value is 0 when ``zeros``: they are marked at the bottom edge)."""
    if any(np.isfinite(a).any() for a in arrays if len(a)):
        set_log(ax)
        return True
    _note(ax, "every value is 0 (marked at the bottom edge)" if zeros else "no finite, positive values to show")
    return False


def mark_zeros(ax, x, values, color, label: str | None = None) -> bool:
    """Triangles on the bottom edge of ``ax`` at the x of each value that is exactly 0, which a log axis cannot
    show: x in data coordinates, y in the axes' (0 = the bottom edge), so the y limits stay those of the
    positive values. True when there was a 0."""
    zero = _zeros(values)
    if not zero.any():
        return False
    x = np.asarray(x, dtype=float)[zero]
    ax.plot(x, np.zeros(len(x)), ls="none", marker=ZERO_MARK, ms=7, color=color, markeredgecolor=ZERO,
            markeredgewidth=1.2, clip_on=False, zorder=3, label=label if label is not None else "_zero",
            transform=blended_transform_factory(ax.transData, ax.transAxes))
    return True


def zero_handle(text: str = "= 0 (at the bottom edge)") -> Line2D:
    """A legend entry for the triangles of mark_zeros."""
    return Line2D([], [], ls="none", marker=ZERO_MARK, ms=7, color="0.5", markeredgecolor=ZERO, markeredgewidth=1.2,
                  label=text)


def set_log(ax) -> None:
    """A log y axis. Its autoscale margin overflows 10 ** x for values near the largest float (a warning, an
    error in the tests); _save's _clamp_log then sets limits and ticks that stay finite."""
    with np.errstate(over="ignore"):
        ax.set_yscale("log")


def _note(ax, text: str) -> None:
    """Write a grey remark in the middle of an axes."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="0.4", fontsize=9, wrap=True)


def pick_steps(steps: list[int], n: int = N_STEPS) -> list[int]:
    """About ``n`` steps evenly spread from the first to the last (all of them when there are fewer)."""
    steps = sorted(steps)
    if len(steps) <= n:
        return steps
    idx = np.unique(np.round(np.linspace(0, len(steps) - 1, n)).astype(int))
    return [steps[i] for i in idx]


def _step_colors(steps: list[int]) -> list:
    """One colour per step, early dark to late light (viridis)."""
    cmap = colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.0, 0.85, max(len(steps), 1))]


def _shown_steps(run: RunData, columns: list[str], zeros: bool = False) -> list[int]:
    """Steps with at least one finite positive value in ``columns`` (or one of exactly 0, when ``zeros``),
    thinned to a few."""
    table = run.layers[columns].to_numpy()
    finite = np.isfinite(_positive(table)) | (_zeros(table) if zeros else False)
    return pick_steps([int(s) for s in run.layers.step[finite.any(axis=1)].unique()])


# --------------------------------------------------------------------------- one run

def write_run_plots(run: RunData, out: Path) -> list[Path]:
    """Write the run's figures into ``out``; return the paths written."""
    out = Path(out)
    plots = (plot_gradient_flow, plot_grad_heatmap, plot_loss_grad_norm, plot_activations, plot_time_grad_norms,
             plot_gate_stats)
    paths = [plot(run, out / name) for plot, name in zip(plots, RUN_PLOTS)]
    return [p for p in paths if p is not None]


def plot_gradient_flow(run: RunData, path: Path) -> Path | None:
    """grad_norm and delta_norm against layer at a few logged steps, log y. When the steps' norms lie
    decades apart (an exploding run: 1 at step 0, 1e130 at step 1) each step gets a column of its own
    scale, so step 0 is not squashed flat. None for a one-layer recurrent net (two points: the recurrent
    layer and the read-out; its gradient is in time_grad_norms.png and gate_stats.png)."""
    if run.layers.empty or (run.recurrent and len(run.layer_ids) <= 2):
        return None
    steps = _shown_steps(run, ["grad_norm", "delta_norm"], zeros=True)
    spread = _step_spread(run, steps)
    if spread > SPREAD:
        return _gradient_flow_by_step(run, steps, spread, path)
    fig, (left, right) = _figure(1, 2, sharex=True)
    zeros = False
    for step, color in zip(steps, _step_colors(steps)):
        rows = run.at(step)
        for ax, col in ((left, "grad_norm"), (right, "delta_norm")):
            ax.plot(rows.index, _positive(rows[col]), "o-", ms=3, color=color, label=f"step {step}")
            zeros |= mark_zeros(ax, rows.index, rows[col], color)
    names = layer_names(run)
    for ax, col, label in ((left, "grad_norm", GRAD), (right, "delta_norm", DELTA)):
        _log_y(ax, _positive(run.layers[col]), zeros=_zeros(run.layers[col]).any())
        _layer_axis(ax, label, CONV_AXIS if names else "layer (1 = input side, last = read-out)")
        name_layers(ax, names, run.layer_ids)
    left.set_title("parameter gradient per layer")
    right.set_title("back-propagated gradient per layer")
    if steps:
        handles = [h for h in right.get_lines() if not h.get_label().startswith("_")]
        right.legend(handles=handles + ([zero_handle()] if zeros else []), fontsize="small", title="logged step",
                     title_fontsize="small")
    fig.suptitle(f"Gradient flow through the layers ({run.name})", fontsize=11)
    return _save(fig, path)


def _layer_axis(ax, ylabel: str, xlabel: str = "layer (1 = input side, last = read-out)") -> None:
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.grid(True, which="major", alpha=0.3)
    if not isinstance(ax.xaxis.get_major_locator(), FixedLocator):  # layer names set on a shared axis stay
        ax.xaxis.get_major_locator().set_params(integer=True)


MAX_NAMES = 16  # tick labels on a layer axis; a deeper net names every k-th layer and the last conv one


def _last_conv(names: dict[int, str]) -> int | None:
    """The last layer of the conv part (conv or residual), when dense layers follow it."""
    conv = [l for l, n in names.items() if n.startswith(NAMED)]
    return max(conv) if conv and max(conv) < max(names) else None


def name_layers(ax, names: dict[int, str], layers: list[int], axis: str = "x") -> None:
    """Tick labels conv1, res5, dense10 on a layer axis (every k-th when there are many, the last conv layer and
    the first dense one always), and a dashed line where the conv layers end and the dense head begins."""
    shown = [l for l in layers if l in names]
    if not shown:
        return
    k = max(1, math.ceil(len(shown) / MAX_NAMES))
    last = _last_conv(names)
    kept = [l for l in ([last, last + 1] if last is not None else [shown[-1]]) if l in shown]
    ticks = sorted({*(l for l in shown[::k] if all(abs(l - m) >= k for m in kept)), *kept})
    labels = [names[l] for l in ticks]
    if axis == "x":
        ax.xaxis.set_major_locator(FixedLocator(ticks))
        ax.set_xticklabels(labels, rotation=60 if len(ticks) > 5 else 0, ha="right" if len(ticks) > 5 else "center",
                           fontsize=7 if len(ticks) > 10 else 8)
    else:
        ax.yaxis.set_major_locator(FixedLocator(ticks))
        ax.set_yticklabels(labels, fontsize=7 if len(ticks) > 10 else 8)
    if last is not None and last + 1 in layers:
        line = ax.axvline if axis == "x" else ax.axhline
        line(last + 0.5, color="0.45", ls="--", lw=0.9)


def _step_spread(run: RunData, steps: list[int]) -> float:
    """Decades between the largest and the smallest median log10 norm of the shown steps (0 if < 2 steps)."""
    medians = []
    for step in steps:
        logs = np.log10(_positive(run.at(step)[["grad_norm", "delta_norm"]].to_numpy()))
        if np.isfinite(logs).any():
            medians.append(np.nanmedian(logs))
    return float(max(medians) - min(medians)) if len(medians) > 1 else 0.0


def _gradient_flow_by_step(run: RunData, steps: list[int], spread: float, path: Path) -> Path:
    """grad_norm (top) and delta_norm (bottom) per layer, a column per step, each on its own log scale."""
    fig, axes = _figure(2, len(steps), size=(min(2.0 + 2.6 * len(steps), 14.0), 5.6), sharex=True)
    axes = axes.reshape(2, len(steps))
    zeros = False
    for j, (step, color) in enumerate(zip(steps, _step_colors(steps))):
        rows = run.at(step)
        for i, (col, label) in enumerate((("grad_norm", GRAD), ("delta_norm", DELTA))):
            ax, values = axes[i, j], _positive(rows[col])
            ax.plot(rows.index, values, "o-", ms=3, color=color)
            zero = mark_zeros(ax, rows.index, rows[col], color)
            zeros |= zero
            _log_y(ax, values, zeros=zero)
            _layer_axis(ax, label if j == 0 else "", "layer" if i else "")
            ax.tick_params(labelsize=8)
            name_layers(ax, layer_names(run), run.layer_ids)
        axes[0, j].set_title(f"step {step}", fontsize=10)
    fig.suptitle(f"Gradient flow through the layers ({run.name})\neach logged step on its own scale: their "
                 f"norms lie {spread:.0f} decades apart (top: parameter gradient, bottom: back-propagated)",
                 fontsize=10)
    if zeros:
        fig.legend(handles=[zero_handle("norm = 0 exactly (at the bottom edge of its panel)")],
                   loc="outside lower center", fontsize="small", frameon=False)
    return _save(fig, path)


def _edges(centers) -> np.ndarray:
    """Cell edges around sorted cell centres (for pcolormesh with uneven steps)."""
    c = np.asarray(centers, dtype=float)
    if len(c) == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[:-1] + c[1:]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def plot_grad_heatmap(run: RunData, path: Path) -> Path | None:
    """log10 grad_norm as a heatmap: layer (y) by logged step (x). A norm of exactly 0 (log10: -inf) is a
    vanished gradient, drawn in the colour ZERO over the grey of missing and non-finite cells."""
    if run.layers.empty:
        return None
    table = run.layers.pivot_table(index="layer", columns="step", values="grad_norm", aggfunc="first", dropna=False)
    table = table.sort_index().sort_index(axis=1)
    values = np.ma.masked_invalid(np.log10(_positive(table.to_numpy())))
    zero = _zeros(table.to_numpy())
    x, y = _edges(table.columns), _edges(table.index)
    fig, (ax,) = _figure()
    ax.set_facecolor(MISSING)
    if values.count():
        cmap = colormaps["viridis"].with_extremes(bad=MISSING)
        mesh = ax.pcolormesh(x, y, values, cmap=cmap, shading="flat")
        fig.colorbar(mesh, ax=ax, label="log10 " + GRAD)
    if zero.any():
        ax.pcolormesh(x, y, np.ma.masked_array(np.ones(zero.shape), mask=~zero), shading="flat", vmin=0, vmax=1,
                      cmap=ListedColormap([ZERO]).with_extremes(bad="none"))
        ax.set_xlim(x[0], x[-1])
        ax.set_ylim(y[0], y[-1])
    if not values.count():
        _note(ax, "no finite, positive grad_norm to show" if not zero.any() else "every grad_norm is 0 or missing")
    missing = ~zero & np.ma.getmaskarray(values)
    keys = [Patch(color=ZERO, label="grad_norm = 0 exactly")] if zero.any() else []
    keys += [Patch(color=MISSING, label="missing or non-finite")] if missing.any() else []
    if keys:
        ax.legend(handles=keys, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=len(keys), fontsize="small",
                  frameon=False)
    ax.set_xlabel("training step")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("layer (1 = input side)")
    ax.yaxis.get_major_locator().set_params(integer=True)
    name_layers(ax, layer_names(run), [int(l) for l in table.index], axis="y")
    shown = "; ".join([*([f"{ZERO_NAME} = exactly 0"] if zero.any() else []), "grey = missing or non-finite"])
    ax.set_title(f"Parameter gradient norm by layer and step ({run.name}; {shown})", fontsize=10)
    return _save(fig, path)


def plot_loss_grad_norm(run: RunData, path: Path) -> Path | None:
    """Loss (raw batch loss, smoothed, val_loss points, chance line) on top; for classification the
    accuracy under it; the global gradient norm (log y) at the bottom; shared step axis."""
    m = run.metrics
    if m is None or m.empty:
        return None
    chance_loss, chance_accuracy = chance(run)
    accuracy = [c for c in ("train_accuracy", "val_accuracy") if c in m and np.isfinite(_finite(m[c])).any()]
    rows = 3 if accuracy else 2
    fig, axes = _figure(rows, 1, size=(7.0, 2.4 * rows + 0.4), sharex=True)
    _plot_loss(axes[0], m, chance_loss)
    if accuracy:
        _plot_accuracy(axes[1], m, chance_accuracy)
    _plot_global_norm(axes[-1], m, run.clip_threshold())
    diverged = run.summary.get("diverged_at")
    if diverged is not None:
        for ax in axes:
            ax.axvline(diverged, color="crimson", ls=":", lw=1.2, label=f"diverged at step {diverged}")
        axes[0].legend(fontsize="x-small")
    axes[-1].set_xlabel("training step")
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    title = "Loss, accuracy and global gradient norm" if accuracy else "Loss and global gradient norm"
    axes[0].set_title(f"{title} ({run.name})", fontsize=11)
    return _save(fig, path)


def smooth(values, span: float | None = None) -> np.ndarray:
    """Exponential moving average, debiased at the start (TensorBoard's smoothing), over the finite values
    only: a non-finite value is NaN in the result and leaves the average as it was. ``span`` defaults to
    a twentieth of the values (at least 2): alpha = 2 / (span + 1)."""
    x = _finite(values)
    span = max(2.0, len(x) / 20) if span is None else span
    # pandas' adjusted EWM is that debiased average; ignore_na leaves a missing value out of the weights
    level = pd.Series(x).ewm(span=span, ignore_na=True).mean().to_numpy()
    return np.where(np.isfinite(x), level, np.nan)


def _plot_loss(ax, m: pd.DataFrame, chance_loss: float | None = None) -> None:
    """The batch loss raw (light) and smoothed, validation loss as points, the chance loss as a line; log y
    when the loss spans > 100x."""
    loss = _finite(m.loss)
    ax.plot(m.step, loss, "-", color="tab:blue", lw=0.8, alpha=0.35, label="train loss (batch)")
    ax.plot(m.step, smooth(loss), "-", color="tab:blue", lw=1.6, label="train loss (smoothed)")
    val = _finite(m.val_loss) if "val_loss" in m else np.array([])
    if np.isfinite(val).any():
        ax.plot(m.step, val, "o", ms=4, color="tab:orange", label="validation loss")
    if chance_loss is not None and chance_loss > 0:
        ax.axhline(chance_loss, color="0.35", ls="--", lw=1, label=f"chance = {chance_loss:.3g}")
    pos = _positive(np.concatenate([loss, val, [chance_loss or np.nan]]))
    if np.isfinite(pos).any() and np.nanmax(pos) > 100 * np.nanmin(pos):
        set_log(ax)
        ax.set_ylabel("loss (log scale)")
    else:
        ax.set_ylabel("loss")
    if not np.isfinite(loss).any():
        _note(ax, "no finite loss")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small")


def _plot_accuracy(ax, m: pd.DataFrame, chance_accuracy: float | None) -> None:
    """Batch accuracy raw and smoothed (when logged), validation accuracy as points, the chance line."""
    if "train_accuracy" in m:
        acc = _finite(m.train_accuracy)
        ax.plot(m.step, acc, "-", color="tab:purple", lw=0.8, alpha=0.35, label="train accuracy (batch)")
        ax.plot(m.step, smooth(acc), "-", color="tab:purple", lw=1.6, label="train accuracy (smoothed)")
    if "val_accuracy" in m:
        val = _finite(m.val_accuracy)
        if np.isfinite(val).any():
            ax.plot(m.step, val, "o", ms=4, color="tab:orange", label="validation accuracy")
    if chance_accuracy is not None:
        ax.axhline(chance_accuracy, color="0.35", ls="--", lw=1, label=f"chance = {chance_accuracy:.3g}")
    ax.set_ylim(-0.03, 1.03)
    ax.set_ylabel("accuracy")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="x-small")


def _plot_global_norm(ax, m: pd.DataFrame, threshold: float | None) -> None:
    """Global gradient norm before clipping, clipped steps marked, clip threshold as a line."""
    norm = _positive(m.grad_norm)
    ax.plot(m.step, norm, "-", color="tab:green", lw=1.2, label="||gradient|| before clipping")
    if "clipped" in m:
        hit = (m.clipped.fillna(0).to_numpy() == 1)
        if hit.any():
            ax.plot(m.step[hit], norm[hit], "x", color="crimson", ms=5, label=f"clipped step ({hit.sum()})")
    if threshold is not None:
        ax.axhline(threshold, color="crimson", ls="--", lw=1, label=f"clip threshold = {threshold:g}")
    _log_y(ax, norm, _positive([threshold] if threshold else []))
    ax.set_ylabel("global ||dL/d params||")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize="small")


ACT_PANELS = (("act_std", "activation std", True), ("frac_saturated", "fraction saturated", False),
              ("frac_dead", "fraction dead (output 0)", False))


def plot_activations(run: RunData, path: Path) -> Path | None:
    """Per hidden layer (the read-out's logits are not one): activation std, and the saturated and dead
    fractions when the activation has them (saturation: tanh, sigmoid; dead units: ReLU-like), at a few
    logged steps. With one hidden layer (a one-layer recurrent net) the x axis is the training step."""
    if run.layers.empty:
        return None
    hidden = run.layers[run.layers.layer.isin(run.hidden)]
    panels = [p for p in ACT_PANELS if p[0] == "act_std" or np.isfinite(_finite(hidden[p[0]])).any()]
    fig, axes = _figure(1, len(panels), size=(1.6 + 2.9 * len(panels), 3.6), sharex=True)
    by_step = len(run.hidden) == 1
    steps = _shown_steps(run, ["act_std"]) or pick_steps(run.steps)
    for ax, (col, label, log) in zip(axes, panels):
        if by_step:
            _activation_by_step(ax, hidden, col, log)
        else:
            _activation_panel(ax, run, steps, col, log)
        ax.set_title(label, fontsize=10)
        ax.set_ylabel(label + (" (log scale)" if log and ax.get_yscale() == "log" else ""))
        ax.set_xlabel(f"training step (layer {run.hidden[0]})" if by_step else "hidden layer")
        if not isinstance(ax.xaxis.get_major_locator(), FixedLocator):  # layer names set on the shared axis stay
            ax.xaxis.get_major_locator().set_params(integer=True)
        if not by_step:
            name_layers(ax, layer_names(run), run.hidden)
        ax.grid(True, alpha=0.3)
    fig.suptitle(f"Activations per hidden layer ({run.name})", fontsize=11)
    return _save(fig, path)


def _activation_panel(ax, run: RunData, steps: list[int], col: str, log: bool) -> None:
    """One activations panel: a line per step over the hidden layers, or a note when all are missing."""
    clean = _positive if log else _finite
    if not np.isfinite(clean(run.layers[run.layers.layer.isin(run.hidden)][col])).any():
        _note(ax, "no finite values")
        return
    for step, color in zip(steps, _step_colors(steps)):
        rows = run.at(step).loc[run.hidden]
        ax.plot(rows.index, clean(rows[col]), "o-", ms=3, color=color, label=f"step {step}")
    _activation_scale(ax, log)


def _activation_by_step(ax, hidden: pd.DataFrame, col: str, log: bool) -> None:
    """One activations panel of a single hidden layer: the value against the training step."""
    clean = _positive if log else _finite
    rows = hidden.sort_values("step")
    values = clean(rows[col])
    if not np.isfinite(values).any():
        _note(ax, "no finite values")
        return
    ax.plot(rows.step, values, "o-", ms=3, color="tab:blue")
    _activation_scale(ax, log, legend=False)


def _activation_scale(ax, log: bool, legend: bool = True) -> None:
    if log:
        set_log(ax)
        if legend:
            ax.legend(fontsize="x-small", title="logged step", title_fontsize="x-small")
    else:
        ax.set_ylim(-0.03, 1.03)


GATES = {"f": "forget gate f", "i": "input gate i", "o": "output gate o", "z": "update gate z",
         "r": "reset gate r"}


def plot_gate_stats(run: RunData, path: Path) -> Path | None:
    """The mean of each gate (LSTM i, f, o; GRU r, z) against the training step, a panel per recurrent
    layer. The forget gate is what the diagnosis reads: the cell state keeps f per time step."""
    g = run.gates
    if g is None or g.empty:
        return None
    layers = sorted(int(l) for l in g.layer.unique())
    fig, axes = _figure(1, len(layers), size=(min(1.5 + 5.5 * len(layers), 14.0), 3.6), sharey=True)
    for ax, layer in zip(axes, layers):
        rows = g[g.layer == layer]
        for gate in sorted(rows.gate.astype(str).unique(), key=lambda x: (x != "f", x)):
            part = rows[rows.gate.astype(str) == gate].sort_values("step")
            ax.plot(part.step, _finite(part["mean"]), "o-" if len(part) < 40 else "-", ms=3,
                    lw=2.0 if gate == "f" else 1.2, label=GATES.get(gate, f"gate {gate}"))
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"recurrent layer {layer}", fontsize=10)
        ax.set_xlabel("training step")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="x-small")
    axes[0].set_ylabel("mean gate value (0 to 1)")
    kept = "; the cell state keeps a share f per time step" if (g.gate.astype(str) == "f").any() else ""
    fig.suptitle(f"Gates, mean over batch, units and time ({run.name}){kept}", fontsize=10)
    return _save(fig, path)


def plot_time_grad_norms(run: RunData, path: Path) -> Path | None:
    """||dL/dh_t|| against lag T - t (log y) at a few logged steps; one panel per recurrent layer. When the
    steps' norms lie decades apart (an exploding run), a panel per layer and step, each on its own scale."""
    if not run.recurrent:
        return None
    times = run.times
    layers = sorted(int(l) for l in times.layer.unique())
    ok = times[np.isfinite(_positive(times.grad_norm))]
    steps = pick_steps([int(s) for s in ok.step.unique()])
    medians = [np.nanmedian(np.log10(_positive(ok[ok.step == s].grad_norm))) for s in steps]
    spread = max(medians) - min(medians) if len(medians) > 1 else 0.0
    if spread > SPREAD:
        return _time_by_step(run, layers, steps, spread, path)
    fig, axes = _figure(1, len(layers), size=(min(7.0 * len(layers), 14.0), 4.0), sharey=True)
    for ax, layer in zip(axes, layers):
        _time_panel(ax, times[times.layer == layer])
        ax.set_title(f"recurrent layer {layer}", fontsize=10)
        ax.set_xlabel("lag T - t (time steps back from the last)")
    axes[0].set_ylabel("||dL/dh_t||")
    fig.suptitle(f"Gradient through time ({run.name})", fontsize=11)
    return _save(fig, path)


def _time_by_step(run: RunData, layers: list[int], steps: list[int], spread: float, path: Path) -> Path:
    """||dL/dh_t|| by lag, a row per recurrent layer and a column per step, each on its own log scale."""
    times = run.times
    fig, axes = _figure(len(layers), len(steps), size=(min(2.0 + 2.6 * len(steps), 14.0), 0.9 + 2.6 * len(layers)),
                        sharex=True)
    axes = axes.reshape(len(layers), len(steps))
    for i, layer in enumerate(layers):
        for j, (step, color) in enumerate(zip(steps, _step_colors(steps))):
            ax = axes[i, j]
            part = times[(times.layer == layer) & (times.step == step)].sort_values("lag")
            values = _positive(part.grad_norm)
            ax.plot(part.lag, values, "-", color=color, lw=1.3)
            _log_y(ax, values)
            ax.grid(True, which="major", alpha=0.3)
            ax.tick_params(labelsize=8)
            ax.set_title(f"step {step}" + (f", layer {layer}" if len(layers) > 1 else ""), fontsize=9)
        axes[i, 0].set_ylabel("||dL/dh_t||", fontsize=9)
    for ax in axes[-1]:
        ax.set_xlabel("lag T - t", fontsize=9)
    fig.suptitle(f"Gradient through time ({run.name})\neach logged step on its own scale: their norms lie "
                 f"{spread:.0f} decades apart", fontsize=10)
    return _save(fig, path)


def _time_panel(ax, rows: pd.DataFrame) -> None:
    """One line per shown step: grad_norm by lag."""
    ok = rows[np.isfinite(_positive(rows.grad_norm))]
    steps = pick_steps([int(s) for s in ok.step.unique()])
    for step, color in zip(steps, _step_colors(steps)):
        part = rows[rows.step == step].sort_values("lag")
        ax.plot(part.lag, _positive(part.grad_norm), "-", color=color, lw=1.3, label=f"step {step}")
    if _log_y(ax, _positive(rows.grad_norm)):
        ax.legend(fontsize="small", title="logged step", title_fontsize="small")
    ax.grid(True, which="major", alpha=0.3)
