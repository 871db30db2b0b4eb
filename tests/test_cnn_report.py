"""Logs, theory, lint, diagnosis and report of conv nets: the same figures in the same meaning as for an MLP,
counted over units and positions, with conv layers named."""
import importlib.util
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import gradlab
from gradlab.check import centred_difference
from gradlab.cli import app
from gradlab.config.schema import InitConfig
from gradlab.nn import (
    MLP,
    AvgPool2d,
    Conv2d,
    Dense,
    GlobalAvgPool,
    MaxPool2d,
    Sequential,
    make_activation,
    make_loss,
)
from gradlab.nn.conv import ResBlock
from gradlab.report import diagnose_dir, lint, load_run
from gradlab.report.html import where
from gradlab.report.plots import layer_names
from gradlab.report.theory import border, compare, predict_cnn
from gradlab.train import layer_stats

DOCS = Path(__file__).resolve().parent.parent / "docs"
SHAPES = {"kind": "shapes", "n_samples": 160, "size": 8, "channels": 1}


def conv(W, b=None, stride=1, padding=0, name="conv"):
    return Conv2d(W, b, stride, padding, name)


def naive_conv(x, W, b, padding):
    """out[n, i, j, o] = sum_{a, b, c} xp[n, i + a, j + b, c] W[a, b, c, o] + b[o], pixel by pixel."""
    k = W.shape[0]
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    n, h, w, _ = xp.shape
    out = np.zeros((n, h - k + 1, w - k + 1, W.shape[3]))
    for i in range(h - k + 1):
        for j in range(w - k + 1):
            out[:, i, j, :] = np.einsum("nabc,abco->no", xp[:, i:i + k, j:j + k, :], W) + b
    return out


# --------------------------------------------------------------------------- layer statistics

def test_layer_stats_of_a_conv_net_are_over_units_and_positions_and_delta_norm_is_the_output_gradient():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 5, 5, 2))
    W1, b1 = 0.5 * rng.standard_normal((3, 3, 2, 4)), np.array([0.0, -0.8, -4.0, 0.3])  # channel 2 dies
    W2, b2 = 2.0 * rng.standard_normal((3, 3, 4, 3)), np.zeros(3)  # large: tanh saturates
    net = MLP([Sequential([conv(W1, b1, padding=1, name="conv1"), make_activation("relu", index=1),
                           MaxPool2d(2, name="maxpool1")]),
               Sequential([conv(W2, b2, padding=1, name="conv2"), make_activation("tanh", index=2),
                           GlobalAvgPool("gap2")]),
               Sequential([Dense(rng.standard_normal((3, 3)), np.zeros(3), "dense3")])])
    loss, y = make_loss("cross_entropy"), np.array([0, 2, 1])
    net.loss_and_grads(x, y, loss)
    one, two, _ = layer_stats(net)

    a1 = np.maximum(naive_conv(x, W1, b1, 1), 0.0)  # (3, 5, 5, 4): 100 units of 3 samples
    assert one.act_mean == pytest.approx(a1.mean(), rel=1e-12)
    assert one.act_std == pytest.approx(a1.std(), rel=1e-12)
    dead = [(i, j, o) for i in range(5) for j in range(5) for o in range(4) if not (a1[:, i, j, o] > 0).any()]
    assert len(dead) >= 25  # channel 2 at every position, and a few more
    assert one.frac_dead == len(dead) / 100  # over the H*W*C (position, channel) units, not over H
    assert one.frac_saturated is None

    h1 = np.zeros((3, 2, 2, 4))  # the 2x2 max pool drops row and column 4
    for i in range(2):
        for j in range(2):
            h1[:, i, j, :] = a1[:, 2 * i:2 * i + 2, 2 * j:2 * j + 2, :].max(axis=(1, 2))
    a2 = np.tanh(naive_conv(h1, W2, b2, 1))
    saturated = np.count_nonzero(1.0 - a2**2 < 0.05)
    assert 0 < saturated < a2.size
    assert two.frac_saturated == saturated / a2.size  # over the N*H*W*C values
    assert two.act_mean == pytest.approx(a2.mean(), rel=1e-12) and two.frac_dead is None

    for layer, stat in ((1, one), (2, two)):  # ||dL / d output of layer l||, whatever its shape
        h = net.outputs[layer].copy()
        g = centred_difference(lambda h=h, layer=layer: loss.forward(net.forward(h, start=layer + 1, skip={}), y), h)
        assert stat.delta_norm == pytest.approx(np.linalg.norm(g), rel=1e-6)


# --------------------------------------------------------------------------- theory

