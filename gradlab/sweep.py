"""Sweeps: a grid of runs over dotted config keys, run in worker processes or on a Dask cluster,
ending in one summary.csv (a row per run) and one profile.csv (long format, per layer and step).

Every run executes in a scratch folder of its worker and returns its files; the client writes
them into the sweep folder. Local processes and a Dask cluster (whose workers may not share a
file system with the client) therefore go through the same code, and give the same tables.

Faults end one run, never the sweep: a run whose process dies is ``crashed`` (rerun once by
``--resume``); Ctrl-C or SIGTERM stops the workers at once and keeps every run that came back; a full
disk stops the sweep with the runs written so far whole. Every file is written through gradlab.files.
"""
from __future__ import annotations

import contextlib
import copy
import difflib
import io
import itertools
import json
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd
import yaml

from .config import Config, ConfigError, parse_yaml, read_text, set_value, validate
from .config.yamlfile import dump_yaml
from .errors import interrupts_unwrapped
from .files import NoSpace, no_space, no_space_error, refuse_symlinks, write_atomic
from .logging import jsonable
from .threads import BLAS_VARS as BLAS_THREADS, DEFAULT as DEFAULT_THREADS

SWEEP_KEYS = ("name", "base", "grid", "zip", "seeds")
RUN_FILES = ("config.yaml", "metrics.csv", "grad_norms.csv", "layer_stats.csv", "time_grad_norms.csv",
             "gate_stats.csv", "params_init.npz", "params_final.npz", "summary.json", "error.txt")
SWEEP_FILES = ("sweep.yaml", "summary.csv", "profile.csv")
MAX_CRASHES = 2  # a run whose process died this often is not rerun by --resume
WORKER_FLAG = "GRADLAB_WORKER"  # set for the sweep's worker processes (read by gradlab.boot)
SCHEDULER = re.compile(r"tcp://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})")


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
    overrides: list = field(default_factory=list)  # (KEY.PATH=VALUE, --set KEY.PATH=VALUE): what a problem is blamed on

    def resolved(self) -> dict:
        return {"name": self.name, "base": self.base, "grid": self.grid, "zip": self.zip, "seeds": self.seeds}


# --------------------------------------------------------------------------- the sweep file

def load_sweep(path: str | Path, overrides: list[str] | tuple[str, ...] = (), allow_imports=()) -> Sweep:
    """Read a sweep file, apply ``--set`` to its base, and validate every combination up front."""
    path = Path(path)
    source = str(path)
    if not path.exists() and not path.is_symlink():
        raise ConfigError(f"{source}: sweep file not found.")
    raw = parse_yaml(read_text(path, "sweep"), source)
    return sweep_from_dict(raw, source, path.parent, overrides, allow_imports)


