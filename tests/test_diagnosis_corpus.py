"""A labelled corpus of runs: the diagnosis must name the truth in each, and for every broken run the
first remedy, applied with its ``--set`` options, must complete without the problem and end lower.

Each case is a shipped config made cheap with overrides (fewer steps, a smaller net or data set) or a
small config written here; the truth comes from how the run was built, and the claim behind it is
cited beside it.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import gradlab
from gradlab.report import diagnose_dir, load_run
from gradlab.report.diagnose import is_problem

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
BLOBS = {"kind": "blobs", "n_samples": 512, "n_features": 16, "n_classes": 4, "noise": 1.0, "val_fraction": 0.25}
ORDER = {"kind": "temporal_order", "n_samples": 1000, "val_fraction": 0.1}


@dataclass
class Case:
    truth: str  # the kind the diagnosis must put first
    config: str | dict  # a file in configs/ or a config mapping
    sets: list[str] = field(default_factory=list)  # --set overrides of a shipped config
    layer: int | None = None  # where it matters: the layer the finding must name (at the first logged step)
    step: int | None = None  # where it matters: the step a spike note must name
    notes: tuple[str, ...] = ()  # kinds that must follow the headline (a spike, a cured problem)
    says: tuple[str, ...] = ()  # what the headline's message must say


def mlp(name: str, model: dict, train: dict | None = None, data: dict | None = None, loss: str = "cross_entropy") -> dict:
    return {"name": name, "seed": 0, "data": data or BLOBS, "model": model, "loss": loss,
            "train": {"optimizer": "sgd", "lr": 0.1, "batch_size": 64, "steps": 100, **(train or {})},
            "log": {"every": 5}}


def order_lstm(name: str, T: int, truncate: int | None, cell: str = "lstm", **model) -> dict:
    return {"name": name, "seed": 0, "data": {**ORDER, "T": T},
            "model": {"kind": "rnn", "cell": cell, "hidden": 8, **model}, "loss": "cross_entropy",
            "train": {"optimizer": "adam", "lr": 3e-3, "batch_size": 64, "steps": 150, "clip": 1.0,
                      "bptt": {"truncate": truncate} if truncate else None},
            "log": {"every": 10}}


def plain_bn_conv(name: str, depth: int) -> dict:
    """configs/sweep_resnet_depth.yaml's plain conv net with batch norm, made small: 4 channels per stage,
    300 of the 8x8 digits, 40 steps."""
    return {"name": name, "seed": 0, "data": {"kind": "digits", "n_samples": 300, "val_fraction": 0.2},
            "model": {"kind": "cnn", "channels": [4, 4, 4], "depth": depth, "pool": "none", "activation": "relu",
                      "init": "he_normal", "batchnorm": True, "residual": False, "head": "gap"},
            "loss": "cross_entropy",
            "train": {"optimizer": {"name": "momentum", "momentum": 0.9}, "lr": 0.05, "l2": 1e-4, "batch_size": 32,
                      "steps": 40},
            "log": {"every": 5}}


CASES = {
    # Glorot & Bengio 2010: sigmoid's derivative is at most 1/4; with std 0.01 weights the gradient at
    # layer 1 is about 0.02^19 of layer 20's, and the loss stays at ln 10
    # (0.02 per layer: below 1e-3 of layer 20 two layers down, at layer 18)
    "deep_sigmoid": Case("vanishing", "deep_sigmoid_vanishing.yaml", ["train.steps=100", "log.every=5"], layer=18),
    # He et al. 2015: Xavier shrinks a relu net's gradient by 1/sqrt(2) per layer, 2^-14.5 over 30 layers
    "xavier_relu_30": Case("vanishing", mlp("xavier_relu", {"depth": 30, "width": 64, "activation": "relu",
                                                             "init": "xavier_normal"}, {"lr": 0.05, "steps": 150})),
    # the deep linear net with W = 1.2 I: 1.2^49 = 7584 between layers 1 and 50 before any update
    # (the ratio passes 1e3 at 38 layers below the top, 1.2^38 = 1022: layer 50 - 38 = 12)
    "linear_1_2_identity": Case("exploding", "linear_identity_exploding.yaml", ["log.every=5"], layer=12),
    # Pascanu et al. 2013: a relu RNN with U = 1.1 I; the first update of lr x 5.4e6 overflows
    "relu_rnn": Case("exploding", "relu_rnn_exploding.yaml", ["train.steps=300", "data.n_samples=2000", "log.every=10"]),
    # a He relu net whose loss blows up under SGD at lr 0.1 without clipping (configs/sweep_clip_threshold.yaml)
    "unclipped_mlp": Case("exploding", "clipping_tames_exploding.yaml", ["train.clip=null", "train.steps=200", "log.every=5"]),
    # He et al. 2016's degradation, small: 45 plain conv layers with batch norm; the gradient grows about 1.2x per
    # layer going down (3.2e3 from layer 46 to 1, past 1e3 from layer 7 down), the first update is 5.9x the
    # weights' norm and blows them up 57x, and the run ends above chance (2.66, chance 2.30): exploding at
    # initialisation, not cured. The 56-layer version was called healthy and cured (final loss 1.84, 0.8 of chance)
    "plain_bn_conv_46": Case("exploding", plain_bn_conv("plain_bn_conv", 15), layer=7,
                             says=("at initialisation (step 0), not cured", "5.87x the weights' norm",
                                   "the weights ended 56.8x their initial norm", "the loss ended at 2.66, 1.16 of chance")),
    # a bias of -3 under He-initialised relu layers: most pre-activations are below 0 from the start
    "dead_relu": Case("dead_units", mlp("dead", {"depth": 5, "width": 32, "activation": "relu", "init": "he_normal",
                                                 "bias_init": -3.0})),
    # tanh with N(0, 1) weights at width 64: pre-activations of std 8, tanh' below 5% for most units;
    # the loss ends above chance
    "tanh_saturated": Case("saturation", mlp("saturated", {"depth": 8, "width": 64, "activation": "tanh",
                                                           "init": {"scheme": "normal", "std": 1.0}})),
    # the depth-10 Xavier relu net of configs/quickstart.yaml's spirals: a ratio of 0.026, at chance
    "stuck_relu": Case("not_learning", "quickstart.yaml", ["model.activation=relu", "train.steps=100", "log.every=5"]),
    # a healthy net whose learning rate is 1e4 times too small
    "tiny_lr": Case("not_learning", mlp("tiny_lr", {"depth": 3, "width": 32, "activation": "relu", "init": "he_normal"},
                                        {"lr": 1e-5})),
    # Williams & Peng 1990: the symbols of T = 50 lie at t = 6-10 and 26-30, the last 20-step chunk is
    # t = 41-50: no gradient says what to store (configs/lstm_truncated_bptt.yaml, ~chance at the end)
    "truncated_lstm": Case("not_learning", order_lstm("truncated", 50, 20)),
    "healthy_relu": Case("healthy", mlp("healthy", {"depth": 5, "width": 32, "activation": "relu", "init": "he_normal"})),
    # configs/sweep_clip_threshold.yaml's clip = 10 run: one spike at step 1 (loss 29), then the lowest loss
    "clip_10_spike": Case("healthy", "clipping_tames_exploding.yaml", ["train.clip=10.0", "train.steps=200"],
                          step=1, notes=("spike",)),
    # Hochreiter & Schmidhuber 1997: an LSTM with full BPTT solves the temporal-order task
    "lstm_learns": Case("healthy", order_lstm("lstm", 30, None)),
    # a tanh RNN with recurrent gain 0.5: ||dL/dh_1|| / ||dL/dh_T|| at most 0.5^29 (Pascanu et al. 2013)
    "tanh_rnn_gain_half": Case("vanishing", order_lstm("tanh_rnn", 30, None, cell="vanilla", activation="tanh",
                                                      recurrent_init={"scheme": "orthogonal", "gain": 0.5})),
}


def train(config: str | dict, sets: list[str], folder: Path) -> Path:
    if isinstance(config, dict):
        cfg = gradlab.config_from_dict({**config, "log": {**config["log"], "out": str(folder.parent)}})
    else:
        cfg = gradlab.load_config(config, [*sets, f"log.out={folder.parent}"])
    gradlab.train(cfg, run_dir=folder)
    return folder


def run_case(name: str, folder: Path) -> Path:
    case = CASES[name]
    config = case.config if isinstance(case.config, dict) else CONFIGS / case.config
    return train(config, case.sets, folder)


def final_loss(folder: Path) -> float:
    """The final training loss, inf for a run that diverged or ended non-finite."""
    summary = load_run(folder).summary
    loss = summary.get("final_train_loss")
    return loss if summary.get("status") == "completed" and loss is not None and math.isfinite(loss) else math.inf


def overrides(remedy: str) -> list[str]:
    return re.findall(r"--set (\S+)", remedy)


def first_remedy_run(folder: Path, found: list, out: Path) -> tuple[list[str], Path]:
    """Apply the headline's first remedy to the run's own config.yaml, as a user would with --set."""
    sets = overrides(found[0].remedies[0])
    return sets, train(folder / "config.yaml", sets, out)


# truncated_lstm: T = 50 twice (train + remedy), 5 s on idle cores, 12 s under load; plain_bn_conv_46: 46 layers twice,
# 7 s on idle cores (fewer layers do not explode past 1e3 at step 0); the others 0.2-2 s
SLOW = {"truncated_lstm", "plain_bn_conv_46"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in CASES])
def test_the_diagnosis_names_the_truth_and_the_first_remedy_cures_it(tmp_path, name):
    case = CASES[name]
    folder = run_case(name, tmp_path / "run")
    found = diagnose_dir(folder)
    head = found[0]
    assert head.kind == case.truth, [f.message for f in found]
    if case.layer is not None:
        assert head.layer == case.layer
    for text in case.says:
        assert text in head.message, head.message
    for f in found:  # the kind is printed beside the message: the message does not say it again
        assert not f.message.startswith(f.kind.replace("_", " ")), f.message
    assert (head.kind == "healthy") == (not any(is_problem(f) for f in found))
    for kind in case.notes:
        note = next(f for f in found[1:] if f.kind == kind)
        assert not is_problem(note) and note.remedies == []
        if case.step is not None:
            assert note.evidence["step"] == case.step and f"step {case.step}" in note.message
    if head.kind == "healthy":  # never said of a run that did not learn well
        assert head.evidence["learned_well"] and head.evidence["loss_end"] < 0.5 * head.evidence["loss_first"]
        return
    for note in found[1:]:  # a problem gone by the end of a run that did not learn well was not cured by training
        assert "training cured it" not in note.message, note.message
    sets, cured = first_remedy_run(folder, found, tmp_path / "remedy")
    assert sets, head.remedies[0]
    after = diagnose_dir(cured)
    assert load_run(cured).summary["status"] == "completed"
    assert head.kind not in [f.kind for f in after if is_problem(f)], (sets, [f.message for f in after])
    assert final_loss(cured) < final_loss(folder), (sets, final_loss(cured), final_loss(folder))
