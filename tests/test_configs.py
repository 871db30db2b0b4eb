"""Every shipped config loads, and runs a few steps."""
from pathlib import Path

import pytest

import gradlab

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


def test_there_is_a_config_per_demonstration():
    names = {p.stem for p in CONFIGS}
    assert {"quickstart", "deep_sigmoid_vanishing", "he_relu_healthy", "linear_identity_exploding",
            "clipping_tames_exploding", "residual_deep_healthy", "batchnorm_deep_sigmoid"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_runs(path, tmp_path):
    cfg = gradlab.load_config(path, [f"log.out={tmp_path}", "train.steps=2", "train.epochs=null"])
    result = gradlab.train(cfg)
    assert result.status in ("completed", "diverged") and result.first.step == 0