def sweep_from_dict(raw: Any, source: str = "<sweep>", folder: Path = Path("."),
                    overrides: list[str] | tuple[str, ...] = (), allow_imports=()) -> Sweep:
    """Validate a sweep given as data; the base may be a path (relative to ``folder``) or a mapping."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a sweep must be a YAML mapping of keys ({', '.join(SWEEP_KEYS)}).")
    _not_a_train_config(raw, source)
    for key in raw:
        if key not in SWEEP_KEYS:
            guess = difflib.get_close_matches(str(key), SWEEP_KEYS, n=1)
            hint = f" Did you mean '{guess[0]}'?" if guess else ""
            raise ConfigError(f"{source}: unknown key '{key}'.{hint} Allowed keys: {', '.join(SWEEP_KEYS)}.")
    base, base_dir = _base(raw.get("base"), source, folder)
    from .config.overrides import apply_overrides, set_option

    named = [(item, set_option(item)) for item in overrides]
    base = apply_overrides(base, list(overrides), source, [option for _, option in named])
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
                  imports={"folder": str(base_dir), "allow_imports": tuple(map(str, allow_imports))}, overrides=named)
    sweep.combos = expand(sweep, base_dir)
    return sweep


TRAIN_KEYS = ("model", "data", "train", "loss", "log", "check")  # a train config's sections


def _not_a_train_config(raw: dict, source: str) -> None:
    """A train config given to ``gradlab sweep`` is named as such, with the command that runs it."""
    found = [k for k in TRAIN_KEYS if k in raw]
    if found and not any(k in raw for k in ("base", "grid", "zip")):
        name = Path(source).name if source != "<sweep>" else "config.yaml"
        raise ConfigError(f"{source}: a train config (it has {', '.join(found)}), not a sweep file; train it with "
                          f"gradlab train {source}. To sweep it, write a sweep file naming it as its base, e.g. "
                          f"base: {name} and grid: {{model.depth: [5, 10]}} (allowed sweep keys: "
                          f"{', '.join(SWEEP_KEYS)}).")


def _base(base: Any, source: str, folder: Path) -> tuple[dict, Path]:
    if isinstance(base, str):
        if not base.strip():
            raise ConfigError(f"{source}: 'base' is empty; allowed: a path to a train config (relative to the "
                              "sweep file) or an inline config mapping.")
        try:
            path = (folder / base).resolve()
            found, folder_named = path.exists(), path.is_dir()
        except (OSError, ValueError) as exc:  # a NUL byte, a name too long for the file system
            raise ConfigError(f"{source}: 'base': cannot use {base[:80]!r} as a path ({exc.__class__.__name__}: "
                              f"{getattr(exc, 'strerror', None) or exc}); allowed: a path to a train config.") from None
        if not found:
            raise ConfigError(f"{source}: 'base': config file not found: {base} (relative to the sweep file).")
        if folder_named:
            raise ConfigError(f"{source}: 'base': {base} is a folder; allowed: a path to a train config file "
                              "(relative to the sweep file) or an inline config mapping.")
        data = parse_yaml(read_text(path, "base config"), str(path))
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
    return Combo(values, label, validate(raw, f"{sweep.source}: combination {label}", **sweep.imports,
                                         overrides=sweep.overrides))


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
    """``depth=20,init=normal-std=0.01,seed=0``: the last part of each key (the whole key where two end
    alike) and its value, in letters, digits and ``_.,=+-`` only, so a shell takes it without quotes."""
    text = ",".join(f"{k}={label_text(v)}" for k, v in _short_keys(values).items())
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text)[:200]


def label_text(value: Any) -> str:
    """A swept value in a folder name: normal-std=0.01, norm-threshold=1.0+scope=global, 8+16 (a list)."""
    if isinstance(value, dict):
        head_key = next((k for k in ("scheme", "name", "mode") if k in value), None)
        rest = "+".join(f"{k}={label_text(v)}" for k, v in value.items() if k != head_key)
        head = label_text(value[head_key]) if head_key else ""
        return "-".join(part for part in (head, rest) if part)
    if isinstance(value, list):
        return "+".join(label_text(v) for v in value)
    return "null" if value is None else str(value)


def old_combo_label(values: dict) -> str:
    """The folder name sweeps gave a combination before (``init=normal(std=0.01),seed=0``): ``--resume`` of
    a folder written then finds its runs under these names."""
    text = ",".join(f"{k}={value_text(v)}" for k, v in _short_keys(values).items())
    return re.sub(r"[^A-Za-z0-9_.=,()+-]", "_", text)[:200]


def _short_keys(values: dict) -> dict:
    short = {k: k.rsplit(".", 1)[-1] for k in values}
    return {(k if list(short.values()).count(s) > 1 else s): values[k] for k, s in short.items()}


# --------------------------------------------------------------------------- one run (in a worker)

def run_combo(raw_config: dict, label: str, imports: dict | None = None) -> dict:
    """Train one combination in a scratch folder; return its files (name -> bytes) and its status.

    Runs in a worker process or on a Dask worker: nothing here touches the sweep folder. A full scratch
    disk is no failure of the run: it comes back as ``no_space`` (the folder), which stops the sweep.
    """
    from .train import train

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gradlab-") as tmp:
        run_dir = Path(tmp) / label
        try:
            result = train(validate(raw_config, label, **(imports or {})), [], label, write=True, run_dir=run_dir)
            status = result.status
        except Exception as exc:  # noqa: BLE001 - a failing run is recorded and the sweep goes on
            if isinstance(exc, NoSpace) or no_space(exc):
                return {"label": label, "no_space": str(Path(tmp).parent)}
            run_dir.mkdir(parents=True, exist_ok=True)
            (run_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
            if not (run_dir / "summary.json").exists():  # it failed before its folder was written: say why
                summary = {"status": "failed", "error": {"type": type(exc).__name__, "message": str(exc)}}
                (run_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
            status = "failed"
        files = {name: (run_dir / name).read_bytes() for name in RUN_FILES if (run_dir / name).exists()}
    wall = time.perf_counter() - t0
    row, profile = run_tables({}, files, status, wall)  # read here, in parallel, not on the client
    return {"label": label, "status": status, "files": files, "wall_time": wall, "row": row, "profile": profile}


def crashed_run(label: str, reason: str, crashes: int, wall_time: float = float("nan")) -> dict:
    """The result of a run whose process died: a summary.json saying so (and how often) and error.txt."""
    summary = {"status": "crashed", "crashes": crashes, "error": reason}
    files = {"summary.json": (json.dumps(summary, indent=2) + "\n").encode(), "error.txt": (reason + "\n").encode()}
    row, profile = run_tables({}, files, "crashed", wall_time)
    return {"label": label, "status": "crashed", "files": files, "wall_time": wall_time, "row": row,
            "profile": profile}


def run_tables(values: dict, files: dict[str, bytes], status: str, worker_time: float,
               label: str | None = None) -> tuple[dict, pd.DataFrame]:
    """(summary row, profile rows) of one run from its files; wall time is the run's own if it wrote one."""
    own = _summary(files).get("wall_time")
    layers = layer_table(files)
    return (summary_row(values, files, status, own if isinstance(own, (int, float)) else worker_time, layers, label),
            profile_rows(values, files, layers))