def test_border_is_the_share_of_taps_inside_the_image():
    assert border(6, 3, 1, 1) == pytest.approx(16 / 18)  # the first and last position read one zero each
    assert border(8, 3, 1, 1) == pytest.approx(22 / 24)
    assert border(8, 3, 1, 0) == 1.0 and border(5, 1, 2, 0) == 1.0
    assert border(3, 3, 2, 1) == pytest.approx(4 / 6)  # outputs at -1 and 1: taps -1..1 and 1..3


def test_theory_rows_of_conv_layers_have_their_fans_and_the_gains_worked_by_hand():
    rng, he = np.random.default_rng(1), InitConfig(scheme="he_normal")
    W = lambda *shape: rng.standard_normal(shape)
    relu = lambda l: make_activation("relu", index=l)
    net = MLP([Sequential([conv(W(3, 3, 2, 4), padding=1, name="conv1"), relu(1)]),
               Sequential([conv(W(3, 3, 4, 4), padding=1, name="conv2"), relu(2), AvgPool2d(2, name="avgpool2")]),
               Sequential([conv(W(3, 3, 4, 8), padding=1, name="conv3"), relu(3), MaxPool2d(2, name="maxpool3")]),
               Sequential([conv(W(1, 1, 8, 8), name="conv4"), relu(4), GlobalAvgPool("gap4")]),
               Sequential([Dense(W(8, 3), None, "dense5")])])
    rows = predict_cnn(net, he, 0.0, 0.0, 1.0, (6, 6, 2))
    assert [r.name for r in rows] == ["conv1", "conv2", "conv3", "conv4", "dense5"]
    assert [(r.fan_in, r.fan_out) for r in rows[:4]] == [(18, 36), (36, 36), (36, 72), (8, 8)]  # k^2 C_in, k^2 C_out
    assert rows[1].std_W == pytest.approx(math.sqrt(2 / 36)) and rows[1].prescribed == "he_normal"
    # the gradient's map, per axis, top-down: the 2x2 max pool of the 3x3 map reaches rows 0-1 only, [1, 1, 0];
    # conv3 (3x3, padding 1 on 3) reads inputs 0-1, 0-2 and 1-2: it sends [1+1, 1+1+0, 1+0] = [2, 2, 1] down,
    # which the 2x2 average pool spreads over the 6 pixels as [2, 2, 2, 2, 1, 1]
    # conv3: its outputs read [2, 3, 2] of the 3 taps inside; weighted by [1, 1, 0], (2 + 3) / (3 * 2) = 5/6 (not
    # the uniform 7/9); 36 * 2/36 (He); the max pool's winners pass relu' = 1 with probability 15/16, not 1/2
    assert rows[2].border == pytest.approx((5 / 6) ** 2) and rows[2].chi == pytest.approx((5 / 6) ** 2 * 2 * (15 / 16))
    # conv2 on 6x6: outputs read [2, 3, 3, 3, 3, 2] taps inside; weighted by [2, 2, 2, 2, 1, 1]: 27/30 (not the
    # uniform 16/18); relu' 1/2, avg pool 2x2 1/4
    assert rows[1].border == pytest.approx(0.81) and rows[1].chi == pytest.approx(0.81 * 2 * 0.5 / 4)
    # conv4, 1x1 on 1x1: no border, the global pool over one pixel
    assert rows[3].chi == pytest.approx(1.0, rel=1e-6) and rows[3].pool == 1.0


def test_a_residual_block_adds_its_paths_squared_gains():
    rng, he = np.random.default_rng(2), InitConfig(scheme="he_normal")
    block = ResBlock(rng.standard_normal((3, 3, 4, 4)), rng.standard_normal((3, 3, 4, 4)), None, 1,
                     make_activation("relu", index="2_a"), batchnorm=False, name="res2")
    net = MLP([Sequential([conv(rng.standard_normal((3, 3, 2, 4)), padding=1, name="conv1")]),
               Sequential([block]), Sequential([GlobalAvgPool("gap3"), Dense(rng.standard_normal((4, 3)), None,
                                                                              "dense3")])])
    rows = predict_cnn(net, he, 0.0, 0.0, 1.0, (6, 6, 2))
    # identity: 1; F, from the global pool's uniform map: conv_b (He: Var(W) C_out = 2/9) sends each pixel of 6 the
    # taps that read it, [2, 3, 3, 3, 3, 2] per axis, relu' 1/2, conv_a [2+3, 2+3+3, 3+3+3, ..] = [5, 8, 9, 9, 8, 5]
    # (44 of the 36 pixels' 9 * 9 * 36 when there is no padding): (2/9)^2 / 2 * 44^2 / 36, not 2 (16/18)^4
    assert rows[1].name == "res2" and rows[1].chi == pytest.approx(1 + (2 / 9) ** 2 / 2 * 44**2 / 36, rel=1e-9)


