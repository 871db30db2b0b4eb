"""``gradlab compare RUN RUN ...``: run folders side by side, in one compare.html and its PNGs.

    compare()      read the runs; write the figures and the page into a folder of their own (never a run's)
    config_diff()  the flattened config keys whose values differ between the runs
    run_table()    one row per run: the run, the differing keys, then its final figures
    plot_*         one figure each: loss, global gradient norm, delta_norm by layer, ||dL/dh_t|| by lag

Runs of any shape compare: a figure that does not apply to a run (no hidden layers to flow through, not
recurrent, nothing logged) leaves that run out and says so, in the figure and on the page.
"""
from __future__ import annotations

import html as html_text
import json
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib import colormaps

from ..config import ConfigError
from ..files import fresh_dir, refuse_symlinks
from . import html
from .diagnose import delta_ratio, time_ratio
from .load import RunData, load_run
from .plots import DELTA, _figure, _finite, _log_y, _note, _positive, _save, smooth

PLOTS = ("compare_loss.png", "compare_grad_norm.png", "compare_delta_by_layer.png", "compare_time_grad_norms.png")
PAGE = "compare.html"
FIGURES = ("status", "steps", "final_train_loss", "final_val_loss", "final_val_accuracy",
           "delta_ratio_at_first_step", "delta_ratio_at_last_step", "diverged_at")
TIME_FIGURES = ("time_ratio_at_first_step", "time_ratio_at_last_step")  # when a run is recurrent
WIDE = 6  # more differing keys than this: the page shows them one key per row
SMOOTH = 25  # the loss EMA spans 1/SMOOTH of a run's logged steps


@dataclass
class Comparison:
    """What ``compare`` read, found and wrote. ``table``: one row per run (JSON-ready values; None where a
    figure does not apply, NaN where it is not finite); ``keys``: the config keys that differ; ``same``: how
    many keys all runs share with one value."""

    runs: list[RunData]
    labels: list[str]
    table: pd.DataFrame
    keys: list[str]
    same: int
    dir: Path | None = None
    html: Path | None = None
    images: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # runs left out of a figure, and why; the runs' own notes

    def as_dict(self) -> dict:
        rows = [{k: _json_value(v) for k, v in row.items() if v is not MISSING}
                for row in self.table.to_dict("records")]
        return {"dir": str(self.dir) if self.dir else None, "html": str(self.html) if self.html else None,
                "images": [str(p) for p in self.images], "differing_keys": self.keys, "same_keys": self.same,
                "runs": rows, "notes": self.notes}


def compare(paths: Sequence[str | Path], out: str | Path | None = None, write: bool = True) -> Comparison:
    """Compare two or more run folders; with ``write``, put compare.html and its PNGs into ``out`` (default:
    a new folder ``compare-<YYYYmmdd-HHMMSS>`` beside the first run)."""
    runs = load_runs(paths)
    labels = run_labels(runs)
    configs, as_written = resolved_configs(runs)
    flat = flatten(configs)
    keys, same = config_diff(flat)
    cmp = Comparison(runs, labels, run_table(runs, labels, flat, keys), keys, same)
    for label, run in zip(labels, runs):
        cmp.notes += [f"{label}: {note}" for note in run.notes]
    cmp.notes += [f"{labels[i]}: its config.yaml does not validate, so its keys are compared as written, without "
                  "the defaults filled in (a key it leaves out may be listed as differing)" for i in as_written]
    if write:
        with np.errstate(all="ignore"):  # a diverged run's inf and nan are masked, and the page says so
            _write(cmp, out_folder(runs, out))
    return cmp


# --------------------------------------------------------------------------- the runs

