"""Datasets: synthetic generators drawn from one ``np.random.Generator``, CSV/NPZ loaders,
the train/validation split and standardisation. Bad user files raise ``ConfigError``."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .config import ALPHA_DEFAULTS, ConfigError

MAX_AUTO_CLASSES = 20  # task auto: an integer-valued float target with at most this many values is classification
SPIRAL_TURN = 2.0 * np.pi  # angle swept by each spiral arm from the centre to radius 1
NPZ_EXPECTED = "an .npz archive (numpy.savez) with arrays X (N, D) and y (N,) or (N, K)"
CSV_EXPECTED = "a CSV file with a header row, numeric feature columns and the target column"

Raw = tuple[np.ndarray, np.ndarray, str]  # (X (N, D) float64, y (N,) int64 or (N, K) float64, task)


@dataclass
class Dataset:
    """Train/validation arrays. X: (N, D) float64; y: (N,) int64 labels or (N, K) float64 targets."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    task: str  # "classification" or "regression"
    n_classes: int | None = None  # classification only

    @property
    def n_features(self) -> int:
        """D, the number of input columns."""
        return int(self.X_train.shape[1])

    @property
    def n_outputs(self) -> int:
        """n_classes for classification, K (columns of y) for regression."""
        return int(self.n_classes) if self.task == "classification" else int(self.y_train.shape[1])


# --------------------------------------------------------------------------- synthetic

def _balanced_labels(n: int, n_classes: int) -> np.ndarray:
    """(n,) int64 labels 0..C-1 in blocks whose sizes differ by at most one."""
    counts = n // n_classes + (np.arange(n_classes) < n % n_classes)
    return np.repeat(np.arange(n_classes, dtype=np.int64), counts)


def _block_positions(y: np.ndarray) -> np.ndarray:
    """(n,) position in [0, 1] of every sample inside its block of equal labels (y sorted)."""
    counts = np.bincount(y)
    return np.concatenate([np.linspace(0.0, 1.0, c) for c in counts if c])


def _spirals(cfg: Any, rng: np.random.Generator) -> Raw:
    """C interleaved arms: radius 0..1, angle offset 2*pi*c/C plus one turn; X (N, 2)."""
    y = _balanced_labels(cfg.n_samples, cfg.n_classes)
    r = _block_positions(y)
    t = 2.0 * np.pi * y / cfg.n_classes + SPIRAL_TURN * r + cfg.noise * rng.standard_normal(len(y))
    return np.column_stack([r * np.sin(t), r * np.cos(t)]), y, "classification"


def _moons(cfg: Any, rng: np.random.Generator) -> Raw:
    """Two interleaving half circles (sklearn make_moons) plus Gaussian noise; X (N, 2)."""
    y = _balanced_labels(cfg.n_samples, 2)
    a = np.pi * _block_positions(y)
    outer = np.column_stack([np.cos(a), np.sin(a)])
    inner = np.column_stack([1.0 - np.cos(a), 0.5 - np.sin(a)])
    X = np.where((y == 0)[:, None], outer, inner)
    return X + cfg.noise * rng.standard_normal(X.shape), y, "classification"


def _blobs(cfg: Any, rng: np.random.Generator) -> Raw:
    """C Gaussian clusters with centres ~ N(0, I) and spread `noise`; X (N, n_features)."""
    centres = rng.standard_normal((cfg.n_classes, cfg.n_features))
    y = _balanced_labels(cfg.n_samples, cfg.n_classes)
    return centres[y] + cfg.noise * rng.standard_normal((len(y), cfg.n_features)), y, "classification"


def _xor(cfg: Any, rng: np.random.Generator) -> Raw:
    """U[-1, 1]^2 points, label (x1 > 0) xor (x2 > 0) of the clean point; X (N, 2)."""
    U = rng.uniform(-1.0, 1.0, (cfg.n_samples, 2))
    y = ((U[:, 0] > 0) ^ (U[:, 1] > 0)).astype(np.int64)
    return U + cfg.noise * rng.standard_normal(U.shape), y, "classification"