def padded_relu_net(L: int, C: int, size: int, rng) -> tuple[MLP, list]:
    """L 3x3 'same' convs of C channels (one for conv1) with He weights and relu, a global pool and a dense head."""
    layers = [[conv(math.sqrt(2 / (9 * c)) * rng.standard_normal((3, 3, c, C)), padding=1, name=f"conv{l}"),
               make_activation("relu", index=l)] for l, c in zip(range(1, L + 1), [1] + [C] * (L - 1))]
    head = Sequential([GlobalAvgPool(f"gap{L + 1}"), Dense(rng.standard_normal((C, 3)), None, f"dense{L + 1}")])
    return MLP([*(Sequential(modules) for modules in layers), head]), layers


def depth_ratio(rows: list, L: int) -> float:
    """The predicted delta_norm(1) / delta_norm(L): the gains through layers 2..L."""
    return math.prod(r.gain for r in rows[1:L])


def test_the_padded_30_layer_nets_gradient_ratio_is_the_one_a_wide_net_measures():
    """Going down 'same' padded convs the gradient leaves the border pixels (their taps fall on the padding) and
    loses less per layer than the border's uniform share (22/24)^2: layer 30 to layer 1 on 8x8 loses 0.27, not
    (22/24)^29 = 0.080. A wide net (64 channels; finite width makes single nets scatter 0.25-0.39) measures it."""
    L, measured = 30, []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        _, layers = padded_relu_net(L, 64, 8, rng)
        x = rng.standard_normal((8, 8, 8, 1))
        for m in (m for modules in layers for m in modules):
            x = m.forward(x, True)
        g = rng.standard_normal(x.shape)  # uniform over the pixels, as the global pool feeds back
        top = np.linalg.norm(g)
        for modules in reversed(layers[1:]):
            for m in reversed(modules):
                g = m.backward(g)
        measured.append(np.linalg.norm(g) / top)  # ||dL/d output of layer 1|| / ||dL/d output of layer 30||
    net, _ = padded_relu_net(L, 64, 8, np.random.default_rng(0))
    predicted = depth_ratio(predict_cnn(net, InitConfig(scheme="he_normal"), 0.0, 0.0, 1.0, (8, 8, 1)), L)
    assert predicted == pytest.approx(0.272, abs=5e-4)
    assert float(np.exp(np.mean(np.log(measured)))) == pytest.approx(predicted, rel=0.15)
    assert (22 / 24) ** (L - 1) < 0.4 * min(measured)  # the constant border factor is far off


