"""Convolution, pooling and residual blocks over NHWC images, with hand-written backward passes.

Images are (N, H, W, C); a convolution weight is (k, k, C_in, C_out) (HWIO, TensorFlow's layout) and its
bias (C_out,). A convolution is im2col -- the k*k*C_in patch under every output position gathered by a
strided view -- and one matrix product; its backward is two products and a scatter-add over the k*k
kernel offsets (never a loop over pixels). Windows that do not fit are dropped: Ho = (H + 2p - k) // s + 1,
as torch and TensorFlow's "VALID" compute it.

Every layer also takes a leading axis of K perturbed copies (x (K, N, H, W, C), a weight (K, k, k, C_in,
C_out), a per-channel vector (K, 1, C) or (K, C)), so a gradient check evaluates many perturbations in
one call; backward is for the plain (N, H, W, C) pass.
"""
from __future__ import annotations

import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .module import Module
from .norm import BatchNorm


def out_size(n: int, k: int, stride: int, padding: int = 0) -> int:
    """Output positions along an axis of n: floor((n + 2p - k) / s) + 1."""
    return (n + 2 * padding - k) // stride + 1


def patches(xp: np.ndarray, k: int, stride: int, ho: int, wo: int) -> np.ndarray:
    """Read-only view (M, Ho, Wo, k, k, C) of the k x k windows of xp (M, Hp, Wp, C), no copy."""
    sm, sh, sw, sc = xp.strides
    shape = (xp.shape[0], ho, wo, k, k, xp.shape[3])
    return as_strided(xp, shape, (sm, stride * sh, stride * sw, sh, sw, sc), writeable=False)


def offsets(k: int, stride: int, ho: int, wo: int):
    """(i, j, rows, cols): each kernel offset and the slices of the padded input it reads."""
    for i in range(k):
        for j in range(k):
            yield i, j, slice(i, i + stride * (ho - 1) + 1, stride), slice(j, j + stride * (wo - 1) + 1, stride)


def merged(x: np.ndarray) -> np.ndarray:
    """(..., H, W, C) as (M, H, W, C): leading axes (copies, batch) merged."""
    return x.reshape((-1,) + x.shape[-3:])


def kept(buf: np.ndarray | None, shape: tuple[int, ...], dtype) -> np.ndarray:
    """``buf`` if it has this shape and dtype, else a new empty array: a large buffer written whole at every
    call is reused, not allocated afresh (a fresh one costs a page fault per 4 KB the first time it is written)."""
    if buf is None or buf.shape != shape or buf.dtype != dtype:
        return np.empty(shape, dtype=dtype)
    return buf


_scratch = threading.local()  # one backward at a time per thread: its patch matrix is shared by every layer


