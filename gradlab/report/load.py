"""Read a run folder or a sweep folder back into tables (pandas), for plots and the diagnosis."""
from __future__ import annotations

import csv
import io
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from ..config import Config, ConfigError, parse_yaml, validate
from ..sweep import OLD_SUMMARY_NAMES, layer_norms


@dataclass
class RunData:
    """Everything a run folder holds, as tables. ``layers`` has one row per (step, layer):
    act_mean, act_std, frac_saturated, frac_dead, delta_norm and grad_norm (over the layer's tensors)."""

    dir: Path
    raw: dict  # config.yaml as written (the resolved config)
    config: Config | None  # validated; None when a custom layer's module cannot be found here
    summary: dict  # summary.json ({} for a run killed before it wrote one)
    metrics: pd.DataFrame  # metrics.csv
    grads: pd.DataFrame  # grad_norms.csv: one row per (step, tensor)
    layers: pd.DataFrame
    times: pd.DataFrame | None = None  # time_grad_norms.csv (recurrent runs)
    gates: pd.DataFrame | None = None  # gate_stats.csv (LSTM, GRU)
    init_shapes: dict[str, tuple] | None = None  # params_init.npz: name -> shape (None: no readable file)
    notes: list[str] = field(default_factory=list)  # what was left out of the folder's files, and why

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def recurrent(self) -> bool:
        return self.times is not None and not self.times.empty

    @property
    def layer_ids(self) -> list[int]:
        return sorted(int(l) for l in self.layers.layer.unique())

    @property
    def hidden(self) -> list[int]:
        """Logged layers but the read-out (the last one); all of them for a one-layer net."""
        ids = self.layer_ids
        return ids[:-1] or ids

    @property
    def steps(self) -> list[int]:
        return sorted(int(s) for s in self.layers.step.unique())

    def at(self, step: int) -> pd.DataFrame:
        """The ``layers`` rows of one logged step, by layer (every logged layer: NaN where a row is missing)."""
        return self.layers[self.layers.step == step].set_index("layer").reindex(self.layer_ids)

    def clip_threshold(self) -> float | None:
        clip = (self.raw.get("train") or {}).get("clip")
        return float(clip["threshold"]) if isinstance(clip, dict) and clip.get("mode", "norm") == "norm" else None


@dataclass
class SweepData:
    """A sweep folder: its spec, summary.csv and profile.csv (one run folder per summary row)."""

    dir: Path
    spec: dict  # sweep.yaml (name, base, grid, zip, seeds)
    summary: pd.DataFrame
    profile: pd.DataFrame | None
    notes: list[str] = field(default_factory=list)  # torn last rows left out

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def keys(self) -> list[str]:
        """The swept keys, grid first, in the file's order (then zip, then seed if it varies)."""
        keys = [*(self.spec.get("grid") or {}), *(self.spec.get("zip") or {})]
        if len(self.spec.get("seeds") or [0]) > 1:
            keys.append("seed")
        return [k for k in keys if k in self.summary.columns]