def load_runs(paths: Sequence[str | Path]) -> list[RunData]:
    """Each folder read as a run; a ConfigError naming the folder for fewer than two, a repeat, a bad one."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        given = f" (only {paths[0]})" if paths else ""
        raise ConfigError(f"gradlab compare needs at least two run folders{given}; allowed: two or more folders "
                          "written by gradlab train, e.g. gradlab compare runs/A runs/B.")
    seen: dict[Path, Path] = {}
    for path in paths:
        key = path.resolve()
        if key in seen:
            same = "twice" if seen[key] == path else f"twice (as {seen[key]} and {path})"
            raise ConfigError(f"{path}: the same run given {same}; allowed: two or more different run folders.")
        seen[key] = path
    return [_load(path) for path in paths]


def _load(path: Path) -> RunData:
    try:
        return load_run(path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the run folder ({exc.strerror or exc}); allowed: a run folder "
                          "written by gradlab train that you can read.") from None


def run_labels(runs: list[RunData]) -> list[str]:
    """Each run's folder name; parent/name for runs whose folder names repeat (runs/a/x beside runs/b/x)."""
    names = [r.name for r in runs]
    return [f"{r.dir.parent.name}/{r.name}" if names.count(r.name) > 1 else r.name for r in runs]


def resolved_configs(runs: list[RunData]) -> tuple[list[dict], list[int]]:
    """Each run's config with every default filled in (a run written before a key existed, e.g. without
    train.schedule, reads as the default it ran with), and the indices of the runs whose config.yaml does not
    validate: those are compared as written."""
    configs, as_written = [], []
    for k, run in enumerate(runs):  # run.config: config.yaml validated without importing, or None
        configs.append(run.config.resolved() if run.config is not None else run.raw)
        if run.config is None and run.raw:
            as_written.append(k)
    return configs, as_written


def flatten(raws: list[dict]) -> list[dict[str, Any]]:
    """Each config as {dotted key path: value} ({'model': {'depth': 20}} -> {'model.depth': 20}), split into
    sub-keys only where every run that has the key holds a mapping there: ``train.clip: null`` beside
    ``{mode: norm, threshold: 1.0}`` stays one key, ``train.clip``."""
    flat: list[dict[str, Any]] = [{} for _ in raws]
    _walk(list(raws), "", flat)
    return flat


def _walk(values: list[Any], prefix: str, flat: list[dict[str, Any]]) -> None:
    present = [v for v in values if v is not MISSING]
    if prefix and not (present and all(isinstance(v, dict) and v for v in present)):
        for into, value in zip(flat, values):
            if value is not MISSING:
                into[prefix] = value
        return
    for key in dict.fromkeys(k for v in present for k in v):
        _walk([v.get(key, MISSING) if isinstance(v, dict) else MISSING for v in values],
              f"{prefix}.{key}" if prefix else str(key), flat)


