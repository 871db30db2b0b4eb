"""Step records -> CSV rows, flushed as written, so a killed run leaves valid files."""
from __future__ import annotations

import copy
import csv
import json
import math
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import yaml

from .records import GateStat, LayerStat, ParamStat, RunResult, StepRecord, TimeStat


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, float):
        return repr(value)
    return value


class CsvTable:
    """One CSV file with a fixed header; every ``write`` is flushed."""

    def __init__(self, path: Path, header: list[str]) -> None:
        self.file = open(path, "w", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file)
        self.writer.writerow(header)
        self.file.flush()

    def write(self, rows: list[list]) -> None:
        self.writer.writerows([[_cell(v) for v in row] for row in rows])
        self.file.flush()

    def close(self) -> None:
        self.file.close()


def jsonable(value):
    """Floats that JSON can hold (non-finite -> None), recursively."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


@dataclass
class FullTimeStat(TimeStat):
    """A row of time_grad_norms.csv with ``full_grad_norm``: ||dL/dh_t|| of the full-sequence gradient."""

    full_grad_norm: float


def full_sequence_times(times: list[TimeStat], model, loss, x: np.ndarray, y: np.ndarray) -> list[FullTimeStat]:
    """``times`` (the training backward's ||dL/dh_t||) beside the untruncated ||dL/dh_t|| on the same batch.

    With truncated BPTT the training gradient stops at each chunk's start, so the logged norms say
    nothing about the steps before the last chunk. The full-sequence norms come from one backward
    of a copy of the model (and of the loss) with truncation off: the training model, its gradients
    and caches are not touched. Without truncation both columns are the same numbers.
    """
    cells = [m for m in model.modules() if getattr(m, "truncate", None)]
    if not cells:
        return [FullTimeStat(t.layer, t.t, t.lag, t.grad_norm, t.grad_norm) for t in times]
    twin, twin_loss = copy.deepcopy((model, loss))
    for m in twin.modules():
        if getattr(m, "truncate", None):
            m.truncate = None
    twin.loss_and_grads(x, y, twin_loss, train=True)
    full = {}  # (layer, t) -> ||dL/dh_t||, as train.time_stats numbers them
    for l, layer in enumerate(twin.layers, 1):
        for m in layer.modules:
            if getattr(m, "time_norms", None) is not None:
                full.update({(l, t + 1): float(n) for t, n in enumerate(m.time_norms)})
    return [FullTimeStat(t.layer, t.t, t.lag, t.grad_norm, full.get((t.layer, t.t), math.nan)) for t in times]


class RunWriter:
    """Observer that writes a run folder: config.yaml, the three CSVs, params .npz, summary.json."""

    def __init__(self, run_dir: Path, recurrent: bool = False) -> None:
        self.dir = Path(run_dir)
        self.param_cols = [f.name for f in fields(ParamStat)]
        self.layer_cols = [f.name for f in fields(LayerStat)]
        self.metrics = CsvTable(self.dir / "metrics.csv", list(StepRecord.METRICS))
        self.grads = CsvTable(self.dir / "grad_norms.csv", ["step", "epoch", *self.param_cols])
        self.layers = CsvTable(self.dir / "layer_stats.csv", ["step", *self.layer_cols])
        self.tables = [self.metrics, self.grads, self.layers]
        self.times = self.gates = None
        if recurrent:
            self.times = CsvTable(self.dir / "time_grad_norms.csv",
                                  ["step", *(f.name for f in fields(TimeStat)), "full_grad_norm"])
            self.gates = CsvTable(self.dir / "gate_stats.csv", ["step", *(f.name for f in fields(GateStat))])
            self.tables += [self.times, self.gates]

    def write_config(self, resolved: dict) -> None:
        with open(self.dir / "config.yaml", "w", encoding="utf-8") as f:
            yaml.safe_dump(resolved, f, sort_keys=False)

    def save_params(self, name: str, params: dict[str, np.ndarray]) -> None:
        np.savez(self.dir / name, **params)

    def on_step(self, rec: StepRecord) -> None:
        self.metrics.write([rec.metrics()])
        self.grads.write([[rec.step, rec.epoch, *(getattr(p, c) for c in self.param_cols)] for p in rec.params])
        self.layers.write([[rec.step, *(getattr(s, c) for c in self.layer_cols)] for s in rec.layers])
        if self.times is not None:
            self.times.write([[rec.step, t.layer, t.t, t.lag, t.grad_norm, getattr(t, "full_grad_norm", t.grad_norm)]
                              for t in rec.times])
            self.gates.write([[rec.step, g.layer, g.gate, g.mean] for g in rec.gates])

    def write_summary(self, summary: dict) -> None:
        tmp = self.dir / "summary.json.tmp"
        tmp.write_text(json.dumps(jsonable(summary), indent=2) + "\n", encoding="utf-8")
        tmp.replace(self.dir / "summary.json")

    def close(self) -> None:
        for table in self.tables:
            table.close()


def summary_of(result: RunResult, versions: dict) -> dict:
    return {
        "status": result.status,
        "steps": result.steps,
        **result.final,
        "diverged_at": result.diverged_at,
        "diverged_layer": result.diverged_layer,
        "diverged_where": result.diverged_where,
        "wall_time": round(result.wall_time, 3),
        "versions": versions,
    }
