"""model.kind cnn: its keys and defaults, the plan of logged layers it builds (names, shapes, parameter counts,
the fans of its 4-D weights), and its bad input (exit 2, the key path, what is allowed, a did-you-mean)."""
from __future__ import annotations

import shlex
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from cli_helpers import assert_bad_input
from gradlab.cli import app
from gradlab.config import ConfigError, config_from_dict, load_config, parse_yaml
from gradlab.describe import model_line
from gradlab.nn.cnn import build_cnn, plan_shapes
from gradlab.train import setup

IMAGE = (6, 6, 2)  # (H, W, C) of the tiny images the nets below are built for


def cnn(**model) -> dict:
    return {"data": {"kind": "shapes", "size": 6, "n_samples": 16}, "model": {"kind": "cnn", **model}}


def built(model: dict, shape=IMAGE, n_out: int = 3, seed: int = 0):
    cfg = config_from_dict(cnn(**model)).model
    return build_cnn(cfg, shape, n_out, np.random.default_rng(seed), np.random.default_rng(1))


def names(net) -> list[list[str]]:
    return [[m.name for m in layer.modules] for layer in net.layers]


def shapes(net) -> dict[str, tuple]:
    return {k: v.shape for k, v in net.params.items()}


def error(raw: dict, overrides: tuple[str, ...] = ()) -> str:
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw, overrides)
    return str(info.value)


# --------------------------------------------------------------------------- keys and defaults

def test_defaults_fill_the_stage_keys():
    m = config_from_dict(cnn()).model
    assert (m.channels, m.depth, m.kernel, m.pool, m.activation.name, m.init.scheme, m.init.mode) == (
        [16, 32], 2, 3, "max", "relu", "he_normal", "fan_in")
    assert (m.batchnorm, m.residual, m.dropout, m.head, m.bias_init, m.layers) == (False, False, 0.0, "gap", 0.0, None)


def test_a_bare_channel_count_is_one_stage():
    assert config_from_dict(cnn(channels=8)).model.channels == [8]
    assert config_from_dict(cnn(), ("model.channels=[8,16]",)).model.channels == [8, 16]


def test_resolved_config_validates_back_to_itself(tmp_path):
    for model in ({}, {"residual": True, "depth": 4, "pool": "none", "batchnorm": True},
                  {"layers": [{"type": "conv", "channels": 4, "padding": 0, "kernel": 2},
                              {"type": "maxpool", "size": 3, "stride": 1}, {"type": "flatten"},
                              {"type": "dense", "units": 5}, {"type": "activation", "name": "tanh"}]}):
        config = config_from_dict(cnn(**model))
        again = config_from_dict(config.resolved())
        assert again.model == config.model
        assert again.resolved() == config.resolved()


# --------------------------------------------------------------------------- the plan and the built net

def test_stages_make_conv1_then_depth_layers_per_stage_pooled_between():
    net = built({"channels": [4, 8], "depth": 2})
    assert names(net) == [["conv1", "relu1"], ["conv2", "relu2"], ["conv3", "relu3", "maxpool3"],
                          ["conv4", "relu4"], ["conv5", "relu5"], ["gap6", "dense6"]]
    assert net.depth == 5  # 2 + len(channels) * depth weighted layers, the output layer included
    assert net.block_start == {}


def test_plan_shapes_follow_padding_same_and_the_pools():
    cfg = config_from_dict(cnn(channels=[4, 8, 8], depth=1, pool="avg")).model
    steps = plan_shapes(cfg, (7, 7, 2))
    got = [(s.item.type, s.layer, s.shape_out) for s in steps if s.item.type != "activation"]
    assert got == [("conv", 1, (7, 7, 4)), ("conv", 2, (7, 7, 4)), ("avgpool", 2, (3, 3, 4)),
                   ("conv", 3, (3, 3, 8)), ("avgpool", 3, (1, 1, 8)), ("conv", 4, (1, 1, 8)), ("gap", 5, (8,))]
    assert [s.fan_in for s in steps if s.item.type == "conv"] == [18, 36, 36, 72]


