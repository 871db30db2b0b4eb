"""Sweeps: a grid of runs over dotted config keys, run in worker processes or on a Dask cluster,
ending in one summary.csv (a row per run) and one profile.csv (long format, per layer and step).

Every run executes in a scratch folder of its worker and returns its files; the client writes
them into the sweep folder. Local processes and a Dask cluster (whose workers may not share a
file system with the client) therefore go through the same code, and give the same tables.
"""
from __future__ import annotations

import contextlib
import copy
import difflib
import io
import itertools
import json
import os
import re
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import yaml

from .config import Config, ConfigError, parse_yaml, set_value, validate
from .logging import jsonable

SWEEP_KEYS = ("name", "base", "grid", "zip", "seeds")
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")
RUN_FILES = ("config.yaml", "metrics.csv", "grad_norms.csv", "layer_stats.csv", "time_grad_norms.csv",
             "gate_stats.csv", "params_init.npz", "params_final.npz", "summary.json", "error.txt")


@dataclass
class Combo:
    """One run of a sweep: the swept values, the folder name made from them, and its config."""

    values: dict[str, Any]  # dotted key (and "seed") -> value
    label: str
    config: Config


@dataclass
class Sweep:
    name: str
    base: dict  # the raw base config
    grid: dict[str, list]
    zip: dict[str, list]
    seeds: list[int]
    source: str
    combos: list[Combo] = field(default_factory=list)
    imports: dict = field(default_factory=dict)  # validate()'s folder and allow_imports: where module:Class may come from

    def resolved(self) -> dict:
        return {"name": self.name, "base": self.base, "grid": self.grid, "zip": self.zip, "seeds": self.seeds}


# --------------------------------------------------------------------------- the sweep file

def load_sweep(path: str | Path, overrides: list[str] | tuple[str, ...] = (), allow_imports=()) -> Sweep:
    """Read a sweep file, apply ``--set`` to its base, and validate every combination up front."""
    path = Path(path)
    source = str(path)
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8"), source)
    except FileNotFoundError:
        raise ConfigError(f"{source}: sweep file not found.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot read the sweep file ({exc}).") from None
    return sweep_from_dict(raw, source, path.parent, overrides, allow_imports)