class _Missing:
    """A key that a run's config does not have (an MLP's model.depth beside an RNN): a blank cell."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()


def config_diff(flat: list[dict[str, Any]]) -> tuple[list[str], int]:
    """(the keys whose values differ, or that some run lacks, in the configs' order; how many are the same)."""
    keys = list(dict.fromkeys(k for f in flat for k in f))
    differ = [k for k in keys if len({_same_key(f.get(k, MISSING)) for f in flat}) > 1]
    return differ, len(keys) - len(differ)


def _same_key(value: Any) -> str:
    return "<missing>" if value is MISSING else json.dumps(value, sort_keys=True, default=str)


def run_table(runs: list[RunData], labels: list[str], flat: list[dict], keys: list[str]) -> pd.DataFrame:
    """One row per run: run, the differing keys (MISSING where a run's config lacks one), then its figures."""
    recurrent = any(r.recurrent for r in runs)
    rows = []
    for label, run, values in zip(labels, runs, flat):
        row = {"run": label, **{k: values.get(k, MISSING) for k in keys}, **figures(run)}
        if recurrent:
            row.update(time_figures(run))
        rows.append(row)
    return pd.DataFrame(rows, columns=["run", *keys, *FIGURES, *(TIME_FIGURES if recurrent else ())], dtype=object)


def figures(run: RunData) -> dict:
    """status, steps, final losses and val accuracy, the delta ratio (first over last hidden layer) at the
    first and last logged step (None with fewer than two hidden layers), diverged_at."""
    s = run.summary
    row = {"status": s.get("status"), "steps": s.get("steps"), "final_train_loss": s.get("final_train_loss"),
           "final_val_loss": s.get("final_val_loss"), "final_val_accuracy": s.get("final_val_accuracy")}
    steps = run.steps
    deep = len(run.hidden) > 1 and steps
    row["delta_ratio_at_first_step"] = delta_ratio(run, steps[0]) if deep else None
    row["delta_ratio_at_last_step"] = delta_ratio(run, steps[-1]) if deep else None
    row["diverged_at"] = s.get("diverged_at")
    return row


def time_figures(run: RunData) -> dict:
    """||dL/dh_1|| / ||dL/dh_T|| of the top recurrent layer at the first and last logged step (None if not
    recurrent)."""
    steps = sorted(int(s) for s in run.times.step.unique()) if run.recurrent else []
    first, last = (time_ratio(run, steps[0])[0], time_ratio(run, steps[-1])[0]) if steps else (None, None)
    return {"time_ratio_at_first_step": first, "time_ratio_at_last_step": last}


def _json_value(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value) if math.isfinite(value) else None
    return value


# --------------------------------------------------------------------------- where it goes

def out_folder(runs: list[RunData], out: str | Path | None) -> Path:
    """``out`` (made if missing), or a new ``compare-<stamp>`` beside the first run; never a run's folder."""
    if out is None:
        return _new_folder(runs[0].dir.resolve().parent)
    out = Path(out)
    inside = [r for r in runs if out.resolve() == r.dir.resolve() or r.dir.resolve() in out.resolve().parents]
    if inside:
        raise ConfigError(f"--out {out}: inside the run {inside[0].dir}; allowed: a folder outside every run "
                          "compared (compare never writes into a run).")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: a file, not a folder; allowed: a folder (made if missing).")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot make the folder ({exc.strerror or exc}); allowed: a folder you "
                          "can write to.") from None
    return out


def _new_folder(parent: Path) -> Path:
    base = parent / f"compare-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    try:
        return fresh_dir(base)
    except OSError as exc:
        raise ConfigError(f"{parent}: cannot make a folder {base.name} for the comparison "
                          f"({exc.strerror or exc}); choose another with --out DIR.") from None


def _write(cmp: Comparison, folder: Path) -> None:
    refuse_symlinks(folder, [PAGE, *PLOTS])
    cmp.dir = folder
    sections = []
    for name, plot in zip(PLOTS, (plot_loss, plot_grad_norm, plot_delta_by_layer, plot_time_grad_norms)):
        path, left_out = plot(cmp.runs, legend_labels(cmp), folder / name)
        if path is None:
            (folder / name).unlink(missing_ok=True)  # a figure of an earlier comparison in --out DIR
        else:
            cmp.images.append(path)
        cmp.notes += [f"{TITLES[name]}: {note}" for note in left_out]
        if path is not None or left_out:
            sections.append(html.Section(TITLES[name], images=[path], text=_section_text(name, path, left_out)))
    table = html.Section("Runs", html=table_html(cmp), text=TABLE_NOTE)
    cmp.html = html.write_html(folder / PAGE, "gradlab compare: " + ", ".join(cmp.labels), [table, *sections])


NOT_SETTINGS = ("name", "log.out")  # keys that differ between runs without changing what is trained
IN_LEGEND = 3  # runs that differ in at most this many settings say which in the figures' legends


def legend_labels(cmp: Comparison) -> list[str]:
    """Each run's label, followed by its values of the settings that differ when there are few
    (``exp-20261127-212450: batchnorm=true``), each key without its section when that is unambiguous."""
    keys = [k for k in cmp.keys if k not in NOT_SETTINGS]
    if not 1 <= len(keys) <= IN_LEGEND:
        return list(cmp.labels)
    short = [k.split(".", 1)[-1] for k in keys]
    names = short if len(set(short)) == len(short) else keys
    return [label + ": " + ", ".join(f"{n}={cell_text(v, True) or '-'}" for n, v in zip(names, row))
            for label, row in zip(cmp.labels, cmp.table[keys].itertuples(index=False))]


