"""The run folders under a ``log.out`` folder (``runs/`` by default) and in its sweep folders, newest first,
and what each one says (``gradlab runs``). Light: json and pathlib only, so the command line imports it at start."""
from __future__ import annotations

import json
import time
from pathlib import Path

DEFAULT_ROOT = Path("runs")  # log.out's default, relative to the current folder
SILENT = 60.0  # seconds without a write after which a run whose summary.json says running is called unfinished
DIAGNOSIS_BUDGET = 5.0  # seconds of diagnosing a listing may spend; the runs after that show their status
DIAGNOSIS_BYTES = 20_000_000  # a run whose tables are larger than this is not read for a verdict
TABLES = ("metrics.csv", "grad_norms.csv", "layer_stats.csv", "time_grad_norms.csv", "gate_stats.csv")


def _started(root: Path) -> list[tuple[float, str, Path]]:
    """(when it started, name, folder) of each run folder directly under ``root``: it has a config.yaml or a
    summary.json (the time its config.yaml, else its summary.json, was written)."""
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if folder.is_symlink() or not folder.is_dir():
            continue
        marker = next((folder / n for n in ("config.yaml", "summary.json") if (folder / n).is_file()), None)
        if marker is not None:
            found.append((marker.stat().st_mtime, folder.name, folder))
    return found


def run_folders(root: str | Path = DEFAULT_ROOT) -> list[Path]:
    """Every folder directly under ``root`` that gradlab wrote a run into (it has a summary.json or a
    config.yaml), newest first (by the time its config.yaml was written)."""
    return [folder for _, _, folder in sorted(_started(Path(root)), reverse=True)]


def sweep_folders(root: str | Path = DEFAULT_ROOT) -> list[Path]:
    """Every sweep folder directly under ``root`` (it has a sweep.yaml; its runs are folders inside it)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(folder for folder in root.iterdir()
                  if not folder.is_symlink() and folder.is_dir() and (folder / "sweep.yaml").is_file())


def listed_runs(root: str | Path = DEFAULT_ROOT) -> list[tuple[str, Path]]:
    """(name, folder) of every run under ``root``: its own run folders (named as they are) and the runs in its
    sweep folders (named SWEEP/RUN), newest first."""
    root = Path(root)
    found = [(started, folder.name, folder) for started, _, folder in _started(root)]
    for sweep in sweep_folders(root):
        found += [(started, f"{sweep.name}/{folder.name}", folder) for started, _, folder in _started(sweep)]
    return [(name, folder) for _, name, folder in sorted(found, reverse=True)]


def newest_run(root: str | Path = DEFAULT_ROOT) -> Path | None:
    """The run folder under ``root`` started last, or None."""
    folders = run_folders(root)
    return folders[0] if folders else None


def summary_of(folder: Path) -> dict:
    """summary.json as a dict ({} when it is missing or unreadable: a run killed before writing it)."""
    try:
        data = json.loads((folder / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def last_write(folder: Path) -> float:
    """When the run last wrote one of its files (seconds since the epoch)."""
    times = [p.stat().st_mtime for p in folder.iterdir() if p.is_file()] if folder.is_dir() else []
    return max(times, default=0.0)


def status_of(folder: Path, summary: dict, now: float | None = None) -> str:
    """summary.json's status; ``unfinished`` for one that says running but has written nothing for a minute
    (killed, or stalled), and for a folder without a summary.json."""
    status = summary.get("status")
    if not isinstance(status, str):
        return "unfinished"
    if status == "running" and (now or time.time()) - last_write(folder) > SILENT:
        return "unfinished"
    return status


def logged_steps(folder: Path) -> int | None:
    """The steps metrics.csv holds so far: its last whole row's step + 1 (None without a row). Only its end is
    read; a row being written (no line end yet) is not counted."""
    try:
        with open(folder / "metrics.csv", "rb") as file:
            size = file.seek(0, 2)
            file.seek(max(0, size - 65536))
            tail = file.read()
    except OSError:
        return None
    for line in reversed(tail[:tail.rfind(b"\n") + 1].splitlines()):
        try:
            return int(line.split(b",", 1)[0]) + 1
        except ValueError:  # the header (or a row cut by the read's start): no row after it
            return None
    return None


def table_bytes(folder: Path) -> int:
    return sum((folder / name).stat().st_size for name in TABLES if (folder / name).is_file())


def verdict_of(folder: Path, status: str) -> str | None:
    """The kind of the diagnosis' first finding (vanishing, exploding, healthy, ...), or None when the run
    cannot be diagnosed (still running, unfinished, nothing logged, tables too large to read at once)."""
    if status in ("running", "unfinished") or not 0 < table_bytes(folder) <= DIAGNOSIS_BYTES:
        return None
    from .report import diagnose_dir  # pandas: only once a run is worth diagnosing

    try:
        findings = diagnose_dir(folder)
    except Exception:  # noqa: BLE001 - a folder the report cannot read shows its status instead
        return None
    return findings[0].kind if findings else None


def final_loss(summary: dict) -> float | None:
    value = summary.get("final_train_loss")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def list_runs(root: str | Path = DEFAULT_ROOT, budget: float = DIAGNOSIS_BUDGET) -> list[dict]:
    """One row per run under ``root`` (its run folders and those in its sweep folders, named SWEEP/RUN),
    newest first: run, path, status, steps (summary.json's; the steps logged so far for a run still running
    or unfinished, whose summary.json says 0), final_train_loss and verdict (the diagnosis' first finding,
    while ``budget`` seconds of diagnosing last; else the status), with verdict_from saying which."""
    rows, start = [], time.perf_counter()
    for name, folder in listed_runs(root):
        summary = summary_of(folder)
        status = status_of(folder, summary)
        kind = verdict_of(folder, status) if time.perf_counter() - start < budget else None
        steps = summary.get("steps")
        if status in ("running", "unfinished"):
            logged = logged_steps(folder)
            steps = logged if logged is not None else steps
        rows.append({"run": name, "path": str(folder), "status": status,
                     "steps": steps if isinstance(steps, int) and not isinstance(steps, bool) else None,
                     "final_train_loss": final_loss(summary), "verdict": kind or status,
                     "verdict_from": "diagnosis" if kind else "status"})
    return rows
