"""Image files for ``data.kind: images``: an .npz with X (N, H, W, C) or (N, H, W) and y (N,) (channels
first, (N, C, H, W) as torch keeps images, is refused, saying how to transpose it); the IDX format
of MNIST and Fashion-MNIST (plain or gzip); CIFAR-10's binary batches. And scikit-learn's 8x8 digits for
``data.kind: digits``. Every reader gives X (N, H, W, C) float64 (NHWC) with 8-bit pixels divided by 255
(other numbers as they are) and y (N,) int64; a bad file raises a ``ConfigError`` naming it.

IDX (LeCun et al., http://yann.lecun.com/exdb/mnist/): the magic number 00 00 <type> <ndim>, ndim big-endian
uint32 sizes, then the values big-endian in C order. CIFAR-10 (Krizhevsky 2009, "binary version"): records of
1 label byte and 3,072 pixel bytes, the 1,024 red then green then blue values of a 32x32 image, row by row."""
from __future__ import annotations

import gzip
import importlib.util
import math
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .data import _features, _fail, _npz_arrays, _targets

IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IDX_EXPECTED = ("an IDX file as MNIST ships it (plain or .gz): the magic number 00 00 <type 08/09/0B/0C/0D/0E> "
                "<number of dimensions>, big-endian sizes, then the values")
IDX_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
CIFAR_SIDE, CIFAR_CHANNELS, CIFAR_CLASSES = 32, 3, 10
CIFAR_RECORD = 1 + CIFAR_SIDE * CIFAR_SIDE * CIFAR_CHANNELS  # 3,073 bytes: the label, then R, G, B planes
CIFAR_EXPECTED = (f"CIFAR-10's binary batches (data_batch_1.bin ... data_batch_5.bin, test_batch.bin): records of "
                  f"{CIFAR_RECORD:,} bytes, 1 label byte (0 to 9) then 3,072 pixel bytes (32x32, red, green, blue)")
NPZ_IMAGES = "an .npz archive (numpy.savez) with X (N, H, W, C) or (N, H, W) images and y (N,) labels"
CHANNEL_COUNTS = (1, 3, 4)  # grey, RGB, RGBA: what a channels-first .npz has on its second axis
MAX_LABEL = 10_000  # whole labels 0..MAX_LABEL-1 are used as they are (a subset keeps them); others are renumbered
DIGITS_SCALE = 16.0  # scikit-learn's digits hold pixel values 0..16
DIGITS_SIDE = 8
EXTRA = "pip install 'gradlab[images]'"
SKLEARN = "sklearn"  # the package data.kind digits reads its file from


def read_images(cfg: Any, rng: np.random.Generator, source: str) -> tuple[np.ndarray, np.ndarray, int]:
    """The images of ``cfg.path`` (a random ``cfg.n_samples`` of them): (X (N, H, W, C) float64, y (N,) int64,
    n_classes counted over the whole file)."""
    fmt = _format(cfg, source)
    if cfg.labels is not None and fmt != "idx":
        raise _fail(source, "data.labels", f"a labels file applies to IDX images only, but {cfg.path} is read as "
                    f"{fmt} (its labels are inside it); allowed: leave data.labels out, or give IDX images.")
    X, y, what = {"npz": _npz, "idx": _idx, "cifar10": _cifar}[fmt](cfg, source)
    labels, n_classes = _labels(y, what, source)
    if fmt == "cifar10":
        n_classes = CIFAR_CLASSES  # its ten classes, whichever a batch holds
    keep = _subset(len(labels), cfg.n_samples, cfg.path, source, rng)
    X, labels = X[keep], labels[keep]
    pixels = X.astype(np.float64)  # a copy (X may be a read-only view of the file's bytes)
    if X.dtype == np.uint8:
        pixels /= 255.0
    return _features(pixels, f"the images of {cfg.path}", source), labels, n_classes


