"""Read a run folder or a sweep folder back into tables (pandas), for plots and the diagnosis."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

from ..config import Config, ConfigError, validate
from ..sweep import layer_table


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
        """The ``layers`` rows of one logged step, by layer."""
        return self.layers[self.layers.step == step].sort_values("layer").set_index("layer")

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


def _csv(path: Path) -> pd.DataFrame | None:
    if not path.exists():
        return None
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a CSV table written by gradlab ({exc}).") from None
    missing = [c for c in COLUMNS.get(path.name, ()) if c not in frame.columns]
    if missing:
        raise ConfigError(f"{path}: not a table written by gradlab: missing column(s) {', '.join(missing)}; "
                          f"allowed: the columns gradlab writes ({', '.join(COLUMNS[path.name])}, ...).")
    return frame


def _mapping(path: Path, parse) -> dict:
    """A YAML or JSON file that must hold a mapping; a ConfigError naming the file otherwise."""
    try:
        value = parse(path.read_text(encoding="utf-8")) or {}
    except (ValueError, yaml.YAMLError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
        raise ConfigError(f"{path}: not readable as written by gradlab ({str(exc).splitlines()[0]}).") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: should hold a mapping of keys, as gradlab writes it; found {type(value).__name__}.")
    return value


def load_run(path: str | Path) -> RunData:
    """Read a run folder (a killed run's partial files too)."""
    path = Path(path)
    if kind_of(path) != "run":
        raise ConfigError(f"{path}: a sweep folder, not a run folder; give one of its runs, or report the sweep.")
    raw = {}
    if (path / "config.yaml").exists():
        raw = _mapping(path / "config.yaml", yaml.safe_load)
    try:
        config = validate(raw, str(path / "config.yaml"), imports=False) if raw else None  # never imports
    except ConfigError:
        config = None
    summary = _mapping(path / "summary.json", json.loads) if (path / "summary.json").exists() else {}
    files = {name: (path / name).read_bytes() for name in ("grad_norms.csv", "layer_stats.csv") if (path / name).exists()}
    grads = _csv(path / "grad_norms.csv")
    stats = _csv(path / "layer_stats.csv")
    layers = pd.DataFrame(columns=["step", "layer", "act_mean", "act_std", "frac_saturated", "frac_dead",
                                   "delta_norm", "grad_norm"])
    if grads is not None and stats is not None and len(grads) and len(stats):
        norms = layer_table(files)
        layers = stats.merge(norms[["step", "layer", "grad_norm"]], on=["step", "layer"], how="left")
    return RunData(dir=path, raw=raw, config=config, summary=summary, metrics=_csv(path / "metrics.csv"),
                   grads=grads if grads is not None else pd.DataFrame(), layers=layers,
                   times=_csv(path / "time_grad_norms.csv"), gates=_csv(path / "gate_stats.csv"))


def load_sweep_dir(path: str | Path) -> SweepData:
    """Read a sweep folder (summary.csv may cover only the runs finished so far)."""
    path = Path(path)
    if kind_of(path) != "sweep":
        raise ConfigError(f"{path}: a run folder, not a sweep folder.")
    spec = _mapping(path / "sweep.yaml", yaml.safe_load)
    sweep = SweepData(dir=path, spec=spec, summary=_csv(path / "summary.csv"), profile=_csv(path / "profile.csv"))
    for frame in (sweep.summary, sweep.profile):
        for key in sweep.keys:  # a swept null (train.clip: [null, 1.0]) reads back as NaN, which equals nothing
            if frame is not None and key in frame.columns and frame[key].isna().any():
                frame[key] = frame[key].astype(object).where(frame[key].notna(), "null")
    return sweep
