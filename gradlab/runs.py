"""The run folders under a ``log.out`` folder (``runs/`` by default), newest first."""
from __future__ import annotations

from pathlib import Path

DEFAULT_ROOT = Path("runs")  # log.out's default, relative to the current folder


def run_folders(root: str | Path = DEFAULT_ROOT) -> list[Path]:
    """Every folder directly under ``root`` that gradlab wrote a run into (it has a summary.json or a
    config.yaml), newest first (by the time its config.yaml was written)."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if folder.is_symlink() or not folder.is_dir():
            continue
        marker = next((folder / n for n in ("config.yaml", "summary.json") if (folder / n).is_file()), None)
        if marker is not None:
            found.append((marker.stat().st_mtime, folder.name, folder))
    return [folder for _, _, folder in sorted(found, reverse=True)]


def newest_run(root: str | Path = DEFAULT_ROOT) -> Path | None:
    """The run folder under ``root`` started last, or None."""
    folders = run_folders(root)
    return folders[0] if folders else None
