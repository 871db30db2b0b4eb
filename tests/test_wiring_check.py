"""``gradlab check``'s grading, end to end at the exit status: a layer of your own whose backward is off by a
chosen relative factor lands in each tier; without kinks only good passes (CS231n's notes: above 1e-7 is too
high for a net without kinks), with kinks acceptable passes too, unless ``--strict``.

With dx = (1 + skew) * (the right dx), every checked gradient that goes through the layer is (1 + skew) times
the numerical one, so its relative error ||a - n|| / (||a|| + ||n||) is skew / (2 + skew): 0.1 gives 4.8e-2
(wrong), 2e-3 gives 1.0e-3 (uncomfortable), 2e-6 gives 1.0e-6 (acceptable), 0 gives round-off (good).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterator

import pytest
from typer.testing import CliRunner

from gradlab.cli import app
from gradlab.check import tier

LAYER = '''\
import numpy as np


class OffTanh:
    """tanh, whose backward is off by a relative factor: dx = (1 + skew) (1 - out^2) dout."""

    def __init__(self, skew=0.0):
        self.params, self.grads, self.skew = {}, {}, skew

    def forward(self, x, train=True):
        self.out = np.tanh(x)
        return self.out

    def backward(self, grad_out):
        return (1.0 + self.skew) * grad_out * (1.0 - self.out * self.out)
'''

CONFIG = """\
name: tiers
seed: 0
data: {{kind: spirals, n_samples: 64}}
model:
  init: xavier_normal
  layers:
    - {{type: dense, units: 8}}
    - {{type: custom, class: "offtanh:OffTanh", args: {{skew: {skew}}}}}
    - {{type: dense, units: 8}}
    - {{type: activation, name: {second}}}
check: {{batch: 8}}
"""

THROUGH = ("offtanh1.input",)  # the layer checked alone
BELOW = ("dense1.W", "dense1.b", "input")  # end to end: the tensors whose gradient passes through it
ABOVE = ("dense2.W", "dense2.b", "dense3.W", "dense3.b")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Iterator[Path]:
    """One folder for the layer's module and every config; the module is forgotten afterwards, so a later
    set-up in the same process (tests run apart, or reordered) imports it from its own new folder."""
    path = tmp_path_factory.mktemp("tiers")
    (path / "offtanh.py").write_text(LAYER, encoding="utf-8")
    yield path
    sys.modules.pop("offtanh", None)


def write(folder: Path, skew: float, second: str) -> Path:
    path = folder / f"tiers-{skew!r}-{second}.yaml"
    path.write_text(CONFIG.format(skew=f"{skew:.6e}", second=second), encoding="utf-8")  # YAML reads 2e-06 as text
    return path


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("expected, skew, second, strict, exit_code", [
    ("wrong", 0.1, "tanh", False, 1),
    ("uncomfortable", 2e-3, "tanh", False, 1),
    ("uncomfortable", 2e-3, "relu", False, 1),  # kinks excuse 'acceptable', never 'uncomfortable'
    ("acceptable", 2e-5, "tanh", False, 1),  # without kinks 1e-5 fails: a layer norm that drops its eps
    ("acceptable", 2e-6, "tanh", False, 1),
    ("acceptable", 2e-6, "relu", False, 0),
    ("acceptable", 2e-6, "relu", True, 1),  # --strict: the 1e-7 tier for a net with kinks too
    ("good", 0.0, "tanh", False, 0),
    ("good", 0.0, "relu", True, 0),
], ids=["wrong", "uncomfortable", "uncomfortable-with-kinks", "acceptable-1e-5", "acceptable", "acceptable-with-kinks",
        "acceptable-with-kinks-strict", "good", "good-with-kinks-strict"])
def test_each_tier_sets_the_exit_status(folder, expected, skew, second, strict, exit_code):
    assert tier(skew / (2 + skew)) == expected  # the planted error lands in the tier named
    path = write(folder, skew, second)
    flags = ["--strict"] if strict else []
    result = run("check", path, "--json", *flags)
    assert result.exit_code == exit_code, result.output
    data = json.loads(result.stdout)
    assert data["passed"] is (exit_code == 0)
    assert data["has_kinks"] is (second == "relu")
    alone = {t["name"]: t for t in data["layers"]}
    end = {t["name"]: t for t in data["tensors"]}
    for name, t in [*((n, alone[n]) for n in THROUGH), *((n, end[n]) for n in BELOW)]:
        assert t["tier"] == expected, (name, t["rel_error"])
        assert t["passed"] is (exit_code == 0), name
        if skew:
            assert t["rel_error"] == pytest.approx(skew / (2 + skew), rel=1e-3), name
    for name in ABOVE:
        assert end[name]["tier"] == "good" and end[name]["passed"], name
    failed = set(data["failed"]) | set(data["failed_alone"])
    assert failed == (set() if exit_code == 0 else set(THROUGH) | set(BELOW))

    text = run("check", path, *flags)
    assert text.exit_code == exit_code
    rows = [line for line in text.stdout.splitlines() if line.strip().startswith(THROUGH + BELOW)]
    assert rows and all(expected in row for row in rows), text.stdout
    assert ("FAIL" in text.stdout) is (exit_code == 1)