def test_the_gradients_map_is_the_mean_field_that_a_monte_carlo_of_random_kernels_averages():
    """An independent check of the map's geometry (padding, stride 2, average pooling) in a linear net, where the
    mean field is exact: E over independent kernels of ||dL/dx||^2, by R single-channel nets of random kernels at
    once, each gradient scattered tap by tap, against the theory's squared-norm ratios."""
    rng, R, std = np.random.default_rng(3), 20000, 1 / 3  # Var(W) C_out = 1/9: the 3x3 taps' sum keeps the scale
    layers = [(3, 1, 1), (3, 2, 1), (3, 1, 0), (3, 1, 1)]  # (kernel, stride, padding) on a 9x9 image, then avg pool
    net = MLP([Sequential([conv(std * np.ones((k, k, 1, 1)), stride=s, padding=p, name=f"conv{l}")])
               for l, (k, s, p) in enumerate(layers, 1)]
              + [Sequential([AvgPool2d(2, name="avgpool5"), GlobalAvgPool("gap5"), Dense(np.ones((1, 1)), None, "dense5")])])
    init = InitConfig(scheme="normal", std=std)
    rows = predict_cnn(net, init, 0.0, 0.0, 1.0, (9, 9, 1))
    shapes = [(9, 9)]
    for k, s, p in layers:
        shapes.append(((shapes[-1][0] + 2 * p - k) // s + 1,) * 2)  # 9, 5, 3, 3
    g = np.zeros((R, *shapes[-1]))
    g[:, :2, :2] = rng.standard_normal((R, 2, 2)) / 2  # the avg pool (floor) reads the top-left 2x2 only, each 1/4
    norms = [np.mean(np.sum(g * g, axis=(1, 2)))]
    for (k, s, p), below in zip(reversed(layers), reversed(shapes[:-1])):
        w = std * rng.standard_normal((R, k, k))
        grad = np.zeros((R, below[0] + 2 * p, below[1] + 2 * p))
        for a in range(k):
            for b in range(k):  # output (i, j) read the padded input (s i + a, s j + b)
                grad[:, a:a + s * g.shape[1]:s, b:b + s * g.shape[2]:s] += w[:, a, b, None, None] * g
        g = grad[:, p:p + below[0], p:p + below[1]]
        norms.append(np.mean(np.sum(g * g, axis=(1, 2))))
    for l in (2, 3, 4):  # rows[l - 1].chi = ||delta_{l-1}||^2 / ||delta_l||^2; norms[i]: i layers below the top
        assert rows[l - 1].chi == pytest.approx(norms[5 - l] / norms[4 - l], rel=0.03)
    # conv4 (3x3 on 3x3) is read in the corner the pool keeps: weights [1, 1, 0] on taps [2, 3, 2] per axis, 5/6,
    # not the uniform 7/9
    assert rows[3].chi == pytest.approx((5 / 6) ** 2)


def test_the_padded_chain_is_padded_conv_gain_of_the_experiments_squared_over_two_axes():
    """padded_conv_gain (docs/experiments.py) runs the recursion along one axis: the 2-D map of a k x k kernel
    of ones is the outer product of two 1-D ones, so the squared norm's factor is its 1-D mean squared."""
    spec = importlib.util.spec_from_file_location("docs_experiments_theory", DOCS / "experiments.py")
    saved, module = dict(os.environ), importlib.util.module_from_spec(spec)
    try:
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    finally:
        os.environ.clear()
        os.environ.update(saved)
        sys.modules.pop(spec.name, None)
    for size, L in ((8, 30), (28, 12), (5, 6)):
        net, _ = padded_relu_net(L, 2, size, np.random.default_rng(0))
        rows = predict_cnn(net, InitConfig(scheme="he_normal"), 0.0, 0.0, 1.0, (size, size, 1))
        assert depth_ratio(rows, L) == pytest.approx(module.padded_conv_gain(size, 3, L - 1)[-1], rel=1e-9)
        assert rows[L - 1].border == pytest.approx(border(size, 3, 1, 1) ** 2)  # at the top the map is uniform
    assert module.padded_conv_gain(8, 3, 29)[-1] == pytest.approx(0.272, abs=5e-4)


def run(tmp_path, model: dict, name: str, steps: int = 40, train: dict | None = None):
    raw = {"name": name, "seed": 0, "data": SHAPES, "model": {"kind": "cnn", **model}, "loss": "cross_entropy",
           "train": {"optimizer": "adam", "lr": 0.01, "batch_size": 32, "steps": steps, **(train or {})},
           "log": {"every": 10, "out": str(tmp_path)}}
    folder = tmp_path / name
    gradlab.train(gradlab.config_from_dict(raw), run_dir=folder)
    return folder


def test_a_plain_deep_conv_net_with_a_small_init_vanishes_as_the_theory_predicts_and_gets_conv_remedies(tmp_path):
    folder = run(tmp_path, {"channels": [8, 8], "depth": 4, "init": {"scheme": "normal", "std": 0.05}}, "plain",
                 steps=20, train={"optimizer": "sgd", "lr": 0.05})
    found = diagnose_dir(folder)
    f = next(f for f in found if f.kind == "vanishing")
    assert f.evidence["delta_ratio_at_step_0"] < 1e-4
    assert f.evidence["init_std"] == 0.05 and f.evidence["prescribed_std"] == pytest.approx(math.sqrt(2 / 72))
    remedies = " | ".join(f.remedies)
    assert f.remedies[0].endswith("--set model.batchnorm=true --set model.init=he_normal")  # what did best
    assert f.remedies[-1].endswith(": --set model.init=he_normal")
    assert "width" not in remedies and "leaky" not in remedies and "k^2 C_in" in remedies
    assert "--set model.residual=true --set model.init=he_normal" in remedies  # tiny blocks add nothing alone
    assert f.evidence["layer_name"] == f"conv{f.layer}" and where(f.as_dict()) == f"from layer {f.layer} (conv{f.layer}) down"

    table, fits = compare(load_run(folder))
    assert list(table.name) == [f"conv{l}" for l in range(2, 10)]
    predicted, measured = table["predicted gain"].to_numpy(), table["measured gain, step 0"].to_numpy()
    assert predicted[0] == pytest.approx(math.sqrt(0.05**2 * 72 * 0.5 * table.border[0]), rel=1e-6)
    # conv2 lies under the other 8x8 layers of its stage: its gradient sits away from the border, where the kernel
    # reads more of the image than the uniform (22/24)^2 = 0.840
    assert 0.9 < table.border[0] < 1.0
    assert np.exp(np.mean(np.log(measured / predicted))) == pytest.approx(1.0, abs=0.15)  # the product, per layer
    assert fits["predicted delta_norm ratio first/last hidden"] == pytest.approx(
        f.evidence["delta_ratio_at_step_0"], rel=0.5)


def test_a_shallow_he_conv_net_is_healthy(tmp_path):
    folder = run(tmp_path, {"channels": [8, 8], "depth": 1}, "healthy", steps=60)
    kinds = [f.kind for f in diagnose_dir(folder)]
    assert kinds[0] == "healthy" and "vanishing" not in kinds


# --------------------------------------------------------------------------- lint

def cnn_config(**model):
    return gradlab.config_from_dict({"data": SHAPES, "model": {"kind": "cnn", **model}, "loss": "cross_entropy"})


def test_lint_judges_each_conv_weight_by_its_own_fans():
    small = lint(cnn_config(channels=[16, 32], depth=2, init={"scheme": "normal", "std": 0.01}), 1)
    (init,) = [x for x in small if x.key == "model.init"]
    assert "5 of 5 conv weights" in init.message and "conv1.W: 0.471 at fan_in = 9" in init.message
    assert f"{math.sqrt(2 / 9):.3g}" in init.message  # conv1.W: 3x3 over one channel
    he = lint(cnn_config(channels=[16, 32], depth=2), 1)
    assert not [x for x in he if x.key == "model.init"]
    # the std of 0.06 fits a 3x3 conv over 64 channels (sqrt(2/576) = 0.059) and no other
    mixed = lint(cnn_config(layers=[{"type": "conv", "channels": 64}, {"type": "activation", "name": "relu"},
                                    {"type": "conv", "channels": 64}, {"type": "activation", "name": "relu"},
                                    {"type": "conv", "channels": 64}, {"type": "activation", "name": "relu"},
                                    {"type": "gap"}], init={"scheme": "normal", "std": 0.06}), 3)
    (init,) = [x for x in mixed if x.key == "model.init"]
    assert "1 of 3 conv weights" in init.message and "conv1.W" in init.message


# --------------------------------------------------------------------------- report

def test_report_of_a_cnn_run_names_its_conv_layers(tmp_path):
    folder = run(tmp_path, {"channels": [4], "depth": 1, "head": "flatten"}, "tiny", steps=2)
    assert layer_names(load_run(folder)) == {1: "conv1", 2: "conv2", 3: "dense3"}
    result = CliRunner().invoke(app, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    page = (folder / "report.html").read_text()
    assert "2 (conv2)" in page  # the theory table's row
    assert (folder / "gradient_flow.png").exists() and (folder / "activations.png").exists()


def test_conv_remedies_bring_weights_far_from_he_back_to_it_either_way():
    from gradlab.report.diagnose import _cnn_structure

    facts = {"batchnorm": False, "residual": False, "stages": True, "stage_depth": 3, "init": "normal",
             "prescribed": "he_normal", "prescribed_std": 0.118}
    for std in (0.05, 0.4):  # the vanishing and the exploding run of the README
        bn, res = _cnn_structure({**facts, "init_std": std})
        assert bn.endswith(": --set model.batchnorm=true --set model.init=he_normal")
        assert res.endswith(": --set model.residual=true --set model.depth=4 --set model.init=he_normal")  # even
    bn, res = _cnn_structure({**facts, "init_std": 0.1})  # near He's: the structure alone
    assert bn.endswith(": --set model.batchnorm=true") and res.endswith(": --set model.residual=true --set model.depth=4")
    assert _cnn_structure({**facts, "init_std": 0.1, "batchnorm": True, "residual": True}) == []


def test_units_a_high_rate_killed_get_a_tenth_of_it_which_revives_them(tmp_path):
    model, fast = {"channels": [8, 8], "depth": 2}, {"optimizer": "sgd", "lr": 2.0}
    folder = run(tmp_path, model, "fast", steps=200, train=fast)
    found = diagnose_dir(folder)
    assert found[0].kind == "dead_units" and found[0].evidence["at_end"]
    (remedy,) = found[0].remedies  # He init already: neither the init nor batch norm (it exploded)
    assert remedy.endswith("do not kill units: --set train.lr=0.2")
    fixed = run(tmp_path, model, "tenth", steps=200, train={**fast, "lr": 0.2})
    assert diagnose_dir(fixed)[0].kind == "healthy"
    assert load_run(fixed).summary["final_train_loss"] < 0.5 * load_run(folder).summary["final_train_loss"]
