"""Data a run cannot learn from honestly is bad input: features whose standardisation overflows or
vanishes, a noise that overflows the generated set, targets whose squared error overflows, a CSV with two
columns of one name, an .npz whose members are not plain .npy arrays. Each is one paragraph naming the file
(and column or member) or the key, exit 2; no numpy RuntimeWarning reaches the user."""
from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gradlab.cli import app
from gradlab.config import BlobsData, ConfigError, CsvData, NpzData, SpiralsData, TeacherData
from gradlab.data import load_data
from cli_helpers import assert_bad_input
from data_helpers import rng

N = 40


def refused(cfg, *fragments: str) -> str:
    """load_data raises a ConfigError holding every fragment, and no RuntimeWarning on the way."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(ConfigError) as info:
            load_data(cfg, rng(), "exp.yaml")
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def csv(tmp_path: Path, header: str, rows: list[str]) -> str:
    path = tmp_path / "d.csv"
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return str(path)


def npz(tmp_path: Path, **arrays) -> str:
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return str(path)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


# --------------------------------------------------------------------------- scale


def test_features_near_1e300_are_refused_not_standardised_to_zeros(tmp_path):
    """The squares of deviations near 1e297 overflow: std is inf and the column became all zeros."""
    path = csv(tmp_path, "a,b,label", [f"{1e300 * (1 + i * 1e-3)},{i},{i % 2}" for i in range(N)])
    refused(CsvData(kind="csv", path=path, target="label"), path, "column 'a'", "1e+150", "data.path")


def test_a_spread_that_overflows_is_refused(tmp_path):
    X = np.column_stack([np.arange(N, dtype=float), (-1.0) ** np.arange(N) * 1e308])
    path = npz(tmp_path, X=X, y=np.arange(N) % 2)
    refused(NpzData(kind="npz", path=path), path, "feature 1", "1e+150")


def test_a_spread_whose_squares_underflow_is_refused(tmp_path):
    path = csv(tmp_path, "a,label", [f"{i * 1e-200},{i % 2}" for i in range(N)])
    refused(CsvData(kind="csv", path=path, target="label"), path, "column 'a'", "1e-150")


def test_constant_features_are_not_refused(tmp_path):
    """A constant feature carries nothing: standardising it to 0 loses nothing, unlike a collapsed spread."""
    path = csv(tmp_path, "a,b,label", [f"5,-2,{i % 2}" for i in range(N)])
    d = load_data(CsvData(kind="csv", path=path, target="label"), rng())
    assert np.array_equal(d.X_train, np.zeros_like(d.X_train))


def test_features_near_1e300_unstandardised_are_refused(tmp_path):
    X = np.random.default_rng(0).standard_normal((N, 3)) * 1e300
    path = npz(tmp_path, X=X, y=np.arange(N) % 2)
    refused(NpzData(kind="npz", path=path, standardize=False), path, "1e+150", "standardize")


def test_regression_targets_whose_squared_error_overflows_are_refused(tmp_path):
    path = csv(tmp_path, "a,y", [f"{i},{i * 1e200}" for i in range(N)])
    refused(CsvData(kind="csv", path=path, target="y", task="regression"), path, "column 'y'", "1e+150")


@pytest.mark.parametrize("cfg", [BlobsData(kind="blobs", n_samples=N, noise=1e308),
                                 SpiralsData(kind="spirals", n_samples=N, noise=1e200),
                                 TeacherData(kind="teacher", n_samples=N, noise=1e200)],
                         ids=["blobs", "spirals", "teacher"])
def test_a_noise_that_overflows_is_refused_by_key(cfg):
    refused(cfg, "exp.yaml: data.noise:", "1e+148")


def test_the_largest_allowed_noise_still_loads(tmp_path):
    d = load_data(BlobsData(kind="blobs", n_samples=N, noise=1e148), rng())
    assert np.isfinite(d.X_train).all() and abs(float(np.std(d.X_train)) - 1.0) < 1e-9


def test_the_cli_says_noise_1e308_is_bad_input_not_a_divergence(tmp_path):
    config = tmp_path / "exp.yaml"
    config.write_text(f"name: n\ndata: {{kind: blobs, n_samples: {N}, noise: 1e308}}\nmodel: {{depth: 1, width: 4}}\n"
                      f"train: {{steps: 2}}\nlog: {{out: {tmp_path / 'runs'}}}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["train", str(config), "-q"])
    assert_bad_input(result, "data.noise", "1e+308", "1e+148")
    assert "RuntimeWarning" not in result.output and not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- CSV header


@pytest.mark.parametrize("header", ["a,label,label", "a,a,label"])
def test_a_csv_with_two_columns_of_one_name_is_refused(tmp_path, header):
    path = csv(tmp_path, header, [f"{i},{i % 2},{i * 3 % 2}" for i in range(N)])
    name = "label" if header.endswith("label,label") else "a"
    refused(CsvData(kind="csv", path=path, target="label"), path, f"column {name!r} appears 2 times")


# --------------------------------------------------------------------------- npz members


def zip_of(tmp_path: Path, members: dict[str, bytes]) -> str:
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return str(path)


def test_an_npz_member_that_is_text_names_the_member(tmp_path):
    path = zip_of(tmp_path, {"X.npy": b"hello", "y.npy": npy_bytes(np.arange(N) % 2)})
    refused(NpzData(kind="npz", path=path), path, "member X.npy", "not a .npy array")


def test_an_npz_object_member_names_the_member_and_is_never_unpickled(tmp_path):
    path = npz(tmp_path, X=np.zeros((N, 2)), y=np.array([{}] * N, dtype=object))
    refused(NpzData(kind="npz", path=path), path, "member y.npy", "object")


def test_a_truncated_npz_member_names_the_member(tmp_path):
    path = zip_of(tmp_path, {"X.npy": npy_bytes(np.zeros((N, 2)))[:100], "y.npy": npy_bytes(np.arange(N) % 2)})
    refused(NpzData(kind="npz", path=path), path, "member X.npy")