def _summary(files: dict[str, bytes]) -> dict:
    """A run's summary.json as a mapping; {} when it is missing or damaged (a torn write, a hand edit)."""
    try:
        summary = json.loads(files.get("summary.json", b"{}") or b"{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return summary if isinstance(summary, dict) else {}


def with_values(values: dict, row: dict, profile: pd.DataFrame, label: str | None = None) -> tuple[dict, pd.DataFrame]:
    """A worker's tables, which know nothing of the sweep, with the swept values and the run's name."""
    shown = shown_values(values)
    row = {"run": combo_label(values) if label is None else label, **shown,
           **{k: v for k, v in row.items() if k not in shown and k != "run"}}
    profile = profile.copy()
    for i, (k, v) in enumerate(shown.items()):
        if not profile.empty:
            profile.insert(i, k, v)
    return row, profile


# --------------------------------------------------------------------------- executors

@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Workers started inside load BLAS on gradlab's default count (one thread), so they do not fight over
    cores; each run then sets its own ``train.threads`` (``gradlab sweep --threads N``: N per worker)."""
    saved = {k: os.environ.get(k) for k in BLAS_THREADS}
    os.environ.update({k: str(DEFAULT_THREADS) for k in BLAS_THREADS})
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def executor_for(workers: int | None, scheduler: str | None):
    """Dask for a scheduler, this process for ``workers=0``, else local worker processes (all cores)."""
    if scheduler:
        return DaskExecutor(scheduler)
    if workers == 0:
        return InlineExecutor()
    return LocalExecutor(workers or os.cpu_count() or 1)


class LocalExecutor:
    """``workers`` spawned processes, one run and one BLAS thread each. A worker that dies takes only
    its own run with it (``crashed``; a new worker takes its place), and every worker ends with its client.

    An executor's ``run(jobs)`` yields one result per job (``run_combo``'s, or ``{"label", "crashed"}``);
    ``close(cancel=True)`` stops the workers at once and returns the results that had come back unread.
    """

    def __init__(self, workers: int) -> None:
        import multiprocessing

        self.ctx = multiprocessing.get_context("spawn")
        self.size = workers
        self.idle: list[_Worker] = []
        self.busy: dict[_Worker, tuple] = {}
        self.scratch = tempfile.mkdtemp(prefix="gradlab-sweep-")  # the runs' scratch folders, removed at close

    def run(self, jobs: list[tuple]) -> Iterator[dict]:
        from multiprocessing.connection import wait

        fn, todo = run_combo, list(reversed(jobs))
        while todo or self.busy:
            while todo and len(self.busy) < self.size:
                worker = self.idle.pop() if self.idle else self._start()
                job = todo.pop()
                worker.send(fn, job)
                self.busy[worker] = job
            wait([w.conn for w in self.busy] + [w.proc.sentinel for w in self.busy])
            for worker, job in list(self.busy.items()):
                res = worker.result(job)
                if res is not None:
                    del self.busy[worker]
                    if "crashed" in res:
                        worker.stop(now=True)
                    else:
                        self.idle.append(worker)
                    yield res

    def _start(self) -> _Worker:
        from multiprocessing import resource_tracker

        # started here, not inside _sigint_held: starting it unblocks SIGINT after (bpo-33613), and the first
        # worker would then start with Ctrl-C open, to die of it inside its interpreter's start-up
        resource_tracker.ensure_running()
        with one_blas_thread(), _as_worker(), _sigint_held():
            return _Worker(self.ctx, self.scratch)

    def close(self, cancel: bool = False) -> list[dict]:
        kept = []
        if cancel:  # runs that finished while the client was not listening are kept, not dropped
            kept = [res for w, job in self.busy.items() if (res := w.result(job, finished=True)) is not None]
        workers = [*self.idle, *self.busy]
        if not cancel:  # all are told first, so they end together
            for worker in workers:
                worker.send(None, ())
        for worker in workers:
            worker.stop(now=cancel)
        self.idle, self.busy = [], {}
        shutil.rmtree(self.scratch, ignore_errors=True)
        return kept


class _Worker:
    """One worker process and the client's end of its pipe."""

    def __init__(self, ctx, scratch: str) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, os.getpid(), scratch), daemon=True)
        self.proc.start()
        child.close()

    def send(self, fn, job: tuple) -> None:
        """A job (``fn(*job)``), or None (``fn`` None): the end."""
        try:
            self.conn.send((fn, job) if fn is not None else None)
        except OSError:  # it died already: its sentinel says so
            pass

    def result(self, job: tuple, finished: bool = False) -> dict | None:
        """The job's result if it came back, a crashed result if the process died, else None."""
        try:
            if self.conn.poll():
                kind, value = self.conn.recv()
                return value if kind == "done" else {"label": job[1], "crashed": value}
        except (EOFError, OSError):
            pass
        if finished or self.proc.is_alive():
            return None
        self.proc.join()
        return {"label": job[1], "crashed": death(self.proc.exitcode)}

    def stop(self, now: bool = False) -> None:
        """Wait up to 5 s for the worker to end once told to (killed at once with ``now``)."""
        if not now:
            self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join()
        self.conn.close()