TITLES = {"compare_loss.png": "Loss", "compare_grad_norm.png": "Global gradient norm",
          "compare_delta_by_layer.png": "Back-propagated gradient by layer",
          "compare_time_grad_norms.png": "Gradient through time"}
WHAT = {
    "compare_loss.png": "Training loss per batch (faint) and its exponential moving average (line); validation "
                        "loss as points.",
    "compare_grad_norm.png": "||dL/d params|| over all tensors, before clipping; a dashed line in a run's colour "
                             "is its clip threshold.",
    "compare_delta_by_layer.png": "delta_norm = ||dL/d output|| of each layer at the first and the last logged "
                                  "step, against the layer index (1 = input side; the square is each run's "
                                  "read-out). On a log axis a constant slope is a constant gain per layer, "
                                  "comparable between nets of different depths.",
    "compare_time_grad_norms.png": "||dL/dh_t|| of the top recurrent layer against the lag T - t, at the first "
                                   "and the last logged step.",
}
TABLE_NOTE = ("The config keys whose values differ (every other key is the same in all runs), then how each run "
              "ended. delta ratio: delta_norm of the first hidden layer over the last, at the first and the last "
              "logged step (blank: fewer than two hidden layers). time ratio: ||dL/dh_1|| / ||dL/dh_T|| of the "
              "top recurrent layer. A blank key: that run's config has no such key.")


def _section_text(name: str, path: Path | None, left_out: list[str]) -> str:
    parts = [WHAT[name] if path is not None else "No run to show."]
    parts += [f"Left out: {note}" for note in left_out]
    return "\n\n".join(parts)


# --------------------------------------------------------------------------- the table

HEADERS = {"final_train_loss": "final train loss", "final_val_loss": "final val loss",
           "final_val_accuracy": "final val accuracy", "delta_ratio_at_first_step": "delta ratio at first step",
           "delta_ratio_at_last_step": "delta ratio at last step", "diverged_at": "diverged at",
           "time_ratio_at_first_step": "time ratio at first step", "time_ratio_at_last_step": "time ratio at last step"}


def table_html(cmp: Comparison) -> str:
    """The runs' table; with more than WIDE differing keys, the keys in a table of their own, one per row."""
    same = f"<p>{cmp.same} config keys are the same in every run and left out.</p>"
    if len(cmp.keys) <= WIDE:
        return _rows_html(cmp.table, cmp.keys) + same
    keys = cmp.table.set_index("run")[cmp.keys].T.reset_index(names="config key")
    return _rows_html(cmp.table.drop(columns=cmp.keys)) + same + _rows_html(keys, list(keys.columns[1:]))


def _rows_html(frame: pd.DataFrame, config: Sequence[str] = ()) -> str:
    """A table whose headers may wrap after a dot or an underscore, numbers with 4 significant digits;
    ``config``: the columns of config values (None there is null, not blank)."""
    head = "".join(f'<th class="text"{_wrap(str(c))}>{_breakable(HEADERS.get(c, str(c)))}</th>' for c in frame.columns)
    body = "\n".join("<tr>" + "".join(_td(v, i == 0, c in config) for i, (c, v) in enumerate(zip(frame.columns, row)))
                     + "</tr>" for row in frame.itertuples(index=False))
    return f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table></div>'


def _breakable(text: str) -> str:
    """Escaped text that may wrap after a dot, an underscore, a slash or a hyphen (run names, paths)."""
    escaped = html_text.escape(text)
    for mark in "._/-":
        escaped = escaped.replace(mark, mark + "<wbr>")
    return escaped


LONG = 20  # text longer than this may also break inside a word (a path, a long name), rather than widen the table