def kind_of(path: str | Path) -> str:
    """'run' or 'sweep'; a ConfigError naming what was expected otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such folder; allowed: a run folder (with metrics.csv) or a sweep folder "
                          "(with summary.csv), as written by gradlab train or gradlab sweep.")
    if (path / "summary.csv").exists() and (path / "sweep.yaml").exists():
        return "sweep"
    if (path / "metrics.csv").exists():
        return "run"
    raise ConfigError(f"{path}: neither a run folder (metrics.csv) nor a sweep folder (summary.csv and sweep.yaml); "
                      "give a folder written by gradlab train or gradlab sweep.")


# the columns the report reads, by file
COLUMNS = {
    "metrics.csv": ("step", "loss", "grad_norm", "clipped"),
    "grad_norms.csv": ("step", "layer", "param", "grad_norm"),
    "layer_stats.csv": ("step", "layer", "act_std", "frac_saturated", "frac_dead", "delta_norm"),
    "time_grad_norms.csv": ("step", "layer", "t", "lag", "grad_norm"),
    "summary.csv": ("status", "run"),
}
# by file: the columns that identify a row (one row per key), whole numbers (their least value), and numbers
# (empty where a value does not apply); a column the file does not have is not checked
KEYS = {"metrics.csv": ("step",), "grad_norms.csv": ("step", "layer", "param"), "layer_stats.csv": ("step", "layer"),
        "time_grad_norms.csv": ("step", "layer", "t"), "gate_stats.csv": ("step", "layer", "gate")}
WHOLE = {"step": 0, "epoch": 0, "layer": 1, "t": 1, "lag": 0}
NUMBERS = {
    "metrics.csv": ("loss", "grad_norm", "grad_norm_clipped", "clipped", "lr", "val_loss", "val_accuracy"),
    "grad_norms.csv": ("grad_norm", "weight_norm"),
    "layer_stats.csv": ("act_mean", "act_std", "frac_saturated", "frac_dead", "delta_norm"),
    "time_grad_norms.csv": ("grad_norm", "full_grad_norm"),
    "gate_stats.csv": ("mean",),
    "summary.csv": ("final_train_loss", "final_train_accuracy", "final_val_loss", "final_val_accuracy",
                    "delta_ratio_at_first_step", "delta_ratio_at_last_step"),
    "profile.csv": ("grad_norm", "delta_norm"),
}


def read_file(path: Path) -> bytes:
    """The bytes of a regular file of the folder. A symbolic link is refused, not followed (gradlab writes
    none, so one was planted: it could show any file of yours in report.html), and so is a FIFO or a device
    (/dev/zero would be read until memory ran out)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        if path.is_symlink():
            raise ConfigError(f"{path}: a symbolic link where gradlab writes a file; the report does not follow "
                              "it (replace it with the file itself).") from None
        raise
    with os.fdopen(fd, "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise ConfigError(f"{path}: not a regular file (a FIFO, a device or a folder); allowed: the file "
                              "as gradlab writes it.")
        return file.read()


