"""``gradlab report``: plots, a self-contained report.html and a diagnosis, for a run or a sweep folder.

    load.py      the folder's CSVs back into tables
    diagnose.py  findings (vanishing, exploding, dead_units, saturation, not_learning, healthy; spike notes) with evidence and remedies
    theory.py    the gain per layer that init and activation predict, beside the measured one
    lint.py      known config mismatches, before a run
    trial.py     --try: each remedy run as a short run of the same config, and the table of what it did
    plots.py     matplotlib figures of a run (Agg, no display)
    sweep.py     a sweep folder's report; sweep_plots.py its figures
    html.py      report.html with every image embedded
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from ..config import ConfigError
from ..files import refuse_symlinks
from .diagnose import KINDS, Finding, diagnose
from .lint import Lint, lint
from .load import RunData, SweepData, kind_of, load_run, load_sweep_dir, read_table
from .theory import FAR
from .trial import try_remedies

__all__ = ["KINDS", "Finding", "Lint", "Report", "RunData", "SweepData", "diagnose", "diagnose_dir", "lint",
           "load_run", "load_sweep_dir", "report", "try_remedies"]


@dataclass
class Report:
    """What ``report`` wrote and found. For a sweep, each finding's dict carries its run's folder name."""

    kind: str  # run or sweep
    dir: Path
    html: Path | None = None
    images: list[Path] = field(default_factory=list)
    findings: list[dict] = field(default_factory=list)
    theory: dict = field(default_factory=dict)  # fitted and predicted gains (runs only)
    lints: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be diagnosed, and why

    def as_dict(self) -> dict:
        return {"kind": self.kind, "dir": str(self.dir), "html": str(self.html) if self.html else None,
                "findings": self.findings, "notes": self.notes, "theory": self.theory, "lint": self.lints}


def diagnose_dir(path: str | Path) -> list[Finding]:
    """The findings of one run folder."""
    return diagnose(load_run(path))


def report(path: str | Path, write: bool = True) -> Report:
    """Diagnose a run or sweep folder; with ``write``, put the PNGs and report.html into it."""
    path = Path(path)
    with np.errstate(all="ignore"):  # the ratios of a diverged run are inf or nan, and the report says so
        return _report(path, write)


def _report(path: Path, write: bool) -> Report:
    try:
        if kind_of(path) == "sweep":
            from .sweep import sweep_report

            return sweep_report(load_sweep_dir(path), write)
        return _run_report(load_run(path), write)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read or write the report ({exc.strerror or exc}); allowed: a run or "
                          "sweep folder you can write to.") from None


def _run_report(run: RunData, write: bool) -> Report:
    from .theory import compare, n_inputs

    findings = diagnose(run)
    table, fits = compare(run)
    lints = [str(x) for x in lint(run.config, n_inputs(run))] if run.config is not None else []
    notes = _running_note(run) + run.notes + ([] if findings else ["no step logged yet: the run stopped before "
                                                                   "step 0 was written"])
    rep = Report("run", run.dir, findings=[f.as_dict() for f in findings], theory=fits, lints=lints, notes=notes)
    if write:
        from ..describe import run_model_line
        from . import html, plots
        from .theory import collapse

        refuse_symlinks(run.dir, ["report.html", *plots.RUN_PLOTS])  # before anything is written
        trials = _trials_section(run.dir, notes)
        rep.images = plots.write_run_plots(run, run.dir)
        layers = (run.hidden[0], run.hidden[-1]) if run.layer_ids else None
        sections = [
            html.Section("Summary", table=summary_frame(run)),
            html.Section("Diagnosis", html=html.findings_table(rep.findings, layers), pre="\n".join(notes) or None),
            *trials,
            html.Section("Plots", images=rep.images),
            html.Section("Theory beside measurement", text=THEORY_NOTE,
                         html=html.theory_table(collapse(table)) if table is not None else "", pre=_lines(fits)),
            html.Section("Config lint", html=html.lint_list(lints)),
            html.Section("Resolved config", pre=yaml.safe_dump(run.raw, sort_keys=False)),
        ]
        rep.html = html.write_html(run.dir / "report.html", f"gradlab report: {run.name}", sections,
                                   subtitle=run_model_line(run))
    return rep


def _running_note(run: RunData) -> list[str]:
    """A run whose summary.json still says running did not end (yet): its diagnosis is not of a finished run."""
    if run.summary.get("status") != "running":
        return []
    metrics = run.metrics
    logged = int(metrics["step"].iloc[-1]) + 1 if metrics is not None and len(metrics) else 0
    total = (run.raw.get("train") or {}).get("steps") if isinstance(run.raw, dict) else None
    of = f" of {total}" if isinstance(total, int) and not isinstance(total, bool) else ""
    return [f"summary.json still says running: the run is still running, or was stopped without finishing "
            f"(killed); this diagnosis is of the {logged}{of} steps logged so far, not of a finished run."]


def _trials_section(folder: Path, notes: list[str]) -> list:
    """The table of ``gradlab report RUN --try`` (remedies.csv), when it has been run (a note if unreadable)."""
    from . import html

    try:
        table = read_table(folder / "remedies.csv", notes)
    except ConfigError as exc:
        notes.append(f"remedies.csv left out: {exc}")
        return []
    if table is None:
        return []
    cols = [c for c in ("remedy", "status", "final_loss", "delta_ratio", "verdict", "diverged_at", "run")
            if c in table.columns]
    return [html.Section("Remedies tried", table=table[cols].astype(object).where(table[cols].notna(), ""),
                         text="Each remedy of the diagnosis run on the same config and seed (gradlab report RUN "
                              "--try), best first, the original run first; the verdict is the diagnosis of "
                              "the trial run.")]


THEORY_NOTE = ("Going down one layer, the back-propagated gradient (delta_norm) is multiplied on average by "
               "sqrt(chi), chi = n Var(W) E[phi'(z)^2] (Glorot & Bengio 2010, He et al. 2015): 'predicted gain' "
               "through layer l, from the init scheme and the activation, for inputs of unit variance. 'measured "
               "gain' is delta_norm(l-1) / delta_norm(l) in this run. The fitted gain is exp(-slope) of "
               "log norm over layer index: the average factor per layer on the way down. Consecutive layers with the "
               "same prediction share a row, their measured gains as the geometric mean (least to greatest); "
               f"a highlighted gain is more than {FAR:g}x off the prediction, either way.")


def summary_frame(run: RunData):
    import pandas as pd

    keys = ("status", "steps", "final_train_loss", "final_train_accuracy", "final_val_loss", "final_val_accuracy", "diverged_at",
            "diverged_layer", "diverged_where", "wall_time")
    rows = [(k, run.summary.get(k)) for k in keys if run.summary.get(k) is not None]
    return pd.DataFrame(rows, columns=["", "value"])


def _lines(values: dict) -> str:
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)
    return "\n".join(f"{k}: {fmt(v)}" for k, v in values.items())