def _wrap(text: str) -> str:
    return ' style="overflow-wrap: anywhere"' if len(text) > LONG else ""


def _td(value: Any, first: bool, config: bool) -> str:
    """A number as it is; text (a run's name, a config value such as a path) free to wrap: ten runs' folders
    side by side must not push the table wider than the page."""
    text = cell_text(value, config)
    if first or isinstance(value, bool) or not isinstance(value, numbers.Real):
        return f'<td class="text"{_wrap(text)}>{_breakable(text)}</td>'
    return f"<td>{html_text.escape(text)}</td>"


def cell_text(value: Any, config: bool = False) -> str:
    """A table cell: blank where it does not apply (a figure) or where a run's config lacks the key; config
    values as YAML writes them (null, true, [1, 2]); numbers with 4 significant digits, inf and nan as such."""
    if value is MISSING or (value is None and not config):
        return ""
    if value is None or isinstance(value, (bool, np.bool_)):
        return {None: "null", True: "true", False: "false"}[None if value is None else bool(value)]
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=math.inf).strip()
    if not isinstance(value, numbers.Real):
        return str(value)
    if isinstance(value, numbers.Integral):
        return str(int(value))
    return f"{float(value):.4g}"


# --------------------------------------------------------------------------- figures

def colors(n: int) -> list:
    cycle = colormaps["tab10"].colors
    return [cycle[i % len(cycle)] for i in range(n)]


def _usable_metrics(run: RunData, column: str) -> bool:
    m = run.metrics
    return m is not None and not m.empty and column in m.columns


def plot_loss(runs: list[RunData], labels: list[str], path: Path) -> tuple[Path | None, list[str]]:
    """Each run's batch loss (faint) and its EMA (line), validation loss as points; log y over > 100x."""
    shown = [(r, l, c) for r, l, c in zip(runs, labels, colors(len(runs))) if _usable_metrics(r, "loss")]
    left_out = [f"{l} (no step logged)" for r, l in zip(runs, labels) if not _usable_metrics(r, "loss")]
    if not shown:
        return None, left_out
    top = ceiling(shown, ("loss", "val_loss"))
    log = top is not None or _spans_decades([run.metrics for run, _, _ in shown])
    clean = (lambda v: _below(_positive(v), top)) if log else _finite
    fig, (ax,) = _figure(size=(8.0, 4.5))
    for run, label, color in shown:
        m = run.metrics
        off = _off_top(ax, run, "loss", top, color)
        ax.plot(m.step, clean(m.loss), "-", color=color, lw=0.8, alpha=0.25)
        ax.plot(m.step, clean(smooth(m.loss, max(1.0, len(m) / SMOOTH))), "-", color=color, lw=1.8, label=_run_label(run, label, off))
        if "val_loss" in m:
            ax.plot(m.step, clean(m.val_loss), "o", color=color, ms=4.5, mec="white", mew=0.6)
        if run.summary.get("diverged_at") is not None:
            ax.axvline(run.summary["diverged_at"], color=color, ls=":", lw=1.2)
    chance, whose = chance_line([(run, label) for run, label, _ in shown])
    if chance is not None:
        ax.axhline(chance, color="0.45", ls=(0, (4, 3)), lw=1.0, zorder=1)
        ax.annotate(f"chance{whose}: ln {round(math.exp(chance))} = {chance:.3g}", (1.0, chance),
                    xycoords=("axes fraction", "data"), xytext=(-4, -3), textcoords="offset points", ha="right",
                    va="top", fontsize=8, color="0.2",
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})
    if log:
        ax.set_yscale("log")
    if not any(np.isfinite(_finite(run.metrics.loss)).any() for run, _, _ in shown):
        _note(ax, "no finite loss")
    ax.set_ylabel("loss" + (" (log scale)" if ax.get_yscale() == "log" else ""))
    ax.set_xlabel("training step")
    ax.grid(True, which="major", alpha=0.3)
    _style_legend(fig, ax, left_out, [("-", 0.8, 0.3, "batch loss"), ("-", 1.8, 1.0, "moving average"),
                       ("o", 0, 1.0, "validation loss")])
    diverged = any(run.summary.get("diverged_at") is not None for run, _, _ in shown)
    ax.set_title("Training loss" + (" (dotted: where a run diverged)" if diverged else ""), fontsize=11)
    return _save(fig, path), left_out


