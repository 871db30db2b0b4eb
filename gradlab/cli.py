"""The ``gradlab`` command: parse arguments, call the Python API, render with rich."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import json
import math

import typer
from rich.markup import escape
from rich.table import Table

# only what defining the commands needs: each command imports the rest (numpy, pydantic, pandas) when it
# runs, through the lazy ``gradlab`` names, so --help starts in a fraction of a second
import gradlab as api
from .check.command import check_command
from .compare_cli import compare_command
from .console import (SET_HELP, SET_METAVAR, THREADS_HELP, TRAIN_EXITS, Command, bad_input, err, fail, interrupted_code, out,
                      user_code)
from .errors import ALLOW_FLAG, ALLOW_HELP, ConfigError
from .records import RunResult, StepRecord
from .runs import DEFAULT_ROOT, list_runs, newest_run
from .threads import MAX as MAX_THREADS
from .watch import watch_command

# rich_markup_mode=None: click's plain help text; typer's rich panels import rich.markdown and markdown_it,
# half of a 0.4 s --help
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Experiments on vanishing and exploding gradients, in NumPy.",
                  context_settings={"help_option_names": ["-h", "--help"]})  # every command's -h too



class ProgressView:
    """Observer: a progress bar with step, loss and global grad norm."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  |g| {task.fields[gnorm]}"), TimeRemainingColumn(),
            console=out, transient=False,
        )
        self.task = None

    def on_start(self, info: dict) -> None:
        self.progress.start()
        self.task = self.progress.add_task("train", total=info["steps"], loss="-", gnorm="-")

    def on_step(self, rec: StepRecord) -> None:
        self.progress.update(self.task, completed=rec.step + 1, loss=f"{rec.loss:.4g}", gnorm=f"{rec.grad_norm:.3g}")

    def on_end(self, result: RunResult) -> None:
        early = {"description": "train (stopped early)"} if result.stopped_early_at is not None else {}
        self.progress.update(self.task, completed=result.steps, **early)
        self.stop()

    def stop(self) -> None:
        """Once, and only if it started (a stopped bar still ends its line)."""
        if self.task is not None:
            self.progress.stop()
            self.task = None


def layer_table(result: RunResult) -> Table:
    """Per layer: grad norm and delta_norm at the first and last logged step."""
    first, last = result.first, result.last
    table = Table(title=f"Gradients by layer (steps {first.step} and {last.step})")
    for col in ("layer", "grad first", "grad last", "delta first", "delta last"):
        table.add_column(col, justify="right")
    g0, g1 = first.layer_grad_norms(), last.layer_grad_norms()
    n_layers = len(first.layers)
    for a, b in zip(first.layers, last.layers):
        label = f"{a.layer}" + (" (out)" if a.layer == n_layers else "")
        table.add_row(label, f"{g0.get(a.layer, 0):.3e}", f"{g1.get(b.layer, 0):.3e}",
                      f"{a.delta_norm:.3e}", f"{b.delta_norm:.3e}")
    return table


def closing_line(result: RunResult) -> str:
    """'completed: 300 steps, train loss 0.14, val accuracy 0.961 -> RUN'; no val figure without a validation
    set (its loss is NaN and its accuracy None: data.val_fraction 0, or too few samples to spare one)."""
    f = result.final
    parts = [f"{result.status}: {result.steps} steps"]
    if f.get("final_train_loss") is not None:
        parts.append(f"train loss {f['final_train_loss']:.4g}")
    val_loss = f.get("final_val_loss")
    if f.get("final_val_accuracy") is not None:
        parts.append(f"val accuracy {f['final_val_accuracy']:.3f}")
    elif val_loss is not None and not math.isnan(val_loss):
        parts.append(f"val loss {val_loss:.4g}")
    if result.status == "diverged":
        parts.append(f"non-finite at step {result.diverged_at}, first in layer {result.diverged_layer} "
                     f"({result.diverged_where})")
    if result.early_stop_note():
        parts.append(result.early_stop_note())
    return ", ".join(parts) + (f" -> {result.run_dir}" if result.run_dir else "")


def print_version(value: bool) -> None:
    if value:
        out.print(f"gradlab {api.__version__}", highlight=False)
        raise typer.Exit(0)


@app.callback()
def main_callback(
    version: bool = typer.Option(False, "--version", callback=print_version, is_eager=True,
                                 help="Print gradlab's version and exit."),
) -> None:
    """gradlab: train, check, sweep and report on gradients, layer by layer."""
    # each command sets up its own Ctrl-C, SIGTERM and warnings when it runs (console.Command)


