"""The ``gradlab`` command: parse arguments, call the Python API, render with rich."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import json

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import gradlab as api
from .config import ConfigError
from .logging import jsonable
from .records import RunResult, StepRecord

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Experiments on vanishing and exploding gradients, in NumPy.")
out = Console()
err = Console(stderr=True)

SET_HELP = "Override a config key, e.g. --set model.depth=50 (repeatable)."


class ProgressView:
    """Observer: a progress bar with step, loss and global grad norm."""

    def __init__(self) -> None:
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
        self.progress.update(self.task, completed=result.steps)
        self.progress.stop()


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
    f = result.final
    parts = [f"{result.status}: {result.steps} steps"]
    if f.get("final_train_loss") is not None:
        parts.append(f"train loss {f['final_train_loss']:.4g}")
    if f.get("final_val_accuracy") is not None:
        parts.append(f"val accuracy {f['final_val_accuracy']:.3f}")
    elif f.get("final_val_loss") is not None:
        parts.append(f"val loss {f['final_val_loss']:.4g}")
    if result.status == "diverged":
        parts.append(f"non-finite at step {result.diverged_at}, first in layer {result.diverged_layer} "
                     f"({result.diverged_where})")
    return ", ".join(parts) + (f" -> {result.run_dir}" if result.run_dir else "")


def fail(exc: ConfigError) -> None:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.callback()
def main_callback() -> None:
    """gradlab: train, check, sweep and report on gradients, layer by layer."""


@contextmanager
def bad_input(config: Path):
    """Bad input -> one paragraph on stderr and exit 2; Ctrl-C -> exit 130; never a traceback."""
    try:
        yield
    except ConfigError as exc:
        fail(exc)
    except MemoryError:
        fail(ConfigError(f"{config}: the model or data set is larger than this machine's memory; "
                         "lower model.width, model.depth, data.n_samples or train.batch_size."))
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130)


class LintView:
    """Observer: print the config lint (known mismatches) before the first step; advice, not an error."""

    def on_start(self, info: dict) -> None:
        s = info["setup"]
        for item in api.reports.lint(s.config, s.data.n_features):
            err.print(f"[yellow]lint:[/] {escape(str(item))}", highlight=False, soft_wrap=True)

    def on_step(self, rec: StepRecord) -> None:
        pass


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML config file."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help=SET_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final line."),
    report: bool = typer.Option(False, "--report", help="Write the plots and report.html into the run folder."),
) -> None:
    """Train a network from a YAML config and log per-layer gradients to CSV."""
    with bad_input(config):
        cfg = api.load_config(config, set_ or [])
        observers = [] if quiet else [LintView(), ProgressView()]
        result = api.train(cfg, observers, source=str(config))
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
            out.print(f"report: {rep.html}", highlight=False, soft_wrap=True)
    style = {"completed": "green", "diverged": "bold red", "interrupted": "yellow"}[result.status]
    out.print(f"[{style}]{closing_line(result)}[/]", highlight=False, soft_wrap=True)
    raise typer.Exit(result.exit_code)


KIND_STYLE = {"healthy": "green", "vanishing": "bold red", "exploding": "bold red", "dead_units": "bold yellow",
              "saturation": "bold yellow"}


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


@app.command()
def report(
    path: Path = typer.Argument(..., help="A run folder or a sweep folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the findings as JSON (kind, layer, evidence, remedies)."),
) -> None:
    """Write plots and a self-contained report.html into a run or sweep folder; print the diagnosis."""
    with bad_input(path):
        rep = api.report(path)
    if as_json:
        print(json.dumps(jsonable(rep.as_dict()), indent=2))
        return
    render_findings(rep.findings, rep.notes)
    for item in rep.lints:
        out.print(f"[yellow]lint:[/] {escape(item)}", highlight=False, soft_wrap=True)
    out.print(f"{len(rep.images)} plots and {rep.html}", highlight=False, soft_wrap=True)


def ratio_line(result: RunResult) -> str:
    """delta_norm of the first hidden layer over the last hidden layer, first and last step."""
    def ratio(rec: StepRecord) -> float:
        hidden = rec.layers[:-1]
        return hidden[0].delta_norm / hidden[-1].delta_norm if hidden and hidden[-1].delta_norm else float("nan")
    return (f"delta_norm ratio first/last hidden layer: {ratio(result.first):.3e} at step {result.first.step}, "
            f"{ratio(result.last):.3e} at step {result.last.step}")


# --------------------------------------------------------------------------- sweep

class SweepView:
    """Observer: a progress bar over runs (done, failed, running, ETA)."""

    def __init__(self) -> None:
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
        self.failed += res["status"] != "completed"  # diverged, failed or interrupted
        self.progress.update(self.task, completed=self.done, state=self.state())

    def on_end(self, result) -> None:
        self.progress.stop()


def sweep_table(result) -> Table:
    """The closing table: one row per run, with its status, loss and first/last-layer ratio."""
    table = Table(title=f"{len(result.rows)} runs in {result.dir}")
    for col in ("run", "status", "steps", "final loss", "val acc", "delta 1st/last"):
        table.add_column(col, justify="left" if col in ("run", "status") else "right", no_wrap=col == "run")
    for row in result.rows:
        label = row["run"]
        fmt = lambda v, f: "" if v is None or v != v else format(v, f)  # noqa: E731
        table.add_row(label, row["status"], fmt(row["steps"], "g"), fmt(row["final_loss"], ".4g"),
                      fmt(row["final_val_accuracy"], ".3f"), fmt(row.get("delta_ratio_first"), ".2e"))
    return table


@app.command()
def sweep(
    sweep_file: Optional[Path] = typer.Argument(None, help="Sweep YAML (base, grid, zip, seeds)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Override a key of the base config."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Worker processes (default: all cores)."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Finish a sweep folder: rerun what did not complete."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler, tcp://HOST:PORT."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final line."),
    report: bool = typer.Option(False, "--report", help="Write the sweep's plots and report.html at the end."),
) -> None:
    """Run a grid of configs in parallel; write one run folder each, summary.csv and profile.csv."""
    where = resume or sweep_file
    if where is None:
        fail(ConfigError("gradlab sweep: give a sweep file, or --resume DIR."))
    with bad_input(where):
        spec = (api.sweeps.load_resume(resume, set_ or []) if resume
                else api.sweeps.load_sweep(sweep_file, set_ or []))
        view = [] if quiet else [SweepView()]
        result = api.sweeps.run_sweep(spec, workers, resume, scheduler, view)
    if not quiet:
        out.print(sweep_table(result))
    bad = len(result.failed)
    if report and result.rows:
        with bad_input(where):
            rep = api.report(result.dir)
        out.print(f"report: {rep.html}", highlight=False, soft_wrap=True)
    out.print(f"{result.status}: {result.ran} runs now, {len(result.rows)} in summary.csv, {bad} not completed "
              f"-> {result.dir}", highlight=False, soft_wrap=True)
    raise typer.Exit(130 if result.status == "interrupted" else 0)


# --------------------------------------------------------------------------- check

TIER_STYLE = {"good": "green", "acceptable": "yellow", "uncomfortable": "bold yellow", "wrong": "bold red"}


def check_command(
    config: Path = typer.Argument(..., help="YAML config file."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help=SET_HELP),
    mode: Optional[str] = typer.Option(None, help="full | sample | directional (default: full up to 100k parameters)."),
    eps: Optional[float] = typer.Option(None, help="Centred-difference step (default 1e-7)."),
    strict: bool = typer.Option(False, "--strict", help="Fail 'acceptable' too when the net has no kinks."),
    dtype: Optional[str] = typer.Option(None, help="float64 (default) or float32 (warned)."),
    loss_scale: Optional[float] = typer.Option(None, "--loss-scale", help="Multiply the loss (tiny gradients)."),
    after_steps: int = typer.Option(0, "--after-steps", min=0, help="Train N steps first, then check."),
    one_sided: bool = typer.Option(False, "--one-sided", help="(J(theta+eps) - J(theta)) / eps instead of centred."),
    taylor: bool = typer.Option(False, "--taylor", help="Also run the step-size-free Taylor test."),
    eps_sweep: bool = typer.Option(False, "--eps-sweep", help="Also show the error for eps = 1e-1 ... 1e-10."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write one row per checked entry to FILE."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Check backprop against centred differences; exit 0 when every tensor passes, 1 when any fails."""
    flags = {"check.mode": mode, "check.eps": eps, "check.dtype": dtype, "check.loss_scale": loss_scale,
             "check.strict": "true" if strict else None}
    overrides = [*(set_ or []), *(f"{k}={v}" for k, v in flags.items() if v is not None)]
    with bad_input(config):
        cfg = api.load_config(config, overrides)
        report = api.check(cfg, str(config), after_steps, one_sided)
        studies = {"taylor": api.gradcheck.taylor(cfg, str(config), after_steps) if taylor else None,
                   "eps_sweep": api.gradcheck.sweep_eps(cfg, str(config), after_steps) if eps_sweep else None}
    if csv_path:
        api.gradcheck.write_entries(report, csv_path)
    if as_json:
        data = {**api.gradcheck.report_dict(report), **{k: v for k, v in studies.items() if v is not None}}
        print(json.dumps(jsonable(data), indent=2))
    else:
        render_check(report, studies)
    raise typer.Exit(0 if report.passed else 1)


