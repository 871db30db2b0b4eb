"""gradlab.data: synthetic generators, CSV/NPZ loading, split, standardisation and errors."""
from __future__ import annotations

import numpy as np
import pytest

from gradlab.config import (
    ACTIVATIONS,
    BlobsData,
    ConfigError,
    CsvData,
    MoonsData,
    NpzData,
    ParityData,
    SpiralsData,
    TeacherData,
    XorData,
    config_from_dict,
)
from gradlab.data import load_data

from data_helpers import assert_deterministic, every_array, rng




SYNTHETIC = [
    SpiralsData(kind="spirals", n_samples=90, n_classes=3),
    MoonsData(kind="moons", n_samples=101),
    BlobsData(kind="blobs", n_samples=100, n_features=5, n_classes=4),
    XorData(kind="xor", n_samples=400),
    ParityData(kind="parity", n_samples=400, n_features=3),
]
IDS = [c.kind for c in SYNTHETIC]


# --------------------------------------------------------------------------- synthetic shapes and labels

@pytest.mark.parametrize("cfg", SYNTHETIC, ids=IDS)
def test_classification_shapes_and_labels(cfg):
    d = load_data(cfg, rng())
    n, n_val = cfg.n_samples, round(cfg.val_fraction * cfg.n_samples)
    n_classes = getattr(cfg, "n_classes", 2)
    n_features = getattr(cfg, "n_features", 2)
    assert d.task == "classification" and d.n_classes == n_classes == d.n_outputs
    assert d.X_train.shape == (n - n_val, n_features) and d.X_val.shape == (n_val, n_features)
    assert d.y_train.shape == (n - n_val,) and d.y_val.shape == (n_val,)
    assert d.n_features == n_features
    assert d.X_train.dtype == d.X_val.dtype == np.float64
    assert d.y_train.dtype == d.y_val.dtype == np.int64
    labels = np.concatenate([d.y_train, d.y_val])
    assert labels.min() == 0 and labels.max() == n_classes - 1


@pytest.mark.parametrize("cfg", SYNTHETIC[:3], ids=IDS[:3])
def test_constructed_sets_are_exactly_balanced(cfg):
    d = load_data(cfg, rng())
    counts = np.bincount(np.concatenate([d.y_train, d.y_val]))
    assert counts.max() - counts.min() <= 1 and counts.sum() == cfg.n_samples


@pytest.mark.parametrize("cfg", SYNTHETIC[3:], ids=IDS[3:])
def test_sampled_sets_are_roughly_balanced(cfg):
    # labels follow from uniform inputs: Binomial(400, 1/2) stays within 0.4..0.6 (5 sigma)
    d = load_data(cfg, rng())
    share = np.concatenate([d.y_train, d.y_val]).mean()
    assert 0.4 < share < 0.6


def test_spirals_radius_is_at_most_one_without_standardizing():
    cfg = SpiralsData(kind="spirals", n_samples=60, n_classes=4, standardize=False, val_fraction=0.0)
    d = load_data(cfg, rng())
    r = np.linalg.norm(d.X_train, axis=1)
    assert r.max() == pytest.approx(1.0) and r.min() == pytest.approx(0.0)


def test_moons_without_noise_lie_on_the_half_circles():
    d = load_data(MoonsData(kind="moons", n_samples=50, noise=0.0, standardize=False, val_fraction=0.0), rng())
    X, y = d.X_train, d.y_train
    outer = np.linalg.norm(X[y == 0], axis=1)
    inner = np.linalg.norm(X[y == 1] - [1.0, 0.5], axis=1)
    np.testing.assert_allclose(outer, 1.0)
    np.testing.assert_allclose(inner, 1.0)
    assert np.all(X[y == 0, 1] >= -1e-12) and np.all(X[y == 1, 1] <= 0.5 + 1e-12)


def test_xor_labels_follow_the_sign_rule_without_noise():
    d = load_data(XorData(kind="xor", n_samples=300, noise=0.0, standardize=False), rng())
    for X, y in [(d.X_train, d.y_train), (d.X_val, d.y_val)]:
        assert np.all(np.abs(X) <= 1.0)
        np.testing.assert_array_equal(y, (X[:, 0] > 0) != (X[:, 1] > 0))


def test_parity_labels_are_the_parity_of_the_bits_without_noise():
    d = load_data(ParityData(kind="parity", n_samples=200, n_features=5, standardize=False), rng())
    for X, y in [(d.X_train, d.y_train), (d.X_val, d.y_val)]:
        assert set(np.unique(X)) == {-1.0, 1.0}
        np.testing.assert_array_equal(y, (X > 0).sum(axis=1) % 2)