def test_parameter_counts_with_and_without_batch_norm():
    # conv1 3*3*2*4 + 4, conv2 3*3*4*4 + 4, conv3 3*3*4*8 + 8, dense4 8*3 + 3
    plain = built({"channels": [4, 8], "depth": 1})
    assert sum(p.size for p in plain.params.values()) == 76 + 148 + 296 + 27
    assert shapes(plain)["conv3.W"] == (3, 3, 4, 8)
    # batch norm replaces each conv's bias by gamma and beta per channel
    bn = built({"channels": [4, 8], "depth": 1, "batchnorm": True})
    assert sum(p.size for p in bn.params.values()) == (72 + 8) + (144 + 8) + (288 + 16) + 27
    assert "conv1.b" not in bn.params and shapes(bn)["bn3.gamma"] == (8,)
    assert names(bn)[0] == ["conv1", "bn1", "relu1"]


def test_flatten_head_feeds_every_pixel_to_the_output_layer():
    net = built({"channels": [4, 8], "depth": 1, "head": "flatten"})
    assert names(net)[-1] == ["flatten4", "dense4"] and shapes(net)["dense4.W"] == (3 * 3 * 8, 3)


def test_no_pool_between_stages_means_stride_two():
    net = built({"channels": [4, 8], "depth": 1, "pool": "none"})
    conv3 = net.layers[2].modules[0]
    assert (conv3.stride, conv3.padding) == (2, 1) and names(net)[1:] == [["conv2", "relu2"], ["conv3", "relu3"],
                                                                            ["gap4", "dense4"]]
    assert net.forward(np.ones((2, *IMAGE)), train=False).shape == (2, 3)


def test_residual_stages_are_blocks_of_two_with_projections_where_channels_or_size_change():
    net = built({"channels": [4, 8], "depth": 4, "residual": True, "batchnorm": True, "pool": "none"})
    assert names(net) == [["conv1", "bn1", "relu1"], ["res2", "relu2"], ["res3", "relu3"], ["res4", "relu4"],
                          ["res5", "relu5"], ["gap6", "dense6"]]
    got = shapes(net)
    assert "res2.W_proj" not in got and "res3.W_proj" not in got and "res5.W_proj" not in got
    assert got["res4.W_proj"] == (1, 1, 4, 8) and got["res4.W_a"] == (3, 3, 4, 8) and got["res4.W_b"] == (3, 3, 8, 8)
    assert net.layers[3].modules[0].stride == 2 and "res4.gamma_proj" in got and "res2.b_a" not in got
    with_pool = built({"channels": [4, 8], "depth": 2, "residual": True, "batchnorm": False})
    assert shapes(with_pool)["res3.W_proj"] == (1, 1, 4, 8) and with_pool.layers[2].modules[0].stride == 1
    assert names(with_pool)[1] == ["res2", "relu2", "maxpool2"] and "res2.b_a" in with_pool.params


def test_layers_list_starts_a_logged_layer_at_each_conv_residual_and_dense_item():
    """... and at a flatten or gap, which takes the dense item after it: the last conv layer's delta_norm is
    the gradient of its image, as every conv layer's."""
    layers = [{"type": "conv", "channels": 4, "stride": 2}, {"type": "batchnorm"}, {"type": "activation", "name": "tanh"},
              {"type": "maxpool"}, {"type": "residual", "channels": 6}, {"type": "activation", "name": "relu"},
              {"type": "flatten"}, {"type": "dense", "units": 5}, {"type": "batchnorm"},
              {"type": "activation", "name": "relu"}, {"type": "dropout", "p": 0.5}]
    net = built({"layers": layers}, shape=(8, 8, 2))
    assert names(net) == [["conv1", "bn1", "tanh1", "maxpool1"], ["res2", "relu2"],
                          ["flatten3", "dense3", "bn3", "relu3", "dropout3"], ["dense4"]]
    got = shapes(net)
    # 8x8 -> stride 2: 4x4 -> maxpool: 2x2 -> residual: 2x2x6 -> flatten 24; dense3 has no bias (batch norm follows)
    assert got["res2.W_proj"] == (1, 1, 4, 6) and got["dense3.W"] == (24, 5) and "dense3.b" not in got
    assert net.layers[0].modules[1].spatial and not net.layers[2].modules[2].spatial


