"""The report of a sweep folder: its summary table, plots and the diagnosis of each run."""
from __future__ import annotations

from pathlib import Path

import yaml

from ..config import ConfigError
from ..files import refuse_symlinks
from . import Report
from .diagnose import diagnose
from .load import SweepData, load_run


def sweep_report(sweep: SweepData, write: bool) -> Report:
    findings, notes = [], list(sweep.notes)
    for row in sweep.summary.itertuples():
        found, note = sweep_run(sweep.dir, str(row.run), str(row.status))
        findings += found
        notes += [note] if note else []
    rep = Report("sweep", sweep.dir, findings=findings, notes=notes)
    if write:
        from . import html, sweep_plots

        refuse_symlinks(sweep.dir, ["report.html", *sweep_plots.SWEEP_PLOTS])  # before anything is written
        rep.images = sweep_plots.write_sweep_plots(sweep, sweep.dir)
        cols = [*sweep.keys, "status", "final_loss", "final_val_accuracy", "delta_ratio_first", "delta_ratio_last",
                "run"]
        sections = [
            html.Section("Summary", table=sweep.summary[[c for c in cols if c in sweep.summary.columns]]),
            html.Section("Plots", images=rep.images),
            html.Section("Diagnosis by run", html=html.findings_table(findings), pre="\n".join(notes) or None),
            html.Section("Sweep", pre=yaml.safe_dump(sweep.spec, sort_keys=False)),
        ]
        rep.html = html.write_html(sweep.dir / "report.html", f"gradlab sweep report: {sweep.name}", sections)
    return rep


def sweep_run(folder: Path, run: str, status: str) -> tuple[list[dict], str | None]:
    """The findings of one run of a sweep, or a note saying why it is not diagnosed. Only a folder directly
    inside the sweep's is read: summary.csv names it."""
    if run in ("", ".", "..") or run != Path(run).name:
        return [], f"{run}: not a folder name inside the sweep (summary.csv, column 'run'); not read"
    if (folder / run).is_symlink():
        return [], f"{run}: a symbolic link, not a run folder gradlab wrote; not read"
    if status not in ("completed", "diverged"):
        return [], f"{run}: {status}, not diagnosed (see its error.txt)"
    if not (folder / run / "metrics.csv").exists():
        return [], None
    try:
        data = load_run(folder / run)
    except (ConfigError, OSError) as exc:  # one unreadable run is a note, not the end of the sweep's report
        return [], f"{run}: not diagnosed: {exc}"
    return [{"run": run, **f.as_dict()} for f in diagnose(data)], None