def read_digits(cfg: Any, rng: np.random.Generator, source: str) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 8x8 digits (or a random ``cfg.n_samples``): X (N, 8, 8, 1) in [0, 1], y (N,) 0..9."""
    table = _digits_table(source)
    keep = _subset(len(table), cfg.n_samples, "scikit-learn's digits", source, rng)
    X = table[keep, :-1].reshape(-1, DIGITS_SIDE, DIGITS_SIDE, 1) / DIGITS_SCALE
    return X, table[keep, -1].astype(np.int64)


def _digits_table(source: str) -> np.ndarray:
    """(1797, 65): 64 pixel values then the label per row, as scikit-learn's load_digits reads them: from the
    file it ships, found without importing scikit-learn (3 to 7 s: scipy), else through load_digits."""
    spec = importlib.util.find_spec(SKLEARN)
    if spec is None:
        raise _fail(source, "data.kind", f"digits needs scikit-learn, an optional extra of gradlab: {EXTRA} (or pip "
                    "install scikit-learn); the other kinds work without it (e.g. shapes, or images from a file).")
    for folder in spec.submodule_search_locations or ():
        shipped = Path(folder) / "datasets" / "data" / "digits.csv.gz"
        if shipped.is_file():
            return np.loadtxt(shipped, delimiter=",")
    from sklearn.datasets import load_digits  # a layout of scikit-learn's files this does not know

    bunch = load_digits()
    return np.column_stack([bunch.data, bunch.target]).astype(np.float64)


# --------------------------------------------------------------------------- which files

def _format(cfg: Any, source: str) -> str:
    """``cfg.format``, or for auto the format a folder's files or a file's name and first bytes show."""
    p = Path(cfg.path)
    if not p.exists():
        raise _fail(source, "data.path", f"not found: {cfg.path} (expected {NPZ_IMAGES}, {IDX_EXPECTED}, or "
                    f"a folder or file of {CIFAR_EXPECTED}).")
    if cfg.format != "auto":
        return cfg.format
    if p.is_dir():
        if _cifar_files(p, cfg.split):
            return "cifar10"
        if any(p.glob("*-idx3-ubyte*")):
            return "idx"
        raise _fail(source, "data.path", f"the folder {cfg.path} holds neither CIFAR-10 batches (data_batch_1.bin "
                    "... or test_batch.bin, or a cifar-10-batches-bin folder of them) nor IDX images "
                    "(train-images-idx3-ubyte[.gz], t10k-images-idx3-ubyte[.gz]); name a file, or set data.format.")
    head = _head(p)
    if head[:2] == b"PK" or p.suffix == ".npz":
        return "npz"
    if (len(head) == 4 and head[:2] == b"\0\0" and head[2] in IDX_TYPES) or "idx" in p.name.lower():
        return "idx"
    if p.suffix == ".bin":
        return "cifar10"
    raise _fail(source, "data.format", f"cannot tell the format of {cfg.path} from its name and first bytes "
                f"({head.hex(' ') or 'none: it is empty'}); allowed: set data.format to npz ({NPZ_IMAGES}), idx "
                f"({IDX_EXPECTED}) or cifar10 ({CIFAR_EXPECTED}).")


def _head(p: Path) -> bytes:
    """The first 4 bytes of a file, of its content when it is gzipped (b"" when that cannot be read)."""
    with open(p, "rb") as f:
        head = f.read(4)
    if head[:2] != b"\x1f\x8b":
        return head
    try:
        with gzip.open(p, "rb") as f:
            return f.read(4)
    except (OSError, EOFError, zlib.error):
        return b""


def _subset(n: int, n_samples: int | None, what: str, source: str, rng: np.random.Generator) -> np.ndarray:
    """Indices of all n items, or of a random n_samples of them in file order."""
    if n_samples is None or n_samples == n:
        return np.arange(n)
    if n_samples > n:
        raise _fail(source, "data.n_samples", f"{n_samples} images asked for, but {what} holds {n}; allowed: "
                    f"2 to {n}, or leave it out to use them all.")
    return np.sort(rng.permutation(n)[:n_samples])


def _labels(y: np.ndarray, what: str, source: str) -> tuple[np.ndarray, int]:
    """Class labels (N,): whole numbers 0..MAX_LABEL-1 as they are (n_classes = the largest + 1, so a subset
    keeps their meaning), anything else (text, negative, fractional) numbered 0..C-1 in sorted order."""
    y = y.reshape(-1) if y.ndim == 2 and y.shape[1] == 1 else y
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)  # 0.0, 1.0, ... as numpy.savez keeps labels computed in floats
    if y.dtype.kind in "iu" and y.size and y.min() >= 0 and y.max() < MAX_LABEL:
        n_classes = int(y.max()) + 1
        if len(np.unique(y)) < 2:
            raise _fail(source, "data.path", f"{what} holds only the label {int(y[0])}; classification needs at "
                        "least 2 distinct labels.")
        return y.astype(np.int64), n_classes
    labels, _, n_classes = _targets(y, "classification", what, source)
    return labels, int(n_classes)


# --------------------------------------------------------------------------- npz

def _npz(cfg: Any, source: str) -> tuple[np.ndarray, np.ndarray, str]:
    """X (N, H, W, C) or (N, H, W) and y (N,) from an .npz archive."""
    X, y = _npz_arrays(cfg.path, source, NPZ_IMAGES)
    if X.ndim not in (3, 4) or X.dtype.kind not in "biuf" or 0 in X.shape:
        raise _fail(source, "data.path", f"array X in {cfg.path} has shape {X.shape} and dtype {X.dtype}; "
                    f"expected numeric images (N, H, W, C) or (N, H, W), none of them 0: {NPZ_IMAGES}.")
    if _channels_first(X.shape):
        n, c, h, w = X.shape
        raise _fail(source, "data.path", f"array X in {cfg.path} has shape {X.shape}: images with their {c} "
                    f"channel(s) first (N, C, H, W), as torch keeps them, which would be read as {c}x{h} images "
                    f"with {w} channels; gradlab's images are channels last, NHWC (N, H, W, C): save "
                    f"X.transpose(0, 2, 3, 1) instead (shape ({n}, {h}, {w}, {c})).")
    if y.ndim != 1 and y.shape[1:] != (1,):
        raise _fail(source, "data.path", f"array y in {cfg.path} has shape {y.shape}; expected one class label "
                    f"per image, (N,): {NPZ_IMAGES}.")
    if len(X) != len(y):
        raise _fail(source, "data.path", f"X holds {len(X)} images but y {len(y)} labels in {cfg.path}; "
                    "expected one label per image.")
    return (X if X.ndim == 4 else X[..., None]), y, f"array y in {cfg.path}"


def _channels_first(shape: tuple[int, ...]) -> bool:
    """(N, C, H, W) images saved channels first: a second axis of 1, 3 or 4 (grey, RGB, RGBA), a last one that is
    none of those, and both image axes larger than the channel count (as channels last, they would be 1 to 4
    pixels high with more channels than that; 4x4 images of 8 channels stay channels last)."""
    return (len(shape) == 4 and shape[1] in CHANNEL_COUNTS and shape[3] not in CHANNEL_COUNTS
            and min(shape[2], shape[3]) > shape[1])


# --------------------------------------------------------------------------- IDX

def _idx(cfg: Any, source: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Images (N, H, W) or (N, H, W, C) and labels (N,) from two IDX files (MNIST, Fashion-MNIST)."""
    images = _idx_images_file(cfg, source)
    labels = _idx_labels_file(cfg, images, source)
    X = read_idx(images, source)
    if X.ndim not in (3, 4) or 0 in X.shape:
        raise _fail(source, "data.path", f"{images} holds an array of shape {X.shape}; expected images "
                    "(N, H, W) or (N, H, W, C), none of them 0 (MNIST's train-images-idx3-ubyte: 60000 x 28 x 28).")
    y = read_idx(labels, source, key="data.labels")
    if y.ndim != 1:
        raise _fail(source, "data.labels", f"{labels} holds an array of shape {y.shape}; expected labels (N,), "
                    "one per image (MNIST's train-labels-idx1-ubyte).")
    if len(y) != len(X):
        raise _fail(source, "data.labels", f"{labels} holds {len(y)} labels but {images} holds {len(X)} images; "
                    "expected one label per image (the labels file of the same split).")
    return (X if X.ndim == 4 else X[..., None]), y, str(labels)