def scratch(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A buffer of this thread's, kept between calls (its contents are the caller's to overwrite)."""
    buf = kept(getattr(_scratch, name, None), shape, dtype)
    setattr(_scratch, name, buf)
    return buf


def transposed(dout: np.ndarray, W: np.ndarray, p: int) -> np.ndarray:
    """dL/dx of a stride-1 convolution with padding p <= k - 1: dout (N, Ho, Wo, C_out) zero-padded by
    q = k - 1 - p on every side, convolved with the kernel flipped in space and transposed in its channels,
    Wf[i, j, o, c] = W[k-1-i, k-1-j, c, o] (dx[h] = sum_i dout[h + p - i] W[i]^T = sum_i' dp[h + i'] Wf[i']):
    one im2col and one product, as the forward pass; no scatter-add."""
    k, c_in, c_out = W.shape[0], W.shape[2], W.shape[3]
    n, ho, wo, _ = dout.shape
    q = k - 1 - p
    h, w = ho + 2 * q - k + 1, wo + 2 * q - k + 1
    dp = scratch("pad", (n, ho + 2 * q, wo + 2 * q, c_out), dout.dtype)
    if q:
        dp[:, :q], dp[:, -q:], dp[:, :, :q], dp[:, :, -q:] = 0.0, 0.0, 0.0, 0.0
    dp[:, q:q + ho, q:q + wo] = dout
    cols = scratch("cols", (n, h, w, k, k, c_out), dout.dtype)
    np.copyto(cols, patches(dp, k, 1, h, w))
    Wf = np.ascontiguousarray(W[::-1, ::-1].transpose(0, 1, 3, 2)).reshape(k * k * c_out, c_in)
    return (cols.reshape(-1, k * k * c_out) @ Wf).reshape(n, h, w, c_in)


def channel_copies(v: np.ndarray, channels: int) -> np.ndarray:
    """A per-channel vector (C,) as is; K copies of it ((K, 1, C) or (K, C)) as (K, 1, 1, 1, C)."""
    return v if v.ndim == 1 else v.reshape(-1, 1, 1, 1, channels)


class Conv2d(Module):
    """out[n, y, x, o] = sum_{i, j, c} xp[n, s*y + i, s*x + j, c] W[i, j, c, o] + b[o], xp x zero-padded by p.

    W: (k, k, C_in, C_out), b: (C_out,) or None. x: (N, H, W, C_in) -> (N, Ho, Wo, C_out).
    """

    def __init__(self, W: np.ndarray, b: np.ndarray | None, stride: int = 1, padding: int = 0,
                 name: str = "conv") -> None:
        super().__init__()
        if W.ndim != 4 or W.shape[0] != W.shape[1]:
            raise ValueError(f"{name}: W must be (k, k, C_in, C_out), got {W.shape}")
        if stride < 1 or padding < 0:
            raise ValueError(f"{name}: stride must be >= 1 and padding >= 0, got {stride}, {padding}")
        self.name, self.stride, self.padding = name, int(stride), int(padding)
        self.add_param("W", W)
        if b is not None:
            self.add_param("b", b)
        self._pad: np.ndarray | None = None  # the zero-padded input, reused while shapes stay
        self._colbuf: np.ndarray | None = None  # the im2col matrix, reused while shapes stay (no fresh pages)

    @property
    def kernel(self) -> int:
        return self.params["W"].shape[-4]

    def _padded(self, x: np.ndarray) -> np.ndarray:
        """x (M, H, W, C) with p zeros on every side, in a buffer kept between calls (the border stays zero)."""
        p = self.padding
        if p == 0:
            return x
        m, h, w, c = x.shape
        shape = (m, h + 2 * p, w + 2 * p, c)
        if self._pad is None or self._pad.shape != shape or self._pad.dtype != x.dtype:
            self._pad = np.zeros(shape, dtype=x.dtype)
        self._pad[:, p:p + h, p:p + w, :] = x
        return self._pad

    def _cols(self, x: np.ndarray) -> np.ndarray:
        """im2col: (M * Ho * Wo, k * k * C_in), rows in (m, y, x) order, columns in W's (i, j, c) order."""
        k, s = self.kernel, self.stride
        m, h, w, c = x.shape
        ho, wo = out_size(h, k, s, self.padding), out_size(w, k, s, self.padding)
        if ho < 1 or wo < 1:
            raise ValueError(f"{self.name}: a {k}x{k} kernel with padding {self.padding} does not fit a "
                             f"{h}x{w} image")
        self.hw_out = (ho, wo)
        if k == 1 and self.padding == 0:  # a 1x1 convolution reads the (strided) pixels themselves
            return np.ascontiguousarray(x[:, ::s, ::s, :]).reshape(-1, c)
        self._colbuf = cols = kept(self._colbuf, (m, ho, wo, k, k, c), x.dtype)
        np.copyto(cols, patches(self._padded(x), k, s, ho, wo))
        return cols.reshape(-1, k * k * c)

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        W = self.params["W"]
        k, c_in, c_out = W.shape[-4], W.shape[-2], W.shape[-1]
        lead = x.shape[:-3]
        self.x_shape = x.shape
        self.cols = cols = self._cols(merged(x))
        ho, wo = self.hw_out
        if W.ndim == 4:  # one weight (x may carry K copies: they are more rows of one product)
            out = (cols @ W.reshape(k * k * c_in, c_out)).reshape(lead + (ho, wo, c_out))
        elif x.ndim == 4:  # K copies of W, one x: one product with K * C_out columns
            K = len(W)
            Wk = W.reshape(K, k * k * c_in, c_out).transpose(1, 0, 2).reshape(k * k * c_in, K * c_out)
            out = np.moveaxis((cols @ Wk).reshape(lead + (ho, wo, K, c_out)), -2, 0)
        else:  # K copies of both
            K = len(W)
            out = np.matmul(cols.reshape(K, -1, k * k * c_in), W.reshape(K, k * k * c_in, c_out))
            out = out.reshape(lead + (ho, wo, c_out))
        if "b" in self.params:
            b = self.params["b"]
            if b.ndim == 1:
                out += b
            else:
                out = out + channel_copies(b, c_out)
        return out

    def backward(self, dout: np.ndarray) -> np.ndarray:
        # dW = cols^T dout ; db = sum over batch and positions ; dx = col2im(dout W^T)
        W = self.params["W"]
        k, c_in, c_out = W.shape[-4], W.shape[-2], W.shape[-1]
        d2 = dout.reshape(-1, c_out)
        np.matmul(self.cols.T, d2, out=self.grads["W"].reshape(k * k * c_in, c_out))
        if "b" in self.grads:
            d2.sum(axis=0, out=self.grads["b"])
        n, h, w, _ = self.x_shape
        ho, wo = self.hw_out
        s, p = self.stride, self.padding
        if s == 1 and k > 1 and p <= k - 1 and c_out <= 2 * c_in:  # else the scatter moves less memory
            return transposed(dout, W, p)
        dcols = d2 @ W.reshape(k * k * c_in, c_out).T
        if k == 1 and p == 0:
            if s == 1:
                return dcols.reshape(self.x_shape)
            dx = np.zeros(self.x_shape, dtype=dcols.dtype)
            dx[:, ::s, ::s, :][:, :ho, :wo, :] = dcols.reshape(n, ho, wo, c_in)
            return dx
        dcols = dcols.reshape(n, ho, wo, k, k, c_in)
        dxp = np.zeros((n, h + 2 * p, w + 2 * p, c_in), dtype=dcols.dtype)
        for i, j, rows, cols in offsets(k, s, ho, wo):  # scatter-add: a loop over the k*k offsets only
            dxp[:, rows, cols, :] += dcols[:, :, :, i, j, :]
        return dxp[:, p:p + h, p:p + w, :] if p else dxp


class _Pool(Module):
    """A size x size window every ``stride`` pixels (stride None: size), per channel, no padding."""

    def __init__(self, size: int = 2, stride: int | None = None, name: str = "pool") -> None:
        super().__init__()
        if size < 1 or (stride is not None and stride < 1):
            raise ValueError(f"{name}: size and stride must be >= 1, got {size}, {stride}")
        self.name, self.size = name, int(size)
        self.stride = int(stride) if stride is not None else self.size

    def _shape(self, x: np.ndarray) -> tuple[int, int]:
        h, w = x.shape[-3], x.shape[-2]
        ho, wo = out_size(h, self.size, self.stride), out_size(w, self.size, self.stride)
        if ho < 1 or wo < 1:
            raise ValueError(f"{self.name}: a {self.size}x{self.size} window does not fit a {h}x{w} image")
        self.x_shape, self.hw_out = x.shape, (ho, wo)
        return ho, wo


class MaxPool2d(_Pool):
    """out = the maximum of each window. The gradient goes to the window's first maximum (row-major, as
    torch picks it); ``mask`` holds each window's winner, its offset i * size + j, for a gradient check."""

    kinks = True

    def __init__(self, size: int = 2, stride: int | None = None, name: str = "maxpool") -> None:
        super().__init__(size, stride, name)
        self.mask: np.ndarray | None = None

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        ho, wo = self._shape(x)
        m, s = merged(x), self.stride
        windows = np.empty((self.size * self.size,) + (len(m), ho, wo, x.shape[-1]), dtype=x.dtype)
        for i, j, rows, cols in offsets(self.size, s, ho, wo):
            windows[i * self.size + j] = m[:, rows, cols, :]
        arg = windows.argmax(axis=0)
        out = np.take_along_axis(windows, arg[None], axis=0)[0]
        self.mask = arg.reshape(x.shape[:-3] + arg.shape[1:])
        return out.reshape(x.shape[:-3] + out.shape[1:])

    def backward(self, dout: np.ndarray) -> np.ndarray:
        ho, wo = self.hw_out
        arg = merged(self.mask)
        d = merged(dout)
        dx = np.zeros((len(d),) + self.x_shape[-3:], dtype=dout.dtype)
        for i, j, rows, cols in offsets(self.size, self.stride, ho, wo):
            dx[:, rows, cols, :] += np.where(arg == i * self.size + j, d, 0.0)
        return dx.reshape(self.x_shape)


class AvgPool2d(_Pool):
    """out = the mean of each window; each input pixel gets dout / size^2 from every window it is in."""

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        ho, wo = self._shape(x)
        m = merged(x)
        out = np.zeros((len(m), ho, wo, x.shape[-1]), dtype=x.dtype)
        for _, _, rows, cols in offsets(self.size, self.stride, ho, wo):
            out += m[:, rows, cols, :]
        out *= 1.0 / (self.size * self.size)
        return out.reshape(x.shape[:-3] + out.shape[1:])

    def backward(self, dout: np.ndarray) -> np.ndarray:
        ho, wo = self.hw_out
        share = merged(dout) * (1.0 / (self.size * self.size))
        dx = np.zeros((share.shape[0],) + self.x_shape[-3:], dtype=dout.dtype)
        for _, _, rows, cols in offsets(self.size, self.stride, ho, wo):
            dx[:, rows, cols, :] += share
        return dx.reshape(self.x_shape)


class GlobalAvgPool(Module):
    """(N, H, W, C) -> (N, C): the mean over all positions of each channel."""

    def __init__(self, name: str = "gap") -> None:
        super().__init__()
        self.name = name

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        self.x_shape = x.shape
        return x.mean(axis=(-3, -2))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        h, w = self.x_shape[-3], self.x_shape[-2]
        share = dout * (1.0 / (h * w))
        return np.broadcast_to(share[..., None, None, :], self.x_shape).copy()


class Flatten(Module):
    """(N, H, W, C) -> (N, H * W * C), in the array's own (h, w, c) order."""

    def __init__(self, name: str = "flatten") -> None:
        super().__init__()
        self.name = name

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        self.x_shape = x.shape
        return x.reshape(x.shape[:-3] + (-1,))

    def backward(self, dout: np.ndarray) -> np.ndarray:
        return dout.reshape(self.x_shape)


class ResBlock(Module):
    """out = bn_b(conv_b(act(bn_a(conv_a(x))))) + shortcut(x) (He et al. 2016's basic block, without its
    final activation: the builder puts that after the block as a module of its own).

    conv_a is k x k with the block's stride, conv_b k x k with stride 1, both "same" padding (k - 1) // 2.
    The shortcut is x itself, or the 1x1 convolution W_proj (C_in, C_out) with the block's stride and its
    own batch norm, needed where the stride or the number of channels changes. Without batch norm each
    convolution has a bias (b_a, b_b, b_proj) instead. Params, by name: W_a, b_a | gamma_a, beta_a,
    (alpha_a of a PReLU), W_b, b_b | gamma_b, beta_b, W_proj, b_proj | gamma_proj, beta_proj; the block's
    modules compute with whatever ``params`` holds (a gradient check's K copies too).
    """

    def __init__(self, W_a: np.ndarray, W_b: np.ndarray, W_proj: np.ndarray | None = None, stride: int = 1,
                 activation: Module | None = None, batchnorm: bool = True, dtype=np.float64, name: str = "res",
                 bias_init: float = 0.0) -> None:
        super().__init__()
        if activation is None:
            raise ValueError(f"{name}: a residual block needs its activation module (e.g. make_activation('relu'))")
        c_in, c_mid, c_out = W_a.shape[-2], W_a.shape[-1], W_b.shape[-1]
        if W_a.shape[0] % 2 == 0 or W_b.shape[0] % 2 == 0:
            raise ValueError(f"{name}: a residual block's kernels must be odd (1, 3, 5, ...) so that 'same' padding "
                             f"keeps the image's size for the addition; got {W_a.shape[0]} and {W_b.shape[0]}")
        if W_b.shape[-2] != c_mid:
            raise ValueError(f"{name}: W_b takes {W_b.shape[-2]} channels but W_a gives {c_mid}")
        if W_proj is None and (stride != 1 or c_in != c_out):
            raise ValueError(f"{name}: an identity shortcut needs stride 1 and C_in = C_out (got stride {stride}, "
                             f"{c_in} -> {c_out}); give W_proj, a 1x1 projection (1, 1, {c_in}, {c_out})")
        if W_proj is not None and W_proj.shape != (1, 1, c_in, c_out):
            raise ValueError(f"{name}: W_proj must be (1, 1, {c_in}, {c_out}), got {W_proj.shape}")
        self.name, self.stride, self.batchnorm, self.activation = name, int(stride), batchnorm, activation

        def bias(c: int) -> np.ndarray | None:  # batch norm's beta replaces a convolution's bias
            return None if batchnorm else np.full(c, bias_init, dtype=dtype)

        self.conv_a = Conv2d(W_a, bias(c_mid), stride, (W_a.shape[0] - 1) // 2, f"{name}.conv_a")
        self.conv_b = Conv2d(W_b, bias(c_out), 1, (W_b.shape[0] - 1) // 2, f"{name}.conv_b")
        self.proj = None if W_proj is None else Conv2d(W_proj, bias(c_out), stride, 0, f"{name}.proj")
        if batchnorm:
            self.bn_a, self.bn_b = (BatchNorm(c, dtype, f"{name}.bn_{s}", spatial=True) for c, s in
                                    ((c_mid, "a"), (c_out, "b")))
            self.bn_proj = BatchNorm(c_out, dtype, f"{name}.bn_proj", spatial=True) if self.proj else None
        chain = [("a", self.conv_a), ("a", self.bn_a if batchnorm else None), ("a", activation),
                 ("b", self.conv_b), ("b", self.bn_b if batchnorm else None), ("proj", self.proj),
                 ("proj", self.bn_proj if batchnorm else None)]
        self.owned = [(s, m) for s, m in chain if m is not None]  # (suffix, module): param key = f"{k}_{suffix}"
        for s, m in self.owned:
            for k, v in m.params.items():
                self.params[f"{k}_{s}"] = v
                self.grads[f"{k}_{s}"] = m.grads[k]  # the same arrays: a module's backward fills the block's grads
        self.kinks = bool(activation.kinks)
        self.couples_samples = batchnorm  # its batch norms take their statistics over the batch

    @property
    def mask(self) -> np.ndarray | None:
        """The activation's winners (a ReLU's x > 0), what a gradient check watches for kinks."""
        return getattr(self.activation, "mask", None)

    def _bind(self) -> None:
        """Each module computes with the block's current ``params`` (an optimiser's, or a check's copies)."""
        for s, m in self.owned:
            for k in m.params:
                m.params[k] = self.params[f"{k}_{s}"]

    def forward(self, x: np.ndarray, train: bool = True) -> np.ndarray:
        self._bind()
        h = self.conv_a.forward(x, train)
        if self.batchnorm:
            h = self.bn_a.forward(h, train)
        h = self.conv_b.forward(self.activation.forward(h, train), train)
        if self.batchnorm:
            h = self.bn_b.forward(h, train)
        if self.proj is None:
            return h + x
        s = self.proj.forward(x, train)
        return h + (self.bn_proj.forward(s, train) if self.batchnorm else s)

    def backward(self, dout: np.ndarray) -> np.ndarray:
        d = self.bn_b.backward(dout) if self.batchnorm else dout
        d = self.activation.backward(self.conv_b.backward(d))
        dx = self.conv_a.backward(self.bn_a.backward(d) if self.batchnorm else d)
        if self.proj is None:
            return dx + dout
        ds = self.bn_proj.backward(dout) if self.batchnorm else dout
        return dx + self.proj.backward(ds)
