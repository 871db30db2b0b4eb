"""``gradlab check`` (also ``gradlab gradcheck``): parse, call the check, render the tensors and the verdict.

The argument is a config, or ``FILE.py:NAME`` for a layer or a forward/backward pair of the user's
(see ``functions.FIND_RULE``), checked on random inputs of the ``--shape``s given.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

import gradlab as api
from ..console import SET_HELP, SET_METAVAR, THREADS_HELP, bad_input, err, out, user_code
from ..errors import ALLOW_FLAG, ALLOW_HELP, EPS_RANGE, ConfigError
from ..threads import DEFAULT as DEFAULT_THREADS, MAX as MAX_THREADS, blas_threads
from .render import CheckProgress, render_check, tensor_table

TARGET = re.compile(r"(?P<file>.+\.py):(?P<name>[A-Za-z_]\w*)")
SHAPE = re.compile(r"\d+(,\d+)*")


def check_command(
    config: Path = typer.Argument(..., metavar="CONFIG", help="YAML config file, or FILE.py:NAME (a layer class or a "
                                            "NAME_forward/NAME_backward pair of yours)."),
    set_: Optional[List[str]] = typer.Option(None, "--set", metavar=SET_METAVAR, help=SET_HELP),
    shape: Optional[List[str]] = typer.Option(None, "--shape", metavar="N,N,...", help="FILE.py:NAME only: the shape of one input, "
                                                                    "e.g. 4,5 (repeatable, in input order)."),
    seed: Optional[int] = typer.Option(None, "--seed", min=0, help="FILE.py:NAME: seed of the random inputs "
                                                                   "(default 0); a config: its seed."),
    mode: Optional[str] = typer.Option(None, help="full | sample | directional (default auto: every entry, or a "
                                                  "sample in proportion when that would take long)."),
    eps: Optional[float] = typer.Option(None, help="Step relative to each tensor's scale, h = eps * max(1, rms) "
                                                    "(default 1e-5; 5e-3 in float32)."),
    strict: bool = typer.Option(False, "--strict", help="The 1e-7 tier for nets with kinks too."),
    dtype: Optional[str] = typer.Option(None, help="float64 (default, whatever train.dtype is) or float32 "
                                                   "(graded against float32's bound)."),
    loss_scale: Optional[float] = typer.Option(None, "--loss-scale", help="Multiply the loss (and its round-off "
                                                                          "alike: it resolves nothing)."),
    after_steps: int = typer.Option(0, "--after-steps", min=0, help="Train N steps first, then check."),
    one_sided: bool = typer.Option(False, "--one-sided", help="(J(theta+eps) - J(theta)) / eps instead of centred."),
    taylor: bool = typer.Option(False, "--taylor", help="Also run the step-size-free Taylor test."),
    eps_sweep: bool = typer.Option(False, "--eps-sweep", help="Also show the error for eps = 1e-1 ... 1e-10."),
    csv_path: Optional[Path] = typer.Option(None, "--csv", help="Write one row per checked entry to FILE."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    allow_imports: Optional[List[Path]] = typer.Option(None, ALLOW_FLAG, metavar="DIR", help="A config: " + ALLOW_HELP),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, max=MAX_THREADS, help=THREADS_HELP),
) -> None:
    """Check backprop against centred differences; exit 0 when every tensor passes, 1 when any fails, 3 when
    none fails but some cannot be resolved (the cure is printed); 2 bad input; 4 the check could not run (a
    layer or cell of yours raised); 130 Ctrl-C, 143 SIGTERM.

    Both run code of yours: FILE.py is imported, and a config naming module:Class runs that module's code \
(only modules in the config's folder are imported, unless --allow-imports names another folder)."""
    target = TARGET.fullmatch(str(config))
    if target:
        unused = {"--set": set_, "--dtype": dtype, "--loss-scale": loss_scale, "--after-steps": after_steps,
                  "--taylor": taylor, "--eps-sweep": eps_sweep, ALLOW_FLAG: allow_imports}
        with bad_input(config), blas_threads(threads or DEFAULT_THREADS):
            report = _check_target(target, shape or [], seed, mode, eps, strict, one_sided,
                                   [k for k, v in unused.items() if v])
        _emit(report, {}, csv_path, as_json, function=True)
        return
    flags = {"check.mode": mode, "check.eps": eps, "check.dtype": dtype, "check.loss_scale": loss_scale,
             "check.strict": "true" if strict else None, "seed": seed, "train.threads": threads}
    options = {"check.mode": "--mode", "check.eps": "--eps", "check.dtype": "--dtype", "check.loss_scale":
               "--loss-scale", "check.strict": "--strict", "seed": "--seed", "train.threads": "--threads"}
    given = {k: v for k, v in flags.items() if v is not None}
    overrides = [*(set_ or []), *(f"{k}={v}" for k, v in given.items())]
    # a message names the option the user typed: --mode bogus, not --set check.mode=bogus
    sources = {f"{k}={v}": options[k] if k == "check.strict" else f"{options[k]} {v}" for k, v in given.items()}
    with bad_input(config), user_code("gradlab check"):
        if shape:
            raise ConfigError(f"{config}: --shape applies to FILE.py:NAME only (a layer or function of yours); "
                              "a config's shapes come from its data and model.")
        cfg = api.load_config(config, overrides, allow_imports or [], sources)
        with CheckProgress() as bar:  # shown once the check has run 2 s, on a terminal
            report = api.check(cfg, str(config), after_steps, one_sided, progress=bar.update)
        studies = {"taylor": api.gradcheck.taylor(cfg, str(config), after_steps) if taylor else None,
                   "eps_sweep": api.gradcheck.sweep_eps(cfg, str(config), after_steps) if eps_sweep else None}
    _emit(report, studies, csv_path, as_json)


def _check_target(target: re.Match, shapes: list[str], seed: int | None, mode: str | None, eps: float | None,
                  strict: bool, one_sided: bool, unused: list[str]):
    """``FILE.py:NAME`` checked on random inputs; every problem is a ConfigError naming the file."""
    from .functions import FIND_RULE, CheckInputError, check_file  # here: --help imports no numpy

    file = target["file"]
    if unused:
        raise ConfigError(f"{file}: {', '.join(unused)} apply to a config only; allowed with FILE.py:NAME: --shape, "
                          "--seed, --mode, --eps, --strict, --one-sided, --csv, --json.")
    if not shapes:
        raise ConfigError(f"{file}: give the inputs' shapes, one --shape per array input in order (e.g. "
                          f"{file}:affine --shape 4,5 --shape 5,3 --shape 3); {FIND_RULE}.")
    bad = [s for s in shapes if not SHAPE.fullmatch(s.replace(" ", ""))]
    if bad:
        raise ConfigError(f"{file}: --shape {bad[0]!r} is not a shape; allowed: sizes separated by commas, "
                          "e.g. 4,5 or 2,3,8,8.")
    sizes = [tuple(int(k) for k in s.replace(" ", "").split(",")) for s in shapes]
    if any(0 in s or max(s) > 10_000 for s in sizes):
        raise ConfigError(f"{file}: --shape sizes must be 1 to 10000 (the check makes two forward calls per entry: "
                          "keep shapes small).")
    if eps is not None and not EPS_RANGE[0] <= eps <= EPS_RANGE[1]:
        raise ConfigError(f"{file}: --eps {eps:g} is out of range; allowed: {EPS_RANGE[0]:g} to {EPS_RANGE[1]:g} "
                          "(relative to each input's scale; default 1e-5).")
    kw = {"mode": mode or "full", "eps": eps, "strict": strict, "one_sided": one_sided, "seed": seed or 0}
    try:
        return check_file(str(target[0]), sizes, **kw)
    except CheckInputError as exc:
        raise ConfigError(f"{exc}." if not str(exc).endswith(".") else str(exc)) from None


def _emit(report, studies: dict, csv_path: Path | None, as_json: bool, function: bool = False) -> None:
    from ..logging import jsonable

    if csv_path:
        with bad_input(csv_path):
            api.gradcheck.write_entries(report, csv_path)
    if as_json:
        data = {**api.gradcheck.report_dict(report), **{k: v for k, v in studies.items() if v is not None}}
        print(json.dumps(jsonable(data), indent=2))
    elif function:
        render_alone(report)
    else:
        render_check(report, studies)
    raise typer.Exit(report.exit_code)


def render_alone(report) -> None:
    """A layer or function checked alone: its tensors, the warnings and notes, and which gradient is wrong."""
    out.print(tensor_table(f"Checked alone ({report.mode}, eps {report.eps:g}, {report.dtype})", report.tensors))
    for w in report.warnings:
        err.print(f"[yellow]warning:[/] {escape(w)}", highlight=False, soft_wrap=True)
    for n in report.notes:
        out.print(f"note: {escape(n)}", highlight=False, soft_wrap=True)
    if report.passed:
        out.print(f"[green]PASS[/]: every gradient passes; overall relative error {report.rel_error:.2e} "
                  f"({report.tier}), {report.seconds:.2f} s", soft_wrap=True)
    elif report.failed:
        wrong = ", ".join(f"{t.name} ({t.tier}, rel error {t.rel_error:.1e})" for t in report.failed)
        out.print(f"[bold red]FAIL[/]: the gradient backward returns for {escape(wrong)} is wrong", soft_wrap=True,
                  highlight=False)
    else:  # neither pass nor fail: the differences cannot tell at this step
        open_ = "; ".join(f"{t.name}: {t.cure}" for t in report.unresolved)
        out.print(f"[yellow]UNRESOLVED[/]: differences cannot tell right from wrong here; what resolves it: {escape(open_)}",
                  soft_wrap=True, highlight=False)
