"""gradlab.data sequence tasks: adding, copy, temporal order, sequential parity and 3-D npz files."""
from __future__ import annotations

import numpy as np
import pytest

from gradlab.config import (
    AddingData,
    ConfigError,
    CopyData,
    NpzData,
    ParityData,
    TemporalOrderData,
    config_from_dict,
)
from gradlab.data import Dataset, load_data

from data_helpers import assert_deterministic, rng




def both(d: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """All samples (train then validation)."""
    return np.concatenate([d.X_train, d.X_val]), np.concatenate([d.y_train, d.y_val])


TASKS = [
    AddingData(kind="adding", T=20, n_samples=100),
    CopyData(kind="copy", T=15, n_samples=100, n_symbols=4, length=3),
    TemporalOrderData(kind="temporal_order", T=30, n_samples=100),
    ParityData(kind="parity", T=7, n_samples=100),
]
IDS = [c.kind for c in TASKS]


# --------------------------------------------------------------------------- shapes, dtypes, labels

@pytest.mark.parametrize("cfg, F, task, n_out, per_step, y_tail", [
    (TASKS[0], 2, "regression", 1, False, (1,)),
    (TASKS[1], 6, "classification", 5, True, (15,)),
    (TASKS[2], 6, "classification", 4, False, ()),
    (TASKS[3], 1, "classification", 2, False, ()),
], ids=IDS)
def test_shapes_dtypes_and_flags(cfg, F, task, n_out, per_step, y_tail):
    d = load_data(cfg, rng())
    assert d.sequence and d.per_step == per_step and d.task == task
    assert d.n_features == F and d.n_outputs == n_out
    assert d.X_train.shape == (80, cfg.T, F) and d.X_val.shape == (20, cfg.T, F)
    assert d.y_train.shape == (80, *y_tail) and d.y_val.shape == (20, *y_tail)
    assert d.X_train.dtype == d.X_val.dtype == np.float64
    expected = np.float64 if task == "regression" else np.int64
    assert d.y_train.dtype == d.y_val.dtype == expected
    if task == "classification":
        assert d.n_classes == n_out
        _, y = both(d)
        assert y.min() == 0 and y.max() == n_out - 1


@pytest.mark.parametrize("cfg", TASKS, ids=IDS)
def test_same_seed_same_data_other_seed_other_data(cfg):
    assert_deterministic(cfg, 5)


def test_flat_datasets_are_not_sequences():
    d = load_data(ParityData(kind="parity", n_samples=20, n_features=3), rng())
    assert not d.sequence and not d.per_step and d.X_train.shape == (16, 3)


def test_full_config_with_a_sequence_task():
    cfg = config_from_dict({"data": {"kind": "adding", "T": 10, "n_samples": 50},
                            "model": {"kind": "rnn", "hidden": 4}, "loss": "mse"})
    d = load_data(cfg, rng())
    assert d.X_train.shape == (40, 10, 2) and not d.per_step


# --------------------------------------------------------------------------- adding

@pytest.mark.parametrize("T", [2, 7, 20])
def test_adding_markers_and_target(T):
    X, y = both(load_data(AddingData(kind="adding", T=T, n_samples=300), rng(1)))
    values, marks = X[:, :, 0], X[:, :, 1]
    assert np.all((values >= 0) & (values <= 1))
    assert set(np.unique(marks)) <= {0.0, 1.0}
    half = T // 2
    np.testing.assert_array_equal(marks[:, :half].sum(axis=1), 1.0)
    np.testing.assert_array_equal(marks[:, half:].sum(axis=1), 1.0)
    np.testing.assert_allclose(y[:, 0], (values * marks).sum(axis=1), rtol=0, atol=1e-15)


def test_adding_marker_positions_cover_each_half():
    X, _ = both(load_data(AddingData(kind="adding", T=10, n_samples=500), rng(2)))
    pos = np.argwhere(X[:, :, 1] == 1.0)[:, 1]
    assert set(pos.tolist()) == set(range(10))


def test_adding_constant_one_baseline_is_one_sixth():
    d = load_data(AddingData(kind="adding", T=6, n_samples=20000, val_fraction=0.0), rng(3))
    assert abs(np.mean((d.y_train - 1.0) ** 2) - 1 / 6) < 0.005


def test_adding_standardize_is_per_feature_over_samples_and_time():
    cfg = AddingData(kind="adding", T=12, n_samples=200, standardize=True)
    on, off = load_data(cfg, rng(4)), load_data(cfg.model_copy(update={"standardize": False}), rng(4))
    np.testing.assert_allclose(on.X_train.mean(axis=(0, 1)), 0.0, atol=1e-12)
    np.testing.assert_allclose(on.X_train.std(axis=(0, 1)), 1.0, atol=1e-12)
    mean, std = off.X_train.mean(axis=(0, 1)), off.X_train.std(axis=(0, 1))
    np.testing.assert_allclose(on.X_val, (off.X_val - mean) / std, atol=1e-12)
    np.testing.assert_array_equal(on.y_train, off.y_train)


# --------------------------------------------------------------------------- copy

@pytest.mark.parametrize("T, S, L", [(15, 4, 3), (4, 2, 1), (30, 8, 5)])
def test_copy_structure(T, S, L):
    d = load_data(CopyData(kind="copy", T=T, n_samples=120, n_symbols=S, length=L), rng(1))
    X, y = both(d)
    assert np.all(X.sum(axis=2) == 1.0) and set(np.unique(X)) == {0.0, 1.0}  # one-hot
    tokens = X.argmax(axis=2)
    assert np.all((tokens[:, :L] >= 1) & (tokens[:, :L] <= S))  # the symbols
    np.testing.assert_array_equal(tokens[:, L:T - L - 1], 0)  # blanks
    np.testing.assert_array_equal(tokens[:, T - L - 1], S + 1)  # the delimiter
    np.testing.assert_array_equal(tokens[:, T - L:], 0)  # blanks while answering
    np.testing.assert_array_equal(y[:, :T - L], 0)
    np.testing.assert_array_equal(y[:, T - L:], tokens[:, :L])
    assert d.n_classes == S + 1 and y.max() <= S


@pytest.mark.parametrize("T, L", [(9, 4), (3, 1), (2, 5)])
def test_copy_needs_T_of_at_least_2L_plus_2(T, L):
    with pytest.raises(ConfigError) as info:
        load_data(CopyData(kind="copy", T=T, length=L, n_samples=10), rng(), source="exp.yaml")
    msg = str(info.value)
    assert msg.startswith("exp.yaml: data.T") and str(2 * L + 2) in msg and "\n" not in msg


# --------------------------------------------------------------------------- temporal order

@pytest.mark.parametrize("T, w1, w2", [(30, (3, 6), (15, 18)), (100, (10, 20), (50, 60)), (4, (0, 1), (2, 3))])
def test_temporal_order_structure(T, w1, w2):
    d = load_data(TemporalOrderData(kind="temporal_order", T=T, n_samples=400), rng(1))
    X, y = both(d)
    assert np.all(X.sum(axis=2) == 1.0) and set(np.unique(X)) == {0.0, 1.0}
    tokens = X.argmax(axis=2)
    relevant = tokens >= 4  # X = 4, Y = 5
    assert np.all(relevant.sum(axis=1) == 2)
    pos = np.argwhere(relevant)[:, 1].reshape(-1, 2)
    assert np.all((pos[:, 0] >= w1[0]) & (pos[:, 0] < w1[1]))
    assert np.all((pos[:, 1] >= w2[0]) & (pos[:, 1] < w2[1]))
    rows = np.arange(len(y))
    first, second = tokens[rows, pos[:, 0]] - 4, tokens[rows, pos[:, 1]] - 4
    np.testing.assert_array_equal(y, 2 * first + second)  # XX 0, XY 1, YX 2, YY 3
    assert set(np.unique(y)) == {0, 1, 2, 3}
    if T >= 30:
        assert set(np.unique(tokens[~relevant])) == {0, 1, 2, 3}  # every distractor shows up


# --------------------------------------------------------------------------- parity

def test_sequence_parity_labels_without_noise():
    X, y = both(load_data(ParityData(kind="parity", T=9, n_samples=200, standardize=False), rng(1)))
    assert set(np.unique(X)) == {0.0, 1.0}
    np.testing.assert_array_equal(y, X[:, :, 0].sum(axis=1).astype(int) % 2)
    assert 0.3 < y.mean() < 0.7


def test_sequence_parity_noise_perturbs_the_bits():
    X, y = both(load_data(ParityData(kind="parity", T=9, n_samples=200, noise=0.1, standardize=False), rng(1)))
    assert not set(np.unique(X)) <= {0.0, 1.0}
    np.testing.assert_array_equal(y, (X[:, :, 0] > 0.5).sum(axis=1) % 2)  # 5 sigma from the threshold


# --------------------------------------------------------------------------- npz

def npz(tmp_path, name="s.npz", **arrays) -> str:
    np.savez(tmp_path / name, **arrays)
    return str(tmp_path / name)


def order_by_first(X: np.ndarray) -> np.ndarray:
    return np.argsort(X[:, 0, 0])


def test_npz_sequence_with_labels_per_sequence(tmp_path):
    X = np.arange(60.0).reshape(5, 4, 3)
    y = np.array([1, 0, 1, 2, 2])
    d = load_data(NpzData(kind="npz", path=npz(tmp_path, X=X, y=y), val_fraction=0.0, standardize=False), rng())
    assert d.sequence and not d.per_step and d.task == "classification" and d.n_classes == 3
    assert d.n_features == 3 and d.n_outputs == 3
    o = order_by_first(d.X_train)
    np.testing.assert_array_equal(d.X_train[o], X)
    np.testing.assert_array_equal(d.y_train[o], y)


def test_npz_sequence_with_regression_targets(tmp_path):
    X = np.arange(60.0).reshape(5, 4, 3).astype(np.float32)
    y = np.linspace(0, 1, 10).reshape(5, 2)
    d = load_data(NpzData(kind="npz", path=npz(tmp_path, X=X, y=y), val_fraction=0.4, standardize=False), rng())
    assert d.sequence and not d.per_step and d.task == "regression" and d.n_outputs == 2
    assert d.X_train.shape == (3, 4, 3) and d.X_val.shape == (2, 4, 3) and d.X_train.dtype == np.float64
    Xs, ys = both(d)
    np.testing.assert_array_equal(ys[order_by_first(Xs)], y)


@pytest.mark.parametrize("labels", [np.array([0, 1, 2]), np.array([0.0, 1.0, 2.0])], ids=["int", "float"])
def test_npz_sequence_with_labels_per_step(tmp_path, labels):
    X = np.arange(24.0).reshape(4, 6, 1)
    y = labels[np.arange(24).reshape(4, 6) % 3]
    d = load_data(NpzData(kind="npz", path=npz(tmp_path, X=X, y=y), val_fraction=0.25), rng())
    assert d.sequence and d.per_step and d.task == "classification" and d.n_classes == 3 and d.n_outputs == 3
    assert d.y_train.shape == (3, 6) and d.y_val.shape == (1, 6) and d.y_train.dtype == np.int64
    np.testing.assert_allclose(d.X_train.mean(axis=(0, 1)), 0.0, atol=1e-12)  # standardized over time too
    Xs, ys = both(d)
    np.testing.assert_array_equal(ys[order_by_first(Xs)], y.astype(int))


def test_npz_sequence_round_trips_like_a_generated_task(tmp_path):
    ref = load_data(CopyData(kind="copy", T=8, n_symbols=3, length=2, n_samples=30, val_fraction=0.0), rng())
    path = npz(tmp_path, X=ref.X_train, y=ref.y_train)
    d = load_data(NpzData(kind="npz", path=path, val_fraction=0.0, standardize=False), rng())
    assert d.per_step and d.n_classes == 4
    Xs = np.concatenate([d.X_train, d.X_val])
    key = lambda A: np.lexsort(A.argmax(axis=2).T[::-1])  # noqa: E731 - sort sequences by their tokens
    np.testing.assert_array_equal(Xs[key(Xs)], ref.X_train[key(ref.X_train)])
    np.testing.assert_array_equal(d.y_train[key(d.X_train)], ref.y_train[key(ref.X_train)])


NPZ_SEQUENCE_ERRORS = [
    # (name, task, arrays, words)
    ("step_regression", "auto", dict(X=np.zeros((3, 4, 1)), y=np.full((3, 4), 0.5)),
     ["data.path", "per-step regression is not supported", "(3, 4)"]),
    ("step_regression_task", "regression", dict(X=np.zeros((3, 4, 1)), y=np.arange(12).reshape(3, 4)),
     ["data.path", "per-step regression is not supported"]),
    ("step_nan", "auto", dict(X=np.zeros((2, 3, 1)), y=np.array([[0, 1, np.nan], [1, 0, 1]])), ["NaN"]),
    ("step_one_class", "auto", dict(X=np.zeros((2, 3, 1)), y=np.zeros((2, 3), dtype=int)), ["at least 2"]),
    ("x_4d", "auto", dict(X=np.zeros((2, 3, 1, 1)), y=np.zeros(2)), ["3-D", "(N, T, F)"]),
    ("y_3d", "auto", dict(X=np.zeros((2, 3, 1)), y=np.zeros((2, 3, 1))), ["(N, T)"]),
    ("lengths", "auto", dict(X=np.zeros((3, 4, 1)), y=np.zeros(2)), ["3 rows"]),
    ("no_steps", "auto", dict(X=np.zeros((2, 0, 1)), y=np.array([0, 1])), ["empty"]),
    ("no_features", "auto", dict(X=np.zeros((2, 3, 0)), y=np.array([0, 1])), ["empty"]),
    ("x_nan", "auto", dict(X=np.array([[[0.0], [1.0]], [[np.nan], [1.0]]]), y=np.array([0, 1])),
     ["NaN", "1 row(s)", "data row 2"]),
]


@pytest.mark.parametrize("name, task, arrays, words", NPZ_SEQUENCE_ERRORS, ids=[c[0] for c in NPZ_SEQUENCE_ERRORS])
def test_npz_sequence_errors(tmp_path, name, task, arrays, words):
    path = npz(tmp_path, **arrays)
    with pytest.raises(ConfigError) as info:
        load_data(NpzData(kind="npz", path=path, task=task), rng(), source="exp.yaml")
    msg = str(info.value)
    assert msg.startswith("exp.yaml: data.") and "\n" not in msg
    for word in words:
        assert word in msg, msg