def read_table(path: Path, notes: list[str] | None = None) -> pd.DataFrame | None:
    """The whole rows of a gradlab table, checked: a torn last row (a run killed while writing it) is left
    out with a note; a row of the wrong length, a cell that is not a number, a repeated key are a ConfigError."""
    if not path.exists():
        return None
    try:
        text = read_file(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a CSV table written by gradlab ({exc}).") from None
    text, rows, torn = _whole_rows(path, text)
    if torn is not None and notes is not None:
        notes.append(f"{path.name}: line {torn} is incomplete (the run stopped while writing it, e.g. killed or "
                     f"out of disk space); the report leaves it out and reads the {len(rows)} whole rows before it.")
    try:
        frame = pd.read_csv(io.StringIO(text)) if text.strip() else pd.DataFrame()
    except (pd.errors.ParserError, ValueError) as exc:
        raise ConfigError(f"{path}: not a CSV table written by gradlab ({str(exc).strip()}).") from None
    if path.name == "summary.csv":  # a sweep folder written before the columns were renamed
        frame = frame.rename(columns={o: n for o, n in OLD_SUMMARY_NAMES.items() if n not in frame.columns})
    missing = [c for c in COLUMNS.get(path.name, ()) if c not in frame.columns]
    if missing:
        raise ConfigError(f"{path}: not a table written by gradlab: missing column(s) {', '.join(missing)}; "
                          f"allowed: the columns gradlab writes ({', '.join(COLUMNS[path.name])}, ...).")
    return _checked(path, frame, rows)


def _whole_rows(path: Path, text: str) -> tuple[str, list[int], int | None]:
    """(the text without a torn last row, the line number of each data row, the torn line or None).
    The last row is torn when it lacks its newline or has fewer fields than the header."""
    reader = csv.reader(io.StringIO(text))
    try:
        records = [(reader.line_num, row) for row in reader if row]  # pandas skips blank lines too
    except csv.Error as exc:
        raise ConfigError(f"{path}: not a CSV table written by gradlab (line {reader.line_num}: {exc}).") from None
    if len(records) < 2:
        return text, [], None
    width = len(records[0][1])
    torn = None
    if not text.endswith("\n") or len(records[-1][1]) < width:
        torn = records.pop()[0]
        text = text[:text.rstrip("\n").rfind("\n") + 1]
    for n, row in records[1:]:
        if len(row) != width:
            raise ConfigError(f"{path}: line {n} has {len(row)} fields but the header has {width}; allowed: whole "
                              "rows as gradlab writes them (only a torn last row is left out).")
    return text, [n for n, _ in records[1:]], torn


class TableTail:
    """The whole rows appended to a gradlab table since the last ``read``, as mappings of column to value
    (a number, or text where the cell is not one; None where empty). What follows the last newline is
    still being written and is read next time; a row of another length than the header is left out.
    ``read`` returns None when the file got shorter than what was read (it was rewritten): start over."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.header = path, 0, None

    def read(self) -> list[dict] | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0))
        except OSError:  # not there yet (or a link, which is not followed)
            return []
        with os.fdopen(fd, "rb") as file:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                return []
            if info.st_size < self.offset:
                return None
            file.seek(self.offset)
            data = file.read(info.st_size - self.offset)
        whole = data[:data.rfind(b"\n") + 1]
        self.offset += len(whole)
        lines = list(csv.reader(io.StringIO(whole.decode("utf-8", errors="replace"))))
        if self.header is None and lines:
            self.header, lines = lines[0], lines[1:]
        width = len(self.header or ())
        return [dict(zip(self.header, map(_cell, row))) for row in lines if len(row) == width and width]


def _cell(text: str) -> float | str | None:
    if text == "":
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _checked(path: Path, frame: pd.DataFrame, rows: list[int]) -> pd.DataFrame:
    """Numbers where gradlab writes numbers, whole numbers in the key columns, one row per key."""
    line = (lambda i: rows[i]) if len(rows) == len(frame) else (lambda i: i + 2)
    for col in [c for c in (*WHOLE, *NUMBERS.get(path.name, ())) if c in frame.columns]:
        if path.name == "summary.csv" and col in WHOLE:  # its other columns are the sweep's keys
            continue
        values = pd.to_numeric(frame[col], errors="coerce")
        bad = frame[col].notna() & values.isna()
        whole = col in WHOLE
        if whole:
            with np.errstate(invalid="ignore"):
                bad |= ~(np.isfinite(values) & (values == np.round(values)) & (values >= WHOLE[col]))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            cell = frame[col].iloc[i]
            allowed = f"a whole number, at least {WHOLE[col]}" if whole else "a number (empty where it does not apply)"
            what = "empty" if pd.isna(cell) else f"{str(cell)!r}" + ("" if whole else " is not a number")
            raise ConfigError(f"{path}: column {col!r}, line {line(i)}: {what}; allowed: {allowed}, as gradlab "
                              "writes it.")
        frame[col] = values.astype("int64") if whole else values.astype(float)
    keys = [k for k in KEYS.get(path.name, ()) if k in frame.columns]
    if keys and len(frame):
        repeated = np.flatnonzero(frame.duplicated(keys, keep=False).to_numpy())
        if len(repeated):
            first = [frame[k].iloc[repeated[0]] for k in keys]
            twin = next(j for j in repeated[1:] if [frame[k].iloc[j] for k in keys] == first)
            key = ", ".join(f"{k} {v}" for k, v in zip(keys, first))
            raise ConfigError(f"{path}: lines {line(repeated[0])} and {line(twin)} both hold {key}; allowed: one "
                              f"row per ({', '.join(keys)}), as gradlab writes them.")
    return frame


def _yaml(path: Path):
    """The config loader's YAML reading (aliases bounded, YAML 1.2 floats, no duplicate keys) for ``path``."""
    return lambda text: parse_yaml(text, str(path))


def _mapping(path: Path, parse) -> dict:
    """A YAML or JSON file that must hold a mapping; a ConfigError naming the file otherwise."""
    try:
        value = parse(read_file(path).decode("utf-8")) or {}
    except (ValueError, yaml.YAMLError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
        raise ConfigError(f"{path}: not readable as written by gradlab ({str(exc).splitlines()[0]}).") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: should hold a mapping of keys, as gradlab writes it; found {type(value).__name__}.")
    return value


SUMMARY_TYPES = {  # summary.json: what each key the report reads may hold besides null
    "status": (str,), "diverged_where": (str,), "per_step": (bool,),
    "steps": (int,), "diverged_at": (int,), "diverged_layer": (int,),
    "final_train_loss": (int, float), "final_train_accuracy": (int, float), "final_val_loss": (int, float),
    "final_val_accuracy": (int, float), "wall_time": (int, float),
}
TYPE_NAMES = {(str,): "text", (bool,): "true or false", (int,): "a whole number", (int, float): "a number"}


def _summary(path: Path) -> dict:
    """summary.json, each key the report reads of the type gradlab writes (or null)."""
    summary = _mapping(path, json.loads)
    for key, types in SUMMARY_TYPES.items():
        value = summary.get(key)
        if value is not None and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            raise ConfigError(f"{path}: {key!r} is {json.dumps(value)[:60]}; allowed: {TYPE_NAMES[types]} or null, "
                              "as gradlab writes it.")
    return summary


def _init_shapes(path: Path, notes: list[str]) -> dict[str, tuple] | None:
    """The shapes in params_init.npz (plain arrays only, never a pickle); None with a note when unreadable."""
    if not path.exists():
        return None
    try:
        with np.load(io.BytesIO(read_file(path)), allow_pickle=False) as params:
            return {k: tuple(params[k].shape) for k in params.files}
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - not a zip, a member that is not an .npy array, an object array
        notes.append(f"{path.name}: not readable ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                     "the theory table and the update size, which need the initial weights' shapes, are left out.")
        return None


def load_run(path: str | Path) -> RunData:
    """Read a run folder (a killed run's partial files too: a torn last row is left out, with a note)."""
    path = Path(path)
    if kind_of(path) != "run":
        raise ConfigError(f"{path}: a sweep folder, not a run folder; give one of its runs, or report the sweep.")
    raw = {}
    if (path / "config.yaml").exists():
        raw = _mapping(path / "config.yaml", _yaml(path / "config.yaml"))
    notes: list[str] = []
    try:
        config = validate(raw, str(path / "config.yaml"), imports=False) if raw else None  # never imports
    except ConfigError as exc:
        config = None
        notes.append(f"config.yaml left out ({str(exc).rstrip('.')}): the diagnosis reads the tables alone, "
                     "without remedies tied to the config or the theory's prediction.")
    summary = _summary(path / "summary.json") if (path / "summary.json").exists() else {}
    metrics = read_table(path / "metrics.csv", notes)
    grads = read_table(path / "grad_norms.csv", notes)
    stats = read_table(path / "layer_stats.csv", notes)
    layers = pd.DataFrame(columns=["step", "layer", "act_mean", "act_std", "frac_saturated", "frac_dead",
                                   "delta_norm", "grad_norm"])
    if grads is not None and stats is not None and len(grads) and len(stats):
        layers = stats.merge(layer_norms(grads), on=["step", "layer"], how="left")
    return RunData(dir=path, raw=raw, config=config, summary=summary, metrics=metrics,
                   grads=grads if grads is not None else pd.DataFrame(), layers=layers,
                   times=read_table(path / "time_grad_norms.csv", notes),
                   gates=read_table(path / "gate_stats.csv", notes),
                   init_shapes=_init_shapes(path / "params_init.npz", notes), notes=notes)


def load_sweep_dir(path: str | Path) -> SweepData:
    """Read a sweep folder (summary.csv may cover only the runs finished so far)."""
    path = Path(path)
    if kind_of(path) != "sweep":
        raise ConfigError(f"{path}: a run folder, not a sweep folder.")
    spec = _mapping(path / "sweep.yaml", _yaml(path / "sweep.yaml"))
    for key, kind, what in (("grid", dict, "a mapping of keys to lists"), ("zip", dict, "a mapping of keys to lists"),
                            ("seeds", list, "a list of seeds")):
        if spec.get(key) is not None and not isinstance(spec[key], kind):
            raise ConfigError(f"{path / 'sweep.yaml'}: {key!r} holds {type(spec[key]).__name__} "
                              f"{json.dumps(spec[key], default=str)[:40]}; allowed: {what} (or nothing), as gradlab "
                              "sweep writes it.")
    notes: list[str] = []
    sweep = SweepData(dir=path, spec=spec, summary=read_table(path / "summary.csv", notes),
                      profile=read_table(path / "profile.csv", notes), notes=notes)
    for frame in (sweep.summary, sweep.profile):
        for key in sweep.keys:  # a swept null (train.clip: [null, 1.0]) reads back as NaN, which equals nothing
            if frame is not None and key in frame.columns and frame[key].isna().any():
                frame[key] = frame[key].astype(object).where(frame[key].notna(), "null")
    return sweep