class StartView:
    """Observer: before the first step, the model in one line (as Keras' model.summary(), shortened) and the
    config lint (known mismatches; advice, not an error)."""

    def on_start(self, info: dict) -> None:
        from .describe import model_line

        s = info["setup"]
        out.print(f"model: {escape(model_line(s.model, s.config))}", highlight=False, soft_wrap=True)
        for item in api.reports.lint(s.config, s.data.n_features):
            err.print(f"[yellow]lint:[/] {escape(str(item))}", highlight=False, soft_wrap=True)

    def on_step(self, rec: StepRecord) -> None:
        pass


@app.command(epilog=TRAIN_EXITS, cls=Command)
def train(
    config: Path = typer.Argument(..., metavar="CONFIG", help="YAML config file."),
    set_: Optional[List[str]] = typer.Option(None, "--set", metavar=SET_METAVAR, help=SET_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final line."),
    report: bool = typer.Option(False, "--report", help="Write the plots and report.html into the run folder."),
    allow_imports: Optional[List[Path]] = typer.Option(None, ALLOW_FLAG, metavar="DIR", help=ALLOW_HELP),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, max=MAX_THREADS, help=THREADS_HELP),
    watch: bool = typer.Option(False, "--watch", help="Draw the live view of gradlab watch (loss, gradient norms, "
                                                     "delta_norm per layer, diagnosis) in place of the progress bar."),
) -> None:
    """Train a network from a YAML config and log per-layer gradients to CSV.

    Run folders go under log.out (default runs), relative to the current folder; data.path and module:Class \
modules are found relative to the config file's folder.

    A config naming module:Class (a layer or cell of your own) runs that module's code: only modules in the \
config's folder are imported, unless --allow-imports names another folder."""
    if watch and quiet:
        fail(ConfigError("--watch draws the live view and --quiet prints only the final line: give one of them."))
    with bad_input(config), user_code("gradlab train"):
        cfg = api.load_config(config, [*(set_ or []), *threads_set(threads)], allow_imports or [])
        if watch:
            from .watch import WatchView
        observers = [] if quiet else [StartView(), WatchView() if watch else ProgressView()]
        try:
            result = api.train(cfg, observers, source=str(config))
        finally:  # a run that raised never calls on_end
            for view in observers:
                getattr(view, "stop", lambda: None)()
    if not quiet and result.first is not None:
        out.print(layer_table(result))
        out.print(ratio_line(result), soft_wrap=True)
        if result.last.times:
            out.print(time_line(result), soft_wrap=True)
    if result.run_dir and result.first is not None and (report or not quiet):
        with bad_input(config):
            rep = api.report(result.run_dir, write=report)
        if not quiet:
            render_findings(rep.findings, rep.notes)
        if rep.html:
            out.print(f"report: {escape(str(rep.html))}", highlight=False, soft_wrap=True)
    style = {"completed": "green", "diverged": "bold red", "interrupted": "yellow"}[result.status]
    out.print(f"[{style}]{escape(closing_line(result))}[/]", highlight=False, soft_wrap=True)
    raise typer.Exit(interrupted_code() if result.status == "interrupted" else result.exit_code)


KIND_STYLE = {"healthy": "green", "vanishing": "bold red", "exploding": "bold red", "dead_units": "bold yellow",
              "saturation": "bold yellow", "not_learning": "bold red", "spike": "yellow"}


def render_findings(findings: list[dict], notes: list[str] = ()) -> None:
    """Each finding: its kind, what was measured, and the remedies to try."""
    out.print("[bold]Diagnosis[/]")
    for note in notes:
        out.print(escape(note), highlight=False, soft_wrap=True)
    for f in findings:
        run = f"{f['run']}: " if f.get("run") else ""
        out.print(f"[{KIND_STYLE[f['kind']]}]{f['kind']}[/] {escape(run + f['message'])}", highlight=False, soft_wrap=True)
        for remedy in f["remedies"]:
            out.print(f"  - try {escape(remedy)}", highlight=False, soft_wrap=True)