@pytest.mark.parametrize("scheme, fan", [("he_normal", lambda k, ci, co: 2 / (k * k * ci)),
                                         ("xavier_normal", lambda k, ci, co: 2 / (k * k * (ci + co)))])
def test_conv_weights_are_drawn_with_the_receptive_field_in_the_fans(scheme, fan):
    layers = [{"type": "conv", "channels": 64, "kernel": 3}, {"type": "conv", "channels": 16, "kernel": 5},
              {"type": "gap"}]
    net = built({"layers": layers, "init": scheme}, shape=(6, 6, 16))
    for name, (k, ci, co) in {"conv1.W": (3, 16, 64), "conv2.W": (5, 64, 16)}.items():
        W = net.params[name]
        assert W.shape == (k, k, ci, co)
        assert W.std() == pytest.approx(np.sqrt(fan(k, ci, co)), rel=0.04), name


def test_bias_init_reaches_conv_and_residual_biases():
    net = built({"channels": [4, 8], "depth": 2, "residual": True, "bias_init": 0.1})
    assert np.all(net.params["conv1.b"] == 0.1) and np.all(net.params["res2.b_a"] == 0.1)
    assert np.all(net.params["res3.b_proj"] == 0.1) and np.all(net.params["dense4.b"] == 0.1)


def test_model_line_names_the_stages():
    net = built({"channels": [4, 8], "depth": 2})
    config = config_from_dict(cnn(channels=[4, 8], depth=2))
    # conv1 76, conv2 and conv3 148 each, conv4 296, conv5 584, dense6 27
    assert model_line(net, config) == ("CNN 6x6x2 -> conv3x3 4 x3 -> maxpool -> conv3x3 8 x2 -> gap -> 3, relu "
                                       "(he_normal), 1,279 parameters")
    res = built({"channels": [4, 8], "depth": 2, "residual": True, "pool": "none", "batchnorm": True})
    assert model_line(res).startswith("CNN 6x6x2 -> conv3x3 4 bn -> res3x3 4 bn -> res3x3 8/2 bn -> gap -> 3, relu,")
    del res.input_shape  # a net built by hand: the channels from its first kernel, the size unknown
    assert model_line(res).startswith("CNN ?x?x2 -> conv3x3 4 bn")


# --------------------------------------------------------------------------- bad input

def test_residual_stages_need_an_even_depth():
    message = error(cnn(residual=True), ("model.depth=3",))
    assert message.startswith("--set model.depth=3: 'model': a residual net's stages are blocks of two conv layers, "
                              "but model.depth is 3; allowed: an even model.depth (2 or 4)"), message


def test_kernel_must_be_odd_for_padding_same():
    assert "'model.kernel': should be odd" in error(cnn(kernel=4))
    message = error(cnn(layers=[{"type": "conv", "channels": 4, "kernel": 2}, {"type": "gap"}]))
    assert "'model.layers[0]': padding same needs an odd kernel" in message
    config_from_dict(cnn(layers=[{"type": "conv", "channels": 4, "kernel": 2, "padding": 0}, {"type": "gap"}]))


