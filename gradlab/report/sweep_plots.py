"""PNG figures for a sweep folder (matplotlib, Agg canvas, no pyplot, no display): what the swept keys do.

Every ``plot_*`` function returns the Path it wrote, or None when its data does not apply. The loss
curves, the final figures and the gradient flow are small multiples: a line per value of one swept key
(the first numeric one: a sequential colormap, dark to light; categories get distinct hues), a panel per
combination of the others; repeated seeds are summarised by their median."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.lines import Line2D

from ..config import ConfigError
from .load import SweepData, read_table
from .plots import DELTA, _figure, _finite, _log_y, _positive, _save, set_log, smooth

RATIO = "delta_ratio_at_first_step"
LAST_RATIO = "delta_ratio_at_last_step"
OLD_NAMES = {RATIO: "delta_ratio_first", LAST_RATIO: "delta_ratio_last", "final_train_loss": "final_loss"}
RATIO_LIM = 6.0  # the heatmap's colour scale ends at 1e-6 and 1e6
MAX_COLS = 4  # panels per row of the small multiples
SWEEP_PLOTS = ("sweep_loss_curves.png", "sweep_final.png", "sweep_gradient_flow.png", "sweep_ratio_heatmap.png")


def write_sweep_plots(sweep: SweepData, out: Path) -> list[Path]:
    """Write the sweep's figures into ``out``; return the paths written."""
    out = Path(out)
    sweep = _new_names(sweep)
    plots = (plot_sweep_loss_curves, plot_sweep_final, plot_sweep_gradient_flow, plot_sweep_ratio_heatmap)
    paths = [plot(sweep, out / name) for plot, name in zip(plots, SWEEP_PLOTS)]
    return [p for p in paths if p is not None]


def _new_names(sweep: SweepData) -> SweepData:
    """The sweep with summary.csv's columns under their present names (a folder written before the rename)."""
    summary = sweep.summary
    if summary is None:
        return sweep
    rename = {old: new for new, old in OLD_NAMES.items() if old in summary.columns and new not in summary.columns}
    if not rename:
        return sweep
    return dataclasses.replace(sweep, summary=summary.rename(columns=rename))


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
    """log10 of the delta ratio over keys[0] (x) and keys[1] (y) at the first logged step and at the last,
    side by side; a row of the two per combination of further keys."""
    keys, summary = main_keys(sweep), sweep.summary
    if not keys or summary is None or summary.empty or RATIO not in summary:
        return None
    ends = [c for c in (RATIO, LAST_RATIO) if c in summary]
    data = summary[keys].copy()
    # a run that failed (an exception, not a divergence) has no ratio worth a colour: a blank cell
    finished = summary.status.isin(["completed", "diverged"]) if "status" in summary else True
    for col in ends:
        data[col] = _positive(summary[col].where(finished))
    med = data.groupby(keys, sort=False, dropna=False)[ends].median().reset_index()
    facets = _facets(med, keys[2:])
    logs = np.log10(med[ends].to_numpy(dtype=float))
    # beyond 1e-6 (or 1e6) a layer gets nothing useful: saturate there, so 1e-2 and 1e-3 still show
    lim = min(RATIO_LIM, max(1.0, float(np.nanmax(np.abs(logs))))) if np.isfinite(logs).any() else 1.0
    height = (1.2 if len(keys) == 1 else 3.0) * len(facets) + 1.2
    fig, axes = _figure(len(facets), len(ends), size=(3.2 + 3.8 * len(ends), height))
    mesh = None
    for i, (title, part) in enumerate(facets):
        for j, col in enumerate(ends):
            ax = axes[i * len(ends) + j]
            mesh = _ratio_panel(ax, part, keys, med, lim, col)
            when = "first logged step" if col == RATIO else "last logged step"
            ax.set_title(f"{title}: {when}" if title else when, fontsize=9)
    fig.colorbar(mesh, ax=list(axes), label="log10 delta ratio (0 = balanced)", shrink=0.9,
                 extend="both" if lim == RATIO_LIM else "neither")
    fig.suptitle("Back-propagated gradient ratio, first / last hidden layer"
                 f"{_seed_note(sweep, keys)}\n(blue: vanishing, red: exploding; blank: no ratio: a failed run, one "
                 "that diverged before its last logged step, or a layer with no gradient at all)", fontsize=10)
    return _save(fig, path)


