"""Every shipped config loads, and runs a few steps."""
from pathlib import Path

import pytest

import gradlab

ALL = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
SWEEPS = [p for p in ALL if p.stem.startswith("sweep_") and "grid:" in p.read_text()]
CONFIGS = [p for p in ALL if p not in SWEEPS]


def test_there_is_a_config_per_demonstration():
    names = {p.stem for p in CONFIGS}
    assert {"quickstart", "deep_sigmoid_vanishing", "he_relu_healthy", "linear_identity_exploding",
            "clipping_tames_exploding", "residual_deep_healthy", "batchnorm_deep_sigmoid"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_runs(path, tmp_path):
    cfg = gradlab.load_config(path, [f"log.out={tmp_path}", "train.steps=2", "train.epochs=null"])
    result = gradlab.train(cfg)
    assert result.status in ("completed", "diverged") and result.first.step == 0


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_config_expands(path):
    sweep = gradlab.sweeps.load_sweep(path)
    assert len(sweep.combos) >= 2 and len({c.label for c in sweep.combos}) == len(sweep.combos)
