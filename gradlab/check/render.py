"""How a check report reads in a terminal: a table per tensor, the warnings and notes, and the verdict."""
from __future__ import annotations

from rich import box
from rich.markup import escape
from rich.table import Table

from ..console import err, out

TIER_STYLE = {"good": "green", "acceptable": "yellow", "uncomfortable": "bold yellow", "wrong": "bold red"}

WIDE = 130  # narrower terminals get the essential columns; --json and --csv have everything


def tensor_table(title: str, results) -> Table:
    """Per tensor: shape, entries checked, largest values, relative error (norm and CS231n's element-wise
    maximum), its bound, tier and verdict, kinks, worst entry."""
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    wide = out.width >= WIDE
    cols = ["tensor", "layer", "shape", "checked", "max|analytic|", "rel error", "max rel", "bound", "tier",
            "kinks", "worst entry: analytic, numeric"]
    if not wide:
        cols = ["tensor", "layer", "checked", "rel error", "max rel", "bound", "tier", "kinks"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("tensor", "tier", cols[-1]) else "right", no_wrap=True)
    for t in results:
        cells = {
            "tensor": escape(t.name), "layer": str(t.layer or ""), "shape": "x".join(map(str, t.shape)),
            "checked": str(t.checked), "max|analytic|": f"{t.max_analytic:.2e}",
            "rel error": f"{t.rel_error:.1e}", "max rel": f"{t.max_rel_error:.1e}", "bound": f"{t.bound:.1e}",
            "tier": f"[{TIER_STYLE[t.tier]}]{t.tier}{mark(t)}[/]",
            "kinks": f"{t.kinks}" + (f" ({t.kink_failures} bad)" if t.kink_failures else ""),
            "worst entry: analytic, numeric": escape(f"[{t.worst_index}]") + f" {t.worst_analytic:.4g}, {t.worst_numeric:.4g}",
        }
        table.add_row(*(cells[c] for c in cols))
    return table


def mark(t) -> str:
    """What the tier cell adds: FAIL, unresolved, or why a tensor above its tier passes."""
    if t.verdict == "fail":
        return " FAIL"
    if t.verdict == "unresolved":
        return " (covered alone)" if t.covered else " UNRESOLVED"
    return " (explained)" if t.explained else ""


def render_check(report, studies: dict) -> None:
    out.print(tensor_table(f"Whole network ({report.mode}, eps {report.eps:g} relative, {report.dtype})", report.tensors))
    bad_layers = [t for t in report.layers if t.verdict != "pass"]
    if bad_layers:
        out.print(tensor_table("Each layer alone (and the loss): the ones that do not pass", bad_layers))
    else:
        out.print(f"Each layer alone, and the loss: all {len(report.layers)} tensors pass "
                  f"(worst rel error {max((t.rel_error for t in report.layers), default=0.0):.2e}).")
    if studies.get("taylor"):
        t = Table(title="Taylor test: |J(theta + h v) - J(theta) - h v.g| should shrink as h^2 (rate 2)")
        t.add_column("tensor")
        t.add_column("rate", justify="right")
        for row in studies["taylor"]:
            t.add_row(escape(row["param"]), f"{row['rate']:.2f}")
        out.print(t)
    if studies.get("eps_sweep"):
        t = Table(title="Relative error against eps: truncation on the left, round-off on the right")
        for col in ("eps", "centred", "one-sided"):
            t.add_column(col, justify="right")
        for row in studies["eps_sweep"]:
            t.add_row(f"{row['eps']:.0e}", f"{row['centred']:.2e}", f"{row['one_sided']:.2e}")
        out.print(t)
    for w in report.warnings:
        err.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    for n in report.notes:
        out.print(f"note: {escape(n)}", highlight=False, soft_wrap=True)
    if report.failed:
        out.print(f"[bold red]FAIL[/]: {escape(verdict(report))}", soft_wrap=True, highlight=False)
    elif report.unresolved:
        names = escape(", ".join(t.name for t in report.unresolved[:8]))
        out.print(f"[bold yellow]UNRESOLVED[/] (exit 3): nothing fails, but the bound of {names} cannot tell a "
                  "right gradient from a wrong one; see the cure above", soft_wrap=True, highlight=False)
    else:
        out.print(f"[green]PASS[/]: every tensor passes; overall relative error {report.rel_error:.2e} "
                  f"({report.tier}), CS231n's element-wise max {report.max_rel_error:.2e}, {report.n_params} "
                  f"parameters, {report.seconds:.2f} s", soft_wrap=True)


def verdict(report) -> str:
    """Name the culprit: the loss, then the modules whose own backward is wrong, then what fails end to end."""
    from .runner import culprit

    return culprit(report)


class CheckProgress:
    """A progress bar for a check that runs longer than ``after`` seconds, on stderr (so ``--json`` on stdout
    stays clean), and only on a terminal; ``update(done, total)`` is the check's ``progress`` callback."""

    def __init__(self, after: float = 2.0) -> None:
        import time

        self.clock, self.after = time.perf_counter, after
        self.start = self.clock()
        self.bar = self.task = None

    def update(self, done: float, total: float) -> None:
        if self.bar is None:
            if not err.is_terminal or self.clock() - self.start < self.after:
                return
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]check"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                TimeRemainingColumn(), console=err, transient=True)
            self.bar.start()
            self.task = self.bar.add_task("check", total=total)
        self.bar.update(self.task, completed=done, total=total)

    def __enter__(self) -> "CheckProgress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None
