"""``gradlab check`` (also ``gradlab gradcheck``): parse, call the check, render the tensors and the verdict."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

import gradlab as api
from ..console import SET_HELP, bad_input
from ..logging import jsonable
from .render import render_check


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