def test_parity_noise_perturbs_the_inputs():
    d = load_data(ParityData(kind="parity", n_samples=50, noise=0.3, standardize=False), rng())
    assert not set(np.unique(d.X_train)) <= {-1.0, 1.0}


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_teacher_regression_shapes(activation):
    cfg = TeacherData(kind="teacher", n_samples=50, n_features=6, n_outputs=3, depth=2, width=8,
                      activation=activation, noise=0.1)
    d = load_data(cfg, rng())
    assert d.task == "regression" and d.n_classes is None and d.n_outputs == 3 and d.n_features == 6
    assert d.X_train.shape == (40, 6) and d.y_train.shape == (40, 3)
    assert d.X_val.shape == (10, 6) and d.y_val.shape == (10, 3)
    assert all(a.dtype == np.float64 for a in every_array(d))
    assert np.all(np.isfinite(d.y_train)) and d.y_train.std() > 0


def test_teacher_targets_are_not_standardized():
    cfg = TeacherData(kind="teacher", n_samples=40, activation="relu", val_fraction=0.0)
    on, off = load_data(cfg, rng(3)), load_data(cfg.model_copy(update={"standardize": False}), rng(3))
    np.testing.assert_array_equal(on.y_train, off.y_train)
    assert not np.array_equal(on.X_train, off.X_train)


# --------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("cfg", [*SYNTHETIC, TeacherData(kind="teacher", n_samples=40)], ids=[*IDS, "teacher"])
def test_same_seed_same_data_other_seed_other_data(cfg):
    assert_deterministic(cfg, 7)


def test_full_config_is_accepted():
    cfg = config_from_dict({"data": {"kind": "moons", "n_samples": 30}, "model": {"depth": 1, "width": 4}})
    d = load_data(cfg, rng())
    assert d.X_train.shape == (24, 2)


# --------------------------------------------------------------------------- split and scaling

@pytest.mark.parametrize("cfg", [SYNTHETIC[2], TeacherData(kind="teacher", n_samples=64, n_features=7)],
                         ids=["blobs", "teacher"])
