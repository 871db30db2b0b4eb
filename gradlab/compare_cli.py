"""``gradlab compare RUN RUN ...``: several runs overlaid in one compare.html and its PNGs."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from .console import bad_input, out

OUT_HELP = ("Folder for compare.html and its PNGs (made if missing; never inside a run). Default: a new folder "
            "compare-<YYYYmmdd-HHMMSS> beside the first run (runs/ for runs of log.out's default).")


def compare_command(
    runs: List[Path] = typer.Argument(..., metavar="RUN", help="Two or more run folders."),
    out_dir: Optional[Path] = typer.Option(None, "--out", metavar="DIR", help=OUT_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the table (differing config keys and final "
                                 "figures, one row per run) as JSON."),
) -> None:
    """Compare runs: overlaid loss and gradient norms, delta_norm by layer, the config keys that differ.

    Writes compare.html (images embedded) and compare_*.png into a folder of its own and prints its path; \
the runs' folders are only read."""
    with bad_input(runs[0] if runs else Path(".")):
        from .logging import jsonable
        from .report.compare import compare

        cmp = compare(runs, out_dir)
    if as_json:
        print(json.dumps(jsonable(cmp.as_dict()), indent=2))
        return
    render(cmp)


def render(cmp) -> None:
    """The runs side by side (one column each: the terminal is narrow), what the figures leave out, the page."""
    from rich.markup import escape
    from rich.table import Table

    from .report.compare import HEADERS, cell_text

    table = Table(title="Runs compared: the config keys that differ, then how each run ended")
    table.add_column("")
    for label in cmp.labels:
        table.add_column(escape(label), justify="right", overflow="fold")
    for i, col in enumerate(cmp.table.columns[1:]):
        if i == len(cmp.keys):
            table.add_section()
        texts = (cell_text(v, col in cmp.keys) for v in cmp.table[col])
        table.add_row(escape(HEADERS.get(col, col)), *map(escape, texts))
    out.print(table)
    differ = "1 config key differs" if len(cmp.keys) == 1 else f"{len(cmp.keys)} config keys differ"
    same = "1 is" if cmp.same == 1 else f"{cmp.same} are"
    out.print(f"{differ}, {same} the same in every run.", highlight=False)
    for note in cmp.notes:
        out.print(escape(note), highlight=False, soft_wrap=True)
    if cmp.html is not None:
        out.print(f"compare: {escape(str(cmp.html))}", highlight=False, soft_wrap=True)
