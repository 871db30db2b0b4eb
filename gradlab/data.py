"""Datasets: synthetic generators drawn from one ``np.random.Generator``, CSV/NPZ loaders,
the train/validation split and standardisation. Bad user files raise ``ConfigError``.

Sequence tasks (adding, copy, temporal_order, parity with ``T``, an npz with a 3-D X) give
X of shape (N, T, F); their targets are per sequence (answered at the last step: (N,) labels or
(N, K) values) or, with ``Dataset.per_step``, one class label per step: (N, T).

Image sets (shapes, digits, images: readers in ``gradlab.images``) give X (N, H, W, C) (NHWC) with
``Dataset.image``; their labels are (N,)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .config import ALPHA_DEFAULTS, ConfigError
from .config.overrides import SET_BY, written_by

MAX_AUTO_CLASSES = 20  # task auto: an integer-valued float target with at most this many values is classification
SPIRAL_TURN = 2.0 * np.pi  # angle swept by each spiral arm from the centre to radius 1
NPZ_EXPECTED = ("an .npz archive (numpy.savez) with arrays X (N, D) and y (N,) or (N, K), "
                "or a sequence set X (N, T, F) and y (N,), (N, K) or (N, T) labels per step")
CSV_EXPECTED = "a CSV file with a header row, numeric feature columns and the target column"
# float64 holds up to 1.8e308 and squares what it standardises: a feature's spread (max - min) within SPREAD
# keeps its squared deviations finite and non-zero (outside it the std is inf or 0 and the feature becomes 0s)
SPREAD = (1e-150, 1e150)
BIG = 1e150  # |value| of features used as they are, and of regression targets: their squared errors stay finite
NOISE_MAX = 1e148  # data.noise: the generated features and targets stay within BIG (a normal draw is below 100 sigma)

Raw = tuple[np.ndarray, np.ndarray, str]  # (X (N, D) or (N, T, F), y (N,) int64, (N, K) or (N, T), task)


@dataclass
class Dataset:
    """Train/validation arrays.

    X: (N, D) float64, (N, T, F) float64 when ``sequence``, or (N, H, W, C) float64 when ``image``.
    y: (N,) int64 labels or (N, K) float64 targets (for sequences: the answer after the last step),
    or, when ``per_step``, (N, T) int64 labels, one per time step.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray
    y_val: np.ndarray
    task: str  # "classification" or "regression"
    n_classes: int | None = None  # classification only
    sequence: bool = False  # X is (N, T, F)
    per_step: bool = False  # y is (N, T): a class label at every step (classification only)
    image: bool = False  # X is (N, H, W, C)

    @property
    def n_features(self) -> int:
        """D (or F for sequences, C for images), the size of the last axis of X."""
        return int(self.X_train.shape[-1])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample: (D,), (T, F) or (H, W, C)."""
        return tuple(int(d) for d in self.X_train.shape[1:])

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
    """Random bits as -1/+1 floats plus noise, label = parity; X (N, n_features).
    With ``T``: a sequence of T bits as 0/1 floats plus noise, X (N, T, 1); label = parity of all."""
    if getattr(cfg, "T", None) is not None:
        bits = rng.integers(0, 2, (cfg.n_samples, cfg.T))
        y = (bits.sum(axis=1) % 2).astype(np.int64)
        X = bits.astype(np.float64) + cfg.noise * rng.standard_normal(bits.shape)
        return X[:, :, None], y, "classification"
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


# --------------------------------------------------------------------------- sequence tasks

TEMPORAL_SYMBOLS = ("a", "b", "c", "d", "X", "Y")  # input channels of temporal_order, in this order


def _one_hot(tokens: np.ndarray, size: int) -> np.ndarray:
    """Integer tokens (N, T) -> float64 one-hot (N, T, size)."""
    return np.eye(size, dtype=np.float64)[tokens]


def _adding(cfg: Any, rng: np.random.Generator) -> Raw:
    """Le et al. 2015 adding problem. X (N, T, 2): channel 0 values U[0, 1], channel 1 markers, one 1 at a
    uniform position in [0, T//2) and one in [T//2, T); y (N, 1) = the sum of the two marked values."""
    n, T = cfg.n_samples, cfg.T
    half = T // 2
    values = rng.uniform(0.0, 1.0, (n, T))
    first = rng.integers(0, half, n)
    second = rng.integers(half, T, n)
    rows = np.arange(n)
    markers = np.zeros((n, T))
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = values[rows, first] + values[rows, second]
    return np.stack([values, markers], axis=2), y[:, None], "regression"


def _copy_check(cfg: Any, source: str) -> None:
    """The copy task needs room for the symbols, at least one blank, the delimiter and the answer."""
    if cfg.T < 2 * cfg.length + 2:
        raise _fail(source, "data.T", f"the copy task needs T >= 2 * length + 2 = {2 * cfg.length + 2} "
                    f"(length {cfg.length} symbols, at least one blank, the delimiter, {cfg.length} answer "
                    f"steps), but T is {cfg.T}; raise data.T or lower data.length.")


def _copy(cfg: Any, rng: np.random.Generator) -> Raw:
    """Copy task. Tokens: 0 blank, 1..S symbols, S+1 delimiter. Input: L symbols, T-2L-1 blanks, the
    delimiter, L blanks; X one-hot (N, T, S+2). Target y (N, T): blanks, then the L symbols in the last L steps."""
    n, T, L, S = cfg.n_samples, cfg.T, cfg.length, cfg.n_symbols
    symbols = rng.integers(1, S + 1, (n, L))
    tokens = np.zeros((n, T), dtype=np.int64)
    tokens[:, :L] = symbols
    tokens[:, T - L - 1] = S + 1
    y = np.zeros((n, T), dtype=np.int64)
    y[:, T - L:] = symbols
    return _one_hot(tokens, S + 2), y, "classification"


def _temporal_windows(T: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The [start, stop) windows of the two relevant symbols: [T//10, 2T//10) and [5T//10, 6T//10),
    each at least one step wide (for T < 10)."""
    a, c = T // 10, 5 * T // 10
    return (a, max(2 * T // 10, a + 1)), (c, max(6 * T // 10, c + 1))


def _temporal_order(cfg: Any, rng: np.random.Generator) -> Raw:
    """Hochreiter & Schmidhuber 1997 task 6a, simplified: distractors a-d, X or Y at one step of each
    window (see _temporal_windows); class XX=0, XY=1, YX=2, YY=3. X one-hot (N, T, 6) over a, b, c, d, X, Y."""
    n, T = cfg.n_samples, cfg.T
    (a, b), (c, d) = _temporal_windows(T)
    tokens = rng.integers(0, 4, (n, T))
    t1, t2 = rng.integers(a, b, n), rng.integers(c, d, n)
    s1, s2 = rng.integers(0, 2, n), rng.integers(0, 2, n)  # 0 = X, 1 = Y
    rows = np.arange(n)
    tokens[rows, t1] = 4 + s1
    tokens[rows, t2] = 4 + s2
    return _one_hot(tokens, len(TEMPORAL_SYMBOLS)), (2 * s1 + s2).astype(np.int64), "classification"


# --------------------------------------------------------------------------- image tasks

SHAPE_NAMES = ("horizontal bar", "vertical bar", "hollow square")  # the classes of data.kind shapes, in order


def _shape_boxes(y: np.ndarray, size: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """Per sample the box (top, left, height, width) its shape fills: a bar 1 x L (L from 3 to size - 1) or
    L x 1, a square of side 3 to max(3, size // 2), anywhere inside the grid."""
    n = len(y)
    bar = rng.integers(3, size, n)
    side = rng.integers(3, max(3, size // 2) + 1, n)
    height = np.select([y == 0, y == 1], [np.ones(n, np.int64), bar], side)
    width = np.select([y == 0, y == 1], [bar, np.ones(n, np.int64)], side)
    top = (rng.uniform(0.0, 1.0, n) * (size - height + 1)).astype(np.int64)
    left = (rng.uniform(0.0, 1.0, n) * (size - width + 1)).astype(np.int64)
    return top, left, height, width


def _shapes(cfg: Any, rng: np.random.Generator) -> Raw:
    """Horizontal bars (0), vertical bars (1) and hollow squares (2), balanced, at random places, of random
    lengths and brightness (0.5 to 1, a random colour over the channels), plus N(0, noise^2) per pixel;
    X (N, size, size, channels). Bar lengths and square outlines overlap in pixel count (3 to size - 1 against
    8 and up), so the class is in the arrangement of the pixels, not in how many are lit."""
    y = _balanced_labels(cfg.n_samples, len(SHAPE_NAMES))
    top, left, height, width = (a[:, None, None] for a in _shape_boxes(y, cfg.size, rng))
    r = np.arange(cfg.size)[None, :, None]
    c = np.arange(cfg.size)[None, None, :]
    inside = (r >= top) & (r < top + height) & (c >= left) & (c < left + width)
    edge = (r == top) | (r == top + height - 1) | (c == left) | (c == left + width - 1)
    colour = rng.uniform(0.5, 1.0, (len(y), cfg.channels))
    X = (inside & edge)[..., None] * colour[:, None, None, :]
    return X + cfg.noise * rng.standard_normal(X.shape), y, "classification"


def _images(cfg: Any, rng: np.random.Generator, source: str) -> tuple[np.ndarray, np.ndarray, str, int | None]:
    """An image file (npz, IDX, CIFAR-10): X (N, H, W, C) float64 scaled to [0, 1], y (N,) int64."""
    from .images import read_images  # here: only data.kind images needs the readers

    X, y, n_classes = read_images(cfg, rng, source)
    names = [f"channel {j} (counting from 0, the last axis of X)" for j in range(X.shape[-1])]
    _check_scale(X, cfg.standardize, f"the images of {cfg.path}", "data.path", source, names)
    return X, y, "classification", n_classes


def _digits(cfg: Any, rng: np.random.Generator, source: str) -> tuple[np.ndarray, np.ndarray, str, int | None]:
    """scikit-learn's 8x8 digits: X (N, 8, 8, 1), pixel values 0..16 scaled to [0, 1], y (N,) 0..9."""
    from .images import read_digits  # here: only data.kind digits needs scikit-learn

    X, y = read_digits(cfg, rng, source)
    return X, y, "classification", 10


# --------------------------------------------------------------------------- user files

class DataError(ConfigError):
    """Bad data: 'source: key: message', the key path of the data config it is about kept apart so that
    ``load_data`` can blame the ``--set`` option that wrote that key rather than the file."""

    def __init__(self, source: str, key: str, message: str) -> None:
        super().__init__(f"{source}: {key}: {message}")
        self.key, self.message = key, message


def _fail(source: str, key: str, message: str) -> DataError:
    """A ConfigError 'source: key: message'."""
    return DataError(source, key, message)


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
        top = float(np.abs(y).max()) if y.size else 0.0
        if top > BIG:
            raise _fail(source, "data.path", f"{what} holds regression targets up to {top:.3g} in absolute value; "
                        f"allowed: targets within +-{BIG:.0e}, whose squared errors stay finite in float64 "
                        "(rescale them).")
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
    """Check a numeric (N, D) or (N, T, F) array with no NaN/inf; return it as float64 (itself if it is)."""
    X = X.astype(np.float64, copy=False)
    if not np.all(np.isfinite(X)):
        rows = np.flatnonzero(~np.all(np.isfinite(X), axis=tuple(range(1, X.ndim))))
        raise _fail(source, "data.path", f"{what} has missing (NaN) or infinite values in {len(rows)} row(s) "
                    f"(first: data row {rows[0] + 1}, counting from 1); features must be finite numbers.")
    return X


def _check_scale(X: np.ndarray, standardize: bool, what: str, key: str, source: str, names: list[str]) -> None:
    """Finite features (N, D) or (N, T, F) that stay finite, and not all zero where they varied, once
    standardised: each constant (it carries nothing, and becomes 0) or spread (max - min) within SPREAD, with a
    finite mean; used as they are (no standardising), within +-BIG."""
    axes = tuple(range(X.ndim - 1))
    if X.size == 0:
        return
    with np.errstate(all="ignore"):
        spread = X.max(axis=axes) - X.min(axis=axes)  # inf when it overflows
        top = np.abs(X).max(axis=axes)
        mean = X.mean(axis=axes)
    varying = spread > 0
    bad = (varying & ((spread < SPREAD[0]) | (spread > SPREAD[1]))) | ~np.isfinite(mean)
    if not standardize:
        bad |= top > BIG
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        span = f"{spread[j]:.3g}" if np.isfinite(spread[j]) else "more than 1.8e+308"
        rule = (f"with a spread (max - min) between {SPREAD[0]:.0e} and {SPREAD[1]:.0e} per feature (or a "
                "constant feature), so that standardising keeps them finite and not all zero" if standardize else
                f"within +-{BIG:.0e} (data.standardize is false: they are used as they are), with a spread of at "
                f"most {SPREAD[1]:.0e}")
        raise _fail(source, key, f"{names[j]} of {what} holds values up to {top[j]:.3g} in absolute value, spread "
                    f"over {span}; allowed: finite values {rule}. Rescale the feature"
                    + (" (or lower data.noise)." if key == "data" else "."))


def _existing(path: str, expected: str, source: str) -> Path:
    """The path as a Path if it names a file, else a ConfigError."""
    p = Path(path)
    if not p.exists():
        raise _fail(source, "data.path", f"file not found: {path} (expected {expected}).")
    if not p.is_file():
        raise _fail(source, "data.path", f"{path} is not a file (expected {expected}).")
    return p


def _read_csv(path: str, source: str) -> "pd.DataFrame":
    """CSV file -> DataFrame with at least one row, or a ConfigError."""
    import pandas as pd  # here: only data.kind csv needs it (0.4 s to import)

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
    import pandas as pd  # here: only data.kind csv needs it (0.4 s to import)

    frame = _read_csv(cfg.path, source)
    _distinct_names(cfg.path, source)
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
    targets = _targets(y, cfg.task, f"column {cfg.target!r} of {cfg.path}", source)
    names = [f"column {str(c)!r}" for c in frame.columns]
    _check_scale(X, cfg.standardize, f"{cfg.path}", "data.path", source, names)
    return (X, *targets)


def _distinct_names(path: str, source: str) -> None:
    """A ConfigError when two header cells of a CSV hold one name (pandas would read the second as 'name.1')."""
    import pandas as pd  # here: only data.kind csv needs it (0.4 s to import)

    try:
        header = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False).iloc[0].tolist()
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError, IndexError):
        return  # the full read above succeeded; nothing more to say about the header
    names = [str(c).strip() for c in header]
    repeated = next((n for n in names if names.count(n) > 1), None)
    if repeated is not None:
        at = [i + 1 for i, n in enumerate(names) if n == repeated]
        raise _fail(source, "data.path", f"column {repeated!r} appears {len(at)} times in the header of {path} "
                    f"(columns {', '.join(map(str, at))}, counting from 1); allowed: distinct column names, so "
                    "data.target and the features are unambiguous (rename or drop the others).")


def _npz_arrays(path: str, source: str, expected: str = NPZ_EXPECTED) -> tuple[np.ndarray, np.ndarray]:
    """The X and y arrays of an .npz archive, or a ConfigError saying what the archive should hold
    (``expected``: vectors or sequences for data.kind npz, images for data.kind images)."""
    p = _existing(path, expected, source)
    try:
        archive = np.load(p, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any failure to parse means "not an npz"
        raise _fail(source, "data.path", f"{path} is not an .npz archive ({type(exc).__name__}); "
                    f"expected {expected}.") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _fail(source, "data.path", f"{path} is a single .npy array, not an .npz archive; expected {expected}.")
    with archive:
        missing = [k for k in ("X", "y") if k not in archive.files]
        if missing:
            found = ", ".join(archive.files) or "none"
            raise _fail(source, "data.path", f"{path} has no array {' or '.join(missing)} (arrays found: {found}); "
                        f"expected {expected}.")
        return _member(archive, "X", path, source, expected), _member(archive, "y", path, source, expected)


def _member(archive: Any, key: str, path: str, source: str, expected: str = NPZ_EXPECTED) -> np.ndarray:
    """One array of an open .npz, or a ConfigError naming its member: text, a truncated or object array
    (never unpickled: allow_pickle stays False)."""
    member = f"{key}.npy"
    try:
        value = archive[key]
    except Exception as exc:  # noqa: BLE001 - pickled object arrays, corrupt or truncated members
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise _fail(source, "data.path", f"member {member} of {path} cannot be read as an array ({reason}); "
                    f"allowed: plain (non-object) numeric .npy arrays, as numpy.savez writes them: "
                    f"{expected}.") from None
    if not isinstance(value, np.ndarray):
        raise _fail(source, "data.path", f"member {member} of {path} is not a .npy array (it holds "
                    f"{len(value)} bytes of something else); allowed: {expected}.")
    return value


def _step_targets(y: np.ndarray, task: str, what: str, source: str) -> tuple[np.ndarray, str, int | None]:
    """Per-step targets (N, T) -> (labels (N, T) int64, "classification", n_classes); labels are
    remapped to 0..C-1 in sorted order like per-sequence labels. Per-step regression is refused."""
    if y.dtype.kind in "fc" and not np.all(np.isfinite(y)):
        raise _fail(source, "data.path", f"{what} has missing (NaN) or infinite values; every step needs a target.")
    labels_like = y.dtype.kind in "biuOSU" or (y.dtype.kind == "f" and bool(np.all(y == np.round(y))))
    if task == "regression" or (task == "auto" and not labels_like):
        held = "data.task regression" if task == "regression" else "non-integer values"
        raise _fail(source, "data.path", f"{what} has shape {y.shape} (N, T), read as one target per time step, "
                    f"with {held}; per-step regression is not supported. Give per-step class labels (integers) "
                    "as y (N, T), or one target per sequence as y (N,) or (N, K) with K != T.")
    classes, labels = np.unique(y.reshape(-1), return_inverse=True)
    if len(classes) < 2:
        raise _fail(source, "data.task", f"classification needs at least 2 distinct labels, but {what} "
                    f"holds only {classes.tolist()}.")
    return labels.reshape(y.shape).astype(np.int64), "classification", len(classes)


def _npz(cfg: Any, rng: np.random.Generator, source: str) -> tuple[np.ndarray, np.ndarray, str, int | None]:
    """.npz archive with X (N, D) and y (N,) or (N, K); or a sequence set X (N, T, F) with
    y (N,) or (N, K) (answered at the last step) or y (N, T) (class labels at every step)."""
    X, y = _npz_arrays(cfg.path, source)
    if X.ndim not in (2, 3) or X.dtype.kind not in "biuf":
        images = " (for images (N, H, W, C) use data.kind images)" if X.ndim == 4 else ""
        raise _fail(source, "data.path", f"array X in {cfg.path} has shape {X.shape} and dtype {X.dtype}; "
                    f"expected a 2-D numeric array (N, D) or, for sequences, a 3-D one (N, T, F){images}.")
    sequence = X.ndim == 3
    if y.ndim not in (1, 2):
        expected = "(N,) or (N, K), or (N, T) labels per step" if sequence else "(N,) or (N, K)"
        raise _fail(source, "data.path", f"array y in {cfg.path} has shape {y.shape}; expected {expected}.")
    if len(X) != len(y):
        raise _fail(source, "data.path", f"X has {len(X)} rows but y has {len(y)} in {cfg.path}; "
                    "expected the same number of rows N.")
    if 0 in X.shape or (y.ndim == 2 and y.shape[1] == 0):
        expected = "at least one row and one column" if not sequence else "at least one sequence, step and feature"
        raise _fail(source, "data.path", f"{cfg.path} holds empty arrays (X {X.shape}, y {y.shape}); "
                    f"expected {expected}.")
    features = _features(X, f"array X in {cfg.path}", source)
    what = f"array y in {cfg.path}"
    if sequence and y.ndim == 2 and y.shape[1] == X.shape[1] and y.shape[1] > 1:
        targets = _step_targets(y, cfg.task, what, source)
    else:
        targets = _targets(y, cfg.task, what, source)
    names = [f"feature {j} (counting from 0, the last axis of X)" for j in range(X.shape[-1])]
    _check_scale(features, cfg.standardize, f"array X in {cfg.path}", "data.path", source, names)
    return (features, *targets)


# --------------------------------------------------------------------------- registry, split, scaling

def _synthetic(generate: Callable[[Any, np.random.Generator], Raw],
               classes: Callable[[Any], int] = lambda cfg: getattr(cfg, "n_classes", 2),
               check: Callable[[Any, str], None] | None = None) -> Callable:
    """Adapt a generator to the loader signature, adding n_classes (``classes(cfg)``) and
    checking the config first (``check(cfg, source)`` raises a ConfigError)."""
    def load(cfg: Any, rng: np.random.Generator, source: str) -> tuple[np.ndarray, np.ndarray, str, int | None]:
        if check is not None:
            check(cfg, source)
        noise = getattr(cfg, "noise", 0.0)
        if noise > NOISE_MAX:
            raise _fail(source, "data.noise", f"{noise:.3g} overflows the generated data set in float64; allowed: "
                        f"0 to {NOISE_MAX:.0e}, so that the features' spread stays within {SPREAD[1]:.0e} and "
                        "standardising them (and squaring a regression error) stays finite.")
        X, y, task = generate(cfg, rng)
        n_classes = classes(cfg) if task == "classification" else None
        X = X.astype(np.float64)
        names = [f"feature {j}" for j in range(X.shape[-1])]
        _check_scale(X, cfg.standardize, f"the generated {cfg.kind} set", "data", source, names)
        return X, y, task, n_classes
    return load


LOADERS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray, str, int | None]]] = {
    "spirals": _synthetic(_spirals),
    "moons": _synthetic(_moons),
    "blobs": _synthetic(_blobs),
    "xor": _synthetic(_xor),
    "parity": _synthetic(_parity),
    "teacher": _synthetic(_teacher),
    "adding": _synthetic(_adding),
    "copy": _synthetic(_copy, classes=lambda cfg: cfg.n_symbols + 1, check=_copy_check),
    "temporal_order": _synthetic(_temporal_order, classes=lambda cfg: 4),
    "csv": _csv,
    "npz": _npz,
    "shapes": _synthetic(_shapes, classes=lambda cfg: len(SHAPE_NAMES)),
    "images": _images,
    "digits": _digits,
}


def split(n: int, val_fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Shuffled (train_idx, val_idx); round(val_fraction * n) validation rows, at least one train row."""
    order = rng.permutation(n)
    n_val = min(int(round(val_fraction * n)), n - 1)
    return order[n_val:], order[:n_val]


def standardize(X_train: np.ndarray, X_val: np.ndarray, inplace: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Scale both (N, D)/(M, D) by the training mean and std per column (std 0 -> 1); sequences
    (N, T, F)/(M, T, F) per feature, over the training samples and all their time steps; images
    (N, H, W, C)/(M, H, W, C) per channel, over the training images and all their pixels. ``inplace``
    overwrites the two arrays (60,000 MNIST images are 376 MB in float64) instead of returning new ones."""
    axes = tuple(range(X_train.ndim - 1))
    mean = X_train.mean(axis=axes)
    std = X_train.std(axis=axes)
    std = np.where(std > 0, std, 1.0)
    return _scaled(X_train, mean, std, inplace), _scaled(X_val, mean, std, inplace)


def _scaled(X: np.ndarray, mean: np.ndarray, std: np.ndarray, inplace: bool) -> np.ndarray:
    """(X - mean) / std, in X itself or in one new array (never a second temporary)."""
    out = np.subtract(X, mean, out=X if inplace else None)
    out /= std
    return out


def load_data(cfg: Any, rng: np.random.Generator, source: str = "<config>") -> Dataset:
    """Build the Dataset for a data config (or a full Config) using only `rng` for randomness. Bad data is
    blamed on the ``--set`` option that wrote the key it is about (``--set 'data={kind: images, path: x.npz}'``
    for a missing file), as ``load_config`` recorded them, else on ``source``."""
    data = getattr(cfg, "data", cfg)
    try:
        return _load(data, rng, source)
    except DataError as exc:
        where = written_by([exc.key], getattr(data, SET_BY, ()), source)
        if where == source:
            raise
        raise DataError(where, exc.key, exc.message) from None


def _load(data: Any, rng: np.random.Generator, source: str) -> Dataset:
    with np.errstate(all="ignore"):  # what could overflow is refused below, by name: no raw numpy warning
        X, y, task, n_classes = LOADERS[data.kind](data, rng, source)
        train, val = split(len(X), data.val_fraction, rng)
        X_train, X_val = X[train], X[val]  # copies, standardised in place
        ndim, X = X.ndim, None  # the unsplit copy goes now: an image set's pixels are its largest array
        if data.standardize:
            X_train, X_val = standardize(X_train, X_val, inplace=True)
    if not (np.isfinite(X_train).all() and np.isfinite(X_val).all()):
        where = "data.path" if hasattr(data, "path") else "data"
        raise _fail(source, where, "the features are not finite once standardised (a validation value far "
                    "outside the training rows' range); allowed: features whose standardised values stay finite "
                    "in float64: rescale them, or set data.standardize: false.")
    sequence = ndim == 3
    per_step = sequence and task == "classification" and y.ndim == 2
    return Dataset(X_train, y[train], X_val, y[val], task, n_classes, sequence=sequence, per_step=per_step,
                   image=ndim == 4)
