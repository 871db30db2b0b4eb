"""Step records -> CSV rows, flushed as written, so a killed run leaves valid files."""
from __future__ import annotations

import contextlib
import copy
import csv
import io
import json
import math
import os
from dataclasses import dataclass, fields
from operator import attrgetter
from pathlib import Path

import numpy as np

from .config.yamlfile import dump_yaml
from .files import NoSpace, refuse_symlinks, save_atomic, write_atomic
from .records import GateStat, LayerStat, ParamStat, RunResult, StepRecord, TimeStat


_G10 = "{:.10g}".format


def digits(x: float) -> str:
    """A float as CSV text: 10 significant digits (what a spreadsheet keeps), still a float to the eye and
    to pandas (1.0, not 1): 0.30000000000000004 -> 0.3, 1e-300 -> 1e-300, nan and inf as they are."""
    s = _G10(x)
    return s if "." in s or "e" in s or "n" in s else s + ".0"


PLAIN = (int, str)  # written as they are


def _cell(value):
    """A value as its CSV text: floats with 10 significant digits, bools 0/1, None empty, the rest as
    csv writes them."""
    if value is None:
        return ""
    if isinstance(value, (float, np.floating)):
        return digits(value)
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    return value


def _exclusive(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)


def _rows(rows: list) -> bytes:
    text = io.StringIO()
    csv.writer(text).writerows([[digits(v) if v.__class__ is float else v if v.__class__ in PLAIN else _cell(v)
                                 for v in row] for row in rows])
    return text.getvalue().encode("utf-8")


class CsvTable:
    """One CSV file with a fixed header. Each ``write`` goes to the file at once, as one write(2) call of
    whole rows, so a process killed at any point leaves whole rows; ``close`` takes the file back to the
    end of the rows ``keep`` last marked (a write the disk could not hold, or one that Ctrl-C broke off,
    leaves no torn row)."""

    def __init__(self, path: Path, header: list[str]) -> None:
        tmp = path.with_name(f".{path.stem}-{os.getpid()}.csv")
        self.file = None
        self.end = self.kept = 0  # bytes of whole rows written; of rows kept
        try:
            self.file = open(tmp, "wb", buffering=0, opener=_exclusive)  # unbuffered: a write is a write(2)
            self.write([header])
            os.replace(tmp, path)  # the table appears with its whole header or not at all; the file stays open
        except FileExistsError:  # not ours to remove
            raise
        except BaseException:  # a Ctrl-C can land between the file's creation and the line after it
            if self.file is not None:
                self.file.close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self.keep()

    def write(self, rows: list[list]) -> None:
        data = _rows(rows)
        left = memoryview(data)
        while left:  # a short write (the disk filled up) is followed by one that raises
            left = left[self.file.write(left):]
        self.end += len(data)

    def keep(self) -> None:
        """What is written so far stays, whatever happens next."""
        self.kept = self.end

    def close(self) -> None:
        """Closed, back at the last rows kept (again: nothing)."""
        if self.file.closed:
            return
        try:
            self.file.truncate(self.kept)  # a write broken off half-way did not count in self.end
        finally:
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

    FILES = ("config.yaml", "metrics.csv", "grad_norms.csv", "layer_stats.csv", "time_grad_norms.csv",
             "gate_stats.csv", "params_init.npz", "params_final.npz", "summary.json", "error.txt")

    def __init__(self, run_dir: Path, recurrent: bool = False) -> None:
        self.dir = Path(run_dir)
        refuse_symlinks(self.dir, self.FILES)
        self.param_cols = [f.name for f in fields(ParamStat)]
        self.layer_cols = [f.name for f in fields(LayerStat)]
        self.param_row, self.layer_row = attrgetter(*self.param_cols), attrgetter(*self.layer_cols)
        self.tables: list[CsvTable] = []
        self.times = self.gates = None
        try:
            self.metrics = self._table("metrics.csv", list(StepRecord.METRICS))
            self.grads = self._table("grad_norms.csv", ["step", "epoch", *self.param_cols])
            self.layers = self._table("layer_stats.csv", ["step", *self.layer_cols])
            if recurrent:
                self.times = self._table("time_grad_norms.csv",
                                         ["step", *(f.name for f in fields(TimeStat)), "full_grad_norm"])
                self.gates = self._table("gate_stats.csv", ["step", *(f.name for f in fields(GateStat))])
        except BaseException:
            self.close()  # what was opened
            raise

    def _table(self, name: str, header: list[str]) -> CsvTable:
        self.tables.append(CsvTable(self.dir / name, header))
        return self.tables[-1]

    def write_config(self, resolved: dict) -> None:
        write_atomic(self.dir / "config.yaml", dump_yaml(resolved, sort_keys=False))  # reads back as written

    def save_params(self, name: str, params: dict[str, np.ndarray]) -> None:
        save_atomic(self.dir / name, lambda f: np.savez(f, **params))

    def on_step(self, rec: StepRecord) -> None:
        """The step's rows in every table; a table is kept only once all of them are written, so a run
        stopped half-way through a step ends every table at the step before."""
        self.metrics.write([rec.metrics()])
        self.grads.write([(rec.step, rec.epoch, *self.param_row(p)) for p in rec.params])
        self.layers.write([(rec.step, *self.layer_row(s)) for s in rec.layers])
        if self.times is not None:
            self.times.write([[rec.step, t.layer, t.t, t.lag, t.grad_norm, getattr(t, "full_grad_norm", t.grad_norm)]
                              for t in rec.times])
            self.gates.write([[rec.step, g.layer, g.gate, g.mean] for g in rec.gates])
        for table in self.tables:
            table.keep()

    def write_summary(self, summary: dict) -> None:
        write_atomic(self.dir / "summary.json", json.dumps(jsonable(summary), indent=2) + "\n")

    def end_summary(self, summary: dict) -> bool:
        """summary.json says ``summary``; when a full disk has no room for the new file, it is rewritten
        in the space the old one holds. False when even that failed (it says what it said before)."""
        try:
            self.write_summary(summary)
            return True
        except NoSpace:
            return overwrite_in_place(self.dir / "summary.json", json.dumps(jsonable(summary)) + "\n")

    def close(self) -> None:
        """Close every table, each cut back to the last step written whole (all of them, unless a write
        failed or Ctrl-C broke one off)."""
        for table in self.tables:
            table.close()


BLOCK = 4096  # a file system block (and a page): text that fits needs no block the file does not hold


def overwrite_in_place(path: Path, text: str) -> bool:
    """Rewrite the existing file ``path`` with ``text`` in place (never through a symlink): on a full
    disk, where no temporary file can be written, a short text still fits in the block the file holds.
    True when it did."""
    data = text.encode("utf-8")
    if len(data) > BLOCK:
        return False
    try:
        fd = os.open(path, os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        whole = os.pwrite(fd, data, 0) == len(data)
        os.ftruncate(fd, len(data))  # shrinking needs no space
        return whole
    except OSError:
        return False
    finally:
        os.close(fd)


def summary_of(result: RunResult, versions: dict) -> dict:
    return {
        "status": result.status,
        "steps": result.steps,
        **result.final,
        "diverged_at": result.diverged_at,
        "diverged_layer": result.diverged_layer,
        "diverged_where": result.diverged_where,
        "stopped_early_at": result.stopped_early_at,
        "best_val_step": result.best_val_step,
        **({"error": result.error} if result.error else {}),
        "wall_time": round(result.wall_time, 3),
        "versions": versions,
    }
