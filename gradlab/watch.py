"""``gradlab watch [RUN]``: follow a run's CSVs as they grow and draw them in the terminal."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def watch_command(
    run: Optional[Path] = typer.Argument(None, help="A run folder (default: the newest under runs/)."),
) -> None:
    """Watch a run while it trains: loss and gradient norms, delta_norm per layer, clip rate, diagnosis."""
    raise typer.Exit(2)  # being built (issue 14)
