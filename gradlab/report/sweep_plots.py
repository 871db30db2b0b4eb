"""PNG figures for a sweep folder (matplotlib, Agg canvas, no pyplot, no display): what the swept keys do.

Every ``plot_*`` function returns the Path it wrote, or None when its data does not apply."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps

from .load import SweepData
from .plots import DELTA, _figure, _log_y, _positive, _save

RATIO = "delta_ratio_first"
RATIO_LIM = 6.0  # the heatmap's colour scale ends at 1e-6 and 1e6
SWEEP_PLOTS = ("sweep_ratio_heatmap.png", "sweep_gradient_flow.png")


def write_sweep_plots(sweep: SweepData, out: Path) -> list[Path]:
    """Write the sweep's figures into ``out``; return the paths written."""
    out = Path(out)
    paths = [plot(sweep, out / name) for plot, name in zip((plot_sweep_ratio_heatmap, plot_sweep_gradient_flow),
                                                           SWEEP_PLOTS)]
    return [p for p in paths if p is not None]


def main_keys(sweep: SweepData) -> list[str]:
    """The swept keys the plots show: all but ``seed`` (repeated seeds are summarised by the median)."""
    keys = sweep.keys
    return [k for k in keys if k != "seed"] or keys


def short(key: str) -> str:
    """``model.depth`` -> ``depth``."""
    return key.rsplit(".", 1)[-1]


def _label(keys: list[str], values) -> str:
    """``depth=4, init=he_normal``."""
    values = values if isinstance(values, tuple) else (values,)
    return ", ".join(f"{short(k)}={v}" for k, v in zip(keys, values))


def _seed_note(sweep: SweepData, keys: list[str]) -> str:
    """' (median over n seeds)' when seeds repeat and are not shown themselves."""
    n = len(sweep.spec.get("seeds") or [0])
    return f" (median over {n} seeds)" if n > 1 and "seed" not in keys else ""


def _ordered(column: pd.Series) -> list:
    """A column's distinct values in order of first appearance (the sweep's order)."""
    return list(pd.unique(column))


