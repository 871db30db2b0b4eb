"""Parameters away from their defaults, where a wrong backward pass can no longer hide.

At b = 0, gamma = 1, beta = 0 and the default slopes, a backward that forgets beta, uses gamma where
1/gamma belongs or reads the initial PReLU slope instead of the learned one gives the right numbers.
``jitter`` moves every parameter of a built model that is not a weight matrix off its default, in place
and seeded; ``jitter_builds`` does it to every model that ``gradlab.train.setup`` builds, which is how
``gradlab.check`` gets its model.
"""
from __future__ import annotations

import importlib

import numpy as np

from gradlab.nn import Activation

TRAIN = importlib.import_module("gradlab.train")  # the module: gradlab.train is also the function

STD = 0.3


def is_weight(key: str) -> bool:
    """W, U and the gates' W_f, U_g: the matrices the init draws (and the only ones left alone)."""
    return key.split("_")[0] in ("W", "U")


def jitter(model, seed: int = 0, std: float = STD):
    """Add N(0, std^2) to every non-weight parameter (biases, gamma, beta, PReLU slopes, the gates'
    biases, a custom layer's own), in place so the model's dicts still hold them; raise the fixed
    slope of leaky ReLU and ELU by |N(0, std^2)|. Returns the model."""
    rng = np.random.default_rng(seed)
    for m in model.modules():
        for key, p in m.params.items():
            if not is_weight(key):
                p += rng.normal(0.0, std, p.shape)
        if isinstance(m, Activation) and "alpha" not in m.params and getattr(m, "alpha", None) is not None:
            m.alpha = float(m.alpha + abs(rng.normal(0.0, std)))
    return model


def jitter_builds(monkeypatch, seed: int = 0, std: float = STD) -> None:
    """Every model built by ``gradlab.train.setup`` from now on (the check's, a run's) comes jittered."""
    build = TRAIN.setup

    def setup(config, source: str = "<config>"):
        s = build(config, source)
        jitter(s.model, seed, std)
        return s

    monkeypatch.setattr(TRAIN, "setup", setup)

