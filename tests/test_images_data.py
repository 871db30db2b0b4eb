"""Image data sets: the shapes task, the file readers (npz, IDX plain and gz, CIFAR-10 binary batches), the
digits of scikit-learn, and exit 2 naming the file for every bad one."""
from __future__ import annotations

import numpy as np
import pytest

from gradlab.config import config_from_dict
from gradlab.data import SHAPE_NAMES, load_data

MODEL = {"depth": 1, "width": 4}


def dataset(data: dict, seed: int = 0):
    return load_data(config_from_dict({"data": data, "model": MODEL}), np.random.default_rng(seed))


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
