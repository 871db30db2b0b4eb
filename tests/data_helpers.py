"""Small helpers shared by the data tests."""
import numpy as np

from gradlab.data import Dataset


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def every_array(d: Dataset) -> list[np.ndarray]:
    return [d.X_train, d.y_train, d.X_val, d.y_val]
