"""``gradlab check`` (also ``gradlab gradcheck``): parse, call the check, render the tensors and the verdict."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer
from rich import box
from rich.table import Table

import gradlab as api
from ..console import SET_HELP, bad_input, err, out
from ..logging import jsonable

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
