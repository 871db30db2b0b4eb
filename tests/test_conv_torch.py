"""torch.nn.functional as an oracle for the image layers: outputs AND gradients (dx and every parameter) of
conv2d, max_pool2d, avg_pool2d, adaptive_avg_pool2d (the global pool), batch_norm in training (with its
running statistics) and a residual block composed of them, in float64. gradlab is NHWC with kernels
(k, k, C_in, C_out); torch is NCHW with (C_out, C_in, k, k). Skipped (a failure in CI) without torch."""
from __future__ import annotations

import numpy as np
import pytest

from gradlab.nn import AvgPool2d, BatchNorm, Conv2d, GlobalAvgPool, MaxPool2d, ResBlock, make_activation
from optional import need_torch

# float64 in both; sums in different orders cost a few ulps, measured below 1e-14 at these sizes
RTOL, ATOL = 1e-11, 1e-12


def nchw(a):
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2))


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def oihw(W):
    return np.ascontiguousarray(W.transpose(3, 2, 0, 1))


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)


def leaf(torch, a):
    return torch.tensor(a, dtype=torch.float64, requires_grad=True)


@pytest.mark.parametrize("k, stride, padding, h, w", [
    (3, 1, 0, 6, 5), (3, 1, 1, 5, 5), (3, 2, 1, 7, 6), (3, 2, 0, 6, 6), (1, 2, 0, 5, 4), (5, 2, 2, 6, 7),
])
def test_conv2d_matches_torch(k, stride, padding, h, w):
    torch = need_torch("conv2d against torch")
    rng = np.random.default_rng(0)
    x, W, b = rng.standard_normal((3, h, w, 2)), rng.standard_normal((k, k, 2, 4)), rng.standard_normal(4)
    conv = Conv2d(W.copy(), b.copy(), stride, padding)
    out = conv.forward(x)
    R = rng.standard_normal(out.shape)
    dx = conv.backward(R)
    tx, tW, tb = leaf(torch, nchw(x)), leaf(torch, oihw(W)), leaf(torch, b)
    tout = torch.nn.functional.conv2d(tx, tW, tb, stride=stride, padding=padding)
    (tout * torch.tensor(nchw(R))).sum().backward()
    close(out, nhwc(tout))
    close(dx, nhwc(tx.grad))
    close(conv.grads["W"], tW.grad.numpy().transpose(2, 3, 1, 0))
    close(conv.grads["b"], tb.grad.numpy())


@pytest.mark.parametrize("pool, size, stride, h, w", [
    ("max", 2, None, 4, 6), ("max", 2, None, 5, 5), ("max", 3, 2, 7, 6), ("max", 2, 1, 4, 3),
    ("avg", 2, None, 4, 6), ("avg", 2, None, 5, 5), ("avg", 3, 2, 7, 6), ("avg", 2, 1, 4, 3),
])
def test_pooling_matches_torch(pool, size, stride, h, w):
    """Windows that do not fit are dropped as torch's ceil_mode=False drops them."""
    torch = need_torch("pooling against torch")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, h, w, 3))
    layer = (MaxPool2d if pool == "max" else AvgPool2d)(size, stride)
    out = layer.forward(x)
    R = rng.standard_normal(out.shape)
    dx = layer.backward(R)
    tx = leaf(torch, nchw(x))
    f = torch.nn.functional.max_pool2d if pool == "max" else torch.nn.functional.avg_pool2d
    tout = f(tx, size, stride if stride is not None else size)
    (tout * torch.tensor(nchw(R))).sum().backward()
    close(out, nhwc(tout))
    close(dx, nhwc(tx.grad))


def test_max_pool_ties_go_where_torch_sends_them():
    """A window of equal values: torch and gradlab both give the gradient to the first (row-major) one."""
    torch = need_torch("max pooling ties against torch")
    x = np.zeros((1, 4, 4, 2))
    x[0, 2:, 2:, 1] = 1.0  # one window of four ties at 1, three windows of four ties at 0, channel 0 all ties
    pool = MaxPool2d(2)
    R = np.arange(1.0, 9.0).reshape(1, 2, 2, 2)
    pool.forward(x)
    dx = pool.backward(R)
    tx = leaf(torch, nchw(x))
    (torch.nn.functional.max_pool2d(tx, 2) * torch.tensor(nchw(R))).sum().backward()
    close(dx, nhwc(tx.grad))


