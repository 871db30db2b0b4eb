"""``gradlab report RUN --try``: every remedy of a run's diagnosis, run as a short run of the same config.

Each remedy's ``--set`` options are applied to the run's own config (its config.yaml, every default filled
in, same seed), and the trials go through the sweep machinery: in parallel on the cores, one run folder each
under ``RUN/try/`` (``RUN/try-<N>steps/`` with ``--steps N``), and resumable (a trial whose folder holds a finished run of the same config is reused).
The result is a table, remedy | status | final loss | delta ratio | verdict, best first with the original
run as the first row, printed and written to ``RUN/remedies.csv`` (rewritten as each trial finishes).
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import ConfigError, apply_overrides, parse_yaml, validate
from ..sweep import Combo, Sweep, combo_label, run_sweep, write_csv
from .diagnose import Finding, diagnose
from .load import RunData, kind_of, load_run, read_file

TRY_DIR = "try"
TABLE = "remedies.csv"
ORIGINAL = "original"
RANK = {s: i for i, s in enumerate(("completed", "diverged", "interrupted", "failed", "invalid"))}
FINISHED = ("completed", "diverged")  # a trial that ran to its end or to its divergence is not run again
COLUMNS = ("remedy", "status", "final_loss", "delta_ratio", "verdict", "steps", "diverged_at", "run", "description")
SET = re.compile(r"--set\s+('[^']*'|\"[^\"]*\"|\S+)")


@dataclass
class Trial:
    """One row of the table: a remedy's ``--set`` options (none for the original run)."""

    sets: list[str]  # KEY=VALUE strings
    description: str  # the remedy as the diagnosis words it

    @property
    def remedy(self) -> str:
        return " ".join(f"--set {s}" for s in self.sets) if self.sets else ORIGINAL

    @property
    def values(self) -> dict:
        """The trial as a sweep combination's values; its folder is ``combo_label`` of them."""
        return {"remedy": " ".join(self.sets) or ORIGINAL}

    @property
    def label(self) -> str:
        return combo_label(self.values)


@dataclass
class TrialResult:
    """What ``try_remedies`` ran and found; ``rows`` are best first, the original first of all."""

    run: Path
    dir: Path  # RUN/try, or RUN/try-<N>steps for trials of another length than the run's
    table: Path  # RUN/remedies.csv
    steps: int | None  # the steps of every trial (None: the config's own)
    own_steps: int | None = None  # the config's train.steps (None when it counts epochs)
    rows: list[dict] = field(default_factory=list)
    status: str = "completed"  # or interrupted
    ran: int = 0  # trials run now
    reused: int = 0  # trials whose finished folder was reused


def sets_of(remedy) -> list[str]:
    """The KEY=VALUE strings of a remedy: its ``--set`` options ("what: --set a=1 --set b=2"), quotes removed."""
    if isinstance(remedy, (list, tuple)):
        return [s for item in remedy for s in sets_of(item)]
    found = [m.strip("'\"") for m in SET.findall(str(remedy))]
    return [s for s in found if "=" in s]


def plan(findings: list[Finding]) -> list[Trial]:
    """One trial per distinct set of ``--set`` options among the findings' remedies, in their order;
    remedies without a ``--set`` (advice only) cannot be run and are left out."""
    trials, seen = [], set()
    for finding in findings:
        for remedy in finding.remedies:
            sets = sets_of(remedy)
            if sets and tuple(sets) not in seen:
                seen.add(tuple(sets))
                trials.append(Trial(sets, str(remedy)))
    return trials


# --------------------------------------------------------------------------- the sweep of trials

class TrialSweep(Sweep):
    """A sweep whose combinations are the remedies: its sweep.yaml lists them as ``trials`` (which
    ``gradlab sweep --resume`` refuses; ``gradlab report RUN --try`` resumes it)."""

    def resolved(self) -> dict:
        trials = [{"run": c.label, "set": c.values["remedy"]} for c in self.combos]
        return {**super().resolved(), "trials": trials}