@pytest.mark.parametrize("layers, fragment", [
    ([{"type": "maxpool"}, {"type": "gap"}], "item [0] is {type: maxpool}, but the list must start with {type: conv"),
    ([{"type": "conv", "channels": 4}], "the list never turns the image into a vector"),
    ([{"type": "conv", "channels": 4}, {"type": "dense", "units": 3}, {"type": "gap"}],
     "item [1] is {type: dense}, but the image is still (H, W, C) there"),
    ([{"type": "conv", "channels": 4}, {"type": "gap"}, {"type": "conv", "channels": 4}],
     "item [2] is {type: conv}, after item [1] (gap) made the image a vector"),
    ([{"type": "conv", "channels": 4}, {"type": "gap"}, {"type": "flatten"}], "items [1] and [2] both turn"),
])
def test_layers_order_is_checked(layers, fragment):
    assert f"'model.layers': {fragment}" in error(cnn(layers=layers))


def test_layers_replace_the_stage_keys():
    message = error(cnn(depth=3, layers=[{"type": "conv", "channels": 4}, {"type": "gap"}]))
    assert "'model.layers' replaces channels, depth, kernel, pool" in message and "remove model.depth" in message


def test_a_cnn_takes_built_in_activations_only():
    assert "'model.activation': a cnn takes the built-in activations only, not mine:Swish" in error(
        cnn(activation="mine:Swish"))


@pytest.mark.parametrize("override, hint", [
    ("model.filters=[8]", "Did you mean --set 'model.channels=[8]'?"),
    ("model.kernel_size=5", "Did you mean --set model.kernel=5?"),
    ("model.width=8", "Did you mean --set model.channels=8?"),
    ("model.pool=MaxPool2D", "Did you mean --set model.pool=max?"),
    ("model.head=GlobalAveragePooling2D", "Did you mean --set model.head=gap?"),
    ("model.kind=CNN", "Did you mean --set model.kind=cnn?"),
    ("model.layers=[{type: Conv2D, channels: 4}, {type: gap}]", "Did you mean 'conv'?"),
])
def test_did_you_mean_in_keras_and_torch_words(override, hint):
    message = error(cnn(), (override,))
    assert message.startswith(f"--set {shlex.quote(override)}: ") and hint in message, message


def test_a_cnn_item_without_a_type_lists_the_cnn_items():
    message = error(cnn(layers=[{"channels": 4}, {"type": "gap"}]))
    assert "'model.layers[0].type' is nothing; allowed: 'conv', 'maxpool', 'avgpool', 'gap', 'flatten', 'residual'" \
        in message


def _write(tmp_path: Path, raw: dict) -> Path:
    import yaml

    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({**raw, "train": {"steps": 1}, "log": {"out": str(tmp_path / "runs")}}),
                    encoding="utf-8")
    return path


def test_cli_refuses_a_cnn_on_vectors(tmp_path):
    path = _write(tmp_path, {"data": {"kind": "spirals"}, "model": {"kind": "cnn"}})
    for command in ("train", "check"):
        result = CliRunner().invoke(app, [command, str(path)])
        assert_bad_input(result, f"{path}: 'model.kind' is cnn, but data.kind spirals gives vectors (n, features), "
                                 "not images; allowed: data.kind shapes, digits or images")
    assert not (tmp_path / "runs").exists()


def test_cli_names_the_key_whose_pooling_shrinks_the_image_below_a_pixel(tmp_path):
    path = _write(tmp_path, cnn(channels=[4, 4, 4, 4], depth=1))  # 6 -> 3 -> 1 -> 0
    result = CliRunner().invoke(app, ["train", str(path)])
    assert_bad_input(result, f"{path}: 'model.pool': a 2x2 max pool does not fit the 1x1 image of layer 4 (the input "
                             "is 6x6x1)", "allowed: fewer stages (model.channels has 4")
    layers = [{"type": "conv", "channels": 4, "kernel": 7, "padding": 0}, {"type": "gap"}]
    result = CliRunner().invoke(app, ["train", str(_write(tmp_path, cnn(layers=layers)))])
    assert_bad_input(result, "'model.layers[0]': a 7x7 kernel does not fit the 6x6 image of layer 1")


