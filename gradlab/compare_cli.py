"""``gradlab compare RUN RUN ...``: several runs overlaid in one compare.html and its PNGs."""
from __future__ import annotations

from pathlib import Path
from typing import List

import typer


def compare_command(
    runs: List[Path] = typer.Argument(..., help="Two or more run folders."),
) -> None:
    """Compare runs: overlaid loss and gradient norms, delta_norm by layer, the config keys that differ."""
    raise typer.Exit(2)  # being built (issue 14)