def _idx_images_file(cfg: Any, source: str) -> Path:
    """``cfg.path``, or in a folder the images file of ``cfg.split`` (plain or .gz)."""
    p = Path(cfg.path)
    if p.is_file():
        return p
    name = IDX_FILES[cfg.split]
    for candidate in (p / name, p / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    raise _fail(source, "data.path", f"the folder {cfg.path} has no {name} or {name}.gz (data.split "
                f"{cfg.split}); expected {IDX_EXPECTED}.")


def _idx_labels_file(cfg: Any, images: Path, source: str) -> Path:
    """``cfg.labels``, or the images file's name with images-idx3 -> labels-idx1 (plain or .gz) beside it."""
    if cfg.labels is not None:
        p = Path(cfg.labels)
        if not p.is_file():
            raise _fail(source, "data.labels", f"{'not a file' if p.exists() else 'not found'}: {cfg.labels} "
                        "(expected the IDX labels file of the images, e.g. train-labels-idx1-ubyte[.gz]).")
        return p
    if "images-idx3" not in images.name:
        raise _fail(source, "data.labels", f"no labels file given for {images}, and its name has no "
                    "'images-idx3' to find one by (train-images-idx3-ubyte -> train-labels-idx1-ubyte); "
                    "set data.labels to the IDX labels file.")
    stem = images.name.replace("images-idx3", "labels-idx1").removesuffix(".gz")
    for candidate in (images.parent / stem, images.parent / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    raise _fail(source, "data.labels", f"no {stem} or {stem}.gz beside {images}; set data.labels to the IDX "
                "labels file of these images.")


def read_idx(path: Path, source: str, key: str = "data.path") -> np.ndarray:
    """The array of an IDX file (plain or gzip), in native byte order, or a ConfigError naming the file."""
    data = _bytes(path, key, source)
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in IDX_TYPES:
        raise _fail(source, key, f"{path} does not start with an IDX magic number (it starts "
                    f"{data[:4].hex(' ') or 'with nothing: it is empty'}); expected {IDX_EXPECTED}.")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise _fail(source, key, f"{path} has a header for {ndim} dimension(s) but "
                    f"{'none is allowed' if ndim == 0 else f'only {len(data)} bytes'}; expected {IDX_EXPECTED}.")
    dims = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, 4))
    dtype = np.dtype(IDX_TYPES[data[2]])
    need = math.prod(dims) * dtype.itemsize  # Python ints: a forged header cannot overflow it
    if len(data) - header != need:
        state = "truncated" if len(data) - header < need else "longer than its header says"
        raise _fail(source, key, f"{path} is {state}: its header gives {' x '.join(map(str, dims))} values of "
                    f"{dtype.itemsize} byte(s) ({need:,} bytes), but {len(data) - header:,} bytes follow it; "
                    f"expected {IDX_EXPECTED}.")
    return np.frombuffer(data, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _bytes(path: Path, key: str, source: str) -> bytes:
    """The whole content of a file, gunzipped when it starts with gzip's magic number."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise _fail(source, key, f"{path} is a damaged or truncated gzip file ({exc}); expected {IDX_EXPECTED}, "
                    "gzipped whole.") from None


# --------------------------------------------------------------------------- CIFAR-10

def _cifar_files(folder: Path, split: str) -> list[Path]:
    """The batch files of a split in a folder or its cifar-10-batches-bin subfolder, in order."""
    for place in (folder, folder / "cifar-10-batches-bin"):
        found = sorted(place.glob("data_batch_*.bin")) if split == "train" else sorted(place.glob("test_batch.bin"))
        if found:
            return found
    return []


def _cifar(cfg: Any, source: str) -> tuple[np.ndarray, np.ndarray, str]:
    """Images (N, 32, 32, 3) uint8 and labels (N,) from one batch file or a folder's batches of a split."""
    p = Path(cfg.path)
    files = _cifar_files(p, cfg.split) if p.is_dir() else [p]
    if not files:
        wanted = "data_batch_1.bin ... data_batch_5.bin" if cfg.split == "train" else "test_batch.bin"
        raise _fail(source, "data.path", f"the folder {cfg.path} has no {wanted} (data.split {cfg.split}), nor a "
                    f"cifar-10-batches-bin folder holding them; expected {CIFAR_EXPECTED}.")
    records = np.concatenate([_cifar_records(f, source) for f in files])
    labels = records[:, 0]
    if labels.max() >= CIFAR_CLASSES:
        i = int(np.argmax(labels >= CIFAR_CLASSES))
        raise _fail(source, "data.path", f"record {i + 1} (counting from 1) of {cfg.path} has the label byte "
                    f"{int(labels[i])}; expected {CIFAR_EXPECTED}.")
    X = records[:, 1:].reshape(-1, CIFAR_CHANNELS, CIFAR_SIDE, CIFAR_SIDE).transpose(0, 2, 3, 1)
    return X, labels, str(cfg.path)


def _cifar_records(path: Path, source: str) -> np.ndarray:
    """The (n, 3073) uint8 records of one batch file."""
    raw = path.read_bytes()
    if not raw or len(raw) % CIFAR_RECORD:
        state = "empty" if not raw else (f"{len(raw):,} bytes long, not a whole number of records (the last is "
                                         f"truncated: {len(raw) % CIFAR_RECORD:,} bytes)")
        raise _fail(source, "data.path", f"{path} is {state}; expected {CIFAR_EXPECTED}.")
    return np.frombuffer(raw, np.uint8).reshape(-1, CIFAR_RECORD)