@contextlib.contextmanager
def _as_worker() -> Iterator[None]:
    """A process started inside is a worker of the gradlab command: gradlab.boot makes a Ctrl-C while it
    still imports end it quietly (a terminal's Ctrl-C reaches the whole process group), and ``_serve``
    then ignores Ctrl-C: the client alone decides what stops."""
    before = os.environ.get(WORKER_FLAG)
    os.environ[WORKER_FLAG] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(WORKER_FLAG, None)
        else:
            os.environ[WORKER_FLAG] = before


@contextlib.contextmanager
def _sigint_held() -> Iterator[None]:
    """SIGINT blocked while a worker starts: the worker inherits the mask (it survives fork and exec), so a
    terminal's Ctrl-C cannot kill it inside its interpreter's start-up, where nothing of gradlab's runs yet
    (``_serve`` ignores SIGINT, then unblocks it); the client's own Ctrl-C waits, pending, and is raised
    here at the unblock, not lost."""
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def death(exitcode: int | None) -> str:
    """How a worker process ended: killed by SIGKILL, or exit code 3."""
    if exitcode is not None and exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"the worker process was killed by {signal.Signals(-exitcode).name}"
        return f"the worker process was killed by signal {-exitcode}"
    return f"the worker process exited with code {exitcode} in the middle of the run"