def plot_sweep_ratio_heatmap(sweep: SweepData, path: Path) -> Path | None:
    """log10 delta_ratio_first over keys[0] (x) and keys[1] (y), one panel per value of further keys."""
    keys, summary = main_keys(sweep), sweep.summary
    if not keys or summary is None or summary.empty or RATIO not in summary:
        return None
    data = summary[keys].copy()
    # a run that failed (an exception, not a divergence) has no ratio worth a colour: a blank cell
    finished = summary.status.isin(["completed", "diverged"]) if "status" in summary else True
    data[RATIO] = _positive(summary[RATIO].where(finished))
    med = data.groupby(keys, sort=False, dropna=False)[RATIO].median().reset_index()
    facets = _facets(med, keys[2:])
    ncols = min(len(facets), 3)
    nrows = -(-len(facets) // ncols)
    logs = np.log10(med[RATIO].to_numpy(dtype=float))
    # beyond 1e-6 (or 1e6) a layer gets nothing useful: saturate there, so 1e-2 and 1e-3 still show
    lim = min(RATIO_LIM, max(1.0, float(np.nanmax(np.abs(logs))))) if np.isfinite(logs).any() else 1.0
    height = (1.2 if len(keys) == 1 else 3.0) * nrows + 1.0
    fig, axes = _figure(nrows, ncols, size=(min(3.2 + 3.8 * ncols, 15.0), height))
    mesh = None
    for ax, (title, part) in zip(axes, facets):
        mesh = _ratio_panel(ax, part, keys, med, lim)
        ax.set_title(title, fontsize=9)
    for ax in axes[len(facets):]:
        ax.set_visible(False)
    fig.colorbar(mesh, ax=list(axes[:len(facets)]), label="log10 delta_ratio_first (0 = balanced)", shrink=0.9,
                 extend="both" if lim == RATIO_LIM else "neither")
    fig.suptitle("Back-propagated gradient ratio, first / last hidden layer, at step 0"
                 f"{_seed_note(sweep, keys)}\n(blue: vanishing, red: exploding; blank: failed run)", fontsize=10)
    return _save(fig, path)


def _facets(med: pd.DataFrame, rest: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """(panel title, rows) for each combination of the keys beyond the first two."""
    if not rest:
        return [("", med)]
    groups = med.groupby(rest, sort=False, dropna=False)
    return [(_label(rest, values), part) for values, part in groups]


def _ratio_panel(ax, part: pd.DataFrame, keys: list[str], med: pd.DataFrame, lim: float):
    """One heatmap panel with the ratio written in each cell; returns the mesh (for the colour bar)."""
    xs = _ordered(med[keys[0]])
    ys = _ordered(med[keys[1]]) if len(keys) > 1 else [""]
    grid = np.full((len(ys), len(xs)), np.nan)
    for _, row in part.iterrows():
        y = ys.index(row[keys[1]]) if len(keys) > 1 else 0
        grid[y, xs.index(row[keys[0]])] = row[RATIO]
    logs = np.ma.masked_invalid(np.log10(grid))
    cmap = colormaps["coolwarm"].with_extremes(bad="white")
    mesh = ax.imshow(logs, cmap=cmap, vmin=-lim, vmax=lim, aspect="auto", origin="lower")
    for (y, x), value in np.ndenumerate(grid):
        if np.isfinite(value):
            dark = abs(np.log10(value)) > 0.6 * lim
            ax.text(x, y, f"{value:.1e}", ha="center", va="center", fontsize=8, color="white" if dark else "black")
    ax.set_xticks(range(len(xs)), [str(x) for x in xs], fontsize=8)
    ax.set_yticks(range(len(ys)), [str(y) for y in ys], fontsize=8)
    ax.set_xlabel(keys[0])
    ax.set_ylabel(keys[1] if len(keys) > 1 else "")
    return mesh


def plot_sweep_gradient_flow(sweep: SweepData, path: Path) -> Path | None:
    """delta_norm against layer at each combination's first logged step, one line per combination."""
    keys, prof = main_keys(sweep), sweep.profile
    if prof is None or prof.empty or not {"layer", "step", "delta_norm"} <= set(prof.columns):
        return None
    by = [k for k in sweep.keys if k in prof.columns]
    first = prof[prof.step == prof.groupby(by, sort=False, dropna=False).step.transform("min")] if by else \
        prof[prof.step == prof.step.min()]
    first = first.assign(delta_norm=_positive(first.delta_norm))
    groups = first.groupby(keys, sort=False, dropna=False) if keys else [((), first)]
    ncol = 1 if len(groups) <= 4 else 2 if len(groups) <= 12 else 3
    fig, (ax,) = _figure(size=(9.0, 4.0 + 0.17 * -(-len(groups) // ncol)))
    colors = _combo_colors(len(groups))
    for i, (values, part) in enumerate(groups):
        line = part.groupby("layer").delta_norm.median()
        ax.plot(line.index, line.to_numpy(), marker="o", ms=3, lw=1.2, color=colors[i], ls=("-", "--", ":")[i // 10 % 3],
                label=_label(keys, values) if keys else "run")
    _log_y(ax, first.delta_norm.to_numpy())
    ax.set_xlabel("layer (1 = input side, last = read-out)")
    ax.set_ylabel(DELTA)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(True, which="major", alpha=0.3)
    fig.suptitle(f"Back-propagated gradient per layer at the first logged step{_seed_note(sweep, keys)}",
                 fontsize=10)
    fig.legend(loc="outside lower center", fontsize="x-small", ncol=ncol, title="combination",
               title_fontsize="x-small")
    return _save(fig, path)


def _combo_colors(n: int) -> list:
    """Distinct colours for ``n`` lines (tab10, repeated; line styles tell repeats apart)."""
    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(max(n, 1))]