def _facets(med: pd.DataFrame, rest: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """(panel title, rows) for each combination of the keys beyond the first two."""
    if not rest:
        return [("", med)]
    groups = med.groupby(rest, sort=False, dropna=False)
    return [(_label(rest, values), part) for values, part in groups]


def _ratio_panel(ax, part: pd.DataFrame, keys: list[str], med: pd.DataFrame, lim: float, col: str = RATIO):
    """One heatmap panel with the ratio written in each cell; returns the mesh (for the colour bar)."""
    xs = _ordered(med[keys[0]])
    ys = _ordered(med[keys[1]]) if len(keys) > 1 else [""]
    grid = np.full((len(ys), len(xs)), np.nan)
    for _, row in part.iterrows():
        y = ys.index(row[keys[1]]) if len(keys) > 1 else 0
        grid[y, xs.index(row[keys[0]])] = row[col]
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


# --------------------------------------------------------------------------- small multiples

@dataclasses.dataclass
class Facets:
    """How the swept keys are laid out: ``line`` drawn as lines, a panel per combination of ``panels``."""

    keys: list[str]  # the keys shown (main_keys)
    line: str | None  # the key whose values are the lines (None: no key)
    values: list  # the line key's values, in the sweep's order
    colors: list  # one per value
    combos: list[dict]  # one per panel: {key: value} of the other keys
    ncols: int

    @property
    def nrows(self) -> int:
        return -(-len(self.combos) // self.ncols)

    def title(self, combo: dict) -> str:
        return ", ".join(f"{short(k)}={v}" for k, v in combo.items())


def _number(value) -> float | None:
    """A value as a float when it is a number (not a bool, not "null"), else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def facets(sweep: SweepData) -> Facets:
    """The line key: the first swept key whose values are all numbers (ordered: a sequential colormap),
    else the first key (distinct hues). A panel per combination of the other keys that the sweep ran; the
    panels of two or more other keys wrap so the last key's values make a row (at most MAX_COLS)."""
    keys, summary = main_keys(sweep), sweep.summary
    if not keys:
        return Facets([], None, [None], ["tab:blue"], [{}], 1)
    numeric = [k for k in keys if all(_number(v) is not None for v in summary[k])]
    line = numeric[0] if numeric else keys[0]
    values = _ordered(summary[line])
    if line in numeric:
        ranks = np.argsort(np.argsort([_number(v) for v in values]))
        cmap = colormaps["viridis"]
        colors = [cmap(0.85 * r / max(len(values) - 1, 1)) for r in ranks]
    else:
        colors = [colormaps["tab10"](i % 10) for i in range(len(values))]
    rest = [k for k in keys if k != line]
    combos = [dict(zip(rest, row)) for row in summary[rest].drop_duplicates().itertuples(index=False)] if rest \
        else [{}]
    last = len(_ordered(summary[rest[-1]])) if rest else 1
    ncols = last if len(rest) >= 2 and last <= MAX_COLS else min(len(combos), 3)
    return Facets(keys, line, values, colors, combos, ncols)


def _match(frame: pd.DataFrame, combo: dict) -> pd.Series:
    """Rows of ``frame`` with these key values (compared as text: summary.csv and profile.csv read alike)."""
    mask = pd.Series(True, index=frame.index)
    for key, value in combo.items():
        mask &= frame[key].astype(str) == str(value)
    return mask


def _line_legend(fig, f: Facets, extra: list | None = None) -> None:
    """One legend under the figure: the line key's values, then any extra handles."""
    handles = [Line2D([], [], color=c, lw=2, label=str(v)) for v, c in zip(f.values, f.colors)] if f.line else []
    handles += extra or []
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), fontsize="small",
                   title=short(f.line) if f.line else None, title_fontsize="small")


def _hide_unused(axes, used: int) -> None:
    for ax in axes[used:]:
        ax.set_visible(False)


def _diverged(summary: pd.DataFrame, combo: dict) -> bool:
    """Whether a run of this combination diverged (its values may lie far above everyone else's)."""
    return "status" in summary and bool((summary[_match(summary, combo)].status.astype(str) == "diverged").any())