def sweep_from_dict(raw: Any, source: str = "<sweep>", folder: Path = Path("."),
                    overrides: list[str] | tuple[str, ...] = (), allow_imports=()) -> Sweep:
    """Validate a sweep given as data; the base may be a path (relative to ``folder``) or a mapping."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a sweep must be a YAML mapping of keys ({', '.join(SWEEP_KEYS)}).")
    for key in raw:
        if key not in SWEEP_KEYS:
            guess = difflib.get_close_matches(str(key), SWEEP_KEYS, n=1)
            hint = f" Did you mean '{guess[0]}'?" if guess else ""
            raise ConfigError(f"{source}: unknown key '{key}'.{hint} Allowed keys: {', '.join(SWEEP_KEYS)}.")
    base, base_dir = _base(raw.get("base"), source, folder)
    from .config import apply_overrides

    base = apply_overrides(base, list(overrides), source)
    grid = _lists(raw.get("grid") or {}, "grid", source)
    zipped = _lists(raw.get("zip") or {}, "zip", source)
    if len({len(v) for v in zipped.values()}) > 1:
        lengths = ", ".join(f"{k}: {len(v)}" for k, v in zipped.items())
        raise ConfigError(f"{source}: 'zip' lists must have the same length (got {lengths}).")
    both = set(grid) & set(zipped)
    if both:
        raise ConfigError(f"{source}: {', '.join(sorted(both))} is both in 'grid' and in 'zip'; keep it in one.")
    seeds = raw.get("seeds", [base.get("seed", 0)])
    if not (isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0
                                                      for s in seeds)):
        raise ConfigError(f"{source}: 'seeds' must be a non-empty list of whole numbers >= 0, e.g. [0, 1, 2].")
    name = raw.get("name", Path(source).stem if source != "<sweep>" else "sweep")
    if not (isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9_.+=,-]+", name)):
        raise ConfigError(f"{source}: 'name' must be letters, digits and _.+=,- (got {name!r}).")
    sweep = Sweep(name, base, grid, zipped, seeds, source,
                  imports={"folder": str(base_dir), "allow_imports": tuple(map(str, allow_imports))})
    sweep.combos = expand(sweep, base_dir)
    return sweep


def _base(base: Any, source: str, folder: Path) -> tuple[dict, Path]:
    if isinstance(base, str):
        path = (folder / base).resolve()
        try:
            data = parse_yaml(path.read_text(encoding="utf-8"), str(path))
        except FileNotFoundError:
            raise ConfigError(f"{source}: 'base': config file not found: {base} (relative to the sweep file).") \
                from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the config must be a YAML mapping.")
        _absolute_paths(data, path.parent)
        return data, path.parent
    if isinstance(base, dict):
        data = copy.deepcopy(base)
        _absolute_paths(data, folder)
        return data, folder
    raise ConfigError(f"{source}: 'base' must be a path to a train config or an inline config mapping.")


def _absolute_paths(raw: dict, folder: Path) -> None:
    """Data files and custom-layer folders stay found from the sweep folder and from workers."""
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str) and not Path(data["path"]).is_absolute():
        data["path"] = str((folder / data["path"]).resolve())
    model = raw.get("model")
    if isinstance(model, dict) and model.get("import_dir") is None and model.get("kind", "mlp") == "mlp":
        if "layers" in model or ":" in str(model.get("activation", "")):
            model["import_dir"] = str(folder.resolve())


def _lists(mapping: Any, key: str, source: str) -> dict[str, list]:
    if not isinstance(mapping, dict):
        raise ConfigError(f"{source}: '{key}' must map dotted config keys to lists, e.g. "
                          f"{key}: {{model.depth: [5, 10]}}.")
    for k, v in mapping.items():
        if not isinstance(v, list) or not v:
            raise ConfigError(f"{source}: '{key}.{k}' must be a non-empty list of values (got {v!r}).")
    return {str(k): v for k, v in mapping.items()}


def expand(sweep: Sweep, folder: Path = Path(".")) -> list[Combo]:
    """The cross product of the grid, times the zipped lists, times the seeds; each validated."""
    keys = list(sweep.grid)
    zip_rows = [dict(zip(sweep.zip, vals)) for vals in zip(*sweep.zip.values())] if sweep.zip else [{}]
    combos = []
    for vals in itertools.product(*sweep.grid.values()):
        for zrow in zip_rows:
            for seed in sweep.seeds:
                values = {**dict(zip(keys, vals)), **zrow, "seed": seed}
                combos.append(_combo(sweep, values))
    labels = [c.label for c in combos]
    if len(set(labels)) < len(labels):
        raise ConfigError(f"{sweep.source}: two combinations would share the folder name "
                          f"'{next(l for l in labels if labels.count(l) > 1)}'; make the swept values differ.")
    return combos


def _combo(sweep: Sweep, values: dict) -> Combo:
    label = combo_label(values)
    raw = copy.deepcopy(sweep.base)
    for key, value in values.items():
        set_value(raw, key, copy.deepcopy(value), f"{sweep.source}: grid key '{key}'")
    raw["name"] = sweep.name
    return Combo(values, label, validate(raw, f"{sweep.source}: combination {label}", **sweep.imports))


def value_text(value: Any) -> str:
    """A swept value as text: 20, he_normal, normal(std=0.01)."""
    if isinstance(value, dict):
        head_key = next((k for k in ("scheme", "name", "mode") if k in value), None)
        head = value[head_key] if head_key else ""
        rest = ",".join(f"{k}={value_text(v)}" for k, v in value.items() if k != head_key)
        return f"{head}({rest})" if head else f"({rest})"
    if isinstance(value, list):
        return "[" + ",".join(value_text(v) for v in value) + "]"
    return "null" if value is None else str(value)


def combo_label(values: dict) -> str:
    """``depth=20,init=he_normal,seed=0``: the last part of each key, made safe for file systems."""
    short = {k: k.rsplit(".", 1)[-1] for k in values}
    names = {k: (k if list(short.values()).count(s) > 1 else s) for k, s in short.items()}
    text = ",".join(f"{names[k]}={value_text(v)}" for k, v in values.items())
    return re.sub(r"[^A-Za-z0-9_.=,()+-]", "_", text)[:200]


# --------------------------------------------------------------------------- one run (in a worker)

def run_combo(raw_config: dict, label: str, imports: dict | None = None) -> dict:
    """Train one combination in a scratch folder; return its files (name -> bytes) and its status.

    Runs in a worker process or on a Dask worker: nothing here touches the sweep folder.
    """
    from .train import train

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gradlab-") as tmp:
        run_dir = Path(tmp) / label
        try:
            result = train(validate(raw_config, label, **(imports or {})), [], label, write=True, run_dir=run_dir)
            status = result.status
        except Exception:  # noqa: BLE001 - a failing run is recorded and the sweep goes on
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
            status = "failed"
        files = {name: (run_dir / name).read_bytes() for name in RUN_FILES if (run_dir / name).exists()}
    wall = time.perf_counter() - t0
    row, profile = run_tables({}, files, status, wall)  # read here, in parallel, not on the client
    return {"label": label, "status": status, "files": files, "wall_time": wall, "row": row, "profile": profile}


def run_tables(values: dict, files: dict[str, bytes], status: str, worker_time: float) -> tuple[dict, pd.DataFrame]:
    """(summary row, profile rows) of one run from its files; wall time is the run's own if it wrote one."""
    own = json.loads(files.get("summary.json", b"{}") or b"{}").get("wall_time")
    layers = layer_table(files)
    return (summary_row(values, files, status, own if own is not None else worker_time, layers),
            profile_rows(values, files, layers))


