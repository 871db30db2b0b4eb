"""Convolution, pooling, spatial batch norm and residual blocks: every backward pass against centred
differences in float64 on tiny images, and the layers' forward facts (a convolution by hand, shapes,
windows, K copies at once)."""
import numpy as np
import pytest

from gradlab.config import InitConfig
from gradlab.nn import AvgPool2d, BatchNorm, Conv2d, Flatten, GlobalAvgPool, MaxPool2d, ResBlock
from gradlab.nn import expected_std, init_weight, make_activation
from gradlab.nn.init import fans
from gradlab.nn.module import l2_applies
from test_nn import check_module  # backward against centred differences, J = sum(out * R)

TOL = 1e-7  # CS231n's "good" tier for a gradient check


def naive_conv(x, W, b, stride, padding):
    """The definition, pixel by pixel (a test's reference, never the layer's way)."""
    k, _, _, c_out = W.shape
    xp = np.pad(x, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    ho = (xp.shape[1] - k) // stride + 1
    wo = (xp.shape[2] - k) // stride + 1
    out = np.zeros((len(x), ho, wo, c_out))
    for n in range(len(x)):
        for y in range(ho):
            for z in range(wo):
                patch = xp[n, y * stride:y * stride + k, z * stride:z * stride + k, :]
                out[n, y, z] = np.tensordot(patch, W, axes=3) + (0 if b is None else b)
    return out


def distinct(rng, shape, gap=1e-2):
    """Entries all at least ``gap`` apart (a shuffled ladder), so x +- eps never changes a maximum."""
    values = gap * rng.permutation(int(np.prod(shape))).astype(np.float64)
    return (values - values.mean()).reshape(shape)


CONV_CASES = [  # (k, stride, padding, H, W)
    (3, 1, 0, 5, 6), (3, 1, 1, 5, 5), (3, 2, 0, 7, 5), (3, 2, 1, 6, 7),
    (1, 1, 0, 4, 5), (1, 2, 0, 5, 5), (1, 1, 1, 3, 4), (2, 2, 1, 5, 4),
]


@pytest.mark.parametrize("k, stride, padding, h, w", CONV_CASES)
def test_conv_backward_matches_centred_differences(k, stride, padding, h, w):
    rng = np.random.default_rng(0)
    conv = Conv2d(rng.standard_normal((k, k, 3, 2)), rng.standard_normal(2), stride, padding)
    errors = check_module(conv, rng.standard_normal((2, h, w, 3)))
    assert set(errors) == {"x", "W", "b"}
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("c_in, c_out", [(1, 4), (2, 5), (2, 4), (3, 2)],
                         ids=["scatter-1to4", "scatter-2to5", "flipped-2to4", "flipped-3to2"])
@pytest.mark.parametrize("padding", [0, 1, 2])
def test_conv_dx_by_the_flipped_kernel_and_by_the_scatter_add(c_in, c_out, padding):
    """At stride 1, dx is the flipped kernel's convolution of dout where C_out <= 2 C_in, else the scatter-add."""
    rng = np.random.default_rng(3)
    conv = Conv2d(rng.standard_normal((3, 3, c_in, c_out)), rng.standard_normal(c_out), 1, padding)
    errors = check_module(conv, rng.standard_normal((2, 5, 4, c_in)))
    assert max(errors.values()) < TOL, errors


def test_conv_reuses_its_im2col_matrix_and_never_a_stale_one():
    rng = np.random.default_rng(4)
    W, b = rng.standard_normal((3, 3, 2, 3)), rng.standard_normal(3)
    x1, x2, x3 = rng.standard_normal((2, 5, 5, 2)), rng.standard_normal((2, 5, 5, 2)), rng.standard_normal((3, 5, 5, 2))
    dout = rng.standard_normal((2, 5, 5, 3))
    fresh = Conv2d(W.copy(), b.copy(), 1, 1)
    fresh.forward(x2)
    dx = fresh.backward(dout)
    conv = Conv2d(W.copy(), b.copy(), 1, 1)
    conv.forward(x1)
    first = conv.cols
    conv.forward(x3)  # another batch size (an evaluation's last batch): a matrix of its own
    assert conv.cols.shape == (3 * 25, 18) and not np.shares_memory(conv.cols, first)
    conv.forward(x1)
    kept = conv.cols
    conv.forward(x2)  # the same shape again: the same memory, now holding x2's patches
    assert np.shares_memory(conv.cols, kept)
    np.testing.assert_array_equal(conv.backward(dout), dx)
    np.testing.assert_array_equal(conv.grads["W"], fresh.grads["W"])
    np.testing.assert_array_equal(conv.grads["b"], fresh.grads["b"])


def test_conv_without_bias_has_no_b():
    rng = np.random.default_rng(0)
    conv = Conv2d(rng.standard_normal((3, 3, 2, 2)), None, 1, 1)
    errors = check_module(conv, rng.standard_normal((2, 4, 4, 2)))
    assert set(errors) == {"x", "W"} and max(errors.values()) < TOL, errors


def test_conv_by_hand():
    # one channel, x = [[1 2 3] [4 5 6] [7 8 9]], a 2x2 kernel [[1 0] [0 -1]]: out = x[y,z] - x[y+1,z+1]
    x = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    W = np.array([[1.0, 0.0], [0.0, -1.0]]).reshape(2, 2, 1, 1)
    out = Conv2d(W, np.array([0.5])).forward(x)
    np.testing.assert_array_equal(out[0, :, :, 0], [[-3.5, -3.5], [-3.5, -3.5]])
    # padding 1: the corner (0, 0) of the output sees only x[0, 0] under the kernel's -1
    out = Conv2d(W, None, padding=1).forward(x)
    assert out.shape == (1, 4, 4, 1)
    assert out[0, 0, 0, 0] == -1.0 and out[0, 3, 3, 0] == 9.0 and out[0, 1, 1, 0] == 1.0 - 5.0
    # two input channels sum; two output channels are two kernels
    x2 = np.concatenate([x, 10 * x], axis=3)
    W2 = np.zeros((1, 1, 2, 2))
    W2[0, 0] = [[1.0, 0.0], [1.0, 2.0]]  # out0 = x + 10x, out1 = 2 * 10x
    out = Conv2d(W2, None).forward(x2)
    np.testing.assert_array_equal(out[..., 0], 11 * x[..., 0])
    np.testing.assert_array_equal(out[..., 1], 20 * x[..., 0])


@pytest.mark.parametrize("k, stride, padding, h, w", CONV_CASES)
def test_conv_matches_its_definition(k, stride, padding, h, w):
    rng = np.random.default_rng(3)
    x, W, b = rng.standard_normal((3, h, w, 2)), rng.standard_normal((k, k, 2, 4)), rng.standard_normal(4)
    out = Conv2d(W, b, stride, padding).forward(x)
    ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    assert out.shape == (3, ho, wo, 4)
    np.testing.assert_allclose(out, naive_conv(x, W, b, stride, padding), rtol=1e-12, atol=1e-12)


def test_conv_refuses_a_kernel_larger_than_the_image():
    with pytest.raises(ValueError, match="does not fit a 2x2 image"):
        Conv2d(np.zeros((3, 3, 1, 1)), None).forward(np.zeros((1, 2, 2, 1)))


@pytest.mark.parametrize("size, stride, h, w", [(2, None, 4, 6), (2, None, 5, 5), (3, 2, 7, 6), (2, 1, 4, 3)])
def test_maxpool_backward_matches_centred_differences(size, stride, h, w):
    pool = MaxPool2d(size, stride)
    errors = check_module(pool, distinct(np.random.default_rng(0), (2, h, w, 3)))
    assert pool.kinks and max(errors.values()) < TOL, errors


@pytest.mark.parametrize("size, stride, h, w", [(2, None, 4, 6), (2, None, 5, 5), (3, 2, 7, 6), (2, 1, 4, 3)])
def test_avgpool_backward_matches_centred_differences(size, stride, h, w):
    errors = check_module(AvgPool2d(size, stride), np.random.default_rng(0).standard_normal((2, h, w, 3)))
    assert max(errors.values()) < TOL, errors


@pytest.mark.parametrize("module", [GlobalAvgPool(), Flatten()], ids=["gap", "flatten"])
def test_gap_and_flatten_backward(module):
    errors = check_module(module, np.random.default_rng(0).standard_normal((2, 3, 5, 4)))
    assert max(errors.values()) < TOL, errors


def test_pooling_windows_by_hand():
    x = np.arange(16.0).reshape(1, 4, 4, 1)  # rows 0..3, 4..7, 8..11, 12..15
    np.testing.assert_array_equal(MaxPool2d(2).forward(x)[0, :, :, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(AvgPool2d(2).forward(x)[0, :, :, 0], [[2.5, 4.5], [10.5, 12.5]])
    np.testing.assert_array_equal(MaxPool2d(2, 1).forward(x)[0, :, :, 0], [[5, 6, 7], [9, 10, 11], [13, 14, 15]])
    # a 5x5 image: windows that do not fit are dropped (floor), the last row and column unused
    x5 = np.arange(25.0).reshape(1, 5, 5, 1)
    np.testing.assert_array_equal(MaxPool2d(2).forward(x5)[0, :, :, 0], [[6, 8], [16, 18]])
    np.testing.assert_array_equal(AvgPool2d(3, 2).forward(x5)[0, :, :, 0], [[6, 8], [16, 18]])
    np.testing.assert_array_equal(GlobalAvgPool().forward(x5), [[12.0]])
    assert Flatten().forward(np.zeros((2, 3, 4, 5))).shape == (2, 60)
    np.testing.assert_array_equal(Flatten().forward(x)[0], np.arange(16.0))  # (h, w, c) order


def test_maxpool_gradient_goes_to_the_first_maximum():
    x = np.array([[3.0, 3.0], [1.0, 3.0]]).reshape(1, 2, 2, 1)  # a three-way tie
    pool = MaxPool2d(2)
    assert pool.forward(x)[0, 0, 0, 0] == 3.0
    assert pool.mask[0, 0, 0, 0] == 0  # the winner's offset i * size + j: (0, 0)
    dx = pool.backward(np.full((1, 1, 1, 1), 2.0))
    np.testing.assert_array_equal(dx[0, :, :, 0], [[2.0, 0.0], [0.0, 0.0]])
    x2 = np.array([[0.0, 1.0], [4.0, 2.0]]).reshape(1, 2, 2, 1)
    pool.forward(x2)
    assert pool.mask[0, 0, 0, 0] == 2  # (1, 0)


def test_overlapping_max_windows_add_their_gradients():
    x = np.array([[0.0, 9.0, 0.0]]).reshape(1, 1, 3, 1)
    pool = MaxPool2d(size=1, stride=1)  # a 1x1 window is the identity
    np.testing.assert_array_equal(pool.forward(x), x)
    row = MaxPool2d(size=2, stride=1)
    xr = np.array([[0.0, 9.0, 0.0], [0.0, 0.0, 0.0]]).reshape(1, 2, 3, 1)
    np.testing.assert_array_equal(row.forward(xr)[0, :, :, 0], [[9.0, 9.0]])
    dx = row.backward(np.array([1.0, 2.0]).reshape(1, 1, 2, 1))
    assert dx[0, 0, 1, 0] == 3.0 and dx.sum() == 3.0  # both windows' winner is the 9


@pytest.mark.parametrize("train", [True, False])
def test_spatial_batchnorm_backward_train_and_eval(train):
    rng = np.random.default_rng(0)
    bn = BatchNorm(3, spatial=True)
    bn.params["gamma"][:] = rng.uniform(0.5, 2, 3)
    bn.params["beta"][:] = rng.standard_normal(3)
    bn.running_mean[:] = rng.standard_normal(3)
    bn.running_var[:] = rng.uniform(0.5, 2, 3)
    errors = check_module(bn, 3 * rng.standard_normal((2, 3, 4, 3)) + 1, train)
    assert set(errors) == {"x", "gamma", "beta"} and max(errors.values()) < TOL, errors


def test_spatial_batchnorm_is_batchnorm_over_every_position():
    """Over (N, H, W, C) it is the (N*H*W, C) batch norm: the same output, gradients and running statistics."""
    rng = np.random.default_rng(0)
    x = 2 * rng.standard_normal((3, 4, 5, 2)) + 1
    dout = rng.standard_normal(x.shape)
    spatial, flat = BatchNorm(2, spatial=True), BatchNorm(2)
    for bn in (spatial, flat):
        bn.params["gamma"][:] = [0.7, 1.9]
        bn.params["beta"][:] = [0.1, -0.4]
    out = spatial.forward(x)
    np.testing.assert_allclose(out.reshape(-1, 2), flat.forward(x.reshape(-1, 2)), rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(spatial.backward(dout).reshape(-1, 2), flat.backward(dout.reshape(-1, 2)),
                               rtol=1e-12, atol=1e-13)
    for key in ("gamma", "beta"):
        np.testing.assert_allclose(spatial.grads[key], flat.grads[key], rtol=1e-12)
    np.testing.assert_allclose(spatial.running_mean, 0.1 * x.mean(axis=(0, 1, 2)), rtol=1e-12)
    n = 3 * 4 * 5  # the unbiased variance over every position, as torch's BatchNorm2d keeps it
    np.testing.assert_allclose(spatial.running_var, 0.9 + 0.1 * x.var(axis=(0, 1, 2)) * n / (n - 1), rtol=1e-12)
    np.testing.assert_allclose(spatial.running_var, flat.running_var, rtol=1e-13)
    spatial.eps = 0.0
    out = spatial.forward(x)
    np.testing.assert_allclose((out - [0.1, -0.4]).mean(axis=(0, 1, 2)), 0, atol=1e-12)
    np.testing.assert_allclose(((out - [0.1, -0.4]) / [0.7, 1.9]).var(axis=(0, 1, 2)), 1, atol=1e-12)


def _conv(rng):
    return Conv2d(rng.standard_normal((3, 3, 2, 3)), rng.standard_normal(3), 2, 1)


def _bn(rng):
    bn = BatchNorm(2, spatial=True)
    bn.params["gamma"][:] = rng.uniform(0.5, 2, 2)
    bn.params["beta"][:] = rng.standard_normal(2)
    return bn


@pytest.mark.parametrize("make", [_conv, lambda rng: MaxPool2d(2), lambda rng: AvgPool2d(3, 2),
                                  lambda rng: GlobalAvgPool(), lambda rng: Flatten(), _bn],
                         ids=["conv", "maxpool", "avgpool", "gap", "flatten", "bn"])
def test_k_copies_of_the_input_and_of_each_parameter_at_once(make):
    """What a gradient check relies on: forward on (K, N, H, W, C), or with a parameter given as K copies
    ((K, *shape), a vector as (K, 1, C)), equals K separate forwards."""
    rng = np.random.default_rng(0)
    module, K = make(rng), 3
    xs = rng.standard_normal((K, 2, 5, 5, 2))
    together = module.forward(xs)
    for k in range(K):
        np.testing.assert_allclose(together[k], module.forward(xs[k]), rtol=1e-13, atol=1e-13)
    x = xs[0]
    for key, p in list(module.params.items()):
        stack = p[None] + 0.1 * rng.standard_normal((K,) + p.shape)
        for shaped in ([stack, stack[:, None, :]] if p.ndim == 1 else [stack]):
            module.params[key] = shaped
            together, both = module.forward(x), module.forward(xs)
            module.params[key] = p
            for k in range(K):
                module.params[key] = stack[k]
                np.testing.assert_allclose(together[k], module.forward(x), rtol=1e-13, atol=1e-13)
                np.testing.assert_allclose(both[k], module.forward(xs[k]), rtol=1e-13, atol=1e-13)
            module.params[key] = p


@pytest.mark.parametrize("make", [_conv, lambda rng: MaxPool2d(2), lambda rng: AvgPool2d(2),
                                  lambda rng: GlobalAvgPool(), lambda rng: Flatten(), _bn],
                         ids=["conv", "maxpool", "avgpool", "gap", "flatten", "bn"])
def test_backward_leaves_its_input_alone(make):
    rng = np.random.default_rng(0)
    module = make(rng)
    x = rng.standard_normal((2, 5, 5, 2))
    x0 = x.copy()
    dout = np.ones(module.forward(x).shape)
    module.backward(dout)
    np.testing.assert_array_equal(dout, 1.0)
    np.testing.assert_array_equal(x, x0)


def resblock(rng, c_in=2, c_out=2, stride=1, batchnorm=True, activation="tanh", k=3):
    W_a, W_b = 0.5 * rng.standard_normal((k, k, c_in, c_out)), 0.5 * rng.standard_normal((k, k, c_out, c_out))
    W_proj = 0.5 * rng.standard_normal((1, 1, c_in, c_out)) if (stride != 1 or c_in != c_out) else None
    block = ResBlock(W_a, W_b, W_proj, stride, make_activation(activation, 0.25, c_out), batchnorm, name="res3")
    for key, p in block.params.items():  # gamma away from 1, beta and biases away from 0: every path counts
        if key.startswith(("gamma", "alpha")):
            p[:] = rng.uniform(0.5, 1.5, p.shape)
        elif key.startswith(("beta", "b_")):
            p[:] = 0.3 * rng.standard_normal(p.shape)
    return block


@pytest.mark.parametrize("c_in, c_out, stride", [(2, 2, 1), (2, 3, 1), (2, 3, 2), (3, 3, 2)],
                         ids=["identity", "projection", "projection-stride2", "same-channels-stride2"])
@pytest.mark.parametrize("batchnorm", [True, False])
def test_resblock_backward_matches_centred_differences(c_in, c_out, stride, batchnorm):
    rng = np.random.default_rng(0)
    block = resblock(rng, c_in, c_out, stride, batchnorm)
    errors = check_module(block, rng.standard_normal((2, 5, 5, c_in)))
    expected = {"x", "W_a", "W_b"} | ({"W_proj"} if block.proj else set())
    expected |= ({f"{g}_{s}" for g in ("gamma", "beta") for s in ("a", "b")} if batchnorm else {"b_a", "b_b"})
    if block.proj:
        expected |= {"gamma_proj", "beta_proj"} if batchnorm else {"b_proj"}
    assert set(errors) == expected
    assert max(errors.values()) < TOL, errors


def test_resblock_with_relu_and_prelu_in_eval_mode():
    rng = np.random.default_rng(1)
    for act in ("relu", "prelu"):
        block = resblock(rng, 2, 3, 2, True, act)
        block.forward(rng.standard_normal((4, 6, 6, 2)))  # some running statistics to use in eval
        errors = check_module(block, rng.standard_normal((2, 6, 6, 2)), train=False)
        assert block.kinks == (act in ("relu", "prelu")) and max(errors.values()) < TOL, (act, errors)
    assert "alpha_a" in block.params  # a PReLU's slopes are the block's params too


def test_resblock_is_its_formula():
    """The identity block computes bn_b(conv_b(act(bn_a(conv_a(x))))) + x; the projection block adds
    bn_proj(proj(x)) instead, with the block's stride."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 6, 6, 2))
    block = resblock(rng, 2, 2, 1, True, "tanh")
    P = block.params
    a = Conv2d(P["W_a"], None, 1, 1).forward(x)
    a = np.tanh(P["gamma_a"] * (a - a.mean(axis=(0, 1, 2))) / np.sqrt(a.var(axis=(0, 1, 2)) + 1e-5) + P["beta_a"])
    c = Conv2d(P["W_b"], None, 1, 1).forward(a)
    c = P["gamma_b"] * (c - c.mean(axis=(0, 1, 2))) / np.sqrt(c.var(axis=(0, 1, 2)) + 1e-5) + P["beta_b"]
    np.testing.assert_allclose(block.forward(x), c + x, rtol=1e-12, atol=1e-12)
    proj = resblock(rng, 2, 4, 2, False, "tanh")
    P = proj.params
    out = proj.forward(x)
    assert out.shape == (3, 3, 3, 4)
    inner = Conv2d(P["W_b"], P["b_b"], 1, 1).forward(np.tanh(Conv2d(P["W_a"], P["b_a"], 2, 1).forward(x)))
    np.testing.assert_allclose(out, inner + Conv2d(P["W_proj"], P["b_proj"], 2, 0).forward(x), rtol=1e-12)


def test_resblock_param_names_and_l2():
    block = resblock(np.random.default_rng(0), 2, 3, 2, True, "relu")
    assert list(block.params) == ["W_a", "gamma_a", "beta_a", "W_b", "gamma_b", "beta_b", "W_proj", "gamma_proj",
                                  "beta_proj"]
    assert next(iter(block.named_params())) == "res3.W_a" and list(block.grads) == list(block.params)
    assert [k for k in block.params if l2_applies(f"res3.{k}")] == ["W_a", "W_b", "W_proj"]
    plain = resblock(np.random.default_rng(0), 2, 2, 1, False, "relu")
    assert list(plain.params) == ["W_a", "b_a", "W_b", "b_b"] and plain.proj is None
    assert [k for k in plain.params if l2_applies(f"res3.{k}")] == ["W_a", "W_b"]


def test_resblock_refuses_an_identity_where_the_shape_changes():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="identity shortcut needs stride 1"):
        ResBlock(rng.standard_normal((3, 3, 2, 3)), rng.standard_normal((3, 3, 3, 3)), None, 1,
                 make_activation("relu"))
    with pytest.raises(ValueError, match="kernels must be odd"):
        ResBlock(rng.standard_normal((2, 2, 2, 2)), rng.standard_normal((2, 2, 2, 2)), None, 1,
                 make_activation("relu"))
    with pytest.raises(ValueError, match=r"W_proj must be \(1, 1, 2, 3\)"):
        ResBlock(rng.standard_normal((3, 3, 2, 3)), rng.standard_normal((3, 3, 3, 3)),
                 rng.standard_normal((3, 3, 2, 3)), 1, make_activation("relu"))


def test_resblock_grads_are_the_blocks_own_arrays_and_params_rebind():
    """An optimiser steps ``params`` in place and reads ``grads``; a gradient check swaps a param for K copies:
    the block must follow both."""
    rng = np.random.default_rng(0)
    block = resblock(rng, 2, 3, 2, True, "relu")
    x = rng.standard_normal((2, 5, 5, 2))
    block.forward(x)
    block.backward(np.ones((2, 3, 3, 3)))
    assert block.grads["W_a"] is block.conv_a.grads["W"] and np.abs(block.grads["W_a"]).sum() > 0
    assert block.mask is block.activation.mask and block.mask.shape == (2, 3, 3, 3)
    W = block.params["W_b"]
    stack = W[None] + 0.1 * rng.standard_normal((3,) + W.shape)
    block.params["W_b"] = stack
    together = block.forward(x)
    for k in range(3):
        block.params["W_b"] = stack[k]
        np.testing.assert_allclose(together[k], block.forward(x), rtol=1e-12, atol=1e-12)
    block.params["W_b"] = W
    xs = rng.standard_normal((3, 2, 5, 5, 2))
    together = block.forward(xs)
    for k in range(3):
        np.testing.assert_allclose(together[k], block.forward(xs[k]), rtol=1e-12, atol=1e-12)


KERNEL = (3, 3, 16, 32)  # fan_in = 9 * 16 = 144, fan_out = 9 * 32 = 288


@pytest.mark.parametrize("spec, std", [
    ({"scheme": "he_normal"}, np.sqrt(2 / 144)),
    ({"scheme": "he_uniform", "mode": "fan_out"}, np.sqrt(2 / 288)),
    ({"scheme": "xavier_normal"}, np.sqrt(2 / (144 + 288))),
    ({"scheme": "lecun_uniform"}, np.sqrt(1 / 144)),
    ({"scheme": "variance_scaling", "scale": 3.0, "mode": "fan_avg", "distribution": "truncated_normal"},
     np.sqrt(3 / 216)),
    ({"scheme": "orthogonal"}, 1 / np.sqrt(144)),
    ({"scheme": "normal", "std": 0.05}, 0.05),
])
def test_kernel_init_counts_the_receptive_field(spec, std):
    """He et al. 2015: Var(W) = 2 / (k^2 c); Glorot's fans for a convolution are k*k*C_in and k*k*C_out."""
    cfg = InitConfig(**spec)
    W = init_weight(cfg, KERNEL, np.random.default_rng(0))
    assert W.shape == KERNEL and W.flags.c_contiguous
    assert expected_std(cfg, KERNEL) == pytest.approx(std, rel=1e-12)
    assert W.std() == pytest.approx(std, rel=0.03)
    assert fans(KERNEL) == (144, 288) and fans((5, 7)) == (5, 7)


def test_orthogonal_kernel_is_orthogonal_as_its_im2col_matrix():
    for shape in [(3, 3, 4, 8), (1, 1, 16, 4)]:  # 36 x 8 (orthonormal columns), 16 x 4
        W = init_weight(InitConfig(scheme="orthogonal", gain=2.0), shape, np.random.default_rng(0))
        M = W.reshape(-1, shape[-1])
        np.testing.assert_allclose(M.T @ M, 4 * np.eye(shape[-1]), atol=1e-12)
    W = init_weight(InitConfig(scheme="orthogonal"), (1, 1, 4, 16), np.random.default_rng(0)).reshape(4, 16)
    np.testing.assert_allclose(W @ W.T, np.eye(4), atol=1e-12)  # wider than tall: orthonormal rows


def test_identity_kernel_is_the_dirac_kernel_and_maps_x_to_itself():
    cfg = InitConfig(scheme="identity", scale=0.5)
    x = np.random.default_rng(0).standard_normal((2, 5, 4, 3))
    for k in (1, 3, 5):
        W = init_weight(cfg, (k, k, 3, 3), np.random.default_rng(0))
        assert np.count_nonzero(W) == 3 and W[(k - 1) // 2, (k - 1) // 2, 1, 1] == 0.5
        np.testing.assert_allclose(Conv2d(W, None, 1, (k - 1) // 2).forward(x), 0.5 * x, rtol=1e-15)
        assert expected_std(cfg, W.shape) == pytest.approx(W.std(mean=0.0), rel=1e-12)
    wider = init_weight(cfg, (3, 3, 3, 5), np.random.default_rng(0))  # more outputs: the extra ones are zero
    out = Conv2d(wider, None, 1, 1).forward(x)
    np.testing.assert_allclose(out[..., :3], 0.5 * x, rtol=1e-15)
    assert not out[..., 3:].any()
