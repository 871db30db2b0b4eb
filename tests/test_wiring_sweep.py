"""Resuming a sweep several times: summary.csv keeps, for every run, the status the run really ended with,
whether the run was executed in this pass or read back from an earlier one."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from gradlab import sweep as S

SWEEP = """\
name: statuses
base:
  data: {kind: csv, path: data.csv, target: y, task: regression}
  model: {depth: 2, width: 8, activation: relu, init: he_normal}
  loss: mse
  train: {lr: 0.01, steps: 40, batch_size: 16}
  log: {out: OUT}
grid:
  data.target: [y, nope]       # the data has no column 'nope': loading it fails in the worker
  train.lr: [0.01, 1.0e+6]     # 1e6 overflows float64 within some 25 steps
"""
LABELS = ["target=y,lr=0.01,seed=0", "target=y,lr=1000000.0,seed=0",
          "target=nope,lr=0.01,seed=0", "target=nope,lr=1000000.0,seed=0"]
TRUTH = dict(zip(LABELS, ["completed", "diverged", "failed", "failed"]))


class InProcess:
    """The local executor's interface, running each job here, in order: the bookkeeping of resume is what is
    tested, and a worker process per pass would cost seconds (tests/test_sweep.py covers the processes)."""

    def __init__(self, workers: int) -> None:
        pass

    def run(self, jobs):
        for job in jobs:
            yield S.run_combo(*job)

    def close(self, cancel: bool = False) -> None:
        pass


class StopAfter:
    """Ctrl-C in the client once ``n`` runs have come back."""

    def __init__(self, n: int | None = None) -> None:
        self.n, self.labels = n, []

    def on_run(self, res: dict) -> None:
        self.labels.append(res["label"])
        if self.n is not None and len(self.labels) >= self.n:
            raise KeyboardInterrupt


def on_disk(run: Path) -> str:
    """What a run folder says it ended with: an error.txt is a failure, else summary.json's status."""
    if (run / "error.txt").exists():
        return "failed"
    return json.loads((run / "summary.json").read_text())["status"]


def statuses(folder: Path) -> dict[str, str]:
    table = pd.read_csv(folder / "summary.csv")
    return dict(zip(table.run, table.status))


def resume(folder: Path, stop_after: int | None = None) -> tuple[S.SweepResult, list[str]]:
    stop = StopAfter(stop_after)
    result = S.run_sweep(S.load_resume(folder), workers=1, resume=folder, observers=[stop])
    assert {r["run"]: r["status"] for r in result.rows} == statuses(folder)
    return result, stop.labels


def test_resumed_sweeps_keep_each_runs_own_status(tmp_path, monkeypatch):
    monkeypatch.setattr(S, "LocalExecutor", InProcess)
    X = np.random.default_rng(0).normal(size=(60, 3))
    pd.DataFrame({"a": X[:, 0], "b": X[:, 1], "c": X[:, 2], "y": X.sum(axis=1)}).to_csv(tmp_path / "data.csv",
                                                                                        index=False)
    spec = tmp_path / "statuses.yaml"
    spec.write_text(SWEEP.replace("OUT", str(tmp_path / "runs")), encoding="utf-8")
    sweep = S.load_sweep(spec)
    assert [c.label for c in sweep.combos] == LABELS
    first = S.run_sweep(sweep, workers=1)
    folder = first.dir
    assert statuses(folder) == TRUTH == {label: on_disk(folder / label) for label in LABELS}

    # the completed run is damaged: killed while it ran, its summary.json says "running" (as train leaves it)
    damaged = folder / LABELS[0] / "summary.json"
    damaged.write_text(json.dumps({**json.loads(damaged.read_text()), "status": "running"}))

    # resume 1, interrupted after one run (runs come back in order): the damaged run reruns and
    # completes; the diverged and failed runs are read back from the first pass as they were
    result, ran = resume(folder, stop_after=1)
    assert result.status == "interrupted" and ran == [LABELS[0]]
    assert statuses(folder) == TRUTH == {label: on_disk(folder / label) for label in LABELS}

    # resume 2, interrupted after one run: the diverged run reruns; the others come from two earlier passes
    result, ran = resume(folder, stop_after=1)
    assert result.status == "interrupted" and ran == [LABELS[1]]
    assert statuses(folder) == TRUTH

    # resume 3, to the end: what did not complete runs again and ends as before; the completed run is kept
    result, ran = resume(folder)
    assert result.status == "completed" and sorted(ran) == sorted(LABELS[1:])
    assert statuses(folder) == TRUTH == {label: on_disk(folder / label) for label in LABELS}
    table = pd.read_csv(folder / "summary.csv").set_index("run")
    assert table.steps[LABELS[0]] == 40 and 0 < table.diverged_at[LABELS[1]] < 40
    assert table.loc[LABELS[2:], "steps"].isna().all()