NAMED = 2  # a chance line shared by at most this many of the runs names them; by more, counts them


def chance_line(shown: list[tuple[RunData, str]]) -> tuple[float | None, str]:
    """(the chance loss to draw, whose it is for its label): the classification runs' ln(classes) when they
    share it, said of every run (""), or of the runs it belongs to when other runs' losses are not
    classification (" of run-a", " of 3 runs"); (None, "") when no run is classification or their chance
    levels differ (one line would be wrong for some of them)."""
    levels = [(label.split(": ", 1)[0], _chance(run)) for run, label in shown]  # the run, not its settings
    theirs = [(name, c) for name, c in levels if c is not None]
    if not theirs or len({c for _, c in theirs}) > 1:
        return None, ""
    if len(theirs) == len(levels):
        return theirs[0][1], ""
    names = [name for name, _ in theirs]
    return theirs[0][1], " of " + (", ".join(names) if len(names) <= NAMED else f"{len(names)} runs")


def _chance(run: RunData) -> float | None:
    """The cross-entropy of a uniform guess, ln(classes), for a classification run; None otherwise (mse,
    bce, a config without n_classes)."""
    if run.config is not None:
        loss, classes = run.config.loss, getattr(run.config.data, "n_classes", None)
    else:
        loss, classes = run.raw.get("loss", "cross_entropy"), (run.raw.get("data") or {}).get("n_classes")
    if loss != "cross_entropy" or isinstance(classes, bool) or not isinstance(classes, int) or classes < 2:
        return None
    return math.log(classes)


def _spans_decades(frames: list[pd.DataFrame]) -> bool:
    """True when the positive finite losses (batch and validation) span more than 100x: a log axis."""
    pos = _positive(np.concatenate([f[c].to_numpy(dtype=float) for f in frames for c in ("loss", "val_loss")
                                    if c in f]))
    return bool(np.isfinite(pos).any() and np.nanmax(pos) > 100 * np.nanmin(pos))


def _run_label(run: RunData, label: str, off: str = "") -> str:
    """The run's label, with the step where it diverged and how far it went off the top of the axis."""
    diverged = run.summary.get("diverged_at")
    said = [f"diverged at step {diverged}"] * (diverged is not None) + [off] * bool(off)
    return label + (f" ({'; '.join(said)})" if said else "")


OFF_TOP = 1e6  # a diverged run whose values pass every other run's largest by this factor leaves the axis


def ceiling(shown: list[tuple], columns: tuple[str, ...]) -> float | None:
    """The top of a log y axis when a diverged run dwarfs the runs that did not diverge (1e196 beside a loss
    of 0.02 would flatten them): 100x their largest value. None when no run dwarfs the others."""
    def largest(run: RunData) -> float | None:
        v = _positive(np.concatenate([run.metrics[c].to_numpy(dtype=float) for c in columns if c in run.metrics]))
        return float(np.nanmax(v)) if np.isfinite(v).any() else None

    tops = [(run.summary.get("diverged_at") is not None, largest(run)) for run, _, _ in shown]
    calm = [t for wild, t in tops if not wild and t is not None]
    wild = [t for wild, t in tops if wild and t is not None]
    return 100 * max(calm) if calm and wild and max(wild) > OFF_TOP * max(calm) else None


def _below(values: np.ndarray, top: float | None) -> np.ndarray:
    """``values`` with those above ``top`` masked (NaN); as they are when ``top`` is None."""
    return values if top is None else np.where(values > top, np.nan, values)