app.command("check")(check_command)
app.command("gradcheck", help="Same as check.")(check_command)


WIDE = 130  # narrower terminals get the essential columns; --json and --csv have everything


def tensor_table(title: str, results) -> Table:
    """Per tensor: shape, entries checked, largest values, relative error, tier, kinks, worst entry."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    wide = out.width >= WIDE
    cols = ["tensor", "layer", "shape", "checked", "max|analytic|", "max|numeric|", "rel error", "tier", "kinks",
            "worst entry: analytic, numeric"]
    if not wide:
        cols = ["tensor", "layer", "checked", "rel error", "tier", "kinks"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("tensor", "tier", cols[-1]) else "right", no_wrap=True)
    for t in results:
        mark = " (unresolved)" if t.unresolved else ("" if t.passed else " FAIL")
        cells = {
            "tensor": t.name, "layer": str(t.layer or ""), "shape": "x".join(map(str, t.shape)),
            "checked": str(t.checked), "max|analytic|": f"{t.max_analytic:.2e}", "max|numeric|": f"{t.max_numeric:.2e}",
            "rel error": f"{t.rel_error:.1e}", "tier": f"[{TIER_STYLE[t.tier]}]{t.tier}{mark}[/]",
            "kinks": f"{t.kinks}" + (f" ({t.kink_failures} bad)" if t.kink_failures else ""),
            "worst entry: analytic, numeric": f"[{t.worst_index}] {t.worst_analytic:.4g}, {t.worst_numeric:.4g}",
        }
        table.add_row(*(cells[c] for c in cols))
    return table


def render_check(report, studies: dict) -> None:
    out.print(tensor_table(f"Whole network ({report.mode}, eps {report.eps:g}, {report.dtype})", report.tensors))
    bad_layers = [t for t in report.layers if not t.passed]
    if bad_layers:
        out.print(tensor_table("Each layer alone: the ones that fail", bad_layers))
    else:
        out.print(f"Each layer alone: all {len(report.layers)} tensors pass "
                  f"(worst rel error {max(t.rel_error for t in report.layers):.2e}).")
    if studies.get("taylor"):
        t = Table(title="Taylor test: |J(theta + h v) - J(theta) - h v.g| should shrink as h^2 (rate 2)")
        t.add_column("tensor")
        t.add_column("rate", justify="right")
        for row in studies["taylor"]:
            t.add_row(row["param"], f"{row['rate']:.2f}")
        out.print(t)
    if studies.get("eps_sweep"):
        t = Table(title="Relative error against eps: truncation on the left, round-off on the right")
        for col in ("eps", "centred", "one-sided"):
            t.add_column(col, justify="right")
        for row in studies["eps_sweep"]:
            t.add_row(f"{row['eps']:.0e}", f"{row['centred']:.2e}", f"{row['one_sided']:.2e}")
        out.print(t)
    for w in report.warnings:
        err.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)
    for n in report.notes:
        out.print(f"note: {n}", highlight=False, soft_wrap=True)
    if report.passed:
        out.print(f"[green]PASS[/]: every tensor passes; overall relative error {report.rel_error:.2e} "
                  f"({report.tier}), {report.n_params} parameters, {report.seconds:.2f} s", soft_wrap=True)
    else:
        out.print(f"[bold red]FAIL[/]: {verdict(report)}", soft_wrap=True, highlight=False)


def verdict(report) -> str:
    """Name the modules whose own backward is wrong first; then what fails end to end."""
    modules = list(dict.fromkeys(t.name.split(".")[0] for t in report.layers if not t.passed))
    ends = [t for t in report.tensors if not t.passed]
    parts = []
    if modules:
        parts.append(f"the backward of {', '.join(modules)} is wrong (checked alone)")
    if ends:
        shown = ", ".join(f"{t.name} ({t.tier})" for t in ends[:8]) + (" ..." if len(ends) > 8 else "")
        parts.append(f"end to end {len(ends)} tensor(s) fail: {shown}")
    return "; ".join(parts)


def time_line(result: RunResult) -> str:
    """||dL/dh_1|| / ||dL/dh_T|| of the last recurrent layer, first and last logged step."""
    def ratio(rec: StepRecord) -> str:
        top = max(t.layer for t in rec.times)
        norms = [t.grad_norm for t in rec.times if t.layer == top]
        return f"{norms[0] / norms[-1]:.3e}" if norms[-1] else "n/a"
    T = sum(1 for t in result.first.times if t.layer == result.first.times[0].layer)
    return (f"||dL/dh_1|| / ||dL/dh_T|| over T = {T} steps: {ratio(result.first)} at step {result.first.step}, "
            f"{ratio(result.last)} at step {result.last.step} (time_grad_norms.csv has every step)")


def main() -> None:
    app()
