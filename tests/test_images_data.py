"""Image data sets: the shapes task, the file readers (npz, IDX plain and gz, CIFAR-10 binary batches), the
digits of scikit-learn, and exit 2 naming the file for every bad one."""
from __future__ import annotations

import gzip
import importlib.util
import struct
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from gradlab.cli import app
from gradlab.config import config_from_dict, load_config
from gradlab.data import SHAPE_NAMES, load_data

MODEL = {"depth": 1, "width": 4}


def dataset(data: dict, seed: int = 0):
    return load_data(config_from_dict({"data": data, "model": MODEL}), np.random.default_rng(seed))


def from_file(tmp_path: Path, data: dict, seed: int = 0):
    """The Dataset of a config file written beside the data (paths relative to it, as a user writes them)."""
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({"data": data, "model": MODEL}), encoding="utf-8")
    return load_data(load_config(config), np.random.default_rng(seed), str(config))


def train(tmp_path: Path, data: dict):
    """``gradlab train`` on a tiny config with this data section."""
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({"data": data, "model": MODEL, "train": {"steps": 1}}), encoding="utf-8")
    return CliRunner().invoke(app, ["train", str(config), "--set", f"log.out={tmp_path / 'runs'}"])


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """An IDX file: 00 00 <type> <ndim>, big-endian uint32 sizes, big-endian values."""
    dtype = {0x08: ">u1", 0x0B: ">i2", 0x0D: ">f4"}[code]
    head = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return head + array.astype(dtype).tobytes()


def cifar_bytes(images: np.ndarray, labels: np.ndarray) -> bytes:
    """CIFAR-10 binary records: a label byte, then the 32x32 red, green and blue planes, row by row."""
    planes = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # NHWC -> NCHW
    return np.column_stack([labels, planes]).astype(np.uint8).tobytes()


def pixels(n: int, h: int, w: int, c: int | None = None, seed: int = 1) -> np.ndarray:
    shape = (n, h, w) if c is None else (n, h, w, c)
    return np.random.default_rng(seed).integers(0, 256, shape).astype(np.uint8)


# --------------------------------------------------------------------------- shapes

def test_shapes_are_nhwc_images_with_three_balanced_classes():
    d = dataset({"kind": "shapes", "n_samples": 90, "size": 7, "channels": 2, "val_fraction": 0.0})
    assert d.image and not d.sequence
    assert d.X_train.shape == (90, 7, 7, 2)
    assert d.input_shape == (7, 7, 2) and d.n_features == 2
    assert d.n_classes == len(SHAPE_NAMES) == 3
    assert np.bincount(d.y_train).tolist() == [30, 30, 30]


def test_shapes_are_deterministic_for_a_seed_and_differ_across_seeds():
    a = dataset({"kind": "shapes", "n_samples": 12, "size": 6}, seed=3)
    b = dataset({"kind": "shapes", "n_samples": 12, "size": 6}, seed=3)
    c = dataset({"kind": "shapes", "n_samples": 12, "size": 6}, seed=4)
    assert np.array_equal(a.X_train, b.X_train) and np.array_equal(a.y_train, b.y_train)
    assert not np.allclose(a.X_train, c.X_train)


def test_shapes_draw_a_bar_or_the_outline_of_a_square():
    """Without noise the lit pixels of a horizontal bar form one row, of a vertical bar one column, of a
    square the border of a k x k box (4k - 4 pixels) with its inside dark."""
    d = dataset({"kind": "shapes", "n_samples": 60, "size": 10, "noise": 0.0, "standardize": False,
                 "val_fraction": 0.0})
    for x, y in zip(d.X_train[..., 0], d.y_train):
        rows, cols = np.nonzero(x)
        assert x.max() <= 1.0 and x[x > 0].min() >= 0.5
        if y == 0:
            assert len(set(rows)) == 1 and len(cols) >= 3 and np.ptp(cols) == len(cols) - 1
        elif y == 1:
            assert len(set(cols)) == 1 and len(rows) >= 3 and np.ptp(rows) == len(rows) - 1
        else:
            k = np.ptp(rows) + 1
            assert np.ptp(cols) + 1 == k and k >= 3 and len(rows) == 4 * k - 4
            assert not x[rows.min() + 1:rows.max(), cols.min() + 1:cols.max()].any()


