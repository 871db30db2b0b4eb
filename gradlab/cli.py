"""The ``gradlab`` command: parse arguments, call the Python API, render with rich."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

import gradlab as api
from .config import ConfigError
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


@app.command()
def train(
    config: Path = typer.Argument(..., help="YAML config file."),
    set_: Optional[List[str]] = typer.Option(None, "--set", help=SET_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final line."),
) -> None:
    """Train a network from a YAML config and log per-layer gradients to CSV."""
    try:
        cfg = api.load_config(config, set_ or [])
        observers = [] if quiet else [ProgressView()]
        result = api.train(cfg, observers, source=str(config))
    except ConfigError as exc:
        fail(exc)
    except MemoryError:
        fail(ConfigError(f"{config}: the model or data set is larger than this machine's memory; "
                         "lower model.width, model.depth, data.n_samples or train.batch_size."))
    except KeyboardInterrupt:
        err.print("interrupted")
        raise typer.Exit(130)
    if not quiet and result.first is not None:
        out.print(layer_table(result))
        out.print(ratio_line(result), soft_wrap=True)
    style = {"completed": "green", "diverged": "bold red", "interrupted": "yellow"}[result.status]
    out.print(f"[{style}]{closing_line(result)}[/]", highlight=False, soft_wrap=True)
    raise typer.Exit(result.exit_code)


def ratio_line(result: RunResult) -> str:
    """delta_norm of the first hidden layer over the last hidden layer, first and last step."""
    def ratio(rec: StepRecord) -> float:
        hidden = rec.layers[:-1]
        return hidden[0].delta_norm / hidden[-1].delta_norm if hidden and hidden[-1].delta_norm else float("nan")
    return (f"delta_norm ratio first/last hidden layer: {ratio(result.first):.3e} at step {result.first.step}, "
            f"{ratio(result.last):.3e} at step {result.last.step}")


def main() -> None:
    app()