def _off_top(ax, run: RunData, column: str, top: float | None, color) -> str:
    """Mark with a triangle where the run leaves the axis; say from which step and up to what (for its label)."""
    v = _positive(run.metrics[column])
    over = np.flatnonzero(v > top) if top is not None else []
    if not len(over):
        return ""
    step = int(run.metrics.step.iloc[over[0]])
    ax.plot([step], [top], "^", color=color, ms=8, clip_on=False)
    return f"off the top from step {step}, up to {np.nanmax(v):.2g}"


def _style_legend(fig, ax, left_out: list[str], styles: list[tuple]) -> None:
    """The runs' legend under the figure, and a grey key to the line styles inside the axes."""
    from matplotlib.lines import Line2D

    _legend_below(fig, ax, left_out)
    proxies = [Line2D([], [], ls="-" if s == "-" else "none", marker=None if s == "-" else s, lw=lw, alpha=a,
                      color="0.3") for s, lw, a, _ in styles]
    ax.legend(proxies, [t for *_, t in styles], fontsize="x-small", loc="best")


def _legend_below(fig, ax, left_out: list[str]) -> None:
    """One legend under the figure (run labels are long; the data keeps the axes): the labelled lines of
    ``ax``, then the runs the figure leaves out and why, in grey."""
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], ls="none") for _ in left_out]
    labels += [f"left out: {note}" for note in left_out]
    if handles:
        legend = fig.legend(handles, labels, loc="outside lower center", fontsize="small", ncols=1, frameon=False)
        for text in legend.get_texts()[len(labels) - len(left_out):]:
            text.set_color("0.4")


def plot_grad_norm(runs: list[RunData], labels: list[str], path: Path) -> tuple[Path | None, list[str]]:
    """Each run's global gradient norm (log y), its clip threshold dashed in its colour."""
    shown = [(r, l, c) for r, l, c in zip(runs, labels, colors(len(runs))) if _usable_metrics(r, "grad_norm")]
    left_out = [f"{l} (no step logged)" for r, l in zip(runs, labels) if not _usable_metrics(r, "grad_norm")]
    if not shown:
        return None, left_out
    fig, (ax,) = _figure(size=(8.0, 4.5))
    values = []
    top = ceiling(shown, ("grad_norm",))
    for run, label, color in shown:
        norm = _below(_positive(run.metrics.grad_norm), top)
        off = _off_top(ax, run, "grad_norm", top, color)
        ax.plot(run.metrics.step, norm, "-", color=color, lw=1.1, label=_run_label(run, label, off))
        values.append(norm)
        threshold, why = _threshold(run)
        if threshold is not None:
            ax.axhline(threshold, color=color, ls="--", lw=1.2, label=f"clip threshold {threshold:g}")
            values.append(_positive([threshold]))
        elif why:
            left_out.append(f"{label}'s clip threshold ({why})")
    _log_y(ax, *values)
    _legend_below(fig, ax, left_out)
    ax.set_ylabel("global ||dL/d params|| (log scale)")
    ax.set_xlabel("training step")
    ax.grid(True, which="major", alpha=0.3)
    clips = any(line.get_linestyle() == "--" for line in ax.lines)
    ax.set_title("Global gradient norm" + (" before clipping (dashed: each run's clip threshold)" if clips else ""),
                 fontsize=11)
    return _save(fig, path), left_out


def _threshold(run: RunData) -> tuple[float | None, str]:
    """(the run's global clip threshold, or None; why it is not drawn when the run clips otherwise)."""
    clip = (run.raw.get("train") or {}).get("clip")
    if not isinstance(clip, dict):
        return None, ""
    if clip.get("scope", "global") != "global":
        return None, f"clips each {clip.get('scope')}'s norm, not the global one"
    return run.clip_threshold(), "" if clip.get("mode", "norm") == "norm" else "clips by value, not by norm"