def _parity(cfg: Any, rng: np.random.Generator) -> Raw:
    """Random bits as -1/+1 floats plus noise, label = parity; X (N, n_features)."""
    bits = rng.integers(0, 2, (cfg.n_samples, cfg.n_features))
    y = (bits.sum(axis=1) % 2).astype(np.int64)
    return 2.0 * bits - 1.0 + cfg.noise * rng.standard_normal(bits.shape), y, "classification"


def _activation(name: str) -> Callable[[np.ndarray], np.ndarray]:
    """Element-wise phi by name (prelu uses its default slope as a fixed slope)."""
    a = ALPHA_DEFAULTS.get(name, 0.0)
    table: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "linear": lambda x: x,
        "sigmoid": lambda x: 0.5 * (1.0 + np.tanh(0.5 * x)),
        "tanh": np.tanh,
        "relu": lambda x: np.maximum(x, 0.0),
        "leaky_relu": lambda x: np.where(x > 0, x, a * x),
        "prelu": lambda x: np.where(x > 0, x, a * x),
        "elu": lambda x: np.where(x > 0, x, a * np.expm1(np.minimum(x, 0.0))),
        "softplus": lambda x: np.logaddexp(0.0, x),
        "softsign": lambda x: x / (1.0 + np.abs(x)),
    }
    return table[name]


def _teacher(cfg: Any, rng: np.random.Generator) -> Raw:
    """X ~ N(0, I) (N, D); y = random bias-free MLP(X) + noise, (N, n_outputs)."""
    phi = _activation(cfg.activation)
    X = rng.standard_normal((cfg.n_samples, cfg.n_features))
    sizes = [cfg.n_features] + [cfg.width] * cfg.depth + [cfg.n_outputs]
    h = X
    for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        h = h @ (rng.standard_normal((fan_in, fan_out)) / np.sqrt(fan_in))
        if i < cfg.depth:
            h = phi(h)
    return X, h + cfg.noise * rng.standard_normal(h.shape), "regression"


# --------------------------------------------------------------------------- user files

def _fail(source: str, key: str, message: str) -> ConfigError:
    """A ConfigError 'source: key: message'."""
    return ConfigError(f"{source}: {key}: {message}")


def _auto_task(y: np.ndarray) -> str:
    """Classification for non-float or few integer-valued float targets, else regression."""
    if y.ndim == 2 and y.shape[1] > 1:
        return "regression"
    if y.dtype.kind != "f":
        return "classification"
    integral = bool(np.all(np.isfinite(y)) and np.all(y == np.round(y)))
    return "classification" if integral and len(np.unique(y)) <= MAX_AUTO_CLASSES else "regression"


def _targets(y: np.ndarray, task: str, what: str, source: str) -> tuple[np.ndarray, str, int | None]:
    """Raw targets (N,) or (N, K) -> (labels (N,) int64 or values (N, K) float64, task, n_classes)."""
    task = _auto_task(y) if task == "auto" else task
    if y.dtype.kind in "fc" and not np.all(np.isfinite(y)):
        raise _fail(source, "data.path", f"{what} has missing (NaN) or infinite values; every row needs a target.")
    if task == "regression":
        if y.dtype.kind not in "biuf":
            held = "text" if y.dtype.kind in "OSU" else str(y.dtype)
            raise _fail(source, "data.task", f"regression needs a numeric target, but {what} holds {held} "
                        "values; use task classification (or auto).")
        y = y.astype(np.float64)
        return (y[:, None] if y.ndim == 1 else y), task, None
    if y.ndim == 2 and y.shape[1] != 1:
        raise _fail(source, "data.task", f"classification needs one label per row, but {what} has shape "
                    f"{y.shape}; use task regression (or auto) for (N, K) targets.")
    classes, labels = np.unique(y.reshape(-1), return_inverse=True)
    if len(classes) < 2:
        raise _fail(source, "data.task", f"classification needs at least 2 distinct labels, but {what} "
                    f"holds only {classes.tolist()}.")
    return labels.astype(np.int64), task, len(classes)