def trial_config(raw: dict, sets: list[str], steps: int | None, source: str, imports: dict | None = None):
    """The run's config with a remedy's options (and ``train.steps``) applied, validated; ``imports``: the
    folder and allow_imports of ``validate`` (a trial is training: the same import rule)."""
    import copy

    overrides = [*sets, *([f"train.steps={steps}"] if steps else [])]
    where = f"{source} with --set {' --set '.join(overrides)}" if overrides else source
    return validate(apply_overrides(copy.deepcopy(raw), overrides, where), where, **(imports or {}))


def _same_run(folder: Path, combo: Combo) -> bool:
    """The folder holds a finished run of exactly this config (so it is reused, not run again)."""
    try:
        status = json.loads(read_file(folder / "summary.json"))["status"]  # a FIFO planted there is not opened
        written = parse_yaml(read_file(folder / "config.yaml").decode("utf-8"), str(folder / "config.yaml"))
    except (OSError, ValueError, KeyError, TypeError, ConfigError):
        return False
    return status in FINISHED and written == combo.config.resolved()


def try_remedies(path: str | Path, steps: int | None = None, workers: int | None = None,
                 observers: list = (), findings: list[Finding] | None = None, allow_imports=()) -> TrialResult:
    """Run every remedy of the run folder's diagnosis (or of ``findings``) as a trial; write the table.

    ``steps``: the steps of each trial (default: the run's own). ``workers``: processes (default: all
    cores; 0 runs the trials in this process, one after the other). The original run is the table's first
    row; it is run again, under ``RUN/try``, only when ``steps`` differs from its own. Raises ConfigError
    for a folder that is not a run folder, or a run whose config cannot be rebuilt. A trial trains: the
    config's ``module:Class`` modules are imported only from the run folder and the ``allow_imports``
    folders (its model.import_dir, the folder of the config it was trained from, lies outside it).
    """
    run = _run(Path(path))
    remedies = plan(diagnose(run) if findings is None else findings)
    rerun = steps is not None and steps != run.config.train.steps
    folder = run.dir / (f"{TRY_DIR}-{steps}steps" if rerun else TRY_DIR)
    result = TrialResult(run.dir, folder, run.dir / TABLE, steps if rerun else None, run.config.train.steps)
    if not remedies:
        return result
    source = str(run.dir / "config.yaml")
    imports = {"folder": str(run.dir), "allow_imports": tuple(map(str, allow_imports))}
    trial_config(run.raw, [], None, source, imports)  # a module it may not import: exit 2, not a row per remedy
    original = Trial([], "the run's own config")
    todo = [original, *remedies] if rerun else remedies
    combos, invalid = [], {}
    for t in todo:  # a remedy this config does not take is a row of its own, not the end of the others
        try:
            combos.append(Combo(t.values, t.label, trial_config(run.raw, t.sets, result.steps, source, imports)))
        except ConfigError as exc:
            invalid[t.label] = str(exc)
    folders = {t.label: result.dir / t.label for t in todo}
    folders.setdefault(original.label, run.dir)
    sweep = TrialSweep(run.name, run.raw, {}, {}, [run.config.seed], source, combos, imports)
    result.dir.mkdir(exist_ok=True)
    result.reused = sum(_same_run(folders[c.label], c) for c in combos)
    writer = TableWriter(result, [original, *remedies], folders, invalid)
    swept = run_sweep(sweep, workers, result.dir, observers=[*observers, writer], reuse=_same_run)
    result.status, result.ran = swept.status, swept.ran
    result.rows = writer.write()
    return result


def _run(path: Path) -> RunData:
    if kind_of(path) == "sweep":
        raise ConfigError(f"{path}: a sweep folder; --try runs the remedies of one run: give one of its run "
                          "folders (gradlab report SWEEP/<run> --try).")
    run = load_run(path)
    if not run.raw:
        raise ConfigError(f"{path / 'config.yaml'}: missing or empty; --try reruns the run's own config, which "
                          "gradlab train writes there.")
    if run.config is None:
        validate(run.raw, str(path / "config.yaml"), imports=False)  # raises, naming the key that no longer validates
    return run