def test_shapes_are_standardised_per_channel_from_the_training_split():
    d = dataset({"kind": "shapes", "n_samples": 200, "size": 6, "channels": 3})
    assert np.allclose(d.X_train.mean(axis=(0, 1, 2)), 0.0, atol=1e-12)
    assert np.allclose(d.X_train.std(axis=(0, 1, 2)), 1.0)
    assert not np.allclose(d.X_val.mean(axis=(0, 1, 2)), 0.0, atol=1e-6)


# --------------------------------------------------------------------------- readers

RAW = {"kind": "images", "standardize": False, "val_fraction": 0.0}


def by_label(d) -> dict[int, np.ndarray]:
    """The images of a Dataset keyed by their label (every label distinct in these files)."""
    return {int(y): x for x, y in zip(d.X_train, d.y_train)}


@pytest.mark.parametrize("channels", [None, 3])
def test_npz_images_nhwc_and_nhw(tmp_path, channels):
    X = pixels(4, 5, 6, channels)
    np.savez(tmp_path / "img.npz", X=X, y=np.array([3, 0, 2, 1]))
    d = from_file(tmp_path, {**RAW, "path": "img.npz"})
    c = channels or 1
    assert d.image and d.X_train.shape == (4, 5, 6, c) and d.input_shape == (5, 6, c)
    assert d.n_classes == 4 and sorted(d.y_train.tolist()) == [0, 1, 2, 3]
    x = by_label(d)[2]  # the third image, label 2
    assert x[4, 1, c - 1] == pytest.approx(X[2, 4, 1, c - 1] / 255 if channels else X[2, 4, 1] / 255)


def test_npz_float_images_are_used_as_they_are(tmp_path):
    X = np.linspace(-1.0, 1.0, 2 * 3 * 3).reshape(2, 3, 3)
    np.savez(tmp_path / "img.npz", X=X, y=np.array([0.0, 2.0]))  # whole float labels keep their values
    d = from_file(tmp_path, {**RAW, "path": "img.npz"})
    assert np.array_equal(by_label(d)[2][..., 0], X[1]) and d.n_classes == 3


def test_text_labels_are_numbered_in_sorted_order(tmp_path):
    np.savez(tmp_path / "img.npz", X=pixels(3, 2, 2), y=np.array(["dog", "cat", "emu"]))
    d = from_file(tmp_path, {**RAW, "path": "img.npz"})
    assert d.n_classes == 3 and sorted(d.y_train.tolist()) == [0, 1, 2]
    assert np.array_equal(by_label(d)[0][..., 0], pixels(3, 2, 2)[1] / 255)  # cat


@pytest.mark.parametrize("gz", [False, True])
def test_idx_images_and_labels_plain_and_gz(tmp_path, gz):
    X, y = pixels(3, 4, 5), np.array([7, 1, 4])
    suffix = ".gz" if gz else ""
    write = (lambda p, b: p.write_bytes(gzip.compress(b))) if gz else (lambda p, b: p.write_bytes(b))
    write(tmp_path / f"train-images-idx3-ubyte{suffix}", idx_bytes(X))
    write(tmp_path / f"train-labels-idx1-ubyte{suffix}", idx_bytes(y))
    d = from_file(tmp_path, {**RAW, "path": f"train-images-idx3-ubyte{suffix}"})
    assert d.X_train.shape == (3, 4, 5, 1) and d.n_classes == 8  # labels kept as they are: 0..7
    images = by_label(d)
    assert images[4][3, 2, 0] == pytest.approx(X[2, 3, 2] / 255)
    assert images[7][0, 4, 0] == pytest.approx(X[0, 0, 4] / 255)