@app.command(cls=Command)
def report(
    path: Optional[Path] = typer.Argument(None, metavar="RUN", show_default=False,
                                          help="A run folder or a sweep folder (default: the newest run under runs)."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON (kind, layer, evidence, remedies)."),
    try_: bool = typer.Option(False, "--try", help="Run each remedy of the diagnosis as a short run of the same "
                              "config (in parallel, resumable) and tabulate what each does: RUN/remedies.csv."),
    steps: Optional[int] = typer.Option(None, "--steps", min=1, help="With --try: steps of each trial run "
                                        "(default: the run's own)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="With --try: worker processes "
                                          "(default: all cores)."),
    allow_imports: Optional[List[Path]] = typer.Option(None, ALLOW_FLAG, metavar="DIR",
                                                       help="With --try: " + ALLOW_HELP),
) -> None:
    """Write plots and a self-contained report.html into a run or sweep folder; print the diagnosis.

    The report reads the folder's tables and never imports the modules its config names (module:Class is \
shown as text). --try trains: the run's config, naming module:Class, runs that module's code, so only \
modules in the run folder are imported unless --allow-imports names another folder (a run's config.yaml \
holds its model.import_dir, the folder of the config it was trained from)."""
    path = path if path is not None else newest(DEFAULT_ROOT)
    trials = None
    if try_:
        trials = try_command(path, steps, workers, quiet=as_json, allow_imports=allow_imports or [])
    elif steps is not None or workers is not None or allow_imports:
        fail(ConfigError(f"--steps, --workers and {ALLOW_FLAG} go with --try (gradlab report RUN --try --steps "
                         "200): without it the report imports nothing."))
    with bad_input(path):
        rep = api.report(path)
        from .logging import jsonable
    if as_json:
        data = rep.as_dict()
        if trials is not None:
            data["trials"] = trials.rows
        print(json.dumps(jsonable(data), indent=2))
    else:
        render_findings(rep.findings, rep.notes)
        for item in rep.lints:
            out.print(f"[yellow]lint:[/] {escape(item)}", highlight=False, soft_wrap=True)
        out.print(f"{len(rep.images)} plots and {escape(str(rep.html))}", highlight=False, soft_wrap=True)
        if trials is not None:
            render_trials(trials)
    if trials is not None and trials.status == "interrupted":
        raise typer.Exit(130)


def newest(root: Path) -> Path:
    """The newest run under ``root``, said on stderr (stdout may be --json); none: bad input, exit 2."""
    path = newest_run(root)
    if path is None:
        fail(ConfigError(f"{root}: no run folder here (runs go under log.out, default runs, relative to the "
                         "current folder); give one: gradlab report RUN."))
    err.print(f"newest run: {escape(str(path))}", highlight=False, soft_wrap=True)
    return path


def try_command(path: Path, steps: int | None, workers: int | None, quiet: bool, allow_imports=()):
    """Run the remedies of a run's diagnosis (bad input: exit 2; no remedy: say so, exit 0)."""
    with bad_input(path):
        from .report import trial  # inside: a Ctrl-C while it loads (pandas) is exit 130 like any other

        view = [] if quiet else [SweepView()]
        result = trial.try_remedies(path, steps, workers, view, allow_imports=allow_imports)
    if not result.rows:
        out.print(f"{escape(str(path))}: the diagnosis offers no remedy with a --set option to try; nothing was run.",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(0)
    return result


def render_trials(result) -> None:
    """The table, best first, the original first of all, and what was run."""
    table = Table(title="Remedies tried (best first; the original run first)")
    for col in ("remedy", "status", "final loss", "delta ratio", "verdict"):
        table.add_column(col, justify="right" if col in ("final loss", "delta ratio") else "left",
                         overflow="fold")
    fmt = lambda v, f: "" if v is None or v != v else format(v, f)  # noqa: E731
    for row in result.rows:
        status = row["status"]
        if status == "diverged" and row["diverged_at"] is not None:
            status += f" at step {row['diverged_at']:g}"
        table.add_row(escape(row["remedy"].replace("--set ", "")), status, fmt(row["final_loss"], ".4g"),
                      fmt(row["delta_ratio"], ".3g"), row["verdict"])
    out.print(table)
    steps = result.steps or result.own_steps
    steps = f"{steps} steps each" if steps else "the run's own epochs"
    out.print(f"{len(result.rows) - 1} remedies, each the run's config with its --set options ({steps}, same seed); "
              f"{result.ran} run now, {result.reused} reused -> {escape(str(result.dir))}; table: "
              f"{escape(str(result.table))}. final loss: "
              "over the training set at the end (blank if not completed); delta ratio: first/last hidden layer "
              "delta_norm, or ||dL/dh_1||/||dL/dh_T|| for recurrent nets, at the last finite logged step; "
              "verdict: the diagnosis of the trial run.", highlight=False, soft_wrap=True)


def ratio_line(result: RunResult) -> str:
    """delta_norm of the first hidden layer over the last hidden layer, first and last step."""
    def ratio(rec: StepRecord) -> float:
        hidden = rec.layers[:-1]
        return hidden[0].delta_norm / hidden[-1].delta_norm if hidden and hidden[-1].delta_norm else float("nan")
    return (f"delta_norm ratio first/last hidden layer: {ratio(result.first):.3e} at step {result.first.step}, "
            f"{ratio(result.last):.3e} at step {result.last.step}")


@app.command("runs", cls=Command)
def runs_command(
    root: Path = typer.Option(DEFAULT_ROOT, "--root", metavar="DIR", help="The folder the runs are in (a config's "
                              "log.out; default runs, relative to the current folder)."),
    as_json: bool = typer.Option(False, "--json", help="Print the rows as JSON."),
) -> None:
    """List the runs under runs/, newest first: status, steps, final train loss and verdict (the diagnosis'
    first finding; the status where the run cannot be diagnosed quickly: running, unfinished, large)."""
    if root.exists() and not root.is_dir():
        fail(ConfigError(f"--root {root}: not a folder; allowed: a folder of run folders (a config's log.out)."))
    with bad_input(root):
        rows = list_runs(root)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        out.print(escape(f"no runs under {root}/ (gradlab train CONFIG writes one there; --root DIR looks "
                         "elsewhere)."), highlight=False, soft_wrap=True)
        return
    out.print(runs_table(rows, root))


VERDICT_STYLE = {**KIND_STYLE, "completed": "green", "diverged": "bold red", "failed": "bold red",
                 "interrupted": "yellow", "running": "cyan", "unfinished": "yellow"}


def runs_table(rows: list[dict], root: Path) -> Table:
    """One row per run, newest first."""
    table = Table(title=escape(f"{len(rows)} {'run' if len(rows) == 1 else 'runs'} under {root}/, newest first"))
    for col in ("run", "status", "steps", "final loss", "verdict"):
        table.add_column(col, justify="right" if col in ("steps", "final loss") else "left",
                         overflow="fold" if col == "run" else "ellipsis")
    for row in rows:
        loss = "" if row["final_train_loss"] is None else f"{row['final_train_loss']:.4g}"
        steps = "" if row["steps"] is None else str(row["steps"])
        style = VERDICT_STYLE.get(row["verdict"], "")
        verdict = f"[{style}]{escape(row['verdict'])}[/]" if style else escape(row["verdict"])
        table.add_row(escape(row["run"]), escape(row["status"]), steps, loss, verdict)
    return table


# --------------------------------------------------------------------------- sweep

class SweepView:
    """Observer: a progress bar over runs (done, not completed: diverged, failed or crashed, running, ETA)."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[state]}"), TimeRemainingColumn(), console=out)
        self.done = self.failed = 0

    def on_start(self, info: dict) -> None:
        self.workers, self.total = info.get("workers", 1), info["total"]
        self.done = info["skipped"]
        self.progress.start()
        self.task = self.progress.add_task("sweep", total=self.total, completed=self.done, state=self.state())

    def state(self) -> str:
        running = min(self.workers, self.total - self.done)
        return f"done {self.done}, not completed {self.failed}, running {running}"

    def on_run(self, res: dict) -> None:
        self.done += 1
        self.failed += res["status"] != "completed"  # diverged, failed, crashed or interrupted
        self.progress.update(self.task, completed=self.done, state=self.state())

    def on_end(self, result) -> None:
        self.progress.stop()


def sweep_table(result) -> Table:
    """The closing table: one row per run, with its status, loss and first/last-layer delta_norm ratio at the
    first and the last logged step (at step 0 alone, the runs of a clip or lr sweep look the same)."""
    fmt = lambda v, f: "" if v is None or v != v else format(v, f)  # noqa: E731
    accuracy = any(fmt(row.get("final_val_accuracy"), "g") for row in result.rows)  # classification only
    table = Table(title=escape(f"{len(result.rows)} runs in {result.dir}"),
                  caption="ratio: delta_norm of hidden layer 1 / the last one, at step 0 and at the end")
    columns = ("run", "status", "steps", "final loss", *(["val acc"] if accuracy else []), "ratio@0", "ratio@end")
    for col in columns:
        table.add_column(col, justify="left" if col in ("run", "status") else "right", no_wrap=True)
    for row in result.rows:
        loss = row.get("final_train_loss", row.get("final_loss"))  # summary.csv's name, then the one before it
        first = row.get("delta_ratio_at_first_step", row.get("delta_ratio_first"))
        last = row.get("delta_ratio_at_last_step", row.get("delta_ratio_last"))
        acc = [fmt(row.get("final_val_accuracy"), ".3f")] if accuracy else []
        table.add_row(escape(row["run"]), row["status"], fmt(row["steps"], "g"), fmt(loss, ".4g"), *acc,
                      fmt(first, ".2g"), fmt(last, ".2g"))
    return table


@app.command(cls=Command)
def sweep(
    sweep_file: Optional[Path] = typer.Argument(None, metavar="SWEEP", help="Sweep YAML (base, grid, zip, seeds)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", metavar=SET_METAVAR,
                                             help="Override a key of the base config."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Worker processes (default: all cores)."),
    resume: Optional[Path] = typer.Option(None, "--resume", metavar="DIR", help="Finish a sweep folder with its own sweep.yaml: "
                                          "rerun what did not complete (a crashed run once); no --set."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler, tcp://HOST:PORT."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final line."),
    report: bool = typer.Option(False, "--report", help="Write the sweep's plots and report.html at the end."),
    allow_imports: Optional[List[Path]] = typer.Option(None, ALLOW_FLAG, metavar="DIR", help=ALLOW_HELP),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, max=MAX_THREADS,
                                           help=THREADS_HELP + " Per worker."),
) -> None:
    """Run a grid of configs in parallel; write one run folder each, summary.csv and profile.csv.

    Run folders go under log.out (default runs), relative to the current folder; data.path and module:Class \
modules are found relative to the base config file's folder.

    A base config naming module:Class runs that module's code (see --allow-imports).
    Ctrl-C (exit 130) or SIGTERM (143) stops the workers at once and keeps every run that finished."""
    where = resume or sweep_file
    if where is None:
        fail(ConfigError("gradlab sweep: give a sweep file, or --resume DIR."))
    with bad_input(where):
        allowed = allow_imports or []
        if resume and threads is not None:
            raise ConfigError(f"--resume {resume}: --threads cannot change a sweep being resumed: train.threads is "
                              "part of the base in its sweep.yaml, which its runs so far were made from.")
        spec = (api.sweeps.load_resume(resume, set_ or [], allowed) if resume
                else api.sweeps.load_sweep(sweep_file, [*(set_ or []), *threads_set(threads)], allowed))
        view = [] if quiet else [SweepView()]
        result = api.sweeps.run_sweep(spec, workers, resume, scheduler, view)
    if not quiet:
        out.print(sweep_table(result))
    bad = len(result.failed)
    if report and result.rows:
        with bad_input(where):
            rep = api.report(result.dir)
        out.print(f"report: {escape(str(rep.html))}", highlight=False, soft_wrap=True)
    out.print(escape(f"{result.status}: {result.ran} runs now, {len(result.rows)} in summary.csv, {bad} not "
                     f"completed -> {result.dir}"), highlight=False, soft_wrap=True)
    raise typer.Exit(result.exit_code)


# --------------------------------------------------------------------------- check

app.command("check", cls=Command)(check_command)
app.command("gradcheck", help="Same as check.", cls=Command)(check_command)
app.command("compare", cls=Command)(compare_command)
app.command("watch", cls=Command)(watch_command)


def time_line(result: RunResult) -> str:
    """||dL/dh_1|| / ||dL/dh_T|| of the last recurrent layer, first and last logged step, through the whole
    sequence (with truncated BPTT the trained gradient never reaches h_1: the full-sequence one is logged too)."""
    def ratio(rec: StepRecord) -> str:
        top = max(t.layer for t in rec.times)
        norms = [getattr(t, "full_grad_norm", t.grad_norm) for t in rec.times if t.layer == top]
        return f"{norms[0] / norms[-1]:.3e}" if norms[-1] else "n/a"
    T = sum(1 for t in result.first.times if t.layer == result.first.times[0].layer)
    return (f"||dL/dh_1|| / ||dL/dh_T|| over T = {T} steps: {ratio(result.first)} at step {result.first.step}, "
            f"{ratio(result.last)} at step {result.last.step} (time_grad_norms.csv has every step)")


def threads_set(threads: int | None) -> list[str]:
    """``--threads N`` as the override it is: the run's config.yaml records the count (train.threads)."""
    return [] if threads is None else [f"train.threads={threads}"]


def main() -> None:
    app()