def _fit_scale(axes, lines: list[tuple], unit: str) -> None:
    """Log y limits (the axes share them) spanning the lines of runs that did not diverge, a decade of margin;
    a diverged run's line that leaves the top is cut there, with a note in its colour saying how far it
    went. ``lines``: (axes, values, colour, label, diverged). Nothing is cut when every line diverged."""
    kept = [v for _, v, _, _, bad in lines if not bad]
    kept = _positive(np.concatenate(kept)) if kept else np.array([])
    if not np.isfinite(kept).any():
        return
    low, high = np.nanmin(kept), np.nanmax(kept)
    top = high * 10.0 if high < 1e297 else None
    cut = [(ax, v, c, label) for ax, v, c, label, bad in lines
           if bad and top is not None and np.nanmax(_positive(v), initial=0.0) > top]
    if not cut:
        return
    axes[0].set_ylim(low / 10.0, top)
    notes: dict = {}
    for ax, v, c, label in cut:
        notes.setdefault(ax, []).append((c, f"\u2191 {label}: diverged, {unit} up to {np.nanmax(_positive(v)):.0e}"))
    for ax, items in notes.items():
        for k, (c, text) in enumerate(items):
            ax.text(0.98, 0.95 - 0.09 * k, text, color=c, fontsize=7, ha="right", va="top", transform=ax.transAxes)


# --------------------------------------------------------------------------- loss curves

def run_losses(sweep: SweepData) -> dict[str, pd.Series]:
    """Each run's batch loss by step, read from its metrics.csv (folders named by summary.csv's ``run``;
    a run without a readable metrics.csv is left out: its report has a note)."""
    out = {}
    for run in sweep.summary["run"].astype(str) if "run" in sweep.summary else []:
        folder = sweep.dir / run
        if run in ("", ".", "..") or run != Path(run).name or folder.is_symlink():
            continue
        try:
            m = read_table(folder / "metrics.csv")
        except (ConfigError, OSError):
            continue
        if m is not None and len(m) and {"step", "loss"} <= set(m.columns):
            out[run] = pd.Series(_finite(m.loss), index=m.step.to_numpy())
    return out