def _layer_steps(run: RunData) -> tuple[int, int]:
    """The first logged step and the last one with a finite delta_norm (a diverged run's last is not)."""
    steps = run.steps
    finite = [s for s in steps if np.isfinite(_positive(run.at(s).delta_norm)).any()]
    return steps[0], (finite[-1] if finite else steps[-1])


def plot_delta_by_layer(runs: list[RunData], labels: list[str], path: Path) -> tuple[Path | None, list[str]]:
    """delta_norm against the layer index at the first and the last logged step: two panels, one line per run."""
    shown, left_out = [], []
    for run, label, color in zip(runs, labels, colors(len(runs))):
        if run.layers.empty:
            left_out.append(f"{label} (no step logged)")
        elif len(run.hidden) < 2:
            left_out.append(f"{label} (one hidden layer: no layer below it to reach"
                            + ("; see the gradient through time)" if run.recurrent else ")"))
        else:
            shown.append((run, label, color))
    if not shown:
        return None, left_out
    fig, axes = _figure(1, 2, size=(10.0, 4.2))  # a y scale per step: an exploded last step flattens the first
    values = {0: [], 1: []}
    for run, label, color in shown:
        steps = _layer_steps(run)
        for i, step in enumerate(steps):
            rows = run.at(step)
            d = _positive(rows.delta_norm)
            axes[i].plot(rows.index[:-1], d[:-1], "o-", color=color, ms=3.5, lw=1.4,
                         label=f"{label} (steps {steps[0]} and {steps[1]})")
            axes[i].plot(rows.index[-1:], d[-1:], "s", color=color, ms=6)
            values[i].append(d)
    for i, (ax, when) in enumerate(zip(axes, ("first logged step", "last logged step (last finite, if diverged)"))):
        _log_y(ax, *values[i])
        ax.set_title(when, fontsize=10)
        ax.set_xlabel("layer index (1 = input side; square = read-out)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes:
        ax.set_ylabel(DELTA)
    _legend_below(fig, axes[0], left_out)
    fig.suptitle("Back-propagated gradient by layer", fontsize=11)
    return _save(fig, path), left_out


def _top_layer(run: RunData) -> pd.DataFrame:
    t = run.times
    return t[t.layer == t.layer.max()]


def plot_time_grad_norms(runs: list[RunData], labels: list[str], path: Path) -> tuple[Path | None, list[str]]:
    """||dL/dh_t|| of each recurrent run's top recurrent layer against lag, at the first and last logged step."""
    shown = [(r, l, c) for r, l, c in zip(runs, labels, colors(len(runs))) if r.recurrent]
    if not shown:
        return None, []  # a figure of recurrent runs only: nothing to say when there is none
    left_out = [f"{l} (not recurrent)" for r, l in zip(runs, labels) if not r.recurrent]
    fig, axes = _figure(1, 2, size=(10.0, 4.2))  # a y scale per step: an exploded last step flattens the first
    values = {0: [], 1: []}
    for run, label, color in shown:
        top = _top_layer(run)
        ok = sorted(int(s) for s in top.step[np.isfinite(_positive(top.grad_norm))].unique())
        steps = (ok[0], ok[-1]) if ok else (int(top.step.min()), int(top.step.max()))
        for i, step in enumerate(steps):
            part = top[top.step == step].sort_values("lag")
            g = _positive(part.grad_norm)
            axes[i].plot(part.lag, g, "-", color=color, lw=1.4, label=f"{label} (steps {steps[0]} and {steps[1]})")
            values[i].append(g)
    for i, (ax, when) in enumerate(zip(axes, ("first logged step", "last logged step (last finite, if diverged)"))):
        _log_y(ax, *values[i])
        ax.set_title(when, fontsize=10)
        ax.set_xlabel("lag T - t (time steps back from the last)")
        ax.grid(True, which="major", alpha=0.3)
    for ax in axes:
        ax.set_ylabel("||dL/dh_t|| (top recurrent layer)")
    _legend_below(fig, axes[0], left_out)
    fig.suptitle("Gradient through time", fontsize=11)
    return _save(fig, path), left_out