# --------------------------------------------------------------------------- the table

class TableWriter:
    """Sweep observer: rewrites RUN/remedies.csv from the folders on disk each time a trial finishes."""

    def __init__(self, result: TrialResult, trials: list[Trial], folders: dict[str, Path],
                 invalid: dict[str, str]) -> None:
        self.result, self.trials, self.folders, self.invalid = result, trials, folders, invalid

    def on_run(self, res: dict) -> None:
        self.write()

    def write(self) -> list[dict]:
        rows = sort_rows([row for t in self.trials if (row := self.row(t)) is not None])
        if rows:
            frame = pd.DataFrame(rows, columns=list(COLUMNS)).astype({"steps": "Int64", "diverged_at": "Int64"})
            write_csv(frame, self.result.table)
        return rows

    def row(self, trial: Trial) -> dict | None:
        """The trial's row from its folder, or None while it has not run."""
        if trial.label in self.invalid:  # not run: the config does not take these options
            return {"remedy": trial.remedy, "status": "invalid", "final_loss": math.nan, "delta_ratio": math.nan,
                    "verdict": self.invalid[trial.label], "steps": None, "diverged_at": None, "run": "",
                    "description": trial.description}
        folder = self.folders[trial.label]
        summary, failed = _summary(folder), (folder / "error.txt").exists()
        if summary is None and not failed:
            return None
        status = "failed" if failed else summary.get("status", "failed")
        loss = summary.get("final_train_loss") if status == "completed" else None
        ratio, verdict = math.nan, ""
        if (folder / "metrics.csv").exists() and not failed:
            with np.errstate(all="ignore"):
                data = load_run(folder)
                ratio, verdict = delta_ratio(data), ", ".join(f.kind for f in diagnose(data))
        return {"remedy": trial.remedy, "status": status, "final_loss": math.nan if loss is None else loss,
                "delta_ratio": ratio, "verdict": verdict, "steps": (summary or {}).get("steps"),
                "diverged_at": (summary or {}).get("diverged_at"),
                "run": folder.relative_to(self.result.run).as_posix() if folder != self.result.run else ".",
                "description": trial.description}


def _summary(folder: Path) -> dict | None:
    try:
        return json.loads(read_file(folder / "summary.json"))
    except (OSError, ValueError, ConfigError):
        return None


def sort_rows(rows: list[dict]) -> list[dict]:
    """The original first; then completed trials by final loss (lowest first), then the diverged, the
    interrupted, the failed and the invalid ones (each in the diagnosis's order)."""
    def key(row: dict) -> tuple:
        loss = row["final_loss"]
        return (RANK.get(row["status"], len(RANK)), loss if math.isfinite(loss) else math.inf)

    original = [r for r in rows if r["remedy"] == ORIGINAL]
    return original + sorted((r for r in rows if r["remedy"] != ORIGINAL), key=key)


def delta_ratio(run: RunData) -> float:
    """At the last logged step whose figures are finite: delta_norm of the first hidden layer over the last
    hidden layer, or for a recurrent net ||dL/dh_1|| / ||dL/dh_T|| of its top recurrent layer over the
    whole sequence. Below 1e-3 the gradient vanishes, above 1e3 it explodes (the diagnosis's thresholds)."""
    if run.recurrent:
        times = run.times
        top = times[times.layer == times.layer.max()]
        for step in sorted(top.step.unique(), reverse=True):
            t = top[top.step == step].sort_values("t").grad_norm.to_numpy(dtype=float)
            if len(t) > 1 and np.isfinite(t).all() and t[-1] > 0:
                return float(t[0] / t[-1])
        return math.nan
    hidden = run.hidden
    for step in reversed(run.steps):
        d = run.at(step).delta_norm.reindex(hidden).to_numpy(dtype=float)
        if len(d) and np.isfinite(d).all() and d[-1] > 0:
            return float(d[0] / d[-1])
    return math.nan