def test_global_average_pool_matches_adaptive_avg_pool():
    torch = need_torch("global average pooling against torch")
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 5, 4, 2))
    gap = GlobalAvgPool()
    out = gap.forward(x)
    R = rng.standard_normal(out.shape)
    dx = gap.backward(R)
    tx = leaf(torch, nchw(x))
    tout = torch.nn.functional.adaptive_avg_pool2d(tx, 1).flatten(1)
    (tout * torch.tensor(R)).sum().backward()
    close(out, tout.detach().numpy())
    close(dx, nhwc(tx.grad))


def test_spatial_batch_norm_matches_torch_in_training():
    torch = need_torch("batch norm against torch")
    rng = np.random.default_rng(3)
    x = 2 * rng.standard_normal((3, 4, 5, 2)) + 1
    bn = BatchNorm(2, spatial=True)
    bn.params["gamma"][:] = [0.7, 1.9]
    bn.params["beta"][:] = [0.1, -0.4]
    mean, var = torch.zeros(2, dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    tx, tg, tb = leaf(torch, nchw(x)), leaf(torch, [0.7, 1.9]), leaf(torch, [0.1, -0.4])
    for _ in range(2):  # two steps: the running statistics move as torch's do
        out = bn.forward(x)
        tout = torch.nn.functional.batch_norm(tx, mean, var, tg, tb, training=True, momentum=0.1, eps=1e-5)
    R = rng.standard_normal(out.shape)
    dx = bn.backward(R)
    (tout * torch.tensor(nchw(R))).sum().backward()
    close(out, nhwc(tout))
    close(dx, nhwc(tx.grad))
    close(bn.grads["gamma"], tg.grad.numpy())
    close(bn.grads["beta"], tb.grad.numpy())
    close(bn.running_mean, mean.numpy())
    close(bn.running_var, var.numpy())
    close(bn.forward(x, train=False), nhwc(torch.nn.functional.batch_norm(tx, mean, var, tg, tb, training=False)))


def test_residual_block_matches_torch():
    """bn_b(conv_b(relu(bn_a(conv_a(x))))) + bn_proj(proj(x)), stride 2, composed of torch's functions."""
    torch = need_torch("a residual block against torch")
    F = torch.nn.functional
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 6, 6, 2))
    W_a, W_b, W_p = (0.5 * rng.standard_normal(s) for s in ((3, 3, 2, 3), (3, 3, 3, 3), (1, 1, 2, 3)))
    block = ResBlock(W_a.copy(), W_b.copy(), W_p.copy(), 2, make_activation("relu"), True, name="res2")
    out = block.forward(x)
    R = rng.standard_normal(out.shape)
    dx = block.backward(R)
    tx, ta, tb_, tp = leaf(torch, nchw(x)), leaf(torch, oihw(W_a)), leaf(torch, oihw(W_b)), leaf(torch, oihw(W_p))
    ones, zeros = (lambda: leaf(torch, np.ones(3))), (lambda: leaf(torch, np.zeros(3)))
    g = {s: (ones(), zeros()) for s in ("a", "b", "proj")}

    def bn(t, s):
        return F.batch_norm(t, None, None, g[s][0], g[s][1], training=True, eps=1e-5)

    main = bn(F.conv2d(F.relu(bn(F.conv2d(tx, ta, stride=2, padding=1), "a")), tb_, padding=1), "b")
    tout = main + bn(F.conv2d(tx, tp, stride=2), "proj")
    (tout * torch.tensor(nchw(R))).sum().backward()
    close(out, nhwc(tout))
    close(dx, nhwc(tx.grad))
    for key, t in (("W_a", ta), ("W_b", tb_), ("W_proj", tp)):
        close(block.grads[key], t.grad.numpy().transpose(2, 3, 1, 0))
    for s in ("a", "b", "proj"):
        close(block.grads[f"gamma_{s}"], g[s][0].grad.numpy())
        close(block.grads[f"beta_{s}"], g[s][1].grad.numpy())