def test_standardize_gives_zero_mean_unit_std_on_train(cfg):
    d = load_data(cfg, rng())
    np.testing.assert_allclose(d.X_train.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(d.X_train.std(axis=0), 1.0, atol=1e-12)
    assert np.abs(d.X_val.mean(axis=0)).max() > 1e-6  # validation uses the training statistics


def test_standardize_uses_training_statistics_for_validation():
    cfg = BlobsData(kind="blobs", n_samples=80, n_features=3)
    on, off = load_data(cfg, rng(1)), load_data(cfg.model_copy(update={"standardize": False}), rng(1))
    mean, std = off.X_train.mean(axis=0), off.X_train.std(axis=0)
    np.testing.assert_allclose(on.X_val, (off.X_val - mean) / std, atol=1e-12)


def test_constant_feature_is_centred_not_divided_by_zero(tmp_path):
    path = tmp_path / "const.npz"
    X = np.column_stack([np.full(10, 3.0), np.arange(10.0)])
    np.savez(path, X=X, y=np.arange(10) % 2)
    d = load_data(NpzData(kind="npz", path=str(path), val_fraction=0.0), rng())
    np.testing.assert_array_equal(d.X_train[:, 0], 0.0)
    assert np.all(np.isfinite(d.X_train))


@pytest.mark.parametrize("cfg", [SYNTHETIC[0], TeacherData(kind="teacher", n_samples=20, n_outputs=2)],
                         ids=["spirals", "teacher"])
def test_val_fraction_zero_gives_empty_validation_with_right_columns(cfg):
    d = load_data(cfg.model_copy(update={"val_fraction": 0.0}), rng())
    assert len(d.X_train) == cfg.n_samples
    assert d.X_val.shape == (0, d.n_features)
    assert d.y_val.shape == (0,) + d.y_train.shape[1:] and d.y_val.dtype == d.y_train.dtype


def test_split_is_a_shuffled_partition():
    cfg = ParityData(kind="parity", n_samples=64, n_features=6, val_fraction=0.25, standardize=False)
    full = load_data(cfg.model_copy(update={"val_fraction": 0.0}), rng(2))
    d = load_data(cfg, rng(2))
    assert len(d.X_val) == 16
    rows = {tuple(r) for r in np.vstack([d.X_train, d.X_val])}
    assert rows == {tuple(r) for r in full.X_train}
    assert not np.array_equal(d.y_train, np.sort(d.y_train))


def test_split_keeps_one_training_row(tmp_path):
    path = tmp_path / "two.npz"
    np.savez(path, X=np.array([[0.0], [1.0]]), y=np.array([0, 1]))
    d = load_data(NpzData(kind="npz", path=str(path), val_fraction=0.9), rng())
    assert len(d.X_train) == 1 and len(d.X_val) == 1


# --------------------------------------------------------------------------- csv

def write(path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_csv_round_trip_with_string_labels(tmp_path):
    path = write(tmp_path / "d.csv", "a,b,label\n1,2.5,dog\n3,4.0,cat\n5,6.5,dog\n7,8.0,bird\n")
    d = load_data(CsvData(kind="csv", path=path, target="label", val_fraction=0.0, standardize=False), rng())
    assert d.task == "classification" and d.n_classes == 3 and d.n_features == 2
    order = np.argsort(d.X_train[:, 0])
    np.testing.assert_array_equal(d.X_train[order], [[1, 2.5], [3, 4.0], [5, 6.5], [7, 8.0]])
    np.testing.assert_array_equal(d.y_train[order], [2, 1, 2, 0])  # bird < cat < dog
    assert d.X_train.dtype == np.float64 and d.y_train.dtype == np.int64


def test_csv_target_may_be_any_column_and_integer_labels_are_remapped(tmp_path):
    path = write(tmp_path / "d.csv", "y,x\n5,0.1\n7,0.2\n5,0.3\n9,0.4\n")
    d = load_data(CsvData(kind="csv", path=path, target="y", val_fraction=0.0, standardize=False), rng())
    order = np.argsort(d.X_train[:, 0])
    assert d.task == "classification" and d.n_classes == 3
    np.testing.assert_array_equal(d.y_train[order], [0, 1, 0, 2])


@pytest.mark.parametrize("values, task", [
    ("0.0 1.0 2.0 1.0", "classification"),         # integer-valued floats, few values
    ("0.5 1.0 2.0 1.0", "regression"),             # a fraction
    (" ".join(f"{v}.0" for v in range(25)), "regression"),  # integer-valued but > 20 values
    (" ".join(str(v) for v in range(25)), "classification"),  # integers are labels whatever their count
])
def test_csv_auto_task(tmp_path, values, task):
    ys = values.split()
    rows = "".join(f"{i},{v}\n" for i, v in enumerate(ys))
    path = write(tmp_path / "d.csv", "x,t\n" + rows)
    d = load_data(CsvData(kind="csv", path=path, target="t", val_fraction=0.0), rng())
    assert d.task == task
    if task == "regression":
        assert d.y_train.shape == (len(ys), 1) and d.n_outputs == 1
        np.testing.assert_array_equal(np.sort(d.y_train[:, 0]), np.sort(np.array(ys, dtype=float)))


def test_csv_explicit_task_overrides_auto(tmp_path):
    path = write(tmp_path / "d.csv", "x,t\n1,0\n2,1\n3,0\n4,1\n")
    reg = load_data(CsvData(kind="csv", path=path, target="t", task="regression"), rng())
    cls = load_data(CsvData(kind="csv", path=path, target="t", task="classification"), rng())
    assert reg.task == "regression" and reg.y_train.dtype == np.float64 and reg.y_train.ndim == 2
    assert cls.task == "classification" and cls.n_classes == 2


CSV_ERRORS = [
    # (file text or None for a missing file, target, task, key path, words in the message)
    (None, "t", "auto", "data.path", ["file not found"]),
    ("", "t", "auto", "data.path", ["empty"]),
    ("x,t\n", "t", "auto", "data.path", ["no data rows"]),
    ("x,t\n1,0\n2,1\n", "label", "auto", "data.target", ["'label'", "available columns: x, t"]),
    ("x,name,t\n1,a,0\n2,b,1\n", "t", "auto", "data.path", ["numeric", "name"]),
    ("x,t\n1,0\n,1\n", "t", "auto", "data.path", ["NaN"]),
    ("x,t\n1,0\n2,\n", "t", "auto", "data.target", ["missing"]),
    ("t\n0\n1\n", "t", "auto", "data.path", ["feature column"]),
    ("x,t\n1,a\n2,b\n", "t", "regression", "data.task", ["numeric target"]),
    ("x,t\n1,a\n2,a\n", "t", "auto", "data.task", ["at least 2"]),
    ('x,t\n1,"a\n', "t", "auto", "data.path", ["cannot read"]),
]


@pytest.mark.parametrize("text, target, task, key, words", CSV_ERRORS,
                         ids=[c[4][0] for c in CSV_ERRORS])
def test_csv_errors(tmp_path, text, target, task, key, words):
    path = str(tmp_path / "d.csv") if text is None else write(tmp_path / "d.csv", text)
    cfg = CsvData(kind="csv", path=path, target=target, task=task)
    with pytest.raises(ConfigError) as info:
        load_data(cfg, rng(), source="exp.yaml")
    msg = str(info.value)
    assert msg.startswith("exp.yaml: ") and key in msg and "\n" not in msg
    for word in words:
        assert word in msg


def test_csv_directory_is_not_a_file(tmp_path):
    with pytest.raises(ConfigError, match="data.path.*not a file"):
        load_data(CsvData(kind="csv", path=str(tmp_path), target="t"), rng())


def test_csv_binary_garbage(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(b"\xff\xfe\x00\x81garbage\x00\xc3")
    with pytest.raises(ConfigError, match="data.path"):
        load_data(CsvData(kind="csv", path=str(path), target="t"), rng())


# --------------------------------------------------------------------------- npz

def test_npz_round_trip_classification_and_regression(tmp_path):
    X = np.arange(12.0).reshape(6, 2)
    np.savez(tmp_path / "c.npz", X=X, y=np.array(["b", "a", "b", "c", "a", "b"]))
    c = load_data(NpzData(kind="npz", path=str(tmp_path / "c.npz"), val_fraction=0.0, standardize=False), rng())
    order = np.argsort(c.X_train[:, 0])
    np.testing.assert_array_equal(c.X_train[order], X)
    np.testing.assert_array_equal(c.y_train[order], [1, 0, 1, 2, 0, 1])
    assert c.task == "classification" and c.n_classes == 3

    Y = np.linspace(0, 1, 12).reshape(6, 2)
    np.savez(tmp_path / "r.npz", X=X.astype(np.float32), y=Y)
    r = load_data(NpzData(kind="npz", path=str(tmp_path / "r.npz"), val_fraction=0.5, standardize=False), rng())
    assert r.task == "regression" and r.n_outputs == 2 and r.X_train.dtype == np.float64
    assert r.X_train.shape == (3, 2) and r.y_val.shape == (3, 2)
    np.testing.assert_array_equal(np.vstack([r.y_train, r.y_val])[np.argsort(np.r_[r.X_train[:, 0], r.X_val[:, 0]])], Y)


def test_npz_column_target_is_flattened_for_classification(tmp_path):
    np.savez(tmp_path / "d.npz", X=np.zeros((4, 1)), y=np.array([[0], [1], [1], [0]]))
    d = load_data(NpzData(kind="npz", path=str(tmp_path / "d.npz"), val_fraction=0.0), rng())
    assert d.task == "classification" and d.y_train.shape == (4,)


def npz_error_cases(tmp_path):
    """(name, path, task, words) for each bad npz."""
    cases = [("missing", tmp_path / "nope.npz", "auto", ["file not found"])]

    def save(name, task, words, **arrays):
        np.savez(tmp_path / f"{name}.npz", **arrays)
        cases.append((name, tmp_path / f"{name}.npz", task, words))

    (tmp_path / "text.npz").write_text("X,y\n1,2\n")
    cases.append(("text", tmp_path / "text.npz", "auto", ["not an .npz"]))
    (tmp_path / "empty.npz").write_bytes(b"")
    cases.append(("empty", tmp_path / "empty.npz", "auto", ["not an .npz"]))
    np.save(tmp_path / "single.npy", np.zeros(3))
    cases.append(("npy", tmp_path / "single.npy", "auto", ["not an .npz"]))
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04" + b"\x00" * 40)
    cases.append(("broken", tmp_path / "broken.npz", "auto", ["data.path"]))
    save("no_y", "auto", ["no array y", "arrays found: X"], X=np.zeros((3, 2)))
    save("no_x", "auto", ["no array X"], y=np.zeros(3), Z=np.zeros(3))
    save("x_1d", "auto", ["2-D"], X=np.zeros(3), y=np.zeros(3))
    save("x_text", "auto", ["numeric"], X=np.array([["a"], ["b"]]), y=np.zeros(2))
    save("lengths", "auto", ["3 rows", "2"], X=np.zeros((3, 2)), y=np.zeros(2))
    save("y_3d", "auto", ["(N,) or (N, K)"], X=np.zeros((2, 2)), y=np.zeros((2, 1, 1)))
    save("no_rows", "auto", ["empty"], X=np.zeros((0, 2)), y=np.zeros(0))
    save("nan", "auto", ["NaN"], X=np.array([[0.0], [np.nan]]), y=np.array([0, 1]))
    save("y_nan", "regression", ["NaN"], X=np.zeros((2, 1)), y=np.array([0.5, np.nan]))
    save("pickled", "auto", ["non-object"], X=np.zeros((2, 1)), y=np.array([{}, {}], dtype=object))
    save("multi_label", "classification", ["data.task", "(N, K)"], X=np.zeros((2, 1)), y=np.zeros((2, 2)))
    save("text_regression", "regression", ["data.task"], X=np.zeros((2, 1)), y=np.array(["a", "b"]))
    return cases


def test_npz_errors(tmp_path):
    for name, path, task, words in npz_error_cases(tmp_path):
        with pytest.raises(ConfigError) as info:
            load_data(NpzData(kind="npz", path=str(path), task=task), rng(), source="exp.yaml")
        msg = str(info.value)
        assert msg.startswith("exp.yaml: data."), (name, msg)
        assert "\n" not in msg, (name, msg)
        for word in words:
            assert word in msg, (name, msg)