def with_values(values: dict, row: dict, profile: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    """A worker's tables, which know nothing of the sweep, with the swept values and the run's name."""
    shown = {k: value_text(v) if isinstance(v, (dict, list)) else v for k, v in values.items()}
    row = {**shown, **{k: v for k, v in row.items() if k not in shown}, "run": combo_label(values)}
    profile = profile.copy()
    for i, (k, v) in enumerate(shown.items()):
        if not profile.empty:
            profile.insert(i, k, v)
    return row, profile


# --------------------------------------------------------------------------- executors

@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Workers started inside inherit one BLAS thread each, so they do not fight over cores."""
    saved = {k: os.environ.get(k) for k in BLAS_THREADS}
    os.environ.update({k: "1" for k in BLAS_THREADS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class LocalExecutor:
    """``workers`` separate processes (spawned, one BLAS thread each)."""

    def __init__(self, workers: int) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))

    def run(self, jobs: list[tuple[dict, str]]) -> Iterator[dict]:
        from concurrent.futures import as_completed

        with one_blas_thread():  # the processes start on demand, while jobs are submitted
            futures = [self.pool.submit(run_combo, *job) for job in jobs]
        for fut in as_completed(futures):
            yield fut.result()

    def close(self, cancel: bool = False) -> None:
        self.pool.shutdown(wait=not cancel, cancel_futures=cancel)


class InlineExecutor:
    """Each run in this process, one after the other (the same files as from a worker)."""

    def run(self, jobs: list[tuple[dict, str]]) -> Iterator[dict]:
        for job in jobs:
            yield run_combo(*job)

    def close(self, cancel: bool = False) -> None:
        pass


class DaskExecutor:
    """Each run is a task on a Dask cluster; each task returns its files (no shared disk needed)."""

    def __init__(self, address: str) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise ConfigError("--scheduler needs Dask distributed: pip install 'gradlab[dask]'.") from None
        try:
            self.client = Client(address, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise ConfigError(f"--scheduler {address}: cannot reach the Dask scheduler ({exc}).") from None

    def run(self, jobs: list[tuple[dict, str]]) -> Iterator[dict]:
        from distributed import as_completed

        futures = [self.client.submit(run_combo, *job, pure=False) for job in jobs]
        self.futures = futures
        for fut in as_completed(futures):
            yield fut.result()

    def close(self, cancel: bool = False) -> None:
        if cancel and getattr(self, "futures", None):
            self.client.cancel(self.futures)
        self.client.close()


# --------------------------------------------------------------------------- tables

SUMMARY_FIELDS = (
    "status", "steps", "final_loss", "final_val_loss", "final_val_accuracy", "grad_norm_first", "grad_norm_last",
    "diverged_at", "wall_time", "run",
    *(f"{which}_hidden_{kind}_norm_{when}" for which in ("first", "last") for when in ("first", "last")
      for kind in ("grad", "delta")),
    *(f"{kind}_ratio_{when}" for kind in ("grad", "delta") for when in ("first", "last")),
)


def summary_row(values: dict, files: dict[str, bytes], status: str, wall_time: float,
                layers: pd.DataFrame | None = None) -> dict:
    """One row of summary.csv from a run's files (``layers``: its ``layer_table``, if already read)."""
    row = {k: value_text(v) if isinstance(v, (dict, list)) else v for k, v in values.items()}
    row.update(status=status, steps=None, final_loss=None, final_val_loss=None, final_val_accuracy=None,
               grad_norm_first=None, grad_norm_last=None, diverged_at=None, wall_time=round(wall_time, 3),
               run=combo_label(values))
    summary = json.loads(files["summary.json"]) if "summary.json" in files else {}
    row["steps"] = summary.get("steps")
    row["final_loss"] = summary.get("final_train_loss")
    row["final_val_loss"] = summary.get("final_val_loss")
    row["final_val_accuracy"] = summary.get("final_val_accuracy")
    row["diverged_at"] = summary.get("diverged_at")
    if "metrics.csv" not in files:
        return row
    metrics = pd.read_csv(io.BytesIO(files["metrics.csv"]))
    if len(metrics):
        row["grad_norm_first"], row["grad_norm_last"] = metrics.grad_norm.iloc[0], metrics.grad_norm.iloc[-1]
    layers = layer_table(files) if layers is None else layers
    if layers is None or layers.empty:
        return row
    hidden = sorted(layers.layer.unique())[:-1] or sorted(layers.layer.unique())
    first_step, last_step = layers.step.min(), layers.step.max()
    for which, layer in (("first", hidden[0]), ("last", hidden[-1])):
        for when, step in (("first", first_step), ("last", last_step)):
            at = layers[(layers.layer == layer) & (layers.step == step)]
            row[f"{which}_hidden_grad_norm_{when}"] = at.grad_norm.iloc[0] if len(at) else None
            row[f"{which}_hidden_delta_norm_{when}"] = at.delta_norm.iloc[0] if len(at) else None
    for kind in ("grad", "delta"):
        for when in ("first", "last"):
            a, b = row[f"first_hidden_{kind}_norm_{when}"], row[f"last_hidden_{kind}_norm_{when}"]
            row[f"{kind}_ratio_{when}"] = a / b if a is not None and b not in (None, 0) else None
    return row


def layer_table(files: dict[str, bytes]) -> pd.DataFrame | None:
    """Per logged step and layer: the layer's gradient norm (over its tensors) and delta_norm."""
    if "grad_norms.csv" not in files or "layer_stats.csv" not in files:
        return None
    grads = pd.read_csv(io.BytesIO(files["grad_norms.csv"]))
    stats = pd.read_csv(io.BytesIO(files["layer_stats.csv"]))
    return layer_norms(grads).merge(stats[["step", "layer", "delta_norm"]], on=["step", "layer"])


def layer_norms(grads: pd.DataFrame) -> pd.DataFrame:
    """(step, layer, grad_norm): the L2 norm over a layer's tensors, from their norms. Each is divided by
    the layer's largest first, so norms of 1e200 are not squared into inf; a NaN tensor makes the layer NaN."""
    keys = ["step", "layer"]
    g = grads.grad_norm.astype(float)
    top = g.groupby([grads.step, grads.layer]).transform("max")
    scale = top.where(np.isfinite(top) & (top > 0), 1.0)
    parts = pd.DataFrame({"step": grads.step, "layer": grads.layer, "sq": (g / scale) ** 2, "scale": scale,
                          "nan": g.isna()})
    per_layer = parts.groupby(keys, as_index=False).agg(sq=("sq", "sum"), scale=("scale", "first"), nan=("nan", "any"))
    per_layer["grad_norm"] = np.where(per_layer.nan, np.nan, per_layer.scale * per_layer.sq ** 0.5)
    return per_layer[[*keys, "grad_norm"]]


def profile_rows(values: dict, files: dict[str, bytes], layers: pd.DataFrame | None = None) -> pd.DataFrame:
    layers = layer_table(files) if layers is None else layers.copy()
    if layers is None:
        return pd.DataFrame()
    for k, v in values.items():
        layers.insert(0, k, value_text(v) if isinstance(v, (dict, list)) else v)
    return layers[[*values, "layer", "step", "grad_norm", "delta_norm"]]


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Replace ``path`` atomically, so an interrupted sweep never leaves half a table."""
    tmp = path.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)


# --------------------------------------------------------------------------- the sweep

@dataclass
class SweepResult:
    dir: Path
    rows: list[dict]
    status: str  # completed or interrupted
    ran: int  # runs executed now (not skipped by --resume)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] != "completed"]


def run_sweep(sweep: Sweep, workers: int | None = None, resume: str | Path | None = None,
              scheduler: str | None = None, observers: list = (), reuse=None) -> SweepResult:
    """Run every combination not completed yet; write run folders, summary.csv and profile.csv.
    ``reuse(folder, combo)`` says which existing run folders stand (default: those that completed);
    ``workers=0`` runs them one after the other in this process (no process start-up: tests, debugging)."""
    from .train import new_run_dir

    out = Path(resume) if resume else new_run_dir(sweep.combos[0].config.log.out, sweep.name, sweep.source)
    (out / "sweep.yaml").write_text(yaml.safe_dump(jsonable(sweep.resolved()), sort_keys=False), encoding="utf-8")
    reuse = reuse or (lambda folder, combo: _completed(folder))
    done = {c.label for c in sweep.combos if reuse(out / c.label, c)}
    todo = [c for c in sweep.combos if c.label not in done]
    for obs in observers:
        if hasattr(obs, "on_start"):
            obs.on_start({"total": len(sweep.combos), "skipped": len(done), "dir": out,
                          "workers": max(workers, 1) if workers is not None else os.cpu_count() or 1})
    tables: dict[str, tuple] = {}
    status, ran, written = "completed", 0, 0.0
    executor = None
    try:
        if todo:
            executor = (DaskExecutor(scheduler) if scheduler else InlineExecutor() if workers == 0
                        else LocalExecutor(workers or os.cpu_count() or 1))
            jobs = [(c.config.resolved(), c.label, sweep.imports) for c in todo]
            values = {c.label: c.values for c in todo}
            for res in executor.run(jobs):
                _write_run(out / res["label"], res["files"])
                tables[res["label"]] = with_values(values[res["label"]], res["row"], res["profile"])
                ran += 1
                if time.perf_counter() - written > 1.0:  # at most once a second; always at the end
                    _write_tables(out, sweep, tables, profile=False)  # profile.csv: at the end
                    written = time.perf_counter()
                for obs in observers:
                    if hasattr(obs, "on_run"):
                        obs.on_run(res)
    except KeyboardInterrupt:
        status = "interrupted"
        if executor is not None:
            executor.close(cancel=True)
            executor = None
    finally:
        if executor is not None:
            executor.close()
    rows = _write_tables(out, sweep, tables)
    result = SweepResult(out, rows, status, ran)
    for obs in observers:
        if hasattr(obs, "on_end"):
            obs.on_end(result)
    return result


def _completed(run: Path) -> bool:
    try:
        return json.loads((run / "summary.json").read_text())["status"] == "completed"
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _write_run(run: Path, files: dict[str, bytes]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    for name in RUN_FILES:  # a rerun replaces the earlier attempt's files (its error.txt, say)
        if name not in files:
            (run / name).unlink(missing_ok=True)
    for name, data in files.items():
        (run / name).write_bytes(data)


def _files_on_disk(run: Path) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in RUN_FILES if (run / name).exists()}


def _write_tables(out: Path, sweep: Sweep, tables: dict[str, tuple], profile: bool = True) -> list[dict]:
    """summary.csv (and profile.csv) over every combination that has a folder, this pass's or an
    earlier one's. ``tables`` holds each run's (row, profile); runs of earlier passes are read once."""
    rows, profiles = [], []
    for combo in sweep.combos:
        if combo.label not in tables:
            run = out / combo.label
            if not (run / "summary.json").exists() and not (run / "error.txt").exists():
                continue
            files = _files_on_disk(run)
            tables[combo.label] = run_tables(combo.values, files, _status_on_disk(files), 0.0)
        row, prof = tables[combo.label]
        rows.append(row)
        profiles.append(prof)
    if rows:
        write_csv(pd.DataFrame(rows), out / "summary.csv")
        frames = [p for p in profiles if not p.empty]
        if profile and frames:
            write_csv(pd.concat(frames, ignore_index=True), out / "profile.csv")
    return rows


def _status_on_disk(files: dict[str, bytes]) -> str:
    if "error.txt" in files:  # train raised: its summary.json, if any, still says "running"
        return "failed"
    if "summary.json" in files:
        return json.loads(files["summary.json"]).get("status", "failed")
    return "failed"


def check_resume_dir(path: str | Path) -> Path:
    path = Path(path)
    if not (path / "sweep.yaml").is_file():
        raise ConfigError(f"--resume {path}: not a sweep folder (it has no sweep.yaml); give the folder a "
                          "sweep wrote, runs/<name>-<YYYYmmdd-HHMMSS>.")
    return path


def load_resume(path: str | Path, overrides: list[str] | tuple[str, ...] = (), allow_imports=()) -> Sweep:
    """The sweep a folder was made from (its sweep.yaml), to finish it."""
    path = check_resume_dir(path)
    try:
        spec = yaml.safe_load((path / "sweep.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        spec = None  # load_sweep says what is wrong with it
    if isinstance(spec, dict) and "trials" in spec:
        raise ConfigError(f"--resume {path}: the remedies tried by gradlab report --try, not a sweep; finish it "
                          f"with gradlab report {path.parent} --try.")
    return load_sweep(path / "sweep.yaml", overrides, allow_imports)

