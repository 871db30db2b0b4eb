"""What every command shares: the consoles, and the rule that bad input is one paragraph and exit 2."""
from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console

from .config import ConfigError

out = Console()
err = Console(stderr=True)

SET_HELP = "Override a config key, e.g. --set model.depth=50 (repeatable)."


def fail(exc: ConfigError) -> None:
    err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


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