def _features(X: np.ndarray, what: str, source: str) -> np.ndarray:
    """Check a numeric (N, D) matrix with no NaN/inf; return it as float64."""
    X = X.astype(np.float64)
    if not np.all(np.isfinite(X)):
        rows = np.flatnonzero(~np.all(np.isfinite(X), axis=1))
        raise _fail(source, "data.path", f"{what} has missing (NaN) or infinite values in {len(rows)} row(s) "
                    f"(first: data row {rows[0] + 1}, counting from 1); features must be finite numbers.")
    return X


def _existing(path: str, expected: str, source: str) -> Path:
    """The path as a Path if it names a file, else a ConfigError."""
    p = Path(path)
    if not p.exists():
        raise _fail(source, "data.path", f"file not found: {path} (expected {expected}).")
    if not p.is_file():
        raise _fail(source, "data.path", f"{path} is not a file (expected {expected}).")
    return p


def _read_csv(path: str, source: str) -> pd.DataFrame:
    """CSV file -> DataFrame with at least one row, or a ConfigError."""
    p = _existing(path, CSV_EXPECTED, source)
    try:
        frame = pd.read_csv(p)
    except pd.errors.EmptyDataError:
        raise _fail(source, "data.path", f"{path} is empty (expected {CSV_EXPECTED}).") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _fail(source, "data.path", f"cannot read {path} as CSV ({reason}); expected {CSV_EXPECTED}.") from None
    if frame.empty:
        raise _fail(source, "data.path", f"{path} has no data rows (expected {CSV_EXPECTED}).")
    return frame


