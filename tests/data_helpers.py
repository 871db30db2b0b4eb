"""Small helpers shared by the data tests."""
import numpy as np

from gradlab.data import Dataset, load_data


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def every_array(d: Dataset) -> list[np.ndarray]:
    return [d.X_train, d.y_train, d.X_val, d.y_val]


def assert_deterministic(cfg, seed: int) -> None:
    """The same seed gives bit-identical arrays; the next seed other data."""
    a, b, c = load_data(cfg, rng(seed)), load_data(cfg, rng(seed)), load_data(cfg, rng(seed + 1))
    for x, y in zip(every_array(a), every_array(b)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.X_train, c.X_train)