def test_cli_blames_the_set_option_for_an_odd_residual_depth(tmp_path):
    path = _write(tmp_path, cnn(residual=True))
    result = CliRunner().invoke(app, ["train", str(path), "--set", "model.depth=5"])
    assert_bad_input(result, "--set model.depth=5: 'model': a residual net's stages are blocks of two conv layers")


def test_an_mlp_reads_images_as_their_flattened_pixels(tmp_path):
    config = config_from_dict({"data": {"kind": "shapes", "size": 6, "n_samples": 16},
                               "model": {"depth": 1, "width": 4}})
    s = setup(config)
    assert s.data.X_train.shape[1:] == (36,) and s.model.params["dense1.W"].shape == (36, 4)
    images = setup(config_from_dict(cnn(channels=[4], depth=1))).data.X_train
    np.testing.assert_array_equal(s.data.X_train, images.reshape(len(images), -1))  # the same pixels, in order


def test_a_cnn_config_file_round_trips_through_a_run(tmp_path):
    path = _write(tmp_path, cnn(channels=[4, 8], depth=2, residual=True, pool="none"))
    result = CliRunner().invoke(app, ["train", str(path), "-q", "--set", "model.channels=[3,5]"])
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").iterdir()
    written = parse_yaml((run / "config.yaml").read_text(encoding="utf-8"), "config.yaml")
    assert written["model"]["channels"] == [3, 5] and written["model"]["kind"] == "cnn"
    assert load_config(run / "config.yaml").model == load_config(path, ["model.channels=[3,5]"]).model


def test_a_pool_too_many_is_blamed_on_the_set_option_and_found_before_a_sweep_runs(tmp_path):
    path = _write(tmp_path, cnn(channels=[4], depth=1))
    result = CliRunner().invoke(app, ["train", str(path), "--set", "model.channels=[4,4,4,4]"])
    assert_bad_input(result, "--set 'model.channels=[4,4,4,4]': 'model.pool': a 2x2 max pool does not fit the 1x1 "
                             "image of layer 4")
    sweep = tmp_path / "s.yaml"
    sweep.write_text("name: s\nbase: c.yaml\ngrid: {model.channels: [[4], [4, 4, 4, 4]]}\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["sweep", str(sweep), "--workers", "1"])
    assert_bad_input(result, f"{sweep}: combination channels=4+4+4+4", "'model.pool': a 2x2 max pool does not fit")
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_a_conv_net_without_kind_cnn_is_told_to_say_so():
    mlp = {"data": {"kind": "shapes"}, "model": {"depth": 2, "channels": [8, 16]}}
    assert ("'model.channels': a conv net's key, but the model is an MLP (model.kind mlp, the default); set "
            "model.kind: cnn for a conv net. Allowed keys in model: kind, depth, width") in error(mlp)
    mlp = {"data": {"kind": "shapes"}, "model": {"layers": [{"type": "conv", "channels": 8}, {"type": "gap"}]}}
    message = error(mlp)
    assert "'model.layers[0].type' is 'conv'; allowed: 'dense', 'activation', 'batchnorm', 'dropout', 'custom'. conv " \
           "items make a conv net: set model.kind: cnn." in message
    assert "gap items make a conv net: set model.kind: cnn." in message


def test_an_empty_layers_list_is_bad_input_naming_the_key(tmp_path):
    """An empty list built a net without a conv layer and raised IndexError in build_cnn (exit 1, a traceback)."""
    path = tmp_path / "empty.yaml"
    path.write_text("data: {kind: shapes, n_samples: 32, size: 6}\nmodel: {kind: cnn, init: he_normal, layers: []}\n"
                    "train: {steps: 1}\n", encoding="utf-8")
    for command in ("train", "check"):
        result = CliRunner().invoke(app, [command, str(path)])
        assert result.exit_code == 2, result.output
        assert "Traceback" not in result.output and "model.layers" in result.output and "empty" in result.output