def _csv(cfg: Any, rng: np.random.Generator, source: str) -> tuple[np.ndarray, np.ndarray, str, int | None]:
    """CSV with a header: feature columns -> X (N, D), column `target` -> y."""
    frame = _read_csv(cfg.path, source)
    columns = [str(c) for c in frame.columns]
    if cfg.target not in columns:
        raise _fail(source, "data.target", f"column {cfg.target!r} not found in {cfg.path}; "
                    f"available columns: {', '.join(columns)}.")
    target = frame.pop(frame.columns[columns.index(cfg.target)])
    if frame.shape[1] == 0:
        raise _fail(source, "data.path", f"{cfg.path} has only the target column {cfg.target!r}; "
                    "at least one numeric feature column is needed.")
    bad = [repr(str(c)) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    if bad:
        raise _fail(source, "data.path", f"feature columns of {cfg.path} must be numeric, but "
                    f"{', '.join(bad)} {'is' if len(bad) == 1 else 'are'} not (only data.target may hold text labels).")
    if target.isna().any():
        raise _fail(source, "data.target", f"column {cfg.target!r} of {cfg.path} has "
                    f"{int(target.isna().sum())} missing value(s); every row needs a target.")
    numeric = pd.api.types.is_numeric_dtype(target)
    y = target.to_numpy() if numeric else target.astype(str).to_numpy(dtype=str)
    X = _features(frame.to_numpy(dtype=np.float64), f"{cfg.path}", source)
    return (X, *_targets(y, cfg.task, f"column {cfg.target!r} of {cfg.path}", source))


def _npz_arrays(path: str, source: str) -> tuple[np.ndarray, np.ndarray]:
    """The X and y arrays of an .npz archive, or a ConfigError."""
    p = _existing(path, NPZ_EXPECTED, source)
    try:
        archive = np.load(p, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any failure to parse means "not an npz"
        raise _fail(source, "data.path", f"{path} is not an .npz archive ({type(exc).__name__}); "
                    f"expected {NPZ_EXPECTED}.") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _fail(source, "data.path", f"{path} is a single .npy array, not an .npz archive; expected {NPZ_EXPECTED}.")
    with archive:
        missing = [k for k in ("X", "y") if k not in archive.files]
        if missing:
            found = ", ".join(archive.files) or "none"
            raise _fail(source, "data.path", f"{path} has no array {' or '.join(missing)} (arrays found: {found}); "
                        f"expected {NPZ_EXPECTED}.")
        try:
            return archive["X"], archive["y"]
        except Exception as exc:  # noqa: BLE001 - pickled object arrays, corrupt members
            raise _fail(source, "data.path", f"cannot read arrays X and y from {path} ({exc}); "
                        "expected plain (non-object) arrays X (N, D) and y (N,) or (N, K).") from None


def _npz(cfg: Any, rng: np.random.Generator, source: str) -> tuple[np.ndarray, np.ndarray, str, int | None]:
    """.npz archive with X (N, D) and y (N,) or (N, K)."""
    X, y = _npz_arrays(cfg.path, source)
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise _fail(source, "data.path", f"array X in {cfg.path} has shape {X.shape} and dtype {X.dtype}; "
                    "expected a 2-D numeric array (N, D).")
    if y.ndim not in (1, 2):
        raise _fail(source, "data.path", f"array y in {cfg.path} has shape {y.shape}; expected (N,) or (N, K).")
    if len(X) != len(y):
        raise _fail(source, "data.path", f"X has {len(X)} rows but y has {len(y)} in {cfg.path}; "
                    "expected the same number of rows N.")
    if len(X) == 0 or X.shape[1] == 0 or (y.ndim == 2 and y.shape[1] == 0):
        raise _fail(source, "data.path", f"{cfg.path} holds empty arrays (X {X.shape}, y {y.shape}); "
                    "expected at least one row and one column.")
    return (_features(X, f"array X in {cfg.path}", source), *_targets(y, cfg.task, f"array y in {cfg.path}", source))


# --------------------------------------------------------------------------- registry, split, scaling

def _synthetic(generate: Callable[[Any, np.random.Generator], Raw]) -> Callable:
    """Adapt a generator to the loader signature, adding n_classes."""
    def load(cfg: Any, rng: np.random.Generator, source: str) -> tuple[np.ndarray, np.ndarray, str, int | None]:
        X, y, task = generate(cfg, rng)
        n_classes = getattr(cfg, "n_classes", 2) if task == "classification" else None
        return X.astype(np.float64), y, task, n_classes
    return load


LOADERS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray, str, int | None]]] = {
    "spirals": _synthetic(_spirals),
    "moons": _synthetic(_moons),
    "blobs": _synthetic(_blobs),
    "xor": _synthetic(_xor),
    "parity": _synthetic(_parity),
    "teacher": _synthetic(_teacher),
    "csv": _csv,
    "npz": _npz,
}


def split(n: int, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled (train_idx, val_idx); round(val_fraction * n) validation rows, at least one train row."""
    order = rng.permutation(n)
    n_val = min(int(round(val_fraction * n)), n - 1)
    return order[n_val:], order[:n_val]


def standardize(X_train: np.ndarray, X_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale both (N, D)/(M, D) by the training mean and std per column (std 0 -> 1)."""
    mean = X_train.mean(axis=0)
    std = X_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return (X_train - mean) / std, (X_val - mean) / std


def load_data(cfg: Any, rng: np.random.Generator, source: str = "<config>") -> Dataset:
    """Build the Dataset for a data config (or a full Config) using only `rng` for randomness."""
    data = getattr(cfg, "data", cfg)
    X, y, task, n_classes = LOADERS[data.kind](data, rng, source)
    train, val = split(len(X), data.val_fraction, rng)
    X_train, X_val = X[train], X[val]
    if data.standardize:
        X_train, X_val = standardize(X_train, X_val)
    return Dataset(X_train, y[train], X_val, y[val], task, n_classes)
