"""``gradlab watch [RUN]``: follow a run's CSVs as they grow and draw them in the terminal.

The view (``view``) draws a ``RunState``: the rows so far of each table, config.yaml and summary.json.
``gradlab watch`` fills the state from the files (whole rows only, as they are appended); ``WatchView``,
the observer of ``gradlab train --watch``, fills it from the training loop's records. Both draw the same.
Only typer and runs.py (json, pathlib) are imported here at the top: ``gradlab --help`` stays fast.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Optional

import typer

from .runs import SILENT, TABLES  # json and pathlib only

BLOCKS = "▁▂▃▄▅▆▇█"
NAN_MARK, INF_MARK = "?", "!"  # a sparkline column holding nan, inf (drawn red)
WIDE = 100.0  # a positive series whose max/min exceeds this is drawn on a log scale
MAX_LAYERS = 12  # the layer table shows at most this many (the first, the last, evenly between)
BAR = 24  # width of a delta_norm bar
DIAGNOSE_EVERY = 3.0  # seconds between two diagnoses of the rows so far (at least)
SHARE = 0.1  # of the time the view may take to draw and diagnose (train --watch: the training's time)
LONG = 240  # characters of the diagnosis shown
STALE = SILENT  # seconds without a write before a followed run is unfinished (gradlab runs says the same)
INTS = ("step", "epoch", "layer", "t", "lag")


# --------------------------------------------------------------------------- the state

class RunState:
    """What the view draws: each table's rows so far (mappings of column to value), the run's config
    (config.yaml as a mapping) and summary.json; running counts kept as rows arrive, so drawing is cheap."""

    def __init__(self, folder: Path | None = None, raw: dict | None = None, total: int | None = None) -> None:
        self.dir, self.raw = folder, raw or {}
        train = self.raw.get("train") or {}
        self.total = total if total is not None else train.get("steps")
        self.rows: dict[str, list[dict]] = {name: [] for name in TABLES}
        self.summary: dict = {}
        self.loss: list[float] = []
        self.gnorm: list[float] = []
        self.first: dict[int, dict] = {}  # layer -> its layer_stats row at the first logged step
        self.last: dict[int, dict] = {}  # ... at the last logged step
        self.first_step = self.last_step = None
        self.over = self.clipped = 0  # logged steps whose grad_norm exceeded the clip threshold; marked clipped
        self.threshold, self.clip_mode = clip_of(self.raw)
        self.val: dict | None = None  # the last metrics row with a val_loss
        self.grew = time.time()  # when the last row arrived; a followed folder: when the run last wrote a file
        self.follows = False  # read from a run folder (gradlab watch): a run silent for STALE s is unfinished
        self.findings: list | None = None
        self.diagnosis_note = ""
        self.diagnosed_at, self.diagnosed_rows = -math.inf, -1
        self.gap = DIAGNOSE_EVERY  # seconds until the next diagnosis: longer when one takes long

    @property
    def step(self) -> int | None:
        rows = self.rows["metrics.csv"]
        return int(rows[-1]["step"]) if rows else None

    @property
    def status(self) -> str:
        """summary.json's status; as gradlab runs says it, ``unfinished`` for a followed run folder whose
        summary.json says running (or is not there yet) but whose files were not written for STALE s."""
        status = str(self.summary.get("status") or "running")
        if status == "running" and self.follows and self.silence() > STALE:
            return "unfinished"
        return status

    @property
    def ended(self) -> bool:
        """The run wrote its end (an unfinished one may still write again: a stalled run, not a killed one)."""
        return self.status not in ("running", "unfinished")

    def silence(self, now: float | None = None) -> float:
        """Seconds since the last row arrived (the run's last write to its folder, when followed)."""
        return (time.time() if now is None else now) - self.grew

    def add(self, name: str, rows: list[dict]) -> None:
        if not rows:
            return
        self.rows[name].extend(rows)
        if not self.follows:  # a followed folder's silence is its files' last write (Follower.poll)
            self.grew = time.time()
        if name == "metrics.csv":
            for row in rows:
                self._metrics(row)
        elif name == "layer_stats.csv":
            for row in rows:
                self._layer(row)

    def _metrics(self, row: dict) -> None:
        loss, g = number(row.get("loss")), number(row.get("grad_norm"))
        self.loss.append(loss)
        self.gnorm.append(g)
        if self.threshold is not None and self.clip_mode == "norm" and not g <= self.threshold:
            self.over += not math.isnan(g)
        self.clipped += bool(number(row.get("clipped")) == 1)
        if row.get("val_loss") is not None:
            self.val = row

    def _layer(self, row: dict) -> None:
        step, layer = int(row["step"]), int(row["layer"])
        if self.first_step is None:
            self.first_step = step
        if step == self.first_step:
            self.first[layer] = row
        if self.last_step is None or step > self.last_step:
            self.last_step, self.last = step, {}
        if step == self.last_step:
            self.last[layer] = row

    def add_record(self, rec) -> None:
        """A training loop's StepRecord: the rows the run folder's tables get for it."""
        # vars, not dataclasses.asdict: a flat record needs no deep copy, and this runs at every logged step
        self.add("metrics.csv", [dict(zip(rec.METRICS, rec.metrics()))])
        self.add("grad_norms.csv", [{"step": rec.step, "epoch": rec.epoch, **vars(p)} for p in rec.params])
        self.add("layer_stats.csv", [{"step": rec.step, **vars(s)} for s in rec.layers])
        self.add("time_grad_norms.csv", [{"step": rec.step, **vars(t)} for t in rec.times])
        self.add("gate_stats.csv", [{"step": rec.step, **vars(g)} for g in rec.gates])

    def diagnose(self, now: float | None = None, force: bool = False) -> None:
        """The diagnosis of the rows so far, only if rows came, and at most every ``gap`` seconds: at least
        DIAGNOSE_EVERY, and long enough that diagnosing takes no more than SHARE of the time."""
        now = time.monotonic() if now is None else now
        rows = len(self.rows["layer_stats.csv"])
        if rows == self.diagnosed_rows or rows == 0 or (not force and now - self.diagnosed_at < self.gap):
            return
        self.diagnosed_at, self.diagnosed_rows = now, rows
        began = time.perf_counter()
        try:
            from .report.diagnose import diagnose

            self.findings, self.diagnosis_note = diagnose(self.run_data()), ""
        except Exception as exc:  # noqa: BLE001 - the view goes on without it, and says why
            self.findings = None
            self.diagnosis_note = f"no diagnosis of the rows so far ({type(exc).__name__}: {str(exc)[:120]})"
        self.gap = max(DIAGNOSE_EVERY, (time.perf_counter() - began) / SHARE)

    def run_data(self):
        """The rows so far as the report's RunData."""
        import numpy as np
        import pandas as pd

        from .report.load import RunData, layer_norms

        frames = {}
        for name, rows in self.rows.items():
            frame = pd.DataFrame(rows)
            for col in INTS:
                if col in frame.columns:
                    frame[col] = frame[col].astype("int64")
            frames[name] = frame
        grads, stats = frames["grad_norms.csv"], frames["layer_stats.csv"]
        layers = stats.merge(layer_norms(grads), on=["step", "layer"], how="left") if len(grads) else stats
        with np.errstate(all="ignore"):
            return RunData(dir=self.dir or Path("."), raw=self.raw, config=self.config(), summary=self.summary,
                           metrics=frames["metrics.csv"], grads=grads, layers=layers,
                           times=frames["time_grad_norms.csv"] if len(frames["time_grad_norms.csv"]) else None,
                           gates=frames["gate_stats.csv"] if len(frames["gate_stats.csv"]) else None,
                           init_shapes=self.init_shapes())

    def config(self):
        if not hasattr(self, "_config"):
            from .config import ConfigError, validate

            try:
                self._config = validate(self.raw, "config.yaml", imports=False) if self.raw else None
            except ConfigError:
                self._config = None
        return self._config

    def init_shapes(self):
        if not hasattr(self, "_shapes"):
            from .report.load import _init_shapes

            self._shapes = _init_shapes(self.dir / "params_init.npz", []) if self.dir else None
        return self._shapes


def clip_of(raw: dict) -> tuple[float | None, str | None]:
    """train.clip of a config mapping: (threshold, mode), (None, None) without clipping."""
    clip = (raw.get("train") or {}).get("clip")
    if not isinstance(clip, dict) or not isinstance(clip.get("threshold"), (int, float)):
        return None, None
    return float(clip["threshold"]), str(clip.get("mode", "norm"))


def number(value) -> float:
    """A cell as a float; nan where it is empty or not a number."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


# --------------------------------------------------------------------------- drawing

def fmt(x: float, digits: int = 4) -> str:
    """A figure for the eye: 0.6931, 1.2e-05, 3.4e+136, inf, nan."""
    x = number(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def log_scale(values: list[float]) -> bool:
    """Whether a series is drawn on a log scale: all finite values positive, spanning over WIDE."""
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > WIDE


def columns(values: list[float], width: int) -> list[list[float]]:
    """The series in at most ``width`` consecutive groups (one per character)."""
    n = len(values)
    if n <= width:
        return [[v] for v in values]
    return [values[i * n // width:(i + 1) * n // width] for i in range(width)]


def sparkline(values: list[float], width: int):
    """A rich Text of unicode blocks, one per group of values: the mean of the group (on a log scale
    where the series spans over two decades); a group holding inf is drawn as INF_MARK, nan as NAN_MARK."""
    from rich.text import Text

    log = log_scale(values)
    groups = columns(values, width)
    points = []
    for group in groups:
        if any(math.isnan(v) for v in group):
            points.append(NAN_MARK)
        elif any(math.isinf(v) for v in group):
            points.append(INF_MARK)
        else:
            shown = [math.log10(v) if log else v for v in group if not (log and v <= 0)]
            points.append(sum(shown) / len(shown) if shown else NAN_MARK)
    finite = [p for p in points if not isinstance(p, str)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
    text = Text()
    for p in points:
        if isinstance(p, str):
            text.append(p, style="bold red")
        else:
            level = round((p - lo) / (hi - lo) * (len(BLOCKS) - 1)) if hi > lo else len(BLOCKS) // 2
            text.append(BLOCKS[level], style="cyan")
    return text


def series_line(name: str, values: list[float], width: int):
    """``loss  ▇▆▅▄▃▂  0.5125  (min 0.4908, max 0.6949)``."""
    from rich.text import Text

    line = Text(f"{name:<10}", style="bold")
    if not values:
        return line.append("(no rows yet)", style="dim")
    line.append_text(sparkline(values, width))
    finite = [v for v in values if math.isfinite(v)]
    last = values[-1]
    line.append(f"  {fmt(last)}", style="bold red" if not math.isfinite(last) else "bold")
    if finite:
        line.append(f"  ({fmt(min(finite), 3)} .. {fmt(max(finite), 3)})", style="dim")
    if log_scale(values):
        line.append("  log", style="dim")
    return line


def bar(value: float, lo: float, hi: float, width: int = BAR):
    """A horizontal bar of log10(value) between lo and hi (log10 units)."""
    from rich.text import Text

    v = number(value)
    if math.isnan(v):
        return Text(NAN_MARK.ljust(width), style="bold red")
    if math.isinf(v):
        return Text("█" * width, style="bold red")
    if v <= 0:
        return Text("".ljust(width))
    filled = (math.log10(v) - lo) / (hi - lo) * width if hi > lo else width
    full = max(1, min(width, round(filled)))
    return Text("█" * full + "░" * (width - full), style="green")


def shown_layers(layers: list[int]) -> list[int]:
    """At most MAX_LAYERS of them: the first and last hidden layer, evenly spaced ones between, the read-out."""
    if len(layers) <= MAX_LAYERS:
        return layers
    hidden = layers[:-1]  # the first and last hidden layer (the diagnosis' pair) and the read-out
    picks = {hidden[round(i * (len(hidden) - 1) / (MAX_LAYERS - 2))] for i in range(MAX_LAYERS - 1)}
    return [layer for layer in layers if layer in picks or layer == layers[-1]]


def layer_table(state: RunState):
    """Per layer at the last logged step: delta_norm as a bar on a log scale, dead and saturated fractions."""
    from rich.table import Table

    table = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
    step = "" if state.last_step is None else f" at step {state.last_step}"
    for col, justify in (("layer", "right"), (f"delta_norm{step} (log)", "left"), ("", "right"),
                         (f"at step {state.first_step}" if state.first_step is not None else "first", "right"),
                         ("dead", "right"), ("saturated", "right")):
        table.add_column(col, justify=justify, no_wrap=True, header_style="bold")
    layers = sorted(state.last)
    logs = [math.log10(v) for v in (number(state.last[i].get("delta_norm")) for i in layers)
            if math.isfinite(v) and v > 0]
    hi = max(logs) if logs else 0.0
    lo = min(min(logs) if logs else hi, hi - 2.0) - 0.5  # at least two decades, the least still visible
    out_layer = layers[-1] if len(layers) > 1 else None
    for i in shown_layers(layers):
        row, first = state.last[i], state.first.get(i, {})
        delta = number(row.get("delta_norm"))
        table.add_row(f"{i}" + (" out" if i == out_layer else ""), bar(delta, lo, hi), fmt(delta, 3),
                      fmt(first.get("delta_norm"), 3), fraction(row.get("frac_dead")),
                      fraction(row.get("frac_saturated")))
    if len(layers) > MAX_LAYERS:
        table.caption = f"{MAX_LAYERS} of {len(layers)} layers shown"
    return table


def fraction(value) -> str:
    v = number(value)
    return "-" if math.isnan(v) else f"{v:.2f}"


def clip_line(state: RunState) -> str:
    n = len(state.gnorm)
    if state.threshold is None:
        return "clip       off (train.clip: null)"
    if state.clip_mode != "norm":
        return (f"clip       {state.clip_mode} at {fmt(state.threshold)}: {state.clipped} of {n} logged steps clipped"
                + (f" ({state.clipped / n:.0%})" if n else ""))
    rate = f"{state.over / n:.0%}" if n else "-"
    return f"clip       {rate} of {n} logged steps had a grad norm over the threshold {fmt(state.threshold)}"


def status_line(state: RunState) -> str:
    """``running, 120 of 300 steps, 5.2 s``: the steps logged so far (the last row's step + 1), and once the
    run ended, summary.json's steps (a diverged run's last row is its non-finite step, not counted)."""
    step, done = state.step, state.summary.get("steps")
    if state.ended and isinstance(done, int) and not isinstance(done, bool):
        step = done - 1
    where = ("no step logged yet" if step is None
             else f"{step + 1}" + (f" of {state.total}" if state.total else "") + " steps")
    metrics = state.rows["metrics.csv"]
    elapsed = number(metrics[-1].get("time")) if metrics else math.nan
    took = f", {elapsed:.1f} s" if math.isfinite(elapsed) else ""
    return f"{state.status}, {where}{took}"


def extra_lines(state: RunState) -> list[str]:
    lines = []
    if state.val is not None:
        acc = state.val.get("val_accuracy")
        lines.append(f"val        loss {fmt(state.val.get('val_loss'))}"
                     + (f", accuracy {fmt(acc, 3)}" if acc is not None else "") + f" at step {int(state.val['step'])}")
    metrics = state.rows["metrics.csv"]
    if metrics and metrics[-1].get("train_accuracy") is not None:
        lines.append(f"train acc  {fmt(metrics[-1]['train_accuracy'], 3)} (the last batch)")
    if metrics and metrics[-1].get("update_norm") is not None:
        lines.append(f"update     ||step|| {fmt(metrics[-1]['update_norm'], 3)}, lr {fmt(metrics[-1].get('lr'), 3)}")
    return lines


def diagnosis_text(state: RunState):
    from rich.markup import escape
    from rich.text import Text

    if state.diagnosis_note:
        return Text(state.diagnosis_note, style="dim")
    if state.findings is None:
        return Text("diagnosis  (after the first rows)", style="dim")
    if not state.findings:
        return Text("diagnosis  nothing to say yet", style="dim")
    top = state.findings[0]
    message = top.message
    if len(message) > LONG:  # up to the last clause that fits
        cut = max(message.rfind("; ", 0, LONG), message.rfind(". ", 0, LONG))
        message = message[:cut if cut > 0 else LONG] + " ..."
    kind = "" if message.startswith(top.kind.replace("_", " ")) else f"[bold magenta]{escape(top.kind)}[/] "
    text = Text.from_markup(f"[bold]diagnosis[/]  {kind}{escape(message)}")
    if top.remedies:
        text.append(f"\ntry {top.remedies[0]}", style="dim")
    return text


def view(state: RunState, width: int = 80):
    """The whole view of the state, for a terminal ``width`` columns wide."""
    from rich.console import Group
    from rich.panel import Panel
    from rich.text import Text

    spark = max(10, min(60, width - 52))  # the rest of the line: name, last value, range, "log"
    parts = [Text(status_line(state), style="bold"),
             series_line("loss", state.loss, spark), series_line("grad norm", state.gnorm, spark),
             Text(clip_line(state)), *(Text(line) for line in extra_lines(state))]
    if state.last:
        parts += [Text(""), layer_table(state)]
    parts += [Text(""), diagnosis_text(state)]
    if not state.ended and state.rows["metrics.csv"] and state.silence() > STALE:
        parts.append(Text(f"no new row for {state.silence():.0f} s: the run may have stopped without saying so "
                          "(killed); Ctrl-C ends the watch", style="yellow"))
    name = state.dir.name if state.dir is not None else (state.raw.get("name") or "run")
    return Panel(Group(*parts), title=Text(name, style="bold"), title_align="left", width=min(width, 110))


def final_line(state: RunState) -> str:
    """``completed: 200 steps, train loss 0.3012, val accuracy 0.891``, from summary.json."""
    s = state.summary
    parts = [f"{state.status}: {s.get('steps', state.step)} steps"]
    if s.get("final_train_loss") is not None:
        parts.append(f"train loss {fmt(s['final_train_loss'])}")
    if s.get("final_val_accuracy") is not None:
        parts.append(f"val accuracy {fmt(s['final_val_accuracy'], 3)}")
    elif s.get("final_val_loss") is not None:
        parts.append(f"val loss {fmt(s['final_val_loss'])}")
    if s.get("diverged_at") is not None:
        parts.append(f"non-finite at step {s['diverged_at']}")
    return ", ".join(parts) + (f" -> {state.dir}" if state.dir is not None else "")


# --------------------------------------------------------------------------- following a run folder

class Follower:
    """A run folder's tables read as they grow, into a RunState; config.yaml once, summary.json each time."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.start()

    def start(self) -> None:
        from .report.load import TableTail

        self.tails = {name: TableTail(self.dir / name) for name in TABLES}
        self.state = RunState(self.dir, self._config())

    def _config(self) -> dict:
        from .config import ConfigError
        from .report.load import _mapping, _yaml

        path = self.dir / "config.yaml"
        try:
            return _mapping(path, _yaml(path)) if path.exists() else {}
        except (ConfigError, OSError):
            return {}

    def poll(self) -> RunState:
        """summary.json first, then the new rows: once it says the run ended, every row is in the tables.
        The tables in the reverse of the order a step's rows are written, so metrics.csv (the status line) is
        never behind the layer table while the run goes on. The run's silence: its files' last write."""
        from .runs import last_write

        summary = self._summary()
        if not self.state.raw and (self.dir / "config.yaml").exists():
            self.start()
        for name, tail in reversed(self.tails.items()):
            rows = tail.read()
            if rows is None:  # a table was rewritten (the run folder reused): read it all again
                self.start()
                return self.poll()
            self.state.add(name, rows)
        if summary is not None:
            self.state.summary = summary
        self.state.follows = True
        self.state.grew = last_write(self.dir) or self.state.grew
        return self.state

    def _summary(self) -> dict | None:
        import json

        from .report.load import read_file

        try:
            summary = json.loads(read_file(self.dir / "summary.json"))
        except Exception:  # noqa: BLE001 - not there yet, or being replaced: the last one read stands
            return None
        return summary if isinstance(summary, dict) else None


def check_run(path: Path | None) -> Path:
    """The run folder to watch: ``path``, or the newest run under runs/; a ConfigError otherwise."""
    from .config import ConfigError
    from .runs import DEFAULT_ROOT, newest_run

    if path is None:
        path = newest_run(DEFAULT_ROOT)
        if path is None:
            raise ConfigError(f"no run folder under {DEFAULT_ROOT}/ here; give one (gradlab watch runs/NAME) or "
                              "start one with gradlab train CONFIG.")
        return path
    if not path.is_dir():
        raise ConfigError(f"{path}: no such folder; allowed: a run folder written by gradlab train "
                          f"(gradlab watch runs/NAME), or nothing for the newest under {DEFAULT_ROOT}/.")
    if (path / "sweep.yaml").exists():
        raise ConfigError(f"{path}: a sweep folder; watch one of its runs (gradlab watch {path}/RUN), one run "
                          "folder at a time.")
    if not any((path / name).is_file() for name in ("config.yaml", "metrics.csv", "summary.json")):
        raise ConfigError(f"{path}: not a run folder (it has no config.yaml, metrics.csv or summary.json); "
                          "allowed: a folder written by gradlab train, e.g. runs/NAME-YYYYmmdd-HHMMSS.")
    return path


def follow(folder: Path, console, interval: float = 0.5, once: bool = False) -> RunState:
    """Draw the run until summary.json says it ended (or once); the final state."""
    from rich.live import Live

    follower = Follower(folder)
    state = follower.poll()
    state.diagnose(force=True)
    if once:
        console.print(view(state, console.width))
        return state
    with Live(view(state, console.width), console=console, refresh_per_second=4, auto_refresh=False) as live:
        while not state.ended:
            time.sleep(interval)
            state = follower.poll()
            state.diagnose(force=state.ended)
            live.update(view(state, console.width), refresh=True)
    if not console.is_terminal:  # the last view was printed without its line's end
        console.line()
    return state


def watch_command(
    run: Optional[Path] = typer.Argument(None, metavar="RUN", help="A run folder (default: the newest under runs/)."),
    once: bool = typer.Option(False, "--once", help="Draw the view once and exit (scripts, tests)."),
    interval: float = typer.Option(0.5, "--interval", min=0.05, max=60.0, metavar="SECONDS",
                                   help="Seconds between two reads of the run's files (0.05 to 60)."),
) -> None:
    """Watch a run while it trains: loss and gradient norm sparklines, delta_norm per layer, the clip rate,
    dead and saturated units, the current diagnosis. Ends when the run ends (Ctrl-C ends the watch only)."""
    from .console import bad_input, out

    with bad_input(run or Path("runs")):
        folder = check_run(run)
        state = follow(folder, out, interval, once)
    if state.ended:
        out.print(final_line(state), highlight=False, markup=False, soft_wrap=True)


# --------------------------------------------------------------------------- gradlab train --watch

class WatchView:
    """Observer: the watch view in place of the progress bar (``gradlab train --watch``), drawn from the
    training loop's records, at most every ``interval`` seconds."""

    def __init__(self, console=None, interval: float = 0.25) -> None:
        self.console, self.interval = console, interval
        self.live = None
        self.state = RunState()
        self.drawn = -math.inf
        self.gap = interval

    def on_start(self, info: dict) -> None:
        from rich.live import Live

        from .console import out

        setup = info.get("setup")
        raw = setup.config.resolved() if setup is not None else {}
        folder = Path(info["run_dir"]) if info.get("run_dir") else None
        self.state = RunState(folder, raw, info.get("steps"))
        self.console = self.console or out
        self.live = Live(view(self.state, self.console.width), console=self.console, auto_refresh=False)
        self.live.start()

    def on_step(self, rec) -> None:
        self.state.add_record(rec)
        now = time.monotonic()
        if now - self.drawn >= self.gap:
            self.state.diagnose(now)
            self.draw()
            self.drawn = now
            self.gap = max(self.interval, (time.monotonic() - now) / SHARE)  # drawing: at most SHARE of the time

    def on_end(self, result) -> None:
        self.state.summary = {"status": result.status, "steps": result.steps, **(result.final or {}),
                              "diverged_at": result.diverged_at}
        self.state.diagnose(force=True)
        self.draw()
        self.stop()

    def draw(self) -> None:
        if self.live is not None:
            self.live.update(view(self.state, self.console.width), refresh=True)

    def stop(self) -> None:
        """Once, and only if it started; the last view stays on the screen."""
        if self.live is not None:
            self.live.stop()
            self.live = None
            if not self.console.is_terminal:  # rich leaves the last view's line open when it is not drawn live
                self.console.line()