def test_idx_folder_picks_the_split_and_a_labels_file_by_key(tmp_path):
    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte").write_bytes(idx_bytes(pixels(2, 3, 3)))
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.array([0, 1])))
    (tmp_path / "mnist" / "train-images-idx3-ubyte").write_bytes(idx_bytes(pixels(5, 3, 3)))
    (tmp_path / "mnist" / "train-labels-idx1-ubyte").write_bytes(idx_bytes(np.arange(5)))
    assert len(from_file(tmp_path, {**RAW, "path": "mnist", "split": "test"}).X_train) == 2
    assert len(from_file(tmp_path, {**RAW, "path": "mnist"}).X_train) == 5
    (tmp_path / "x.idx").write_bytes(idx_bytes(pixels(2, 3, 3), 0x0B))  # 16-bit values: used as they are
    d = from_file(tmp_path, {**RAW, "path": "x.idx", "labels": "mnist/t10k-labels-idx1-ubyte"})
    assert d.X_train.max() > 1.0 and d.n_classes == 2


def test_cifar_batch_file_and_folder(tmp_path):
    X = pixels(4, 32, 32, 3)
    (tmp_path / "cifar-10-batches-bin").mkdir()
    (tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin").write_bytes(cifar_bytes(X[:3], np.array([9, 0, 5])))
    (tmp_path / "cifar-10-batches-bin" / "data_batch_2.bin").write_bytes(cifar_bytes(X[3:], np.array([2])))
    d = from_file(tmp_path, {**RAW, "path": "."})  # the folder holding cifar-10-batches-bin
    assert d.X_train.shape == (4, 32, 32, 3) and d.n_classes == 10
    images = by_label(d)
    assert images[9][0, 0].tolist() == pytest.approx((X[0, 0, 0] / 255).tolist())
    assert images[5][31, 7, 1] == pytest.approx(X[2, 31, 7, 1] / 255)  # green, row 31, column 7
    assert images[2][4, 30, 2] == pytest.approx(X[3, 4, 30, 2] / 255)  # the second batch file
    one = from_file(tmp_path, {**RAW, "path": "cifar-10-batches-bin/data_batch_1.bin"})
    assert len(one.X_train) == 3 and one.n_classes == 10
    (tmp_path / "cifar-10-batches-bin" / "test_batch.bin").write_bytes(cifar_bytes(X[1:3], np.array([4, 7])))
    test = from_file(tmp_path, {**RAW, "path": "cifar-10-batches-bin", "split": "test"})
    assert sorted(test.y_train.tolist()) == [4, 7] and by_label(test)[7][2, 3, 0] == pytest.approx(X[2, 2, 3, 0] / 255)


def test_images_are_standardised_per_channel_from_the_training_split(tmp_path):
    X = pixels(40, 3, 3, 2)
    X[..., 1] //= 4  # the channels differ in scale
    np.savez(tmp_path / "img.npz", X=X, y=np.arange(40))  # each label names its image
    d = from_file(tmp_path, {"kind": "images", "path": "img.npz", "val_fraction": 0.25})
    raw = X.astype(np.float64) / 255
    mean, std = raw[d.y_train].mean(axis=(0, 1, 2)), raw[d.y_train].std(axis=(0, 1, 2))
    assert np.allclose(d.X_train, (raw[d.y_train] - mean) / std)
    assert np.allclose(d.X_val, (raw[d.y_val] - mean) / std)  # the training split's statistics
    assert not np.allclose(mean, raw.mean(axis=(0, 1, 2)))


def test_n_samples_takes_a_seeded_subset_keeping_the_labels(tmp_path):
    X = pixels(30, 2, 2)
    np.savez(tmp_path / "img.npz", X=X, y=np.arange(30) % 10)
    a = from_file(tmp_path, {**RAW, "path": "img.npz", "n_samples": 6}, seed=1)
    b = from_file(tmp_path, {**RAW, "path": "img.npz", "n_samples": 6}, seed=1)
    assert len(a.X_train) == 6 and np.array_equal(a.X_train, b.X_train)
    c = from_file(tmp_path, {**RAW, "path": "img.npz", "n_samples": 6}, seed=2)
    assert not np.array_equal(np.sort(a.X_train, axis=0), np.sort(c.X_train, axis=0))  # random, not the first 6
    assert a.n_classes == 10  # counted over the whole file, whichever classes the subset holds
    for x, y in zip(a.X_train, a.y_train):  # each kept image still has its own label
        rows = [i for i in range(30) if np.allclose(X[i] / 255, x[..., 0])]
        assert rows and y == rows[0] % 10


# --------------------------------------------------------------------------- bad files: exit 2 naming them

def _idx_pair(tmp_path: Path, images: bytes, labels: bytes) -> dict:
    (tmp_path / "train-images-idx3-ubyte").write_bytes(images)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(labels)
    return {"kind": "images", "path": "train-images-idx3-ubyte"}


def put(path: Path, content: bytes) -> dict:
    """Write one image file; the data section that reads it."""
    path.write_bytes(content)
    return {"kind": "images", "path": path.name}


GOOD_IDX = idx_bytes(pixels(3, 4, 4))
GOOD_LABELS = idx_bytes(np.array([0, 1, 2]))
BAD = {  # name: (write the files and give the data section, the file named, what the message says)
    "wrong magic": (lambda t: _idx_pair(t, b"\x00\x00\x07\x03" + GOOD_IDX[4:], GOOD_LABELS),
                    "train-images-idx3-ubyte", "does not start with an IDX magic number (it starts 00 00 07 03)"),
    "truncated idx": (lambda t: _idx_pair(t, GOOD_IDX[:-5], GOOD_LABELS),
                      "train-images-idx3-ubyte", "is truncated: its header gives 3 x 4 x 4 values"),
    "idx longer than its header": (lambda t: _idx_pair(t, GOOD_IDX, GOOD_LABELS + b"\x00"),
                                   "train-labels-idx1-ubyte", "longer than its header says"),
    "damaged gzip": (lambda t: _idx_pair(t, gzip.compress(GOOD_IDX)[:-12], GOOD_LABELS),
                     "train-images-idx3-ubyte", "damaged or truncated gzip file"),
    "count mismatch": (lambda t: _idx_pair(t, GOOD_IDX, idx_bytes(np.array([0, 1]))),
                       "train-labels-idx1-ubyte", "holds 2 labels but"),
    "labels not an idx1 array": (lambda t: _idx_pair(t, GOOD_IDX, GOOD_IDX),
                                 "train-labels-idx1-ubyte", "expected labels (N,)"),
    "no labels file": (lambda t: put(t / "train-images-idx3-ubyte", GOOD_IDX),
                       "train-labels-idx1-ubyte", "set data.labels"),
    "truncated cifar record": (lambda t: put(t / "data_batch_1.bin",
                                             cifar_bytes(pixels(2, 32, 32, 3), np.array([0, 1]))[:-100]),
                               "data_batch_1.bin", "not a whole number of records (the last is truncated"),
    "cifar label byte": (lambda t: put(t / "data_batch_1.bin", cifar_bytes(pixels(2, 32, 32, 3), np.array([3, 12]))),
                         "data_batch_1.bin", "record 2 (counting from 1)"),
    "npz not images": (lambda t: np.savez(t / "img.npz", X=np.zeros((4, 3)), y=np.arange(4))
                       or {"kind": "images", "path": "img.npz"}, "img.npz", "expected numeric images (N, H, W, C)"),
    "npz count mismatch": (lambda t: np.savez(t / "img.npz", X=np.zeros((4, 3, 3)), y=np.arange(3))
                           or {"kind": "images", "path": "img.npz"}, "img.npz", "X holds 4 images but y 3 labels"),
    "not found": (lambda t: {"kind": "images", "path": "nowhere.npz"}, "nowhere.npz", "not found"),
    "unknown format": (lambda t: put(t / "pics.dat", b"hello world"), "pics.dat", "set data.format"),
    "folder of nothing": (lambda t: (t / "empty").mkdir() or {"kind": "images", "path": "empty"},
                          "empty", "holds neither CIFAR-10 batches"),
    "labels beside an npz": (lambda t: np.savez(t / "img.npz", X=np.zeros((4, 3, 3)), y=np.arange(4))
                             or {"kind": "images", "path": "img.npz", "labels": "y.idx"},
                             "img.npz", "a labels file applies to IDX images only"),
    "n_samples too many": (lambda t: _idx_pair(t, GOOD_IDX, GOOD_LABELS) | {"n_samples": 5},
                           "train-images-idx3-ubyte", "5 images asked for"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_image_files_exit_2_naming_the_file(tmp_path, name):
    write, named, says = BAD[name]
    result = train(tmp_path, write(tmp_path))
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)
    assert named in result.output and says in result.output, result.output
    assert not (tmp_path / "runs").exists()


def test_digits_without_scikit_learn_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr("gradlab.images.SKLEARN", "sklearn_not_installed")  # as if it were not installed
    result = train(tmp_path, {"kind": "digits"})
    assert result.exit_code == 2 and "pip install 'gradlab[images]'" in result.output, result.output
    assert "data.kind" in result.output and "Traceback" not in result.output


DIGIT_0 = [[0, 0, 5, 13, 9, 1, 0, 0], [0, 0, 13, 15, 10, 15, 5, 0], [0, 3, 15, 2, 0, 11, 8, 0],
           [0, 4, 12, 0, 0, 8, 8, 0], [0, 5, 8, 0, 0, 9, 8, 0], [0, 4, 11, 0, 1, 12, 7, 0],
           [0, 2, 14, 5, 10, 12, 0, 0], [0, 0, 6, 13, 10, 0, 0, 0]]  # load_digits().images[0], a 0


def test_digits_are_8x8_images_of_ten_classes():
    if importlib.util.find_spec("sklearn") is None:
        pytest.skip("scikit-learn is not installed (pip install 'gradlab[images]')")
    d = dataset({"kind": "digits", "standardize": False, "val_fraction": 0.0})
    assert d.image and d.X_train.shape == (1797, 8, 8, 1) and d.n_classes == 10
    assert d.X_train.min() == 0.0 and d.X_train.max() == 1.0  # 0..16 scaled
    assert np.bincount(d.y_train).min() >= 170  # about 180 of each digit
    zero = np.array(DIGIT_0) / 16
    assert any(np.array_equal(x[..., 0], zero) and y == 0 for x, y in zip(d.X_train, d.y_train))
    small = dataset({"kind": "digits", "n_samples": 100}, seed=2)
    assert len(small.X_train) + len(small.X_val) == 100 and small.n_classes == 10


@pytest.mark.slow  # imports scikit-learn (3 to 7 s, scipy)
def test_digits_are_those_of_scikit_learns_load_digits():
    datasets = pytest.importorskip("sklearn.datasets")
    digits = datasets.load_digits()
    d = dataset({"kind": "digits", "standardize": False, "val_fraction": 0.0})
    ours = np.column_stack([d.X_train.reshape(len(d.X_train), -1) * 16, d.y_train])  # (shuffled by the split)
    theirs = np.column_stack([digits.images.reshape(len(digits.images), -1), digits.target])
    assert np.array_equal(ours[np.lexsort(ours.T)], theirs[np.lexsort(theirs.T)])


def test_kind_npz_with_images_points_to_kind_images(tmp_path):
    np.savez(tmp_path / "img.npz", X=pixels(4, 3, 3, 1), y=np.arange(4))
    result = train(tmp_path, {"kind": "npz", "path": "img.npz"})
    assert result.exit_code == 2 and "img.npz" in result.output, result.output
    assert "(for images (N, H, W, C) use data.kind images)" in result.output


IMAGE_NPZ = "expected an .npz archive (numpy.savez) with X (N, H, W, C) or (N, H, W) images and y (N,) labels."


@pytest.mark.parametrize("write, says", [
    (lambda p: np.savez(p, y=np.arange(4)), "img.npz has no array X (arrays found: y); "),
    (lambda p: p.write_bytes(b"PK\x03\x04 not a whole zip"), "img.npz is not an .npz archive (BadZipFile); "),
])
def test_a_bad_image_npz_says_what_an_image_npz_holds(tmp_path, write, says):
    """Not the hint of data.kind npz (X (N, D) ... or a sequence set X (N, T, F)): an image file's."""
    write(tmp_path / "img.npz")
    result = train(tmp_path, {"kind": "images", "path": "img.npz"})
    assert result.exit_code == 2, result.output
    assert says + IMAGE_NPZ in " ".join(result.output.split()), result.output
    assert "(N, D)" not in result.output and "sequence" not in result.output


@pytest.mark.parametrize("shape", [(6, 3, 8, 8), (6, 1, 28, 28), (6, 4, 5, 7)])
def test_channels_first_images_are_refused_saying_how_to_transpose_them(tmp_path, shape):
    """(N, C, H, W), as torch keeps images, would be read as C x H images with W channels: exit 2."""
    np.savez(tmp_path / "img.npz", X=np.zeros(shape), y=np.arange(shape[0]) % 2)
    result = train(tmp_path, {"kind": "images", "path": "img.npz"})
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    n, c, h, w = shape
    text = " ".join(result.output.split())
    assert f"array X in {tmp_path / 'img.npz'} has shape {shape}: images with their {c} channel(s) first" in text
    assert f"read as {c}x{h} images with {w} channels" in text
    assert f"channels last, NHWC (N, H, W, C): save X.transpose(0, 2, 3, 1) instead (shape ({n}, {h}, {w}, {c}))" in text
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("shape", [(6, 8, 8, 3), (6, 3, 8, 1), (6, 4, 4, 8), (6, 8, 8, 16)])
def test_channels_last_images_are_read_as_they_are(tmp_path, shape):
    """A last axis of 1, 3 or 4, or no more than the second (4x4 images of 8 channels): NHWC as it stands."""
    np.savez(tmp_path / "img.npz", X=np.zeros(shape), y=np.arange(shape[0]) % 2)
    d = from_file(tmp_path, {"kind": "images", "path": "img.npz", "standardize": False})
    assert d.input_shape == shape[1:]


def test_bad_data_from_a_set_option_is_blamed_on_it(tmp_path):
    """The option as typed, as for the model's keys; a data problem no option wrote stays the file's."""
    config = tmp_path / "exp.yaml"
    config.write_text(yaml.safe_dump({"data": {"kind": "shapes", "n_samples": 16, "size": 6}, "model": MODEL,
                                      "train": {"steps": 1}}), encoding="utf-8")
    run = ["train", str(config), "--set", f"log.out={tmp_path / 'runs'}"]
    result = CliRunner().invoke(app, [*run, "--set", "data={kind: images, path: nope.npz}"])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert text.startswith(f"error: --set 'data={{kind: images, path: nope.npz}}': data.path: not found: "
                           f"{tmp_path / 'nope.npz'} (expected an .npz archive"), text
    np.savez(tmp_path / "img.npz", X=pixels(4, 6, 6), y=np.arange(4) % 2)
    result = CliRunner().invoke(app, [*run, "--set", "data={kind: images, path: img.npz, n_samples: 9}"])
    assert " ".join(result.output.split()).startswith("error: --set 'data={kind: images, path: img.npz, n_samples: "
                                                      "9}': data.n_samples: 9 images asked for, but "), result.output
    config.write_text(yaml.safe_dump({"data": {"kind": "images", "path": "img.npz"}, "model": MODEL,
                                      "train": {"steps": 1}}), encoding="utf-8")
    result = CliRunner().invoke(app, [*run, "--set", "data.n_samples=9"])
    assert " ".join(result.output.split()).startswith("error: --set data.n_samples=9: data.n_samples: 9 images asked "
                                                      "for, but "), result.output
    result = CliRunner().invoke(app, [*run, "--set", "data.val_fraction=0.5", "--set", "data.path=gone.npz"])
    assert " ".join(result.output.split()).startswith("error: --set data.path=gone.npz: data.path: not found"), \
        result.output
    (tmp_path / "img.npz").unlink()
    result = CliRunner().invoke(app, [*run, "--set", "data.n_samples=2"])  # the file's path, not the option's key
    assert " ".join(result.output.split()).startswith(f"error: {config}: data.path: not found"), result.output