def _serve(conn, parent: int, scratch: str) -> None:
    """A worker: run each job it is sent and send back the result, until told to stop or orphaned."""
    _end_with(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the client alone decides what stops
    if hasattr(signal, "pthread_sigmask"):  # blocked since the start (_sigint_held): a pending one is dropped
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    tempfile.tempdir = scratch
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        fn, job = msg
        try:
            out = ("done", fn(*job))
        except BaseException:  # noqa: BLE001 - the client records it; this worker goes on
            out = ("error", f"the worker raised: {traceback.format_exc().strip().splitlines()[-1]}")
        conn.send(out)


def _end_with(parent: int) -> None:
    """This process exits when ``parent`` does, kill -9 included: the kernel's parent-death signal on
    Linux, and everywhere a watchdog thread that notices the process was given another parent."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before the signal was asked for
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="gradlab-watchdog", daemon=True).start()


class InlineExecutor:
    """Each run in this process, one after the other (the same files as from a worker)."""

    def run(self, jobs: list[tuple]) -> Iterator[dict]:
        for job in jobs:
            res = run_combo(*job)
            yield res
            if res.get("status") == "interrupted":  # Ctrl-C reached train, which kept the run: stop here
                raise KeyboardInterrupt

    def close(self, cancel: bool = False) -> list[dict]:
        return []


def check_scheduler(address: str) -> str:
    """``tcp://HOST:PORT``, or a ConfigError saying so."""
    m = SCHEDULER.fullmatch(address)
    if not (m and 0 < int(m.group(2)) < 65536):
        raise ConfigError(f"--scheduler {address}: not a Dask scheduler address; allowed: tcp://HOST:PORT "
                          "(e.g. tcp://10.0.0.5:8786), as printed by dask scheduler.")
    return address


class DaskExecutor:
    """Each run is a task on a Dask cluster; each task returns its files (no shared disk needed). A task
    whose worker died (KilledWorker) is a crashed run; a lost scheduler stops the sweep (exit 2)."""

    def __init__(self, address: str) -> None:
        check_scheduler(address)
        try:
            from distributed import Client
        except ImportError:
            raise ConfigError("--scheduler needs Dask distributed: pip install 'gradlab[dask]'.") from None
        self.address = address
        try:
            self.client = Client(address, timeout="2s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise ConfigError(f"--scheduler {address}: cannot reach the Dask scheduler ({exc}).") from None
        self.futures: dict = {}
        logging.getLogger("distributed.client").addFilter(_no_traceback)

    def run(self, jobs: list[tuple]) -> Iterator[dict]:
        from distributed import as_completed

        fn = run_combo
        self.futures = {self.client.submit(fn, *job, pure=False): job for job in jobs}
        for fut in as_completed(list(self.futures)):
            try:
                res = fut.result()
            except Exception as exc:  # noqa: BLE001 - one task's failure, or the cluster's
                res = self._failure(self.futures[fut], exc)
            yield res

    def _failure(self, job: tuple, exc: Exception) -> dict:
        said = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        if self.client.status != "running":
            raise ConfigError(f"--scheduler {self.address}: lost the Dask scheduler ({said}); the runs that came "
                              "back are kept: --resume the sweep folder to run the rest.") from None
        return {"label": job[1], "crashed": said}

    def close(self, cancel: bool = False) -> list[dict]:
        with contextlib.suppress(Exception):
            if cancel and self.futures:
                self.client.cancel(list(self.futures))
            self.client.close(timeout=2)
        logging.getLogger("distributed.client").removeFilter(_no_traceback)
        return []


def _no_traceback(record: logging.LogRecord) -> bool:
    """Dask's client logs a lost connection as a traceback; the sweep says it in one line instead."""
    return record.exc_info is None


# --------------------------------------------------------------------------- tables

STEP_FIELDS = (  # the first and last logged step, the first and last hidden layer
    *(f"{which}_layer_{kind}_norm_at_{when}_step" for which in ("first", "last") for kind in ("grad", "delta")
      for when in ("first", "last")),
    *(f"{kind}_ratio_at_{when}_step" for kind in ("grad", "delta") for when in ("first", "last")),
)
SUMMARY_FIELDS = (  # after ``run`` and the swept keys
    "status", "steps", "final_train_loss", "final_train_accuracy", "final_val_loss", "final_val_accuracy",
    "diverged_at", "wall_time", "grad_norm_at_first_step", "grad_norm_at_last_step", *STEP_FIELDS, "error",
)
# then the config values that were not swept, so rows of sweeps put together stay readable; a column empty
# in every row (model.hidden of an MLP sweep, model.depth of a recurrent one) is left out
CONFIG_FIELDS = ("model.kind", "model.depth", "model.width", "model.hidden", "model.num_layers", "model.cell",
                 "model.activation", "model.init", "model.batchnorm", "model.residual", "train.optimizer",
                 "train.lr", "train.batch_size", "train.steps", "train.clip", "data.kind")
OLD_SUMMARY_NAMES = {  # summary.csv's names before: report/load.py reads old sweep folders with these
    "final_loss": "final_train_loss", "grad_norm_first": "grad_norm_at_first_step",
    "grad_norm_last": "grad_norm_at_last_step",
    **{f"{which}_hidden_{kind}_norm_{when}": f"{which}_layer_{kind}_norm_at_{when}_step"
       for which in ("first", "last") for kind in ("grad", "delta") for when in ("first", "last")},
    **{f"{kind}_ratio_{when}": f"{kind}_ratio_at_{when}_step" for kind in ("grad", "delta") for when in ("first", "last")},
}


def summary_row(values: dict, files: dict[str, bytes], status: str, wall_time: float,
                layers: pd.DataFrame | None = None, label: str | None = None) -> dict:
    """One row of summary.csv from a run's files (``layers``: its ``layer_table``, if already read)."""
    row = {"run": combo_label(values) if label is None else label, **shown_values(values)}
    figures = dict.fromkeys(SUMMARY_FIELDS)
    figures.update(status=status, wall_time=round(wall_time, 3))
    summary = _summary(files)
    if status in ("crashed", "failed"):
        error = summary.get("error")
        figures["error"] = f"{error.get('type')}: {error.get('message')}" if isinstance(error, dict) else error
    for key in ("steps", "final_train_loss", "final_train_accuracy", "final_val_loss", "final_val_accuracy",
                "diverged_at"):
        figures[key] = summary.get(key)
    if "metrics.csv" in files:
        figures.update(_step_figures(files, layers, figures))
    config = _config(files)
    row.update({k: v for k, v in figures.items() if k not in row})
    row.update({k: _config_value(config, k) for k in CONFIG_FIELDS if k not in row})
    return row


def shown_values(values: dict) -> dict:
    """The swept values as summary.csv shows them: 20, he_normal, normal(std=0.01)."""
    return {k: value_text(v) if isinstance(v, (dict, list)) else v for k, v in values.items()}


def _step_figures(files: dict[str, bytes], layers: pd.DataFrame | None, figures: dict) -> dict:
    """The global gradient norm and the first/last hidden layer's norms at the first and last logged step."""
    found: dict = {}
    metrics = pd.read_csv(io.BytesIO(files["metrics.csv"]))
    if len(metrics):
        found["grad_norm_at_first_step"] = metrics.grad_norm.iloc[0]
        found["grad_norm_at_last_step"] = metrics.grad_norm.iloc[-1]
        if figures.get("final_train_accuracy") is None and "train_accuracy" in metrics:
            last = metrics.train_accuracy.dropna()
            found["final_train_accuracy"] = last.iloc[-1] if len(last) else None
    layers = layer_table(files) if layers is None else layers
    if layers is None or layers.empty:
        return found
    hidden = sorted(layers.layer.unique())[:-1] or sorted(layers.layer.unique())
    first_step, last_step = layers.step.min(), layers.step.max()
    for which, layer in (("first", hidden[0]), ("last", hidden[-1])):
        for when, step in (("first", first_step), ("last", last_step)):
            at = layers[(layers.layer == layer) & (layers.step == step)]
            for kind in ("grad", "delta"):
                found[f"{which}_layer_{kind}_norm_at_{when}_step"] = at[f"{kind}_norm"].iloc[0] if len(at) else None
    for kind in ("grad", "delta"):
        for when in ("first", "last"):
            a, b = found[f"first_layer_{kind}_norm_at_{when}_step"], found[f"last_layer_{kind}_norm_at_{when}_step"]
            with np.errstate(invalid="ignore", over="ignore"):  # inf / inf of a diverged run is NaN, said as such
                found[f"{kind}_ratio_at_{when}_step"] = a / b if a is not None and b not in (None, 0) else None
    return found


def _config(files: dict[str, bytes]) -> dict:
    """A run's config.yaml as a mapping; {} when it is missing or unreadable."""
    try:
        config = yaml.safe_load(files.get("config.yaml", b"") or b"")
    except (yaml.YAMLError, UnicodeDecodeError):
        return {}
    return config if isinstance(config, dict) else {}


def _config_value(config: dict, key: str) -> Any:
    """``model.init`` of a config: xavier_normal(gain=1.0); None where the config has no such key."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    if isinstance(node, dict):
        node = {k: v for k, v in node.items() if v is not None}
        text = value_text(node)
        return text.removesuffix("()")
    return value_text(node) if isinstance(node, list) or node is None else node


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


def summary_frame(rows: list[dict]) -> pd.DataFrame:
    """summary.csv: ``run``, the swept keys, SUMMARY_FIELDS, then the config values not swept (those
    empty in every row left out)."""
    frame = pd.DataFrame(rows)
    swept = list(dict.fromkeys(k for row in rows for k in itertools.takewhile(lambda k: k != "status", row)
                               if k != "run"))  # each row: run, its swept values, status, ...
    config = [k for k in CONFIG_FIELDS if k in frame.columns and k not in swept and frame[k].notna().any()]
    return frame[["run", *swept, *[k for k in SUMMARY_FIELDS if k in frame.columns], *config]]


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Replace ``path`` atomically, so an interrupted sweep never leaves half a table. Floats with 10
    significant digits (what a spreadsheet shows; 17 only repeat the float's noise)."""
    write_atomic(path, frame.to_csv(index=False, float_format="%.10g"))


# --------------------------------------------------------------------------- the sweep

@dataclass
class SweepResult:
    dir: Path
    rows: list[dict]
    status: str  # completed or interrupted
    ran: int  # runs executed now (not skipped by --resume)
    signal: int | None = None  # what interrupted it: SIGINT (Ctrl-C) or SIGTERM

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.rows if r["status"] != "completed"]

    @property
    def exit_code(self) -> int:
        """0, or 128 + the signal that interrupted the sweep (130 for Ctrl-C, 143 for SIGTERM)."""
        return 0 if self.status == "completed" else 128 + (self.signal or signal.SIGINT)


def run_sweep(sweep: Sweep, workers: int | None = None, resume: str | Path | None = None,
              scheduler: str | None = None, observers: list = (), reuse=None) -> SweepResult:
    """Run every combination not finished yet; write run folders, summary.csv and profile.csv.
    ``reuse(folder, combo)`` says which existing run folders stand (default: those that completed, and
    those that crashed twice); ``workers=0`` runs them one after the other in this process (no process
    start-up: tests, debugging). Ctrl-C or SIGTERM stops the workers at once: status interrupted."""
    if scheduler:
        check_scheduler(scheduler)
    out = Path(resume) if resume else None
    if out is not None:  # refused before anything runs: a planted link, a folder that cannot be written
        check_outputs(out, sweep)
        _check_writable(out)
    reuse = reuse or _reusable
    todo = [c for c in sweep.combos if out is None or not reuse(out / c.label, c)]
    executor = executor_for(workers, scheduler) if todo else None  # a scheduler is reached before a folder is made
    stops: list[int] = []
    sweep_pass = None
    try:
        with _stop_signals(stops):
            resumed, out = out is not None, out or _new_folder(sweep)
            _write_spec(out, sweep, resumed)
            sweep_pass = _Pass(out, sweep, todo)
            for obs in observers:
                if hasattr(obs, "on_start"):
                    obs.on_start({"total": len(sweep.combos), "skipped": len(sweep.combos) - len(todo), "dir": out,
                                  "workers": max(workers, 1) if workers is not None else os.cpu_count() or 1})
            try:
                if executor is not None:
                    with interrupts_unwrapped():
                        sweep_pass.run(executor, todo, observers)
            except KeyboardInterrupt:
                sweep_pass.status = "interrupted"
                kept, executor = executor.close(cancel=True) if executor is not None else (), None
                for res in kept or ():
                    sweep_pass.keep(res)
            if executor is not None:
                executor.close()
                executor = None
            rows = sweep_pass.write()
    except BaseException:
        if executor is not None:
            executor.close(cancel=True)
        if sweep_pass is not None:  # summary.csv lists every run written so far (it is whole either way)
            with contextlib.suppress(ConfigError, OSError):
                sweep_pass.write()
        raise
    result = SweepResult(out, rows, sweep_pass.status, sweep_pass.ran,
                         (stops[-1] if stops else signal.SIGINT) if sweep_pass.status == "interrupted" else None)
    for obs in observers:
        if hasattr(obs, "on_end"):
            obs.on_end(result)
    return result


class _Pass:
    """One pass over a sweep's runs: each result is written to its folder as it comes back, and
    summary.csv follows (at most once a second, and at the end)."""

    def __init__(self, out: Path, sweep: Sweep, todo: list[Combo]) -> None:
        self.out, self.sweep = out, sweep
        self.values = {c.label: c.values for c in todo}
        self.crashes = {c.label: _crashes(out / c.label) for c in todo}
        self.tables: dict[str, tuple] = {}
        self.status, self.ran, self.written = "completed", 0, 0.0

    def run(self, executor, todo: list[Combo], observers) -> None:
        for res in executor.run([(c.config.resolved(), c.label, self.sweep.imports) for c in todo]):
            res = self.keep(res)
            for obs in observers:
                if hasattr(obs, "on_run"):
                    obs.on_run(res)

    def keep(self, res: dict) -> dict:
        if "no_space" in res:  # the workers' scratch folder filled up
            raise no_space_error(res["no_space"])
        if "crashed" in res:
            res = crashed_run(res["label"], res["crashed"], self.crashes[res["label"]] + 1,
                              res.get("wall_time", float("nan")))
        label = res["label"]
        with _writing(self.out):
            _write_run(self.out / label, res["files"])
        self.tables[label] = with_values(self.values[label], res["row"], res["profile"], label)
        self.ran += 1
        if time.perf_counter() - self.written > 1.0:
            self.write(profile=False)  # profile.csv: at the end
            self.written = time.perf_counter()
        return res

    def write(self, profile: bool = True) -> list[dict]:
        with _writing(self.out):
            return _write_tables(self.out, self.sweep, self.tables, profile)


def _new_folder(sweep: Sweep) -> Path:
    from .train import new_run_dir

    return new_run_dir(sweep.combos[0].config.log.out, sweep.name, sweep.source)


def _write_spec(out: Path, sweep: Sweep, resumed: bool) -> None:
    """sweep.yaml: a resumed sweep's own is never rewritten (its runs were made from it); the remedies of
    report --try (``trials``) follow the diagnosis, so theirs is."""
    spec = jsonable(sweep.resolved())
    if resumed and (out / "sweep.yaml").exists() and "trials" not in spec:
        return
    with _writing(out):
        write_atomic(out / "sweep.yaml", dump_yaml(spec, sort_keys=False))  # reads back as written


@contextlib.contextmanager
def _stop_signals(stops: list[int]) -> Iterator[None]:
    """SIGTERM ends the sweep as Ctrl-C does (``stops`` records it); only the main thread can catch it,
    and a SIGTERM the caller ignores (nohup, a job control that masks it) stays ignored."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) == signal.SIG_IGN:
        yield
        return

    def stop(signum, frame):
        stops.append(signum)
        if callable(old):  # the command's own handler: it records the signal for the exit status, and raises
            old(signum, frame)
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old if old is not None else signal.SIG_DFL)


@contextlib.contextmanager
def _writing(out: Path) -> Iterator[None]:
    """A full disk, or a folder that cannot be written, is one clear error naming the sweep folder."""
    try:
        yield
    except NoSpace:
        raise no_space_error(out) from None
    except OSError as exc:
        if no_space(exc):
            raise no_space_error(out) from None
        raise ConfigError(f"{out}: cannot write into the sweep folder ({exc.strerror or exc}); allowed: a folder "
                          "you can write to (copy the sweep folder and resume the copy).") from None


def check_outputs(out: Path, sweep: Sweep) -> None:
    """ConfigError when an output name of the sweep folder, or of a run folder in it, is a symlink."""
    refuse_symlinks(out, [*SWEEP_FILES, *(c.label for c in sweep.combos)])
    for combo in sweep.combos:
        if (out / combo.label).is_dir():
            refuse_symlinks(out / combo.label, RUN_FILES)


def _check_writable(out: Path) -> None:
    with _writing(out):
        fd, probe = tempfile.mkstemp(dir=out, prefix=".gradlab-", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)


def _reusable(run: Path, combo: Combo | None = None) -> bool:
    """A run that completed stands; so does one whose process died twice (rerunning it would crash again)."""
    return _completed(run) or _crashes(run) >= MAX_CRASHES


def _on_disk(run: Path) -> dict:
    try:
        return _summary({"summary.json": (run / "summary.json").read_bytes()})
    except OSError:
        return {}


def _completed(run: Path) -> bool:
    return _on_disk(run).get("status") == "completed" and not (run / "error.txt").exists()


def _crashes(run: Path) -> int:
    summary = _on_disk(run)
    crashes = summary.get("crashes", 0) if summary.get("status") == "crashed" else 0
    return crashes if isinstance(crashes, int) else 0


def _write_run(run: Path, files: dict[str, bytes]) -> None:
    """The run's files, each whole, summary.json last: a folder without it is rerun by --resume."""
    refuse_symlinks(run.parent, [run.name])
    run.mkdir(exist_ok=True)
    refuse_symlinks(run, RUN_FILES)
    (run / "summary.json").unlink(missing_ok=True)
    for name in RUN_FILES:  # a rerun replaces the earlier attempt's files (its error.txt, say)
        if name not in files:
            (run / name).unlink(missing_ok=True)
    for name in sorted(files, key=lambda n: n == "summary.json"):
        write_atomic(run / name, files[name])


def _files_on_disk(run: Path) -> dict[str, bytes]:
    return {name: (run / name).read_bytes() for name in RUN_FILES if (run / name).is_file()}


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
            tables[combo.label] = run_tables(combo.values, files, _status_on_disk(files), 0.0, combo.label)
        row, prof = tables[combo.label]
        rows.append(row)
        profiles.append(prof)
    if rows:
        write_csv(summary_frame(rows), out / "summary.csv")
        frames = [p for p in profiles if not p.empty]
        if profile and frames:
            write_csv(pd.concat(frames, ignore_index=True), out / "profile.csv")
    return rows


def _status_on_disk(files: dict[str, bytes]) -> str:
    status = _summary(files).get("status")
    if status == "crashed":
        return "crashed"
    if "error.txt" in files:  # train raised: its summary.json, if any, still says "running"
        return "failed"
    return status if status in ("completed", "diverged", "interrupted") else "failed"


def check_resume_dir(path: str | Path) -> Path:
    path = Path(path)
    if not (path / "sweep.yaml").is_file():
        raise ConfigError(f"--resume {path}: not a sweep folder (it has no sweep.yaml); give the folder a "
                          "sweep wrote, runs/<name>-<YYYYmmdd-HHMMSS>.")
    return path


def load_resume(path: str | Path, overrides: list[str] | tuple[str, ...] = (), allow_imports=()) -> Sweep:
    """The sweep a folder was made from (its sweep.yaml, never changed), to finish it."""
    if overrides:
        raise ConfigError(f"--resume {path}: --set cannot change a sweep being resumed: its runs so far were made "
                          "from the base in its sweep.yaml, and the rest must be too; start a new sweep with --set "
                          "instead.")
    path = check_resume_dir(path)
    refuse_symlinks(path, SWEEP_FILES)
    try:
        spec = yaml.safe_load((path / "sweep.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        spec = None  # load_sweep says what is wrong with it
    if isinstance(spec, dict) and "trials" in spec:
        raise ConfigError(f"--resume {path}: the remedies tried by gradlab report --try, not a sweep; finish it "
                          f"with gradlab report {path.parent} --try.")
    sweep = load_sweep(path / "sweep.yaml", allow_imports=allow_imports)
    keep_old_names(path, sweep)
    return sweep


def keep_old_names(path: Path, sweep: Sweep) -> None:
    """A run folder written under the name sweeps gave it before (``init=normal(std=0.01),seed=0``) is that
    combination's folder still: resume reuses it (or reruns into it), and summary.csv names it so."""
    for combo in sweep.combos:
        old = old_combo_label(combo.values)
        if old != combo.label and not (path / combo.label).exists() and (path / old).is_dir():
            combo.label = old