def plot_sweep_loss_curves(sweep: SweepData, path: Path) -> Path | None:
    """The smoothed batch loss per combination: a line per value of the line key, a panel per combination
    of the others; the median over seeds, shared axes."""
    summary = sweep.summary
    if summary is None or summary.empty:
        return None
    losses = run_losses(sweep)
    if not losses:
        return None
    f = facets(sweep)
    fig, axes = _figure(f.nrows, f.ncols, size=(1.4 + 3.4 * f.ncols, 0.9 + 2.3 * f.nrows), sharex=True, sharey=True)
    lines = []
    for ax, combo in zip(axes, f.combos):
        for value, color in zip(f.values, f.colors):
            which = {**combo, **({f.line: value} if f.line else {})}
            rows = summary[_match(summary, which)]
            curves = [losses[r] for r in rows.run.astype(str) if r in losses]
            if not curves:
                continue
            median = pd.concat(curves, axis=1).median(axis=1, skipna=True) if len(curves) > 1 else curves[0]
            y = smooth(median.to_numpy())
            ax.plot(median.index, y, "-", color=color, lw=1.4)
            lines.append((ax, y, color, str(value) if f.line else "run", _diverged(summary, which)))
        ax.set_title(f.title(combo), fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
    kept = [v for _, v, _, _, bad in lines if not bad] or [v for _, v, *_ in lines]
    pos = _positive(np.concatenate(kept)) if kept else np.array([])
    if np.isfinite(pos).any() and np.nanmax(pos) > 100 * np.nanmin(pos):
        for ax in axes[:len(f.combos)]:
            set_log(ax)
        _fit_scale(axes, lines, "loss")
    elif any(bad for *_, bad in lines) and np.isfinite(pos).any():
        _fit_linear(axes, lines, pos)
    for ax in axes[::f.ncols]:
        ax.set_ylabel("train loss (smoothed)", fontsize=9)
    for ax in axes[len(f.combos) - f.ncols:len(f.combos)]:
        ax.set_xlabel("training step", fontsize=9)
    _hide_unused(axes, len(f.combos))
    _line_legend(fig, f)
    fig.suptitle(f"Training loss per combination (batch loss, smoothed){_seed_note(sweep, f.keys)}", fontsize=10)
    return _save(fig, path)


def _fit_linear(axes, lines: list[tuple], kept: np.ndarray) -> None:
    """Linear y limits around the losses of the runs that did not diverge; a diverged run's line leaves
    the top with a note in its colour."""
    low, high = float(np.nanmin(kept)), float(np.nanmax(kept))
    top = high + 0.25 * max(high - low, abs(high), 1e-12)
    if not any(bad and np.nanmax(_finite(v), initial=-np.inf) > top for _, v, _, _, bad in lines):
        return
    axes[0].set_ylim(min(0.0, low), top)
    for k, (ax, v, c, label, bad) in enumerate(l for l in lines if l[4] and np.nanmax(_finite(l[1]), initial=-np.inf) > top):
        ax.text(0.98, 0.95 - 0.09 * k, f"\u2191 {label}: diverged, loss up to {np.nanmax(_finite(v)):.3g}",
                color=c, fontsize=7, ha="right", va="top", transform=ax.transAxes)


# --------------------------------------------------------------------------- final figures

def final_metric(summary: pd.DataFrame) -> tuple[str, str, bool]:
    """(column, label, log scale?) of the figure a run ends with: the validation accuracy for
    classification (the train accuracy without a validation set), else the final train loss."""
    for col, label in (("final_val_accuracy", "final validation accuracy"),
                       ("final_train_accuracy", "final train accuracy")):
        if col in summary and np.isfinite(_finite(summary[col])).any():
            return col, label, False
    return "final_train_loss", "final train loss", True


def plot_sweep_final(sweep: SweepData, path: Path) -> Path | None:
    """Against each swept key (a column of panels): the final metric (top) and the first/last hidden
    layer delta ratio at the first and at the last logged step (bottom). Thin grey lines join the runs
    that share the other keys' values; the bold line is the median; a red x is a diverged run."""
    keys, summary = main_keys(sweep), sweep.summary
    if not keys or summary is None or summary.empty:
        return None
    col, label, log = final_metric(summary)
    if col not in summary and RATIO not in summary:
        return None
    fig, axes = _figure(2, len(keys), size=(1.2 + 3.3 * len(keys), 5.6))
    axes = axes.reshape(2, len(keys))
    for j, key in enumerate(keys):
        top, bottom = axes[0, j], axes[1, j]
        _against(top, summary, keys, key, [(col, "tab:blue", "-", "o")], log)
        top.set_ylabel(label if j == 0 else "", fontsize=9)
        if not log:
            top.set_ylim(-0.03, 1.03)
        _diverged_marks(top, summary, key)
        _against(bottom, summary, keys, key, [(RATIO, "tab:gray", "--", "s"), (LAST_RATIO, "tab:red", "-", "o")],
                 True)
        bottom.axhline(1.0, color="0.5", lw=0.8, ls=":")
        bottom.set_ylabel("delta ratio, first / last\nhidden layer (1 = balanced)" if j == 0 else "", fontsize=9)
        bottom.set_xlabel(key, fontsize=9)
    extra = [Line2D([], [], color="tab:gray", ls="--", marker="s", ms=4, label="ratio at the first logged step"),
             Line2D([], [], color="tab:red", marker="o", ms=4, label="ratio at the last logged step"),
             Line2D([], [], color="0.75", lw=0.8, label="one combination of the other keys"),
             Line2D([], [], color="crimson", marker="x", ls="", label="diverged run")]
    fig.legend(handles=extra, loc="outside lower center", ncol=4 if len(keys) > 1 else 2, fontsize="x-small")
    fig.suptitle(f"What each swept key does: {label} and the gradient ratio{_seed_note(sweep, keys)}", fontsize=10)
    return _save(fig, path)


def _against(ax, summary: pd.DataFrame, keys: list[str], key: str, series: list[tuple], log: bool) -> None:
    """Columns of the summary against one key's values (categorical positions): the median over the
    other keys bold, each combination of the other keys a thin grey line (the last column's)."""
    values = _ordered(summary[key])
    xs = np.arange(len(values))
    others = [k for k in keys if k != key]
    drawn = []
    for col, color, ls, marker in series:
        if col not in summary:
            continue
        y = (_positive if log else _finite)(summary[col])
        frame = summary[[*keys]].astype(str).assign(y=y)
        if others and col == series[-1][0]:
            for _, part in frame.groupby(others, sort=False):
                line = part.groupby(key, sort=False).y.median()
                ax.plot([values.index(v) for v in _back(values, line.index)], line.to_numpy(), "-", color="0.75",
                        lw=0.8, zorder=1)
        med = frame.groupby(key, sort=False).y.median()
        ax.plot([values.index(v) for v in _back(values, med.index)], med.to_numpy(), ls=ls, marker=marker, ms=5,
                color=color, lw=1.8, zorder=3)
        drawn.append(y)
    if log:
        _log_y(ax, *drawn) if drawn else None
    ax.set_xticks(xs, [str(v) for v in values], fontsize=8, rotation=20 if len(values) > 4 else 0)
    ax.set_xlim(-0.5, len(values) - 0.5)
    ax.grid(True, alpha=0.3)
    ax.tick_params(axis="y", labelsize=8)


def _back(values: list, texts) -> list:
    """The original values of their text forms (groupby ran on text)."""
    by_text = {str(v): v for v in values}
    return [by_text[t] for t in texts]


def _diverged_marks(ax, summary: pd.DataFrame, key: str) -> None:
    """A red x near the top of the panel at each value of ``key`` with a diverged run, with how many."""
    if "status" not in summary:
        return
    values = _ordered(summary[key])
    diverged = summary[summary.status.astype(str) == "diverged"]
    for value, n in diverged.groupby(summary[key].astype(str)[diverged.index], sort=False).size().items():
        x = values.index(_back(values, [value])[0])
        ax.plot([x], [0.93], "x", color="crimson", ms=7, mew=2, transform=ax.get_xaxis_transform(), zorder=4)
        ax.text(x + 0.08, 0.93, str(n), color="crimson", fontsize=7, va="center", transform=ax.get_xaxis_transform())


# --------------------------------------------------------------------------- gradient flow

def first_last_profile(sweep: SweepData) -> pd.DataFrame | None:
    """Per combination, layer and end ("first"/"last"): the median over seeds of delta_norm at each run's
    first logged step and at its last step with finite values (a diverged run's: just before it diverged)."""
    prof = sweep.profile
    if prof is None or prof.empty or not {"layer", "step", "delta_norm"} <= set(prof.columns):
        return None
    keys = main_keys(sweep)
    runs = [k for k in sweep.keys if k in prof.columns] + (["seed"] if "seed" in prof.columns and
                                                            "seed" not in sweep.keys else [])
    prof = prof.assign(delta_norm=_positive(prof.delta_norm))
    ok = prof[np.isfinite(prof.delta_norm)]
    if ok.empty:
        return None
    group = ok.groupby(runs, sort=False, dropna=False).step if runs else ok.step
    first = ok[ok.step == group.transform("min")].assign(end="first")
    last = ok[ok.step == group.transform("max")].assign(end="last")
    both = pd.concat([first, last])
    both[keys] = both[keys].astype(str)
    return both.groupby([*keys, "end", "layer"], sort=False).delta_norm.median().reset_index()


def plot_sweep_gradient_flow(sweep: SweepData, path: Path) -> Path | None:
    """delta_norm per layer at the first logged step and at the last, side by side for each combination of
    the panel keys, a line per value of the line key; one log scale for all."""
    keys = main_keys(sweep)
    table = first_last_profile(sweep)
    if table is None:
        return None
    f = facets(sweep)
    fig, axes = _figure(f.nrows, 2 * f.ncols, size=(1.2 + 4.4 * f.ncols, 1.0 + 2.4 * f.nrows),
                        sharex=True, sharey=True)
    axes = axes.reshape(f.nrows, 2 * f.ncols)
    lines = []
    for i, combo in enumerate(f.combos):
        pair = axes[i // f.ncols, 2 * (i % f.ncols):2 * (i % f.ncols) + 2]
        for ax, end in zip(pair, ("first", "last")):
            for value, color in zip(f.values, f.colors):
                which = {**combo, **({f.line: value} if f.line else {})}
                rows = table[_match(table, which) & (table.end == end)]
                ax.plot(rows.layer, rows.delta_norm, "o-", ms=2.5, lw=1.2, color=color)
                lines.append((ax, rows.delta_norm.to_numpy(), color, str(value) if f.line else "run",
                              _diverged(sweep.summary, which)))
            ax.set_title(f"{f.title(combo)}\n{'first logged step' if end == 'first' else 'last logged step'}"
                         if combo else f"{end} logged step", fontsize=8)
            ax.grid(True, which="major", alpha=0.3)
            ax.tick_params(labelsize=7)
            ax.xaxis.get_major_locator().set_params(integer=True)
    if _log_y(axes.ravel()[0], table.delta_norm.to_numpy()):
        _fit_scale(axes.ravel(), lines, "delta_norm")
    for ax in axes[:, 0]:
        ax.set_ylabel(DELTA, fontsize=8)
    for ax in axes[-1, :]:
        ax.set_xlabel("layer", fontsize=8)
    _hide_unused(axes.ravel(), 2 * len(f.combos))
    _line_legend(fig, f)
    fig.suptitle("Back-propagated gradient per layer at the first and the last logged step (1 = input side, "
                 f"last = read-out){_seed_note(sweep, keys)}", fontsize=10)
    return _save(fig, path)
